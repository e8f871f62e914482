"""hermes-cron-ext beside the schedulers a user would pick instead: one machine, one run.

    python bench/compare/run.py                 # full run, ~40 min (+ venv installs, once)
    python bench/compare/run.py --quick         # fewer slots and samples, ~12 min
    python bench/compare/run.py --no-airflow    # leave a peer out (also --no-aps)
    python bench/compare/run.py --only latency,burst,idle --systems ours
                                # some side-by-side rows, for some systems only

The peers come from PyPI into scratch venvs of their own under ``bench/compare/`` (kept
as a cache, git-ignored; never dependencies of this project): jupyter-scheduler
(``.venv``), Apache Airflow (``.venv-airflow``) and APScheduler 4 (``.venv-apscheduler``).
The install time is reported apart from the measured time. Figures:

1. fire delay, slot -> the payload's first instruction (and, where a system records them,
   -> the run's row, -> the payload running). Ours and jupyter-scheduler run the SAME
   one-cell notebook (the cell records the clock): 8 per-minute jobs on each side, over
   the same 4 minutes (32 slots each). Airflow: a DAG every 5 s whose task records the
   clock; APScheduler: an IntervalTrigger(2 s) function that does. Our `/bin/date`
   command job (`@every 1s`) is a row of its own, ours only;
2. a job's history page (25 runs) at 1,000 and 10,000 runs, rows seeded into each store;
3. CPU of an idle scheduler holding 10,000 jobs that do not fire in the window;
4. an unrelated ``GET /api/status`` while another process lists that history in a loop;
5. ``kill -9`` of each Jupyter server while a 20 s run is in flight, and the slots
   missed while both stay down across 2 slots of an every-minute job;
6. live output (ours only);
7. side by side (``side.py``), each system alone, ``/bin/date`` as the payload on SQLite
   stores: ours (``hermes-cron daemon``), APScheduler 3.11 (thread pool of 20; its
   defaults, and ``misfire_grace_time=None``) and APScheduler 4: fire latency (1 s
   period), 1,000 jobs due at one instant (2 rounds; processes and runnable tasks on the
   machine sampled every 20 ms), idle CPU with 10,000 jobs. ``--only`` picks these rows
   (``latency``, ``burst``, ``idle``) and/or ``classic`` (figures 1-6); ``--systems``
   picks their columns. Their cells are kept in ``results-side.json``, so a run of some
   rows or systems updates those cells and leaves the others as they were.

Everything goes to ``bench/compare/results-latest.md`` (``results-quick.md`` with
``--quick``) with the machine's load average before and after. Every process started
carries ``HERMES_COMPARE_TAG`` in its environment and is killed by pid at the end;
Airflow's processes rename themselves (their /proc environ goes), so they also run in
sessions of their own, killed by session.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import side  # noqa: E402
from harness import (  # noqa: E402
    CLK_TCK,
    HERE,
    JS_SPEC,
    TOKEN,
    VENV,
    Client,
    Prober,
    Sandbox,
    clone_rows,
    dur,
    ensure_venv,
    fetch_row,
    idle_cpu,
    iso_ts,
    kill_sessions,
    loadavg,
    log,
    pct,
    wait_all,
    write_notebook,
)
from peers import (  # noqa: E402
    AIRFLOW_SPEC,
    AIRFLOW_VENV,
    APS3_SPECS,
    APS3_VENV,
    APS_SPECS,
    APS_VENV,
    Airflow,
    aps_fire,
    aps_popen,
    ensure_airflow,
    ensure_aps,
    ensure_aps3,
)

NEVER = "0 3 1 1 *"  # a schedule that does not fire during the run
NA = "n/a"
OURS = "hermes-cron-ext"
JS = "jupyter-scheduler"
AF = "Airflow"
APS = "APScheduler 4"
TICKS_ENV = "HERMES_COMPARE_TICKS"
#: the one cell both Jupyter schedulers run: its first instruction reads the clock
CLOCK_CELL = ("import time\nt = time.time()\nimport os\n"
              f"with open(os.environ[{TICKS_ENV!r}], 'a') as f:\n"
              "    f.write(f'{t}\\n')\nprint(t)\n")


# -- the report: one table per figure, one row per system ------------------------------------

@dataclass
class Entry:
    system: str
    how: str
    values: list[float] | str  # samples (seconds, or % of a core), or a text
    ref: bool = False  # the row the ratios of its group divide (ours, like for like)
    ratio: bool = True  # False: no ratio for this row (ours only, or not like for like)
    group: str = ""  # ratios compare rows of one group only


@dataclass
class Figure:
    title: str
    entries: list[Entry] = field(default_factory=list)
    unit: str = "s"  # "s": durations (p50, p99); "%": one CPU share per system
    note: str = ""


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def figure(self, title: str, unit: str = "s", note: str = "") -> Figure:
        fig = Figure(title, unit=unit, note=note)
        self.figures.append(fig)
        return fig

    def markdown(self) -> str:
        out = []
        for fig in self.figures:
            out.append(f"### {fig.title}\n")
            if fig.note:
                out.append(fig.note + "\n")
            refs = {e.group: e for e in fig.entries
                    if e.ref and not isinstance(e.values, str)}
            if all(isinstance(e.values, str) for e in fig.entries):
                out += ["| system | setup | result |", "|---|---|---|"]
                out += [f"| {e.system} | {e.how or '–'} | {e.values} |" for e in fig.entries]
            elif fig.unit == "%":
                out += ["| system | setup | CPU, % of one core | ours / theirs |",
                        "|---|---|---|---|"]
                for e in fig.entries:
                    if isinstance(e.values, str):
                        out.append(f"| {e.system} | {e.how} | {e.values} | {NA} |")
                        continue
                    ref = refs.get(e.group)
                    r = (ratio(ref.values[0], e.values[0])
                         if ref and e is not ref and e.ratio else "–")
                    out.append(f"| {e.system} | {e.how} | {e.values[0]:.2f} % | {r} |")
            else:
                out += ["| system | setup | p50 | p99 | n | ours / theirs p50 | p99 |",
                        "|---|---|---|---|---|---|---|"]
                for e in fig.entries:
                    if isinstance(e.values, str):
                        out.append(f"| {e.system} | {e.how} | {e.values} | – | – | {NA} | {NA} |")
                        continue
                    v = e.values
                    ref = refs.get(e.group)
                    cells = [dur(pct(v, 50)), dur(pct(v, 99)), str(len(v))]
                    if ref and e is not ref and e.ratio and v:
                        cells += [ratio(pct(ref.values, 50), pct(v, 50)),
                                  ratio(pct(ref.values, 99), pct(v, 99))]
                    else:
                        cells += ["–", "–"]
                    out.append(f"| {e.system} | {e.how} | " + " | ".join(cells) + " |")
            out.append("")
        return "\n".join(out)


def ratio(a: float, b: float) -> str:
    """a / b: ``0.25×``, ``23×``, or ``1/305`` below 0.1 (ours takes 1/305 of theirs)."""
    if math.isnan(a) or math.isnan(b) or a < 0:
        return NA
    if b <= 0:
        return "n/a (theirs 0)"
    r = a / b
    if r == 0:
        return "0×"
    return f"{r:.3g}×" if r >= 0.1 else f"1/{1 / r:,.0f}"


def wait_until(t: float, what: str = "") -> None:
    left = t - time.time()
    if left > 0:
        if what and left > 5:
            log(f"waiting {left:.0f} s {what}")
        time.sleep(left)


def next_boundary(t: float) -> float:
    """The first whole minute strictly after *t*."""
    return (math.floor(t / 60) + 1) * 60.0


def slot_of(t: float) -> float:
    return math.floor(t / 60) * 60.0


def hhmm(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")


def sql_ts(t: float) -> str:
    """A UTC instant as Airflow stores it in SQLite."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def from_sql_ts(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class Bench:
    def __init__(self, args, sandbox: Sandbox):
        self.args = args
        self.sb = sandbox
        self.ours = sandbox.ours
        self.theirs = sandbox.theirs
        self.report = Report()
        self.env_name = ""
        self.marker = os.path.join(self.theirs.root, "long-started.txt")
        self.ticks = {s.label: os.path.join(s.root, "ticks.txt")
                      for s in (self.ours, self.theirs)}
        for s in (self.ours, self.theirs):
            s.env[TICKS_ENV] = self.ticks[s.label]
        self.ours_jobs: dict[str, str] = {}
        self.their_defs: dict[str, str] = {}
        self.ours_nb: list[str] = []
        self.their_nb: list[str] = []
        # figures filled in by several phases
        self.fire = self.report.figure(
            "Fire delay: slot -> the payload's first instruction",
            note="The same one-cell notebook for both Jupyter schedulers (the cell's first "
                 "instruction reads the clock). Ratios divide our notebook row by each "
                 "other row.")
        self.fire_row = self.report.figure(
            "Fire delay: slot -> the run's record exists, and -> the payload is running")
        self.history = self.report.figure("A job's run history, UI page of 25 runs")
        self.idle = self.report.figure(
            "CPU of an idle scheduler holding 10,000 jobs (none due in the window)",
            unit="%")
        self.aps_thread: threading.Thread | None = None
        self.aps_idle: subprocess.Popen | None = None
        self.aps_result: dict = {}

    def note(self, text: str) -> None:
        self.report.notes.append(text)
        log(text)

    # -- set-up ---------------------------------------------------------------------------
    def start(self) -> None:
        for s in (self.ours, self.theirs):
            write_notebook(os.path.join(s.root, "clock.ipynb"), CLOCK_CELL)
        write_notebook(os.path.join(self.theirs.root, "slow.ipynb"),
                       f"import time\nwith open({self.marker!r}, 'a') as f:\n"
                       "    f.write(f'{time.time()}\\n')\n"
                       f"time.sleep({self.args.long_run})\n")
        for server in (self.ours, self.theirs):
            server.launch()
        ready = wait_all([self.ours, self.theirs])
        self.note("start-up, process spawn -> API answers (both launched at once): "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in ready.items()))
        self.env_name = self.theirs.api.json("GET", "/scheduler/runtime_environments")[0]["name"]
        for name, schedule, command in (
            ("long", NEVER, ["/bin/sh", "-c", f"sleep {self.args.long_run}; echo done"]),
            ("history", NEVER, ["/bin/true"]),
            ("yearly", NEVER, ["/bin/true"]),
        ):
            self.ours_jobs[name] = self.ours_job({"name": name, "schedule": schedule,
                                                  "command": command})
        self.their_defs["yearly"] = self.their_definition("yearly", NEVER)

    def ours_job(self, body: dict) -> str:
        job = self.ours.api.json("POST", "/api/cron/jobs", {"timezone": "UTC", **body},
                                 expect=(201,))
        return job["id"]

    def their_definition(self, name: str, schedule: str | None,
                         notebook: str = "clock.ipynb") -> str:
        body = {"name": name, "input_uri": notebook, "runtime_environment_name":
                self.env_name, "output_formats": ["ipynb"]}
        if schedule:
            body.update(schedule=schedule, timezone="UTC")
        return self.theirs.api.json("POST", "/scheduler/job_definitions", body)[
            "job_definition_id"]

    def pause_ours(self, job: str) -> None:
        self.ours.api.json("POST", f"/api/cron/jobs/{job}/pause", {})

    def pause_theirs(self, definition: str) -> None:
        self.theirs.api.json("PATCH", f"/scheduler/job_definitions/{definition}",
                             {"active": False, "schedule": "* * * * *", "timezone": "UTC"},
                             expect=(200, 204))

    # -- live output: ours only -------------------------------------------------------------
    def live_output(self) -> list[float]:
        """print() in the payload -> the line arrives at an SSE client (40 lines, 10/s)."""
        code = ("import time\nfor i in range(40):\n"
                "    print(f'tick {time.time():.6f}', flush=True)\n    time.sleep(0.1)\n")
        job = self.ours_job({"name": "live", "schedule": NEVER,
                             "command": [sys.executable, "-u", "-c", code]})
        run_id = self.ours.api.json("POST", f"/api/cron/jobs/{job}/run", {},
                                    expect=(202,))["id"]
        conn = http.client.HTTPConnection("127.0.0.1", self.ours.port, timeout=30)
        samples: list[float] = []
        try:
            conn.request("GET", f"/api/cron/runs/{run_id}/stream",
                         headers={"Authorization": f"token {TOKEN}"})
            resp = conn.getresponse()
            connected = time.time()
            event = None
            while True:
                line = resp.readline()
                if not line:
                    break
                now = time.time()
                line = line.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "output":
                    for text in json.loads(line[6:])["text"].splitlines():
                        if text.startswith("tick "):
                            printed = float(text[5:])
                            if printed > connected + 0.2:  # not backlog
                                samples.append(now - printed)
                elif line.startswith("data: ") and event == "end":
                    break
        finally:
            conn.close()
        return samples

    # -- 1. fire delay: ours and jupyter-scheduler, the same notebook --------------------------
    def fire_delay(self) -> None:
        k, minutes = self.args.jobs, self.args.minutes
        cmd_window = self.args.command_samples + 6
        # ours only: an `@every 1s` command job, in the wait before the notebook slots
        cmd = self.ours_job({"name": "every-second", "schedule": "@every 1s",
                             "command": ["/bin/date", "+%s.%N"]})
        cmd_from = time.time()
        first = next_boundary(time.time() + cmd_window + 15)
        slots = [first + 60 * i for i in range(minutes)]
        log(f"fire delay: `@every 1s` command job until {hhmm(first - 15)}, then {k} notebook "
            f"jobs a side on {minutes} slot(s) {hhmm(slots[0])}..{hhmm(slots[-1])} UTC")
        wait_until(first - 15, "with the command job firing")
        self.pause_ours(cmd)
        cmd_to = time.time()
        # the notebook jobs are made now, so none fires in the command job's window
        for i in range(k):
            self.ours_nb.append(self.ours_job({
                "name": f"nb-{i}", "schedule": "* * * * *", "kind": "notebook",
                "command": os.path.join(self.ours.root, "clock.ipynb")}))
            self.their_nb.append(self.their_definition(f"nb-{i}", "* * * * *"))
        self.ours_jobs["every-minute"] = self.ours_nb[0]
        self.their_defs["every-minute"] = self.their_nb[0]
        if time.time() > first - 3:
            raise RuntimeError("making the notebook jobs took too long")
        for s in slots:
            wait_until(s + 20, f"for the slot at {hhmm(s)}")
        deadline = slots[-1] + 90
        while time.time() < deadline:  # their cells run 10-40 s after the slot here
            got = [slot_of(t) for t in self.read_ticks(JS)]
            if all(got.count(s) >= k for s in slots):
                break
            time.sleep(1)
        # only nb-0 goes on (the outage's every-minute job); the rest stop here
        for job in self.ours_nb[1:]:
            self.pause_ours(job)
        for d in self.their_nb[1:]:
            self.pause_theirs(d)

        # ours, command job: `date` in each run's log
        runs = self.ours.api.json("GET", f"/api/cron/jobs/{cmd}/runs?limit=500")["runs"]
        runs = sorted((r for r in runs if r["trigger"] == "schedule"
                       and iso_ts(r["scheduled_for"]) >= cmd_from + 2),
                      key=lambda r: r["scheduled_for"])
        cmd_first = []
        for r in runs:
            status, raw, _ = self.ours.api.request("GET", f"/api/cron/runs/{r['id']}/log")
            if status == 200 and raw.strip():
                cmd_first.append(float(raw.split()[0]) - iso_ts(r["scheduled_for"]))
        self.note(f"ours' command job (`/bin/date +%s.%N`, `@every 1s`) fired from "
                  f"{hhmm(cmd_from)} to {hhmm(cmd_to)}, alone (no notebook slot in that "
                  f"window); the first 2 s are left out as warm-up; {len(runs)} runs, "
                  f"{len(cmd_first)} with a clock in the log")

        # ours, notebooks: the rows and the ticks
        o_rec, o_run, o_missing = [], [], 0
        for job in self.ours_nb:
            rows = self.ours.api.json("GET", f"/api/cron/jobs/{job}/runs?limit=100")["runs"]
            by_slot = {iso_ts(r["scheduled_for"]): r for r in rows
                       if r["trigger"] == "schedule"}
            for s in slots:
                r = by_slot.get(s)
                if r is None:
                    o_missing += 1
                    continue
                o_rec.append(iso_ts(r["queued_at"]) - s)
                if r["started_at"]:
                    o_run.append(iso_ts(r["started_at"]) - s)
        o_first = [t - slot_of(t) for t in self.read_ticks(OURS) if slot_of(t) in slots]
        # theirs
        t_rec, t_run, t_missing, dupes = [], [], 0, 0
        for d in self.their_nb:
            jobs = self.theirs.api.json(
                "GET", f"/scheduler/jobs?job_definition_id={d}&max_items=100")["jobs"]
            by_slot: dict[float, list[dict]] = {}
            for j in jobs:
                by_slot.setdefault(slot_of(j["create_time"] / 1000), []).append(j)
            for s in slots:
                js = by_slot.get(s, [])
                if not js:
                    t_missing += 1
                    continue
                dupes += len(js) - 1
                j = min(js, key=lambda x: x["create_time"])
                t_rec.append(j["create_time"] / 1000 - s)
                if j.get("start_time"):
                    t_run.append(j["start_time"] / 1000 - s)
        t_first = [t - slot_of(t) for t in self.read_ticks(JS) if slot_of(t) in slots]
        pattern = f"{k} notebook jobs `* * * * *` × {minutes} min"
        self.fire.entries += [
            Entry(OURS, f"{pattern}, kind: notebook (kernel started in the lead)", o_first,
                  ref=True),
            Entry(JS, f"{pattern}, job definitions (the same notebook)", t_first),
        ]
        self.fire_entries_ours_cmd = Entry(
            OURS + " (ours only)", "`/bin/date` command job, `@every 1s` (no notebook)",
            cmd_first, ratio=False)
        self.fire_row.entries += [
            Entry(OURS, f"{pattern}: the run's row `queued_at` (claimed `lead` = 2 s ahead, "
                  "so negative: no ratio)", o_rec, ratio=False, group="row"),
            Entry(JS, f"{pattern}: job `create_time`", t_rec, ratio=False, group="row"),
            Entry(OURS, f"{pattern}: `started_at` (the supervisor's go at the instant)",
                  o_run, ref=True, group="run"),
            Entry(JS, f"{pattern}: IN_PROGRESS `start_time`", t_run, group="run"),
        ]
        self.note(f"fire delay, Jupyter schedulers: {k} jobs × {len(slots)} slots "
                  f"({hhmm(slots[0])}..{hhmm(slots[-1])} UTC) per side, both servers at once; "
                  f"ours: {o_missing} slot(s) without a run, {len(o_first)} clocks; theirs: "
                  f"{t_missing} without a job, {dupes} duplicate jobs, {len(t_first)} clocks. "
                  "Ours claims a slot `lead` = 2 s ahead and starts the kernel then; theirs "
                  "polls every 10 s, then spawns a process that starts a kernel.")
        self.note("fire delay per slot, first instruction (s): ours "
                  + "; ".join(fmt_list(sorted(t - s for t in self.read_ticks(OURS)
                                              if slot_of(t) == s)) for s in slots)
                  + " — theirs " + "; ".join(fmt_list(sorted(t - s for t in self.read_ticks(JS)
                                                             if slot_of(t) == s))
                                             for s in slots))

    def read_ticks(self, label: str) -> list[float]:
        try:
            with open(self.ticks[label]) as f:
                return [float(x) for x in f.read().split()]
        except OSError:
            return []

    # -- APScheduler 4: while both servers are down ------------------------------------------
    def aps_start(self) -> None:
        """Fire delay, then the 10,000-schedule idle scheduler, in a thread (so the
        outage keeps its own clock)."""
        root = os.path.join(self.sb.dir, "aps")
        os.makedirs(root, exist_ok=True)
        env = {**self.ours.env}

        def work() -> None:
            t0 = time.time()
            self.aps_result["fire"] = aps_fire(root, env, self.args.aps_samples + 2,
                                               self.args.aps_period)
            self.aps_result["fire_s"] = time.time() - t0
            self.aps_idle = aps_popen(["idle", os.path.join(root, "idle.db"),
                                       str(self.args.fleet)], env, root)
            self.sb.helpers.append(self.aps_idle)
            line = self.aps_idle.stdout.readline().split()
            self.aps_result["idle_ready"] = line

        self.aps_thread = threading.Thread(target=work, daemon=True)
        self.aps_thread.start()

    def aps_collect(self) -> None:
        if self.aps_thread is None:
            return
        self.aps_thread.join(600)
        fire = self.aps_result.get("fire", [])[2:]  # the first two: warm-up
        self.fire.entries.append(Entry(
            APS, f"a function on `IntervalTrigger({self.args.aps_period:g} s)`, "
                 "SQLAlchemy data store on SQLite", [t - s for t, s in fire]))
        self.fire_row.entries.append(Entry(APS, "", "n/a: no run record (a job is a "
                                                    "transient row, deleted when it ends)"))
        self.history.entries.append(Entry(APS, "", "n/a: keeps no run history"))
        self.note(f"APScheduler: {len(fire)} runs timed (2 warm-up runs left out), "
                  f"{self.aps_result.get('fire_s', 0):.0f} s while both Jupyter servers "
                  "were down; slot = the `scheduled_fire_time` APScheduler hands the job "
                  "(`current_job`), first instruction = the function's `time.time()`")

    # -- 4 + 5. kill -9 mid-run, then down across slots ------------------------------------------
    def outage(self) -> None:
        down = self.args.down_slots
        # Kill ~20 s into a minute (theirs needs ~10-20 s to reach its first cell), so the
        # next slot is not already claimed (ours claims 2 s ahead) when the servers die.
        if time.time() % 60 > 25:
            wait_until(next_boundary(time.time()) + 2, "to start the long runs early in a minute")
        t_job = self.theirs.api.json("POST", "/scheduler/jobs", {
            "name": "long", "input_uri": "slow.ipynb", "runtime_environment_name":
            self.env_name, "output_formats": ["ipynb"]})["job_id"]
        deadline = time.time() + 90
        while not os.path.exists(self.marker) and time.time() < deadline:
            time.sleep(0.2)
        if not os.path.exists(self.marker):
            raise RuntimeError("jupyter-scheduler's long run never reached its first cell")
        o_run = self.ours.api.json("POST", f"/api/cron/jobs/{self.ours_jobs['long']}/run", {},
                                   expect=(202,))["id"]
        deadline = time.time() + 15
        while self.ours.api.json("GET", f"/api/cron/runs/{o_run}")["status"] != "running":
            if time.time() > deadline:
                raise RuntimeError("our long run never started")
            time.sleep(0.1)
        time.sleep(2)
        if next_boundary(time.time()) - time.time() < 4:
            wait_until(next_boundary(time.time()) + 1)
        ours_inflight = {r["id"]: r["status"] for s in ("running", "queued") for r in
                         self.ours.api.json("GET", f"/api/cron/runs?status={s}&limit=500")[
                             "runs"]}
        their_inflight = {j["job_id"]: j["status"] for j in self.theirs.api.json(
            "GET", "/scheduler/jobs?status=IN_PROGRESS&max_items=100")["jobs"]}
        killed = time.time()
        self.ours.kill9()
        self.theirs.kill9()
        missed = [next_boundary(killed) + 60 * i for i in range(down)]
        log(f"killed both servers at {hhmm(killed)} (ours in flight {len(ours_inflight)}, "
            f"theirs {len(their_inflight)}); down across {', '.join(map(hhmm, missed))}")
        # while both are down: the 10,000-job fleets go into both stores (read at start),
        # and APScheduler takes its turn
        self.seed_fleets()
        if not self.args.no_aps:
            self.aps_start()
        wait_until(missed[-1] + 3, "with both servers down")
        for server in (self.ours, self.theirs):
            server.launch()
        ready = wait_all([self.ours, self.theirs])
        up = time.time()
        wait_until(up + 15, "for both schedulers to settle after the restart")
        self.note(f"outage: both killed at {hhmm(killed)}, relaunched at {hhmm(missed[-1] + 3)}, "
                  "ready after " + ", ".join(f"{k} {v:.1f} s" for k, v in ready.items())
                  + f" (each now holding {self.args.fleet:,} more jobs); counted at "
                  f"{hhmm(time.time())}")

        # 4. what became of the runs in flight
        ours_after = {rid: self.ours.api.json("GET", f"/api/cron/runs/{rid}")
                      for rid in ours_inflight}
        theirs_after = {}
        for jid in their_inflight:
            status, raw, _ = self.theirs.api.request("GET", f"/scheduler/jobs/{jid}")
            theirs_after[jid] = json.loads(raw) if status == 200 else None
        kill = self.report.figure(
            f"`kill -9` of the server process during a {self.args.long_run:g} s run, "
            "restart: runs in flight -> lost / stuck running / final status")
        kill.entries += [
            Entry(OURS, "`sleep 20` command job run now",
                  inflight_summary(ours_after, "status", ("running", "queued"), ("lost",))),
            Entry(JS, "one-off job on a notebook that sleeps 20 s",
                  inflight_summary(theirs_after, "status",
                                   ("IN_PROGRESS", "CREATED", "STOPPING"), ())),
            Entry(AF, "", "not measured"), Entry(APS, "", "not measured"),
        ]
        self.note("kill -9, ours: " + "; ".join(
            f"{r['job_name']} {r['status']} exit {r['exit_code']} finished "
            f"{hhmm(iso_ts(r['finished_at'])) if r['finished_at'] else '-'}"
            + (f" ({r['reason']})" if r.get("reason") else "") for r in ours_after.values()))
        self.note("kill -9, theirs: " + "; ".join(
            f"{j['name']} {j['status']} ended "
            f"{hhmm(j['end_time'] / 1000) if j.get('end_time') else '-'}"
            if j else f"{jid} gone" for jid, j in theirs_after.items()))
        if t_job not in their_inflight:
            self.note("theirs: the long job was not IN_PROGRESS at the kill")

        # 5. the slots missed while both were down
        runs = self.ours.api.json(
            "GET", f"/api/cron/jobs/{self.ours_jobs['every-minute']}/runs?limit=100")["runs"]
        ours_missed = [r for r in runs if iso_ts(r["scheduled_for"]) in missed]
        jobs = self.theirs.api.json(
            "GET", f"/scheduler/jobs?job_definition_id={self.their_defs['every-minute']}"
                   "&max_items=100")["jobs"]
        theirs_missed = [j for j in jobs if slot_of(j["create_time"] / 1000) in missed]
        parts: dict[str, int] = {}
        for r in ours_missed:
            key = f"{r['trigger']} {r['status']}"
            parts[key] = parts.get(key, 0) + 1
        miss = self.report.figure(
            f"Missed slots: server down across {down} slots of an every-minute notebook job")
        miss.entries += [
            Entry(OURS, "`nb-0`, misfire policy `latest` (the default)",
                  f"{len({iso_ts(r['scheduled_for']) for r in ours_missed})}/{down} recorded ("
                  + ", ".join(f"{n} {k}" for k, n in sorted(parts.items())) + ")"),
            Entry(JS, "`nb-0`",
                  f"{len(theirs_missed)}/{down} recorded (no catch-up, no missed-run record)"),
            Entry(AF, "", "not measured"), Entry(APS, "", "not measured"),
        ]
        reasons = {r["reason"] for r in ours_missed if r.get("reason")}
        self.note("missed slots, ours: " + "; ".join(
            f"{hhmm(iso_ts(r['scheduled_for']))} {r['trigger']} {r['status']}"
            + (f" (started {iso_ts(r['started_at']) - iso_ts(r['scheduled_for']):.1f} s after "
               "its slot)" if r["started_at"] else "")
            for r in ours_missed) + (f"; reason: {reasons.pop()}" if reasons else ""))
        # stop the every-minute jobs: the idle, list and blocking figures run on idle
        # schedulers
        self.pause_ours(self.ours_jobs["every-minute"])
        self.pause_theirs(self.their_defs["every-minute"])

    # -- 3. idle CPU with 10,000 jobs ---------------------------------------------------------
    def seed_fleets(self) -> None:
        """10,000 yearly jobs in each store, clones of a row the API made (servers down)."""
        n = self.args.fleet
        t0 = time.time()
        tpl = fetch_row(self.ours.db, "SELECT * FROM jobs WHERE id = ?",
                        (self.ours_jobs["yearly"],))
        clone_rows(self.ours.db, "jobs", tpl, [
            {"id": f"j_{secrets.token_hex(8)}", "name": f"yearly-{i:05d}",
             "idempotency_key": None} for i in range(1, n)])
        tpl = fetch_row(self.theirs.db, "SELECT * FROM job_definitions WHERE "
                        "job_definition_id = ?", (self.their_defs["yearly"],))
        rows = []
        for i in range(1, n):
            d = str(uuid.uuid4())
            rows.append({"job_definition_id": d, "name": f"yearly-{i:05d}",
                         "url": f"/job_definitions/{d}"})
        clone_rows(self.theirs.db, "job_definitions", tpl, rows)
        log(f"seeded {n:,} yearly jobs into each store in {time.time() - t0:.1f} s")

    def idle_cpu(self) -> None:
        seconds = self.args.idle_seconds
        groups = {OURS: [self.ours.proc.pid], JS: [self.theirs.proc.pid]}
        aps_note = ""
        if not self.args.no_aps:
            self.aps_collect()
            ready = self.aps_result.get("idle_ready") or []
            if self.aps_idle is not None and self.aps_idle.poll() is None and ready:
                groups[APS] = [self.aps_idle.pid]
                aps_note = f"; APScheduler's {int(ready[2]):,} `add_schedule` calls took " \
                           f"{float(ready[1]):.1f} s"
            else:
                self.idle.entries.append(Entry(APS, "", "failed: see the notes"))
                self.note(f"APScheduler idle worker did not get ready: {ready}")
        time.sleep(3)
        got = idle_cpu(groups, seconds)
        o_jobs = sql_count(self.ours.db, "SELECT COUNT(*) FROM jobs")
        t_defs = sql_count(self.theirs.db, "SELECT COUNT(*) FROM job_definitions")
        self.idle.entries.insert(0, Entry(
            OURS, f"jupyter server + extension (ticker in-process, fork server); "
                  f"{o_jobs:,} jobs: {self.args.fleet:,} `{NEVER}`, the rest paused or yearly",
            [got[OURS][0]], ref=True))
        self.idle.entries.insert(1, Entry(
            JS, f"jupyter server + extension; {t_defs:,} job definitions: "
                f"{self.args.fleet:,} active `{NEVER}`, the rest paused or unscheduled",
            [got[JS][0]]))
        if APS in got:
            self.idle.entries.insert(2, Entry(
                APS, f"`AsyncScheduler`, {self.args.fleet:,} yearly `CronTrigger` schedules, "
                     "SQLAlchemy store on SQLite", [got[APS][0]]))
        self.note(f"idle CPU: utime+stime(+cutime+cstime) of each process tree from /proc "
                  f"over the same {seconds:g} s window, resolution one clock tick "
                  f"({100 / CLK_TCK / seconds:.3f} % of a core; 0.00 % = no tick at all); "
                  "processes at the end: "
                  + ", ".join(f"{k} {v[1]}" for k, v in got.items()) + aps_note
)

    # -- 2. list latency ---------------------------------------------------------------------------
    def seed_ours(self, total: int) -> None:
        job = self.ours_jobs["history"]
        have = self.ours.api.json("GET", f"/api/cron/jobs/{job}/runs?limit=500")["runs"]
        if not have:
            run_id = self.ours.api.json("POST", f"/api/cron/jobs/{job}/run", {},
                                        expect=(202,))["id"]
            deadline = time.time() + 30
            while self.ours.api.json("GET", f"/api/cron/runs/{run_id}")["status"] in (
                    "queued", "running"):
                if time.time() > deadline:
                    raise RuntimeError("the history job's real run did not finish")
                time.sleep(0.1)
            self.ours_template = fetch_row(self.ours.db, "SELECT * FROM runs WHERE id = ?",
                                           (run_id,))
            self.ours_count = 1
            self.ours_oldest = self.ours_template["fire_at"]
        tpl = self.ours_template
        rows = []
        for i in range(total - self.ours_count):
            at = self.ours_oldest - 60.0 * (i + 1)
            failed = (self.ours_count + i) % 20 == 0
            row = {"id": f"r_{secrets.token_hex(8)}", "trigger": "schedule", "attempt": 1,
                   "scheduled_for": at, "fire_at": at, "queued_at": at - 2.0,
                   "dispatched_at": at - 2.0, "started_at": at + 0.005,
                   "finished_at": at + 0.05, "heartbeat_at": at + 0.05,
                   "status": "failed" if failed else "succeeded",
                   "exit_code": 1 if failed else 0, "reason": "exit code 1" if failed else None}
            rows.append({k: v for k, v in row.items() if k in tpl})
        clone_rows(self.ours.db, "runs", tpl, rows)
        self.ours_count = total
        self.ours_oldest -= 60.0 * len(rows)

    def seed_theirs(self, total: int) -> None:
        if not hasattr(self, "their_template"):
            self.their_defs["history"] = self.their_definition("history", None)
            tpl = fetch_row(self.theirs.db, "SELECT * FROM jobs WHERE job_definition_id = ? "
                            "AND status = 'COMPLETED' LIMIT 1",
                            (self.their_defs["every-minute"],))
            tpl.update(job_definition_id=self.their_defs["history"], name="history", pid=None)
            self.their_template = tpl
            self.their_count = 0
            self.their_oldest = int(time.time() * 1000)
        tpl = self.their_template
        rows = []
        for i in range(total - self.their_count):
            at = self.their_oldest - 60_000 * (i + 1)
            job_id = str(uuid.uuid4())
            failed = (self.their_count + i) % 20 == 0
            rows.append({"job_id": job_id, "url": f"/jobs/{job_id}", "create_time": at,
                         "update_time": at + 20_000, "start_time": at + 10_000,
                         "end_time": at + 20_000,
                         "status": "FAILED" if failed else "COMPLETED",
                         "status_message": "boom" if failed else None})
        clone_rows(self.theirs.db, "jobs", tpl, rows)
        self.their_count = total
        self.their_oldest -= 60_000 * len(rows)

    def ours_list_path(self, limit: int) -> str:
        return f"/api/cron/jobs/{self.ours_jobs['history']}/runs?limit={limit}"

    def their_list_path(self, limit: int) -> str:
        return (f"/scheduler/jobs?job_definition_id={self.their_defs['history']}"
                f"&max_items={limit}&sort_by=desc(create_time)")

    def list_latency(self, total: int) -> None:
        self.seed_ours(total)
        self.seed_theirs(total)
        a, b = Client(self.ours.port), Client(self.theirs.port)
        pa, pb = self.ours_list_path(25), self.their_list_path(25)
        try:
            body = a.json("GET", pa)
            assert len(body["runs"]) == 25 and body["cursor"], body
            body = b.json("GET", pb)
            assert len(body["jobs"]) == 25 and body["total_count"] == total, body["total_count"]
            for _ in range(5):  # warm-up
                a.request("GET", pa)
                b.request("GET", pb)
            ours, theirs = [], []
            for _ in range(self.args.samples):  # interleaved: both see the same noise
                ours.append(checked(a.request("GET", pa)))
                theirs.append(checked(b.request("GET", pb)))
            status_t = [checked(a.request("GET", "/api/cron/status")) for _ in range(30)]
        finally:
            a.close()
            b.close()
        self.history.entries += [
            Entry(OURS, f"{total:,} runs: `GET /api/cron/jobs/{{id}}/runs?limit=25`", ours,
                  ref=True, group=str(total)),
            Entry(JS, f"{total:,} runs: `GET /scheduler/jobs?job_definition_id=…"
                      "&max_items=25&sort_by=desc(create_time)`", theirs, group=str(total)),
        ]
        self.note(f"at {total:,} runs, ours GET /api/cron/status: p50 {dur(pct(status_t, 50))}"
                  f" / p99 {dur(pct(status_t, 99))} (it aggregates every run; see the report)")

    # -- 4. event-loop blocking ------------------------------------------------------------
    def blocking(self) -> None:
        seconds = self.args.probe_seconds
        idle: dict[str, list[float]] = {}
        loaded: dict[tuple[str, int], list[float]] = {}
        for server, path_of in ((self.ours, self.ours_list_path),
                                (self.theirs, self.their_list_path)):
            prober = Prober(server.port).start()
            time.sleep(seconds / 2)
            idle[server.label] = prober.stop()
            for page in (25, 500):
                loader = subprocess.Popen(
                    [sys.executable, os.path.abspath(__file__), "--load", str(server.port),
                     path_of(page), str(seconds)], stdout=subprocess.PIPE,
                    env=self.sb.ours.env)
                self.sb.helpers.append(loader)
                loader.stdout.readline()  # "ready"
                prober = Prober(server.port).start()
                loader.wait(seconds + 60)
                loaded[(server.label, page)] = prober.stop()
                done = json.loads(loader.stdout.readline())
                loader.stdout.close()
                self.note(f"blocking, {server.label}: the lister made {done['n']} calls of "
                          f"{page}/page in {seconds:g} s ({done['errors']} errors); prober "
                          f"{len(loaded[(server.label, page)])} samples, "
                          f"max {dur(max(loaded[(server.label, page)], default=math.nan))}")
        fig = self.report.figure("Event-loop blocking: an unrelated `GET /api/status` "
                                 "(Jupyter's own) every 20 ms")
        for what, key in (("idle", "idle"), ("while another process lists 10,000 runs, "
                                            "25/page", 25),
                          ("while another process lists 10,000 runs, 500/page", 500)):
            for label in (OURS, JS):
                values = idle[label] if key == "idle" else loaded[(label, key)]
                fig.entries.append(Entry(label, what, values, ref=label == OURS,
                                         group=str(key)))
        fig.entries += [Entry(AF, "", "not measured"), Entry(APS, "", "n/a: no HTTP API")]

    # -- Airflow ---------------------------------------------------------------------------------
    def airflow(self) -> None:
        root = os.path.join(self.sb.dir, "airflow")
        af = Airflow(root, {**self.ours.env}, self.args.af_period)
        self.af = af
        try:
            migrate = af.migrate()
            af.launch()
            ready = af.wait_ready()
            self.note(f"Airflow: `airflow db migrate` {migrate:.1f} s; api-server, scheduler, "
                      f"dag-processor and triggerer healthy {ready:.1f} s after launch")
            self.airflow_fire(af)
            self.airflow_history(af)
            self.airflow_idle(af)
            problems = af.log_problems()
            if problems:
                self.note(f"Airflow logs: {len(problems)} error line(s), first: {problems[0]}")
        finally:
            killed = af.stop()
            if killed:
                self.note(f"Airflow stop had to SIGKILL {len(killed)} process(es): "
                          + "; ".join(k for k in killed[:3] if k))

    def airflow_fire(self, af: Airflow) -> None:
        need = self.args.af_samples + 2  # the first two: warm-up
        deadline = time.time() + need * self.args.af_period * 3 + 120
        log(f"Airflow: waiting for {need} runs of the clock DAG (every "
            f"{self.args.af_period:g} s)")
        while len(af.read_ticks()) < need and time.time() < deadline:
            time.sleep(1)
        c = af.client()
        c.json("PATCH", "/api/v2/dags/clock", {"is_paused": True})
        c.close()
        ticks = af.read_ticks()[2:need]
        runs = {r: (from_sql_ts(a), from_sql_ts(q)) for r, a, q in af.sql(
            "SELECT run_id, run_after, queued_at FROM dag_run WHERE dag_id = 'clock'")}
        tis = {r: from_sql_ts(s) for r, s in af.sql(
            "SELECT run_id, start_date FROM task_instance WHERE dag_id = 'clock'")}
        first, rec, running, mismatch = [], [], [], 0
        for t, after, run_id in ticks:
            first.append(t - after)
            row = runs.get(run_id)
            if row and row[0] is not None and abs(row[0] - after) > 0.001:
                mismatch += 1
            if row and row[1] is not None:
                rec.append(row[1] - after)
            if tis.get(run_id) is not None:
                running.append(tis[run_id] - after)
        how = (f"a DAG on `timedelta(seconds={self.args.af_period:g})`, one "
               "`@task` (LocalExecutor, SQLite)")
        self.fire.entries.append(Entry(AF, how, first))
        self.fire_row.entries += [
            Entry(AF, f"{how}: dag run `queued_at`", rec, ratio=False, group="row"),
            Entry(AF, f"{how}: task instance `start_date`", running, group="run"),
        ]
        self.note(f"Airflow fire delay: {len(first)} runs (the first 2 left out as warm-up); "
                  "slot = the dag run's `run_after` (the instant the run is due; with "
                  "Airflow 3's DeltaTriggerTimetable it equals the logical date), as the task "
                  f"read it from its context; {mismatch} differ from the row. Per run (s): "
                  + fmt_list(first))

    def airflow_history(self, af: Airflow) -> None:
        tpl = fetch_row(af.db, "SELECT * FROM dag_run WHERE dag_id = 'clock' AND state = "
                        "'success' ORDER BY id LIMIT 1")
        tpl.pop("id")
        have = af.sql("SELECT COUNT(*), MIN(run_after) FROM dag_run WHERE dag_id = 'clock'")[0]
        count, oldest = have[0], from_sql_ts(have[1])
        c = af.client()
        path = "/api/v2/dags/clock/dagRuns?limit=25&order_by=-run_after"
        try:
            for total in (1_000, 10_000):
                rows = []
                for i in range(total - count):
                    at = oldest - 60.0 * (i + 1)
                    failed = (count + i) % 20 == 0
                    row = {"run_id": f"scheduled__seed_{count + i:06d}",
                           "logical_date": sql_ts(at), "run_after": sql_ts(at),
                           "data_interval_start": sql_ts(at), "data_interval_end": sql_ts(at),
                           "queued_at": sql_ts(at + 1), "start_date": sql_ts(at + 1),
                           "end_date": sql_ts(at + 3), "updated_at": sql_ts(at + 3),
                           "last_scheduling_decision": sql_ts(at + 3),
                           "state": "failed" if failed else "success"}
                    rows.append({k: v for k, v in row.items() if k in tpl})
                clone_rows(af.db, "dag_run", tpl, rows)
                oldest -= 60.0 * len(rows)
                count = total
                body = c.json("GET", path)
                assert len(body["dag_runs"]) == 25 and body["total_entries"] == total, \
                    body.get("total_entries")
                for _ in range(5):
                    c.request("GET", path)
                took = [checked(c.request("GET", path)) for _ in range(self.args.samples)]
                self.history.entries.append(Entry(
                    AF, f"{total:,} runs: `GET /api/v2/dags/clock/dagRuns?limit=25"
                        "&order_by=-run_after` (JWT bearer)", took, group=str(total)))
        finally:
            c.close()
        self.note("Airflow history: `dag_run` rows cloned from a real successful run of the "
                  "clock DAG (fresh run_id, logical_date/run_after one per minute going back, "
                  "5 % failed), no task instances; timed alone (ours and jupyter-scheduler "
                  "were stopped by then), so its samples are not interleaved with theirs")

    def airflow_idle(self, af: Airflow) -> None:
        n = self.args.af_fleet
        with open(os.path.join(af.dags, "fleet.txt"), "w") as f:
            f.write(str(n))
        t0 = time.time()
        deadline = t0 + self.args.af_parse_wait
        got = 0
        while time.time() < deadline:
            got = af.sql("SELECT COUNT(*) FROM dag WHERE dag_id LIKE 'fleet_%'")[0][0]
            if got >= n:
                break
            time.sleep(2)
        parsed = time.time() - t0
        runs = af.sql("SELECT COUNT(*) FROM dag_run WHERE dag_id LIKE 'fleet_%'")[0][0]
        time.sleep(5)
        seconds = self.args.idle_seconds
        cpu = idle_cpu({AF: af.pids()}, seconds)[AF]
        what = (f"api-server, scheduler, dag-processor, triggerer; {got:,} yearly DAGs "
                "from one file (+1 paused)")
        if got < 10_000:
            what += f" — **{got:,}, not 10,000**"
        self.idle.entries.append(Entry(AF, what, [cpu[0]]))
        self.note(f"Airflow idle: fleet.py builds {n:,} DAGs (`{NEVER}`, one EmptyOperator "
                  f"each); {got:,} were in the `dag` table {parsed:.0f} s after the file "
                  f"asked for them; runs created for them: {runs}; CPU over {seconds:g} s "
                  f"across {cpu[1]} processes. Its dag-processor re-parses the file every "
                  "30 s (`min_file_process_interval`, default), which is most of that CPU; "
                  "`dag_file_processor_timeout` was raised from 50 s to 600 s so that one "
                  "file can build the fleet")


