"""Helpers of the notebook-side tests: a real Jupyter server, supervisors (fixtures:
``notebook_fixtures.py``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass

from tests.conftest import _kill_supervisors, wait_for

HEARTBEAT = "0.3"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    token: str
    db: str
    runtime_dir: str


def start_server(tmp_path, db: str, ticker: bool = True) -> Server:
    """``jupyter server`` with the extension, as a user starts it, on its own store."""
    port = _free_port()
    runtime = str(tmp_path / "runtime")
    env = {**os.environ, "HERMES_CRON_DB": db, "HERMES_CRON_HEARTBEAT": HEARTBEAT,
           "JUPYTER_RUNTIME_DIR": runtime}
    env.pop("HERMES_CRON_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", "--IdentityProvider.token=tok", "--allow-root",
         f"--ServerApp.root_dir={tmp_path}", f"--HermesCron.ticker={ticker}",
         "--HermesCron.lead=0.2", "--HermesCron.poll=0.2",
         "--HermesCron.handoff=False"],  # no daemon left behind when it stops
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"

    def ready():
        """The API answers, and (when it has one) the server's ticker has registered:
        the routes may answer a moment before the extension's ticker is up."""
        if proc.poll() is not None:
            raise AssertionError("the jupyter server exited")
        try:
            req = urllib.request.Request(url + "api/cron/status",
                                         headers={"Authorization": "token tok"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status == 200 and (json.load(resp)["ticking"] or not ticker)
        except OSError:
            return False
    wait_for(ready, 90, 0.2, "the jupyter server to answer")
    return Server(proc, url, "tok", db, runtime)


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(15)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
    _kill_supervisors(server.db)


def supervise(db: str, run_id: str) -> subprocess.Popen:
    """A supervisor for one run, as the executor starts it."""
    env = {**os.environ, "HERMES_CRON_HEARTBEAT": HEARTBEAT}
    argv = [sys.executable, "-m", "hermes_cron_ext.runtime.supervisor", db, run_id]
    return subprocess.Popen(argv, env=env, start_new_session=True)


def settle(proc: subprocess.Popen, timeout: float = 60) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
