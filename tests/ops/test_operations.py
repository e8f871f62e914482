"""The operations, run once through each implementation: ``Operations`` on the store
and ``RestClient`` through a real Jupyter server. Same calls, same answers, same
errors, so the fronts built on either cannot differ."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from hermes_cron_ext.domain.models import parse_iso
from hermes_cron_ext.errors import Conflict, InvalidInput, NotFound
from hermes_cron_ext.ops import Operations, RestClient

pytest_plugins = ("tests.notebook_fixtures",)


@pytest.fixture(params=["local", "rest"])
def ops(request, cron_server):
    client = (Operations(cron_server.db) if request.param == "local"
              else RestClient(cron_server.url, cron_server.token))
    yield client
    client.close()


@pytest.fixture
def name(ops):
    job = f"ops-{uuid.uuid4().hex[:8]}"
    yield job
    try:
        ops.remove(job)
    except NotFound:
        pass


def test_create_edit_pause_resume(ops, name):
    job = ops.add({"name": name, "schedule": "@yearly", "timezone": "UTC",
                   "command": "echo hi", "retries": "2"})
    assert job["name"] == name and job["policy"]["retries"] == 2
    assert ops.edit(name, {"schedule": "@monthly"})["schedule"] == "@monthly"
    assert ops.pause(name)["state"] == "paused"
    assert ops.resume(name)["state"] == "scheduled"
    assert name in {j["name"] for j in ops.jobs(search=name)}


def test_bad_input_names_the_field_and_keeps_what_is_stored(ops, name):
    ops.add({"name": name, "schedule": "@yearly", "command": "true"})
    with pytest.raises(InvalidInput) as err:
        ops.edit(name, {"schedule": "61 * * * *"})
    assert err.value.field == "schedule" and "61" in err.value.message
    with pytest.raises(InvalidInput) as err:
        ops.add({"name": f"{name}-x", "schedule": "@daily", "command": "true", "bogus": 1})
    assert err.value.field == "bogus"
    with pytest.raises(Conflict):
        ops.add({"name": name, "schedule": "@daily", "command": "true"})
    assert ops.job(name)["schedule"] == "@yearly"
    with pytest.raises(NotFound):
        ops.job(f"{name}-missing")


def test_run_now_then_the_name_means_that_run(ops, name):
    ops.add({"name": name, "schedule": "@yearly", "command": "echo ran-by-ops"})
    run = ops.run_now(name)
    done = ops.wait(run["id"], timeout=60)
    assert done["status"] == "succeeded" and done["trigger"] == "manual"
    assert ops.resolve_run(name)["id"] == run["id"]
    assert ops.text(run["id"]).strip() == "ran-by-ops"
    assert [r["id"] for r in ops.runs(name)["runs"]] == [run["id"]]
    with pytest.raises(NotFound) as err:
        ops.resolve_run("r_0000000000000000")
    assert err.value.field == "run"


def test_preview_and_its_limits(ops):
    got = ops.preview("0 9 * * 1-5", "UTC", 3, "2026-12-04T00:00:00Z")
    assert got["next"] == ["2026-12-04T09:00:00Z", "2026-12-07T09:00:00Z",
                           "2026-12-08T09:00:00Z"]
    with pytest.raises(InvalidInput) as err:
        ops.preview("@daily", "UTC", 0)
    assert err.value.field == "count"


def test_preview_starts_now_when_not_told(ops):
    """The domain's preview is told its start; with none, the operations give it now."""
    before = datetime.now(UTC)
    fires = [parse_iso(t) for t in ops.preview("@every 1s", "UTC", 3)["next"]]
    assert len(fires) == 3 and fires[0] > before.timestamp()


def test_backfill_dry_run_and_errors_alike(ops, name):
    ops.add({"name": name, "schedule": "0 6 * * *", "timezone": "UTC", "command": "true"})
    got = ops.backfill(name, "2026-11-01", "2026-11-03", max_parallel=2, dry_run=True)
    assert got["next"] == ["2026-11-01T06:00:00.000Z", "2026-11-02T06:00:00.000Z",
                           "2026-11-03T06:00:00.000Z"]
    assert (got["state"], got["max_parallel"]) == ("dry-run", 2)
    with pytest.raises(InvalidInput) as err:
        ops.backfill(name, "2026-11-03", "2026-11-01")
    assert err.value.field == "to"
    with pytest.raises(NotFound):
        ops.get_backfill("b_0000000000000000")


def test_a_jobs_backfills_are_listed_newest_first_alike(ops, name):
    ops.add({"name": name, "schedule": "0 6 * * *", "timezone": "UTC", "command": "sleep 30"})
    assert ops.backfills(name) == []
    first = ops.backfill(name, "2026-10-01", "2026-10-02")
    ops.cancel_backfill(first["id"])
    second = ops.backfill(name, "2026-11-01", "2026-11-03", max_parallel=3)
    ops.cancel_backfill(second["id"])
    got = ops.backfills(name)
    assert [b["id"] for b in got] == [second["id"], first["id"]]
    assert (got[0]["slots"], got[0]["max_parallel"], got[0]["state"]) == (3, 3, "cancelled")
    assert got[1]["from"] == "2026-10-01T06:00:00.000Z"
    with pytest.raises(NotFound):
        ops.backfills("no-such-job-here")


