"""Notifications: which events are worth a message, to whom, and what it says.

Pure policy, no I/O. The runtime (``runtime/notify.py``) sends; the store keeps the
outbox (``store/outbox.py``).

An event of the store's log becomes a notification *kind*:

========== ==========================================================================
failure    a run ended failed or timed out (``run.finished``)
lost       a run's process vanished (``run.lost``)
blocked    the job stopped firing (``job.blocked``: too many failures, an unlinked
           upstream)
missed     a slot was skipped after downtime or past its starting deadline
late       a slot had no successful run ``late_after`` after its time (``run.late``)
alert      one of the job's alert rules fired when a run ended (``run.alert``)
recovered  the first good run after failures or after an alert
succeeded  a run succeeded (opt-in)
started    a run started (opt-in)
========== ==========================================================================

Each destination takes the kinds its job's ``notify_on`` lists (:data:`DEFAULT_ON`
unless set). Destinations are Apprise URLs (``mailto://``, ``slack://``, ``json://``,
``ntfy://`` ... see https://github.com/caronc/apprise/wiki), a job's own (``notify``)
and the operator's defaults; the legacy ``notify_url`` webhook and ``ping_url`` are
two more channels of the same outbox.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

#: every kind, in the order help lists them
KINDS = ("failure", "lost", "blocked", "missed", "late", "alert", "recovered",
         "succeeded", "started")
#: what a destination gets unless its job's ``notify_on`` says otherwise
DEFAULT_ON = ("failure", "lost", "blocked", "missed", "late", "alert", "recovered")
#: how many destinations a job may list, and how long one URL may be
MAX_DESTINATIONS = 10
MAX_URL = 2000
#: lines of a run's output a message quotes (its end), and their bytes at most
TAIL_LINES = 20
TAIL_BYTES = 4096
#: a delivery is retried with backoff until it is this old, then given up
GIVE_UP_AFTER = 86400.0
#: the first retry's delay, doubled each time up to :data:`MAX_DELAY`
FIRST_DELAY = 5.0
MAX_DELAY = 3600.0
#: the legacy webhook body's name for a failure (``notify_url`` receivers read it)
WEBHOOK_EVENT = {"failure": "failed"}

_FAILED = ("failed", "timed_out")


def classify(event_type: str, data: dict[str, Any]) -> str | None:
    """The notification kind of one event (see the module table), or None."""
    status = data.get("status")
    if event_type == "run.finished":
        if status in _FAILED:
            return "failure"
        if status == "succeeded":
            return "recovered" if data.get("recovered") else "succeeded"
        return None
    return {"run.lost": "lost", "job.blocked": "blocked", "run.late": "late",
            "run.alert": "alert", "run.recovered": "recovered",
            "run.started": "started"}.get(event_type) or (
        "missed" if event_type == "run.skipped"
        and str(data.get("reason") or "").startswith(("missed", "deadline")) else None)


def ping_suffix(event_type: str, data: dict[str, Any]) -> str | None:
    """healthchecks.io's convention for ``ping_url``: ``/start``, success on the bare
    URL, ``/fail``; None: no ping."""
    status = data.get("status")
    if event_type == "run.started":
        return "/start"
    if event_type == "run.finished" and status == "succeeded":
        return ""
    if event_type == "run.lost" or (event_type == "run.finished" and status in _FAILED):
        return "/fail"
    return None


def parse_on(value: Any, field: str = "notify_on") -> list[str]:
    """A ``notify_on`` value: a list of kinds or one text ``failure,lost``; ``failed``
    is taken for ``failure``. Raises ValueError naming what is unknown."""
    if isinstance(value, str):
        value = [part for part in re.split(r"[,\s]+", value) if part]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{field} must be a list of events, e.g. failure,lost,late")
    out: list[str] = []
    for item in value:
        kind = "failure" if item == "failed" else item
        if kind not in KINDS:
            raise ValueError(f"{field}: {item!r} is not an event; the events are "
                             f"{', '.join(KINDS)}")
        if kind not in out:
            out.append(kind)
    return out


def backoff(attempts: int, first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> float:
    """Seconds before the next try after *attempts* failed ones (5 s, 10 s, ... 1 h)."""
    return float(min(cap, first * 2 ** max(0, attempts - 1)))


def tail(text: str, lines: int = TAIL_LINES, limit: int = TAIL_BYTES) -> str:
    """The last *lines* lines of a run's output, at most *limit* characters."""
    kept = text.rstrip("\n").splitlines()[-lines:]
    out = "\n".join(kept)
    return out[-limit:]


