"""Tests for hermes_cron_ext.domain.schedule: parsing, validation messages, fire times, DST."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import pickle
import re
import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from hermes_cron_ext.domain import schedule as schedule_module
from hermes_cron_ext.domain.schedule import (
    ALIASES,
    Schedule,
    describe,
    local_zone,
    parse,
    parse_duration,
    parse_timezone,
    preview,
)
from hermes_cron_ext.errors import InvalidSchedule

UTC = UTC


def utc(*args: int) -> datetime:
    """Shorthand for a UTC instant."""
    return datetime(*args, tzinfo=UTC)


def fires_on_local_day(text: str, tz: str, day: str) -> list[datetime]:
    """Every fire instant whose local date is ``day`` in ``tz``."""
    zone = ZoneInfo(tz)
    start = datetime.fromisoformat(day).replace(tzinfo=zone)
    end = (start.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=zone)
    found: list[datetime] = []
    moment = parse(text, tz).next_fire(start - timedelta(seconds=1))
    while moment is not None and moment < end:
        found.append(moment)
        moment = parse(text, tz).next_fire(moment)
    return found


# --- time zones and durations ----------------------------------------------------------


def test_parse_timezone_valid() -> None:
    assert parse_timezone("Europe/Berlin") == ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize("name", ["Europe/Berln", "Europe", "", "../etc/passwd", "Not A Zone"])
def test_parse_timezone_unknown(name: str) -> None:
    with pytest.raises(InvalidSchedule) as info:
        parse_timezone(name)
    assert info.value.message == f"unknown time zone '{name}'"
    assert info.value.field == "timezone"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("name", "reason"), [
    ("right/UTC", "counts leap seconds, so its clock is not civil time: use 'UTC'"),
    ("right/Europe/Berlin", "counts leap seconds, so its clock is not civil time: use "
                            "'Europe/Berlin'"),
    ("posix/Europe/Berlin", "is a copy of 'Europe/Berlin': use 'Europe/Berlin'"),
    ("posix/UTC", "is a copy of 'UTC': use 'UTC'"),
    ("Factory", "a placeholder for a zone not yet set"),
    ("localtime", "this machine's zone file, not a zone name"),
    ("posixrules", "not a zone name"),
])
def test_zones_whose_clock_is_not_civil_time_are_refused(name: str, reason: str) -> None:
    """zoneinfo finds these (from the system's tzdata), but a job in right/Europe/Berlin
    would change hour 27 s after Berlin does, and 'localtime' means another zone on
    another machine: each is refused with its reason, on one line."""
    with pytest.raises(InvalidSchedule) as info:
        parse("0 9 * * *", name)
    assert info.value.field == "timezone"
    assert info.value.message.startswith(f"time zone '{name}' ")
    assert reason in info.value.message and "\n" not in info.value.message


@pytest.mark.parametrize(("detected", "zone"), [
    ("posix/Europe/Berlin", "Europe/Berlin"),  # /etc/localtime -> .../posix/Europe/Berlin
    ("right/Asia/Tokyo", "Asia/Tokyo"),
    ("posix/UTC", "UTC"),
    ("localtime", "UTC"),
    ("Factory", "UTC"),
])
def test_local_zone_is_a_civil_zone_name(monkeypatch: pytest.MonkeyPatch, detected: str,
                                         zone: str) -> None:
    """A job made without a zone stores the server's: never a posix/ or right/ name
    (the zone's own name instead), never one refused as a job's zone."""
    monkeypatch.setattr(schedule_module.tzlocal, "get_localzone_name", lambda: detected)
    assert local_zone() == zone
    assert parse("@daily").tz == zone


def test_parse_with_unknown_timezone() -> None:
    with pytest.raises(InvalidSchedule, match="unknown time zone 'Europe/Berln'") as info:
        parse("*/5 * * * *", "Europe/Berln")
    assert info.value.field == "timezone"


def test_local_zone_is_a_valid_zone() -> None:
    ZoneInfo(local_zone())


@pytest.mark.parametrize("detected", [None, "Mars/Olympus_Mons", RuntimeError("no zone")])
def test_local_zone_falls_back_to_utc(monkeypatch: pytest.MonkeyPatch, detected: object) -> None:
    def fake() -> object:
        if isinstance(detected, Exception):
            raise detected
        return detected

    monkeypatch.setattr(schedule_module.tzlocal, "get_localzone_name", fake)
    assert local_zone() == "UTC"


def test_parse_defaults_to_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedule_module, "local_zone", lambda: "Asia/Tokyo")
    assert parse("@daily").tz == "Asia/Tokyo"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1d2h3m4s", 93784),
        (" 90M ", 5400),
        ("1h 30m", 5400),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "-5s", "500ms", "1.5h", "30", "m30", "1m1h", "soon"])
def test_parse_duration_rejects_junk(text: str) -> None:
    with pytest.raises(InvalidSchedule, match="invalid duration .*e.g. 30s, 1h30m, 2d") as info:
        parse_duration(text)
    assert info.value.field == "duration"


@pytest.mark.parametrize("text", ["0s", "0h0m"])
def test_parse_duration_rejects_zero(text: str) -> None:
    with pytest.raises(InvalidSchedule, match="must be at least 1 second"):
        parse_duration(text)


# --- validation messages ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "schedule is empty"),
        ("   ", "schedule is empty"),
        ("0 0 * * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 6"),
        (
            "0 0 0 * * * 2025",
            "expected 5 fields (minute hour day-of-month month day-of-week), got 7",
        ),
        ("0 0 *", "expected 5 fields (minute hour day-of-month month day-of-week), got 3"),
        ("61 * * * *", "minute 61 is out of range 0-59"),
        ("0 24 * * *", "hour 24 is out of range 0-23"),
        ("0 0 32 * *", "day-of-month 32 is out of range 1-31"),
        ("0 0 0 * *", "day-of-month 0 is out of range 1-31"),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week 8 is out of range 0-7"),
        ("0 0-30 * * *", "hour 30 is out of range 0-23"),
        ("0 0 31 2 *", "day-of-month 31 never occurs in February"),
        ("0 0 30 2 *", "day-of-month 30 never occurs in February"),
        ("0 0 30 feb ?", "day-of-month 30 never occurs in February"),
        ("0 0 31 4,6 *", "day-of-month 31 never occurs in April or June"),
        ("@every 0s", "duration '0s' must be at least 1 second"),
        ("@every", "@every needs a duration, e.g. @every 30s"),
        ("@at", "@at needs an ISO 8601 time"),
        ("@at next tuesday", "invalid @at time 'next tuesday': use ISO 8601"),
        ("@reboot now", "@reboot takes no argument, got 'now'"),
        ("@daily 5", "@daily takes no argument, got '5'"),
    ],
)
def test_invalid_schedules(text: str, message: str) -> None:
    with pytest.raises(InvalidSchedule) as info:
        parse(text, "UTC")
    assert info.value.message.startswith(message)
    assert info.value.field == "schedule"


def test_unknown_alias_lists_known_aliases() -> None:
    with pytest.raises(InvalidSchedule) as info:
        parse("@fortnightly", "UTC")
    assert info.value.message.startswith("unknown alias '@fortnightly'; known: ")
    for alias in [*ALIASES, "@reboot", "@every", "@at"]:
        assert alias in info.value.message


@pytest.mark.parametrize(("text", "message"), [
    ("*/0 * * * *", "minute '*/0' is not valid"),
    ("0 0 * * 5#6", "day-of-week '5#6' is not valid"),
    ("H * * * *", "minute 'H': random or hashed values (R, H) are not supported"),
    ("R/15 * * * *", "minute 'R/15': random or hashed values (R, H) are not supported"),
    ("a b c d e", "minute 'a' is not valid"),
    ("0 0 L-2 * *", "day-of-month 'L-2' is not valid"),
    ("0 0 * * foo", "day-of-week 'foo' is not valid"),
])
def test_bad_fields_are_named_with_their_value(text: str, message: str) -> None:
    """Not croniter's "[0 0 * foo *] is not acceptable": the field and the value."""
    with pytest.raises(InvalidSchedule) as info:
        parse(text, "UTC")
    assert info.value.message.startswith(message), info.value.message
    assert info.value.field == "schedule"


def test_feb_29_is_possible() -> None:
    assert parse("0 0 29 2 *", "UTC").next_fire(utc(2025, 1, 1)) == utc(2028, 2, 29)


def test_day_31_with_weekday_fires_on_weekday() -> None:
    # Cron ORs day-of-month and day-of-week, so this fires on Mondays in February.
    assert parse("0 0 31 2 mon", "UTC").next_fire(utc(2025, 1, 1)) == utc(2025, 2, 3)


def test_nearest_weekday_ors_with_a_restricted_day_of_week() -> None:
    """docs/schedules.md's rule: when both day fields are restricted, either one
    matching is enough, also for W (as cronsim does for L and #); a field starting with
    * ANDs. ``15W,*/2`` starts with 1, not *: OR."""
    def days(text: str, n: int = 6) -> list[str]:
        return [d.strftime("%a %d %b") for d in preview(parse(text, "UTC"), n, utc(2026, 1, 1))]

    # the issue's examples: day 31's weekday (none in February), or a Sunday
    assert days("0 0 31W 2 0", 3) == ["Sun 01 Feb", "Sun 08 Feb", "Sun 15 Feb"]
    assert days("48 */10 31W * sun#1", 6) == [
        "Sun 04 Jan", "Sun 04 Jan", "Sun 04 Jan", "Fri 30 Jan", "Fri 30 Jan", "Fri 30 Jan"]
    # an odd day, the weekday nearest the 15th, or a Monday (it was: an odd Monday)
    assert days("0 0 15W,*/2 * mon") == [
        "Sat 03 Jan", "Mon 05 Jan", "Wed 07 Jan", "Fri 09 Jan", "Sun 11 Jan", "Mon 12 Jan"]
    assert describe(parse("0 0 15W,*/2 * mon", "UTC")).endswith(
        "or on the weekday nearest day 15 of the month OR on Monday")
    assert days("0 0 15W,*/10 * sun#1", 5) == [
        "Sun 04 Jan", "Sun 11 Jan", "Thu 15 Jan", "Wed 21 Jan", "Sat 31 Jan"]
    # *-led day-of-month: AND
    assert days("0 0 *,15W * mon", 2) == ["Mon 05 Jan", "Mon 12 Jan"]
    # day 30 never comes in February, the weekday nearest the 15th does (it was refused)
    assert days("0 0 30,15W 2 *", 2) == ["Mon 16 Feb", "Mon 15 Feb"]


def test_w15_is_15w() -> None:
    """``W15`` is another spelling of Quartz's ``15W``: the same fires, the same words."""
    spelled, quartz = parse("0 9 W15 * *", "UTC"), parse("0 9 15W * *", "UTC")
    assert spelled.expr == "0 9 15W * *" and spelled.text == "0 9 W15 * *"
    assert preview(spelled, 12, utc(2026, 1, 1)) == preview(quartz, 12, utc(2026, 1, 1))
    assert describe(spelled) == "At 09:00 on the weekday nearest day 15 of the month"
    assert parse("0 9 1,w20 * *", "UTC").expr == "0 9 1,20W * *"
    with pytest.raises(InvalidSchedule, match="day-of-month 32 is out of range"):
        parse("0 9 W32 * *", "UTC")


# --- normalised text and kinds ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalised", "kind"),
    [
        ("*/5  *  * * *", "*/5 * * * *", "cron"),
        ("@DAILY", "@daily", "cron"),
        ("@reboot", "@reboot", "reboot"),
        ("@every 90m", "@every 1h30m", "every"),
        ("@every 86400s", "@every 1d", "every"),
        ("@at 2026-11-22T10:00:00Z", "@at 2026-11-22T10:00:00+00:00", "at"),
        ("@at 2026-11-22T11:00:00+01:00", "@at 2026-11-22T10:00:00+00:00", "at"),
        ("@at 2026-11-22T11:00", "@at 2026-11-22T10:00:00+00:00", "at"),  # read in Berlin
    ],
)
def test_normalised_text(text: str, normalised: str, kind: str) -> None:
    parsed = parse(text, "Europe/Berlin")
    assert (parsed.text, parsed.kind, parsed.tz) == (normalised, kind, "Europe/Berlin")


def test_schedule_is_frozen_hashable_and_picklable() -> None:
    parsed = parse("*/5 * * * *", "Europe/Berlin")
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.text = "@daily"  # type: ignore[misc]
    assert parsed == parse("*/5 * * * *", "Europe/Berlin")
    assert len({parsed, parse("*/5 * * * *", "Europe/Berlin")}) == 1
    assert pickle.loads(pickle.dumps(parsed)) == parsed
    assert copy.deepcopy(parsed).next_fire(utc(2025, 1, 1)) == utc(2025, 1, 1, 0, 5)


def test_naive_datetime_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse("@hourly", "UTC").next_fire(datetime(2025, 1, 1))


def test_question_mark_means_any() -> None:
    parsed = parse("0 0 ? * *", "UTC")
    assert preview(parsed, 2, utc(2025, 1, 1, 12)) == [utc(2025, 1, 2), utc(2025, 1, 3)]


# --- aliases ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("@hourly", utc(2025, 1, 1, 11)),
        ("@daily", utc(2025, 1, 2)),
        ("@midnight", utc(2025, 1, 2)),
        ("@weekly", utc(2025, 1, 5)),  # the next Sunday
        ("@monthly", utc(2025, 2, 1)),
        ("@yearly", utc(2026, 1, 1)),
        ("@annually", utc(2026, 1, 1)),
        ("@reboot", None),
    ],
)
def test_alias_next_fire(alias: str, expected: datetime | None) -> None:
    assert parse(alias, "UTC").next_fire(utc(2025, 1, 1, 10, 20)) == expected


