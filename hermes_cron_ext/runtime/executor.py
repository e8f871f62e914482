"""The local executor: host agents and supervisors forked from a warm process.

Starting Python costs 15-65 ms here (150+ ms through the pyenv shim), a fork from
a warm process about 1 ms. So the executor keeps one *fork server*: a child
process that has already imported the runtime and the store. It hands most runs
(command and Python jobs that start at their instant: ``agent.handles``) to its
*host agents* (``agent.py``), up to one per core, forked from it on first use, each
watching many runs; it forks a supervisor of its own for the others (notebooks,
runs that wait for a turn). Agents and supervisors call ``setsid`` at once, so they
outlive the fork server and the ticker (a ``kill -9`` of either leaves runs going),
and the fork server ignores SIGCHLD so the kernel reaps its children.

On PostgreSQL the fork server also forks a relay (``store/postgres.py``), so its
supervisors share one warm connection instead of opening a server process each.

With run-as on (``run_as``: the command that starts the privileged helper of
``runas.py``, behind ``sudo -n``), the executor starts the helper once, when it first
needs it, and hands each fork server a channel to it; the fork server gives each agent
and each supervisor it forks a channel of its own, and they start the payloads of jobs
with an owner through it, as that owner. When the helper cannot start, the executor
says so in the log and as the ticker's fault, and those runs are recorded failed with
the reason: they never run as the service's account. The ticker's reconcile asks the
helper to stop a lost run's payload that runs as another user (:meth:`stop_orphan`).

The ticker hands runs over ``lead`` seconds before their instant; supervisors
wait for the instant themselves, so the fire latency is a timer wake-up plus one
``fork+exec`` of the payload.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hermes_cron_ext.domain.models import Run
from hermes_cron_ext.runtime.agent import handles
from hermes_cron_ext.runtime.runas import RunAs, RunAsError

T = TypeVar("T")

log = logging.getLogger("hermes_cron")


class Executor(ABC):
    """Starts supervisors for claimed runs."""

    @abstractmethod
    async def start(self, run: Run) -> None:
        """Hand *run* to a supervisor that waits for ``run.scheduled_for`` and runs it."""

    async def start_many(self, runs: list[Run]) -> None:
        """Start a claimed batch (executors that can, start it in one go)."""
        for run in runs:
            await self.start(run)

    @abstractmethod
    async def close(self) -> None:
        """Stop accepting runs; supervisors already started go on."""

#: how the fork server gets its store URL (its environment, not its command line)
FORK_SERVER_DB = "HERMES_CRON_FORK_SERVER_DB"
#: how the fork server gets its channel to the run-as helper: "FD HELPER_PID"
FORK_SERVER_RUNAS = "HERMES_CRON_FORK_SERVER_RUNAS"
#: ... or, while run-as is on, why there is none (runs of owned jobs fail with it)
FORK_SERVER_RUNAS_ERROR = "HERMES_CRON_FORK_SERVER_RUNAS_ERROR"
#: seconds between tries to start a run-as helper that could not start (at a run's start)
RUNAS_RETRY = 60.0

#: Scheme spellings of one Dask scheduler address (``dask://h:p`` is ``tcp://h:p``).
_SCHEMES = (("dask+tls://", "tls://"), ("dask://", "tcp://"), ("tcp://", "tcp://"),
            ("tls://", "tls://"))


# -- the operator's allow-list of executors ---------------------------------------------
#
# A job may name where its runs execute (``executor``), but only among the executors the
# operator configured: ``c.HermesCron.executors`` for a Jupyter server's ticker,
# ``hermes-cron daemon --executor URL`` (repeatable) for a daemon. The REST API refuses
# any other at create and edit (400), and a ticker that meets one anyway (a job stored
# before the list changed, or written to the store directly) records the run failed
# without connecting anywhere.

def normalize_executor(spec: str | None) -> str:
    """One spelling per executor: ``local``, or ``tcp://HOST:PORT`` / ``tls://HOST:PORT``."""
    if not spec or spec == "local":
        return "local"
    for prefix, scheme in _SCHEMES:
        if spec.startswith(prefix):
            return scheme + spec[len(prefix):].rstrip("/")
    return spec


