"""Schedules: parse what a user typed, answer "when does it fire next / when did it last fire".

Four kinds of schedule text are understood:

* a 5-field cron expression with Debian (Vixie) cron's meaning, evaluated by
  `cronsim <https://github.com/cuu508/cronsim>`_: names, ranges (``5-5`` is only 5),
  steps on ranges, and day-of-month / day-of-week combined as cron does (OR when
  both are restricted, AND when either starts with ``*``, ``*/2`` included); plus
  the extensions cronsim shares with healthchecks.io: ``L`` and ``LW`` in
  day-of-month, ``5L`` (last Friday) and ``5#3`` (third Friday) in day-of-week, lists
  mixing them; and Quartz's ``15W`` (the weekday nearest the 15th; ``W15`` too) in
  day-of-month, under the same day-of-month / day-of-week rule.
  ``?`` means ``*``. ``R`` and ``H`` (random / hashed values) are refused. Or an
  alias such as ``@daily``;
* ``@reboot``: fires when a ticker starts, so it has no next fire time;
* ``@every 1h30m``: slots at ``epoch + k * duration`` in UTC, so tickers agree without state;
* ``@at 2026-11-22T10:00``: one instant (a naive time is read in the schedule's zone).

Cron runs in the schedule's time zone and handles daylight saving like Debian cron(8):
a job whose minute and hour are both fixed runs once on a fall-back day and, when
spring-forward skips its time, at the first instant after the jump; a job whose minute
or hour field starts with ``*`` (``* 2 * * *``, ``0 */2 * * *``) follows real time.
cronsim walks the calendar in local wall time, with no zone; each wall time it names is
then placed on the zone's clock by that rule (:func:`_instants`, :func:`_repeat`), so it
holds in every zone (30- and 45-minute shifts, changes at midnight, two-hour fall-backs)
and from any instant, inside a repeated hour too.
docs/ARCHITECTURE.md says why cronsim and not croniter.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tzlocal
from cronsim import CronSim, CronSimError
from cronsim.cronsim import Field
from cronsim.explain import Expression

from hermes_cron_ext.errors import InvalidInput, InvalidSchedule

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
_NAMED_LAST = re.compile(r"\b(sun|mon|tue|wed|thu|fri|sat)L\b", re.IGNORECASE)
_LAST_FIRST = re.compile(r"\bL([0-7])\b", re.IGNORECASE)
_NEAREST_WEEKDAY = re.compile(r"^([1-9]|[12]\d|3[01])W$", re.IGNORECASE)
_W_FIRST = re.compile(r"(?<![\w/-])W(\d+)(?![\w/-])", re.IGNORECASE)  # W15 is 15W
_UNITS = (("d", "day", 86400), ("h", "hour", 3600), ("m", "minute", 60), ("s", "second", 1))


def local_zone() -> str:
    """The server's IANA zone name, so schedules without a zone follow the machine's clock.
    A machine set to a ``posix/`` or ``right/`` copy of a zone gets the zone's own name;
    one whose zone is no civil time zone (or is not found) gets UTC."""
    try:
        name = tzlocal.get_localzone_name() or "UTC"
        name = _PREFIXED.sub("", name)
        parse_timezone(name)
    except Exception:  # noqa: BLE001 - any failure to detect the zone means "use UTC"
        return "UTC"
    return name


#: names zoneinfo finds that are no civil time zone, and why
_NOT_CIVIL = MappingProxyType({
    "Factory": "a placeholder for a zone not yet set (its clock reads '-00'), not a civil "
               "time zone: use the IANA name of the place, e.g. Europe/Berlin",
    "localtime": "this machine's zone file, not a zone name (its meaning follows the "
                 "machine): use the IANA name of the place, e.g. Europe/Berlin",
    "posixrules": "the rules tzcode applies to POSIX TZ strings, not a zone name: use the "
                  "IANA name of the place, e.g. America/New_York",
})
_PREFIXED = re.compile(r"^(?:posix|right)/")


def parse_timezone(name: str) -> ZoneInfo:
    """Resolve an IANA zone name, turning the several zoneinfo failures into one clear error.
    Names zoneinfo finds but whose clock is no civil time are refused too: the
    leap-second ``right/`` zones (their clock counts leap seconds: against the system
    clock their changes come 27 s late), the ``posix/`` duplicates, ``Factory``,
    ``localtime`` and ``posixrules``."""
    if isinstance(name, str):
        if name.startswith("right/"):
            raise InvalidSchedule(
                f"time zone '{name}' counts leap seconds, so its clock is not civil time: "
                f"use '{name[6:]}'", field="timezone")
        if name.startswith("posix/"):
            raise InvalidSchedule(f"time zone '{name}' is a copy of '{name[6:]}': use "
                                  f"'{name[6:]}'", field="timezone")
        if name in _NOT_CIVIL:
            raise InvalidSchedule(f"time zone '{name}' is {_NOT_CIVIL[name]}",
                                  field="timezone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        raise InvalidSchedule(f"unknown time zone '{name}'", field="timezone") from None


#: the longest duration anything takes (an ``@every`` of more would never fire anyway)
MAX_DURATION = 100 * 366 * 86400


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
    if seconds > MAX_DURATION:
        raise InvalidSchedule(f"duration '{text}' is longer than 100 years", field=field)
    return timedelta(seconds=seconds)


def _format_duration(delta: timedelta, words: bool = False) -> str:
    """Canonical "1h30m" (stored text) or "1 hour 30 minutes" (description)."""
    rest, parts = int(delta.total_seconds()), []
    for short, word, size in _UNITS:
        n, rest = divmod(rest, size)
        if n:
            parts.append(f"{n} {word}{'s' if n > 1 else ''}" if words else f"{n}{short}")
    return (" " if words else "").join(parts)


class _Cron(CronSim):
    """cronsim, plus Quartz's ``nW`` in day-of-month: the weekday (Mon-Fri) nearest day n
    of the same month. cronsim is given a placeholder day-of-month; then its days are the
    field's other items (``L``, ``1-5``...) and its day-of-month / day-of-week rule is
    cron's on the field as written: AND when it or day-of-week starts with ``*``, else OR
    (``15W,*/2`` starts with 1). ``match_dom`` adds the W days."""

    def __init__(self, expr: str, dt: datetime, reverse: bool = False,
                 nearest: tuple[int, ...] = (), plain: str = "", dom_star: bool = False):
        super().__init__(expr, dt, reverse)
        self.nearest = nearest
        if nearest:
            # day-of-month items are ints (cronsim casts the same way)
            self.days = cast(set[int], Field.DAY.parse(plain.upper())) if plain else set()
            self.day_and = dom_star or self.parts[5].startswith("*")

    def match_dom(self, d: date) -> bool:
        return super().match_dom(d) or any(
            d.day == _nearest_weekday(n, d.year, d.month) for n in self.nearest)


def _nearest_weekday(n: int, year: int, month: int) -> int | None:
    """Quartz's ``nW``: day n if a weekday, else the nearest weekday in the same month
    (Saturday -> Friday, Sunday -> Monday, never crossing the month); None if the month
    has no day n."""
    last = (datetime(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    if n > last:
        return None
    wd = datetime(year, month, n).weekday()
    if wd == 5:
        return n - 1 if n > 1 else n + 2
    if wd == 6:
        return n + 1 if n < last else n - 2
    return n


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule; build it with :func:`parse`. Immutable and safe to share."""

    text: str  # normalised text, what is stored and shown
    tz: str  # IANA zone name
    kind: str  # "cron", "every", "at" or "reboot"
    expr: str = ""  # the cron expression as written (aliases expanded, ``?`` as ``*``)
    every: timedelta | None = None
    at: datetime | None = None  # UTC
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    #: what cronsim is given: ``expr`` with ``nW`` days as a placeholder, the W days, the
    #: other day-of-month items, whether day-of-month starts with ``*``
    _sim: tuple[str, tuple[int, ...], str, bool] = field(init=False, repr=False,
                                                         compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", parse_timezone(self.tz))
        object.__setattr__(self, "_sim", _for_cronsim(self.expr) if self.kind == "cron"
                           else ("", (), "", False))

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle/copy as the text and zone."""
        return (parse, (self.text, self.tz))

    @property
    def fixed_hour(self) -> bool:
        """True for a fixed-time job in Debian's sense (minute and hour fields do not
        start with ``*``): it runs once on a fall-back day."""
        if self.kind != "cron":
            return False
        minute, hour = self.expr.split()[:2]
        return not minute.startswith("*") and not hour.startswith("*")

    def _walls(self, wall: datetime, reverse: bool) -> _Cron:
        """The local wall times (naive datetimes) the expression names after *wall*, or
        before it: cronsim walks the calendar with no zone, so with no DST either."""
        expr, nearest, plain, dom_star = self._sim
        return _Cron(expr, wall, reverse, nearest, plain, dom_star)

    def _fire(self, wall: datetime, latest: bool) -> datetime | None:
        """The instant a wall time fires at, outside a repeat being lived: a skipped time
        fires at the jump for a fixed-time job and not at all for a wildcard one; a
        repeated time fires on its first pass, and a wildcard job on both (*latest*: the
        second)."""
        first = wall.replace(tzinfo=self._zone).astimezone(UTC)
        if first.astimezone(self._zone).replace(tzinfo=None) != wall:  # skipped
            return _instants(wall, self._zone)[1] if self.fixed_hour else None
        if latest and not self.fixed_hour:
            return wall.replace(tzinfo=self._zone, fold=1).astimezone(UTC)
        return first

    def next_fire(self, after: datetime) -> datetime | None:
        """First fire instant strictly after ``after`` (UTC), or None if it never fires again
        (also when the next one is past the year 9999, the last a datetime holds)."""
        try:
            return self._next_fire(_aware(after))
        except OverflowError:
            return None

    def _next_fire(self, after: datetime) -> datetime | None:
        if self.kind == "every":
            assert self.every is not None
            return EPOCH + ((after - EPOCH) // self.every + 1) * self.every
        if self.kind == "at":
            assert self.at is not None
            return self.at if self.at > after else None
        if self.kind == "reboot":
            return None
        wall = after.astimezone(self._zone).replace(tzinfo=None, microsecond=0)
        repeat = _repeat(after, self._zone)
        if repeat is not None:  # after is inside a repeated (fall-back) period
            start, end, second_pass = repeat
            found = next(self._walls(wall, False), None)
            if found is not None and found < end:  # later in this repeat
                if not second_pass:
                    return _instants(found, self._zone)[0]
                if not self.fixed_hour:
                    return _instants(found, self._zone)[1]
                # a fixed-time job fired through this repeat on its first pass
            elif not second_pass and not self.fixed_hour:
                # none later on this pass: a wildcard job's next is on the second
                found = next(self._walls(start - timedelta(seconds=1), False), None)
                if found is not None and found < end:
                    return _instants(found, self._zone)[1]
            wall = max(wall, end - timedelta(seconds=1))
        for found in self._walls(wall, False):
            instant = self._fire(found, latest=False)
            if instant is not None and instant > after:  # (always, past any repeat)
                return instant
        return None  # nothing for 50 years (cronsim's limit)

    def prev_fire(self, at_or_before: datetime) -> datetime | None:
        """Latest fire instant <= the argument (UTC): the slot to run after downtime."""
        try:
            return self._prev_fire(_aware(at_or_before))
        except OverflowError:
            return None

    def _prev_fire(self, at_or_before: datetime) -> datetime | None:
        if self.kind == "every":
            assert self.every is not None
            return EPOCH + ((at_or_before - EPOCH) // self.every) * self.every
        if self.kind == "at":
            assert self.at is not None
            return self.at if self.at <= at_or_before else None
        if self.kind == "reboot":
            return None
        # cronsim's reverse walk is strictly before its start; cron fires on whole
        # minutes, so starting one second past the truncated wall time makes it inclusive
        local = at_or_before.astimezone(self._zone)
        wall = local.replace(tzinfo=None, microsecond=0) + timedelta(seconds=1)
        repeat = _repeat(at_or_before, self._zone)
        if repeat is not None:  # inside a repeated (fall-back) period
            start, end, second_pass = repeat
            if second_pass and not self.fixed_hour:
                found = next(self._walls(wall, True), None)
                if found is not None and found >= start:  # earlier on this second pass
                    return _instants(found, self._zone)[1]
            if second_pass:  # the latest of the whole first pass, over before this
                wall = end
            found = next(self._walls(wall, True), None)
            if found is not None and found >= start:
                return _instants(found, self._zone)[0]
            wall = start
        for found in self._walls(wall, True):
            instant = self._fire(found, latest=True)
            if instant is not None and instant <= at_or_before:  # (always)
                return instant
        return None


def _for_cronsim(expr: str) -> tuple[str, tuple[int, ...], str, bool]:
    """``(expression for cronsim, W days, the other day-of-month items, whether
    day-of-month starts with *)``; an expression without W goes to cronsim as it is."""
    fields = expr.split()
    items = fields[2].split(",")
    nearest = tuple(int(m[1]) for i in items if (m := _NEAREST_WEEKDAY.match(i)))
    if not nearest:
        return expr, (), "", False
    plain = ",".join(i for i in items if not _NEAREST_WEEKDAY.match(i))
    fields[2] = "1"  # a placeholder: _Cron sets the days
    return " ".join(fields), nearest, plain, items[0].startswith("*")


def _aware(moment: datetime) -> datetime:
    """Reject naive datetimes: comparing them with UTC instants would silently be wrong."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime {moment.isoformat()} must be timezone-aware")
    return moment.astimezone(UTC)


