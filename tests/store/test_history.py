"""The ``History`` contract: a revision of every change to a job (who, from where, what
changed, the whole definition), the revision and file a run ran, an audit record of
every action chained by hashes (a removed or altered record is found; pruning keeps the
chain verifiable), and definitions applied in one transaction or not at all.

Every test runs against every store (SQLite and PostgreSQL), on a fake clock.
"""

from __future__ import annotations

import threading

import pytest

from hermes_cron_ext.domain.jobspec import validate_changes, validate_new
from hermes_cron_ext.domain.models import definition_of
from hermes_cron_ext.errors import Conflict, NotFound
from hermes_cron_ext.runtime.supervisor import file_sha256, payload_launch
from hermes_cron_ext.store import open_store
from hermes_cron_ext.store.migrate import copy_store
from tests.conftest import make_job
from tests.store.contract import EVERY_BACKEND

pytestmark = EVERY_BACKEND

SECRET = "s3cret-value"


def _new(name: str, **extra) -> dict:
    return validate_new({"name": name, "schedule": "@daily", "timezone": "UTC",
                         "command": "true", **extra}, now=1.7e9)


def _change(store, ref: str, **data) -> dict:
    return validate_changes(store.get_job(ref), data, now=1.7e9)


def _raw(store, sql: str, args=()) -> None:
    with store._write() as db:  # what someone with the database file could do
        db.execute(sql, args)


def test_every_change_to_a_job_is_a_revision_with_who_where_and_what(store, clock):
    with store.acting("alice", "cli"):
        job, _ = store.create_job(_new("rev", retries=1))
    clock.advance(10)
    with store.acting("bob", "rest"):
        store.update_job(job.id, _change(store, job.id, schedule="@hourly", retries=3))
        store.set_paused(job.id, True)  # not a change of the definition
        store.set_paused(job.id, False)
    clock.advance(10)
    first = store.job_revision(job.id, 1)
    with store.acting("carol", "panel", action="revert", detail={"to": 1}):
        spec = first["spec"]  # what a revert gives back
        store.update_job(job.id, _change(store, job.id, schedule=spec["schedule"],
                                         retries=spec["retries"]))
    reverted = store.get_job(job.id)
    assert reverted.version == 3 and reverted.schedule == "@daily"
    page = store.job_revisions(job.id)
    assert [(r["rev"], r["actor"], r["origin"], r["action"]) for r in page.items] == [
        (3, "carol", "panel", "revert"), (2, "bob", "rest", "update"),
        (1, "alice", "cli", "create")]
    assert page.cursor is None and page.items[2]["at"] == clock() - 20
    assert page.items[1]["changes"] == {"schedule": ["@daily", "@hourly"], "retries": [1, 3]}
    assert page.items[0]["changes"] == {"schedule": ["@hourly", "@daily"], "retries": [3, 1]}
    assert first["changes"]["name"] == [None, "rev"] and "spec" not in page.items[0]
    # the spec is the whole definition, round trip
    assert store.job_revision(job.id, 3)["spec"] == definition_of(reverted)
    assert first["spec"] == store.job_revision(job.id, 3)["spec"]
    older = store.job_revisions(job.id, limit=2)
    assert [r["rev"] for r in older.items] == [3, 2]
    assert [r["rev"] for r in store.job_revisions(job.id, 2, cursor=int(older.cursor)).items
            ] == [1]
    # outside acting: the store's own
    store.delete_job(job.id)
    last = store.job_revisions(job.id).items[0]
    assert (last["rev"], last["action"], last["actor"], last["origin"]) == (
        4, "delete", "", "store")
    assert last["changes"]["name"] == ["rev", None]
    assert store.job_revision(job.id, 4)["spec"] == definition_of(reverted)  # the last one
    with pytest.raises(NotFound):
        store.job_revision(job.id, 5)
    assert store.job_revisions("j_none").items == []


