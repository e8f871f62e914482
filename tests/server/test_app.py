"""The extension inside a real ``jupyter server`` process: lifecycle and shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from hermes_cron_ext.store import SQLiteStore
from tests.conftest import wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real jupyter server with the extension, as a user would start it."""

    def __init__(self, tmp_path, db: str, *args: str, wait: bool = True):
        self.port = _free_port()
        self.db = db
        self.env = {**os.environ, "HERMES_CRON_DB": db, "HERMES_CRON_HEARTBEAT": "0.5",
                    "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1",
             f"--port={self.port}", "--IdentityProvider.token=tok", "--allow-root",
             f"--ServerApp.root_dir={tmp_path}", *args],
            env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True)  # as a spawner starts it: no tty
        if wait:
            wait_for(self.ready, 60, 0.2, "the server to answer")

    def call(self, path, method="GET", body=None):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/cron/{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": "token tok", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def refusal(self, path: str = "status"):
        """``(status, JSON body)`` of the error *path* answers with; None while the server
        is not up yet. A server that answers 200 fails the test."""
        import urllib.error

        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode(errors="replace")
            raise AssertionError(f"server exited: {err[-2000:]}")
        try:
            self.call(path)
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())
        except OSError:
            return None
        raise AssertionError(f"{path} answered 200")

    def ready(self):
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode(errors="replace")
            raise AssertionError(f"server exited: {err[-2000:]}")
        try:
            return self.call("status")["ticking"]
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> str:
        self.proc.send_signal(sig)
        self.proc.wait(15)
        log = self.proc.stderr.read().decode(errors="replace")
        self.proc.stderr.close()
        return log

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.proc.stderr.close()


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path, str(tmp_path / "cron.db"), "--HermesCron.handoff=False")
    yield srv.proc, srv.call, srv.db
    srv.kill()


def test_sigterm_exits_fast_and_runs_go_on(server, tmp_path):
    proc, call, db = server
    done = tmp_path / "done.txt"
    job = call("jobs", "POST", {"name": "inflight", "schedule": "@yearly",
                                "command": f"sleep 3; echo finished > {done}; exit 4"})
    run = call(f"jobs/{job['id']}/run", "POST", {})
    wait_for(lambda: call(f"runs/{run['id']}")["status"] == "running", 20, what="running")
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)
    took = time.monotonic() - started
    assert took < 2.0, f"server took {took:.2f} s to exit"
    store = SQLiteStore(db)
    assert store.get_run(run["id"]).status == "running"  # the run outlived the server
    wait_for(lambda: store.get_run(run["id"]).status != "running", 20, what="the run to end")
    final = store.get_run(run["id"])
    assert (final.status, final.exit_code) == ("failed", 4)
    assert done.read_text() == "finished\n"
    assert store.list_tickers() == []  # the server's ticker left the registry
    store.close()


def _store_status(db: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hermes_cron_ext", "--db", db, "status",
                           "--json"], capture_output=True, text=True, env=env)


def _alive_kinds(db: str) -> list[str]:
    store = SQLiteStore(db)
    try:
        now = time.time()
        return sorted(t.kind for t in store.list_tickers() if t.alive(now))
    finally:
        store.close()


@pytest.mark.slow
def test_handoff_keeps_firing_and_hands_back(tmp_path):
    db = str(tmp_path / "cron.db")
    ledger = tmp_path / "ledger"
    srv = Server(tmp_path, db)
    handoff_pid = None
    try:
        srv.call("jobs", "POST", {"name": "every-second", "schedule": "@every 1s",
                                  "overlap": "allow",
                                  "command": f'echo "$HERMES_CRON_SCHEDULED_FOR" >> {ledger}'})
        time.sleep(3)
        log = srv.stop()
        assert "handed ticking over" in log and "kill" in log
        handoff_pid = int(log.split("handed ticking over")[1].split("(pid ")[1].split(")")[0])
        wait_for(lambda: _alive_kinds(db) == ["handoff"], 15, what="the handoff daemon")
        status = json.loads(_store_status(db, srv.env).stdout)
        assert [t["pid"] for t in status["tickers"] if t["alive"]] == [handoff_pid]
        time.sleep(3)  # no server: the handoff daemon fires
        srv = Server(tmp_path, db)
        wait_for(lambda: not os.path.exists(f"/proc/{handoff_pid}"), 15,
                 what="the handoff daemon to exit by itself")
        wait_for(lambda: _alive_kinds(db) == ["server"], 15, what="only the server ticking")
        time.sleep(2)
        srv.call("jobs/every-second/pause", "POST", {})  # nothing left to hand off
        time.sleep(1.5)
        assert "handed ticking over" not in srv.stop()
    finally:
        srv.kill()
        if handoff_pid and os.path.exists(f"/proc/{handoff_pid}"):
            os.kill(handoff_pid, signal.SIGKILL)
    slots = [float(x) for x in ledger.read_text().split()]
    assert len(slots) == len(set(slots)), "a slot fired twice"
    slots.sort()
    gaps = {round(b - a) for a, b in zip(slots, slots[1:])}
    assert gaps == {1}, f"a slot was missed across a handover: gaps {gaps}"
    assert len(slots) >= 8


