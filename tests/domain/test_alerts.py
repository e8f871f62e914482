"""Alert rules (domain/alerts.py): what a user writes, what is refused, what fires."""

from __future__ import annotations

import statistics

import pytest

from hermes_cron_ext.domain.alerts import (
    MAX_RULES,
    RuleError,
    parse_rule,
    parse_rules,
    statistic,
)


@pytest.mark.parametrize("text, value, history, outcome", [
    ("rows < 1000", 812, [], "fired"),
    ("rows < 1000", 1000, [], "passed"),
    ("rows <= 1000", 1000, [], "fired"),
    ("exit_code != 0", 3, [], "fired"),
    ("exit_code != 0", 0, [], "passed"),
    ("duration > 2h", 7201, [], "fired"),
    ("duration > 2h", 7200, [], "passed"),
    ("duration > 500ms", 0.6, [], "fired"),
    ("duration > 2 min", 121, [], "fired"),
    ("peak_memory >= 1.5G", 1.5e9, [], "fired"),
    ("peak_memory >= 1GiB", 1024 ** 3 - 1, [], "passed"),
    ("duration > 2 * median(20)", 81, [40, 40, 41, 39], "fired"),
    ("duration > 2 * median(20)", 79, [40, 40, 41, 39], "passed"),
    ("rows < 0.5 * mean(3)", 49, [100, 100, 100, 1], "fired"),  # the 4th is outside the 3
    ("errors > mean(50) + 3 * stddev(50)", 20, [1, 2, 3, 2, 1, 2], "fired"),
    ("errors > mean(50) + 3 * stddev(50)", 4, [1, 2, 3, 2, 1, 2], "passed"),
    ("latency > p90(10)", 10, list(range(1, 11)), "fired"),
    ("latency > p90(10)", 9, list(range(1, 11)), "passed"),
    ("rows < min(5) - (max(5) - min(5))", 5, [10, 12, 14], "fired"),
    ("rows == -1", -1, [], "fired"),
])
def test_a_rule_fires_when_its_condition_holds(text, value, history, outcome):
    assert parse_rule(text).check(value, history).outcome == outcome


def test_a_metric_the_rule_watches_and_the_run_did_not_report_fires():
    check = parse_rule("rows < 1000").check(None, [5000, 5000])
    assert check.outcome == "fired"
    assert "rows was not reported" in check.message


def test_a_statistic_over_too_few_runs_is_not_known_yet():
    rule = parse_rule("duration > 2 * median(20)")
    check = rule.check(1000, [1, 1])  # a new job: two runs so far
    assert check.outcome == "unknown"
    assert "median(20) needs 3 earlier runs" in check.message and "there are 2" in check.message
    assert rule.check(1000, [1, 1, 1]).outcome == "fired"
    # a window smaller than the minimum needs only itself
    assert parse_rule("duration > 2 * max(1)").check(3, [1]).outcome == "fired"
    assert parse_rule("x > stddev(2)").check(3, [1]).outcome == "unknown"


def test_division_by_zero_is_unknown_not_an_error():
    assert parse_rule("rows < 1 / (max(3) - min(3))").check(1, [5, 5, 5]).outcome == "unknown"


def test_the_message_shows_the_values():
    check = parse_rule("duration > 2 * median(20)").check(90, [40, 40, 41])
    assert check.message == "duration = 90 > 2 * median(20) = 80"
    check = parse_rule("rows < 1000").check(1500, [])
    assert check.message == "rows = 1500 >= 1000"


def test_the_rule_knows_how_many_earlier_runs_it_needs():
    assert parse_rule("rows < 1000").window == 0
    assert parse_rule("errors > mean(50) + 3 * stddev(20)").window == 50


def test_the_history_is_newest_first_and_only_n_of_it_counts():
    rule = parse_rule("rows < mean(2)")
    assert rule.check(50, [100, 100, 0, 0, 0]).outcome == "fired"  # mean of the newest 2
    assert rule.check(50, [0, 0, 100, 100]).outcome == "passed"


@pytest.mark.parametrize("text, problem", [
    ("", "a comparison"),
    ("rows", "ends too soon"),
    ("rows 1000", "comparison"),
    ("1000 > rows", "starts with the metric"),
    ("median(5) > 3", "not a statistic"),
    ("rows < ", "ends too soon"),
    ("rows < 10 furlongs", "unknown unit 'furlongs'"),
    ("rows < average(5)", "'average' is not a statistic"),
    ("rows < median", "takes the number of earlier runs"),
    ("rows < median(0)", "whole number of runs from 1"),
    ("rows < median(2.5)", "whole number of runs"),
    ("rows < median(5000)", "from 1 to 1000"),
    ("rows < (3 + 4", "not closed"),
    ("rows < 3 4", "unexpected '4'"),
    ("rows < 3 ; rm -rf /", "unexpected"),
    ("rows << 3", "expected a number"),
    ("rows < 1e999", "not a finite number"),
])
def test_a_bad_rule_is_refused_naming_the_rule_and_the_problem(text, problem):
    with pytest.raises(RuleError) as err:
        parse_rule(text)
    assert problem in str(err.value)
    if text:
        assert repr(text.strip()) in str(err.value)


def test_too_many_rules_are_refused():
    parse_rules(["rows < 1"] * MAX_RULES)
    with pytest.raises(RuleError, match=f"at most {MAX_RULES}"):
        parse_rules(["rows < 1"] * (MAX_RULES + 1))


def test_a_long_rule_is_refused_without_echoing_all_of_it():
    with pytest.raises(RuleError, match="longer than 200") as err:
        parse_rule("rows < " + "1 + " * 100 + "1")
    assert len(str(err.value)) < 120


def test_the_written_form_keeps_the_meaning():
    for text in ("rows < 10 - (2 - 1)", "rows < (1 + 2) * 3", "rows < 8 / (4 / 2)",
                 "rows < -(1 + 2)"):
        rule = parse_rule(text)
        again = parse_rule(f"rows < {rule.bound.text}")
        assert again.check(0, []).message == rule.check(0, []).message


@pytest.mark.parametrize("name", ["mean", "median", "min", "max", "stddev", "p90", "p50",
                                  "p10", "p99"])
def test_statistics_agree_with_pythons(name):
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0]
    expected = {"mean": statistics.mean(values), "median": statistics.median(values),
                "min": min(values), "max": max(values), "stddev": statistics.stdev(values)}
    if name.startswith("p"):
        # statistics.quantiles' "inclusive" method is numpy's linear interpolation
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        expected[name] = cuts[int(name[1:]) - 1]
    assert statistic(name, values) == pytest.approx(expected[name])
    assert statistic(name, []) is None
