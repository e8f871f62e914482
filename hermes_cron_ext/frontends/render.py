"""Every text the fronts print, in one place: the CLI, the magics and the widgets' text
(their ``text/plain``) use these and no format of their own.

- times and progress: :func:`local_time` (wall time with its zone), :func:`format_duration` (one
  duration format: ``0.52 s``, ``12.3 s``, ``1m 05s``, ``2h 05m``),
  :func:`format_countdown` (``in 4m 05s``), :func:`format_ago` (``5 min ago``) and
  :func:`relative_time` (either, as the time is ahead or behind); :func:`progress_text`
  (``[#########.....................]  30% phase``);
- tables: :func:`text_table` (uppercase headers, columns two spaces apart, no rule: what
  scripts read with ``awk``), the job, run and backfill tables;
- jobs: the schedule in words, :func:`next_run_text`, :func:`last_run_text`, the line
  said when a job is saved or paused, a job in detail (``show``);
- runs: the trigger, the end line (``[failed, exit code 3]``); backfills, pipelines,
  schedule previews and the tickers' status;
- metrics: :func:`sparkline` (``▁▂▃▅█``, or ``_.:-=+*#`` where the output cannot print
  blocks), :func:`metrics_text` (a table with a sparkline per metric) and
  :func:`metrics_html` (the same with inline SVG sparklines, for ``%cron metrics``).

No widget imports (the widgets import this).
"""

from __future__ import annotations

import html
import json
import math
import re
import shlex
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hermes_cron_ext.domain import schedule as sched
from hermes_cron_ext.domain.models import ACTIVE_STATUSES, FAILED_STATUSES, parse_iso
from hermes_cron_ext.errors import HermesCronError

__all__ = [
    "BACKFILL_COLUMNS", "IDLE_STATES", "RUN_COLUMNS", "after_text", "alert_badge",
    "alert_badge_html",
    "backfill_done",
    "backfill_head", "backfill_line", "backfill_plan_text", "backfill_rows",
    "backfill_text", "card_state", "command_text", "describe_schedule", "end_text",
    "format_ago", "format_countdown", "format_duration", "format_metric", "held_note",
    "job_text", "jobs_table", "last_run_parts", "last_run_text", "local_time",
    "metrics_html", "metrics_text", "next_run_text",
    "no_backfills_text", "pipeline_text", "preview_text", "progress_bar",
    "progress_text", "relative_time", "runs_text", "saved_text", "schedule_text",
    "schedule_words", "sparkline", "state_line", "status_text", "text_table", "timestamp",
    "trigger_text", "unicode_ok", "when_text",
    "OUTCOME_COLOURS", "TIMELINE_MARKS", "calendar_html", "calendar_text", "diff_html",
    "diff_text", "highlight_html", "revision_parts", "search_html", "search_text",
    "timeline_html", "timeline_text",
]


# -- times ------------------------------------------------------------------------------

def timestamp(value: str | float | None) -> float | None:
    """Epoch seconds, from the API's ISO text or as given."""
    if value is None or isinstance(value, (int, float)):
        return value
    return parse_iso(value)


def local_time(ts: float | str | None, tz: str | None = None) -> str:
    """A time as every front prints it: wall time with its zone, the job's (*tz*) or
    this machine's, e.g. ``2026-12-08 02:00:00 CET``; a zone with no abbreviation shows
    its offset (``+04:00``)."""
    ts = timestamp(ts)
    if ts is None:
        return "-"
    moment = datetime.fromtimestamp(ts, UTC).astimezone(ZoneInfo(tz) if tz else None)
    zone = moment.tzname() or ""
    if not zone or zone[0] in "+-":
        offset = moment.strftime("%z")
        zone = f"{offset[:3]}:{offset[3:5]}"
    return f"{moment.strftime('%Y-%m-%d %H:%M:%S')} {zone}"


