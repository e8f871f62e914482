"""The ``JobStore`` contract: jobs created (names unique, idempotency keys, invalid
input never saved), read by id or name, listed in keyset pages and searched, changed,
paused and deleted; their due slots found (``next_wakeup``, ``count_due``) and claimed
exactly once across tickers, missed slots resolved by the misfire policy, a bad row
blocking only its job; ``@reboot`` jobs fired.

Every test runs against every store (SQLite and PostgreSQL), on a fake clock.
"""

from __future__ import annotations

import threading

import pytest

from hermes_cron_ext.domain.jobspec import validate_changes, validate_new
from hermes_cron_ext.errors import Conflict, InvalidInput, NotFound
from tests.conftest import make_job
from tests.store.contract import EVERY_BACKEND, T0, run_to_end

pytestmark = EVERY_BACKEND


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


def test_delete_keeps_nothing_but_active_runs(store):
    make_job(store, "del", "* * * * *", overlap="allow")
    run_to_end(store, store.request_run("del"))
    active = store.request_run("del")
    store.delete_job("del")
    with pytest.raises(NotFound):
        store.get_job("del")
    assert store.get_run(active.id).status == "queued"
    assert store.check_start(active.id) == "job was deleted"


def test_paused_job_is_not_claimed_and_not_caught_up(store, clock):
    make_job(store, "p", "*/5 * * * *")
    store.set_paused("p", True)
    clock.advance(2000)
    assert store.claim_due(clock() + 2, clock(), "t") == []
    job = store.set_paused("p", False)
    assert job.next_run_at == T0 + 2100  # the next slot after now, nothing caught up
    assert store.list_runs("p").items == []


def test_jobs_by_state_counts_without_reading_runs(store):
    make_job(store, "on")
    make_job(store, "off")
    store.set_paused("off", True)
    store.request_run("on")
    assert store.jobs_by_state() == {"scheduled": 1, "paused": 1}
    assert store.stats()["jobs_by_state"] == store.jobs_by_state()


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
    run_to_end(store, claimed[0])
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


def test_bad_stored_schedule_blocks_only_that_job(store, clock):
    make_job(store, "good", "* * * * *")
    make_job(store, "bad", "* * * * *")
    store.db.execute("UPDATE jobs SET schedule = 'every tuesday-ish' WHERE name = 'bad'")
    clock.advance(60)
    runs = store.claim_due(clock() + 2, clock(), "t")
    assert [r.spec["job_name"] for r in runs] == ["good"]
    assert store.get_job("bad").state == "blocked"


def test_next_wakeup_and_count_due_see_slots_and_pending_runs(store, clock, tmp_path):
    """What a ticker sleeps and sizes its lead by: the earliest instant anything is due,
    and how many slots (notebook jobs' apart) and undispatched runs fall due by then."""
    assert store.next_wakeup() is None and store.count_due(T0 + 3600) == (0, 0)
    make_job(store, "five", "*/5 * * * *")
    make_job(store, "hourly", "0 * * * *")
    notebook = tmp_path / "report.ipynb"
    notebook.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    make_job(store, "nb", "*/10 * * * *", kind="notebook", command=str(notebook))
    assert store.next_wakeup() == T0 + 300
    assert store.count_due(T0 + 299) == (0, 0)
    assert store.count_due(T0 + 300) == (1, 0)
    assert store.count_due(T0 + 600) == (2, 1)
    assert store.count_due(T0 + 3600) == (3, 1)  # each job's next slot, once
    run = store.request_run("hourly")  # queued now, not dispatched yet
    assert store.next_wakeup() == T0
    assert store.count_due(T0) == (1, 0)
    assert store.dispatch(run.id)
    assert store.count_due(T0) == (0, 0) and store.next_wakeup() == T0 + 300
    store.set_paused("five", True)
    assert store.next_wakeup() == T0 + 600 and store.count_due(T0 + 300) == (0, 0)


