"""The side-by-side rows: hermes-cron-ext's daemon beside APScheduler 3.11 (two
configurations) and APScheduler 4, each on a SQLite store, each running ``/bin/date
+%s.%N`` as a subprocess (the payload's printed clock minus the slot instant is when it
started). ``run.py`` calls :func:`measure` for the rows and systems asked for; the
figures go to ``results-side.json`` (one cell per system and row, each with its date and
the load before it), and :func:`section` renders them as one table in the results file.

Rows (for each system):

- ``latency``: one job every second, slot -> the payload's clock; n samples after 2
  warm-up slots;
- ``burst``: N jobs due at one instant (yearly crons), in rounds: when each payload
  started, how many ran (exactly once), and what the machine carried meanwhile (processes
  in /proc and runnable tasks from /proc/loadavg, sampled every 20 ms from the moment the
  jobs are stored until every run has ended);
- ``idle``: CPU of the scheduler's process tree holding 10,000 jobs none due.

Ours runs the way ``bench/core.py`` runs it (``hermes-cron daemon`` on a fresh SQLite
store, jobs made with ``store.create_job``), with its helpers; APScheduler runs
``aps3_worker.py`` / ``aps_worker.py`` in its own scratch venv.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from harness import HERE, dur, idle_cpu, kill_sessions, log, pct, proc_stat, tree
from peers import APS3_VENV, APS3_WORKER, APS_VENV, APS_WORKER, aps_popen, read_triples

ROWS = ("latency", "burst", "idle")
PERIOD = 1.0  # the latency row's interval
WARMUP = 2  # latency slots left out at the start
BEGIN = "<!-- side-by-side: begin (run.py writes this part from results-side.json) -->"
END = "<!-- side-by-side: end -->"


@dataclass(frozen=True)
class System:
    key: str  # what --systems names
    title: str  # the column
    venv: str = ""  # APScheduler: its scratch venv and worker, and the worker's extra args
    worker: str = ""
    extra: tuple[str, ...] = ()
    setup: str = ""


SYSTEMS = {s.key: s for s in (
    System("ours", "hermes-cron-ext", setup=(
        "`hermes-cron daemon` (`python -m hermes_cron_ext --db STORE daemon`) on a fresh "
        "SQLite store; jobs made with `store.create_job` (what `hermes-cron add` calls), "
        "command `[\"/bin/date\", \"+%s.%N\"]` (no shell); the printed clock is read from "
        "each run's log. Burst: yearly crons on the next whole minute at least 20 s ahead "
        "(`bench/core.py`'s `due_at_once`)")),
    System("aps3", "APScheduler 3.11, defaults", APS3_VENV, APS3_WORKER, ("default",), (
        "`BackgroundScheduler`, `SQLAlchemyJobStore` on a SQLite file, "
        "`ThreadPoolExecutor(20)` (the pool its user guide configures; the class's own "
        "default is 10), timezone UTC, job defaults untouched: `misfire_grace_time` 1 s, so "
        "a run that waits longer than 1 s for a thread is dropped (a `EVENT_JOB_MISSED`), "
        "`coalesce` True. The job function runs `/bin/date` with `subprocess.run`. Latency: "
        "an `interval` job (1 s); APScheduler 3 does not hand the job its slot, so the slot "
        "is the last point of the 1 s grid at or before the call. Burst: `cron` jobs "
        "(month, day, hour, minute, second) added to the running scheduler, due at a whole "
        "second 30 s ahead")),
    System("aps3-nograce", "APScheduler 3.11, `misfire_grace_time=None`", APS3_VENV,
           APS3_WORKER, ("none",), "the same, with `job_defaults={'misfire_grace_time': "
           "None}`: no run is dropped however late"),
    System("aps4", "APScheduler 4.0a6", APS_VENV, APS_WORKER, (), (
        "`AsyncScheduler` with `SQLAlchemyDataStore` on a SQLite file (aiosqlite), "
        "defaults otherwise (its sync job functions run in its thread pool). The job "
        "function runs `/bin/date` with `subprocess.run`; slot = the job's "
        "`scheduled_fire_time` (`current_job`). Burst: `CronTrigger` schedules (month, day, "
        "hour, minute, second) added with `add_schedule` to the running scheduler, due at a "
        "whole second 30 s ahead")),
)}


# -- what the machine carries: /proc sampled every 20 ms -----------------------------------

def count_procs() -> int:
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


class Sampler:
    """From a thread, every *interval*: processes in /proc (all, and the scheduler's own:
    *root* and what descends from it), and /proc/loadavg's runnable tasks (4th field,
    before the slash) and 1-minute load; the peaks.

    A process is the scheduler's own when its parent was, the first time a sample sees it
    (one /proc/PID/stat read per new process; one that is reparented before a sample
    sees it is missed): other users' processes on a shared machine do not count."""

    def __init__(self, root: int, interval: float = 0.02):
        self.interval = interval
        self.peak = {"procs": 0, "own": 0, "runnable": 0, "load1": 0.0}
        self.samples = 0
        self._seen = {int(p) for p in os.listdir("/proc") if p.isdigit()}
        self._own = set(tree([root]))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._t0 = 0.0

    def _loop(self) -> None:
        while not self._stop.is_set():
            pids = {int(p) for p in os.listdir("/proc") if p.isdigit()}
            for pid in sorted(pids - self._seen):  # parents first, mostly
                fields = proc_stat(pid)
                if fields and int(fields[1]) in self._own:
                    self._own.add(pid)
            self._seen |= pids
            with open("/proc/loadavg") as f:
                fields = f.read().split()
            # the sampler itself is one of the runnable tasks it counts
            now = {"procs": len(pids), "own": len(self._own & pids),
                   "runnable": int(fields[3].split("/")[0]) - 1, "load1": float(fields[0])}
            self.peak = {k: max(v, now[k]) for k, v in self.peak.items()}
            self.samples += 1
            self._stop.wait(self.interval)

    def start(self) -> Sampler:
        self._t0 = time.time()
        self._thread.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {**self.peak, "samples": self.samples,
                "sampled_s": round(time.time() - self._t0, 1)}


