"""Schedules: parse what a user typed, answer "when does it fire next / when did it last fire".

Four kinds of schedule text are understood:

* a 5-field cron expression (croniter syntax: names, ranges, steps, ``L``, ``W``, ``#``;
  ``?`` is accepted and means ``*``; ``5L`` means "last Friday", as in Quartz),
  or an alias such as ``@daily``;
* ``@reboot``: fires when a ticker starts, so it has no next fire time;
* ``@every 1h30m``: slots at ``epoch + k * duration`` in UTC, so tickers agree without state;
* ``@at 2026-11-22T10:00``: one instant (a naive time is read in the schedule's zone).

Cron runs in the schedule's time zone and handles daylight saving like Debian cron(8):
a job with a fixed hour runs once on a fall-back day (the repeated hour does not run it
again) and a slot skipped by spring-forward runs at the first instant after the jump;
jobs whose hour field is ``*`` (or ``*/1``) follow real time (25 or 23 runs a day).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tzlocal
from cron_descriptor import get_description
from croniter import CroniterBadDateError, CroniterError, croniter

from .errors import InvalidSchedule

__all__ = [
    "ALIASES",
    "Schedule",
    "describe",
    "local_zone",
    "parse",
    "parse_duration",
    "parse_timezone",
    "preview",
]

UTC = UTC
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: Cron aliases and the expression each stands for (``@reboot`` is handled separately).
ALIASES = MappingProxyType(
    {
        "@hourly": "0 * * * *",
        "@daily": "0 0 * * *",
        "@midnight": "0 0 * * *",
        "@weekly": "0 0 * * 0",
        "@monthly": "0 0 1 * *",
        "@yearly": "0 0 1 1 *",
        "@annually": "0 0 1 1 *",
    }
)
_KNOWN = ", ".join([*ALIASES, "@reboot", "@every DURATION", "@at TIME"])
_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
)
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February may have 29
_DAY_NUMBERS = {d: str(i) for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_DURATION = re.compile(r"(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?")
_LAST_WEEKDAY = re.compile(r"\b([0-7]|[a-z]{3})L\b", re.IGNORECASE)
_UNITS = (("d", "day", 86400), ("h", "hour", 3600), ("m", "minute", 60), ("s", "second", 1))
_MAX_SKIPS = 1000  # candidates dropped by the DST guard in one call (at most ~60 in practice)


def local_zone() -> str:
    """The server's IANA zone name, so schedules without a zone follow the machine's clock."""
    try:
        name = tzlocal.get_localzone_name() or "UTC"
        ZoneInfo(name)
    except Exception:  # noqa: BLE001 - any failure to detect the zone means "use UTC"
        return "UTC"
    return name


def parse_timezone(name: str) -> ZoneInfo:
    """Resolve an IANA zone name, turning the several zoneinfo failures into one clear error."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        raise InvalidSchedule(f"unknown time zone '{name}'", field="timezone") from None


