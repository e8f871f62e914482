"""Core benchmarks of hermes-cron-ext: fire latency, a 1,000-job burst, a daemon over
100,000 jobs, and run-history pages over 1,000,000 runs.

    python bench/core.py [--quick] [--only latency,notebook,pipeline,burst,jobs,runs]
                         [--overload]

Prints a markdown table (figure | goal | measured | pass?) and saves it under
``bench/results/``. Every figure runs against a store of its own in a temp dir
under /tmp; every process started (daemon, fork server, supervisors, payloads)
carries a marker in its environment and is killed by pid at the end, and the
temp dir is removed. See bench/README.md for the method of each figure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

from hermes_cron_ext.domain.jobspec import validate_new
from hermes_cron_ext.store import open_store

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import (  # noqa: E402,F401,E501  (scale.py uses them)
    PeakSampler,  # noqa: E402
    Result,
    Row,
    kill_tagged,
    ms,
    pct,
    proc_stat,
    save,
    spread,
    stop,
    tagged_pids,
)

#: The payload: its first act is to print the wall clock (ns), captured into the run's log.
DATE = ["/bin/date", "+%s.%N"]
TAG = "HERMES_BENCH_TAG"
CLK_TCK = os.sysconf("SC_CLK_TCK")
FIGURES = ("latency", "notebook", "pipeline", "burst", "jobs", "runs")


# -- sandbox: a temp store, daemons, and cleanup ------------------------------------

def cpu_ticks(pid: int) -> int:
    """utime + stime of one process (all its threads), in clock ticks."""
    fields = proc_stat(pid)
    return int(fields[11]) + int(fields[12]) if fields else 0


def children(pid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = proc_stat(int(name))
            if fields and int(fields[1]) == pid:
                out.append(int(name))
    return out


def boot_time() -> float:
    """The wall-clock instant of boot, to 10 ms (process start times count from it)."""
    with open("/proc/uptime") as f:
        return time.time() - float(f.read().split()[0])


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def parse_stamp(path: str) -> list[float]:
    """The timestamps ``date +%s.%N`` printed into a run's log."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(float(line.strip()))
        except ValueError:
            pass
    return out