def load1() -> float:
    return os.getloadavg()[0]


def calm(limit: float, wait: float = 900.0) -> None:
    """Wait (up to *wait* s) for the 1-minute load to drop below *limit* (0: do not)."""
    deadline = time.time() + wait
    if limit and load1() >= limit:
        log(f"waiting for the 1-min load ({load1():.2f}) to drop below {limit:g}")
    while limit and load1() >= limit and time.time() < deadline:
        time.sleep(5)


def stamp() -> dict:
    """When a cell was measured, and the 1-minute load just before."""
    return {"at": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "load_before": round(load1(), 2)}


def spread(values: list[float]) -> dict:
    return {"p50": pct(values, 50), "p99": pct(values, 99),
            "max": max(values) if values else math.nan, "n": len(values)}


def burst_figures(per_tag: dict[str, list[float]], n: int, instant: float) -> dict:
    """*per_tag*: each job's payload clocks. When they started (clock - instant) and how
    many of the *n* jobs ran exactly once."""
    starts = [t - instant for clocks in per_tag.values() for t in clocks]
    return {**{k: v for k, v in spread(starts).items() if k != "n"}, "starts": len(starts),
            "ran": len(per_tag), "once": sum(1 for c in per_tag.values() if len(c) == 1),
            "jobs": n}


# -- hermes-cron-ext: bench/core.py's daemon sandbox ------------------------------------------