def test_reboot_jobs_are_fired_when_a_ticker_starts(store, clock):
    make_job(store, "boot", "@reboot")
    make_job(store, "boot-paused", "@reboot")
    store.set_paused("boot-paused", True)
    make_job(store, "daily", "@daily")
    assert store.fire_reboot_jobs(clock()) == 1
    [run] = store.list_runs("boot").items
    assert (run.trigger, run.status, run.scheduled_for) == ("reboot", "queued", clock())
    assert store.list_runs("boot-paused").items == store.list_runs("daily").items == []
    clock.advance(60)
    assert store.fire_reboot_jobs(clock()) == 1  # each ticker start fires them again
    assert len(store.list_runs("boot").items) == 2


# -- owners and shares (a JupyterHub store: access.py) ---------------------------------
def _owned(store, name: str, owner: str, shares: dict | None = None, **extra):
    fields = validate_new({"name": name, "schedule": "@hourly", "command": "true",
                           "shares": shares or {}, **extra}, "UTC", now=T0)
    return store.create_job({**fields, "owner": owner})[0]


def test_names_and_idempotency_keys_are_unique_per_owner(store):
    a = _owned(store, "nightly", "alice", idempotency_key="k")
    b = _owned(store, "nightly", "bob", idempotency_key="k")  # bob's key is his own
    assert a.id != b.id and (a.owner, b.owner) == ("alice", "bob")
    with pytest.raises(Conflict, match="already exists"):
        _owned(store, "nightly", "alice", command="echo again")
    assert store.get_job("nightly", owner="bob").id == b.id
    assert store.get_job("nightly", owner="alice").id == a.id
    with pytest.raises(NotFound):
        store.get_job("nightly", owner="carol")
    with pytest.raises(InvalidInput, match="2 jobs are named 'nightly'.*by its id"):
        store.get_job("nightly")  # the store's own user names neither
    renamed = validate_changes(b, {"name": "other"})
    store.update_job(b.id, renamed)
    x = _owned(store, "x", "alice")
    with pytest.raises(Conflict):  # alice's other job may not take a name she uses
        store.update_job(x.id, validate_changes(x, {"name": "nightly"}))
    store.update_job(x.id, validate_changes(x, {"name": "other"}))  # bob's name: fine
    assert store.get_job(b.id).to_json()["owner"] == "bob"


def test_lists_runs_and_stats_hold_only_what_a_viewer_may_read(store, clock):
    from hermes_cron_ext.domain.access import Viewer
    mine = _owned(store, "mine", "alice")
    shared = _owned(store, "shared", "bob", {"analysts": "read"})
    _owned(store, "secret", "bob")
    for job in (mine, shared, store.get_job("secret", owner="bob")):
        store.request_run(job.id)
    alice = Viewer("alice", frozenset({"analysts"}))
    names = [j.name for j in store.list_jobs(viewer=alice).items]
    assert names == ["mine", "shared"]
    assert [j.name for j in store.list_jobs(viewer=Viewer("alice")).items] == ["mine"]
    assert len(store.list_jobs(viewer=Viewer("root", admin=True)).items) == 3
    assert len(store.list_jobs().items) == 3
    runs = store.list_runs(viewer=alice).items
    assert sorted(r.job_name for r in runs) == ["mine", "shared"]
    assert [j.name for j in store.jobs_named("shared", alice)] == ["shared"]
    assert store.jobs_named("secret", alice) == []
    secret = store.get_job("secret", owner="bob")
    assert store.readable_jobs([mine.id, shared.id, secret.id, "j_gone"], alice) == {
        mine.id, shared.id}
    stats = store.stats(alice)
    assert sorted(j["name"] for j in stats["jobs"]) == ["mine", "shared"]
    assert sum(stats["runs_by_status"].values()) == 2
    assert sum(store.jobs_by_state(alice).values()) == 2
    # one keyset page at a time, names repeating across owners: nothing lost or repeated
    for owner in ("carol", "dave", "erin"):
        _owned(store, "mine", owner)
    seen, cursor = [], None
    while True:
        page = store.list_jobs(limit=2, cursor=cursor)
        seen += [j.id for j in page.items]
        cursor = page.cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 6