def format_duration(seconds: float | None) -> str:
    """How long a run took: ``0.52 s``, ``12.3 s``, ``1m 05s``, ``2h 05m``."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_countdown(seconds: float) -> str:
    """``in 4m 05s``; whole seconds, so it changes every second while it runs."""
    if seconds <= 0.5:
        return "due now"
    s = int(round(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"in {days}d {hours:02d}h {minutes:02d}m"
    if hours:
        return f"in {hours}h {minutes:02d}m {s:02d}s"
    if minutes:
        return f"in {minutes}m {s:02d}s"
    return f"in {s}s"


def format_ago(ts: float | None, now: float) -> str:
    """``5 s ago``, ``3 min ago``, ``1.5 h ago``, ``4 days ago``; "" for no time."""
    if ts is None:
        return ""
    span = max(0.0, now - ts)
    if span < 60:
        return f"{span:.0f} s ago"
    if span < 3600:
        return f"{span / 60:.0f} min ago"
    if span < 2 * 86400:
        return f"{span / 3600:.1f} h ago"
    return f"{span / 86400:.0f} days ago"


def relative_time(ts: float | str | None, now: float) -> str:
    """A time from now: a countdown when it is ahead (``in 4m 05s``, ``due now``), else
    how long ago (``5 s ago``); ``-`` for no time."""
    ts = timestamp(ts)
    if ts is None:
        return "-"
    return format_countdown(ts - now) if ts >= now else format_ago(ts, now)


def progress_bar(fraction: float, width: int = 30) -> str:
    """``[#########.....................]``: how much is done, as text."""
    done = max(0, min(width, int(fraction * width)))
    return f"[{'#' * done}{'.' * (width - done)}]"


def progress_text(fraction: float | None, phase: str | None) -> str:
    """``[#########.....................]  30% phase``, or the phase alone."""
    if fraction is None:
        return phase or ""
    text = f"{progress_bar(fraction)} {fraction * 100:3.0f}%"
    return f"{text} {phase}" if phase else text


# -- tables -----------------------------------------------------------------------------

def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """Uppercase headers over columns padded to their widest cell, two spaces apart (as
    ``ps`` and ``docker`` print them: no rule, so ``awk 'NR>1'`` reads the rows)."""
    headers = [h.upper() for h in headers]
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([line(headers), *map(line, rows)])


# -- jobs -------------------------------------------------------------------------------

def card_state(job: dict) -> str:
    """The pip: the job's state, or ``failing`` when it is scheduled but its last run failed."""
    state = job.get("state", "scheduled")
    last = job.get("last_run") or {}
    if state == "scheduled" and (last.get("status") in FAILED_STATUSES
                                 or job.get("consecutive_failures")):
        return "failing"
    return state


def after_text(job: dict) -> str:
    """``after extract, load`` (``alert:failure`` as written on a command line): the jobs
    whose runs trigger *job*; "" when none."""
    ups = [(a.get("name") or a["job"]) + (
        "" if a.get("on", "success") == "success" else f":{a['on']}")
        for a in job.get("after") or []]
    return f"after {', '.join(ups)}" if ups else ""


def schedule_text(job: dict) -> str:
    """What a job's schedule shows: the schedule, or ``after extract, load`` for a job
    that has none of its own (it runs after its upstreams only)."""
    return job.get("schedule") or after_text(job) or "-"


def describe_schedule(text: str | None, tz: str | None) -> str:
    if not text:
        return "no schedule of its own"
    try:
        return sched.describe(sched.parse(text, tz))
    except HermesCronError:
        return text


def schedule_words(job: dict) -> str:
    """A job's schedule with its zone and in words: ``0 2 * * * (Europe/Berlin), At 02:00
    every day``; ``after extract, load`` for a job with no schedule of its own."""
    if not job.get("schedule"):
        return schedule_text(job)
    text = f"{job['schedule']} ({job.get('timezone') or ''})"
    words = describe_schedule(job["schedule"], job.get("timezone"))
    return f"{text}, {words}" if words and words != job["schedule"] else text


def when_text(job: dict) -> str:
    """When a job runs: its :func:`schedule_words`, and ``, and after extract`` when
    upstream runs trigger it too."""
    return schedule_words(job) + (
        f", and {after_text(job)}" if job.get("schedule") and job.get("after") else "")


#: job states in which a job does not fire on its schedule: no countdown for them
IDLE_STATES = ("paused", "blocked", "disabled", "deleted")


def next_run_text(job: dict, now: float, state: str | None = None) -> str:
    """When a job fires next, in its own zone with a countdown
    (``2026-12-08 02:00:00 CET (in 5h 02m 10s)``), or why it does not
    (``none (paused)``); *state* is the job's as a card shows it (``deleted``)."""
    state = state or job.get("state", "")
    nxt = timestamp(job.get("next_run_at"))
    if nxt is not None and state not in IDLE_STATES:
        return f"{local_time(nxt, job.get('timezone'))} ({format_countdown(nxt - now)})"
    why = {"paused": "paused", "blocked": "blocked: resume it to fire again",
           "disabled": "disabled: enable it to fire again",
           "deleted": "job deleted"}.get(state)
    if why is None and not job.get("schedule") and job.get("after"):
        ups = ", ".join(a.get("name") or a["job"] for a in job["after"])
        why = f"no schedule of its own: it runs after {ups}"
    return f"none ({why or 'its schedule fires no more'})"


def last_run_parts(run: dict, now: float) -> list[str]:
    """How a run ended, in parts: ``["failed", "exit 3", "0.50 s", "5 s ago"]``."""
    parts = [str(run.get("status", "?")).replace("_", " ")]
    if run.get("exit_code") is not None:
        parts.append(f"exit {run['exit_code']}")
    if run.get("duration") is not None:
        parts.append(format_duration(run["duration"]))
    ago = format_ago(timestamp(run.get("finished_at") or run.get("started_at")), now)
    return parts + ([ago] if ago else [])


def last_run_text(job: dict, now: float) -> str:
    """A job's last run: ``failed · exit 3 · 0.50 s · 5 s ago``, or ``none yet``."""
    last = job.get("last_run")
    return " \u00b7 ".join(last_run_parts(last, now)) if last else "none yet"


def command_text(job: dict) -> str:
    """What a job runs, on one line: the command (quoted as a shell would take it), or
    ``python code, 3 lines: import os`` for a ``%%cron`` cell."""
    if job.get("kind") == "python" and job.get("code"):
        lines = job["code"].strip().splitlines()
        return f"python code, {len(lines)} line{'s' if len(lines) != 1 else ''}: " + (
            lines[0][:60] if lines else "")
    command = job.get("command")
    return shlex.join(command) if isinstance(command, list) else str(command)


def held_note(job: dict) -> str | None:
    """A job that runs after others but is disabled or paused is not triggered by them:
    said where it is saved (graph and show say it too)."""
    if not (job.get("after") and job["state"] in ("disabled", "paused", "blocked")):
        return None
    ups = " and ".join(dict.fromkeys(a.get("name") or a["job"] for a in job["after"]))
    return (f"note: {job['name']} is {job['state']}: runs of {ups} do not trigger it until "
            f"it is {'enabled' if job['state'] == 'disabled' else 'resumed'}")


def saved_text(verb: str, job: dict, now: float) -> str:
    """``etl added: 0 2 * * * (UTC), At 02:00 every day; next run ...`` (and the note of
    a job its upstreams do not trigger, on a line of its own)."""
    line = f"{job['name']} {verb}: {when_text(job)}; next run {next_run_text(job, now)}"
    note = held_note(job)
    return f"{line}\n{note}" if note else line


def state_line(job: dict, now: float) -> str:
    """``etl paused``; ``etl scheduled; next run ...`` (pause, resume)."""
    return f"{job['name']} {job['state']}" + (
        f"; next run {next_run_text(job, now)}" if job["state"] == "scheduled" else "")


def jobs_table(jobs: list[dict], now: float) -> str:
    """Every job on a line: name, state, schedule, next run, last outcome, command."""
    rows = []
    for j in jobs:
        last = j.get("last_run") or {}
        waiting = j["state"] in ("paused", "blocked", "disabled")  # no countdown
        rows.append([j["name"] + (" *" if j.get("managed_by") else ""), j["state"],
                     schedule_text(j),
                     "-" if waiting else relative_time(j.get("next_run_at"), now),
                     last.get("status", "-"), command_text(j)[:40]])
    table = text_table(["NAME", "STATE", "SCHEDULE", "NEXT", "LAST", "COMMAND"], rows)
    managed = sorted({j["managed_by"] for j in jobs if j.get("managed_by")})
    if managed:  # which file a starred job is applied from
        table += f"\n* managed by {', '.join(managed)}: the next apply undoes edits made here"
    return table


def job_text(job: dict, runs: list[dict], note: str | None, now: float) -> str:
    """One job in detail (``show``, ``%cron status NAME``): state, schedule, the jobs it
    runs after and *note* (why their runs may not trigger it), next and last run, what
    it runs, policy, then its recent *runs*."""
    reason = job.get("state_reason")
    lines = [f"{job['name']}  ({job['id']})",
             f"  state      {job['state']}" + (f": {reason}" if reason else "")]
    lines.append("  schedule   " + (schedule_words(job) if job.get("schedule")
                                     else "none of its own"))
    if job.get("after"):
        lines.append(f"  runs       {after_text(job)}")
        if note:
            lines.append(f"             {note}")
    lines.append(f"  next run   {next_run_text(job, now)}")
    lines.append(f"  last run   {last_run_text(job, now)}")
    lines.append(f"  kind       {job['kind']}: {command_text(job)}")
    if job.get("cwd"):
        lines.append(f"  cwd        {job['cwd']}")
    if job.get("executor"):
        lines.append(f"  executor   {job['executor']}")
    if job.get("version"):
        lines.append(f"  revision   {job['version']}  (hermes-cron revisions {job['name']})")
    if job.get("managed_by"):  # applied from a file: an edit made here is undone by the next
        lines.append(f"  managed by {job['managed_by']} (the next apply undoes edits made "
                     f"elsewhere)")
    if job.get("owner"):  # a JupyterHub service's job: whose it is, who else sees it
        lines.append(f"  owner      {job['owner']}")
    if job.get("shares"):
        lines.append("  shared     " + ", ".join(
            f"{group} ({level})" for group, level in sorted(job["shares"].items())))
    p = job.get("policy") or {}
    lines.append(f"  policy     overlap={p.get('overlap')} misfire={p.get('misfire')} "
                 f"retries={p.get('retries')} timeout={p.get('timeout') or '-'} "
                 f"max_failures={p.get('max_failures')}")
    if p.get("alerts"):
        lines.append("  alerts     " + "; ".join(p["alerts"]))
    if runs:
        lines.append("  recent runs")
        for r in runs:
            code = "-" if r.get("exit_code") is None else r["exit_code"]
            when = local_time(r.get("started_at") or r.get("scheduled_for"), job["timezone"])
            lines.append(f"    {r['id']}  {r['status']:<10} {r['trigger']:<8} {when}  "
                         f"{format_duration(r.get('duration'))}  exit={code}"
                         + (f"  {badge}" if (badge := alert_badge(r)) else ""))
    return "\n".join(lines)


# -- runs -------------------------------------------------------------------------------

def trigger_text(run: dict) -> str:
    """A run's trigger, with the parameters it was given (``manual n=7``), if any."""
    given = run.get("parameters") or {}
    text = run.get("trigger") or ""
    if given:
        text += " " + ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}"
                                for k, v in given.items())
    return text[:80]


