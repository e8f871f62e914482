"""Notifications benchmark (issue 32, "Monitoring that reaches you"): a real
``hermes-cron daemon`` on a temp SQLite store sends Apprise ``json://`` notifications of
failing runs to a local HTTP sink (ThreadingHTTPServer on 127.0.0.1 that records each
request's arrival time and body).

    python bench/notifications.py [--runs 200] [--latency-jobs 2] [--burst 1000]
                                  [--burst-urls 1] [--window 15] [--no-control]
                                  [--flaky 20] [--outage 60]
                                  [--metric-runs 10000] [--only latency,burst,flaky,metric]

Figures:

1. ``latency``: run end -> notification received. *latency-jobs* ``@every 1s`` jobs whose
   command is ``/bin/false``, each with ``notify = [json://127.0.0.1:PORT/lat]``, until
   *runs* failed runs exist. Latency = the sink's arrival time - the run's
   ``finished_at`` (the run id is read from the message body). Goal p50 <= 500 ms.
2. ``burst``: *burst* ``/bin/false`` jobs due at one instant (yearly crons on the next
   whole minute at least 20 s ahead, as ``core.py``'s burst), all notifying the same
   sink URL (or *burst-urls* distinct paths, round-robin). Every run's notification must
   arrive exactly once (counted by run id); reported: the time until the last arrived.
   A probe job (``@every 1s``, ``/bin/date +%s.%N``, as ``core.py``'s fire latency)
   runs throughout: its fire latency (printed clock - ``scheduled_for``) in the *window*
   slots after the instant, while the notifications are being sent, is compared with
   the same slots of the same burst without notifications (run first, on a store of its
   own; ``--no-control`` skips it) and with the idle store before the burst. Passes when
   no more of those slots are skipped (overlap: the probe's previous run not yet final)
   or fire > 20 ms late than without notifications.
3. ``flaky``: a destination that answers 503 for *outage* seconds then 200; *flaky*
   failing runs (manual runs of as many jobs, requested together, the outage starting
   then) with the product's default backoff (5 s doubling). Each message must arrive
   (200) exactly once; reported: requests per message at the sink, the outbox's
   ``attempts``, and the time from the run's end to delivery.
4. ``metric``: ``store.metric_series`` of one job with *metric-runs* runs (beside 9 other
   jobs with as many), newest 100 points and all points. Goal p50 <= 10 ms.

Each figure gets its own store in a temp dir; every process started carries
``HERMES_BENCH_TAG=<dir>`` in its environment and is killed by pid at the end
(``core.Sandbox``, then once more for every sandbox of the run). Prints a markdown
table and saves it as
``bench/results/notifications-latest.md`` (a full run) or ``notifications-partial.md``.
Exits 1 if a goal was missed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import PeakSampler, Result, Row, kill_tagged, ms, pct, save, spread  # noqa: E402
from core import (  # noqa: E402
    DATE,
    RUN_INSERT,
    TAG,
    Sandbox,
    bulk,
    iso,
    machine,
    parse_stamp,
    run_rows,
    timed,
)

from hermes_cron_ext.domain.jobspec import validate_new  # noqa: E402

FIGURES = ("latency", "burst", "flaky", "metric")
FALSE = ["/bin/false"]
#: the temp dirs of this run's sandboxes (their processes carry ``TAG=<dir>``)
SANDBOXES: list[str] = []
RUN_RE = re.compile(r"Run: ([A-Za-z0-9_-]+)")


# -- the sink ---------------------------------------------------------------------------

class Sink:
    """A local HTTP server recording every request: ``(arrival, path, status, run_id,
    title)``.
    ``fail_until[path_prefix] = t``: answer 503 to that path until wall-clock *t*."""

    def __init__(self):
        self.requests: list[tuple[float, str, int, str | None, str]] = []
        self.fail_until: dict[str, float] = {}
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                at = time.time()
                status = 200
                for prefix, until in sink.fail_until.items():
                    if self.path.startswith(prefix) and at < until:
                        status = 503
                run_id, title = None, ""
                try:
                    doc = json.loads(body)
                    m = RUN_RE.search(str(doc.get("message") or doc.get("body") or ""))
                    run_id = m.group(1) if m else None
                    title = str(doc.get("title") or "")
                except ValueError:
                    pass
                with sink.lock:
                    sink.requests.append((at, self.path, status, run_id, title))
                out = b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def got(self, prefix: str = "/", status: int | None = 200, failures: bool = True
            ) -> list[tuple[float, str, int, str | None, str]]:
        """Requests to *prefix* answered *status* (None: any); *failures*: only the
        messages of failed runs (title "hermes-cron: JOB failed")."""
        with self.lock:
            return [r for r in self.requests if r[1].startswith(prefix)
                    and (status is None or r[2] == status)
                    and (not failures or r[4].endswith(" failed"))]

    def others(self) -> dict[str, int]:
        """Messages other than failures, by the title's last words."""
        out: dict[str, int] = {}
        with self.lock:
            for r in self.requests:
                if not r[4].endswith(" failed"):
                    kind = " ".join(r[4].split()[3:]) or "(no title)"
                    out[kind] = out.get(kind, 0) + 1
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sandbox(name: str) -> Sandbox:
    sb = Sandbox(f"notify-{name}")
    SANDBOXES.append(sb.dir)
    sb.env["HERMES_CRON_ALLOW_PRIVATE_URLS"] = "1"
    return sb


