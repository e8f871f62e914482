"""The store interface: SQLite and PostgreSQL implement it.

A ``Store`` holds jobs, runs, events, tickers and run output. It is synchronous
and owned by one thread; async callers go through :class:`hermes_cron_ext.store.AsyncStore`,
which runs every call on the store's own thread, never on the event loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from hermes_cron_ext.domain.models import Event, Job, Page, Run, Ticker
from hermes_cron_ext.domain.policy import KEEP_FAILURES, KEEP_RUNS, MAX_AGE


class Store(ABC):
    """Durable state shared by every ticker, supervisor and viewer on one store."""

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

    # -- jobs ---------------------------------------------------------------
    @abstractmethod
    def create_job(self, fields: dict) -> tuple[Job, bool]:
        """Create a job from fields checked by ``jobspec.validate_new``.

        Returns ``(job, created)``; with a known idempotency key, the stored job
        and False. :raises Conflict: when the name is taken.
        """

    @abstractmethod
    def get_job(self, ref: str) -> Job:
        """A job by id or name. :raises NotFound:"""

    @abstractmethod
    def list_jobs(self, *, limit: int = 100, cursor: str | None = None,
                  state: str | None = None, search: str | None = None) -> Page:
        """Jobs sorted by name, one keyset page."""

    @abstractmethod
    def update_job(self, ref: str, fields: dict) -> Job:
        """Replace a job's definition with fields from ``jobspec.validate_changes``."""

    @abstractmethod
    def delete_job(self, ref: str) -> Job:
        """Delete a job and its finished runs; running runs finish on their own."""

    @abstractmethod
    def set_paused(self, ref: str, paused: bool, reason: str | None = None) -> Job:
        """Pause or resume; resuming clears ``blocked`` and does not catch up."""

    # -- scheduling -----------------------------------------------------------
    @abstractmethod
    def next_wakeup(self) -> float | None:
        """The earliest instant at which something becomes due (indexed)."""

    @abstractmethod
    def claim_due(self, horizon: float, now: float, owner: str,
                  cause: str | None = None) -> list[Run]:
        """Claim every slot and pending run due by *horizon*, exactly once across tickers.

        Missed slots are resolved by the job's misfire policy here, and every
        slot not run is recorded as a ``skipped`` run with its reason.
        """

    @abstractmethod
    def fire_reboot_jobs(self, now: float) -> int:
        """Queue a run of every ``@reboot`` job; returns how many."""

    @abstractmethod
    def request_run(self, ref: str, trigger: str = "manual",
                    parameters: dict | None = None) -> Run:
        """Queue a run now. :raises Conflict: when the overlap policy refuses
        (``policy.manual_run_refusal``)."""

    @abstractmethod
    def create_backfill(self, ref: str, slots: list[float], max_parallel: int) -> dict:
        """Run the job once per past slot, *max_parallel* at a time; returns its progress
        (see :meth:`get_backfill`). Slots already run (or running) are left out."""

    @abstractmethod
    def get_backfill(self, backfill_id: str) -> dict:
        """A backfill's state and its runs counted by status. :raises NotFound:"""

    @abstractmethod
    def list_backfills(self, job_ref: str, limit: int = 20) -> list[dict]:
        """The job's backfills, newest first, each with its progress (as get_backfill)."""

    @abstractmethod
    def cancel_backfill(self, backfill_id: str) -> dict:
        """No further slot starts; waiting runs end cancelled, running ones are asked to."""

    @abstractmethod
    def take_next(self, run_id: str) -> list[str]:
        """The runs that *run_id*'s end queued (downstream jobs', its backfill's next
        slot), taken in one transaction as :meth:`dispatch` takes one, for the caller to
        supervise at once; those another caller took first are left out."""

    @abstractmethod
    def dispatch(self, run_id: str) -> bool:
        """Take a pending run for a caller that starts its supervisor itself."""

    # -- runs -------------------------------------------------------------------
    @abstractmethod
    def get_run(self, run_id: str) -> Run:
        """:raises NotFound:"""

    @abstractmethod
    def list_runs(self, job_ref: str | None = None, *, limit: int = 50,
                  cursor: str | None = None, status: str | None = None) -> Page:
        """Runs newest first, one keyset page."""

    @abstractmethod
    def attach_run(self, run_id: str, pid: int, proc_start: int | None, host: str) -> bool:
        """A supervisor takes the run (before it waits for its instant); False when the
        run is no longer queued or another supervisor has it (it was marked lost)."""

    @abstractmethod
    def check_start(self, run_id: str) -> str | None:
        """Why the run must not start now (job gone, paused, overlap), or None."""

    @abstractmethod
    def running_others(self, run_id: str) -> list[Run]:
        """The other running runs of the same job that the run overlaps (overlap
        ``replace`` and ``queue``): never those of its own backfill."""

    @abstractmethod
    def run_secrets(self, run_id: str) -> dict[str, str]:
        """The secret env values the run's spec names, read from its job at start."""

    @abstractmethod
    def catchup_ahead(self, run_id: str) -> str | None:
        """The run a catch-up waits for (a running run of its job, or an earlier
        catch-up still queued), so missed slots run one after another; or None. The
        store selects the job's active runs; ``policy.catchup_ahead`` picks."""

    @abstractmethod
    def turn_ahead(self, run_id: str) -> str | None:
        """The run a waiting run (overlap ``queue``, or a run owed to its slot:
        ``policy.on_overlap``) waits for: a running run of its job, else a run of its
        job queued before it that waits too; or None: its turn. So waiting runs start
        one at a time, in the order they were queued. The store selects the job's
        active runs; ``policy.turn_ahead`` picks."""

    @abstractmethod
    def mark_running(self, run_id: str, started_at: float, payload_pid: int) -> bool:
        """The payload is running; False when the run was no longer queued."""

    @abstractmethod
    def heartbeat_run(self, run_id: str, at: float, phase: str | None, progress: float | None,
                      output_bytes: int) -> bool:
        """Record liveness and progress; returns True when a cancel was requested."""

    @abstractmethod
    def finish_run(self, run_id: str, status: str, exit_code: int | None = None,
                   reason: str | None = None, at: float | None = None) -> Run:
        """Record a final status once; later calls leave the first one in place."""

    @abstractmethod
    def request_cancel(self, run_id: str, reason: str | None = None) -> Run:
        """Ask the run's supervisor to stop it. :raises Conflict: if it is not active."""

    @abstractmethod
    def mark_lost(self, run_id: str, reason: str, pid: int | None) -> bool:
        """Mark lost only if still active under the supervisor pid the caller judged."""

    @abstractmethod
    def count_due(self, horizon: float) -> tuple[int, int]:
        """How many slots and pending runs fall due by *horizon*, and how many of those
        slots are notebook jobs'."""

    @abstractmethod
    def active_runs(self) -> list[Run]:
        """Every queued or running run (for crash detection)."""

    # -- events and tickers -----------------------------------------------------
    @abstractmethod
    def events_since(self, cursor: int, limit: int = 500) -> list[Event]:
        """Events with ``seq > cursor``, oldest first."""

    @abstractmethod
    def claim_events(self, consumer: str, limit: int = 500) -> list[Event]:
        """New events for *consumer*, each batch handed to one process only."""

    @abstractmethod
    def last_event_seq(self) -> int:
        """The newest event's seq (0 when none)."""

    @abstractmethod
    def register_ticker(self, kind: str, host: str, pid: int,
                        ticker_id: str | None = None) -> Ticker:
        """Add this ticker to the registry that ``status`` reads (a given id replaces)."""

    @abstractmethod
    def ticker_heartbeat(self, ticker_id: str, at: float, ticked: bool = False) -> None:
        """Keep this ticker listed as alive."""

    @abstractmethod
    def unregister_ticker(self, ticker_id: str) -> None:
        """Remove a ticker that stops cleanly."""

    @abstractmethod
    def list_tickers(self) -> list[Ticker]:
        """Every registered ticker, alive or stale."""

    # -- housekeeping -----------------------------------------------------------
    @abstractmethod
    def gc(self, now: float, keep_runs: int = KEEP_RUNS, keep_failures: int = KEEP_FAILURES,
           max_age: float = MAX_AGE) -> dict:
        """Prune finished runs, their output and old events by the retention limits
        (``policy.runs_to_delete`` decides which runs go)."""

    @abstractmethod
    def stats(self) -> dict:
        """Counts by state and per-job success rate and durations (reads every run)."""

    @abstractmethod
    def jobs_by_state(self) -> dict[str, int]:
        """Job counts by state: cheap at any number of runs (status checks poll it)."""

    # -- output (see output.py): byte offsets are stable; readers resume by offset --------
    @abstractmethod
    def output_writer(self, run_id: str, max_bytes: int | None = None):
        """The supervisor's writer for the run's output (``write``, ``system``, ``close``),
        keeping at most *max_bytes* (head and tail; default ``output.DEFAULT_MAX_BYTES``)."""

    @abstractmethod
    def read_output(self, run_id: str, offset: int = 0, limit: int | None = None) -> bytes:
        """Output bytes ``[offset, offset + limit)``."""

    @abstractmethod
    def output_segments(self, run_id: str, offset: int = 0, limit: int | None = None
                        ) -> list[tuple[int, str, bytes]]:
        """Output from *offset* split by stream: ``[(offset, stream, bytes)]``."""

    @abstractmethod
    def output_size(self, run_id: str) -> int:
        """How many output bytes the run has so far."""

    @abstractmethod
    def artifact_path(self, run_id: str) -> str:
        """Where a notebook run's payload writes its executed notebook (a local file)."""

    @abstractmethod
    def read_artifact(self, run_id: str) -> bytes | None:
        """A notebook run's executed notebook, from any host, or None when it has none."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
