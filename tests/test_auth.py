"""Every route is behind Jupyter's authentication and the Authorizer's read/write/execute."""

from __future__ import annotations

import json

import pytest
from jupyter_server.auth.authorizer import Authorizer
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from .test_handlers import api, cron, cron_db, server_ticker  # noqa: F401 (fixtures)

ALLOWED: set[str] = {"read", "write", "execute"}


class SplitAuthorizer(Authorizer):
    """Grants on the ``cron`` resource only the actions the test put in ALLOWED."""

    def is_authorized(self, handler, user, action, resource):
        if resource != "cron":
            return True
        return action in ALLOWED


@pytest.fixture
def jp_server_config(cron_db, server_ticker):  # noqa: F811
    return {
        "ServerApp": {"jpserver_extensions": {"hermes_cron_ext": True},
                      "authorizer_class": SplitAuthorizer},
        "HermesCron": {"db": cron_db, "ticker": False},
    }


@pytest.fixture(autouse=True)
def reset_allowed():
    ALLOWED.clear()
    ALLOWED.update({"read", "write", "execute"})
    yield


EVERY_ROUTE = [
    ("GET", "status"), ("GET", "jobs"), ("POST", "jobs"), ("GET", "jobs/a"),
    ("PATCH", "jobs/a"), ("DELETE", "jobs/a"), ("POST", "jobs/a/run"), ("POST", "jobs/a/pause"),
    ("POST", "jobs/a/resume"), ("GET", "jobs/a/runs"), ("GET", "jobs/a/stream"), ("GET", "runs"),
    ("GET", "runs/r1"), ("POST", "runs/r1/cancel"), ("GET", "runs/r1/log"),
    ("GET", "runs/r1/stream"), ("GET", "events"), ("GET", "stats"), ("GET", "preview"),
    ("GET", "openapi.json"),
]


async def test_unauthenticated_requests_refused_everywhere(cron, jp_fetch,  # noqa: F811
                                                           jp_http_port, jp_base_url):
    # (jp_fetch starts the HTTP listener)
    client = AsyncHTTPClient()
    for method, path in EVERY_ROUTE:
        req = HTTPRequest(f"http://127.0.0.1:{jp_http_port}{jp_base_url}api/cron/{path}",
                          method=method, body="{}" if method in ("POST", "PATCH") else None,
                          request_timeout=10, allow_nonstandard_methods=True)
        resp = await client.fetch(req, raise_error=False)
        assert resp.code in (401, 403), (method, path, resp.code)
        assert b"event:" not in (resp.body or b"")


async def test_read_write_execute_split(cron, jp_fetch):  # noqa: F811
    body = {"name": "a", "schedule": "@yearly", "command": "echo hi"}
    ALLOWED.discard("execute")
    err = await api(jp_fetch, "jobs", method="POST", body=body, expect=403)
    assert err["error"]["code"] == "forbidden"
    ALLOWED.add("execute")
    await api(jp_fetch, "jobs", method="POST", body=body, expect=201)

    ALLOWED.clear()
    ALLOWED.add("read")  # a viewer: may look, not touch
    assert (await api(jp_fetch, "jobs", "a"))["name"] == "a"
    await api(jp_fetch, "runs")
    for path in (("jobs", "a", "run"), ("jobs", "a", "pause"), ("jobs", "a", "resume")):
        await api(jp_fetch, *path, method="POST", body="", expect=403)
    await api(jp_fetch, "jobs", "a", method="PATCH", body={"schedule": "@daily"}, expect=403)
    await api(jp_fetch, "jobs", "a", method="DELETE", expect=403)

    ALLOWED.add("write")  # an operator: may pause and reschedule, not change the code
    paused = await api(jp_fetch, "jobs", "a", "pause", method="POST", body="")
    assert paused["state"] == "paused"
    changed = await api(jp_fetch, "jobs", "a", method="PATCH", body={"schedule": "@daily"})
    assert changed["schedule"] == "@daily"
    for change in ({"command": "rm -rf /"}, {"env": {"X": "1"}}, {"code": "print(1)"},
                   {"cwd": "/"}, {"interpreter": "/bin/sh"}):
        await api(jp_fetch, "jobs", "a", method="PATCH", body=change, expect=403)
    job = await api(jp_fetch, "jobs", "a")
    assert job["command"] == "echo hi" and job["env"] == {}

    ALLOWED.clear()  # nothing at all
    await api(jp_fetch, "jobs", expect=403)
    await api(jp_fetch, "status", expect=403)
    assert json.dumps(await api(jp_fetch, "events", expect=403))
