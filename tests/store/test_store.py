"""The store contract: jobs, claims, misfire, runs, paging, events, tickers, gc, output.

Every test runs against every store (SQLite and PostgreSQL), on a fake clock.
"""

from __future__ import annotations

import threading

import pytest

from hermes_cron_ext.domain.jobspec import validate_changes, validate_new
from hermes_cron_ext.errors import Conflict, InvalidInput, NotFound, StoreError
from hermes_cron_ext.store.sql import SCHEMA_VERSION
from tests.conftest import BACKENDS, make_job

pytestmark = pytest.mark.parametrize("store_backend", BACKENDS, indirect=True)

T0 = 1_800_000_000.0  # FakeClock start, a multiple of 5 minutes


def test_create_get_by_id_and_name(store):
    job = make_job(store, "etl", "*/5 * * * *")
    assert job.id.startswith("j_")
    assert store.get_job(job.id).name == "etl"
    assert store.get_job("etl").id == job.id
    assert job.next_run_at == T0 + 300
    assert job.to_json()["next_run_at"] == "2027-01-15T08:05:00.000Z"
    with pytest.raises(NotFound):
        store.get_job("nope")


def test_duplicate_name_conflicts_and_keeps_first(store):
    make_job(store, "etl", command="echo one")
    with pytest.raises(Conflict):
        make_job(store, "etl", command="echo two")
    assert store.get_job("etl").command == "echo one"


def test_idempotency_key_returns_existing_job_for_the_same_request_only(store):
    data = {"name": "a", "schedule": "@daily", "command": "true", "idempotency_key": "k1"}
    first, created = store.create_job(validate_new(data))
    again, created2 = store.create_job(validate_new(data))  # a retried request
    assert created and not created2
    assert again.id == first.id
    with pytest.raises(Conflict, match="idempotency key 'k1' was used for a different"):
        store.create_job(validate_new({**data, "name": "b"}))
    assert [j.name for j in store.list_jobs().items] == ["a"]


def test_invalid_input_never_stored(store):
    for bad in ({"name": "x", "schedule": "61 * * * *", "command": "true"},
                {"name": "x", "schedule": "* * * * *", "timezone": "Europe/Berln",
                 "command": "true"},
                {"name": "x", "schedule": "* * * * *", "command": "true", "bogus": 1},
                {"name": "x y", "schedule": "* * * * *", "command": "true"},
                {"name": "x", "schedule": "* * * * *"}):
        with pytest.raises(InvalidInput):
            store.create_job(validate_new(bad))
    assert store.list_jobs().items == []


def test_list_jobs_keyset_pages(store):
    for i in range(7):
        make_job(store, f"job{i:02d}")
    seen, cursor = [], None
    while True:
        page = store.list_jobs(limit=3, cursor=cursor)
        seen += [j.name for j in page.items]
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == [f"job{i:02d}" for i in range(7)]
    with pytest.raises(InvalidInput):
        store.list_jobs(cursor="garbage!")


def test_update_recomputes_next_run_and_keeps_secrets(store, clock):
    job, _ = store.create_job(validate_new({
        "name": "s", "schedule": "0 * * * *", "timezone": "UTC", "command": "true",
        "secret_env": {"TOKEN": "hunter2"}, "env": {"A": "1"}}))
    assert job.to_json()["env"] == {"A": "1", "TOKEN": "********"}
    changed = store.update_job(job.id, validate_changes(job, {"schedule": "*/10 * * * *",
                                                              "env": {"B": "2"}}))
    assert changed.next_run_at == T0 + 600
    assert changed.env == {"TOKEN": "hunter2", "B": "2"}  # secrets survive an env change
    assert changed.version == 2
    assert "hunter2" not in str(changed.to_json())


def test_claim_fires_each_slot_once(store, clock):
    make_job(store, "a", "*/5 * * * *")
    assert store.claim_due(T0 + 100, T0, "t1") == []
    clock.advance(299)
    runs = store.claim_due(clock() + 2, clock(), "t1")
    assert [(r.trigger, r.scheduled_for, r.status) for r in runs] == [
        ("schedule", T0 + 300, "queued")]
    assert store.claim_due(clock() + 2, clock(), "t2") == []  # claimed already
    assert store.get_job("a").next_run_at == T0 + 600


