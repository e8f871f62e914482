"""hermes-cron-ext against jupyter-scheduler: the same workload, one machine, one run.

    python bench/compare/run.py                 # full run, ~8 min (~10 min with a fresh venv)
    python bench/compare/run.py --quick         # 2 cron minutes, fewer samples, ~7 min
    python bench/compare/run.py --minutes 5     # cron minutes, 3-5 (or HERMES_COMPARE_MINUTES)

jupyter-scheduler comes from PyPI into a scratch venv (``bench/compare/.venv``, kept as a
cache; ``HERMES_COMPARE_VENV`` moves it). It is never a dependency of this project. Both
servers run at once on 127.0.0.1, each in a temp dir of its own, and the script measures:

1. fire delay of an every-minute job (``* * * * *``, UTC): the instant -> the run's row,
   -> the payload running, -> the payload's first instruction;
2. the UI page (25 runs) of a job's history at 1,000 and 10,000 runs, rows seeded straight
   into each store's SQLite file (our ``runs`` table, their ``jobs`` table), interleaved;
3. an unrelated ``GET /api/status`` while another process lists that history in a loop;
4. ``kill -9`` of each server process (only it) while a 20 s run is in flight;
5. missed slots while both servers stay down across 2 slots of the every-minute job.

Figures 4 and 5 share one outage. The markdown table goes to stdout and to
``bench/compare/results-latest.md`` (``results-quick.md`` with ``--quick``). Every process
started carries ``HERMES_COMPARE_TAG`` in its environment and is killed by pid at the end.
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
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (  # noqa: E402
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
    iso_ts,
    loadavg,
    log,
    pct,
    wait_all,
    write_notebook,
)

NEVER = "0 3 1 1 *"  # a schedule that does not fire during the run
NA = "n/a"


@dataclass
class Row:
    figure: str
    ours: list[float] | str
    theirs: list[float] | str
    ratio: bool = True  # False: no ratio even for two sample sets


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        out = ["| figure | hermes-cron-ext p50 | p99 | jupyter-scheduler p50 | p99 "
               "| ours/theirs p50 | p99 |",
               "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            cells = [r.figure]
            for side in (r.ours, r.theirs):
                if isinstance(side, str):
                    cells += [side, "–"]
                else:
                    cells += [f"{dur(pct(side, 50))} (n={len(side)})", dur(pct(side, 99))]
            if r.ratio and not isinstance(r.ours, str) and not isinstance(r.theirs, str):
                cells += [ratio(pct(r.ours, 50), pct(r.theirs, 50)),
                          ratio(pct(r.ours, 99), pct(r.theirs, 99))]
            else:
                cells += [NA, NA]
            out.append("| " + " | ".join(cells) + " |")
        return "\n".join(out)


def ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or a < 0 or b <= 0:
        return NA
    return f"{a / b:.2f}×" if a / b >= 0.01 else f"{a / b:.4f}×"


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


class Bench:
    def __init__(self, args, sandbox: Sandbox):
        self.args = args
        self.sb = sandbox
        self.ours = sandbox.ours
        self.theirs = sandbox.theirs
        self.report = Report()
        self.env_name = ""
        self.ticks = os.path.join(self.theirs.root, "ticks.txt")
        self.marker = os.path.join(self.theirs.root, "long-started.txt")
        self.ours_jobs: dict[str, str] = {}
        self.their_defs: dict[str, str] = {}

    def note(self, text: str) -> None:
        self.report.notes.append(text)
        log(text)

    # -- set-up ---------------------------------------------------------------------------
    def start(self) -> None:
        root = self.theirs.root
        write_notebook(os.path.join(root, "tick.ipynb"),
                       f"import time\nwith open({self.ticks!r}, 'a') as f:\n"
                       "    f.write(f'{time.time()}\\n')\n")
        write_notebook(os.path.join(root, "slow.ipynb"),
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
        ):
            self.ours_jobs[name] = self.ours_job(name, schedule, command)

    def ours_job(self, name: str, schedule: str, command: list[str]) -> str:
        job = self.ours.api.json("POST", "/api/cron/jobs", {
            "name": name, "schedule": schedule, "timezone": "UTC", "command": command},
            expect=(201,))
        return job["id"]

    def their_definition(self, name: str, schedule: str | None) -> str:
        body = {"name": name, "input_uri": "tick.ipynb", "runtime_environment_name":
                self.env_name, "output_formats": ["ipynb"]}
        if schedule:
            body.update(schedule=schedule, timezone="UTC")
        return self.theirs.api.json("POST", "/scheduler/job_definitions", body)[
            "job_definition_id"]

    # -- live output: ours only -------------------------------------------------------------
    def live_output(self) -> list[float]:
        """print() in the payload -> the line arrives at an SSE client (40 lines, 10/s)."""
        code = ("import time\nfor i in range(40):\n"
                "    print(f'tick {time.time():.6f}', flush=True)\n    time.sleep(0.1)\n")
        job = self.ours_job("live", NEVER, [sys.executable, "-u", "-c", code])
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

    # -- 1. fire delay --------------------------------------------------------------------------
    def fire_delay(self) -> None:
        minutes = self.args.minutes
        self.ours_jobs["every-minute"] = self.ours_job(
            "every-minute", "* * * * *", ["/bin/date", "+%s.%N"])
        self.their_defs["every-minute"] = self.their_definition("every-minute", "* * * * *")
        first = next_boundary(time.time() + 8)
        slots = [first + 60 * i for i in range(minutes)]
        log(f"fire delay: {minutes} slot(s) {hhmm(slots[0])}..{hhmm(slots[-1])} UTC")
        for s in slots:
            wait_until(s + 20, f"for the slot at {hhmm(s)}")
        deadline = slots[-1] + 75
        while time.time() < deadline:  # their first cell runs 10-30 s after the slot here
            if set(slots) <= {slot_of(t) for t in self.read_ticks()}:
                break
            time.sleep(1)
        self.fire_slots = slots

        ours_rows = self.ours.api.json(
            "GET", f"/api/cron/jobs/{self.ours_jobs['every-minute']}/runs?limit=100")["runs"]
        recorded, started, first_instr, missing = [], [], [], []
        by_slot = {iso_ts(r["scheduled_for"]): r for r in ours_rows}
        for s in slots:
            run = by_slot.get(s)
            if run is None:
                missing.append(hhmm(s))
                continue
            recorded.append(iso_ts(run["queued_at"]) - s)
            if run["started_at"]:
                started.append(iso_ts(run["started_at"]) - s)
            status, raw, _ = self.ours.api.request("GET", f"/api/cron/runs/{run['id']}/log")
            if status == 200 and raw.strip():
                first_instr.append(float(raw.split()[0]) - s)
        theirs = self.theirs.api.json(
            "GET", f"/scheduler/jobs?job_definition_id={self.their_defs['every-minute']}"
                   "&max_items=100")["jobs"]
        t_recorded, t_started, t_first, t_missing, dupes = [], [], [], [], 0
        jobs_by_slot: dict[float, list[dict]] = {}
        for job in theirs:
            jobs_by_slot.setdefault(slot_of(job["create_time"] / 1000), []).append(job)
        ticks_by_slot: dict[float, float] = {}
        for t in self.read_ticks():
            ticks_by_slot.setdefault(slot_of(t), t)
        for s in slots:
            jobs = jobs_by_slot.get(s, [])
            if not jobs:
                t_missing.append(hhmm(s))
                continue
            dupes += len(jobs) - 1
            job = min(jobs, key=lambda j: j["create_time"])
            t_recorded.append(job["create_time"] / 1000 - s)
            if job.get("start_time"):
                t_started.append(job["start_time"] / 1000 - s)
            if s in ticks_by_slot:
                t_first.append(ticks_by_slot[s] - s)
        self.report.rows += [
            Row("fire delay: slot -> run's row exists (ours `queued_at`, theirs "
                "`create_time`)", recorded, t_recorded),
            Row("fire delay: slot -> payload running (ours `started_at`, theirs "
                "IN_PROGRESS `start_time`)", started, t_started),
            Row("fire delay: slot -> payload's first instruction (ours `date` in the log, "
                "theirs the notebook's first cell)", first_instr, t_first),
        ]
        self.note(f"fire delay: {len(slots)} slots; ours missing {missing or 'none'}, theirs "
                  f"missing {t_missing or 'none'}, theirs duplicate runs {dupes}. Ours claims "
                  "a slot `lead` = 2 s ahead (the row is queued before the instant, so its "
                  "delay is negative and has no ratio); the supervisor then waits for the "
                  "instant. Theirs polls every 10 s, then spawns a Python that starts a kernel.")
        self.note("fire delay per slot (s): ours row " + fmt_list(recorded) + "; started "
                  + fmt_list(started) + "; first instruction " + fmt_list(first_instr)
                  + ". Theirs row " + fmt_list(t_recorded) + "; IN_PROGRESS "
                  + fmt_list(t_started) + "; first cell " + fmt_list(t_first))

    def read_ticks(self) -> list[float]:
        try:
            with open(self.ticks) as f:
                return [float(x) for x in f.read().split()]
        except OSError:
            return []

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
        wait_until(missed[-1] + 3, "with both servers down")
        for server in (self.ours, self.theirs):
            server.launch()
        ready = wait_all([self.ours, self.theirs])
        up = time.time()
        wait_until(up + 15, "for both schedulers to settle after the restart")
        self.note(f"outage: both killed at {hhmm(killed)}, relaunched at {hhmm(missed[-1] + 3)}, "
                  "ready after " + ", ".join(f"{k} {v:.1f} s" for k, v in ready.items())
                  + f"; counted at {hhmm(time.time())}")

        # 4. what became of the runs in flight
        ours_after = {rid: self.ours.api.json("GET", f"/api/cron/runs/{rid}")
                      for rid in ours_inflight}
        theirs_after = {}
        for jid in their_inflight:
            status, raw, _ = self.theirs.api.request("GET", f"/scheduler/jobs/{jid}")
            theirs_after[jid] = json.loads(raw) if status == 200 else None
        self.report.rows.append(Row(
            f"`kill -9` of the server process during a {self.args.long_run:g} s run, "
            f"restart: runs in flight -> lost / stuck running / final status",
            inflight_summary(ours_after, "status", ("running", "queued"), ("lost",)),
            inflight_summary(theirs_after, "status", ("IN_PROGRESS", "CREATED", "STOPPING"),
                             ()), ratio=False))
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
        parts = {}
        for r in ours_missed:
            key = f"{r['trigger']} {r['status']}"
            parts[key] = parts.get(key, 0) + 1
        self.report.rows.append(Row(
            f"missed slots: server down across {down} slots of the every-minute job",
            f"{len({iso_ts(r['scheduled_for']) for r in ours_missed})}/{down} recorded ("
            + ", ".join(f"{n} {k}" for k, n in sorted(parts.items())) + ")",
            f"{len(theirs_missed)}/{down} recorded (n/a: no catch-up, no missed-run record)",
            ratio=False))
        reasons = {r["reason"] for r in ours_missed if r.get("reason")}
        self.note("missed slots, ours: " + "; ".join(
            f"{hhmm(iso_ts(r['scheduled_for']))} {r['trigger']} {r['status']}"
            + (f" (started {iso_ts(r['started_at']) - iso_ts(r['scheduled_for']):.1f} s after "
               "its slot)" if r["started_at"] else "")
            for r in ours_missed) + (f"; reason: {reasons.pop()}" if reasons else ""))
        # stop the every-minute jobs: the list and blocking figures run on idle schedulers
        self.ours.api.json("POST", f"/api/cron/jobs/{self.ours_jobs['every-minute']}/pause", {})
        self.theirs.api.json(
            "PATCH", f"/scheduler/job_definitions/{self.their_defs['every-minute']}",
            {"active": False, "schedule": "* * * * *", "timezone": "UTC"}, expect=(200, 204))

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
        self.report.rows.append(Row(f"list a job's runs, UI page of 25, at {total:,} runs",
                                    ours, theirs))
        self.note(f"at {total:,} runs, ours GET /api/cron/status: p50 {dur(pct(status_t, 50))}"
                  f" / p99 {dur(pct(status_t, 99))} (it aggregates every run; see the report)")

    # -- 3. event-loop blocking ------------------------------------------------------------
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
        o, t = self.ours.label, self.theirs.label
        self.report.rows += [
            Row("`GET /api/status`, idle", idle[o], idle[t]),
            Row("`GET /api/status` while another process lists 10,000 runs, 25/page",
                loaded[(o, 25)], loaded[(t, 25)]),
            Row("`GET /api/status` while another process lists 10,000 runs, 500/page",
                loaded[(o, 500)], loaded[(t, 500)]),
        ]


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
            f"{platform.platform()}, Python {platform.python_version()}")


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--load":
        load_worker(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="2 cron minutes and fewer samples")
    ap.add_argument("--minutes", type=int,
                    default=int(os.environ.get("HERMES_COMPARE_MINUTES", "4")),
                    help="every-minute slots timed for the fire delay (3-5; default 4)")
    ap.add_argument("--down-slots", type=int, default=2,
                    help="slots the servers stay down across (default 2)")
    ap.add_argument("--long-run", type=float, default=20.0,
                    help="seconds of the run in flight at the kill (default 20)")
    ap.add_argument("--out", help="results file (default results-latest.md, "
                                  "results-quick.md with --quick)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    if args.quick:
        args.minutes = min(args.minutes, 2)
    args.samples = 100 if args.quick else 300
    args.probe_seconds = 4.0 if args.quick else 6.0
    out = args.out or os.path.join(HERE, "results-quick.md" if args.quick
                                   else "results-latest.md")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.time()
    load_before = loadavg()
    version, install_s = ensure_venv()
    from hermes_cron_ext import __version__ as ours_version

    sandbox = Sandbox(keep=args.keep)
    bench = Bench(args, sandbox)
    try:
        bench.start()
        live = bench.live_output()
        bench.fire_delay()
        bench.outage()
        for total in (1_000, 10_000):
            bench.list_latency(total)
        bench.blocking()
        report = bench.report
        report.rows.append(Row("live output: payload `print` -> SSE client", live,
                               "n/a: no live output (written when the job ends)"))
        report.rows.append(Row("notification of a failed / missed run", "webhook (not timed)",
                               "n/a: no notifications (columns exist, unused)", ratio=False))
        problems = {s.label: s.log_problems() for s in (bench.ours, bench.theirs)}
    finally:
        sandbox.cleanup()
    if sandbox.killed:
        bench.note(f"cleanup had to kill {len(sandbox.killed)} leftover process(es): "
                   + "; ".join(sandbox.killed[:5]))
    for label, lines in problems.items():
        if lines:
            bench.note(f"{label} server log: {len(lines)} error line(s), first: {lines[0]}")
    elapsed = time.time() - t0
    head = (f"# hermes-cron-ext {ours_version} vs jupyter-scheduler {version}\n\n"
            f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; total "
            f"{elapsed / 60:.1f} min (venv install {install_s:.0f} s)\n"
            f"- machine: {machine()}; load average {load_before} before, {loadavg()} after "
            "(2 shared cores: other work ran concurrently)\n"
            f"- command: `python bench/compare/run.py{' --quick' if args.quick else ''}` "
            f"({args.minutes} cron minutes, {args.samples} list calls per size, "
            f"{JS_SPEC} in `{shown(VENV)}`)\n")
    text = (head + "\n" + report.table() + "\n\nNotes:\n\n"
            + "\n".join(f"- {n}" for n in report.notes) + "\n")
    print(text)
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, out)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