def runs_of(db, job_ids: list[str] | None = None) -> dict[str, sqlite3.Row]:
    rows = db.execute("SELECT id, job_id, status, scheduled_for, started_at, finished_at "
                      "FROM runs").fetchall()
    keep = set(job_ids) if job_ids is not None else None
    return {r["id"]: r for r in rows if keep is None or r["job_id"] in keep}


def deliveries(db) -> dict[str, sqlite3.Row]:
    return {r["run_id"]: r for r in db.execute(
        "SELECT run_id, status, attempts, created_at, sent_at, last_error FROM deliveries")}


def exactly_once(arrivals: list[tuple[float, str, int, str | None, str]], expected: set[str]
                 ) -> tuple[int, int, int, int]:
    """(run ids received exactly once, received more than once, expected but missing,
    received but unknown)."""
    count: dict[str | None, int] = {}
    for r in arrivals:
        count[r[3]] = count.get(r[3], 0) + 1
    once = sum(1 for k in expected if count.get(k) == 1)
    dup = sum(1 for k in expected if count.get(k, 0) > 1)
    missing = sum(1 for k in expected if k not in count)
    unknown = sum(1 for k in count if k not in expected)
    return once, dup, missing, unknown


def wait_for(pred, limit: float, pause: float = 0.2) -> bool:
    deadline = time.time() + limit
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(pause)
    return pred()


# -- 1. run end -> notification received ------------------------------------------------

