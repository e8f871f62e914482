"""Every zone, every DST change of 2020-2030: a cron schedule always has a next fire,
strictly later, and its fires keep Debian cron's meaning through the change.

Debian's rule (README, "Schedules"): a fixed-time job (minute and hour fields not
starting with ``*``) fires once through a repeated (fall-back) hour and, when a
spring-forward skips its time, at the first instant after the jump; a job whose minute
or hour starts with ``*`` follows real time (twice through a repeated hour, not at all
through a skipped one). The sweep takes each zone of ``zoneinfo.available_timezones()``
(the ones a job may use), finds its changes by their UTC offsets, and asks seeded random
expressions (ranges, steps and lists in minute and hour, fixed and ``*``-led, with day
fields) from instants before, inside and after each change; one in eight is also
checked against Debian's rule written out minute by minute.
"""

from __future__ import annotations

import random
import zoneinfo
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from hermes_cron_ext.domain.schedule import Schedule, parse, parse_timezone
from hermes_cron_ext.errors import InvalidSchedule

UTC = UTC
SEED = 20281
FIRST, LAST = datetime(2020, 1, 1, tzinfo=UTC), datetime(2031, 1, 1, tzinfo=UTC)
WEEK = 7 * 86400  # every change of 2020-2030 is 4 weeks or more from the next (Fiji)
DOW = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _zones() -> list[str]:
    """The zones a job may use (``Factory`` and ``localtime`` are refused)."""
    zones = []
    for name in sorted(zoneinfo.available_timezones()):
        try:
            parse_timezone(name)
        except InvalidSchedule:
            continue
        zones.append(name)
    return zones


def _changes(name: str) -> list[tuple[datetime, timedelta, timedelta]]:
    """Each change of *name*'s UTC offset in 2020-2030: ``(instant, old, new)``."""
    zone, out = ZoneInfo(name), []
    first, last = int(FIRST.timestamp()), int(LAST.timestamp())
    old = datetime.fromtimestamp(first, zone).utcoffset()
    for ts in range(first + WEEK, last + WEEK, WEEK):
        new = datetime.fromtimestamp(ts, zone).utcoffset()
        if new == old:
            continue
        low, high = ts - WEEK, ts
        while high - low > 1:
            mid = (low + high) // 2
            if datetime.fromtimestamp(mid, zone).utcoffset() == old:
                low = mid
            else:
                high = mid
        out.append((datetime.fromtimestamp(high, UTC), old, new))
        old = new
    return out


def _expression(rng: random.Random, hour: int, day: date) -> str:
    """Minute and hour fields aimed at *hour* (the local hour that is repeated or
    skipped), day fields mostly matching *day*."""
    def near() -> int:
        return (hour + rng.choice((0, 0, 0, -1, 1))) % 24

    a, b = sorted(rng.sample(range(60), 2))
    minute = rng.choice((
        "0", "30", str(rng.randint(0, 59)), "0-30", "10-20", "0-59/2", "1-30", f"{a}-{b}",
        f"{a}-{b}/{rng.randint(2, 15)}", f"{a},{b}", "15,45,59", "*", "*/15", "*/7",
        "*/20,5"))
    low, high = sorted((near(), near()))
    hour_field = rng.choice((
        str(near()), str(near()), f"{low}-{high}", f"{low}-{min(23, high + 3)}/2",
        f"{near()},{near()}", f"{hour}-17" if hour <= 17 else f"{hour}-23", "*", "*/2",
        "*/3", f"*/{rng.randint(4, 12)}"))
    dom = rng.choice(("*",) * 6 + (
        str(day.day), f"{day.day},L", "L", "LW", f"{day.day}W", f"1-{day.day}", "*/2",
        f"{rng.randint(1, 28)}"))
    month = rng.choice(("*",) * 8 + (str(day.month), f"{day.month}-12"))
    weekday = day.isoweekday() % 7
    dow = rng.choice(("*",) * 6 + (
        DOW[weekday], f"{weekday}", "mon-fri", f"{DOW[weekday]}#{(day.day + 6) // 7}",
        f"{weekday}L", "*/2", "0,6"))
    return f"{minute} {hour_field} {dom} {month} {dow}"


