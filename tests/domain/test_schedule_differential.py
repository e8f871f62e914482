"""Differential test: our next/previous fire times against cronsim, the reference for
Debian (Vixie) cron's meaning, on 20,000+ seeded random cases in six zones, with starts
on and around every DST transition of 2019-2030 and around 29 February.

Our evaluator runs cronsim (docs/ARCHITECTURE.md says why) inside a wrapper of its own:
zones and UTC, "strictly after" and "at or before", the ``?``, ``friL`` and ``nW``
extensions, and the mapping of local wall times to instants across DST (a fixed-time job
once through a repeated hour and at the jump for a skipped one, a wildcard job in real
time). That wrapper is what this test holds to the reference.

Where we differ from cronsim, the arbiter is Debian's DST rule written out by brute force
(every wall time cronsim names near the start, each mapped to its instants): we must
agree with it. cronsim walks wildcard jobs in real time with steps that assume whole
hours, so across the 30-minute shift of Lord Howe, or a jump at midnight (Beirut), it
names a skipped time or passes over a real one; asked for the previous fire from inside
a repeated hour it misses the first pass. ``nW`` (not Debian, not cronsim) is held to
cronsim given, month by month, the day it stands for.
"""

from __future__ import annotations

import calendar
import json
import pathlib
import random
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from hermes_cron_ext.domain.schedule import parse
from hermes_cron_ext.errors import InvalidSchedule

UTC = UTC
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
         "America/Santiago", "Asia/Beirut")  # Lord Howe: 30-minute shift; Santiago and
#                                               Beirut: transitions at midnight
SEED = 20261203
CASES = 20_000
DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
               "dec")


def _transitions(zone: str) -> list[datetime]:
    """Every UTC instant (to the minute) where *zone*'s offset changes, 2019-2030."""
    tz = ZoneInfo(zone)
    out, t = [], datetime(2019, 1, 1, tzinfo=UTC)
    step = timedelta(days=1)
    while t.year < 2031:
        nxt = t + step
        if t.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            lo, hi = t, nxt
            while hi - lo > timedelta(minutes=1):
                mid = lo + (hi - lo) / 2
                mid = mid.replace(second=0, microsecond=0)
                if mid == lo:
                    break
                if lo.astimezone(tz).utcoffset() == mid.astimezone(tz).utcoffset():
                    lo = mid
                else:
                    hi = mid
            out.append(hi)
        t = nxt
    return out


def _value(rng: random.Random, low: int, high: int, names=None) -> str:
    v = rng.randint(low, high)
    if names is not None and rng.random() < 0.3:
        return names[v - low] if len(names) == high - low + 1 else names[v % len(names)]
    return str(v)


def _item(rng: random.Random, low: int, high: int, names=None) -> str:
    form = rng.random()
    if form < 0.35:
        return _value(rng, low, high, names)
    a, b = sorted(rng.randint(low, high) for _ in range(2))
    if form < 0.55:
        return f"{a}-{b}"  # equal ends included: 5-5 is only 5
    if form < 0.75:
        return f"{a}-{b}/{rng.randint(1, max(1, high - low))}"
    return f"*/{rng.randint(1, max(1, (high - low) // 2 + 1))}"


def _field(rng: random.Random, low: int, high: int, names=None, star: float = 0.4) -> str:
    if rng.random() < star:
        return "*"
    return ",".join(_item(rng, low, high, names) for _ in range(rng.choice((1, 1, 1, 2, 3))))