def test_two_stores_in_threads_claim_exactly_once(open_test_store, clock):
    stores = [open_test_store(clock=clock) for _ in range(4)]
    for i in range(20):
        make_job(stores[0], f"j{i}", "* * * * *")
    claimed: list = []
    lock = threading.Lock()

    def worker(s):
        for _ in range(30):
            runs = s.claim_due(clock() + 120, clock(), "w")
            with lock:
                claimed.extend(runs)
        s.close()

    clock.advance(1)
    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slots = [(r.job_id, r.scheduled_for) for r in claimed]
    assert len(slots) == len(set(slots)) == 40  # 2 slots each within the 120 s horizon


def _history(store, name):
    return [(r.trigger, r.status, r.scheduled_for) for r in
            reversed(store.list_runs(name, limit=100).items)]


@pytest.mark.parametrize("policy, expected", [
    ("latest", [("schedule", "skipped", 300), ("schedule", "skipped", 600),
                ("catchup", "queued", 900)]),
    ("skip", [("schedule", "skipped", 300), ("schedule", "skipped", 600),
              ("schedule", "skipped", 900)]),
    ("all", [("catchup", "queued", 300), ("catchup", "queued", 600),
             ("catchup", "queued", 900)]),
])
def test_misfire_after_downtime_across_three_slots(store, clock, policy, expected):
    make_job(store, "m", "*/5 * * * *", misfire=policy)
    clock.advance(1000)  # down over 08:05, 08:10, 08:15
    claimed = store.claim_due(clock() + 2, clock(), "t")
    got = [(t, s, at - T0) for t, s, at in _history(store, "m")]
    assert got == expected
    assert len(claimed) == sum(1 for e in expected if e[1] == "queued")
    skipped = [r for r in store.list_runs("m").items if r.status == "skipped"]
    assert all(r.reason.startswith("missed:") for r in skipped)
    assert store.get_job("m").next_run_at == T0 + 1200


def test_starting_deadline_skips_late_catchup(store, clock):
    make_job(store, "d", "*/5 * * * *", starting_deadline=60)
    clock.advance(1000)
    assert store.claim_due(clock() + 2, clock(), "t") == []
    latest = store.list_runs("d").items[0]
    assert latest.status == "skipped" and "deadline passed" in latest.reason


def test_slightly_late_slot_runs_normally(store, clock):
    make_job(store, "late", "*/5 * * * *")
    clock.advance(310)  # 10 s late: within the grace, a normal run
    (run,) = store.claim_due(clock() + 2, clock(), "t")
    assert run.trigger == "schedule"


def test_one_shot_at_disables_after_firing(store, clock):
    make_job(store, "once", None, at="2027-01-15T08:01:00Z")
    clock.advance(59)
    (run,) = store.claim_due(clock() + 2, clock(), "t")
    assert run.scheduled_for == T0 + 60
    job = store.get_job("once")
    assert job.next_run_at is None and job.state == "disabled"


def test_paused_job_is_not_claimed_and_not_caught_up(store, clock):
    make_job(store, "p", "*/5 * * * *")
    store.set_paused("p", True)
    clock.advance(2000)
    assert store.claim_due(clock() + 2, clock(), "t") == []
    job = store.set_paused("p", False)
    assert job.next_run_at == T0 + 2100  # the next slot after now, nothing caught up
    assert store.list_runs("p").items == []


def test_a_job_after_others_with_no_schedule_never_fires_by_itself(store, clock):
    """No schedule of its own: no next run, never claimed, nothing missed or caught up
    (across downtime and a pause), and its upstream's run still triggers it."""
    up = make_job(store, "up", "* * * * *")
    down = make_job(store, "down", None, after=[{"job": up.id}])
    assert (down.schedule, down.next_run_at, down.state) == (None, None, "scheduled")
    assert down.to_json()["schedule"] is None
    assert down.after == [{"job": up.id, "on": "success", "name": "up"}]
    clock.advance(3600)  # an hour with no ticker: up's slots are missed, down has none
    claimed = store.claim_due(clock() + 2, clock(), "t")
    assert {r.job_id for r in claimed} == {up.id}
    assert store.list_runs("down").items == []
    store.set_paused("down", True)
    assert store.set_paused("down", False).next_run_at is None
    assert store.next_wakeup() == store.get_job("up").next_run_at
    _run_to_end(store, claimed[0])
    [run] = store.list_runs("down").items
    assert (run.trigger, run.scheduled_for) == ("upstream", claimed[0].scheduled_for)
    edited = store.update_job("down", validate_changes(
        store.get_job("down"), {"schedule": "@daily"}))
    assert edited.schedule == "@daily" and edited.next_run_at is not None
    again = store.update_job("down", validate_changes(edited, {"schedule": None}))
    assert (again.schedule, again.next_run_at) == (None, None)
    with pytest.raises(InvalidInput, match="down has no schedule of its own") as err:
        validate_changes(again, {"after": []})
    assert err.value.field == "after"
    with pytest.raises(InvalidInput, match="it has neither, so it would never run"):
        validate_new({"name": "x", "command": "true"})