def test_alias_uses_schedule_zone() -> None:
    assert parse("@daily", "Europe/Berlin").next_fire(utc(2025, 1, 1, 10)) == utc(2025, 1, 1, 23)


# --- cron syntax -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start", "expected"),
    [
        ("0 0 L * *", utc(2025, 2, 1), [utc(2025, 2, 28), utc(2025, 3, 31)]),  # last day
        ("0 0 L 2 *", utc(2024, 1, 1), [utc(2024, 2, 29), utc(2025, 2, 28)]),  # leap year
        (
            "0 0 15W * *",
            utc(2025, 2, 1),  # Sat 15 Feb -> Fri 14, Sun 15 Jun -> Mon 16
            [
                utc(2025, 2, 14),
                utc(2025, 3, 14),
                utc(2025, 4, 15),
                utc(2025, 5, 15),
                utc(2025, 6, 16),
            ],
        ),
        ("0 0 * * 5#3", utc(2025, 1, 1), [utc(2025, 1, 17), utc(2025, 2, 21), utc(2025, 3, 21)]),
        ("0 0 * * fri#3", utc(2025, 1, 1), [utc(2025, 1, 17), utc(2025, 2, 21)]),
        ("0 0 * * 5L", utc(2025, 1, 1), [utc(2025, 1, 31), utc(2025, 2, 28), utc(2025, 3, 28)]),
        ("0 0 * * friL", utc(2025, 1, 1), [utc(2025, 1, 31), utc(2025, 2, 28)]),
        (
            "0 9 * * mon-fri",
            utc(2025, 1, 3, 10),  # Friday after 09:00 -> Monday
            [utc(2025, 1, 6, 9), utc(2025, 1, 7, 9)],
        ),
        ("0 0 1 jan,jul *", utc(2025, 1, 2), [utc(2025, 7, 1), utc(2026, 1, 1)]),
        (
            "0 9-11 * * *",
            utc(2025, 1, 1, 9, 30),
            [utc(2025, 1, 1, 10), utc(2025, 1, 1, 11), utc(2025, 1, 2, 9)],
        ),
        (
            "*/20 * * * *",
            utc(2025, 1, 1, 10, 5),
            [utc(2025, 1, 1, 10, 20), utc(2025, 1, 1, 10, 40), utc(2025, 1, 1, 11)],
        ),
        (
            "0 0-12/6 * * *",
            utc(2025, 1, 1, 1),
            [utc(2025, 1, 1, 6), utc(2025, 1, 1, 12), utc(2025, 1, 2, 0)],
        ),
    ],
)
def test_cron_syntax(text: str, start: datetime, expected: list[datetime]) -> None:
    assert preview(parse(text, "UTC"), len(expected), start) == expected


