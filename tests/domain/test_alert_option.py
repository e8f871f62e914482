"""The ``alerts`` option: declared once (a policy, ``--alert RULE`` repeatable, ``write``),
validated when a job is saved with the rule's own message, and what the store's check
of a run's end decides (``alerts.judge``)."""

from __future__ import annotations

import argparse

import pytest

from hermes_cron_ext.domain import options
from hermes_cron_ext.domain.alerts import MAX_RULES, judge, parse_rules, usable_rules
from hermes_cron_ext.domain.jobspec import validate_changes, validate_new
from hermes_cron_ext.domain.models import Job
from hermes_cron_ext.errors import InvalidInput

BASE = {"name": "etl", "schedule": "@daily", "timezone": "UTC", "command": "true"}


def test_declared_once_as_a_write_policy_with_a_repeatable_flag():
    o = options.BY_NAME["alerts"]
    assert (o.policy, o.permission, o.flag, o.pairs, o.default) == (
        True, "write", "--alert", True, [])
    assert "rows < 1000" in o.help and o.default_text == "none"
    assert o.schema["maxItems"] == MAX_RULES
    parser = argparse.ArgumentParser()
    options.add_options(parser)
    args = parser.parse_args(["--alert", "rows < 1", "--alert", "duration > 1h"])
    assert options.fields_from_options(args) == {"alerts": ["rows < 1", "duration > 1h"]}
    assert options.fields_from_options(parser.parse_args(["--alert", ""])) == {"alerts": []}
    assert options.fields_from_options(parser.parse_args([])) == {}


def test_rules_are_kept_trimmed_and_cleared():
    job = validate_new({**BASE, "alerts": [" rows < 1000 ", "duration > 2 * median(20)"]})
    assert job["policy"].alerts == ["rows < 1000", "duration > 2 * median(20)"]
    assert validate_new({**BASE, "policy": {"alerts": "rows < 1\nerrors > 0\n"}})[
        "policy"].alerts == ["rows < 1", "errors > 0"]
    assert validate_new(BASE)["policy"].alerts == []
    stored = Job(id="j_0000000000000001", name="etl", kind="command", schedule="@daily",
                 timezone="UTC", command="true", policy=job["policy"])
    assert validate_changes(stored, {"retries": 2})["policy"].alerts == job["policy"].alerts
    assert validate_changes(stored, {"alerts": []})["policy"].alerts == []


@pytest.mark.parametrize(("value", "message"), [
    (["rows < 1000", "rows <"], "alert rule 'rows <': it ends too soon"),
    (["median(20) < 3"], "alert rule 'median(20) < 3': it starts with the metric it "
                         "watches, not a statistic (median(...))"),
    (["rows < 3 furlongs"], "alert rule 'rows < 3 furlongs': unknown unit 'furlongs'"),
    (["rows < p90(0)"], "p90(N): N is a whole number of runs from 1 to 1000"),
    ([""], "an alert rule is a comparison, e.g. 'rows < 1000'"),
    (["rows < 1"] * (MAX_RULES + 1), f"at most {MAX_RULES} alert rules, not {MAX_RULES + 1}"),
    ({"rows": 1}, "alerts must be a list of rules"),
    ([1], "alerts must be a list of rules"),
])
def test_a_bad_rule_is_refused_naming_it(value, message):
    with pytest.raises(InvalidInput) as err:
        validate_new({**BASE, "alerts": value})
    assert err.value.field == "alerts" and message in err.value.message


def test_judge_fired_passed_unknown():
    rules = parse_rules(["rows < 10", "duration > 2 * median(3)", "errors > 0"])
    fired = judge(rules, {"rows": 5, "duration": 1.0, "errors": 0}, {})
    assert fired.fired == [{"rule": "rows < 10", "message": "rows = 5 < 10"}]
    assert fired.passed == 1 and not fired.recovers  # the median is unknown
    ok = judge(rules, {"rows": 50, "duration": 1.0, "errors": 0},
               {("duration", 3): [1.0, 1.0, 1.0]})
    assert (ok.fired, ok.passed, ok.recovers) == ([], 3, True)
    unknown = judge(parse_rules(["duration > 2 * median(3)"]), {"duration": 9.0}, {})
    assert (unknown.fired, unknown.passed, unknown.recovers) == ([], 0, False)
    assert [r.text for r in usable_rules(["rows < 1", "rows <"])] == ["rows < 1"]
