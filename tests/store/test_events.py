"""The ``EventLog`` contract: every change appends its events in its own transaction,
read in ``seq`` order from any cursor; ``claim_events`` hands each batch to one caller
of a consumer, however many processes ask.

Every test runs against every store (SQLite and PostgreSQL), on a fake clock.
(PostgreSQL's commit order under concurrent writers: test_postgres.py.)
"""

from __future__ import annotations

import threading

from tests.conftest import make_job
from tests.store.contract import EVERY_BACKEND

pytestmark = EVERY_BACKEND


def test_events_are_read_in_seq_order_from_any_cursor(store, clock):
    assert store.last_event_seq() == 0 and store.events_since(0) == []
    make_job(store, "e1")
    make_job(store, "e2")
    run = store.request_run("e1")
    events = store.events_since(0)
    assert [e.type for e in events] == ["job.created", "job.created", "run.queued"]
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs)) and store.last_event_seq() == seqs[-1]
    assert (events[0].data["name"], events[0].at) == ("e1", clock())
    assert (events[2].job_id, events[2].run_id) == (store.get_job("e1").id, run.id)
    assert store.events_since(seqs[0], limit=1) == [events[1]]
    assert store.events_since(seqs[-1]) == []


def test_claim_events_hands_each_batch_to_one_caller(open_test_store, store):
    other = open_test_store(clock=store.clock)  # another process on the same store
    make_job(store, "before")
    assert store.claim_events("watcher") == []  # a new consumer starts at the newest event
    make_job(store, "a")
    make_job(other, "b")
    assert [e.data["name"] for e in store.claim_events("watcher")] == ["a", "b"]
    assert other.claim_events("watcher") == [] and store.claim_events("watcher") == []
    make_job(other, "c")
    make_job(other, "d")
    assert [e.data["name"] for e in other.claim_events("watcher", limit=1)] == ["c"]
    assert [e.data["name"] for e in store.claim_events("watcher")] == ["d"]
    assert store.claim_events("audit") == []  # another consumer: a cursor of its own
    make_job(store, "e")
    assert [e.data["name"] for e in other.claim_events("audit")] == ["e"]
    assert [e.data["name"] for e in other.claim_events("watcher")] == ["e"]


def test_consumers_in_threads_never_claim_an_event_twice(open_test_store, clock):
    stores = [open_test_store(clock=clock) for _ in range(4)]
    for s in stores:
        assert s.claim_events("notify") == []
    claimed: list = []
    lock = threading.Lock()
    writing = threading.Event()

    def consume(s):
        while True:
            done = writing.is_set()
            batch = s.claim_events("notify", limit=7)
            with lock:
                claimed.extend(e.seq for e in batch)
            if done and not batch:
                return

    threads = [threading.Thread(target=consume, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    writer = open_test_store(clock=clock)
    for i in range(60):
        make_job(writer, f"j{i:02d}")
    writing.set()
    for t in threads:
        t.join()
    every = [e.seq for e in writer.events_since(0, 1000)][-60:]
    assert sorted(claimed) == every