def test_cron_next_is_strict_and_whole_minute() -> None:
    parsed = parse("*/5 * * * *", "UTC")
    assert parsed.next_fire(utc(2025, 1, 1, 10, 5)) == utc(2025, 1, 1, 10, 10)
    fire = parsed.next_fire(datetime(2025, 1, 1, 10, 4, 59, 999999, tzinfo=UTC))
    assert fire == utc(2025, 1, 1, 10, 5)
    assert fire is not None and fire.microsecond == 0 and fire.tzinfo is UTC


def test_cron_accepts_any_aware_input_zone() -> None:
    after = datetime(2025, 1, 1, 12, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # 03:00 UTC
    assert parse("0 * * * *", "UTC").next_fire(after) == utc(2025, 1, 1, 4)


def test_concurrent_callers_share_the_cached_parser() -> None:
    parsed = parse("*/7 * * * *", "Europe/Berlin")
    starts = [utc(2025, 1, 1) + timedelta(minutes=13 * i) for i in range(200)]
    expected = [parsed.next_fire(start) for start in starts]
    results: dict[int, list[datetime | None]] = {}

    def work(worker: int) -> None:
        results[worker] = [parsed.next_fire(start) for start in starts]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result == expected for result in results.values())


# --- daylight saving (Debian cron behaviour) -------------------------------------------


