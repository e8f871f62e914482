"""The ``Outbox`` contract: deliveries planned from the event log once (the cursor moves
in the planning transaction, with any number of planners), leased to one sender per
destination, retried with backoff for a day, listed masked, collected; and the late
watch, which raises ``run.late`` once per slot with no successful run.

Every test runs against every store (SQLite and PostgreSQL), on a fake clock.
"""

from __future__ import annotations

import json
import threading

from hermes_cron_ext.domain.jobspec import validate_changes
from hermes_cron_ext.domain.models import iso
from hermes_cron_ext.domain.policy import MAX_AGE
from hermes_cron_ext.runtime.notify import Planner
from hermes_cron_ext.store.outbox import LATE_CAP
from tests.conftest import make_job
from tests.store.contract import EVERY_BACKEND, T0, run_to_end

pytestmark = EVERY_BACKEND

HOOK = "json://hooks.example.com/a?token=s3cret"
MAIL = "mailto://alice:hunter2@smtp.example.com?to=bob@example.com"
SECRETS = ("s3cret", "hunter2", "alice", "bob@")


def notified_job(store, name="nightly", notify=(HOOK,), **extra):
    """A job whose failures go to *notify*; it runs on demand, any number at once."""
    return make_job(store, name, "@daily", notify=list(notify), overlap="allow",
                    max_failures=0, **extra)


def fail(store, job, reason="exit code 1: boom"):
    run = store.request_run(job.name)
    run_to_end(store, run, "failed", 1, reason)
    return run


def plan(store, **kw):
    return store.plan_deliveries(Planner(store, **kw).plan)


def started(store):
    """Start the ``notify`` consumer (it begins at the newest event)."""
    assert plan(store) == 0


def deliveries(store, **kw):
    return store.list_deliveries(limit=1000, **kw).items


# -- planning ------------------------------------------------------------------------

def test_a_failed_run_becomes_one_delivery_per_destination(store):
    job = notified_job(store, notify=(HOOK, MAIL))
    started(store)
    run = fail(store, job)
    assert plan(store) == 2
    rows = deliveries(store)
    assert sorted(r["channel"] for r in rows) == ["apprise", "apprise"]
    assert {(r["event"], r["job_id"], r["job"], r["run_id"], r["status"]) for r in rows} == {
        ("failure", job.id, "nightly", run.id, "pending")}
    assert all(r["title"] == "hermes-cron: nightly failed" for r in rows)
    claimed = store.claim_deliveries(HOOK, "s1", store.clock(), 60)
    assert [c["destination"] for c in claimed] == [HOOK]
    body = claimed[0]["message"]["body"]
    assert "Job: nightly" in body and f"Run: {run.id}" in body and "boom" in body
    # a succeeded run makes none by default (opt-in), a recovery does
    ok = store.request_run(job.name)
    run_to_end(store, ok)
    assert plan(store) == 2
    assert sorted(r["event"] for r in deliveries(store)) == ["failure"] * 2 + ["recovered"] * 2


def test_a_recovery_told_twice_by_the_log_is_one_message(store):
    """A run that succeeds after a failure that alerted: ``run.finished`` (recovered)
    and ``run.recovered`` (its rules pass again) are one "recovered" per destination."""
    job = notified_job(store, alerts=["exit_code > 0"])
    started(store)
    fail(store, job)
    ok = store.request_run(job.name)
    run_to_end(store, ok)
    types = [e.type for e in store.events_since(0, limit=1000) if e.run_id == ok.id]
    assert "run.recovered" in types and "run.finished" in types
    plan(store)
    kinds = sorted((r["event"], r["run_id"]) for r in deliveries(store))
    assert ("recovered", ok.id) in kinds and kinds.count(("recovered", ok.id)) == 1


