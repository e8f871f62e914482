"""The store logic, written once for every SQL database: :class:`SQLStore`.

SQLite (``sqlite.py``) and PostgreSQL (``postgres.py``) differ only in what this
module leaves to them as hooks:

- ``db`` (a connection for this thread) and ``_transaction(durable)`` (a write
  transaction: ``BEGIN IMMEDIATE`` on SQLite, ``BEGIN`` on PostgreSQL);
- ``_lock`` / ``_lock_skip``: the row-lock suffixes (``FOR UPDATE`` and
  ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, empty on SQLite, whose write
  transactions hold the whole database);
- ``_ddl(stmt)``: the column types of the schema below, written in SQLite's words;
- ``_flush_events``: how a transaction's events are appended (PostgreSQL
  serialises the appends so ``seq`` order is commit order, then NOTIFYs);
- the output hooks (files beside SQLite, chunks in PostgreSQL).

Queries use ``?`` placeholders and portable SQL (``CASE WHEN`` rather than
boolean sums, ``ON CONFLICT`` rather than ``INSERT OR ...``); a dialect
translates the placeholders. Every write that decides something (claiming a
slot, starting, finishing) runs in one transaction and re-reads the rows it
decides on under a lock, so any number of tickers and supervisors agree.
Events are buffered during a transaction and appended at its end, in order.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import cast

from hermes_cron_ext.domain import access
from hermes_cron_ext.domain import alerts as alert_rules
from hermes_cron_ext.domain import policy as rules
from hermes_cron_ext.domain import schedule as sched
from hermes_cron_ext.domain.access import Viewer
from hermes_cron_ext.domain.metrics import BUILTIN, MAX_PER_RUN, Metric, metric_line
from hermes_cron_ext.domain.models import (
    ACTIVE_STATUSES,
    RUN_STATUSES,
    Event,
    Job,
    Page,
    Policy,
    Run,
    RunStatus,
    Ticker,
    Trigger,
    definition_changes,
    definition_of,
    iso,
)
from hermes_cron_ext.domain.policy import MISFIRE_GRACE, MISSED_CAP  # noqa: F401  (re-exported)
from hermes_cron_ext.errors import Conflict, InvalidInput, NotFound, StoreError
from hermes_cron_ext.processes import hostname, proc_start_time, process_alive
from hermes_cron_ext.store.base import Store
from hermes_cron_ext.store.history import MIGRATION_13, HistorySQL
from hermes_cron_ext.store.outbox import MIGRATION_12, OutboxSQL
from hermes_cron_ext.store.views import MIGRATION_14, RunViewsSQL

SCHEMA_VERSION = 14
#: the jobs table's columns at schema version 6 (copied as they are by migrations 7 and 9)
_JOB_COLUMNS = ("id, name, kind, schedule, timezone, payload, policy, state, state_reason, "
                "enabled, next_run_at, last_run, consecutive_failures, running_count, "
                "created_at, updated_at, version, idempotency_key, idempotency_hash")
_JOBS_V9 = """CREATE TABLE jobs_v9 (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL DEFAULT '',
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            schedule TEXT,
            timezone TEXT NOT NULL,
            payload TEXT NOT NULL,
            policy TEXT NOT NULL,
            state TEXT NOT NULL,
            state_reason TEXT,
            enabled INTEGER NOT NULL,
            next_run_at REAL,
            last_run TEXT,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            running_count INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            version INTEGER NOT NULL DEFAULT 1,
            idempotency_key TEXT,
            idempotency_hash TEXT,
            UNIQUE (owner, name),
            UNIQUE (owner, idempotency_key))"""
_SHARES_V9 = ["""CREATE TABLE job_shares (
            job_id TEXT NOT NULL,
            grp TEXT NOT NULL,
            level TEXT NOT NULL,
            PRIMARY KEY (job_id, grp))""",
              "CREATE INDEX job_shares_by_group ON job_shares(grp, job_id)"]
#: The shared schema, in SQLite's words; ``SQLStore._ddl`` turns it into a dialect's.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            schedule TEXT NOT NULL,
            timezone TEXT NOT NULL,
            payload TEXT NOT NULL,
            policy TEXT NOT NULL,
            state TEXT NOT NULL,
            state_reason TEXT,
            enabled INTEGER NOT NULL,
            next_run_at REAL,
            last_run TEXT,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            running_count INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            version INTEGER NOT NULL DEFAULT 1,
            idempotency_key TEXT UNIQUE)""",
        "CREATE INDEX jobs_due ON jobs(next_run_at) WHERE enabled = 1 AND state = 'scheduled'",
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL,
            status TEXT NOT NULL,
            trigger TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            scheduled_for REAL,
            fire_at REAL,
            queued_at REAL NOT NULL,
            dispatched_at REAL,
            started_at REAL,
            finished_at REAL,
            exit_code INTEGER,
            heartbeat_at REAL,
            pid INTEGER,
            proc_start INTEGER,
            host TEXT,
            payload_pid INTEGER,
            phase TEXT,
            progress REAL,
            reason TEXT,
            output_bytes INTEGER NOT NULL DEFAULT 0,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            job_name TEXT,
            spec TEXT NOT NULL)""",
        """CREATE UNIQUE INDEX runs_slot ON runs(job_id, scheduled_for, attempt)
            WHERE trigger IN ('schedule', 'catchup', 'retry')""",
        "CREATE INDEX runs_by_job ON runs(job_id, fire_at DESC, id DESC)",
        "CREATE INDEX runs_newest ON runs(fire_at DESC, id DESC)",
        "CREATE INDEX runs_by_status ON runs(status)",
        """CREATE INDEX runs_pending ON runs(fire_at)
            WHERE status = 'queued' AND dispatched_at IS NULL""",
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            type TEXT NOT NULL,
            job_id TEXT,
            run_id TEXT,
            data TEXT NOT NULL)""",
        "CREATE INDEX events_by_run ON events(run_id)",
        """CREATE TABLE tickers (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at REAL NOT NULL,
            heartbeat_at REAL NOT NULL,
            last_tick_at REAL)""",
    ],
    # a ticker's process start time: its row is known dead the moment its process is
    2: ["ALTER TABLE tickers ADD COLUMN proc_start INTEGER"],
    # what was asked with an idempotency key: a replay with another body is refused
    3: ["ALTER TABLE jobs ADD COLUMN idempotency_hash TEXT"],
    # backfills: a job's past slots run as a whole, a few at a time (ops.backfill)
    4: ["ALTER TABLE runs ADD COLUMN backfill_id TEXT",
        "CREATE INDEX runs_by_backfill ON runs(backfill_id) WHERE backfill_id IS NOT NULL",
        """CREATE TABLE backfills (
            id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL,
            slots TEXT NOT NULL,
            next_slot INTEGER NOT NULL,
            max_parallel INTEGER NOT NULL,
            state TEXT NOT NULL,
            created_at REAL NOT NULL,
            finished_at REAL)"""],
    # parameters given at trigger time (run NAME -p k=v), shown with the run
    5: ["ALTER TABLE runs ADD COLUMN parameters TEXT"],
    # pipelines: which jobs run after which, indexed by the upstream (a run's end looks
    # its downstream jobs up here, not through every job's payload)
    6: ["""CREATE TABLE job_after (
            job_id TEXT NOT NULL,
            upstream_id TEXT NOT NULL,
            PRIMARY KEY (job_id, upstream_id))""",
        "CREATE INDEX job_after_upstream ON job_after(upstream_id)"],
    # a job that runs only after its upstreams has no schedule of its own (NULL): SQLite
    # cannot drop a NOT NULL, so the table is made again (PostgreSQL: PG_REPLACED)
    7: ["""CREATE TABLE jobs_v7 (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            schedule TEXT,
            timezone TEXT NOT NULL,
            payload TEXT NOT NULL,
            policy TEXT NOT NULL,
            state TEXT NOT NULL,
            state_reason TEXT,
            enabled INTEGER NOT NULL,
            next_run_at REAL,
            last_run TEXT,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            running_count INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            version INTEGER NOT NULL DEFAULT 1,
            idempotency_key TEXT UNIQUE,
            idempotency_hash TEXT)""",
        f"INSERT INTO jobs_v7 ({_JOB_COLUMNS}) SELECT {_JOB_COLUMNS} FROM jobs",
        "DROP TABLE jobs",
        "ALTER TABLE jobs_v7 RENAME TO jobs",
        "CREATE INDEX jobs_due ON jobs(next_run_at) WHERE enabled = 1 AND state = 'scheduled'"],
    # posix/X and right/X are refused as job zones now (a copy of X; a clock that counts
    # leap seconds): a job saved with one takes the civil name X, so it keeps firing
    8: ["UPDATE jobs SET timezone = substr(timezone, 7) "
        "WHERE timezone LIKE 'posix/%' OR timezone LIKE 'right/%'"],
    # a hub store: each job has an owner (the hub user who made it; '' on a store one
    # user keeps), names and idempotency keys are unique per owner, and job_shares lists
    # the groups each job is shared with (indexed, so a user's list is one range scan)
    9: [_JOBS_V9,
        f"INSERT INTO jobs_v9 ({_JOB_COLUMNS}) SELECT {_JOB_COLUMNS} FROM jobs",
        "DROP TABLE jobs",
        "ALTER TABLE jobs_v9 RENAME TO jobs",
        "CREATE INDEX jobs_due ON jobs(next_run_at) WHERE enabled = 1 AND state = 'scheduled'",
        *_SHARES_V9],
    # run metrics: what a run reported (``::metric NAME=VALUE``) and the built-ins the
    # store records at its end, one row per (run, name); a job's series of one metric,
    # newest first, is one range scan of run_metrics_series. The runs already ended get
    # their built-ins, so alert rules over past runs work from the first run after this.
    10: ["""CREATE TABLE run_metrics (
            run_id TEXT NOT NULL,
            job_id TEXT NOT NULL,
            name TEXT NOT NULL,
            value REAL NOT NULL,
            unit TEXT NOT NULL DEFAULT '',
            at REAL NOT NULL,
            PRIMARY KEY (run_id, name))""",
         # covering: a chart's 10,000 points are read from the index alone
         "CREATE INDEX run_metrics_series "
         "ON run_metrics(job_id, name, at DESC, run_id DESC, value, unit)",
         *(f"INSERT INTO run_metrics (run_id, job_id, name, value, unit, at) "
           f"SELECT id, job_id, '{name}', {value}, '{unit}', finished_at FROM runs "
           f"WHERE status NOT IN ('queued', 'running', 'skipped') "
           f"AND finished_at IS NOT NULL{where}"
           for name, value, unit, where in (
               ("duration", "finished_at - started_at", "s", " AND started_at IS NOT NULL"),
               ("exit_code", "exit_code", "", " AND exit_code IS NOT NULL"),
               ("output_bytes", "output_bytes", "B", "")))],
    # alert rules: the rules of its job that fired when a run ended (JSON, NULL: none)
    11: ["ALTER TABLE runs ADD COLUMN alerts TEXT"],
    # notifications: the outbox of deliveries and the late-slot watch (store/outbox.py)
    12: MIGRATION_12,
    # revisions of every job, the chained audit log, the file a run ran (store/history.py)
    13: MIGRATION_13,
    # the output index searched across runs, the indexes the timeline reads (views.py)
    14: MIGRATION_14,
}