@pytest.mark.parametrize(
    ("text", "tz", "start", "expected"),
    [
        # Fall back: the repeated 02:xx (Berlin) / 01:xx (New York) runs fixed-hour jobs once.
        (
            "30 2 * * *",
            "Europe/Berlin",
            utc(2025, 10, 25, 12),
            [utc(2025, 10, 26, 0, 30), utc(2025, 10, 27, 1, 30)],
        ),
        (
            "30 1 * * *",
            "America/New_York",
            utc(2025, 11, 1, 12),
            [utc(2025, 11, 2, 5, 30), utc(2025, 11, 3, 6, 30)],
        ),
        (
            "30 2 * * *",
            "America/New_York",
            utc(2025, 11, 1, 12),  # 02:30 is not repeated
            [utc(2025, 11, 2, 7, 30), utc(2025, 11, 3, 7, 30)],
        ),
        # a minute field starting with * makes a wildcard job in Debian's sense: it
        # follows real time, so the repeated 02:xx runs twice (Debian's DST rule)
        (
            "*/30 2 * * *",
            "Europe/Berlin",
            utc(2025, 10, 25, 12),
            [utc(2025, 10, 26, 0), utc(2025, 10, 26, 0, 30), utc(2025, 10, 26, 1),
             utc(2025, 10, 26, 1, 30), utc(2025, 10, 27, 1)],
        ),
        # Spring forward: the skipped 02:30 runs at 03:00 local, once.
        (
            "30 2 * * *",
            "Europe/Berlin",
            utc(2025, 3, 29, 12),
            [utc(2025, 3, 30, 1), utc(2025, 3, 31, 0, 30)],
        ),
        (
            "30 2 * * *",
            "America/New_York",
            utc(2025, 3, 8, 12),
            [utc(2025, 3, 9, 7), utc(2025, 3, 10, 6, 30)],
        ),
        (
            "30 1 * * *",
            "America/New_York",
            utc(2025, 3, 8, 12),  # 01:30 EST still exists
            [utc(2025, 3, 9, 6, 30), utc(2025, 3, 10, 5, 30)],
        ),
        (  # wildcard job: the skipped 02:xx simply does not happen
            "*/30 2 * * *",
            "Europe/Berlin",
            utc(2025, 3, 29, 12),
            [utc(2025, 3, 31, 0), utc(2025, 3, 31, 0, 30)],
        ),
    ],
)
def test_dst_fixed_hour(text: str, tz: str, start: datetime, expected: list[datetime]) -> None:
    assert preview(parse(text, tz), len(expected), start) == expected