def test_the_first_failure_is_notified_though_no_ticker_ran_yet(store):
    """The notify cursor starts with the store (schema 12): a failure before any ticker
    planned anything is still notified; a new consumer of another name starts at the
    newest event (history is not replayed to it)."""
    job = notified_job(store)
    fail(store, job)  # before anyone planned
    assert plan(store) == 1
    assert len(deliveries(store)) == 1 and store.next_delivery_at() is not None
    fail(store, job)
    assert plan(store) == 1
    # another consumer is a cursor of its own, starting at the newest event
    assert store.plan_deliveries(Planner(store).plan, consumer="other") == 0
    assert store.plan_deliveries(Planner(store).plan, consumer="other") == 0


def test_the_cursor_moves_with_the_rows_written(store, clock):
    job = notified_job(store)
    started(store)
    fail(store, job)
    assert plan(store) == 1
    assert plan(store) == 0  # the same events are not planned again
    assert len(deliveries(store)) == 1
    # events no destination wants move the cursor too (nothing to write)
    store.request_run(job.name)
    assert plan(store) == 0
    fail(store, job)
    assert plan(store) == 1 and len(deliveries(store)) == 2
    assert store.next_delivery_at() == clock()


def test_a_planner_sees_each_event_once_in_batches(store):
    job = notified_job(store)
    started(store)
    for _ in range(3):
        fail(store, job)
    seen: list[int] = []

    def planner(events):
        seen.extend(e.seq for e in events)
        return []
    for _ in range(20):
        store.plan_deliveries(planner, limit=2)
        if seen and seen[-1] == store.last_event_seq():
            break
    assert seen == sorted(set(seen)) and seen[-1] == store.last_event_seq()


def test_concurrent_planners_write_each_delivery_once(store, open_test_store, clock):
    job = notified_job(store, notify=(HOOK, MAIL))
    started(store)
    for _ in range(4):
        fail(store, job)
    others = [open_test_store(clock=clock) for _ in range(3)]
    barrier = threading.Barrier(len(others))
    written: list[int] = []
    errors: list[BaseException] = []

    def work(s):
        try:
            barrier.wait()
            written.append(plan(s))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(s,)) for s in others]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert sorted(written) == [0, 0, 8]
    rows = deliveries(store)
    assert len(rows) == 8 and len({(r["run_id"], r["destination"]) for r in rows}) == 8


def test_the_unique_key_keeps_one_row_per_notification_and_destination(store):
    job = notified_job(store)
    started(store)
    run = fail(store, job)

    def twice(events):
        one = {"event_seq": events[-1].seq, "dedupe": f"failure:{run.id}", "kind": "failure",
               "job_id": job.id, "job_name": job.name, "run_id": run.id,
               "channel": "apprise", "queue": HOOK, "destination": HOOK, "shown": "hook",
               "message": {"title": "t", "body": "b", "type": "failure"}}
        return [one, dict(one), {**one, "channel": "webhook"}]
    assert store.plan_deliveries(twice) == 2
    assert sorted(r["channel"] for r in deliveries(store)) == ["apprise", "webhook"]


# -- leases ---------------------------------------------------------------------------

def test_a_lease_is_one_senders_until_it_expires(store, clock):
    job = notified_job(store, notify=(HOOK, MAIL))
    started(store)
    fail(store, job)
    fail(store, job)
    assert plan(store) == 4
    now = clock()
    assert sorted(store.due_queues(now)) == sorted([HOOK, MAIL])
    mine = store.claim_deliveries(HOOK, "s1", now, 60)
    assert len(mine) == 2 and mine[0]["id"] < mine[1]["id"]  # oldest first
    assert {c["channel"] for c in mine} == {"apprise"} and mine[0]["attempts"] == 0
    assert store.claim_deliveries(HOOK, "s2", now, 60) == []
    assert store.due_queues(now) == [MAIL]  # leased: not due for anyone else
    assert store.lease_owners() == ["s1"]
    assert [r["status"] for r in deliveries(store, status="sending")] == ["sending"] * 2
    # a non-holder's outcome writes nothing
    assert store.delivery_done(mine[0]["id"], "s2", now, ok=True) is None
    assert deliveries(store, status="sent") == []
    # the lease expires (a lease is live until, not at, its end): another sender takes
    # the rows, the first one's word is void
    clock.advance(60)
    assert store.lease_owners() == [] and HOOK in store.due_queues(clock())
    assert store.list_deliveries(status="sending").items == []
    theirs = store.claim_deliveries(HOOK, "s2", clock(), 60)
    assert [c["id"] for c in theirs] == [c["id"] for c in mine]
    assert store.delivery_done(mine[0]["id"], "s1", clock(), ok=True) is None
    assert store.lease_owners() == ["s2"]
    # a dead sender's leases are ended at once
    assert store.expire_leases("s2") == 2
    assert store.lease_owners() == [] and HOOK in store.due_queues(clock())
    again = store.claim_deliveries(HOOK, "s3", clock(), 60, limit=1)
    assert [c["id"] for c in again] == [mine[0]["id"]]


