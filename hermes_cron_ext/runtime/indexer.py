"""The output index written off the read loops (issue 34).

A supervisor (or the host agent) reads its payloads' pipes in one loop. Writing the
output index there (up to 1 MiB per heartbeat, ~75 ms per MiB on SQLite, longer while
other supervisors hold SQLite's one write lock with their own) left the pipes unread
meanwhile: a line printed reached the log, and so a watcher, up to 130 ms late.

:class:`Indexer` takes the pieces from the loop (``OutputWriter.index_pending``: in
memory, cheap) and writes them from a thread of its own, in short transactions (at most
:data:`GROUP_BYTES` of text each, so nobody holds the write lock long), in the order
they were handed over (so in order per run). What it holds is capped
(:data:`QUEUE_BYTES`): past that a heartbeat hands nothing over and the writer keeps
its pieces for a later one. At a run's end the loop hands over the rest and waits for
it (:meth:`Indexer.finish`, bounded) before the final status, so a finished run is
searchable. Search is a view: a piece that cannot be indexed is complained about
(stderr) and dropped; it never stops or fails a run.

The heartbeats of a running run go the same way (:meth:`Indexer.beat`), ahead of the
index: a heartbeat waits for the write lock as the index does (a second while another
process holds it), and the loop must not. What a heartbeat answers (the run is to be
cancelled) is told at the next one; a cancel's SIGTERM stops the run at once anyway.

The thread's store: SQLite and PostgreSQL stores keep a connection per thread; a
:class:`~hermes_cron_ext.store.relay.RelayClient` (one socket, not for two threads) is
replaced by a client of the thread's own. Before a fork, :meth:`Indexer.paused` keeps
the thread out of the store (no transaction open, no SQLite lock held, across the fork).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

#: text per transaction at most (pieces are at most 8 KiB: a group is whole pieces)
GROUP_BYTES = 64 * 1024
#: text held for writing at most; past it the loop hands nothing over until it drains
QUEUE_BYTES = 16 << 20
#: what one heartbeat hands over at most (cutting it into pieces is the loop's work)
PER_BEAT = 1 << 20
#: how long a run's end waits for its output to be indexed before its final status
FINISH_WAIT = 30.0


def _complain(text: str) -> None:
    try:
        print(f"hermes-cron indexer {os.getpid()}: {text}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _groups(chunks: list[tuple[int, str]], most: int) -> Iterator[tuple[list, int]]:
    """*chunks* cut into runs of whole pieces of at most *most* characters (one piece
    more if it alone is longer): ``(pieces, characters)``."""
    group: list[tuple[int, str]] = []
    size = 0
    for chunk in chunks:
        n = len(chunk[1])
        if group and size + n > most:
            yield group, size
            group, size = [], 0
        group.append(chunk)
        size += n
    if group:
        yield group, size


class Indexer:
    """One per supervisor process (for all its runs, one after another) or per host
    agent (for all the runs it watches at once)."""

    def __init__(self, store, *, group_bytes: int = GROUP_BYTES,
                 queue_bytes: int = QUEUE_BYTES, per_beat: int = PER_BEAT):
        self._source = store
        self.group_bytes, self.queue_bytes, self.per_beat = group_bytes, queue_bytes, per_beat
        self._store = None  # the thread's store (made on its first write)
        self._own_store = False  # made here: closed here
        self._cond = threading.Condition()
        self._work: deque[tuple[str, list[tuple[int, str]], int]] = deque()
        self._queued = 0  # characters in _work and being written
        self._owed: dict[str, int] = {}  # run id -> groups queued or being written
        self._gate = threading.Lock()  # held while the thread uses the store
        self._thread: threading.Thread | None = None
        self._closing = False
        self._failing: set[str] = set()  # runs whose last write failed (told once)
        #: heartbeats not yet written: run id -> ``heartbeat_run``'s arguments after the
        #: id (a newer one replaces an older); written before the index
        self._beats: dict[str, tuple] = {}
        self._beating: str | None = None  # the run whose heartbeat is being written
        self._cancels: set[str] = set()  # runs a heartbeat was told to cancel

    # -- the loop's side ---------------------------------------------------------------
    def hand(self, run_id: str, writer, final: bool = False) -> None:
        """Take what *writer* appended since last time (at a heartbeat: at most
        :attr:`per_beat`, and nothing while the queue is full; *final*: all of it, the
        writer being closed). Never waits for the store."""
        try:
            if final:
                chunks = writer.index_pending(True)
            else:
                with self._cond:
                    room = self.queue_bytes - self._queued
                if room <= 0:
                    return  # the writer keeps its pieces for a later beat
                chunks = writer.index_pending(False, min(self.per_beat, room))
        except Exception as exc:  # noqa: BLE001 - search is a view
            _complain(f"run {run_id}: output not indexed for search: {exc!r}")
            return
        if not chunks:
            return
        with self._cond:
            for group, size in _groups(chunks, self.group_bytes):
                self._work.append((run_id, group, size))
                self._queued += size
                self._owed[run_id] = self._owed.get(run_id, 0) + 1
            self._wake()

    def beat(self, run_id: str, at: float, phase: str | None, progress: float | None,
             output_bytes: int) -> bool:
        """Hand over a heartbeat (``Store.heartbeat_run``'s arguments); never waits for
        the store. True when an earlier heartbeat of *run_id* was answered "cancel"."""
        with self._cond:
            self._beats[run_id] = (at, phase, progress, output_bytes)
            self._wake()
            if run_id in self._cancels:
                self._cancels.discard(run_id)
                return True
        return False

    def _wake(self) -> None:
        """(holding ``_cond``) the thread told there is work, started if need be."""
        if self._thread is None or not self._thread.is_alive():
            self._closing = False
            self._thread = threading.Thread(target=self._serve, daemon=True,
                                            name="hermes-cron-indexer")
            self._thread.start()
        self._cond.notify_all()

    def wait(self, run_id: str, timeout: float) -> bool:
        """Whether everything handed over for *run_id* was written (or given up on)
        within *timeout* seconds (a heartbeat not yet written is dropped: the run's end
        writes its own)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._beats.pop(run_id, None)
            self._cancels.discard(run_id)
            while self._owed.get(run_id) or self._beating == run_id:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def finish(self, run_id: str, writer, timeout: float = FINISH_WAIT) -> bool:
        """A run's end (its writer closed): the rest handed over, and waited for up to
        *timeout* seconds; past that the run goes on to its final status and the thread
        finishes the index meanwhile."""
        self.hand(run_id, writer, final=True)
        if self.wait(run_id, timeout):
            return True
        _complain(f"run {run_id}: its output is still being indexed after {timeout:g} s; "
                  "its final status is recorded meanwhile (search finds the rest later)")
        return False

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The thread kept out of the store meanwhile (around a fork: no transaction
        open, no lock held, no store connection in use)."""
        with self._gate:
            yield

    def close(self, timeout: float = FINISH_WAIT) -> None:
        """Write what is queued (up to *timeout* seconds), then stop the thread."""
        thread = self._thread
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                _complain(f"{self._queued} characters of output not indexed after "
                          f"{timeout:g} s; left")
                return
        self._thread = None
        if self._own_store and self._store is not None:
            try:
                self._store.close()
            except Exception:  # noqa: BLE001
                pass
        self._store = None

    # -- the thread ----------------------------------------------------------------------
    def _target(self):
        """The store the thread writes through: the loop's own, unless that is a relay
        client (one socket: a client of its own then)."""
        if self._store is None:
            relay = sys.modules.get("hermes_cron_ext.store.relay")
            if relay is not None and isinstance(self._source, relay.RelayClient):
                self._store = relay.RelayClient(self._source.url, self._source.path)
                self._own_store = True
            else:
                self._store = self._source
        return self._store

    def _heartbeat(self) -> None:
        """(``_beating`` set) write the heartbeat of that run."""
        run_id = self._beating
        assert run_id is not None
        try:
            with self._cond:
                args = self._beats.pop(run_id, None)
            if args is None:
                return
            with self._gate:
                try:
                    cancel = self._target().heartbeat_run(run_id, *args)
                except Exception as exc:  # noqa: BLE001 - a missed beat stops nothing
                    _complain(f"run {run_id}: heartbeat not recorded: {exc!r}")
                    cancel = False
            if cancel:
                with self._cond:
                    self._cancels.add(run_id)
        finally:
            with self._cond:
                self._beating = None
                self._cond.notify_all()

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._work and not self._beats and not self._closing:
                    self._cond.wait()
                if self._beats:
                    self._beating = next(iter(self._beats))
                elif not self._work:
                    return
            if self._beating is not None:
                self._heartbeat()
                continue
            with self._cond:
                if not self._work:
                    continue
                run_id, group, size = self._work.popleft()
            try:
                with self._gate:
                    try:
                        self._target().index_output(run_id, group)
                        self._failing.discard(run_id)
                    except Exception as exc:  # noqa: BLE001 - search is a view
                        if run_id not in self._failing:
                            self._failing.add(run_id)
                            _complain(f"run {run_id}: output not indexed for search: "
                                      f"{exc!r}")
            finally:
                with self._cond:
                    self._queued -= size
                    left = self._owed.get(run_id, 0) - 1
                    if left > 0:
                        self._owed[run_id] = left
                    else:
                        self._owed.pop(run_id, None)
                        self._failing.discard(run_id)
                    self._cond.notify_all()