def _change(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The instant *zone*'s UTC offset changes, given one instant on each side of that
    one change; to the second (tzdata's changes fall on whole seconds)."""
    low, high = math.floor(before.timestamp()), math.floor(after.timestamp())
    old = datetime.fromtimestamp(low, zone).utcoffset()
    while high - low > 1:
        mid = (low + high) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == old:
            low = mid
        else:
            high = mid
    return datetime.fromtimestamp(high, UTC)


def _instants(wall: datetime, zone: ZoneInfo) -> tuple[datetime | None, datetime]:
    """The instants (UTC) a local wall time of *zone* names: ``(t, t)`` for an ordinary
    time, ``(first pass, second pass)`` for a time a fall-back repeats, ``(None, the
    first whole minute after the jump)`` for a time a spring-forward skips."""
    first = wall.replace(tzinfo=zone).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) != wall:  # skipped
        jump = _change(zone, wall.replace(tzinfo=zone, fold=1).astimezone(UTC), first)
        return None, jump + timedelta(seconds=-jump.astimezone(zone).second % 60)
    return first, wall.replace(tzinfo=zone, fold=1).astimezone(UTC)


def _repeat(moment: datetime, zone: ZoneInfo) -> tuple[datetime, datetime, bool] | None:
    """If *moment* is in a period a fall-back of *zone* repeats: its first and its end
    wall times (naive; the end is the first not repeated) and whether *moment* is on
    the second pass. Else None."""
    local = moment.astimezone(zone)
    first, second = local.replace(fold=0), local.replace(fold=1)
    first_offset, second_offset = first.utcoffset(), second.utcoffset()
    assert first_offset is not None and second_offset is not None  # aware: in *zone*
    shift = first_offset - second_offset
    if not shift:
        return None
    jump = _change(zone, first.astimezone(UTC), second.astimezone(UTC))
    end = (jump + shift).astimezone(zone).replace(tzinfo=None)
    return end - shift, end, local.fold == 1


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
    try:
        moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=zone).astimezone(UTC)
    except OverflowError:
        raise InvalidSchedule(f"@at time '{rest}' is out of range (after the year 9999 in "
                              "UTC)", field="schedule") from None
    if moment.tzinfo is None:
        local = moment.replace(tzinfo=zone)
        if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != moment:
            raise InvalidSchedule(
                f"{rest} does not exist in {zone.key} (clocks skip it)", field="schedule"
            )
        moment = local
    return moment.astimezone(UTC)


