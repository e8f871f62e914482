"""Shared fixtures: a real store file, the real CLI and daemon as subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hermes_cron_ext.jobspec import validate_new
from hermes_cron_ext.store import SQLiteStore

pytest_plugins = ("pytest_jupyter.jupyter_server",)


class FakeClock:
    """A clock the test moves by hand (claims, misfire, gc)."""

    def __init__(self, start: float = 1_800_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "store" / "hermes-cron.db")


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(db_path, clock):
    os.makedirs(os.path.dirname(db_path), exist_ok=True)
    s = SQLiteStore(db_path, clock=clock)
    yield s
    s.close()


@pytest.fixture
def real_store(db_path):
    os.makedirs(os.path.dirname(db_path), exist_ok=True)
    s = SQLiteStore(db_path)
    yield s
    s.close()


def make_job(store, name="job", schedule="*/5 * * * *", **extra):
    data = {"name": name, "schedule": schedule, "timezone": "UTC", "command": "true", **extra}
    job, _ = store.create_job(validate_new(data))
    return job


class CLI:
    """Runs ``hermes-cron`` as a user would, against one store."""

    def __init__(self, db: str, cwd: str):
        self.db = db
        self.cwd = cwd
        self.env = {**os.environ, "HERMES_CRON_DB": db, "HERMES_CRON_HEARTBEAT": "0.5"}
        self.procs: list[subprocess.Popen] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "hermes_cron_ext.cli", *args]

    def __call__(self, *args: str, check: bool = True, timeout: float = 60):
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.env,
                              cwd=self.cwd, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"hermes-cron {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, *args: str):
        return json.loads(self(*args, "--json").stdout)

    def start(self, *args: str, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(self.argv(*args), env=self.env, cwd=self.cwd,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
        self.procs.append(proc)
        return proc

    def daemon(self) -> subprocess.Popen:
        proc = self.start("daemon")
        # ready when its ticker row shows up
        deadline = time.time() + 30
        while time.time() < deadline:
            status = json.loads(self("status", "--json", check=False).stdout or "{}")
            if any(t["pid"] == proc.pid and t["alive"] for t in status.get("tickers", [])):
                return proc
            if proc.poll() is not None:
                raise AssertionError(f"daemon exited: {proc.stderr.read().decode()}")
            time.sleep(0.1)
        raise AssertionError("daemon did not register")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for f in (proc.stdout, proc.stderr):
                if f:
                    f.close()


@pytest.fixture
def cli(tmp_path, db_path):
    runner = CLI(db_path, str(tmp_path))
    yield runner
    runner.stop_all()
    _kill_supervisors(db_path)


def _kill_supervisors(db_path: str) -> None:
    """Leave no supervisor or payload of this test's store behind."""
    if not os.path.exists(db_path):
        return
    s = SQLiteStore(db_path)
    try:
        for run in s.active_runs():
            for pid in (run.pid,):
                if pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            row = s.db.execute("SELECT payload_pid FROM runs WHERE id = ?", (run.id,)).fetchone()
            if row and row[0]:
                try:
                    os.killpg(row[0], signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
    finally:
        s.close()


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
