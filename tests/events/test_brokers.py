"""Event brokers: in-process notices on SQLite, NOTIFY across processes on PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from hermes_cron_ext.events import LocalBroker, PostgresBroker, broker_for
from hermes_cron_ext.store import open_store
from tests.conftest import make_job, wait_for


def test_local_broker_tells_every_subscriber_until_it_unsubscribes():
    broker = LocalBroker()
    heard_a, heard_b = [], []
    stop_a = broker.subscribe(lambda kind, arg: heard_a.append((kind, arg)))
    broker.subscribe(lambda kind, arg: heard_b.append((kind, arg)))
    broker.publish("changed")
    stop_a()
    stop_a()  # twice is harmless
    broker.publish("output", "r_1")
    assert heard_a == [("changed", "")]
    assert heard_b == [("changed", ""), ("output", "r_1")]


def test_a_sqlite_store_gets_the_local_broker_and_polls(db_path):
    store = open_store(db_path)
    try:
        broker = broker_for(store)
        assert isinstance(broker, LocalBroker) and not broker.remote
        assert broker.poll_events <= 0.1  # other processes' changes: found by polling
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_broker_hears_another_connections_commits(pg_url):
    """A change committed through one store object (another process, in real life)
    reaches a subscriber of a broker on another, by NOTIFY."""
    listening, writing = open_store(pg_url), open_store(pg_url)
    try:
        broker = broker_for(listening)
        assert isinstance(broker, PostgresBroker) and broker.remote
        heard: list[tuple[str, str]] = []
        ready = threading.Event()

        def callback(kind: str, arg: str) -> None:
            heard.append((kind, arg))
            if kind == "resync":
                ready.set()
        stop = broker.subscribe(callback)
        assert ready.wait(20), "the LISTEN connection did not come up"
        make_job(writing, "told")
        wait_for(lambda: any(k == "event" and "job.created" in a for k, a in heard), 20,
                 what="the job.created notice")
        broker.publish("changed")  # in-process notices still reach the subscriber
        assert ("changed", "") in heard
        stop()
        count = len(heard)
        later: list[tuple[str, str]] = []
        broker.subscribe(lambda kind, arg: later.append((kind, arg)))
        make_job(writing, "after")
        wait_for(lambda: any(k == "event" for k, _ in later), 20, what="a later subscriber")
        assert len(heard) == count  # the one that unsubscribed heard nothing more
    finally:
        listening.close()
        writing.close()
