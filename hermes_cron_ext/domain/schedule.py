"""Schedules: parse what a user typed, answer "when does it fire next / when did it last fire".

Four kinds of schedule text are understood:

* a 5-field cron expression with Debian (Vixie) cron's meaning, evaluated by
  `cronsim <https://github.com/cuu508/cronsim>`_: names, ranges (``5-5`` is only 5),
  steps on ranges, and day-of-month / day-of-week combined as cron does (OR when
  both are restricted, AND when either starts with ``*``, ``*/2`` included); plus
  the extensions cronsim shares with healthchecks.io: ``L`` and ``LW`` in
  day-of-month, ``5L`` (last Friday) and ``5#3`` (third Friday) in day-of-week, lists
  mixing them; and Quartz's ``15W`` (the weekday nearest the 15th) in day-of-month.
  ``?`` means ``*``. ``R`` and ``H`` (random / hashed values) are refused. Or an
  alias such as ``@daily``;
* ``@reboot``: fires when a ticker starts, so it has no next fire time;
* ``@every 1h30m``: slots at ``epoch + k * duration`` in UTC, so tickers agree without state;
* ``@at 2026-11-22T10:00``: one instant (a naive time is read in the schedule's zone).

Cron runs in the schedule's time zone and handles daylight saving like Debian cron(8):
a job whose minute and hour are both fixed runs once on a fall-back day and, when
spring-forward skips its time, at the first instant after the jump; a job whose minute
or hour field starts with ``*`` (``* 2 * * *``, ``0 */2 * * *``) follows real time.
docs/ARCHITECTURE.md says why cronsim and not croniter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tzlocal
from cronsim import CronSim, CronSimError
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
_UNITS = (("d", "day", 86400), ("h", "hour", 3600), ("m", "minute", 60), ("s", "second", 1))


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
    of the same month. Such a field is given to cronsim as a restricted placeholder, so
    the day-of-month / day-of-week rule stays cron's; ``match_dom`` then decides."""

    def __init__(self, expr: str, dt: datetime, reverse: bool = False,
                 nearest: tuple[int, ...] = (), plain_dom: bool = True):
        super().__init__(expr, dt, reverse)
        self.nearest, self.plain_dom = nearest, plain_dom

    def match_dom(self, d) -> bool:
        if self.plain_dom and super().match_dom(d):
            return True
        return any(d.day == _nearest_weekday(n, d.year, d.month) for n in self.nearest)


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
    #: what cronsim is given: ``expr`` with ``nW`` days as a placeholder, the W days
    _sim: tuple[str, tuple[int, ...], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", parse_timezone(self.tz))
        object.__setattr__(self, "_sim", _for_cronsim(self.expr) if self.kind == "cron"
                           else ("", (), True))

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

    def _iter(self, start: datetime, reverse: bool) -> _Cron:
        expr, nearest, plain = self._sim
        return _Cron(expr, start.astimezone(self._zone), reverse, nearest, plain)

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
        return self._walk(self._iter(after, False), lambda t: t > after)

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
        # cronsim's reverse walk is strictly before its start; cron fires on whole
        # minutes, so starting one second past the truncated instant makes it inclusive
        start = at_or_before.replace(microsecond=0) + timedelta(seconds=1)
        return self._walk(self._iter(start, True), lambda t: t <= at_or_before)

    @staticmethod
    def _walk(sim: _Cron, wanted) -> datetime | None:
        """The first instant of *sim* that is *wanted*. cronsim walks a fixed-time job
        in local wall time, so from inside a repeated hour it can name an instant on the
        wrong side of the start (the first pass of 02:30, already gone): skip those."""
        try:
            for _ in range(4):
                instant = next(sim).astimezone(UTC)
                if wanted(instant):
                    return instant
        except (StopIteration, CronSimError):  # past the year 9999
            pass
        return None


def _for_cronsim(expr: str) -> tuple[str, tuple[int, ...], bool]:
    """``(expression for cronsim, W days, whether day-of-month has plain items)``."""
    fields = expr.split()
    items = fields[2].split(",")
    nearest = tuple(int(m[1]) for i in items if (m := _NEAREST_WEEKDAY.match(i)))
    if not nearest:
        return expr, (), True
    plain = [i for i in items if not _NEAREST_WEEKDAY.match(i)]
    fields[2] = ",".join(plain) if plain else "1"  # restricted, as the W field is
    return " ".join(fields), nearest, bool(plain)


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
        schedule._iter(datetime(2024, 1, 1, tzinfo=UTC), False)
    except CronSimError:
        for i, (name, _, _) in enumerate(_FIELDS):  # which field cronsim refuses, alone
            alone = ["*"] * 5
            alone[i] = fields[i]
            try:
                CronSim(_for_cronsim(" ".join(alone))[0], datetime(2024, 1, 1, tzinfo=UTC))
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


def backfill_slots(text: str, tz: str, start: str, end: str) -> list[float]:
    """The slots of schedule *text* from *start* to *end*, both included (ISO 8601 times,
    or dates: ``2026-11-01`` is that day's midnight in *tz*, and as *end* the day's last
    instant). :raises InvalidInput: naming ``from`` or ``to``."""
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
        raise InvalidInput("to is before from", field="to")
    # a backfill runs past slots; the schedule runs the rest
    finish = min(finish, datetime.now(UTC))
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
        if not words.dow.star:
            text += f" {'AND' if fields[4].startswith('*') else 'OR'} {words.dow}"
        if not words.month.star:
            text += f" {words.month}"
        return text[0].upper() + text[1:]
    except Exception:  # noqa: BLE001 - words are a help, never a failure
        return f"cron schedule '{expr}'"
