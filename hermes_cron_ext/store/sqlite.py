"""The embedded store: one SQLite file in WAL mode, plus one output log per run beside it.

The logic is :class:`~hermes_cron_ext.store.sql.SQLStore`'s; this module gives it a
connection per thread and write transactions that take the database lock up front
(``BEGIN IMMEDIATE``), so any number of tickers and supervisors in any number of
processes agree without row locks. Output logs are files under ``logs/`` beside
the database (``output.py``).
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from hermes_cron_ext.errors import StoreError
from hermes_cron_ext.store import output
from hermes_cron_ext.store.sql import (  # noqa: F401  (re-exported: the names this module has always had)
    LIST_COLUMNS,
    MIGRATIONS,
    MISFIRE_GRACE,
    MISSED_CAP,
    PAYLOAD_KEYS,
    RUN_COLUMNS,
    RUN_FIELDS,
    SCHEMA_VERSION,
    SQLStore,
    new_id,
)


class SQLiteStore(SQLStore):
    _integrity_errors = (sqlite3.IntegrityError,)
    _missing_table_errors = (sqlite3.OperationalError,)
    path: str  # the file, always
    logs_dir: str

    def __init__(self, path: str, *, clock=time.time):
        self.path = os.path.abspath(os.path.expanduser(path))
        self.logs_dir = os.path.join(os.path.dirname(self.path), "logs")
        try:
            os.makedirs(self.logs_dir, mode=0o700, exist_ok=True)
            # created 0600 before SQLite opens it: its -wal and -shm files take the mode
            if not os.path.exists(self.path):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError as exc:
            raise StoreError(self._unwritable(exc.strerror or str(exc))) from exc
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._serials = itertools.count(1)
        try:
            super().__init__(self.path, clock=clock)
        except sqlite3.DatabaseError as exc:  # corrupt, not SQLite, unreadable, disk full
            self.close()
            folder = os.path.dirname(self.path)
            if not os.access(folder, os.W_OK) or not os.access(self.path, os.W_OK):
                raise StoreError(self._unwritable(str(exc))) from exc
            raise StoreError(f"store {self.path} is not a usable database: {exc} "
                             f"(check it with: hermes-cron --db {self.path} doctor)") from exc

    def _unwritable(self, why: str) -> str:
        folder = os.path.dirname(self.path)
        return (f"store {self.path} cannot be written ({why}): its folder {folder} must be "
                "writable (SQLite keeps its -wal and -shm files there, and runs' logs go "
                "to logs/); nothing in it was changed")

    def quick_check(self) -> list[str]:
        """SQLite's ``PRAGMA quick_check``: ``["ok"]`` or the problems it found."""
        return [row[0] for row in self.db.execute("PRAGMA quick_check").fetchall()]

    # -- plumbing -------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        """One connection per thread: sqlite3 connections must not cross threads."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # check_same_thread=False only so that close() can close every thread's
            # connection; each is still used by its own thread alone
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=OFF")
            self._local.conn = conn
            self._local.serial = next(self._serials)
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def change_token(self) -> tuple[int, int]:
        """A cheap change detector beyond the contract (as PostgreSQL has ``listen``): a
        value that differs from one this thread got earlier when any other connection, in
        this process or another, has committed since (SQLite's ``PRAGMA data_version``: it
        reads the WAL index in shared memory, not the tables). This thread's own commits
        do not change it. Values from different threads never compare equal, so comparing
        two tokens errs only towards "changed"."""
        db = self.db
        return self._local.serial, db.execute("PRAGMA data_version").fetchone()[0]

    @contextmanager
    def _transaction(self, durable: bool) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the database lock up front (no upgrade deadlocks)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")

    def close(self) -> None:
        """Close every thread's connection (threads that go on open a new one)."""
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    # -- output: files beside the database; these calls do file I/O, not SQL ----------
    def log_path(self, run_id: str) -> str:
        return os.path.join(self.logs_dir, f"{run_id}.log")

    def _forget_output(self, run_ids: list[str]) -> None:
        for run_id in run_ids:
            base = self.log_path(run_id)
            for suffix in ("", ".idx", ".ipynb"):
                try:
                    os.unlink(base + suffix)
                except FileNotFoundError:
                    pass

    _remove_logs = _forget_output

    def output_writer(self, run_id: str, max_bytes: int | None = None) -> output.OutputWriter:
        return output.OutputWriter(self.log_path(run_id), *output.cap(max_bytes))

    def read_output(self, run_id: str, offset: int = 0, limit: int | None = None) -> bytes:
        return output.read(self.log_path(run_id), offset, limit)

    def output_segments(self, run_id: str, offset: int = 0, limit: int | None = None
                        ) -> list[tuple[int, str, bytes]]:
        return output.segments(self.log_path(run_id), offset, limit)

    def output_size(self, run_id: str) -> int:
        return output.size(self.log_path(run_id))

    def artifact_path(self, run_id: str) -> str:
        return self.log_path(run_id) + ".ipynb"

    def import_output(self, run_id: str, segments: list[tuple[int, str, bytes]]) -> int:
        """Write a copied log as it was: same bytes, same offsets, same stream switches."""
        path = self.log_path(run_id)
        size = output.size(path)
        writer = output.OutputWriter(path, max_bytes=1 << 62, tail_bytes=0)
        try:
            for offset, stream, data in segments:
                if offset != size:
                    raise ValueError(f"output of {run_id} is not contiguous at {offset}")
                writer._append(output.STREAMS.get(stream, 1), data)
                size += len(data)
        finally:
            writer.close()
        self.index_output(run_id, writer.index_pending(True))  # searchable here too
        return size

    def import_artifact(self, run_id: str, data: bytes) -> None:
        path = self.artifact_path(run_id)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(data)
