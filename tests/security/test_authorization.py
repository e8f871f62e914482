"""Every route is behind Jupyter's authentication and the Authorizer's read/write/execute."""

from __future__ import annotations

import json

import pytest
from jupyter_server.auth.authorizer import Authorizer
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.server.test_handlers import api, cron, cron_db, server_ticker  # noqa: F401 (fixtures)

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
    ("GET", "openapi.json"), ("GET", "options"), ("GET", "runs/r1/artifact"),
    ("POST", "jobs/a/backfill"), ("GET", "backfills/b1"), ("POST", "backfills/b1/cancel"),
    ("GET", "jobs/a/parameters"), ("GET", "jobs/a/pipeline"), ("GET", "jobs/a/backfill"),
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


#: a new value for each field whose change needs execute (options.FIELD_PERMISSIONS)
EXECUTE_CHANGES = {
    "kind": {"kind": "python"}, "command": {"command": "echo changed"},
    "code": {"code": "print(1)"}, "interpreter": {"interpreter": "/bin/sh"},
    "cwd": {"cwd": "/"}, "env": {"env": {"X": "1"}},
    "secret_env": {"secret_env": {"TOKEN": "s3cret"}}, "kernel": {"kernel": "python3"},
    "parameters": {"parameters": {"a": 1}}, "executor": {"executor": "dask://127.0.0.1:8786"},
    "shares": {"shares": {"analysts": "execute"}},  # who else may run it
    "notify_url": {"notify_url": "https://hooks.example.com/x"},
    "ping_url": {"policy": {"ping_url": "https://hc-ping.example.com/abc"}},
    # where notifications go (an Apprise URL with no host to look up)
    "notify": {"notify": ["slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"]},
}


def test_every_job_field_has_its_permission_declared():
    from hermes_cron_ext.domain.options import (
        EXECUTE_FIELDS,
        FIELD_PERMISSIONS,
        JOB_FIELDS,
        POLICY_FIELDS,
    )

    assert set(FIELD_PERMISSIONS) == JOB_FIELDS | POLICY_FIELDS
    assert set(FIELD_PERMISSIONS.values()) == {"write", "execute"}
    assert EXECUTE_FIELDS == set(EXECUTE_CHANGES)


async def test_write_only_user_cannot_choose_what_where_or_where_data_goes(
        cron, jp_fetch):  # noqa: F811
    base = {"name": "w", "schedule": "@yearly", "command": "echo hi"}
    await api(jp_fetch, "jobs", method="POST", body=base, expect=201)
    before = await api(jp_fetch, "jobs", "w")
    ALLOWED.discard("execute")  # an operator with write: when, not what/where
    for field, change in EXECUTE_CHANGES.items():
        err = await api(jp_fetch, "jobs", "w", method="PATCH", body=change, expect=403)
        assert err["error"]["code"] == "forbidden", field
        assert field in err["error"]["message"] and err["error"]["field"] == field, err
        err = await api(jp_fetch, "jobs", method="POST", expect=403,
                        body={**base, "name": f"new-{field.replace('_', '-')}", **change})
        assert err["error"]["code"] == "forbidden", field
    # running it is write; running it with parameters (they change what runs) is execute
    err = await api(jp_fetch, "jobs", "w", "run", method="POST", expect=403,
                    body={"parameters": {"n": 1}})
    assert err["error"]["field"] == "parameters"
    assert (await api(jp_fetch, "runs"))["runs"] == []
    # a change mixing a write field with an execute one changes nothing
    await api(jp_fetch, "jobs", "w", method="PATCH", expect=403,
              body={"schedule": "@daily", "executor": "dask://127.0.0.1:8786"})
    assert await api(jp_fetch, "jobs", "w") == before
    assert (await api(jp_fetch, "jobs"))["jobs"] == [before]

    # what write may change, alone or together, re-sending unchanged execute fields
    # as the panel's edit form does
    changed = await api(jp_fetch, "jobs", "w", method="PATCH", body={
        "schedule": "@daily", "description": "nightly", "timezone": "UTC",
        "enabled": False, "name": "w2", "command": "echo hi", "kind": "command",
        "env": {}, "cwd": None, "policy": {"retries": 2, "timeout": 60, "overlap": "queue",
                                           "notify_url": None}})
    assert (changed["schedule"], changed["description"], changed["name"]) == (
        "@daily", "nightly", "w2")
    assert changed["command"] == "echo hi" and changed["executor"] is None
    ALLOWED.add("execute")
    changed = await api(jp_fetch, "jobs", "w2", method="PATCH", body={
        "command": "echo changed", "policy": {"notify_url": "https://hooks.example.com/x"}})
    assert changed["command"] == "echo changed"