def _schedule(rng: random.Random, name: str, hour: int, day: date) -> Schedule:
    """A random expression that fires (31 February would be refused)."""
    while True:
        try:
            return parse(_expression(rng, hour, day), name)
        except InvalidSchedule:
            continue


def _fires(schedule: Schedule, after: datetime, until: datetime) -> list[datetime]:
    """Every fire in (after, until], by next_fire."""
    out, t = [], schedule.next_fire(after)
    while t is not None and t <= until:
        out.append(t)
        t = schedule.next_fire(t)
    return out


def _debian(schedule: Schedule, zone: ZoneInfo, after: datetime,
            until: datetime) -> list[datetime]:
    """Debian's rule minute by minute: every local wall time near the window that the
    fields match, mapped to its instants (both passes of a repeated time for a wildcard
    job, the first for a fixed-time one; a skipped time not at all, or for a fixed-time
    job at the first minute that exists after it); those in (after, until]."""
    match = schedule._walls(datetime(2024, 1, 1), False)  # cronsim's field sets alone

    def exists(w: datetime) -> bool:
        return w.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(
            tzinfo=None) == w

    fixed, out = schedule.fixed_hour, set()
    wall = after.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
    wall -= timedelta(hours=4)
    end = until.astimezone(zone).replace(tzinfo=None) + timedelta(hours=4)
    while wall <= end:
        if (wall.minute in match.minutes and wall.hour in match.hours
                and wall.month in match.months and match.match_day(wall.date())):
            first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
            second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
            if not exists(wall):
                if fixed:
                    later = wall
                    while not exists(later):
                        later += timedelta(minutes=1)
                    out.add(later.replace(tzinfo=zone).astimezone(UTC))
            else:
                out.add(first)
                if not fixed:
                    out.add(second)
        wall += timedelta(minutes=1)
    return sorted(t for t in out if after < t <= until)


def _check(schedule: Schedule, x: datetime, problems: list) -> None:
    """next_fire(x) exists and is later; prev_fire names that same fire, and from x
    the latest fire at or before x, whose next is again next_fire(x)."""
    nxt = schedule.next_fire(x)
    if nxt is None or nxt <= x:
        problems.append(("next", schedule.expr, schedule.tz, x.isoformat(), nxt))
        return
    if schedule.prev_fire(nxt) != nxt:
        problems.append(("prev(next)", schedule.expr, schedule.tz, x.isoformat(), nxt,
                         schedule.prev_fire(nxt)))
    prev = schedule.prev_fire(x)
    if prev is None or prev > x or schedule.next_fire(prev) != nxt:
        problems.append(("prev", schedule.expr, schedule.tz, x.isoformat(), prev, nxt))


