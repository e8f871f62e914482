"""The ``RunLedger`` contract: a run's life (queued, dispatched once, attached by one
supervisor, running, heartbeats, one final status, cancelled, lost) and what its end
causes in the same transaction (the job's summary, retries, the circuit breaker, the
runs of jobs after it); the rows the start and waiting rules read; run pages; gc.

Every test runs against every store (SQLite and PostgreSQL), on a fake clock.
"""

from __future__ import annotations

import json

import pytest

from hermes_cron_ext.domain.jobspec import validate_changes
from hermes_cron_ext.errors import Conflict, InvalidInput, NotFound
from tests.conftest import make_job
from tests.store.contract import EVERY_BACKEND, run_to_end

pytestmark = EVERY_BACKEND

NO_RUN = "r_0000000000000000"


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


def test_forbid_overlap_refuses_manual_run(store):
    make_job(store, "busy", "* * * * *")
    run = store.request_run("busy")
    store.attach_run(run.id, 1, None, "h")
    store.mark_running(run.id, store.clock(), 2)
    with pytest.raises(Conflict) as err:
        store.request_run("busy")
    assert "forbid" in err.value.message


def test_cancel_before_start(store):
    make_job(store, "x", "* * * * *")
    run = store.request_run("x")
    assert store.request_cancel(run.id).status == "cancelled"
    with pytest.raises(Conflict):
        store.request_cancel(run.id)


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
        run_to_end(store, store.request_run("flaky"), "failed", 1, f"exit code 1: err {i}")
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
    run_to_end(store, first, "failed", 1)
    retry = store.list_runs("r").items[0]
    assert (retry.trigger, retry.attempt, retry.status) == ("retry", 2, "queued")
    assert 8 <= retry.fire_at - clock() <= 12
    clock.advance(13)
    claimed = store.claim_due(clock() + 1, clock(), "t")
    assert [r.id for r in claimed] == [retry.id]
    run_to_end(store, claimed[0], "failed", 1)
    third = store.list_runs("r").items[0]
    assert third.attempt == 3 and 16 <= third.fire_at - clock() <= 24
    run_to_end(store, third, "failed", 1)
    assert store.list_runs("r").items[0].id == third.id  # no fourth attempt
    assert store.get_job("r").consecutive_failures == 1  # one failed run after retries


def test_timed_out_not_retried_unless_asked(store):
    make_job(store, "t", "* * * * *", retries=1)
    run_to_end(store, store.request_run("t"), "timed_out", 143)
    assert len(store.list_runs("t").items) == 1


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
        run_to_end(store, run, status, 0 if status == "succeeded" else 1)
        clock.advance(1)
        return run

    backfill_once(b, "failed")
    b_ok = backfill_once(b, "succeeded")
    assert store.list_runs(c.id).items == []  # a has not run for this slot yet
    a_ok = backfill_once(a, "succeeded")
    [down] = store.list_runs(c.id).items
    assert (down.trigger, down.scheduled_for) == ("upstream", slot)
    assert [u["run_id"] for u in store.get_run(down.id).spec["upstream"]] == [a_ok.id, b_ok.id]


def test_gc_keeps_limits_and_never_active(store, clock):
    make_job(store, "g", "* * * * *", overlap="allow")
    statuses = ["succeeded"] * 8 + ["failed"] * 4 + ["succeeded"] * 8
    for st in statuses:
        run_to_end(store, store.request_run("g"), st, 0 if st == "succeeded" else 1)
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
    run_to_end(store, store.request_run("old"))
    clock.advance(31 * 86400)
    run_to_end(store, store.request_run("old"))
    store.gc(clock())
    assert len(store.list_runs("old").items) == 1


