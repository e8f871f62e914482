"""The supervisor, as a real detached process running real payloads."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from hermes_cron_ext.domain.progress import Progress
from hermes_cron_ext.store import output
from tests.conftest import make_job, wait_for

ENV = {**os.environ, "HERMES_CRON_HEARTBEAT": "0.3"}


def supervise(store, run) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hermes_cron_ext.runtime.supervisor", store.path,
                             run.id], env=ENV, start_new_session=True)


def run_job(store, name, wait=30.0, **job):
    make_job(store, name, "@yearly", **job)
    run = store.request_run(name)
    proc = supervise(store, run)
    proc.wait(wait)
    return store.get_run(run.id)


def _procs_with(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_success_output_and_streams(real_store):
    run = run_job(real_store, "ok", command="echo out; echo err >&2; echo more")
    assert (run.status, run.exit_code) == ("succeeded", 0)
    assert run.started_at and run.finished_at >= run.started_at
    path = real_store.log_path(run.id)
    assert output.read(path) .decode().count("\n") == 3
    streams = {seg[2].decode().strip(): seg[1] for seg in output.segments(path)
               if seg[2].strip()}
    assert streams["err"] == "stderr"
    assert "out" in next(k for k, v in streams.items() if v == "stdout")
    assert run.output_bytes == output.size(path)


def test_failure_records_exit_code_and_last_error(real_store):
    run = run_job(real_store, "bad", command="echo about to fail; echo 'KeyError: x' >&2; exit 3")
    assert (run.status, run.exit_code) == ("failed", 3)
    assert run.reason == "exit code 3: KeyError: x"
    assert real_store.get_job("bad").last_run["status"] == "failed"


def test_cannot_start_is_a_clear_failure(real_store, tmp_path):
    run = run_job(real_store, "nocwd", command="true", cwd=str(tmp_path / "missing"))
    assert run.status == "failed" and "cannot start" in run.reason
    assert b"cannot start" in output.read(real_store.log_path(run.id))


def test_timeout_kills_whole_process_group(real_store):
    marker = f"hermes-grandchild-{os.getpid()}-{time.time_ns()}"
    cmd = f"sh -c 'exec -a {marker} sleep 300' & echo started; sleep 300"
    run = run_job(real_store, "slow", command=cmd, timeout=1, kill_grace=1)
    assert run.status == "timed_out"
    assert run.reason == "timed out after 1 s"
    assert b"timed out after 1 s" in output.read(real_store.log_path(run.id))
    wait_for(lambda: not _procs_with(marker), 5, what="grandchild to be gone")


def test_term_ignored_gets_kill_after_grace(real_store):
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    run = run_job(real_store, "stubborn", kind="python", code=code, command=None, timeout=0.5,
                  kill_grace=0.5)
    assert run.status == "timed_out" and run.exit_code == 128 + signal.SIGKILL


def test_cancel_request_reaches_running_payload(real_store):
    make_job(real_store, "cancelme", "@yearly", command="echo begun; sleep 60")
    run = real_store.request_run("cancelme")
    proc = supervise(real_store, run)
    wait_for(lambda: real_store.get_run(run.id).status == "running", what="running")
    real_store.request_cancel(run.id)
    proc.wait(15)
    done = real_store.get_run(run.id)
    assert done.status == "cancelled"


def test_sigterm_to_supervisor_cancels(real_store):
    make_job(real_store, "term", "@yearly", command="sleep 60")
    run = real_store.request_run("term")
    proc = supervise(real_store, run)
    wait_for(lambda: real_store.get_run(run.id).status == "running", what="running")
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)
    assert real_store.get_run(run.id).status == "cancelled"


def test_progress_reported_with_heartbeat(real_store):
    code = ("import time\nprint('::phase:: load')\nprint('::progress:: 3/10 step three')\n"
            "time.sleep(1.5)\n")
    make_job(real_store, "prog", "@yearly", kind="python", code=code, command=None)
    run = real_store.request_run("prog")
    proc = supervise(real_store, run)
    seen = wait_for(lambda: real_store.get_run(run.id).progress, what="progress")
    assert abs(seen - 0.3) < 1e-9
    assert real_store.get_run(run.id).phase == "step three"
    proc.wait(15)
    types = [e.type for e in real_store.events_since(0) if e.run_id == run.id]
    assert "run.progress" in types


def test_progress_parser_reads_tqdm_and_markers():
    p = Progress()
    p.feed(b"train:  45%|####5     | 45/100 [00:01<00:01]\r")
    assert (p.phase, p.fraction) == ("train", 0.45)
    p.feed(b"train:  90%|######### | 90/100\r::phase:: upload\n")
    assert (p.phase, p.fraction) == ("upload", 0.9)
    p.feed(b"::progress:: 100% done\n")
    assert (p.phase, p.fraction) == ("done", 1.0)


def test_output_capped_keeps_head_and_tail(real_store, monkeypatch):
    code = ("import sys\nsys.stdout.write('HEAD\\n')\n"
            "for i in range(900000): sys.stdout.write(f'line {i:08d}\\n')\n"
            "sys.stdout.write('TAIL\\n')\n")
    make_job(real_store, "big", "@yearly", kind="python", code=code, command=None)
    run = real_store.request_run("big")
    proc = supervise(real_store, run)
    proc.wait(60)
    data = output.read(real_store.log_path(run.id))
    assert real_store.get_run(run.id).status == "succeeded"
    assert data.startswith(b"HEAD\n") and data.endswith(b"TAIL\n")
    assert b"bytes cut here]" in data
    assert len(data) <= output.DEFAULT_MAX_BYTES + 1024
    assert b"line 00899999\n" in data and b"line 00700000\n" not in data


def test_a_jobs_max_output_caps_its_runs(real_store):
    """The ``max_output`` policy (set like any option: --max-output 16k) caps each run's
    log at that size, head and tail kept, and says how much was cut."""
    code = ("import sys\nsys.stdout.write('HEAD\\n')\n"
            "for i in range(20000): sys.stdout.write(f'line {i:08d}\\n')\n"
            "sys.stdout.write('TAIL\\n')\n")
    make_job(real_store, "capped", "@yearly", kind="python", code=code, command=None,
             max_output="16k")
    run = real_store.request_run("capped")
    supervise(real_store, run).wait(60)
    data = real_store.read_output(run.id)
    assert real_store.get_run(run.id).status == "succeeded"
    assert data.startswith(b"HEAD\n") and data.endswith(b"TAIL\n")
    notes = re.findall(rb"\n?\[hermes-cron: [^\n]*\]\n", data)
    cut = int(re.search(rb"\[hermes-cron: (\d+) bytes cut here\]", data).group(1))
    kept = len(data) - sum(len(n) for n in notes)
    assert kept <= 16 * 1024 and kept + cut == 5 + 20000 * 14 + 5  # every byte accounted for


def test_a_supervisor_late_for_a_lost_run_never_runs_its_payload(real_store, tmp_path):
    """Under overload a supervisor may come up after its run was marked lost: the run
    stays lost and its payload does not run."""
    marker = tmp_path / "ran"
    make_job(real_store, "late", "@yearly", command=f"touch {marker}")
    run = real_store.request_run("late")
    assert real_store.mark_lost(run.id, "its supervisor never started", None)
    proc = supervise(real_store, run)
    assert proc.wait(30) == 0
    time.sleep(0.2)
    assert not marker.exists()
    assert real_store.get_run(run.id).status == "lost"


@pytest.mark.postgres
def test_an_upstream_artifact_from_another_host_is_copied_here(pg_url, tmp_path):
    """On PostgreSQL the upstream notebook may have run elsewhere: its executed copy is
    read from the store and written beside this host's logs for the downstream."""
    from hermes_cron_ext.runtime.supervisor import upstream_artifact
    from hermes_cron_ext.store.postgres import PostgresStore

    there = PostgresStore(pg_url, logs_dir=str(tmp_path / "there"))
    here = PostgresStore(pg_url, logs_dir=str(tmp_path / "here"))
    try:
        make_job(there, "extract", "@yearly")
        run = there.request_run("extract")
        there.import_artifact(run.id, b'{"cells": []}')
        path = upstream_artifact(here, run.id)
        assert path == here.artifact_path(run.id) and path.startswith(str(tmp_path / "here"))
        with open(path, "rb") as f:
            assert f.read() == b'{"cells": []}'
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert upstream_artifact(here, "r_none") is None
    finally:
        there.close()
        here.close()