def test_a_run_takes_parameters_of_the_declared_types(ops, name):
    ops.add({"name": name, "schedule": "@yearly", "command":
             'echo "n=$HERMES_CRON_PARAM_n all=$HERMES_CRON_PARAMETERS"',
             "parameters": {"n": 1, "label": "x"}})
    assert ops.job_parameters(name) == [{"name": "n", "type": "int", "default": 1},
                                        {"name": "label", "type": "str", "default": "x"}]
    for bad, field in (({"n": "five"}, "parameters.n"), ({"typo": 1}, "parameters.typo")):
        with pytest.raises(InvalidInput) as err:
            ops.run_now(name, bad)
        assert err.value.field == field
    run = ops.run_now(name, {"n": 5})
    assert run["parameters"] == {"n": 5}
    done = ops.wait(run["id"], timeout=60)
    assert done["status"] == "succeeded" and done["parameters"] == {"n": 5}
    assert ops.text(run["id"]).strip() == 'n=5 all={"n": 5, "label": "x"}'
    assert ops.runs(name)["runs"][0]["parameters"] == {"n": 5}


def test_after_names_existing_jobs_and_never_a_cycle(ops, name):
    up = f"{name}-up"
    try:
        ops.add({"name": up, "schedule": "@yearly", "command": "true"})
        down = ops.add({"name": name, "schedule": "@yearly", "command": "true",
                        "after": [up, {"job": up, "on": "failure"}]})
        up_id = ops.job(up)["id"]
        assert down["after"] == [{"job": up_id, "on": "success", "name": up},
                                 {"job": up_id, "on": "failure", "name": up}]
        # the JSON sent back as it was read (the panel's form does) is taken as it is
        assert ops.edit(name, {"after": down["after"]})["after"] == down["after"]
        for bad, words in (([f"{name}-nope"], "no job"), ([name], "after itself")):
            with pytest.raises(InvalidInput) as err:
                ops.edit(name, {"after": bad})
            assert err.value.field == "after" and words in err.value.message
        with pytest.raises(InvalidInput) as err:  # up after name after up: a circle
            ops.edit(up, {"after": [name]})
        assert err.value.field == "after" and "cycle" in err.value.message
        assert ops.job(up)["after"] == []
    finally:
        ops.remove(name)
        ops.remove(up)


def test_a_job_after_others_needs_no_schedule_alike(ops, name):
    """Over REST as locally: no schedule of its own (null, no next run), shown with its
    upstreams' names; neither schedule nor after, or taking after away, is refused;
    it has no slots to backfill; the pipeline says when upstream runs do not trigger it."""
    up = f"{name}-up"
    try:
        ops.add({"name": up, "schedule": "@daily", "command": "true"})
        down = ops.add({"name": name, "after": [up], "command": "true"})
        assert (down["schedule"], down["next_run_at"]) == (None, None)
        assert [a["name"] for a in down["after"]] == [up]
        with pytest.raises(InvalidInput, match="it has neither, so it would never run") as err:
            ops.add({"name": f"{name}-x", "command": "true"})
        assert err.value.field == "schedule"
        with pytest.raises(InvalidInput, match="no schedule of its own, so without after"):
            ops.edit(name, {"after": []})
        with pytest.raises(InvalidInput, match="no slots to backfill"):
            ops.backfill(name, "2026-11-01", "2026-11-02")
        assert ops.edit(name, {"schedule": "@hourly"})["next_run_at"] is not None
        assert ops.edit(name, {"schedule": None})["next_run_at"] is None
        assert ops.edit(name, {"enabled": False})["schedule"] is None
        [note] = [n["note"] for n in ops.pipeline(name)["nodes"] if n["name"] == name]
        assert note == "disabled: upstream runs do not trigger it"
    finally:
        ops.remove(name)
        ops.remove(up)


def test_the_pipeline_of_a_job_alike(ops, name):
    a, b, c, alert = (f"{name}-{x}" for x in ("a", "b", "c", "alert"))
    try:
        for job in (a, b):
            ops.add({"name": job, "schedule": "@yearly", "command": "true"})
        ops.add({"name": c, "schedule": "@yearly", "command": "true", "after": [a, b]})
        ops.add({"name": alert, "schedule": "@yearly", "command": "true",
                 "after": [{"job": c, "on": "failure"}]})
        graph = ops.pipeline(b)  # from any job of it, the whole pipeline
        levels = {n["name"]: n["level"] for n in graph["nodes"]}
        assert levels == {a: 0, b: 0, c: 1, alert: 2}
        ids = {n["name"]: n["id"] for n in graph["nodes"]}
        assert graph["edges"] == [  # by level, then name
            {"from": ids[a], "to": ids[c], "on": "success"},
            {"from": ids[b], "to": ids[c], "on": "success"},
            {"from": ids[c], "to": ids[alert], "on": "failure"}]
        assert graph["job"] == ids[b]
    finally:
        for job in (alert, c, a, b):
            ops.remove(job)