RUN_COLUMNS = ["RUN", "STATUS", "TRIGGER", "TRY", "SCHEDULED", "STARTED", "TOOK", "EXIT",
               "REASON"]


def alert_badge(run: dict) -> str:
    """A run whose job's alert rules fired when it ended: ``ALERT rows < 1000`` (the
    first rule, ``+N`` more); "" for one without."""
    fired = run.get("alerts") or []
    if not fired:
        return ""
    return f"ALERT {fired[0]['rule']}" + (f" +{len(fired) - 1}" if len(fired) > 1 else "")


def alert_badge_html(run: dict) -> str:
    """:func:`alert_badge` in HTML, for the widgets and ``%cron``'s tables: ``⚠ ALERT``
    (``×N`` for several), each fired rule with what was seen as its tooltip
    (``rows < 1000: rows = 5 < 1000``, one per line, as the side panel's); "" for a run
    without."""
    fired = run.get("alerts") or []
    if not fired:
        return ""
    title = "\n".join(f"{a['rule']}: {a['message']}" if a.get("message") else a["rule"]
                      for a in fired)
    label = "\u26a0 ALERT" + (f" \u00d7{len(fired)}" if len(fired) > 1 else "")
    return (f'<span class="hc-alert" data-role="alert-badge" title="{html.escape(title)}" '
            'style="display:inline-block;margin-left:4px;padding:0 6px;border-radius:8px;'
            "font-size:11px;font-weight:600;white-space:nowrap;cursor:help;"
            "color:var(--jp-warn-color0,#e65100);background:var(--jp-warn-color3,#fff3e0);"
            f'border:1px solid var(--jp-warn-color1,#ef6c00)">{label}</span>')


def managed_html(job: dict) -> str:
    """A badge on a job applied from a definitions file (``managed_by``): an edit made
    here is undone by the next apply."""
    source = job.get("managed_by")
    if not source:
        return ""
    return (f' <span class="hc-managed" data-role="managed" title="applied from '
            f'{html.escape(source)}: the next apply undoes edits made here" '
            f'style="font-size:85%;color:#555;border:1px solid #bbb;border-radius:3px;'
            f'padding:0 3px">managed by {html.escape(source)}</span>')


def _reason_with_badge(run: dict) -> str:
    return " ".join(t for t in (alert_badge(run), run.get("reason") or "") if t)


def runs_text(runs: list[dict]) -> str:
    """Runs, one a line (``RUN_COLUMNS``), times in this machine's zone; ``no runs yet``."""
    if not runs:
        return "no runs yet"
    rows = [[r["id"], r["status"], trigger_text(r), str(r.get("attempt", 1)),
             local_time(r.get("scheduled_for")), local_time(r.get("started_at")),
             format_duration(r.get("duration")),
             "-" if r.get("exit_code") is None else str(r["exit_code"]),
             _reason_with_badge(r)[:60]] for r in runs]
    return text_table(RUN_COLUMNS, rows)


def end_text(run: dict) -> str:
    """How a run ended, as the line under its followed output says it (in brackets):
    ``failed, exit code 3: reason`` (the exit code said once)."""
    code, reason = run.get("exit_code"), run.get("reason")
    if reason == f"exit code {code}":
        reason = None
    badge = alert_badge(run)
    return (run["status"] + (f", exit code {code}" if code is not None else "")
            + (f": {reason}" if reason else "") + (f"; {badge}" if badge else ""))


# -- backfills ----------------------------------------------------------------------------

def backfill_rows(backfills: list[dict]) -> list[list[str]]:
    """A table of backfills (``BACKFILL_COLUMNS``): id, state, range, at once, progress."""
    return [[b["id"], b["state"], f"{(b.get('from') or '-')[:16]} .. {(b.get('to') or '-')[:16]}",
             str(b["max_parallel"]), backfill_text(b)] for b in backfills]


