"""Plain-text formatting shared by the magics and the widgets (no widget imports)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hermes_cron_ext.domain import schedule as sched
from hermes_cron_ext.domain.models import ACTIVE_STATUSES, FAILED_STATUSES, parse_iso
from hermes_cron_ext.errors import HermesCronError

__all__ = ["BACKFILL_COLUMNS", "after_text", "backfill_done", "backfill_rows", "backfill_text",
           "card_state", "describe_schedule", "format_ago", "format_countdown",
           "format_duration", "local_time", "pipeline_text", "schedule_text", "timestamp"]


def timestamp(value: str | float | None) -> float | None:
    if value is None or isinstance(value, (int, float)):
        return value
    return parse_iso(value)


def local_time(ts: float | None, tz: str | None = None) -> str:
    """A time as every front prints it: wall time with its zone, the job's (*tz*) or
    this machine's, e.g. ``2026-12-08 02:00:00 CET``; a zone with no abbreviation shows
    its offset (``+04:00``)."""
    if ts is None:
        return "-"
    moment = datetime.fromtimestamp(ts, UTC).astimezone(ZoneInfo(tz) if tz else None)
    zone = moment.tzname() or ""
    if not zone or zone[0] in "+-":
        offset = moment.strftime("%z")
        zone = f"{offset[:3]}:{offset[3:5]}"
    return f"{moment.strftime('%Y-%m-%d %H:%M:%S')} {zone}"


def next_fire_text(job: dict, now: float) -> str:
    """When a job fires next, in its own zone with a countdown
    (``2026-12-08 02:00:00 CET (in 5h 02m 10s)``), or why it does not."""
    nxt = parse_iso(job["next_run_at"]) if job.get("next_run_at") else None
    if nxt is not None:
        return f"{local_time(nxt, job.get('timezone'))} ({format_countdown(nxt - now)})"
    why = {"paused": "paused", "blocked": "blocked: resume it to fire again",
           "disabled": "disabled: enable it to fire again"}.get(job.get("state", ""))
    if why is None and not job.get("schedule") and job.get("after"):
        ups = ", ".join(a.get("name") or a["job"] for a in job["after"])
        why = f"no schedule of its own: it runs after {ups}"
    return f"none ({why or 'its schedule fires no more'})"


def format_duration(seconds: float | None) -> str:
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


def trigger_text(run: dict) -> str:
    """A run's trigger, with the parameters it was given (``manual n=7``), if any."""
    given = run.get("parameters") or {}
    text = run.get("trigger") or ""
    if given:
        text += " " + ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}"
                                for k, v in given.items())
    return text[:80]


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


def relative_time(ts: float | None, now: float) -> str:
    """``in 5m`` or ``5s ago`` (the CLI's tables: next run, last tick, heartbeat)."""
    if ts is None:
        return "-"
    delta = ts - now
    span = abs(delta)
    if span < 90:
        text = f"{span:.0f}s"
    elif span < 5400:
        text = f"{span / 60:.0f}m"
    elif span < 2 * 86400:
        text = f"{span / 3600:.1f}h"
    else:
        text = f"{span / 86400:.1f}d"
    return f"in {text}" if delta >= 0 else f"{text} ago"


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def command_text(job: dict) -> str:
    """What a job runs, on one line."""
    if job["kind"] == "python" and job.get("code"):
        code = job["code"].strip()
        first = code.splitlines()[0] if code else ""
        return f"python: {first[:50]}"
    if isinstance(job["command"], list):
        return " ".join(job["command"])
    return str(job["command"])


def jobs_table(jobs: list[dict], now: float) -> str:
    """Every job on a line: name, state, schedule, next run, last outcome, command."""
    rows = []
    for j in jobs:
        last = j["last_run"] or {}
        waiting = j["state"] in ("paused", "blocked", "disabled")  # no countdown
        rows.append([j["name"], j["state"], schedule_text(j),
                     "-" if waiting else relative_time(timestamp(j["next_run_at"]), now),
                     last.get("status", "-"), command_text(j)[:40]])
    return text_table(["NAME", "STATE", "SCHEDULE", "NEXT", "LAST", "COMMAND"], rows)