def _run_to_end(store, run, status="succeeded", code=0, reason=None):
    store.attach_run(run.id, 1, None, "h")
    store.mark_running(run.id, store.clock(), 2)
    return store.finish_run(run.id, status, code, reason)


def test_run_lifecycle_updates_job_summary_and_events(store, clock):
    make_job(store, "life", "* * * * *")
    cursor = store.last_event_seq()
    run = store.request_run("life")
    assert run.trigger == "manual" and run.status == "queued"
    store.attach_run(run.id, 1, None, "h")
    store.mark_running(run.id, clock(), 2)
    assert store.get_job("life").display_state == "running"
    clock.advance(3)
    done = store.finish_run(run.id, "failed", 3, "exit code 3: boom")
    assert done.status == "failed" and done.duration == 3
    job = store.get_job("life")
    assert job.display_state == "scheduled"
    assert job.last_run["status"] == "failed" and job.consecutive_failures == 1
    # a second finish does not overwrite the first
    assert store.finish_run(run.id, "succeeded", 0).status == "failed"
    types = [e.type for e in store.events_since(cursor)]
    assert types == ["run.queued", "run.started", "run.finished"]


def test_forbid_overlap_refuses_manual_run(store):
    make_job(store, "busy", "* * * * *")
    run = store.request_run("busy")
    store.attach_run(run.id, 1, None, "h")
    store.mark_running(run.id, store.clock(), 2)
    with pytest.raises(Conflict) as err:
        store.request_run("busy")
    assert "forbid" in err.value.message


def test_check_start_reasons(store, clock):
    make_job(store, "c", "* * * * *")
    first = store.request_run("c")
    store.attach_run(first.id, 1, None, "h")
    store.mark_running(first.id, clock(), 2)
    clock.advance(60)
    (slot,) = store.claim_due(clock() + 2, clock(), "t")
    assert store.check_start(slot.id).startswith("overlap: run " + first.id)
    store.set_paused("c", True)
    assert store.check_start(slot.id) == "job is paused"


def test_check_starts_answers_a_batch_as_one_by_one(store, clock):
    make_job(store, "busy", "@yearly")  # overlap forbid
    make_job(store, "free", "@yearly", overlap="allow")
    make_job(store, "gone", "@yearly")
    running = store.request_run("busy")
    store.attach_run(running.id, 1, None, "h")
    store.mark_running(running.id, clock(), 2)
    waiting = store.request_run("free")
    cancelled = store.request_run("free")
    store.request_cancel(cancelled.id)
    orphan = store.request_run("gone")
    store.delete_job("gone")
    ids = [running.id, waiting.id, cancelled.id, orphan.id]
    batch = store.check_starts(ids)
    assert batch == {rid: store.check_start(rid) for rid in ids}
    assert batch[waiting.id] is None and batch[running.id] == "run is running"
    assert batch[orphan.id] == "job was deleted"
    with pytest.raises(NotFound):
        store.check_starts([waiting.id, "r_0000000000000000"])


def test_runs_owed_to_their_slots_wait_their_turn_in_queue_order(store, clock):
    """Runs triggered by upstreams are not refused under forbid while the job runs
    (they are owed to their slots); ``turn_ahead`` names what each waits for: the
    running run, then the waiting run queued before it."""
    up = make_job(store, "up", "@yearly")
    make_job(store, "w", "@yearly", after=[{"job": up.id}])
    x = store.request_run("w")
    store.attach_run(x.id, 1, None, "h")
    store.mark_running(x.id, clock(), 2)
    owed = []
    for _ in range(2):
        u = store.request_run("up")
        store.attach_run(u.id, 1, None, "h")
        store.finish_run(u.id, "succeeded", 0)
        [down] = [r for r in store.list_runs("w").items if r.trigger == "upstream"
                  and r.id not in owed]
        owed.append(down.id)
        clock.advance(60)
    first, second = owed
    for run_id in owed:
        assert store.attach_run(run_id, 3, None, "h")
        assert store.check_start(run_id) is None  # not skipped: it waits
        assert store.turn_ahead(run_id) == x.id
    store.finish_run(x.id, "succeeded", 0)
    assert store.turn_ahead(first) is None  # its turn
    assert store.turn_ahead(second) == first  # queued after it
    store.mark_running(first, clock(), 4)
    assert store.turn_ahead(second) == first
    store.finish_run(first, "succeeded", 0)
    assert store.turn_ahead(second) is None