def fig_latency(args) -> Result:
    res = Result()
    sb, sink = sandbox("latency"), Sink()
    try:
        proc, _, _ = sb.start_daemon()
        url = sink.url("/lat")
        jobs = [sb.store.create_job(validate_new({
            "name": f"fail-{k}", "schedule": "@every 1s", "timezone": "UTC",
            "command": FALSE, "notify": [url], "max_failures": 0}))[0]
            for k in range(args.latency_jobs)]
        ids = [j.id for j in jobs]
        db = sb.store.db
        t0 = time.time()
        wait_for(lambda: db.execute("SELECT COUNT(*) FROM runs WHERE status = 'failed'"
                                    ).fetchone()[0] >= args.runs,
                 args.runs / args.latency_jobs * 2 + 60, 0.5)
        for j in jobs:
            sb.store.set_paused(j.id, True)
        sb.wait_quiet(15)
        runs = {k: r for k, r in runs_of(db, ids).items() if r["status"] == "failed"}
        wait_for(lambda: {r[3] for r in sink.got("/lat")} >= set(runs), 30)
        time.sleep(2)  # a late duplicate would show
        took = time.time() - t0
        sb.stop_daemon(proc)
        arrivals = sink.got("/lat")
        first: dict[str, float] = {}
        for at, _, _, rid, _ in arrivals:
            if rid in runs and rid not in first:
                first[rid] = at
        lat = [first[k] - runs[k]["finished_at"] for k in first]
        dl = deliveries(db)
        plan = [dl[k]["created_at"] - runs[k]["finished_at"] for k in runs if k in dl]
        sent = [dl[k]["sent_at"] - dl[k]["created_at"] for k in runs
                if k in dl and dl[k]["sent_at"]]
        once, dup, missing, unknown = exactly_once(arrivals, set(runs))
        ok = bool(lat) and pct(lat, 50) <= 0.5 and once == len(runs)
        res.rows.append(Row(
            f"Run end -> notification received by a local sink ({len(runs)} failing runs "
            f"of {args.latency_jobs} `@every 1s` jobs, Apprise `json://`)",
            "p50 ≤ 500 ms", spread(lat), ok))
        res.rows.append(Row("  of which: run end -> delivery planned (outbox row "
                            "`created_at` - `finished_at`)", "–", spread(plan)))
        res.rows.append(Row("  of which: planned -> sent (`sent_at` - `created_at`)", "–",
                            spread(sent)))
        res.notes.append(
            f"latency: {len(runs)} failed runs in {took:.0f} s; received exactly once "
            f"{once}, more than once {dup}, never {missing}, unknown run ids {unknown}; "
            f"other messages at the sink: {sink.others() or 'none'}.")
    finally:
        sink.close()
        sb.cleanup()
        if sb.killed:
            res.notes.append(f"latency: cleanup had to kill {sb.killed} process(es)")
    return res


# -- 2. 1,000 failing runs at one instant ------------------------------------------------