@pytest.mark.parametrize(
    ("text", "tz", "day", "count"),
    [
        ("30 2 * * *", "Europe/Berlin", "2025-10-26", 1),
        ("30 2 * * *", "Europe/Berlin", "2025-03-30", 1),
        ("30 1 * * *", "America/New_York", "2025-11-02", 1),
        ("30 2 * * *", "America/New_York", "2025-03-09", 1),
        ("0 * * * *", "Europe/Berlin", "2025-03-30", 23),
        ("0 * * * *", "Europe/Berlin", "2025-10-26", 25),
        ("0 * * * *", "America/New_York", "2025-03-09", 23),
        ("0 * * * *", "America/New_York", "2025-11-02", 25),
        ("0 */1 * * *", "Europe/Berlin", "2025-10-26", 25),
        ("*/15 * * * *", "Europe/Berlin", "2025-10-26", 100),
        ("*/15 * * * *", "America/New_York", "2025-03-09", 92),
        ("*/30 2 * * *", "Europe/Berlin", "2025-03-30", 0),  # wildcard: real time
        ("*/30 2 * * *", "Europe/Berlin", "2025-10-26", 4),
        ("0 */2 * * *", "Europe/Berlin", "2025-10-26", 13),
    ],
)
def test_dst_runs_per_local_day(text: str, tz: str, day: str, count: int) -> None:
    assert len(fires_on_local_day(text, tz, day)) == count