BACKFILL_COLUMNS = ["ID", "STATE", "SLOTS FROM .. TO", "AT ONCE", "PROGRESS"]


def backfill_done(b: dict) -> int:
    """How many of a backfill's slots have a run that ended."""
    return sum(n for s, n in (b.get("runs") or {}).items() if s not in ACTIVE_STATUSES)


def backfill_text(b: dict) -> str:
    """``12/30 slots done (4 running, 12 succeeded)``: a backfill's progress in words
    (a cancelled one also says how many slots it left out)."""
    runs = b.get("runs") or {}
    parts = [f"{n} {s.replace('_', ' ')}" for s, n in sorted(runs.items())]
    left = b["slots"] - sum(runs.values())  # slots no run was made for (yet)
    return f"{backfill_done(b)}/{b['slots']} slots done" + (
        f" ({', '.join(parts)})" if parts else "") + (
        f"; {left} not run" if left and b.get("state") == "cancelled" else "")


def backfill_head(b: dict, name: str) -> str:
    """``backfill b_1 of etl: 30 slot(s), 4 at a time`` (each front says how to stop it)."""
    return f"backfill {b['id']} of {name}: {b['slots']} slot(s), {b['max_parallel']} at a time"


def backfill_line(b: dict, cancelling: bool = False) -> str:
    """``backfill b_1: done; 30/30 slots done (30 succeeded)``; *cancelling*: the answer
    to cancel, which says when there was nothing left to cancel."""
    state = b["state"]
    if cancelling and state != "cancelled":
        state += ", nothing left to cancel"
    return f"backfill {b['id']}: {state}; {backfill_text(b)}"


def backfill_plan_text(name: str, b: dict, shown: int = 20) -> str:
    """A dry run: how many slots would run, how many at a time, the first *shown* slots."""
    lines = [f"{name}: {b['slots']} slot(s) would run, {b['max_parallel']} at a time"]
    lines += [f"  {t}" for t in b["next"][:shown]]
    if len(b["next"]) > shown:
        lines.append(f"  ... and {len(b['next']) - shown} more")
    return "\n".join(lines)


def no_backfills_text(name: str, prefix: str) -> str:
    """What ``backfills NAME`` says of a job with none (*prefix*: ``hermes-cron``)."""
    return (f"{name} has no backfills (start one with: {prefix} backfill {name} "
            f"--from DATE --to DATE)")


# -- pipelines, previews, tickers ---------------------------------------------------------

def pipeline_text(graph: dict) -> str:
    """The pipeline as lines: each level's jobs with their last status, then the links."""
    names = {n["id"]: n["name"] for n in graph["nodes"]}
    lines = []
    for level in sorted({n["level"] for n in graph["nodes"]}):
        jobs = [n for n in graph["nodes"] if n["level"] == level]
        lines.append(f"{level}: " + "   ".join(
            f"{n['name']} [{(n['last_status'] or 'no run').replace('_', ' ')}]" for n in jobs))
    lines += [f"{names.get(e['from'], e['from'])} -> {names.get(e['to'], e['to'])}"
              + ("" if e["on"] == "success" else f" (on {e['on']})") for e in graph["edges"]]
    # why upstream runs may not trigger a job (disabled; a fan-in's rule)
    lines += [f"{n['name']}: {n['note']}" for n in graph["nodes"] if n.get("note")]
    return "\n".join(lines)


def preview_text(preview: dict) -> str:
    """A schedule's next fire times (``next``), each in the schedule's zone."""
    lines = [f"{preview['schedule']} [{preview['timezone']}]: {preview['description']}"]
    lines += [f"  {local_time(t, preview['timezone'])}" for t in preview["next"]]
    return "\n".join(lines if preview["next"] else [*lines, "  (never fires again)"])


def status_text(report: dict, now: float) -> str:
    """The store, its jobs by state and every ticker (alive or stale) of a status report."""
    jobs = ", ".join(f"{n} {s}" for s, n in sorted(report["jobs_by_state"].items()))
    lines = [f"store      {report['store']}", f"jobs       {jobs or 'none'}"]
    if report["tickers"]:
        lines.append(text_table(
            ["TICKER", "HOST", "PID", "STATE", "SINCE", "LAST TICK", "HEARTBEAT"],
            [[t["kind"], t["host"], str(t["pid"]), "alive" if t["alive"] else "STALE",
              local_time(t.get("started_at")), relative_time(t.get("last_tick_at"), now),
              relative_time(t.get("heartbeat_at"), now)] for t in report["tickers"]]))
    return "\n".join(lines)


# -- metrics ----------------------------------------------------------------------------

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
#: the same eight levels where the output's encoding has no block characters
SPARK_ASCII = "_.:-=+*#"
METRIC_COLUMNS = ["METRIC", "UNIT", "RUNS", "LAST", "MIN", "MEDIAN", "MAX", "TREND"]