def _burst(args, notify: bool) -> dict:
    """One burst of *args.burst* ``/bin/false`` jobs due at one instant beside the probe;
    with *notify*, each job notifies the sink. The measures, as a dict."""
    n, ahead, window = args.burst, 20, args.window
    out: dict = {}
    sb, sink = sandbox("burst" if notify else "burst-control"), Sink()
    try:
        proc, _, _ = sb.start_daemon()
        probe, _ = sb.store.create_job(validate_new({
            "name": "probe", "schedule": "@every 1s", "timezone": "UTC", "command": DATE}))
        urls = [sink.url(f"/burst{k}") for k in range(args.burst_urls)]
        instant = math.ceil((time.time() + ahead) / 60) * 60
        when = datetime.fromtimestamp(instant, UTC)
        yearly = f"{when.minute} {when.hour} {when.day} {when.month} *"
        t0 = time.perf_counter()
        for i in range(n):
            fields = {"name": f"burst-{i:04d}", "schedule": yearly, "timezone": "UTC",
                      "command": FALSE}
            if notify:
                fields["notify"] = [urls[i % len(urls)]]
            sb.store.create_job(validate_new(fields))
        create = time.perf_counter() - t0
        idle_from = math.ceil(time.time()) + 1
        lead = instant - time.time()
        db = sb.store.db
        peak = PeakSampler(0.05).__enter__()
        time.sleep(max(0.0, instant + 2 - time.time()))

        def burst_runs() -> dict[str, sqlite3.Row]:
            return {k: r for k, r in runs_of(db).items() if r["job_id"] != probe.id}

        wait_for(lambda: len(burst_runs()) >= n and all(
            r["status"] not in ("queued", "running") for r in burst_runs().values()), 180, 0.5)
        settled = time.time() - instant
        runs = burst_runs()
        expected = {k for k, r in runs.items() if r["status"] == "failed"}
        last = math.nan
        if notify:
            wait_for(lambda: {r[3] for r in sink.got("/burst")} >= expected, 300, 0.5)
            last = max((r[0] for r in sink.got("/burst")), default=math.nan)
            time.sleep(3)  # a late duplicate would show
        time.sleep(max(0.0, instant + window + 1.5 - time.time()))
        peak.__exit__()
        load = os.getloadavg()[0]
        sb.store.set_paused(probe.id, True)
        sb.wait_quiet(15)
        sb.stop_daemon(proc)
        arrivals = sink.got("/burst")
        first: dict[str, float] = {}
        for at, _, _, rid, _ in arrivals:
            if rid in runs and rid not in first:
                first[rid] = at
        dl = deliveries(db)
        # the probe: printed clock - slot, on the idle store and after the instant
        probe_lat: dict[float, float] = {}
        probe_other: dict[str, str] = {}
        for r in runs_of(db, [probe.id]).values():
            stamps = parse_stamp(sb.store.log_path(r["id"]))
            if stamps and r["scheduled_for"]:
                probe_lat[r["scheduled_for"]] = stamps[0] - r["scheduled_for"]
            elif r["scheduled_for"] and r["scheduled_for"] >= instant - 1:
                probe_other[f"+{r['scheduled_for'] - instant:.0f} s"] = r["status"]
        reasons = {f"+{r['scheduled_for'] - instant:.0f} s": r["reason"] for r in db.execute(
            "SELECT scheduled_for, reason FROM runs WHERE job_id = ? AND scheduled_for >= ? "
            "AND scheduled_for <= ? AND reason IS NOT NULL", (probe.id, instant - 1,
                                                                instant + window))}
        statuses: dict[str, int] = {}
        for r in runs.values():
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        out.update(
            n=n, urls=len(urls), yearly=yearly, instant=instant, lead=lead, create=create,
            settled=settled, expected=expected, runs=runs, last=last, load=load,
            arrivals=arrivals, once=exactly_once(arrivals, expected),
            lat=[first[k] - runs[k]["finished_at"] for k in first],
            plan=[dl[k]["created_at"] - runs[k]["finished_at"] for k in runs if k in dl],
            sent=[dl[k]["sent_at"] - dl[k]["created_at"] for k in runs
                  if k in dl and dl[k]["sent_at"]],
            outbox=[tuple(r) for r in db.execute(
                "SELECT status, COUNT(*), MAX(attempts) FROM deliveries GROUP BY status")],
            others=sink.others(), statuses=statuses, peak=peak.describe(),
            idle=[v for s, v in probe_lat.items() if idle_from <= s <= instant - 2],
            after=[v for s, v in probe_lat.items() if instant + 1 <= s <= instant + window],
            slots=[probe_lat.get(instant + k, math.nan) for k in range(0, window + 1)],
            missing=[k for k in range(1, window + 1) if instant + k not in probe_lat],
            probe_other=probe_other, probe_reasons=reasons)
    finally:
        sink.close()
        sb.cleanup()
        out["killed"] = sb.killed
    return out


def _slots(values: list[float]) -> str:
    return ", ".join("–" if math.isnan(v) else f"{v * 1000:.0f}" for v in values)


