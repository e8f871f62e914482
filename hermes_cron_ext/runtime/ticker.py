"""The ticker: finds due slots, claims them exactly once, hands them to the executor.

It sleeps until the earliest ``next_run_at`` in the store (an indexed MIN), woken
early by :meth:`Ticker.wake` when this process changes a job, and at least every
``poll`` seconds to see changes made by other processes. It claims ``lead``
seconds ahead, so supervisors are up and waiting when the instant comes.

Besides firing, a ticker keeps its own row in the tickers table alive (so
``status`` can tell who is ticking), marks runs whose supervisor is gone as
``lost``, and prunes old runs now and then.

Idle, that poll is one cheap question: on a store that can tell whether anything
was committed since it last asked (SQLite's ``change_token``: ``PRAGMA
data_version``), an unchanged store means the earliest ``next_run_at`` it knows
still holds, no notification waits and no run became active, so the pass reads
nothing else (the heartbeat, when due, rides on the same trip to the store's
thread). Where the broker also tells every process's commits as they happen
(``SQLiteBroker`` on Linux: inotify on the store's folder), the ticker wakes on each
one, asks the question, and otherwise sleeps until its next heartbeat
(:attr:`Ticker.idle_poll`). Runs are reconciled every ``reconcile_every`` seconds
while any may be active, and not at all while the store says none is and nothing
changed since.

On a store that can LISTEN (PostgreSQL) the ticker also wakes the moment another
process, on any host, creates, changes or resumes a job or queues a run.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

from hermes_cron_ext.domain.models import Run, iso
from hermes_cron_ext.domain.models import Ticker as TickerRow
from hermes_cron_ext.errors import InvalidInput, NotFound
from hermes_cron_ext.events import EventBroker, broker_for
from hermes_cron_ext.processes import hostname, process_alive
from hermes_cron_ext.runtime.executor import Executor, LocalExecutor, Refused
from hermes_cron_ext.runtime.notify import Notifier
from hermes_cron_ext.runtime.supervisor import HEARTBEAT_INTERVAL
from hermes_cron_ext.store import AsyncStore

log = logging.getLogger("hermes_cron")

TICKER_HEARTBEAT = 5.0
NOTIFY_DRAIN = 5.0  # seconds a stopping ticker gives its claimed notifications
TICKER_STALE = 3 * TICKER_HEARTBEAT
NEVER_STARTED = 120.0  # a dispatched run with no supervisor after this long is lost
#: ... or after this long when every ticker alive started after it was dispatched (the
#: one that dispatched it is gone, and its fork server with it)
ORPHANED = 10.0
#: a run whose supervisor died is put back for another dispatch (not lost) only while
#: its instant is at least this far off: its payload cannot have started
RELEASE_MARGIN = 0.05
MAX_LEAD = 30.0  # a big burst is claimed up to this early, so its supervisors are up in time
#: CPU-seconds a notebook run needs before its first cell can run: the runner's imports
#: (nbclient, jupyter_client, nbformat: about 1 s here) and the kernel's start
NOTEBOOK_WARMUP = 1.5
CORES = os.cpu_count() or 1
#: Events (from any process, via LISTEN) that can make something due sooner.
WAKE_EVENTS = frozenset({"job.created", "job.updated", "job.resumed", "run.queued"})


class _Unknown(enum.Enum):
    """The type of :data:`_UNKNOWN` (an enum member, so ``is`` narrows it away)."""

    UNKNOWN = "unknown"


#: the earliest due time before the first full pass has read it
_UNKNOWN: Final = _Unknown.UNKNOWN


def make_executor(spec: Executor | str | None, store: AsyncStore,
                  run_as: Sequence[str] = ()) -> Executor:
    """The executor named by *spec*: ``None``, ``""`` or ``"local"`` for supervisors on
    this machine (the default), ``"dask://HOST:PORT"`` for a Dask cluster. *run_as*: the
    local executor's run-as helper command (see ``executor.py``)."""
    if isinstance(spec, Executor):
        return spec
    if not spec or spec == "local":
        return LocalExecutor(store.sync.url, store.sync.logs_dir, run_as)
    if spec.startswith(("dask://", "dask+tls://", "tcp://", "tls://")):
        try:
            from hermes_cron_ext.runtime.executor_dask import DaskExecutor
        except ImportError as exc:
            raise InvalidInput(f"the Dask executor needs dask.distributed: pip install "
                               f"'hermes-cron-ext[dask]' ({exc})", field="executor") from exc
        return DaskExecutor(spec, store.sync.url, store)
    raise InvalidInput(f"unknown executor {spec!r}: use 'local' or dask://HOST:PORT",
                       field="executor")


