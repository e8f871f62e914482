"""The store's interfaces, one per concern; ``Store`` is their combination.

=================  ==========================================================  ========
interface          what it keeps                                               methods
=================  ==========================================================  ========
``JobStore``       jobs: create, read, list, change, delete, pause; due slots   13
                   and their claims
``RunLedger``      runs: queue, take, attach, start, heartbeat, finish,         20
                   cancel, lose, release; the rows the waiting rules read;
                   retention
``RunMetrics``     the numbers each run reported or was measured by, and a      4
                   job's series of one of them
``Backfills``      past slots run as a whole, a few at a time                   4
``OutputStore``    each run's output log (byte offsets) and notebook artifact   6
``TickerRegistry`` which tickers are alive                                      4
``EventLog``       the append-only ``events`` table and its cursors             3
``Outbox``         notifications on their way out; the late-slot watch         12
``History``        who did what: job revisions, the chained audit log, the      7
                   file a run ran; definitions applied in one transaction
``RunViews``       across runs: each run's output indexed line-aligned and      4
                   searched; the runs of a time range; run counts per bucket
``Store``          all of the above, plus ``close`` and where the store lives   1
=================  ==========================================================  ========

What every implementation promises, whatever the interface:

- **Synchronous, one connection per thread.** A store is called from any number of
  threads (each gets its own connection) and any number of processes and hosts share
  one store. Async callers go through :class:`hermes_cron_ext.store.AsyncStore`, which
  runs every call on a store thread, never on the event loop.
- **Typed values in and out.** Jobs, runs, events and tickers are the dataclasses of
  ``domain/models.py``; fields come checked by ``domain/jobspec.py``. The store
  decides nothing of its own: it selects the rows ``domain/policy.py`` reads and
  writes its answer in the same transaction.
- **A write is one transaction.** Every method that changes state commits it whole or
  not at all, with its events (see :class:`EventLog`). Where a method says
  *compare-and-set*, it changes a row only if the row still holds what the caller (or
  the method's own read) saw, and reports whether it did: that is what makes a claim,
  an attach or a final status happen once however many processes race.
- **Keyset pages.** A ``list_*`` that returns a :class:`~hermes_cron_ext.domain.models.Page`
  is a keyset page: ``cursor`` is an opaque string naming the last row returned, the
  next page starts strictly after it (never ``OFFSET``), rows added meanwhile are
  neither skipped nor repeated, and ``cursor`` is None on the last page. A cursor the
  store did not make raises :class:`~hermes_cron_ext.errors.InvalidInput`.
- **Errors.** ``NotFound`` (404) for a job, run or backfill that does not exist where
  the method says so; ``Conflict`` (409) where the state refuses the change;
  ``InvalidInput`` (400) for a bad cursor or filter; ``StoreError`` when the store
  cannot be opened or used. Methods that a supervisor calls after its run may be gone
  (``attach_run``, ``mark_running``, ``mark_lost``, ``heartbeat_run``, the waiting
  rules) answer instead of raising, as each says.
- **Bad rows are contained.** A row that cannot be decoded (a schedule that no longer
  parses) affects that job alone: it is blocked with the reason, and every list and
  claim goes on.

Adding a backend: docs/ARCHITECTURE.md, "Adding a store backend".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from hermes_cron_ext.domain.access import Viewer
from hermes_cron_ext.domain.metrics import Metric
from hermes_cron_ext.domain.models import Event, Job, Page, Run, Ticker
from hermes_cron_ext.domain.notifications import FIRST_DELAY
from hermes_cron_ext.domain.policy import KEEP_FAILURES, KEEP_RUNS, MAX_AGE


class JobStore(ABC):
    """Jobs, and the slots they fall due at.

    A job is found by its id or by its name (names are unique). Its ``next_run_at`` is
    the next slot of its schedule (None: no schedule of its own, a finished one-shot, or
    disabled), kept indexed so that finding what is due is a range scan. Claiming is the
    one place where several tickers race: :meth:`claim_due` must give each slot
    ``(job_id, scheduled_for)`` to exactly one of them.
    """

    @abstractmethod
    def create_job(self, fields: dict) -> tuple[Job, bool]:
        """Create a job from fields checked by ``jobspec.validate_new``; its
        ``job.created`` event in the same transaction.

        Returns ``(job, created)``. With an ``idempotency_key`` already used for the same
        request, the stored job and False (also when two creates race).

        :raises Conflict: when the name is taken, or the idempotency key was used for a
            different request
        """

    @abstractmethod
    def get_job(self, ref: str, owner: str | None = None) -> Job:
        """A job by id or name, each ``after`` entry with its upstream's name. Names are
        unique per owner: a name is looked up among *owner*'s jobs, or with no *owner*
        the store's own user's ('') or the one job of that name.

        :raises NotFound:
        :raises InvalidInput: no *owner*, and jobs of several owners have that name
        """

    @abstractmethod
    def readable_jobs(self, job_ids: list[str], viewer: Viewer | None) -> set[str]:
        """Which of *job_ids* are jobs that *viewer* may read."""

    @abstractmethod
    def jobs_named(self, name: str, viewer: Viewer | None = None) -> list[Job]:
        """The jobs named *name* that *viewer* may read (every owner's), by owner."""

    @abstractmethod
    def list_jobs(self, *, limit: int = 100, cursor: str | None = None,
                  state: str | None = None, search: str | None = None,
                  viewer: Viewer | None = None) -> Page[Job]:
        """Jobs sorted by name (then id), one keyset page of at most *limit*, of those
        *viewer* may read (``access.py``; None: all).

        *state* filters by state (``running``: scheduled jobs with a running run);
        *search* matches what a user sees of a job (name, schedule, command, code,
        description; never env values), case-insensitive, ``%`` and ``_`` taken literally.

        :raises InvalidInput: for a cursor this store did not make
        """

    @abstractmethod
    def update_job(self, ref: str, fields: dict) -> Job:
        """Replace a job's definition with fields from ``jobspec.validate_changes``, in one
        transaction under the job's row lock: ``version`` goes up by one, ``next_run_at``
        is recomputed only when the schedule or zone changed (or the job is enabled
        again).

        :raises NotFound:
        :raises Conflict: when the new name is another job's
        """

    @abstractmethod
    def delete_job(self, ref: str) -> Job:
        """Delete a job, its finished runs and their output; queued and running runs stay
        and finish on their own (their start check then says the job was deleted).

        :raises NotFound:
        """

    @abstractmethod
    def set_paused(self, ref: str, paused: bool, reason: str | None = None) -> Job:
        """Pause, or resume. Resuming clears ``blocked`` and the failure count and sets
        ``next_run_at`` to the first slot after now: a paused period is not caught up.
        Pausing a paused or blocked job changes nothing.

        :raises NotFound:
        """

    @abstractmethod
    def jobs_by_state(self, viewer: Viewer | None = None) -> dict[str, int]:
        """Job counts by state (of the jobs *viewer* may read); cheap at any number of
        runs (status checks poll it)."""

    @abstractmethod
    def next_wakeup(self) -> float | None:
        """The earliest instant at which something becomes due: a scheduled job's
        ``next_run_at`` or an undispatched queued run's ``fire_at`` (both indexed); None
        when nothing is."""

    @abstractmethod
    def count_due(self, horizon: float) -> tuple[int, int]:
        """How many slots and undispatched runs fall due by *horizon*, and how many of
        those slots are notebook jobs' (the ticker sizes its lead by them). Reads only."""

    @abstractmethod
    def claim_due(self, horizon: float, now: float, owner: str,
                  cause: str | None = None) -> list[Run]:
        """Claim every slot and every undispatched queued run due by *horizon*, in one
        transaction, exactly once across every ticker on the store.

        A job's slot is taken by a compare-and-set of its ``next_run_at`` (a ticker that
        lost the race skips it), and its run rows are unique per
        ``(job_id, scheduled_for, attempt)`` for scheduled triggers. A pending run (a
        retry, a manual run) is taken by a compare-and-set of its ``dispatched_at``.
        Missed slots are resolved by the job's misfire policy (``policy.plan_slot``),
        and every slot not run is recorded as a ``skipped`` run with its reason. A job
        whose schedule cannot be computed is blocked with the reason; the others are
        still claimed. Returns the queued runs claimed, already dispatched.
        """

    @abstractmethod
    def fire_reboot_jobs(self, now: float) -> int:
        """Queue a run (trigger ``reboot``) of every enabled, scheduled ``@reboot`` job;
        returns how many. Called once when a ticker starts."""


class RunLedger(ABC):
    """Runs, from queued to their final status, and what follows their end.

    A run's life: queued (:meth:`request_run`, or a claim) → dispatched once
    (:meth:`dispatch`, :meth:`take_next`, or the claim itself) → attached by one
    supervisor (:meth:`attach_run`) → running (:meth:`mark_running`) → heartbeats →
    one final status (:meth:`finish_run`, :meth:`mark_lost`, a cancel). Each arrow is a
    compare-and-set: a second caller is refused, never obeyed twice. What a final status
    causes (the job's summary, a retry, the circuit breaker, the runs of jobs that run
    after it, a backfill's next slot) is written in the transaction that records it,
    under the job's row lock, so it happens once.
    """

    @abstractmethod
    def request_run(self, ref: str, trigger: str = "manual",
                    parameters: dict | None = None) -> Run:
        """Queue a run of the job now (undispatched: a ticker or :meth:`dispatch` takes
        it); *parameters* go over the job's own. The overlap decision and the insert are
        one transaction under the job's row lock.

        :raises NotFound: no such job
        :raises Conflict: when the overlap policy refuses (``policy.manual_run_refusal``)
        """

    @abstractmethod
    def dispatch(self, run_id: str) -> bool:
        """Take a queued, undispatched run for a caller that starts its supervisor itself
        (a compare-and-set of ``dispatched_at``); False when another took it first or the
        run does not exist."""

    @abstractmethod
    def take_next(self, run_id: str) -> list[str]:
        """The runs that *run_id*'s end queued (downstream jobs', its backfill's next
        slot) that run on the local executor, taken in one transaction as :meth:`dispatch` takes
        one, for the caller to supervise at once; those another caller took first are
        left out ([] for an unknown run)."""

    @abstractmethod
    def get_run(self, run_id: str) -> Run:
        """One run, with its spec.

        :raises NotFound:
        """

    @abstractmethod
    def list_runs(self, job_ref: str | None = None, *, limit: int = 50,
                  cursor: str | None = None, status: str | None = None,
                  viewer: Viewer | None = None) -> Page[Run]:
        """Runs newest first (by ``fire_at``, then id: runs of one instant page without a
        loss or a repeat), one keyset page; of one job, or of all the jobs *viewer* may
        read.

        :raises NotFound: no such job
        :raises InvalidInput: an unknown status, or a cursor this store did not make
        """

    @abstractmethod
    def active_runs(self) -> list[Run]:
        """Every queued or running run (for crash detection)."""

    @abstractmethod
    def attach_run(self, run_id: str, pid: int, proc_start: int | None, host: str) -> bool:
        """A supervisor takes the run (before it waits for its instant): a compare-and-set
        on a queued run with no supervisor, the fence against :meth:`mark_lost`. False
        when the run is no longer queued, another supervisor has it, or it does not
        exist: the caller must not run it."""

    @abstractmethod
    def check_start(self, run_id: str) -> str | None:
        """Why the run must not start now (not queued, cancel asked, job gone, paused,
        disabled, overlap), or None.

        :raises NotFound:
        """

    def check_starts(self, run_ids: list[str]) -> dict[str, str | None]:
        """:meth:`check_start` for many runs (a burst's supervisors ask at one instant);
        a backend may answer them in one query.

        :raises NotFound: when a run does not exist
        """
        return {run_id: self.check_start(run_id) for run_id in run_ids}

    @abstractmethod
    def running_others(self, run_id: str) -> list[Run]:
        """The other running runs of the same job that the run overlaps (overlap
        ``replace`` and ``queue``): never those of its own backfill; [] for an unknown
        run."""

    @abstractmethod
    def run_secrets(self, run_id: str) -> dict[str, str]:
        """The secret env values the run's spec names, read from its job at start (run
        rows never hold them); a secret the job no longer has is left out; {} for an
        unknown run or a deleted job."""

    @abstractmethod
    def catchup_ahead(self, run_id: str) -> str | None:
        """The run a catch-up waits for (a running run of its job, or an earlier
        catch-up still queued), so missed slots run one after another; or None (also
        for an unknown run). The store selects the job's active runs;
        ``policy.catchup_ahead`` picks."""

    @abstractmethod
    def turn_ahead(self, run_id: str) -> str | None:
        """The run a waiting run (overlap ``queue``, or a run owed to its slot:
        ``policy.on_overlap``) waits for: a running run of its job, else a run of its
        job queued before it that waits too; or None: its turn (also for an unknown
        run). So waiting runs start one at a time, in the order they were queued. The
        store selects the job's active runs; ``policy.turn_ahead`` picks."""

    @abstractmethod
    def mark_running(self, run_id: str, started_at: float, payload_pid: int) -> bool:
        """The payload is running (a compare-and-set on a queued run; the job's running
        count and summary move with it); False when the run was no longer queued
        (cancelled, lost) or does not exist: the caller stops."""

    @abstractmethod
    def heartbeat_run(self, run_id: str, at: float, phase: str | None, progress: float | None,
                      output_bytes: int) -> bool:
        """Record liveness and progress (a ``run.progress`` event when phase or progress
        changed); returns True when a cancel was requested, or the run is gone."""

    @abstractmethod
    def finish_run(self, run_id: str, status: str, exit_code: int | None = None,
                   reason: str | None = None, at: float | None = None,
                   metrics: Iterable[Sequence] | None = None) -> Run:
        """Record a final status once; later calls leave the first one in place and
        return the run as it is. In the same transaction: the job's summary and failure
        count, a retry (``policy.after_run``), the circuit breaker, the runs of jobs
        that run after it (``policy.fan_in``: one per downstream slot), the backfill's
        next slot, the built-in metrics the store measures (:class:`RunMetrics`) and
        *metrics*.

        *metrics*: what the runtime hands over with the status, ``[name, value, unit]``
        rows (plain lists, so they cross the relay as they are): what the run's output
        reported, checked as :meth:`RunMetrics.record_metrics` checks it, and the
        built-ins only the runtime measures, ``cpu_seconds`` and ``peak_memory`` (this
        path only: ``record_metrics`` refuses them; their unit is the built-in one). A
        row that fails a check (bad name, value or unit; a reported name past
        ``metrics.MAX_PER_RUN``) is dropped: the final status is always recorded.
        Ignored when the status is already final, or ``skipped``.

        :raises NotFound:
        """

    @abstractmethod
    def request_cancel(self, run_id: str, reason: str | None = None) -> Run:
        """Ask the run's supervisor to stop it (its heartbeat then answers True); a run
        no supervisor holds yet ends ``cancelled`` at once.

        :raises NotFound:
        :raises Conflict: if it is not queued or running
        """

    @abstractmethod
    def mark_lost(self, run_id: str, reason: str, pid: int | None) -> bool:
        """Mark the run lost only if it is still active under the supervisor *pid* the
        caller judged (None: never attached): check and write are one transaction, so a
        supervisor that attached meanwhile wins, and a run marked lost never runs.
        What follows a final status follows (as :meth:`finish_run`)."""

    @abstractmethod
    def release_run(self, run_id: str, pid: int, before: float) -> bool:
        """Put back a run taken by the supervisor or agent *pid*, which is gone, before
        the run's instant: payloads start at ``fire_at``, so one still ``queued`` whose
        ``fire_at`` is after *before* never started, and another ticker may dispatch it
        (a failover replica fires the slots a dead one had claimed ahead). Only if it is
        queued, attached to *pid* and not asked to be cancelled; True when put back."""

    @abstractmethod
    def gc(self, now: float, keep_runs: int = KEEP_RUNS, keep_failures: int = KEEP_FAILURES,
           max_age: float = MAX_AGE, audit_max_age: float | None = None) -> dict:
        """Prune finished runs, their output and events, and events older than *max_age*,
        by the retention limits (``policy.runs_to_delete`` decides which runs go; a job's
        own limits win); never an active run. The audit log has a retention of its own:
        left whole unless *audit_max_age* is given, then its records older than that go
        (the chain stays verifiable: :meth:`History.verify_audit`). Returns
        ``{"runs_deleted", "events_deleted", "audit_deleted"}``."""

    @abstractmethod
    def stats(self, viewer: Viewer | None = None) -> dict:
        """Of the jobs *viewer* may read: counts by state and status, and per job its
        success rate and durations (reads every run):
        ``{"jobs_by_state", "runs_by_status", "jobs"}``."""


class RunMetrics(ABC):
    """Numbers per run: what a run reported (``::metric NAME=VALUE [UNIT]``,
    ``domain/metrics.py``) and the built-ins (``metrics.BUILTIN``), one value per run and
    name, kept as long as the run is (a run's metrics go with it: gc, a job's deletion).

    Each value has an instant ``at``: when its run ended (what a job's series is ordered
    by), or while the run is still active, when the value was recorded (moved to the
    run's end when it ends). The store records ``duration`` (a run that started),
    ``exit_code`` (when known) and ``output_bytes`` itself, in the transaction that
    records the final status (:meth:`RunLedger.finish_run`, :meth:`RunLedger.mark_lost`,
    a cancel); a skipped slot has none. ``cpu_seconds`` and ``peak_memory`` are the
    runtime's to measure (its payload's ``wait4``): it hands them over with the final
    status (``finish_run(metrics=...)``), with what the run's output reported.
    """

    @abstractmethod
    def record_metrics(self, run_id: str, metrics: Iterable[Metric]) -> int:
        """Record what a run reported, running or ended, in one transaction; a name
        recorded again takes the new value (a run's last word on ``rows`` is its count).
        A run keeps at most ``metrics.MAX_PER_RUN`` reported names: new names past it are
        dropped, so a loop printing a name per row cannot fill the store. Returns how
        many values were written.

        :raises ValueError: a built-in name (the store measures those), a name that is
            not ``metrics.NAME``, a value that is not a finite number, a bad unit;
            nothing is then written
        :raises NotFound: no such run
        """

    @abstractmethod
    def metric_series(self, job_id: str, name: str, limit: int = 100,
                      before: float | None = None, before_run: str | None = None
                      ) -> list[tuple[str, float, float, str]]:
        """One metric of a job's runs, newest first: ``[(run_id, at, value, unit)]``, at
        most *limit* (one range scan of an index, at any number of runs: charts page
        through it). The next page: *before* = the last row's ``at`` and *before_run* =
        its run id (runs that ended at one instant then page without a loss or a
        repeat); *before* alone: strictly earlier. [] for an unknown job."""

    @abstractmethod
    def metric_names(self, job_id: str) -> list[tuple[str, str, int]]:
        """The metrics a job's runs have, by name: ``[(name, unit, runs)]`` (the unit of
        the newest value), so a front can offer what there is to chart or alert on."""

    @abstractmethod
    def metric_history(self, job_id: str, name: str, n: int,
                       before_run: str | None = None) -> list[float]:
        """The values of *name* in the job's last *n* runs that have it, newest first,
        before the run *before_run* (ended before it; the run itself left out) or, with
        none, the latest: the history an alert rule's statistics read
        (``alerts.Rule.check``). [] for an unknown run."""


class Backfills(ABC):
    """Past slots of a job, run as a whole, at most ``max_parallel`` at a time.

    The first slots are queued when the backfill is made, and each next one in the
    transaction that records a backfill run's end (:meth:`RunLedger.finish_run`), so
    however many tickers and supervisors race, each slot is queued once. A backfill is
    a dict: ``id, job_id, state (running|done|cancelled), slots, started,
    max_parallel, runs ({status: count}), from, to, created_at, finished_at``.
    """

    @abstractmethod
    def create_backfill(self, ref: str, slots: list[float], max_parallel: int) -> dict:
        """Run the job once per past slot (trigger ``backfill``), *max_parallel* at a time;
        returns its progress (see :meth:`get_backfill`). Slots that already have a run
        that succeeded, runs or waits are left out: the same backfill again resumes it.

        :raises NotFound: no such job
        """

    @abstractmethod
    def get_backfill(self, backfill_id: str) -> dict:
        """A backfill's state and its runs counted by status.

        :raises NotFound:
        """

    @abstractmethod
    def list_backfills(self, job_ref: str, limit: int = 20) -> list[dict]:
        """The job's backfills, newest first, each as :meth:`get_backfill` gives it.

        :raises NotFound: no such job
        """

    @abstractmethod
    def cancel_backfill(self, backfill_id: str) -> dict:
        """No further slot starts; waiting runs end cancelled, running ones are asked to.

        :raises NotFound:
        """


class OutputStore(ABC):
    """Each run's output log and a notebook run's executed notebook.

    A log is append-only and addressed by byte offset: an offset names one position for
    good, so a reader that resumes anywhere gets exactly the rest, while the run still
    writes and from any process or host that shares the store. Bytes are tagged with
    their stream (``stdout``, ``stderr``, ``system``: hermes-cron's own lines). A log
    past its cap keeps its head and tail and says in a ``system`` line how much was cut
    (``output.OutputWriter``). A run with no output reads as empty.
    """

    @abstractmethod
    def output_writer(self, run_id: str, max_bytes: int | None = None):
        """The supervisor's writer for the run's output (``write(stream, data)``,
        ``system(text)``, ``close()``), keeping at most *max_bytes* (head and tail;
        default ``output.DEFAULT_MAX_BYTES``). Used on the supervisor's own thread."""

    @abstractmethod
    def read_output(self, run_id: str, offset: int = 0, limit: int | None = None) -> bytes:
        """Output bytes ``[offset, offset + limit)`` (to the end when *limit* is None)."""

    @abstractmethod
    def output_segments(self, run_id: str, offset: int = 0, limit: int | None = None
                        ) -> list[tuple[int, str, bytes]]:
        """Output from *offset* split by stream: ``[(offset, stream, bytes)]``, adjacent
        bytes of one stream joined."""

    @abstractmethod
    def output_size(self, run_id: str) -> int:
        """How many output bytes the run has so far (0 when none)."""

    @abstractmethod
    def artifact_path(self, run_id: str) -> str:
        """Where a notebook run's payload writes its executed notebook (a local file)."""

    @abstractmethod
    def read_artifact(self, run_id: str) -> bytes | None:
        """A notebook run's executed notebook, from any host once the run's output
        writer is closed, or None when it has none (or its run was deleted)."""


class TickerRegistry(ABC):
    """The tickers that serve this store, for ``status`` and the handoff.

    A ticker is alive while its heartbeat is fresh (``Ticker.alive``); a ticker on this
    host whose process is gone (pid and process start time) is dead at once.
    """

    @abstractmethod
    def register_ticker(self, kind: str, host: str, pid: int,
                        ticker_id: str | None = None) -> Ticker:
        """Add this ticker (kind ``server``, ``daemon`` or ``tick``) to the registry that
        ``status`` reads; a given id replaces that row. Tickers silent for a day are
        forgotten."""

    @abstractmethod
    def ticker_heartbeat(self, ticker_id: str, at: float, ticked: bool = False) -> None:
        """Keep this ticker listed as alive (*ticked*: it also ticked at *at*); an unknown
        id is ignored."""

    @abstractmethod
    def unregister_ticker(self, ticker_id: str) -> None:
        """Remove a ticker that stops cleanly (an unknown id is ignored)."""

    @abstractmethod
    def list_tickers(self) -> list[Ticker]:
        """Every registered ticker, alive or stale, oldest first."""


class EventLog(ABC):
    """The append-only ``events`` table: what every process did, in order.

    Every write of the other interfaces appends its events (``job.created``,
    ``run.queued``, ``run.started``, ``run.progress``, ``run.finished``, ...) in its own
    transaction, so an event is seen exactly when its change is. ``seq`` increases in
    commit order: a follower that reads ``seq > cursor`` never skips an event that
    committed late.
    """

    @abstractmethod
    def events_since(self, cursor: int, limit: int = 500) -> list[Event]:
        """At most *limit* events with ``seq > cursor``, oldest first."""

    @abstractmethod
    def claim_events(self, consumer: str, limit: int = 500) -> list[Event]:
        """New events for *consumer*, each batch handed to one caller only: the
        consumer's cursor moves in the transaction that reads the batch. A new
        consumer starts at the newest event (history is not replayed)."""

    @abstractmethod
    def last_event_seq(self) -> int:
        """The newest event's seq (0 when none)."""


class Outbox(ABC):
    """Notifications on their way out, and the watch for late slots (``outbox.py``).

    Deliveries are planned from the event log in the transaction that takes the events
    (each once, with any number of tickers), leased to one sender at a time per
    destination, and retried with backoff for a day. Late slots are found by whichever
    ticker looks first, each raised once (``run.late``)."""

    @abstractmethod
    def plan_deliveries(self, planner: Callable[[list[Event]], list[dict[str, Any]]],
                        consumer: str = "notify", limit: int = 500) -> int:
        """Write the deliveries *planner* makes of the consumer's next events, in the
        transaction that moves its cursor. Returns how many were written."""

    @abstractmethod
    def due_queues(self, now: float, limit: int = 200) -> list[str]:
        """Destinations with a delivery due and not leased."""

    @abstractmethod
    def next_delivery_at(self) -> float | None:
        """When the earliest pending delivery is due."""

    @abstractmethod
    def claim_deliveries(self, queue: str, owner: str, now: float, lease: float,
                         limit: int = 20) -> list[dict[str, Any]]:
        """Lease one destination's due deliveries to *owner*, oldest first."""

    @abstractmethod
    def delivery_done(self, delivery_id: int, owner: str, now: float, *, ok: bool,
                      error: str | None = None, final: bool = False,
                      first_delay: float = FIRST_DELAY) -> str | None:
        """Record a try by the lease holder: the new status (None: not its lease)."""

    @abstractmethod
    def release_deliveries(self, owner: str, ids: list[int]) -> None:
        """Give back leased deliveries not tried."""

    @abstractmethod
    def lease_owners(self) -> list[str]:
        """The senders holding leases now."""

    @abstractmethod
    def expire_leases(self, owner: str) -> int:
        """End a (dead) sender's leases."""

    @abstractmethod
    def list_deliveries(self, *, job_ids: list[str] | None = None, status: str | None = None,
                        limit: int = 50, cursor: int | None = None,
                        now: float | None = None) -> Page[dict[str, Any]]:
        """Deliveries newest first, of *job_ids* when given."""

    @abstractmethod
    def delivery_counts(self) -> dict[str, int]:
        """How many deliveries there are per status."""

    @abstractmethod
    def next_late_check(self) -> float | None:
        """When the earliest watched slot becomes late."""

    @abstractmethod
    def check_late(self, now: float) -> int:
        """Raise ``run.late`` for watched slots due by *now* with no successful run."""


class History(ABC):
    """Who changed what, and what ran (``history.py``).

    **Who.** Writes made inside :meth:`acting` are recorded as that actor's, from that
    origin; outside it the actor is ``''`` and the origin ``'store'``.

    **Revisions.** Every change to a job's definition (create, update, delete; a revert
    is an update; pause and resume are not) appends an immutable revision in the
    transaction that makes it: ``rev`` is the job's ``version`` after the change (a
    delete appends ``version + 1``), ``spec`` its whole definition after it
    (``models.definition_of``: secret values never, secret names and notify URLs as
    stored, so a revision is never shown raw), ``changes`` ``{field: [before, after]}``.
    Revisions of a deleted job stay readable by its id.

    **Audit log.** Every action (create, edit, delete, pause, resume, run, cancel,
    backfill, apply, revert) appends one record in its transaction: ``seq, at, actor,
    origin, action, job_id, run_id, detail, before_hash, after_hash`` (sha256 of the
    definition's canonical JSON), ``prev_hash`` and ``hash`` = sha256(prev_hash +
    the canonical JSON of the other fields), in commit order, so a removed or altered
    record is found by :meth:`verify_audit`. ``detail`` never holds a secret's value.
    """

    @abstractmethod
    def acting(self, actor: str, origin: str, *, action: str | None = None,
               detail: dict[str, Any] | None = None) -> AbstractContextManager[None]:
        """A context in which this thread's writes are *actor*'s (a hub user, the CLI's
        Unix user), from *origin* (``cli``, ``rest``, ``magics``, ``panel``, ``apply``,
        ``daemon``, ...). *action* names the audit records of the writes inside instead
        of their own (``revert``: the job update a revert makes), and *detail* is added
        to theirs (``{"to": rev}``). Contexts nest; not awaited (it is the thread's)."""

    @abstractmethod
    def job_revisions(self, job_id: str, limit: int = 50,
                      cursor: int | None = None) -> Page[dict[str, Any]]:
        """The job's revisions newest first, each ``{"rev", "at", "actor", "origin",
        "action", "changes"}``; *cursor*: those below that rev (the page's cursor is the
        last rev shown, as a string). [] for an unknown job."""

    @abstractmethod
    def job_revision(self, job_id: str, rev: int) -> dict[str, Any]:
        """One revision, as :meth:`job_revisions` gives it plus ``"spec"``.

        :raises NotFound:
        """

    @abstractmethod
    def record_file_hash(self, run_id: str, sha256: str) -> None:
        """Record the sha256 of the script or notebook file the run executes (an unknown
        run is ignored)."""

    @abstractmethod
    def audit_log(self, *, since: float | None = None, job_id: str | None = None,
                  limit: int = 100, cursor: int | None = None) -> Page[dict[str, Any]]:
        """Audit records newest first, of *job_id* when given, at or after *since*; each
        ``{"seq", "at", "actor", "origin", "action", "job_id", "run_id", "detail",
        "before_hash", "after_hash", "prev_hash", "hash"}``; *cursor*: below that seq."""

    @abstractmethod
    def verify_audit(self) -> dict[str, Any]:
        """Recompute the whole chain: ``{"ok", "records", "first_bad", "problem"}``;
        *first_bad* is the first seq missing or altered, *problem* says how; *records*
        how many verified before it."""

    @abstractmethod
    def apply_definitions(self, creates: list[dict[str, Any]],
                          updates: list[tuple[str, dict[str, Any], int]],
                          deletes: list[tuple[str, int]], source: str) -> dict[str, list[str]]:
        """Create, update and delete jobs in one transaction, each job made or changed
        marked ``managed_by`` = *source*. *creates* are ``validate_new`` fields;
        *updates* ``(job_id, validate_changes fields, version seen)``; *deletes*
        ``(job_id, version seen)``. An ``after`` entry whose ``job`` is the name of a job
        in *creates* links to that new job. Revisions and audit records (``apply``) as
        for single changes. Returns ``{"created", "updated", "deleted"}`` job ids.

        :raises Conflict: a job's version is not the one seen (changed meanwhile), a job
            is gone, or a name is taken; then nothing is changed
        """


class RunViews(ABC):
    """Views across runs (``views.py``): output search, the timeline, counts per bucket.

    **The output index.** :meth:`index_output` takes line-aligned pieces of a run's log
    as the supervisor writes them (``OutputWriter.index_pending``), never a rescan; each
    is kept with its byte offset and goes with its run (gc, retention, job delete).
    Tokens and the meaning of a query are ``domain/search.py``'s: SQLite indexes them
    with FTS5, PostgreSQL with a ``tsvector`` built from the same tokens.
    """

    @abstractmethod
    def index_output(self, run_id: str, chunks: list[tuple[int, str]]) -> None:
        """Index pieces of *run_id*'s log: ``(byte offset of the first byte, text)``, each
        whole lines (a line over 8 KiB split), at most 8 KiB, decoded UTF-8 "replace".
        One short transaction; a piece already indexed (same offset) is skipped."""

    @abstractmethod
    def search_output(self, query: Any, *, job_ids: list[str] | None = None,
                      since: float | None = None, status: str | None = None,
                      limit: int = 20, cursor: str | None = None) -> Page[dict[str, Any]]:
        """Runs whose output has a piece matching *query* (a ``search.Query``), newest
        first (``fire_at DESC, id DESC`` keyset): ``{"run_id", "job_id", "job_name",
        "status", "trigger", "fire_at", "started_at", "finished_at", "chunks":
        [[offset, text], ...]}`` with at most 20 matching pieces, by offset. The match is
        the index's (every term in the piece): the caller keeps the lines that
        ``Query.matches``. *job_ids* None: every job; *since*: fire_at at or after.

        :raises InvalidInput: a bad cursor or status
        """

    @abstractmethod
    def timeline_runs(self, start: float, end: float, *, job_ids: list[str] | None = None,
                      status: str | None = None, limit: int = 1000,
                      cursor: str | None = None) -> Page[dict[str, Any]]:
        """Runs overlapping ``[start, end)`` (fired before *end*, and finished at or after
        *start* or not finished), oldest first (``fire_at, id`` keyset): ``{"id",
        "job_id", "job_name", "status", "trigger", "fire_at", "scheduled_for",
        "started_at", "finished_at", "reason"}``, no spec.

        :raises InvalidInput: a bad cursor or status
        """

    @abstractmethod
    def due_jobs(self, before: float, limit: int,
                 job_ids: list[str] | None = None) -> list[Job]:
        """The enabled scheduled jobs (of *job_ids*; None: every job) whose
        ``next_run_at`` is before *before*, soonest first (then by id), at most *limit*:
        read from the ``jobs_due`` index, so the timeline's coming slots never read
        every job. Reads only."""

    @abstractmethod
    def run_counts(self, job_ids: list[str], start: float, end: float,
                   bucket: int = 900) -> list[tuple[str, float, str, int]]:
        """``(job_id, bucket start (epoch s), status, count)`` of the runs of *job_ids*
        with fire_at in ``[start, end)``, per bucket of *bucket* seconds from the epoch."""


class Store(JobStore, RunLedger, RunMetrics, Backfills, OutputStore, TickerRegistry,
            EventLog, Outbox, History, RunViews):
    """Durable state shared by every ticker, supervisor and viewer on one store: every
    interface above, on one database."""

    url: str
    #: the SQLite file, or None for a database server
    path: str | None = None
    #: where this host keeps run output logs and supervisor errors (None: nowhere local)
    logs_dir: str | None = None
    #: seconds of claim lead per due run: how long handing one run over costs here
    lead_per_run: float = 0.012

    @property
    def display_url(self) -> str:
        """The URL safe to print (without a password)."""
        return self.url

    @abstractmethod
    def close(self) -> None:
        """Release every thread's connection; a thread that goes on opens a new one."""


#: The interfaces ``Store`` combines, in the order the docs list them.
INTERFACES: tuple[type[ABC], ...] = (JobStore, RunLedger, RunMetrics, Backfills,
                                     OutputStore, TickerRegistry, EventLog, Outbox, History,
                                     RunViews)