def test_a_run_records_the_revision_and_the_file_it_ran(store, tmp_path):
    script = tmp_path / "job.py"
    script.write_text("print('hi')\n")
    job, _ = store.create_job(_new("py", kind="python", command=str(script)))
    store.update_job(job.id, _change(store, job.id, description="v2"))
    run = store.request_run(job.id)
    assert run.spec["job_version"] == 2 and run.file_sha256 is None
    argv, _, _ = payload_launch(store, run)  # as a supervisor prepares it
    assert str(script) in argv
    got = store.get_run(run.id)
    assert got.file_sha256 == file_sha256(str(script))
    assert got.to_json()["file_sha256"] == got.file_sha256
    assert got.to_json()["job_version"] == 2
    store.record_file_hash(run.id, "ab" * 32)
    assert store.get_run(run.id).file_sha256 == "ab" * 32
    store.record_file_hash("r_none", "ab" * 32)  # ignored
    # a command runs no file: nothing recorded; nor for a missing file
    cmd = store.request_run(make_job(store, "cmd").id)
    payload_launch(store, cmd)
    assert store.get_run(cmd.id).file_sha256 is None
    # a notebook, by a path relative to the job's folder
    (tmp_path / "nb.ipynb").write_text('{"cells": []}')
    nb, _ = store.create_job(_new("nb", kind="notebook", command="nb.ipynb", cwd=str(tmp_path)))
    nb_run = store.request_run(nb.id)
    payload_launch(store, nb_run)
    assert store.get_run(nb_run.id).file_sha256 == file_sha256(str(tmp_path / "nb.ipynb"))
    script.unlink()
    missing = store.request_run(job.id)
    payload_launch(store, missing)
    assert store.get_run(missing.id).file_sha256 is None


def test_every_action_appends_an_audit_record_chained_to_the_last(store, clock):
    with store.acting("bob", "rest"):
        job, _ = store.create_job(_new("aud", secret_env={"TOKEN": SECRET}))
        clock.advance(1)
        store.update_job(job.id, _change(store, job.id, shares={"team": "read"},
                                         secret_env={"TOKEN": SECRET + "2"}))
        store.set_paused(job.id, True)
        store.set_paused(job.id, True)  # already paused: nothing happened, nothing recorded
        store.set_paused(job.id, False)
        run = store.request_run(job.id, parameters={"day": "x"})
        store.request_cancel(run.id)
        b = store.create_backfill(job.id, [1.7e9, 1.7e9 + 86400], 1)
        store.cancel_backfill(b["id"])
    with store.acting("ci", "apply"):
        v = store.get_job(job.id).version
        store.apply_definitions([], [(job.id, _change(store, job.id, description="d"), v)],
                                [], "jobs.yaml")
    with store.acting("bob", "cli", action="revert", detail={"to": 1}):
        store.update_job(job.id, _change(store, job.id, description=""))
    store.delete_job(job.id)
    records = store.audit_log().items
    assert [r["action"] for r in records] == [
        "delete", "revert", "apply", "backfill", "backfill", "cancel", "run", "resume",
        "pause", "edit", "create"]
    assert {(r["actor"], r["origin"]) for r in records[4:]} == {("bob", "rest")}
    assert (records[1]["actor"], records[1]["origin"], records[1]["detail"]["to"]) == (
        "bob", "cli", 1)
    assert (records[0]["actor"], records[0]["origin"]) == ("", "store")
    assert records[2]["detail"]["source"] == "jobs.yaml" and records[2]["actor"] == "ci"
    assert records[2]["detail"]["change"] == "edit"
    assert records[5]["run_id"] == run.id and records[6]["run_id"] == run.id
    assert records[6]["detail"]["parameters"] == ["day"]
    assert [r["detail"]["op"] for r in records[3:5]] == ["cancel", "create"]
    edit = records[9]
    assert edit["detail"]["shares"] == [{}, {"team": "read"}]
    assert edit["detail"]["secrets_changed"] == ["TOKEN"]
    assert "shares" in edit["detail"]["changes"]
    # the definitions' hashes: an edit's before is the previous after
    assert edit["before_hash"] == records[10]["after_hash"] and records[10]["before_hash"] is None
    assert records[0]["after_hash"] is None and records[0]["before_hash"]
    # chained, oldest to newest
    chain = list(reversed(records))
    assert chain[0]["prev_hash"] == "" and [r["seq"] for r in chain] == list(range(1, 12))
    for a, b in zip(chain, chain[1:], strict=False):
        assert b["prev_hash"] == a["hash"]
    # no secret value anywhere in the history
    rows = store.db.execute("SELECT detail FROM audit").fetchall()
    rows += store.db.execute("SELECT spec || changes FROM job_revisions").fetchall()
    assert not [r[0] for r in rows if SECRET in r[0]]
    # filters and pages
    assert [r["seq"] for r in store.audit_log(job_id=job.id, limit=3).items] == [11, 10, 9]
    page = store.audit_log(limit=4)
    assert [r["seq"] for r in store.audit_log(limit=4, cursor=int(page.cursor)).items] == [
        7, 6, 5, 4]
    assert [r["action"] for r in store.audit_log(since=clock()).items][-1] == "edit"
    assert store.verify_audit() == {"ok": True, "records": 11, "first_bad": None,
                                    "problem": None}


