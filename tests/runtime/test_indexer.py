"""The output index and the heartbeats are written off the read loop (issue 34): a
supervisor whose store's write lock another process holds keeps reading its payload
into the log, and indexes it once the lock is free; the indexer keeps order, caps what
it holds, and a store that cannot index never stops a run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from hermes_cron_ext.domain.search import parse_query
from hermes_cron_ext.runtime.indexer import Indexer
from hermes_cron_ext.runtime.supervisor import SUPERVISE_DB_ENV
from hermes_cron_ext.store.output import OutputWriter
from tests.conftest import make_job, wait_for


class FakeStore:
    def __init__(self, fail: bool = False):
        self.calls: list[tuple[str, list[tuple[int, str]]]] = []
        self.beats: list[tuple] = []
        self.open = threading.Event()
        self.open.set()
        self.fail = fail
        self.cancel = False

    def index_output(self, run_id, chunks):
        self.open.wait(10)
        if self.fail:
            raise RuntimeError("no index here")
        self.calls.append((run_id, list(chunks)))

    def heartbeat_run(self, run_id, at, phase, progress, size):
        self.beats.append((run_id, size))
        return self.cancel


def _writer(tmp_path, name: str) -> OutputWriter:
    return OutputWriter(str(tmp_path / f"{name}.log"))


def test_pieces_are_written_in_order_in_short_transactions(tmp_path):
    store = FakeStore()
    indexer = Indexer(store, group_bytes=16 * 1024)
    a, b = _writer(tmp_path, "a"), _writer(tmp_path, "b")
    for i in range(3000):
        a.write("stdout", f"a line {i:06d}\n".encode())
        b.write("stdout", f"b line {i:06d}\n".encode())
    indexer.hand("a", a)
    indexer.hand("b", b)
    a.write("stdout", b"a last, no newline")
    a.close()
    b.close()
    assert indexer.finish("a", a, timeout=10) and indexer.finish("b", b, timeout=10)
    indexer.close()
    assert all(sum(len(t) for _, t in chunks) <= 16 * 1024 for _, chunks in store.calls)
    for run in ("a", "b"):
        got = [c for r, chunks in store.calls if r == run for c in chunks]
        offsets = [o for o, _ in got]
        assert offsets == sorted(offsets) and len(store.calls) > 4
        text = "".join(t for _, t in got)
        with open(tmp_path / f"{run}.log") as f:
            assert text == f.read()


def test_what_is_queued_is_capped_and_the_writer_keeps_the_rest(tmp_path):
    store = FakeStore()
    store.open.clear()  # the store's write lock held elsewhere
    indexer = Indexer(store, group_bytes=4096, queue_bytes=64 * 1024, per_beat=32 * 1024)
    w = _writer(tmp_path, "big")
    for i in range(20000):  # ~400 KB
        w.write("stdout", f"line {i:08d} text\n".encode())
    for _ in range(20):  # heartbeats while nothing can be written
        indexer.hand("big", w)
    assert indexer._queued <= 64 * 1024 + 32 * 1024
    assert len(w._pending) > 200_000  # kept by the writer for later beats
    store.open.set()
    w.close()
    assert indexer.finish("big", w, timeout=10)
    indexer.close()
    text = "".join(t for _, chunks in store.calls for _, t in chunks)
    with open(tmp_path / "big.log") as f:
        assert text == f.read()


def test_a_store_that_cannot_index_is_told_and_stops_nothing(tmp_path, capfd):
    store = FakeStore(fail=True)
    indexer = Indexer(store, group_bytes=1024)
    w = _writer(tmp_path, "x")
    for i in range(500):
        w.write("stdout", f"line {i}\n".encode())
    w.close()
    assert indexer.finish("x", w, timeout=10)
    indexer.close()
    err = capfd.readouterr().err
    assert err.count("output not indexed for search") == 1 and "no index here" in err


def test_heartbeats_go_first_and_a_cancel_is_told_at_the_next(tmp_path):
    store = FakeStore()
    indexer = Indexer(store)
    store.cancel = True
    assert indexer.beat("r", time.time(), None, None, 10) is False
    wait_for(lambda: store.beats, timeout=5, what="the beat written")
    assert indexer.beat("r", time.time(), None, None, 20) is True
    indexer.close()


def _supervise(store, run) -> subprocess.Popen:
    env = {**os.environ, "HERMES_CRON_HEARTBEAT": "0.2", SUPERVISE_DB_ENV: store.url}
    return subprocess.Popen([sys.executable, "-m", "hermes_cron_ext.runtime.supervisor",
                             run.id], env=env, start_new_session=True)


def _hits(store, text: str) -> list[str]:
    return [h["run_id"] for h in store.search_output(parse_query(text)).items]


def test_output_reaches_the_log_while_another_process_holds_the_write_lock(real_store,
                                                                          tmp_path):
    held, go = tmp_path / "held", tmp_path / "go"
    code = ("import os, time\n"
            "print('early_marker', flush=True)\n"
            "told = False\n"
            f"while not os.path.exists({str(go)!r}):\n"
            "    if not told and os.path.exists(" + repr(str(held)) + "):\n"
            "        print('held_marker', flush=True); told = True\n"
            "    print(f'tick {time.time():.6f} ' + 'x' * 60, flush=True)\n"
            "    time.sleep(0.02)\n")
    make_job(real_store, "locked", "@yearly", kind="python", code=code, command=None)
    run = real_store.request_run("locked")
    log = real_store.log_path(run.id)
    proc = _supervise(real_store, run)
    con = sqlite3.connect(real_store.path, timeout=10, isolation_level=None)
    try:
        wait_for(lambda: _hits(real_store, "early_marker") == [run.id], timeout=30,
                 what="the first line indexed")
        con.execute("BEGIN IMMEDIATE")  # the store's write lock, for 1.2 s
        try:
            held.touch()
            t0 = time.monotonic()
            sizes = []
            while time.monotonic() - t0 < 1.2:
                sizes.append((time.monotonic() - t0, os.path.getsize(log)))
                time.sleep(0.05)
        finally:
            con.execute("ROLLBACK")
        with open(log, "rb") as f:
            assert b"held_marker" in f.read()
        grew = [t for (t, s), (_, before) in zip(sizes[1:], sizes) if s > before]
        # the payload prints ~50 lines/s: the log grows all along, not once the lock goes
        assert len(grew) >= 15, sizes
        assert max(b - a for a, b in zip([0.0, *grew], [*grew, 1.2])) < 0.4, sizes
        # once the lock is free, what was printed meanwhile is indexed (at a heartbeat)
        wait_for(lambda: _hits(real_store, "held_marker") == [run.id], timeout=10,
                 what="the line printed while the lock was held indexed")
        assert real_store.get_run(run.id).status == "running"
        go.touch()
        assert proc.wait(30) == 0
    finally:
        con.close()
        go.touch()
        proc.wait(30)
    assert real_store.get_run(run.id).status == "succeeded"
    assert _hits(real_store, "held_marker") == [run.id]


@pytest.mark.postgres
def test_through_a_relay_the_thread_has_a_client_of_its_own(pg_url, tmp_path):
    """A RelayClient is one socket: the indexer's thread talks through a client of its
    own, while the loop's client goes on making its calls."""
    pytest.importorskip("psycopg")
    from hermes_cron_ext.store import open_store
    from hermes_cron_ext.store.relay import RelayClient, start_relay
    from tests.store.test_relay import queued_run

    store = open_store(pg_url)
    path, pid = start_relay(pg_url)
    sup = RelayClient(pg_url, path)
    try:
        run = queued_run(store)
        assert sup.attach_run(run.id, os.getpid(), None, "here") is True
        assert sup.mark_running(run.id, time.time(), os.getpid()) is True
        indexer = Indexer(sup, group_bytes=2048)
        writer = sup.output_writer(run.id)
        for i in range(2000):
            writer.write("stdout", f"relayed_line {i:05d}\n".encode())
            if i % 100 == 0:
                indexer.hand(run.id, writer)
                assert indexer.beat(run.id, time.time(), None, None, writer.size) is False
                assert sup.get_run(run.id).status == "running"  # the loop's own calls
        writer.close()
        assert indexer.finish(run.id, writer, timeout=30)
        assert indexer._store is not sup and isinstance(indexer._store, RelayClient)
        indexer.close()
        assert sup.finish_run(run.id, "succeeded", 0).status == "succeeded"
        assert [h["run_id"] for h in store.search_output(parse_query("relayed_line")).items
                ] == [run.id]
    finally:
        sup.close()
        store.close()
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