def unicode_ok(encoding: str | None) -> bool:
    """Whether text in *encoding* (a stream's; None: unknown) can carry the sparkline's
    blocks; if not, :func:`sparkline` is written in ASCII."""
    try:
        SPARK_BLOCKS.encode(encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def sparkline(values: list[float], width: int | None = None, ascii: bool = False) -> str:
    """The series (oldest first) as one character a value, eight levels from its min to
    its max; the newest *width* values when there are more. A flat series is a line at
    mid height; no values: ""."""
    levels = SPARK_ASCII if ascii else SPARK_BLOCKS
    if width is not None:
        values = values[-width:] if width > 0 else []
    if not values:
        return ""
    lo, hi = min(values), max(values)
    if hi == lo:
        return levels[3] * len(values)
    top = len(levels) - 1
    return "".join(levels[round((v - lo) / (hi - lo) * top)] for v in values)


def _bytes_text(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover - the loop returns


def format_metric(value: float | None, unit: str = "") -> str:
    """A metric's value as the fronts print it: seconds as a duration (``12.3 s``),
    bytes as ``1.5 MB``, other numbers to 4 significant digits with their unit; ``-``
    for none."""
    if value is None or not math.isfinite(value):
        return "-"
    if unit == "s":
        return format_duration(value) if value >= 0 else f"{value:.4g} s"
    if unit == "B":
        return _bytes_text(value)
    text = str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else \
        f"{value:.4g}"
    return f"{text} {unit}" if unit else text


def _no_metrics(answer: dict) -> str | None:
    if answer["metrics"]:
        return None
    return f"{answer['job_name']} has no metrics yet: none of its runs has ended"


def _metric_row(m: dict) -> list[str]:
    s, unit = m["summary"], m["unit"]
    return [m["name"], unit or "-", str(m["count"]), format_metric(s["last"], unit),
            format_metric(s["min"], unit), format_metric(s["median"], unit),
            format_metric(s["max"], unit)]


def metrics_text(answer: dict, width: int = 100, ascii: bool = False) -> str:
    """A job's metrics (``Operations.metrics``): a row per metric (``METRIC_COLUMNS``)
    with the summary of its points and a sparkline as wide as *width* columns leave it
    (at least 8); one line when no run of the job has ended."""
    none = _no_metrics(answer)
    if none:
        return none
    rows = [_metric_row(m) for m in answer["metrics"]]
    used = max(len(line) for line in text_table(METRIC_COLUMNS[:-1], rows).splitlines())
    room = max(8, width - used - 2)
    for row, m in zip(rows, answer["metrics"]):
        row.append(sparkline([p["value"] for p in m["points"]], room, ascii))
    return text_table(METRIC_COLUMNS, rows)


def _svg_sparkline(values: list[float], width: int = 160, height: int = 28) -> str:
    """An inline SVG line of the series (oldest first), its last point marked."""
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    pad = 3.0
    step = (width - 2 * pad) / max(1, len(values) - 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        y = height / 2 if hi == lo else pad + (hi - v) / span * (height - 2 * pad)
        return pad + i * step, y

    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in enumerate(values)))
    lx, ly = xy(len(values) - 1, values[-1])
    return (f'<svg class="hc-sparkline" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img">'
            f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" '
            f'points="{points}"/><circle cx="{lx:.1f}" cy="{ly:.1f}" r="2.5" '
            f'fill="currentColor"/></svg>')


def metrics_html(answer: dict) -> str:
    """:func:`metrics_text` as an HTML table, each trend an inline SVG sparkline."""
    none = _no_metrics(answer)
    if none:
        return f"<p>{html.escape(none)}</p>"
    head = "".join(f"<th>{html.escape(c.lower())}</th>" for c in METRIC_COLUMNS)
    body = []
    for m in answer["metrics"]:
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in _metric_row(m))
        values = [p["value"] for p in m["points"]]
        title = html.escape(f"{m['name']}: {len(values)} runs, oldest first")
        body.append(f'<tr data-metric="{html.escape(m["name"])}">{cells}'
                    f'<td title="{title}">{_svg_sparkline(values)}</td></tr>')
    return (f'<table class="hc-metrics" data-job="{html.escape(answer["job_id"])}">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


# -- across runs: timeline, calendar, search, diff, revisions (issue 34) -----------------

#: a run's status colour, for every front that draws runs (the widgets' OUTCOME_COLOURS)
OUTCOME_COLOURS = {
    "succeeded": "#2e7d32", "failed": "#c62828", "timed_out": "#ad1457", "lost": "#6a1b9a",
    "cancelled": "#757575", "skipped": "#bdbdbd", "running": "#1565c0", "queued": "#64b5f6",
}
#: the timeline's text marks, as ``hermes-cron timeline`` draws them; a column shows the
#: worst of what happened in it, in this order (a failure is never hidden by a success;
#: docs/across-runs.md)
TIMELINE_MARKS = {"failed": "X", "running": ">", "missed": "m", "skipped": "s",
                  "succeeded": "#", "slot": "."}
TIMELINE_LEGEND = ("# succeeded  X failed  > running  s skipped  m missed  . coming slot")
MISSED_COLOUR = "#ef6c00"


def _mark(run: dict) -> str:
    status = run.get("status") or ""
    if status in FAILED_STATUSES:
        return "failed"
    if status in ACTIVE_STATUSES:
        return "running"
    if status == "skipped":
        return "missed" if run.get("missed") else "skipped"
    return "succeeded" if status == "succeeded" else "skipped"


def timeline_rows(answer: dict) -> list[tuple[str, list[dict], list[float]]]:
    """``(job name, its runs, its coming slots (epoch))`` per job shown, by name."""
    jobs: dict[str, tuple[list[dict], list[float]]] = {}
    for r in answer.get("runs") or []:
        jobs.setdefault(r.get("job_name") or r.get("job_id") or "?", ([], []))[0].append(r)
    for s in answer.get("slots") or []:
        at = timestamp(s.get("at"))
        if at is not None:
            jobs.setdefault(s.get("job_name") or s.get("job_id") or "?", ([], []))[1].append(at)
    return [(name, *jobs[name]) for name in sorted(jobs)]


def run_span(run: dict, now: float) -> tuple[float, float]:
    """Where a run sits on the time axis: from its start (else its fire time) to its end
    (``now`` while it runs; a run that never started is an instant)."""
    start = timestamp(run.get("started_at")) or timestamp(run.get("fire_at")) or \
        timestamp(run.get("scheduled_for")) or now
    end = timestamp(run.get("finished_at"))
    if end is None:
        end = now if run.get("status") in ACTIVE_STATUSES and run.get("started_at") else start
    return start, max(start, end)


def _axis(answer: dict) -> tuple[float, float, float]:
    """The timeline's ``(from, to, now)`` in epoch seconds."""
    start, end = timestamp(answer["from"]), timestamp(answer["to"])
    if start is None or end is None:
        raise ValueError("a timeline needs its from and to")
    return start, end, timestamp(answer.get("now")) or end


def timeline_text(answer: dict, width: int = 72) -> str:
    """The timeline as text: one row per job over a fixed-width axis, one character per
    bucket (:data:`TIMELINE_MARKS`), the axis's ends and now, and the legend."""
    start, end, now = _axis(answer)
    span = max(end - start, 1.0)
    rows = timeline_rows(answer)
    if not rows:
        return f"no runs from {local_time(start)} to {local_time(end)}"
    label = min(24, max(len(name) for name, _, _ in rows))
    order = list(TIMELINE_MARKS)

    def col(t: float) -> int:
        return min(width - 1, max(0, int((t - start) / span * width)))

    lines = []
    for name, runs, slots in rows:
        cells = [" "] * width
        rank = [len(order)] * width
        for kind, a, b in ([(_mark(r), *run_span(r, now)) for r in runs]
                           + [("slot", t, t) for t in slots]):
            if b < start or a >= end:
                continue
            for i in range(col(a), col(b) + 1):
                if order.index(kind) < rank[i]:
                    rank[i], cells[i] = order.index(kind), TIMELINE_MARKS[kind]
        lines.append(f"{name[:label].ljust(label)} |{''.join(cells)}|")
    axis = [" "] * width
    if start <= now < end:
        axis[col(now)] = "^"
    lines.append(f"{''.ljust(label)}  {''.join(axis).rstrip()}")
    lines.append(f"{local_time(start)} .. {local_time(end)} (^ now, "
                 f"{format_duration(span / width)} a column)")
    lines.append(TIMELINE_LEGEND)
    if answer.get("cursor"):
        lines.append("(more runs in this range than shown: narrow it with --since/--until "
                     "or --job)")
    return "\n".join(lines)


def timeline_html(answer: dict, width: int = 720, row_h: int = 18) -> str:
    """The timeline as an SVG (what a notebook without widgets shows): runs as bars
    coloured by status, skipped and missed runs as marks, coming slots as ticks, now as a
    line; each bar's title says which run it is."""
    start, end, now = _axis(answer)
    span = max(end - start, 1.0)
    rows = timeline_rows(answer)
    if not rows:
        return (f'<div class="hc-timeline" style="color:#888">no runs from '
                f"{html.escape(local_time(start))} to {html.escape(local_time(end))}</div>")
    left, top = 140, 16
    plot = width - left - 8
    height = top + row_h * len(rows) + 18

    def x(t: float) -> float:
        return left + (min(max(t, start), end) - start) / span * plot

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="hc-timeline" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for i, (name, runs, slots) in enumerate(rows):
        y = top + i * row_h
        parts.append(f'<text x="{left - 6}" y="{y + row_h * 0.7:.1f}" text-anchor="end" '
                     f'font-size="11" fill="#333">{html.escape(name[:22])}</text>'
                     f'<line x1="{left}" x2="{left + plot}" y1="{y + row_h - 0.5}" '
                     f'y2="{y + row_h - 0.5}" stroke="#eee"/>')
        for r in runs:
            a, b = run_span(r, now)
            if b < start or a >= end:
                continue
            kind = _mark(r)
            tip = html.escape(f"{name} \u00b7 run {r.get('id')} \u00b7 "
                              f"{(r.get('status') or '').replace('_', ' ')}"
                              f"{' (missed)' if r.get('missed') else ''} \u00b7 "
                              f"{local_time(a)}"
                              + (f" \u00b7 {r['reason']}" if r.get("reason") else ""))
            if kind in ("skipped", "missed"):
                colour = MISSED_COLOUR if kind == "missed" else OUTCOME_COLOURS["skipped"]
                parts.append(f'<text x="{x(a):.1f}" y="{y + row_h * 0.72:.1f}" '
                             f'text-anchor="middle" font-size="11" fill="{colour}" '
                             f'data-run="{html.escape(str(r.get("id")))}" data-status="{kind}">'
                             f'{"m" if kind == "missed" else "s"}<title>{tip}</title></text>')
                continue
            colour = OUTCOME_COLOURS.get(r.get("status") or "", "#757575")
            w = max(2.0, x(b) - x(a))
            parts.append(f'<rect x="{x(a):.1f}" y="{y + 3}" width="{w:.1f}" '
                         f'height="{row_h - 6}" fill="{colour}" '
                         f'data-run="{html.escape(str(r.get("id")))}" '
                         f'data-status="{html.escape(r.get("status") or "")}">'
                         f"<title>{tip}</title></rect>")
        for t in slots:
            if start <= t < end:
                parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{y + 4}" '
                             f'y2="{y + row_h - 4}" stroke="#888" stroke-dasharray="2,1" '
                             f'data-role="slot"><title>{html.escape(name)} \u00b7 next at '
                             f"{html.escape(local_time(t))}</title></line>")
    bottom = top + row_h * len(rows)
    if start <= now <= end:
        parts.append(f'<line x1="{x(now):.1f}" x2="{x(now):.1f}" y1="{top - 4}" '
                     f'y2="{bottom}" stroke="#1565c0" data-role="now"/>')
    parts.append(f'<text x="{left}" y="{bottom + 13}" font-size="10" fill="#666">'
                 f"{html.escape(local_time(start))}</text>"
                 f'<text x="{left + plot}" y="{bottom + 13}" text-anchor="end" font-size="10" '
                 f'fill="#666">{html.escape(local_time(end))}</text></svg>')
    return "".join(parts)


