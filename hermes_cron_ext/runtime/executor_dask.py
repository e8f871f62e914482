"""The Dask executor: runs execute on a dask.distributed cluster (``pip install
'hermes-cron-ext[dask]'``); select it with ``c.HermesCron.executor = "dask://HOST:PORT"``
or ``hermes-cron daemon --executor dask://HOST:PORT``.

The supervisor contract is the local one, on a worker: each run is one Dask task,
:func:`run_on_worker`, which starts the run's supervisor as a child process of the
worker and waits for it. The supervisor (:class:`WorkerSupervisor`, the local
:class:`~hermes_cron_ext.runtime.supervisor.Supervisor` plus one rule) attaches its own pid
and host to the run, waits for the instant, runs the payload in its own process
group, heartbeats, enforces the timeout, writes output to the store (PostgreSQL:
every Jupyter server streams it live) and records the exit code.

The one rule: the supervisor dies with its worker. The kernel sends it ``SIGUSR2``
when the worker process dies (``PR_SET_PDEATHSIG``); it then stops the payload's
process group and records the run ``lost`` (so the job's retry policy applies).
A supervisor killed outright is found by the tickers as any other: its pid is gone
(same host) or its heartbeat is stale (other hosts). Dask re-runs a task whose
worker died; the re-run sees the run taken and does nothing, so a payload never
runs twice.

The store must be one every worker reaches: PostgreSQL, or a SQLite file when the
workers share the ticker's machine. Its credentials never travel to the cluster: a task
carries the run id and the store's URL *without* its password. A worker opens the store
from its own configuration (``HERMES_CRON_DB`` in the worker's environment, or
``c.HermesCron.db`` in its Jupyter config); only a store URL that holds no secret (a
SQLite path, a PostgreSQL URL without a password: peer, ``.pgpass`` or certificate auth)
is used as sent when the worker has none. A scheduler or worker a job can reach
therefore never learns the store's password.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

from hermes_cron_ext.domain.models import ACTIVE_STATUSES, Run
from hermes_cron_ext.errors import HermesCronError, InvalidInput
from hermes_cron_ext.processes import hostname
from hermes_cron_ext.runtime.executor import Executor
from hermes_cron_ext.runtime.supervisor import Supervisor

log = logging.getLogger("hermes_cron")

#: The signal a worker's death sends to the supervisors it started.
WORKER_DIED = signal.SIGUSR2
_PR_SET_PDEATHSIG = 1


class ExecutorUnavailable(HermesCronError):
    """The Dask scheduler cannot be reached (or refused the work)."""

    code = "executor_unavailable"


def scheduler_address(spec: str) -> str:
    """``dask://HOST:PORT`` (or ``dask+tls://``, ``tcp://``, ``tls://``) -> a Dask address."""
    for prefix, scheme in (("dask+tls://", "tls://"), ("dask://", "tcp://"),
                           ("tcp://", "tcp://"), ("tls://", "tls://")):
        if spec.startswith(prefix):
            rest = spec[len(prefix):].rstrip("/")
            if not rest:
                break
            return scheme + rest
    raise InvalidInput(f"executor {spec!r}: give dask://HOST:PORT (or 'local')",
                       field="executor")


@contextlib.contextmanager
def map_dask_errors(address: str) -> Iterator[None]:
    """Cluster errors at the edge: unreachable or timed out -> ExecutorUnavailable."""
    try:
        yield
    except (TimeoutError, OSError) as exc:
        raise ExecutorUnavailable(f"Dask scheduler {address} unreachable: {exc}") from exc


