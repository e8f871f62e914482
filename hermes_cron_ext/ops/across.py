"""Views across runs: search of the logs, the timeline, the calendar, and a diff of two
runs (issue 34). The logic behind :meth:`Operations.search`, ``timeline``,
``calendar`` and ``diff`` (``ops/local.py`` keeps only thin methods): each function
takes the operations (their store and viewer) so the viewer rules are those of every
other list: a caller sees only the runs of the jobs they may read."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from hermes_cron_ext.domain import schedule as sched
from hermes_cron_ext.domain.enums import FAILED_STATUSES
from hermes_cron_ext.domain.models import RUN_STATUSES, Job, iso, parse_iso
from hermes_cron_ext.domain.search import Query, parse_query
from hermes_cron_ext.domain.text import render_text
from hermes_cron_ext.errors import InvalidInput

if TYPE_CHECKING:
    from hermes_cron_ext.ops.local import Operations

#: the most matching lines shown per run (``more`` says there are others)
MAX_MATCHES = 5
#: a line shown is cut to this many characters
MAX_LINE = 500
#: bytes read either side of an indexed chunk, for the lines around a match
MARGIN = 8192
#: how far back a matching line's start is looked for (a line longer than this is
#: shown from where its piece begins)
MAX_LINE_BACK = 1024 * 1024
#: the coming slots of a timeline: per job, and in all
SLOTS_PER_JOB, MAX_SLOTS = 50, 2000
#: the longest timeline one request may ask for
MAX_SPAN = 92 * 86400
#: the most of a run's log a diff reads (the front of it)
MAX_DIFF_LOG = 8 * 1024 * 1024
#: statuses that do not fire (no coming slots)
_IDLE_STATES = ("paused", "disabled", "blocked")


_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NONE = {"type": ["string", "null"], "format": "date-time"}
_STATUS = {"type": "string", "enum": list(RUN_STATUSES)}
_CURSOR = {"type": ["string", "null"], "description": "the next page; null: the last"}

#: what :func:`search` returns, field by field; the OpenAPI document's ``Search``,
#: ``SearchHit`` and ``SearchMatch`` are generated from these tables (server/openapi.py)
SEARCH_MATCH_JSON: dict[str, dict[str, Any]] = {
    "offset": {"type": "integer", "description": "byte offset of the line in the log"},
    "line": {"type": "string", "description": "the matching line (carriage returns "
                                              "applied, at most 500 characters)"},
    "before": {"type": "array", "items": {"type": "string"},
               "description": "the lines before it (context)"},
    "after": {"type": "array", "items": {"type": "string"},
              "description": "the lines after it (context)"},
}
SEARCH_HIT_JSON: dict[str, dict[str, Any]] = {
    "run_id": {"type": "string"},
    "job_id": {"type": "string"},
    "job_name": {"type": ["string", "null"]},
    "status": _STATUS,
    "trigger": {"type": ["string", "null"]},
    "fire_at": _TIME_OR_NONE,
    "started_at": _TIME_OR_NONE,
    "finished_at": _TIME_OR_NONE,
    "matches": {"type": "array", "items": {"$ref": "#/components/schemas/SearchMatch"},
                "description": "its first matching lines (at most 5), in log order"},
    "more": {"type": "boolean", "description": "other lines of the run match too"},
}
SEARCH_JSON: dict[str, dict[str, Any]] = {
    "query": {"type": "string", "description": "q, as given"},
    "hits": {"type": "array", "items": {"$ref": "#/components/schemas/SearchHit"},
             "description": "runs newest first"},
    "cursor": _CURSOR,
}
#: what :func:`timeline` returns (``Timeline``, ``TimelineRun``, ``Slot``)
TIMELINE_RUN_JSON: dict[str, dict[str, Any]] = {
    "id": {"type": "string"},
    "job_id": {"type": "string"},
    "job_name": {"type": ["string", "null"]},
    "status": _STATUS,
    "trigger": {"type": ["string", "null"]},
    "fire_at": _TIME_OR_NONE,
    "scheduled_for": _TIME_OR_NONE,
    "started_at": _TIME_OR_NONE,
    "finished_at": _TIME_OR_NONE,
    "reason": {"type": ["string", "null"]},
    "missed": {"type": "boolean", "description": "a slot skipped because it was missed"},
}
SLOT_JSON: dict[str, dict[str, Any]] = {
    "job_id": {"type": "string"},
    "job_name": {"type": "string"},
    "at": {**_TIME, "description": "when the job fires next (one of its coming slots)"},
}
TIMELINE_JSON: dict[str, dict[str, Any]] = {
    "from": _TIME,
    "to": _TIME,
    "now": _TIME,
    "runs": {"type": "array", "items": {"$ref": "#/components/schemas/TimelineRun"},
             "description": "the runs overlapping [from, to), oldest first"},
    "slots": {"type": "array", "items": {"$ref": "#/components/schemas/Slot"},
              "description": "the coming fire times in [now, to), soonest first (first "
                             "page only; at most 50 per job, 2000 in all)"},
    "cursor": _CURSOR,
}
#: what :func:`calendar` returns (``Calendar``, ``CalendarDay``)
CALENDAR_DAY_JSON: dict[str, dict[str, Any]] = {
    "day": {"type": "string", "format": "date", "description": "in the job's time zone"},
    "total": {"type": "integer"},
    "succeeded": {"type": "integer"},
    "failed": {"type": "integer", "description": "failed, timed_out and lost"},
    "cancelled": {"type": "integer"},
    "skipped": {"type": "integer"},
    "running": {"type": "integer", "description": "queued and running"},
}
CALENDAR_JSON: dict[str, dict[str, Any]] = {
    "job_id": {"type": "string"},
    "job_name": {"type": "string"},
    "tz": {"type": "string", "description": "the job's time zone (IANA)"},
    "days": {"type": "array", "items": {"$ref": "#/components/schemas/CalendarDay"},
             "description": "oldest first, every day of the range (zeros too)"},
}


def _int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, str):  # (from a query string: the REST handlers parse theirs)
        try:
            value = int(value.strip())
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidInput(f"{name} must be between {lo} and {hi}", field=name)
    return value


def _status(status: str | None) -> None:
    if status is not None and status not in RUN_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(RUN_STATUSES)}, not "
                           f"{status!r}", field="status")


def _iso(value: Any) -> Any:
    """A store's instant (Unix seconds) as the API writes times; text or None as is."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return iso(float(value))
    return value


