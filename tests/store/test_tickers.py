"""The ``TickerRegistry`` contract: tickers registered, kept alive by heartbeats, listed
alive or stale, removed; a ticker whose process is gone is dead at once.

Every test runs against every store (SQLite and PostgreSQL), on a fake clock.
"""

from __future__ import annotations

from tests.store.contract import EVERY_BACKEND

pytestmark = EVERY_BACKEND


def test_tickers_registry(store, clock):
    t = store.register_ticker("daemon", "host1", 123)
    assert [x.kind for x in store.list_tickers()] == ["daemon"]
    assert store.list_tickers()[0].alive(clock())
    clock.advance(20)
    assert not store.list_tickers()[0].alive(clock())
    store.ticker_heartbeat(t.id, clock(), ticked=True)
    assert store.list_tickers()[0].alive(clock())
    store.unregister_ticker(t.id)
    assert store.list_tickers() == []


def test_a_ticker_whose_process_is_gone_is_dead_at_once(store, clock):
    """A server stopped a second ago: its row's heartbeat is fresh, but its process on
    this host is gone (pid + start time), so a handoff need not wait 15 s for it."""
    import subprocess
    import sys

    from hermes_cron_ext.processes import hostname

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        store.register_ticker("server", hostname(), proc.pid)
        store.register_ticker("tick", hostname(), proc.pid)  # one-shot: exits by design
        assert [t.alive(clock()) for t in store.list_tickers()] == [True, True]
    finally:
        proc.kill()
        proc.wait()
    by_kind = {t.kind: t for t in store.list_tickers()}
    server, tick = by_kind["server"], by_kind["tick"]
    assert not server.alive(clock()) and server.heartbeat_at == clock()
    assert tick.alive(clock())  # its heartbeat alone counts


def test_a_ticker_registered_again_under_its_id_replaces_its_row(store, clock):
    first = store.register_ticker("server", "host1", 1)
    store.ticker_heartbeat(first.id, clock(), ticked=True)
    clock.advance(5)
    again = store.register_ticker("daemon", "host2", 2, ticker_id=first.id)
    [row] = store.list_tickers()
    assert again.id == row.id == first.id
    assert (row.kind, row.host, row.pid, row.started_at, row.last_tick_at) == (
        "daemon", "host2", 2, clock(), None)
    store.ticker_heartbeat("t_unknown", clock())  # ignored
    store.unregister_ticker("t_unknown")
    assert [t.id for t in store.list_tickers()] == [first.id]
    clock.advance(86401)  # silent for a day: forgotten when a ticker registers
    store.register_ticker("tick", "host3", 3)
    assert [t.kind for t in store.list_tickers()] == ["tick"]
