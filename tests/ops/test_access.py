"""Who may do what on a store that hub users share (``domain/access.py``), through the
one operations layer every front calls: a job is its owner's; a group it is shared
with reads it (``read``) or also runs it (``execute``); an admin manages all; anyone
else is told it does not exist, on every operation, runs and backfills included."""

from __future__ import annotations

import os

import pytest

from hermes_cron_ext.domain.access import Viewer, allowed
from hermes_cron_ext.errors import Forbidden, InvalidInput, NotFound
from hermes_cron_ext.ops import Operations
from hermes_cron_ext.processes import hostname

ALICE = Viewer("alice", frozenset({"analysts"}))
BOB = Viewer("bob")
CAROL = Viewer("carol", frozenset({"analysts"}))
ROOT = Viewer("root", admin=True)


@pytest.fixture
def ops(real_store):
    """The store's own user's operations (the hub service's CLI). A ticker row of this
    process says a ticker serves the store, so manual runs stay queued for it (none
    starts): all these tests need."""
    real_store.register_ticker("daemon", hostname(), os.getpid())
    return Operations(real_store)


def _job(ops, viewer, name, **extra):
    return ops.as_user(viewer).create(
        {"name": name, "schedule": "@daily", "command": "true", **extra})[0]


def test_the_owner_comes_from_the_viewer_never_from_the_request(ops):
    assert _job(ops, ALICE, "etl")["owner"] == "alice"
    assert _job(ops, None, "etl")["owner"] == ""  # the store's own user's
    with pytest.raises(InvalidInput, match="unknown field 'owner'"):
        ops.as_user(BOB).create({"name": "x", "schedule": "@daily", "command": "true",
                                 "owner": "alice"})
    with pytest.raises(InvalidInput, match="unknown field 'owner'"):
        ops.as_user(ALICE).edit("etl", {"owner": "bob"})
    assert ops.as_user(ALICE).me() == {"name": "alice", "groups": ["analysts"],
                                       "admin": False}


def test_every_operation_on_another_users_job_is_not_found(ops):
    job = _job(ops, ALICE, "etl")
    run = ops.as_user(ALICE).run_now("etl")
    backfill = ops.as_user(ALICE).backfill("etl", "2026-01-01", "2026-01-02")
    bob = ops.as_user(BOB)
    calls = [("job",), ("edit", {"description": "x"}), ("remove",), ("pause",),
             ("resume",), ("run_now",), ("backfill", "2026-01-01", "2026-01-02"),
             ("backfills",), ("runs",), ("active_run",), ("pipeline",), ("job_parameters",)]
    for ref in ("etl", job["id"]):
        for name, *args in calls:
            with pytest.raises(NotFound) as err:
                getattr(bob, name)(ref, *args)
            assert "alice" not in err.value.message
    for call in (lambda: bob.run(run["id"]), lambda: bob.get_run(run["id"]),
                 lambda: bob.cancel(run["id"]), lambda: bob.log(run["id"]),
                 lambda: bob.stream(run["id"]), lambda: bob.artifact(run["id"]),
                 lambda: bob.get_backfill(backfill["id"]),
                 lambda: bob.cancel_backfill(backfill["id"])):
        with pytest.raises(NotFound):
            call()
    assert bob.jobs() == [] and bob.runs()["runs"] == []
    assert bob.stats()["jobs"] == [] and bob.stats()["runs_by_status"] == {}
    assert bob.readable([job["id"]]) == set()
    # nothing of it changed: alice still has it, paused by no one, run not cancelled
    assert ops.as_user(ALICE).job("etl")["state"] == "scheduled"
    assert ops.as_user(ALICE).run(run["id"])["status"] == "queued"


def test_names_are_each_users_own(ops):
    mine = _job(ops, ALICE, "nightly")
    bobs = _job(ops, BOB, "nightly")  # no clash, and bob learns nothing of alice's
    assert mine["id"] != bobs["id"]
    assert ops.as_user(BOB).job("nightly")["id"] == bobs["id"]
    assert sorted(j["owner"] for j in ops.as_user(ROOT).jobs()) == ["alice", "bob"]
    with pytest.raises(InvalidInput, match="by its id"):
        ops.job("nightly")  # the store's own user names neither
    assert ops.job(bobs["id"])["owner"] == "bob"


