"""Scheduling policy as pure functions of (job policy, run, now).

What happens to a slot claimed late (misfire, starting deadline, jitter), whether a
manual run is refused, whether a run may start (pause, overlap, cancel) and what it
waits for first (earlier catch-ups, the running run, the runs queued before it), how
many of a backfill's slots start and which slots it leaves out, when a downstream job
runs after its upstreams (fan-in), what a finished run means for its job (retry with
backoff, the circuit breaker), and which ended runs retention keeps. No SQL, no clock
and no I/O here: a store selects the candidate rows, asks these functions, and writes
their answer in the same transaction. So each rule is tested with plain numbers
(tests/domain/test_policy.py), and a second store cannot get one subtly different.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from hermes_cron_ext.domain.models import (
    ACTIVE_STATUSES,
    FAILED_STATUSES,
    JobState,
    Misfire,
    Overlap,
    Policy,
    RunStatus,
    Trigger,
)
from hermes_cron_ext.domain.options import KEEP_FAILURES as KEEP_FAILURES
from hermes_cron_ext.domain.options import KEEP_RUNS as KEEP_RUNS

#: A slot claimed later than this after its instant counts as missed (misfire policy).
MISFIRE_GRACE = 30.0
#: At most this many missed slots are enumerated and recorded one row each.
MISSED_CAP = 100


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class SlotDecision(NamedTuple):
    """One run row to record for a claimed slot."""

    slot: float
    trigger: Trigger  # SCHEDULE or CATCHUP
    status: RunStatus  # QUEUED or SKIPPED
    reason: str | None


def plan_slot(policy: Policy, slot: float, now: float,
              next_after: Callable[[float], float | None],
              latest_by: Callable[[float], float | None],
              cause: str | None = None) -> tuple[list[SlotDecision], float | None]:
    """The runs to record when a job's slot *slot* is claimed at *now*, and its next
    slot after *now*. *next_after(t)*: the job's first slot after t; *latest_by(t)*:
    its last slot at or before t; *cause*: why the claim is late when the claiming
    ticker knows (it could not write to the store), else "no ticker ran" is assumed.

    On time (within MISFIRE_GRACE, no later slot passed): one queued run. Late: every
    missed slot up to *now* is listed (at most MISSED_CAP, then the latest), and the
    misfire policy picks what runs: ``all`` each one (as catch-ups), ``skip`` none,
    ``latest`` (default) only the last. A starting deadline skips what is later than
    it. Nothing is dropped silently: a skipped slot is a row with its reason."""
    following = next_after(slot)
    if now - slot <= MISFIRE_GRACE and (following is None or following > now):
        return [SlotDecision(slot, Trigger.SCHEDULE, RunStatus.QUEUED, None)], following
    missed = [slot]
    t = following
    while t is not None and t <= now and len(missed) < MISSED_CAP:
        missed.append(t)
        t = next_after(t)
    more = t is not None and t <= now
    if more:  # far more slots than we list: jump to the latest one
        latest = latest_by(now)
        if latest is not None and latest > missed[-1]:
            missed.append(latest)
    why = f"missed: no ticker ran at {_iso(missed[0])}"
    if len(missed) > 1:
        why = (f"missed: no ticker ran from {_iso(missed[0])} to {_iso(missed[-1])}"
               + (" (older slots not listed)" if more else ""))
    if cause:
        why = f"missed ({_iso(missed[0])}" + (
            f" to {_iso(missed[-1])}" if len(missed) > 1 else "") + f"): {cause}"
    if policy.misfire == Misfire.ALL:
        out = [SlotDecision(s, Trigger.CATCHUP, RunStatus.QUEUED, None) for s in missed]
    elif policy.misfire == Misfire.SKIP:
        out = [SlotDecision(s, Trigger.SCHEDULE, RunStatus.SKIPPED,
                            why + "; misfire policy is skip")
               for s in missed]
    else:
        out = [SlotDecision(s, Trigger.SCHEDULE, RunStatus.SKIPPED,
                            why + "; only the latest slot runs")
               for s in missed[:-1]]
        out.append(SlotDecision(missed[-1], Trigger.CATCHUP, RunStatus.QUEUED, None))
    deadline = policy.starting_deadline
    if deadline is not None:
        out = [d._replace(status=RunStatus.SKIPPED, reason=f"deadline passed: {now - d.slot:.0f} s "
                          f"late, starting deadline is {deadline:.0f} s")
               if d.status == RunStatus.QUEUED and now - d.slot > deadline else d for d in out]
    return out, next_after(now)


def fire_at(policy: Policy, slot: float,
            uniform: Callable[[float, float], float] = random.uniform) -> float:
    """When a claimed slot's run starts: its instant, plus up to ``jitter`` seconds drawn
    uniformly, so that many jobs on one slot spread out."""
    return slot + (uniform(0, policy.jitter) if policy.jitter else 0.0)


def state_after_claim(next_slot: float | None) -> tuple[str, str | None]:
    """A job's ``(state, state_reason)`` once a slot of it is claimed: scheduled while it
    has a next slot, else disabled (a one-shot ``at`` job that fired, or no fire time
    left)."""
    if next_slot is not None:
        return JobState.SCHEDULED.value, None
    return JobState.DISABLED.value, "no more fire times"


def manual_run_refusal(overlap: str, *, job_name: str, running: int,
                       running_run: Callable[[], str | None]) -> str | None:
    """Why a manual run ("run now") is refused at once (a 409), or None. Under
    ``forbid`` a job with a run running refuses it, rather than queue a run that would
    only be recorded skipped; under the other policies it is queued and its supervisor
    applies :func:`on_overlap`. *running*: how many runs of the job are running;
    *running_run()*: one of them (asked only for the refusal's message)."""
    if overlap != Overlap.FORBID or running <= 0:
        return None
    return (f"job {job_name!r} is running (run {running_run() or '?'}) and its overlap "
            "policy is forbid")


#: Triggers whose run is owed to its slot: nothing will ask for that slot again (the
#: upstream run that queued it has ended; a backfill has moved on to its next slot).
OWED_TRIGGERS = frozenset({Trigger.UPSTREAM.value, Trigger.BACKFILL.value})


class OverlapAction(StrEnum):
    """What a run does about a run of its job that is running (:func:`on_overlap`)."""

    RUN = "run"  # alongside
    WAIT = "wait"  # stays queued until it ends, then takes its turn
    REPLACE = "replace"  # stops it first
    SKIP = "skip"  # recorded skipped, with the reason


def on_overlap(overlap: str | None, trigger: str) -> OverlapAction:
    """What a run does when it finds another run of its job running: ``"skip"`` (it is
    recorded ``skipped`` with the reason), ``"wait"`` (it stays queued until the running
    one ends, then starts; waiting runs start one at a time, in the order they were
    queued), ``"replace"`` (it stops the running one first) or ``"run"`` (alongside).

    The job's overlap policy decides (None: ``forbid``, the default), except for a run
    owed to its slot (triggered by upstreams or by a backfill, :data:`OWED_TRIGGERS`):
    skipping it would lose its slot for good (a pipeline would silently miss a day), so
    under ``forbid`` it waits instead. A scheduled slot keeps ``forbid``'s rule: its
    skipped run is recorded and the next slot comes. Under ``queue`` an owed run waits
    however many already wait."""
    if overlap == Overlap.ALLOW:
        return OverlapAction.RUN
    if overlap == Overlap.REPLACE:
        return OverlapAction.REPLACE
    if overlap == Overlap.QUEUE or trigger in OWED_TRIGGERS:
        return OverlapAction.WAIT
    return OverlapAction.SKIP


class StartPlan(NamedTuple):
    """What a supervisor does between its run's instant and the payload's start."""

    #: first wait while a run of the job runs or a catch-up of an earlier slot is queued
    after_catchups: bool
    #: then, once the start check has passed: what to do about a running run of the job
    overlap: OverlapAction
    #: after waiting its turn (``overlap`` WAIT), check again that its job still wants it
    recheck: bool


def start_plan(trigger: str, overlap: str | None) -> StartPlan:
    """The steps before a run starts. Catch-ups of missed slots (``misfire: all``) are
    claimed together but run one after another, oldest first, unless the job allows
    overlap. A run owed to its slot (:data:`OWED_TRIGGERS`) that waited its turn checks
    again that its job still wants it (paused, disabled or deleted meanwhile)."""
    overlap = overlap or Overlap.FORBID
    return StartPlan(after_catchups=trigger == Trigger.CATCHUP and overlap != Overlap.ALLOW,
                     overlap=on_overlap(overlap, trigger),
                     recheck=trigger in OWED_TRIGGERS)


def overlaps(backfill_id: str | None, other_backfill_id: str | None) -> bool:
    """Whether another running run of the same job counts as overlap for a run: always,
    except a run of the run's own backfill, whose limit is its own (``max_parallel``,
    :func:`backfill_step`)."""
    return backfill_id is None or other_backfill_id != backfill_id


def overlapping_run(run_id: str, backfill_id: str | None,
                    running: Iterable[tuple[str, str | None]]) -> str | None:
    """The first of *running* (``(id, backfill_id)`` of the job's running runs) that the
    run *run_id* overlaps (:func:`overlaps`), or None."""
    return next((other for other, other_backfill in running
                 if other != run_id and overlaps(backfill_id, other_backfill)), None)


#: The phase a run's supervisor heartbeats while the run waits its turn (overlap
#: ``queue``, or owed to its slot), while a catch-up waits for the one before it, and
#: while a run waits for the run it replaces to end.
WAITING_PHASE = "waiting for run {}"
CATCHUP_PHASE = "catch-up: after run {}"
REPLACING_PHASE = "replacing run {}"


def is_waiting(phase: str | None) -> bool:
    """Whether a queued run's phase says it waits its turn (:data:`WAITING_PHASE`)."""
    return phase is not None and phase.startswith("waiting")


def first_waiting(run_id: str, queued: Iterable[tuple[str, str | None]]) -> str | None:
    """Another of the job's queued runs (``(id, phase)``) that waits its turn, or None:
    under ``queue`` at most one waits."""
    return next((other for other, phase in queued if other != run_id and is_waiting(phase)),
                None)


class ActiveRun(NamedTuple):
    """What the waiting rules read of a queued or running run (a store selects these
    columns, in this order)."""

    id: str
    status: str
    trigger: str
    scheduled_for: float | None
    queued_at: float
    pid: int | None  # its supervisor, once one holds it
    phase: str | None
    backfill_id: str | None


def _slot_key(slot: float | None) -> float:
    return float("-inf") if slot is None else slot


def catchup_ahead(run: ActiveRun, others: Iterable[ActiveRun]) -> str | None:
    """The run a catch-up waits for (:attr:`StartPlan.after_catchups`): a running run of
    its job, else the earliest of its job's catch-ups still queued for an earlier slot;
    None: its turn. *others*: the job's queued and running runs."""
    def before(o: ActiveRun) -> bool:
        if o.id == run.id:
            return False
        if o.status == RunStatus.RUNNING:
            return True
        return (o.status == RunStatus.QUEUED and o.trigger == Trigger.CATCHUP
                and o.scheduled_for is not None and run.scheduled_for is not None
                and o.scheduled_for < run.scheduled_for)
    ahead = [o for o in others if before(o)]
    if not ahead:
        return None
    return min(ahead, key=lambda o: (o.status != RunStatus.RUNNING,
                                     _slot_key(o.scheduled_for))).id


def turn_ahead(run: ActiveRun, others: Iterable[ActiveRun]) -> str | None:
    """The run a waiting run (:attr:`OverlapAction.WAIT`) waits for: a running run of its
    job that it overlaps (:func:`overlaps`), else the first run of the job queued before
    it that waits too (held by a supervisor, and owed to its slot or waiting its turn);
    None: its turn. A run about to start is still queued, so two waiting runs never both
    find their turn. *others*: the job's queued and running runs."""
    def before(o: ActiveRun) -> bool:
        if (o.id == run.id or o.status not in ACTIVE_STATUSES
                or not overlaps(run.backfill_id, o.backfill_id)):
            return False
        if o.status == RunStatus.RUNNING:
            return True
        return (o.pid is not None and (o.trigger in OWED_TRIGGERS or is_waiting(o.phase))
                and (o.queued_at, o.id) < (run.queued_at, run.id))
    ahead = [o for o in others if before(o)]
    if not ahead:
        return None
    return min(ahead, key=lambda o: (o.status != RunStatus.RUNNING, o.queued_at, o.id)).id


def start_refusal(*, status: str, cancel_requested: bool, trigger: str,
                  job_state: str | None, job_enabled: bool, overlap: str | None,
                  other_running: str | None,
                  waiting: Callable[[], str | None]) -> str | None:
    """Why a run must not start now, or None. *other_running*: a running run of the
    same job; *waiting()*: another run of the job already waiting its turn (asked only
    when it matters: overlap ``queue`` with a run running). Whether a run that may start
    must first wait for the running one: :func:`on_overlap`."""
    if status != RunStatus.QUEUED:
        return f"run is {status}"
    if cancel_requested:
        return "cancelled before it started"
    if job_state is None:
        return "job was deleted"
    held = job_state in (JobState.PAUSED, JobState.BLOCKED) or not job_enabled
    if trigger != Trigger.MANUAL and held:
        return f"job is {job_state if job_enabled else 'disabled'}"
    if other_running is None:
        return None
    action = on_overlap(overlap, trigger)
    if action == OverlapAction.SKIP:
        return f"overlap: run {other_running} was still running"
    if action == OverlapAction.WAIT and trigger not in OWED_TRIGGERS:  # queue: one waits
        ahead = waiting()
        if ahead:
            return f"overlap: run {ahead} is already waiting"
    return None


#: The triggers of runs that stand for a slot of the job's schedule, and the statuses
#: in which such a run holds it (it succeeded, runs or waits): a backfill leaves out
#: the slots that have one, so running the same backfill again resumes it.
SLOT_TRIGGERS = (Trigger.SCHEDULE.value, Trigger.CATCHUP.value, Trigger.RETRY.value,
                 Trigger.BACKFILL.value)
SLOT_HELD_STATUSES = (RunStatus.QUEUED.value, RunStatus.RUNNING.value,
                      RunStatus.SUCCEEDED.value)


def backfill_slots(slots: Sequence[float],
                   runs: Iterable[tuple[float | None, str, str]]) -> list[float]:
    """The slots a backfill runs, in the order given: *slots* less those held by one of
    the job's *runs* (``(scheduled_for, status, trigger)``): a run of one of
    :data:`SLOT_TRIGGERS` in one of :data:`SLOT_HELD_STATUSES`. A failed, cancelled or
    skipped slot runs again; a manual run (its slot is its own instant) holds none."""
    held = {slot for slot, status, trigger in runs
            if status in SLOT_HELD_STATUSES and trigger in SLOT_TRIGGERS}
    return [s for s in slots if s not in held]


class BackfillStep(NamedTuple):
    """What a backfill does now: queue the slots at these indexes, then move on."""

    start: range  # indexes into the backfill's slots, queued now in order
    next_slot: int  # the index of the first slot not queued yet
    done: bool  # every slot has run (or its job is gone): the backfill ends


def backfill_step(*, slots: int, next_slot: int, active: int, max_parallel: int,
                  job_exists: bool = True) -> BackfillStep:
    """A backfill of *slots* slots whose first *next_slot* have been queued, *active*
    of whose runs are queued or running: it queues its next slots while fewer than
    *max_parallel* of its runs are active, and is done once every slot has been queued
    and none of its runs is active, or at once when its job is gone."""
    starts = max(0, min(slots - next_slot, max_parallel - active)) if job_exists else 0
    after = next_slot + starts
    done = not job_exists or (after >= slots and active + starts == 0)
    return BackfillStep(range(next_slot, after), after, done)


def retry_delay(policy: Policy, attempt: int,
                uniform: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds before attempt ``attempt + 1``: exponential from ``retry_delay``, capped at
    ``retry_max_delay``, with +-20 % jitter so failed runs of many jobs spread out."""
    factor: float = 2 ** (attempt - 1)  # an int, or a float for attempt < 1
    delay = min(policy.retry_max_delay, policy.retry_delay * factor)
    return delay * uniform(0.8, 1.2)


@dataclass(frozen=True)
class Outcome:
    """What a finished run means for its job."""

    consecutive_failures: int
    state: str
    state_reason: str | None
    tripped: bool  # the circuit breaker blocked the job just now
    retry: bool  # another attempt follows (see retry_delay)


def after_run(policy: Policy, *, status: str, attempt: int, exit_code: int | None,
              reason: str | None, failures: int, state: str,
              state_reason: str | None) -> Outcome:
    """Retry and circuit breaker. A failure is counted once its retries are spent; a
    success resets the count; ``max_failures`` in a row blocks a scheduled job (0: never)."""
    failed = status in FAILED_STATUSES
    retry = failed and attempt <= policy.retries and (
        status != RunStatus.TIMED_OUT or policy.retry_on_timeout)
    if status == RunStatus.SUCCEEDED:
        failures = 0
    elif failed and not retry:
        failures += 1
    tripped = (failed and not retry and failures >= policy.max_failures > 0
               and state == JobState.SCHEDULED)
    if tripped:
        state = JobState.BLOCKED.value
        state_reason = (f"{failures} consecutive failures; last: "
                        f"{reason or f'exit code {exit_code}'}")
    return Outcome(failures, state, state_reason, tripped, retry)


def upstream_outcome(status: str) -> str | None:
    """What an ended run means to the jobs after it: ``success``, ``failure``, or None
    (cancelled or skipped: nothing follows)."""
    if status == RunStatus.SUCCEEDED:
        return "success"
    if status in FAILED_STATUSES:
        return "failure"
    return None


def upstream_matches(outcome: str | None, on: str) -> bool:
    """Whether an upstream run that ended with *outcome* triggers an ``after`` entry."""
    return outcome is not None and on in (outcome, "completion")


def triggered_by_upstreams(enabled: bool, state: str) -> bool:
    """Whether the runs of a job's upstreams may queue its runs: not when it is disabled,
    paused or blocked (nothing is queued for it to catch up later)."""
    return enabled and state not in (JobState.PAUSED, JobState.BLOCKED)


class UpstreamEnd(NamedTuple):
    """An ended run of an upstream job, for one slot."""

    job_id: str
    job_name: str | None
    run_id: str
    status: str
    exit_code: int | None
    attempt: int = 1
    finished_at: float | None = None

    def entry(self) -> dict[str, Any]:
        """As a downstream run's ``spec["upstream"]`` lists it."""
        return {"job_id": self.job_id, "job": self.job_name, "run_id": self.run_id,
                "status": self.status, "exit_code": self.exit_code}


def fan_in(*, after: list[dict[str, Any]], enabled: bool, state: str, ended: UpstreamEnd,
           others: Iterable[UpstreamEnd]) -> list[dict[str, Any]] | None:
    """Whether the end of *ended* (a run of one of a job's upstreams) queues a run of
    that job for ended's slot, and for which upstream runs (``spec["upstream"]``,
    *ended*'s first); None: not now.

    The job must take upstream runs (:func:`triggered_by_upstreams`) and ask, in
    *after*, for ended's outcome. With several upstreams, every other ``after`` entry
    must have ended as asked for the same slot: *others* are the other upstreams' ended
    runs for that slot, of which each upstream's latest attempt counts (among equal
    attempts, the last to end). The store queues at most one such run per slot."""
    outcome = upstream_outcome(ended.status)
    if not any(a["job"] == ended.job_id and upstream_matches(outcome, a["on"])
               for a in after):
        return None
    if not triggered_by_upstreams(enabled, state):
        return None
    latest: dict[str, UpstreamEnd] = {}
    for other in others:
        have = latest.get(other.job_id)
        if have is None or ((other.attempt, _slot_key(other.finished_at))
                            > (have.attempt, _slot_key(have.finished_at))):
            latest[other.job_id] = other
    upstream = [ended.entry()]
    for a in after:
        if a["job"] == ended.job_id:
            continue
        prior = latest.get(a["job"])
        if prior is None or not upstream_matches(upstream_outcome(prior.status), a["on"]):
            return None
        upstream.append(prior.entry())
    return upstream


#: Retention's defaults (``gc``): per job the newest KEEP_RUNS (50) runs and the newest
#: KEEP_FAILURES (10) failures (both stated in the options schema, ``options.py``, whose
#: ``keep_runs`` / ``keep_failures`` say what their null means), none older than 30 days;
#: a job's ``keep_runs`` / ``keep_failures`` win.
MAX_AGE = 30 * 86400


def retention_limits(policy: dict[str, Any], keep_runs: int = KEEP_RUNS,
                     keep_failures: int = KEEP_FAILURES) -> tuple[int, int]:
    """How many runs and failures a job keeps: its policy's ``keep_runs`` and
    ``keep_failures`` (*policy* as stored) where set, else *keep_runs* / *keep_failures*."""
    runs, failures = policy.get("keep_runs"), policy.get("keep_failures")
    return (keep_runs if runs is None else runs,
            keep_failures if failures is None else failures)


def runs_to_delete(runs: Iterable[tuple[str, str, float]], *, now: float, keep_runs: int,
                   keep_failures: int, max_age: float) -> list[str]:
    """The ids of a job's *runs* (``(id, status, queued_at)``, newest first) that
    retention deletes: it keeps the newest *keep_runs* ended runs plus the newest
    *keep_failures* failures (those among the kept runs count), none queued more than
    *max_age* seconds before *now*; a queued or running run is never deleted."""
    doomed: list[str] = []
    kept = failures = 0
    for run_id, status, queued_at in runs:
        if status in ACTIVE_STATUSES:
            continue
        young = now - queued_at <= max_age
        if young and kept < keep_runs:
            kept += 1
            if status in FAILED_STATUSES:
                failures += 1
        elif young and status in FAILED_STATUSES and failures < keep_failures:
            failures += 1
        else:
            doomed.append(run_id)
    return doomed


_ENDED = {"success": "succeeded", "failure": "failed", "completion": "ended"}


def upstream_note(*, enabled: bool, state: str,
                  upstreams: list[tuple[str, str, str | None]]) -> str | None:
    """Why the runs of a job's upstreams may not trigger it, in words for whoever looks
    at it (graph, show, the panel); None when there is nothing to say. *upstreams*:
    ``(name, on, trigger of its last run)`` for each ``after`` entry.

    The rules stated are :func:`fan_in`'s (which the store applies): a disabled, paused
    or blocked job is not triggered at all; with several upstreams, a run is queued
    when every one of them has ended as asked for the same slot (``scheduled_for``). A
    scheduled, catch-up or backfilled run's slot is its schedule's instant; a manual
    run's is the instant it was asked for, so manual runs of two upstreams never share
    a slot and never trigger a fan-in (one upstream's manual run does trigger the jobs
    that run after it alone)."""
    if not upstreams:
        return None
    if not enabled or state in (JobState.PAUSED, JobState.BLOCKED, JobState.DISABLED):
        return f"{'disabled' if not enabled else state}: upstream runs do not trigger it"
    if len({name for name, _, _ in upstreams}) < 2:
        return None
    ons = {on for _, on, _ in upstreams}
    names = [name for name, _, _ in upstreams]
    if len(ons) == 1:
        both = "both" if len(names) == 2 else "all"
        rule = f"{_and(names)} have {both} {_ENDED[ons.pop()]}"
    else:
        rule = _and([f"{name} has {_ENDED[on]}" for name, on, _ in upstreams])
    note = f"runs once {rule} for the same slot"
    manual = [name for name, _, trigger in upstreams if trigger == Trigger.MANUAL]
    if manual:
        last = (f"the last run of {manual[0]} was" if len(manual) == 1
                else f"the last runs of {_and(manual)} were")
        note += (f"; {last} manual, and a manual run's slot is the instant it was asked "
                 "for, so manual runs never trigger it (their scheduled or backfilled runs "
                 "do)")
    return note


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