def executor_specs(given: list[str] | str | None) -> list[str]:
    """The executors given on a command line (``--executor``, repeatable), else in
    ``$HERMES_CRON_EXECUTOR`` (comma-separated); empty for the local executor only."""
    if isinstance(given, str):
        given = [given]
    if not given:
        given = os.environ.get("HERMES_CRON_EXECUTOR", "").split(",")
    return [s.strip() for s in given if s and s.strip()]


class AllowedExecutors:
    """The executors jobs may name on one server or daemon."""

    def __init__(self, specs):
        self.specs = list(dict.fromkeys(s or "local" for s in specs)) or ["local"]
        self._norm = {normalize_executor(s) for s in self.specs}

    def __contains__(self, spec: str | None) -> bool:
        return normalize_executor(spec) in self._norm

    def describe(self) -> str:
        return ", ".join(self.specs)

    def refusal(self, spec: str) -> str:
        return (f"executor {spec!r} is not one the operator allows here; allowed: "
                f"{self.describe()} (c.HermesCron.executors, or hermes-cron daemon "
                f"--executor URL)")


class Refused(Executor):
    """Stands for an executor a job names that is not on the allow-list: its runs are
    recorded failed with the reason at once; nothing is contacted."""

    def __init__(self, spec: str, reason: str, store):
        self.spec, self.reason, self.store = spec, reason, store

    async def start(self, run: Run) -> None:
        log.error("hermes-cron: run %s of job %s not started: %s", run.id, run.job_id,
                  self.reason)
        await self.store.finish_run(run.id, "failed", None, reason=self.reason)

    async def close(self) -> None:
        pass


def restrict_executors(ticker, allowed: AllowedExecutors) -> None:
    """Let *ticker* start runs only on executors in *allowed*; a run whose job names
    another is recorded failed (:class:`Refused`) instead of being sent there."""
    choose = ticker.executor_for
    refused: dict[str, Refused] = {}

    def executor_for(run: Run) -> Executor:
        spec = run.spec.get("executor") if run.spec else None
        if not spec or spec in allowed:
            return choose(run)
        if spec not in refused:
            refused[spec] = Refused(spec, allowed.refusal(spec), ticker.store)
        return refused[spec]

    ticker.allowed_executors = allowed
    ticker.executor_for = executor_for