def fig_burst(args) -> Result:
    """The burst with notifications, and (unless --no-control) first the same burst
    without, so the probe's delay can be told apart from the 1,000 runs' own."""
    res = Result()
    ctl = None if args.no_control else _burst(args, notify=False)
    b = _burst(args, notify=True)
    n = b["n"]
    once, dup, missing, unknown = b["once"]
    ok = once == n == len(b["expected"]) and not dup and not unknown
    res.rows.append(Row(
        f"{n:,} failing runs at one instant, {b['urls']} destination URL(s): each "
        f"notification delivered exactly once", "each exactly once",
        f"{once:,}/{n:,} exactly once, {dup} twice or more, {missing} never, "
        f"{unknown} unknown", ok))
    res.rows.append(Row(
        f"  time from the instant until the last of the {n:,} notifications arrived",
        "–", f"{b['last'] - b['instant']:.2f} s (runs all final at {b['settled']:.1f} s)"))
    res.rows.append(Row("  run end -> received, per run, in the burst", "–", spread(b["lat"])))
    res.rows.append(Row("  of which: run end -> planned / planned -> sent", "–",
                        f"{spread(b['plan'])} / {spread(b['sent'])}"))
    res.rows.append(Row("  probe job `@every 1s` fire latency, idle store before the burst",
                        "–", spread(b["idle"])))
    w = args.window

    def bad(x: dict) -> list[int]:
        """Probe slots +1 .. +w s without a sample (skipped: overlap) or > 20 ms late."""
        return [k for k in range(1, w + 1)
                if math.isnan(x["slots"][k]) or x["slots"][k] > 0.020]

    if ctl is not None:
        res.rows.append(Row(
            f"  probe, slots instant+1 .. +{w} s, the same burst WITHOUT notifications",
            "–", f"{spread(ctl['after'])}; next slot {ms(ctl['slots'][1])}; slots skipped "
            f"or > 20 ms late: {bad(ctl) or 'none'}"))
    ok_probe = len(bad(b)) <= (len(bad(ctl)) if ctl is not None else 0)
    res.rows.append(Row(
        f"  probe, slots instant+1 .. +{w} s, WITH the {n:,} notifications being sent",
        "unaffected: no more slots skipped or > 20 ms late than "
        + ("without notifications" if ctl is not None else "none"),
        f"{spread(b['after'])}; next slot {ms(b['slots'][1])}; slots skipped or > 20 ms "
        f"late: {bad(b) or 'none'}", ok_probe))
    clean = range(math.ceil(b["settled"]) + 1, min(w, math.floor(b["last"] - b["instant"])) + 1)
    alone = [b["slots"][k] for k in clean if not math.isnan(b["slots"][k])]
    res.rows.append(Row(
        "  probe, slots after every burst run was final while notifications were still "
        f"being sent (+{clean.start} .. +{clean.stop - 1} s)", "–",
        spread(alone) if alone else "no such slot"))
    for name, x in (("without notifications", ctl), ("with notifications", b)):
        if x is None:
            continue
        res.notes.append(
            f"burst {name}: schedule `{x['yearly']}` (UTC), instant {iso(x['instant'])}, "
            f"{x['lead']:.1f} s after the last create ({x['create']:.1f} s for {n:,} "
            f"`create_job`); run statuses {x['statuses']}, all final {x['settled']:.1f} s "
            f"after the instant; outbox (status, rows, max attempts): {x['outbox']}; "
            f"failure messages at the sink {len(x['arrivals']):,}, others "
            f"{x['others'] or 'none'}; probe latency per slot from the instant, ms: "
            f"[{_slots(x['slots'])}]; probe runs without a sample: "
            f"{x['probe_other'] or 'none'}, reasons {x['probe_reasons'] or 'none'}; "
            f"{x['peak']}; 1-min load average at the end {x['load']:.2f}"
            + (f"; cleanup had to kill {x['killed']} process(es)" if x["killed"] else "")
            + ".")
    return res


# -- 3. a destination answering 503 for a minute -----------------------------------------