def test_one_destinations_messages_go_in_order(store, clock):
    job = notified_job(store, notify=(HOOK, MAIL))
    started(store)
    for _ in range(3):
        fail(store, job)
    plan(store)
    # the oldest is being sent: nobody takes the ones behind it
    (head,) = store.claim_deliveries(HOOK, "s1", clock(), 60, limit=1)
    assert store.claim_deliveries(HOOK, "s2", clock(), 60) == []
    assert store.due_queues(clock()) == [MAIL]
    # it failed: the destination waits for its retry, whole
    assert store.delivery_done(head["id"], "s1", clock(), ok=False, error="503") == "pending"
    assert store.due_queues(clock()) == [MAIL]
    assert store.claim_deliveries(HOOK, "s2", clock(), 60) == []
    mail = store.claim_deliveries(MAIL, "s2", clock(), 60)
    for row in mail:
        store.delivery_done(row["id"], "s2", clock(), ok=True)
    assert store.next_delivery_at() == clock() + 5  # the retry, not the ones behind it
    clock.advance(5)
    assert store.due_queues(clock()) == [HOOK]
    rows = store.claim_deliveries(HOOK, "s2", clock(), 60)
    assert [r["id"] for r in rows][0] == head["id"] and len(rows) == 3
    assert [r["attempts"] for r in rows] == [1, 0, 0]


def test_released_deliveries_are_due_again(store, clock):
    job = notified_job(store)
    started(store)
    fail(store, job)
    plan(store)
    (row,) = store.claim_deliveries(HOOK, "s1", clock(), 60)
    store.release_deliveries("s2", [row["id"]])  # not its lease: nothing happens
    assert store.claim_deliveries(HOOK, "s2", clock(), 60) == []
    store.release_deliveries("s1", [])
    store.release_deliveries("s1", [row["id"]])
    assert store.lease_owners() == [] and store.due_queues(clock()) == [HOOK]
    assert [c["id"] for c in store.claim_deliveries(HOOK, "s2", clock(), 60)] == [row["id"]]


def test_sent_is_final(store, clock):
    job = notified_job(store)
    started(store)
    fail(store, job)
    plan(store)
    (row,) = store.claim_deliveries(HOOK, "s1", clock(), 60)
    clock.advance(2)
    assert store.delivery_done(row["id"], "s1", clock(), ok=True) == "sent"
    (shown,) = deliveries(store)
    assert shown["status"] == "sent" and shown["sent_at"] == iso(clock())
    assert shown["attempts"] == 1 and shown["next_attempt_at"] is None
    assert store.delivery_done(row["id"], "s1", clock(), ok=False) is None
    assert store.due_queues(clock()) == [] and store.next_delivery_at() is None
    assert store.claim_deliveries(HOOK, "s1", clock(), 60) == []