PAYLOAD_KEYS = ("command", "code", "interpreter", "cwd", "env", "secret_env", "parameters",
                "after", "shares",
                "kernel", "description", "executor", "managed_by")
RUN_FIELDS = (
    "id", "job_id", "status", "trigger", "attempt", "scheduled_for", "fire_at", "queued_at",
    "started_at", "finished_at", "exit_code", "heartbeat_at", "pid", "proc_start", "host",
    "phase", "progress", "reason", "output_bytes", "cancel_requested", "dispatched_at",
    "job_name", "payload_pid", "backfill_id", "parameters", "alerts", "file_sha256",
)
#: lists skip the frozen spec (parsing it per row would dominate a page)
LIST_COLUMNS = ", ".join(RUN_FIELDS)
RUN_COLUMNS = LIST_COLUMNS + ", spec"
#: the tables a store holds, in the order a copy inserts them (``migrate.py``)
TABLES = ("jobs", "runs", "events", "tickers", "meta", "backfills", "job_after",
          "job_shares", "run_metrics", "deliveries", "late_watch", "job_revisions",
          "audit")
EVENT_INSERT = "INSERT INTO events (at, type, job_id, run_id, data) VALUES (?, ?, ?, ?, ?)"
#: the built-ins the runtime measures (its process tree) and hands over with the final
#: status (``finish_run(metrics=...)``): accepted there only, never by ``record_metrics``
RUNTIME_BUILTINS = frozenset({"cpu_seconds", "peak_memory"})
#: one value of a run's metric, the last one recorded winning
METRIC_UPSERT = ("INSERT INTO run_metrics (run_id, job_id, name, value, unit, at) "
                 "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, name) DO UPDATE SET "
                 "value = excluded.value, unit = excluded.unit, at = excluded.at")


#: payload fields that ``list_jobs(search=...)`` looks in, besides name and schedule
SEARCHED = ("command", "code", "description")


@functools.lru_cache(maxsize=4096)
def _schedule(text: str | None, tz: str) -> sched.Schedule | None:
    """Parsed schedules are immutable: parse each (text, zone) once per process. None:
    a job with no schedule of its own (it runs after its upstreams only)."""
    return None if text is None else sched.parse(text, tz)


def _text(schedule: sched.Schedule | None) -> str | None:
    return None if schedule is None else schedule.text


def _next(schedule: sched.Schedule | None, ts: float) -> float | None:
    """The first fire time after *ts*; None: none (or no schedule: never by itself)."""
    if schedule is None:
        return None
    dt = schedule.next_fire(datetime.fromtimestamp(ts, UTC))
    return dt.timestamp() if dt is not None else None


def _prev(schedule: sched.Schedule, ts: float) -> float | None:
    dt = schedule.prev_fire(datetime.fromtimestamp(ts, UTC))
    return dt.timestamp() if dt is not None else None


def _request_hash(fields: dict) -> str:
    """A digest of a validated create request, its idempotency key aside."""
    text = json.dumps({k: v for k, v in fields.items() if k != "idempotency_key"},
                      sort_keys=True, default=vars)
    return hashlib.sha256(text.encode()).hexdigest()


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _encode_cursor(*parts) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, n: int) -> list:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
        if not isinstance(parts, list) or len(parts) != n or not all(
                isinstance(p, (str, int, float)) and not isinstance(p, bool) for p in parts):
            raise ValueError
        return parts
    except (ValueError, TypeError):
        raise InvalidInput("cursor is not one this server handed out", field="cursor")


def _row_job(row) -> Job:
    payload = json.loads(row["payload"])
    if payload.get("after"):  # what a link to another user's job holds by: the store's
        payload["after"] = [{k: v for k, v in a.items() if k != "via"}
                            for a in payload["after"]]
    return Job(
        id=row["id"], name=row["name"], kind=row["kind"], schedule=row["schedule"],
        timezone=row["timezone"], **{k: payload.get(k) for k in PAYLOAD_KEYS if k in payload},
        policy=Policy(**json.loads(row["policy"])), state=row["state"],
        state_reason=row["state_reason"], enabled=bool(row["enabled"]),
        next_run_at=row["next_run_at"],
        last_run=json.loads(row["last_run"]) if row["last_run"] else None,
        consecutive_failures=row["consecutive_failures"], running_count=row["running_count"],
        created_at=row["created_at"], updated_at=row["updated_at"], version=row["version"],
        idempotency_key=row["idempotency_key"], owner=row["owner"],
    )


def _links(row) -> dict[str, list[str] | None]:
    """The job's ``after`` links as stored: ``{upstream id: via}`` (``access.link_via``;
    None: none recorded)."""
    return {a["job"]: a.get("via") for a in json.loads(row["payload"]).get("after") or []}


def _row_run(row) -> Run:
    """A Run from a row selected with RUN_COLUMNS or LIST_COLUMNS, by position (fast)."""
    run = Run(*row[:len(RUN_FIELDS)])
    run.cancel_requested = bool(run.cancel_requested)
    if run.parameters is not None:  # the row's JSON text until here
        run.parameters = json.loads(cast(str, run.parameters))
    if run.alerts is not None:
        run.alerts = json.loads(cast(str, run.alerts))
    if len(row) > len(RUN_FIELDS):
        run.spec = json.loads(row[len(RUN_FIELDS)])
    return run


def _real(value) -> float | None:
    """A REAL column's value as it reads back."""
    return None if value is None else float(value)


def _audited(kind: str, audit: dict | None, detail: dict) -> tuple[str, dict]:
    """The action and detail of the audit record of a job change: *kind* (create, edit,
    delete), or within an apply (*audit*: its detail) ``apply`` saying which."""
    if audit is None:
        return kind, detail
    return "apply", {**audit, "change": kind, **detail}


def _edit_detail(old: Job, new: Job, before: dict, after: dict | None) -> dict:
    """What an edit changed, for its audit record: the fields' names; shares (the
    permissions) and the secrets' names before and after; the secrets whose values
    changed, by name only."""
    detail: dict = {"name": new.name, "changes": sorted(definition_changes(before, after))}
    if (old.shares or {}) != (new.shares or {}):
        detail["shares"] = [dict(old.shares or {}), dict(new.shares or {})]
    if sorted(old.secret_env) != sorted(new.secret_env):
        detail["secret_env"] = [sorted(old.secret_env), sorted(new.secret_env)]
    valued = sorted(k for k in set(old.secret_env) & set(new.secret_env)
                    if old.env.get(k) != new.env.get(k))
    if valued:
        detail["secrets_changed"] = valued
    return detail


def _row_event(r) -> Event:
    return Event(r["seq"], r["at"], r["type"], r["job_id"], r["run_id"], json.loads(r["data"]))