def test_calls_about_a_missing_run_answer_or_raise_as_the_interface_says(store):
    """A supervisor's calls answer for a run that is gone (it stops); a viewer's raise."""
    assert store.attach_run(NO_RUN, 1, None, "h") is False
    assert store.mark_running(NO_RUN, store.clock(), 2) is False
    assert store.heartbeat_run(NO_RUN, store.clock(), None, None, 0) is True  # stop
    assert store.mark_lost(NO_RUN, "gone", None) is False
    assert store.dispatch(NO_RUN) is False and store.take_next(NO_RUN) == []
    assert store.running_others(NO_RUN) == [] and store.run_secrets(NO_RUN) == {}
    assert store.catchup_ahead(NO_RUN) is None and store.turn_ahead(NO_RUN) is None
    for call in (lambda: store.get_run(NO_RUN), lambda: store.check_start(NO_RUN),
                 lambda: store.finish_run(NO_RUN, "failed", 1),
                 lambda: store.request_cancel(NO_RUN), lambda: store.request_run("nope"),
                 lambda: store.list_runs("nope")):
        with pytest.raises(NotFound):
            call()
    make_job(store, "j")
    with pytest.raises(InvalidInput):
        store.list_runs("j", status="finished")
    with pytest.raises(InvalidInput):
        store.list_runs("j", cursor="garbage!")


def test_heartbeats_record_progress_and_answer_a_cancel(store, clock):
    make_job(store, "hb", "@yearly")
    run = store.request_run("hb")
    assert store.dispatch(run.id) and not store.dispatch(run.id)  # taken once
    assert store.attach_run(run.id, 1, None, "h") and store.mark_running(run.id, clock(), 2)
    cursor = store.last_event_seq()
    clock.advance(5)
    assert store.heartbeat_run(run.id, clock(), "cell 1 of 3", 0.33, 120) is False
    assert store.heartbeat_run(run.id, clock() + 1, "cell 1 of 3", 0.33, 150) is False
    got = store.get_run(run.id)
    assert (got.heartbeat_at, got.phase, got.progress, got.output_bytes) == (
        clock() + 1, "cell 1 of 3", 0.33, 150)
    assert [e.type for e in store.events_since(cursor)] == ["run.progress"]  # on change only
    assert store.request_cancel(run.id, "stop it").status == "running"  # asked, not ended
    assert store.heartbeat_run(run.id, clock() + 2, None, None, 150) is True
    assert store.finish_run(run.id, "cancelled", -15).reason == "stop it"


def test_running_others_are_the_jobs_other_running_runs_outside_its_backfill(store, clock):
    make_job(store, "par", "@yearly", overlap="allow")
    a, b, waiting = (store.request_run("par") for _ in range(3))
    for run in (a, b):
        assert store.attach_run(run.id, 1, None, "h") and store.mark_running(run.id, clock(), 2)
    assert [r.id for r in store.running_others(a.id)] == [b.id]
    assert {r.id for r in store.running_others(waiting.id)} == {a.id, b.id}
    bf = store.create_backfill("par", [1_700_000_000.0, 1_700_086_400.0], 2)
    mine = [r for r in store.active_runs() if r.backfill_id == bf["id"]]
    for run in mine:
        assert store.attach_run(run.id, 1, None, "h") and store.mark_running(run.id, clock(), 2)
    # a backfill's own runs do not overlap each other; everything else does
    assert {r.id for r in store.running_others(mine[0].id)} == {a.id, b.id}
    assert {r.id for r in store.running_others(a.id)} == {b.id} | {r.id for r in mine}


def test_secrets_are_read_from_the_job_at_start_never_kept_on_the_run(store):
    make_job(store, "sec", "@yearly", env={"A": "1"}, secret_env={"TOKEN": "hunter2"})
    run = store.request_run("sec")
    assert store.run_secrets(run.id) == {"TOKEN": "hunter2"}
    assert "hunter2" not in json.dumps(store.get_run(run.id).spec)
    store.update_job("sec", validate_changes(store.get_job("sec"),
                                             {"secret_env": {"TOKEN": "rotated"}}))
    assert store.run_secrets(run.id) == {"TOKEN": "rotated"}  # the job's value now
    store.delete_job("sec")  # the queued run stays; its job's secrets are gone
    assert store.run_secrets(run.id) == {}


