"""The ticker on a real store: its reconcile rules on a fake clock (when a run that was
handed out but never taken by a supervisor is called lost), and with real supervisors
what users see after downtime (catch-ups) and when they pause a job at its slot."""

from __future__ import annotations

import os
from datetime import UTC

import pytest

from hermes_cron_ext.runtime.ticker import NEVER_STARTED, ORPHANED, Ticker
from hermes_cron_ext.store import AsyncStore
from tests.conftest import make_job, wait_for


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


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def test_a_run_whose_agent_died_before_its_instant_is_fired_not_lost(store, clock):
    """A replica killed while holding slots it claimed ahead: the runs it had taken but
    whose instant has not come never started, so a surviving ticker fires them; one
    whose instant passed may have started, so it is lost, as before."""
    from hermes_cron_ext.processes import hostname

    make_job(store, "ahead", "@every 10s")
    make_job(store, "passed", "@every 10s")
    first = {r.job_id: r for r in store.claim_due(clock() + 20, clock(), "dead-replica")}
    ahead = next(r for r in first.values() if r.job_name == "ahead")
    passed = next(r for r in first.values() if r.job_name == "passed")
    dead = _dead_pid()
    for run in (ahead, passed):
        assert store.attach_run(run.id, dead, None, hostname())
    clock.now = passed.fire_at + 0.5  # "passed" reached its instant under the dead agent
    with store._write() as db:  # "ahead" is still to come: its instant after now
        db.execute("UPDATE runs SET fire_at = ? WHERE id = ?", (clock() + 1.0, ahead.id))

    changed = await _reconcile(store, clock)
    assert sorted(changed) == sorted([ahead.id, passed.id])
    lost = store.get_run(passed.id)
    assert lost.status == "lost" and f"pid {dead}" in lost.reason
    back = store.get_run(ahead.id)
    assert (back.status, back.pid, back.host, back.dispatched_at) == ("queued", None, None, None)
    # the next claim hands it out again, once
    again = store.claim_due(clock() + 2, clock(), "survivor")
    assert [r.id for r in again] == [ahead.id]
    assert store.claim_due(clock() + 2, clock(), "survivor") == []


async def test_a_one_shot_job_runs_its_payload_once(real_store, tmp_path):
    """``--at``: a real ticker and supervisor run the payload at the instant, once, and
    the job then says it has no more fire times."""
    import asyncio
    import time
    from datetime import datetime

    marker = tmp_path / "ran"
    at = datetime.fromtimestamp(time.time() + 1.5, UTC).isoformat(timespec="seconds")
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


