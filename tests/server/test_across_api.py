"""``GET /api/cron/search``, ``/timeline``, ``/jobs/{ref}/calendar`` and ``/diff`` on the
real jupyter-server, over a real SQLite store whose runs wrote and indexed their output:
each answers as the OpenAPI document says, and bad input is a JSON 400 naming the
field."""

from __future__ import annotations

import pytest

from hermes_cron_ext.store import SQLiteStore
from tests.conftest import make_job
from tests.ops.test_across_ops import _ended_run
from tests.server.test_handlers import (  # noqa: F401 (fixtures)
    api,
    cron,
    cron_db,
    hermes_config,
    jp_server_config,
)
from tests.server.test_metrics_api import _validator


@pytest.fixture
def server_ticker():
    return False  # runs are made and ended here, by hand: nothing else may start them


@pytest.fixture
def ended(cron, cron_db):  # noqa: F811
    """Two ended runs of ``etl`` (one failed), their output indexed."""
    store = SQLiteStore(cron_db)
    make_job(store, "etl", overlap="allow")
    runs = [_ended_run(store, "etl", "start\nKeyError: 'x'\nend\n"),
            _ended_run(store, "etl", "start\nValueError\nend\n", "failed")]
    yield store, runs
    store.close()


async def test_the_four_routes_answer_as_the_schema_says(ended, jp_fetch):
    _, (ok, bad) = ended
    found = await api(jp_fetch, "search", params={"q": "KeyError:"})
    _validator("Search").validate(found)
    (hit,) = found["hits"]
    assert hit["run_id"] == ok and hit["matches"] == [
        {"offset": 6, "line": "KeyError: 'x'", "before": ["start"], "after": ["end"]}]
    line = await api(jp_fetch, "timeline", params={"from": "1h", "to": "1h", "job": "etl"})
    _validator("Timeline").validate(line)
    assert [r["id"] for r in line["runs"]] == [ok, bad]
    assert [s["job_name"] for s in line["slots"]] == ["etl"] * len(line["slots"])
    days = await api(jp_fetch, "jobs", "etl", "calendar", params={"days": "7"})
    _validator("Calendar").validate(days)
    assert len(days["days"]) == 7
    assert (days["days"][-1]["succeeded"], days["days"][-1]["failed"]) == (1, 1)
    diff = await api(jp_fetch, "diff", params={"a": ok, "b": bad})
    assert diff["fields"][0] == {"field": "status", "a": "succeeded", "b": "failed"}
    assert "-KeyError: 'x'" in diff["output"]["unified"]


async def test_bad_input_is_400_naming_the_field(ended, jp_fetch):
    _, (ok, _bad) = ended
    cases = [
        (("search",), {}, "q"),
        (("search",), {"q": ""}, "q"),
        (("search",), {"q": "a", "since": "yesterday"}, "since"),
        (("search",), {"q": "a", "status": "bogus"}, "status"),
        (("search",), {"q": "a", "limit": "0"}, "limit"),
        (("search",), {"q": "a", "cursor": "!!"}, "cursor"),
        (("timeline",), {"from": "soon"}, "from"),
        (("timeline",), {"limit": "x"}, "limit"),
        (("jobs", "etl", "calendar"), {"days": "0"}, "days"),
        (("diff",), {"a": ok}, "b"),
    ]
    for path, params, field in cases:
        err = await api(jp_fetch, *path, params=params, expect=400)
        assert err["error"]["field"] == field, (path, params, err)
    await api(jp_fetch, "diff", params={"a": ok, "b": "r_0000000000000000"}, expect=404)
    await api(jp_fetch, "jobs", "nope", "calendar", expect=404)
