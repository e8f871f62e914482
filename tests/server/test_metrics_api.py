"""``GET /api/cron/jobs/{ref}/metrics`` on the real jupyter-server, over a real SQLite
store whose runs really ended (the store records their built-in metrics)."""

from __future__ import annotations

import json

import pytest

from hermes_cron_ext.domain.metrics import Metric
from hermes_cron_ext.server import openapi
from hermes_cron_ext.store import SQLiteStore
from tests.conftest import make_job
from tests.server.test_handlers import (  # noqa: F401 (fixtures)
    api,
    cron,
    cron_db,
    hermes_config,
    jp_server_config,
)


@pytest.fixture
def server_ticker():
    return False  # runs are made and ended here, by hand: nothing else may start them


@pytest.fixture
def ended(cron, cron_db):  # noqa: F811
    """Three ended runs of ``etl`` (``rows`` reported by two)."""
    store = SQLiteStore(cron_db)
    make_job(store, "etl", overlap="allow")
    make_job(store, "fresh")
    runs = []
    for rows in (5, None, 7):
        run = store.request_run("etl")
        store.attach_run(run.id, 1, None, "h")
        store.mark_running(run.id, 1_800_000_000.0 + len(runs) * 100, 2)
        if rows is not None:
            store.record_metrics(run.id, [Metric("rows", rows)])
        store.finish_run(run.id, "succeeded", 0)
        runs.append(run)
    yield store, runs
    store.close()


def _validator(name: str):
    jsonschema = pytest.importorskip("jsonschema")
    doc = json.loads(openapi.document())
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema)


async def test_a_jobs_metrics_as_the_schema_says(ended, jp_fetch):
    store, runs = ended
    answer = await api(jp_fetch, "jobs", "etl", "metrics")
    _validator("Metrics").validate(answer)
    assert answer["job_name"] == "etl"
    assert [m["name"] for m in answer["metrics"]] == ["duration", "exit_code",
                                                      "output_bytes", "rows"]
    for m in answer["metrics"][:3]:
        assert [p["run_id"] for p in m["points"]] == [r.id for r in runs]  # oldest first
    rows = answer["metrics"][3]
    assert [p["value"] for p in rows["points"]] == [5, 7]
    assert rows["summary"] == {"last": 7, "min": 5, "max": 7, "mean": 6, "median": 6}
    assert (rows["count"], rows["builtin"], rows["cursor"]) == (2, False, None)
    # by id, one metric, and paged
    job_id = answer["job_id"]
    one = await api(jp_fetch, "jobs", job_id, "metrics", params={"metric": "rows"})
    assert one["metrics"] == [rows]
    page = await api(jp_fetch, "jobs", "etl", "metrics",
                     params={"metric": "exit_code", "limit": 2})
    assert [p["run_id"] for p in page["metrics"][0]["points"]] == [runs[1].id, runs[2].id]
    older = await api(jp_fetch, "jobs", "etl", "metrics",
                      params={"cursor": page["metrics"][0]["cursor"], "limit": 2})
    assert [m["name"] for m in older["metrics"]] == ["exit_code"]
    assert [p["run_id"] for p in older["metrics"][0]["points"]] == [runs[0].id]
    assert older["metrics"][0]["cursor"] is None
    # a job no run of which has ended: no metrics, said as an empty list
    fresh = await api(jp_fetch, "jobs", "fresh", "metrics")
    assert fresh["metrics"] == []
    _validator("Metrics").validate(fresh)


async def test_unknown_job_or_metric_is_404_bad_limit_or_cursor_400(ended, jp_fetch):
    err = await api(jp_fetch, "jobs", "nope", "metrics", expect=404)
    assert "nope" in err["error"]["message"]
    err = await api(jp_fetch, "jobs", "etl", "metrics", params={"metric": "lag"}, expect=404)
    assert err["error"]["field"] == "metric"
    assert "duration, exit_code, output_bytes, rows" in err["error"]["message"]
    for limit in ("0", "1001", "many"):
        err = await api(jp_fetch, "jobs", "etl", "metrics", params={"limit": limit},
                        expect=400)
        assert err["error"]["field"] == "limit"
    err = await api(jp_fetch, "jobs", "etl", "metrics", params={"cursor": "x!"}, expect=400)
    assert err["error"]["field"] == "cursor"