def fig_flaky(args) -> Result:
    n = args.flaky
    res = Result()
    sb, sink = sandbox("flaky"), Sink()
    try:
        proc, _, _ = sb.start_daemon()
        url = sink.url("/flaky")
        jobs = [sb.store.create_job(validate_new({
            "name": f"flaky-{k:02d}", "schedule": "0 3 1 1 *", "timezone": "UTC",
            "command": FALSE, "notify": [url]}))[0] for k in range(n)]
        start = time.time()
        sink.fail_until["/flaky"] = start + args.outage
        for j in jobs:
            sb.store.request_run(j.id)
        db = sb.store.db
        ids = [j.id for j in jobs]
        wait_for(lambda: len(runs_of(db, ids)) >= n and all(
            r["status"] not in ("queued", "running") for r in runs_of(db, ids).values()), 60)
        runs = {k: r for k, r in runs_of(db, ids).items() if r["status"] == "failed"}
        limit = args.outage + 400
        wait_for(lambda: {r[3] for r in sink.got("/flaky")} >= set(runs), limit, 0.5)
        time.sleep(3)
        took = time.time() - start
        sb.stop_daemon(proc)
        ok_arrivals = sink.got("/flaky")
        every = sink.got("/flaky", status=None)
        once, dup, missing, unknown = exactly_once(ok_arrivals, set(runs))
        tries: dict[str | None, int] = {}
        for r in every:
            tries[r[3]] = tries.get(r[3], 0) + 1
        first_ok = {}
        for at, _, _, rid, _ in ok_arrivals:
            first_ok.setdefault(rid, at)
        to_delivery = [first_ok[k] - runs[k]["finished_at"] for k in runs if k in first_ok]
        dl = deliveries(db)
        attempts = sorted(dl[k]["attempts"] for k in runs if k in dl)
        sink_tries = sorted(tries.get(k, 0) for k in runs)
        ok = once == n == len(runs)
        res.rows.append(Row(
            f"Destination answers 503 for {args.outage:.0f} s then 200: {n} messages "
            f"(default backoff 5 s doubling), each received once", "each exactly once",
            f"{once}/{n} exactly once, {dup} twice or more, {missing} never", ok))
        res.rows.append(Row(
            "  run end -> delivered (200)", "–",
            f"min {min(to_delivery, default=math.nan):.1f} s / p50 "
            f"{pct(to_delivery, 50):.1f} s / max {max(to_delivery, default=math.nan):.1f} s"))
        res.rows.append(Row(
            "  requests per message at the sink (503s + the 200) / outbox `attempts`", "–",
            f"sink {dict(sorted(_hist(sink_tries).items()))} / outbox "
            f"{dict(sorted(_hist(attempts).items()))} (value: messages)"))
        times = sorted(r[0] - start for r in every if r[2] == 503)
        res.notes.append(
            f"flaky: outage from {iso(start)} for {args.outage:.0f} s; 503 answers at "
            f"{[round(t, 1) for t in times]} s after its start; the first 200 at "
            f"{min((r[0] for r in ok_arrivals), default=math.nan) - start:.1f} s, the last "
            f"at {max((r[0] for r in ok_arrivals), default=math.nan) - start:.1f} s; "
            f"figure took {took:.0f} s; unknown run ids at the sink: {unknown}; other "
            f"messages: {sink.others() or 'none'}.")
    finally:
        sink.close()
        sb.cleanup()
        if sb.killed:
            res.notes.append(f"flaky: cleanup had to kill {sb.killed} process(es)")
    return res


