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