async def _until(predicate, timeout: float, what: str):
    import asyncio
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("store_backend", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("overlap", ["forbid", "queue", "allow"])
async def test_misfire_all_runs_every_missed_slot_once_in_order(open_test_store, overlap):
    """After downtime, ``misfire: all`` claims the missed slots together; each runs
    exactly once, and one after another unless the job allows overlap."""
    import time

    from tests.conftest import FakeClock

    down = FakeClock(time.time() - 4 * 60 - 30)  # the job was made 4.5 min ago
    make_job(open_test_store(clock=down), "catch", "* * * * *", command="sleep 0.6",
             misfire="all", overlap=overlap)
    store = open_test_store()
    ticker = Ticker(AsyncStore(store), None, lead=0.5, poll=0.2)
    await ticker.start()
    try:
        def caught_up():
            runs = [r for r in store.list_runs("catch").items if r.trigger == "catchup"]
            return runs if len(runs) >= 4 and all(
                r.status not in ("queued", "running") for r in runs) else None
        runs = await _until(caught_up, 60, "the catch-ups to end")
    finally:
        await ticker.stop()
    runs.sort(key=lambda r: r.scheduled_for)
    assert [r.status for r in runs] == ["succeeded"] * len(runs), [
        (r.status, r.reason) for r in runs]
    assert len({r.scheduled_for for r in runs}) == len(runs)  # one run per slot
    spans = [(r.started_at, r.finished_at) for r in runs]
    overlapped = any(b[0] < a[1] for a, b in zip(spans, spans[1:]))
    if overlap == "allow":
        assert overlapped  # claimed together, started together
    else:
        assert not overlapped, spans
        assert [r.started_at for r in runs] == sorted(r.started_at for r in runs)


@pytest.mark.parametrize("store_backend", ["sqlite", "postgres"], indirect=True)
async def test_pausing_just_before_a_slot_skips_its_run(real_store):
    """A run already handed to its supervisor when the job is paused is ``skipped``
    (job is paused), on both stores: never ``lost``, never run."""
    import time

    make_job(real_store, "p", "@every 4s", command="true")
    ticker = Ticker(AsyncStore(real_store), None, lead=3.0, poll=0.2)
    await ticker.start()
    try:
        def waiting():  # claimed, its supervisor up and waiting for the instant
            for r in real_store.list_runs("p").items:
                if r.status == "queued" and r.pid and r.fire_at - time.time() > 0.5:
                    return r
            return None
        run = await _until(waiting, 30, "a supervisor waiting for its slot")
        real_store.set_paused("p", True)
        done = await _until(lambda: (r := real_store.get_run(run.id)).status not in (
            "queued", "running") and r, 30, "the run to end")
    finally:
        await ticker.stop()
    assert (done.status, done.reason) == ("skipped", "job is paused")


async def test_the_lead_grows_for_a_burst_of_notebook_jobs(store, clock):
    """Several notebook jobs on one slot: each runner and kernel needs about a CPU-second
    and a half to be ready, so the ticker claims them early enough for all of them to
    wait warm at the instant; command jobs keep the usual lead."""
    from hermes_cron_ext.runtime.ticker import CORES, NOTEBOOK_WARMUP

    ticker = Ticker(AsyncStore(store), None, clock=clock, lead=2.0)
    try:
        for i in range(8):
            make_job(store, f"cmd{i}", "*/5 * * * *")
        slot = store.get_job("cmd0").next_run_at
        clock.advance(slot - clock() - 10)  # 10 s before the slot
        assert await ticker.lead_for(clock()) == 2.0
        for i in range(8):
            make_job(store, f"nb{i}", "*/5 * * * *", kind="notebook", command="x.ipynb")
        lead = await ticker.lead_for(clock())
        assert lead == pytest.approx(16 * store.lead_per_run + 8 * NOTEBOOK_WARMUP / CORES)
        assert lead > 2.0
    finally:
        await ticker.close_executors()


async def test_a_job_made_in_a_repeated_hour_gets_its_next_run_and_fires(store, clock):
    """Europe/Berlin goes back from 03:00 CEST to 02:00 CET on 25 October 2020. A job
    ``0-30 2 * * *`` created, edited and resumed during the second 02:00-02:30 still
    has a next run: the next night, since it ran through the first pass (a fixed-time
    job runs once). The ticker, driven on a fake clock as its loop would be (to each
    next wakeup), then fires it that night, every minute from 02:00 to 02:30 CET."""
    from datetime import datetime, timedelta

    from hermes_cron_ext.domain.jobspec import validate_changes
    from hermes_cron_ext.runtime.executor import Executor

    class Handed(Executor):  # keeps what the ticker hands out (no supervisors)
        def __init__(self):
            self.runs: list = []

        async def start(self, run):
            self.runs.append(run)

        async def close(self):
            pass

    def at(text: str) -> float:
        return datetime.fromisoformat(text).timestamp()

    next_night = at("2020-10-26T02:00:00+01:00")
    clock.now = at("2020-10-25T02:00:12+01:00")  # CET: the second pass of 02:00
    job = make_job(store, "nightly", "0-30 2 * * *", timezone="Europe/Berlin")
    assert (job.state, job.next_run_at) == ("scheduled", next_night)
    clock.advance(5 * 60)
    job = store.update_job(job.id, validate_changes(job, {"schedule": "0-59/2 2 * * *"}))
    assert job.next_run_at == next_night
    job = store.update_job(job.id, validate_changes(job, {"schedule": "0-30 2 * * *"}))
    assert job.next_run_at == next_night
    store.set_paused("nightly", True)
    clock.advance(10 * 60)
    assert store.set_paused("nightly", False).next_run_at == next_night

    handed = Handed()
    ticker = Ticker(AsyncStore(store), handed, clock=clock, lead=2.0)
    try:
        while (due := store.next_wakeup()) is not None and due < at(
                "2020-10-26T03:00:00+01:00"):
            clock.now = max(clock.now, due - ticker.lead)  # it sleeps until then
            await ticker.tick()
    finally:
        await ticker.close_executors()
    fired = [datetime.fromtimestamp(r.scheduled_for, UTC) for r in handed.runs]
    assert fired == [datetime.fromtimestamp(next_night, UTC) + timedelta(minutes=m)
                     for m in range(31)]
    assert [r.trigger for r in store.list_runs("nightly", limit=100).items] == [
        "schedule"] * 31
    assert store.get_job("nightly").next_run_at == at("2020-10-27T02:00:00+01:00")


async def test_an_idle_ticker_asks_only_whether_the_store_changed(real_store):
    """While nothing changes, is due or is active, a pass of the ticker asks the store
    one question (its change token), it sleeps a heartbeat between passes where the
    broker tells every process's commits, and it still writes its heartbeat row (so
    ``status`` sees it alive). A run queued through another connection wakes it at
    once; it is started, and reconciled while it is active."""
    import asyncio
    import time

    from hermes_cron_ext.runtime.ticker import TICKER_HEARTBEAT

    make_job(real_store, "yearly", "@yearly")
    lane = AsyncStore(real_store)
    ticker = Ticker(lane, None, lead=0.5, poll=0.2)
    sent: list[str] = []
    await ticker.start()
    try:
        await asyncio.sleep(1.0)  # the first passes read everything and reconcile
        # the notifier (its own thread and connection) has planned the job's creation
        # event: its commit is one more change the ticker reads, then nothing changes
        await _until(lambda: real_store.db.execute(
            "SELECT value FROM meta WHERE key = 'cursor:notify'").fetchone()[0] == str(
                real_store.last_event_seq()), 10, "the notifier to catch up")
        await asyncio.sleep(1.0)
        await lane.run(lambda: real_store.db.set_trace_callback(sent.append))
        beat = real_store.list_tickers()[0].heartbeat_at
        await asyncio.sleep(TICKER_HEARTBEAT + 1.0)
        idle = list(sent)
        assert {q.split()[0] for q in idle} <= {"PRAGMA", "BEGIN", "UPDATE", "COMMIT"}, (
            "\n".join(q[:150] for q in idle))
        assert all(q.startswith("UPDATE tickers SET heartbeat_at") for q in idle
                   if q.startswith("UPDATE"))
        assert real_store.list_tickers()[0].heartbeat_at > beat  # written while idle
        if ticker.broker.watches_commits:
            assert ticker.idle_poll == TICKER_HEARTBEAT
            assert sum(q == "PRAGMA data_version" for q in idle) <= 6, idle

        run = real_store.request_run("yearly")  # this thread's connection: another one
        done = await _until(lambda: (r := real_store.get_run(run.id)).status not in (
            "queued", "running") and r, 30, "the run to end")
    finally:
        await ticker.stop()
    assert done.status == "succeeded", done.reason
    assert done.started_at - run.queued_at < 2.0  # not a long sleep later
    assert any("FROM runs WHERE status IN ('queued', 'running')" in q
               for q in sent[len(idle):]), "not reconciled while the run was active"
    assert time.time() - done.finished_at < 30


def test_a_job_another_process_adds_fires_on_time_while_the_daemon_sleeps(cli):
    """``hermes-cron add`` just after an idle daemon's heartbeat (it may sleep until its
    next one, 5 s on): the new job's first slot, 3-4 s ahead, still fires on time."""
    import math
    from datetime import datetime

    from hermes_cron_ext.store import SQLiteStore

    cli("add", "yearly", "@yearly", "--", "true")
    daemon = cli.daemon()
    store = SQLiteStore(cli.db)
    try:
        def beat() -> float:
            return next(t.heartbeat_at for t in store.list_tickers() if t.pid == daemon.pid)
        first = beat()
        wait_for(lambda: beat() > first, 15, interval=0.02, what="a heartbeat")
        slot = math.ceil(beat() + 3)
        cli("add", "soon", f"@at {datetime.fromtimestamp(slot, UTC).isoformat()}", "--",
            "true")
        run = wait_for(lambda: next((r for r in store.list_runs("soon").items
                                     if r.status not in ("queued", "running")), None),
                       30, what="the run to end")
    finally:
        store.close()
    assert run.status == "succeeded" and run.scheduled_for == slot
    assert run.started_at - slot < 0.5, run.started_at - slot
