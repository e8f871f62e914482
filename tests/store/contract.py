"""What the store's contract suites share.

One suite per interface of ``hermes_cron_ext/store/base.py``, each a module run against
every backend (``EVERY_BACKEND``: SQLite and a real PostgreSQL) on a fake clock:

====================  =========================
interface             suite
====================  =========================
``JobStore``          ``test_jobs.py``
``RunLedger``         ``test_runs.py``
``RunMetrics``        ``test_metrics.py``
``Backfills``         ``test_backfills.py``
``OutputStore``       ``test_output_store.py``
``TickerRegistry``    ``test_tickers.py``
``EventLog``          ``test_events.py``
``Outbox``            ``test_outbox.py``
``History``           ``test_history.py``
``RunViews``          ``test_views.py``
``Store`` (the rest)  ``test_store.py``
====================  =========================

``test_contract.py`` holds the map: every interface has its suite, every suite runs on
every backend, and every method of an interface is called in its suite. A new backend
joins by being opened by ``open_store`` and named in ``tests/conftest.py``'s
``BACKENDS`` / ``store_url`` (docs/ARCHITECTURE.md, "Adding a store backend").
"""

from __future__ import annotations

import pytest

from hermes_cron_ext.store.base import (
    Backfills,
    EventLog,
    History,
    JobStore,
    Outbox,
    OutputStore,
    RunLedger,
    RunMetrics,
    RunViews,
    Store,
    TickerRegistry,
)
from tests.conftest import BACKENDS

#: A suite module's ``pytestmark``: each test once per backend.
EVERY_BACKEND = pytest.mark.parametrize("store_backend", BACKENDS, indirect=True)

#: Each interface's contract suite (modules of tests/store/).
SUITES: dict[type, str] = {
    JobStore: "test_jobs",
    RunLedger: "test_runs",
    RunMetrics: "test_metrics",
    Backfills: "test_backfills",
    OutputStore: "test_output_store",
    TickerRegistry: "test_tickers",
    EventLog: "test_events",
    Outbox: "test_outbox",
    History: "test_history",
    RunViews: "test_views",
    Store: "test_store",
}

T0 = 1_800_000_000.0  # FakeClock start, a multiple of 5 minutes


def run_to_end(store, run, status="succeeded", code=0, reason=None):
    """Take *run* through a supervisor's calls: attach, running, final status."""
    store.attach_run(run.id, 1, None, "h")
    store.mark_running(run.id, store.clock(), 2)
    return store.finish_run(run.id, status, code, reason)