class Sandbox:
    """A temp dir with one store; starts daemons on it and leaves nothing behind."""

    def __init__(self, name: str):
        self.dir = tempfile.mkdtemp(prefix=f"hermes-bench-{name}-", dir="/tmp")
        self.db = os.path.join(self.dir, "store", "hermes-cron.db")
        self.marker = f"{TAG}={self.dir}".encode() + b"\0"
        self.env = {**os.environ, "HERMES_CRON_DB": self.db, TAG: self.dir}
        self.daemons: list[subprocess.Popen] = []
        self.killed = 0
        self.store = open_store(self.db)

    def start_daemon(self, timeout: float = 60.0) -> tuple[subprocess.Popen, float, float]:
        """Spawn ``hermes-cron daemon``; return it and the seconds until its ticker row
        appeared and until it printed "ticking on"."""
        err_path = os.path.join(self.dir, f"daemon-{len(self.daemons)}.err")
        with open(err_path, "wb") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "hermes_cron_ext", "--db", self.db, "daemon"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                env=self.env, cwd=self.dir)
        self.daemons.append(proc)
        row = line = None
        while time.perf_counter() - t0 < timeout:
            now = time.perf_counter() - t0
            if row is None and any(t.pid == proc.pid for t in self.store.list_tickers()):
                row = now
            if line is None:
                with open(err_path, "rb") as f:
                    if b"ticking on" in f.read():
                        line = now
            if row is not None and line is not None:
                return proc, row, line
            if proc.poll() is not None:
                with open(err_path, "rb") as f:
                    raise RuntimeError(f"daemon exited {proc.returncode}: {f.read()!r}")
            time.sleep(0.005)
        raise RuntimeError(f"daemon not ready after {timeout:.0f} s")

    @staticmethod
    def stop_daemon(proc: subprocess.Popen) -> None:
        stop(proc, 15.0)

    def tagged_pids(self) -> list[int]:
        return tagged_pids(self.marker)

    def wait_quiet(self, timeout: float) -> bool:
        """Wait until no process of this sandbox is left but the daemons."""
        daemons = {p.pid for p in self.daemons if p.poll() is None}
        forks = {c for d in daemons for c in children(d)}
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not set(self.tagged_pids()) - daemons - forks:
                return True
            time.sleep(0.1)
        return False

    def cleanup(self) -> None:
        for proc in self.daemons:
            self.stop_daemon(proc)
        self.killed += len(kill_tagged(self.marker))
        self.store.close()
        if os.environ.get("HERMES_BENCH_KEEP"):
            print(f"[bench] kept {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def bulk(db: sqlite3.Connection, sql: str, rows, batch: int = 100_000) -> None:
    """executemany in transactions of *batch* rows."""
    chunk: list = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == batch:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(sql, chunk)
            db.execute("COMMIT")
            chunk = []
    if chunk:
        db.execute("BEGIN IMMEDIATE")
        db.executemany(sql, chunk)
        db.execute("COMMIT")


def rid(rng: random.Random, prefix: str) -> str:
    """An id shaped like the store's ``new_id``."""
    return f"{prefix}_{rng.getrandbits(64):016x}"


# -- 1. fire latency ----------------------------------------------------------------------

def popen_floor(n: int = 30) -> list[float]:
    """What fork+exec of the payload costs from a warm Python: ``Popen`` -> date's clock."""
    out = []
    for _ in range(n):
        t0 = time.time()
        stamp = subprocess.run(DATE, capture_output=True, check=True).stdout
        out.append(float(stamp) - t0)
    return out


def fig_latency(quick: bool, overload: bool = False) -> Result:
    """One ``@every 1s`` command job on an idle daemon: slot instant -> payload's clock.
    With *overload*, beside ``HOGS`` busy loops (load ~20 on 2 cores)."""
    samples, warmup = (15, 3) if quick else (60, 3)
    res = Result()
    sb = Sandbox("latency-overload" if overload else "latency")
    hogs: list[subprocess.Popen] = []
    try:
        proc, _, _ = sb.start_daemon()
        job, _ = sb.store.create_job(validate_new(
            {"name": "latency", "schedule": "@every 1s", "timezone": "UTC", "command": DATE}))
        if overload:
            hogs = start_hogs(HOGS, sb.dir + "-hogs")
        first = math.ceil(time.time()) + warmup
        last = first + samples - 1
        time.sleep(max(0.0, last + 1.5 - time.time()))
        load = os.getloadavg()[0]
        for hog in hogs:
            hog.kill()
            hog.wait()
        hogs = []
        sb.store.set_paused(job.id, True)
        sb.wait_quiet(15)
        sb.stop_daemon(proc)
        runs, cursor = [], None
        while True:
            page = sb.store.list_runs(job.id, limit=200, cursor=cursor)
            runs += page.items
            if page.cursor is None:
                break
            cursor = page.cursor
        window = [r for r in runs if first <= (r.scheduled_for or 0) <= last]
        lat, popen, other = [], [], {}
        for r in window:
            stamps = parse_stamp(sb.store.log_path(r.id))
            if r.status == "succeeded" and r.trigger == "schedule" and stamps:
                lat.append(stamps[0] - r.scheduled_for)
                popen.append(r.started_at - r.scheduled_for)
            else:
                key = f"{r.trigger}/{r.status}" + (f" ({r.reason[:60]})" if r.reason else "")
                other[key] = other.get(key, 0) + 1
        if overload:
            ok = len(lat) == samples and pct(lat, 99) <= 0.020
            res.rows.append(Row(
                f"Fire latency beside {HOGS} busy loops (load average {load:.0f} on 2 "
                f"cores), `@every 1s` command job (n={len(lat)} of {samples})",
                "p99 ≤ 20 ms", spread(lat), ok))
        else:
            ok = len(lat) == samples and pct(lat, 50) <= 0.002 and pct(lat, 99) <= 0.004
            res.rows.append(Row(
                f"Fire latency, `@every 1s` command job, idle daemon (n={len(lat)} of "
                f"{samples})", "p50 ≤ 2 ms, p99 ≤ 4 ms", spread(lat), ok))
        floor = popen_floor()
        res.notes.append(
            f"latency: slots {iso(first)} .. +{samples - 1} s after {warmup} s of warm-up; "
            f"payload `{' '.join(DATE)}` (argv, no shell), latency = its printed clock - "
            f"`scheduled_for`. The run's `started_at` (its payload let go) - slot: "
            f"{spread(popen)}. Floor on this machine, `subprocess.run(date)` from a warm "
            f"Python: p50 {ms(pct(floor, 50))}. Runs in the window that did not yield a "
            f"sample: {other or 'none'}.")
    finally:
        for hog in hogs:
            hog.kill()
        sb.cleanup()
        if sb.killed:
            res.notes.append(f"latency: cleanup had to kill {sb.killed} process(es)")
    return res


def _pipeline_phase(sb: Sandbox, name: str, fan: int, samples: int, warmup: int):
    """``name`` (``@every 1s``) and *fan* jobs after it, for *samples* slots: per slot,
    each downstream payload's first clock - the upstream run's ``finished_at``; and the
    same from the upstream payload's own last print. Returns (per-slot lists, missing)."""
    up, _ = sb.store.create_job(validate_new(
        {"name": name, "schedule": "@every 1s", "timezone": "UTC", "command": DATE}))
    downs = [sb.store.create_job(validate_new(
        {"name": f"{name}-after-{i}", "timezone": "UTC",  # no schedule: after it only
         "command": DATE, "after": [{"job": up.id, "on": "success"}]}))[0]
        for i in range(fan)]
    first = math.ceil(time.time()) + warmup
    last = first + samples - 1
    time.sleep(max(0.0, last + 1.5 - time.time()))
    sb.store.set_paused(up.id, True)
    sb.wait_quiet(15)
    ups = {r.scheduled_for: r for r in sb.store.list_runs(up.id, limit=500).items}
    by_job = [{r.scheduled_for: r for r in sb.store.list_runs(d.id, limit=500).items}
              for d in downs]
    slots, missing = [], 0
    for slot, u in sorted(ups.items()):
        if not first <= slot <= last:
            continue
        runs = [runs.get(slot) for runs in by_job]
        firsts = [parse_stamp(sb.store.log_path(r.id)) if r and r.status == "succeeded"
                  else [] for r in runs]
        up_stamps = parse_stamp(sb.store.log_path(u.id))
        if u.finished_at is None or not all(firsts) or not up_stamps:
            missing += 1
            continue
        slots.append(([f[0] - u.finished_at for f in firsts],
                      [f[0] - up_stamps[-1] for f in firsts]))
    return slots, missing


def fig_pipeline(quick: bool) -> Result:
    """Jobs after another (pipelines): upstream run's end -> downstream payload's clock.

    The upstream, ``@every 1s``, prints the clock as its last act; each downstream runs
    after it and prints the clock as its first. Trigger latency = the downstream's clock
    - the upstream run's ``finished_at`` (recorded by its supervisor as the payload
    ended); the upstream's own last print bounds it from the other side. Two phases on
    one daemon: one job after the upstream, then three (fan-out: the last to start)."""
    samples, warmup = (10, 3) if quick else (30, 3)
    res = Result()
    sb = Sandbox("pipeline")
    try:
        proc, _, _ = sb.start_daemon()
        one, missing_one = _pipeline_phase(sb, "chain", 1, samples, warmup)
        three, missing_three = _pipeline_phase(sb, "fan", 3, samples, warmup)
        sb.stop_daemon(proc)
        lat = [d[0] for d, _ in one]
        fan_last = [max(d) for d, _ in three]
        fan_first = [min(d) for d, _ in three]
        res.rows.append(Row(
            f"Pipeline trigger: upstream run ends -> downstream payload's first instruction "
            f"(n={len(lat)} of {samples})", "p50 ≤ 20 ms", spread(lat),
            len(lat) >= samples - 1 and pct(lat, 50) <= 0.020))
        res.rows.append(Row(
            f"Pipeline fan-out: upstream run ends -> the last of its 3 downstream payloads "
            f"starts (n={len(fan_last)} of {samples})", "p50 ≤ 20 ms", spread(fan_last),
            len(fan_last) >= samples - 1 and pct(fan_last, 50) <= 0.020))
        res.notes.append(
            f"pipeline: `chain` (@every 1s, `{' '.join(DATE)}`) -> one job after it (the "
            f"same payload); latency = the downstream's printed clock - the upstream's "
            f"`finished_at`. From the upstream's own last print instead: "
            f"{spread([e[0] for _, e in one])}. The upstream's supervisor queues the "
            f"downstream run as it records the end and, being warm, goes on as its "
            f"supervisor (a ticker would start it at its next pass). Fan-out: `fan` with "
            f"three jobs after it; the supervisor goes on as one and forks itself for the "
            f"other two (the three then share 2 cores and the store's write lock); the "
            f"first of the three starts {spread(fan_first)}. Samples missing: "
            f"{missing_one} (chain), {missing_three} (fan-out).")
    finally:
        sb.cleanup()
        if sb.killed:
            res.notes.append(f"pipeline: cleanup had to kill {sb.killed} process(es)")
    return res


def fig_notebook(quick: bool) -> Result:
    """One ``@every 3s`` notebook job on an idle daemon: slot instant -> first cell's clock.

    The kernel starts in the lead before each slot (warm start) and waits for it."""
    import nbformat

    samples, warmup, period = (10, 6, 3) if quick else (30, 6, 3)
    res = Result()
    sb = Sandbox("notebook")
    try:
        path = os.path.join(sb.dir, "clock.ipynb")
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nb.cells.append(nbformat.v4.new_code_cell("import time\nprint(repr(time.time()))"))
        nbformat.write(nb, path)
        proc, _, _ = sb.start_daemon()
        job, _ = sb.store.create_job(validate_new(
            {"name": "notebook", "schedule": f"@every {period}s", "timezone": "UTC",
             "kind": "notebook", "command": path}))
        first = time.time() + warmup
        time.sleep(warmup + samples * period + 2)
        sb.store.set_paused(job.id, True)
        sb.wait_quiet(30)
        sb.stop_daemon(proc)
        runs = sb.store.list_runs(job.id, limit=500).items
        window = sorted((r for r in runs if (r.scheduled_for or 0) >= first),
                        key=lambda r: r.scheduled_for)[:samples]
        lat, other = [], {}
        for r in window:
            stamps = parse_stamp(sb.store.log_path(r.id))
            if r.status == "succeeded" and stamps:
                lat.append(stamps[0] - r.scheduled_for)
            else:
                key = f"{r.trigger}/{r.status}" + (f" ({r.reason[:60]})" if r.reason else "")
                other[key] = other.get(key, 0) + 1
        ok = len(lat) == samples and pct(lat, 50) <= 0.050 and pct(lat, 99) <= 0.200
        res.rows.append(Row(
            f"Notebook job, slot -> first cell's clock, `@every {period}s`, idle daemon "
            f"(n={len(lat)} of {samples})", "p50 ≤ 50 ms, p99 ≤ 200 ms", spread(lat), ok))
        res.notes.append(
            f"notebook: one cell `print(repr(time.time()))`, python3 kernel started in the "
            f"lead before each slot (warm start); latency = the printed clock - "
            f"`scheduled_for`. Runs in the window that gave no sample: {other or 'none'}.")
    finally:
        sb.cleanup()
        if sb.killed:
            res.notes.append(f"notebook: cleanup had to kill {sb.killed} process(es)")
    return res


# -- 2. burst -------------------------------------------------------------------------------

def due_at_once(store, n: int, ahead: float) -> tuple[float, str, float, float]:
    """Create *n* command jobs due at the next whole minute at least *ahead* seconds
    away (one yearly slot each); ``(instant, schedule, seconds the creates took, lead
    left)``."""
    instant = math.ceil((time.time() + ahead) / 60) * 60
    when = datetime.fromtimestamp(instant, UTC)
    yearly = f"{when.minute} {when.hour} {when.day} {when.month} *"
    t0 = time.perf_counter()
    for i in range(n):
        store.create_job(validate_new({
            "name": f"burst-{i:04d}", "schedule": yearly, "timezone": "UTC",
            "command": DATE}))
    return instant, yearly, time.perf_counter() - t0, instant - time.time()


def wait_settled(db, n: int, instant: float, limit: float = 180.0) -> float:
    """Wait until *n* runs exist and none is active; seconds from *instant*."""
    time.sleep(max(0.0, instant + 3 - time.time()))
    while time.time() < instant + limit:
        total, active = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status IN ('queued', 'running') "
            "THEN 1 ELSE 0 END), 0) FROM runs").fetchone()
        if total >= n and not active:
            break
        time.sleep(0.5)
    return time.time() - instant