def test_circuit_breaker_blocks_and_resume_clears(store, clock):
    make_job(store, "flaky", "* * * * *", max_failures=3)
    for i in range(3):
        _run_to_end(store, store.request_run("flaky"), "failed", 1, f"exit code 1: err {i}")
    job = store.get_job("flaky")
    assert job.state == "blocked"
    assert "3 consecutive failures" in job.state_reason and "err 2" in job.state_reason
    clock.advance(600)
    assert store.claim_due(clock() + 2, clock(), "t") == []
    job = store.set_paused("flaky", False)
    assert job.state == "scheduled" and job.consecutive_failures == 0


def test_retry_is_queued_with_backoff(store, clock):
    make_job(store, "r", "* * * * *", retries=2, retry_delay=10)
    first = store.request_run("r")
    _run_to_end(store, first, "failed", 1)
    retry = store.list_runs("r").items[0]
    assert (retry.trigger, retry.attempt, retry.status) == ("retry", 2, "queued")
    assert 8 <= retry.fire_at - clock() <= 12
    clock.advance(13)
    claimed = store.claim_due(clock() + 1, clock(), "t")
    assert [r.id for r in claimed] == [retry.id]
    _run_to_end(store, claimed[0], "failed", 1)
    third = store.list_runs("r").items[0]
    assert third.attempt == 3 and 16 <= third.fire_at - clock() <= 24
    _run_to_end(store, third, "failed", 1)
    assert store.list_runs("r").items[0].id == third.id  # no fourth attempt
    assert store.get_job("r").consecutive_failures == 1  # one failed run after retries


def test_timed_out_not_retried_unless_asked(store):
    make_job(store, "t", "* * * * *", retries=1)
    _run_to_end(store, store.request_run("t"), "timed_out", 143)
    assert len(store.list_runs("t").items) == 1


def test_runs_keyset_paging_newest_first(store, clock):
    make_job(store, "pg", "* * * * *", overlap="allow")
    ids = []
    for _ in range(12):
        ids.append(store.request_run("pg").id)
        clock.advance(1)
    seen, cursor = [], None
    while True:
        page = store.list_runs("pg", limit=5, cursor=cursor)
        seen += [r.id for r in page.items]
        if page.cursor is None:
            break
        cursor = page.cursor
    assert seen == list(reversed(ids))


def test_runs_pages_break_ties_on_one_instant(store):
    """Runs fired at the same instant (a burst) page without a loss or a repeat."""
    make_job(store, "tie", "* * * * *", overlap="allow")
    ids = [store.request_run("tie").id for _ in range(11)]  # the fake clock stands still
    seen, cursor = [], None
    while True:
        page = store.list_runs("tie", limit=4, cursor=cursor)
        seen += [r.id for r in page.items]
        if page.cursor is None:
            break
        cursor = page.cursor
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))


def test_list_jobs_search_takes_wildcards_literally(store):
    for name in ("a_b", "axb", "Report"):
        make_job(store, name)
    make_job(store, "secretive", env={"MODE": "fast"}, secret_env={"TOKEN": "hunter2"})
    make_job(store, "disk-full", command="check-disk --above 90%")
    make_job(store, "disk-big", command="check-disk --above 9000")

    def found(text):
        return [j.name for j in store.list_jobs(search=text).items]

    assert found("_") == ["a_b"]
    assert found("%") == ["disk-full"]
    assert found("0%") == ["disk-full"]
    assert found("A_B") == ["a_b"]  # case-insensitive on both stores
    assert found("report") == ["Report"]
    assert found("hunter2") == found("fast") == found("secret_env") == []  # never env
    assert found("\\") == []


def test_jobs_by_state_counts_without_reading_runs(store):
    make_job(store, "on")
    make_job(store, "off")
    store.set_paused("off", True)
    store.request_run("on")
    assert store.jobs_by_state() == {"scheduled": 1, "paused": 1}
    assert store.stats()["jobs_by_state"] == store.jobs_by_state()