def test_a_group_share_reads_or_runs_and_never_changes(ops):
    job = _job(ops, ALICE, "report", shares={"analysts": "read"})
    carol = ops.as_user(CAROL)
    assert carol.job("report")["id"] == job["id"]  # by name, as it is shared with her
    assert [j["name"] for j in carol.jobs()] == ["report"]
    with pytest.raises(Forbidden, match="shared with your group to read: only its owner"):
        carol.run_now("report")
    ops.as_user(ALICE).edit("report", {"shares": {"analysts": "execute"}})
    run = carol.run_now("report")
    assert carol.cancel(run["id"])["status"] == "cancelled"
    for call in (lambda: carol.edit("report", {"description": "mine now"}),
                 lambda: carol.remove("report"), lambda: carol.pause("report"),
                 lambda: carol.backfill("report", "2026-01-01", "2026-01-02"),
                 lambda: carol.run_now("report", {"day": "x"})):
        with pytest.raises(Forbidden, match="read and run: only its owner or an admin"):
            call()
    with pytest.raises(InvalidInput, match="shares: analysts must be read or execute"):
        ops.as_user(ALICE).edit("report", {"shares": {"analysts": "write"}})
    assert ops.as_user(ALICE).job("report")["shares"] == {"analysts": "execute"}


def test_an_admin_manages_every_users_jobs(ops):
    job = _job(ops, ALICE, "etl")
    root = ops.as_user(ROOT)
    assert root.pause(job["id"])["state"] == "paused"
    assert root.edit(job["id"], {"description": "checked"})["owner"] == "alice"
    with pytest.raises(Forbidden, match="admins"):
        ops.as_user(BOB).gc()
    assert "runs_deleted" in root.gc()


def test_pipelines_link_only_jobs_the_user_may_read(ops):
    bobs = _job(ops, BOB, "extract")
    with pytest.raises(InvalidInput, match="after: no job 'extract'"):
        _job(ops, ALICE, "load", after=["extract"])
    ops.as_user(BOB).edit("extract", {"shares": {"analysts": "read"}})
    load = _job(ops, ALICE, "load", after=["extract"])
    assert load["after"][0]["job"] == bobs["id"]
    mine = _job(ops, ALICE, "extract")  # her own "extract" now comes first
    again = _job(ops, ALICE, "load2", after=["extract"])
    assert again["after"][0]["job"] == mine["id"]
    # bob's pipeline shows only his own job: alice's downstream is hers
    nodes = ops.as_user(BOB).pipeline("extract")["nodes"]
    assert [n["name"] for n in nodes] == ["extract"]


@pytest.mark.parametrize("viewer,owner,shares,expected", [
    (None, "alice", {}, {"read", "run", "change"}),
    (ALICE, "alice", {}, {"read", "run", "change"}),
    (BOB, "alice", {"analysts": "execute"}, set()),
    (CAROL, "alice", {"analysts": "read"}, {"read"}),
    (CAROL, "alice", {"analysts": "execute", "ops": "read"}, {"read", "run"}),
    (ROOT, "alice", {}, {"read", "run", "change"}),
])
def test_allowed_actions(viewer, owner, shares, expected):
    assert {a for a in ("read", "run", "change")
            if allowed(viewer, owner, shares, a)} == expected


def test_status_counts_only_the_users_jobs_and_paths_are_not_looked_at_as_the_service(
        ops, tmp_path):
    _job(ops, ALICE, "etl")
    assert ops.as_user(ALICE).status()["jobs_by_state"] == {"scheduled": 1}
    assert ops.as_user(BOB).status()["jobs_by_state"] == {}
    # a hub user's folder is theirs (the service may not even enter it): not checked here
    missing = str(tmp_path / "not-here")
    assert ops.as_user(BOB).create({"name": "x", "schedule": "@daily", "command": "true",
                                    "cwd": missing})[0]["cwd"] == missing
    with pytest.raises(InvalidInput, match="not-here"):
        ops.create({"name": "y", "schedule": "@daily", "command": "true", "cwd": missing})