def test_a_failed_try_is_retried_with_doubling_delays(store, clock):
    job = notified_job(store)
    started(store)
    fail(store, job)
    plan(store)
    delays = []
    for _ in range(4):
        (row,) = store.claim_deliveries(HOOK, "s1", clock(), 60)
        assert store.delivery_done(row["id"], "s1", clock(), ok=False,
                                   error="HTTP 503") == "pending"
        due = store.next_delivery_at()
        delays.append(due - clock())
        # not due yet: not a queue, nothing to claim
        assert store.due_queues(due - 0.5) == []
        assert store.claim_deliveries(HOOK, "s1", due - 0.5, 60) == []
        clock.now = due
    assert delays == [5, 10, 20, 40]
    (shown,) = deliveries(store)
    assert shown["status"] == "pending" and shown["attempts"] == 4
    assert shown["last_error"] == "HTTP 503" and shown["next_attempt_at"] == iso(clock())
    # the sender's first delay sets the scale
    (row,) = store.claim_deliveries(HOOK, "s1", clock(), 60)
    store.delivery_done(row["id"], "s1", clock(), ok=False, first_delay=1)
    assert store.next_delivery_at() == clock() + 16  # the 5th try: 1 s * 2**4


def test_a_delivery_is_given_up_a_day_after_it_was_made(store, clock):
    job = notified_job(store, notify=(HOOK, MAIL))
    started(store)
    fail(store, job)
    plan(store)
    made = clock()
    clock.now = made + 86400 - 10
    (row,) = store.claim_deliveries(HOOK, "s1", clock(), 60)
    assert store.delivery_done(row["id"], "s1", clock(), ok=False, error="down") == "pending"
    assert store.next_delivery_at() == made  # the other destination's, never tried
    clock.advance(5)  # the retry of the first, 5 s before the day is over
    (row,) = store.claim_deliveries(HOOK, "s1", clock(), 60)
    assert store.delivery_done(row["id"], "s1", clock(), ok=False, error="down") == "failed"
    # a refusal no retry changes is final at once
    (other,) = store.claim_deliveries(MAIL, "s1", clock(), 60)
    assert store.delivery_done(other["id"], "s1", clock(), ok=False, error="401",
                               final=True) == "failed"
    rows = deliveries(store)
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert {r["last_error"] for r in rows} == {"down", "401"}
    assert all(r["next_attempt_at"] is None for r in rows)
    assert store.next_delivery_at() is None and store.due_queues(clock() + 1e6) == []
    assert store.delivery_counts() == {"failed": 2}


def test_deliveries_are_listed_newest_first_masked_and_filtered(store, clock):
    a = notified_job(store, "a", notify=(HOOK, MAIL))
    b = notified_job(store, "b", notify=(HOOK,))
    started(store)
    for _ in range(3):
        fail(store, a)
        fail(store, b)
        clock.advance(1)
    assert plan(store) == 9
    everything = deliveries(store)
    ids = [r["id"] for r in everything]
    assert ids == sorted(ids, reverse=True) and len(ids) == 9
    seen, cursor = [], None
    while True:
        page = store.list_deliveries(limit=4, cursor=cursor)
        seen += [r["id"] for r in page.items]
        if page.cursor is None:
            break
        cursor = int(page.cursor)
    assert seen == ids
    text = json.dumps(everything)
    assert not any(secret in text for secret in SECRETS)
    assert {r["destination"] for r in everything} == {
        r["destination"] for r in deliveries(store, job_ids=[a.id])}
    assert len({r["destination"] for r in everything}) == 2
    assert {r["job"] for r in deliveries(store, job_ids=[b.id])} == {"b"}
    assert len(deliveries(store, job_ids=[b.id])) == 3
    assert store.list_deliveries(job_ids=[]).items == []
    # statuses: sending is pending and leased
    taken = store.claim_deliveries(MAIL, "s1", clock(), 60)
    store.delivery_done(taken[0]["id"], "s1", clock(), ok=True)
    store.delivery_done(taken[1]["id"], "s1", clock(), ok=False, final=True)
    assert [r["id"] for r in deliveries(store, status="sent")] == [taken[0]["id"]]
    assert [r["id"] for r in deliveries(store, status="failed")] == [taken[1]["id"]]
    assert [r["id"] for r in deliveries(store, status="sending")] == [taken[2]["id"]]
    assert len(deliveries(store, status="pending")) == 7
    assert len(deliveries(store, status="sending", job_ids=[b.id])) == 0
    assert store.delivery_counts() == {"pending": 7, "sent": 1, "failed": 1}
    # once its lease is over it shows pending again
    later = store.list_deliveries(status="pending", now=clock() + 61, limit=100).items
    assert {r["status"] for r in later} == {"pending"}