def test_dst_wildcard_hour_runs_in_both_passes() -> None:
    fires = fires_on_local_day("0 * * * *", "Europe/Berlin", "2025-10-26")
    assert utc(2025, 10, 26, 0) in fires and utc(2025, 10, 26, 1) in fires  # 02:00 CEST, CET
    spring = fires_on_local_day("0 * * * *", "America/New_York", "2025-03-09")
    assert utc(2025, 3, 9, 6) in spring and utc(2025, 3, 9, 7) in spring  # 01:00 EST, 03:00 EDT


def test_dst_next_from_inside_repeated_hour() -> None:
    # 01:45 UTC is 02:45 CET, the second pass; the 02:30 CET repeat must not fire.
    parsed = parse("30 2 * * *", "Europe/Berlin")
    assert parsed.next_fire(utc(2025, 10, 26, 1, 15)) == utc(2025, 10, 27, 1, 30)


@pytest.mark.parametrize(
    ("text", "tz", "day"),
    [
        ("30 2 * * *", "Europe/Berlin", "2025-10-26"),
        ("0 * * * *", "Europe/Berlin", "2025-10-26"),
        ("*/20 1-3 * * *", "America/New_York", "2025-11-02"),
        ("*/20 1-3 * * *", "America/New_York", "2025-03-09"),
        ("0 * * * *", "Europe/Berlin", "2025-03-30"),
    ],
)
def test_prev_fire_agrees_with_next_fire_across_dst(text: str, tz: str, day: str) -> None:
    parsed = parse(text, tz)
    fires = fires_on_local_day(text, tz, day)
    earlier = parsed.prev_fire(fires[0] - timedelta(seconds=1))
    for previous, fire in itertools.pairwise([earlier, *fires]):
        assert parsed.prev_fire(fire) == fire
        assert parsed.prev_fire(fire - timedelta(seconds=1)) == previous
        assert parsed.next_fire(previous) == fire  # type: ignore[arg-type]


# --- @every ----------------------------------------------------------------------------


def test_every_is_aligned_to_the_epoch() -> None:
    parsed = parse("@every 30s", "Europe/Berlin")
    assert parsed.next_fire(utc(2025, 1, 1, 10, 0, 10)) == utc(2025, 1, 1, 10, 0, 30)
    assert parsed.next_fire(utc(2025, 1, 1, 10, 0, 30)) == utc(2025, 1, 1, 10, 1)
    assert preview(parse("@every 1h30m", "UTC"), 3, utc(2025, 1, 1)) == [
        utc(2025, 1, 1, 1, 30),
        utc(2025, 1, 1, 3),
        utc(2025, 1, 1, 4, 30),
    ]


def test_every_ignores_the_zone_so_tickers_agree() -> None:
    start = datetime(2025, 6, 1, 12, 3, 17, 250000, tzinfo=UTC)
    berlin, kolkata = parse("@every 7m", "Europe/Berlin"), parse("@every 7m", "Asia/Kolkata")
    assert berlin.next_fire(start) == kolkata.next_fire(start)
    fire = berlin.next_fire(start)
    assert fire is not None
    assert not (fire - datetime(1970, 1, 1, tzinfo=UTC)) % timedelta(minutes=7)