def _parse_cron(text: str, tz: str) -> Schedule:
    """Check each field with a message naming it, then prove the expression can fire."""
    fields = text.split()
    if len(fields) != 5:
        raise InvalidSchedule(
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}",
            field="schedule",
        )
    fields = [f.replace("?", "*") if i in (2, 4) else f for i, f in enumerate(fields)]
    fields[4] = _NAMED_LAST.sub(lambda m: _DAY_NUMBERS[m[1].lower()] + "L", fields[4])
    fields[4] = _LAST_FIRST.sub(lambda m: m[1] + "L", fields[4])  # croniter's L6 is 6L
    fields[2] = _W_FIRST.sub(lambda m: m[1] + "W", fields[2])  # W15 is 15W
    for value, (name, low, high) in zip(fields, _FIELDS, strict=True):
        if re.search(r"(?<![a-z])[rh](?![a-z])", value, re.IGNORECASE):
            raise InvalidSchedule(
                f"{name} '{value}': random or hashed values (R, H) are not supported; "
                "write the value (every ticker must agree on it)", field="schedule")
        for number in re.findall(r"(?<![/#\d])\d+", value):
            if not low <= int(number) <= high:
                raise InvalidSchedule(
                    f"{name} {number} is out of range {low}-{high}", field="schedule"
                )
    expr = " ".join(fields)
    schedule = Schedule(text, tz, "cron", expr=expr)
    try:
        schedule._walls(datetime(2024, 1, 1), False)
    except CronSimError:
        for i, (name, _, _) in enumerate(_FIELDS):  # which field cronsim refuses, alone
            alone = " ".join(fields[i] if j == i else "*" for j in range(5))
            try:
                Schedule(alone, tz, "cron", expr=alone)._walls(datetime(2024, 1, 1), False)
            except CronSimError:
                raise InvalidSchedule(f"{name} '{fields[i]}' is not valid: {_HINTS[i]}",
                                      field="schedule") from None
        raise InvalidSchedule(_never_message(fields, text), field="schedule") from None
    if schedule.next_fire(datetime(2024, 1, 1, tzinfo=UTC)) is None:
        raise InvalidSchedule(_never_message(fields, text), field="schedule")
    return schedule