def test_gc_deletes_old_finished_deliveries_and_keeps_pending_ones(store, clock):
    job = notified_job(store, notify=(HOOK, MAIL))
    started(store)
    fail(store, job)
    plan(store)
    (sent,) = store.claim_deliveries(HOOK, "s1", clock(), 60)
    store.delivery_done(sent["id"], "s1", clock(), ok=True)
    store.gc(clock() + MAX_AGE - 10)
    assert store.delivery_counts() == {"pending": 1, "sent": 1}
    store.gc(clock() + MAX_AGE + 10)
    assert store.delivery_counts() == {"pending": 1}
    assert [r["destination"] for r in deliveries(store)] != []


# -- the late watch --------------------------------------------------------------------

def late_events(store, cursor):
    return [e for e in store.events_since(cursor, limit=10000) if e.type == "run.late"]


def watched(store, name="etl", schedule="*/5 * * * *", late_after="1m", **extra):
    """A job watched from its first slot, T0 + 5 min (late at T0 + 6 min)."""
    return make_job(store, name, schedule, late_after=late_after, **extra)


def test_a_slot_nothing_fired_is_late_once_after_late_after(store, clock):
    job = watched(store)
    cursor = store.last_event_seq()
    assert store.next_late_check() == T0 + 360
    assert store.check_late(T0 + 359) == 0
    assert store.check_late(T0 + 360) == 1
    assert store.check_late(T0 + 360) == 0
    (event,) = late_events(store, cursor)
    assert event.job_id == job.id and event.run_id is None
    assert event.data["job"] == "etl"
    assert event.data["scheduled_for"] == iso(T0 + 300)
    assert event.data["late_after"] == 60
    assert event.data["status"] is None
    assert "no run of this slot within 1 minute" in event.data["reason"]
    assert "earlier_late" not in event.data
    assert store.next_late_check() == T0 + 660  # the next slot


def test_a_slot_that_succeeded_in_time_is_not_late(store, clock):
    watched(store)
    cursor = store.last_event_seq()
    clock.now = T0 + 300
    (run,) = store.claim_due(clock(), clock(), "t")
    assert run.scheduled_for == T0 + 300
    clock.advance(30)
    run_to_end(store, run)
    assert store.check_late(T0 + 400) == 0
    assert late_events(store, cursor) == []
    assert store.next_late_check() == T0 + 660


def test_a_run_still_running_past_the_limit_is_late_and_goes_on(store, clock):
    job = watched(store, "slow")
    cursor = store.last_event_seq()
    clock.now = T0 + 300
    (run,) = store.claim_due(clock(), clock(), "t")
    store.attach_run(run.id, 1, None, "h")
    store.mark_running(run.id, clock(), 2)
    clock.now = T0 + 360
    assert store.check_late(clock()) == 1
    (event,) = late_events(store, cursor)
    assert event.run_id == run.id and event.data["status"] == "running"
    assert "still running" in event.data["reason"]
    assert store.get_run(run.id).status == "running"
    assert store.get_job(job.id).display_state == "running"
    # it ends well, too late: nothing more for that slot
    store.finish_run(run.id, "succeeded", 0)
    assert store.check_late(T0 + 400) == 0 and len(late_events(store, cursor)) == 1


def test_a_one_shot_job_is_late_though_it_is_done_firing(store, clock):
    """An ``@at`` job is disabled once its one slot fired (no more fire times): that
    slot still owes a successful run, so it can be late."""
    job = make_job(store, "once", None, at=iso(T0 + 300), late_after="1s")
    cursor = store.last_event_seq()
    clock.now = T0 + 300
    (run,) = store.claim_due(clock(), clock(), "t")
    store.attach_run(run.id, 1, None, "h")
    store.mark_running(run.id, clock(), 2)
    assert store.check_late(T0 + 301) == 1
    (event,) = late_events(store, cursor)
    assert event.job_id == job.id and event.run_id == run.id
    assert event.data["reason"] == "its run is still running 1 second after the slot"


