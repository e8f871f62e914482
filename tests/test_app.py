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

from .conftest import wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """A real jupyter server with the extension, as a user would start it."""
    port = _free_port()
    db = str(tmp_path / "cron.db")
    env = {**os.environ, "HERMES_CRON_DB": db, "HERMES_CRON_HEARTBEAT": "0.5",
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", "--IdentityProvider.token=tok", "--allow-root",
         f"--ServerApp.root_dir={tmp_path}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)

    def call(path, method="GET", body=None):
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/cron/{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": "token tok", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def ready():
        try:
            return call("status")["ticking"]
        except OSError:
            return False
    wait_for(ready, 60, 0.2, "the server to answer")
    yield proc, call, db
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    proc.stderr.close()


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