class Unavailable(Executor):
    """Stands for an executor a job names that this ticker cannot make: its runs fail
    at once with the reason, instead of waiting to be found lost."""

    def __init__(self, spec: str, reason: str, store: AsyncStore):
        self.spec, self.reason, self.store = spec, reason, store

    async def start(self, run: Run) -> None:
        await self.store.finish_run(run.id, "failed", None,
                                    reason=f"executor {self.spec}: {self.reason}")

    async def close(self) -> None:
        pass


RUN_MARKER = b"HERMES_CRON_RUN_ID="


def payload_groups() -> dict[str, set[int]]:
    """The process groups of this host's processes by the run id they carry in their
    environment (every payload does, and only payloads): one pass over ``/proc``."""
    found: dict[str, set[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                env = f.read()
            if RUN_MARKER not in env:
                continue
            pgid = os.getpgid(int(entry.name))
        except OSError:
            continue
        for var in env.split(b"\0"):
            if var.startswith(RUN_MARKER):
                found.setdefault(var[len(RUN_MARKER):].decode(errors="replace"),
                                 set()).add(pgid)
    return found


def stop_orphaned_payload(run: Run, groups: dict[str, set[int]] | None = None) -> int | None:
    """SIGKILL the process group of *run*'s payload if it still runs without its
    supervisor; the group stopped, or None. Only processes that carry the run's id in
    their environment count, so a reused group id is never hit: the recorded group
    (``payload_pid``), or, for a run whose payload started but was never recorded
    running (its agent killed in between), whatever group carries its id.
    *groups*: :func:`payload_groups`, read once for many runs."""
    groups = payload_groups() if groups is None else groups
    carried = groups.get(run.id, set())
    targets = ({run.payload_pid} & carried) if run.payload_pid else carried
    stopped = None
    for pgid in sorted(targets):
        try:
            os.killpg(pgid, signal.SIGKILL)
            stopped = pgid
        except (ProcessLookupError, PermissionError):
            continue
    return stopped


#: why a run of a job with an owner is not sent to an executor other than the local one
#: while run-as is on
RUN_AS_LOCAL_ONLY = ("runs of jobs with an owner run as their owner on this host's local "
                     "executor only (run-as); executor {} would run it as its own account")


class Ticker:
    """*run_as*: the run-as helper's command (``c.HermesCron.run_as``, ``hermes-cron
    daemon --run-as``): runs of jobs with an owner start as that owner (``runas.py``)."""

    def __init__(self, store: AsyncStore, executor: Executor | str | None = None, *,
                 kind: str = "daemon", lead: float = 2.0, poll: float = 1.0,
                 reconcile_every: float = HEARTBEAT_INTERVAL, gc_every: float = 3600.0,
                 notify_url: str | None = None, clock=time.time,
                 broker: EventBroker | None = None, run_as: Sequence[str] = (),
                 notify: list[str] | None = None, notify_on: list[str] | None = None,
                 public_url: str | None = None):
        self.store = store
        #: wakes this ticker when another process (or this server's API) changes a job
        self.broker = broker or broker_for(store.sync)
        self.run_as = list(run_as)
        self.executor = make_executor(executor, store, self.run_as)  # for jobs that name none
        #: executors jobs name ("local", "dask://..."), made on first use
        self.executors: dict[str, Executor] = {}
        if isinstance(self.executor, LocalExecutor):
            self.executors["local"] = self.executor
        if isinstance(executor, str) and executor:
            self.executors[executor] = self.executor
        self.kind = kind
        self.lead = lead
        self.poll = poll
        self.reconcile_every = reconcile_every
        self.gc_every = gc_every
        self.clock = clock
        #: plans and sends notifications (the operator's defaults: *notify* Apprise URLs
        #: for the kinds *notify_on*, the *notify_url* webhook; *public_url* for links)
        self.notifier = Notifier(store.sync, notify_url, defaults=notify,
                                 default_on=notify_on, public_url=public_url)
        #: when the late watch is next looked at (``Store.check_late``)
        self._next_late = 0.0
        self.host = hostname()
        #: this ticker's row in the tickers table, from :meth:`register` to :meth:`stop`
        self.info: TickerRow | None = None
        self.fired = 0
        #: why ticker passes fail now ({"since", "error"}), or None (see :attr:`fault`)
        self._fault: dict | None = None
        self._failed_pass = False
        self._wake = asyncio.Event()
        self._poked = False
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._unlisten: Callable[[], None] | None = None
        self._next_beat = self._next_reconcile = self._next_gc = 0.0
        #: the store's change detector (a token that differs once another connection
        #: has committed), or None: then every pass reads the store (PostgreSQL's
        #: LISTEN wakes the ticker instead)
        self._token_of = getattr(store.sync, "change_token", None)
        self._token = None
        #: the earliest due time the last full pass read (_UNKNOWN: read it)
        self._due: float | None | Literal[_Unknown.UNKNOWN] = _UNKNOWN
        #: something this ticker did may have changed what is due: read it again
        self._dirty = True
        #: runs may be active in the store: reconcile them (False once a reconcile
        #: found none, until the store changes or this ticker starts one)
        self._maybe_active = True

    @property
    def fault(self) -> dict[str, Any] | None:
        """What is wrong with this ticker now (``{"since", "error"}``): its passes fail
        (it cannot write to the store), or the run-as helper cannot start (runs of jobs
        with an owner are recorded failed); None when nothing is."""
        return self._fault if self._fault is not None else self.runas_fault

    @property
    def runas_fault(self) -> dict[str, Any] | None:
        """Why the run-as helper cannot start (``{"since", "error"}``), or None."""
        for executor in (self.executor, *self.executors.values()):
            fault = getattr(executor, "runas_fault", None)
            if fault is not None:
                return fault
        return None

    # -- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        """Register, reconcile what a previous ticker left, fire @reboot jobs, then loop."""
        await self.register()
        if hasattr(self.executor, "warm_up"):
            await self.executor.warm_up()
        self._listen()
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name=f"hermes-cron-{self.kind}-ticker")

    def _listen(self) -> None:
        """Wake on the broker's notices: this process's changes, and on PostgreSQL every
        host's (NOTIFY)."""
        loop = asyncio.get_running_loop()

        def on_notify(kind: str, arg: str) -> None:
            if kind == "output" or loop.is_closed():
                return
            if kind == "commit":  # any process may have committed: the token will say
                loop.call_soon_threadsafe(self._wake.set)
                return
            types = arg.split(" ", 1)[1].split(",") if kind == "event" and " " in arg else []
            if kind in ("resync", "changed") or WAKE_EVENTS.intersection(types):
                loop.call_soon_threadsafe(self.wake)
        self._unlisten = self.broker.subscribe(on_notify)

    async def register(self) -> None:
        self.notifier.wake()  # what waits in the outbox is sent by this ticker too
        others = [t for t in await self.store.list_tickers()
                  if t.alive(self.clock(), TICKER_STALE)]
        # one row per host for one-shot ticks, one per process otherwise
        ticker_id = f"tick-{self.host}" if self.kind == "tick" else None
        self.info = await self.store.register_ticker(self.kind, self.host, os.getpid(),
                                                     ticker_id)
        await self.reconcile()
        if not others:  # the scheduler "boots" when the first ticker starts
            n = await self.store.fire_reboot_jobs(self.clock())
            if n:
                log.info("hermes-cron: queued %d @reboot job(s)", n)

    def wake(self) -> None:
        """Something may be due sooner: read the store now."""
        self._poked = True
        self._wake.set()

    @property
    def idle_poll(self) -> float:
        """How long the loop sleeps at most while nothing is due: ``poll``, or a
        heartbeat when the broker tells every process's commits (then the sleep only
        backs the notices up)."""
        if self._token_of is not None and self.broker.watches_commits:
            return max(self.poll, TICKER_HEARTBEAT)
        return self.poll

    async def stop(self) -> None:
        """Stop ticking; supervisors already started go on."""
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        if self._task is not None:
            # the flag too: on Python < 3.12 a cancel that lands as asyncio.wait_for's
            # wait ends can be swallowed, and the loop would go on for ever
            self._stopping = True
            self._task.cancel()
            self.wake()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.close_executors()
        # what is due is sent before this process goes (a few seconds at most, off the
        # loop); the rest waits in the outbox for the next ticker
        await asyncio.to_thread(self.notifier.close, NOTIFY_DRAIN)
        if self.info is not None:
            try:
                await self.store.unregister_ticker(self.info.id)
            except Exception as exc:  # disk full, database gone: its row goes stale
                log.warning("hermes-cron: could not remove this ticker's row (%s); it will "
                            "show as stale", exc)
            self.info = None

    async def wait(self) -> None:
        if self._task is not None:
            await self._task

    # -- one pass -------------------------------------------------------------------
    async def lead_for(self, now: float) -> float:
        """The claim lead: ``lead``, longer when many runs fall due together (a burst),
        and when several notebook jobs do: each one's runner and kernel take about
        ``NOTEBOOK_WARMUP`` CPU-seconds to be ready, and they share the machine's cores."""
        n, notebooks = await self.store.count_due(now + MAX_LEAD)
        need = n * self.store.sync.lead_per_run + notebooks * NOTEBOOK_WARMUP / CORES
        return min(MAX_LEAD, max(self.lead, need))

    async def tick(self, now: float | None = None, lead: float | None = None) -> list[Run]:
        """Claim what is due by ``now + lead`` and start it."""
        now = self.clock() if now is None else now
        lead = self.lead if lead is None else lead
        cause = None
        if self._fault is not None:  # slots missed while we could not write were not ours
            cause = (f"the ticker ({self.kind}, pid {os.getpid()}) could not write to the "
                     f"store since {iso(self._fault['since'])}: {self._fault['error']}")
        runs = await self.store.claim_due(now + lead, now, self.info.id if self.info
                                          else "anonymous", cause)
        if runs:
            self.fired += len(runs)
            batches: dict[Executor, list[Run]] = {}
            for run in runs:
                batches.setdefault(self.executor_for(run), []).append(run)
            if self.run_as:
                await self._keep_owned_runs_local(batches)
            failed = None
            for executor, batch in batches.items():
                if not batch:  # all recorded failed (run-as)
                    continue
                try:
                    await executor.start_many(batch)
                except Exception as exc:  # one unreachable cluster must not stall the rest
                    failed = exc
            if failed is not None:
                raise failed
        return runs

    async def _keep_owned_runs_local(self, batches: dict[Executor, list[Run]]) -> None:
        """Run-as is on: a run of a job with an owner is never sent to an executor other
        than the local one (a Dask worker would run it as its own account); it is
        recorded failed with the reason instead."""
        for executor, batch in batches.items():
            if isinstance(executor, (LocalExecutor, Refused, Unavailable)) or not batch:
                continue  # (those two fail their runs with their own reason, contacting none)
            keep = []
            for run in batch:
                try:
                    owner = (await self.store.get_job(run.job_id)).owner
                except NotFound:
                    owner = None  # deleted: its run goes nowhere
                if owner == "":
                    keep.append(run)
                    continue
                reason = RUN_AS_LOCAL_ONLY.format(run.spec.get("executor"))
                log.error("hermes-cron: run %s of job %s not started: %s", run.id, run.job_id,
                          reason)
                try:
                    await self.store.finish_run(run.id, "failed", None, reason=reason)
                except NotFound:
                    pass
            batch[:] = keep

    async def close_executors(self) -> None:
        """Stop handing out runs; supervisors already started go on."""
        for executor in {self.executor, *self.executors.values()}:
            await executor.close()

    def executor_for(self, run: Run) -> Executor:
        """The executor the run's job names, else this ticker's."""
        spec = run.spec.get("executor") if run.spec else None
        if not spec:
            return self.executor
        if spec not in self.executors:
            try:
                self.executors[spec] = make_executor(spec, self.store, self.run_as)
            except InvalidInput as exc:  # e.g. no dask.distributed on this host
                log.error("hermes-cron: runs of job %s cannot start: %s", run.job_id, exc)
                self.executors[spec] = Unavailable(spec, str(exc), self.store)
        return self.executors[spec]

    async def reconcile(self) -> list[str]:
        """Mark ``lost`` every active run whose supervisor is gone; returns their ids, and
        those of runs put back for another dispatch: a run taken ahead of its instant by
        a supervisor or agent that died before it (a replica killed while holding the
        slots it claimed ahead) never started, so it is fired, not lost."""
        now = self.clock()
        lost: list[str] = []
        active = await self.store.active_runs()
        self._maybe_active = bool(active)
        if not active:
            return lost
        alive = [t for t in await self.store.list_tickers() if t.alive(now, TICKER_STALE)]
        oldest = min((t.started_at for t in alive), default=now)
        groups = None
        for run in active:
            reason = self._lost_reason(run, now, oldest)
            if reason and run.status == "queued" and run.pid is not None and \
                    (run.fire_at or 0) > now + RELEASE_MARGIN and \
                    await self.store.release_run(run.id, run.pid, now + RELEASE_MARGIN):
                lost.append(run.id)
                log.warning("hermes-cron: run %s of job %s put back for another dispatch: %s "
                            "before its instant", run.id, run.job_id, reason)
                continue
            if reason and run.host == self.host and (run.payload_pid or run.pid):
                # its payload may outlive it: stop it, so a retry never runs beside it;
                # one that runs as its job's owner, through the run-as helper (this
                # process may neither see another user's environment nor signal it)
                owned = await self._stop_owned_payload(run) if self.run_as else None
                if owned is not None:
                    reason += (f"; its payload (process group {owned}) was stopped by the "
                               "run-as helper")
                else:
                    if groups is None:
                        groups = await asyncio.to_thread(payload_groups)
                    stopped = stop_orphaned_payload(run, groups)
                    if stopped:
                        reason += f"; its payload (process group {stopped}) was stopped"
            if reason and await self.store.mark_lost(run.id, reason, run.pid):
                lost.append(run.id)
                log.warning("hermes-cron: run %s of job %s lost: %s", run.id, run.job_id, reason)
        return lost

    async def _stop_owned_payload(self, run: Run) -> int | None:
        """A lost run's payload that runs as its job's owner: this process can neither
        read its environment nor signal it, so the run-as helper finds and stops it (as
        the owner); the first group it stopped, or None (nothing left, or the job has no
        owner: its payload ran as this service, which stops it itself)."""
        local = self.executors.get("local", self.executor)
        if not isinstance(local, LocalExecutor):
            return None
        try:
            stopped = await local.stop_orphan(run.id)
        except OSError as exc:  # refused (no owner: nothing of it runs as another), gone
            log.debug("hermes-cron: run %s: the run-as helper stopped nothing: %s", run.id,
                      exc)
            return None
        return stopped[0] if stopped else None

    def _lost_reason(self, run: Run, now: float, oldest_ticker: float) -> str | None:
        """Why *run* is lost, or None. *oldest_ticker*: when the longest-running live
        ticker started."""
        if run.pid is None:
            if run.dispatched_at is None:
                return None
            waited = now - max(run.dispatched_at, run.fire_at or 0)
            if waited > NEVER_STARTED:
                return "its supervisor never started"
            if waited > ORPHANED and run.dispatched_at < oldest_ticker:
                return "the ticker that dispatched it is gone; its supervisor never started"
            return None
        if run.host == self.host:
            if not process_alive(run.pid, run.proc_start):
                return f"its supervisor (pid {run.pid}) is gone"
            return None
        stale = now - (run.heartbeat_at or run.queued_at)
        if stale > 3 * HEARTBEAT_INTERVAL:
            return f"no heartbeat for {stale:.0f} s from {run.host}"
        return None

    async def _housekeeping(self, now: float, ticked: bool, read: bool) -> bool:
        """Reconcile, notifications and gc, each when due (the heartbeat is written by
        :meth:`_changed`, and again here with the tick's time when this pass fired).
        *read*: this pass read the store (it changed, or this process or a due slot woke
        the ticker); otherwise nothing new can wait to be notified. True when runs
        were marked lost (a retry may now be due)."""
        lost = False
        if ticked:
            assert self.info is not None  # the loop runs between register() and stop()
            await self.store.ticker_heartbeat(self.info.id, now, ticked)
            self._next_beat = now + TICKER_HEARTBEAT
        if now >= self._next_reconcile:
            if self._maybe_active and await self.reconcile():
                lost = read = True  # a lost run's retry may be due; its events wait
            self._next_reconcile = now + self.reconcile_every
        if read or now >= self._next_late:
            # the late watch: due now, or the store changed (a job saved with late_after)
            try:
                if now >= self._next_late and await self.store.check_late(now):
                    read = True  # its run.late events wait to be notified
                due = await self.store.next_late_check()
            except Exception as exc:
                self._record_fault(exc)
                due = now + TICKER_HEARTBEAT
            self._next_late = due if due is not None else float("inf")
        if read:  # its new events are planned and sent on the notifier's own thread
            self.notifier.wake()
        if now >= self._next_gc:
            if self._next_gc:
                result = await self.store.gc(now)
                if result.get("runs_deleted"):
                    log.info("hermes-cron gc: %s", result)
            self._next_gc = now + self.gc_every
        return lost

    def _record_fault(self, exc: Exception) -> None:
        """Remember why passes fail (disk full, database gone), for ``status`` and for the
        reason of slots missed meanwhile; log it once, not on every pass."""
        error = str(exc) or type(exc).__name__
        self._failed_pass = True
        if self._fault is None:
            self._fault = {"since": self.clock(), "error": error}
            log.error("hermes-cron: ticker pass failed; trying again every second",
                      exc_info=exc)
        elif self._fault["error"] != error:
            self._fault["error"] = error
            log.error("hermes-cron: ticker pass still failing: %s", error)

    def _sleep(self, due: float | None, lead: float) -> float:
        """Seconds until the next pass: the due slot (less the lead), the heartbeat, a
        reconcile while runs may be active, and at most ``idle_poll``."""
        now = self.clock()
        until = [self._next_beat, self._next_late]
        if self._maybe_active:
            until.append(self._next_reconcile)
        if due is not None:
            until.append(due - lead)
        return max(0.0, min(self.idle_poll, *(t - now for t in until)))

    async def _changed(self, now: float) -> bool:
        """Whether another connection may have committed since the last call (always
        True with no change detector). Asked before the pass reads anything, so a
        commit after those reads is seen by the next call. When the heartbeat is due it
        is written in the same trip to the store's thread."""
        beat = now >= self._next_beat
        assert self.info is not None  # the loop runs between register() and stop()
        if self._token_of is None:
            if beat:
                await self.store.ticker_heartbeat(self.info.id, now, False)
                self._next_beat = now + TICKER_HEARTBEAT
            return True
        ticker_id, store, token_of = self.info.id, self.store.sync, self._token_of

        def ask():
            token = token_of()  # this connection's own commit below does not change it
            failed = None
            if beat:
                try:
                    store.ticker_heartbeat(ticker_id, now, False)
                except Exception as exc:  # the pass goes on: its claims may still work
                    failed = exc
            return token, failed
        token, failed = await self.store.run(ask)
        if failed is not None:
            self._record_fault(failed)  # so this pass reads the store, and beats again
        elif beat:
            self._next_beat = now + TICKER_HEARTBEAT
        changed, self._token = token != self._token, token
        return changed

    async def _loop(self) -> None:
        while not self._stopping:
            woken, self._poked = self._poked, False
            self._wake.clear()
            self._failed_pass = False
            try:
                now = self.clock()
                changed = await self._changed(now)
                due = self._due
                read = (changed or woken or self._dirty or self._fault is not None
                        or due is _UNKNOWN or (due is not None and due <= now + MAX_LEAD))
                ticked = False
                lead = self.lead
                if read:
                    # on an unchanged store, the due time read last still holds
                    self._dirty, self._maybe_active = False, True
                    due = self._due = await self.store.next_wakeup()
                    if due is not None and due <= now + MAX_LEAD:
                        lead = await self.lead_for(now)
                    if due is not None and due <= now + lead:
                        self._dirty = True  # what the start of its runs writes, read again
                        await self.tick(now, lead)
                        ticked = True
                        due = self._due = await self.store.next_wakeup()
                if await self._housekeeping(now, ticked, read):
                    due = self._due = await self.store.next_wakeup()  # retries of lost runs
                assert due is not _UNKNOWN  # then this pass has read it
                delay = self._sleep(due, lead)
                if self._fault is not None and not self._failed_pass:
                    log.warning("hermes-cron: the ticker writes to the store again (it could "
                                "not since %s: %s)", iso(self._fault["since"]),
                                self._fault["error"])
                    self._fault = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bad pass is told; the loop goes on
                self._record_fault(exc)
                self._dirty = True
                delay = min(self.poll, 1.0)
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
