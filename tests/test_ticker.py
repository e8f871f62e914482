"""The ticker's reconcile rules on a real store and a fake clock: when a run that was
handed out but never taken by a supervisor is called lost."""

from __future__ import annotations

import os

import pytest

from hermes_cron_ext.store import AsyncStore
from hermes_cron_ext.ticker import NEVER_STARTED, ORPHANED, Ticker

from .conftest import make_job


@pytest.fixture
def dispatched(store, clock):
    """A run handed to a supervisor that never attached (its ticker was killed)."""
    make_job(store, "orphan", "@yearly")
    run = store.request_run("orphan")
    assert store.dispatch(run.id)
    return run


async def _reconcile(store, clock) -> list[str]:
    """A daemon starting now: it registers, then reconciles."""
    ticker = Ticker(AsyncStore(store), None, clock=clock)
    ticker.info = await ticker.store.register_ticker("daemon", "here", os.getpid())
    try:
        return await ticker.reconcile()
    finally:
        await ticker.close_executors()


async def test_run_of_a_vanished_ticker_is_lost_after_a_short_grace(store, clock, dispatched):
    clock.advance(ORPHANED - 1)  # a new daemon starts after the old one died
    # still within the grace: a supervisor may be about to attach
    assert await _reconcile(store, clock) == []
    clock.advance(2)
    lost = await _reconcile(store, clock)
    run = store.get_run(dispatched.id)
    assert lost == [dispatched.id] and run.status == "lost"
    assert "ticker that dispatched it is gone" in run.reason


async def test_run_waits_the_long_grace_while_an_older_ticker_lives(store, clock):
    store.register_ticker("daemon", "elsewhere", 1)  # could still be starting it
    clock.advance(1)
    make_job(store, "slow", "@yearly")
    run = store.request_run("slow")
    assert store.dispatch(run.id)
    for wait, status in ((ORPHANED + 1, "queued"), (NEVER_STARTED, "lost")):
        clock.advance(wait)
        for t in store.list_tickers():
            store.ticker_heartbeat(t.id, clock())
        await _reconcile(store, clock)
        assert store.get_run(run.id).status == status
    assert store.get_run(run.id).reason == "its supervisor never started"


async def test_a_one_shot_job_runs_its_payload_once(real_store, tmp_path):
    """``--at``: a real ticker and supervisor run the payload at the instant, once, and
    the job then says it has no more fire times."""
    import asyncio
    import time
    from datetime import datetime, timezone

    marker = tmp_path / "ran"
    at = datetime.fromtimestamp(time.time() + 1.5, timezone.utc).isoformat(timespec="seconds")
    make_job(real_store, "once", f"@at {at}", command=f"echo ran >> {marker}")
    ticker = Ticker(AsyncStore(real_store), None, lead=0.5, poll=0.2)
    await ticker.start()
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            runs = real_store.list_runs("once").items
            if runs and runs[0].status not in ("queued", "running"):
                break
            await asyncio.sleep(0.1)
    finally:
        await ticker.stop()
    assert [r.status for r in runs] == ["succeeded"]
    assert marker.read_text() == "ran\n"
    assert real_store.get_job("once").next_run_at is None