def test_every_zone_every_dst_change_2020_2030():
    rng = random.Random(SEED)
    problems: list = []
    zones, changes, instants, debian = _zones(), 0, 0, 0
    for name in zones:
        zone = ZoneInfo(name)
        found = _changes(name)
        if not found:  # no DST in 2020-2030: still always a next fire
            schedule = _schedule(rng, name, rng.randrange(24), date(2024, 6, 1))
            for x in (FIRST, datetime(2025, 3, 30, 1, 30, 17, tzinfo=UTC)):
                _check(schedule, x, problems)
                instants += 1
            continue
        for when, old, new in found:
            changes += 1
            shift = abs(new - old)
            hour = (when + min(old, new)).hour  # the local hour repeated or skipped
            day = (when + new).date()
            schedule = _schedule(rng, name, hour, day)
            xs = [when + timedelta(seconds=rng.randrange(shift.seconds))]  # inside
            if changes % 2:  # and just before it, or near it
                xs.append(rng.choice((when - timedelta(seconds=rng.randint(1, shift.seconds)),
                                      when + timedelta(seconds=rng.randint(-7200, 7200)))))
            for x in xs:
                _check(schedule, x.replace(microsecond=rng.choice((0, 250000))), problems)
                instants += 1
            window = (when - shift - timedelta(minutes=10), when + shift + timedelta(minutes=10))
            fires = None
            if new < old and schedule.fixed_hour:  # fall-back: once per wall time
                fires = _fires(schedule, *window)
                walls = [t.astimezone(zone).replace(tzinfo=None) for t in fires]
                if len(set(walls)) != len(walls):
                    problems.append(("twice", schedule.expr, name, when.isoformat(), walls))
            if changes % 8 == 0:
                debian += 1
                fires = _fires(schedule, *window) if fires is None else fires
                if fires != _debian(schedule, zone, *window):
                    problems.append(("debian", schedule.expr, name, when.isoformat(), fires,
                                     _debian(schedule, zone, *window)))
    assert problems == [], f"{len(problems)} problems, e.g. {problems[:5]}"
    # what the sweep covered (tzdata 2024+: about 600 zones, 4,500 changes)
    assert len(zones) > 500 and changes > 4000 and instants > 6000 and debian > 500


@pytest.mark.parametrize(("text", "tz", "after", "expected"), [
    # the examples: asked from inside the second pass, each had no next fire
    ("0-30 2 * * *", "Europe/Berlin", "2020-10-25T01:00:12+00:00", "2020-10-26T01:00:00+00:00"),
    ("0-10 1 * * *", "America/New_York", "2021-11-07T06:00:15+00:00",
     "2021-11-08T06:00:00+00:00"),
    ("10-20 2 * * *", "Europe/Berlin", "2020-10-25T01:05:00+00:00", "2020-10-26T01:10:00+00:00"),
    ("0-59/2 2 * * *", "Europe/Berlin", "2020-10-25T01:00:12+00:00",
     "2020-10-26T01:00:00+00:00"),
    ("1-30 2-17 * * *", "Europe/Berlin", "2020-10-25T01:00:12+00:00",
     "2020-10-25T02:01:00+00:00"),  # 03:01 CET: the repeated 02:xx ran on the first pass
    # a wildcard job follows real time: the second pass fires too
    ("* 2 * * *", "Europe/Berlin", "2020-10-25T01:00:12+00:00", "2020-10-25T01:01:00+00:00"),
    # Lord Howe goes back 30 minutes (02:00 -> 01:30): the second pass of 01:45 fires
    ("*/15 1 * * *", "Australia/Lord_Howe", "2021-04-03T15:00:00+00:00",
     "2021-04-03T15:15:00+00:00"),
    # Chatham jumps 02:45 -> 03:45: a wildcard job at 04:xx still fires at 04:00
    ("* 4 * * *", "Pacific/Chatham", "2021-09-25T14:00:00+00:00", "2021-09-25T14:15:00+00:00"),
])
def test_next_fire_through_a_dst_change(text, tz, after, expected):
    assert parse(text, tz).next_fire(datetime.fromisoformat(after)) == datetime.fromisoformat(
        expected)


@pytest.mark.parametrize(("text", "tz", "at", "expected"), [
    # from inside the second pass: the first pass's fire, not yesterday's
    ("45 2 * * *", "Europe/Berlin", "2020-10-25T01:10:00+00:00", "2020-10-25T00:45:00+00:00"),
    ("0-30 2 * * *", "Europe/Berlin", "2020-10-25T01:00:12+00:00", "2020-10-25T00:30:00+00:00"),
    # a wildcard job at midnight on the last day: Beirut skips 31 March's, so the
    # latest is 28 February's 00:59 (nothing at 01:00, the instant after the jump)
    ("* 0 L * *", "Asia/Beirut", "2019-04-07T03:29:00+00:00", "2019-02-27T22:59:00+00:00"),
])
def test_prev_fire_through_a_dst_change(text, tz, at, expected):
    assert parse(text, tz).prev_fire(datetime.fromisoformat(at)) == datetime.fromisoformat(
        expected)
