"""The REST + SSE API against the real jupyter-server, with real runs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from hermes_cron_ext.server import openapi
from hermes_cron_ext.server.handlers import routes
from tests.conftest import _kill_supervisors

HERE = os.path.dirname(__file__)


@pytest.fixture
def cron_db(tmp_path):
    return str(tmp_path / "cron" / "hermes-cron.db")


@pytest.fixture
def server_ticker():
    return True


@pytest.fixture
def hermes_config():
    """More ``c.HermesCron`` settings for one test (parametrize it)."""
    return {}


@pytest.fixture
def jp_server_config(cron_db, server_ticker, hermes_config):
    return {
        "ServerApp": {"jpserver_extensions": {"hermes_cron_ext": True}},
        "HermesCron": {"db": cron_db, "ticker": server_ticker, "lead": 0.5, "poll": 0.2,
                       "handoff": False, **hermes_config},
    }


@pytest.fixture
def cron(jp_serverapp, jp_asyncio_loop, monkeypatch):
    """The extension, started as the real server starts it (pytest-jupyter does not)."""
    monkeypatch.setenv("HERMES_CRON_HEARTBEAT", "0.5")
    app = jp_serverapp.extension_manager.extension_points["hermes_cron_ext"].app
    jp_asyncio_loop.run_until_complete(app._start_jupyter_server_extension(jp_serverapp))
    yield app
    jp_asyncio_loop.run_until_complete(app.stop_extension())
    _kill_supervisors(app.host.store.sync.path)  # leave no supervisor or payload behind


async def api(jp_fetch, *path, method="GET", body=None, expect=None, **kw):
    if body is not None and not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    try:
        resp = await jp_fetch("api", "cron", *path, method=method, body=body, **kw)
    except HTTPClientError as err:
        if expect is None:
            raise
        assert err.code == expect, (err.code, err.response.body if err.response else None)
        return json.loads(err.response.body)
    if expect is not None:
        assert resp.code == expect, resp.code
    if resp.headers.get("Content-Type", "").startswith("application/json") and resp.body:
        return json.loads(resp.body)
    return resp


class SSE:
    """A streaming SSE client over real HTTP: events land in ``events`` as they arrive."""

    def __init__(self, url: str, headers: dict):
        self.url, self.headers = url, headers
        self.events: list[dict] = []
        self._buf = ""
        self.done: asyncio.Future | None = None

    def _chunk(self, data: bytes) -> None:
        self._buf += data.decode()
        while "\n\n" in self._buf:
            block, self._buf = self._buf.split("\n\n", 1)
            event = {"event": "message", "data": ""}
            for line in block.split("\n"):
                if line.startswith(":"):
                    continue
                key, _, value = line.partition(": ")
                event[key] = value
            if "data" in event and event["data"]:
                event["data"] = json.loads(event["data"])
                self.events.append(event)

    def start(self, headers: dict | None = None) -> SSE:
        req = HTTPRequest(self.url, headers={**self.headers, **(headers or {})},
                          streaming_callback=self._chunk, request_timeout=60)
        self.done = asyncio.ensure_future(AsyncHTTPClient().fetch(req, raise_error=False))
        return self

    async def wait_for(self, pred, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events:
                if pred(e):
                    return e
            if self.done.done():
                break
            await asyncio.sleep(0.02)
        raise AssertionError(f"event not seen; got {[e['event'] for e in self.events]}")

    def of(self, name: str) -> list[dict]:
        return [e for e in self.events if e["event"] == name]


@pytest.fixture
def sse_url(jp_http_port, jp_base_url):
    def make(path: str) -> str:
        return f"http://127.0.0.1:{jp_http_port}{jp_base_url}api/cron/{path}"
    return make


async def test_routes_answer(cron, jp_fetch):
    status = await api(jp_fetch, "status")
    assert status["ticking"] is True and status["warning"] is None
    assert [t["kind"] for t in status["tickers"] if t["alive"]] == ["server"]
    assert (await api(jp_fetch, "jobs")) == {"jobs": [], "cursor": None}
    assert (await api(jp_fetch, "stats"))["jobs"] == []
    preview = await api(jp_fetch, "preview", params={"schedule": "@every 1h30m", "tz": "UTC",
                                                     "count": 2, "from": "2025-01-01T00:00:00Z"})
    assert preview["next"] == ["2025-01-01T01:30:00Z", "2025-01-01T03:00:00Z"]


async def test_job_fires_and_output_streams_live_with_resume(cron, jp_fetch, sse_url,
                                                           jp_auth_header):
    job = await api(jp_fetch, "jobs", method="POST", expect=201, body={
        "name": "live", "schedule": "@every 1s", "timezone": "UTC",
        "command": "echo first; echo 'oops' >&2; sleep 2; echo second; printf 'caf\\303\\251'"})
    assert job["state"] == "scheduled" and "warning" not in job
    # no client watches: it fires anyway and shows up in the history
    for _ in range(200):
        runs = (await api(jp_fetch, "jobs", job["id"], "runs"))["runs"]
        running = [r for r in runs if r["status"] == "running"]
        if running:
            break
        await asyncio.sleep(0.05)
    run = running[0]
    assert run["trigger"] in ("schedule", "catchup") and run["attempt"] == 1
    stream = SSE(sse_url(f"runs/{run['id']}/stream"), jp_auth_header).start()
    first = await stream.wait_for(lambda e: e["event"] == "output" and
                                  "first" in e["data"]["text"])
    # the line arrived while the payload was still running
    assert (await api(jp_fetch, "runs", run["id"]))["status"] == "running"
    assert first["data"]["stream"] == "stdout"
    await stream.wait_for(lambda e: e["event"] == "output" and e["data"]["stream"] == "stderr")
    resume_at = stream.of("output")[-1]["id"]
    end = await stream.wait_for(lambda e: e["event"] == "end")
    assert end["data"]["status"] == "succeeded"
    whole = "".join(e["data"]["text"] for e in stream.of("output"))
    assert whole == "first\noops\nsecond\ncafé"
    # reconnect from the last id seen before the end: the rest, no loss, no repeat
    again = SSE(sse_url(f"runs/{run['id']}/stream"), jp_auth_header).start(
        {"Last-Event-ID": resume_at})
    await again.wait_for(lambda e: e["event"] == "end")
    rest = "".join(e["data"]["text"] for e in again.of("output"))
    # ... what follows the byte offset it resumed from, no byte lost or repeated
    assert 0 < int(resume_at) < len(whole.encode())
    assert rest.encode() == whole.encode()[int(resume_at):]
    # the log's tail is its last bytes, and says where they start
    size = len(whole.encode())
    log = await jp_fetch("api", "cron", "runs", run["id"], "log", params={"tail": 5})
    assert log.body == "café".encode() and len(log.body) == 5
    assert int(log.headers["X-Log-Size"]) == size
    assert int(log.headers["X-Log-Offset"]) == size - 5
    part = await jp_fetch("api", "cron", "runs", run["id"], "log",
                          params={"offset": 6, "limit": 4})
    assert part.body == b"oops" and int(part.headers["X-Log-Offset"]) == 6


async def test_job_stream_404_at_once_when_idle(cron, jp_fetch):
    await api(jp_fetch, "jobs", method="POST", expect=201,
              body={"name": "idle", "schedule": "@yearly", "command": "true"})
    started = time.monotonic()
    err = await api(jp_fetch, "jobs", "idle", "stream", expect=404)
    assert time.monotonic() - started < 1.0
    assert err["error"]["code"] == "not_found" and "no running run" in err["error"]["message"]


@pytest.mark.parametrize("server_ticker", [False])
async def test_daemon_run_shows_on_events(cron, jp_fetch, sse_url, jp_auth_header, cron_db):
    status = await api(jp_fetch, "status")
    assert status["ticking"] is False and "no ticker is alive" in status["warning"]
    job = await api(jp_fetch, "jobs", method="POST", expect=201,
                    body={"name": "bydaemon", "schedule": "@every 1s", "command": "echo hi"})
    assert "no ticker is alive" in job["warning"]
    events = SSE(sse_url("events"), jp_auth_header).start()
    env = {**os.environ, "HERMES_CRON_DB": cron_db}
    daemon = subprocess.Popen([sys.executable, "-m", "hermes_cron_ext", "daemon"], env=env,
                              stderr=subprocess.DEVNULL)
    try:
        started = await events.wait_for(lambda e: e["event"] == "run.started", 30)
        finished = await events.wait_for(lambda e: e["event"] == "run.finished", 30)
        assert started["data"]["job_id"] == job["id"]
        assert finished["data"]["data"]["status"] == "succeeded"
        assert int(finished["id"]) > int(started["id"])
        status = await api(jp_fetch, "status")
        assert [t["kind"] for t in status["tickers"] if t["alive"]] == ["daemon"]
    finally:
        daemon.terminate()
        daemon.wait(10)


async def test_secret_env_never_returned(cron, jp_fetch):
    job = await api(jp_fetch, "jobs", method="POST", expect=201, body={
        "name": "sec", "schedule": "@daily", "command": "true",
        "secret_env": {"API_TOKEN": "s3cr3t-value"}, "env": {"MODE": "prod"}})
    for body in (job, await api(jp_fetch, "jobs", "sec"), await api(jp_fetch, "jobs")):
        assert "s3cr3t-value" not in json.dumps(body)
    assert job["env"] == {"MODE": "prod", "API_TOKEN": "********"}
    assert job["secret_env"] == ["API_TOKEN"]


async def test_idempotency_key_header(cron, jp_fetch):
    body = {"name": "idem", "schedule": "@daily", "command": "true"}
    one = await api(jp_fetch, "jobs", method="POST", body=body, expect=201,
                    headers={"Idempotency-Key": "abc"})
    two = await api(jp_fetch, "jobs", method="POST", body=body, expect=200,
                    headers={"Idempotency-Key": "abc"})
    assert one["id"] == two["id"]
    # the same key with another body is a client bug, not a retry: 409 naming the key
    err = await api(jp_fetch, "jobs", method="POST", expect=409,
                    body={**body, "command": "rm -rf ~/data"},
                    headers={"Idempotency-Key": "abc"})
    assert "idempotency key 'abc'" in err["error"]["message"]
    assert err["error"]["field"] == "idempotency_key"


async def test_run_now_pause_resume_cancel_delete(cron, jp_fetch):
    await api(jp_fetch, "jobs", method="POST", expect=201,
              body={"name": "act", "schedule": "@yearly", "command": "sleep 30"})
    run = await api(jp_fetch, "jobs", "act", "run", method="POST", body="", expect=202)
    assert run["trigger"] == "manual"
    for _ in range(200):
        if (await api(jp_fetch, "runs", run["id"]))["status"] == "running":
            break
        await asyncio.sleep(0.05)
    err = await api(jp_fetch, "jobs", "act", "run", method="POST", body="", expect=409)
    assert "overlap" in err["error"]["message"]
    await api(jp_fetch, "runs", run["id"], "cancel", method="POST", body="", expect=202)
    for _ in range(200):
        got = await api(jp_fetch, "runs", run["id"])
        if got["status"] == "cancelled":
            break
        await asyncio.sleep(0.05)
    assert got["status"] == "cancelled"
    paused = await api(jp_fetch, "jobs", "act", "pause", method="POST", body="")
    assert paused["state"] == "paused"
    resumed = await api(jp_fetch, "jobs", "act", "resume", method="POST", body="")
    assert resumed["state"] == "scheduled"
    resp = await api(jp_fetch, "jobs", "act", method="DELETE")
    assert resp.code == 204
    await api(jp_fetch, "jobs", "act", expect=404)


async def test_bad_input_is_4xx_and_changes_nothing(cron, jp_fetch):
    good = {"name": "keep", "schedule": "@daily", "command": "echo kept"}
    await api(jp_fetch, "jobs", method="POST", body=good, expect=201)
    before = await api(jp_fetch, "jobs")
    cases = [
        ({"name": "x", "schedule": "61 * * * *", "command": "t"}, 400, "minute 61"),
        ({"name": "x", "schedule": "* * * * *", "timezone": "Europe/Berln", "command": "t"},
         400, "unknown time zone"),
        ({"name": "x", "schedule": "* * * * *", "command": "t", "colour": "red"}, 400,
         "unknown field 'colour'"),
        ({"name": 5, "schedule": "* * * * *", "command": "t"}, 400, "name"),
        ({"name": "x", "schedule": ["* * * * *"], "command": "t"}, 400, "schedule"),
        ({"name": "x", "schedule": "* * * * *", "command": "t", "retries": "many"}, 400,
         "retries"),
        ({"name": "keep", "schedule": "@hourly", "command": "t"}, 409, "already exists"),
        ("not json", 400, "not valid JSON"),
        ([1, 2], 400, "JSON object"),
        ({"name": "x", "schedule": "* * * * *", "command": "x" * (1024 * 1024 + 10)}, 413, ""),
    ]
    for body, code, message in cases:
        err = await api(jp_fetch, "jobs", method="POST", body=body, expect=code)
        assert message in err["error"]["message"] or (message in err["error"].get("field", "")
                                                      ), (body if len(str(body)) < 200 else
                                                          "big", err)
    patches = [({"schedule": "bogus"}, 400), ({"enabled": "yes"}, 400), ({"nope": 1}, 400),
               ({"name": "bad name!"}, 400), ({"timeout": -1}, 400)]
    for body, code in patches:
        await api(jp_fetch, "jobs", "keep", method="PATCH", body=body, expect=code)
    for path in (("jobs", "missing"), ("jobs", "missing", "runs"), ("runs", "r_0000000000000000"),
                 ("runs", "r_0000000000000000", "log"), ("jobs", "..", "runs")):
        await api(jp_fetch, *path, expect=404)
    await api(jp_fetch, "jobs", "missing", "run", method="POST", body="", expect=404)
    await api(jp_fetch, "jobs", "missing", method="DELETE", expect=404)
    await api(jp_fetch, "jobs", method="GET", params={"limit": "0"}, expect=400)
    await api(jp_fetch, "jobs", method="GET", params={"cursor": "!!"}, expect=400)
    await api(jp_fetch, "preview", params={"schedule": "0 0 31 2 *"}, expect=400)
    for count in ("0", "-1", "-100", "1.5", "x", "101"):
        err = await api(jp_fetch, "preview", params={"schedule": "@daily", "count": count},
                        expect=400)
        assert err["error"]["field"] == "count", (count, err)
    assert await api(jp_fetch, "jobs") == before


async def test_an_unknown_filter_value_is_a_400_naming_the_allowed_ones(cron, jp_fetch):
    """``?state=bogus`` is a typo, not "no such jobs": an empty 200 would hide it."""
    await api(jp_fetch, "jobs", method="POST", expect=201,
              body={"name": "f", "schedule": "@daily", "command": "true"})
    for path, name, allowed in ((("jobs",), "state", "scheduled, running, paused, blocked, "
                                                     "disabled"),
                                (("runs",), "status", "queued, running, succeeded"),
                                (("jobs", "f", "runs"), "status", "queued, running")):
        err = await api(jp_fetch, *path, params={name: "bogus"}, expect=400)
        assert err["error"]["field"] == name
        assert allowed in err["error"]["message"] and "'bogus'" in err["error"]["message"]
    assert [j["name"] for j in (await api(jp_fetch, "jobs", params={"state": "scheduled"}))[
        "jobs"]] == ["f"]
    err = await api(jp_fetch, "events", params={"job": "nope"}, expect=404)
    assert "nope" in err["error"]["message"]


async def test_openapi_document_matches_routes(cron, jp_fetch):
    doc = await api(jp_fetch, "openapi.json")
    # served as committed (its job, run, policy and page schemas generated: test_generated)
    with open(openapi.PATH, encoding="utf-8") as f:
        assert doc == json.load(f)
    schemas = doc["components"]["schemas"]
    assert {"Job", "Run", "Policy", "JobPage", "RunPage", "Option"} <= set(schemas)
    documented = set()
    for path, item in doc["paths"].items():
        for method in item:
            if method != "parameters":
                documented.add((re.sub(r"\{\w+\}", "X", path), method.upper()))
    served = set()
    for pattern, handler in routes():
        if "rest" in pattern:
            continue  # the JSON 404 for unknown paths
        path = re.sub(r"\(\?P<ref>[^)]*\)\{0,99\}\)|\(\?P<ref>[^)]*\)", "X", pattern)
        path = path.replace("api/cron", "")
        paths = ([path.replace("(?P<action>run|pause|resume)", a) for a in
                  ("run", "pause", "resume")] if "action" in path else [path])
        for p in paths:
            p = re.sub(r"\(\?P<\w+>.*?\)", "X", p)
            for method in ("GET", "POST", "PATCH", "DELETE"):
                if method.lower() in handler.__dict__ or any(
                        method.lower() in k.__dict__ for k in handler.__mro__[1:3]
                        if k.__module__ == handler.__module__):
                    served.add((p, method))
    assert documented == served


async def test_shutdown_wakes_and_closes_every_stream(cron, jp_fetch, sse_url, jp_auth_header):
    await api(jp_fetch, "jobs", method="POST", expect=201,
              body={"name": "endless", "schedule": "@yearly", "command": "sleep 30"})
    run = await api(jp_fetch, "jobs", "endless", "run", method="POST", body="", expect=202)
    events = SSE(sse_url("events"), jp_auth_header).start()
    output = SSE(sse_url(f"runs/{run['id']}/stream"), jp_auth_header).start()
    await output.wait_for(lambda e: e["event"] == "status")
    await asyncio.sleep(0.2)
    assert not events.done.done() and not output.done.done()
    started = time.monotonic()
    await cron.stop_extension()
    await asyncio.wait_for(asyncio.gather(events.done, output.done), 5)
    assert time.monotonic() - started < 2.0


async def test_many_viewers_share_output_and_resume_anywhere(cron, jp_fetch, sse_url,
                                                             jp_auth_header):
    code = ("import time\nfor i in range(40):\n    print(f'line {i:02d} ✓', flush=True)\n"
            "    time.sleep(0.03)\n")
    await api(jp_fetch, "jobs", method="POST", expect=201,
              body={"name": "chatty", "schedule": "@yearly", "kind": "python", "code": code})
    run = await api(jp_fetch, "jobs", "chatty", "run", method="POST", body="", expect=202)
    viewers = [SSE(sse_url(f"runs/{run['id']}/stream"), jp_auth_header).start()
               for _ in range(20)]
    for viewer in viewers:
        await viewer.wait_for(lambda e: e["event"] == "end", 30)
    log = (await jp_fetch("api", "cron", "runs", run["id"], "log")).body
    expected = "".join(f"line {i:02d} ✓\n" for i in range(40))
    assert log.decode() == expected
    for viewer in viewers:  # every viewer saw every byte once, in order
        assert "".join(e["data"]["text"] for e in viewer.of("output")) == expected
        ids = [int(e["id"]) for e in viewer.of("output")]
        assert ids == sorted(ids) and ids[-1] == len(log)
    for offset in (0, 1, 12, len(log) // 2 + 1, len(log) - 1):
        while log[offset] & 0xC0 == 0x80:  # start on a character
            offset += 1
        again = SSE(sse_url(f"runs/{run['id']}/stream?offset={offset}"), jp_auth_header).start()
        await again.wait_for(lambda e: e["event"] == "end")
        assert "".join(e["data"]["text"] for e in again.of("output")) == log[offset:].decode()


async def test_live_viewers_keep_up_with_a_flood_and_lossless_ones_get_every_byte(
        cron, jp_fetch, sse_url, jp_auth_header):
    """A payload printing megabytes at once: a live view skips ahead with a ``gap``
    event (offsets stay contiguous, the skipped bytes are counted), a ``?lossless=1``
    view and a view of the finished run get every byte of the log."""
    code = ("import sys, time\nline = 'x' * 99 + '\\n'\n"
            "for i in range(30000):\n    sys.stdout.write(f'{i:06d} ' + line)\n"
            "sys.stdout.flush()\ntime.sleep(1.5)\nprint('the end')\n")
    await api(jp_fetch, "jobs", method="POST", expect=201,
              body={"name": "flood", "schedule": "@yearly", "kind": "python", "code": code})
    run = await api(jp_fetch, "jobs", "flood", "run", method="POST", body="", expect=202)
    live = SSE(sse_url(f"runs/{run['id']}/stream"), jp_auth_header).start()
    lossless = SSE(sse_url(f"runs/{run['id']}/stream?lossless=1"), jp_auth_header).start()
    await live.wait_for(lambda e: e["event"] == "status" and e["data"]["status"] == "running",
                        30)
    for viewer in (live, lossless):
        await viewer.wait_for(lambda e: e["event"] == "end", 60)
    log = (await jp_fetch("api", "cron", "runs", run["id"], "log")).body
    assert len(log) > 3_000_000 and log.endswith(b"the end\n")

    gaps = live.of("gap")
    assert gaps, "the live view never skipped ahead"
    at, shown = 0, 0
    for e in live.events:  # every byte is either shown (equal to the log) or counted
        if e["event"] == "output":
            assert e["data"]["offset"] == at
            text = e["data"]["text"].encode()
            assert log[at:at + len(text)] == text
            at, shown = at + len(text), shown + len(text)
        elif e["event"] == "gap":
            assert e["data"]["from"] == at and e["data"]["bytes"] > 0
            at = e["data"]["to"]
            assert int(e["id"]) == at and log[at - 1:at] == b"\n"  # skips to a line start
    assert at == len(log) and 32 * 1024 <= shown < len(log)  # recent lines were shown
    # the last line was shown (print may write it and its newline as two chunks)
    assert "".join(e["data"]["text"] for e in live.of("output")).endswith("the end\n")

    assert not lossless.of("gap")
    assert "".join(e["data"]["text"] for e in lossless.of("output")).encode() == log
    replay = SSE(sse_url(f"runs/{run['id']}/stream"), jp_auth_header).start()
    await replay.wait_for(lambda e: e["event"] == "end", 30)
    assert not replay.of("gap")
    assert "".join(e["data"]["text"] for e in replay.of("output")).encode() == log

    bad = await jp_fetch("api", "cron", "runs", run["id"], "stream",
                         params={"lossless": "maybe"}, raise_error=False)
    assert bad.code == 400 and json.loads(bad.body)["error"]["field"] == "lossless"


@pytest.mark.parametrize("hermes_config", [{"executors": ["local", "dask://10.1.2.3:8786"]}])
async def test_jobs_name_only_executors_the_operator_allows(cron, jp_fetch):
    base = {"name": "x", "schedule": "@yearly", "command": "true"}
    for bad in ("dask://127.0.0.1:8786", "tls://10.1.2.3:8786", "dask://10.1.2.3:8787"):
        err = await api(jp_fetch, "jobs", method="POST", body={**base, "executor": bad},
                        expect=400)
        assert err["error"]["field"] == "executor"
        assert bad in err["error"]["message"]
        assert "allowed: local, dask://10.1.2.3:8786" in err["error"]["message"]
    assert (await api(jp_fetch, "jobs"))["jobs"] == []
    # the same scheduler however it is spelled
    for i, good in enumerate(("dask://10.1.2.3:8786", "tcp://10.1.2.3:8786/", "local")):
        job = await api(jp_fetch, "jobs", method="POST", expect=201,
                        body={**base, "name": f"x{i}", "executor": good})
        assert job["executor"] == good
    err = await api(jp_fetch, "jobs", "x2", method="PATCH", expect=400,
                    body={"executor": "dask://evil.example.com:8786"})
    assert "allowed: local, dask://10.1.2.3:8786" in err["error"]["message"]
    assert (await api(jp_fetch, "jobs", "x2"))["executor"] == "local"
    changed = await api(jp_fetch, "jobs", "x2", method="PATCH",
                        body={"executor": "dask://10.1.2.3:8786"})
    assert changed["executor"] == "dask://10.1.2.3:8786"


async def test_ticker_refuses_a_stored_job_naming_an_executor_not_allowed(cron, jp_fetch):
    """A job stored with an executor the operator never allowed (an older server, the
    store written directly): its run fails with the reason, nothing is contacted."""
    from hermes_cron_ext.domain.jobspec import validate_new

    listener = __import__("socket").socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        await cron.host.store.create_job(validate_new({
            "name": "elsewhere", "schedule": "@yearly", "command": "echo ran",
            "executor": f"dask://127.0.0.1:{port}"}))
        # a write user may still edit its schedule: the stored executor is not re-checked
        await api(jp_fetch, "jobs", "elsewhere", method="PATCH", body={"schedule": "@daily"})
        run = await api(jp_fetch, "jobs", "elsewhere", "run", method="POST", body="",
                        expect=202)
        for _ in range(200):
            run = await api(jp_fetch, "runs", run["id"])
            if run["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.05)
        assert run["status"] == "failed", run
        assert f"executor 'dask://127.0.0.1:{port}' is not one the operator allows" \
            in run["reason"] and "allowed: local" in run["reason"]
        assert run["pid"] is None
        with pytest.raises(BlockingIOError):  # nobody ever connected to it
            listener.accept()
    finally:
        listener.close()