def _dom(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.08:
        return "L"
    if r < 0.13:
        return "LW"
    if r < 0.18:
        return f"{rng.randint(1, 28)},L"
    return _field(rng, 1, 31, star=0.45)


def _dow(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.08:
        return f"{rng.randint(0, 6)}L"
    if r < 0.16:
        return f"{rng.choice(DOW_NAMES)}#{rng.randint(1, 5)}"
    if r < 0.22:  # plain days mixed with # and L
        return rng.choice((f"{rng.randint(0, 6)},{rng.randint(0, 6)}#{rng.randint(1, 4)}",
                           f"*,sat#{rng.randint(1, 4)}", f"{rng.randint(0, 6)},6L"))
    return _field(rng, 0, 7, DOW_NAMES + ("sun",), star=0.5)


def _expression(rng: random.Random) -> str:
    minute = rng.choice(("0", "30", "*/15", "*", _field(rng, 0, 59, star=0.2)))
    hour = rng.choice(("2", "1,2,3", "*/2", "*", "0", _field(rng, 0, 23, star=0.3)))
    return " ".join((minute, hour, _dom(rng), _field(rng, 1, 12, MONTH_NAMES, star=0.7),
                     _dow(rng)))


def _cases():
    rng = random.Random(SEED)
    starts: list[datetime] = []
    for zone in ZONES:
        for t in _transitions(zone):
            starts += [t + timedelta(minutes=m) for m in (-125, -61, -31, -1, 0, 1, 29, 59)]
    for year in (2020, 2024, 2028):
        base = datetime(year, 2, 28, 12, tzinfo=UTC)
        starts += [base + timedelta(hours=h) for h in range(0, 48, 7)]
    cases = []
    while len(cases) < CASES:
        expr = _expression(rng)
        try:
            next(CronSim(expr, datetime(2024, 1, 1, tzinfo=UTC)))
        except Exception:  # noqa: BLE001 - never fires (31 February): we refuse it too
            with pytest.raises(InvalidSchedule):
                parse(expr, "UTC")
            continue
        start = rng.choice(starts) + timedelta(seconds=rng.choice((0, 0, 0, 17)))
        cases.append((expr, rng.choice(ZONES), start))
    return cases


def _reference_next(expr: str, zone: str, start: datetime) -> datetime:
    """cronsim's first fire strictly after *start*. (From inside a repeated hour cronsim
    may first name the already-gone first pass of a fixed time: not after the start.)"""
    sim = CronSim(expr, start.astimezone(ZoneInfo(zone)))
    while True:
        t = next(sim).astimezone(UTC)
        if t > start:
            return t


def _reference_prev(expr: str, zone: str, start: datetime) -> datetime:
    """cronsim's last fire at or before *start*."""
    begin = start.replace(microsecond=0) + timedelta(seconds=1)
    sim = CronSim(expr, begin.astimezone(ZoneInfo(zone)), reverse=True)
    while True:
        t = next(sim).astimezone(UTC)
        if t <= start:
            return t


#: the most a zone's UTC offset changes by, 2019-2030 (Antarctica/Casey: 3 h), and more
MARGIN = timedelta(hours=6)


def _debian_instants(wall: datetime, zone: ZoneInfo, fixed: bool) -> list[datetime]:
    """Debian cron's DST rule for one local wall time the expression names: a time that
    exists once fires once; a repeated one fires on both passes for a wildcard job and
    on the first for a fixed-time one; a skipped one fires not at all for a wildcard job
    and, for a fixed-time one, at the first whole minute that exists after it."""
    def exists(w: datetime) -> bool:
        return w.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(
            tzinfo=None) == w
    if not exists(wall):
        if not fixed:
            return []
        while not exists(wall):
            wall += timedelta(minutes=1)
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return [first] if fixed or first == second else [first, second]


def _fixed(expr: str) -> bool:
    return not expr.split()[0].startswith("*") and not expr.split()[1].startswith("*")


def _debian_next(expr: str, zone: str, start: datetime) -> datetime | None:
    """The first fire after *start* by brute force: every wall time cronsim names (with
    no zone: the calendar alone) from a margin before the start's, mapped to instants,
    until the walls are a margin past the best found."""
    tz, best = ZoneInfo(zone), None
    for wall in CronSim(expr, start.astimezone(tz).replace(tzinfo=None) - MARGIN):
        if best is not None and wall > best.astimezone(tz).replace(tzinfo=None) + MARGIN:
            return best
        for t in _debian_instants(wall, tz, _fixed(expr)):
            if t > start and (best is None or t < best):
                best = t
    return best


def _debian_prev(expr: str, zone: str, start: datetime) -> datetime | None:
    """The last fire at or before *start*, by brute force the same way, backwards."""
    tz, best = ZoneInfo(zone), None
    wall0 = start.astimezone(tz).replace(tzinfo=None, microsecond=0) + MARGIN
    for wall in CronSim(expr, wall0, reverse=True):
        if best is not None and wall < best.astimezone(tz).replace(tzinfo=None) - MARGIN:
            return best
        for t in _debian_instants(wall, tz, _fixed(expr)):
            if t <= start and (best is None or t > best):
                best = t
    return best


def test_next_and_previous_fire_agree_with_cronsim_on_20000_cases():
    disagree, overruled = [], []
    for expr, zone, start in _cases():
        schedule = parse(expr, zone)
        for way, got, want, debian in (
                ("next", schedule.next_fire(start), _reference_next(expr, zone, start),
                 _debian_next),
                ("prev", schedule.prev_fire(start), _reference_prev(expr, zone, start),
                 _debian_prev)):
            if got == want:
                continue
            arbiter = debian(expr, zone, start)
            (overruled if got == arbiter else disagree).append(
                (way, expr, zone, start.isoformat(), got, want, arbiter))
    assert disagree == [], f"{len(disagree)} disagreements, e.g. {disagree[:5]}"
    # cronsim is the reference: the brute force overrules it only in rare DST corners
    assert len(overruled) < CASES // 100, overruled[:5]
    assert all(zone != "UTC" for _, _, zone, *_ in overruled)


#: Expressions from cronsim's and croniter's own test suites whose meaning Debian cron
#: defines (croniter-only syntax such as seconds fields, ``L-2`` or ``R`` left out).
PEER_SUITE = (
    "* * * * *", "*/5 * * * *", "0 * * * *", "0 0 * * *", "0 0 1 * *", "0 0 1 1 *",
    "0 0 * * 0", "0 0 * * 7", "0 0 * * 1-5", "0 9-17 * * 1-5", "*/15 9-17 * * mon-fri",
    "0 0 L * *", "0 0 LW * *", "0 0 * * 5L", "0 0 * * 5#3", "0 0 * * fri#2",
    "0 0 1,15 * *", "0 0 1-7 * 1", "0 0 */2 * *", "0 0 */2 * sat", "0 16 */2 * sat",
    "0 9 1 * 5#3", "0 0 15 * fri#2", "* * * * 5-5", "0 9 * * mon-mon", "5-5 * * * *",
    "0 0 29 2 *", "0 0 29 2 1", "0 0 30 1-12/2 *", "0 0 31 * *", "0 12 * jan-mar *",
    "0 0 * * 5,6#3", "0 0 * * *,sat#3", "0 0 * * 5,L6", "1-59/2 * * * *",
    "0 0-23/3 * * *", "30 2 * * *", "* 2 * * *", "*/15 2 * * *", "0 */2 * * *",
    "0 0 1-10/3 * *", "0 0 * feb sun", "0 0 13 * 5", "59 23 31 12 *", "0 0 1 1 1",
)


@pytest.mark.parametrize("expr", PEER_SUITE)
def test_expressions_from_peer_suites_agree_with_cronsim(expr):
    cases = [(zone, datetime(y, m, d, 12, tzinfo=UTC)) for zone in ZONES
             for y, m, d in ((2024, 2, 27), (2025, 3, 29), (2025, 10, 25), (2026, 12, 31))]
    for zone, start in cases:
        schedule = parse(expr, zone)  # its expr: croniter's spellings (L6) as cronsim's
        t = start
        for _ in range(12):  # a dozen fires in a row from each start
            got, want = schedule.next_fire(t), _reference_next(schedule.expr, zone, t)
            assert got == want, (expr, zone, t, got, want)
            t = got


PEERS = json.loads((pathlib.Path(__file__).resolve().parents[1] / "data" /
                    "peer_cron_expressions.json").read_text())
#: cronsim accepts it, but no day ever matches (day 1 AND the 4th Monday): we refuse it
#: when it is saved ("never fires") instead of storing a job that can never run
NEVER_FIRES = {"1 1 */100 * MON#4"}


def _agree_from_starts(expr: str) -> None:
    for zone in ("UTC", "Europe/Berlin", "Australia/Lord_Howe"):
        schedule = parse(expr, zone)
        for start in (datetime(2024, 2, 27, 12, tzinfo=UTC), datetime(2025, 10, 25, 12,
                                                                     tzinfo=UTC)):
            t = start
            for _ in range(6):
                got, want = schedule.next_fire(t), _reference_next(schedule.expr, zone, t)
                assert got == want, (expr, zone, t, got, want)
                t = got


@pytest.mark.parametrize("source", ["cronsim", "croniter"])
def test_every_expression_of_the_peer_test_suites(source):
    """Each 5-field expression of cronsim's and croniter's test files: where the
    reference accepts it, we agree on its fires; where it refuses it, we refuse it too,
    unless it is one of our documented spellings (``?``, ``friL``, croniter's ``L5``),
    whose normal form the reference accepts and agrees on."""
    accepted_by_us_only = []
    for expr in PEERS[source]:
        try:
            CronSim(expr, datetime(2024, 1, 1, tzinfo=UTC))
            reference = True
        except Exception:  # noqa: BLE001 - the reference refuses it
            reference = False
        try:
            parse(expr, "UTC")
            ours = True
        except InvalidSchedule as exc:
            ours, why = False, exc.message
        if expr in NEVER_FIRES:
            assert reference and not ours and "never fires" in why
            with pytest.raises(Exception):  # noqa: B017 - cronsim finds no fire either
                next(CronSim(expr, datetime(2024, 1, 1, tzinfo=UTC)))
        elif reference:
            assert ours, (expr, why)
            _agree_from_starts(expr)
        elif ours:
            normal = parse(expr, "UTC").expr
            CronSim(normal, datetime(2024, 1, 1, tzinfo=UTC))  # a spelling of a Debian form
            _agree_from_starts(expr)
            accepted_by_us_only.append(expr)
    assert len(PEERS[source]) > 50
    assert all(re.search(r"\?|L[0-7]|[a-z]L", e, re.IGNORECASE)
               for e in accepted_by_us_only), accepted_by_us_only


# --- nW: the weekday nearest day n, under cron's day rule -------------------------------


def _nearest(n: int, year: int, month: int) -> int | None:
    """Quartz's nW, from the calendar: day n if Monday-Friday; a Saturday's Friday or a
    Sunday's Monday, never leaving the month (a Saturday 1st gives Monday 3rd, a Sunday
    last day the Friday before); None if the month has no day n."""
    last = calendar.monthrange(year, month)[1]
    if n > last:
        return None
    weekday = calendar.weekday(year, month, n)
    if weekday < 5:
        return n
    if weekday == 5:
        return n - 1 if n > 1 else n + 2
    return n + 1 if n < last else n - 2


def _w_expression(rng: random.Random) -> str:
    """A day-of-month with W items (``15W`` or ``W15``) alone or with plain items, first
    or not, beside a day-of-week that is ``*``, ``*``-led or restricted (so AND and OR)."""
    items = [rng.choice((f"{rng.randint(1, 31)}W", f"W{rng.randint(1, 31)}"))
             for _ in range(rng.choice((1, 1, 2)))]
    items += [rng.choice(("L", "LW", f"*/{rng.randint(2, 9)}", str(rng.randint(1, 31)),
                          f"{rng.randint(1, 10)}-{rng.randint(11, 28)}"))
              for _ in range(rng.choice((0, 0, 1, 2)))]
    rng.shuffle(items)
    dow = rng.choice(("*", "*", "0", "1-5", "sun#1", "fri#2", "5L", "*/2", "*,sat#3", "mon,wed",
                      "6", f"{rng.randint(0, 6)}#{rng.randint(1, 5)}"))
    month = rng.choice(("*", "*", "*", "2", "2,4,6", "jan-mar", f"{rng.randint(1, 12)}"))
    minute, hour = rng.choice((("0", "0"), ("48", "*/10"), ("30", "9"), ("*/20", "12")))
    return f"{minute} {hour} {','.join(items)} {month} {dow}"


def _w_reference(expr: str, start: datetime, reverse: bool) -> datetime | None:
    """cronsim (UTC) with each month's W days written as the days they stand for: the
    first fire after *start* (the last at or before it, *reverse*), month by month."""
    minute, hour, dom, month, dow = expr.split()
    months = CronSim(f"0 0 1 {month} *", datetime(2024, 1, 1, tzinfo=UTC)).months
    year, mon = start.year, start.month
    for _ in range(12 * 40):
        if mon in months:
            last = calendar.monthrange(year, mon)[1]
            days = []
            for item in dom.split(","):
                w = re.fullmatch(r"(\d+)W|W(\d+)", item)
                if w is None:
                    days.append(item)
                elif (day := _nearest(int(w[1] or w[2]), year, mon)) is not None:
                    days.append(str(day))
                else:  # no such day this month: one that never matches, in its place
                    days.append("31" if last < 31 else "30")  # (keeps the field's start)
            begin = datetime(year, mon, 1, tzinfo=UTC)  # this month's days only
            end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=UTC)
            try:
                sim = CronSim(f"{minute} {hour} {','.join(days)} {mon} {dow}",
                              min(start + timedelta(seconds=1), end) if reverse
                              else max(start, begin - timedelta(seconds=1)), reverse)
                t = next(sim)
            except Exception:  # noqa: BLE001 - no such day with that weekday this month
                t = None
            if t is not None and (t.year, t.month) == (year, mon) and (
                    t <= start if reverse else t > start):
                return t
        year, mon = (year, mon - 1) if reverse else (year, mon + 1)
        if mon == 0:
            year, mon = year - 1, 12
        elif mon == 13:
            year, mon = year + 1, 1
    return None


def test_nearest_weekday_follows_the_day_rule_of_cron_on_2000_cases():
    """nW with a restricted day-of-week ORs (``0 0 31W 2 0``: the weekday nearest the
    31st, or any Sunday, in February), with a ``*``-led one ANDs; ``15W,*/2`` starts
    with 1, so it ORs too. Each agrees with cronsim given the day nW stands for."""
    rng = random.Random(SEED + 1)
    disagree, checked = [], 0
    while checked < 2000:
        expr = _w_expression(rng)
        try:
            schedule = parse(expr, "UTC")
        except InvalidSchedule as exc:  # right only if it never fires (31W in February)
            if _w_reference(expr, datetime(2024, 1, 1, tzinfo=UTC), False) is not None:
                disagree.append(("refused", expr, exc.message))
            continue
        start = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(
            minutes=rng.randint(0, 6 * 365 * 24 * 60), seconds=rng.choice((0, 17)))
        for way, got, want in (
                ("next", schedule.next_fire(start), _w_reference(expr, start, False)),
                ("prev", schedule.prev_fire(start), _w_reference(expr, start, True))):
            if got != want:
                disagree.append((way, expr, start.isoformat(), got, want))
        checked += 1
    assert disagree == [], f"{len(disagree)} disagreements, e.g. {disagree[:5]}"
