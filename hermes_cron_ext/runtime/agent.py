"""The host agent: one warm process that starts and watches many runs.

A supervisor per run (``supervisor.py``) costs a Python process per run: a burst of
1,000 runs at one instant meant 1,000 of them, forked seconds early. The agent takes
their place for the runs that need nothing but a start and a watch (command and
Python jobs whose overlap policy decides at the instant, :func:`handles`):

1. it *attaches* each run it is sent, ahead of its instant (the fence against
   ``mark_lost``: the run's ``pid`` is now the agent's), and prepares its argv and
   environment (store reads: secrets, upstream artifacts);
2. at the instant it asks the store once for the whole batch (``check_starts``) and
   starts the payloads one after another, each in a process group of its own, its
   output piped back here; the start costs a ``posix_spawn``-like fork+exec, so the
   machine runs the payloads and little else;
3. one ``selectors`` loop reads every run's output into its log (with progress),
   heartbeats, enforces timeouts and cancel requests (TERM the group, KILL after the
   grace) and records each final status and exit code, with the supervisor's own
   helpers, so a run reads the same whoever watched it;
4. a pipeline's or a backfill's next run, queued by a run's end, is taken at once.

Runs that wait for a turn (overlap ``queue`` and ``replace``, catch-ups in order, runs
owed to their slot) and notebook runs (a warm kernel per run) still get a supervisor
of their own, forked from here or from the fork server.

With run-as on (``runas.py``), the runs of jobs with an owner are started by the
run-as helper on the agent's channel to it, as their owner: primed the same way (the
waiting shell is the owner's), a burst's others launched one by one, signals sent
through it (the agent may not signal another user's processes), each exit noticed by
its pidfd and its status told by the helper. The agent never builds their argv or
environment, and never starts them itself: when the helper cannot be used they are
recorded failed with the reason.

What a crash costs (see ARCHITECTURE.md): a ``kill -9`` of the agent loses the runs it
watches, never silently. Their payloads lose the reader of their output; the next
reconcile of any ticker on this host finds the agent's pid gone, marks each of its
active runs ``lost`` with the reason and stops its payload's process group, so a retry
never runs beside it; a run not yet started never starts. The fork server starts a
new agent for the runs that come next. A ``kill -9`` of the ticker or of the fork
server costs nothing: the agent is in a session of its own, finishes what it has and
exits when nothing is left.

SIGTERM to the agent is how a cancel on this host is delivered (``ops.cancel`` and
``replace`` signal a run's pid): the agent stops the runs whose cancel is recorded in
the store, and only those (a shutdown ends the payloads itself; their ends are
recorded as they come). What goes wrong for one run (its secrets unreadable, its log
unwritable) ends that run ``failed`` with the reason, never the agent; a final status
the store will not take yet is tried again every few seconds, never dropped.
"""

from __future__ import annotations

import heapq
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import IO

from hermes_cron_ext.domain import policy as rules
from hermes_cron_ext.domain.metrics import Metrics
from hermes_cron_ext.domain.models import Run, RunStatus
from hermes_cron_ext.domain.policy import OverlapAction
from hermes_cron_ext.domain.progress import Progress
from hermes_cron_ext.errors import NotFound
from hermes_cron_ext.processes import hostname, proc_start_time
from hermes_cron_ext.runtime.indexer import FINISH_WAIT, Indexer
from hermes_cron_ext.runtime.runas import Process, RunAs, RunAsError
from hermes_cron_ext.runtime.supervisor import (
    EXIT_DRAIN,
    HEARTBEAT_INTERVAL,
    NOT_AS_SERVICE,
    Usage,
    _complain,
    child_channel,
    exit_fd,
    exit_status,
    foreign,
    metric_rows,
    outcome,
    owned,
    patiently,
    payload_launch,
    reap,
    signal_payload,
    stream_metrics,
    told_usage,
)
from hermes_cron_ext.store.output import OutputWriter

#: job kinds the agent runs itself; a notebook needs a warm kernel: its own supervisor
AGENT_KINDS = frozenset({"command", "python"})
#: woken this long before an instant, the agent asks the store about the runs due then
#: and sleeps the rest precisely (an epoll
#: timeout is whole milliseconds, a nanosleep is not)
SPIN = 0.005
CORES = os.cpu_count() or 1
#: Runs whose payload is *primed*: started ahead as a shell that waits on a pipe and,
#: at the instant, execs the payload in its own place (same pid, group, environment;
#: a fork and Python's spawn work taken off the instant). A few, for the latency of a
#: lone run; a burst's other runs start one after another at the instant, so the
#: machine never has hundreds runnable at once. End of file on the pipe (the run
#: skipped or cancelled, or the agent killed) makes the shell exit, the payload unrun.
PRIMED = 2 * CORES
#: ... and for runs of owned jobs (run-as on): the helper's launch (a fork, a setuid, an
#: exec: ~3 ms each, one at a time) is what priming takes off the instant, so a hub's
#: many users' runs due at one second are primed ahead, up to this many per agent
PRIMED_OWNED = 64
GO_SCRIPT = 'read _ && exec "$@" </dev/null'  # the pipe is its stdin until the exec
#: seconds between tries to record a final status the store would not take
OWED_RETRY = 5.0
#: while a burst starts, the ended payloads are reaped every this many starts
REAP_EVERY = 32
#: after starting a few payloads, the agent waits this long before it records them
#: running: a payload's exec takes about a millisecond of CPU here, and the cores are few
FIRST = 0.003
#: after starting payloads the agent leaves new runs unread this long: the payloads
#: take the CPU first (the ticker claims the next slots at this instant too)
HUSH = 0.008