def test_verify_finds_a_removed_and_an_altered_record(store):
    with store.acting("bob", "cli"):
        for i in range(4):
            make_job(store, f"v{i}")
    assert store.verify_audit()["ok"]
    _raw(store, "UPDATE audit SET actor = 'mallory' WHERE seq = 3")
    bad = store.verify_audit()
    assert (bad["ok"], bad["first_bad"], bad["records"]) == (False, 3, 2)
    assert "altered" in bad["problem"]
    _raw(store, "DELETE FROM audit WHERE seq = 3")
    bad = store.verify_audit()
    assert (bad["ok"], bad["first_bad"]) == (False, 3) and "missing" in bad["problem"]


def test_verify_finds_the_newest_records_removed(store):
    for i in range(3):
        make_job(store, f"n{i}")
    _raw(store, "DELETE FROM audit WHERE seq = 3")
    bad = store.verify_audit()
    assert (bad["ok"], bad["first_bad"], bad["records"]) == (False, 3, 2)
    make_job(store, "n3")  # the chain goes on from the head, not from what is left
    assert store.audit_log(limit=1).items[0]["seq"] == 4
    assert store.verify_audit()["first_bad"] == 3


def test_pruning_the_audit_log_keeps_it_verifiable(store, clock):
    for i in range(5):
        make_job(store, f"p{i}")
        clock.advance(100)
    assert store.gc(clock())["audit_deleted"] == 0  # its own retention: kept by default
    assert store.gc(clock(), audit_max_age=250)["audit_deleted"] == 3
    assert [r["seq"] for r in store.audit_log().items] == [5, 4]
    assert store.verify_audit() == {"ok": True, "records": 2, "first_bad": None,
                                    "problem": None}
    make_job(store, "p5")
    assert store.verify_audit()["ok"]
    clock.advance(10_000)
    assert store.gc(clock(), audit_max_age=1)["audit_deleted"] == 3  # every one
    assert store.audit_log().items == [] and store.verify_audit()["ok"]
    make_job(store, "p6")
    assert store.audit_log().items[0]["seq"] == 7 and store.verify_audit()["ok"]


def test_definitions_are_applied_in_one_transaction(store):
    a, b = make_job(store, "a"), make_job(store, "b")
    with store.acting("ci", "apply"):
        out = store.apply_definitions(
            [_new("c")], [(a.id, _change(store, a.id, description="from the file"), 1)],
            [(b.id, 1)], "jobs.yaml")
    c = store.get_job("c")
    assert out == {"created": [c.id], "updated": [a.id], "deleted": [b.id]}
    got = store.get_job(a.id)
    assert (got.description, got.managed_by, got.version) == ("from the file", "jobs.yaml", 2)
    assert c.managed_by == "jobs.yaml" and c.to_json()["managed_by"] == "jobs.yaml"
    assert store.get_job(a.id).to_json()["managed_by"] == "jobs.yaml"
    with pytest.raises(NotFound):
        store.get_job(b.id)
    assert [r["origin"] for r in store.job_revisions(c.id).items] == ["apply"]
    assert store.job_revisions(a.id).items[0]["changes"]["managed_by"] == [None, "jobs.yaml"]
    assert store.job_revisions(b.id).items[0]["action"] == "delete"
    applied = [r for r in store.audit_log().items if r["action"] == "apply"]
    assert sorted(r["detail"]["change"] for r in applied) == ["create", "delete", "edit"]
    # an edit from elsewhere keeps the mark (the next apply undoes it)
    store.update_job(a.id, _change(store, a.id, description="by hand"))
    assert store.get_job(a.id).managed_by == "jobs.yaml"
    # a stale version: nothing at all changes
    before = store.audit_log().items[0]["seq"]
    with pytest.raises(Conflict, match="'a' was changed"):
        store.apply_definitions([_new("d")], [
            (c.id, _change(store, c.id, description="x"), 1),
            (a.id, _change(store, a.id, description="y"), 2)], [], "jobs.yaml")
    with pytest.raises(Conflict, match="deleted"):
        store.apply_definitions([], [], [(b.id, 1)], "jobs.yaml")
    with pytest.raises(Conflict, match="already exists"):
        store.apply_definitions([_new("e"), _new("c")], [], [], "jobs.yaml")
    assert [j.name for j in store.list_jobs().items] == ["a", "c"]
    assert store.get_job(c.id).version == 1 and store.get_job(a.id).version == 3
    assert store.audit_log().items[0]["seq"] == before and store.verify_audit()["ok"]