HOGS = 20  # CPU-bound processes for ``--overload``: a load average of ~20 on 2 cores


def start_hogs(n: int, marker: str) -> list[subprocess.Popen]:
    """*n* busy loops at normal priority, tagged so cleanup finds them."""
    env = {**os.environ, TAG: marker}
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"], env=env)
            for _ in range(n)]


def fig_burst(quick: bool, overload: bool = False) -> Result:
    """1,000 jobs on one instant: when each payload started, and that each ran exactly once.

    The jobs are yearly crons on the next whole minute at least 20 s ahead (not ``@at``:
    see README), so the figure waits 20-80 s for its instant. With *overload*, 20 busy
    loops run from the last create until every run is final: nothing may then be
    marked lost that could still run, and nothing marked lost may run."""
    n, ahead = 1000, 20
    res = Result()
    sb = Sandbox("burst-overload" if overload else "burst")
    hogs: list[subprocess.Popen] = []
    try:
        proc, _, _ = sb.start_daemon()
        peak = PeakSampler(0.05).__enter__()  # from before the claim to every run final
        instant, yearly, create, lead_left = due_at_once(sb.store, n, ahead)
        if overload:  # after the creates: a job created after its yearly instant never fires
            hogs = start_hogs(HOGS, sb.dir + "-hogs")
        db = sb.store.db
        settled = wait_settled(db, n, instant, limit=900.0 if overload else 180.0)
        peak.__exit__()
        load = os.getloadavg()[0]
        for hog in hogs:
            hog.kill()
            hog.wait()
        hogs = []
        sb.wait_quiet(15)
        sb.stop_daemon(proc)
        rows = db.execute("SELECT id, job_id, status, reason, dispatched_at, started_at, "
                          "proc_start FROM runs").fetchall()
        boot = boot_time()
        per_job: dict[str, list] = {}
        ran_lost = 0
        starts, popen, claims, forks, statuses = [], [], [], [], {}
        for r in rows:
            stamps = parse_stamp(sb.store.log_path(r["id"]))
            per_job.setdefault(r["job_id"], []).extend(stamps)
            ran_lost += bool(stamps) and r["status"] == "lost"
            key = r["status"] + (f" ({r['reason'][:60]})" if r["reason"] else "")
            statuses[key] = statuses.get(key, 0) + 1
            starts += [s - instant for s in stamps]
            if r["started_at"]:
                popen.append(r["started_at"] - instant)
            if r["dispatched_at"]:
                claims.append(r["dispatched_at"] - instant)
            if r["proc_start"]:
                forks.append(boot + r["proc_start"] / CLK_TCK - instant)
        jobs = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        once = sum(1 for stamps in per_job.values() if len(stamps) == 1)
        all_by = max(starts) if starts else math.inf
        lost = sum(1 for r in rows if r["status"] == "lost")
        if overload:
            res.rows.append(Row(
                f"Burst under overload ({HOGS} busy loops, load average {load:.0f} on "
                f"2 cores): runs marked lost / marked lost but ran",
                "0 / 0", f"{lost} / {ran_lost}", lost == 0 and ran_lost == 0))
        ok = once == n == jobs == len(rows) == len(starts) and (overload or all_by <= 2.5)
        res.rows.append(Row(
            f"Burst: {n:,} command jobs due at one instant"
            + (" (under overload)" if overload else ""),
            "each exactly once" if overload else "all started ≤ 2.5 s; each exactly once",
            f"all by {all_by:.3f} s / p50 {pct(starts, 50):.3f} s / p99 {pct(starts, 99):.3f} s;"
            f" ran exactly once: {once}/{n} ({len(starts)} payload starts, {len(rows)} runs)",
            ok))
        if not overload:
            res.rows.append(Row(
                f"Burst: the machine while {n:,} runs start (sampled every 50 ms)",
                f"≤ {n + 100:,} processes; load average ≤ 2",
                peak.describe(), peak.peak_procs <= n + 100 and peak.peak_load <= 2))
        res.rows.append(Row(f"Burst: create {n:,} jobs (`store.create_job`, one txn each)", "–",
                            f"{create:.2f} s ({create / n * 1000:.2f} ms/job)"))
        res.notes.append(
            f"burst: schedule `{yearly}` (UTC), instant {iso(instant)}, {lead_left:.1f} s "
            f"after the last create; "
            f"payload `{' '.join(DATE)}`; start = its printed clock - instant. Claimed "
            f"(dispatched_at - instant): {min(claims, default=math.nan):+.2f} .. "
            f"{max(claims, default=math.nan):+.2f} s; supervisor `started_at` - instant: "
            f"p50 {pct(popen, 50):.3f} s, max {max(popen, default=math.nan):.3f} s; "
            f"the process watching each (agent or supervisor) started (/proc, 10 ms ticks) - "
            f"instant: "
            f"{min(forks, default=math.nan):+.2f} .. {max(forks, default=math.nan):+.2f} s "
            f"(p50 {pct(forks, 50):+.2f} s, {len(forks)} recorded); run "
            f"statuses {statuses}; runs marked lost whose payload did run: {ran_lost}; all "
            f"runs final {settled:.1f} s after the instant.")
    finally:
        for hog in hogs:
            hog.kill()
        sb.cleanup()
        if sb.killed:
            res.notes.append(f"burst: cleanup had to kill {sb.killed} process(es)")
    return res