def calendar_cell(day: dict) -> tuple[str, str]:
    """A day's colour and title: green when every ended run succeeded, red shades by the
    share failed, grey with none; ``2026-12-01: 24 runs, 2 failed``."""
    total, failed, ok = day.get("total", 0), day.get("failed", 0), day.get("succeeded", 0)
    title = f"{day['day']}: {total} run{'s' if total != 1 else ''}"
    extra = [f"{day[k]} {k}" for k in ("failed", "cancelled", "skipped", "running")
             if day.get(k)]
    if extra:
        title += ", " + ", ".join(extra)
    if failed:
        share = failed / max(1, failed + ok)
        colour = "#ffcdd2" if share < 0.25 else "#ef5350" if share < 0.6 else "#b71c1c"
    elif ok:
        colour = "#43a047"
    elif total:
        colour = "#cfd8dc"  # only cancelled, skipped or still running
    else:
        colour = "#eeeeee"
    return colour, title


def _calendar_weeks(days: list[dict]) -> list[list[dict | None]]:
    """The days as week columns, Monday on top (None before the first / after the last)."""
    from datetime import date

    weeks: list[list[dict | None]] = []
    for d in days:
        weekday = date.fromisoformat(d["day"]).weekday()
        if not weeks or weekday == 0:
            weeks.append([None] * 7)
        weeks[-1][weekday] = d
    return weeks


