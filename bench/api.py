"""REST and SSE benchmarks of hermes-cron-ext, against a real ``jupyter server``.

    python bench/api.py [--quick] [--only 1,2,3,4] [--out PATH] [--keep]

1. run-history pages over 1,000,000 stored runs (``GET /jobs/{id}/runs``, and the next
   page through the returned cursor);
2. an unrelated GET while one client lists jobs in a loop and 100 SSE clients stream;
3. live output latency, payload ``print`` -> SSE client, 100 clients, 10 lines/s;
4. a flat-out producer (>= 100 MB) with 100 SSE clients: client lag, server RSS growth,
   unrelated GET latency.

Prints a markdown table (figure | goal | measured | pass?) and writes it to
``bench/results/api-latest.md``. Each server runs on a store of its own in a temp dir
under /tmp; the load (SSE clients, the job lister) runs in helper processes (this script
with ``--worker``), so it never shares the server's process or the prober's. Every
process started carries a marker in its environment (the server passes it on to the
fork server, supervisors and payloads) and is killed by pid at the end; active runs are
cancelled through the API first, and the temp dirs are removed.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import http.client
import json
import math
import os
import platform
import random
import resource
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from datetime import UTC, datetime

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import (  # noqa: E402
    TOKEN,
    Client,
    Result,
    Row,
    kill_tagged,
    log_problems,
    log_tail,
    mib,
    pct,
    save,
    spread,
    tagged_pids,
)

TAG = "HERMES_BENCH_TAG"
NEVER = "0 3 1 1 *"  # a schedule that does not fire during the bench
FIGURES = (1, 2, 3, 4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return math.nan
    fields = data[data.rfind(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss(pid: int) -> int:
    """VmRSS of a process, in bytes (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# -- sandbox: a temp store, a jupyter server, helpers, and cleanup ------------------

class Sandbox:
    """A temp dir with one store and one ``jupyter server`` on it; leaves nothing behind."""

    def __init__(self, name: str, keep: bool = False):
        self.dir = tempfile.mkdtemp(prefix=f"hermes-bench-api-{name}-", dir="/tmp")
        self.db = os.path.join(self.dir, "store", "hermes-cron.db")
        os.makedirs(os.path.dirname(self.db))
        self.keep = keep
        self.marker = f"{TAG}={self.dir}".encode() + b"\0"
        self.env = {**os.environ, "HERMES_CRON_DB": self.db, TAG: self.dir,
                    "JUPYTER_RUNTIME_DIR": os.path.join(self.dir, "runtime")}
        self.server: subprocess.Popen | None = None
        self.port = 0
        self.log_path = os.path.join(self.dir, "server.log")
        self.helpers: list[subprocess.Popen] = []
        self.killed: list[str] = []  # what cleanup had to kill (should be nothing)

    # -- the server --------------------------------------------------------------
    def start_server(self, timeout: float = 90.0) -> float:
        """Start ``jupyter server`` with the extension and its ticker; seconds until ready."""
        self.port = free_port()
        with open(self.log_path, "wb") as log:
            t0 = time.perf_counter()
            self.server = subprocess.Popen(
                [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1",
                 f"--port={self.port}", f"--IdentityProvider.token={TOKEN}", "--allow-root",
                 f"--ServerApp.root_dir={self.dir}", "--HermesCron.ticker=True",
                 # no detached daemon taking over the store when the bench stops the server
                 "--HermesCron.handoff=False"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env, cwd=self.dir, start_new_session=True)
        # ready: the API answers and the server's ticker has registered in the store
        # (not /api/cron/status: it aggregates over every run, seconds at 1M runs)
        client = Client(self.port, timeout=10.0)
        try:
            while time.perf_counter() - t0 < timeout:
                if self.server.poll() is not None:
                    raise RuntimeError(f"jupyter server exited {self.server.returncode}: "
                                       f"{self.log_tail()}")
                try:
                    status, _, _ = client.request("GET", "/api/cron/jobs?limit=1")
                    if status == 200 and self.server_ticker():
                        return time.perf_counter() - t0
                except (OSError, http.client.HTTPException):
                    pass
                time.sleep(0.2)
        finally:
            client.close()
        raise RuntimeError(f"jupyter server not ready after {timeout:.0f} s: {self.log_tail()}")

    def server_ticker(self) -> bool:
        db = sqlite3.connect(self.db, timeout=10.0)
        try:
            return db.execute("SELECT 1 FROM tickers WHERE kind = 'server' AND pid = ?",
                              (self.server.pid,)).fetchone() is not None
        except sqlite3.OperationalError:  # no schema yet
            return False
        finally:
            db.close()

    def log_tail(self, n: int = 2000) -> str:
        return log_tail(self.log_path, n)

    def log_problems(self) -> list[str]:
        return log_problems(self.log_path)

    def stop_server(self) -> None:
        proc = self.server
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # -- helpers: load generators in processes of their own -----------------------
    def worker(self, cfg: dict) -> tuple[subprocess.Popen, str]:
        """Start this script as ``--worker``; it writes its JSON result to the returned path."""
        out = os.path.join(self.dir, f"worker-{len(self.helpers)}.json")
        cfg = {**cfg, "port": self.port, "out": out}
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker",
                                 json.dumps(cfg)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=None, env=self.env, cwd=self.dir)
        self.helpers.append(proc)
        return proc, out

    @staticmethod
    def wait_ready(proc: subprocess.Popen, timeout: float) -> dict:
        """The worker's first stdout line: ``{"ready": n, "at": t}`` once its clients are in."""
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError(f"worker not ready after {timeout:.0f} s")
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited {proc.wait()} before it was ready")
        return json.loads(line)

    @staticmethod
    def collect(proc: subprocess.Popen, out: str, timeout: float) -> dict:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"worker still busy after {timeout:.0f} s")
        proc.stdout.close()
        with open(out) as f:
            return json.load(f)

    # -- cleanup ----------------------------------------------------------------------
    def tagged_pids(self) -> list[int]:
        return tagged_pids(self.marker)

    def cancel_active(self, client: Client, timeout: float = 20.0) -> None:
        """Cancel every queued or running run through the API and wait for them to end."""
        deadline = time.time() + timeout
        for status in ("running", "queued"):
            page = client.json("GET", f"/api/cron/runs?status={status}&limit=500")
            for run in page["runs"]:
                client.request("POST", f"/api/cron/runs/{run['id']}/cancel")
        while time.time() < deadline:
            active = sum(len(client.json("GET", f"/api/cron/runs?status={s}&limit=500")["runs"])
                         for s in ("running", "queued"))
            if not active:
                return
            time.sleep(0.2)

    def cleanup(self) -> None:
        if self.server is not None and self.server.poll() is None:
            client = Client(self.port, timeout=10.0)
            try:
                self.cancel_active(client)
            except (OSError, RuntimeError, http.client.HTTPException):
                pass
            finally:
                client.close()
        for proc in self.helpers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self.stop_server()
        self.killed += kill_tagged(self.marker)
        if self.keep:
            print(f"[bench] kept {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def create_jobs(db: str, specs: list[dict]) -> dict[str, str]:
    """Create jobs the way every entry point does (validated, one store transaction each);
    returns name -> id."""
    from hermes_cron_ext.domain.jobspec import validate_new
    from hermes_cron_ext.store import open_store

    store = open_store(db)
    try:
        return {s["name"]: store.create_job(validate_new(s))[0].id for s in specs}
    finally:
        store.close()


def run_job(client: Client, job_id: str) -> str:
    return client.json("POST", f"/api/cron/jobs/{job_id}/run", {}, expect=(202,))["id"]


def wait_status(client: Client, run_id: str, statuses: set[str], timeout: float) -> dict:
    deadline = time.time() + timeout
    while True:
        run = client.json("GET", f"/api/cron/runs/{run_id}")
        if run["status"] in statuses or time.time() > deadline:
            return run
        time.sleep(0.1)


class Prober:
    """The unrelated reader: GETs that share nothing with the load, each path on a
    keep-alive connection of its own, until stopped. Jupyter's own ``/api/status``
    every 20 ms; the scheduler's ``/api/cron/status`` (what the panel's status pip
    polls, and it reads the store) every 100 ms, so the prober is not itself a load."""

    PATHS = {"/api/status": 0.02, "/api/cron/status": 0.1}

    def __init__(self, port: int):
        self.clients = {p: Client(port) for p in self.PATHS}
        self.samples: dict[str, list[float]] = {p: [] for p in self.PATHS}
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        due = dict.fromkeys(self.PATHS, time.monotonic())
        while not self._stop.is_set():
            path = min(due, key=due.get)
            if self._stop.wait(max(0.0, due[path] - time.monotonic())):
                break
            try:
                status, _, took = self.clients[path].request("GET", path)
                if status == 200:
                    self.samples[path].append(took)
                else:
                    self.errors += 1
            except (OSError, http.client.HTTPException):
                self.errors += 1
            due[path] = max(due[path] + self.PATHS[path], time.monotonic())

    def start(self) -> Prober:
        self._thread.start()
        return self

    def stop(self) -> dict[str, list[float]]:
        self._stop.set()
        self._thread.join()
        for c in self.clients.values():
            c.close()
        return self.samples


class RSSSampler:
    """VmRSS of the server every *interval* while the load runs."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid = pid
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append(rss(self.pid))
            self._stop.wait(self.interval)

    def start(self) -> RSSSampler:
        self._thread.start()
        return self

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join()
        return self.samples


class FileGrowth:
    """When each byte of a run's output log appeared on disk (its size polled every 2 ms),
    to split a latency into payload -> log (supervisor) and log -> client (server)."""

    def __init__(self, path: str, interval: float = 0.002):
        self.path = path
        self.interval = interval
        self.times: list[float] = []
        self.sizes: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        last = -1
        while not self._stop.is_set():
            try:
                size = os.stat(self.path).st_size
            except FileNotFoundError:
                size = 0
            if size != last:
                self.times.append(time.time())
                self.sizes.append(size)
                last = size
            self._stop.wait(self.interval)

    def start(self) -> FileGrowth:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def appeared(self, offset: int) -> float:
        """When the log first held at least *offset* bytes (nan if never seen)."""
        i = bisect.bisect_left(self.sizes, offset)
        return self.times[i] if i < len(self.times) else math.nan


def split_rows(figure: str, triples: list[tuple[float, float, float]]) -> list[Row]:
    """Rows for ``(written, on disk, received)`` triples: where the time went."""
    sup = [disk - w for w, disk, r in triples if not math.isnan(disk)]
    srv = [r - disk for w, disk, r in triples if not math.isnan(disk)]
    return [Row(f"{figure}: of which payload -> output log (pipe + supervisor)", "–",
                spread(sup)),
            Row(f"{figure}: of which output log -> SSE client (server + client)", "–",
                spread(srv))]


def log_path(box: Sandbox, run_id: str) -> str:
    """Where the store keeps a run's output log (asked of the store, not guessed)."""
    from hermes_cron_ext.store import open_store

    store = open_store(box.db)
    try:
        return store.log_path(run_id)
    finally:
        store.close()


def probe_rows(figure: str, samples: dict[str, list[float]], goal: float,
               errors: int) -> list[Row]:
    rows = []
    for path, values in samples.items():
        p99 = pct(values, 99)
        rows.append(Row(f"{figure}: `GET {path}` (unrelated reader)", f"p99 ≤ {goal:g} ms",
                        spread(values) + (f"; {errors} errors" if errors else ""),
                        bool(values) and p99 <= goal / 1000 and not errors))
    return rows


# -- 1. run history over 1,000,000 runs ------------------------------------------------

def load_runs(db_path: str, job_ids: list[str], total: int, seed: int = 7) -> float:
    """Bulk-insert *total* finished runs, spread evenly over *job_ids*, newest now.

    Rows are what the store writes for scheduled runs (every NOT NULL column, a
    unique slot per job, ``fire_at`` as the ordering key); inserted with executemany
    in id order, the store's secondary indexes rebuilt after, so the load takes
    seconds, not minutes. Returns seconds taken."""
    rng = random.Random(seed)
    now = time.time()
    per_job = total // len(job_ids)
    t0 = time.perf_counter()
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-400000")
    specs = {j: json.dumps({"job_name": f"hist-{k:03d}", "kind": "command",
                            "command": "true", "overlap": "forbid"})
             for k, j in enumerate(job_ids)}
    rows = []
    n_jobs = len(job_ids)
    for i in range(per_job):
        for k, job_id in enumerate(job_ids):
            fire = now - (i * n_jobs + k + 1) * 10.0  # one run every 10 s, all jobs interleaved
            r = rng.random()
            status, code = (("succeeded", 0) if r < 0.9 else ("failed", 1) if r < 0.98
                            else ("timed_out", 124))
            dur = rng.uniform(0.05, 5.0)
            rows.append((f"r_{rng.getrandbits(64):016x}", job_id, status, "schedule", 1, fire,
                         fire, fire - 2.0, fire - 2.0, fire + 0.002, fire + 0.002 + dur, code,
                         fire + dur, 4242, "bench-host", rng.randrange(50, 5000), specs[job_id]))
    rows.sort()  # id order: the primary key grows at its end
    # build the secondary indexes once, after the load (as a bulk load does), from the
    # store's own DDL
    indexes = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                         "AND tbl_name = 'runs' AND sql IS NOT NULL").fetchall()
    for name, _ in indexes:
        db.execute(f"DROP INDEX {name}")
    sql = ("INSERT INTO runs (id, job_id, status, trigger, attempt, scheduled_for, fire_at, "
           "queued_at, dispatched_at, started_at, finished_at, exit_code, heartbeat_at, pid, "
           "host, output_bytes, spec) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    for i in range(0, len(rows), 100_000):
        db.execute("BEGIN IMMEDIATE")
        db.executemany(sql, rows[i:i + 100_000])
        db.execute("COMMIT")
    for _, ddl in indexes:
        db.execute(ddl)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return time.perf_counter() - t0


def in_process_page(db: str, job_id: str, reps: int) -> list[float]:
    """What the store and serialisation cost alone, to tell them from HTTP and the box."""
    from hermes_cron_ext.store import open_store

    store = open_store(db)
    out = []
    try:
        for i in range(reps + 20):
            t0 = time.perf_counter()
            page = store.list_runs(job_id, limit=50)
            json.dumps({"runs": [r.to_json() for r in page.items], "cursor": page.cursor})
            if i >= 20:
                out.append(time.perf_counter() - t0)
    finally:
        store.close()
    return out


def status_under(port: int, page: str, n: int = 3) -> tuple[list[float], list[float]]:
    """``/api/cron/status`` alone, then a runs page sent 50 ms into one: the status
    handler reads the whole runs table on the store's only thread, and every other
    API call waits behind it."""
    alone, blocked = [], []
    probe, other = Client(port, timeout=600.0), Client(port, timeout=600.0)
    try:
        for _ in range(n):
            alone.append(probe.request("GET", "/api/cron/status")[2])
        for _ in range(n):
            slow = threading.Thread(target=probe.request, args=("GET", "/api/cron/status"))
            slow.start()
            time.sleep(0.05)
            blocked.append(other.request("GET", page)[2])
            slow.join()
    finally:
        probe.close()
        other.close()
    return alone, blocked


def fig_history(quick: bool, keep: bool) -> Result:
    """Why: run history is the page users open most; it must be a range scan on
    ``runs_by_job`` whatever the table's size, and so must the page after it."""
    res = Result()
    total = 100_000 if quick else 1_000_000
    n_jobs, reps = 100, (300 if quick else 1000)
    box = Sandbox("history", keep)
    try:
        ids = create_jobs(box.db, [{"name": f"hist-{k:03d}", "schedule": NEVER,
                                    "command": "true"} for k in range(n_jobs)])
        job_ids = list(ids.values())
        took = load_runs(box.db, job_ids, total)
        size = os.path.getsize(box.db)
        target = job_ids[n_jobs // 2]
        probe_db = sqlite3.connect(box.db)
        plan = " / ".join(r[-1] for r in probe_db.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM runs WHERE job_id = ? "
            "AND (fire_at < ? OR (fire_at = ? AND id < ?)) "
            "ORDER BY fire_at DESC, id DESC LIMIT 51", (target, 0, 0, "")))
        truth = [r[0] for r in probe_db.execute(
            "SELECT id FROM runs WHERE job_id = ? ORDER BY fire_at DESC, id DESC", (target,))]
        probe_db.close()
        res.rows.append(Row(f"1: bulk load {total:,} runs ({n_jobs} jobs) with executemany",
                            "–", f"{took:.1f} s; store {mib(size)}"))
        ready = box.start_server()
        res.notes.append(f"1: server ready in {ready:.1f} s; plan of a cursor page: {plan}")
        client = Client(box.port)
        first = f"/api/cron/jobs/{target}/runs?limit=50"
        for _ in range(50):  # warm: connection, caches, the page cache of the index
            client.request("GET", first)
        # walk every page once: the ids must be exactly the job's, newest first; the
        # server has rendered none of these runs yet (it keeps finished runs' JSON)
        got, cursors, cur, cold = [], [], None, []
        while True:
            status, raw, dt = client.request("GET", first + (
                f"&cursor={urllib.parse.quote(cur)}" if cur else ""))
            if status != 200:
                raise RuntimeError(f"GET runs page -> {status}: {raw[:300]!r}")
            page = json.loads(raw)
            if cur:
                cold.append(dt)
            got += [r["id"] for r in page["runs"]]
            cur = page["cursor"]
            if not cur:
                break
            cursors.append(cur)
        correct = got == truth
        second = f"{first}&cursor={urllib.parse.quote(cursors[0])}"
        deepest = f"{first}&cursor={urllib.parse.quote(cursors[-1])}"
        series: dict[str, list[float]] = {"/api/status": [], first: [], second: [],
                                          deepest: []}
        for _ in range(reps):  # interleaved, so noise hits every series alike
            for path, out in series.items():
                status, _, dt = client.request("GET", path)
                if status == 200:
                    out.append(dt)
        client.close()
        status_t, blocked = status_under(box.port, first)
        inproc = in_process_page(box.db, target, reps)
        for name, path in (("newest 50 runs", first), ("next page via `cursor`", second)):
            values = series[path]
            res.rows.append(Row(
                f"1: `GET /jobs/{{id}}/runs?limit=50`, {name}, {total:,} runs stored",
                "p50 ≤ 3 ms (p99 reported)", spread(values),
                bool(values) and pct(values, 50) <= 0.003 and correct))
        res.rows.append(Row(
            f"1: the same, deepest page (runs {len(truth) - 49:,}-{len(truth):,} of the job)",
            "–", spread(series[deepest])))
        res.rows.append(Row(
            "1: the same, each page's first view (walking all pages once: no run of it "
            "rendered before)", "–", spread(cold)))
        res.rows.append(Row("1: floor: `GET /api/status` (Jupyter's own, no store)", "–",
                            spread(series["/api/status"])))
        res.rows.append(Row("1: in-process share: `store.list_runs` + `to_json` + "
                            "`json.dumps`, newest 50 (no HTTP)", "–", spread(inproc)))
        res.rows.append(Row(f"1: `GET /api/cron/status` with {total:,} runs stored", "–",
                            spread(status_t)))
        res.rows.append(Row("1: newest-50 page sent while one `GET /api/cron/status` runs",
                            "–", spread(blocked)))
        res.notes.append(
            f"1: pages correct (walking all {len(cursors) + 1} pages through `cursor` gives "
            f"the job's {len(truth):,} ids in order, as SQL over the file): {correct}; "
            f"{reps} requests per series on one keep-alive connection, series interleaved.")
        res.notes.extend(f"1: server log: {p}" for p in box.log_problems())
    finally:
        box.cleanup()
        if box.killed:
            res.notes.append(f"1: cleanup killed {len(box.killed)} leftover process(es) "
                             f"after the server stopped: {box.killed}")
    return res


# -- 2..4: live streams ------------------------------------------------------------------

LINES_CODE = """import time
time.sleep({delay})
for i in range({lines}):
    print(f'{{time.time():.6f}} {{i}}', flush=True)
    time.sleep(0.1)
"""

FLOOD_CODE = """import os, time
time.sleep({delay})
total, seq, pad, written = {total}, 0, 'x' * 80, 0
while written < total:
    t = f'{{time.time():.6f}}'
    block = ''.join(f'{{t}} {{seq + k:09d}} {{pad}}\\n' for k in range(160)).encode()
    seq += 160
    view = memoryview(block)
    while view:
        view = view[os.write(1, view):]
    written += len(block)
"""


def flood_bytes(quick: bool) -> int:
    """Past the 10 MiB cap either way; >= 100 MB for the real figure."""
    return (24 if quick else 100) * 1_048_576


def live_jobs(quick: bool) -> list[dict]:
    """1,000 idle jobs (what the lister pages through) and one payload job per figure."""
    jobs = [{"name": f"idle-{k:04d}", "schedule": NEVER, "command": "true"}
            for k in range(1000)]
    dur2 = 15 if quick else 30
    lines3 = 100 if quick else 300
    jobs += [
        {"name": "ticker-lines", "schedule": NEVER, "kind": "python",
         "code": LINES_CODE.format(delay=0, lines=(dur2 + 60) * 10)},
        {"name": "lat", "schedule": NEVER, "kind": "python",
         "code": LINES_CODE.format(delay=5, lines=lines3)},
        {"name": "lat1", "schedule": NEVER, "kind": "python",
         "code": LINES_CODE.format(delay=2, lines=50)},
        {"name": "flood", "schedule": NEVER, "kind": "python",
         "code": FLOOD_CODE.format(delay=5, total=flood_bytes(quick))},
    ]
    return jobs


def fig_unrelated_get(box: Sandbox, ids: dict, quick: bool) -> Result:
    """Why: a busy stream or a big list must not make the rest of Jupyter (contents,
    kernels, the panel's status pip) wait: no database call or stream loop may block
    the tornado loop."""
    res = Result()
    duration, n = (15 if quick else 30), 100
    client = Client(box.port)
    run_id = run_job(client, ids["ticker-lines"])
    run = wait_status(client, run_id, {"running"} | {"failed", "succeeded", "lost"}, 60)
    if run["status"] != "running":
        raise RuntimeError(f"payload run is {run['status']}: {run.get('reason')}")
    sse, sse_out = box.worker({"mode": "sse", "path": f"/api/cron/runs/{run_id}/stream",
                               "clients": n, "deadline": duration + 120, "parse": "none"})
    ready = box.wait_ready(sse, 60)
    lister, lister_out = box.worker({"mode": "lister", "duration": duration})
    box.wait_ready(lister, 30)
    prober = Prober(box.port).start()
    time.sleep(duration)
    samples = prober.stop()
    listed = box.collect(lister, lister_out, 60)
    client.request("POST", f"/api/cron/runs/{run_id}/cancel")
    streamed = box.collect(sse, sse_out, 60)
    wait_status(client, run_id, {"cancelled", "failed", "succeeded", "lost"}, 30)
    client.close()
    res.rows += probe_rows("2", samples, 25, prober.errors)
    lines = [c["lines"] for c in streamed["clients"]]
    res.rows.append(Row(
        "2: load: job lister (`GET /jobs?limit=100`, all 10 pages of 1,000 jobs, in a loop)",
        "–", f"{len(listed['lat']):,} requests in {duration} s, {spread(listed['lat'])}"
             + (f"; {listed['errors']} errors" if listed["errors"] else "")))
    res.rows.append(Row(
        f"2: load: {n} SSE clients on a run printing 10 lines/s", f"all {n} connected",
        f"{ready['ready']}/{n} connected; output lines per client "
        f"min {min(lines)} / max {max(lines)}; {sum(c['errors'] for c in streamed['clients'])}"
        " errors", ready["ready"] == n))
    return res


def stream_lines(box: Sandbox, job_id: str, n: int, lines: int) -> dict:
    """Run *job_id* (10 stamped lines/s) with *n* SSE clients; every line's
    ``(written, on disk, received)``, the lines per client, clients that got ``end``."""
    client = Client(box.port)
    cpu0, t0 = cpu_seconds(box.server.pid), time.time()
    run_id = run_job(client, job_id)
    disk = FileGrowth(log_path(box, run_id)).start()
    sse, sse_out = box.worker({"mode": "sse", "path": f"/api/cron/runs/{run_id}/stream",
                               "clients": n, "deadline": lines / 10 + 120, "parse": "lines"})
    try:
        ready = box.wait_ready(sse, 60)
        streamed = box.collect(sse, sse_out, lines / 10 + 150)
    finally:
        disk.stop()
    run = wait_status(client, run_id, {"succeeded", "failed", "cancelled", "lost"}, 30)
    cpu = (cpu_seconds(box.server.pid) - cpu0, time.time() - t0, streamed["cpu"])
    client.close()
    triples, early = [], 0
    for c in streamed["clients"]:
        for t, recv, end in c["lat"]:
            if t >= ready["at"]:
                triples.append((t, disk.appeared(end), recv))
            else:
                early += 1
    counts = [len(c["lat"]) for c in streamed["clients"]]
    complete = sum(1 for c in streamed["clients"] if c["end"] and len(c["lat"]) == lines)
    return {"triples": triples, "early": early, "counts": counts, "complete": complete,
            "run": run, "cpu": cpu}


def fig_live_latency(box: Sandbox, ids: dict, quick: bool) -> Result:
    """Why: "watch the run live" is the feature; a line printed must show in every
    watcher's pane at once (10 lines/s is a chatty training loop). One client first,
    then 100, to show what the fan-out costs."""
    res = Result()
    n, lines = 100, (100 if quick else 300)
    one = stream_lines(box, ids["lat1"], 1, 50)
    many = stream_lines(box, ids["lat"], n, lines)
    lat = [r - w for w, _, r in many["triples"]]
    res.rows.append(Row(
        f"3: live output latency, payload write -> SSE client, {n} clients, 10 lines/s",
        "p99 ≤ 50 ms", spread(lat), bool(lat) and pct(lat, 99) <= 0.050))
    res.rows += split_rows("3", many["triples"])
    res.rows.append(Row("3: the same, 1 client (what the fan-out to 100 adds)", "–",
                        spread([r - w for w, _, r in one["triples"]])))
    counts = many["counts"]
    res.rows.append(Row(
        "3: every client got every line, then `end`", f"{n}/{n}",
        f"{many['complete']}/{n} (lines per client min {min(counts)} / max {max(counts)} "
        f"of {lines}; run {many['run']['status']})", many["complete"] == n))
    if many["early"]:
        res.notes.append(f"3: {many['early']} line(s) printed before all clients were "
                         "connected (replayed, not live) were left out of the latency.")
    res.notes.append("3: CPU: server {:.1f} s over {:.0f} s, the 100 clients' process {:.1f} s"
                     .format(*many["cpu"]))
    res.notes.append("3: the split uses the log's size polled every 2 ms by the bench "
                     "(up to ~2 ms, more on a loaded box, moves from one part to the other).")
    return res


def fig_flood(box: Sandbox, ids: dict, quick: bool) -> Result:
    """Why: a runaway payload (a loop printing flat out) must not take the server down
    with it: readers pull at their own pace, memory stays flat, the UI stays responsive.

    Lag is measured on the part of the log that streams live: the head (the first
    ``max_bytes - tail_bytes``). Past it the supervisor keeps only the last
    ``tail_bytes`` in its memory and appends them when the run ends, so those bytes
    reach clients at the end by design; that is reported as the cap behaviour."""
    from hermes_cron_ext.store.output import DEFAULT_MAX_BYTES, DEFAULT_TAIL_BYTES

    res = Result()
    n, total = 100, flood_bytes(quick)
    head = DEFAULT_MAX_BYTES - DEFAULT_TAIL_BYTES
    pid = box.server.pid
    client = Client(box.port)
    time.sleep(1.0)
    before = rss(pid)
    sampler = RSSSampler(pid).start()
    cpu0 = cpu_seconds(pid)
    t_post = time.time()
    run_id = run_job(client, ids["flood"])
    disk = FileGrowth(log_path(box, run_id)).start()
    deadline = 120 + total / 100_000  # the supervisor has been seen at ~0.5 MB/s
    sse, sse_out = box.worker({"mode": "sse", "path": f"/api/cron/runs/{run_id}/stream",
                               "clients": n, "deadline": deadline, "parse": "lag"})
    try:
        ready = box.wait_ready(sse, 60)
        prober = Prober(box.port).start()
        try:
            streamed = box.collect(sse, sse_out, deadline + 60)
        finally:
            samples = prober.stop()
        run = wait_status(client, run_id, {"succeeded", "failed", "cancelled", "lost"}, 60)
        time.sleep(3.0)
    finally:
        during = sampler.stop()
        disk.stop()
    after = rss(pid)
    cpu = cpu_seconds(pid) - cpu0
    client.close()
    path = log_path(box, run_id)
    log_size = os.path.getsize(path) if os.path.exists(path) else 0
    clients = streamed["clients"]
    live = [(t, disk.appeared(end), recv) for c in clients
            for off, end, t, recv in c["lag"] if off < head and t >= ready["at"]]
    lags = [r - w for w, _, r in live]
    ends = [c for c in clients if c["end"]]
    cut = next((c["cut"] for c in clients if c.get("cut")), None)
    peak = max(during) if during else after
    res.rows.append(Row(
        f"4: flat-out producer, client lag over the live part (first {mib(head)}), "
        f"{n} clients", "p99 ≤ 500 ms", spread(lags), bool(lags) and pct(lags, 99) <= 0.5))
    res.rows += split_rows("4", live)
    res.rows.append(Row(
        "4: server RSS growth (peak during - before)", "≤ 50 MB",
        f"{mib(peak - before)} (before {mib(before)}, peak {mib(peak)}, "
        f"after {mib(after)})", peak - before <= 50 * 1_000_000))
    res.rows += probe_rows("4", samples, 50, prober.errors)
    stamps = [c["first_stamp"] for c in clients if c["first_stamp"]]
    last = max((c["last_stamp"] or 0) for c in clients)
    write_s = last - min(stamps) if stamps and last else math.nan
    res.rows.append(Row(
        "4: how fast the payload could write (through its supervisor)", "–",
        f"{total / 1e6:.0f} MB in {write_s:.1f} s = {total / 1e6 / write_s:.2f} MB/s"))
    tail_at = [c["end_at"] - last for c in ends if last]
    accounted = sum(1 for c in ends if c["bytes"] + c["system_bytes"] + c["skipped"]
                    == c["end"]["offset"] == log_size)
    shown = [c["bytes"] / log_size for c in clients] if log_size else [0.0]
    res.rows.append(Row(
        "4: what live clients get (a live view skips ahead with `gap` events rather than "
        "lag; the log keeps every byte)", "every byte shown or counted in a gap; `end`",
        f"{accounted}/{n} clients: shown + skipped = the log ({mib(log_size)}), `end` at its "
        f"last byte; shown {min(shown):.0%}-{max(shown):.0%} of it in "
        f"{min(c['gaps'] for c in clients)}-{max(c['gaps'] for c in clients)} gap(s); "
        f"cut notice {'seen' if cut else 'skipped over'}; `end` reached clients "
        f"{spread(tail_at)} after the payload's last line", accounted == n))
    res.notes.append(
        f"4: the payload writes {total:,} bytes of 109-byte lines stamped with time.time() "
        f"per 17 KB block; lag = client receive time - stamp of the first whole line of "
        f"each `output` event (its oldest bytes); run {run['status']}, output_bytes "
        f"{run.get('output_bytes') or 0:,}, log {log_size:,} bytes; RSS sampled every 50 ms "
        f"({len(during)} samples); POST -> all clients in {ready['at'] - t_post:.1f} s; "
        f"CPU: server {cpu:.1f} s over {time.time() - t_post:.0f} s, the 100 clients' "
        f"process {streamed['cpu']:.1f} s.")
    return res


def fig_live(quick: bool, keep: bool, which: set[int]) -> Result:
    """Figures 2-4 share one server over a store of 1,000 jobs."""
    res = Result()
    box = Sandbox("live", keep)
    try:
        ids = create_jobs(box.db, live_jobs(quick))
        ready = box.start_server()
        res.notes.append(f"2-4: server ready in {ready:.1f} s over {len(ids):,} jobs")
        for num, fn in ((2, fig_unrelated_get), (3, fig_live_latency), (4, fig_flood)):
            if num in which:
                t0 = time.time()
                try:
                    part = fn(box, ids, quick)
                except Exception as exc:  # one figure failing must not hide the others
                    part = Result([Row(f"{num}: {fn.__name__}", "runs", f"error: {exc!r}",
                                       False)])
                res.rows += part.rows
                res.notes += part.notes
                print(f"[bench] figure {num} done in {time.time() - t0:.0f} s",
                      file=sys.stderr)
        res.notes.extend(f"2-4: server log: {p}" for p in box.log_problems())
    finally:
        box.cleanup()
        if box.killed:
            res.notes.append(f"2-4: cleanup killed {len(box.killed)} leftover process(es) "
                             f"after the server stopped: {box.killed}")
    return res


# -- the load workers (run in a process of their own) -----------------------------------

class SSEClient:
    """One EventSource: HTTP/1.1 (chunked) parsed as SSE, recording what *parse* asks:
    ``lines`` every stamped line, ``lag`` one sample per ``output`` event, ``none``
    only counts. ``on_ready`` is called once, at the first ``status`` event or failure."""

    def __init__(self, cfg: dict, on_ready):
        self.cfg = cfg
        self.on_ready = on_ready
        self.carry, self.boundary = "", True  # the partial line at the end of the last event
        self.out = {"status": None, "events": 0, "bytes": 0, "lines": 0, "end": None,
                    "end_at": None, "lat": [], "lag": [], "first_stamp": None,
                    "last_stamp": None, "errors": 0, "gaps": 0, "skipped": 0,
                    "system_bytes": 0}

    async def run(self) -> None:
        writer = None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.cfg["port"],
                                                           limit=1 << 22)
            chunked = await self._request(reader, writer)
            buf = b""
            async for data in self._body(reader, chunked):
                now = time.time()
                buf += data
                start = 0
                while (i := buf.find(b"\n\n", start)) >= 0:
                    self._event(buf[start:i], now)
                    start = i + 2
                buf = buf[start:]
                if self.out["end"] is not None:
                    break
        except (OSError, ValueError, RuntimeError, IndexError,
                asyncio.IncompleteReadError) as exc:
            self.out["errors"] += 1
            self.out["error"] = repr(exc)[:200]
        finally:
            self._ready()
            if writer is not None:
                writer.close()

    def _ready(self) -> None:
        if self.on_ready is not None:
            self.on_ready()
            self.on_ready = None

    async def _request(self, reader, writer) -> bool:
        """Send the GET, read the head; True when the body is chunked."""
        port = self.cfg["port"]
        writer.write((f"GET {self.cfg['path']} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      f"Authorization: token {TOKEN}\r\nAccept: text/event-stream\r\n"
                      "Cache-Control: no-cache\r\n\r\n").encode())
        await writer.drain()
        self.out["status"] = status = int((await reader.readline()).split()[1])
        chunked = False
        while (line := (await reader.readline()).lower()) not in (b"\r\n", b"\n", b""):
            chunked |= line.startswith(b"transfer-encoding:") and b"chunked" in line
        if status != 200:
            raise RuntimeError(f"HTTP {status}")
        return chunked

    @staticmethod
    async def _body(reader, chunked: bool):
        while True:
            if chunked:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    return
                data = (await reader.readexactly(size + 2))[:-2]
            else:
                data = await reader.read(1 << 16)
                if not data:
                    return
            yield data

    def _event(self, block: bytes, now: float) -> None:
        name, payload = "message", []
        for ln in block.split(b"\n"):
            if ln.startswith(b"event:"):
                name = ln[6:].strip().decode()
            elif ln.startswith(b"data:"):
                payload.append(ln[5:].lstrip(b" "))
        if not payload:  # a comment (": keep-alive")
            return
        self.out["events"] += 1
        if name == "status":
            self._ready()
        elif name == "end":
            self.out["end"] = json.loads(b"\n".join(payload))
            self.out["end_at"] = now
        elif name == "output":
            self._output(json.loads(b"\n".join(payload)), now)
        elif name == "gap":  # the live view skipped ahead (to a line start)
            self.out["gaps"] += 1
            self.out["skipped"] += json.loads(b"\n".join(payload))["bytes"]
            self.boundary, self.carry = True, ""

    def _output(self, d: dict, now: float) -> None:
        out, text = self.out, d["text"]
        size = len(text) if text.isascii() else len(text.encode())
        if d["stream"] == "system":  # hermes-cron's own notices (the cut)
            out["system_bytes"] += size
            if "cut" in text and not out.get("cut"):
                out["cut"] = text.strip()[:200]
            return
        out["bytes"] += size
        out["lines"] += text.count("\n")
        if self.cfg["parse"] == "lines":
            text, base, pos = self.carry + text, d["offset"] - len(self.carry), 0
            while (j := text.find("\n", pos)) >= 0:
                t = _stamp(text[pos:j], now)
                if t is not None:  # (written, received, log offset of its end)
                    out["lat"].append((t, now, base + j + 1))
                pos = j + 1
            self.carry = text[pos:]
        elif self.cfg["parse"] == "lag":
            _lag(out, d["offset"], text, self.boundary, now)
            self.boundary = text.endswith("\n")