def test_close_closes_every_threads_connection_and_store_reopens(store):
    make_job(store, "threads")
    names = []
    worker = threading.Thread(target=lambda: names.append(store.get_job("threads").name))
    worker.start()
    worker.join()
    store.close()
    assert store.get_job("threads").name == "threads" and names == ["threads"]


def test_cancel_before_start(store):
    make_job(store, "x", "* * * * *")
    run = store.request_run("x")
    assert store.request_cancel(run.id).status == "cancelled"
    with pytest.raises(Conflict):
        store.request_cancel(run.id)


def test_gc_keeps_limits_and_never_active(store, clock):
    make_job(store, "g", "* * * * *", overlap="allow")
    statuses = ["succeeded"] * 8 + ["failed"] * 4 + ["succeeded"] * 8
    for st in statuses:
        _run_to_end(store, store.request_run("g"), st, 0 if st == "succeeded" else 1)
        clock.advance(1)
    active = store.request_run("g")
    result = store.gc(clock(), keep_runs=5, keep_failures=2)
    left = store.list_runs("g", limit=100).items
    assert active.id in [r.id for r in left]
    finished = [r for r in left if r.status != "queued"]
    assert [r.status for r in finished] == ["succeeded"] * 5 + ["failed"] * 2
    assert result["runs_deleted"] == 20 - 7


def test_gc_max_age(store, clock):
    make_job(store, "old", "* * * * *", overlap="allow")
    _run_to_end(store, store.request_run("old"))
    clock.advance(31 * 86400)
    _run_to_end(store, store.request_run("old"))
    store.gc(clock())
    assert len(store.list_runs("old").items) == 1


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

    from hermes_cron_ext.domain.models import hostname

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


def test_bad_stored_schedule_blocks_only_that_job(store, clock):
    make_job(store, "good", "* * * * *")
    make_job(store, "bad", "* * * * *")
    store.db.execute("UPDATE jobs SET schedule = 'every tuesday-ish' WHERE name = 'bad'")
    clock.advance(60)
    runs = store.claim_due(clock() + 2, clock(), "t")
    assert [r.spec["job_name"] for r in runs] == ["good"]
    assert store.get_job("bad").state == "blocked"


def test_schema_version_and_newer_store_refused(open_test_store, store):
    assert store.schema_version() == SCHEMA_VERSION
    store.db.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="upgrade"):
        open_test_store()


def test_delete_keeps_nothing_but_active_runs(store):
    make_job(store, "del", "* * * * *", overlap="allow")
    _run_to_end(store, store.request_run("del"))
    active = store.request_run("del")
    store.delete_job("del")
    with pytest.raises(NotFound):
        store.get_job("del")
    assert store.get_run(active.id).status == "queued"
    assert store.check_start(active.id) == "job was deleted"


def test_a_run_marked_lost_can_no_longer_be_taken_by_a_supervisor(store):
    """The fence: ``mark_lost`` (judged with no supervisor) and ``attach_run`` both ask
    for a queued run with none; whichever commits first wins, so a lost run never runs."""
    make_job(store, "fence", "@yearly")
    late = store.request_run("fence")
    assert store.mark_lost(late.id, "its supervisor never started", None)
    assert store.attach_run(late.id, 41, None, "h") is False  # the late supervisor stops
    assert store.mark_running(late.id, store.clock(), 42) is False
    assert store.get_run(late.id).status == "lost"

    store.finish_run(late.id, "lost")  # no-op: the first final status stays
    early = store.request_run("fence")
    assert store.attach_run(early.id, 43, None, "h") is True
    # a reconcile that read the run before the supervisor attached judged pid None
    assert store.mark_lost(early.id, "its supervisor never started", None) is False
    assert store.attach_run(early.id, 44, None, "h") is False  # one supervisor per run
    assert store.mark_running(early.id, store.clock(), 45) is True
    assert store.get_run(early.id).status == "running"


