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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from hermes_cron_ext.errors import HermesCronError, InvalidInput, StoreError
from hermes_cron_ext.store.base import INTERFACES, Store
from hermes_cron_ext.store.sqlite import SCHEMA_VERSION, SQLiteStore

T = TypeVar("T")

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
    """Every store method, awaited: each call runs on one of the store's own threads.

    No database call ever runs on the caller's event loop. Each thread has its own
    connection (SQLite in WAL mode and PostgreSQL both read concurrently), so one slow
    call (a statistics query over a million runs) does not hold up the others.
    ``lane()`` gives a caller that must never wait behind API traffic (the in-server
    ticker) threads of its own on the same store.

    Its awaitable methods are not written out one by one: every public method of the
    store's interfaces (``base.INTERFACES``) is mirrored below (:func:`_awaited`), with
    the sync method's name, signature and docstring, except those in
    :data:`NOT_AWAITED`. A method added to an interface is awaitable at once; ``sync``
    is the store itself.
    """

    def __init__(self, store: Store, threads: int = 1, *, owner: bool = True):
        self.sync = store
        self._owner = owner
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hermes-store")

    def lane(self, threads: int = 1) -> AsyncStore:
        """The same store behind threads of its own; closing it leaves the store open."""
        return AsyncStore(self.sync, threads, owner=False)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on a store thread (helpers that use the sync store)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def aclose(self) -> None:
        if self._owner:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._pool, self.sync.close)
        self._pool.shutdown(wait=False)

    if TYPE_CHECKING:
        # The mirrored methods are set on the class at import (below), so a type checker
        # cannot list them: to it, they are awaitables of Any.
        def __getattr__(self, name: str) -> Callable[..., Any]: ...


#: Interface methods ``AsyncStore`` does not mirror, and why.
NOT_AWAITED = {
    "output_writer": "its writer is used on the supervisor's own thread, call by call",
    "acting": "it says who acts on the calling thread: a context around sync calls",
}


def _awaited(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """``AsyncStore.<name>``: the store's *name*, run on a store thread."""

    @functools.wraps(method)
    async def call(self: AsyncStore, *args: Any, **kwargs: Any) -> Any:
        return await self.run(getattr(self.sync, name), *args, **kwargs)

    call.__qualname__ = f"AsyncStore.{name}"
    call.__dict__.pop("__isabstractmethod__", None)  # copied by wraps; not abstract here
    return call


def _mirror_interfaces() -> None:
    for interface in INTERFACES:
        for name, method in vars(interface).items():
            if name.startswith("_") or not callable(method) or name in NOT_AWAITED:
                continue
            if name in vars(AsyncStore):
                raise TypeError(f"AsyncStore.{name} would hide the store's {name}")
            setattr(AsyncStore, name, _awaited(name, method))


_mirror_interfaces()