def parse_duration(text: str, *, field: str = "duration") -> timedelta:
    """Read "30s", "1h30m", "2d": whole seconds only, because tickers work to the second."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None:
        raise InvalidSchedule(
            f"invalid duration '{text}': use whole numbers with units d, h, m, s "
            "in that order, e.g. 30s, 1h30m, 2d",
            field=field,
        )
    seconds = sum(int(n) * unit[2] for n, unit in zip(match.groups(), _UNITS, strict=True) if n)
    if seconds < 1:
        raise InvalidSchedule(f"duration '{text}' must be at least 1 second", field=field)
    return timedelta(seconds=seconds)


def _format_duration(delta: timedelta, words: bool = False) -> str:
    """Canonical "1h30m" (stored text) or "1 hour 30 minutes" (description)."""
    rest, parts = int(delta.total_seconds()), []
    for short, word, size in _UNITS:
        n, rest = divmod(rest, size)
        if n:
            parts.append(f"{n} {word}{'s' if n > 1 else ''}" if words else f"{n}{short}")
    return (" " if words else "").join(parts)


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule; build it with :func:`parse`. Immutable and safe to share."""

    text: str  # normalised text, what is stored and shown
    tz: str  # IANA zone name
    kind: str  # "cron", "every", "at" or "reboot"
    expr: str = ""  # the expression given to croniter (aliases expanded)
    every: timedelta | None = None
    at: datetime | None = None  # UTC
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _cron: croniter | None = field(init=False, repr=False, compare=False)
    _lock: threading.Lock = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # croniter takes ~0.5 ms to parse; build it once and reuse it under a lock.
        zone = parse_timezone(self.tz)
        cron = croniter(self.expr, datetime.now(zone)) if self.kind == "cron" else None
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_cron", cron)
        object.__setattr__(self, "_lock", threading.Lock())

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle/copy as the text and zone, since the cached croniter and lock cannot be."""
        return (parse, (self.text, self.tz))

    @property
    def fixed_hour(self) -> bool:
        """True when the hour field is not a wildcard: such jobs must not repeat on fall-back."""
        return self.kind == "cron" and self.expr.split()[1] not in ("*", "*/1")

    def next_fire(self, after: datetime) -> datetime | None:
        """First fire instant strictly after ``after`` (UTC), or None if it never fires again."""
        after = _aware(after)
        if self.kind == "every":
            assert self.every is not None
            return EPOCH + ((after - EPOCH) // self.every + 1) * self.every
        if self.kind == "at":
            assert self.at is not None
            return self.at if self.at > after else None
        if self.kind == "reboot":
            return None
        return self._cron_step(after, after.astimezone(self._zone), prev=False)

    def prev_fire(self, at_or_before: datetime) -> datetime | None:
        """Latest fire instant <= the argument (UTC): the slot to run after downtime."""
        at_or_before = _aware(at_or_before)
        if self.kind == "every":
            assert self.every is not None
            return EPOCH + ((at_or_before - EPOCH) // self.every) * self.every
        if self.kind == "at":
            assert self.at is not None
            return self.at if self.at <= at_or_before else None
        if self.kind == "reboot":
            return None
        # croniter's get_prev is strictly before its start; cron fires on whole minutes,
        # so starting one second past the truncated instant makes the search inclusive.
        start = at_or_before.replace(microsecond=0) + timedelta(seconds=1)
        return self._cron_step(at_or_before, start.astimezone(self._zone), prev=True)

    def _cron_step(self, bound: datetime, start: datetime, prev: bool) -> datetime | None:
        """Walk croniter from ``start``, dropping fall-back repeats of fixed-hour jobs."""
        assert self._cron is not None
        with self._lock:
            self._cron.set_current(start, force=True)
            for _ in range(_MAX_SKIPS):
                try:
                    found = self._cron.get_prev(datetime) if prev else self._cron.get_next(datetime)
                except CroniterBadDateError:
                    return None
                instant = found.astimezone(UTC)
                if (prev and instant > bound) or (not prev and instant <= bound):
                    continue  # croniter can land on the boundary or behind it near DST
                if self.fixed_hour and _second_pass(instant.astimezone(self._zone)):
                    continue
                return instant
        return None


def _aware(moment: datetime) -> datetime:
    """Reject naive datetimes: comparing them with UTC instants would silently be wrong."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime {moment.isoformat()} must be timezone-aware")
    return moment.astimezone(UTC)


def _second_pass(local: datetime) -> bool:
    """True for the later of two instants that share a local time (a repeated hour)."""
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def parse(text: str, tz: str | None = None) -> Schedule:
    """Validate schedule text now, so a bad schedule fails when saved, not when due."""
    tz = local_zone() if tz is None else tz
    zone = parse_timezone(tz)
    words = text.split()
    if not words:
        raise InvalidSchedule("schedule is empty", field="schedule")
    head, rest = words[0].lower(), " ".join(words[1:])
    if head == "@every":
        if not rest:
            raise InvalidSchedule("@every needs a duration, e.g. @every 30s", field="schedule")
        every = parse_duration(rest, field="schedule")
        return Schedule(f"@every {_format_duration(every)}", tz, "every", every=every)
    if head == "@at":
        at = _parse_at(rest, zone)
        return Schedule(f"@at {at.isoformat()}", tz, "at", at=at)
    if head.startswith("@") and rest:
        raise InvalidSchedule(f"{head} takes no argument, got '{rest}'", field="schedule")
    if head == "@reboot":
        return Schedule("@reboot", tz, "reboot")
    if head.startswith("@"):
        if head not in ALIASES:
            raise InvalidSchedule(f"unknown alias '{words[0]}'; known: {_KNOWN}", field="schedule")
        return Schedule(head, tz, "cron", expr=ALIASES[head])
    return _parse_cron(" ".join(words), tz)


