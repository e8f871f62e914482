"""Alert rules checked when a run ends, in its final status's transaction: a rule that
fires marks the run (``runs.alerts``) and raises ``run.alert``; the first run after it
whose rules pass raises ``run.recovered``; a rule whose statistic has too few earlier
runs is unknown (neither); skipped and cancelled runs are not checked; a job without
rules is as before.

Every test runs against every store (SQLite and PostgreSQL), on a fake clock.
"""

from __future__ import annotations

import sqlite3

from hermes_cron_ext.domain.jobspec import validate_changes
from tests.conftest import make_job
from tests.store.contract import EVERY_BACKEND

pytestmark = EVERY_BACKEND


def ended(store, clock, job: str, took: float = 1.0, status: str = "succeeded",
          metrics: list | None = None):
    """A run of *job* that ran *took* seconds and ended with *status* and *metrics*."""
    run = store.request_run(job)
    store.attach_run(run.id, 1, None, "h")
    store.mark_running(run.id, clock(), 2)
    clock.advance(took)
    code = 0 if status == "succeeded" else None if status in ("lost", "cancelled") else 1
    done = store.finish_run(run.id, status, code, None, None, metrics)
    clock.advance(60)
    return done


def alert_events(store) -> list[tuple[str, str | None, dict]]:
    return [(e.type, e.run_id, e.data) for e in store.events_since(0, 10_000)
            if e.type in ("run.alert", "run.recovered")]


def test_a_rule_on_a_reported_metric_fires_marks_the_run_and_recovers(store, clock):
    job = make_job(store, "rows", "@daily", overlap="allow", alerts=["rows < 10"])
    low = ended(store, clock, "rows", metrics=[["rows", 5, ""]])
    fired = [{"rule": "rows < 10", "message": "rows = 5 < 10"}]
    assert low.alerts == fired
    assert store.get_run(low.id).to_json()["alerts"] == fired
    assert [r.alerts for r in store.list_runs("rows").items] == [fired]
    assert alert_events(store) == [("run.alert", low.id, {
        "job": "rows", "status": "succeeded", "alerts": fired})]
    # a failed run that did not report the metric fires too
    silent = ended(store, clock, "rows", status="failed")
    assert silent.alerts == [{"rule": "rows < 10",
                              "message": "rows was not reported (rule: rows < 10)"}]
    ok = ended(store, clock, "rows", metrics=[["rows", 12, ""]])
    assert ok.alerts is None
    again = ended(store, clock, "rows", metrics=[["rows", 13, ""]])
    assert again.alerts is None
    assert [(t, r) for t, r, _ in alert_events(store)] == [
        ("run.alert", low.id), ("run.alert", silent.id), ("run.recovered", ok.id)]
    assert alert_events(store)[-1][2] == {"job": "rows", "status": "succeeded",
                                          "previous_run": silent.id,
                                          "rules": ["rows < 10"]}
    assert {e.job_id for e in store.events_since(0, 10_000)
            if e.type.startswith("run.")} == {job.id}


def test_a_statistic_is_unknown_until_its_earlier_runs_exist(store, clock):
    make_job(store, "slow", "@daily", overlap="allow", alerts=["duration > 2 * median(3)"])
    # slow, but nothing to compare with: unknown, so neither alert nor recovery
    first = ended(store, clock, "slow", took=10)
    assert first.alerts is None
    assert [ended(store, clock, "slow", took=1).alerts for _ in range(3)] == [None] * 3
    assert alert_events(store) == []  # the third passed; nothing had alerted
    slow = ended(store, clock, "slow", took=10)
    assert slow.alerts == [{"rule": "duration > 2 * median(3)",
                            "message": "duration = 10 > 2 * median(3) = 2"}]
    fast = ended(store, clock, "slow", took=1)
    assert fast.alerts is None  # median(10, 1, 1) = 1: passes
    assert [(t, r) for t, r, _ in alert_events(store)] == [
        ("run.alert", slow.id), ("run.recovered", fast.id)]


def test_unknown_rules_do_not_recover_an_alert(store, clock):
    make_job(store, "u", "@daily", overlap="allow",
             alerts=["rows < 1", "rows > 2 * median(5)"])
    bad = ended(store, clock, "u", metrics=[["rows", 0, ""]])
    assert [a["rule"] for a in bad.alerts] == ["rows < 1"]  # the median: unknown
    _change(store, "u", alerts=["rows > 2 * median(5)"])
    # its only rule is unknown (one earlier value): no recovery
    assert ended(store, clock, "u", metrics=[["rows", 9, ""]]).alerts is None
    assert [t for t, _, _ in alert_events(store)] == ["run.alert"]


def _change(store, name: str, **changes):
    store.update_job(name, validate_changes(store.get_job(name), changes))


def test_skipped_and_cancelled_runs_are_not_checked(store, clock):
    make_job(store, "sc", "@daily", overlap="allow", alerts=["rows < 10"])
    cancelled = ended(store, clock, "sc", status="cancelled")
    skipped = store.request_run("sc")
    skipped = store.finish_run(skipped.id, "skipped", None, "overlap")
    assert (cancelled.alerts, skipped.alerts) == (None, None)
    assert alert_events(store) == []
    # timed out and lost runs are
    timed = ended(store, clock, "sc", status="timed_out", metrics=[["rows", 1, ""]])
    lost = ended(store, clock, "sc", status="lost")
    assert timed.alerts and lost.alerts
    assert [r for _, r, _ in alert_events(store)] == [timed.id, lost.id]


def test_a_job_without_rules_is_unchanged(store, clock):
    make_job(store, "plain", "@daily", overlap="allow")
    statements: list[str] = []
    if isinstance(store.db, sqlite3.Connection):  # the statements a run's end costs
        store.db.set_trace_callback(statements.append)
    try:
        run = ended(store, clock, "plain", metrics=[["rows", 5, ""]])
    finally:
        if isinstance(store.db, sqlite3.Connection):
            store.db.set_trace_callback(None)
    assert run.alerts is None and run.to_json()["alerts"] is None
    assert alert_events(store) == []
    assert not [s for s in statements if "name IN" in s or "SET alerts" in s or "id <>" in s]
    assert store.get_job("plain").policy.alerts == []


def test_a_changed_job_keeps_or_clears_its_rules(store, clock):
    make_job(store, "e", "@daily", alerts=["rows < 10", " duration > 1h "])
    assert store.get_job("e").policy.alerts == ["rows < 10", "duration > 1h"]
    _change(store, "e", retries=2)
    assert store.get_job("e").policy.alerts == ["rows < 10", "duration > 1h"]
    _change(store, "e", alerts=[])
    assert store.get_job("e").policy.alerts == []
    assert ended(store, clock, "e").alerts is None