def test_every_minimum_is_one_second() -> None:
    parsed = parse("@every 1s", "UTC")
    after = datetime(2025, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    assert parsed.next_fire(after) == utc(2025, 1, 1, 0, 0, 1)


# --- @at -------------------------------------------------------------------------------


def test_at_fires_once() -> None:
    parsed = parse("@at 2026-11-22T10:00:00+00:00", "UTC")
    assert parsed.next_fire(utc(2026, 11, 22, 9, 59)) == utc(2026, 11, 22, 10)
    assert parsed.next_fire(utc(2026, 11, 22, 10)) is None
    assert parsed.next_fire(utc(2026, 11, 23)) is None


def test_at_naive_time_read_in_zone() -> None:
    assert parse("@at 2025-07-01T09:00", "America/New_York").at == utc(2025, 7, 1, 13)
    # An ambiguous fall-back time means the first occurrence (02:30 CEST).
    assert parse("@at 2025-10-26T02:30", "Europe/Berlin").at == utc(2025, 10, 26, 0, 30)


def test_at_naive_time_skipped_by_dst_rejected() -> None:
    with pytest.raises(InvalidSchedule, match="does not exist in Europe/Berlin"):
        parse("@at 2025-03-30T02:30", "Europe/Berlin")


# --- prev_fire -------------------------------------------------------------------------


def test_prev_fire_cron() -> None:
    parsed = parse("0 9 * * *", "UTC")
    assert parsed.prev_fire(utc(2025, 1, 2, 9)) == utc(2025, 1, 2, 9)  # inclusive
    assert parsed.prev_fire(datetime(2025, 1, 2, 8, 59, 59, 900000, tzinfo=UTC)) == utc(
        2025, 1, 1, 9
    )
    assert parsed.prev_fire(datetime(2025, 1, 2, 9, 0, 0, 500000, tzinfo=UTC)) == utc(2025, 1, 2, 9)
    assert parse("0 0 L * *", "UTC").prev_fire(utc(2025, 3, 15)) == utc(2025, 2, 28)


def test_prev_fire_cron_skips_repeated_hour() -> None:
    parsed = parse("30 2 * * *", "Europe/Berlin")
    assert parsed.prev_fire(utc(2025, 10, 26, 1, 45)) == utc(2025, 10, 26, 0, 30)


def test_prev_fire_every() -> None:
    parsed = parse("@every 30s", "UTC")
    assert parsed.prev_fire(utc(2025, 1, 1, 10, 0, 45)) == utc(2025, 1, 1, 10, 0, 30)
    assert parsed.prev_fire(utc(2025, 1, 1, 10, 0, 30)) == utc(2025, 1, 1, 10, 0, 30)


def test_prev_fire_at_and_reboot() -> None:
    parsed = parse("@at 2026-11-22T10:00:00Z", "UTC")
    assert parsed.prev_fire(utc(2026, 11, 22, 10)) == utc(2026, 11, 22, 10)
    assert parsed.prev_fire(utc(2027, 1, 1)) == utc(2026, 11, 22, 10)
    assert parsed.prev_fire(utc(2026, 11, 22, 9, 59)) is None
    assert parse("@reboot", "UTC").prev_fire(utc(2026, 1, 1)) is None


# --- preview and describe --------------------------------------------------------------


def test_preview_returns_count_increasing_instants() -> None:
    # Friday 17:20 CET: seven slots up to 17:55, then Monday 09:00, 09:05, 09:10 CET.
    fires = preview(parse("*/5 9-17 * * mon-fri", "Europe/Berlin"), 10, utc(2025, 1, 3, 16, 20))
    assert len(fires) == 10
    assert all(a < b for a, b in itertools.pairwise(fires))
    assert all(fire.tzinfo is UTC for fire in fires)
    assert fires[0] == utc(2025, 1, 3, 16, 25)
    assert fires[6:] == [
        utc(2025, 1, 3, 16, 55),
        utc(2025, 1, 6, 8),
        utc(2025, 1, 6, 8, 5),
        utc(2025, 1, 6, 8, 10),
    ]


def test_preview_edge_cases() -> None:
    assert preview(parse("@at 2020-01-01T00:00:00Z", "UTC"), 5, utc(2025, 1, 1)) == []
    assert preview(parse("@at 2026-01-01T00:00:00Z", "UTC"), 5, utc(2025, 1, 1)) == [
        utc(2026, 1, 1)
    ]
    assert preview(parse("@reboot", "UTC"), 5, utc(2025, 1, 1)) == []
    assert preview(parse("@hourly", "UTC"), 0, utc(2025, 1, 1)) == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("30 2 * * *", "At 02:30 every day"),
        ("@daily", "At 00:00 every day"),
        ("0 0 * * 5L", "At 00:00 on the last Friday of the month"),
        ("0 9 1 * 5#3", "At 09:00 on the first day of month OR on the third Friday of the month"),
        ("0 16 */2 * sat", "At 16:00 on every second day of month AND on Saturday"),
        ("0 9 15W * *", "At 09:00 on the weekday nearest day 15 of the month"),
        ("0 9 *,15W * mon", "At 09:00 on every day of month or on the weekday nearest day "
                            "15 of the month AND on Monday"),
        ("0 9 W15 * *", "At 09:00 on the weekday nearest day 15 of the month"),
        ("@every 30s", "every 30 seconds"),
        ("@every 1m", "every minute"),
        ("@every 1h30m", "every 1 hour 30 minutes"),
        ("@every 2d", "every 2 days"),
        ("@at 2026-11-22T10:00:00Z", "once at 2026-11-22 11:00:00 CET"),
        ("@reboot", "when a ticker starts"),
    ],
)
def test_describe(text: str, words: str) -> None:
    assert describe(parse(text, "Europe/Berlin")) == words