class LocalExecutor(Executor):
    """Runs on this machine, through a warm fork server (see the module docstring).
    *run_as*: the run-as helper's command (empty: runs run as this process's account)."""

    def __init__(self, db: str, logs_dir: str | None = None, run_as: Sequence[str] = ()):
        self.db = db
        self.logs_dir = logs_dir
        self.run_as = list(run_as)
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._runas: RunAs | None = None  # the helper, started by this process
        self._runas_lock = threading.Lock()  # a RunAs is asked one thing at a time
        self._runas_tried = 0.0  # monotonic: when the helper was last started (or tried)
        #: the helper whose channel the fork server holds (None: it has none)
        self._served_by: RunAs | None = None
        #: why the run-as helper cannot be used ({"since", "error"}), or None
        self.runas_fault: dict[str, Any] | None = None

    async def _server(self) -> asyncio.subprocess.Process:
        async with self._lock:
            if self._proc is not None and self._proc.returncode is None \
                    and self.run_as and await self._runas_changed():
                # its channel leads nowhere, or a helper runs now where it had none: the
                # next fork server gets a channel to the helper that runs
                self._retire()
            if self._proc is None or self._proc.returncode is not None:
                if self._proc is not None:
                    log.warning("hermes-cron fork server exited (%s); starting a new one",
                                self._proc.returncode)
                # the store URL (a PostgreSQL password) by environment, never on the
                # command line every local user can read (ps)
                env = {**os.environ, FORK_SERVER_DB: self.db}
                channel = await self._channel() if self.run_as else None
                if channel is not None:
                    env[FORK_SERVER_RUNAS] = f"{channel.fileno()} {channel.pid}"
                elif self.run_as:
                    assert self.runas_fault is not None
                    env[FORK_SERVER_RUNAS_ERROR] = self.runas_fault["error"]
                try:
                    self._proc = await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "hermes_cron_ext.runtime.executor",
                        self.logs_dir or "", stdin=asyncio.subprocess.PIPE,
                        start_new_session=True, env=env,
                        pass_fds=() if channel is None else (channel.fileno(),))
                finally:
                    if channel is not None:
                        channel.close()  # the fork server's own copy stays open
                self._served_by = self._runas if channel is not None else None
            return self._proc

    # -- the run-as helper ---------------------------------------------------------------
    def _ask(self, call: Callable[..., T], *args: Any) -> T:
        with self._runas_lock:
            return call(*args)

    async def _helper(self) -> RunAs | None:
        """The run-as helper, started now if it is not running; None (and
        :attr:`runas_fault` says why, loudly in the log too) when it cannot start."""
        if self._runas is not None and self._runas.gone is None:
            return self._runas
        if self._runas is not None:
            log.error("hermes-cron: the run-as helper is gone (%s); starting another",
                      self._runas.gone)
            old, self._runas = self._runas, None
            await asyncio.to_thread(old.close, 1.0)
        self._runas_tried = time.monotonic()
        try:
            self._runas = await asyncio.to_thread(RunAs, self.run_as)
        except Exception as exc:  # noqa: BLE001 - sudo refuses, no configuration, ...
            error = (f"the run-as helper cannot start ({shlex.join(self.run_as)}): {exc}; "
                     "runs of jobs with an owner are recorded failed, never run as this "
                     "service's account")
            if self.runas_fault is None or self.runas_fault["error"] != error:
                log.error("hermes-cron: %s", error)
                self.runas_fault = {"since": time.time(), "error": error}
            return None
        if self.runas_fault is not None:
            log.warning("hermes-cron: the run-as helper runs again (pid %d)", self._runas.pid)
        self.runas_fault = None
        log.info("hermes-cron: runs of jobs with an owner start as their owner through the "
                 "run-as helper (pid %d: %s)", self._runas.pid, shlex.join(self.run_as))
        return self._runas

    async def _channel(self) -> RunAs | None:
        """A new channel to the helper for a fork server, or None (:attr:`runas_fault`)."""
        for _ in range(2):  # a helper found gone now is started again, once
            runas = await self._helper()
            if runas is None:
                return None
            try:
                return await asyncio.to_thread(self._ask, runas.channel)
            except RunAsError:
                continue
        return None

    async def _runas_changed(self) -> bool:
        """Whether the running fork server's channel to the helper no longer fits: its
        helper has gone, or a helper runs (or starts now: one that could not is tried
        again every ``RUNAS_RETRY`` s) while the fork server has none."""
        if self._served_by is not None:
            return self._served_by is not self._runas or self._helper_lost()
        if self._runas is None and time.monotonic() - self._runas_tried < RUNAS_RETRY:
            return False
        return await self._helper() is not None

    def _helper_lost(self) -> bool:
        """Whether the helper this process started has gone (read without blocking)."""
        if self._runas is None:  # not started yet, or it could not start (its fault)
            return False
        if not self._runas_lock.acquire(blocking=False):  # asked meanwhile: next time
            return False
        try:
            self._runas.events()
        except RunAsError:
            pass
        finally:
            self._runas_lock.release()
        return self._runas.gone is not None

    def _retire(self) -> None:
        """Let the fork server finish what it was sent and exit (its agents too); the
        next run starts a new one."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()

    async def stop_orphan(self, run_id: str) -> list[int]:
        """Ask the run-as helper to SIGKILL what is left of a lost run's payload that
        runs as another user (``runas.Helper.stop_orphan``); the groups it stopped.

        :raises RunAsError: no helper, or refused (the run's job has no owner, ...)."""
        async with self._lock:
            runas = await self._helper()
        if runas is None:
            raise RunAsError(self.runas_fault["error"] if self.runas_fault else "no helper")
        return await asyncio.to_thread(self._ask, runas.stop_orphan, run_id)

    async def warm_up(self) -> None:
        await self._server()

    async def start(self, run: Run) -> None:
        await self.start_many([run])

    async def start_many(self, runs: list[Run]) -> None:
        if not runs:
            return
        proc = await self._server()
        assert proc.stdin is not None
        proc.stdin.write(b"".join(json.dumps({"run_id": r.id, "agent": handles(r)}).encode()
                                  + b"\n" for r in runs))
        try:
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            log.error("hermes-cron fork server died; %d run(s) will be marked lost", len(runs))

    async def close(self) -> None:
        """Let the fork server finish what it was sent, then exit; runs go on (and the
        run-as helper, for as long as an agent or a supervisor needs it)."""
        proc, self._proc = self._proc, None
        runas, self._runas = self._runas, None
        if runas is not None:
            await asyncio.to_thread(runas.close, 0.0)
        if proc is None or proc.returncode is not None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            proc.kill()


def spawn_supervisor(db: str, run_id: str) -> int:
    """Start one supervisor without a fork server (one-off ``hermes-cron run``)."""
    from hermes_cron_ext.runtime.supervisor import SUPERVISE_DB_ENV

    # the store URL (a PostgreSQL password, maybe) in the environment, not on the
    # command line every local user can read; the supervisor takes it out again
    proc = subprocess.Popen(
        [sys.executable, "-m", "hermes_cron_ext.runtime.supervisor", run_id],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, SUPERVISE_DB_ENV: db}, start_new_session=True)
    return proc.pid


