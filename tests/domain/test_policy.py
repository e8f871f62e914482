"""domain/policy.py: the scheduling rules with plain numbers for clocks (no store)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_cron_ext.domain.models import Policy
from hermes_cron_ext.domain.policy import (
    KEEP_FAILURES,
    KEEP_RUNS,
    MAX_AGE,
    MISFIRE_GRACE,
    MISSED_CAP,
    WAITING_PHASE,
    ActiveRun,
    OverlapAction,
    UpstreamEnd,
    after_run,
    backfill_slots,
    backfill_step,
    catchup_ahead,
    fan_in,
    fire_at,
    first_waiting,
    manual_run_refusal,
    on_overlap,
    overlapping_run,
    plan_slot,
    retention_limits,
    retry_delay,
    runs_to_delete,
    start_plan,
    start_refusal,
    state_after_claim,
    turn_ahead,
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


def test_jitter_spreads_a_slot_and_a_job_with_no_next_slot_is_disabled():
    assert fire_at(Policy(), T0, lambda a, b: 99.0) == T0  # no jitter: the instant
    assert fire_at(Policy(jitter=30), T0, lambda a, b: b / 2) == T0 + 15
    assert state_after_claim(T0 + 60) == ("scheduled", None)
    assert state_after_claim(None) == ("disabled", "no more fire times")


def test_forbid_refuses_a_manual_run_while_the_job_runs():
    asked = []

    def running_run():
        asked.append(1)
        return "r_1"
    assert manual_run_refusal("forbid", job_name="etl", running=1,
                              running_run=running_run) == (
        "job 'etl' is running (run r_1) and its overlap policy is forbid")
    assert manual_run_refusal("forbid", job_name="etl", running=2,
                              running_run=lambda: None) == (
        "job 'etl' is running (run ?) and its overlap policy is forbid")
    asked.clear()
    assert manual_run_refusal("forbid", job_name="etl", running=0,
                              running_run=running_run) is None
    for overlap in ("allow", "replace", "queue"):  # taken: its supervisor applies on_overlap
        assert manual_run_refusal(overlap, job_name="etl", running=3,
                                  running_run=running_run) is None
    assert asked == []  # the running run is looked up only for the refusal


@pytest.mark.parametrize("trigger, overlap, plan", [
    ("catchup", "forbid", (True, "skip", False)),
    ("catchup", None, (True, "skip", False)),  # no overlap recorded: forbid
    ("catchup", "queue", (True, "wait", False)),
    ("catchup", "replace", (True, "replace", False)),
    ("catchup", "allow", (False, "run", False)),  # allowed to overlap: no turns
    ("schedule", "forbid", (False, "skip", False)),
    ("schedule", "queue", (False, "wait", False)),
    ("manual", "replace", (False, "replace", False)),
    ("upstream", "forbid", (False, "wait", True)),  # owed: waits, then checks again
    ("backfill", "queue", (False, "wait", True)),
    ("backfill", "allow", (False, "run", True)),
])
def test_what_a_supervisor_does_before_its_run_starts(trigger, overlap, plan):
    got = start_plan(trigger, overlap)
    assert (got.after_catchups, got.overlap, got.recheck) == plan
    assert isinstance(got.overlap, OverlapAction)


def test_runs_of_the_same_backfill_do_not_overlap_each_other():
    running = [("r_1", "b_1"), ("r_2", None), ("r_3", "b_2")]
    assert overlapping_run("r_9", None, running) == "r_1"  # not a backfill: any counts
    assert overlapping_run("r_9", "b_1", running) == "r_2"  # its own backfill's: not
    assert overlapping_run("r_9", "b_1", running[:1]) is None
    assert overlapping_run("r_1", "b_9", running) == "r_2"  # never itself
    assert overlapping_run("r_2", None, running[1:2]) is None


def test_under_queue_another_run_waits_only_when_its_phase_says_so():
    queued = [("r_1", None), ("r_2", "catch-up: after run r_0"),
              ("r_3", WAITING_PHASE.format("r_0"))]
    assert first_waiting("r_9", queued) == "r_3"
    assert first_waiting("r_3", queued) is None  # not itself
    assert first_waiting("r_9", queued[:2]) is None


def active(rid, status="queued", trigger="schedule", slot=None, queued=0.0, pid=1,
           phase=None, backfill=None):
    return ActiveRun(rid, status, trigger, slot, queued, pid, phase, backfill)


def test_catch_ups_run_one_after_another_oldest_first():
    me = active("r_3", trigger="catchup", slot=T0 + 120)
    older = [active("r_2", trigger="catchup", slot=T0 + 60),
             active("r_1", trigger="catchup", slot=T0)]
    later = active("r_4", trigger="catchup", slot=T0 + 180)
    assert catchup_ahead(me, older + [later]) == "r_1"  # the earliest earlier slot
    assert catchup_ahead(older[1], older + [me, later]) is None  # the oldest: its turn
    assert catchup_ahead(me, [later, active("r_5", slot=T0)]) is None  # not catch-ups
    running = active("r_0", status="running", trigger="manual", slot=T0 + 999)
    assert catchup_ahead(me, older + [running]) == "r_0"  # a running run comes first
    assert catchup_ahead(older[1], [running]) == "r_0"
    assert catchup_ahead(me, [me]) is None


def test_waiting_runs_take_their_turns_in_queue_order():
    me = active("r_5", trigger="upstream", queued=T0 + 10)
    first = active("r_2", trigger="upstream", queued=T0)
    tie = active("r_4", trigger="backfill", queued=T0 + 10)  # same instant: lower id first
    waits = active("r_3", trigger="schedule", queued=T0 + 5, phase=WAITING_PHASE.format("x"))
    assert turn_ahead(me, [tie, waits, first]) == "r_2"
    assert turn_ahead(me, [tie, waits]) == "r_3"
    assert turn_ahead(me, [tie]) == "r_4"
    assert turn_ahead(first, [me, tie, waits]) is None  # queued after it: behind it
    unheld = first._replace(pid=None)  # no supervisor holds it yet: not waiting
    not_waiting = waits._replace(phase=None)  # a queued scheduled run that does not wait
    assert turn_ahead(me, [unheld, not_waiting]) is None
    running = active("r_9", status="running", queued=T0 + 99)
    assert turn_ahead(me, [first, running]) == "r_9"  # a running run first
    assert turn_ahead(first, [running]) == "r_9"
    ended = active("r_1", status="succeeded", queued=0.0)
    assert turn_ahead(me, [ended]) is None


def test_a_backfill_run_does_not_wait_for_its_own_backfill():
    me = active("r_5", trigger="backfill", queued=T0 + 10, backfill="b_1")
    sibling = active("r_1", status="running", trigger="backfill", backfill="b_1")
    sibling_waits = active("r_2", trigger="backfill", queued=T0, backfill="b_1")
    other = active("r_3", status="running", trigger="backfill", backfill="b_2")
    assert turn_ahead(me, [sibling, sibling_waits]) is None
    assert turn_ahead(me, [sibling, other]) == "r_3"
    alone = me._replace(backfill_id=None)
    assert turn_ahead(alone, [sibling]) == "r_1"


def test_a_backfill_leaves_out_slots_that_ran_run_or_wait():
    slots = [T0, T0 + 60, T0 + 120, T0 + 180, T0 + 240, T0 + 300]
    runs = [(T0, "succeeded", "schedule"), (T0 + 60, "running", "backfill"),
            (T0 + 120, "queued", "catchup"), (T0 + 180, "failed", "schedule"),
            (T0 + 240, "succeeded", "manual"), (T0 + 300, "succeeded", "upstream"),
            (None, "queued", "manual")]
    assert backfill_slots(slots, runs) == [T0 + 180, T0 + 240, T0 + 300]
    assert backfill_slots(slots[::-1], []) == slots[::-1]  # the order given
    assert backfill_slots(slots, [(T0, "queued", "retry")]) == slots[1:]


def test_a_backfill_starts_up_to_its_limit_and_ends_when_its_last_run_has():
    step = backfill_step(slots=5, next_slot=0, active=0, max_parallel=2)
    assert (list(step.start), step.next_slot, step.done) == ([0, 1], 2, False)
    step = backfill_step(slots=5, next_slot=2, active=1, max_parallel=2)
    assert (list(step.start), step.next_slot, step.done) == ([2], 3, False)
    step = backfill_step(slots=5, next_slot=5, active=1, max_parallel=2)
    assert (list(step.start), step.done) == ([], False)  # its last run still runs
    step = backfill_step(slots=5, next_slot=5, active=0, max_parallel=2)
    assert (list(step.start), step.done) == ([], True)
    assert backfill_step(slots=0, next_slot=0, active=0, max_parallel=3).done  # nothing
    step = backfill_step(slots=5, next_slot=1, active=3, max_parallel=2)  # over its limit
    assert (list(step.start), step.next_slot, step.done) == ([], 1, False)
    step = backfill_step(slots=5, next_slot=1, active=1, max_parallel=2, job_exists=False)
    assert (list(step.start), step.next_slot, step.done) == ([], 1, True)  # job gone


@settings(max_examples=200, deadline=None)
@given(slots=st.integers(0, 30), limit=st.integers(1, 5),
       ends=st.lists(st.integers(0, 10), max_size=200))
def test_a_backfill_runs_each_slot_once_never_more_than_its_limit_at_once(
        slots, limit, ends):
    """Its steps as the store takes them (created, then after each end of one of its
    runs, whichever ends): every slot starts once, in order, at most *limit* at once,
    and it is done exactly when every slot has run."""
    started, running = [], []
    step = backfill_step(slots=slots, next_slot=0, active=0, max_parallel=limit)
    for pick in [*ends, *[0] * (slots + 1)]:
        started += step.start
        running += step.start
        assert len(running) <= limit
        if step.done:
            break
        running.pop(pick % len(running))  # one of its runs ends
        step = backfill_step(slots=slots, next_slot=step.next_slot, active=len(running),
                             max_parallel=limit)
    assert step.done and started == list(range(slots)) and running == []


def end(job, status="succeeded", attempt=1, finished=T0, run=None):
    return UpstreamEnd(job, job.upper(), run or f"r_{job}{attempt}", status,
                       0 if status == "succeeded" else 1, attempt, finished)


def test_one_upstream_triggers_the_jobs_that_asked_for_its_outcome():
    after = [{"job": "a", "on": "success"}]
    assert fan_in(after=after, enabled=True, state="scheduled", ended=end("a"),
                  others=[]) == [{"job_id": "a", "job": "A", "run_id": "r_a1",
                                  "status": "succeeded", "exit_code": 0}]
    assert fan_in(after=after, enabled=True, state="scheduled", ended=end("a", "failed"),
                  others=[]) is None
    for on, status in (("failure", "timed_out"), ("failure", "lost"),
                       ("completion", "failed"), ("completion", "succeeded")):
        assert fan_in(after=[{"job": "a", "on": on}], enabled=True, state="scheduled",
                      ended=end("a", status), others=[])
    for status in ("cancelled", "skipped"):  # nothing follows these
        assert fan_in(after=[{"job": "a", "on": "completion"}], enabled=True,
                      state="scheduled", ended=end("a", status), others=[]) is None
    assert fan_in(after=after, enabled=True, state="scheduled", ended=end("b"),
                  others=[]) is None  # not one of its upstreams


@pytest.mark.parametrize("enabled, state", [(False, "disabled"), (True, "paused"),
                                            (True, "blocked")])
def test_a_held_job_is_not_triggered_by_its_upstreams(enabled, state):
    assert fan_in(after=[{"job": "a", "on": "success"}], enabled=enabled, state=state,
                  ended=end("a"), others=[]) is None


def test_a_fan_in_runs_once_every_upstream_has_ended_as_asked_for_the_slot():
    after = [{"job": "a", "on": "success"}, {"job": "b", "on": "success"},
             {"job": "c", "on": "failure"}]

    def fan(ended, others):
        return fan_in(after=after, enabled=True, state="scheduled", ended=ended,
                      others=others)
    assert fan(end("a"), []) is None  # b and c have not ended for this slot
    assert fan(end("a"), [end("b")]) is None
    assert fan(end("a"), [end("b"), end("c")]) is None  # c succeeded: not as asked
    got = fan(end("a"), [end("c", "failed"), end("b")])
    assert [u["run_id"] for u in got] == ["r_a1", "r_b1", "r_c1"]  # ended's first
    got = fan(end("c", "failed"), [end("b"), end("a")])
    assert [u["run_id"] for u in got] == ["r_c1", "r_a1", "r_b1"]
    # each upstream's latest attempt counts: b's retry succeeded after it failed once
    assert fan(end("a"), [end("b", "failed", 1), end("b", "succeeded", 2),
                          end("c", "failed")])[1]["run_id"] == "r_b2"
    assert fan(end("a"), [end("b", "succeeded", 1), end("b", "failed", 2),
                          end("c", "failed")]) is None
    # equal attempts (a scheduled and a backfilled run of one slot): the last to end
    assert fan(end("a"), [end("b", "failed", finished=T0, run="r_s"),
                          end("b", "succeeded", finished=T0 + 5, run="r_bf"),
                          end("c", "failed")])[1]["run_id"] == "r_bf"


def test_retention_keeps_the_newest_runs_and_failures_never_an_active_run():
    """The store's gc case in numbers: 8 successes, 4 failures, 8 successes (oldest
    first) and a queued run; keep 5 runs and 2 failures."""
    statuses = ["succeeded"] * 8 + ["failed"] * 4 + ["succeeded"] * 8
    runs = [(f"r_{i:02d}", st, T0 + i) for i, st in enumerate(statuses)]
    runs.append(("r_q", "queued", T0 + 99))
    newest_first = runs[::-1]
    doomed = runs_to_delete(newest_first, now=T0 + 100, keep_runs=5, keep_failures=2,
                            max_age=MAX_AGE)
    kept = [r for r, _, _ in newest_first if r not in doomed]
    assert kept == ["r_q", "r_19", "r_18", "r_17", "r_16", "r_15", "r_11", "r_10"]
    assert len(doomed) == 20 - 7
    # failures among the newest runs count against keep_failures
    mixed = [("r_3", "failed", T0), ("r_2", "lost", T0), ("r_1", "timed_out", T0),
             ("r_0", "failed", T0)]
    assert runs_to_delete(mixed, now=T0, keep_runs=2, keep_failures=3,
                          max_age=MAX_AGE) == ["r_0"]
    assert runs_to_delete(mixed, now=T0, keep_runs=0, keep_failures=0,
                          max_age=MAX_AGE) == ["r_3", "r_2", "r_1", "r_0"]


def test_retention_drops_what_is_too_old_whatever_the_counts():
    runs = [("r_new", "succeeded", T0), ("r_old", "failed", T0 - MAX_AGE - 1),
            ("r_edge", "succeeded", T0 - MAX_AGE), ("r_active", "running", T0 - 10 * MAX_AGE)]
    assert runs_to_delete(runs, now=T0, keep_runs=KEEP_RUNS, keep_failures=KEEP_FAILURES,
                          max_age=MAX_AGE) == ["r_old"]


def test_a_jobs_own_retention_wins_over_gcs():
    assert retention_limits({}) == (KEEP_RUNS, KEEP_FAILURES) == (50, 10)
    assert MAX_AGE == 30 * 86400
    assert retention_limits({"keep_runs": None, "keep_failures": None}, 5, 2) == (5, 2)
    assert retention_limits({"keep_runs": 0, "keep_failures": 1}, 5, 2) == (0, 1)
    assert retention_limits({"keep_runs": 7}, 5, 2) == (7, 2)