def _stamp(line: str, now: float) -> float | None:
    """The ``time.time()`` a payload line starts with, if it is a whole, plausible one."""
    try:
        t = float(line.split(" ", 1)[0])
    except ValueError:
        return None
    return t if abs(now - t) < 3600 else None


def _lag(out: dict, offset: int, text: str, boundary: bool, now: float) -> None:
    """One sample per event: the stamp of its first whole line (its oldest bytes)."""
    start = 0 if boundary else text.find("\n") + 1
    end = text.find("\n", start)
    if start <= 0 and not boundary or end < 0:
        return
    t = _stamp(text[start:end], now)
    if t is not None:  # (log offset of the line, of its end, written, received)
        out["lag"].append((offset + start, offset + end + 1, t, now))
        if out["first_stamp"] is None:
            out["first_stamp"] = t
    last_nl = text.rfind("\n")
    prev_nl = text.rfind("\n", 0, last_nl)
    t = _stamp(text[prev_nl + 1:last_nl], now) if last_nl > 0 and (
        prev_nl >= 0 or boundary) else None
    if t is not None:
        out["last_stamp"] = t


async def _sse_main(cfg: dict) -> dict:
    ready, waiting = asyncio.Event(), [cfg["clients"]]

    def one_ready() -> None:
        waiting[0] -= 1
        if waiting[0] <= 0:
            ready.set()

    clients = [SSEClient(cfg, one_ready) for _ in range(cfg["clients"])]
    tasks = [asyncio.create_task(c.run()) for c in clients]
    try:
        await asyncio.wait_for(ready.wait(), 60)
    except TimeoutError:
        pass
    ok = sum(1 for c in clients if c.out["status"] == 200 and not c.out["errors"])
    print(json.dumps({"ready": ok, "at": time.time()}), flush=True)
    _, pending = await asyncio.wait(tasks, timeout=cfg["deadline"])
    for t in pending:
        t.cancel()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"clients": [c.out for c in clients], "timed_out": len(pending),
            "cpu": usage.ru_utime + usage.ru_stime}