# -- 3. daemon over 100,000 jobs ---------------------------------------------------------

def load_jobs(store, n: int) -> None:
    """*n* enabled yearly jobs: one made by ``create_job``, the rest cloned from its row
    (and its ``job.created`` event), so every row is in the store's own format."""
    store.create_job(validate_new({"name": "yearly-000000", "schedule": "0 3 1 1 *",
                                   "timezone": "UTC", "command": ["/bin/true"]}))
    db = store.db
    cur = db.execute("SELECT * FROM jobs")
    cols = [d[0] for d in cur.description]
    template = dict(zip(cols, cur.fetchone(), strict=True))
    ecur = db.execute("SELECT * FROM events WHERE type = 'job.created'")
    ecols = [d[0] for d in ecur.description if d[0] != "seq"]
    event = dict(zip([d[0] for d in ecur.description], ecur.fetchone(), strict=True))
    rng = random.Random(1)
    ids = [(rid(rng, "j"), f"yearly-{i:06d}") for i in range(1, n)]
    bulk(db, f"INSERT INTO jobs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
         ([{**template, "id": i, "name": name}[c] for c in cols] for i, name in ids))
    bulk(db, f"INSERT INTO events ({', '.join(ecols)}) VALUES ({', '.join('?' * len(ecols))})",
         ([{**event, "job_id": i, "data": json.dumps({"name": name})}[c] for c in ecols]
          for i, name in ids))