class DaskExecutor(Executor):
    """Submits one task per run to a Dask scheduler; the runs outlive this client."""

    def __init__(self, address: str, db: str, store=None, *, connect_timeout: float = 10.0):
        self.address = scheduler_address(address)
        # what a task may carry about the store: never its password (module docstring)
        self.store_name = display_url(db)
        self.public_db = db if not holds_secret(db) else None
        self.store = store  # AsyncStore: runs that cannot be handed over are marked lost
        self.connect_timeout = connect_timeout
        self._client = None
        self._lock = asyncio.Lock()
        self._watchers: set[asyncio.Task] = set()

    async def _connect(self):
        from distributed import Client

        async with self._lock:
            if self._client is None or self._client.status not in ("running", "connecting"):
                with map_dask_errors(self.address):
                    self._client = await Client(self.address, asynchronous=True,
                                                timeout=self.connect_timeout,
                                                name="hermes-cron")
            return self._client

    async def warm_up(self) -> None:
        try:
            await self._connect()
        except ExecutorUnavailable as exc:
            log.warning("hermes-cron: %s; runs will be marked lost until it is back", exc)

    async def start(self, run: Run) -> None:
        await self.start_many([run])

    async def start_many(self, runs: list[Run]) -> None:
        if not runs:
            return
        from distributed import fire_and_forget

        try:
            client = await self._connect()
        except ExecutorUnavailable as exc:
            for run in runs:
                await self._lost(run.id, str(exc))
            raise
        for run in runs:
            future = client.submit(run_on_worker, run.id, self.store_name, self.public_db,
                                   key=f"hermes-cron-{run.id}", pure=False, retries=0)
            fire_and_forget(future)  # the scheduler keeps it if this ticker goes away
            task = asyncio.ensure_future(self._watch(run.id, future))
            self._watchers.add(task)
            task.add_done_callback(self._watchers.discard)

    async def _watch(self, run_id: str, future) -> None:
        """A task that fails before its supervisor took the run leaves it lost at once
        (worker without hermes-cron, store unreachable from the worker, ...)."""
        try:
            await future
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._lost(run_id, f"its Dask task failed: {type(exc).__name__}: {exc}")

    async def _lost(self, run_id: str, reason: str) -> None:
        if self.store is None:
            return
        try:
            run = await self.store.get_run(run_id)
            if run.status in ACTIVE_STATUSES and run.pid is None:
                if await self.store.mark_lost(run_id, reason, None):
                    log.warning("hermes-cron: run %s lost: %s", run_id, reason)
        except Exception:
            log.exception("hermes-cron: could not mark run %s lost", run_id)

    async def close(self) -> None:
        """Stop submitting; tasks on the cluster and their supervisors go on."""
        for task in list(self._watchers):
            task.cancel()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


# -- on the worker ----------------------------------------------------------------------

def holds_secret(db: str) -> bool:
    """Whether the store URL *db* carries a password."""
    from hermes_cron_ext.store import is_postgres

    if not is_postgres(db):
        return False
    import psycopg

    try:
        info = psycopg.conninfo.conninfo_to_dict(db)
    except psycopg.ProgrammingError:
        return True  # unreadable: assume the worst
    return any(info.get(k) for k in ("password", "sslpassword"))


def display_url(db: str) -> str:
    """*db* without its password."""
    if not holds_secret(db):
        return db
    from hermes_cron_ext.store.postgres import redact

    return redact(db)


def _die_with_parent() -> None:
    """Ask the kernel for WORKER_DIED when the worker thread that started us dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(WORKER_DIED), 0, 0, 0)


class StoreNotConfigured(HermesCronError):
    """The worker cannot open the run's store with its own configuration."""

    code = "store_not_configured"


def worker_db(store_name: str, public_db: str | None) -> str:
    """The store URL this worker uses: its own configuration, else the URL sent when it
    holds no secret."""
    from hermes_cron_ext.store import _db_from_jupyter_config

    own = os.environ.get("HERMES_CRON_DB") or _db_from_jupyter_config()
    if own:
        return own
    if public_db:
        return public_db
    raise StoreNotConfigured(
        f"Dask worker {hostname()} has no store configured: set HERMES_CRON_DB in the "
        f"worker's environment to {store_name} with its password (a store's password is "
        f"never sent to a cluster)")