#: host agents per fork server: one per core takes a burst's starts in parallel
AGENTS = max(1, min(4, os.cpu_count() or 1))


class Agents:
    """The fork server's host agents: started on first use, handed runs in turn. An
    agent reads its runs from a pipe whose end of file (this fork server gone) tells
    it to finish what it has and exit. *runas*: the fork server's channel to the run-as
    helper (each agent gets one of its own), or *runas_error* why there is none, while
    run-as is on."""

    def __init__(self, db: str, err_path: str, size: int = AGENTS,
                 runas: RunAs | None = None, runas_error: str | None = None):
        self.db, self.err_path, self.size = db, err_path, size
        self.runas, self.runas_error = runas, runas_error
        self.pool: list[tuple[int, int] | None] = [None] * size  # (pid, write end)
        self._turn = 0

    def send(self, line: bytes, relay: str | None) -> bool:
        """Hand one run (a JSON line) to the next agent; one that died is replaced. False
        when none can take it now (each one's inbox is full: stalled on its store): the
        caller gives the run a supervisor of its own."""
        line = line if line.endswith(b"\n") else line + b"\n"
        for _ in range(2 * self.size):
            i = self._turn % self.size
            self._turn += 1
            agent = self.pool[i]
            if agent is None or not _alive(agent[0]):
                if agent is not None:
                    os.close(agent[1])
                agent = self.pool[i] = self._start(relay)
            try:  # a line is far below PIPE_BUF: written whole or not at all
                os.write(agent[1], line)
                return True
            except BlockingIOError:  # this one is not reading: the next one
                continue
            except BrokenPipeError:  # died since: the next one takes it
                os.close(agent[1])
                self.pool[i] = None
        return False

    def inboxes(self) -> list[int]:
        return [agent[1] for agent in self.pool if agent is not None]

    def held(self) -> list[int]:
        """The descriptors a process forked for anything else must not hold open: the
        inboxes and the channel to the run-as helper."""
        mine = [] if self.runas is None or self.runas.gone else [self.runas.fileno()]
        return self.inboxes() + mine

    def _start(self, relay: str | None) -> tuple[int, int]:
        from hermes_cron_ext.runtime.supervisor import child_channel

        channel, why = child_channel(self.runas, self.runas_error)
        r, w = os.pipe()
        pid = os.fork()
        if pid:
            os.close(r)
            if channel is not None:
                channel.forget()
            os.set_blocking(w, False)  # a stalled agent never stalls the fork server
            return pid, w
        code = 1
        try:
            os.close(w)
            self.close_in_child()  # no agent holds another's inbox open
            _detach(self.err_path)
            from hermes_cron_ext.runtime.agent import run_agent

            code = run_agent(self.db, r, relay, channel, why)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)

    def close_in_child(self) -> None:
        """In a fork: the agents' inboxes, and the fork server's channel to the run-as
        helper, are the fork server's alone."""
        if self.runas is not None:
            self.runas.forget()
        for fd in self.inboxes():
            try:
                os.close(fd)
            except OSError:
                pass


