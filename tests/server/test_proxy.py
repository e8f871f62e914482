"""A JupyterHub user's server forwards ``/api/cron`` to the hub's service
(``server/proxy.py``): two real Jupyter servers, the session's one with the extension
and its store standing in for the hub service, and a second one started as a hub
starts a user's server (``HERMES_CRON_URL`` naming the service, a token to reach it).
Whatever the panel does through the user's server reaches the service, answers and
errors unchanged, live output streamed as it comes; the user's server keeps no store."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from tests.conftest import wait_for
from tests.notebook_support import _free_port

pytest_plugins = ("tests.notebook_fixtures",)
pytestmark = pytest.mark.timeout(180)


def _call(url: str, token: str | None, method: str = "GET", body=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"token {token}"
    req = urllib.request.Request(url, method=method, headers=headers,
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.fixture(scope="module")
def user_server(cron_server, tmp_path_factory):
    """A user's server as a hub starts it: it forwards to the service (cron_server)."""
    tmp = tmp_path_factory.mktemp("user-server")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERMES_CRON")}
    env.update({"HERMES_CRON_URL": cron_server.url, "HERMES_CRON_TOKEN": cron_server.token,
                "JUPYTER_DATA_DIR": str(tmp / "data"), "JUPYTER_RUNTIME_DIR": str(tmp / "rt")})
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", "--IdentityProvider.token=utok", "--allow-root",
         f"--ServerApp.root_dir={tmp}"], env=env, stdout=subprocess.DEVNULL,
        stderr=open(tmp / "server.log", "wb"), start_new_session=True)
    url = f"http://127.0.0.1:{port}/"

    def up():
        if proc.poll() is not None:
            raise AssertionError((tmp / "server.log").read_text(errors="replace")[-2000:])
        try:
            return _call(url + "api/cron/status", "utok")[0] == 200
        except OSError:
            return False
    wait_for(up, 90, 0.2, "the user's server")
    yield url, tmp, proc.pid
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(20)


def test_the_panels_calls_reach_the_service_and_come_back_unchanged(user_server, cron_server):
    url, tmp, _ = user_server
    api = url + "api/cron/"
    status, headers, body = _call(api + "jobs", "utok", "POST", {
        "name": "proxied", "schedule": "@yearly",
        "command": "for i in 1 2 3; do echo line $i; sleep 0.2; done"})
    assert status == 201, body
    job = json.loads(body)
    assert headers["Location"].endswith(f"/api/cron/jobs/{job['id']}")
    assert headers["Location"].startswith("/")  # this server's path, not the service's
    try:
        # the service has it: the same job, by its own API
        assert json.loads(_call(cron_server.url + "api/cron/jobs/proxied",
                                cron_server.token)[2])["id"] == job["id"]
        # an error passes through as the service gave it
        status, _, body = _call(api + "jobs/nope", "utok")
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
        status, _, body = _call(api + "jobs", "utok", "POST", {"name": "bad x"})
        assert status == 400 and json.loads(body)["error"]["field"]
        # a run, followed live through the user's server
        status, _, body = _call(api + "jobs/proxied/run", "utok", "POST", {})
        assert status == 202
        run = json.loads(body)
        req = urllib.request.Request(api + f"runs/{run['id']}/stream",
                                     headers={"Authorization": "token utok"})
        events = []
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            for raw in resp:
                line = raw.decode()
                if line.startswith("event:"):
                    events.append(line.split(":", 1)[1].strip())
                if line.startswith("data:") and events and events[-1] == "end":
                    break
        assert events[0] == "status" and "output" in events and events[-1] == "end"
        status, headers, body = _call(api + f"runs/{run['id']}/log", "utok")
        assert body == b"line 1\nline 2\nline 3\n"
        assert headers["X-Log-Size"] == str(len(body))
    finally:
        assert _call(api + "jobs/proxied", "utok", "DELETE")[0] == 204
    # the user's server made no store of its own
    assert not any("hermes" in name for _, _, files in os.walk(tmp) for name in files
                   if name.endswith(".db"))


def test_the_users_server_checks_its_own_user_first(user_server):
    url, _, _ = user_server
    status, _, _ = _call(url + "api/cron/jobs", None)
    assert status == 403  # jupyter_server refuses, nothing is forwarded
    status, _, _ = _call(url + "api/cron/jobs", "not-the-token")
    assert status == 403
    # a path that climbs out of the API never reaches the service's other routes
    status, _, body = _call(url + "api/cron/..%2F..%2Fapi%2Fcontents", "utok")
    assert status == 404, body


