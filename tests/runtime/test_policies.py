"""Run policies with real supervisors and daemons: overlap, crash detection, notifications."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from hermes_cron_ext.store import SQLiteStore
from tests.conftest import make_job, processes_with, wait_for

ENV = {**os.environ, "HERMES_CRON_HEARTBEAT": "0.5"}


def supervise(store, run_id) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hermes_cron_ext.runtime.supervisor", store.path,
                             run_id], env=ENV, start_new_session=True)


def due_slot(store, name):
    """Make the job's next slot due now and claim it, as a ticker would."""
    now = time.time()
    store.db.execute("UPDATE jobs SET next_run_at = ? WHERE name = ?", (now, name))
    (run,) = store.claim_due(now, now, "test")
    return run


def status(store, run_id):
    return store.get_run(run_id).status


@pytest.mark.parametrize("policy", ["forbid", "allow", "replace", "queue"])
def test_overlap_policies_with_a_long_running_job(real_store, policy):
    store = real_store
    make_job(store, "long", "@yearly", overlap=policy, command="sleep 2", kill_grace=2)
    first = store.request_run("long")
    procs = [supervise(store, first.id)]
    wait_for(lambda: status(store, first.id) == "running", what="first run running")
    second = due_slot(store, "long")
    procs.append(supervise(store, second.id))
    third = None
    if policy == "queue":
        wait_for(lambda: (store.get_run(second.id).phase or "").startswith("waiting"),
                 what="second run waiting")
        third = due_slot(store, "long")
        procs.append(supervise(store, third.id))
    for proc in procs:
        proc.wait(30)
    a, b = store.get_run(first.id), store.get_run(second.id)
    if policy == "forbid":
        assert (a.status, b.status) == ("succeeded", "skipped")
        assert b.reason == f"overlap: run {a.id} was still running"
    elif policy == "allow":
        assert (a.status, b.status) == ("succeeded", "succeeded")
        assert b.started_at < a.finished_at  # they really overlapped
    elif policy == "replace":
        assert (a.status, b.status) == ("cancelled", "succeeded")
        assert a.reason == f"replaced by run {b.id}"
        assert b.started_at >= a.finished_at
    else:
        assert (a.status, b.status) == ("succeeded", "succeeded")
        assert b.started_at >= a.finished_at  # it waited its turn
        c = store.get_run(third.id)
        assert c.status == "skipped" and c.reason == f"overlap: run {b.id} is already waiting"


@pytest.mark.slow
def test_kill9_supervisor_marks_lost_then_one_retry(cli):
    cli("add", "victim", "@yearly", "--retries", "1", "--retry-delay", "0.2", "--", "sh", "-c",
        "echo attempt $HERMES_CRON_RUN_ID; sleep 3")
    cli.daemon()
    store = SQLiteStore(cli.db)
    run = store.request_run("victim")
    wait_for(lambda: store.get_run(run.id).status == "running", 20, what="running")
    os.kill(store.get_run(run.id).pid, signal.SIGKILL)
    killed = time.time()
    lost = wait_for(lambda: (r := store.get_run(run.id)).status == "lost" and r, 10,
                    what="lost")
    assert time.time() - killed <= 3 * 0.5 + 1.0  # three heartbeat intervals, plus polling
    assert "supervisor" in lost.reason and "gone" in lost.reason
    # its payload (sleep 3) would still run beside the retry: it is stopped, and says so
    assert "its payload (process group" in lost.reason and "was stopped" in lost.reason
    assert processes_with(f"HERMES_CRON_RUN_ID={run.id}".encode()) == {}
    retry = wait_for(lambda: next((r for r in store.list_runs("victim").items
                                   if r.trigger == "retry" and r.status == "succeeded"), None),
                     30, what="the retry to succeed")
    assert retry.attempt == 2
    time.sleep(1)
    assert len(store.list_runs("victim").items) == 2  # exactly one retry
    store.close()