#: The permission each route x method needs: one table, and the test below holds the
#: server to it for every role (none, read only, write only, execute only).
ROUTE_PERMISSION = {
    ("GET", "status"): "read", ("GET", "jobs"): "read", ("POST", "jobs"): "execute",
    ("GET", "jobs/a"): "read", ("PATCH", "jobs/a"): "write", ("DELETE", "jobs/a"): "write",
    ("POST", "jobs/a/run"): "write", ("POST", "jobs/a/pause"): "write",
    ("POST", "jobs/a/resume"): "write", ("GET", "jobs/a/runs"): "read",
    ("GET", "jobs/a/stream"): "read", ("GET", "runs"): "read", ("GET", "runs/r1"): "read",
    ("POST", "runs/r1/cancel"): "write", ("GET", "runs/r1/log"): "read",
    ("GET", "runs/r1/stream"): "read", ("GET", "events"): "read", ("GET", "stats"): "read",
    ("GET", "preview"): "read", ("GET", "openapi.json"): "read", ("GET", "options"): "read",
    ("GET", "runs/r1/artifact"): "read", ("POST", "jobs/a/backfill"): "write",
    ("GET", "backfills/b1"): "read", ("POST", "backfills/b1/cancel"): "write",
    ("GET", "jobs/a/parameters"): "read", ("GET", "jobs/a/pipeline"): "read",
    ("GET", "jobs/a/backfill"): "read",
}


def test_the_matrix_covers_every_route():
    assert set(ROUTE_PERMISSION) == set(EVERY_ROUTE)


async def _status(port: int, base: str, auth: dict, method: str, path: str) -> int:
    """The HTTP status a route answers with: read from the status line, so a live
    stream (events, a run's output) counts as answered without being read to its end."""
    seen: list[int] = []

    def header(line: str) -> None:
        if line.startswith("HTTP/") and not seen:
            seen.append(int(line.split()[1]))
    body = None
    if method == "PATCH":
        body = json.dumps({"schedule": "@daily"})
    elif path == "jobs" and method == "POST":
        body = json.dumps({"name": "m", "schedule": "@yearly", "command": "true"})
    elif method == "POST":
        body = ""
    query = "?schedule=%40daily" if path == "preview" else ""
    req = HTTPRequest(f"http://127.0.0.1:{port}{base}api/cron/{path}{query}", method=method,
                      body=body, headers=auth, header_callback=header, request_timeout=3,
                      allow_nonstandard_methods=True)
    try:
        resp = await AsyncHTTPClient().fetch(req, raise_error=False)
    except Exception:  # noqa: BLE001 - a stream that stays open: its status line counts
        return seen[0] if seen else 599
    return seen[0] if seen else resp.code


@pytest.mark.parametrize("role", ["none", "read", "write", "execute"])
async def test_route_method_permission_matrix(cron, jp_fetch, jp_http_port,  # noqa: F811
                                              jp_base_url, jp_auth_header, role):
    """Each route answers 403 to a role without its permission, and anything but 403
    to the role with it (404 for the job 'a' or run 'r1' that do not exist is fine)."""
    ALLOWED.clear()
    if role != "none":
        ALLOWED.add(role)
    for (method, path), needed in ROUTE_PERMISSION.items():
        code = await _status(jp_http_port, jp_base_url, jp_auth_header, method, path)
        if role == needed:
            assert code not in (403, 599), (role, method, path, code)
        else:
            assert code == 403, (role, method, path, code)
