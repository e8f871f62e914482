"""Plumbing for ``run.py``: the scratch venv, the two servers, HTTP clients, cleanup.

Nothing here measures anything; ``run.py`` holds the figures.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # bench/
from common import (  # noqa: E402,F401
    TOKEN,
    Client,
    kill_tagged,
    kill_until_gone,
    log_problems,
    log_tail,
    pct,
    proc_stat,
    stop,
    tagged_pids,
)

TAG = "HERMES_COMPARE_TAG"
JS_SPEC = os.environ.get("HERMES_COMPARE_JS_SPEC", "jupyter-scheduler==2.12.1")
VENV = os.environ.get("HERMES_COMPARE_VENV", os.path.join(HERE, ".venv"))


def log(msg: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- statistics and formatting ---------------------------------------------------------

def dur(seconds: float) -> str:
    """A duration for the table: ms below 1 s, s above; signed."""
    if seconds is None or math.isnan(seconds):
        return "n/a"
    a = abs(seconds)
    if a < 0.01:
        return f"{seconds * 1000:.2f} ms"
    if a < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def iso_ts(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# -- HTTP ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prober:
    """GET *path* every *interval* on a connection of its own, from a thread, until stopped."""

    def __init__(self, port: int, path: str = "/api/status", interval: float = 0.02):
        self.client = Client(port)
        self.path = path
        self.interval = interval
        self.samples: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                status, _, took = self.client.request("GET", self.path)
                if status == 200:
                    self.samples.append(took)
                else:
                    self.errors += 1
            except (OSError, http.client.HTTPException):
                self.errors += 1
            self._stop.wait(self.interval)

    def start(self) -> Prober:
        self._thread.start()
        return self

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        self.client.close()
        return self.samples


# -- the scratch virtual environment ------------------------------------------------------

def venv_python(venv: str = VENV) -> str:
    return os.path.join(venv, "bin", "python")


def probe_venv(venv: str, code: str) -> str | None:
    """What *code* prints in *venv*'s Python, or None when the venv is not usable."""
    if not os.path.exists(venv_python(venv)):
        return None
    proc = subprocess.run([venv_python(venv), "-c", code], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_peer_venv(venv: str, specs: list[str], probe: str, wanted: str) -> tuple[str, float]:
    """Create (or reuse) a scratch venv with *specs* from PyPI; ``(version, seconds spent)``.
    *probe* is Python code that prints the peer's version; the venv is reused when it
    prints *wanted*."""
    t0 = time.time()
    version = probe_venv(venv, probe)
    if version and (not wanted or version == wanted):
        log(f"reusing {venv} ({version})")
        return version, 0.0
    log(f"creating {venv} with {' '.join(specs)}")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([venv_python(venv), "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", *specs], check=True)
    version = probe_venv(venv, probe)
    if not version:
        raise RuntimeError(f"{venv}: the peer does not import after the install")
    return version, time.time() - t0


def ensure_venv() -> tuple[str, float]:
    """The venv with jupyter-scheduler; ``(version, seconds spent)``."""
    return ensure_peer_venv(
        VENV, [JS_SPEC, "ipykernel"],
        "import ipykernel, jupyter_server, jupyter_scheduler as j; print(j.__version__)",
        JS_SPEC.partition("==")[2])


# -- CPU time of process trees (/proc) --------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def all_stats() -> dict[int, list[bytes]]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = proc_stat(int(name))
            if fields:
                out[int(name)] = fields
    return out


def tree(roots: list[int], stats: dict[int, list[bytes]] | None = None) -> list[int]:
    """*roots* and all their live descendants."""
    stats = all_stats() if stats is None else stats
    kids: dict[int, list[int]] = {}
    for pid, f in stats.items():
        kids.setdefault(int(f[1]), []).append(pid)
    out, todo = [], [r for r in roots if r in stats]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += kids.get(pid, [])
    return out


def session_pids(sid: int) -> list[int]:
    """Every live process of session *sid* (field 6 of /proc/PID/stat; zombies not)."""
    return [pid for pid, f in all_stats().items() if int(f[3]) == sid and f[0] != b"Z"]


def tree_ticks(roots: list[int]) -> tuple[int, int]:
    """``(clock ticks, processes)``: utime + stime + cutime + cstime summed over *roots*
    and their descendants. A child that exits and is reaped moves its time into its
    parent's cutime/cstime, so a delta of this sum counts each CPU second once."""
    stats = all_stats()
    pids = tree(roots, stats)
    return sum(sum(int(x) for x in stats[p][11:15]) for p in pids), len(pids)


def idle_cpu(roots_of: dict[str, list[int]], seconds: float) -> dict[str, tuple[float, int]]:
    """CPU use of each named group of process trees over the same *seconds*:
    ``name -> (% of one core, processes at the end)``."""
    before = {k: tree_ticks(v)[0] for k, v in roots_of.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    out = {}
    for k, v in roots_of.items():
        ticks, n = tree_ticks(v)
        out[k] = ((ticks - before[k]) / CLK_TCK / wall * 100.0, n)
    return out


def kill_sessions(sids: list[int], grace: float = 10.0) -> list[str]:
    """SIGTERM every process of these sessions, SIGKILL what is left after *grace*;
    the command lines of what had to be killed. (Processes that rename themselves,
    as Airflow's do with setproctitle, lose their /proc environ, so the tag cannot
    find them: their session can.)"""
    for pid in (p for s in sids for p in session_pids(s)):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + grace
    while time.time() < deadline and any(session_pids(s) for s in sids):
        time.sleep(0.2)
    return kill_until_gone(lambda: [p for s in sids for p in session_pids(s)], 20, 0.2)


# -- the servers ----------------------------------------------------------------------------

class Server:
    """One ``jupyter server`` on 127.0.0.1 in a directory of its own."""

    label = "server"

    def __init__(self, root: str, env: dict[str, str]):
        self.root = root
        os.makedirs(root, exist_ok=True)
        self.env = {**env, "JUPYTER_RUNTIME_DIR": os.path.join(root, "runtime"),
                    "JUPYTER_DATA_DIR": os.path.join(root, "data"),
                    "JUPYTER_CONFIG_DIR": os.path.join(root, "config"),
                    "IPYTHONDIR": os.path.join(root, "ipython")}
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(root, "server.log")
        self.started_at = 0.0
        self.api = None  # a Client once ready

    def argv(self) -> list[str]:
        raise NotImplementedError

    def ready_path(self) -> str:
        raise NotImplementedError

    def ready_check(self, body: bytes) -> bool:
        return True

    def launch(self) -> None:
        """Start the process (returns at once; ``wait_ready`` waits for it)."""
        self.port = self.port or free_port()
        base = [f"--port={self.port}", "--no-browser", "--ip=127.0.0.1", "--allow-root",
                f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={self.root}",
                "--ServerApp.port_retries=0"]
        with open(self.log_path, "ab") as out:
            self.started_at = time.time()
            self.proc = subprocess.Popen(
                self.argv() + base, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, env=self.env, cwd=self.root, start_new_session=True)

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds from launch until the ready path answers as expected."""
        client = Client(self.port, timeout=5.0)
        try:
            while time.time() - self.started_at < timeout:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.label} exited {self.proc.returncode}: "
                                       f"{self.log_tail()}")
                try:
                    status, raw, _ = client.request("GET", self.ready_path())
                    if status == 200 and self.ready_check(raw):
                        self.api = Client(self.port)
                        return time.time() - self.started_at
                except OSError:
                    pass
                time.sleep(0.2)
        finally:
            client.close()
        raise RuntimeError(f"{self.label} not ready after {timeout:.0f} s: {self.log_tail()}")

    def kill9(self) -> None:
        """SIGKILL the server process only (not its process group)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.api is not None:
            self.api.close()
            self.api = None

    def stop(self, grace: float = 10.0) -> None:
        if self.api is not None:
            self.api.close()
            self.api = None
        if self.proc is not None:
            stop(self.proc, grace)

    def log_tail(self, n: int = 2000) -> str:
        return log_tail(self.log_path, n)

    def log_problems(self) -> list[str]:
        return log_problems(self.log_path)


def wait_all(servers: list[Server]) -> dict[str, float]:
    """Wait for servers launched together, each timed on its own; ``label -> seconds``."""
    with ThreadPoolExecutor(len(servers)) as pool:
        futures = {s.label: pool.submit(s.wait_ready) for s in servers}
        return {label: f.result() for label, f in futures.items()}


class Ours(Server):
    """hermes-cron-ext: this interpreter's jupyter_server with our extension."""

    label = "hermes-cron-ext"

    def __init__(self, root: str, env: dict[str, str]):
        super().__init__(root, env)
        self.db = os.path.join(root, "store", "hermes-cron.db")
        os.makedirs(os.path.dirname(self.db), exist_ok=True)
        self.env["HERMES_CRON_DB"] = self.db

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "jupyter_server", "--HermesCron.handoff=False"]

    def ready_path(self) -> str:
        return "/api/cron/status"

    def ready_check(self, body: bytes) -> bool:
        return bool(json.loads(body).get("ticking"))


class Theirs(Server):
    """jupyter-scheduler: the scratch venv's ``jupyter server``."""

    label = "jupyter-scheduler"

    def __init__(self, root: str, env: dict[str, str]):
        super().__init__(root, env)
        self.db = os.path.join(root, "scheduler.sqlite")

    def argv(self) -> list[str]:
        return [os.path.join(VENV, "bin", "jupyter"), "server",
                f"--SchedulerApp.db_url=sqlite:///{self.db}"]

    def ready_path(self) -> str:
        return "/scheduler/runtime_environments"

    def ready_check(self, body: bytes) -> bool:
        return bool(json.loads(body))


# -- the sandbox: temp dirs, tagged processes, cleanup ----------------------------------------

class Sandbox:
    """A temp dir for both servers; every process started carries ``TAG=<dir>`` in its
    environment (servers pass it on to supervisors, payloads, spawned children, kernels),
    so cleanup finds and kills leftovers by pid."""

    def __init__(self, keep: bool = False):
        self.dir = tempfile.mkdtemp(prefix="hermes-compare-", dir="/tmp")
        self.keep = keep
        self.marker = f"{TAG}={self.dir}".encode() + b"\0"
        env = {**os.environ, TAG: self.dir, "PYTHONUNBUFFERED": "1"}
        env.pop("HERMES_CRON_DB", None)
        self.ours = Ours(os.path.join(self.dir, "ours"), env)
        self.theirs = Theirs(os.path.join(self.dir, "theirs"), env)
        self.helpers: list[subprocess.Popen] = []
        self.killed: list[str] = []

    def tagged_pids(self) -> list[int]:
        return tagged_pids(self.marker)

    def cleanup(self) -> None:
        for proc in self.helpers:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for server in (self.ours, self.theirs):
            server.stop()
        self.killed += kill_tagged(self.marker)
        if self.keep:
            log(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# -- seeding rows straight into a store -----------------------------------------------------

def clone_rows(db: str, table: str, template: dict, rows: list[dict]) -> None:
    """Insert copies of *template* (a full row) with each dict of *rows* laid over it,
    in one transaction. Columns come from the template, so the schema is the store's own."""
    cols = list(template)
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    conn = sqlite3.connect(db, timeout=30.0)
    try:
        with conn:
            conn.executemany(sql, ([{**template, **r}[c] for c in cols] for r in rows))
    finally:
        conn.close()


def fetch_row(db: str, sql: str, args: tuple = ()) -> dict:
    conn = sqlite3.connect(db, timeout=30.0)
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute(sql, args).fetchone()
    finally:
        conn.close()
    if row is None:
        raise RuntimeError(f"{db}: no row for {sql} {args}")
    return dict(row)


def notebook(source: str) -> dict:
    """A one-cell nbformat 4.5 notebook on the python3 kernel."""
    return {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {},
                   "outputs": [], "source": source}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }


def write_notebook(path: str, source: str) -> None:
    with open(path, "w") as f:
        json.dump(notebook(source), f)