def calendar_html(cal: dict, cell: int = 11) -> str:
    """A job's days as a heatmap: weeks as columns, Monday on top, a title per day."""
    days = cal.get("days") or []
    weeks = _calendar_weeks(days)
    gap = 2
    width, height = len(weeks) * (cell + gap), 7 * (cell + gap)
    rects = []
    for w, week in enumerate(weeks):
        for d, day in enumerate(week):
            if day is None:
                continue
            colour, title = calendar_cell(day)
            rects.append(f'<rect x="{w * (cell + gap)}" y="{d * (cell + gap)}" width="{cell}" '
                         f'height="{cell}" rx="2" fill="{colour}" data-day="{day["day"]}" '
                         f'data-total="{day.get("total", 0)}" '
                         f'data-failed="{day.get("failed", 0)}">'
                         f"<title>{html.escape(title)}</title></rect>")
    runs = sum(d.get("total", 0) for d in days)
    failed = sum(d.get("failed", 0) for d in days)
    head = (f"{len(days)} days of {html.escape(str(cal.get('job_name', '')))}: {runs} runs"
            + (f", {failed} failed" if failed else "")
            + (f" ({html.escape(cal['tz'])})" if cal.get("tz") else ""))
    return (f'<div class="hc-calendar" data-job="{html.escape(str(cal.get("job_name", "")))}">'
            f'<div style="font-size:11px;color:#555">{head}</div>'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img">{"".join(rects)}</svg></div>')


def calendar_text(cal: dict) -> str:
    """The heatmap as text: weeks as columns, a row per weekday (``#`` all succeeded,
    ``X`` some failed, ``o`` runs none ended well or badly, ``.`` none)."""
    weeks = _calendar_weeks(cal.get("days") or [])
    rows = []
    for d, name in enumerate(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")):
        marks = []
        for week in weeks:
            day = week[d]
            if day is None:
                marks.append(" ")
            elif day.get("failed"):
                marks.append("X")
            elif day.get("succeeded"):
                marks.append("#")
            else:
                marks.append("o" if day.get("total") else ".")
        rows.append(f"{name} {''.join(marks)}")
    days = cal.get("days") or []
    runs = sum(d.get("total", 0) for d in days)
    failed = sum(d.get("failed", 0) for d in days)
    head = f"{cal.get('job_name', '')}: {len(days)} days, {runs} runs, {failed} failed"
    if days:
        head += f" ({days[0]['day']} .. {days[-1]['day']}, {cal.get('tz') or 'UTC'})"
    return "\n".join([head, *rows, "# all succeeded  X some failed  o none ended  . no runs"])


_QUERY_WORD = re.compile(r'"[^"]*"|\S+')
_TOKEN = re.compile(r"[^\W_]+")


def query_tokens(q: str) -> list[tuple[str, bool]]:
    """The query's tokens to highlight: ``(token casefolded, is a prefix)``."""
    out = []
    for word in _QUERY_WORD.findall(q or ""):
        prefix = word.endswith("*") and not word.startswith('"')
        out += [(t.casefold(), prefix) for t in _TOKEN.findall(word.strip('"*'))]
    return out


def highlight_html(line: str, q: str) -> str:
    """*line* escaped, the query's tokens in ``<mark>`` (whole tokens; prefixes)."""
    terms = query_tokens(q)
    spans = []
    for m in _TOKEN.finditer(line):
        word = m.group().casefold()
        if any(word == t or (p and word.startswith(t)) for t, p in terms):
            spans.append((m.start(), m.end()))
    out, at = [], 0
    for a, b in spans:
        out.append(html.escape(line[at:a]) + f"<mark>{html.escape(line[a:b])}</mark>")
        at = b
    return "".join(out) + html.escape(line[at:])


def search_text(answer: dict) -> str:
    """``search``: per hit its run, job, status and time, then the matching lines with
    their context (the matching line marked ``>``, each with its byte offset)."""
    hits = answer.get("hits") or []
    if not hits:
        return f"no runs' output matches {answer.get('query', '')!r}"
    out = []
    for h in hits:
        when = local_time(h.get("fire_at") or h.get("started_at"))
        out.append(f"run {h['run_id']} of {h.get('job_name') or h.get('job_id')} \u00b7 "
                   f"{h.get('status')} \u00b7 {when}")
        for m in h.get("matches") or []:
            out += [f"            {line}" for line in m.get("before") or []]
            out.append(f"> {m['offset']:>9}  {m['line']}")
            out += [f"            {line}" for line in m.get("after") or []]
            out.append("  --")
        if h.get("more"):
            out.append(f"  (more matches in this run: %cron logs {h['run_id']})")
    if answer.get("cursor"):
        out.append(f"(more runs match: pass --cursor {answer['cursor']})")
    return "\n".join(out)


def search_hit_html(hit: dict, q: str) -> str:
    """One hit: its run's head, then each match's lines with the terms marked."""
    when = local_time(hit.get("fire_at") or hit.get("started_at"))
    head = (f'<div><b>{html.escape(str(hit.get("job_name") or hit.get("job_id")))}</b> '
            f'&middot; <code>{html.escape(hit["run_id"])}</code> &middot; '
            f'<span style="color:{OUTCOME_COLOURS.get(hit.get("status") or "", "#757575")};'
            f'font-weight:600">{html.escape((hit.get("status") or "").replace("_", " "))}'
            f"</span> &middot; {html.escape(when)}"
            "</div>")
    blocks = []
    for m in hit.get("matches") or []:
        lines = [f'<span style="color:#888">{html.escape(x)}</span>' for x in m.get("before") or []]
        lines.append(f'<span data-role="match" data-offset="{m["offset"]}" '
                     f'title="byte {m["offset"]}">{highlight_html(m["line"], q)}</span>')
        lines += [f'<span style="color:#888">{html.escape(x)}</span>' for x in m.get("after") or []]
        blocks.append('<pre class="hc-search-match" style="margin:2px 0;padding:2px 6px;'
                      'background:#f7f7f7;border-left:3px solid #ccc;white-space:pre-wrap">'
                      + "\n".join(lines) + "</pre>")
    more = ('<div style="color:#888;font-size:11px">more matches in this run</div>'
            if hit.get("more") else "")
    return (f'<div class="hc-search-hit" data-run="{html.escape(hit["run_id"])}">'
            f"{head}{''.join(blocks)}{more}</div>")


def search_html(answer: dict) -> str:
    hits = answer.get("hits") or []
    if not hits:
        return (f'<div class="hc-search" style="color:#888">no runs\' output matches '
                f"{html.escape(repr(answer.get('query', '')))}</div>")
    more = ('<div style="color:#888">more runs match (the next page: its cursor)</div>'
            if answer.get("cursor") else "")
    return ('<div class="hc-search">' + "".join(
        search_hit_html(h, answer.get("query", "")) for h in hits) + more + "</div>")


def _short(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:79] + "\u2026"


def diff_text(answer: dict) -> str:
    """``diff A B``: the fields and metrics that differ, the unified output diff, and a
    notebook's changed cells."""
    a, b = answer["a"], answer["b"]
    out = [f"a: run {a.get('id')} of {a.get('job_name')} ({a.get('status')})",
           f"b: run {b.get('id')} of {b.get('job_name')} ({b.get('status')})"]
    if answer.get("fields"):
        out.append(text_table(["FIELD", "A", "B"], [[f["field"], _short(f["a"]), _short(f["b"])]
                                                    for f in answer["fields"]]))
    if answer.get("metrics"):
        out.append(text_table(["METRIC", "A", "B"], [
            [m["name"], format_metric(m.get("a"), m.get("unit") or ""),
             format_metric(m.get("b"), m.get("unit") or "")] for m in answer["metrics"]]))
    output = answer.get("output") or {}
    if output.get("same"):
        out.append("output: the same")
    else:
        out.append(f"output: +{output.get('added', 0)} -{output.get('removed', 0)} lines"
                   + (" (diff truncated)" if output.get("truncated") else ""))
        out.append((output.get("unified") or "").rstrip("\n"))
    nb = answer.get("notebook")
    if nb is not None:
        if nb.get("same"):
            out.append("notebook: no cell changed")
        for c in nb.get("cells") or []:
            out.append(f"cell {c.get('index') if c.get('index') is not None else c.get('index_a')}"
                       f" ({c.get('cell_type')}): {c.get('change')}")
            if c.get("source"):
                out.append(c["source"].rstrip("\n"))
            for o in c.get("outputs") or []:
                what = "image" if (o.get("mime") or "").startswith("image/") else "output"
                out.append(f"  {what} {o.get('mime')}: {o.get('change')}")
    return "\n".join(out)


def unified_html(text: str) -> str:
    """A unified diff, its added lines green, removed red, hunks blue."""
    lines = []
    for line in (text or "").splitlines():
        colour = ("#1565c0" if line.startswith("@@") else "#777" if line.startswith(("+++", "---"))
                  else "#2e7d32" if line.startswith("+") else "#c62828" if line.startswith("-")
                  else "#333")
        back = ("#e8f5e9" if colour == "#2e7d32" else "#ffebee" if colour == "#c62828"
                else "transparent")
        lines.append(f'<span style="color:{colour};background:{back}">{html.escape(line)}</span>')
    return ('<pre class="hc-diff" style="max-height:400px;overflow:auto;font-size:12px">'
            + "\n".join(lines) + "</pre>")


def _output_side(o: dict, side: str) -> str:
    value = o.get(side)
    if value is None:
        return '<i style="color:#888">none</i>'
    mime = o.get("mime") or "text/plain"
    if mime.startswith("image/"):
        return (f'<img data-side="{side}" style="max-width:100%" '
                f'src="data:{html.escape(mime)};base64,{html.escape(value)}"/>')
    return f'<pre style="margin:0;white-space:pre-wrap">{html.escape(value)}</pre>'


def diff_html(answer: dict) -> str:
    a, b = answer["a"], answer["b"]
    out = ['<div class="hc-run-diff">',
           f"<div>a: <code>{html.escape(str(a.get('id')))}</code> "
           f"{html.escape(str(a.get('job_name')))} ({html.escape(str(a.get('status')))}) "
           f"&nbsp; b: <code>{html.escape(str(b.get('id')))}</code> "
           f"{html.escape(str(b.get('job_name')))} ({html.escape(str(b.get('status')))})</div>"]

    def table(head: list[str], rows: list[list[str]], role: str) -> str:
        return (f'<table data-role="{role}" style="border-collapse:collapse;font-size:12px">'
                "<tr>" + "".join(f'<th style="text-align:left;padding:2px 8px">{h}</th>'
                                 for h in head) + "</tr>"
                + "".join("<tr>" + "".join(f'<td style="padding:2px 8px">{c}</td>' for c in r)
                          + "</tr>" for r in rows) + "</table>")

    if answer.get("fields"):
        out.append(table(["field", "a", "b"], [[html.escape(f["field"]),
                                                html.escape(_short(f["a"])),
                                                html.escape(_short(f["b"]))]
                                               for f in answer["fields"]], "fields"))
    if answer.get("metrics"):
        out.append(table(["metric", "a", "b"], [[
            html.escape(m["name"]), html.escape(format_metric(m.get("a"), m.get("unit") or "")),
            html.escape(format_metric(m.get("b"), m.get("unit") or ""))]
            for m in answer["metrics"]], "metrics"))
    output = answer.get("output") or {}
    if output.get("same"):
        out.append('<div data-role="output">output: the same</div>')
    else:
        out.append(f'<div data-role="output">output: <span style="color:#2e7d32">'
                   f"+{output.get('added', 0)}</span> <span style=\"color:#c62828\">"
                   f"-{output.get('removed', 0)}</span>"
                   + (" (truncated)" if output.get("truncated") else "") + "</div>"
                   + unified_html(output.get("unified") or ""))
    nb = answer.get("notebook")
    if nb is not None:
        if nb.get("same"):
            out.append('<div data-role="notebook">notebook: no cell changed</div>')
        for c in nb.get("cells") or []:
            index = c.get("index") if c.get("index") is not None else c.get("index_a")
            out.append(f'<div data-role="cell" data-change="{html.escape(str(c.get("change")))}">'
                       f"<b>cell {index}</b> ({html.escape(str(c.get('cell_type')))}): "
                       f"{html.escape(str(c.get('change')))}</div>")
            if c.get("source"):
                out.append(unified_html(c["source"]))
            for o in c.get("outputs") or []:
                out.append(
                    f'<div data-role="cell-output" style="display:flex;gap:8px">'
                    f'<div style="flex:1"><small>a</small>{_output_side(o, "a")}</div>'
                    f'<div style="flex:1"><small>b</small>{_output_side(o, "b")}</div></div>')
    out.append("</div>")
    return "".join(out)


def revision_parts(run: dict, current: int | None = None) -> list[str]:
    """``rev 3``, ``sha256 1a2b3c4d…`` and ``older revision (the job is at rev 5 now)``:
    which revision of its job a run ran, as the side panel's run view says it."""
    parts = []
    version, sha = run.get("job_version"), run.get("file_sha256")
    if version is not None:
        parts.append(f"rev {version}")
    if sha:
        parts.append(f"sha256 {sha[:8]}\u2026")
    if version is not None and current is not None and current > version:
        parts.append(f"older revision (the job is at rev {current} now)")
    return parts
