"""The scale-out store: PostgreSQL through psycopg 3 (``pip install hermes-cron-ext[postgres]``).

Selected by a ``postgresql://`` URL (``--db``, ``HERMES_CRON_DB``, ``c.HermesCron.db``).
The logic is :class:`~hermes_cron_ext.store.sql.SQLStore`'s; what is particular here:

- **Connections**: one per thread, in autocommit mode; a write is an explicit
  transaction. A broken connection is replaced on the next call. Supervisors forked
  by a fork server share one instead: the fork server's relay (``relay.py``) makes their
  calls (start checks first, a burst's in one query); one with no relay, or whose
  relay is gone, connects itself.
- **Claims**: ``SELECT ... FOR UPDATE SKIP LOCKED`` over the due jobs, so tickers on
  many hosts claim disjoint sets without waiting, plus the compare-and-set of
  ``next_run_at`` and the unique slot index. Rows a write decides on are read
  ``FOR UPDATE``.
- **Events in commit order**: a transaction appends its events last, under
  ``pg_advisory_xact_lock``, so ``seq`` order is commit order and a reader that
  follows ``seq > cursor`` never skips an event that commits late. The same
  transaction sends ``NOTIFY hermes_cron`` (delivered on commit).
- **LISTEN**: :meth:`PostgresStore.listen` runs one background thread per store that
  LISTENs and calls back at once: tickers wake (``Ticker.wake``), the server's
  event bus and log watcher wake their streams, on every host.
- **Output in the database**: ``run_output(run_id, pos, stream, data)`` chunks, capped
  as :class:`~hermes_cron_ext.store.output.OutputWriter` caps files (head, then the tail
  when the run ends, with a "bytes cut" line); each chunk NOTIFYs. A notebook run's
  executed ``.ipynb`` is written to a local spool file (``artifact_path``) by the
  payload and copied into ``run_artifacts`` when the run's output is closed;
  :meth:`read_artifact` reads it from any host.
- **Durability**: sessions run with ``synchronous_commit = off``, so no lock is held
  while the WAL is flushed; every write that decides (claims, finishes, job changes)
  then waits, outside its locks, until the WAL holding it is on disk (a tiny commit
  under the server's own ``synchronous_commit``). Heartbeats, output chunks and run
  starts, which later writes repair, do not wait.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import random
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache

try:
    import psycopg
    from psycopg import errors as pg_errors
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError("the PostgreSQL store needs psycopg 3: "
                      "pip install 'hermes-cron-ext[postgres]'") from exc

from hermes_cron_ext.errors import StoreError
from hermes_cron_ext.store import output
from hermes_cron_ext.store.sql import _SHARES_V9, SQLStore
from hermes_cron_ext.store.views import PG_MIGRATION_14

log = logging.getLogger("hermes_cron")

#: The NOTIFY channel: payloads ``e SEQ TYPE,TYPE...`` (events) and ``o RUN_ID`` (output).
CHANNEL = "hermes_cron"
#: ``pg_advisory_xact_lock`` keys (any 64-bit numbers private to this schema).
EVENTS_LOCK = 0x4865726D65734576  # "HermesEv"
MIGRATE_LOCK = 0x4865726D65734D69  # "HermesMi"
#: PostgreSQL-only tables of schema version 1: output chunks and notebook artifacts.
PG_MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE run_output (
            run_id TEXT COLLATE "C" NOT NULL,
            pos BIGINT NOT NULL,
            stream SMALLINT NOT NULL,
            data BYTEA NOT NULL,
            PRIMARY KEY (run_id, pos))""",
        """CREATE TABLE run_artifacts (
            run_id TEXT COLLATE "C" PRIMARY KEY,
            data BYTEA NOT NULL)""",
    ],
}
#: Shared migrations written another way here: SQLite makes its jobs table again to
#: drop a NOT NULL (7) or change what is unique (9), PostgreSQL alters the table.
PG_REPLACED: dict[int, list[str]] = {
    7: ["ALTER TABLE jobs ALTER COLUMN schedule DROP NOT NULL"],
    9: ["""ALTER TABLE jobs ADD COLUMN owner TEXT COLLATE "C" NOT NULL DEFAULT ''""",
        "ALTER TABLE jobs DROP CONSTRAINT jobs_name_key",
        "ALTER TABLE jobs DROP CONSTRAINT jobs_idempotency_key_key",
        "ALTER TABLE jobs ADD CONSTRAINT jobs_owner_name_key UNIQUE (owner, name)",
        "ALTER TABLE jobs ADD CONSTRAINT jobs_owner_idempotency_key_key "
        "UNIQUE (owner, idempotency_key)"],
    14: PG_MIGRATION_14,  # a tsvector column and GIN index where SQLite has FTS5
}
_END = 1 << 62