@pytest.mark.slow
def test_kill9_everything_then_restart_leaves_nothing_running(cli, tmp_path):
    ledger = tmp_path / "ledger"
    cli("add", "tick", "@every 1s", "--overlap", "allow", "--", "sh", "-c",
        f'echo "$HERMES_CRON_SCHEDULED_FOR" >> {ledger}; sleep 5')
    daemon = cli.daemon()
    store = SQLiteStore(cli.db)
    wait_for(lambda: len([r for r in store.active_runs() if r.status == "running"]) >= 2, 20,
             what="runs in flight")
    # kill -9 the daemon, then every supervisor and payload it left (the fork server
    # still forks what it was sent before it sees the daemon gone)
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.wait()
    time.sleep(0.5)
    for r in store.active_runs():
        row = store.db.execute("SELECT pid, payload_pid FROM runs WHERE id = ?",
                               (r.id,)).fetchone()
        for pid, group in ((row[0], False), (row[1], True)):
            if pid:
                try:
                    (os.killpg if group else os.kill)(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    was = {r.id: r.status for r in store.active_runs()}
    before = set(was)
    assert "running" in was.values()
    cli.daemon()
    # runs it had handed out but no supervisor took: lost ORPHANED (10 s) after their slot;
    # a run an agent took ahead of its instant and never started, found before that
    # instant, is put back and fired once by the new daemon, at its instant
    wait_for(lambda: not (before & {r.id for r in store.active_runs()}), 30,
             what="the restarted daemon to reconcile")
    for run_id in before:
        run = store.get_run(run_id)
        if was[run_id] == "queued" and run.status != "lost":
            assert run.status == "succeeded" and run.started_at >= run.fire_at - 0.01, run
            continue
        assert run.status == "lost" and "gone" in run.reason, (run.status, run.reason)
    time.sleep(2)
    slots = ledger.read_text().split()
    assert len(slots) == len(set(slots)), "a slot fired twice"
    store.close()


class Receiver:
    """A real HTTP server on 127.0.0.1 that records what it is sent."""

    def __init__(self):
        self.hits: list[tuple[str, str, dict | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n)) if n else None
                outer.hits.append((self.command, self.path, body))
                self.send_response(200)
                self.end_headers()

            do_GET = do_POST = _record

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self):
        return [(b["event"], b["job"]) for m, p, b in self.hits if b]

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_webhook_and_pings(cli, receiver, tmp_path):
    flag = tmp_path / "ok"
    # fails until the flag file exists; blocked after 3 failures in a row
    cli("add", "flaky", "@yearly", "--notify-url", f"{receiver.url}/hook",
        "--ping-url", f"{receiver.url}/ping/abc", "--max-failures", "3", "--", "sh", "-c",
        f"test -e {flag}")
    cli.daemon()
    store = SQLiteStore(cli.db)

    def run_once():
        run = store.request_run("flaky")
        return wait_for(lambda: (r := store.get_run(run.id)).status not in
                        ("queued", "running") and r, 20, what="run end")

    assert run_once().status == "failed"
    assert run_once().status == "failed"
    flag.touch()
    assert run_once().status == "succeeded"
    flag.unlink()
    for _ in range(3):
        run_once()
    assert store.get_job("flaky").state == "blocked"
    wait_for(lambda: ("blocked", "flaky") in receiver.events(), 15, what="blocked webhook")
    assert receiver.events() == [("failed", "flaky"), ("failed", "flaky"),
                                 ("recovered", "flaky"), ("failed", "flaky"),
                                 ("failed", "flaky"), ("failed", "flaky"), ("blocked", "flaky")]
    body = next(b for m, p, b in receiver.hits if b and b["event"] == "blocked")
    assert "3 consecutive failures" in body["reason"]
    pings = [p for m, p, b in receiver.hits if p.startswith("/ping")]
    wait_for(lambda: len([p for m, p, b in receiver.hits if p.startswith("/ping")]) == 12, 15,
             what="pings")
    pings = [p for m, p, b in receiver.hits if p.startswith("/ping")]
    assert pings.count("/ping/abc/start") == 6
    assert pings.count("/ping/abc/fail") == 5 and pings.count("/ping/abc") == 1
    store.close()


def test_missed_slots_are_notified_and_unreachable_hook_never_breaks_runs(cli, receiver):
    cli("add", "gap", "@every 1s", "--misfire", "skip", "--notify-url",
        f"{receiver.url}/hook", "--", "true")
    cli("add", "deaf", "@yearly", "--notify-url", "http://127.0.0.1:9/nothing-listens", "--",
        "false")
    time.sleep(2.5)  # no ticker: slots go by
    cli.daemon()
    wait_for(lambda: ("missed", "gap") in receiver.events(), 15, what="missed webhook")
    store = SQLiteStore(cli.db)
    run = store.request_run("deaf")
    done = wait_for(lambda: (r := store.get_run(run.id)).status == "failed" and r, 20,
                    what="the run to be recorded despite the dead webhook")
    assert done.exit_code == 1
    store.close()