def test_a_service_that_is_down_is_a_clear_502(cron_server, tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERMES_CRON")}
    env.update({"HERMES_CRON_URL": f"http://127.0.0.1:{_free_port()}/services/hermes-cron/",
                "JUPYTER_DATA_DIR": str(tmp_path / "data"),
                "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")})
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", "--IdentityProvider.token=utok", "--allow-root",
         f"--ServerApp.root_dir={tmp_path}"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def answered():
            try:
                return _call(f"http://127.0.0.1:{port}/api/cron/status", "utok")
            except OSError:
                return None
        status, _, body = wait_for(answered, 90, 0.2, "the user's server")
        assert status == 502
        error = json.loads(body)["error"]
        assert error["code"] == "service_unavailable"
        assert "/services/hermes-cron/ did not answer" in error["message"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def _rss(pid: int) -> int:
    """The resident memory of process *pid*, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _slow_client(url: str, token: str) -> socket.socket:
    """A GET whose reader then reads nothing (a browser tab that does not keep up): its
    receive buffer small, as a busy client's is."""
    parsed = urllib.parse.urlparse(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect((parsed.hostname, parsed.port))
    sock.sendall(f"GET {parsed.path}?{parsed.query} HTTP/1.1\r\nHost: {parsed.netloc}\r\n"
                 f"Authorization: token {token}\r\nConnection: close\r\n\r\n".encode())
    return sock


@pytest.mark.slow
def test_a_client_that_does_not_read_holds_the_stream_back_not_the_servers_memory(
        user_server, cron_server):
    """The user's server forwards what the service sends only as fast as its browser takes
    it: a client that reads nothing while the service has 60 MB for it costs the user's
    server a bounded buffer (the service's stream is paused, not read into memory); once
    it reads again it gets every byte, as a fast client does."""
    url, tmp, pid = user_server
    api = url + "api/cron/"
    name = f"flood-{uuid.uuid4().hex[:6]}"
    status, _, body = _call(api + "jobs", "utok", "POST", {
        "name": name, "schedule": "@yearly", "command": "seq 1 8000000",
        "max_output": 1 << 30})
    assert status == 201, body
    try:
        run = json.loads(_call(api + f"jobs/{name}/run", "utok", "POST", {})[2])

        def ended():
            got = json.loads(_call(api + f"runs/{run['id']}", "utok")[2])
            return got["status"] not in ("queued", "running") and got
        assert wait_for(ended, 120, 0.2, "the run")["status"] == "succeeded"
        direct = _call(cron_server.url + f"api/cron/runs/{run['id']}/log",
                       cron_server.token)[2]
        assert len(direct) > 60_000_000
        # a fast client gets every byte through the user's server
        status, _, fast = _call(api + f"runs/{run['id']}/log", "utok")
        assert status == 200 and hashlib.sha256(fast).digest() == hashlib.sha256(
            direct).digest()
        del fast
        before = _rss(pid)
        sock = _slow_client(api + f"runs/{run['id']}/log?offset=0", "utok")
        try:
            peak = before
            for _ in range(30):  # 3 s: the service would have sent it all by then
                time.sleep(0.1)
                peak = max(peak, _rss(pid))
            assert peak - before < 16 * 1024 * 1024, (
                f"the user's server took {(peak - before) >> 20} MiB for a client that "
                f"reads nothing")
            # the client reads again: the rest comes, every byte, in order
            sock.settimeout(60)
            received = bytearray()
            while chunk := sock.recv(1 << 20):
                received += chunk
        finally:
            sock.close()
        head, _, slow = bytes(received).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        if b"transfer-encoding: chunked" in head.lower():
            slow = _unchunk(slow)
        assert len(slow) == len(direct)
        assert hashlib.sha256(slow).digest() == hashlib.sha256(direct).digest()
        # a browser that goes away while its forward waits for it: dropped quietly
        sock = _slow_client(api + f"runs/{run['id']}/log", "utok")
        time.sleep(1)
        sock.close()
        assert _call(api + f"runs/{run['id']}", "utok")[0] == 200
        time.sleep(0.5)
        log = (tmp / "server.log").read_text(errors="replace")
        assert "Uncaught exception" not in log and "Malformed HTTP" not in log, log[-3000:]
    finally:
        assert _call(api + f"jobs/{name}", "utok", "DELETE")[0] == 204


def _unchunk(data: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end], 16)
        if size == 0:
            return bytes(out)
        out += data[end + 2:end + 2 + size]
        pos = end + 2 + size + 2