_HINTS = (
    "use 0-59, lists (1,5), ranges (1-5), steps (*/15, 10-50/5)",
    "use 0-23, lists, ranges, steps",
    "use 1-31, lists, ranges, steps, L (last day), LW (last weekday), 15W (weekday "
    "nearest the 15th)",
    "use 1-12 or jan-dec, lists, ranges, steps",
    "use 0-7 or sun-sat, lists, ranges, steps, 5L (last Friday), 5#3 (third Friday)",
)


def _never_message(fields: list[str], text: str) -> str:
    """Explain why an expression never fires; usually a day that no listed month has."""
    days = [int(d) for d in re.findall(r"(?<![/#\d])\d+", fields[2])]
    if days and fields[4] == "*":
        months = CronSim(f"0 0 1 {fields[3]} *", datetime(2024, 1, 1, tzinfo=UTC)).months
        first = min(days)
        if all(first > _MONTH_DAYS[m - 1] for m in months):
            names = " or ".join(_MONTHS[m - 1] for m in sorted(months))
            return f"day-of-month {first} never occurs in {names}"
    return f"cron expression '{text}' never fires"


#: the most slots one backfill takes
MAX_BACKFILL = 10_000


def backfill_slots(text: str, tz: str, start: str, end: str, now: float) -> list[float]:
    """The slots of schedule *text* from *start* to *end*, both included (ISO 8601 times,
    or dates: ``2026-11-01`` is that day's midnight in *tz*, and as *end* the day's last
    instant), none after *now* (Unix seconds: a backfill runs past slots).
    :raises InvalidInput: naming ``from`` or ``to``."""
    schedule = parse(text, tz)
    zone = parse_timezone(tz)
    if schedule.kind not in ("cron", "every"):
        raise InvalidInput(f"a {schedule.kind} schedule has no slots to backfill",
                           field="schedule")

    def instant(value: str, field: str, last: bool) -> datetime:
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
                day = datetime.fromisoformat(value.strip()).replace(tzinfo=zone)
                return day + timedelta(days=1, microseconds=-1) if last else day
            moment = datetime.fromisoformat(re.sub(r"[zZ]$", "+00:00", value.strip()))
        except (ValueError, OverflowError):
            raise InvalidInput(f"{field} must be an ISO 8601 time or a date, not "
                               f"{value!r}", field=field) from None
        return moment if moment.tzinfo else moment.replace(tzinfo=zone)
    begin, finish = instant(start, "from", False), instant(end, "to", True)
    if finish < begin:
        raise InvalidInput(f"the range is backwards: to ({end}) is before from ({start}); "
                           f"swap them: --from {end} --to {start}", field="to")
    # a backfill runs past slots; the schedule runs the rest
    finish = min(finish, datetime.fromtimestamp(now, UTC))
    out: list[float] = []
    at = schedule.next_fire(begin - timedelta(microseconds=1))
    while at is not None and at <= finish:
        out.append(at.timestamp())
        if len(out) > MAX_BACKFILL:
            raise InvalidInput(f"more than {MAX_BACKFILL} slots: backfill a shorter range",
                               field="to")
        at = schedule.next_fire(at)
    if not out:
        raise InvalidInput("no past slot of the schedule falls in that range", field="from")
    return out


