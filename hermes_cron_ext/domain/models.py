"""The records that flow between the store, the ticker, the supervisor and the viewers.

Instants are floats (Unix seconds, UTC) inside the program and in the store, and
ISO 8601 strings in UTC at the edges (REST, ``--json``), through :func:`iso`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

# the enumerations, re-exported: ``from hermes_cron_ext.domain.models import RunStatus``
from hermes_cron_ext.domain.enums import ACTIVE_STATUSES as ACTIVE_STATUSES
from hermes_cron_ext.domain.enums import FAILED_STATUSES as FAILED_STATUSES
from hermes_cron_ext.domain.enums import FINAL_STATUSES as FINAL_STATUSES
from hermes_cron_ext.domain.enums import JOB_KINDS as JOB_KINDS
from hermes_cron_ext.domain.enums import JOB_STATES as JOB_STATES
from hermes_cron_ext.domain.enums import MISFIRE_POLICIES as MISFIRE_POLICIES
from hermes_cron_ext.domain.enums import OVERLAP_POLICIES as OVERLAP_POLICIES
from hermes_cron_ext.domain.enums import RUN_STATUSES as RUN_STATUSES
from hermes_cron_ext.domain.enums import TRIGGERS as TRIGGERS
from hermes_cron_ext.domain.enums import UPSTREAM_ON as UPSTREAM_ON
from hermes_cron_ext.domain.enums import JobKind as JobKind
from hermes_cron_ext.domain.enums import JobState as JobState
from hermes_cron_ext.domain.enums import Misfire as Misfire
from hermes_cron_ext.domain.enums import Overlap as Overlap
from hermes_cron_ext.domain.enums import RunStatus as RunStatus
from hermes_cron_ext.domain.enums import Trigger as Trigger
from hermes_cron_ext.domain.notifications import mask_url
from hermes_cron_ext.domain.options import BY_NAME as _OPTIONS
from hermes_cron_ext.errors import InvalidInput

# This host's name and processes are I/O: they live in processes.py, and the store asks
# it whether a ticker's process is gone as it reads the row (Ticker.gone).


def now() -> float:
    return time.time()


_ISO_SECONDS: dict[int, str] = {}  # "YYYY-MM-DDTHH:MM:SS" by Unix second


def iso(ts: float | None) -> str | None:
    """Render a stored instant as ISO 8601 in UTC with millisecond precision.

    Exactly ``datetime.fromtimestamp(ts, utc).isoformat(timespec="milliseconds")``
    (microseconds rounded as it does, then cut), at half the cost: a page of 500 runs
    renders 2,500 of these."""
    if ts is None:
        return None
    frac, whole = math.modf(ts)
    sec, us = int(whole), round(frac * 1e6)
    if us >= 1_000_000:
        sec, us = sec + 1, us - 1_000_000
    elif us < 0:
        sec, us = sec - 1, us + 1_000_000
    head = _ISO_SECONDS.get(sec)
    if head is None:
        if len(_ISO_SECONDS) > 8192:
            _ISO_SECONDS.clear()
        head = _ISO_SECONDS[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{head}.{us // 1000:03d}Z"


def parse_iso(text: str, field_name: str = "time") -> float:
    """Parse an ISO 8601 instant (naive means UTC) into Unix seconds."""
    try:
        dt = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{field_name}: {text!r} is not an ISO 8601 time", field=field_name)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _default(name: str) -> Any:
    """The default of a policy, as the options schema states it (``options.py``)."""
    return _OPTIONS[name].default


@dataclass
class Policy:
    """How a job behaves when things go wrong (docs/policies.md says what each does).

    One field per policy option of the options schema; each default is that option's
    (tests/domain/test_options.py checks both)."""

    misfire: str = _default("misfire")
    starting_deadline: float | None = _default("starting_deadline")
    overlap: str = _default("overlap")
    retries: int = _default("retries")
    retry_delay: float = _default("retry_delay")
    retry_max_delay: float = _default("retry_max_delay")
    retry_on_timeout: bool = _default("retry_on_timeout")
    timeout: float | None = _default("timeout")
    kill_grace: float = _default("kill_grace")
    max_failures: int = _default("max_failures")
    jitter: float = _default("jitter")
    notify_url: str | None = _default("notify_url")
    ping_url: str | None = _default("ping_url")
    #: Apprise URLs the job's notifications go to (secrets: ``to_json`` masks them)
    notify: list[str] = field(default_factory=lambda: list(_default("notify")))
    #: the notification kinds its destinations get (``notifications.KINDS``)
    notify_on: list[str] = field(default_factory=lambda: list(_default("notify_on")))
    #: ``late`` when a slot has no successful run this long after its time
    late_after: float | None = _default("late_after")
    keep_runs: int | None = _default("keep_runs")
    keep_failures: int | None = _default("keep_failures")
    max_output: int | None = _default("max_output")
    #: alert rules (``alerts.py``), checked when a run ends
    alerts: list[str] = field(default_factory=lambda: list(_default("alerts")))


# -- the JSON shapes of jobs, runs, events, tickers, backfills (REST responses, ``--json``) -
# Each ``to_json`` below returns exactly the fields of its table (tests/domain/test_models.py);
# the OpenAPI document's ``Job``, ``Run``, ``Event``, ``Ticker`` and ``Backfill`` and the
# panel's ``IJob``, ``IRun``, ... (labextension/src/generated.ts) are generated from these
# tables by server/openapi.py.

_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NONE = {"type": ["string", "null"], "format": "date-time"}
_TEXT_OR_NONE = {"type": ["string", "null"]}

#: what :meth:`Job.to_json` returns, field by field (``policy``: every policy option)
JOB_JSON: dict[str, dict[str, Any]] = {
    "id": {"type": "string"},
    "name": {"type": "string"},
    "kind": {"type": "string", "enum": list(JOB_KINDS)},
    "schedule": {"type": ["string", "null"],
                 "description": "the job's own schedule (cron expression, alias, '@every 30s', "
                                "'@at ...'); null for a job that has none of its own: it runs "
                                "only after its upstreams (after), never by itself, and its "
                                "next_run_at is null. Fronts show it as 'after extract, load'."},
    "timezone": {"type": "string"},
    "command": {"type": ["string", "array", "null"], "items": {"type": "string"}},
    "code": _TEXT_OR_NONE,
    "interpreter": _TEXT_OR_NONE,
    "cwd": _TEXT_OR_NONE,
    "env": {"type": "object", "additionalProperties": {"type": "string"},
            "description": "a secret variable's value shows as ********"},
    "secret_env": {"type": "array", "items": {"type": "string"},
                   "description": "the names of the write-only variables"},
    "parameters": {"type": "object"},
    "kernel": _TEXT_OR_NONE,
    "description": {"type": "string"},
    "executor": {"type": ["string", "null"],
                 "description": "'local' or dask://HOST:PORT; null: the ticker's executor"},
    "managed_by": {"type": ["string", "null"],
                   "description": "the definitions file the job was last applied from "
                                  "(hermes-cron apply jobs.yaml); null: made by hand. An edit "
                                  "from another front keeps it: the next apply undoes the edit"},
    "after": {"type": "array",
              "description": "the jobs whose runs trigger this one: with several, once all of "
                             "them have ended as asked for the same slot",
              "items": {"type": "object", "required": ["job", "on"], "properties": {
                  "job": {"type": "string", "description": "the upstream job's id"},
                  "name": {"type": "string", "description": "the upstream job's name "
                                                            "(read-only; ignored when sent back)"},
                  "on": {"type": "string", "enum": list(UPSTREAM_ON)}}}},
    "owner": {"type": "string",
              "description": "the JupyterHub user who made it, as the hub told the service "
                             "(read-only); empty on a store one user keeps"},
    "shares": {"type": "object", "additionalProperties": {"type": "string"},
               "description": "hub groups it is shared with: read or execute"},
    "state": {"type": "string", "enum": list(JOB_STATES)},
    "state_reason": _TEXT_OR_NONE,
    "enabled": {"type": "boolean"},
    "last_run": {"type": ["object", "null"], "description": "the latest run, in brief",
                 "required": ["id", "status", "scheduled_for", "started_at", "finished_at"],
                 "properties": {
                     "id": {"type": "string"},
                     "status": {"type": "string", "enum": list(RUN_STATUSES)},
                     "scheduled_for": _TIME_OR_NONE, "started_at": _TIME_OR_NONE,
                     "finished_at": _TIME_OR_NONE,
                     "exit_code": {"type": ["integer", "null"]},
                     "duration": {"type": ["number", "null"]},
                     "reason": _TEXT_OR_NONE,
                     "trigger": {"type": "string", "enum": list(TRIGGERS)},
                     "attempt": {"type": "integer"},
                     "alerts": {"type": ["array", "null"],
                                "items": {"type": "object", "properties": {
                                    "rule": {"type": "string"},
                                    "message": {"type": "string"}}},
                                "description": "the alert rules that fired (null: none)"}}},
    "next_run_at": {**_TIME_OR_NONE,
                    "description": "null while paused, blocked or disabled, and for a job with "
                                   "no schedule of its own"},
    "consecutive_failures": {"type": "integer"},
    "policy": {"$ref": "#/components/schemas/Policy"},
    "created_at": _TIME,
    "updated_at": _TIME,
    "version": {"type": "integer"},
}

#: what :meth:`Run.to_json` returns, field by field
RUN_JSON: dict[str, dict[str, Any]] = {
    "id": {"type": "string"},
    "job_id": {"type": "string"},
    "job_name": _TEXT_OR_NONE,
    "status": {"type": "string", "enum": list(RUN_STATUSES)},
    "trigger": {"type": "string", "enum": list(TRIGGERS)},
    "attempt": {"type": "integer"},
    "scheduled_for": _TIME_OR_NONE,
    "queued_at": _TIME_OR_NONE,
    "started_at": _TIME_OR_NONE,
    "finished_at": _TIME_OR_NONE,
    "duration": {"type": ["number", "null"], "description": "seconds"},
    "exit_code": {"type": ["integer", "null"]},
    "heartbeat_at": _TIME_OR_NONE,
    "pid": {"type": ["integer", "null"]},
    "host": _TEXT_OR_NONE,
    "phase": _TEXT_OR_NONE,
    "progress": {"type": ["number", "null"]},
    "reason": _TEXT_OR_NONE,
    "output_bytes": {"type": "integer"},
    "backfill_id": _TEXT_OR_NONE,
    "parameters": {"type": ["object", "null"],
                   "description": "given when the run was asked for (over the job's own)"},
    "alerts": {"type": ["array", "null"],
               "description": "the job's alert rules that fired when the run ended, each "
                              "with what was seen; null: none fired (or none checked)",
               "items": {"type": "object", "required": ["rule", "message"],
                         "properties": {"rule": {"type": "string"},
                                        "message": {"type": "string"}}}},
    "upstream": {"type": ["array", "null"],
                 "description": "the runs whose end triggered this one (pipelines)",
                 "items": {"type": "object", "required": ["job_id", "run_id", "status"],
                           "properties": {"job_id": {"type": "string"},
                                          "job": _TEXT_OR_NONE,
                                          "run_id": {"type": "string"},
                                          "status": {"type": "string",
                                                     "enum": list(RUN_STATUSES)},
                                          "exit_code": {"type": ["integer", "null"]}}}},
    "logical_time": {**_TIME_OR_NONE,
                     "description": "the slot the run stands for (HERMES_CRON_LOGICAL_TIME)"},
    "job_version": {"type": ["integer", "null"],
                    "description": "the job's revision the run ran (its version then); null "
                                   "in lists, which leave the run's frozen spec out"},
    "file_sha256": {"type": ["string", "null"],
                    "description": "the sha256 of the script or notebook file the run ran "
                                   "(python jobs with a file, notebook jobs); null: none"},
}

#: what :meth:`Event.to_json` returns, field by field (``GET /events``, the SSE ``data``)
EVENT_JSON: dict[str, dict[str, Any]] = {
    "seq": {"type": "integer", "description": "the event's cursor: read on after it"},
    "at": _TIME,
    "type": {"type": "string", "description": "job.created, run.started, backfill.finished, ..."},
    "job_id": _TEXT_OR_NONE,
    "run_id": _TEXT_OR_NONE,
    "data": {"type": "object"},
}

#: what :meth:`Ticker.to_json` returns, field by field (``GET /status``'s ``tickers``)
TICKER_JSON: dict[str, dict[str, Any]] = {
    "id": {"type": "string"},
    "kind": {"type": "string", "description": "server, daemon, handoff or tick"},
    "host": {"type": "string"},
    "pid": {"type": "integer"},
    "proc_start": {"type": ["integer", "null"],
                   "description": "the process's start time (with pid: one process)"},
    "started_at": _TIME,
    "heartbeat_at": _TIME,
    "last_tick_at": _TIME_OR_NONE,
    "alive": {"type": "boolean"},
}

#: a backfill as the API answers it: there is no model, the store builds it
#: (``Backfills.get_backfill``: every field but ``next``) and so does a dry run
#: (``Operations.backfill``: the required ones and ``next``); a backfill started with no
#: ticker alive adds ``warning``
BACKFILL_JSON: dict[str, dict[str, Any]] = {
    "id": {"type": ["string", "null"], "description": "null: a dry run"},
    "job_id": {"type": "string"},
    "state": {"type": "string", "enum": ["running", "done", "cancelled", "dry-run"]},
    "slots": {"type": "integer"},
    "max_parallel": {"type": "integer"},
    "started": {"type": "integer", "description": "how many slots have been started"},
    "runs": {"type": "object", "additionalProperties": {"type": "integer"},
             "description": "runs by status (not in a dry run)"},
    "from": _TIME_OR_NONE,
    "to": _TIME_OR_NONE,
    "next": {"type": "array", "items": _TIME, "description": "a dry run's slots"},
    "created_at": _TIME_OR_NONE,
    "finished_at": _TIME_OR_NONE,
    "warning": {"type": ["string", "null"],
                "description": "no ticker is alive to start its runs"},
}
#: the fields every backfill answer has (a dry run's too)
BACKFILL_REQUIRED = ("id", "job_id", "state", "slots", "max_parallel")


@dataclass
class Job:
    id: str
    name: str
    kind: str
    #: None: no schedule of its own (it runs only after its upstreams, ``after``)
    schedule: str | None
    timezone: str
    command: str | list[str] | None = None
    code: str | None = None
    interpreter: str | None = None
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    secret_env: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    kernel: str | None = None
    description: str = ""
    #: where runs execute: None for the ticker's executor, "local", or "dask://HOST:PORT"
    executor: str | None = None
    #: the definitions file it was last applied from (``apply_definitions``), or None
    managed_by: str | None = None
    #: the jobs whose runs trigger this one: ``[{"job": JOB_ID, "on": "success"}]`` (as
    #: read for a viewer, each also has the upstream's ``name``)
    after: list[dict[str, Any]] | None = None
    #: hub groups the job is shared with: ``{group: "read" | "execute"}`` (``access.py``)
    shares: dict[str, str] = field(default_factory=dict)
    #: the hub user who made it ('' on a store one user keeps): taken from the hub's
    #: identity, never from a request
    owner: str = ""
    policy: Policy = field(default_factory=Policy)
    state: str = "scheduled"
    state_reason: str | None = None
    enabled: bool = True
    next_run_at: float | None = None
    last_run: dict[str, Any] | None = None
    consecutive_failures: int = 0
    running_count: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    version: int = 1
    idempotency_key: str | None = None

    @property
    def display_state(self) -> str:
        """``running`` while a run is active; otherwise the stored state."""
        if self.state == "scheduled" and self.running_count > 0:
            return "running"
        return self.state

    def spec(self) -> dict[str, Any]:
        """What a run executes: frozen into the run row when the slot is claimed.

        Secret values stay with the job alone: the spec names them (``secret_env``) and
        the supervisor reads them from the job as the payload starts (``run_secrets``),
        so run rows, run JSON and copies of the history never hold them."""
        env = {k: v for k, v in self.env.items() if k not in self.secret_env}
        return {
            "kind": self.kind, "command": self.command, "code": self.code,
            "interpreter": self.interpreter, "cwd": self.cwd, "env": env,
            "secret_env": [k for k in self.secret_env if k in self.env],
            "parameters": self.parameters, "kernel": self.kernel, "executor": self.executor,
            "timeout": self.policy.timeout, "kill_grace": self.policy.kill_grace,
            "overlap": self.policy.overlap, "max_output": self.policy.max_output,
            "job_version": self.version, "job_name": self.name,
            # whose it is: a run of a hub user's job runs as them, or not at all
            "owner": self.owner,
        }

    def to_json(self) -> dict[str, Any]:
        env = {k: ("********" if k in self.secret_env else v) for k, v in self.env.items()}
        last = dict(self.last_run) if self.last_run else None
        if last:
            for key in ("scheduled_for", "started_at", "finished_at"):
                last[key] = iso(last.get(key))
        return {
            "id": self.id, "name": self.name, "kind": self.kind, "schedule": self.schedule,
            "timezone": self.timezone, "command": self.command, "code": self.code,
            "interpreter": self.interpreter, "cwd": self.cwd, "env": env,
            "secret_env": list(self.secret_env), "parameters": self.parameters,
            "kernel": self.kernel, "description": self.description, "executor": self.executor,
            "managed_by": self.managed_by, "after": self.after or [], "owner": self.owner,
            "shares": dict(self.shares),
            "state": self.display_state, "state_reason": self.state_reason,
            "enabled": self.enabled, "last_run": last,
            # a job that does not fire shows no next run (resuming plans one afresh)
            "next_run_at": None if self.state in ("paused", "blocked", "disabled")
            else iso(self.next_run_at),
            "consecutive_failures": self.consecutive_failures,
            "policy": dict(vars(self.policy)) | {
                "notify": [mask_url(u) for u in self.policy.notify]},
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at), "version": self.version,
        }


@dataclass
class Run:
    id: str
    job_id: str
    status: str
    trigger: str
    attempt: int = 1
    scheduled_for: float | None = None
    fire_at: float | None = None
    queued_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    heartbeat_at: float | None = None
    pid: int | None = None
    proc_start: int | None = None
    host: str | None = None
    phase: str | None = None
    progress: float | None = None
    reason: str | None = None
    output_bytes: int = 0
    cancel_requested: bool = False
    dispatched_at: float | None = None
    job_name: str | None = None
    #: the payload's process group (its supervisor starts it in a group of its own)
    payload_pid: int | None = None
    #: the backfill this run belongs to (``b_...``), if any
    backfill_id: str | None = None
    #: parameters given when the run was asked for (over the job's own), if any
    parameters: dict[str, Any] | None = None
    #: the job's alert rules that fired when it ended (``{"rule", "message"}``), if any
    alerts: list[dict[str, str]] | None = None
    #: the sha256 of the script or notebook file the run executed (``record_file_hash``)
    file_sha256: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else now()
        return max(0.0, end - self.started_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "job_id": self.job_id,
            "job_name": self.job_name or self.spec.get("job_name"),
            "status": self.status, "trigger": self.trigger, "attempt": self.attempt,
            "scheduled_for": iso(self.scheduled_for), "queued_at": iso(self.queued_at),
            "started_at": iso(self.started_at), "finished_at": iso(self.finished_at),
            "duration": self.duration, "exit_code": self.exit_code,
            "heartbeat_at": iso(self.heartbeat_at), "pid": self.pid, "host": self.host,
            "phase": self.phase, "progress": self.progress, "reason": self.reason,
            "output_bytes": self.output_bytes, "backfill_id": self.backfill_id,
            "parameters": self.parameters, "alerts": self.alerts,
            "upstream": self.spec.get("upstream"),
            # the slot a run stands for: its payload gets it as HERMES_CRON_LOGICAL_TIME
            "logical_time": iso(self.scheduled_for),
            "job_version": self.spec.get("job_version"), "file_sha256": self.file_sha256,
        }


#: the fields of a job's definition (:func:`definition_of`) besides its policy's
DEFINITION_FIELDS = ("name", "kind", "schedule", "timezone", "enabled", "command", "code",
                     "interpreter", "cwd", "env", "secret_env", "parameters", "after",
                     "shares", "kernel", "description", "executor", "managed_by")


def definition_of(job: Job) -> dict[str, Any]:
    """A job's whole definition, flat: :data:`DEFINITION_FIELDS` then every policy field
    by its own name (what a revision keeps and an audit record hashes).

    Secret values are left out: ``env`` holds the variables that are not secret and
    ``secret_env`` the names of those that are. Everything else is as stored, notify and
    ping URLs included, which are secrets too: a definition is never shown raw (fronts
    mask it, as ``Job.to_json`` does). ``after`` keeps ``job`` and ``on`` (upstream ids)."""
    secret = set(job.secret_env)
    out: dict[str, Any] = {
        "name": job.name, "kind": job.kind, "schedule": job.schedule,
        "timezone": job.timezone, "enabled": job.enabled, "command": job.command,
        "code": job.code, "interpreter": job.interpreter, "cwd": job.cwd,
        "env": {k: v for k, v in sorted(job.env.items()) if k not in secret},
        "secret_env": sorted(secret),
        "parameters": dict(job.parameters or {}),
        "after": [{"job": a["job"], "on": a.get("on")} for a in job.after or []],
        "shares": dict(sorted((job.shares or {}).items())), "kernel": job.kernel,
        "description": job.description, "executor": job.executor,
        "managed_by": job.managed_by,
    }
    for name, value in vars(job.policy).items():
        out[name] = list(value) if isinstance(value, list) else value
    return out


def definition_changes(before: dict[str, Any] | None,
                       after: dict[str, Any] | None) -> dict[str, list[Any]]:
    """``{field: [before, after]}`` of the fields of two definitions that differ (a
    missing definition: every field of the other, against None)."""
    old, new = before or {}, after or {}
    return {k: [old.get(k), new.get(k)] for k in dict.fromkeys([*old, *new])
            if old.get(k) != new.get(k)}


@dataclass
class Event:
    seq: int
    at: float
    type: str
    job_id: str | None = None
    run_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "at": iso(self.at), "type": self.type, "job_id": self.job_id,
            "run_id": self.run_id, "data": self.data,
        }


@dataclass
class Ticker:
    id: str
    kind: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    last_tick_at: float | None = None
    proc_start: int | None = None  # see processes.proc_start_time: pid + start, one process
    #: its process is known to have exited: the store that read the row found it gone
    #: on this host (``processes.process_alive``)
    gone: bool = False

    def alive(self, at: float | None = None, stale_after: float | None = None) -> bool:
        """Heartbeat seen lately: 15 s for a running ticker, 150 s for a once-a-minute tick.

        A ticker process known to be gone is dead at once (a server stopped a second
        ago must not keep its handoff from starting for 15 s); a one-shot ``tick``
        exits after each tick by design, so its heartbeat alone counts."""
        at = now() if at is None else at
        if stale_after is None:
            stale_after = 150.0 if self.kind == "tick" else 15.0
        if self.kind != "tick" and self.gone:
            return False
        return at - self.heartbeat_at <= stale_after

    def to_json(self, at: float | None = None, stale_after: float | None = None) -> dict[str, Any]:
        at = now() if at is None else at
        return {
            "id": self.id, "kind": self.kind, "host": self.host, "pid": self.pid,
            "proc_start": self.proc_start,
            "started_at": iso(self.started_at), "heartbeat_at": iso(self.heartbeat_at),
            "last_tick_at": iso(self.last_tick_at), "alive": self.alive(at, stale_after),
        }


#: what a :class:`Page` lists
T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    """One keyset page: ``cursor`` fetches the next one; None means this was the last."""

    items: list[T]
    cursor: str | None = None


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False)