def _lister(cfg: dict) -> dict:
    """Page through every job, 100 at a time, over and over, for *duration* seconds."""
    client = Client(cfg["port"])
    lat, errors = [], 0
    print(json.dumps({"ready": 1, "at": time.time()}), flush=True)
    deadline = time.time() + cfg["duration"]
    cursor = None
    while time.time() < deadline:
        path = "/api/cron/jobs?limit=100" + (
            f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        try:
            status, raw, took = client.request("GET", path)
        except (OSError, http.client.HTTPException):
            errors += 1
            continue
        if status != 200:
            errors += 1
            cursor = None
            continue
        lat.append(took)
        cursor = json.loads(raw)["cursor"]
    client.close()
    return {"lat": lat, "errors": errors}


def worker(cfg: dict) -> None:
    result = asyncio.run(_sse_main(cfg)) if cfg["mode"] == "sse" else _lister(cfg)
    with open(cfg["out"], "w") as f:
        json.dump(result, f)


# -- report ----------------------------------------------------------------------------

def environment() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"nproc {os.cpu_count()} · Python {platform.python_version()} · SQLite "
            f"{sqlite3.sqlite_version} · {platform.platform()} · "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · load average {load} at start")


def table(result: Result, header: str) -> str:
    out = [header, "", "| figure | goal | measured | pass? |", "|---|---|---|---|"]
    for r in result.rows:
        mark = "–" if r.ok is None else "yes" if r.ok else "**NO**"
        out.append(f"| {r.figure} | {r.goal} | {r.measured} | {mark} |")
    if result.notes:
        out += ["", "Notes:", ""] + [f"- {n}" for n in result.notes]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smaller and shorter: 100k runs, 10-15 s streams, 24 MB flood")
    ap.add_argument("--only", default="", help="comma-separated figure numbers (1-4)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "api-latest.md"))
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    sys.setswitchinterval(0.0005)  # the prober thread must not wait 5 ms for the GIL
    which = {int(x) for x in args.only.split(",") if x.strip()} or set(FIGURES)
    header = "# hermes-cron-ext API benchmark\n\n" + environment() + (
        f"\n\nMode: {'--quick' if args.quick else 'full'}"
        f"{' --only ' + args.only if args.only else ''}")
    result = Result()
    if 1 in which:
        t0 = time.time()
        part = fig_history(args.quick, args.keep)
        result.rows += part.rows
        result.notes += part.notes
        print(f"[bench] figure 1 done in {time.time() - t0:.0f} s", file=sys.stderr)
    if which & {2, 3, 4}:
        part = fig_live(args.quick, args.keep, which)
        result.rows += part.rows
        result.notes += part.notes
    text = table(result, header)
    print(text)
    save(text, args.out)
    return 0 if all(r.ok is not False for r in result.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