def test_jobs_applied_together_link_to_each_other_in_the_same_transaction(store):
    old = make_job(store, "old")
    extract = _new("extract")
    load = validate_new({"name": "load", "after": [{"job": "extract", "on": "success"}],
                         "timezone": "UTC", "command": "true"}, now=1.7e9)
    out = store.apply_definitions([load, extract], [], [], "jobs.yaml")
    made = {store.get_job(i).name: store.get_job(i) for i in out["created"]}
    assert made["load"].after == [{"job": made["extract"].id, "on": "success",
                                   "name": "extract"}]
    assert store.job_revision(made["load"].id, 1)["spec"]["after"] == [
        {"job": made["extract"].id, "on": "success"}]
    # an existing job moved after a new one, in the same apply
    fields = dict(_change(store, old.id, description="after new"))
    fields["after"] = [{"job": "new", "on": "success"}]
    out = store.apply_definitions([_new("new")], [(old.id, fields, 1)], [], "jobs.yaml")
    assert store.get_job(old.id).after[0]["job"] == out["created"][0]


def _race(store, other, x, y) -> object:
    """Apply x and y (as seen) while another store edits y; the apply's outcome."""
    fx = _change(store, x.id, description="applied")
    fy = _change(store, y.id, description="applied")
    edit = _change(store, y.id, description="edited")
    outcome: list[object] = []
    go = threading.Barrier(2)

    def apply() -> None:
        go.wait()
        try:
            outcome.append(store.apply_definitions(
                [], [(x.id, fx, x.version), (y.id, fy, y.version)], [], "f.yaml"))
        except Conflict as exc:
            outcome.append(exc)

    def change() -> None:
        go.wait()
        other.update_job(y.id, edit)
    threads = [threading.Thread(target=apply), threading.Thread(target=change)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return outcome[0]


def test_an_apply_racing_an_edit_is_whole_or_refused(store, open_test_store, clock):
    other = open_test_store(clock=clock)  # another process
    for i in range(8):
        x, y = make_job(store, f"x{i}"), make_job(store, f"y{i}")
        refused = isinstance(_race(store, other, x, y), Conflict)
        gx, gy = store.get_job(x.id), store.get_job(y.id)
        assert gy.description == "edited" and gy.version == (2 if refused else 3)
        if refused:  # the edit came first: nothing applied
            assert (gx.version, gx.managed_by, gx.description) == (1, None, "")
            assert gy.managed_by is None
        else:  # the apply came first, whole; the edit after it
            assert (gx.version, gx.managed_by, gx.description) == (2, "f.yaml", "applied")
            assert gy.managed_by == "f.yaml"
            assert [r["action"] for r in store.job_revisions(y.id).items] == [
                "update", "update", "create"]
    verified = store.verify_audit()
    assert verified["ok"] and verified["records"] >= 24


def test_a_copied_store_keeps_its_revisions_and_its_audit_chain(store, tmp_path):
    job = make_job(store, "m")
    store.update_job(job.id, _change(store, job.id, description="two"))
    target = open_store(str(tmp_path / "copy" / "cron.db"))
    try:
        copy_store(store, target)
        assert target.job_revisions(job.id) == store.job_revisions(job.id)
        assert target.audit_log() == store.audit_log()
        assert target.verify_audit() == store.verify_audit() == {
            "ok": True, "records": 2, "first_bad": None, "problem": None}
        make_job(target, "after")  # the chain goes on there
        assert target.verify_audit()["records"] == 3
    finally:
        target.close()