def test_a_backfill_runs_its_slots_a_few_at_a_time(store, clock):
    job = make_job(store, "bf", "@daily")
    slots = [1_700_000_000.0 + 86400 * i for i in range(5)]
    b = store.create_backfill(job.id, slots, 2)
    assert (b["slots"], b["started"], b["state"], b["runs"]) == (5, 2, "running", {"queued": 2})
    seen = []
    while (active := [r for r in store.active_runs() if r.backfill_id == b["id"]]):
        assert len(active) <= 2 and {r.trigger for r in active} == {"backfill"}
        run = active[0]
        seen.append(run.scheduled_for)
        assert store.attach_run(run.id, 1, None, "h")
        store.finish_run(run.id, "succeeded", 0)  # the next slot is queued in this commit
        # ... and the supervisor that ended a run takes it on (a ticker then finds it taken)
        for taken in store.take_next(run.id):
            assert store.get_run(taken).backfill_id == b["id"] and not store.dispatch(taken)
    assert sorted(seen) == slots
    done = store.get_backfill(b["id"])
    assert (done["state"], done["runs"]) == ("done", {"succeeded": 5})
    clock.advance(1)
    assert store.create_backfill(job.id, slots, 2)["slots"] == 0  # every slot has run
    listed = store.list_backfills("bf")
    assert [x["slots"] for x in listed] == [0, 5]  # newest first
    assert listed[1]["id"] == b["id"] and listed[1]["state"] == "done"
    with pytest.raises(NotFound):
        store.list_backfills("no-such-job")


def test_a_cancelled_backfill_starts_nothing_more(store, clock):
    job = make_job(store, "bf2", "@daily")
    b = store.create_backfill(job.id, [1_700_000_000.0 + 86400 * i for i in range(4)], 1)
    out = store.cancel_backfill(b["id"])
    assert (out["state"], out["runs"]) == ("cancelled", {"cancelled": 1})
    assert [r for r in store.active_runs() if r.backfill_id == b["id"]] == []
    with pytest.raises(NotFound):
        store.get_backfill("b_0000000000000000")


def test_a_pipeline_fans_in_once_per_slot_and_follows_failures(store, clock):
    a, b = make_job(store, "a", "@daily"), make_job(store, "b", "@daily")
    c = make_job(store, "c", "@yearly", after=[{"job": a.id}, {"job": b.id}])
    on_fail = make_job(store, "alert", "@yearly", after=[{"job": a.id, "on": "failure"}])
    ra, rb = store.request_run("a"), store.request_run("b")
    assert ra.scheduled_for == rb.scheduled_for  # the same slot

    def end(run, status):
        assert store.attach_run(run.id, 1, None, "h")
        store.finish_run(run.id, status, 0 if status == "succeeded" else 1)

    end(ra, "succeeded")
    assert store.list_runs(c.id).items == []  # b has not run for this slot yet
    end(rb, "succeeded")
    [down] = store.list_runs(c.id).items
    assert (down.trigger, down.scheduled_for) == ("upstream", ra.scheduled_for)
    # the upstream's supervisor takes it on at once, once; a ticker then finds it taken
    assert store.take_next(rb.id) == [down.id]
    assert store.take_next(rb.id) == [] and not store.dispatch(down.id)
    got = store.get_run(down.id).spec["upstream"]
    assert {u["run_id"] for u in got} == {ra.id, rb.id}
    assert store.list_runs(on_fail.id).items == []  # a succeeded: no alert

    clock.advance(60)
    ra2 = store.request_run("a")
    end(ra2, "failed")
    [alert] = store.list_runs(on_fail.id).items
    assert store.get_run(alert.id).spec["upstream"][0]["status"] == "failed"
    assert len(store.list_runs(c.id).items) == 1  # c runs after successes only


def test_a_fan_in_counts_each_upstreams_last_run_for_the_slot(store, clock):
    """An upstream that has two ended runs for one slot (its backfilled slot failed,
    then was backfilled again and succeeded: both attempt 1) counts the last to end
    (policy.fan_in), so the fan-in runs for that slot, once."""
    a, b = make_job(store, "a", "@daily"), make_job(store, "b", "@daily")
    c = make_job(store, "c", "@yearly", after=[{"job": a.id}, {"job": b.id}])
    slot = 1_700_006_400.0

    def backfill_once(job, status):
        bf = store.create_backfill(job.id, [slot], 1)
        [run] = [r for r in store.active_runs() if r.backfill_id == bf["id"]]
        _run_to_end(store, run, status, 0 if status == "succeeded" else 1)
        clock.advance(1)
        return run

    backfill_once(b, "failed")
    b_ok = backfill_once(b, "succeeded")
    assert store.list_runs(c.id).items == []  # a has not run for this slot yet
    a_ok = backfill_once(a, "succeeded")
    [down] = store.list_runs(c.id).items
    assert (down.trigger, down.scheduled_for) == ("upstream", slot)
    assert [u["run_id"] for u in store.get_run(down.id).spec["upstream"]] == [a_ok.id, b_ok.id]