class SQLStore(RunViewsSQL, OutboxSQL, HistorySQL, Store):
    """Jobs, runs, events and tickers in SQL; subclasses supply the connection and output."""

    #: appended to a SELECT that decides inside a write transaction
    _lock = ""
    #: the same for the claim, where rows another ticker holds are passed over
    _lock_skip = ""
    #: case-insensitive LIKE (SQLite's LIKE already is)
    _like = "LIKE"
    #: errors that mean "a unique constraint refused the row" (lost a race)
    _integrity_errors: tuple[type[BaseException], ...] = ()
    #: errors that mean "no such table" (a store not made yet)
    _missing_table_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, url: str, *, clock=time.time):
        self.url = url
        self.clock = clock
        self._local = threading.local()
        self._migrate()

    # -- dialect hooks ----------------------------------------------------------
    @property
    def db(self):
        """This thread's connection: ``execute(sql, args)`` with ``?`` placeholders."""
        raise NotImplementedError

    @contextmanager
    def _transaction(self, durable: bool) -> Iterator:
        raise NotImplementedError
        yield

    def _payload_field(self, key: str) -> str:
        """SQL for one text field of the JSON ``payload`` column."""
        return f"json_extract(payload, '$.{key}')"

    def _ddl(self, stmt: str) -> str:
        return stmt

    def _migrations(self) -> dict[int, list[str]]:
        return {v: [self._ddl(s) for s in stmts] for v, stmts in MIGRATIONS.items()}

    def _migration_lock(self, db) -> None:
        """Called first in the migration transaction (PostgreSQL: one migrator at a time)."""

    def _flush_events(self, db, rows: list[tuple]) -> None:
        for i in range(0, len(rows), 500):
            db.executemany(EVENT_INSERT, rows[i:i + 500])

    def _forget_output(self, run_ids: list[str]) -> None:
        """Drop the output (and artifacts) of deleted runs."""

    # -- plumbing -------------------------------------------------------------
    @contextmanager
    def _write(self, durable: bool = True) -> Iterator:
        """A write transaction whose events are appended, in order, just before it commits.

        ``durable=False`` marks writes whose loss in a database crash later writes repair
        (heartbeats, attach, start): PostgreSQL may commit them without waiting for
        the disk.
        """
        events: list[tuple] = []
        audits: list[dict] = []
        self._local.events, self._local.audits = events, audits
        try:
            with self._transaction(durable) as db:
                yield db
                if events:
                    self._flush_events(db, events)
                if audits:  # after the events: PostgreSQL holds their lock to the commit
                    self._flush_audit(db, audits)
        finally:
            self._local.events = self._local.audits = None

    def _migrate(self) -> None:
        try:  # the common case, read-only: the schema is current
            row = self.db.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row and int(row[0]) == SCHEMA_VERSION:
                return
        except self._missing_table_errors:
            pass  # no meta table yet
        with self._write() as db:
            self._migration_lock(db)
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.url} has schema version {version}; this hermes-cron "
                    f"knows up to {SCHEMA_VERSION}: upgrade hermes-cron-ext"
                )
            migrations = self._migrations()
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for stmt in migrations[v]:
                    db.execute(stmt)
            self._set_meta(db, "schema_version", str(SCHEMA_VERSION))

    @staticmethod
    def _set_meta(db, key: str, value: str) -> None:
        db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                   "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def schema_version(self) -> int:
        return int(self.db.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])

    def _event(self, db, type_: str, job_id=None, run_id=None, at=None, **data) -> None:
        self._local.events.append(
            (at if at is not None else self.clock(), type_, job_id, run_id, json.dumps(data)))

    def _job_row(self, db, ref: str, lock: bool = False, owner: str | None = None):
        """The job with id *ref*, else named *ref*: *owner*'s, or with no *owner* the
        store's own user's ('') or the one job of that name."""
        suffix = self._lock if lock else ""
        row = db.execute(f"SELECT * FROM jobs WHERE id = ?{suffix}", (ref,)).fetchone()
        if row is None and owner is not None:
            row = db.execute(f"SELECT * FROM jobs WHERE owner = ? AND name = ?{suffix}",
                             (owner, ref)).fetchone()
        elif row is None:
            rows = db.execute(f"SELECT * FROM jobs WHERE name = ? ORDER BY owner{suffix}",
                              (ref,)).fetchall()
            if len(rows) > 1 and rows[0]["owner"] != "":
                owners = ", ".join(r["owner"] for r in rows)
                raise InvalidInput(f"{len(rows)} jobs are named {ref!r} (owners {owners}): "
                                   f"name the one you mean by its id", field="job")
            row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"no job {ref!r}", field="job")
        return row

    @staticmethod
    def _visible(viewer: Viewer | None, column: str = "id") -> tuple[str, list[object]]:
        """SQL (`` AND ...``) keeping the jobs *viewer* may read, by their *column*."""
        if viewer is None or viewer.admin:
            return "", []
        groups = sorted(viewer.groups)
        shared = (f" OR {column} IN (SELECT job_id FROM job_shares WHERE grp IN "
                  f"({', '.join('?' * len(groups))}))") if groups else ""
        return (f" AND ({column} IN (SELECT id FROM jobs WHERE owner = ?){shared})",
                [viewer.name, *groups])

    def _run_row(self, db, run_id: str, lock: bool = False):
        return db.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?"
                          f"{self._lock if lock else ''}", (run_id,)).fetchone()

    # -- jobs -------------------------------------------------------------------
    def create_job(self, fields: dict) -> tuple[Job, bool]:
        try:
            return self._create_job(fields)
        except self._integrity_errors:
            # another process created the same name or key meanwhile: decide again
            return self._create_job(fields)

    def _create_job(self, fields: dict) -> tuple[Job, bool]:
        now = self.clock()
        with self._write() as db:
            key = fields.get("idempotency_key")
            if key:
                row = db.execute("SELECT * FROM jobs WHERE owner = ? AND idempotency_key = ?",
                                 (fields.get("owner") or "", key)).fetchone()
                if row is not None:
                    if row["idempotency_hash"] not in (None, _request_hash(fields)):
                        raise Conflict(
                            f"idempotency key {key!r} was used for a different job request "
                            f"(job {row['name']!r}); use a new key for a new job",
                            field="idempotency_key")
                    return _row_job(row), False
            return self._insert_job(db, fields, now), True

    def _insert_job(self, db, fields: dict, now: float, audit: dict | None = None,
                    job_id: str | None = None) -> Job:
        """Insert a job in the caller's transaction: its row, links, shares, late watch,
        ``job.created``, its first revision and audit record (*audit*: the detail of an
        ``apply`` record instead of a ``create`` one). *job_id*: the id it gets (an apply
        links jobs it creates together), else a new one.

        :raises Conflict: the name is taken
        """
        key = fields.get("idempotency_key")
        owner = fields.get("owner") or ""
        if db.execute("SELECT 1 FROM jobs WHERE owner = ? AND name = ?",
                      (owner, fields["name"])).fetchone():
            raise Conflict(f"a job named {fields['name']!r} already exists", field="name")
        job_id = job_id or new_id("j")
        schedule = _schedule(fields["schedule"], fields["timezone"])
        nxt = _next(schedule, now)
        state = "scheduled" if fields["enabled"] else "disabled"
        db.execute(
            "INSERT INTO jobs (id, owner, name, kind, schedule, timezone, payload, policy, "
            "state, enabled, next_run_at, created_at, updated_at, idempotency_key, "
            "idempotency_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job_id, owner, fields["name"], fields["kind"], _text(schedule), fields["timezone"],
             json.dumps({k: fields.get(k) for k in PAYLOAD_KEYS}),
             json.dumps(vars(fields["policy"])), state, int(fields["enabled"]), nxt,
             now, now, key, _request_hash(fields) if key else None),
        )
        self._set_after(db, job_id, fields.get("after"))
        self._set_shares(db, job_id, fields.get("shares"))
        self._watch_late(db, job_id, fields["policy"].late_after, _next(schedule, now))
        self._event(db, "job.created", job_id, at=now, name=fields["name"])
        job = _row_job(self._job_row(db, job_id))
        after = self._revise(db, job, None, "create", now)
        action, detail = _audited("create", audit, {"name": job.name})
        self._audit(action, job_id, detail=detail, after=after, at=now)
        return self._named(db, [job])[0]

    def get_job(self, ref: str, owner: str | None = None) -> Job:
        return self._named(self.db, [_row_job(self._job_row(self.db, ref, owner=owner))])[0]

    def readable_jobs(self, job_ids: list[str], viewer: Viewer | None) -> set[str]:
        out: set[str] = set()
        ids = sorted(set(job_ids))
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            where, args = self._visible(viewer)
            out.update(r[0] for r in self.db.execute(
                f"SELECT id FROM jobs WHERE id IN ({', '.join('?' * len(chunk))}){where}",
                [*chunk, *args]).fetchall())
        return out

    def jobs_named(self, name: str, viewer: Viewer | None = None) -> list[Job]:
        where, args = self._visible(viewer)
        rows = self.db.execute(f"SELECT * FROM jobs WHERE name = ?{where} ORDER BY owner",
                               [name, *args]).fetchall()
        return self._named(self.db, [_row_job(r) for r in rows])

    @staticmethod
    def _named(db, jobs: list[Job]) -> list[Job]:
        """Jobs as a viewer reads them: each ``after`` entry also has its upstream's
        name (one query for a whole page)."""
        ids = sorted({a["job"] for j in jobs for a in j.after or []})
        if not ids:
            return jobs
        names = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            names.update(db.execute(f"SELECT id, name FROM jobs WHERE id IN "
                                    f"({', '.join('?' * len(chunk))})", chunk).fetchall())
        for j in jobs:
            j.after = [{**a, "name": names.get(a["job"], a["job"])} for a in j.after or []]
        return jobs

    def list_jobs(self, *, limit: int = 100, cursor: str | None = None,
                  state: str | None = None, search: str | None = None,
                  viewer: Viewer | None = None) -> Page[Job]:
        where, args = self._visible(viewer)
        sql = f"SELECT * FROM jobs WHERE 1=1{where}"
        if cursor:  # names repeat across owners: (name, id) is the key
            after, after_id = _decode_cursor(cursor, 2)
            sql += " AND (name, id) > (?, ?)"
            args += [after, after_id]
        if state == "running":
            sql += " AND state = 'scheduled' AND running_count > 0"
        elif state:
            sql += " AND state = ?"
            args.append(state)
        if search:
            # what a user sees of a job, never the rest of the payload (env values)
            fields = ["name", "schedule"] + [self._payload_field(k) for k in SEARCHED]
            sql += " AND (" + " OR ".join(
                f"{f} {self._like} ? ESCAPE '!'" for f in fields) + ")"
            escaped = search.replace("!", "!!").replace("%", "!%").replace("_", "!_")
            args += [f"%{escaped}%"] * len(fields)
        sql += " ORDER BY name, id LIMIT ?"
        args.append(limit + 1)
        rows = self.db.execute(sql, args).fetchall()
        jobs = self._named(self.db, [_row_job(r) for r in rows[:limit]])
        return Page(jobs, _encode_cursor(jobs[-1].name, jobs[-1].id)
                    if len(rows) > limit else None)

    def update_job(self, ref: str, fields: dict) -> Job:
        try:
            return self._update_job(ref, fields)
        except self._integrity_errors:
            raise Conflict(f"a job named {fields['name']!r} already exists", field="name")

    def _update_job(self, ref: str, fields: dict) -> Job:
        now = self.clock()
        with self._write() as db:
            return self._change_job(db, self._job_row(db, ref, lock=True), fields, now)

    def _change_job(self, db, row, fields: dict, now: float, audit: dict | None = None) -> Job:
        """Replace the definition of the job of *row* (locked) in the caller's
        transaction, with ``job.updated``, a revision and an audit record (``edit``, or
        ``apply`` with *audit* as its detail). ``managed_by`` is kept unless given.

        :raises Conflict: the new name is another job's
        """
        job_id = row["id"]
        clash = db.execute("SELECT 1 FROM jobs WHERE owner = ? AND name = ? AND id != ?",
                           (row["owner"], fields["name"], job_id)).fetchone()
        if clash:
            raise Conflict(f"a job named {fields['name']!r} already exists", field="name")
        old_payload = json.loads(row["payload"])
        if "managed_by" not in fields:  # an edit from another front: still the file's
            fields = {**fields, "managed_by": old_payload.get("managed_by")}
        schedule = _schedule(fields["schedule"], fields["timezone"])
        timing_changed = (_text(schedule), fields["timezone"]) != (
            row["schedule"], row["timezone"])
        nxt = _next(schedule, now) if timing_changed else row["next_run_at"]
        state, reason = row["state"], row["state_reason"]
        kept = _links(row)  # a link given without via keeps what it recorded
        fields = {**fields, "after": [
            a if "via" in a or kept.get(a["job"]) is None else {**a, "via": kept[a["job"]]}
            for a in fields.get("after") or []]}
        if not fields["enabled"]:
            state, reason = "disabled", None
        elif state == "disabled":
            state, reason = "scheduled", None
            nxt = _next(schedule, now)
        db.execute(
            "UPDATE jobs SET name = ?, kind = ?, schedule = ?, timezone = ?, payload = ?, "
            "policy = ?, enabled = ?, state = ?, state_reason = ?, next_run_at = ?, "
            "updated_at = ?, version = version + 1 WHERE id = ?",
            (fields["name"], fields["kind"], _text(schedule), fields["timezone"],
             json.dumps({k: fields.get(k) for k in PAYLOAD_KEYS}),
             json.dumps(vars(fields["policy"])), int(fields["enabled"]), state, reason, nxt,
             now, job_id),
        )
        self._set_after(db, job_id, fields.get("after"))
        self._set_shares(db, job_id, fields.get("shares"))
        late_after = fields["policy"].late_after
        self._watch_late(db, job_id, late_after, _next(schedule, now),
                         keep=not timing_changed and late_after == json.loads(
                             row["policy"]).get("late_after")
                         and not (fields["enabled"] and not row["enabled"]))
        self._event(db, "job.updated", job_id, at=now, name=fields["name"])
        if (fields.get("shares") or {}) != (old_payload.get("shares") or {}):
            # other users' jobs that run after it and read it through a share it lost
            for down in db.execute(
                    "SELECT * FROM jobs WHERE id IN (SELECT job_id FROM job_after WHERE "
                    f"upstream_id = ?) AND owner != ? AND state = 'scheduled' ORDER BY id"
                    f"{self._lock}", (job_id, row["owner"])).fetchall():
                self._block_unlinked(db, down, now)
        old = _row_job(row)
        job = _row_job(self._job_row(db, job_id))
        before = definition_of(old)
        after = self._revise(db, job, before, "update", now)
        action, detail = _audited("edit", audit, _edit_detail(old, job, before, after))
        self._audit(action, job_id, detail=detail, before=before, after=after, at=now)
        return self._named(db, [job])[0]

    @staticmethod
    def _set_after(db, job_id: str, after: list[dict] | None) -> None:
        """Keep ``job_after`` (upstream -> downstream, indexed) equal to the job's after."""
        db.execute("DELETE FROM job_after WHERE job_id = ?", (job_id,))
        for upstream in sorted({a["job"] for a in after or []}):
            db.execute("INSERT INTO job_after (job_id, upstream_id) VALUES (?, ?)",
                       (job_id, upstream))

    @staticmethod
    def _set_shares(db, job_id: str, shares: dict[str, str] | None) -> None:
        """Keep ``job_shares`` (group -> job, indexed) equal to the job's shares."""
        db.execute("DELETE FROM job_shares WHERE job_id = ?", (job_id,))
        for group, level in sorted((shares or {}).items()):
            db.execute("INSERT INTO job_shares (job_id, grp, level) VALUES (?, ?, ?)",
                       (job_id, group, level))

    def _unlinked(self, db, row) -> str | None:
        """Why the job of *row* may no longer run after one of its upstreams: another
        user's job no longer shared with what its link recorded (``access.link_holds``);
        None when every link holds."""
        links = _links(row)
        if not links or row["owner"] == "":
            return None
        ids = sorted(links)
        for up in db.execute(f"SELECT id, owner, name, payload FROM jobs WHERE id IN "
                             f"({', '.join('?' * len(ids))}) AND owner != ? ORDER BY name",
                             (*ids, row["owner"])).fetchall():
            shares = json.loads(up["payload"]).get("shares") or {}
            if not access.link_holds(row["owner"], up["owner"], shares, links[up["id"]]):
                return access.link_refusal(up["owner"], up["name"], links[up["id"]])
        return None

    def _block_unlinked(self, db, row, now: float) -> bool:
        """Block the job of *row* (scheduled) when a link of its ``after`` no longer
        holds, saying which (state_reason and a ``job.blocked`` event): never silent."""
        reason = self._unlinked(db, row)
        if reason is None:
            return False
        db.execute("UPDATE jobs SET state = 'blocked', state_reason = ?, updated_at = ? "
                   "WHERE id = ?", (reason, now, row["id"]))
        self._event(db, "job.blocked", row["id"], at=now, reason=reason)
        return True

    def delete_job(self, ref: str) -> Job:
        now = self.clock()
        with self._write() as db:
            job, finished = self._remove_job(db, self._job_row(db, ref, lock=True), now)
        self._forget_output(finished)
        return job

    def _remove_job(self, db, row, now: float, audit: dict | None = None
                    ) -> tuple[Job, list[str]]:
        """Delete the job of *row* (locked) and its finished runs in the caller's
        transaction, with ``job.deleted``, a last revision (``delete``, rev version + 1)
        and an audit record; returns the job and the runs whose output the caller drops
        after the commit."""
        job = _row_job(row)
        finished = [r[0] for r in db.execute(
            "SELECT id FROM runs WHERE job_id = ? AND status NOT IN ('queued', 'running')",
            (job.id,)).fetchall()]
        db.execute("DELETE FROM run_metrics WHERE job_id = ? AND run_id IN (SELECT id FROM "
                   "runs WHERE job_id = ? AND status NOT IN ('queued', 'running'))",
                   (job.id, job.id))
        db.execute("DELETE FROM runs WHERE job_id = ? AND status NOT IN ('queued', 'running')",
                   (job.id,))
        self._drop_index(db, finished)
        db.execute("DELETE FROM jobs WHERE id = ?", (job.id,))
        db.execute("DELETE FROM job_after WHERE job_id = ?", (job.id,))
        db.execute("DELETE FROM job_shares WHERE job_id = ?", (job.id,))
        db.execute("DELETE FROM late_watch WHERE job_id = ?", (job.id,))
        # whose it was and who shared it: a feed resumed later tells exactly those
        # who could read it (the job is gone, so its event is all there is to ask)
        self._event(db, "job.deleted", job.id, name=job.name, owner=job.owner,
                    shares=dict(job.shares or {}))
        before = definition_of(job)
        self._revise(db, job, before, "delete", now, rev=job.version + 1)
        action, detail = _audited("delete", audit, {"name": job.name})
        self._audit(action, job.id, detail=detail, before=before, at=now)
        return job, finished

    def set_paused(self, ref: str, paused: bool, reason: str | None = None) -> Job:
        now = self.clock()
        with self._write() as db:
            row = self._job_row(db, ref, lock=True)
            if paused:
                if row["state"] in ("paused", "blocked"):
                    return _row_job(row)
                db.execute("UPDATE jobs SET state = 'paused', state_reason = ?, updated_at = ? "
                           "WHERE id = ?", (reason or "paused by user", now, row["id"]))
                self._event(db, "job.paused", row["id"], at=now, reason=reason)
            elif row["enabled"] and (why := self._unlinked(db, row)) is not None:
                if row["state"] != "blocked" or row["state_reason"] != why:
                    db.execute("UPDATE jobs SET state = 'blocked', state_reason = ?, "
                               "updated_at = ? WHERE id = ?", (why, now, row["id"]))
                    self._event(db, "job.blocked", row["id"], at=now, reason=why)
            else:
                schedule = _schedule(row["schedule"], row["timezone"])
                state = "scheduled" if row["enabled"] else "disabled"
                db.execute(
                    "UPDATE jobs SET state = ?, state_reason = NULL, consecutive_failures = 0, "
                    "next_run_at = ?, updated_at = ? WHERE id = ?",
                    (state, _next(schedule, now), now, row["id"]))
                # its late watch starts afresh: the slots of the pause were not owed
                self._watch_late(db, row["id"], json.loads(row["policy"]).get("late_after"),
                                 _next(schedule, now))
                self._event(db, "job.resumed", row["id"], at=now, was=row["state"])
            self._audit("pause" if paused else "resume", row["id"],
                        detail={"name": row["name"], "was": row["state"],
                                **({"reason": reason} if paused and reason else {})}, at=now)
            return _row_job(self._job_row(db, row["id"]))

    # -- scheduling -----------------------------------------------------------
    def next_wakeup(self) -> float | None:
        a = self.db.execute("SELECT MIN(next_run_at) FROM jobs "
                            "WHERE enabled = 1 AND state = 'scheduled'").fetchone()[0]
        b = self.db.execute("SELECT MIN(fire_at) FROM runs "
                            "WHERE status = 'queued' AND dispatched_at IS NULL").fetchone()[0]
        return min((x for x in (a, b) if x is not None), default=None)

    def count_due(self, horizon: float) -> tuple[int, int]:
        """How many slots and pending runs fall due by *horizon*, and how many of those
        slots are notebook jobs' (they size the ticker's lead)."""
        a, notebooks = self.db.execute(
            "SELECT COUNT(*), SUM(CASE WHEN kind = 'notebook' THEN 1 ELSE 0 END) FROM jobs "
            "WHERE enabled = 1 AND state = 'scheduled' AND next_run_at <= ?",
            (horizon,)).fetchone()
        b = self.db.execute("SELECT COUNT(*) FROM runs WHERE status = 'queued' AND "
                            "dispatched_at IS NULL AND fire_at <= ?", (horizon,)).fetchone()[0]
        return a + b, notebooks or 0

    def _insert_run(self, db, job: Job, *, trigger: str, scheduled_for: float | None,
                    fire_at: float | None, status: str = "queued", reason: str | None = None,
                    attempt: int = 1, dispatched: float | None = None, now: float,
                    spec: dict | None = None, backfill_id: str | None = None,
                    parameters: dict | None = None) -> Run | None:
        run_id = new_id("r")
        finished = now if status == "skipped" else None
        spec_text = json.dumps(spec or job.spec())
        cur = db.execute(
            "INSERT INTO runs (id, job_id, status, trigger, attempt, scheduled_for, "
            "fire_at, queued_at, dispatched_at, finished_at, reason, job_name, spec, "
            "backfill_id, parameters) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (run_id, job.id, status, trigger, attempt, scheduled_for, fire_at, now, dispatched,
             finished, reason, job.name, spec_text, backfill_id,
             json.dumps(parameters) if parameters else None),
        )
        if cur.rowcount == 0:
            return None  # this slot was recorded already
        self._event(db, "run.skipped" if status == "skipped" else "run.queued", job.id, run_id,
                    at=now, trigger=trigger, scheduled_for=iso(scheduled_for), reason=reason)
        # the row as it was inserted (no read back: a claim inserts thousands)
        return Run(run_id, job.id, status, trigger, attempt, _real(scheduled_for),
                   _real(fire_at), float(now), finished_at=_real(finished), reason=reason,
                   dispatched_at=_real(dispatched), job_name=job.name,
                   backfill_id=backfill_id, parameters=parameters or None,
                   spec=json.loads(spec_text))

    def _slots(self, job: Job, schedule, slot: float, now: float,
               cause: str | None = None) -> tuple[list[rules.SlotDecision], float | None]:
        """Decide what happens to a due slot: ``[(slot, trigger, status, reason)], next``."""
        return rules.plan_slot(job.policy, slot, now, lambda t: _next(schedule, t),
                               lambda t: _prev(schedule, t), cause)

    def claim_due(self, horizon: float, now: float, owner: str,
                  cause: str | None = None) -> list[Run]:
        """Claim due slots: rows locked (others' locked rows passed over), then each slot
        taken by a compare-and-set of ``next_run_at``, so a slot is claimed once."""
        claimed: list[Run] = []
        with self._write() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE enabled = 1 AND state = 'scheduled' "
                f"AND next_run_at <= ? ORDER BY next_run_at LIMIT 2000{self._lock_skip}",
                (horizon,)).fetchall()
            for row in rows:
                job = _row_job(row)
                slot = row["next_run_at"]
                try:
                    schedule = _schedule(job.schedule, job.timezone)
                    plan, nxt = self._slots(job, schedule, slot, now, cause)
                except Exception as exc:  # one bad row must not stop the others
                    db.execute("UPDATE jobs SET state = 'blocked', state_reason = ? WHERE id = ?",
                               (f"schedule cannot be computed: {exc}", job.id))
                    self._event(db, "job.blocked", job.id, at=now, reason=str(exc))
                    continue
                state, why = rules.state_after_claim(nxt)
                cur = db.execute(
                    "UPDATE jobs SET next_run_at = ?, state = ?, state_reason = ? "
                    "WHERE id = ? AND next_run_at = ?", (nxt, state, why, job.id, slot))
                if cur.rowcount != 1:
                    continue  # another ticker took it
                for s, trigger, status, reason in plan:
                    queued = status == RunStatus.QUEUED
                    run = self._insert_run(
                        db, job, trigger=trigger, scheduled_for=s,
                        fire_at=rules.fire_at(job.policy, s), status=status, reason=reason,
                        now=now, dispatched=now if queued else None)
                    if run is not None and queued:
                        claimed.append(run)
            pending = db.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE status = 'queued' "
                f"AND dispatched_at IS NULL AND fire_at <= ? ORDER BY fire_at LIMIT 2000"
                f"{self._lock_skip}", (horizon,)).fetchall()
            for row in pending:
                cur = db.execute("UPDATE runs SET dispatched_at = ? WHERE id = ? "
                                 "AND dispatched_at IS NULL", (now, row[0]))
                if cur.rowcount == 1:
                    claimed.append(_row_run(row))
        return claimed

    def fire_reboot_jobs(self, now: float) -> int:
        with self._write() as db:
            rows = db.execute("SELECT * FROM jobs WHERE enabled = 1 AND state = 'scheduled' "
                              "AND schedule = '@reboot'").fetchall()
            for row in rows:
                self._insert_run(db, _row_job(row), trigger=Trigger.REBOOT, scheduled_for=now,
                                 fire_at=now, now=now)
        return len(rows)

    def request_run(self, ref: str, trigger: str = Trigger.MANUAL,
                    parameters: dict | None = None) -> Run:
        """Queue a run now; *parameters* (checked by the caller) go over the job's own."""
        now = self.clock()
        with self._write() as db:
            job = _row_job(self._job_row(db, ref, lock=True))

            def running_run() -> str | None:
                row = db.execute("SELECT id FROM runs WHERE job_id = ? AND "
                                 "status = 'running'", (job.id,)).fetchone()
                return row[0] if row else None
            why = rules.manual_run_refusal(job.policy.overlap, job_name=job.name,
                                           running=job.running_count, running_run=running_run)
            if why:
                raise Conflict(why, field="overlap")
            spec = job.spec()
            if parameters:
                spec["parameters"] = {**(spec.get("parameters") or {}), **parameters}
            run = self._insert_run(db, job, trigger=trigger, scheduled_for=now, fire_at=now,
                                   now=now, spec=spec, parameters=parameters)
            # a run asked for is outside the slot index (runs_slot): its insert never conflicts
            assert run is not None
            self._audit("run", job.id, run.id, at=now, detail={
                "name": job.name, "trigger": trigger,
                **({"parameters": sorted(parameters)} if parameters else {})})
            return run

    # -- backfills: past slots as a whole, a few at a time ------------------------------
    def create_backfill(self, ref: str, slots: list[float], max_parallel: int) -> dict:
        """Queue a run of *ref* for each slot (trigger ``backfill``), *max_parallel* at a
        time: the first ones now, each next one as one ends (in that run's transaction,
        so any number of tickers start each slot once). Slots that already have a run
        that succeeded, runs or waits are left out: running the same backfill again
        resumes it."""
        now = self.clock()
        with self._write() as db:
            job = _row_job(self._job_row(db, ref, lock=True))
            held, slotted = rules.SLOT_HELD_STATUSES, rules.SLOT_TRIGGERS
            todo = rules.backfill_slots(slots, db.execute(
                "SELECT scheduled_for, status, trigger FROM runs WHERE job_id = ? AND "
                f"status IN ({', '.join('?' * len(held))}) AND "
                f"trigger IN ({', '.join('?' * len(slotted))})",
                (job.id, *held, *slotted)).fetchall())
            backfill_id = new_id("b")
            db.execute("INSERT INTO backfills (id, job_id, slots, next_slot, max_parallel, "
                       "state, created_at) VALUES (?, ?, ?, 0, ?, 'running', ?)",
                       (backfill_id, job.id, json.dumps(todo), max_parallel, now))
            self._event(db, "backfill.created", job.id, None, at=now, backfill=backfill_id,
                        slots=len(todo), skipped=len(slots) - len(todo))
            self._audit("backfill", job.id, at=now, detail={
                "name": job.name, "op": "create", "backfill": backfill_id, "slots": len(todo),
                "max_parallel": max_parallel})
            self._backfill_next(db, backfill_id, now)
        return self.get_backfill(backfill_id)

    def _backfill_next(self, db, backfill_id: str, now: float) -> None:
        """Start the backfill's next slots while fewer than its limit run; mark it done
        when every slot has run."""
        row = db.execute(f"SELECT * FROM backfills WHERE id = ?{self._lock}",
                         (backfill_id,)).fetchone()
        if row is None or row["state"] != "running":
            return
        slots = json.loads(row["slots"])
        active = db.execute("SELECT COUNT(*) FROM runs WHERE backfill_id = ? AND status IN "
                            "('queued', 'running')", (backfill_id,)).fetchone()[0]
        jrow = db.execute("SELECT * FROM jobs WHERE id = ?", (row["job_id"],)).fetchone()
        step = rules.backfill_step(slots=len(slots), next_slot=row["next_slot"], active=active,
                                   max_parallel=row["max_parallel"],
                                   job_exists=jrow is not None)
        if step.start:
            job = _row_job(jrow)
            for i in step.start:
                spec = {**job.spec(), "backfill": backfill_id, "logical_time": iso(slots[i])}
                self._insert_run(db, job, trigger=Trigger.BACKFILL, scheduled_for=slots[i],
                                 fire_at=now, now=now, spec=spec, backfill_id=backfill_id)
        state = "done" if step.done else "running"
        db.execute("UPDATE backfills SET next_slot = ?, state = ?, finished_at = ? "
                   "WHERE id = ?", (step.next_slot, state, now if step.done else None,
                                    backfill_id))
        if step.done:
            self._event(db, "backfill.finished", row["job_id"], None, at=now,
                        backfill=backfill_id)

    def get_backfill(self, backfill_id: str) -> dict:
        """A backfill's progress: slots, how many runs are in each status, its state."""
        row = self.db.execute("SELECT * FROM backfills WHERE id = ?",
                              (backfill_id,)).fetchone()
        if row is None:
            raise NotFound(f"no backfill {backfill_id!r}", field="backfill")
        counts = dict(self.db.execute(
            "SELECT status, COUNT(*) FROM runs WHERE backfill_id = ? GROUP BY status",
            (backfill_id,)).fetchall())
        slots = json.loads(row["slots"])
        return {"id": row["id"], "job_id": row["job_id"], "state": row["state"],
                "slots": len(slots), "started": row["next_slot"],
                "max_parallel": row["max_parallel"], "runs": counts,
                "from": iso(slots[0]) if slots else None,
                "to": iso(slots[-1]) if slots else None,
                "created_at": iso(row["created_at"]), "finished_at": iso(row["finished_at"])}

    def list_backfills(self, job_ref: str, limit: int = 20) -> list[dict]:
        job_id = self._job_row(self.db, job_ref)["id"]
        ids = self.db.execute("SELECT id FROM backfills WHERE job_id = ? "
                              "ORDER BY created_at DESC, id DESC LIMIT ?",
                              (job_id, limit)).fetchall()
        return [self.get_backfill(r[0]) for r in ids]

    def cancel_backfill(self, backfill_id: str) -> dict:
        """Stop a backfill as a whole: no further slot starts; its waiting runs end
        ``cancelled`` and its running ones are asked to stop."""
        now = self.clock()
        with self._write() as db:
            row = db.execute(f"SELECT * FROM backfills WHERE id = ?{self._lock}",
                             (backfill_id,)).fetchone()
            if row is None:
                raise NotFound(f"no backfill {backfill_id!r}", field="backfill")
            if row["state"] == "running":
                db.execute("UPDATE backfills SET state = 'cancelled', finished_at = ? "
                           "WHERE id = ?", (now, backfill_id))
                self._event(db, "backfill.cancelled", row["job_id"], None, at=now,
                            backfill=backfill_id)
                self._audit("backfill", row["job_id"], at=now,
                            detail={"op": "cancel", "backfill": backfill_id})
            for r in db.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE backfill_id = ? AND "
                                "status IN ('queued', 'running')", (backfill_id,)).fetchall():
                run = _row_run(r)
                if run.status == "queued" and run.pid is None:
                    self._finish(db, run, "cancelled", None, "backfill cancelled", now)
                else:
                    db.execute("UPDATE runs SET cancel_requested = 1, reason = COALESCE("
                               "reason, 'backfill cancelled') WHERE id = ?", (run.id,))
        return self.get_backfill(backfill_id)

    def take_next(self, run_id: str) -> list[str]:
        rows = self.db.execute(
            "SELECT id, spec FROM runs WHERE trigger = 'upstream' AND status = 'queued' AND "
            "dispatched_at IS NULL AND spec LIKE ? ORDER BY queued_at LIMIT 20",
            (f'%"{run_id}"%',)).fetchall()
        backfill = self.db.execute("SELECT backfill_id FROM runs WHERE id = ?",
                                   (run_id,)).fetchone()
        if backfill is not None and backfill[0]:  # the backfill's next slot(s)
            rows += self.db.execute(
                "SELECT id, spec FROM runs WHERE backfill_id = ? AND status = 'queued' AND "
                "dispatched_at IS NULL ORDER BY scheduled_for LIMIT 20",
                (backfill[0],)).fetchall()
        # runs elsewhere (another executor) are left to that executor's ticker
        ids = [i for i, spec in rows
               if json.loads(spec).get("executor") in (None, "", "local")]
        if not ids:
            return []
        taken, now = [], self.clock()
        with self._write() as db:  # one transaction, a compare-and-set per run
            for down_id in ids:
                cur = db.execute("UPDATE runs SET dispatched_at = ? WHERE id = ? AND "
                                 "status = 'queued' AND dispatched_at IS NULL",
                                 (now, down_id))
                if cur.rowcount == 1:
                    taken.append(down_id)
        return taken

    def dispatch(self, run_id: str) -> bool:
        """Take a pending run for a one-off caller (``hermes-cron run`` with no ticker)."""
        with self._write() as db:
            cur = db.execute("UPDATE runs SET dispatched_at = ? WHERE id = ? AND "
                             "status = 'queued' AND dispatched_at IS NULL",
                             (self.clock(), run_id))
            return cur.rowcount == 1

    # -- runs ---------------------------------------------------------------------
    def get_run(self, run_id: str) -> Run:
        row = self._run_row(self.db, run_id)
        if row is None:
            raise NotFound(f"no run {run_id!r}", field="run")
        return _row_run(row)

    def list_runs(self, job_ref: str | None = None, *, limit: int = 50,
                  cursor: str | None = None, status: str | None = None,
                  viewer: Viewer | None = None) -> Page[Run]:
        sql, args = f"SELECT {LIST_COLUMNS} FROM runs WHERE 1=1", list[object]()
        if job_ref is None:
            where, args = self._visible(viewer, "job_id")
            sql += where
        else:
            sql += " AND job_id = ?"
            args.append(self._job_row(self.db, job_ref)["id"])
        if status:
            if status not in RUN_STATUSES:
                raise InvalidInput(f"status must be one of {', '.join(RUN_STATUSES)}",
                                   field="status")
            sql += " AND status = ?"
            args.append(status)
        if cursor:
            at, rid = _decode_cursor(cursor, 2)
            sql += " AND (fire_at, id) < (?, ?)"
            args += [at, rid]
        sql += " ORDER BY fire_at DESC, id DESC LIMIT ?"
        args.append(limit + 1)
        rows = self.db.execute(sql, args).fetchall()
        runs = [_row_run(r) for r in rows[:limit]]
        nxt = _encode_cursor(runs[-1].fire_at, runs[-1].id) if len(rows) > limit else None
        return Page(runs, nxt)

    def attach_run(self, run_id: str, pid: int, proc_start: int | None, host: str) -> bool:
        """Take the run for the supervisor *pid*: the fence against ``mark_lost``. Only one
        of the two wins (both ask for a queued run with no supervisor); a supervisor whose
        run was marked lost first gets False and must not run it."""
        with self._write(durable=False) as db:
            cur = db.execute("UPDATE runs SET pid = ?, proc_start = ?, host = ?, "
                             "heartbeat_at = ? WHERE id = ? AND status = 'queued' "
                             "AND pid IS NULL", (pid, proc_start, host, self.clock(), run_id))
            return cur.rowcount == 1

    def check_start(self, run_id: str) -> str | None:
        """Why the run must not start now, or None: one query."""
        return self.check_starts([run_id])[run_id]

    def check_starts(self, run_ids: list[str]) -> dict[str, str | None]:
        """``check_start`` for many runs in one query (a burst's supervisors ask at one
        instant; PostgreSQL's relay asks for all that wait together).

        :raises NotFound: when a run does not exist."""
        db, out = self.db, {}
        for k in range(0, len(run_ids), 500):
            chunk = run_ids[k:k + 500]
            rows = db.execute(
                "SELECT r.id, r.status, r.cancel_requested, r.trigger, r.spec, r.job_id, "
                "r.backfill_id, j.state, j.enabled "
                "FROM runs r LEFT JOIN jobs j ON j.id = r.job_id "
                f"WHERE r.id IN ({', '.join('?' * len(chunk))})", chunk).fetchall()
            jobs = sorted({row[5] for row in rows})
            running: dict[str, list[tuple[str, str | None]]] = {}
            for i in range(0, len(jobs), 500):  # the running runs of those jobs
                part = jobs[i:i + 500]
                for rid, job_id, backfill_id in db.execute(
                        "SELECT id, job_id, backfill_id FROM runs WHERE job_id IN "
                        f"({', '.join('?' * len(part))}) AND status = 'running'",
                        part).fetchall():
                    running.setdefault(job_id, []).append((rid, backfill_id))
            for row in rows:
                run_id, job_id, backfill_id = row[0], row[5], row[6]
                other = rules.overlapping_run(run_id, backfill_id, running.get(job_id, ()))
                out[run_id] = self._start_refusal(db, row[0], row[1], row[2], row[3], row[4],
                                                  row[5], row[7], row[8], other)
        for run_id in run_ids:
            if run_id not in out:
                raise NotFound(f"no run {run_id!r}", field="run")
        return out

    @staticmethod
    def _start_refusal(db, run_id, status, cancel, trigger, spec, job_id, state, enabled,
                       other) -> str | None:
        def waiting() -> str | None:
            return rules.first_waiting(run_id, db.execute(
                "SELECT id, phase FROM runs WHERE job_id = ? AND status = 'queued'",
                (job_id,)).fetchall())
        return rules.start_refusal(
            status=status, cancel_requested=bool(cancel), trigger=trigger, job_state=state,
            job_enabled=bool(enabled), overlap=json.loads(spec).get("overlap"),
            other_running=other, waiting=waiting)

    def running_others(self, run_id: str) -> list[Run]:
        """The other running runs of this run's job that it overlaps (overlap ``replace``
        / ``queue``): not those of its own backfill (``policy.overlaps``)."""
        me = self.db.execute("SELECT backfill_id FROM runs WHERE id = ?", (run_id,)).fetchone()
        rows = self.db.execute(
            f"SELECT {LIST_COLUMNS} FROM runs WHERE status = 'running' AND id != ? AND "
            "job_id = (SELECT job_id FROM runs WHERE id = ?)", (run_id, run_id)).fetchall()
        mine = me[0] if me else None
        return [run for run in map(_row_run, rows) if rules.overlaps(mine, run.backfill_id)]

    def run_secrets(self, run_id: str) -> dict[str, str]:
        """The values of the secrets the run's spec names, read from its job now (run rows
        never hold them); a secret the job no longer has is left out."""
        row = self.db.execute(
            "SELECT r.spec, j.payload FROM runs r JOIN jobs j ON j.id = r.job_id "
            "WHERE r.id = ?", (run_id,)).fetchone()
        if row is None:
            return {}
        names = json.loads(row[0]).get("secret_env") or []
        env = json.loads(row[1]).get("env") or {}
        return {k: env[k] for k in names if k in env}

    def _with_active(self, run_id: str) -> tuple[rules.ActiveRun | None,
                                                 list[rules.ActiveRun]]:
        """The run and its job's other queued and running runs, as the waiting rules
        (``policy.catchup_ahead``, ``policy.turn_ahead``) read them; (None, []) when the
        run does not exist."""
        cols = ", ".join(rules.ActiveRun._fields)
        rows = self.db.execute(
            f"SELECT {cols} FROM runs WHERE id = ? UNION ALL "
            f"SELECT {cols} FROM runs WHERE job_id = (SELECT job_id FROM runs WHERE id = ?) "
            "AND status IN ('queued', 'running') AND id != ?",
            (run_id, run_id, run_id)).fetchall()
        runs = [rules.ActiveRun(*r) for r in rows]
        run = next((r for r in runs if r.id == run_id), None)
        return run, [r for r in runs if r.id != run_id]

    def catchup_ahead(self, run_id: str) -> str | None:
        """The run a catch-up must wait for (``policy.catchup_ahead``), or None."""
        run, others = self._with_active(run_id)
        return None if run is None else rules.catchup_ahead(run, others)

    def turn_ahead(self, run_id: str) -> str | None:
        """The run a waiting run waits for (``policy.turn_ahead``), or None: its turn."""
        run, others = self._with_active(run_id)
        return None if run is None else rules.turn_ahead(run, others)

    def mark_running(self, run_id: str, started_at: float, payload_pid: int) -> bool:
        """False when the run is no longer queued (cancelled, lost): the caller stops."""
        with self._write(durable=False) as db:
            row = db.execute(f"SELECT job_id, status FROM runs WHERE id = ?{self._lock}",
                             (run_id,)).fetchone()
            if row is None or row["status"] != "queued":
                return False
            db.execute("UPDATE runs SET status = 'running', started_at = ?, heartbeat_at = ?, "
                       "payload_pid = ? WHERE id = ?",
                       (started_at, started_at, payload_pid, run_id))
            summary = {"id": run_id, "status": "running", "started_at": started_at,
                       "finished_at": None, "exit_code": None, "duration": None}
            db.execute("UPDATE jobs SET running_count = running_count + 1, last_run = ? "
                       "WHERE id = ?", (json.dumps(summary), row["job_id"]))
            self._event(db, "run.started", row["job_id"], run_id, at=started_at)
            return True

    def heartbeat_run(self, run_id: str, at: float, phase: str | None, progress: float | None,
                      output_bytes: int) -> bool:
        with self._write(durable=False) as db:
            old = db.execute("SELECT job_id, phase, progress, cancel_requested FROM runs "
                             "WHERE id = ?", (run_id,)).fetchone()
            if old is None:
                return True
            db.execute("UPDATE runs SET heartbeat_at = ?, phase = ?, progress = ?, "
                       "output_bytes = ? WHERE id = ?",
                       (at, phase, progress, output_bytes, run_id))
            if (phase, progress) != (old["phase"], old["progress"]):
                self._event(db, "run.progress", old["job_id"], run_id, at=at, phase=phase,
                            progress=progress)
            return bool(old["cancel_requested"])

    def mark_lost(self, run_id: str, reason: str, pid: int | None) -> bool:
        """Mark a run lost only if it is still active with the supervisor pid the caller
        judged (``None``: never attached), so a supervisor that attached meanwhile wins.

        The check and the write are one transaction, and ``attach_run`` takes only a run
        with no supervisor: a run marked lost is certain never to run."""
        with self._write() as db:
            row = self._run_row(db, run_id, lock=True)
            if row is None or row["status"] not in ACTIVE_STATUSES or row["pid"] != pid:
                return False
            return self._finish(db, _row_run(row), "lost", None, reason,
                                self.clock()).status == "lost"

    def release_run(self, run_id: str, pid: int, before: float) -> bool:
        with self._write() as db:
            cur = db.execute(
                "UPDATE runs SET pid = NULL, proc_start = NULL, host = NULL, "
                "heartbeat_at = NULL, dispatched_at = NULL WHERE id = ? AND status = 'queued' "
                "AND pid = ? AND cancel_requested = 0 AND fire_at > ?", (run_id, pid, before))
            return cur.rowcount == 1

    def finish_run(self, run_id: str, status: str, exit_code: int | None = None,
                   reason: str | None = None, at: float | None = None,
                   metrics: Iterable[Sequence] | None = None) -> Run:
        at = self.clock() if at is None else at
        with self._write() as db:
            row = self._run_row(db, run_id, lock=True)
            if row is None:
                raise NotFound(f"no run {run_id!r}", field="run")
            return self._finish(db, _row_run(row), status, exit_code, reason, at, metrics)

    def _finish(self, db, run: Run, status: str, exit_code: int | None, reason: str | None,
                at: float, metrics: Iterable[Sequence] | None = None) -> Run:
        """``finish_run`` inside the caller's transaction, the run's row locked."""
        run_id = run.id
        if run.status not in ACTIVE_STATUSES:
            return run
        if status == "cancelled" and run.reason:
            reason = run.reason  # why it was cancelled ("replaced by run ...")
        db.execute("UPDATE runs SET status = ?, exit_code = ?, reason = ?, finished_at = ? "
                   "WHERE id = ?", (status, exit_code, reason, at, run_id))
        self._record_builtins(db, run, status, exit_code, at)
        if metrics and status != RunStatus.SKIPPED:
            self._record_final(db, run, metrics, at)
        jrow = db.execute(f"SELECT * FROM jobs WHERE id = ?{self._lock}",
                          (run.job_id,)).fetchone()
        job = _row_job(jrow) if jrow is not None else None
        recovered = (status == "succeeded" and jrow is not None
                     and jrow["consecutive_failures"] > 0)
        self._event(db, f"run.{'lost' if status == 'lost' else 'finished'}", run.job_id,
                    run_id, at=at, status=status, exit_code=exit_code, reason=reason,
                    trigger=run.trigger, attempt=run.attempt, recovered=recovered)
        fired = None
        if job is not None and job.policy.alerts and status in alert_rules.CHECKED_STATUSES:
            fired = self._check_alerts(db, job, run, status, at)
        if job is not None and status != "skipped":
            self._after_run(db, job, run, status, exit_code, reason, at, fired)
        if run.backfill_id:
            self._backfill_next(db, run.backfill_id, at)
        return _row_run(self._run_row(db, run_id))

    def _check_alerts(self, db, job: Job, run: Run, status: str,
                      at: float) -> list[dict[str, str]] | None:
        """The job's alert rules for a run that ended (``at``), in its transaction, its
        metrics recorded: rules that fire mark the run (``runs.alerts``) and raise
        ``run.alert``; a run none fire and one passes, after a run that alerted, raises
        ``run.recovered``. A rule whose statistic has too few earlier runs is unknown:
        neither."""
        rules = alert_rules.usable_rules(job.policy.alerts)
        if not rules:
            return None
        subjects = sorted({r.subject for r in rules})
        marks = ", ".join("?" * len(subjects))
        values = {r[0]: float(r[1]) for r in db.execute(
            f"SELECT name, value FROM run_metrics WHERE run_id = ? AND name IN ({marks})",
            (run.id, *subjects)).fetchall()}
        history: dict[tuple[str, int], Sequence[float]] = {}
        for rule in rules:
            key = (rule.subject, rule.window)
            if rule.window and key not in history:
                history[key] = [r[2] for r in self._series(
                    job.id, rule.subject, rule.window, at, run.id, run.id, db=db)]
        verdict = alert_rules.judge(rules, values, history)
        if verdict.fired:
            db.execute("UPDATE runs SET alerts = ? WHERE id = ?",
                       (json.dumps(verdict.fired), run.id))
            self._event(db, "run.alert", job.id, run.id, at=at, job=job.name, status=status,
                        alerts=verdict.fired)
            return verdict.fired
        elif verdict.recovers:
            marks = ", ".join("?" * len(alert_rules.CHECKED_STATUSES))
            prev = db.execute(
                f"SELECT id, alerts FROM runs WHERE job_id = ? AND id <> ? AND status IN "
                f"({marks}) AND finished_at IS NOT NULL "
                f"ORDER BY finished_at DESC, id DESC LIMIT 1",
                (job.id, run.id, *sorted(alert_rules.CHECKED_STATUSES))).fetchone()
            if prev is not None and prev[1] is not None:
                self._event(db, "run.recovered", job.id, run.id, at=at, job=job.name,
                            status=status, previous_run=prev[0],
                            rules=[a["rule"] for a in json.loads(prev[1])])
        return None

    @staticmethod
    def _record_builtins(db, run: Run, status: str, exit_code: int | None, at: float) -> None:
        """At a run's end, in its transaction: what it reported while running moves to its
        end (``at``), and it gets the built-ins the store knows (``duration`` if it
        started, ``exit_code`` if known, ``output_bytes``); a skipped slot gets none.
        ``cpu_seconds`` and ``peak_memory`` are the runtime's (:meth:`_record_final`)."""
        db.execute("UPDATE run_metrics SET at = ? WHERE run_id = ?", (at, run.id))
        if status == RunStatus.SKIPPED:
            return
        values: list[tuple[str, float]] = []
        if run.started_at is not None:
            values.append(("duration", at - run.started_at))
        if exit_code is not None:
            values.append(("exit_code", float(exit_code)))
        values.append(("output_bytes", float(run.output_bytes or 0)))
        db.executemany(METRIC_UPSERT, [(run.id, run.job_id, name, value, BUILTIN[name], at)
                                       for name, value in values])

    @staticmethod
    def _record_final(db, run: Run, metrics: Iterable[Sequence], at: float) -> None:
        """The metrics a final status carries (``finish_run(metrics=...)``), in its
        transaction: reported names checked as :meth:`record_metrics` checks them, and
        the runtime's built-ins :data:`RUNTIME_BUILTINS`, which only this path accepts. A
        bad row is dropped, never the final status; reported names past
        ``MAX_PER_RUN`` are dropped too."""
        latest: dict[str, tuple[float, str]] = {}
        for row in metrics:
            try:
                name, value, unit = row
                if name in RUNTIME_BUILTINS:
                    value = float(value)
                    if not math.isfinite(value) or value < 0:
                        continue
                    unit = BUILTIN[name]
                else:
                    metric_line(name, value, unit)  # the checks a run's own line passes
                latest[name] = (float(value), unit)
            except (ValueError, TypeError):
                continue
        if not latest:
            return
        have = {r[0] for r in db.execute("SELECT name FROM run_metrics WHERE run_id = ?",
                                         (run.id,)).fetchall()}
        room = MAX_PER_RUN - len(have - BUILTIN.keys())
        rows = []
        for name, (value, unit) in latest.items():
            if name not in have and name not in BUILTIN:
                if room <= 0:
                    continue
                room -= 1
            rows.append((run.id, run.job_id, name, value, unit, at))
        db.executemany(METRIC_UPSERT, rows)

    def _after_run(self, db, job: Job, run: Run, status: str, exit_code, reason, at,
                   alerts: list[dict[str, str]] | None = None) -> None:
        """Update the job's summary; schedule a retry and trip the circuit breaker as the
        policy (domain/policy.after_run) says."""
        outcome = rules.after_run(
            job.policy, status=status, attempt=run.attempt, exit_code=exit_code,
            reason=reason, failures=job.consecutive_failures, state=job.state,
            state_reason=job.state_reason)
        running = job.running_count - (1 if run.status == "running" else 0)
        summary = {"id": run.id, "status": status, "started_at": run.started_at,
                   "finished_at": at, "exit_code": exit_code,
                   "duration": (at - run.started_at) if run.started_at else None,
                   "reason": reason, "trigger": run.trigger, "attempt": run.attempt,
                   "alerts": alerts}
        if outcome.tripped:
            self._event(db, "job.blocked", job.id, run.id, at=at, reason=outcome.state_reason)
        db.execute("UPDATE jobs SET running_count = ?, last_run = ?, consecutive_failures = ?, "
                   "state = ?, state_reason = ? WHERE id = ?",
                   (max(0, running), json.dumps(summary), outcome.consecutive_failures,
                    outcome.state, outcome.state_reason, job.id))
        if outcome.retry:
            self._insert_run(db, job, trigger=Trigger.RETRY, scheduled_for=run.scheduled_for,
                             fire_at=at + rules.retry_delay(job.policy, run.attempt),
                             attempt=run.attempt + 1, now=at, parameters=run.parameters,
                             spec=run.spec)  # a retry runs what the failed attempt ran
        else:
            self._trigger_downstream(db, job, run, status, exit_code, at)

    def _trigger_downstream(self, db, job: Job, run: Run, status: str, exit_code,
                            at: float) -> None:
        """Queue the runs of the jobs that run after *job* (pipelines) as
        ``policy.fan_in`` decides, in the transaction that ends its run, the downstream
        job's row locked: however many tickers end runs at once, each downstream slot is
        queued once. The store selects the candidates (the downstream jobs, and the
        other upstreams' ended runs for the slot) and applies the answer."""
        if rules.upstream_outcome(status) is None:
            return  # cancelled or skipped: nothing follows (no downstream is read)
        rows = db.execute("SELECT * FROM jobs WHERE id IN (SELECT job_id FROM job_after "
                          f"WHERE upstream_id = ?) ORDER BY id{self._lock}",
                          (job.id,)).fetchall()
        slot = run.scheduled_for
        ended = rules.UpstreamEnd(job.id, job.name, run.id, status, exit_code, run.attempt, at)
        for row in rows:
            if row["state"] == "scheduled" and self._block_unlinked(db, row, at):
                continue  # its owner may no longer read an upstream: nothing of it is read
            down = _row_job(row)
            after = down.after or []
            upstream = rules.fan_in(after=after, enabled=down.enabled, state=down.state,
                                    ended=ended,
                                    others=self._upstream_ends(db, after, job.id, slot))
            if upstream is None:
                continue
            if db.execute("SELECT 1 FROM runs WHERE job_id = ? AND trigger = 'upstream' "
                          "AND scheduled_for = ?", (down.id, slot)).fetchone():
                continue  # queued already (this slot's other upstream came first)
            self._insert_run(db, down, trigger=Trigger.UPSTREAM, scheduled_for=slot,
                             fire_at=at, now=at, spec={**down.spec(), "upstream": upstream})

    @staticmethod
    def _upstream_ends(db, after: list[dict], upstream_id: str,
                       slot: float | None) -> list[rules.UpstreamEnd]:
        """The ended runs for *slot* of a downstream job's upstreams other than
        *upstream_id* (none for a job with one upstream: nothing is read)."""
        others = sorted({a["job"] for a in after if a["job"] != upstream_id})
        if not others:
            return []
        return [rules.UpstreamEnd(*r) for r in db.execute(
            "SELECT job_id, job_name, id, status, exit_code, attempt, finished_at FROM runs "
            f"WHERE job_id IN ({', '.join('?' * len(others))}) AND scheduled_for = ? "
            "AND status NOT IN ('queued', 'running')", (*others, slot)).fetchall()]

    def request_cancel(self, run_id: str, reason: str | None = None) -> Run:
        with self._write() as db:
            run = _row_run(self._run_row(db, run_id, lock=True) or self._missing(run_id))
            if run.status not in ACTIVE_STATUSES:
                raise Conflict(f"run {run_id} is {run.status}, not running", field="run")
            db.execute("UPDATE runs SET cancel_requested = 1, reason = COALESCE(?, reason) "
                       "WHERE id = ?", (reason, run_id))
            self._audit("cancel", run.job_id, run_id,
                        detail={"status": run.status, **({"reason": reason} if reason else {})})
            self._event(db, "run.cancel_requested", run.job_id, run_id, reason=reason)
        if run.status == "queued" and run.pid is None:
            return self.finish_run(run_id, "cancelled",
                                   reason=reason or "cancelled before it started")
        return self.get_run(run_id)

    @staticmethod
    def _missing(run_id: str):
        raise NotFound(f"no run {run_id!r}", field="run")

    def active_runs(self) -> list[Run]:
        rows = self.db.execute(f"SELECT {LIST_COLUMNS} FROM runs "
                               "WHERE status IN ('queued', 'running')").fetchall()
        return [_row_run(r) for r in rows]

    # -- run metrics ------------------------------------------------------------
    def record_metrics(self, run_id: str, metrics: Iterable[Metric]) -> int:
        latest: dict[str, Metric] = {}
        for m in metrics:
            metric_line(m.name, m.value, m.unit)  # the checks a run's own line passes
            latest[m.name] = m
        with self._write() as db:
            row = db.execute(f"SELECT job_id, finished_at FROM runs WHERE id = ?{self._lock}",
                             (run_id,)).fetchone()
            if row is None:
                raise NotFound(f"no run {run_id!r}", field="run")
            have = {r[0] for r in db.execute("SELECT name FROM run_metrics WHERE run_id = ?",
                                             (run_id,)).fetchall()}
            room = MAX_PER_RUN - len(have - BUILTIN.keys())
            at = row["finished_at"] if row["finished_at"] is not None else self.clock()
            rows = []
            for m in latest.values():
                if m.name not in have:
                    if room <= 0:
                        continue  # past the cap: dropped, as the output parser drops it
                    room -= 1
                rows.append((run_id, row["job_id"], m.name, float(m.value), m.unit, at))
            if rows:
                db.executemany(METRIC_UPSERT, rows)
            return len(rows)

    def metric_series(self, job_id: str, name: str, limit: int = 100,
                      before: float | None = None, before_run: str | None = None
                      ) -> list[tuple[str, float, float, str]]:
        return self._series(job_id, name, limit, before, before_run)

    def _series(self, job_id: str, name: str, limit: int, before: float | None,
                before_run: str | None, other_than: str | None = None, db=None
                ) -> list[tuple[str, float, float, str]]:
        """Keyset over ``(at, run_id)`` descending, the order of ``run_metrics_series``."""
        if limit <= 0:
            return []
        where, args = "", []
        if before is not None and before_run is not None:
            where, args = " AND (at < ? OR (at = ? AND run_id < ?))", [before, before, before_run]
        elif before is not None:
            where, args = " AND at < ?", [before]
        if other_than is not None:
            where, args = where + " AND run_id <> ?", [*args, other_than]
        rows = (db or self.db).execute(
            f"SELECT run_id, at, value, unit FROM run_metrics WHERE job_id = ? AND name = ?"
            f"{where} ORDER BY at DESC, run_id DESC LIMIT ?",
            (job_id, name, *args, limit)).fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]  # REAL columns read as floats

    def metric_names(self, job_id: str) -> list[tuple[str, str, int]]:
        rows = self.db.execute(
            "SELECT m.name, m.unit, c.n FROM (SELECT name, COUNT(*) AS n, MAX(at) AS last "
            "FROM run_metrics WHERE job_id = ? GROUP BY name) c JOIN run_metrics m "
            "ON m.job_id = ? AND m.name = c.name AND m.at = c.last "
            "ORDER BY m.name, m.run_id DESC", (job_id, job_id)).fetchall()
        names: dict[str, tuple[str, str, int]] = {}
        for name, unit, n in rows:
            names.setdefault(name, (name, unit, int(n)))  # of runs ending at one instant: one
        return list(names.values())

    def metric_history(self, job_id: str, name: str, n: int,
                       before_run: str | None = None) -> list[float]:
        if before_run is None:
            return [r[2] for r in self._series(job_id, name, n, None, None)]
        row = self.db.execute("SELECT finished_at FROM runs WHERE id = ?",
                              (before_run,)).fetchone()
        if row is None:
            return []
        # a run still active: every value recorded so far is before it
        end = row[0] if row[0] is not None else float("inf")
        return [r[2] for r in self._series(job_id, name, n, end, before_run, before_run)]

    # -- events and tickers -----------------------------------------------------
    def events_since(self, cursor: int, limit: int = 500) -> list[Event]:
        rows = self.db.execute("SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                               (cursor, limit)).fetchall()
        return [_row_event(r) for r in rows]

    def claim_events(self, consumer: str, limit: int = 500) -> list[Event]:
        """Events no other process of this *consumer* has taken yet (each batch once).

        The consumer's cursor lives in ``meta`` and moves in the same transaction
        that reads the batch (under a row lock), so two tickers never both send one
        notification. A new consumer starts at the newest event: history is not replayed.
        """
        key = f"cursor:{consumer}"
        seen = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if seen is not None and int(seen[0]) >= self.last_event_seq():
            return []  # nothing new: no write lock taken
        with self._write() as db:
            row = db.execute(f"SELECT value FROM meta WHERE key = ?{self._lock}",
                             (key,)).fetchone()
            if row is None:
                newest = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
                db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
                           (key, str(newest)))
                return []
            rows = db.execute("SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                              (int(row[0]), limit)).fetchall()
            if rows:
                db.execute("UPDATE meta SET value = ? WHERE key = ?", (str(rows[-1]["seq"]), key))
        return [_row_event(r) for r in rows]

    def last_event_seq(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]

    def register_ticker(self, kind: str, host: str, pid: int,
                        ticker_id: str | None = None) -> Ticker:
        now = self.clock()
        start = proc_start_time(pid) if host == hostname() else None
        ticker = Ticker(ticker_id or new_id("t"), kind, host, pid, now, now, proc_start=start)
        with self._write() as db:
            db.execute("INSERT INTO tickers (id, kind, host, pid, started_at, heartbeat_at, "
                       "proc_start) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                       "kind = excluded.kind, host = excluded.host, pid = excluded.pid, "
                       "started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, "
                       "proc_start = excluded.proc_start, last_tick_at = NULL",
                       (ticker.id, kind, host, pid, now, now, start))
            # forget tickers that have been silent for a day
            db.execute("DELETE FROM tickers WHERE heartbeat_at < ?", (now - 86400,))
            self._event(db, "ticker.started", at=now, kind=kind, host=host, pid=pid)
        return ticker

    def ticker_heartbeat(self, ticker_id: str, at: float, ticked: bool = False) -> None:
        with self._write(durable=False) as db:
            if ticked:
                db.execute("UPDATE tickers SET heartbeat_at = ?, last_tick_at = ? WHERE id = ?",
                           (at, at, ticker_id))
            else:
                db.execute("UPDATE tickers SET heartbeat_at = ? WHERE id = ?", (at, ticker_id))

    def unregister_ticker(self, ticker_id: str) -> None:
        with self._write() as db:
            row = db.execute("SELECT * FROM tickers WHERE id = ?", (ticker_id,)).fetchone()
            db.execute("DELETE FROM tickers WHERE id = ?", (ticker_id,))
            if row is not None:
                self._event(db, "ticker.stopped", kind=row["kind"], host=row["host"],
                            pid=row["pid"])

    def list_tickers(self) -> list[Ticker]:
        rows = self.db.execute("SELECT * FROM tickers ORDER BY started_at").fetchall()
        here = hostname()
        return [Ticker(r["id"], r["kind"], r["host"], r["pid"], r["started_at"],
                       r["heartbeat_at"], r["last_tick_at"], r["proc_start"],
                       gone=(r["host"] == here and r["proc_start"] is not None
                             and not process_alive(r["pid"], r["proc_start"])))
                for r in rows]

    # -- housekeeping -----------------------------------------------------------
    def gc(self, now: float, keep_runs: int = rules.KEEP_RUNS,
           keep_failures: int = rules.KEEP_FAILURES, max_age: float = rules.MAX_AGE,
           audit_max_age: float | None = None) -> dict:
        """Delete what retention (``policy.runs_to_delete``) does not keep: per job the
        newest *keep_runs* runs plus the newest *keep_failures* failures (a job's own
        ``keep_runs`` / ``keep_failures`` win), none older than *max_age*; never an
        active run. Runs of deleted jobs go too. Audit records older than
        *audit_max_age*, when given (:meth:`HistorySQL._prune_audit`)."""
        doomed: list[str] = []
        db = self.db
        for job_row in db.execute("SELECT id, policy FROM jobs").fetchall():
            k_runs, k_fail = rules.retention_limits(json.loads(job_row["policy"]),
                                                    keep_runs, keep_failures)
            doomed += rules.runs_to_delete(db.execute(
                "SELECT id, status, queued_at FROM runs WHERE job_id = ? "
                "ORDER BY fire_at DESC, id DESC", (job_row["id"],)).fetchall(),
                now=now, keep_runs=k_runs, keep_failures=k_fail, max_age=max_age)
        orphans = [r[0] for r in db.execute(
            "SELECT id FROM runs WHERE job_id NOT IN (SELECT id FROM jobs) "
            "AND status NOT IN ('queued', 'running')").fetchall()]
        doomed += orphans
        with self._write() as db:
            for i in range(0, len(doomed), 500):
                chunk = doomed[i:i + 500]
                marks = ",".join("?" * len(chunk))
                db.execute(f"DELETE FROM runs WHERE id IN ({marks})", chunk)
                db.execute(f"DELETE FROM run_metrics WHERE run_id IN ({marks})", chunk)
                db.execute(f"DELETE FROM events WHERE run_id IN ({marks})", chunk)
                self._drop_index(db, chunk)
            ev = db.execute("DELETE FROM events WHERE at < ?", (now - max_age,)).rowcount
            # deliveries tried to the end, as old as the events they told of
            db.execute("DELETE FROM deliveries WHERE status <> 'pending' AND created_at < ?",
                       (now - max_age,))
            audited = 0 if audit_max_age is None else self._prune_audit(db, now - audit_max_age)
        self._forget_output(doomed)
        return {"runs_deleted": len(doomed), "events_deleted": ev, "audit_deleted": audited}

    def jobs_by_state(self, viewer: Viewer | None = None) -> dict[str, int]:
        where, args = self._visible(viewer)
        return {r[0]: r[1] for r in self.db.execute(
            f"SELECT state, COUNT(*) FROM jobs WHERE 1=1{where} GROUP BY state",
            args).fetchall()}

    def stats(self, viewer: Viewer | None = None) -> dict:
        """Counts and per-job figures of the jobs *viewer* may read."""
        db = self.db
        jobs = self.jobs_by_state(viewer)
        where, args = self._visible(viewer, "job_id")
        runs = {r[0]: r[1] for r in db.execute(
            f"SELECT status, COUNT(*) FROM runs WHERE 1=1{where} GROUP BY status",
            args).fetchall()}
        where, args = self._visible(viewer, "j.id")
        per_job = []
        for r in db.execute(
            "SELECT j.id, j.name, "
            "SUM(CASE WHEN r.status = 'succeeded' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN r.status IN ('failed', 'timed_out', 'lost') THEN 1 ELSE 0 END), "
            "AVG(CASE WHEN r.finished_at IS NOT NULL AND r.started_at IS NOT NULL "
            "    THEN r.finished_at - r.started_at END), "
            "MAX(CASE WHEN r.finished_at IS NOT NULL AND r.started_at IS NOT NULL "
            "    THEN r.finished_at - r.started_at END) "
            f"FROM jobs j LEFT JOIN runs r ON r.job_id = j.id WHERE 1=1{where} "
            "GROUP BY j.id ORDER BY j.name", args).fetchall():
            ok, bad = r[2] or 0, r[3] or 0
            per_job.append({
                "job_id": r[0], "name": r[1], "succeeded": ok, "failed": bad,
                "success_rate": (ok / (ok + bad)) if ok + bad else None,
                "mean_duration": r[4], "max_duration": r[5],
            })
        return {"jobs_by_state": jobs, "runs_by_status": runs, "jobs": per_job}

    # -- copying a whole store (``hermes-cron migrate``) ---------------------------
    def table_rows(self, table: str) -> tuple[list[str], list[tuple]]:
        """Every row of one of :data:`TABLES`: ``(columns, rows)``."""
        if table not in TABLES:
            raise ValueError(table)
        cur = self.db.execute(f"SELECT * FROM {table}")
        cols = [d[0] for d in cur.description]
        return cols, [tuple(r) for r in cur.fetchall()]

    def import_rows(self, db, table: str, cols: list[str], rows: list[tuple]) -> None:
        """Insert rows copied from another store, keys and ``seq`` as they were."""
        if table not in TABLES:
            raise ValueError(table)
        sql = (f"INSERT INTO {table} ({', '.join(cols)}) "
               f"VALUES ({', '.join('?' * len(cols))})")
        for i in range(0, len(rows), 1000):
            db.executemany(sql, rows[i:i + 1000])

    @contextmanager
    def snapshot(self) -> Iterator:
        """Reads on this thread's connection see one consistent state of the store."""
        db = self.db
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    def after_import(self, db) -> None:
        """Called after :meth:`import_rows` in the same transaction (sequences)."""

    def import_output(self, run_id: str, segments: list[tuple[int, str, bytes]]) -> int:
        """Store a run's output copied from another store (offsets kept); returns bytes."""
        raise NotImplementedError

    def import_artifact(self, run_id: str, data: bytes) -> None:
        raise NotImplementedError

    def read_artifact(self, run_id: str) -> bytes | None:
        """A notebook run's executed notebook, or None."""
        try:
            with open(self.artifact_path(run_id), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