def handles(run: Run) -> bool:
    """Whether the agent runs *run* itself: a command or Python job whose start is
    decided at its instant by one ``check_start`` (no wait for a turn)."""
    spec = run.spec or {}
    if spec.get("kind", "command") not in AGENT_KINDS:
        return False
    plan = rules.start_plan(run.trigger, spec.get("overlap"))
    return not plan.after_catchups and plan.overlap not in (OverlapAction.WAIT,
                                                            OverlapAction.REPLACE)


@dataclass(eq=False)
class Watch:
    """One run in the agent, from attach to its final status."""

    run: Run
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""
    error: Exception | None = None  # why its payload cannot start
    #: its job has an owner and run-as is on: the helper starts its payload as the owner
    owned: bool = False
    proc: subprocess.Popen | Process | None = None
    go: int | None = None  # the write end of a primed payload's pipe
    started: float = 0.0
    writer: OutputWriter | None = None
    progress: Progress = field(default_factory=Progress)
    #: what its output reports (``::metric`` lines), a parser per stream
    metrics: dict[str, Metrics] = field(default_factory=stream_metrics)
    #: its payload's CPU seconds and peak memory, from ``wait4`` where the agent reaps it
    #: (see :func:`supervisor.reap`), or from the run-as helper's exit message
    usage: Usage | None = None
    streams: dict[int, tuple[str, IO[bytes]]] = field(default_factory=dict)
    pidfd: int | None = None
    stopping: str | None = None  # "cancelled", "timed_out", "write_failed"
    deadline: float | None = None  # monotonic, while a timeout runs
    kill_at: float | None = None
    exited_at: float | None = None
    next_beat: float = 0.0
    last_beat: float = 0.0
    last_err: bytes = b""

    @property
    def id(self) -> str:
        return self.run.id