def test_shares_follow_the_job_through_edits_and_deletion(store):
    from hermes_cron_ext.domain.access import Viewer
    job = _owned(store, "report", "bob", {"analysts": "execute"})
    carol = Viewer("carol", frozenset({"analysts"}))
    assert store.get_job(job.id).shares == {"analysts": "execute"}
    assert [j.name for j in store.list_jobs(viewer=carol).items] == ["report"]
    store.update_job(job.id, validate_changes(store.get_job(job.id), {"shares": {}}))
    assert store.list_jobs(viewer=carol).items == []
    store.update_job(job.id, validate_changes(store.get_job(job.id),
                                              {"shares": {"ops": "read"}}))
    store.delete_job(job.id)
    assert store.list_jobs(viewer=Viewer("dan", frozenset({"ops"}))).items == []


def test_a_link_to_another_users_job_holds_while_shared_with_what_it_recorded(store, clock):
    """``after`` across owners (``access.link_via``/``link_holds``): a link records the
    groups that shared the upstream with its owner; once none of them does, the upstream's
    runs no longer trigger the job, which is blocked saying why, at once and on resume.
    A link that recorded nothing (saved before) does not hold across owners."""
    def owned(name, owner, after=(), shares=None):
        fields = validate_new({"name": name, "command": "true", "schedule": "@yearly",
                               "shares": shares or {}}, "UTC", now=T0)
        return store.create_job({**fields, "owner": owner, "after": list(after)})[0]

    def end(run):
        assert store.attach_run(run.id, 1, None, "h")
        store.finish_run(run.id, "succeeded", 0)
        clock.advance(60)  # the next manual run is another slot

    def triggered(job):
        return [r.id for r in store.list_runs(job.id).items if r.trigger == "upstream"]

    up = owned("extract", "alice", shares={"analysts": "read"})
    link = {"job": up.id, "on": "success"}
    load = owned("load", "carol", [{**link, "via": ["analysts"]}])
    legacy = owned("legacy", "carol", [link])
    mine = owned("mine", "alice", [link])
    assert store.get_job(load.id).to_json()["after"] == [{**link, "name": "extract"}]
    end(store.request_run(up.id))
    assert len(triggered(load)) == len(triggered(mine)) == 1 and triggered(legacy) == []
    got = store.get_job(legacy.id)
    assert got.state == "blocked" and "save this job's after again" in got.state_reason
    # a change that does not name after keeps what the link recorded
    store.update_job(load.id, validate_changes(store.get_job(load.id), {"description": "x"}))
    end(store.request_run(up.id))
    assert len(triggered(load)) == 2
    # alice shares it with another group only: carol's job is blocked at once, hers is not
    cursor = store.last_event_seq()
    store.update_job(up.id, validate_changes(store.get_job(up.id),
                                             {"shares": {"ops": "read"}}))
    got = store.get_job(load.id)
    assert got.state == "blocked" and got.state_reason.startswith(
        "after: alice's job 'extract' is no longer shared with you")
    assert [(e.type, e.job_id, e.data["reason"]) for e in store.events_since(cursor)
            if e.type == "job.blocked"] == [("job.blocked", load.id, got.state_reason)]
    assert store.get_job(mine.id).state == "scheduled"
    end(store.request_run(up.id))
    assert len(triggered(load)) == 2 and len(triggered(mine)) == 3
    assert store.set_paused(load.id, False).state == "blocked"
    # shared with analysts again: resumed, triggered again
    store.update_job(up.id, validate_changes(store.get_job(up.id),
                                             {"shares": {"analysts": "execute"}}))
    assert store.set_paused(load.id, False).state == "scheduled"
    end(store.request_run(up.id))
    assert len(triggered(load)) == 3