def instant(text: str | None, field: str, now: float, *, ahead: bool = False) -> float | None:
    """An ISO 8601 time, or a duration from *now*: back (``24h``), or with *ahead*
    forward (``6h``; ``-2h`` back). None: none given."""
    if text is None or not str(text).strip():
        return None
    raw = str(text).strip()
    sign = 1 if ahead else -1
    if raw.startswith("-"):
        sign, raw = -1, raw[1:]
    elif raw.startswith("+"):
        sign, raw = 1, raw[1:]
    try:
        return now + sign * sched.parse_duration(raw, field=field).total_seconds()
    except InvalidInput:
        pass
    try:
        return parse_iso(str(text).strip(), field)
    except InvalidInput:
        raise InvalidInput(f"{field} must be an ISO 8601 time or a duration such as 24h or "
                           f"7d, not {text!r}", field=field) from None


def readable_job_ids(ops: Operations, job: str | None) -> list[str] | None:
    """The jobs a list across runs covers: *job* alone; else every job the viewer may
    read (None: every job, for the store's own user and admins), as notifications do."""
    if job is not None:
        return [ops._job(job).id]
    if ops.viewer is not None and not ops.viewer.admin:
        return [j.id for j in ops._all_jobs(ops.viewer)]
    return None


# -- search ----------------------------------------------------------------------------

def _shown(line: bytes) -> str:
    """A line as a terminal shows it (carriage returns applied), cut to MAX_LINE."""
    text = render_text(line.decode("utf-8", "replace").rstrip("\r"))
    return text[:MAX_LINE]


def _windows(chunks: list[tuple[int, int]], margin: int) -> list[tuple[int, int]]:
    """Byte ranges to read around the chunks ``(offset, end)``: merged when they touch."""
    out: list[list[int]] = []
    for offset, end in sorted(chunks):
        lo, hi = max(0, offset - margin), end + margin
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(a, b) for a, b in out]


def _window_lines(data: bytes, start: int, complete_end: bool) -> list[tuple[int, bytes]]:
    """The whole lines of *data* (read from byte *start*), each with its offset: the
    first one dropped when it may have begun before *start* (the read began one byte
    early, so a line starting exactly at the window is kept), the last unless the log
    ends there (*complete_end*)."""
    parts = data.split(b"\n")
    out: list[tuple[int, bytes]] = []
    pos = start
    for part in parts:
        out.append((pos, part))
        pos += len(part) + 1
    if start > 0:
        out = out[1:]
    if not complete_end:
        out = out[:-1]
    elif out and out[-1][1] == b"" and data.endswith(b"\n"):
        out = out[:-1]  # the empty "line" after the final newline
    return out