def test_schedule_type_exported() -> None:
    assert isinstance(parse("@hourly", "UTC"), Schedule)


def _page_schedule_examples() -> list[str]:
    """Every schedule written on the Schedules page (docs/schedules.md): its table and
    its prose."""
    import pathlib

    section = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "schedules.md").read_text()
    found = []
    for code in re.findall(r"`([^`]+)`", section):
        if code.isupper() or "DURATION" in code:  # a form's name, not an example
            continue
        if code.startswith("--at "):
            found.append("@at " + code[5:])
        elif code.startswith("@") and " " in code and not code.startswith(("@every", "@at")):
            found += code.split()  # "@hourly @daily ..."
        elif code.startswith("@") or len(code.split()) == 5:
            found.append(code)
    return found


def test_every_schedule_example_on_the_page_parses_and_means_what_it_says() -> None:
    examples = _page_schedule_examples()
    assert len(examples) >= 20, examples
    refused = {"0 0 30 2 *"}  # the page's example of what is refused
    for text in examples:
        if text in refused:
            with pytest.raises(InvalidSchedule):
                parse(text, "Europe/Berlin")
            continue
        schedule = parse(text, "Europe/Berlin")
        if schedule.kind in ("cron", "every"):
            assert preview(schedule, 2, utc(2026, 1, 1)), text
    # the day rule the page promises, in the words next and the panel show
    assert " OR " in describe(parse("0 9 1 * 5#3", "UTC"))
    assert " AND " in describe(parse("0 16 */2 * sat", "UTC"))
    assert preview(parse("5-5 * * * *", "UTC"), 2, utc(2026, 1, 1)) == [
        utc(2026, 1, 1, 0, 5), utc(2026, 1, 1, 1, 5)]
    assert [d.day for d in preview(parse("0 9 15W * *", "UTC"), 3, utc(2026, 2, 1))] == [
        16, 16, 15]  # Sun 15 Feb -> Mon 16; Sun 15 Mar -> Mon 16; Wed 15 Apr


@pytest.mark.parametrize(("text", "start", "expected"), [
    # expressions our croniter-based evaluator got wrong (ours -> Debian); now Debian's
    ("* * * * 5-5", utc(2026, 1, 1), utc(2026, 1, 2)),  # Thursday -> the Friday
    ("0 9 * * mon-mon", utc(2026, 1, 1), utc(2026, 1, 5, 9)),
    ("0 16 */2 * sat", utc(2026, 1, 1), utc(2026, 1, 3, 16)),  # 3rd: odd day, Saturday
    ("0 9 1 * 5#3", utc(2026, 1, 2), utc(2026, 1, 16, 9)),  # OR: the 3rd Friday
    ("0 0 15 * fri#2", utc(2026, 1, 1), utc(2026, 1, 9)),
    ("0 9 LW * *", utc(2026, 1, 1), utc(2026, 1, 30, 9)),  # Sat 31st -> Fri 30th
    ("0 0 * * 5,6#3", utc(2026, 1, 3), utc(2026, 1, 9)),  # plain Friday kept
    ("0 0 * * *,sat#3", utc(2026, 1, 3, 1), utc(2026, 1, 4)),
    ("0 0 * * 5,L6", utc(2026, 1, 24, 1), utc(2026, 1, 30)),  # Friday, or the last Sat
    ("0 9 15W * mon", utc(2026, 2, 10), utc(2026, 2, 16, 9)),  # OR with Monday
    ("32 * */11 * 0-2/3", utc(2026, 1, 1), utc(2026, 2, 1, 0, 32)),  # AND: 1/12/23 + Sunday
])
def test_issue_regressions_follow_debian(text: str, start: datetime, expected: datetime) -> None:
    assert parse(text, "UTC").next_fire(start) == expected