def preview(schedule: Schedule, count: int, start: datetime) -> list[datetime]:
    """The next ``count`` fire times after ``start`` (the caller's now, usually), for
    showing users."""
    moment: datetime | None = start
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
    return _explain(schedule.expr)


class _Words(Expression):
    """cronsim's words for an expression, with the day rule spelled out: OR when both
    day fields are restricted, AND when either starts with ``*``."""

    def translate_date(self, allow_every_day: bool) -> str:
        if self.day.star or self.dow.star:
            return super().translate_date(allow_every_day)
        parts = [str(self.day), "AND" if self.day_and else "OR", str(self.dow)]
        if not self.month.star:
            parts.append(str(self.month))
        return " ".join(parts)


def _explain(expr: str) -> str:
    try:
        fields = expr.split()
        items = fields[2].split(",")
        nearest = [i[:-1] for i in items if _NEAREST_WEEKDAY.match(i)]
        if not nearest:
            return _Words(expr.upper().split()).explain()
        # cronsim has no words for W: the time and the other fields from it, W days ours
        plain = [i for i in items if not _NEAREST_WEEKDAY.match(i)]
        fields[2] = ",".join(plain) if plain else "*"
        words = _Words(" ".join(fields).upper().split())
        time, _ = words.translate_time()
        days = ([str(words.day)] if plain else []) + [
            f"on the weekday nearest day {n} of the month" for n in nearest]
        text = f"{time} {' or '.join(days)}"
        if not words.dow.star:  # the rule as _Cron applies it, from the fields as written
            both = items[0].startswith("*") or fields[4].startswith("*")
            text += f" {'AND' if both else 'OR'} {words.dow}"
        if not words.month.star:
            text += f" {words.month}"
        return text[0].upper() + text[1:]
    except Exception:  # noqa: BLE001 - words are a help, never a failure
        return f"cron schedule '{expr}'"