def run_matches(ops: Operations, run_id: str, query: Query, chunks: list[list[Any]],
                context: int) -> tuple[list[dict[str, Any]], bool]:
    """The matching lines of a run's log (``Query.matches``) in and around the indexed
    *chunks*, with their exact byte offsets and *context* lines either side read back
    from the log (so context crosses the chunks' edges); at most MAX_MATCHES, and
    whether there are more."""
    spans = []
    for offset, text in chunks:
        # the chunk's bytes: exact, or (a replacement character) an upper bound
        spans.append((int(offset), int(offset) + len(str(text).encode("utf-8")) + 1))
    # every token of the query is in a matching line's lower-cased text (``tokens``
    # finds them there): a substring test skips most lines without tokenizing them
    needles = sorted({tok for term in query.terms for tok in term.tokens}, key=len,
                     reverse=True)
    found: dict[int, dict[str, Any]] = {}
    more = False
    for lo, hi in _windows(spans, MARGIN):
        first = min(a for a, _ in spans if lo <= a < hi)
        while True:
            read_from = lo - 1 if lo > 0 else 0
            data = ops.store.read_output(run_id, read_from, hi - read_from)
            # a piece that begins inside a line (one over 8 KiB, split): read back to
            # the line's start, so its offset is the line's (within MAX_LINE_BACK)
            newline = data.find(b"\n")
            if read_from == 0 or (newline != -1 and read_from + newline < first) or (
                    first - lo >= MAX_LINE_BACK):
                break
            lo = max(0, first - 2 * (first - lo))
        lines = _window_lines(data, read_from, len(data) < hi - read_from)
        for i, (pos, raw) in enumerate(lines):
            if pos in found:
                continue
            text = raw.decode("utf-8", "replace")
            low = text.lower()
            if not all(n in low for n in needles):
                continue
            end = pos + len(raw)
            if not any(a <= end and pos < b for a, b in spans):
                continue
            if not query.matches(text):
                continue
            found[pos] = {
                "offset": pos, "line": _shown(raw),
                "before": [_shown(b) for _, b in lines[max(0, i - context):i]],
                "after": [_shown(b) for _, b in lines[i + 1:i + 1 + context]]}
            if len(found) > MAX_MATCHES:
                break  # (lines in log order: the later ones come after these)
        if len(found) > MAX_MATCHES:
            break  # (windows come in log order: the later ones' lines come after these)
    ordered = [found[k] for k in sorted(found)]
    if len(ordered) > MAX_MATCHES:
        more = True
    # the store hands at most 20 chunks of a run: more may match beyond them
    if len(chunks) >= 20:
        more = True
    return ordered[:MAX_MATCHES], more


def search(ops: Operations, q: str, *, job: str | None = None, since: str | None = None,
           status: str | None = None, limit: int = 20, cursor: str | None = None,
           context: int = 2) -> dict[str, Any]:
    """Runs whose logs have a line with every term of *q* (``domain/search.py``), newest
    first, each with its matching lines (see :func:`run_matches`)."""
    if not isinstance(q, str):
        raise InvalidInput("q is required: what to look for", field="q")
    query = parse_query(q)
    _status(status)
    limit = _int("limit", limit, 1, 100)
    context = _int("context", context, 0, 10)
    now = time.time()
    start = instant(since, "since", now)
    job_ids = readable_job_ids(ops, job)
    page = ops.store.search_output(query, job_ids=job_ids, since=start, status=status,
                                   limit=limit, cursor=cursor)
    hits = []
    for item in page.items:
        matches, more = run_matches(ops, item["run_id"], query, item.get("chunks") or [],
                                    context)
        if not matches:
            continue  # the index matched the chunk, no one line of it has every term
        hits.append({
            "run_id": item["run_id"], "job_id": item["job_id"],
            "job_name": item.get("job_name"), "status": item["status"],
            "trigger": item.get("trigger"), "fire_at": _iso(item.get("fire_at")),
            "started_at": _iso(item.get("started_at")),
            "finished_at": _iso(item.get("finished_at")),
            "matches": matches, "more": more})
    return {"query": q, "hits": hits, "cursor": page.cursor}


# -- timeline ----------------------------------------------------------------------------

