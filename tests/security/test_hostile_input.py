"""Deep, overflowing and malformed input: a clear 4xx every time, never a 500, and
nothing stored changes (schemathesis, tests/server/test_api_fuzz.py, stays inside the
schema; these go outside it on purpose)."""

from __future__ import annotations

import json

import pytest

from tests.server.test_handlers import (  # noqa: F401 (fixtures)
    api,
    cron,
    cron_db,
    hermes_config,
    jp_server_config,
    server_ticker,
)

JOB = {"name": "ok", "schedule": "@yearly", "command": "true"}


def _deep(n: int) -> str:
    return '{"name": "d1", "schedule": "@yearly", "command": "true", "env": ' + \
        '{"a": ' * n + '"x"' + "}" * n + "}"


async def _code(jp_fetch, *path, method="GET", body=None, params=None) -> int:
    """The HTTP status alone (the body of a refusal is checked elsewhere)."""
    resp = await jp_fetch("api", "cron", *path, method=method, body=body,
                          params=params or {}, raise_error=False,
                          allow_nonstandard_methods=True)
    return resp.code


BODIES = [
    ("deep object", _deep(5000)),
    ("deep array", '{"name": "d2", "schedule": "@yearly", "command": ' + "[" * 100000
     + "]" * 100000 + "}"),
    ("huge integer", {**JOB, "name": "n1", "retries": 10 ** 400}),
    ("overflowing float", '{"name": "n2", "schedule": "@yearly", "command": "true", '
     '"timeout": 1e999}'),
    ("NaN", '{"name": "n3", "schedule": "@yearly", "command": "true", "timeout": NaN}'),
    ("negative duration", {**JOB, "name": "n4", "policy": {"timeout": -5}}),
    ("null byte in name", {**JOB, "name": "a\x00b"}),
    ("null byte in command", {**JOB, "name": "z1", "command": "echo \x00"}),
    ("huge name", {**JOB, "name": "n" * 100000}),
    ("huge schedule", {**JOB, "name": "s1", "schedule": "* " * 50000}),
    ("list instead of object", [JOB]),
    ("string instead of object", '"jobs"'),
    ("wrong types", {"name": 5, "schedule": ["@daily"], "command": {"a": 1}}),
    ("unknown policy", {**JOB, "name": "p1", "policy": {"retries": 1, "sudo": True}}),
    ("bad timezone", {**JOB, "name": "t1", "timezone": "../../etc/passwd"}),
    ("lone surrogate", '{"name": "\\udc80", "schedule": "@yearly", "command": "true"}'),
    ("not JSON", b"\xff\xfe{"),
    ("interval past any date", {**JOB, "name": "e1", "schedule": "@every 100000000h"}),
    ("at past the year 9999", {"name": "e2", "at": "9999-12-31T23:59",
                               "timezone": "Etc/GMT+12", "command": "true"}),
]


@pytest.mark.parametrize(("what", "body"), BODIES, ids=[b[0] for b in BODIES])
async def test_hostile_bodies_get_a_4xx_and_store_nothing(cron, jp_fetch, what, body):  # noqa: F811
    await api(jp_fetch, "jobs", method="POST", body=JOB, expect=201)
    before = await api(jp_fetch, "jobs")
    for method, path in (("POST", ("jobs",)), ("PATCH", ("jobs", "ok"))):
        text = body if isinstance(body, (str, bytes)) else json.dumps(body)
        code = await _code(jp_fetch, *path, method=method, body=text)
        assert 400 <= code < 500, (what, method, code)
    assert await api(jp_fetch, "jobs") == before


@pytest.mark.parametrize("query", [
    {"limit": "99999999999999999999999"}, {"limit": "-1"}, {"limit": "1e9"},
    {"cursor": "x" * 5000}, {"cursor": "!!!"}, {"status": "\x00"}, {"q": "%" * 3000},
])
async def test_hostile_queries_get_a_4xx_or_an_answer(cron, jp_fetch, query):  # noqa: F811
    for path in (("jobs",), ("runs",)):
        code = await _code(jp_fetch, *path, params=query)
        assert code < 500, (path, query, code)


@pytest.mark.parametrize(("query", "field"), [
    ({"schedule": "@every 100000000h"}, "schedule"),
    ({"schedule": "@at 9999-12-31T23:59", "tz": "Etc/GMT+12"}, "schedule"),
    ({"schedule": "0 * * * *", "from": "9999-12-31T23:00:00Z"}, None),  # never fires again
])
async def test_previews_past_the_last_date_are_answered(cron, jp_fetch, query, field):  # noqa: F811
    resp = await jp_fetch("api", "cron", "preview", params=query, raise_error=False)
    body = json.loads(resp.body)
    if field is None:
        assert resp.code == 200 and body["next"] == []
    else:
        assert resp.code == 400 and body["error"]["field"] == field