def _parse_at(rest: str, zone: ZoneInfo) -> datetime:
    """An ISO 8601 instant; a naive time must exist in the zone (not skipped by DST)."""
    example = "e.g. @at 2026-11-22T10:00:00+00:00"
    if not rest:
        raise InvalidSchedule(f"@at needs an ISO 8601 time, {example}", field="schedule")
    try:
        # Python 3.10's fromisoformat does not know the "Z" suffix.
        moment = datetime.fromisoformat(re.sub(r"[zZ]$", "+00:00", rest))
    except ValueError:
        raise InvalidSchedule(
            f"invalid @at time '{rest}': use ISO 8601, {example}", field="schedule"
        ) from None
    if moment.tzinfo is None:
        local = moment.replace(tzinfo=zone)
        if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != moment:
            raise InvalidSchedule(
                f"{rest} does not exist in {zone.key} (clocks skip it)", field="schedule"
            )
        moment = local
    return moment.astimezone(UTC)


def _parse_cron(text: str, tz: str) -> Schedule:
    """Check fields for friendly messages, then let croniter parse and prove it can fire."""
    fields = text.split()
    if len(fields) != 5:
        raise InvalidSchedule(
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}",
            field="schedule",
        )
    for value, (name, low, high) in zip(fields, _FIELDS, strict=True):
        for number in re.findall(r"(?<![/#\d])\d+", value):
            if not low <= int(number) <= high:
                raise InvalidSchedule(
                    f"{name} {number} is out of range {low}-{high}", field="schedule"
                )
    # croniter spells "last Friday" as L5; accept the common 5L / friL too.
    fields[4] = _LAST_WEEKDAY.sub(lambda m: "L" + _DAY_NUMBERS.get(m[1].lower(), m[1]), fields[4])
    expr = " ".join(fields)
    try:
        schedule = Schedule(text, tz, "cron", expr=expr)
    except CroniterError as exc:
        message = f"invalid cron expression '{text}': {exc}"
        raise InvalidSchedule(message, field="schedule") from None
    assert schedule._cron is not None
    try:  # croniter only notices impossible dates (31 February) when asked for one
        schedule._cron.get_next(datetime, start_time=datetime(2024, 1, 1, tzinfo=UTC))
    except CroniterBadDateError:
        raise InvalidSchedule(_never_message(schedule._cron, text), field="schedule") from None
    return schedule


def _never_message(cron: croniter, text: str) -> str:
    """Explain why an expression never fires; usually a day that no listed month has."""
    _, _, days, months, weekdays = cron.expanded[:5]
    numbers = [d for d in days if isinstance(d, int)]
    if numbers and weekdays == ["*"]:
        months = range(1, 13) if months == ["*"] else months
        first = min(numbers)
        if all(first > _MONTH_DAYS[m - 1] for m in months):
            names = " or ".join(_MONTHS[m - 1] for m in months)
            return f"day-of-month {first} never occurs in {names}"
    return f"cron expression '{text}' never fires"


def preview(schedule: Schedule, count: int = 5, start: datetime | None = None) -> list[datetime]:
    """The next ``count`` fire times after ``start`` (default now), for showing users."""
    moment: datetime | None = start if start is not None else datetime.now(UTC)
    fires: list[datetime] = []
    while len(fires) < count and moment is not None:
        moment = schedule.next_fire(moment)
        if moment is not None:
            fires.append(moment)
    return fires


def describe(schedule: Schedule) -> str:
    """Plain words for a schedule, so users can check it means what they think."""
    if schedule.kind == "every":
        assert schedule.every is not None
        words = _format_duration(schedule.every, words=True)
        return "every " + (words[2:] if words.startswith("1 ") and " " not in words[2:] else words)
    if schedule.kind == "at":
        assert schedule.at is not None
        return "once at " + schedule.at.astimezone(schedule._zone).strftime("%Y-%m-%d %H:%M:%S %Z")
    if schedule.kind == "reboot":
        return "when a ticker starts"
    source = schedule.text if schedule.text not in ALIASES else schedule.expr
    try:
        return get_description(source)
    except Exception:  # noqa: BLE001 - cron-descriptor rejects some croniter syntax
        return f"cron schedule '{schedule.text}'"