def test_a_cursor_of_the_wrong_shape_is_refused_not_a_crash(ops):
    import base64
    import json

    for parts in ([["a"], {"b": 1}], [True, "j_1"], ["a"]):
        cursor = base64.urlsafe_b64encode(json.dumps(parts).encode()).decode()
        with pytest.raises(InvalidInput, match="cursor"):
            ops.jobs_page(cursor=cursor)


def _end(store, run_id: str, status: str = "succeeded") -> None:
    """A run's supervisor takes it and it ends (what a real one records)."""
    assert store.attach_run(run_id, os.getpid(), None, hostname())
    store.finish_run(run_id, status, 0 if status == "succeeded" else 1)


def _triggered(store, job_id: str) -> list:
    return [r for r in store.list_runs(job_id).items if r.trigger == "upstream"]


def test_a_pipeline_link_holds_only_while_the_upstream_is_shared_and_says_why_not(
        ops, real_store):
    bob, carol = ops.as_user(BOB), ops.as_user(CAROL)
    extract = _job(ops, BOB, "extract", shares={"analysts": "read"})
    load = _job(ops, CAROL, "load", after=["extract"])
    _end(real_store, bob.run_now("extract")["id"])
    [first] = _triggered(real_store, load["id"])
    assert real_store.get_run(first.id).spec["upstream"][0]["job_id"] == extract["id"]
    # bob takes the share away: carol's job says so at once, and no run of his reaches it
    bob.edit("extract", {"shares": {}})
    blocked = carol.job("load")
    assert blocked["state"] == "blocked"
    assert blocked["state_reason"].startswith(
        "after: bob's job 'extract' is no longer shared with you")
    _end(real_store, bob.run_now("extract")["id"])
    assert _triggered(real_store, load["id"]) == [first]
    # resuming does not bring the link back, nor does a share with a group carol is not in
    assert carol.resume("load")["state"] == "blocked"
    bob.edit("extract", {"shares": {"ops": "read"}})
    assert carol.resume("load")["state"] == "blocked"
    _end(real_store, bob.run_now("extract")["id"])
    assert _triggered(real_store, load["id"]) == [first]
    # nor can carol link it again: she may not read it (its name does not leak either)
    for ref in ("extract", extract["id"]):
        with pytest.raises(InvalidInput, match=f"after: no job '{ref}'") as err:
            carol.edit("load", {"after": [ref]})
        assert "bob" not in err.value.message
    # shared with her group again: resumed, his runs trigger hers again
    bob.edit("extract", {"shares": {"analysts": "read"}})
    assert carol.resume("load")["state"] == "scheduled"
    _end(real_store, bob.run_now("extract")["id"])
    assert len(_triggered(real_store, load["id"])) == 2


def test_a_fan_in_does_not_read_an_upstream_that_is_no_longer_shared(ops, real_store):
    """carol's job runs after her own job and bob's: once bob's is not shared with her,
    her own job's runs do not trigger it either (the fan-in would hand her his run)."""
    _job(ops, BOB, "extract", shares={"analysts": "execute"})
    _job(ops, CAROL, "prepare")
    load = _job(ops, CAROL, "load", after=["extract", "prepare"])
    ops.as_user(BOB).edit("extract", {"shares": {}})
    ops.as_user(ROOT).resume(load["id"])  # an admin's resume does not bring it back
    assert ops.as_user(CAROL).job("load")["state"] == "blocked"
    carol_runs = ops.as_user(CAROL)
    for name in ("extract", "prepare"):
        run = (ops.as_user(BOB) if name == "extract" else carol_runs).run_now(name)
        _end(real_store, run["id"])
    assert _triggered(real_store, load["id"]) == []


def test_after_naming_a_job_the_user_cannot_read_is_refused_on_create_and_edit(ops):
    secret = _job(ops, BOB, "secret-etl")
    _job(ops, ALICE, "report")
    for ref in ("secret-etl", secret["id"]):
        with pytest.raises(InvalidInput, match=f"after: no job '{ref}'") as err:
            _job(ops, ALICE, "load", after=[ref])
        assert "bob" not in err.value.message
        with pytest.raises(InvalidInput, match=f"after: no job '{ref}'"):
            ops.as_user(ALICE).edit("report", {"after": [ref]})
    assert ops.as_user(ALICE).job("report")["after"] == []