def run_on_worker(run_id: str, store_name: str, public_db: str | None = None) -> int | str:
    """The Dask task of one run: its supervisor, as a child of this worker, to the end.

    *store_name* is the store's URL without its password (for messages); *public_db*
    the URL itself when it holds no secret, else None: the worker's own configuration
    says how to open the store (see the module docstring).

    Returns the supervisor's exit status, or why nothing was started (the run was
    taken already: Dask re-ran the task after its first worker died).
    """
    from hermes_cron_ext.errors import NotFound
    from hermes_cron_ext.store import open_store

    db = worker_db(store_name, public_db)
    store = open_store(db)
    try:
        try:
            run = store.get_run(run_id)
        except NotFound:
            raise StoreNotConfigured(
                f"run {run_id} is not in Dask worker {hostname()}'s store "
                f"{store.display_url}; it belongs to {store_name} (set HERMES_CRON_DB in "
                f"the worker's environment)") from None
        if run.status != "queued" or run.pid is not None:
            return (f"not started: run {run_id} is {run.status}"
                    + (f", taken by pid {run.pid} on {run.host}" if run.pid else ""))
        err_dir = store.logs_dir
        err_path = os.path.join(err_dir, "supervisors.err") if err_dir else os.devnull
        if err_dir:
            os.makedirs(err_dir, exist_ok=True)
        # the store URL goes by the environment, never on a command line
        env = {**os.environ, "HERMES_CRON_PARENT": str(os.getpid()), "HERMES_CRON_DB": db}
        with open(err_path, "ab") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hermes_cron_ext.runtime.executor_dask", run_id],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env,
                start_new_session=True)
        code = proc.wait()
        if code != 0:  # killed or crashed before recording an end: say so now
            run = store.get_run(run_id)
            if run.status in ACTIVE_STATUSES and run.pid in (proc.pid, None):
                store.mark_lost(run_id, f"its supervisor on Dask worker {hostname()} exited "
                                f"with status {code}", run.pid)
        return code
    finally:
        store.close()


class _WorkerStore:
    """The store as the worker's supervisor sees it: once the worker has died, every
    end the supervisor records is ``lost``, with that reason."""

    def __init__(self, store, supervisor: WorkerSupervisor):
        self._store = store
        self._sup = supervisor

    def __getattr__(self, name):
        return getattr(self._store, name)

    def finish_run(self, run_id, status, exit_code=None, reason=None, at=None, metrics=None):
        if self._sup.worker_died and status in ("cancelled", "skipped"):
            status, reason = "lost", "its Dask worker died; the payload was stopped"
        return self._store.finish_run(run_id, status, exit_code, reason, at, metrics)


class WorkerSupervisor(Supervisor):
    """The local supervisor, plus: when the worker dies, stop the payload, record lost."""

    def __init__(self, store, run_id: str, parent: int | None = None, **kwargs):
        self.worker_died = False
        super().__init__(_WorkerStore(store, self), run_id, **kwargs)
        self.parent = parent

    def _on_worker_death(self, signum=None, frame=None) -> None:
        self.worker_died = True
        self._on_signal(signum, frame)  # as a cancel: TERM the group, KILL after the grace

    def run(self) -> int:
        signal.signal(WORKER_DIED, self._on_worker_death)
        if self.parent is not None:
            _die_with_parent()
            if os.getppid() != self.parent:
                self._on_worker_death()  # it died before the death signal was armed
        return super().run()


def supervise(db: str, run_id: str) -> int:
    from hermes_cron_ext.store import open_store

    parent = os.environ.get("HERMES_CRON_PARENT")
    store = open_store(db)
    try:
        return WorkerSupervisor(store, run_id, int(parent) if parent else None).run()
    finally:
        store.close()


if __name__ == "__main__":
    if len(sys.argv) != 2 or not os.environ.get("HERMES_CRON_DB"):
        print("usage: HERMES_CRON_DB=URL python -m hermes_cron_ext.runtime.executor_dask RUN_ID",
              file=sys.stderr)
        sys.exit(2)
    sys.exit(supervise(os.environ["HERMES_CRON_DB"], sys.argv[1]))
