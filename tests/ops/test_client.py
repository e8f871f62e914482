"""The client's two backends against one real store: the same answers, the same errors."""

from __future__ import annotations

import time

import pytest

from hermes_cron_ext import ops as cron_client
from hermes_cron_ext.errors import Conflict, InvalidInput, NotFound
from hermes_cron_ext.frontends.widgets import LiveOutput
from hermes_cron_ext.ops import ConnectionFailed, Operations, RestClient, discover

pytest_plugins = ("tests.notebook_fixtures",)


@pytest.fixture
def server(cron_server):
    return cron_server


@pytest.fixture
def both(server):
    rest, local = RestClient(server.url, server.token), Operations(server.db)
    yield rest, local
    local.close()


def test_discovers_the_kernels_own_server(server, monkeypatch):
    monkeypatch.delenv("HERMES_CRON_URL", raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", server.runtime_dir)
    monkeypatch.setenv("JPY_PARENT_PID", str(server.proc.pid))
    found = discover()
    assert isinstance(found, RestClient) and found.base == server.url
    assert found.token == server.token and found.status()["ticking"]
    # a kernel started by something else (nbclient, a terminal): the local store
    monkeypatch.setenv("JPY_PARENT_PID", "1")
    monkeypatch.setenv("HERMES_CRON_DB", server.db)
    assert isinstance(discover(), Operations)
    # explicit settings win
    monkeypatch.setenv("HERMES_CRON_URL", server.url + "api/cron/")
    monkeypatch.setenv("HERMES_CRON_TOKEN", server.token)
    explicit = discover()
    assert isinstance(explicit, RestClient) and explicit.base == server.url
    monkeypatch.setenv("HERMES_CRON_URL", "local")
    assert isinstance(discover(), Operations)


def test_a_hub_users_kernel_reaches_the_service_as_that_user(server, monkeypatch):
    """In a JupyterHub user's kernel the hub sets HERMES_CRON_URL (the service) and the
    server's JUPYTERHUB_API_TOKEN: %cron uses that token, the user's identity there."""
    monkeypatch.setenv("HERMES_CRON_URL", server.url)
    monkeypatch.delenv("HERMES_CRON_TOKEN", raising=False)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", server.token)
    found = discover()
    assert isinstance(found, RestClient) and found.token == server.token
    assert found.status()["ticking"]
    monkeypatch.setenv("HERMES_CRON_TOKEN", "its-own")  # an explicit token wins
    assert discover().token == "its-own"


def test_connect_sets_the_default(server, monkeypatch):
    monkeypatch.setenv("HERMES_CRON_URL", "local")
    monkeypatch.setenv("HERMES_CRON_DB", server.db)
    try:
        c = cron_client.connect(server.url, server.token)
        assert cron_client.get_client() is c and c.kind == "server"
        with pytest.raises(ConnectionFailed, match="cannot reach"):
            cron_client.connect("http://127.0.0.1:9/", "x")
        with pytest.raises(Exception, match="refused"):
            cron_client.connect(server.url, "wrong-token")
    finally:
        cron_client.set_client(None)


def _same_shape(a: dict, b: dict) -> None:
    assert set(a) == set(b), set(a) ^ set(b)


def test_both_backends_answer_alike(both):
    rest, local = both
    spec = {"schedule": "@yearly", "timezone": "UTC", "command": "echo same; echo err >&2",
            "secret_env": {"TOKEN": "hidden"}}
    a = rest.add({"name": "via-rest", **spec})
    b = local.add({"name": "via-local", **spec})
    _same_shape({k: v for k, v in a.items() if k != "warning"},
                {k: v for k, v in b.items() if k != "warning"})
    assert a["env"] == b["env"] == {"TOKEN": "********"}
    assert rest.job("via-local") == local.job("via-local")
    assert rest.jobs() == local.jobs()
    assert local.edit("via-rest", {"description": "x"}) == rest.job("via-rest")
    assert rest.pause("via-local")["state"] == local.job("via-local")["state"] == "paused"
    assert local.resume("via-local")["state"] == "scheduled"

    r1, r2 = rest.run_now("via-rest"), local.run_now("via-local")
    _same_shape(r1, r2)
    for run in (r1, r2):
        done = rest.wait(run["id"], 30)
        assert done == local.run(run["id"]) and done["status"] == "succeeded"
        assert rest.log(run["id"]) == local.log(run["id"])
        assert rest.log(run["id"], tail=4)[0] == b"err\n"
        assert rest.text(run["id"]) == local.text(run["id"]) == "same\nerr\n"
    assert rest.runs("via-rest") == local.runs("via-rest")
    assert rest.preview("@every 1h", "UTC", 2, "2025-01-01T00:00:00Z") == local.preview(
        "@every 1h", "UTC", 2, "2025-01-01T00:00:00Z")
    assert set(rest.status()) == set(local.status())
    assert rest.stats()["jobs"] == local.stats()["jobs"]

    for c in (rest, local):
        with pytest.raises(NotFound, match="no job 'nope'"):
            c.job("nope")
        with pytest.raises(InvalidInput, match="minute 61"):
            c.add({"name": "bad", "schedule": "61 * * * *", "command": "x"})
        with pytest.raises(Conflict, match="already exists"):
            c.add({"name": "via-rest", **spec})
        with pytest.raises(NotFound, match="no run 'r_nope'"):
            c.resolve_run("r_nope")
        for count in (0, -3):  # a mistake, not a schedule that "never fires again"
            with pytest.raises(InvalidInput, match="count must be between 1 and 100"):
                c.preview("@daily", "UTC", count)
    rest.remove("via-rest")
    local.remove("via-local")
    assert not {"via-rest", "via-local"} & {j["name"] for j in rest.jobs()}


def _events(stream) -> list[dict]:
    return list(stream)


def test_streams_alike_and_resume_by_offset(both):
    rest, local = both
    rest.add({"name": "streamed", "schedule": "@yearly", "kind": "python",
              "code": "import time\nfor i in range(4):\n    print('tick', i, flush=True)\n"
                      "    time.sleep(0.2)\nprint('caf\\u00e9')"})
    run = rest.run_now("streamed")
    over_sse = _events(rest.stream(run["id"]))
    assert over_sse[0]["event"] == "status" and over_sse[-1]["event"] == "end"
    text = "".join(e["data"]["text"] for e in over_sse if e["event"] == "output")
    assert text == "tick 0\ntick 1\ntick 2\ntick 3\ncafé\n"
    from_file = _events(local.stream(run["id"]))
    assert "".join(e["data"]["text"] for e in from_file if e["event"] == "output") == text
    assert from_file[-1] == {"event": "end", "id": None, "data": over_sse[-1]["data"]}
    middle = len("tick 0\ntick 1\n")
    for c in (rest, local):
        rest_of = _events(c.stream(run["id"], middle))
        assert "".join(e["data"]["text"] for e in rest_of if e["event"] == "output") == \
            text.encode()[middle:].decode()
    rest.remove("streamed")


def test_live_output_over_the_server(both):
    rest, _ = both
    rest.add({"name": "remote", "schedule": "@yearly", "kind": "python",
              "code": "import time\nfor i in range(5):\n    print(f'\\033[1mstep\\033[0m {i}', "
                      "flush=True)\n    time.sleep(0.3)\nraise SystemExit(4)"})
    run = rest.run_now("remote")
    out = LiveOutput(run["id"], client=rest)
    seen_running = False
    deadline = time.monotonic() + 30
    while not out.done and time.monotonic() < deadline:
        if out.status == "running" and "step 1" in out.text:
            seen_running = True
        time.sleep(0.02)
    assert out.wait(30) and seen_running
    assert (out.status, out.exit_code) == ("failed", 4)
    assert out.text == "\n".join(f"step {i}" for i in range(5))
    assert out.lines[0] == '<span class="ansi-bold">step</span> 0'
    assert out.artifact_url == ""  # not a notebook job
    out.close()
    rest.remove("remote")