def fig_jobs(quick: bool) -> Result:
    """Daemon start-up and idle CPU with 100,000 enabled jobs, none due; idle CPU with
    10,000 jobs over a minute (issue 30's comparison with APScheduler)."""
    n, idle = 100_000, (10 if quick else 30)
    small, small_idle = 10_000, (20 if quick else 60)
    res = Result()

    def run_ns(pid: int) -> int:
        """CPU time of *pid*'s threads in ns (/proc/PID/task/*/schedstat: exact, where
        utime+stime count 10 ms ticks)."""
        total = 0
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return 0
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        return total

    def measure(proc, seconds: float):
        """CPU share (% of a core) of the daemon and its children over *seconds*:
        utime+stime ticks, per process, and the schedstat total."""
        time.sleep(3)  # let start-up work finish
        pids = [proc.pid, *children(proc.pid)]
        before = [cpu_ticks(p) for p in pids]
        before_ns = sum(run_ns(p) for p in pids)
        w0 = time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - w0
        used = [(cpu_ticks(p) - b) / CLK_TCK for p, b in zip(pids, before, strict=True)]
        exact = (sum(run_ns(p) for p in pids) - before_ns) / 1e9 / wall * 100
        return pids, used, wall, exact

    sb = Sandbox("jobs")
    try:
        t0 = time.perf_counter()
        load_jobs(sb.store, n)
        loaded = time.perf_counter() - t0
        count, due = sb.store.db.execute(
            "SELECT COUNT(*), MIN(next_run_at) FROM jobs WHERE enabled = 1").fetchone()
        proc, row, line = sb.start_daemon()
        pids, used, wall, exact = measure(proc, idle)
        share = sum(used) / wall * 100
        runs = sb.store.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        sb.stop_daemon(proc)
        res.rows.append(Row(f"Daemon start, {count:,} enabled jobs (spawn -> \"ticking on\")",
                            "< 3 s", f"{line:.2f} s (ticker row after {row:.2f} s)",
                            line < 3.0))
        res.rows.append(Row(f"Daemon idle CPU, {count:,} jobs, over {wall:.0f} s", "< 1 %",
                            f"{share:.2f} % (daemon {used[0] / wall * 100:.2f} %, fork server "
                            f"{sum(used[1:]) / wall * 100:.2f} %)", share < 1.0 and runs == 0))
        res.rows.append(Row(f"Insert {n:,} jobs (clones of a `create_job` row, 100k/txn)", "–",
                            f"{loaded:.2f} s"))
        res.notes.append(
            f"jobs: all `0 3 1 1 *` (next {iso(due)}); processes measured {pids} (daemon + "
            f"children), utime+stime from /proc/PID/stat at {CLK_TCK} ticks/s; runs fired "
            f"during the test: {runs}.")
    finally:
        sb.cleanup()
        if sb.killed:
            res.notes.append(f"jobs: cleanup had to kill {sb.killed} process(es)")

    sb = Sandbox("jobs10k")
    try:
        load_jobs(sb.store, small)
        count = sb.store.db.execute("SELECT COUNT(*) FROM jobs WHERE enabled = 1").fetchone()[0]
        proc, _, _ = sb.start_daemon()
        pids, used, wall, exact = measure(proc, small_idle)
        share = sum(used) / wall * 100
        runs = sb.store.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        sb.stop_daemon(proc)
        ticks = round(sum(used) * CLK_TCK)
        res.rows.append(Row(f"Daemon idle CPU, {count:,} jobs, over {wall:.0f} s", "<= 0.05 %",
                            f"{share:.3f} % ({ticks} tick(s) of 1/{CLK_TCK} s; exact "
                            f"{exact:.3f} %; fork server "
                            f"{sum(used[1:]) / wall * 100:.3f} %)",
                            share <= 0.05 and exact <= 0.05 and runs == 0))
        res.notes.append(
            f"jobs 10k: all `0 3 1 1 *`, load {os.getloadavg()[0]:.2f} after; processes "
            f"{pids}; exact = /proc/PID/task/*/schedstat run time (threads alive at both "
            f"ends); runs fired: {runs}.")
    finally:
        sb.cleanup()
        if sb.killed:
            res.notes.append(f"jobs 10k: cleanup had to kill {sb.killed} process(es)")
    return res


