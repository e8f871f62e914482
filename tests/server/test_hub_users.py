"""A JupyterHub whose users are Unix accounts, end to end: a real hub starts the
hermes-cron service as an unprivileged account, which starts the run-as helper once
through ``sudo -n`` (a sudoers line for exactly that command); the hub spawns a
user's own Jupyter server with LocalProcessSpawner, as that user. The user makes a
job through their server (as the side panel does: the server forwards to the
service); its runs run as the user; another user gets 404 for it; and with the
user's server stopped the way the idle culler stops it, the job keeps firing.

Needs root (it makes the Unix accounts and a sudoers file, and removes them after)
and sudo (.ci/run installs it)."""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime

import pytest

pytest.importorskip("jupyterhub")

from tests.hub_support import call, free_port, running_hub, wait_until  # noqa: E402

pytestmark = [
    pytest.mark.accounts,  # make accounts (and .ci/run), not the normal suite
    pytest.mark.timeout(240),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: it makes Unix accounts and "
                                                 "a sudoers file, and spawns servers as "
                                                 "those accounts"),
    pytest.mark.skipif(shutil.which("sudo") is None or shutil.which("useradd") is None,
                       reason="needs sudo and useradd (.ci/run installs sudo)"),
]

ALICE, BOB, GROUP = "hu-alice", "hu-bob", "hu-users"
HELPER = [sys.executable, "-I", "-m", "hermes_cron_ext.runtime.runas", "serve"]


def _quiet(*argv: str) -> None:
    subprocess.run(argv, capture_output=True, check=False)


def _drop_accounts() -> None:
    for name in (ALICE, BOB):
        _quiet("pkill", "-KILL", "-u", name)
        _quiet("userdel", "-r", name)
    _quiet("groupdel", GROUP)


@pytest.fixture(scope="module")
def deployment():
    """The hub, its service with run-as on, and hu-alice and hu-bob (hub users and Unix
    accounts, homes 0700): ``(hub, info)``; *info* has the users' server port, their
    homes and hub tokens."""
    _drop_accounts()  # what a killed earlier run left
    homes = tempfile.mkdtemp(prefix="hu-homes-")
    os.chmod(homes, 0o755)
    etc = tempfile.mkdtemp(prefix="hu-etc-")  # root's, 0755: the helper's configuration
    os.chmod(etc, 0o755)
    sudoers = f"/etc/sudoers.d/hermes-cron-test-{os.getpid()}"
    port = free_port()
    try:
        subprocess.run(["groupadd", GROUP], check=True, capture_output=True)
        for name in (ALICE, BOB):
            subprocess.run(["useradd", "-m", "-d", f"{homes}/{name}", "-s", "/bin/sh",
                            "-G", GROUP, name], check=True, capture_output=True)
            os.chmod(f"{homes}/{name}", 0o700)
        secret = f"{homes}/{BOB}/secret.txt"
        with open(secret, "w") as f:
            f.write("bob's alone\n")
        os.chown(secret, pwd.getpwnam(BOB).pw_uid, pwd.getpwnam(BOB).pw_gid)
        os.chmod(secret, 0o600)
        config = os.path.join(etc, "runas.json")

        def extra(hub: dict) -> str:
            with open(config, "w") as f:
                json.dump({"store": hub["store"], "allow_groups": [GROUP]}, f)
            account = hub["account"].pw_name
            with open(sudoers, "w") as f:  # the deployment's sudoers line, and the test's
                f.write(f'Defaults:{account} env_keep += "HERMES_CRON_RUNAS_CONFIG"\n'
                        f"{account} ALL=(root) NOPASSWD: {shlex.join(HELPER)}\n")
            os.chmod(sudoers, 0o440)
            return f"""
c.Spawner.cmd = [{sys.executable!r}, "-m", "jupyterhub.singleuser"]
c.Spawner.ip = "127.0.0.1"
c.Spawner.port = {port}
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90
c.Spawner.environment = {{"HERMES_CRON_URL": {hub["service_url"]!r}}}
c.Spawner.server_token_scopes = [
    "users:activity!user", "access:servers!server", "access:services!service=hermes-cron"]
"""
        env = {"HERMES_CRON_RUN_AS": shlex.join(["sudo", "-n", *HELPER]),
               "HERMES_CRON_RUNAS_CONFIG": config}
        with running_hub(extra=extra, service_env=env) as hub:
            for name in (ALICE, BOB):
                assert hub.admin(f"/users/{name}", "POST", {})[0] == 201
                hub.tokens[name] = hub.token_for(name)
            yield hub, {"port": port, "homes": homes, "secret": secret}
    finally:
        if os.path.exists(sudoers):
            os.unlink(sudoers)
        _drop_accounts()
        shutil.rmtree(homes, ignore_errors=True)
        shutil.rmtree(etc, ignore_errors=True)


def test_a_users_jobs_run_as_them_and_keep_firing_when_their_server_stops(deployment):
    hub, info = deployment
    alice, bob = hub.tokens[ALICE], hub.tokens[BOB]
    status, reply = hub.admin(f"/users/{ALICE}/server", "POST", {})
    assert status in (201, 202), reply
    wait_until(lambda: hub.admin(f"/users/{ALICE}")[1]["servers"].get("", {}).get("ready"),
               90, "alice's server")
    server = f"http://127.0.0.1:{info['port']}/user/{ALICE}/api/cron/"
    # made through alice's own server, as her side panel makes it
    status, job = call(server + "jobs", alice, "POST", {
        "name": "whoami", "schedule": "@every 2s",
        "command": f"id -un; echo $HOME; echo made > $HOME/made.txt; "
                   f"cat {info['secret']} 2>&1 || true"})
    assert status == 201, job
    assert job["owner"] == ALICE
    assert hub.cron(f"api/cron/jobs/{job['id']}", bob)[0] == 404  # bob: no such job

    def a_run(after: float = 0.0):
        status, page = hub.cron(f"api/cron/jobs/{job['id']}/runs?status=succeeded", alice)
        runs = [r for r in page["runs"] if r["trigger"] == "schedule" and datetime.fromisoformat(
            r["scheduled_for"].replace("Z", "+00:00")).timestamp() > after]
        return runs[0] if runs else None
    run = wait_until(a_run, 60, "a run of alice's job")
    status, text = call(server + f"runs/{run['id']}/log", alice)  # through her server
    lines = text.splitlines()
    assert lines[:2] == [ALICE, f"{info['homes']}/{ALICE}"], text
    assert "Permission denied" in lines[2] and "bob's alone" not in text
    made = os.stat(f"{info['homes']}/{ALICE}/made.txt")
    assert (made.st_uid, made.st_mode & 0o777) == (pwd.getpwnam(ALICE).pw_uid, 0o600)

    # the idle culler's call: her server stops; the service goes on firing her job
    status, _ = hub.admin(f"/users/{ALICE}/server", "DELETE")
    assert status in (202, 204)
    wait_until(lambda: not hub.admin(f"/users/{ALICE}")[1]["servers"], 60,
               "the hub to report alice's server stopped")
    stopped = time.time()
    later = wait_until(lambda: a_run(stopped), 30, "a run after the server stopped")
    status, text = hub.cron(f"api/cron/runs/{later['id']}/log", alice)
    assert text.splitlines()[0] == ALICE
    assert hub.cron(f"api/cron/jobs/{job['id']}", alice, "DELETE")[0] == 204