class Agent:
    """*runas*: the agent's channel to the run-as helper while run-as is on; the runs of
    jobs with an owner start through it, as their owner. *runas_error*: why there is
    none while run-as is on (those runs are then recorded failed with it)."""

    def __init__(self, store, inbox: int, db: str, relay: str | None = None,
                 heartbeat: float = HEARTBEAT_INTERVAL, capacity: int = 10_000,
                 runas: RunAs | None = None, runas_error: str | None = None):
        self.store, self.db, self.relay, self.heartbeat = store, db, relay, heartbeat
        self.runas, self.runas_error = runas, runas_error
        self.pid = os.getpid()
        self.proc_start = proc_start_time(self.pid)
        self.host = hostname()
        self.waiting: dict[str, Watch] = {}  # attached, before their instant
        self.running: dict[str, Watch] = {}
        self._instants: list[tuple[float, int, str]] = []  # (fire_at, seq, run id)
        self._timers: list[tuple[float, int, str, str]] = []  # (monotonic, seq, what, id)
        self._seq = 0
        self._children: list[int] = []  # supervisors forked for runs not ours
        self._primed: set[str] = set()
        self._attached: str | None = None  # the run :meth:`take` has attached, meanwhile
        self.sel = selectors.DefaultSelector()
        self.inbox: int | None = inbox
        self._pending = b""
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._signalled = False
        #: final statuses the store could not take yet: run id -> (status, exit code,
        #: reason, when it ended); tried again every OWED_RETRY seconds, never dropped
        self._owed: dict[str, tuple[str, int | None, str | None, float,
                                    list[list] | None]] = {}
        self._owed_at = 0.0
        #: runs this agent holds at most (5 descriptors each); the rest get supervisors
        self.capacity = capacity
        self._hushed_until: float | None = None  # monotonic; the inbox unread till then
        #: writes the output index of every run here off this loop (a thread of its own)
        self.indexer = Indexer(store)
        #: ended runs whose last output is being indexed before their final status:
        #: run id -> (the watch, status, exit code, reason, monotonic deadline)
        self._indexing: dict[str, tuple[Watch, str, int | None, str | None, float]] = {}

    # -- the loop ---------------------------------------------------------------------
    def serve(self) -> int:
        """Run until the inbox is closed (the fork server gone) and nothing is left."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # Popen.wait needs the exit codes
        assert self.inbox is not None
        os.set_blocking(self.inbox, False)
        self.sel.register(self.inbox, selectors.EVENT_READ, ("inbox", None))
        self.sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        if self.runas is not None:  # the exits it tells: read as they come
            self.sel.register(self.runas.fileno(), selectors.EVENT_READ, ("runas", None))
        try:
            while (self.inbox is not None or self.waiting or self.running or self._owed
                   or self._indexing):
                timeout = self._timeout()
                try:
                    self._pass(timeout)
                except Exception as exc:  # noqa: BLE001 - told, and the loop goes on
                    _complain(f"agent pass failed: {exc!r}")
                    time.sleep(0.1)
        finally:
            self.indexer.close()
            self.store.close()
        return 0

    def _pass(self, timeout: float | None) -> None:
        """One turn of the loop: what is ready, what is due, what is owed."""
        for key, _ in self.sel.select(None if timeout is None else max(timeout, 0)):
            what, watch = key.data
            if what == "out":
                self._guard(watch, self._read, key.fd, watch)
            elif what == "exit":
                self._guard(watch, self._exited, watch)
            elif what == "inbox":
                self._read_inbox()
            elif what == "runas":
                self._read_runas()
            else:
                self._on_wake()
        self._fire_due()
        self._run_timers()
        if self._indexing:
            self._settle_indexed()
        if self._owed and time.monotonic() >= self._owed_at:
            self._settle_owed()
        if self._hushed_until is not None and time.monotonic() >= self._hushed_until:
            self._hushed_until = None
            if self.inbox is not None:
                self.sel.register(self.inbox, selectors.EVENT_READ, ("inbox", None))
        self._reap_children()

    def _timeout(self) -> float | None:
        """Seconds to block: until ``SPIN`` before the next instant, or the next timer."""
        waits = []
        if self._instants:
            waits.append(self._instants[0][0] - time.time() - SPIN)
        if self._timers:
            waits.append(self._timers[0][0] - time.monotonic())
        if self._children:
            waits.append(1.0)  # to reap them
        if self._hushed_until is not None:
            waits.append(self._hushed_until - time.monotonic())
        if self._owed:
            waits.append(self._owed_at - time.monotonic())
        if self._indexing:
            waits.append(0.02)  # their output being indexed: looked at again
        return min(waits) if waits else None

    def _on_signal(self, signum, frame) -> None:
        self._signalled = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _read_runas(self) -> None:
        """Read what the run-as helper told (its payloads' exits set their return codes;
        the pidfds tell the loop). Once it is gone, the runs of jobs with an owner that
        come next are recorded failed with the reason."""
        assert self.runas is not None
        try:
            self.runas.events()
        except RunAsError:
            pass
        if self.runas.gone is not None:
            self.sel.unregister(self.runas.fileno())
            _complain(f"{self.runas.gone}: runs of jobs with an owner cannot start here")
            self.runas_error = self.runas.gone

    def _timer(self, when: float, what: str, watch: Watch) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, what, watch.id))

    # -- runs in ----------------------------------------------------------------------
    def _read_inbox(self) -> None:
        assert self.inbox is not None
        try:
            data = os.read(self.inbox, 65536)
        except BlockingIOError:
            return
        if not data:  # the fork server is gone or closed: finish what we have
            self._close_inbox()
            return
        *lines, self._pending = (self._pending + data).split(b"\n")
        for line in lines:
            try:
                run_id = json.loads(line)["run_id"]
            except (ValueError, KeyError, TypeError):
                continue
            self.take(run_id)

    def _close_inbox(self) -> None:
        if self.inbox is None:
            return
        if self._hushed_until is None:
            self.sel.unregister(self.inbox)
        os.close(self.inbox)
        self.inbox = None

    def take(self, run_id: str) -> None:
        """Attach *run_id* and prepare its start (or fork it a supervisor of its own).
        Whatever goes wrong concerns this run alone: once attached, it is recorded
        ``failed`` with the reason; before, the ticker's reconcile finds it unstarted."""
        self._attached = None
        try:
            self._take(run_id)
        except Exception as exc:  # noqa: BLE001
            _complain(f"run {run_id} not taken: {exc!r}")
            watch = self.waiting.pop(run_id, None)
            if watch is not None:
                self._unprime(watch)
            if watch is not None or self._attached == run_id:
                self._record(run_id, "failed", None, f"agent error: {exc!r}")
        finally:
            self._attached = None

    def _take(self, run_id: str) -> None:
        """:meth:`take`: ``_attached`` names the run once it is this agent's."""
        store = self.store
        run = patiently(store.get_run, run_id, limit=60)
        if not handles(run) or len(self.waiting) + len(self.running) >= self.capacity:
            self._fork_supervisor(run_id)
            return
        if not patiently(store.attach_run, run_id, self.pid, self.proc_start, self.host,
                         limit=60):
            _complain(f"run {run_id} was no longer queued when the agent took it; "
                      "not running it")
            return
        self._attached = run_id
        watch = Watch(run)
        if (self.runas is not None or self.runas_error is not None) and owned(store, run):
            # the helper builds its argv and environment, as the owner: never here
            watch.owned = True
            if self.runas is None or self.runas.gone is not None:
                watch.error = RunAsError(self.runas_error or "no run-as helper")
        elif self.runas is None and self.runas_error is None and foreign(store, run):
            watch.owned, watch.error = True, RunAsError(NOT_AS_SERVICE)  # fail closed
        else:
            try:  # what cannot be prepared is told at the instant, as "cannot start"
                watch.argv, watch.env, watch.cwd = payload_launch(store, run)
            except Exception as exc:  # noqa: BLE001 - a secret unreadable, a bad spec
                watch.error = exc
        if len(self._primed) < (PRIMED_OWNED if watch.owned else PRIMED):
            self._prime(watch)
        self.waiting[run_id] = watch
        self._seq += 1
        heapq.heappush(self._instants, (run.fire_at or 0.0, self._seq, run_id))

    def _prime(self, watch: Watch) -> None:
        """Start *watch*'s payload as a shell waiting for :meth:`_release` (where the
        payload's program can be found: else it starts at the instant, and says why it
        cannot)."""
        if watch.owned:
            self._prime_as_owner(watch)
            return
        if watch.error is not None or not _findable(watch.argv[0], watch.env, watch.cwd):
            return
        go_r, go_w = os.pipe()
        try:
            watch.proc = subprocess.Popen(
                ["/bin/sh", "-c", GO_SCRIPT, "sh", *watch.argv], stdin=go_r,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=watch.cwd, env=watch.env,
                process_group=0, close_fds=True)
        except (OSError, ValueError, TypeError) as exc:
            os.close(go_w)
            watch.error = exc
            return
        finally:
            os.close(go_r)
        watch.go = go_w
        self._primed.add(watch.id)

    def _prime_as_owner(self, watch: Watch) -> None:
        """:meth:`_prime` through the run-as helper: the waiting shell is the owner's. A
        refusal (or a program not found) is not kept: the start at the instant asks
        again, and records the helper's answer then."""
        if watch.error is not None or self.runas is None:
            return
        try:
            proc = self.runas.popen(watch.id, go=True)
        except OSError as exc:
            _complain(f"run {watch.id} not primed: {exc}")
            return
        watch.proc, watch.go = proc, proc.go
        self._primed.add(watch.id)

    def _release(self, watch: Watch) -> bool:
        """Let a primed payload run now; False when its shell is gone meanwhile."""
        go, watch.go = watch.go, None
        self._primed.discard(watch.id)
        assert go is not None
        try:
            os.write(go, b"\n")
            ok = True
        except OSError:  # its shell died (killed by hand): say so as a failed start
            ok = False
        os.close(go)
        watch.started = time.time()
        return ok

    def _unprime(self, watch: Watch) -> None:
        """A primed payload that must not run: its shell exits on end of file."""
        if watch.go is None:
            return
        os.close(watch.go)
        watch.go = None
        self._primed.discard(watch.id)
        proc = watch.proc
        assert proc is not None and proc.stdout is not None and proc.stderr is not None
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            signal_payload(proc, signal.SIGKILL)
            _wait(proc)
        except OSError as exc:  # RunAsError: the helper is gone; its shell saw end of file
            _complain(f"run {watch.id}: the end of its waiting shell not told: {exc}")
        proc.stdout.close()
        proc.stderr.close()
        watch.proc = None

    def _fork_supervisor(self, run_id: str) -> None:
        """A supervisor of its own for a run the agent does not watch, forked warm, in
        a session of its own, holding none of the agent's descriptors (but a channel of
        its own to the run-as helper, while run-as is on)."""
        from hermes_cron_ext.runtime.supervisor import _before_fork, supervise

        with self.indexer.paused():  # no SQLite lock or transaction across the fork
            _before_fork(self.store)
            channel, why = child_channel(self.runas, self.runas_error)
            pid = os.fork()
        if pid:
            if channel is not None:
                channel.forget()
            self._children.append(pid)
            return
        code = 1
        try:
            os.setsid()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            self.sel.close()
            keep = {0, 1, 2} | ({channel.fileno()} if channel is not None else set())
            fds = [int(f) for f in os.listdir("/proc/self/fd")]
            for fd in fds:
                if fd not in keep:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            code = supervise(self.db, run_id, self.relay, channel, why)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)

    def _reap_children(self) -> None:
        for pid in list(self._children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self._children.remove(pid)

    # -- the instant ------------------------------------------------------------------
    def _fire_due(self) -> None:
        """Start the runs whose instant is at most ``SPIN`` away: asked about in one
        query first, then each started at its instant (slept to precisely)."""
        horizon = time.time() + SPIN
        due: list[Watch] = []
        while self._instants and self._instants[0][0] <= horizon:
            _, _, run_id = heapq.heappop(self._instants)
            watch = self.waiting.pop(run_id, None)
            if watch is not None:
                due.append(watch)
        if not due:
            return
        try:
            why = self._check_starts([w.id for w in due])
        except Exception as exc:  # noqa: BLE001 - the store is down: they start late
            _complain(f"start check of {len(due)} run(s) failed ({exc!r}); trying again")
            for watch in due:
                self.waiting[watch.id] = watch
                self._seq += 1
                heapq.heappush(self._instants, (time.time() + 1.0, self._seq, watch.id))
            return
        started: list[Watch] = []
        for watch in due:  # payloads first, bookkeeping after: latency first
            try:
                if self._start(watch, why):
                    started.append(watch)
            except Exception as exc:  # noqa: BLE001 - this run's trouble, not the others'
                _complain(f"run {watch.id}: {exc!r}")
                self._unprime(watch)
                self._record(watch.id, "failed", None, f"agent error: {exc!r}")
            if len(started) % REAP_EVERY == 0:
                _reap(started[-2 * REAP_EVERY:])
        if started and self.inbox is not None and self._hushed_until is None:
            self.sel.unregister(self.inbox)
        if started:
            self._hushed_until = time.monotonic() + HUSH
        if 0 < len(started) <= CORES:  # a few: their exec and first instructions come before
            time.sleep(FIRST)      # our writes (and the ticker's, woken by them)
        for watch in started:
            self._guard(watch, self._watch, watch)

    def _start(self, watch: Watch, why: dict[str, str | None]) -> bool:
        """Start *watch*'s payload at its instant, as *why* (the start check) allows;
        True when it started."""
        if watch.id not in why:  # gone from the store (its job deleted)
            self._unprime(watch)
            return False
        if watch.stopping:
            self._finish_early(watch, RunStatus.CANCELLED, "cancelled before it started")
            return False
        if refusal := why[watch.id]:
            self._finish_early(watch, RunStatus.SKIPPED, refusal)
            return False
        left = (watch.run.fire_at or 0.0) - time.time()
        if left > 0:
            time.sleep(left)
        if watch.go is None:
            return self._spawn(watch)
        if self._release(watch):
            return True
        watch.error = OSError("its waiting shell was gone at the instant")
        self._unprime(watch)
        self._cannot_start(watch)
        return False

    def _check_starts(self, run_ids: list[str]) -> dict[str, str | None]:
        """``check_starts`` for the batch; a run no longer in the store is left out."""
        try:
            return patiently(self.store.check_starts, run_ids, limit=60)
        except NotFound:
            out = {}
            for run_id in run_ids:
                try:
                    out[run_id] = self.store.check_start(run_id)
                except NotFound:
                    pass
            return out

    def _record(self, run_id: str, status: str, exit_code: int | None,
                reason: str | None, metrics: list[list] | None = None) -> bool:
        """The run's final status, now or, while the store cannot take it (disk full,
        database down), tried again every ``OWED_RETRY`` s for as long as the agent
        lives: a run this agent holds never stays queued or running. *metrics*: what
        goes with it (``finish_run``'s, owed with it). True when recorded now."""
        at = time.time()
        try:
            patiently(self.store.finish_run, run_id, status, exit_code, reason, at, metrics,
                      limit=OWED_RETRY)
            return True
        except NotFound:  # deleted meanwhile: nothing to record
            return False
        except Exception as exc:  # noqa: BLE001
            _complain(f"run {run_id}: {status} not recorded yet ({exc}); trying again")
            if not self._owed:
                self._owed_at = time.monotonic() + OWED_RETRY
            self._owed[run_id] = (status, exit_code, reason, at, metrics)
            return False

    def _settle_owed(self) -> None:
        for run_id, (status, exit_code, reason, at, metrics) in list(self._owed.items()):
            try:
                self.store.finish_run(run_id, status, exit_code, reason, at, metrics)
            except NotFound:
                pass
            except Exception as exc:  # noqa: BLE001
                _complain(f"run {run_id}: {status} still not recorded ({exc})")
                break  # the store is still down: the rest wait too
            del self._owed[run_id]
            self._take_after(run_id)
        self._owed_at = time.monotonic() + OWED_RETRY

    def _take_after(self, run_id: str) -> None:
        """Take the runs the end of *run_id* queued (a pipeline's, a backfill's next)."""
        try:
            after = self.store.take_next(run_id)
        except Exception as exc:  # noqa: BLE001 - a ticker starts them at its next pass
            _complain(f"runs queued after {run_id} not taken: {exc}")
            return
        for next_id in after:
            self.take(next_id)

    def _finish_early(self, watch: Watch, status: str, reason: str) -> None:
        self._unprime(watch)
        self._record(watch.id, status, None, reason)

    def _spawn(self, watch: Watch) -> bool:
        if watch.error is None:
            try:
                if watch.owned:  # as its owner: the helper's reason when it refuses
                    assert self.runas is not None
                    watch.proc = self.runas.popen(watch.id)
                else:
                    watch.proc = subprocess.Popen(
                        watch.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, cwd=watch.cwd, env=watch.env,
                        process_group=0, close_fds=True)
                watch.started = time.time()
                return True
            except (OSError, ValueError, TypeError) as exc:
                watch.error = exc
        self._cannot_start(watch)
        return False

    def _cannot_start(self, watch: Watch) -> None:
        store, exc = self.store, watch.error
        try:
            store.mark_running(watch.id, time.time(), 0)
            writer = store.output_writer(watch.id, watch.run.spec.get("max_output"))
            writer.system(f"[hermes-cron: cannot start the job: {exc}]\n")
            writer.close()
            self.indexer.hand(watch.id, writer, final=True)
        except Exception as err:  # noqa: BLE001 - the status matters more than the line
            _complain(f"run {watch.id}: its failure to start not written: {err}")
        self._record(watch.id, "failed", 127, f"cannot start: {exc}")

    def _watch(self, watch: Watch) -> None:
        """Record the started payload as running and follow its output and exit."""
        proc, store = watch.proc, self.store
        assert proc is not None and proc.stdout is not None and proc.stderr is not None
        try:
            taken = patiently(store.mark_running, watch.id, watch.started, proc.pid, limit=60)
        except Exception as exc:  # noqa: BLE001
            _complain(f"run {watch.id}: not recorded running ({exc}); stopping it")
            taken = False
        if not taken:  # ended meanwhile (cancelled, lost): never let it run
            signal_payload(proc, signal.SIGKILL)
            _wait(proc)
            proc.stdout.close()
            proc.stderr.close()
            return
        self.running[watch.id] = watch
        if isinstance(proc, Process) and proc.file_sha256 is not None:
            # what an owned run runs, as its owner read it (the helper's answer), as the
            # supervisor records it for the runs it starts itself
            try:
                store.record_file_hash(watch.id, proc.file_sha256)
            except Exception as exc:  # noqa: BLE001 - which file it ran is worth less than the run
                _complain(f"run {watch.id}: its file's sha256 not recorded: {exc}")
        watch.writer = store.output_writer(watch.id, watch.run.spec.get("max_output"))
        for name, f in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            os.set_blocking(f.fileno(), False)
            watch.streams[f.fileno()] = (name, f)
            self.sel.register(f.fileno(), selectors.EVENT_READ, ("out", watch))
        now = time.monotonic()
        if not isinstance(proc, Process):
            _reap_ended(watch)
        pidfd = exit_fd(proc) if isinstance(proc, Process) or proc.returncode is None else None
        if pidfd is not None:
            watch.pidfd = pidfd
            self.sel.register(watch.pidfd, selectors.EVENT_READ, ("exit", watch))
        else:  # ended (and reaped) while a burst was being started
            watch.exited_at = now
            self._timer(now + EXIT_DRAIN, "drain", watch)
        watch.last_beat = now
        watch.next_beat = now + self.heartbeat
        self._timer(watch.next_beat, "beat", watch)
        timeout = watch.run.spec.get("timeout")
        if timeout:
            watch.deadline = now + float(timeout)
            self._timer(watch.deadline, "deadline", watch)

    # -- a run in flight --------------------------------------------------------------
    def _read(self, fd: int, watch: Watch) -> None:
        name, f = watch.streams[fd]
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(fd)
            del watch.streams[fd]
            f.close()
            if watch.exited_at is not None and not watch.streams:
                self._done(watch)
            return
        writer = watch.writer
        assert writer is not None
        writer.write(name, data)
        if writer.error is not None and watch.stopping is None:
            self._stop(watch, "write_failed")
        watch.progress.feed(data)
        watch.metrics[name].feed(data)
        if name == "stderr":
            lines = [ln for ln in data.replace(b"\r", b"\n").split(b"\n") if ln.strip()]
            if lines:
                watch.last_err = lines[-1][:200]
        if watch.progress.changed and time.monotonic() - watch.last_beat >= 0.5:
            self._beat(watch)

    def _exited(self, watch: Watch) -> None:
        assert watch.pidfd is not None and watch.proc is not None
        self.sel.unregister(watch.pidfd)
        os.close(watch.pidfd)
        watch.pidfd = None
        watch.exited_at = time.monotonic()
        if watch.stopping:  # take the rest of the group down with the leader
            signal_payload(watch.proc, signal.SIGKILL)
        if not watch.streams:
            self._done(watch)
        else:  # what its children still write, for this long
            self._timer(watch.exited_at + EXIT_DRAIN, "drain", watch)

    def _beat(self, watch: Watch) -> None:
        writer, progress = watch.writer, watch.progress
        assert writer is not None
        progress.changed = False
        # both written by the indexer's thread: this loop never waits for the store's
        # write lock (the beat's answer, cancel, comes at the next beat)
        cancel = self.indexer.beat(watch.id, time.time(), progress.phase,
                                   progress.fraction, writer.size)
        self.indexer.hand(watch.id, writer)
        now = time.monotonic()
        watch.last_beat = now
        watch.next_beat = now + self.heartbeat
        self._timer(watch.next_beat, "beat", watch)
        if cancel:
            self._stop(watch, "cancelled")

    def _stop(self, watch: Watch, why: str) -> None:
        """TERM the payload's group, KILL it after the job's grace."""
        if watch.stopping is not None or watch.proc is None:
            return
        watch.stopping = why
        writer = watch.writer
        assert writer is not None
        grace = float(watch.run.spec.get("kill_grace") or 10.0)
        timeout = watch.run.spec.get("timeout")
        what = ("cannot write the run's output" if why == "write_failed"
                else f"timed out after {timeout:g} s" if why == "timed_out" else "cancelled")
        writer.system(f"\n[hermes-cron: {what}; sending SIGTERM to the process group, "
                      f"SIGKILL in {grace:g} s]\n")
        signal_payload(watch.proc, signal.SIGTERM)
        watch.deadline = None
        watch.kill_at = time.monotonic() + grace
        self._timer(watch.kill_at, "kill", watch)

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            when, _, what, run_id = heapq.heappop(self._timers)
            watch = self.running.get(run_id)
            if watch is None:
                continue
            self._guard(watch, self._on_timer, watch, what, when, now)

    def _on_timer(self, watch: Watch, what: str, when: float, now: float) -> None:
        if what == "beat" and when == watch.next_beat and watch.exited_at is None:
            self._beat(watch)
        elif what == "deadline" and when == watch.deadline:
            self._stop(watch, "timed_out")
        elif what == "kill" and when == watch.kill_at:
            assert watch.proc is not None and watch.writer is not None
            if signal_payload(watch.proc, signal.SIGKILL):
                watch.writer.system("[hermes-cron: sent SIGKILL to the process group]\n")
            if watch.exited_at is None:
                watch.kill_at = now + float(watch.run.spec.get("kill_grace") or 10.0)
                self._timer(watch.kill_at, "kill", watch)
        elif what == "drain":
            self._done(watch)

    def _guard(self, watch: Watch, step, *args) -> None:
        """*step* for one run; what goes wrong there (its log's disk gone, say) ends
        that run ``failed`` with the reason, never the agent and its other runs."""
        try:
            step(*args)
        except Exception as exc:  # noqa: BLE001
            _complain(f"run {watch.id}: {exc!r}")
            self._abandon(watch, f"agent error: {exc!r}")

    def _abandon(self, watch: Watch, reason: str) -> None:
        """Stop *watch*'s payload group, forget it and record it failed with *reason*."""
        self.running.pop(watch.id, None)
        for fd, (_, f) in list(watch.streams.items()):
            try:
                self.sel.unregister(fd)
            except (KeyError, ValueError):
                pass
            f.close()
        watch.streams.clear()
        if watch.pidfd is not None:
            try:
                self.sel.unregister(watch.pidfd)
            except (KeyError, ValueError):
                pass
            os.close(watch.pidfd)
            watch.pidfd = None
        if watch.proc is not None:
            signal_payload(watch.proc, signal.SIGKILL)
            _wait(watch.proc)
        if watch.writer is not None:
            watch.writer.close()
            self.indexer.hand(watch.id, watch.writer, final=True)
        self._record(watch.id, "failed", None, reason, metric_rows(watch.metrics, None))

    def _done(self, watch: Watch) -> None:
        """The final status, as a supervisor records it; then the run its end queued."""
        if self.running.pop(watch.id, None) is None:
            return
        for fd, (_, f) in list(watch.streams.items()):
            self.sel.unregister(fd)
            f.close()
        watch.streams.clear()
        proc, writer = watch.proc, watch.writer
        assert proc is not None and writer is not None
        if not isinstance(proc, Process) and proc.returncode is None:
            watch.usage = reap(proc)
        rc = exit_status(proc)
        if isinstance(proc, Process):
            watch.usage = told_usage(proc)
        status, exit_code, reason = ("failed", None, rc) if isinstance(rc, str) else outcome(
            rc, watch.stopping, watch.run.spec.get("timeout"), writer, watch.last_err)
        writer.close()
        # its final status once the rest of its output is indexed (a finished run is
        # searchable), FINISH_WAIT s at most; the loop goes on meanwhile
        self.indexer.hand(watch.id, writer, final=True)
        self._indexing[watch.id] = (watch, status, exit_code, reason,
                                    time.monotonic() + FINISH_WAIT)
        self._settle_indexed()

    def _settle_indexed(self) -> None:
        """The final status of the ended runs whose output is indexed (or whose wait
        for it is over)."""
        now = time.monotonic()
        for run_id, (watch, status, exit_code, reason, until) in list(
                self._indexing.items()):
            if not self.indexer.wait(run_id, 0):
                if now < until:
                    continue
                _complain(f"run {run_id}: its output is still being indexed after "
                          f"{FINISH_WAIT:g} s; its final status is recorded meanwhile")
            del self._indexing[run_id]
            self._guard(watch, self._finish, watch, status, exit_code, reason)

    def _finish(self, watch: Watch, status: str, exit_code: int | None,
                reason: str | None) -> None:
        writer, store = watch.writer, self.store
        assert writer is not None
        try:
            store.heartbeat_run(watch.id, time.time(), watch.progress.phase,
                                watch.progress.fraction, writer.size)
        except Exception as exc:  # noqa: BLE001
            _complain(f"last heartbeat of run {watch.id} not recorded: {exc}")
        if self._record(watch.id, status, exit_code, reason,
                        metric_rows(watch.metrics, watch.usage)):
            self._take_after(watch.id)

    # -- cancel ------------------------------------------------------------------------
    def _on_wake(self) -> None:
        """SIGTERM: a cancel was asked for on this host (``ops.cancel`` records it, then
        signals the run's pid, which is ours). The runs whose cancel is recorded stop;
        the others go on, whoever sent the signal (a shutdown ends the payloads itself,
        and their ends are recorded as they come)."""
        try:
            os.read(self._wake_r, 64)
        except BlockingIOError:
            pass
        if not self._signalled:
            return
        self._signalled = False
        for watch in [*self.waiting.values(), *self.running.values()]:
            try:
                asked = self.store.get_run(watch.id).cancel_requested
            except Exception:  # noqa: BLE001 - deleted, or the store is down: not asked
                asked = False
            if not asked:
                continue
            if watch.id in self.waiting:
                del self.waiting[watch.id]
                self._finish_early(watch, RunStatus.CANCELLED, "cancelled before it started")
            else:
                self._stop(watch, "cancelled")


def _findable(program: str, env: dict[str, str], cwd: str) -> bool:
    """Whether *program* names an executable file (as exec would find it)."""
    import shutil

    if "/" in program:
        path = os.path.join(cwd, program)
        return os.path.isfile(path) and os.access(path, os.X_OK)
    return shutil.which(program, path=env.get("PATH", os.defpath)) is not None


def _reap(watches: list[Watch]) -> None:
    """Collect the exit status of those of *watches* whose payload has ended (a burst's
    short payloads end while the rest are being started): no zombie waits for the
    bookkeeping after the burst."""
    for watch in watches:  # the run-as helper reaps those it started
        _reap_ended(watch)


def _reap_ended(watch: Watch) -> None:
    """Reap *watch*'s payload if it has ended (``wait4``, not blocking), keeping its
    CPU time and peak memory (:func:`supervisor.reap`) for its final status."""
    if isinstance(watch.proc, subprocess.Popen) and watch.proc.returncode is None:
        usage = reap(watch.proc, block=False)
        if usage is not None:
            watch.usage = usage


def _wait(proc: subprocess.Popen | Process, limit: float = 5.0) -> None:
    """Reap a payload just sent SIGKILL; one stuck in the kernel is left, not waited for
    (and one whose end the run-as helper can no longer tell)."""
    try:
        proc.wait(limit)
    except subprocess.TimeoutExpired:
        _complain(f"payload {proc.pid} did not exit {limit:g} s after SIGKILL")
    except OSError as exc:  # RunAsError
        _complain(f"payload {proc.pid}: its end not told ({exc})")


def run_agent(db: str, inbox: int, relay: str | None = None, runas: RunAs | None = None,
              runas_error: str | None = None) -> int:
    """The agent's entry point in a process forked by the fork server; *relay*: the
    socket of the fork server's PostgreSQL relay, shared with its supervisors; *runas*,
    *runas_error*: see :class:`Agent`."""
    from hermes_cron_ext.store import open_store

    room = _descriptor_room()
    if relay:
        from hermes_cron_ext.store.relay import RelayClient

        return Agent(RelayClient(db, relay), inbox, db, relay, capacity=room, runas=runas,
                     runas_error=runas_error).serve()
    return Agent(open_store(db), inbox, db, relay, capacity=room, runas=runas,
                 runas_error=runas_error).serve()


def _descriptor_room() -> int:
    """How many runs this agent can hold: each takes five descriptors (two pipes, a
    pidfd, the log and its index). The soft limit is raised to the hard one first (a
    soft limit of 1,024 would hold 200)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        want = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return max(1, (soft - 64) // 6)


if __name__ == "__main__":  # for a look by hand: run ids as JSON lines on stdin
    from hermes_cron_ext.runtime.supervisor import SUPERVISE_DB_ENV

    sys.exit(run_agent(os.environ.pop(SUPERVISE_DB_ENV), sys.stdin.fileno()))