@pytest.mark.slow
def test_sigint_from_a_spawner_hands_off_and_jobs_keep_firing(tmp_path):
    """JupyterHub and its idle culler stop a user server with SIGINT, with no terminal on
    its stdin: the jobs keep firing through the handoff within one period, each slot
    once, and the server's ticker row is gone at once."""
    db = str(tmp_path / "cron.db")
    ledger = tmp_path / "ledger"
    srv = Server(tmp_path, db)
    handoff_pid = None
    try:
        srv.call("jobs", "POST", {"name": "every-2s", "schedule": "@every 2s",
                                  "command": f'echo "$HERMES_CRON_SCHEDULED_FOR" >> {ledger}'})
        time.sleep(3)
        log = srv.stop(signal.SIGINT)
        stopped = time.time()
        assert srv.proc.returncode == 0, log[-2000:]
        assert "handed ticking over" in log, log[-2000:]
        handoff_pid = int(log.split("handed ticking over")[1].split("(pid ")[1].split(")")[0])
        with open(f"/proc/{handoff_pid}/cmdline", "rb") as f:  # no store URL for ps to show
            assert db.encode() not in f.read()
        store = SQLiteStore(db)
        try:
            assert [t.kind for t in store.list_tickers() if t.alive()] in ([], ["handoff"])
        finally:
            store.close()
        wait_for(lambda: any(float(x) > stopped for x in ledger.read_text().split()), 2 + 8,
                 what="a slot after the stop fired by the handoff daemon")
    finally:
        srv.kill()
        if handoff_pid and os.path.exists(f"/proc/{handoff_pid}"):
            os.kill(handoff_pid, signal.SIGTERM)
            wait_for(lambda: not os.path.exists(f"/proc/{handoff_pid}"), 15,
                     what="the handoff daemon to stop")
    slots = [float(x) for x in ledger.read_text().split()]
    assert len(slots) == len(set(slots)), "a slot fired twice"


def test_a_corrupt_store_answers_503_naming_the_file_and_stops_at_once(tmp_path):
    """A broken store file must not make the API vanish (Jupyter's HTML 404s) nor hang
    the shutdown: every route answers 503 with the reason and the file."""
    import urllib.error

    db = tmp_path / "store" / "cron.db"
    db.parent.mkdir()
    db.write_bytes(b"this is not a database" * 400)
    srv = Server(tmp_path, str(db), wait=False)
    try:
        code, body = wait_for(srv.refusal, 60, 0.2, "the server to answer")
        assert code == 503 and body["error"]["code"] == "store_unavailable"
        assert str(db) in body["error"]["message"]
        assert "not a usable database" in body["error"]["message"]
        try:
            srv.call("jobs", "POST", {"name": "x", "schedule": "@daily", "command": "true"})
        except urllib.error.HTTPError as err:
            assert err.code == 503
        started = time.monotonic()
        log = srv.stop()
        assert time.monotonic() - started < 5, "the shutdown hung"
        assert "the scheduler is off" in log and "Traceback" not in log
        assert db.read_bytes() == b"this is not a database" * 400  # left as it was
    finally:
        srv.kill()


def test_handoff_off_means_loud_status(tmp_path):
    db = str(tmp_path / "cron.db")
    srv = Server(tmp_path, db, "--HermesCron.handoff=False")
    try:
        srv.call("jobs", "POST", {"name": "orphan", "schedule": "@hourly", "command": "true"})
        log = srv.stop()
        assert "handoff is off" in log
    finally:
        srv.kill()
    time.sleep(0.5)
    assert _alive_kinds(db) == []
    proc = subprocess.run([sys.executable, "-m", "hermes_cron_ext", "--db", db, "status"],
                          capture_output=True, text=True, env=srv.env)
    assert proc.returncode == 3
    assert "NO TICKER IS ALIVE: enabled jobs will NOT fire" in proc.stderr


def test_tick_and_daemon_start_runs_only_on_executors_given(cli):
    """``--executor`` (repeatable) is the daemon's and tick's allow-list: a job naming
    another executor has its run recorded failed, and nothing connects there."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        cli("add", "far", "@yearly", "--executor", f"dask://127.0.0.1:{port}", "--", "true")
        cli("add", "near", "@yearly", "--executor", "local", "--", "true")
        store = SQLiteStore(cli.db)
        far, near = store.request_run("far"), store.request_run("near")
        out = cli("tick", "--executor", "dask://127.0.0.1:1", "--executor",
                  "dask://127.0.0.1:2").stdout
        assert "started 2 run(s)" in out
        done = wait_for(lambda: (r := store.get_run(far.id)).status == "failed" and r, 20,
                        what="the refused run to be recorded")
        assert done.reason == (
            f"executor 'dask://127.0.0.1:{port}' is not one the operator allows here; "
            "allowed: local, dask://127.0.0.1:1, dask://127.0.0.1:2 (c.HermesCron.executors, "
            "or hermes-cron daemon --executor URL)")
        wait_for(lambda: store.get_run(near.id).status == "succeeded", 20,
                 what="the local run to succeed")
        with pytest.raises(BlockingIOError):  # nobody ever connected to it
            listener.accept()
        store.close()
    finally:
        listener.close()
