"""Finding and opening the store, and its async face.

Where the store lives (docs/cli.md, "Where the store is"): ``--db`` on the CLI, else
``HERMES_CRON_DB``, else ``c.HermesCron.db`` in the Jupyter config, else
``<jupyter data dir>/hermes_cron/hermes-cron.db``. A ``postgresql://`` URL selects
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hermes_cron_ext.domain.models import Event, Job, Run, Ticker
from hermes_cron_ext.domain.policy import KEEP_FAILURES, KEEP_RUNS, MAX_AGE
from hermes_cron_ext.errors import HermesCronError, InvalidInput, StoreError
from hermes_cron_ext.store.base import Store
from hermes_cron_ext.store.sqlite import SCHEMA_VERSION, SQLiteStore

__all__ = ["AsyncStore", "SQLiteStore", "Store", "default_db", "doctor", "is_postgres",
           "open_store", "preload", "resolve_db"]


def default_db() -> str:
    from jupyter_core.paths import jupyter_data_dir

    return os.path.join(jupyter_data_dir(), "hermes_cron", "hermes-cron.db")


def _db_from_jupyter_config() -> str | None:
    """``c.HermesCron.db`` from the Jupyter server config files, if any sets it."""
    try:
        from jupyter_core.paths import jupyter_config_path
        from traitlets.config.loader import JSONFileConfigLoader, PyFileConfigLoader
    except ImportError:
        return None
    value = None
    for path in reversed(jupyter_config_path()):  # lowest priority first
        for fname, loader in (("jupyter_server_config.json", JSONFileConfigLoader),
                              ("jupyter_server_config.py", PyFileConfigLoader)):
            if os.path.exists(os.path.join(path, fname)):
                try:
                    cfg = loader(fname, path=path).load_config()
                except Exception:
                    continue
                if "HermesCron" in cfg and "db" in cfg.HermesCron:
                    value = cfg.HermesCron.db
    return value


def resolve_db(db: str | None = None) -> str:
    return db or os.environ.get("HERMES_CRON_DB") or _db_from_jupyter_config() or default_db()


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def preload(db: str | None = None) -> None:
    """Import the store module *db* needs (a fork server does, so its forks start warm:
    psycopg alone costs a supervisor ~130 ms of CPU)."""
    if db and is_postgres(db):
        try:
            from hermes_cron_ext.store import postgres  # noqa: F401
        except ImportError:
            pass


def doctor(db: str) -> tuple[bool, list[str]]:
    """Check a store without trusting it: ``(healthy, what to tell the user)``. SQLite's
    file is opened read-only and given ``PRAGMA quick_check``; PostgreSQL is opened."""
    if is_postgres(db):
        try:
            store = open_store(db)
        except HermesCronError as exc:
            return False, [exc.message]
        store.close()
        from hermes_cron_ext.store.postgres import redact

        return True, [f"{redact(db)}: ok (schema {SCHEMA_VERSION})"]
    if db.startswith("sqlite:///"):
        db = db[len("sqlite:///") - 1:]
    path = os.path.abspath(os.path.expanduser(db))
    if not os.path.exists(path):
        return False, [f"{path}: no such store"]
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            found = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return False, [f"{path}: not a usable SQLite database: {exc}"]
    if found == ["ok"]:
        return True, [f"{path}: ok (SQLite quick_check)"]
    return False, [f"{path}: SQLite quick_check found problems:"] + [f"  {p}" for p in found]


def open_store(db: str | None = None, **kwargs: Any) -> Store:
    url = resolve_db(db)
    if is_postgres(url):
        try:
            from hermes_cron_ext.store.postgres import PostgresStore
        except ImportError as exc:
            raise InvalidInput(str(exc), field="db") from exc
        return PostgresStore(url, **kwargs)
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///") - 1:]
    # a folder we make is the owner's alone (it holds job payloads, env values and logs)
    folder = os.path.dirname(os.path.abspath(os.path.expanduser(url)))
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot make the store folder {folder}: "
                         f"{exc.strerror or exc}") from exc
    return SQLiteStore(url, **kwargs)


class AsyncStore:
    """The store's methods the engine awaits, each run on one of the store's own threads.

    No database call ever runs on the caller's event loop. Each thread has its own
    connection (SQLite in WAL mode and PostgreSQL both read concurrently), so one slow
    call (a statistics query over a million runs) does not hold up the others.
    ``lane()`` gives a caller that must never wait behind API traffic (the in-server
    ticker) threads of its own on the same store.
    """

    def __init__(self, store: Store, threads: int = 1, *, owner: bool = True):
        self.sync = store
        self._owner = owner
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hermes-store")

    def lane(self, threads: int = 1) -> AsyncStore:
        """The same store behind threads of its own; closing it leaves the store open."""
        return AsyncStore(self.sync, threads, owner=False)

    async def run(self, fn, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` on a store thread (helpers that use the sync store)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    # -- what the ticker and the host await (anything else goes through ``run``) -------
    async def next_wakeup(self) -> float | None:
        return await self.run(self.sync.next_wakeup)

    async def count_due(self, horizon: float) -> tuple[int, int]:
        return await self.run(self.sync.count_due, horizon)

    async def claim_due(self, horizon: float, now: float, owner: str,
                        cause: str | None = None) -> list[Run]:
        return await self.run(self.sync.claim_due, horizon, now, owner, cause)

    async def fire_reboot_jobs(self, now: float) -> int:
        return await self.run(self.sync.fire_reboot_jobs, now)

    async def create_job(self, fields: dict) -> tuple[Job, bool]:
        return await self.run(self.sync.create_job, fields)

    async def request_run(self, ref: str, trigger: str = "manual",
                          parameters: dict | None = None) -> Run:
        return await self.run(self.sync.request_run, ref, trigger, parameters)

    async def get_run(self, run_id: str) -> Run:
        return await self.run(self.sync.get_run, run_id)

    async def active_runs(self) -> list[Run]:
        return await self.run(self.sync.active_runs)

    async def finish_run(self, run_id: str, status: str, exit_code: int | None = None,
                         reason: str | None = None, at: float | None = None) -> Run:
        return await self.run(self.sync.finish_run, run_id, status, exit_code, reason, at)

    async def mark_lost(self, run_id: str, reason: str, pid: int | None) -> bool:
        return await self.run(self.sync.mark_lost, run_id, reason, pid)

    async def events_since(self, cursor: int, limit: int = 500) -> list[Event]:
        return await self.run(self.sync.events_since, cursor, limit)

    async def last_event_seq(self) -> int:
        return await self.run(self.sync.last_event_seq)

    async def register_ticker(self, kind: str, host: str, pid: int,
                              ticker_id: str | None = None) -> Ticker:
        return await self.run(self.sync.register_ticker, kind, host, pid, ticker_id)

    async def ticker_heartbeat(self, ticker_id: str, at: float, ticked: bool = False) -> None:
        await self.run(self.sync.ticker_heartbeat, ticker_id, at, ticked)

    async def unregister_ticker(self, ticker_id: str) -> None:
        await self.run(self.sync.unregister_ticker, ticker_id)

    async def list_tickers(self) -> list[Ticker]:
        return await self.run(self.sync.list_tickers)

    async def jobs_by_state(self) -> dict[str, int]:
        return await self.run(self.sync.jobs_by_state)

    async def gc(self, now: float, keep_runs: int = KEEP_RUNS,
                 keep_failures: int = KEEP_FAILURES, max_age: float = MAX_AGE) -> dict:
        return await self.run(self.sync.gc, now, keep_runs, keep_failures, max_age)

    async def aclose(self) -> None:
        if self._owner:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._pool, self.sync.close)
        self._pool.shutdown(wait=False)