def run_link(base: str | None, run_id: str | None) -> str | None:
    """Where a person sees the run in JupyterLab (the side panel opens at it), from the
    server's public URL ``https://host/user/alice/``; None when either is unknown."""
    if not base or not run_id:
        return None
    return f"{base.rstrip('/')}/lab?hermes-cron-run={run_id}"


_TITLES = {
    "failure": "failed", "lost": "was lost", "blocked": "is blocked",
    "missed": "missed a slot", "late": "is late", "alert": "raised an alert",
    "recovered": "recovered", "succeeded": "succeeded", "started": "started",
}


def compose(kind: str, *, job: str | None, run_id: str | None, data: dict[str, Any],
            output: str = "", link: str | None = None) -> dict[str, str]:
    """``{"title", "body", "type"}`` of a message (Apprise's ``info``, ``success``,
    ``warning`` or ``failure``): the job, the run, its status and reason, the failing
    rules, the last lines of output and the link."""
    name = job or "(deleted job)"
    title = f"hermes-cron: {name} {_TITLES.get(kind, kind)}"
    lines = [f"Job: {name}"]
    if run_id:
        lines.append(f"Run: {run_id}")
    status = data.get("status")
    if status:
        code = data.get("exit_code")
        lines.append(f"Status: {status}" + (f" (exit code {code})" if code is not None
                                            else ""))
    if data.get("scheduled_for"):
        lines.append(f"Slot: {data['scheduled_for']}")
    if kind == "late" and data.get("late_after") is not None:
        lines.append(f"No successful run within {_seconds(data['late_after'])} of its slot")
    reason = data.get("reason")
    if reason:
        lines.append(f"Reason: {reason}")
    for fired in data.get("alerts") or []:
        lines.append(f"Rule: {fired.get('rule')}: {fired.get('message')}")
    for rule in data.get("rules") or []:
        lines.append(f"Passes again: {rule}")
    if link:
        lines.append(f"See it: {link}")
    if output.strip():
        lines += ["", "Last lines of output:", output]
    kinds = {"failure": "failure", "lost": "failure", "blocked": "failure",
             "alert": "warning", "late": "warning", "missed": "warning",
             "recovered": "success", "succeeded": "success"}
    return {"title": title, "body": "\n".join(lines), "type": kinds.get(kind, "info")}


def _seconds(value: float) -> str:
    value = float(value)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if value >= size and value % size == 0:
            return f"{value / size:g} {unit}"
    return f"{value:g} s"


def wants(on: Iterable[str] | None, kind: str) -> bool:
    """Whether a destination with *on* (None: the defaults) takes *kind*."""
    return kind in (DEFAULT_ON if on is None else on)


_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?:(?P<user>[^@/?#]*)@)?"
                  r"(?P<host>\[[^\]]*\]|[^:/?#]*)(?::(?P<port>[^/?#]*))?(?P<rest>[^?#]*)")
_HOSTLIKE = re.compile(r"^(localhost|\[[0-9a-fA-F:.]+\]|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)$")


def mask_url(url: str) -> str:
    """A destination as it is shown: scheme, host and port when the host is a host name
    or an address (``json://hooks.example.com:8080/…``), the rest hidden (a user name,
    a password, a token in the path or the query: ``mailto://…@smtp.example.com``).
    Apprise services whose "host" is a token (``slack://T1JJ…``) show its first letter.
    A fingerprint (6 hex digits of its SHA-256) ends it: two URLs to one host differ,
    and a masked value sent back names its URL on an edit (:func:`keep_masked`)."""
    m = _URL.match(url)
    if not m:
        return "…"
    host = m["host"] or ""
    shown = host if _HOSTLIKE.match(host) else (host[:1] + "…" if host else "")
    out = f"{m['scheme']}://{'…@' if m['user'] is not None else ''}{shown}"
    if m["port"] and shown == host:
        out += f":{m['port']}"
    rest = (m["rest"] or "").strip("/")
    if rest or "?" in url:
        out += "/…"
    # a fingerprint tells two URLs to one host apart (and names the URL on an edit)
    return f"{out}#{hashlib.sha256(url.encode()).hexdigest()[:6]}"


def keep_masked(values: list[str], previous: Iterable[str]) -> list[str]:
    """A job's new ``notify`` list where an item that is the masked form of one of its
    *previous* URLs stands for that URL (a form sends back what it was shown)."""
    by_mask: dict[str, str] = {}
    for url in previous:
        by_mask.setdefault(mask_url(url), url)
    return [by_mask.get(v, v) for v in values]