def ours_latency(n: int) -> dict:
    import core  # bench/core.py (imported late: it imports this project)

    sb = core.Sandbox("compare-latency")
    try:
        proc, _, _ = sb.start_daemon()
        job, _ = sb.store.create_job(core.validate_new(
            {"name": "latency", "schedule": "@every 1s", "timezone": "UTC",
             "command": core.DATE}))
        made = time.time()
        first = None  # the first slot that ran: the daemon has taken the new job
        while first is None and time.time() < made + 60:
            time.sleep(0.2)
            first = sb.store.db.execute(
                "SELECT MIN(scheduled_for) FROM runs WHERE job_id = ? AND started_at IS NOT "
                "NULL", (job.id,)).fetchone()[0]
        first = (first or made) + WARMUP
        time.sleep(max(0.0, first + n - 1 + 1.5 - time.time()))
        sb.store.set_paused(job.id, True)
        sb.wait_quiet(15)
        sb.stop_daemon(proc)
        rows = sb.store.db.execute(
            "SELECT id, scheduled_for FROM runs WHERE job_id = ? AND trigger = 'schedule' "
            "AND scheduled_for >= ? ORDER BY scheduled_for LIMIT ?", (job.id, first, n))
        samples = [stamps[0] - slot for rid, slot in rows.fetchall()
                   if (stamps := core.parse_stamp(sb.store.log_path(rid)))]
    finally:
        sb.cleanup()
    return {**spread(samples), "wanted": n,
            "first_after_s": round(first - WARMUP - made, 1)}


def ours_burst(n: int) -> dict:
    import core

    sb = core.Sandbox("compare-burst")
    try:
        proc, _, _ = sb.start_daemon()
        before = count_procs()
        instant, _, create, lead = core.due_at_once(sb.store, n, 20)
        sampler = Sampler(proc.pid).start()
        settled = core.wait_settled(sb.store.db, n, instant)
        machine = sampler.stop()
        sb.wait_quiet(15)
        sb.stop_daemon(proc)
        per_tag: dict[str, list[float]] = {}
        for rid, job_id in sb.store.db.execute("SELECT id, job_id FROM runs").fetchall():
            per_tag.setdefault(job_id, []).extend(core.parse_stamp(sb.store.log_path(rid)))
        per_tag = {k: v for k, v in per_tag.items() if v}
    finally:
        sb.cleanup()
    return {**burst_figures(per_tag, n, instant), **machine, "procs_before": before,
            "adds_s": round(create, 2), "lead_s": round(lead, 1),
            "settled_s": round(settled, 1)}


def ours_idle(n: int, seconds: float) -> dict:
    import core

    sb = core.Sandbox("compare-idle")
    try:
        core.load_jobs(sb.store, n)
        proc, _, _ = sb.start_daemon()
        time.sleep(3)  # its start-up work
        cpu, procs = idle_cpu({"ours": [proc.pid]}, seconds)["ours"]
        fired = sb.store.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    finally:
        sb.cleanup()
    return {"cpu": cpu, "procs": procs, "jobs": n, "seconds": seconds, "fired": fired}


# -- APScheduler: a worker in its venv ------------------------------------------------------------

class Worker:
    """One APScheduler worker process (in a session of its own) and its stdout lines."""

    def __init__(self, system: System, args: list[str], root: str, env: dict[str, str]):
        self.proc = aps_popen([*args, *system.extra], env, root, system.venv, system.worker)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def line(self, timeout: float) -> str:
        try:
            got = self.lines.get(timeout=timeout)
        except queue.Empty:
            got = ""
        if not got:
            self.stop()
            raise RuntimeError(f"{self.proc.args[1]} {self.proc.args[2]}: no answer "
                               f"(exit {self.proc.poll()}); see aps.err in the temp dir")
        return got

    def json(self, timeout: float) -> dict:
        return json.loads(self.line(timeout))

    def stop(self) -> None:
        kill_sessions([self.proc.pid], 10.0)
        self.proc.wait()


def aps_latency(system: System, n: int, root: str, env: dict[str, str]) -> dict:
    out = os.path.join(root, "latency.txt")
    w = Worker(system, ["latency", os.path.join(root, "latency.db"), out, str(n + WARMUP),
                        str(PERIOD)], root, env)
    w.json(60)  # ready
    done = w.json(n * PERIOD * 2 + 120)
    w.proc.wait(30)
    clocks = sorted(read_triples(out), key=lambda r: r[1])[WARMUP:WARMUP + n]
    return {**spread([t - slot for t, slot, _ in clocks]), "wanted": n,
            "events": {k: v for k, v in done.items() if k != "done"}}