# -- 4. run history over 1,000,000 runs -------------------------------------------------

RUN_INSERT = (
    "INSERT INTO runs (id, job_id, status, trigger, attempt, scheduled_for, fire_at, queued_at, "
    "dispatched_at, started_at, finished_at, exit_code, heartbeat_at, pid, proc_start, host, "
    "payload_pid, phase, progress, reason, output_bytes, cancel_requested, spec) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def run_rows(jobs: list, n: int, rng: random.Random):
    """*n* finished runs, oldest first, round-robin over *jobs* every 5 minutes."""
    specs = [json.dumps(j.spec()) for j in jobs]
    per_job = n // len(jobs) + 1
    base = math.floor(time.time() / 300) * 300 - per_job * 300
    for i in range(n):
        k = i % len(jobs)
        slot = base + (i // len(jobs)) * 300
        queued = slot - 2.0 + k * 0.001
        start = slot + 0.003
        fail = rng.random() < 0.05
        yield (rid(rng, "r"), jobs[k].id, "failed" if fail else "succeeded", "schedule", 1,
               slot, slot, queued, queued, start, start + 1.25, 1 if fail else 0, start + 1.25,
               rng.randrange(1000, 4_000_000), rng.randrange(10**6, 10**9), "bench-host",
               rng.randrange(1000, 4_000_000), None, None,
               "exit code 1: boom" if fail else None, 120, 0, specs[k])


def query_plan(store, call) -> str:
    """EXPLAIN QUERY PLAN of the runs query that *call* sends (traced on the connection)."""
    sent: list[str] = []
    store.db.set_trace_callback(sent.append)
    try:
        call()
    finally:
        store.db.set_trace_callback(None)
    sql = next((q for q in sent if " FROM runs " in q), None)
    if sql is None:
        return "(no runs query seen)"
    return "; ".join(r[3] for r in store.db.execute("EXPLAIN QUERY PLAN " + sql))


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def fig_runs(quick: bool) -> Result:
    """Newest 50 runs of one job, and the next page, with 1,000,000 runs stored."""
    n, n_jobs, reps = (200_000 if quick else 1_000_000), 10, (300 if quick else 2000)
    res = Result()
    sb = Sandbox("runs")
    try:
        store = sb.store
        jobs = [store.create_job(validate_new({
            "name": f"hist-{k}", "schedule": "*/5 * * * *", "timezone": "UTC",
            "command": "python etl.py --date today", "cwd": "/srv/etl"}))[0]
            for k in range(n_jobs)]
        t0 = time.perf_counter()
        bulk(store.db, RUN_INSERT, run_rows(jobs, n, random.Random(4)))
        load = time.perf_counter() - t0
        size = sum(os.path.getsize(sb.db + s) for s in ("", "-wal") if os.path.exists(sb.db + s))
        rng = random.Random(5)
        for _ in range(20):  # warm the page cache and the statement cache
            store.list_runs(rng.choice(jobs).id, limit=50)
        first = timed(lambda: store.list_runs(rng.choice(jobs).id, limit=50), reps)
        cursors = {j.id: store.list_runs(j.id, limit=50).cursor for j in jobs}
        nxt = timed(lambda: store.list_runs(
            (j := rng.choice(jobs)).id, limit=50, cursor=cursors[j.id]), reps)
        walk, cursor, seen = [], None, 0
        for _ in range(200):  # 200 consecutive pages of one job
            t1 = time.perf_counter()
            page = store.list_runs(jobs[0].id, limit=50, cursor=cursor)
            walk.append(time.perf_counter() - t1)
            seen += len(page.items)
            cursor = page.cursor
        page = store.list_runs(jobs[3].id, limit=50)
        newest = store.db.execute("SELECT MAX(queued_at) FROM runs WHERE job_id = ?",
                                  (jobs[3].id,)).fetchone()[0]
        correct = len(page.items) == 50 and page.items[0].queued_at == newest and all(
            a.queued_at > b.queued_at for a, b in itertools.pairwise(page.items))
        plans = [query_plan(store, lambda c=c: store.list_runs(jobs[0].id, limit=50, cursor=c))
                 for c in (None, cursors[jobs[0].id])]
        res.rows.append(Row(f"Newest 50 runs of one job, {n:,} runs stored "
                            f"(`store.list_runs`, n={reps})", "p50 ≤ 1 ms",
                            spread(first), pct(first, 50) <= 0.001 and correct))
        res.rows.append(Row("Next page of 50 via cursor, same store", "–", spread(nxt)))
        res.rows.append(Row(f"Load {n:,} runs over {n_jobs} jobs (executemany, 100k/txn)", "–",
                            f"{load:.1f} s ({n / load:,.0f} rows/s), DB {size / 2**20:.0f} MiB"))
        res.notes.append(
            f"runs: a walk of 200 consecutive pages of one job ({seen:,} runs): "
            f"{spread(walk)}; newest page correct: {correct}; query plan of `list_runs` (traced "
            f"SQL), first page: {plans[0]}; cursor page: {plans[1]}.")
    finally:
        sb.cleanup()
    return res


# -- report -----------------------------------------------------------------------------

def machine() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"nproc {os.cpu_count()} · Python {platform.python_version()} · SQLite "
            f"{sqlite3.sqlite_version} · {platform.platform()} · "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · load average {load} at start")


def render(results: list[Result], header: str, mode: str) -> str:
    lines = ["# hermes-cron-ext core benchmark", "", header, "", f"Mode: {mode}", "",
             "| figure | goal | measured | pass? |", "|---|---|---|---|"]
    for r in (row for res in results for row in res.rows):
        ok = "–" if r.ok is None else ("yes" if r.ok else "**NO**")
        lines.append(f"| {r.figure} | {r.goal} | {r.measured} | {ok} |")
    notes = [n for res in results for n in res.notes]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer samples, shorter idle window, 200k runs")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(FIGURES)}")
    parser.add_argument("--overload", action="store_true",
                        help=f"run the latency and burst figures with {HOGS} busy loops "
                        "beside them (goals: latency p99 <= 20 ms; runs marked lost / "
                        "marked lost but ran 0 / 0)")
    parser.add_argument("--out", help="where to save the table (default: "
                        "bench/results/core-latest.md for a full run, core-partial.md else)")
    args = parser.parse_args(argv)
    only = args.only.split(",") if args.only else list(FIGURES)
    unknown = set(only) - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(sorted(unknown))}; known: "
                     f"{', '.join(FIGURES)}")
    funcs = {"latency": lambda quick: fig_latency(quick, args.overload),
             "notebook": fig_notebook, "pipeline": fig_pipeline,
             "jobs": fig_jobs,
             "runs": fig_runs,
             "burst": lambda quick: fig_burst(quick, args.overload)}
    header = machine()
    results = []
    for name in FIGURES:
        if name in only:
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            t0, load0 = time.perf_counter(), os.getloadavg()[0]
            res = funcs[name](args.quick)
            took = time.perf_counter() - t0
            res.notes.append(f"{name}: took {took:.0f} s; 1-min load average {load0:.2f} "
                             f"before, {os.getloadavg()[0]:.2f} after (2 cores, shared)")
            results.append(res)
            print(f"[bench] {name} done in {took:.0f} s", file=sys.stderr, flush=True)
    full = not args.quick and len(only) == len(FIGURES)
    full = full and not args.overload
    mode = ("full" if full else "partial") + (" --quick" if args.quick else "") + (
        " --overload" if args.overload else "") + (
        f" --only {args.only}" if args.only else "")
    text = render(results, header, mode)
    print(text)
    save(text, args.out or os.path.join(
        HERE, "results", "core-latest.md" if full else "core-partial.md"))
    failed = [r for res in results for r in res.rows if r.ok is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
