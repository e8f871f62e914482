"""domain/policy.py: the scheduling rules with plain numbers for clocks (no store)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_cron_ext.domain.models import Policy
from hermes_cron_ext.domain.policy import (
    MISFIRE_GRACE,
    MISSED_CAP,
    after_run,
    on_overlap,
    plan_slot,
    retry_delay,
    start_refusal,
    upstream_note,
)

T0 = 1_800_000_000.0  # a whole minute


def every(period: float):
    """A schedule firing at every multiple of *period*: (next_after, latest_by)."""
    return (lambda t: (t // period + 1) * period), (lambda t: (t // period) * period)


def plan(policy: Policy, slot: float, now: float, period: float = 60.0):
    return plan_slot(policy, slot, now, *every(period))


def test_a_slot_claimed_on_time_runs_once():
    runs, nxt = plan(Policy(), T0, T0 + 1)
    assert [(d.slot, d.trigger, d.status) for d in runs] == [(T0, "schedule", "queued")]
    assert nxt == T0 + 60


@pytest.mark.parametrize("misfire, queued, skipped", [
    ("latest", [T0 + 240], [T0, T0 + 60, T0 + 120, T0 + 180]),
    ("all", [T0, T0 + 60, T0 + 120, T0 + 180, T0 + 240], []),
    ("skip", [], [T0, T0 + 60, T0 + 120, T0 + 180, T0 + 240]),
])
def test_after_downtime_the_misfire_policy_picks_what_runs(misfire, queued, skipped):
    runs, nxt = plan(Policy(misfire=misfire), T0, T0 + 270)  # down 4.5 min
    assert [d.slot for d in runs if d.status == "queued"] == queued
    assert [d.slot for d in runs if d.status == "skipped"] == skipped
    assert all("missed: no ticker ran from" in d.reason for d in runs if d.status == "skipped")
    assert {d.trigger for d in runs if d.status == "queued"} <= {"catchup"}
    assert nxt == T0 + 300


def test_a_long_outage_lists_at_most_the_cap_then_the_latest_slot():
    runs, _ = plan(Policy(misfire="skip"), T0, T0 + 10 * 86400)
    assert len(runs) == MISSED_CAP + 1
    assert runs[-1].slot == T0 + 10 * 86400  # the latest slot, not the 100th
    assert "(older slots not listed)" in runs[0].reason


def test_the_starting_deadline_skips_what_is_too_late():
    runs, _ = plan(Policy(misfire="all", starting_deadline=100), T0, T0 + 150)
    assert [(d.slot, d.status) for d in runs] == [
        (T0, "skipped"), (T0 + 60, "queued"), (T0 + 120, "queued")]
    assert runs[0].reason == "deadline passed: 150 s late, starting deadline is 100 s"


@settings(max_examples=300, deadline=None)
@given(misfire=st.sampled_from(["latest", "all", "skip"]),
       period=st.sampled_from([1.0, 60.0, 3600.0]),
       late=st.floats(min_value=0, max_value=30 * 86400))
def test_every_late_claim_accounts_for_each_slot_once(misfire, period, late):
    """Whatever the lateness: slots strictly increasing, none in the future, the first
    is the claimed one, the next is after now, and the misfire policy decides how many
    run (all: each listed one, latest: one, skip: none) — nothing silently dropped."""
    now = T0 + late
    runs, nxt = plan(Policy(misfire=misfire), T0, now, period)
    slots = [d.slot for d in runs]
    assert slots[0] == T0 and slots == sorted(set(slots)) and slots[-1] <= now
    assert nxt > now
    queued = [d for d in runs if d.status == "queued"]
    on_time = late <= MISFIRE_GRACE and T0 + period > now
    if on_time:
        assert len(runs) == 1 and queued
    elif misfire == "all":
        assert len(queued) == len(runs)
    elif misfire == "latest":
        assert [d.slot for d in queued] == [slots[-1]]
    else:
        assert queued == []
    assert len(runs) <= MISSED_CAP + 1


def refuse(**kw):
    base = dict(status="queued", cancel_requested=False, trigger="schedule",
                job_state="scheduled", job_enabled=True, overlap="forbid",
                other_running=None, waiting=lambda: None)
    return start_refusal(**{**base, **kw})


@pytest.mark.parametrize("kw, why", [
    ({}, None),
    ({"status": "lost"}, "run is lost"),
    ({"cancel_requested": True}, "cancelled before it started"),
    ({"job_state": None}, "job was deleted"),
    ({"job_state": "paused"}, "job is paused"),
    ({"job_state": "paused", "trigger": "manual"}, None),  # run now overrides a pause
    ({"job_enabled": False}, "job is disabled"),
    ({"other_running": "r_1"}, "overlap: run r_1 was still running"),
    ({"other_running": "r_1", "overlap": "allow"}, None),
    ({"other_running": "r_1", "overlap": "queue"}, None),
    ({"other_running": "r_1", "overlap": "queue", "waiting": lambda: "r_2"},
     "overlap: run r_2 is already waiting"),
])
def test_start_refusals(kw, why):
    assert refuse(**kw) == why


@pytest.mark.parametrize("trigger", ["upstream", "backfill"])
@pytest.mark.parametrize("overlap", ["forbid", "queue"])
def test_a_run_owed_to_its_slot_waits_instead_of_being_skipped(trigger, overlap):
    """Triggered by upstreams or by a backfill, nothing asks for that slot again: under
    forbid (and queue, however many wait) it waits for the running run."""
    assert on_overlap(overlap, trigger) == "wait"
    assert refuse(trigger=trigger, overlap=overlap, other_running="r_1",
                  waiting=lambda: "r_2") is None


@pytest.mark.parametrize("trigger", ["schedule", "catchup", "retry", "manual", "reboot"])
def test_other_runs_keep_their_overlap_rule(trigger):
    assert on_overlap("forbid", trigger) == "skip"
    assert on_overlap("queue", trigger) == "wait"
    assert refuse(trigger=trigger, overlap="forbid", other_running="r_1") == (
        "overlap: run r_1 was still running")


@pytest.mark.parametrize("trigger", ["schedule", "upstream", "backfill"])
def test_allow_and_replace_do_not_wait(trigger):
    assert on_overlap("allow", trigger) == "run"
    assert on_overlap("replace", trigger) == "replace"


def test_the_waiting_query_is_asked_only_when_it_matters():
    asked = []
    refuse(overlap="queue", waiting=lambda: asked.append(1))
    assert asked == []


def finish(policy, status, attempt=1, failures=0, state="scheduled"):
    return after_run(policy, status=status, attempt=attempt, exit_code=1, reason="boom",
                     failures=failures, state=state, state_reason=None)


def test_retries_then_the_failure_counts_then_the_breaker_trips():
    policy = Policy(retries=2, max_failures=2)
    assert finish(policy, "failed", attempt=1).retry
    assert finish(policy, "failed", attempt=2).retry
    last = finish(policy, "failed", attempt=3)
    assert not last.retry and last.consecutive_failures == 1 and last.state == "scheduled"
    tripped = finish(policy, "failed", attempt=3, failures=1)
    assert tripped.tripped and tripped.state == "blocked"
    assert tripped.state_reason == "2 consecutive failures; last: boom"
    assert finish(policy, "succeeded", failures=1).consecutive_failures == 0


def test_timeouts_retry_only_when_asked_and_paused_jobs_are_not_blocked():
    assert not finish(Policy(retries=3), "timed_out").retry
    assert finish(Policy(retries=3, retry_on_timeout=True), "timed_out").retry
    paused = finish(Policy(max_failures=1), "failed", state="paused")
    assert not paused.tripped and paused.state == "paused"
    assert not finish(Policy(max_failures=0), "failed", failures=99).tripped  # 0: never


@settings(max_examples=200, deadline=None)
@given(delay=st.floats(1, 1000), cap=st.floats(1, 10000), attempt=st.integers(1, 40),
       u=st.floats(0.8, 1.2))
def test_retry_delay_grows_and_stays_under_its_cap(delay, cap, attempt, u):
    policy = Policy(retry_delay=delay, retry_max_delay=cap)
    got = retry_delay(policy, attempt, lambda a, b: u)
    assert got == pytest.approx(min(cap, delay * 2 ** (attempt - 1)) * u)
    assert got <= cap * 1.2


def test_a_ticker_that_knows_why_it_is_late_says_so_instead_of_no_ticker_ran():
    """Slots missed while the ticker could not write (disk full) are not blamed on a
    missing ticker."""
    cause = "the ticker (daemon, pid 7) could not write to the store since ...: disk full"
    runs, _ = plan_slot(Policy(), T0, T0 + 270, *every(60.0), cause=cause)
    skipped = [d.reason for d in runs if d.status == "skipped"]
    assert skipped and all(cause in r and "no ticker ran" not in r for r in skipped)


def test_a_held_job_is_told_its_upstreams_do_not_trigger_it():
    ups = [("extract", "success", "schedule")]
    assert upstream_note(enabled=False, state="disabled", upstreams=ups) == (
        "disabled: upstream runs do not trigger it")
    assert upstream_note(enabled=True, state="paused", upstreams=ups) == (
        "paused: upstream runs do not trigger it")
    assert upstream_note(enabled=True, state="scheduled", upstreams=ups) is None
    assert upstream_note(enabled=False, state="disabled", upstreams=[]) is None


def test_a_fan_in_states_its_rule_and_why_manual_runs_never_trigger_it():
    scheduled = [("extract", "success", "schedule"), ("load", "success", "backfill")]
    assert upstream_note(enabled=True, state="scheduled", upstreams=scheduled) == (
        "runs once extract and load have both succeeded for the same slot")
    manual = [("extract", "success", "manual"), ("load", "success", "manual")]
    assert upstream_note(enabled=True, state="scheduled", upstreams=manual) == (
        "runs once extract and load have both succeeded for the same slot; the last runs "
        "of extract and load were manual, and a manual run's slot is the instant it was "
        "asked for, so manual runs never trigger it (their scheduled or backfilled runs do)")
    assert upstream_note(enabled=True, state="scheduled", upstreams=manual[:1] + scheduled[1:]
                         ).endswith("; the last run of extract was manual, and a manual "
                                    "run's slot is the instant it was asked for, so manual "
                                    "runs never trigger it (their scheduled or backfilled "
                                    "runs do)")
    mixed = [("a", "success", None), ("b", "failure", None), ("c", "completion", None)]
    assert upstream_note(enabled=True, state="scheduled", upstreams=mixed) == (
        "runs once a has succeeded, b has failed and c has ended for the same slot")