def _hist(values: list[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


# -- 4. metric query --------------------------------------------------------------------

METRIC_INSERT = ("INSERT INTO run_metrics (run_id, job_id, name, value, unit, at) "
                 "VALUES (?, ?, ?, ?, ?, ?)")


def fig_metric(args) -> Result:
    n, n_jobs = args.metric_runs, 10
    res = Result()
    sb = sandbox("metric")
    try:
        store = sb.store
        jobs = [store.create_job(validate_new({
            "name": f"etl-{k}", "schedule": "*/5 * * * *", "timezone": "UTC",
            "command": "python etl.py"}))[0] for k in range(n_jobs)]
        rows = list(run_rows(jobs, n * n_jobs, random.Random(7)))
        bulk(store.db, RUN_INSERT, rows)
        rng = random.Random(8)

        def metrics():
            for r in rows:  # the built-ins the store records at a run's end, + one reported
                run_id, job_id, fin = r[0], r[1], r[10]
                yield (run_id, job_id, "duration", fin - r[9], "s", fin)
                yield (run_id, job_id, "exit_code", r[11], "", fin)
                yield (run_id, job_id, "output_bytes", r[20], "B", fin)
                yield (run_id, job_id, "rows", rng.randrange(1000, 100000), "", fin)

        bulk(store.db, METRIC_INSERT, metrics())
        job = jobs[3].id
        count = store.db.execute("SELECT COUNT(*) FROM run_metrics WHERE job_id = ? AND "
                                 "name = 'duration'", (job,)).fetchone()[0]
        for _ in range(20):
            store.metric_series(job, "duration", limit=100)
        newest = timed(lambda: store.metric_series(job, "rows", limit=100), 1000)
        every = timed(lambda: store.metric_series(job, "duration", limit=100_000), 200)
        got = len(store.metric_series(job, "duration", limit=100_000))
        names = timed(lambda: store.metric_names(job), 200)
        res.rows.append(Row(
            f"Metric query, one job with {count:,} runs ({n * n_jobs:,} runs stored): "
            f"`store.metric_series`, newest 100 points", "p50 ≤ 10 ms", spread(newest),
            pct(newest, 50) <= 0.010))
        res.rows.append(Row(f"  the same, all {got:,} points", "p50 ≤ 10 ms", spread(every),
                            pct(every, 50) <= 0.010 and got == count))
        res.rows.append(Row("  `store.metric_names` of that job", "–", spread(names)))
    finally:
        sb.cleanup()
    return res


# -- report -----------------------------------------------------------------------------

def render(results: list[Result], header: str, mode: str) -> str:
    lines = ["# hermes-cron-ext notifications benchmark", "", header, "", f"Mode: {mode}", "",
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
    parser.add_argument("--runs", type=int, default=200, help="failing runs for latency")
    parser.add_argument("--latency-jobs", type=int, default=2)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--burst-urls", type=int, default=1)
    parser.add_argument("--window", type=int, default=15,
                        help="probe slots after the burst's instant compared, seconds")
    parser.add_argument("--no-control", action="store_true",
                        help="skip the burst without notifications")
    parser.add_argument("--flaky", type=int, default=20)
    parser.add_argument("--outage", type=float, default=60.0)
    parser.add_argument("--metric-runs", type=int, default=10_000)
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(FIGURES)}")
    parser.add_argument("--out", help="where to save the table")
    parser.add_argument("--code", help="a note on the code measured, for the header (e.g. "
                        "'git archive COMMIT' when run with PYTHONPATH on a snapshot)")
    args = parser.parse_args(argv)
    only = args.only.split(",") if args.only else list(FIGURES)
    if set(only) - set(FIGURES):
        parser.error(f"known figures: {', '.join(FIGURES)}")
    funcs = {"latency": fig_latency, "burst": fig_burst, "flaky": fig_flaky,
             "metric": fig_metric}
    import hermes_cron_ext

    where = os.path.dirname(os.path.dirname(os.path.abspath(hermes_cron_ext.__file__)))
    head = subprocess.run(["git", "-C", where, "describe", "--always", "--dirty"],
                          capture_output=True, text=True).stdout.strip()
    header = machine() + f" · code: `hermes_cron_ext` from {where}" + (
        f" ({head})" if head else "") + (f" · {args.code}" if args.code else "")
    results = []
    try:
        for name in FIGURES:
            if name in only:
                print(f"[bench] {name} ...", file=sys.stderr, flush=True)
                t0, load0 = time.perf_counter(), os.getloadavg()[0]
                res = funcs[name](args)
                took = time.perf_counter() - t0
                res.notes.append(f"{name}: took {took:.0f} s; 1-min load average "
                                 f"{load0:.2f} before, {os.getloadavg()[0]:.2f} after")
                results.append(res)
                print(f"[bench] {name} done in {took:.0f} s", file=sys.stderr, flush=True)
    finally:  # safety net: whatever a sandbox of this run left (by pid, its tag)
        for d in SANDBOXES:
            kill_tagged(f"{TAG}={d}".encode() + b"\0")
    defaults = parser.parse_args([])
    full = len(only) == len(FIGURES) and vars(args) == vars(defaults) | {
        "only": args.only, "out": args.out, "code": args.code}
    mode = ("full" if full else "partial") + " · " + " ".join(
        f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
        for k, v in vars(args).items() if v not in (None, False) and k != "out")
    text = render(results, header, mode)
    print(text)
    save(text, args.out or os.path.join(
        HERE, "results", "notifications-latest.md" if full else "notifications-partial.md"))
    return 1 if any(r.ok is False for res in results for r in res.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
