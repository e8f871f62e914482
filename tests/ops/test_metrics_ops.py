"""``Operations.metrics``: the numbers of a job's runs, per metric its newest points
(oldest first), their summary and a cursor to the older ones, on a real SQLite store
whose runs really ended (the store records the built-ins as a run ends)."""

from __future__ import annotations

import os

import pytest

from hermes_cron_ext.domain.access import Viewer
from hermes_cron_ext.domain.metrics import Metric
from hermes_cron_ext.domain.models import iso
from hermes_cron_ext.errors import InvalidInput, NotFound
from hermes_cron_ext.ops import Operations
from hermes_cron_ext.processes import hostname
from tests.conftest import make_job

ALICE = Viewer("alice", frozenset({"analysts"}))
BOB = Viewer("bob")
CAROL = Viewer("carol", frozenset({"analysts"}))


def finish(store, clock, job: str, took: float, code: int = 0, rows: float | None = None):
    """One run of *job* through a supervisor's calls, *took* seconds long; *rows*
    reported with ``::metric`` while it ran."""
    run = store.request_run(job)
    store.attach_run(run.id, 1, None, "h")
    store.mark_running(run.id, clock(), 2)
    if rows is not None:
        store.record_metrics(run.id, [Metric("rows", rows, "rows")])
    clock.advance(took)
    store.finish_run(run.id, "succeeded" if code == 0 else "failed", code)
    clock.advance(60)
    return run


@pytest.fixture
def ops(store):
    store.register_ticker("daemon", hostname(), os.getpid())  # manual runs stay queued
    return Operations(store)


def test_every_metric_with_its_points_oldest_first_and_summary(ops, store, clock):
    make_job(store, "etl", overlap="allow")
    runs = [finish(store, clock, "etl", took, code, rows)
            for took, code, rows in ((2, 0, 10), (4, 0, 30), (3, 1, None), (10, 0, 20))]
    answer = ops.metrics("etl")
    job = store.get_job("etl")
    assert (answer["job_id"], answer["job_name"]) == (job.id, "etl")
    # the built-ins first (the store's order), then what the runs reported
    assert [m["name"] for m in answer["metrics"]] == ["duration", "exit_code",
                                                      "output_bytes", "rows"]
    duration = answer["metrics"][0]
    assert (duration["unit"], duration["builtin"], duration["count"]) == ("s", True, 4)
    assert [p["run_id"] for p in duration["points"]] == [r.id for r in runs]
    assert [p["value"] for p in duration["points"]] == [2, 4, 3, 10]
    ended = store.get_run(runs[0].id).finished_at
    assert duration["points"][0]["at"] == iso(ended)
    assert duration["summary"] == {"last": 10, "min": 2, "max": 10, "mean": 4.75,
                                   "median": 3.5}
    assert duration["cursor"] is None
    exit_code = answer["metrics"][1]
    assert [p["value"] for p in exit_code["points"]] == [0, 0, 1, 0]
    rows = answer["metrics"][3]
    assert (rows["unit"], rows["builtin"], rows["count"]) == ("rows", False, 3)
    assert [p["value"] for p in rows["points"]] == [10, 30, 20]
    assert [p["run_id"] for p in rows["points"]] == [runs[0].id, runs[1].id, runs[3].id]
    assert rows["summary"]["median"] == 20 and rows["summary"]["last"] == 20
    # by id too, and one metric alone
    assert ops.metrics(job.id) == answer
    alone = ops.metrics("etl", metric="rows")
    assert alone["metrics"] == [rows]


def test_pages_of_one_metric_by_cursor_without_a_loss_or_a_repeat(ops, store, clock):
    make_job(store, "many", overlap="allow")
    runs = [finish(store, clock, "many", took=i + 1) for i in range(7)]
    page = ops.metrics("many", limit=3)
    assert all(m["cursor"] for m in page["metrics"])
    seen: list[float] = []
    duration = page["metrics"][0]
    assert [p["value"] for p in duration["points"]] == [5, 6, 7]  # the newest 3
    while True:
        seen = [p["value"] for p in duration["points"]] + seen
        if duration["cursor"] is None:
            break
        page = ops.metrics("many", limit=3, cursor=duration["cursor"])
        assert [m["name"] for m in page["metrics"]] == ["duration"]  # the cursor's metric
        duration = page["metrics"][0]
    assert seen == [1, 2, 3, 4, 5, 6, 7]
    assert duration["summary"]["last"] == 1  # of the page shown
    assert len(runs) == 7
    first = ops.metrics("many", limit=3)["metrics"][2]  # output_bytes' cursor
    with pytest.raises(InvalidInput, match="cursor is one of metric 'output_bytes'"):
        ops.metrics("many", metric="duration", cursor=first["cursor"])
    with pytest.raises(InvalidInput, match="cursor is not one this server handed out"):
        ops.metrics("many", cursor="garbage!")


def test_no_runs_unknown_metric_and_bad_limits(ops, store, clock):
    make_job(store, "fresh")
    assert ops.metrics("fresh") == {"job_id": store.get_job("fresh").id,
                                    "job_name": "fresh", "metrics": []}
    with pytest.raises(NotFound, match="no run of it has ended yet"):
        ops.metrics("fresh", metric="duration")
    make_job(store, "done")
    finish(store, clock, "done", 1, rows=5)
    with pytest.raises(NotFound) as err:
        ops.metrics("done", metric="lag")
    assert err.value.field == "metric"
    assert err.value.message == ("job 'done' has no metric 'lag': its runs have duration, "
                                 "exit_code, output_bytes, rows")
    for limit in (0, 1001, -1, True):
        with pytest.raises(InvalidInput, match="limit must be between 1 and 1000"):
            ops.metrics("done", limit=limit)
    with pytest.raises(NotFound, match="no job 'nope'"):
        ops.metrics("nope")


def test_another_users_job_is_not_found_a_shared_one_reads(ops, store, clock):
    alice = ops.as_user(ALICE)
    job = alice.create({"name": "etl", "schedule": "@daily", "command": "true",
                        "shares": {"analysts": "read"}})[0]
    finish(store, clock, job["id"], 2)
    mine = alice.metrics("etl")
    assert [p["value"] for p in mine["metrics"][0]["points"]] == [2]
    for ref in ("etl", job["id"]):
        with pytest.raises(NotFound) as err:
            ops.as_user(BOB).metrics(ref)
        assert "alice" not in err.value.message
    assert ops.as_user(CAROL).metrics(job["id"]) == mine  # shared with her group to read