def sql_count(db: str, query: str) -> int:
    conn = sqlite3.connect(db, timeout=30.0)
    try:
        return conn.execute(query).fetchone()[0]
    finally:
        conn.close()


def checked(result: tuple[int, bytes, float]) -> float:
    status, raw, took = result
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {raw[:200]!r}")
    return took


def fmt_list(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


def inflight_summary(after: dict, key: str, active: tuple, lost: tuple) -> str:
    n = len(after)
    gone = sum(1 for v in after.values() if v is None or v[key] in lost)
    stuck = sum(1 for v in after.values() if v is not None and v[key] in active)
    final: dict[str, int] = {}
    for v in after.values():
        if v is not None and v[key] not in active and v[key] not in lost:
            final[v[key]] = final.get(v[key], 0) + 1
    return (f"{n} in flight: {gone} lost, {stuck} stuck, {sum(final.values())} final ("
            + ", ".join(f"{c} {s}" for s, c in final.items()) + ")")


def load_worker(port: int, path: str, seconds: float) -> None:
    """``--load``: GET *path* back to back for *seconds*; print the call count."""
    client = Client(port, timeout=60)
    print("ready", flush=True)
    n = errors = 0
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            status, _, _ = client.request("GET", path)
            n += 1
            errors += status != 200
        except (OSError, http.client.HTTPException):
            errors += 1
    client.close()
    print(json.dumps({"n": n, "errors": errors}), flush=True)


def shown(path: str) -> str:
    """*path* relative to the repository when it is inside it."""
    rel = os.path.relpath(path, os.path.dirname(os.path.dirname(HERE)))
    return path if rel.startswith("..") else rel


def machine() -> str:
    return (f"{os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), "
            f"{platform.platform()}, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}")


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--load":
        load_worker(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
        return 0
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Examples: `run.py --only latency,burst,idle --systems ours` measures our "
               "column of the side-by-side table only (APScheduler's cells stay as they "
               "are in results-side.json); `run.py --only burst --systems aps3,aps4 "
               "--rounds 1` one burst round of two columns; `run.py --only classic` the "
               "Jupyter-server figures only; `--quick` goes to results-quick.md and "
               "results-side-quick.json instead.")
    ap.add_argument("--quick", action="store_true",
                    help="fewer slots and samples (n < 30 for some rows)")
    ap.add_argument("--minutes", type=int,
                    default=int(os.environ.get("HERMES_COMPARE_MINUTES", "4")),
                    help="per-minute notebook slots for the fire delay (default 4)")
    ap.add_argument("--jobs", type=int, default=8,
                    help="notebook jobs a side on each of those slots (default 8)")
    ap.add_argument("--fleet", type=int, default=10_000,
                    help="jobs held by an idle scheduler (default 10,000)")
    ap.add_argument("--af-fleet", type=int, default=10_000,
                    help="Airflow's DAGs for its idle CPU figure (default 10,000)")
    ap.add_argument("--af-parse-wait", type=float, default=180.0,
                    help="seconds to wait for Airflow to parse its fleet (default 180)")
    ap.add_argument("--down-slots", type=int, default=2,
                    help="slots the servers stay down across (default 2)")
    ap.add_argument("--long-run", type=float, default=20.0,
                    help="seconds of the run in flight at the kill (default 20)")
    ap.add_argument("--no-airflow", action="store_true", help="leave Airflow out")
    ap.add_argument("--no-aps", action="store_true", help="leave APScheduler out")
    ap.add_argument("--only", default=",".join(PARTS),
                    help="comma-separated parts to run: classic (the Jupyter servers, "
                         "Airflow, APScheduler 4's functions: figures 1-6), and the "
                         f"side-by-side rows {', '.join(side.ROWS)} (default: all)")
    ap.add_argument("--systems", default=",".join(side.SYSTEMS),
                    help="comma-separated columns of the side-by-side rows: "
                         + ", ".join(f"{k} ({s.title})" for k, s in side.SYSTEMS.items())
                         + " (default: all)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="side by side: burst rounds per system (default 2)")
    ap.add_argument("--burst-jobs", type=int, default=1000,
                    help="side by side: jobs due at the instant (default 1,000; 100 with "
                         "--quick)")
    ap.add_argument("--latency-n", type=int, default=180,
                    help="side by side: latency samples, one a second (default 180; 20 "
                         "with --quick)")
    ap.add_argument("--max-load", type=float, default=1.0,
                    help="side by side: before each cell wait (up to 15 min) for the 1-min "
                         "load average to drop below this (default 1.0; 0: do not wait)")
    ap.add_argument("--out", help="results file (default results-latest.md, "
                                  "results-quick.md with --quick)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    only = [p for p in args.only.split(",") if p]
    systems = [k for k in args.systems.split(",") if k]
    if set(only) - set(PARTS):
        ap.error(f"--only: unknown {', '.join(sorted(set(only) - set(PARTS)))}; known: "
                 + ", ".join(PARTS))
    if set(systems) - set(side.SYSTEMS):
        ap.error(f"--systems: unknown {', '.join(sorted(set(systems) - set(side.SYSTEMS)))};"
                 " known: " + ", ".join(side.SYSTEMS))
    systems = [k for k in side.SYSTEMS if k in systems]  # the table's order
    args.samples = 300
    args.probe_seconds = 6.0
    args.idle_seconds = 45.0
    args.command_samples = 32
    args.aps_samples, args.aps_period = 32, 2.0
    args.af_samples, args.af_period = 32, 5.0
    if args.quick:
        args.minutes = min(args.minutes, 2)
        args.jobs = min(args.jobs, 4)
        args.samples, args.probe_seconds, args.idle_seconds = 100, 4.0, 20.0
        args.command_samples = args.aps_samples = args.af_samples = 10
        args.af_fleet = min(args.af_fleet, 1_000)
    sizes = {"latency": args.latency_n, "burst": args.burst_jobs, "rounds": args.rounds,
             "fleet": args.fleet, "idle_seconds": args.idle_seconds,
             "max_load": args.max_load}
    if args.quick:
        sizes.update(latency=min(args.latency_n, 20), burst=min(args.burst_jobs, 100),
                     fleet=min(args.fleet, 1_000))
    out = args.out or os.path.join(HERE, "results-quick.md" if args.quick
                                   else "results-latest.md")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load_before = loadavg()
    side_rows = [r for r in side.ROWS if r in only]
    side_data = side.load_results(side.results_path(args.quick))
    if side_rows:
        run_side(side_rows, systems, sizes, side_data, args)
    if "classic" not in only:
        part = side.section(side_data, args.quick)
        try:
            with open(out) as f:
                text = side.splice(f.read(), part)
        except FileNotFoundError:
            text = "# hermes-cron-ext side by side\n\n" + part
        write_results(out, text)
        print(part)
        return 0
    installs = {}
    version, installs[JS] = ensure_venv()
    af_version = aps_version = "-"
    if not args.no_airflow:
        af_version, installs[AF] = ensure_airflow()
    if not args.no_aps:
        aps_version, installs[APS] = ensure_aps()
    from hermes_cron_ext import __version__ as ours_version

    t0 = time.time()  # the measured time: venv installs are not in it
    sandbox = Sandbox(keep=args.keep)
    bench = Bench(args, sandbox)
    problems: dict[str, list[str]] = {}
    try:
        bench.start()
        live = bench.live_output()
        bench.fire_delay()
        bench.outage()
        bench.idle_cpu()
        for total in (1_000, 10_000):
            bench.list_latency(total)
        bench.blocking()
        problems = {s.label: s.log_problems() for s in (bench.ours, bench.theirs)}
        for server in (bench.ours, bench.theirs):
            server.stop()
        if bench.aps_idle is not None:
            kill_sessions([bench.aps_idle.pid], 5.0)
        if not args.no_airflow:
            bench.airflow()
    finally:
        if bench.aps_idle is not None and bench.aps_idle.poll() is None:
            kill_sessions([bench.aps_idle.pid], 2.0)
        if getattr(bench, "af", None) is not None and bench.af.pids():
            bench.af.stop()
        sandbox.cleanup()
    report = bench.report
    report.figures.remove(bench.fire)
    report.figures.insert(0, bench.fire)
    bench.fire.entries.append(bench.fire_entries_ours_cmd)
    order = [OURS, JS, AF, APS]
    for fig in (bench.fire, bench.fire_row):
        fig.entries.sort(key=lambda e: (order.index(e.system) if e.system in order else 9,
                                        e.group))
    if args.no_airflow:
        for fig in (bench.fire, bench.fire_row, bench.history, bench.idle):
            fig.entries.append(Entry(AF, "", "not run (--no-airflow)"))
    if args.no_aps:
        for fig in (bench.fire, bench.fire_row, bench.history, bench.idle):
            fig.entries.append(Entry(APS, "", "not run (--no-aps)"))
    live_fig = report.figure("Live output: payload `print` -> an SSE client")
    live_fig.entries += [
        Entry(OURS, "40 prints at 10/s, `GET /api/cron/runs/{id}/stream`", live),
        Entry(JS, "", "n/a: no live output (written when the job ends)"),
        Entry(AF, "", "n/a: task logs are read by polling, not streamed (not timed)"),
        Entry(APS, "", "n/a: no run output is kept"),
    ]
    notify = report.figure("Notification of a failed or missed run")
    notify.entries += [
        Entry(OURS, "", "webhook (`notify_url`), not timed"),
        Entry(JS, "", "n/a: no notifications (columns exist, unused)"),
        Entry(AF, "", "callbacks / notifiers (not timed)"),
        Entry(APS, "", "event listeners in the same process (not timed)"),
    ]
    # the idle figure lists ours first, then the peers in order
    bench.idle.entries.sort(key=lambda e: order.index(e.system) if e.system in order else 9)
    bench.history.entries.sort(key=lambda e: (
        int(e.group or 10**9), order.index(e.system) if e.system in order else 9))
    if sandbox.killed:
        bench.note(f"cleanup had to kill {len(sandbox.killed)} leftover process(es): "
                   + "; ".join(sandbox.killed[:5]))
    for label, lines in problems.items():
        if lines:
            bench.note(f"{label} server log: {len(lines)} error line(s), first: {lines[0]}")
    elapsed = time.time() - t0
    load_after = loadavg()
    inst = ", ".join(f"{k} {v:.0f} s" for k, v in installs.items())
    head = (f"# hermes-cron-ext {ours_version} vs jupyter-scheduler {version}, "
            f"Airflow {af_version}, APScheduler {aps_version}\n\n"
            f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; measured time "
            f"{elapsed / 60:.1f} min (venv installs apart: {inst}; 0 s = reused)\n"
            f"- machine: {machine()}\n"
            f"- load average (1, 5, 15 min): {load_before} before, {load_after} after "
            "(2 shared cores)\n"
            f"- command: `python bench/compare/run.py{' --quick' if args.quick else ''}`; "
            f"{JS_SPEC} in `{shown(VENV)}`, {AIRFLOW_SPEC} in `{shown(AIRFLOW_VENV)}`, "
            f"{' '.join(APS_SPECS)} in `{shown(APS_VENV)}`\n"
            f"- fire-delay pattern: ours and jupyter-scheduler {args.jobs} notebook jobs a "
            f"side, all `* * * * *`, on the same {args.minutes} minutes "
            f"({args.jobs * args.minutes} slots a side); Airflow one DAG every "
            f"{args.af_period:g} s; APScheduler one schedule every {args.aps_period:g} s; "
            f"ours' command job `@every 1s`\n")
    text = (head + "\n" + side.section(side_data, args.quick) + "\n" + report.markdown()
            + "\nNotes:\n\n" + "\n".join(f"- {n}" for n in report.notes) + "\n")
    print(text)
    write_results(out, text)
    return 0


PARTS = ("classic", *side.ROWS)  # what --only names


def write_results(out: str, text: str) -> None:
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, out)
    log(f"wrote {out}")


def run_side(rows: list[str], systems: list[str], sizes: dict, data: dict, args) -> None:
    """The side-by-side rows for *systems*, into *data* (saved after each cell)."""
    from hermes_cron_ext import __version__ as ours_version

    meta = data.setdefault("meta", {})
    ready: dict[str, tuple[str, float]] = {}  # venv -> (version, install seconds)
    for key in systems:
        if key == "ours":
            meta[key] = {"version": ours_version}
            continue
        ensure, specs, venv = ((ensure_aps3, APS3_SPECS, APS3_VENV) if key.startswith("aps3")
                               else (ensure_aps, APS_SPECS, APS_VENV))
        if venv not in ready:
            ready[venv] = ensure()
            if ready[venv][1]:
                log(f"{venv}: installed in {ready[venv][1]:.0f} s (not measured time)")
        meta[key] = {"version": ready[venv][0], "specs": " ".join(specs), "venv": shown(venv)}
    path = side.results_path(args.quick)
    sandbox = Sandbox(keep=args.keep)
    try:
        side.measure(rows, systems, sizes, sandbox.dir, sandbox.ours.env, data.setdefault(
            "cells", {}), saved=lambda: side.save_results(path, data))
    finally:
        sandbox.cleanup()
        side.save_results(path, data)
    log(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
