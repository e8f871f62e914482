"""Event brokers: in-process notices on SQLite, NOTIFY across processes on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from hermes_cron_ext.events import LocalBroker, PostgresBroker, SQLiteBroker, broker_for
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


def test_the_change_token_moves_on_other_connections_commits_only(db_path):
    """SQLite's ``change_token``: another connection's commit (another thread here, any
    process in real life) changes it; this thread's own commits do not; tokens of two
    threads never compare equal."""
    store = open_store(db_path)
    try:
        token = store.change_token()
        make_job(store, "mine")
        assert store.change_token() == token
        other: list = []
        thread = threading.Thread(target=lambda: (make_job(store, "theirs"),
                                                  other.append(store.change_token())))
        thread.start()
        thread.join()
        assert store.change_token() != token
        assert other[0] != store.change_token()
    finally:
        store.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_a_sqlite_broker_tells_another_processes_commit(db_path):
    """While anyone subscribes, the SQLite broker says ``commit`` when any process may
    have committed (a CLI ``add`` here), so a ticker can sleep long and confirm with the
    change token; with no subscriber left it watches nothing."""
    store = open_store(db_path)
    try:
        broker = broker_for(store)
        assert isinstance(broker, SQLiteBroker) and not broker.watches_commits
        heard = threading.Event()
        stop = broker.subscribe(lambda kind, arg: kind == "commit" and heard.set())
        assert broker.watches_commits
        token = store.change_token()
        subprocess.run([sys.executable, "-m", "hermes_cron_ext", "--db", db_path, "add",
                        "theirs", "@yearly", "--", "true"], check=True, capture_output=True)
        assert heard.wait(10), "no commit notice"
        assert store.change_token() != token
        stop()
        stop()  # twice is harmless
        assert not broker.watches_commits
        heard.clear()
        make_job(store, "unheard")
        assert not heard.wait(0.3)
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