@lru_cache(maxsize=1024)
def _translate(sql: str) -> str:
    """``?`` placeholders to psycopg's ``%s`` (and literal ``%`` escaped)."""
    return sql.replace("%", "%%").replace("?", "%s")


class Row(tuple):
    """A row readable by position and by column name, like ``sqlite3.Row``."""

    _names: dict[str, int]

    def __new__(cls, values, names: dict[str, int]):
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key):
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor):
    names = {c.name: i for i, c in enumerate(cursor.description or ())}
    return lambda values: Row(values, names)


class HostSlots:
    """At most *n* statements or transactions at once against one server from this host.

    Many processes of one host may each hold a connection (servers, CLIs, supervisors
    with no relay or whose relay is gone); if a thousand of them write at once, a few
    cores hold a thousand busy server processes whose locks convoy (measured: a
    1,000-run burst took minutes). Each write transaction
    (and each new connection) first takes one of *n* host-wide slots (``flock`` on
    *n* files in ``/dev/shm``, one descriptor per thread; the kernel frees a slot
    whose holder dies), so the burst queues, asleep, on the host instead. Reads take
    no slot: they lock nothing. A thread holding a slot never waits for another, and
    every server lock a process holds is held inside a transaction that has a slot,
    so the slots cannot deadlock with the server's locks.
    """

    def __init__(self, key: str, n: int):
        self.n = n
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
        self.paths = [os.path.join(base, f"hermes-cron-{os.getuid()}-{key}.slot{i}")
                      for i in range(n)]
        self._local = threading.local()

    def _fds(self) -> list[int]:
        fds = getattr(self._local, "fds", None)
        if fds is None or self._local.pid != os.getpid():
            fds = [os.open(p, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                   for p in self.paths]
            self._local.fds, self._local.pid = fds, os.getpid()
        return fds

    @contextmanager
    def hold(self) -> Iterator[None]:
        if self.n <= 0 or getattr(self._local, "depth", 0) != 0:
            self._local.depth = getattr(self._local, "depth", 0) + 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        fds = self._fds()
        order = random.sample(range(self.n), self.n)
        slot = None
        for i in order:
            try:
                fcntl.flock(fds[i], fcntl.LOCK_EX | fcntl.LOCK_NB)
                slot = i
                break
            except BlockingIOError:
                continue
        if slot is None:
            slot = order[0]
            fcntl.flock(fds[slot], fcntl.LOCK_EX)
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0
            fcntl.flock(fds[slot], fcntl.LOCK_UN)

    def close(self) -> None:
        for fd in getattr(self._local, "fds", None) or ():
            os.close(fd)
        self._local.fds = None


class Connection:
    """A psycopg connection that speaks the ``?`` placeholders of ``sql.py``."""

    def __init__(self, conn: psycopg.Connection):
        self.raw = conn

    def execute(self, sql: str, args=()):
        return self.raw.execute(_translate(sql), args)

    def executemany(self, sql: str, rows) -> None:
        with self.raw.cursor() as cur:
            cur.executemany(_translate(sql), rows)

    @property
    def broken(self) -> bool:
        return self.raw.closed or self.raw.broken

    def close(self) -> None:
        self.raw.close()


def _ddl(stmt: str) -> str:
    """The shared schema (SQLite's words) in PostgreSQL's: 64-bit integers and instants,
    an identity ``seq``, byte-order (``C``) collation so keyset pages sort as SQLite's."""
    stmt = stmt.replace("INTEGER PRIMARY KEY AUTOINCREMENT",
                        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
    stmt = stmt.replace(" REAL", " DOUBLE PRECISION").replace(" INTEGER", " BIGINT")
    return stmt.replace(" TEXT", ' TEXT COLLATE "C"')


def redact(url: str) -> str:
    """The URL without its password (for messages and ``status``)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return url
    if "password" not in info:
        return url
    info["password"] = "***"
    return psycopg.conninfo.make_conninfo("", **info)


class PostgresStore(SQLStore):
    _lock = " FOR UPDATE"
    _lock_skip = " FOR UPDATE SKIP LOCKED"
    _like = "ILIKE"
    _text_search = "tsvector"
    _integrity_errors = (pg_errors.UniqueViolation,)
    _missing_table_errors = (pg_errors.UndefinedTable,)
    #: claim lead per due run (ticker.py): measured, 1,000 supervisors forked and attached
    #: through the relay in ~15 s on 2 cores; the rest is margin for a busy host
    lead_per_run = 0.025

    logs_dir: str  # this host's spool of output logs, always

    def __init__(self, url: str, *, clock=time.time, logs_dir: str | None = None):
        self._conns: weakref.WeakSet = weakref.WeakSet()
        self._conns_lock = threading.Lock()
        self._commit_level = "on"
        #: set by the relay: durable writes leave ``flush_owed`` for one ``wait_durable``
        self.group_flushes = False
        self.flush_owed = False
        self._listeners: list[Callable[[str, str], None]] = []
        self._listen_thread: threading.Thread | None = None
        self._listen_stop = threading.Event()
        self._listen_lock = threading.Lock()
        self.logs_dir = logs_dir or _spool_dir(url)
        os.makedirs(self.logs_dir, mode=0o700, exist_ok=True)
        digest = hashlib.sha1(redact(url).encode()).hexdigest()[:12]
        self.slots = HostSlots(digest, int(os.environ.get("HERMES_CRON_PG_SLOTS")
                                           or max(8, 4 * (os.cpu_count() or 1))))
        try:
            super().__init__(url, clock=clock)
        except psycopg.OperationalError as exc:
            raise StoreError(f"cannot reach the PostgreSQL store {redact(url)}: "
                             f"{str(exc).strip()}") from exc

    def _payload_field(self, key: str) -> str:
        return f"(payload::json ->> '{key}')"

    @property
    def display_url(self) -> str:
        return redact(self.url)

    # -- connections ------------------------------------------------------------
    def _connect(self) -> Connection:
        with self.slots.hold():  # a new connection is a new server process: costly too
            raw = psycopg.connect(self.url, autocommit=True, row_factory=_row_factory,
                                  application_name="hermes-cron")
            # the server's setting (for the durable waits), then none for this session
            cur = raw.execute("SHOW synchronous_commit; SET synchronous_commit = off")
            row = cur.fetchone()
            assert row is not None  # SHOW answers one row
            level = row[0]
            if level.replace("_", "").isalpha():
                self._commit_level = level
        conn = Connection(raw)
        with self._conns_lock:
            self._conns.add(conn)
        return conn

    @property
    def db(self) -> Connection:
        """This thread's connection (a broken one is replaced)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.broken:
            conn = self._local.conn = self._connect()
        return conn

    @contextmanager
    def _transaction(self, durable: bool) -> Iterator[Connection]:
        """A write transaction. It commits without waiting for the disk, so the events
        lock (held to the commit) is never held across a WAL flush; a *durable* one then
        waits for the flush outside every lock (a tiny commit that must reach the disk,
        and with it the WAL before it), so flushes of concurrent writers are grouped."""
        db = self.db
        with self.slots.hold():
            with db.raw.transaction():
                yield db
            if durable and self._commit_level != "off":
                if self.group_flushes:  # the relay: one wait for a whole round of writes
                    self.flush_owed = True
                else:
                    self.wait_durable()

    def wait_durable(self) -> None:
        """Wait until everything this session committed is on disk (one round trip)."""
        self.flush_owed = False
        if self._commit_level != "off":
            self.db.raw.execute(f"BEGIN; SET LOCAL synchronous_commit = {self._commit_level}; "
                                "SELECT pg_current_xact_id(); COMMIT")

    def _ddl(self, stmt: str) -> str:
        return _ddl(stmt)

    def _migrations(self) -> dict[int, list[str]]:
        out = super()._migrations() | PG_REPLACED
        out[9] = out[9] + [_ddl(stmt) for stmt in _SHARES_V9]  # the new table as SQLite's
        for version, stmts in PG_MIGRATIONS.items():
            out[version] = out[version] + stmts
        return out

    def _migration_lock(self, db) -> None:
        db.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATE_LOCK,))

    def _flush_events(self, db, rows: list[tuple]) -> None:
        """Append under the events lock, as the transaction's last writes, then NOTIFY.

        Holding the lock from the first ``seq`` to the commit means a lower ``seq``
        can never commit after a higher one is visible; the lock is taken last, so a
        holder waits for no row lock and cannot deadlock with the writers behind it.
        """
        types = ",".join(sorted({row[1] for row in rows}))[:7000]
        with db.raw.pipeline():  # lock, append, NOTIFY: one round trip
            db.execute("SELECT pg_advisory_xact_lock(?)", (EVENTS_LOCK,))
            for i in range(0, len(rows), 1000):
                chunk = rows[i:i + 1000]
                values = ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk))
                db.execute(f"INSERT INTO events (at, type, job_id, run_id, data) VALUES {values}",
                           [v for row in chunk for v in row])
            db.execute("SELECT pg_notify(?, 'e ' || currval(pg_get_serial_sequence('events', "
                       "'seq')) || ' ' || ?)", (CHANNEL, types))

    def _audit_lock(self, db) -> None:
        """Audit records are chained in commit order: appended under the events' lock
        (taken again if the transaction raised no event; it is held to the commit)."""
        db.execute("SELECT pg_advisory_xact_lock(?)", (EVENTS_LOCK,))

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        db = self.db
        with self.slots.hold(), db.raw.transaction():
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield db

    def after_import(self, db) -> None:
        """Copied events, deliveries and audit records kept their numbers: new ones
        continue after."""
        db.execute("SELECT setval(pg_get_serial_sequence('events', 'seq'), "
                   "(SELECT COALESCE(MAX(seq), 0) + 1 FROM events), false)")
        db.execute("SELECT setval(pg_get_serial_sequence('deliveries', 'id'), "
                   "(SELECT COALESCE(MAX(id), 0) + 1 FROM deliveries), false)")
        db.execute("SELECT setval(pg_get_serial_sequence('audit', 'seq'), "
                   "(SELECT COALESCE(MAX(seq), 0) + 1 FROM audit), false)")

    def close(self) -> None:
        self._listen_stop.set()
        with self._conns_lock:
            conns = list(self._conns)
            self._conns = weakref.WeakSet()
        for conn in conns:
            try:
                conn.close()
            except Exception:
                pass
        self._local.conn = None
        self.slots.close()
        thread = self._listen_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)
        self._listen_thread = None

    # -- LISTEN -------------------------------------------------------------------
    def listen(self, callback: Callable[[str, str], None]) -> Callable[[], None]:
        """Call ``callback(kind, arg)`` from a background thread on every NOTIFY:
        ``("event", "SEQ TYPES")`` when events committed, ``("output", RUN_ID)`` when a
        run's output grew, ``("resync", "")`` after (re)connecting, when notifications
        may have been missed. Returns a function that stops these calls."""
        with self._listen_lock:
            self._listeners.append(callback)
            if self._listen_thread is None or not self._listen_thread.is_alive():
                self._listen_stop.clear()
                self._listen_thread = threading.Thread(
                    target=self._listen_loop, name="hermes-cron-listen", daemon=True)
                self._listen_thread.start()

        def stop() -> None:
            with self._listen_lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)
        return stop

    def _dispatch(self, kind: str, arg: str) -> None:
        for fn in list(self._listeners):
            try:
                fn(kind, arg)
            except Exception:
                log.exception("hermes-cron: a LISTEN callback failed")

    def _listen_loop(self) -> None:
        backoff = 0.2
        while not self._listen_stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True,
                                     application_name="hermes-cron-listen") as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    backoff = 0.2
                    self._dispatch("resync", "")
                    while not self._listen_stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            kind, _, arg = note.payload.partition(" ")
                            self._dispatch("event" if kind == "e" else "output", arg)
            except psycopg.Error as exc:
                if self._listen_stop.is_set():
                    return
                log.warning("hermes-cron: LISTEN connection lost (%s); reconnecting", exc)
                self._listen_stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    # -- output: chunks in the database ------------------------------------------------
    def log_path(self, run_id: str) -> str:
        """The local spool file name of the run (its artifact is this + ``.ipynb``)."""
        return os.path.join(self.logs_dir, f"{run_id}.log")

    def artifact_path(self, run_id: str) -> str:
        os.makedirs(self.logs_dir, mode=0o700, exist_ok=True)
        return self.log_path(run_id) + ".ipynb"

    def output_writer(self, run_id: str, max_bytes: int | None = None) -> PGOutputWriter:
        return PGOutputWriter(self, run_id, *output.cap(max_bytes))

    def output_size(self, run_id: str) -> int:
        row = self.db.execute("SELECT pos + octet_length(data) FROM run_output WHERE run_id = ? "
                              "ORDER BY pos DESC LIMIT 1", (run_id,)).fetchone()
        return row[0] if row else 0

    def _chunks(self, run_id: str, offset: int, end: int) -> list[tuple[int, int, bytes]]:
        """The chunks that overlap ``[offset, end)``, in order: ``(pos, stream, data)``."""
        rows = self.db.execute(
            "SELECT pos, stream, data FROM run_output WHERE run_id = ? AND pos < ? AND pos >= "
            "COALESCE((SELECT MAX(pos) FROM run_output WHERE run_id = ? AND pos <= ?), 0) "
            "ORDER BY pos", (run_id, end, run_id, offset)).fetchall()
        out = []
        for pos, stream, data in rows:
            data = bytes(data)
            lo, hi = max(offset, pos), min(end, pos + len(data))
            if hi > lo:
                out.append((lo, stream, data[lo - pos:hi - pos]))
        return out

    def read_output(self, run_id: str, offset: int = 0, limit: int | None = None) -> bytes:
        offset = max(0, offset)
        end = _END if limit is None else offset + limit
        return b"".join(data for _, _, data in self._chunks(run_id, offset, end))

    def output_segments(self, run_id: str, offset: int = 0, limit: int | None = None
                        ) -> list[tuple[int, str, bytes]]:
        """Chunks from *offset*, adjacent ones of one stream joined: ``[(offset, stream,
        bytes)]``, as ``output.segments`` reads them from a file."""
        offset = max(0, offset)
        end = _END if limit is None else offset + limit
        out: list[list] = []
        for pos, stream, data in self._chunks(run_id, offset, end):
            name = output.STREAM_NAMES.get(stream, "stdout")
            if out and out[-1][1] == name and out[-1][0] + len(out[-1][2]) == pos:
                out[-1][2] += data
            else:
                out.append([pos, name, bytearray(data)])
        return [(pos, name, bytes(data)) for pos, name, data in out]

    def _append_chunk(self, run_id: str, pos: int, stream: int, data: bytes) -> None:
        """One chunk and its NOTIFY: one statement, committed without waiting for the disk."""
        with self.slots.hold():
            self.db.execute(
                "WITH c AS (INSERT INTO run_output (run_id, pos, stream, data) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING run_id) "
                "SELECT pg_notify(?, 'o ' || run_id) FROM c",
                (run_id, pos, stream, data, CHANNEL))

    def _save_artifact(self, run_id: str) -> None:
        try:
            with open(self.artifact_path(run_id), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        self.import_artifact(run_id, data)

    def import_artifact(self, run_id: str, data: bytes) -> None:
        with self._write() as db:
            db.execute("INSERT INTO run_artifacts (run_id, data) VALUES (?, ?) "
                       "ON CONFLICT (run_id) DO UPDATE SET data = excluded.data", (run_id, data))

    def read_artifact(self, run_id: str) -> bytes | None:
        row = self.db.execute("SELECT data FROM run_artifacts WHERE run_id = ?",
                              (run_id,)).fetchone()
        if row is not None:
            return bytes(row[0])
        return super().read_artifact(run_id)

    def import_output(self, run_id: str, segments: list[tuple[int, str, bytes]]) -> int:
        size = self.output_size(run_id)
        rows = []
        for offset, stream, data in segments:
            if offset != size:
                raise ValueError(f"output of {run_id} is not contiguous at {offset}")
            rows.append((run_id, offset, output.STREAMS.get(stream, 1), data))
            size += len(data)
        with self._write() as db:
            db.executemany("INSERT INTO run_output (run_id, pos, stream, data) "
                           "VALUES (?, ?, ?, ?)", rows)
        if rows:  # searchable here too
            data = b"".join(r[3] for r in rows)
            self.index_output(run_id, output.pieces(data, rows[0][1], True)[0])
        return size

    def _forget_output(self, run_ids: list[str]) -> None:
        if not run_ids:
            return
        with self._write(durable=False) as db:
            db.execute("DELETE FROM run_output WHERE run_id = ANY(?)", (list(run_ids),))
            db.execute("DELETE FROM run_artifacts WHERE run_id = ANY(?)", (list(run_ids),))
        for run_id in run_ids:
            try:
                os.unlink(self.artifact_path(run_id))
            except FileNotFoundError:
                pass


class PGOutputWriter(output.OutputWriter):
    """The supervisor's writer when output lives in PostgreSQL: one row per write.

    The capping is :class:`output.OutputWriter`'s (its ``write`` and ``system``); only
    where bytes go differs. A write the database refuses (connection lost) is kept and
    sent with the next one, so a short outage costs latency, not output.
    """

    #: never set: a refused write is kept and sent again (see above), not a failure
    error: OSError | None = None

    def __init__(self, store: PostgresStore, run_id: str,
                 max_bytes: int = output.DEFAULT_MAX_BYTES,
                 tail_bytes: int = output.DEFAULT_TAIL_BYTES):
        self.store = store
        self.run_id = run_id
        self.path = store.log_path(run_id)
        self.size = store.output_size(run_id)
        self.head_limit = max(0, max_bytes - tail_bytes)
        self.tail_bytes = tail_bytes
        self._stream: int | None = None
        self._tail: list[tuple[int, bytes]] = []
        self._tail_len = 0
        self.cut = 0
        self.cutting = False
        self._unsent: list[tuple[int, int, bytes]] = []
        self._closed = False
        self._pending = bytearray()  # for index_pending, as OutputWriter's
        self._pending_at = self.size

    def _append(self, stream: int, data: bytes) -> None:
        if not data:  # an empty chunk would take the position of the next one (ON CONFLICT)
            return
        self._unsent.append((self.size, stream, bytes(data)))
        self._collect(self.size, bytes(data))
        self.size += len(data)
        self._send()

    def _send(self) -> None:
        while self._unsent:
            pos, stream, data = self._unsent[0]
            try:
                self.store._append_chunk(self.run_id, pos, stream, data)
            except psycopg.OperationalError as exc:
                log.warning("hermes-cron: output of %s not stored yet: %s", self.run_id, exc)
                return
            self._unsent.pop(0)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.cutting:  # as OutputWriter.close: the tail, after a line saying what was cut
            extra = self._tail_len - self.tail_bytes
            if extra > 0:
                code, data = self._tail[0]
                self._tail[0] = (code, data[extra:])
                self.cut += extra
            self._append(output.STREAMS["system"],
                         f"[hermes-cron: {self.cut} bytes cut here]\n".encode())
            for code, data in self._tail:
                self._append(code, data)
            self._tail = []
            self.cutting = False
        self._send()
        if self._unsent:
            log.error("hermes-cron: %d output chunk(s) of %s could not be stored",
                      len(self._unsent), self.run_id)
        self.store._save_artifact(self.run_id)


def _spool_dir(url: str) -> str:
    """A local directory for this store's spool files (notebook artifacts in flight)."""
    try:
        from jupyter_core.paths import jupyter_data_dir

        base = jupyter_data_dir()
    except ImportError:  # pragma: no cover
        base = os.path.expanduser("~/.local/share/jupyter")
    digest = hashlib.sha1(redact(url).encode()).hexdigest()[:12]
    return os.path.join(base, "hermes_cron", f"postgres-{digest}")