def test_catchups_wait_for_each_other_in_slot_order(store, clock):
    make_job(store, "cu", "*/5 * * * *", misfire="all")
    clock.advance(1000)  # down over three slots: three catch-ups
    first, second, third = sorted(store.claim_due(clock() + 2, clock(), "t"),
                                  key=lambda r: r.scheduled_for)
    assert {r.trigger for r in (first, second, third)} == {"catchup"}
    assert store.catchup_ahead(first.id) is None
    assert store.catchup_ahead(second.id) == store.catchup_ahead(third.id) == first.id
    assert store.attach_run(first.id, 1, None, "h") and store.mark_running(first.id, clock(), 2)
    assert store.catchup_ahead(second.id) == first.id  # running
    store.finish_run(first.id, "succeeded", 0)
    assert store.catchup_ahead(second.id) is None
    assert store.catchup_ahead(third.id) == second.id


def test_stats_count_runs_by_status_and_time_each_job(store, clock):
    make_job(store, "ok", "@yearly", overlap="allow")
    make_job(store, "flaky", "@yearly", overlap="allow")
    make_job(store, "idle", "@yearly")
    for seconds in (2, 4):
        run = store.request_run("ok")
        store.attach_run(run.id, 1, None, "h")
        store.mark_running(run.id, clock(), 2)
        clock.advance(seconds)
        store.finish_run(run.id, "succeeded", 0)
    run_to_end(store, store.request_run("flaky"), "failed", 1)
    run_to_end(store, store.request_run("flaky"), "succeeded", 0)
    store.request_run("flaky")
    stats = store.stats()
    assert stats["jobs_by_state"] == {"scheduled": 3}
    assert stats["runs_by_status"] == {"succeeded": 3, "failed": 1, "queued": 1}
    by_name = {j["name"]: j for j in stats["jobs"]}
    assert list(by_name) == ["flaky", "idle", "ok"]
    assert (by_name["ok"]["succeeded"], by_name["ok"]["failed"],
            by_name["ok"]["success_rate"], by_name["ok"]["mean_duration"],
            by_name["ok"]["max_duration"]) == (2, 0, 1.0, 3.0, 4.0)
    assert (by_name["flaky"]["success_rate"], by_name["flaky"]["mean_duration"]) == (0.5, 0.0)
    assert (by_name["idle"]["succeeded"], by_name["idle"]["success_rate"]) == (0, None)


def test_a_run_is_put_back_only_by_the_pid_that_held_it_before_its_instant(store, clock):
    """``release_run`` (a failover ticker fires a run whose dead agent took it ahead of
    its instant) is fenced like ``mark_lost``: not another pid's run, not once its
    instant has come, not a run asked to be cancelled, not one that started."""
    make_job(store, "fenced", "@every 10s")
    make_job(store, "cancelled", "@every 10s")
    runs = {r.job_name: r for r in store.claim_due(clock() + 20, clock(), "a")}
    for run in runs.values():
        assert store.attach_run(run.id, 4242, None, "here")
    run = runs["fenced"]
    assert not store.release_run(run.id, 4243, clock())  # another pid's
    assert not store.release_run(run.id, 4242, run.fire_at)  # its instant has come
    store.request_cancel(runs["cancelled"].id)
    assert not store.release_run(runs["cancelled"].id, 4242, clock())
    assert store.release_run(run.id, 4242, clock())
    back = store.get_run(run.id)
    assert (back.status, back.pid, back.host, back.dispatched_at) == ("queued", None, None, None)
    assert [r.id for r in store.claim_due(run.fire_at, clock(), "b")] == [run.id]
    assert store.attach_run(run.id, 4244, None, "there")
    assert store.mark_running(run.id, clock(), 4245)
    assert not store.release_run(run.id, 4244, clock())  # started
    assert store.get_run(run.id).status == "running"