def aps_burst(system: System, n: int, root: str, env: dict[str, str]) -> dict:
    out = os.path.join(root, "burst.txt")
    instant = float(math.ceil(time.time()) + 30)
    before = count_procs()
    w = Worker(system, ["burst", os.path.join(root, "burst.db"), out, str(n), str(instant)],
               root, env)
    ready = w.json(60)
    sampler = Sampler(w.proc.pid).start()
    done = w.json(instant - time.time() + 400)
    machine = sampler.stop()
    w.proc.wait(30)
    per_tag: dict[str, list[float]] = {}
    for t, _, tag in read_triples(out):
        per_tag.setdefault(tag, []).append(t)
    return {**burst_figures(per_tag, n, instant), **machine, "procs_before": before,
            "adds_s": round(ready["adds_s"], 2), "lead_s": round(ready["lead"], 1),
            "settled_s": round(time.time() - instant, 1), "ended": done.pop("done"),
            "events": done}


def aps_idle(system: System, n: int, seconds: float, root: str, env: dict[str, str]) -> dict:
    w = Worker(system, ["idle", os.path.join(root, "idle.db"), str(n)], root, env)
    try:
        _, took, stored = w.line(900).split()
        time.sleep(3)
        cpu, procs = idle_cpu({"aps": [w.proc.pid]}, seconds)["aps"]
    finally:
        w.stop()
    return {"cpu": cpu, "procs": procs, "jobs": int(stored), "seconds": seconds,
            "adds_s": float(took)}


# -- one pass over the rows and systems asked for -------------------------------------------------

def measure(rows: list[str], systems: list[str], sizes: dict, sandbox_dir: str,
            env: dict[str, str], results: dict, saved=lambda: None) -> None:
    """Measure *rows* for *systems* (each alone; burst rounds interleaved across systems)
    into *results* (``{system: {row: cell}}``); ``saved()`` after each cell."""
    def root(key: str, what: str) -> str:
        path = os.path.join(sandbox_dir, "side", key, what)
        os.makedirs(path, exist_ok=True)
        return path

    def cell(key: str, row: str, fn) -> dict:
        calm(sizes.get("max_load", 0.0))
        log(f"side by side: {row}, {SYSTEMS[key].title} (load {load1():.2f})")
        got = {**stamp(), **fn()}
        got["load_after"] = round(load1(), 2)
        log(f"side by side: {row}, {SYSTEMS[key].title}: " + brief(row, got))
        return got

    for row in rows:
        if row == "latency":
            for key in systems:
                s = SYSTEMS[key]
                results.setdefault(key, {})["latency"] = cell(key, row, (
                    lambda: ours_latency(sizes["latency"])) if key == "ours" else (
                    lambda s=s: aps_latency(s, sizes["latency"], root(s.key, "latency"), env)))
                saved()
        elif row == "burst":
            rounds: dict[str, list[dict]] = {k: [] for k in systems}
            for r in range(sizes["rounds"]):
                for key in systems:
                    s = SYSTEMS[key]
                    rounds[key].append(cell(key, f"burst round {r + 1}", (
                        lambda: ours_burst(sizes["burst"])) if key == "ours" else (
                        lambda s=s, r=r: aps_burst(s, sizes["burst"],
                                                   root(s.key, f"burst-{r}"), env))))
                    results.setdefault(key, {})["burst"] = rounds[key]
                    saved()
        elif row == "idle":
            for key in systems:
                s = SYSTEMS[key]
                results.setdefault(key, {})["idle"] = cell(key, row, (
                    lambda: ours_idle(sizes["fleet"], sizes["idle_seconds"])) if key == "ours"
                    else (lambda s=s: aps_idle(s, sizes["fleet"], sizes["idle_seconds"],
                                               root(s.key, "idle"), env)))
                saved()


