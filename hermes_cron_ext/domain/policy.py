"""Scheduling policy as pure functions of (job policy, run, now).

What happens to a slot claimed late (misfire, starting deadline), whether a run may
start (pause, overlap, cancel), and what a finished run means for its job (retry with
backoff, the circuit breaker). No SQL, no clock and no I/O here: a store reads the
rows, asks these functions, and writes their answer in the same transaction. So each
rule is tested with plain numbers (tests/test_domain_policy.py), and a second store
cannot get one subtly different.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from hermes_cron_ext.domain.models import (
    FAILED_STATUSES,
    JobState,
    Misfire,
    Overlap,
    Policy,
    RunStatus,
    Trigger,
)

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


#: Triggers whose run is owed to its slot: nothing will ask for that slot again (the
#: upstream run that queued it has ended; a backfill has moved on to its next slot).
OWED_TRIGGERS = frozenset({Trigger.UPSTREAM.value, Trigger.BACKFILL.value})


def on_overlap(overlap: str, trigger: str) -> str:
    """What a run does when it finds another run of its job running: ``"skip"`` (it is
    recorded ``skipped`` with the reason), ``"wait"`` (it stays queued until the running
    one ends, then starts; waiting runs start one at a time, in the order they were
    queued), ``"replace"`` (it stops the running one first) or ``"run"`` (alongside).

    The job's overlap policy decides, except for a run owed to its slot (triggered by
    upstreams or by a backfill, :data:`OWED_TRIGGERS`): skipping it would lose its slot
    for good (a pipeline would silently miss a day), so under ``forbid`` it waits
    instead. A scheduled slot keeps ``forbid``'s rule: its skipped run is recorded and
    the next slot comes. Under ``queue`` an owed run waits however many already wait."""
    if overlap == Overlap.ALLOW:
        return "run"
    if overlap == Overlap.REPLACE:
        return "replace"
    if overlap == Overlap.QUEUE or trigger in OWED_TRIGGERS:
        return "wait"
    return "skip"


def start_refusal(*, status: str, cancel_requested: bool, trigger: str,
                  job_state: str | None, job_enabled: bool, overlap: str,
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
    if action == "skip":
        return f"overlap: run {other_running} was still running"
    if action == "wait" and trigger not in OWED_TRIGGERS:  # queue: at most one waits
        ahead = waiting()
        if ahead:
            return f"overlap: run {ahead} is already waiting"
    return None


def retry_delay(policy: Policy, attempt: int,
                uniform: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds before attempt ``attempt + 1``: exponential from ``retry_delay``, capped at
    ``retry_max_delay``, with +-20 % jitter so failed runs of many jobs spread out."""
    delay = min(policy.retry_max_delay, policy.retry_delay * 2 ** (attempt - 1))
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


_ENDED = {"success": "succeeded", "failure": "failed", "completion": "ended"}


def upstream_note(*, enabled: bool, state: str,
                  upstreams: list[tuple[str, str, str | None]]) -> str | None:
    """Why the runs of a job's upstreams may not trigger it, in words for whoever looks
    at it (graph, show, the panel); None when there is nothing to say. *upstreams*:
    ``(name, on, trigger of its last run)`` for each ``after`` entry.

    The rules stated are ``_trigger_downstream``'s (store/sql.py): a disabled, paused
    or blocked job is not triggered at all; with several upstreams, a run is queued
    when every one of them has ended as asked for the same slot (``scheduled_for``). A
    scheduled, catch-up or backfilled run's slot is its schedule's instant; a manual
    run's is the instant it was asked for, so manual runs of two upstreams never share
    a slot and never trigger a fan-in (one upstream's manual run does trigger the jobs
    that run after it alone)."""
    if not upstreams:
        return None
    if not enabled or state in ("paused", "blocked", "disabled"):
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
