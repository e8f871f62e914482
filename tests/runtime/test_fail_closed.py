"""A hub user's job never runs as another account by accident: a process with no
run-as helper (a daemon started without ``--run-as``, an admin's ``hermes-cron run``)
records such a run failed, saying why, unless the deployment lets its users share the
service's account (``HERMES_CRON_SHARED_ACCOUNT=1``). Jobs of the store's own user
('' owner) run as before. Real daemons, a real CLI, a real SQLite store."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hermes_cron_ext.domain.access import Viewer
from hermes_cron_ext.ops import Operations
from tests.conftest import _kill_supervisors, wait_for

pytestmark = pytest.mark.timeout(120)
#: a hub user who is not the account these tests run as
OTHER = "hub-user-not-me"


def _ended(ops: Operations, job_id: str) -> dict | None:
    """The job's newest finished run (the next slot's may be queued already)."""
    return next((r for r in ops.runs(job_id)["runs"] if r["finished_at"]), None)


@pytest.fixture
def store(tmp_path):
    db = str(tmp_path / "store" / "cron.db")
    ops = Operations(db)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HERMES_CRON", "JUPYTERHUB"))}
    env.update(HERMES_CRON_DB=db, HERMES_CRON_HEARTBEAT="0.5")
    yield ops, env
    ops.close()
    _kill_supervisors(db)


@pytest.mark.parametrize("shared", [False, True])
def test_a_daemon_without_run_as_runs_no_other_users_job(store, shared):
    ops, env = store
    if shared:
        env["HERMES_CRON_SHARED_ACCOUNT"] = "1"
    theirs = ops.as_user(Viewer(OTHER)).create(
        {"name": "theirs", "schedule": "@every 1s", "command": "echo ran"})[0]
    mine = ops.create({"name": "mine", "schedule": "@every 1s", "command": "echo ran"})[0]
    daemon = subprocess.Popen([sys.executable, "-m", "hermes_cron_ext", "daemon"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run = wait_for(lambda: _ended(ops, theirs["id"]), 30, 0.2, "a run of theirs")
        own = wait_for(lambda: _ended(ops, mine["id"]), 30, 0.2, "a run of mine")
    finally:
        daemon.terminate()
        daemon.wait(20)
    assert own["status"] == "succeeded"
    if shared:
        assert run["status"] == "succeeded"
        assert ops.log(run["id"])[0] == b"ran\n"
    else:
        assert run["status"] == "failed"
        assert run["reason"].startswith("cannot start: run-as is off here, and a hub "
                                        "user's job runs only as its owner")
        assert ops.log(run["id"])[0].count(b"ran") == 0


def test_an_admins_run_now_without_a_ticker_runs_no_other_users_job(store):
    ops, env = store
    ops.as_user(Viewer(OTHER)).create(
        {"name": "theirs", "schedule": "@yearly", "command": "echo ran"})
    job_id = ops.as_user(Viewer(OTHER)).job("theirs")["id"]
    done = subprocess.run([sys.executable, "-m", "hermes_cron_ext", "run", job_id],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    run = wait_for(lambda: _ended(ops, job_id), 30, 0.2, "the run")
    assert run["status"] == "failed" and "run-as is off here" in run["reason"]
