"""Secrets and files: secret values never land in run rows or on command lines, and
the store's folder and files are the owner's alone."""

from __future__ import annotations

import os

from hermes_cron_ext.store import output
from tests.conftest import make_job, wait_for
from tests.runtime.test_supervisor import run_job


def test_secrets_reach_the_payload_but_no_run_row_and_the_store_is_private(real_store):
    """A secret env value is read from the job when the payload starts: the run's spec
    (in the store, in the run JSON, in a retry) names it only. The store's folder is
    the owner's alone and its files (database, WAL, logs) are 0600."""
    run = run_job(real_store, "secret", command="echo token=$TOKEN", env={"PLAIN": "x"},
                  secret_env={"TOKEN": "s3cr3t"})
    assert run.status == "succeeded"
    assert "token=s3cr3t" in output.read(real_store.log_path(run.id)).decode()
    assert run.spec["secret_env"] == ["TOKEN"] and run.spec["env"] == {"PLAIN": "x"}
    raw = real_store.db.execute("SELECT spec FROM runs WHERE id = ?", (run.id,)).fetchone()[0]
    assert "s3cr3t" not in raw and "s3cr3t" not in str(run.to_json())

    folder = os.path.dirname(real_store.path)
    assert os.stat(folder).st_mode & 0o777 == 0o700
    files = [os.path.join(folder, f) for f in os.listdir(folder)] + [
        os.path.join(real_store.logs_dir, f) for f in os.listdir(real_store.logs_dir)]
    assert real_store.path + "-wal" in files
    modes = {f: oct(os.stat(f).st_mode & 0o777) for f in files}
    assert modes == {f: ("0o700" if os.path.isdir(f) else "0o600") for f in files}


def test_a_one_off_supervisor_has_no_store_url_on_its_command_line(real_store):
    """``hermes-cron run`` with no ticker spawns a supervisor: the store URL (for
    PostgreSQL, with its password) must not be readable by every user through ps."""
    from hermes_cron_ext.runtime.executor import spawn_supervisor

    make_job(real_store, "one-off", "@yearly", command="sleep 1")
    run = real_store.request_run("one-off")
    assert real_store.dispatch(run.id)
    pid = spawn_supervisor(real_store.path, run.id)

    def cmdline():  # empty or the parent's until the child has exec'd
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            line = f.read()
        return line if b"hermes_cron_ext.runtime.supervisor" in line else None
    line = wait_for(cmdline, 10, 0.001, "the supervisor's exec")
    assert run.id.encode() in line and real_store.path.encode() not in line
    wait_for(lambda: real_store.get_run(run.id).status == "succeeded", 30, what="the run")