def test_a_failed_run_retrying_past_the_limit_is_late(store, clock):
    job = watched(store, "flaky", retries=2, retry_delay=120)
    cursor = store.last_event_seq()
    clock.now = T0 + 300
    (run,) = store.claim_due(clock(), clock(), "t")
    clock.advance(10)
    run_to_end(store, run, "failed", 1, "exit code 1")
    assert store.check_late(T0 + 360) == 1
    (event,) = late_events(store, cursor)
    assert event.job_id == job.id and event.data["scheduled_for"] == iso(T0 + 300)
    assert event.data["status"] == "queued"  # the newest attempt: its retry
    assert "still queued" in event.data["reason"]
    retry = [r for r in store.list_runs(job.id, limit=10).items if r.attempt == 2]
    assert retry and retry[0].status == "queued"  # the retry goes on untouched


def test_late_is_raised_once_with_two_stores_checking(store, open_test_store, clock):
    watched(store, "a")
    watched(store, "b", schedule="@every 2m")
    cursor = store.last_event_seq()
    others = [open_test_store(clock=clock) for _ in range(2)]
    barrier = threading.Barrier(len(others))
    raised: list[int] = []
    errors: list[BaseException] = []

    def work(s):
        try:
            barrier.wait()
            raised.append(s.check_late(T0 + 700))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(s,)) for s in others]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert sum(raised) == 7  # a: T0+5m and T0+10m; b: T0+2m ... T0+10m
    assert store.check_late(T0 + 700) == 0
    got = sorted((e.data["job"], e.data["scheduled_for"]) for e in late_events(store, cursor))
    assert got == [("a", iso(T0 + 300)), ("a", iso(T0 + 600)),
                   *[("b", iso(T0 + 120 * k)) for k in range(1, 6)]]


def test_a_paused_or_disabled_job_is_never_late_and_its_watch_moves_on(store, clock):
    paused = watched(store, "p")
    off = watched(store, "off")
    store.set_paused(paused.id, True)
    store.update_job(off.id, validate_changes(off, {"enabled": False}))
    cursor = store.last_event_seq()
    assert store.check_late(T0 + 3600) == 0
    assert late_events(store, cursor) == []
    assert store.next_late_check() > T0 + 3600
    # resumed: its slots are watched again
    clock.now = T0 + 3600
    store.set_paused(paused.id, False)
    assert store.check_late(T0 + 3900 + 60) >= 1
    assert [e.data["job"] for e in late_events(store, cursor)][-1] == "p"
    assert store.get_job(paused.id).display_state == "scheduled"


def test_slots_of_a_pause_are_not_late_after_the_resume(store, clock):
    paused = watched(store, "p")
    off = watched(store, "off")
    store.set_paused(paused.id, True)
    off = store.update_job(off.id, validate_changes(off, {"enabled": False}))
    store.check_late(T0 + 3600)
    cursor = store.last_event_seq()
    clock.now = T0 + 3600  # the slot of T0 + 1 h passed while paused or disabled
    store.set_paused(paused.id, False)
    store.update_job(off.id, validate_changes(off, {"enabled": True}))
    assert store.check_late(T0 + 3600 + 359) == 0
    assert late_events(store, cursor) == []


def test_a_long_outage_raises_the_newest_slots_and_counts_the_rest(store, clock):
    watched(store)
    cursor = store.last_event_seq()
    now = T0 + 86400
    assert store.check_late(now) == LATE_CAP
    events = late_events(store, cursor)
    # slots T0 + k*5min for k = 1..287 were late by now (k = 288 is not yet)
    slots = [T0 + 300 * k for k in range(288 - LATE_CAP, 288)]
    assert [e.data["scheduled_for"] for e in events] == [iso(s) for s in slots]
    assert events[0].data["earlier_late"] == 287 - LATE_CAP
    assert all("earlier_late" not in e.data for e in events[1:])
    assert store.check_late(now) == 0
    assert store.next_late_check() == T0 + 300 * 288 + 60


