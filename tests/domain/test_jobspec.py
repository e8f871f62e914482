"""Job input checks shared by REST, CLI and magics: what passes, and the message for
what does not."""

from __future__ import annotations

import pytest

from hermes_cron_ext.domain.jobspec import validate_changes, validate_new
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
