"""Plain-text formatting shared by the magics and the widgets (no widget imports)."""

from __future__ import annotations

import json
from datetime import datetime

from hermes_cron_ext.domain import schedule as sched
from hermes_cron_ext.domain.models import ACTIVE_STATUSES, FAILED_STATUSES, parse_iso
from hermes_cron_ext.errors import HermesCronError

__all__ = ["BACKFILL_COLUMNS", "backfill_done", "backfill_rows", "backfill_text", "card_state",
           "describe_schedule", "format_ago", "format_countdown", "format_duration",
           "local_time", "pipeline_text", "timestamp"]


def timestamp(value: str | float | None) -> float | None:
    if value is None or isinstance(value, (int, float)):
        return value
    return parse_iso(value)


def local_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


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


def describe_schedule(text: str, tz: str | None) -> str:
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
    return "\n".join(lines)