def test_a_month_without_a_ticker_on_a_per_second_job_raises_the_newest_once(store, clock):
    """Millions of late slots: one pass reads the newest only and counts the rest."""
    watched(store, "fast", "@every 1s", late_after="10s")
    cursor = store.last_event_seq()
    now = T0 + 30 * 86400
    assert store.check_late(now) == LATE_CAP
    events = late_events(store, cursor)
    newest = [int(now) - 10 - k for k in reversed(range(LATE_CAP))]
    assert [e.data["scheduled_for"] for e in events] == [iso(s) for s in newest]
    # every slot from T0 + 1 s to the newest late one, less those raised
    assert events[0].data["earlier_late"] == newest[-1] - T0 - LATE_CAP
    assert store.check_late(now) == 0 and store.next_late_check() == now + 1


def test_a_blocked_job_is_not_late_again_after_it_said_blocked(store, clock):
    job = watched(store)
    store.db.execute("UPDATE jobs SET state = 'blocked', state_reason = 'x' WHERE id = ?",
                     (job.id,))
    store.db.commit() if hasattr(store.db, "commit") else None
    cursor = store.last_event_seq()
    assert store.check_late(T0 + 3600) == 0
    assert late_events(store, cursor) == []


def test_earlier_late_counts_only_slots_with_no_successful_run(store, clock):
    watched(store)
    clock.now = T0 + 300
    (run,) = store.claim_due(clock(), clock(), "t")
    run_to_end(store, run)  # then no ticker for a day, nothing checked
    cursor = store.last_event_seq()
    assert store.check_late(T0 + 86400) == LATE_CAP
    events = late_events(store, cursor)
    assert events[0].data["earlier_late"] == 286 - LATE_CAP


def test_editing_the_timing_replans_the_watch_from_now(store, clock):
    job = watched(store)
    clock.now = T0 + 1000  # slots T0+5m, 10m, 15m went unrun and unchecked
    edited = store.update_job(job.id, validate_changes(job, {"schedule": "*/10 * * * *"}))
    assert store.next_late_check() == T0 + 1200 + 60
    assert store.check_late(clock()) == 0
    clock.now = T0 + 2000
    edited = store.update_job(job.id, validate_changes(edited, {"late_after": "30m"}))
    assert edited.policy.late_after == 1800
    assert store.next_late_check() == T0 + 2400 + 1800
    assert store.check_late(clock()) == 0
    # an edit of something else keeps the watch's place: the past is still checked
    clock.now = T0 + 2400 + 1800
    store.update_job(job.id, validate_changes(edited, {"command": "echo hi"}))
    assert store.next_late_check() == T0 + 2400 + 1800
    assert store.check_late(clock()) == 1


def test_removing_late_after_or_the_job_stops_the_watch(store, clock):
    job = watched(store, "a")
    other = watched(store, "b")
    assert store.next_late_check() == T0 + 360
    store.update_job(job.id, validate_changes(job, {"late_after": None}))
    assert store.get_job(job.id).policy.late_after is None
    assert store.next_late_check() == T0 + 360  # b still
    store.delete_job(other.id)
    assert store.next_late_check() is None
    assert store.check_late(T0 + 86400) == 0
    # a job with no schedule of its own (it runs after another) has no watch
    make_job(store, "downstream", None, late_after="1m", after=[{"job": "a"}])
    assert store.next_late_check() is None


def test_a_late_slot_becomes_a_late_notification(store, clock):
    job = watched(store, notify=[HOOK])
    started(store)
    store.check_late(T0 + 360)
    assert plan(store) == 1
    (row,) = deliveries(store)
    assert row["event"] == "late" and row["job_id"] == job.id and row["run_id"] is None
    assert row["title"] == "hermes-cron: etl is late"
    (msg,) = store.claim_deliveries(HOOK, "s1", clock(), 60)
    assert "No successful run within 1 min of its slot" in msg["message"]["body"]
    assert iso(T0 + 300) in msg["message"]["body"]
