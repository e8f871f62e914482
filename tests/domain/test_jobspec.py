"""Job input checks shared by REST, CLI and magics: what passes, and the message for
what does not."""

from __future__ import annotations

import pytest

from hermes_cron_ext.domain import options
from hermes_cron_ext.domain.jobspec import (
    policy_value,
    validate_changes,
    validate_new,
    validate_policy,
)
from hermes_cron_ext.domain.models import Job
from hermes_cron_ext.errors import InvalidInput

BASE = {"name": "j", "schedule": "@hourly", "timezone": "UTC", "command": "true"}


@pytest.mark.parametrize("value, stored", [
    (None, None), ("", None), ("local", "local"), ("dask://10.0.0.5:8786", "dask://10.0.0.5:8786"),
    ("tcp://scheduler.internal:8786", "tcp://scheduler.internal:8786"),
    ("dask+tls://sched:8786", "dask+tls://sched:8786"),
])
def test_executor_values_that_pass(value, stored):
    assert validate_new({**BASE, "executor": value})["executor"] == stored


@pytest.mark.parametrize("value", [
    "dask", "dask://", "dask://host", "http://host:8786", "local ", 8786, ["local"],
    "dask://host:8786/../x", "dask://a b:1",
])
def test_bad_executor_is_refused_naming_the_field(value):
    with pytest.raises(InvalidInput) as err:
        validate_new({**BASE, "executor": value})
    assert err.value.field == "executor" and "dask://HOST:PORT" in str(err.value)


def test_changes_keep_the_executor_unless_given():
    job = Job(id="j_0000000000000001", name="j", kind="command", schedule="@hourly",
              timezone="UTC", command="true", executor="dask://sched:8786")
    assert validate_changes(job, {"description": "x"})["executor"] == "dask://sched:8786"
    assert validate_changes(job, {"executor": ""})["executor"] is None


# -- policies: checked against their options' JSON schemas -------------------------------

@pytest.mark.parametrize("policy, field, message", [
    ({"misfire": "sometimes"}, "misfire", "misfire must be one of latest, skip, all"),
    ({"overlap": None}, "overlap", "overlap must be one of forbid, allow, replace, queue"),
    ({"retry_on_timeout": "yes"}, "retry_on_timeout", "retry_on_timeout must be true or false"),
    ({"notify_url": "ftp://x"}, "notify_url", "notify_url must be an http(s) URL"),
    ({"ping_url": 5}, "ping_url", "ping_url must be an http(s) URL"),
    ({"retries": 10001}, "retries", "retries must be a whole number from 0 to 10000"),
    ({"retries": 1.5}, "retries", "retries must be a whole number from 0 to 10000"),
    ({"keep_runs": -1}, "keep_runs", "keep_runs must be a whole number from 0 to 10000"),
    ({"max_failures": True}, "max_failures",
     "max_failures must be a whole number from 0 to 10000"),
    ({"kill_grace": -1}, "kill_grace", "kill_grace cannot be negative (got -1)"),
    ({"kill_grace": "-1s"}, "kill_grace", "kill_grace cannot be negative (got -1s)"),
    ({"jitter": [1]}, "jitter",
     "jitter must be a number of seconds or a duration such as 90s or 1h30m, not [1]"),
    ({"retry_delay": 4e8}, "retry_delay",
     "retry_delay must be at most 10 years (got 4e+08 seconds)"),
    ({"timeout": 0}, "timeout", "timeout must be more than 0 seconds"),
    ({"timeout": "0"}, "timeout", "timeout must be more than 0 seconds"),
    ({"timeout": -5}, "timeout", "timeout cannot be negative (got -5)"),
    ({"max_output": "lots"}, "max_output", "max_output must be a size such as 500k or 50M"),
    ({"max_output": 100}, "max_output", "max_output must be from 4k to 1G"),
    ({"max_output": "2G"}, "max_output", "max_output must be from 4k to 1G"),
    ({"bogus": 1}, "bogus", "unknown policy field 'bogus'"),
])
def test_a_bad_policy_value_is_refused_saying_what_it_must_be(policy, field, message):
    with pytest.raises(InvalidInput) as err:
        validate_policy(policy)
    assert (err.value.field, err.value.message) == (field, message)


def test_policy_values_are_read_as_their_unit_says():
    p = validate_policy({"timeout": "1h30m", "retry_delay": "90", "max_output": "500k",
                         "retries": "3", "keep_runs": None, "starting_deadline": None,
                         "notify_url": "https://hooks.example/x", "overlap": "queue"})
    assert (p.timeout, p.retry_delay, p.max_output, p.retries) == (5400.0, 90.0, 512000, 3)
    assert (p.keep_runs, p.starting_deadline, p.overlap) == (None, None, "queue")


def _bounds(option):
    schema = option.schema
    return schema.get("minimum", schema.get("exclusiveMinimum")), schema.get("maximum")


