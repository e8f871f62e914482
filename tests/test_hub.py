"""Jobs keep firing when JupyterHub culls a user's server: a real hub, the
SimpleLocalProcessSpawner, and the hub API call the idle culler makes
(``DELETE /hub/api/users/NAME/server``; the spawner then sends SIGINT)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import wait_for

pytest.importorskip("jupyterhub")
# a real hub: with the other real-hub tests in `make accounts`, so the normal suite
# keeps its margin under 10 minutes (this one needs no root)
pytestmark = [pytest.mark.timeout(300), pytest.mark.accounts]

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url: str, token: str, method: str = "GET", body=None):
    req = urllib.request.Request(url, method=method, headers={
        "Authorization": f"token {token}", "Content-Type": "application/json"},
        data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req, timeout=15) as resp:
        data = resp.read()
        return resp.status, json.loads(data) if data else None


def test_a_culled_users_jobs_keep_firing_through_the_handoff(tmp_path):
    hub_port, user_port = _free_port(), _free_port()
    token = secrets.token_hex(16)
    store = tmp_path / "alice-store" / "cron.db"
    ledger = tmp_path / "ledger"
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(f"""
import sys
sys.path.insert(0, {HERE!r})
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.spawner_class = "simple"
c.JupyterHub.proxy_class = "hub_support.NoProxy"
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {_free_port()}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{tmp_path}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{tmp_path}/cookie_secret"
c.JupyterHub.services = [{{"name": "culler", "api_token": "{token}"}}]
c.JupyterHub.load_roles = [{{"name": "culler", "services": ["culler"],
    "scopes": ["admin:users", "admin:servers", "access:servers", "read:users"]}}]
c.Spawner.cmd = [{sys.executable!r}, "-m", "jupyterhub.singleuser"]
c.Spawner.args = {["--allow-root"] if os.geteuid() == 0 else []!r}
c.Spawner.ip = "127.0.0.1"
c.Spawner.port = {user_port}
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90
c.Spawner.environment = {{"HERMES_CRON_DB": "{store}", "HERMES_CRON_HEARTBEAT": "0.5"}}
c.SimpleLocalProcessSpawner.home_dir_template = "{tmp_path}/home/{{username}}"
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERMES_CRON", "JUPYTER"))}
    env["JUPYTER_DATA_DIR"] = str(tmp_path / "data")
    hub = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(config)],
                           cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=open(tmp_path / "hub.log", "wb"),
                           start_new_session=True)
    api = f"http://127.0.0.1:{hub_port}/hub/api"
    server = f"http://127.0.0.1:{user_port}/user/alice"
    cron_env = {**env, "HERMES_CRON_DB": str(store)}
    try:
        def hub_up():
            if hub.poll() is not None:
                raise AssertionError((tmp_path / "hub.log").read_text(errors="replace")[-3000:])
            try:
                return _call(f"{api}/", token)[0] == 200
            except (OSError, urllib.error.HTTPError):
                return False
        wait_for(hub_up, 60, 0.3, "the hub")
        _call(f"{api}/users/alice", token, "POST", {})
        _call(f"{api}/users/alice/server", token, "POST", {})
        wait_for(lambda: _call(f"{api}/users/alice", token)[1]["servers"].get("", {}).get(
            "ready"), 90, 0.5, "alice's server")

        def ticking():
            try:
                return _call(f"{server}/api/cron/status", token)[1]["ticking"]
            except (OSError, urllib.error.HTTPError):
                return False
        wait_for(ticking, 60, 0.5, "the scheduler in alice's server")
        _call(f"{server}/api/cron/jobs", token, "POST", {
            "name": "tick", "schedule": "@every 2s",
            "command": f'echo "$HERMES_CRON_SCHEDULED_FOR" >> {ledger}'})
        wait_for(lambda: ledger.exists() and len(ledger.read_text().split()) >= 2, 30, 0.3,
                 "two slots from alice's server")

        # what jupyterhub-idle-culler does to an idle server
        status, _ = _call(f"{api}/users/alice/server", token, "DELETE")
        assert status in (202, 204)
        wait_for(lambda: not _call(f"{api}/users/alice", token)[1]["servers"], 60, 0.5,
                 "the hub to report the server stopped")
        stopped = time.time()
        daemons = json.loads(subprocess.run(
            [sys.executable, "-m", "hermes_cron_ext", "daemon", "status", "--json"],
            env=cron_env, capture_output=True, text=True).stdout)["daemons"]
        assert [d["kind"] for d in daemons] == ["handoff"], daemons
        wait_for(lambda: any(float(x) > stopped for x in ledger.read_text().split()), 10, 0.3,
                 "a slot after the cull, fired by the handoff daemon")
    finally:
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(hub.pid, signal.SIGKILL)
        stop = subprocess.run([sys.executable, "-m", "hermes_cron_ext", "daemon", "stop"],
                              env=cron_env, capture_output=True, text=True)
    assert stop.returncode == 0, stop.stderr
    slots = [float(x) for x in ledger.read_text().split()]
    assert len(slots) == len(set(slots)), "a slot fired twice"
    assert sorted(slots) == slots