def _times(schedule: str, zone: str, begin: float, end: float) -> Iterator[float]:
    """A schedule's fire times in [begin, end), at most SLOTS_PER_JOB."""
    try:
        parsed = sched.parse(schedule, zone)
    except InvalidInput:
        return
    moment: datetime | None = datetime.fromtimestamp(begin, UTC) - timedelta(microseconds=1)
    for _ in range(SLOTS_PER_JOB):
        assert moment is not None
        moment = parsed.next_fire(moment)
        if moment is None or moment.timestamp() >= end:
            return
        yield moment.timestamp()


class _Shared:
    """One schedule's fire times, computed once and as far as asked, for every job that
    has it (10,000 jobs share far fewer schedules: ``*/5 * * * *``, ``0 * * * *``...)."""

    def __init__(self, times: Iterator[float]) -> None:
        self.times, self.got = times, list[float]()

    def fires(self, job_id: str) -> Iterator[tuple[float, str]]:
        for i in itertools.count():
            if i == len(self.got):
                at = next(self.times, None)
                if at is None:
                    return
                self.got.append(at)
            yield self.got[i], job_id


def coming_slots(jobs: list[Job], begin: float, end: float) -> list[dict[str, Any]]:
    """The coming fire times of *jobs* that fire (scheduled, enabled, with a schedule of
    their own) in [begin, end), soonest first: SLOTS_PER_JOB per job, MAX_SLOTS in all."""
    if begin >= end:
        return []
    firing = [j for j in jobs if j.schedule and j.enabled and j.state not in _IDLE_STATES
              and (j.next_run_at is None or j.next_run_at < end)]
    names = {j.id: j.name for j in firing}
    shared: dict[tuple[str, str], _Shared] = {}
    for j in firing:
        key = (j.schedule or "", j.timezone)
        if key not in shared:
            shared[key] = _Shared(_times(*key, begin, end))
    merged = heapq.merge(*(shared[(j.schedule or "", j.timezone)].fires(j.id)
                           for j in firing))
    return [{"job_id": job_id, "job_name": names[job_id], "at": iso(at)}
            for at, job_id in itertools.islice(merged, MAX_SLOTS)]


def due_jobs(ops: Operations, job_ids: list[str] | None, begin: float,
             end: float) -> list[Job]:
    """The jobs whose slots in [begin, end) can be among the first MAX_SLOTS, from the
    store's ``jobs_due`` index (never every job: 10,000 jobs took 0.7 s): the MAX_SLOTS
    soonest due at or after *begin*, and every one due before it.

    Why that is enough: a job's schedule does not fire between its last slot and its
    ``next_run_at``, so a job due at t >= begin has its first slot in the range at t,
    and one left out (due at or after the last one read, t_max) has none before t_max.
    The MAX_SLOTS jobs read that are due in [begin, t_max] have a slot each by t_max:
    no slot of a job left out can be among the first MAX_SLOTS merged (at t_max, the
    store orders by id as the merge does). A job due before *begin* (a range that
    starts ahead; the ticker behind) fires at *begin* or later, in no order its
    ``next_run_at`` tells: all of those are read."""
    limit = MAX_SLOTS
    while True:
        jobs = ops.store.due_jobs(end, limit, job_ids)
        early = sum(1 for j in jobs if (j.next_run_at or 0) < begin)
        if len(jobs) < limit or len(jobs) - early >= MAX_SLOTS:
            return jobs
        limit = early + MAX_SLOTS


def timeline(ops: Operations, start: str | None = None, end: str | None = None, *,
             job: str | None = None, status: str | None = None, limit: int = 1000,
             cursor: str | None = None) -> dict[str, Any]:
    """The runs that overlap [start, end), oldest first, and (first page) the coming
    slots of the jobs shown up to *end*. *start* and *end*: ISO 8601, or durations from
    now (*start* back: ``24h``; *end* ahead: ``6h``); defaults now-24h and now+6h."""
    now = time.time()
    begin = instant(start, "from", now)
    finish = instant(end, "to", now, ahead=True)
    begin = now - 86400 if begin is None else begin
    finish = now + 6 * 3600 if finish is None else finish
    if finish <= begin:
        raise InvalidInput("to must be after from", field="to")
    if finish - begin > MAX_SPAN:
        raise InvalidInput(f"a timeline spans at most {MAX_SPAN // 86400} days",
                           field="from")
    _status(status)
    limit = _int("limit", limit, 1, 5000)
    job_ids = readable_job_ids(ops, job)
    page = ops.store.timeline_runs(begin, finish, job_ids=job_ids, status=status,
                                   limit=limit, cursor=cursor)
    runs = []
    for r in page.items:
        runs.append({
            "id": r["id"], "job_id": r["job_id"], "job_name": r.get("job_name"),
            "status": r["status"], "trigger": r.get("trigger"),
            "fire_at": _iso(r.get("fire_at")), "scheduled_for": _iso(r.get("scheduled_for")),
            "started_at": _iso(r.get("started_at")),
            "finished_at": _iso(r.get("finished_at")), "reason": r.get("reason"),
            "missed": r["status"] == "skipped"
            and str(r.get("reason") or "").startswith("missed")})
    slots: list[dict[str, Any]] = []
    if not cursor and max(now, begin) < finish:
        slots = coming_slots(due_jobs(ops, job_ids, max(now, begin), finish),
                             max(now, begin), finish)
    return {"from": iso(begin), "to": iso(finish), "now": iso(now), "runs": runs,
            "slots": slots, "cursor": page.cursor}


