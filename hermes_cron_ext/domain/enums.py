"""What a run, a job and a trigger can be, and the policies' choices: enumerations.

They are apart from :mod:`~hermes_cron_ext.domain.models` (which re-exports every name)
so the options schema (``options.py``) can take its choices from here while the models
take their defaults from the options schema.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """Where a run is; the first two are active, the rest final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    LOST = "lost"
    SKIPPED = "skipped"


class JobState(StrEnum):
    """What ``state`` says of a job (``display_state``)."""

    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    BLOCKED = "blocked"
    DISABLED = "disabled"


class JobKind(StrEnum):
    COMMAND = "command"
    PYTHON = "python"
    NOTEBOOK = "notebook"


class Trigger(StrEnum):
    """Why a run exists."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    CATCHUP = "catchup"
    RETRY = "retry"
    REBOOT = "reboot"
    BACKFILL = "backfill"
    UPSTREAM = "upstream"


class Misfire(StrEnum):
    LATEST = "latest"
    SKIP = "skip"
    ALL = "all"


class Overlap(StrEnum):
    FORBID = "forbid"
    ALLOW = "allow"
    REPLACE = "replace"
    QUEUE = "queue"


# The same as plain strings (what the stores write and the API sends), for membership
# tests and messages. StrEnum members compare equal to them.
RUN_STATUSES = tuple(s.value for s in RunStatus)
ACTIVE_STATUSES = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)
FINAL_STATUSES = tuple(s for s in RUN_STATUSES if s not in ACTIVE_STATUSES)
FAILED_STATUSES = (RunStatus.FAILED.value, RunStatus.TIMED_OUT.value, RunStatus.LOST.value)
JOB_STATES = tuple(s.value for s in JobState)
JOB_KINDS = tuple(k.value for k in JobKind)
TRIGGERS = tuple(t.value for t in Trigger)
MISFIRE_POLICIES = tuple(m.value for m in Misfire)
OVERLAP_POLICIES = tuple(o.value for o in Overlap)
#: when an upstream run triggers: it succeeded, it failed (for good: no retry follows),
#: or either
UPSTREAM_ON = ("success", "failure", "completion")