def _detach(err_path: str) -> None:
    """In a fork: a session of our own, stdin and stdout on /dev/null, stderr to
    *err_path*, the fork server's signal dispositions undone."""
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    null = os.open(os.devnull, os.O_RDWR)
    err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(err, 2)


def serve(db: str, logs_dir: str, runas: RunAs | None = None,
          runas_error: str | None = None) -> None:
    """The fork server's loop: one JSON line in, the run to an agent or to a detached
    supervisor of its own. *runas*, *runas_error*: its channel to the run-as helper, or
    why there is none, while run-as is on."""
    from hermes_cron_ext.runtime.supervisor import child_channel, supervise
    from hermes_cron_ext.store import is_postgres, preload

    preload(db)  # import the store (and its driver) once, here, before any fork: warm children
    # what is loaded now lives as long as the children: out of the cyclic collector's
    # sight, a collection in a child never walks it (at a run's instant, say)
    gc.freeze()
    relay = relay_pid = None

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps our children
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the server
    err_path = os.path.join(logs_dir, "supervisors.err") if logs_dir else os.devnull
    agents = Agents(db, err_path, runas=runas, runas_error=runas_error)
    for line in sys.stdin.buffer:
        try:
            message = json.loads(line)
            run_id = message["run_id"]
        except (ValueError, KeyError, TypeError):
            continue
        if is_postgres(db) and not _alive(relay_pid):  # (re)start the supervisors' relay
            from hermes_cron_ext.store.relay import start_relay

            relay, relay_pid = start_relay(db, err_path, agents.held())
        if message.get("agent") and agents.send(line, relay):
            continue
        channel, why = child_channel(runas, runas_error)
        if os.fork():
            if channel is not None:
                channel.forget()
        else:
            code = 1
            try:
                agents.close_in_child()
                _detach(err_path)
                code = supervise(db, run_id, relay, channel, why)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):  # gone (reaped), or its pid reused
        return False


def _runas_from_env() -> tuple[RunAs | None, str | None]:
    """The fork server's channel to the run-as helper (or why there is none), as its
    executor handed them over; taken out of the environment."""
    given = os.environ.pop(FORK_SERVER_RUNAS, "")
    error = os.environ.pop(FORK_SERVER_RUNAS_ERROR, None)
    if given:
        fd, pid = given.split()
        return RunAs.attach(int(fd), int(pid)), None
    return None, error


if __name__ == "__main__":
    # taken out of the environment at once: supervisors and payloads never inherit them
    serve(os.environ.pop(FORK_SERVER_DB), sys.argv[1] if len(sys.argv) > 1 else "",
          *_runas_from_env())
