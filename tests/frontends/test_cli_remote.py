"""``hermes-cron`` in a JupyterHub user's terminal: ``HERMES_CRON_URL`` names the hub's
service (here the session's real Jupyter server) and the CLI works through its REST
API with the user's token, every command as on a store; the store's own upkeep
(``gc``, ``daemon``, ...) says it needs the store, in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest_plugins = ("tests.notebook_fixtures",)
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def remote(cron_server, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HERMES_CRON", "JUPYTERHUB"))}
    # a hub user's session: the service's URL from the hub, the server's hub token
    env.update({"HERMES_CRON_URL": cron_server.url,
                "JUPYTERHUB_API_TOKEN": cron_server.token,
                "JUPYTER_DATA_DIR": str(tmp_path / "data")})

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hermes_cron_ext", *args], env=env,
                              capture_output=True, text=True, timeout=60)
    yield run
    run("rm", "remote-cli")


def test_the_cli_works_through_the_service(remote, cron_server, tmp_path):
    added = remote("add", "remote-cli", "@yearly", "--json", "--", "echo", "from the service")
    assert added.returncode == 0, added.stderr
    job = json.loads(added.stdout)
    listed = json.loads(remote("list", "--json").stdout)
    assert job["id"] in [j["id"] for j in listed["jobs"]]
    ran = remote("run", "remote-cli", "--follow")
    assert ran.returncode == 0, ran.stderr
    assert "from the service" in ran.stdout
    logs = remote("logs", "remote-cli")
    assert logs.stdout.strip().endswith("from the service")
    status = remote("status", "--json")
    assert json.loads(status.stdout)["store"]  # the service's store, named by it
    # nothing was made here: the CLI kept no store of its own
    assert not (tmp_path / "data").exists()


def test_store_upkeep_needs_the_store_and_says_so(remote, cron_server):
    gc = remote("gc")
    assert gc.returncode == 2
    assert gc.stderr == (f"hermes-cron: 'gc' works on a store (a file or postgresql:// URL "
                         f"given with --db), not on the server at {cron_server.url}\n")
    daemon = remote("--db", cron_server.url, "daemon")
    assert daemon.returncode == 2
    assert "'daemon' works on a store" in daemon.stderr


def test_hub_service_outside_a_hub_says_what_is_missing(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HERMES_CRON", "JUPYTERHUB"))}

    def serve(**extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hermes_cron_ext", "--db",
                               str(tmp_path / "c.db"), "hub-service"], env={**env, **extra},
                              capture_output=True, text=True, timeout=60)
    # fail closed: without run-as, every user's job would run as the service's account
    done = serve()
    assert done.returncode == 1
    assert done.stderr.startswith("hermes-cron hub service: run-as is off, so every "
                                  "user's job would run as this service's account")
    assert "HERMES_CRON_SHARED_ACCOUNT=1" in done.stderr
    done = serve(HERMES_CRON_SHARED_ACCOUNT="1")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "hermes-cron hub service: JUPYTERHUB_SERVICE_URL is not set. JupyterHub sets it "
        "for a managed service that has a 'url' (see docs/jupyterhub.md)."]