@pytest.mark.parametrize("option", [o for o in options.OPTIONS if o.policy],
                         ids=lambda o: o.name)
def test_each_policy_takes_exactly_what_its_schema_declares(option):
    """The type, range and choices are the option's JSON schema's (declared once): its
    bounds pass, one past them does not, its enum's values pass, others do not."""
    schema = option.schema
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if "null" in types:
        assert getattr(validate_policy({option.name: None}), option.name) is None
    else:
        with pytest.raises(InvalidInput):
            validate_policy({option.name: None})
    low, high = _bounds(option)
    if "enum" in schema:
        for value in schema["enum"]:
            assert getattr(validate_policy({option.name: value}), option.name) == value
        with pytest.raises(InvalidInput):
            validate_policy({option.name: "not-" + schema["enum"][0]})
    if low is not None:
        step = 1 if "integer" in types else 0.001
        if "exclusiveMinimum" in schema:
            validate_policy({option.name: low + step})
            with pytest.raises(InvalidInput):
                validate_policy({option.name: low})
        else:
            validate_policy({option.name: low})
            with pytest.raises(InvalidInput):
                validate_policy({option.name: low - step})
    if high is not None:
        assert getattr(validate_policy({option.name: high}), option.name) == high
        with pytest.raises(InvalidInput):
            validate_policy({option.name: high + 1})
    if option.default is not None:  # the default itself passes
        assert getattr(validate_policy({option.name: option.default}), option.name) == \
            option.default


def test_a_narrower_schema_narrows_the_check():
    """policy_value reads the range from the schema it is given, message and all."""
    few = options.Option("few", {"type": "integer", "minimum": 1, "maximum": 3}, "h", "write",
                         policy=True)
    assert policy_value(few, "2") == 2
    with pytest.raises(InvalidInput, match="few must be a whole number from 1 to 3"):
        policy_value(few, 4)
    short = options.Option("short", {"type": "number", "minimum": 0, "maximum": 3600}, "h",
                           "write", policy=True, unit="seconds")
    assert policy_value(short, "1h") == 3600.0
    with pytest.raises(InvalidInput, match=r"short must be at most 1 hour \(got 3601 seconds\)"):
        policy_value(short, 3601)
    small = options.Option("small", {"type": "integer", "minimum": 1024, "maximum": 1 << 20},
                           "h", "write", policy=True, unit="bytes")
    with pytest.raises(InvalidInput, match="small must be from 1k to 1M"):
        policy_value(small, "2M")


# -- an 'at' time is read against the caller's now (the domain reads no clock) ---------

NOW = 1_800_000_000.2  # 2027-01-15T08:00:00.2Z
JOB = Job(id="j_0000000000000002", name="j", kind="command", schedule="@hourly",
          timezone="UTC", command="true")


def test_at_now_is_the_second_after_the_next_whole_one():
    fields = validate_new({**BASE, "schedule": None, "at": "now"}, now=NOW)
    assert fields["schedule"] == "@at 2027-01-15T08:00:02+00:00"
    assert validate_new({**BASE, "schedule": None, "at": " NOW "}, now=1_800_000_000.0)[
        "schedule"] == "@at 2027-01-15T08:00:01+00:00"


@pytest.mark.parametrize("given", [{"schedule": None, "at": "2027-01-15T07:59:00Z"},
                                   {"schedule": "@at 2027-01-15T07:59:00Z"}])
def test_an_at_time_more_than_a_minute_before_now_is_refused(given):
    field = "at" if "at" in given else "schedule"
    with pytest.raises(InvalidInput, match="at 2027-01-15T07:59:00[+]00:00 is in the past") as e:
        validate_new({**BASE, **given}, now=NOW)
    assert e.value.field == field
    with pytest.raises(InvalidInput, match="is in the past") as e:
        validate_changes(JOB, given, now=NOW)
    assert e.value.field == field
    # within AT_GRACE (a minute) of now: a clock skew, accepted
    late = {k: v.replace("07:59:00", "07:59:01") if v else v for k, v in given.items()}
    assert validate_new({**BASE, **late}, now=NOW)["schedule"] == "@at 2027-01-15T07:59:01+00:00"
    assert validate_changes(JOB, late, now=NOW)["schedule"] == "@at 2027-01-15T07:59:01+00:00"


def test_an_at_time_needs_now_and_nothing_else_does():
    with pytest.raises(TypeError, match="pass now"):
        validate_new({**BASE, "schedule": None, "at": "2099-01-01T00:00:00Z"})
    with pytest.raises(TypeError, match="pass now"):
        validate_new({**BASE, "schedule": "@at 2099-01-01T00:00:00Z"})
    with pytest.raises(TypeError, match="pass now"):
        validate_changes(JOB, {"at": "now"})
    assert validate_new(BASE)["schedule"] == "@hourly"  # no at: no clock needed
    assert validate_changes(JOB, {"schedule": "@daily"})["schedule"] == "@daily"