def brief(row: str, got: dict) -> str:
    if row == "latency":
        return f"p50 {dur(got['p50'])} / p99 {dur(got['p99'])} (n={got['n']})"
    if row == "idle":
        return f"{got['cpu']:.2f} % of a core"
    return (f"all by {dur(got['max'])}, p50 {dur(got['p50'])}, {got['once']}/{got['jobs']} "
            f"exactly once, {got['procs']} processes at the peak ({got['own']} its own), "
            f"{got['runnable']} runnable")


# -- the table -------------------------------------------------------------------------------------

def results_path(quick: bool) -> str:
    return os.path.join(HERE, "results-side-quick.json" if quick else "results-side.json")


def load_results(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"meta": {}, "cells": {}}


def save_results(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def per_round(rounds: list[dict], fmt) -> str:
    return " / ".join(fmt(r) for r in rounds)


def ms_pair(a: float, b: float) -> str:
    """``3.4 / 6.6 ms``, or with units on each when they differ."""
    if max(a, b) < 1:
        return f"{a * 1000:.1f} / {b * 1000:.1f} ms"
    return f"{dur(a)} / {dur(b)}"


def table(cells: dict) -> list[str]:
    keys = list(SYSTEMS)
    head = ["figure"] + [SYSTEMS[k].title for k in keys]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(title: str, what: str, fmt) -> None:
        vals = []
        for k in keys:
            got = cells.get(k, {}).get(what)
            vals.append(fmt(got) if got else "not run yet")
        out.append(f"| {title} | " + " | ".join(vals) + " |")

    lat_n = next((c["latency"]["wanted"] for c in cells.values() if "latency" in c), 180)
    row(f"fire latency, slot -> payload's clock, 1 s period, n={lat_n}: p50 / p99",
        "latency", lambda g: ms_pair(g["p50"], g["p99"]) + (
            f" (n={g['n']})" if g["n"] != g["wanted"] else ""))
    jobs = next((c["burst"][0]["jobs"] for c in cells.values() if c.get("burst")), 1000)
    what = f"{jobs:,} jobs due at one instant"
    row(f"{what}: all started by (max), per round", "burst",
        lambda g: per_round(g, lambda r: dur(r["max"])))
    row(f"{what}: p50 started, per round", "burst",
        lambda g: per_round(g, lambda r: dur(r["p50"])))
    row(f"{what}: ran exactly once, per round", "burst",
        lambda g: per_round(g, lambda r: f"{r['once']:,}") + dropped(g))
    row(f"{what}: processes at the peak, the scheduler's own, per round", "burst",
        lambda g: per_round(g, lambda r: f"{r['own']:,}" if "own" in r else "–"))
    row(f"{what}: processes on the machine at the peak, per round (before the jobs)", "burst",
        lambda g: per_round(g, lambda r: f"{r['procs']:,}")
        + " (" + per_round(g, lambda r: f"{r['procs_before']:,}") + ")")
    row(f"{what}: runnable tasks at the peak (/proc/loadavg), per round; 1-min load peak",
        "burst", lambda g: per_round(g, lambda r: f"{r['runnable']:,}") + "; "
        + per_round(g, lambda r: f"{r['load1']:.2f}"))
    fleet = next((c["idle"]["jobs"] for c in cells.values() if "idle" in c), 10_000)
    row(f"idle CPU, {fleet:,} jobs none due: % of one core", "idle",
        lambda g: f"{g['cpu']:.2f} %")
    vals = []
    for k in keys:
        c = cells.get(k, {})
        parts = [f"{c['latency']['load_before']:.2f}" if "latency" in c else "–",
                 per_round(c["burst"], lambda r: f"{r['load_before']:.2f}")
                 if c.get("burst") else "–",
                 f"{c['idle']['load_before']:.2f}" if "idle" in c else "–"]
        vals.append("; ".join(parts))
    out.append("| 1-min load average before: latency; burst rounds; idle | "
               + " | ".join(vals) + " |")
    return out


def dropped(rounds: list[dict]) -> str:
    missed = [r.get("events", {}).get("missed") for r in rounds]
    if not any(missed):
        return ""
    return " (dropped as missed: " + " / ".join(f"{m or 0:,}" for m in missed) + ")"


def section(data: dict, quick: bool) -> str:
    """The markdown between the markers: the table and how each cell was measured."""
    cells, meta = data.get("cells", {}), data.get("meta", {})
    lines = [BEGIN, "", "## Side by side: a command payload (`/bin/date`) on SQLite stores", "",
             "Each system alone on the machine, one at a time (burst rounds interleaved "
             "across systems); `python bench/compare/run.py --only latency,burst,idle"
             + (" --quick" if quick else "") + "` (add `--systems ...` for some columns). "
             "Started = the payload's printed clock - the slot instant. Cells were measured "
             "at the times below, not necessarily in one run.", ""]
    lines += table(cells)
    lines += ["", "How each system ran:", ""]
    for k, s in SYSTEMS.items():
        m = meta.get(k, {})
        got = ", ".join(x for x in (m.get("version", ""), m.get("specs") and (
            f"{m['specs']} in `{m['venv']}`")) if x)
        lines.append(f"- **{s.title}**{f' ({got})' if got else ''}: {s.setup}.")
    lines += ["", "When each cell was measured, and what else it saw:", ""]
    for k, s in SYSTEMS.items():
        c = cells.get(k)
        if not c:
            lines.append(f"- {s.title}: not run yet.")
            continue
        bits = []
        if "latency" in c:
            g = c["latency"]
            bits.append(f"latency {g['at']} (load {during(g)}): max "
                        f"{dur(g['max'])}, {g['n']} of {g['wanted']} slots gave a sample"
                        + (f" (the first run of the new job was the slot {g['first_after_s']}"
                           " s after it was made)" if "first_after_s" in g else ""))
        for i, r in enumerate(c.get("burst", []), 1):
            ev = r.get("events")
            bits.append(
                f"burst round {i} {r['at']} (load {during(r)}): p99 "
                f"{dur(r['p99'])}, {r['ran']:,} jobs ran ({r['starts']:,} payload starts), "
                f"jobs stored {r['adds_s']:.1f} s, {r['lead_s']:.1f} s before the instant; "
                f"all ended {r['settled_s']:.1f} s after it; {r['samples']:,} samples over "
                f"{r['sampled_s']:.0f} s" + (f"; scheduler events {ev}" if ev else "")
                + (f"; stopped waiting: {r['ended']}" if r.get("ended", "all") not in (
                    "all", "accounted") else ""))
        if "idle" in c:
            g = c["idle"]
            bits.append(f"idle {g['at']} (load {during(g)}): {g['jobs']:,} jobs, "
                        f"{g['seconds']:g} s window, {g['procs']} process(es) in the tree"
                        + (f", {g['adds_s']:.1f} s to store the jobs" if "adds_s" in g else "")
                        + (f", runs fired: {g['fired']}" if "fired" in g else ""))
        lines.append(f"- {s.title}: " + "; ".join(bits) + ".")
    lines += ["", END]
    return "\n".join(lines) + "\n"


def during(cell: dict) -> str:
    """The 1-minute load before a cell, and after it when known."""
    after = cell.get("load_after")
    return f"{cell['load_before']:.2f}" + (f" -> {after:.2f}" if after is not None else "")


def splice(text: str, part: str) -> str:
    """*text* with the side-by-side part replaced (or put before the first table)."""
    if BEGIN in text and END in text:
        a = text.index(BEGIN)
        b = text.index(END) + len(END)
        return text[:a] + part.rstrip("\n") + text[b:]
    at = text.find("\n### ")
    if at < 0:
        return text.rstrip("\n") + "\n\n" + part
    return text[:at + 1] + part + "\n" + text[at + 1:]