# -- calendar ----------------------------------------------------------------------------

#: a calendar day's counts, by what a run's status counts as
_DAY_KEYS = ("succeeded", "failed", "cancelled", "skipped", "running")


def _day_key(status: str) -> str | None:
    if status in FAILED_STATUSES:
        return "failed"
    if status in ("queued", "running"):
        return "running"
    return status if status in _DAY_KEYS else None


def _midnight(day: date, zone: ZoneInfo) -> float:
    return datetime.combine(day, clock(0), tzinfo=zone).timestamp()


def calendar(ops: Operations, ref: str, days: int = 90) -> dict[str, Any]:
    """A job's runs per day of its own time zone over the last *days* days (today
    included, oldest first, every day: zeros too), by outcome."""
    job = ops._job(ref)
    days = _int("days", days, 1, 366)
    zone = sched.parse_timezone(job.timezone)
    today = datetime.now(zone).date()
    first = today - timedelta(days=days - 1)
    start, end = _midnight(first, zone), _midnight(today + timedelta(days=1), zone)
    counts: dict[str, dict[str, int]] = {
        (first + timedelta(days=i)).isoformat(): dict.fromkeys(("total", *_DAY_KEYS), 0)
        for i in range(days)}
    for _job_id, bucket, status, n in ops.store.run_counts([job.id], start, end, 900):
        day = datetime.fromtimestamp(bucket, zone).date().isoformat()
        row = counts.get(day)
        if row is None:
            continue
        row["total"] += n
        key = _day_key(status)
        if key is not None:
            row[key] += n
    return {"job_id": job.id, "job_name": job.name, "tz": job.timezone,
            "days": [{"day": d, **c} for d, c in counts.items()]}


# -- diff ------------------------------------------------------------------------------

def run_metrics(ops: Operations, run_id: str, job_id: str,
                ended: float | None) -> dict[str, dict[str, Any]]:
    """``{name: {"value", "unit"}}``: the numbers one run has (its job's series, read
    around the instant the run ended)."""
    out: dict[str, dict[str, Any]] = {}
    before = ended + 1.0 if ended is not None else None
    for name, _unit, _count in ops.store.metric_names(job_id):
        for rid, _at, value, unit in ops.store.metric_series(job_id, name, 50, before):
            if rid == run_id:
                out[name] = {"value": value, "unit": unit}
                break
    return out


def diff(ops: Operations, run_a: str, run_b: str) -> dict[str, Any]:
    """What differs between two runs the viewer may read (``ops/diff.py``): fields,
    metrics, the output (rendered text) and, for notebook runs, the changed cells. A
    run still running is compared as far as it has got."""
    from hermes_cron_ext.ops.diff import diff_runs  # (nbdime: imported when used)

    for name, value in (("a", run_a), ("b", run_b)):
        if not isinstance(value, str) or not value:
            raise InvalidInput(f"{name} is required: a run id", field=name)
    a, b = ops._run_of(run_a), ops._run_of(run_b)
    log_a = ops.store.read_output(a.id, 0, MAX_DIFF_LOG)
    log_b = ops.store.read_output(b.id, 0, MAX_DIFF_LOG)
    nb_a, nb_b = ops.store.read_artifact(a.id), ops.store.read_artifact(b.id)
    metrics_a = run_metrics(ops, a.id, a.job_id, a.finished_at)
    metrics_b = run_metrics(ops, b.id, b.job_id, b.finished_at)
    return diff_runs(a.to_json(), b.to_json(), log_a, log_b, nb_a, nb_b, metrics_a,
                     metrics_b)
