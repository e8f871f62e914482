"""The PostgreSQL relay, started as a fork server starts it (``start_relay`` in a process
of its own) on a real embedded PostgreSQL: a supervisor's :class:`RelayClient` takes a
run through its whole life (start check, attach, running, output, heartbeat with a
cancel, artifact, finish) on the relay's one connection; refusals come back as the
exceptions the store itself raises; the relay makes no call a supervisor does not
need; a client whose relay was killed carries on with a connection of its own; the
relay outlives its fork server while a supervisor is connected, then exits; and its
socket lives only in a folder that is this user's alone."""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("psycopg")

import psycopg  # noqa: E402

from hermes_cron_ext.errors import NotFound, StoreError  # noqa: E402
from hermes_cron_ext.processes import (  # noqa: E402
    hostname,
    proc_start_time,
    process_alive,
)
from hermes_cron_ext.store import open_store  # noqa: E402
from hermes_cron_ext.store.relay import (  # noqa: E402
    RELAYED,
    RelayClient,
    _recv_exact,
    _send,
    start_relay,
)
from tests.conftest import make_job, wait_for  # noqa: E402

pytestmark = pytest.mark.postgres

#: a fork server in miniature: start the relay, say where it listens, live until stdin ends
FORK_SERVER = """
import os, sys
from hermes_cron_ext.store.relay import start_relay
path, pid = start_relay(os.environ.pop("RELAY_TEST_DB"), sys.argv[1])
print(path, pid, flush=True)
sys.stdin.read()
"""


class RelayProc:
    def __init__(self, url: str, err_path: str):
        self.server = subprocess.Popen(
            [sys.executable, "-c", FORK_SERVER, err_path], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env={**os.environ, "RELAY_TEST_DB": url})
        path, pid = self.server.stdout.readline().split()
        self.path, self.pid = path, int(pid)
        self.started = proc_start_time(self.pid)  # so a reused pid is not taken for it

    def alive(self) -> bool:
        return process_alive(self.pid, self.started)

    def stop_fork_server(self) -> None:
        if self.server.poll() is None:
            self.server.stdin.close()
            self.server.wait(10)

    def cleanup(self) -> None:
        self.stop_fork_server()
        self.server.stdout.close()
        if self.alive():  # still serving: we started it, we end it
            os.kill(self.pid, signal.SIGTERM)
            wait_for(lambda: not self.alive(), 10, what="the relay to exit")
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


@pytest.fixture
def store(pg_url):
    s = open_store(pg_url)
    yield s
    s.close()


@pytest.fixture
def relay(pg_url, tmp_path):
    proc = RelayProc(pg_url, str(tmp_path / "relay.err"))
    yield proc
    proc.cleanup()


@pytest.fixture
def client(pg_url, relay):
    clients = []

    def make() -> RelayClient:
        c = RelayClient(pg_url, relay.path)
        clients.append(c)
        return c
    yield make
    for c in clients:
        c.close()


def connections(store) -> int:
    """Sessions of hermes-cron processes on this database other than the test's own."""
    return store.db.execute(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND "
        "application_name = 'hermes-cron' AND pid != pg_backend_pid()").fetchone()[0]


def queued_run(store, name: str = "job", **job):
    make_job(store, name, "@yearly", **job)
    run = store.request_run(name)
    assert store.dispatch(run.id)
    return run


def test_a_supervisor_runs_a_run_through_the_relay(store, client):
    run = queued_run(store)
    sup = client()
    assert sup.check_start(run.id) is None  # free to start
    assert sup.attach_run(run.id, os.getpid(), None, hostname()) is True
    assert sup.attach_run(run.id, 1, None, "elsewhere") is False  # one supervisor only
    assert sup.get_run(run.id).pid == os.getpid()
    assert sup.mark_running(run.id, time.time(), os.getpid()) is True
    assert sup.running_others(run.id) == [] and sup.catchup_ahead(run.id) is None
    sup.record_file_hash(run.id, "ab" * 32)  # the file it runs, relayed too
    assert store.get_run(run.id).file_sha256 == "ab" * 32

    writer = sup.output_writer(run.id)
    writer.write("stdout", b"working\n")
    writer.write("stderr", b"careful\n")
    with open(sup.artifact_path(run.id), "wb") as f:
        f.write(b'{"cells": []}')
    assert sup.heartbeat_run(run.id, time.time(), "step 1", 0.25,
                             sup.output_size(run.id)) is False
    store.request_cancel(run.id, "stop it")  # a user cancels: the next beat says so
    assert sup.heartbeat_run(run.id, time.time(), "step 2", 0.5, 16) is True
    writer.system("[hermes-cron: cancelled]\n")
    writer.close()  # the artifact goes to the database too
    done = sup.finish_run(run.id, "cancelled", -15)

    assert (done.status, done.exit_code, done.reason) == ("cancelled", -15, "stop it")
    seen = store.get_run(run.id)
    assert (seen.status, seen.phase, seen.progress) == ("cancelled", "step 2", 0.5)
    assert store.read_output(run.id) == b"working\ncareful\n[hermes-cron: cancelled]\n"
    assert [s for _, s, _ in store.output_segments(run.id)] == ["stdout", "stderr", "system"]
    assert store.read_artifact(run.id) == b'{"cells": []}'
    assert connections(store) == 1  # the relay's, and no session of the supervisor's own


def test_start_checks_say_why_a_run_must_not_start_even_in_a_crowd(store, client):
    """Start checks from many supervisors at once (the relay answers those waiting
    together from one query): each gets its own answer, and an unknown run id among
    them fails only its own check."""
    runs = [queued_run(store, f"job{i}") for i in range(6)]
    store.request_cancel(runs[1].id)  # cancelled before a supervisor took it
    ids = [r.id for r in runs] + ["r-unknown-1", "r-unknown-2"]
    sups = [client() for _ in ids]

    def check(pair):
        sup, run_id = pair
        try:
            return sup.check_start(run_id)
        except NotFound as exc:
            return f"NotFound: {exc.message}"
    for _ in range(3):
        with ThreadPoolExecutor(len(ids)) as pool:
            answers = list(pool.map(check, zip(sups, ids)))
        assert answers == [None, "run is cancelled", None, None, None, None,
                           "NotFound: no run 'r-unknown-1'", "NotFound: no run 'r-unknown-2'"]
    assert connections(store) == 1


def test_refusals_come_back_as_the_store_raises_them(store, client):
    run = queued_run(store)
    sup = client()
    for call, args in (("get_run", ("r-missing",)), ("finish_run", ("r-missing", "failed")),
                       ("check_start", ("r-missing",))):
        with pytest.raises(NotFound) as direct:
            getattr(store, call)(*args)
        with pytest.raises(NotFound) as relayed:
            getattr(sup, call)(*args)
        assert (relayed.value.message, relayed.value.field) == (
            direct.value.message, direct.value.field) == ("no run 'r-missing'", "run")
    store.finish_run(run.id, "succeeded", 0)
    # a database error: a psycopg error, as the supervisor's retry loop expects
    with pytest.raises(psycopg.Error, match="(?i)invalid input syntax"):
        sup.heartbeat_run(run.id, "not a time", None, None, 0)
    # and the relay's connection serves the next call
    assert sup.get_run(run.id).status == "succeeded"
    assert connections(store) == 1


def test_the_relay_makes_only_the_calls_a_supervisor_needs(store, relay, client):
    """Over the relay's socket, a call outside ``RELAYED`` (deleting a job, say) is
    refused; the client makes such calls on a connection of its own."""
    assert "delete_job" not in RELAYED and "finish_run" in RELAYED
    make_job(store, "keep-me", "@yearly")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    try:
        sock.connect(relay.path)
        _send(sock, ("delete_job", ("keep-me",), {}))
        size = int.from_bytes(_recv_exact(sock, 4), "big")
        reply = pickle.loads(_recv_exact(sock, size))
    finally:
        sock.close()
    assert reply == ("error", ("StoreError", "delete_job is not relayed", None))
    assert store.get_job("keep-me").name == "keep-me"

    sup = client()
    sup.get_run(queued_run(store).id)
    assert connections(store) == 1
    assert sup.get_job("keep-me").name == "keep-me"  # not relayed: its own connection
    assert connections(store) == 2


def test_a_client_carries_on_when_its_relay_is_killed(store, relay, client):
    first = queued_run(store, "first")
    second = queued_run(store, "second")
    connected = client()
    assert connected.attach_run(first.id, os.getpid(), None, hostname())
    os.kill(relay.pid, signal.SIGKILL)
    wait_for(lambda: not relay.alive(), 10, what="the relay to die")
    # a supervisor mid-run, and one that starts after the relay died
    assert connected.mark_running(first.id, time.time(), os.getpid())
    assert connected.finish_run(first.id, "succeeded", 0).status == "succeeded"
    late = client()
    assert late.check_start(second.id) is None
    assert late.attach_run(second.id, os.getpid(), None, hostname())
    late.finish_run(second.id, "failed", 2, reason="exit code 2")
    assert [store.get_run(r.id).status for r in (first, second)] == ["succeeded", "failed"]
    wait_for(lambda: connections(store) == 2, 10,  # one session each, now
             what="the killed relay's session to go")


def test_the_relay_outlives_its_fork_server_while_a_supervisor_is_connected(store, relay,
                                                                          client):
    run = queued_run(store)
    sup = client()
    assert sup.attach_run(run.id, os.getpid(), None, hostname())
    relay.stop_fork_server()
    time.sleep(1.2)  # more than the relay's idle wake-up: it has looked and stayed
    assert relay.alive() and os.path.exists(relay.path)
    assert sup.finish_run(run.id, "succeeded", 0).status == "succeeded"
    assert connections(store) == 1  # still through the relay
    sup.close()  # the last supervisor goes: so does the relay, and its socket
    wait_for(lambda: not relay.alive(), 10, what="the relay to exit")
    assert not os.path.exists(relay.path)


def test_the_relay_socket_is_in_a_folder_of_this_users_alone(relay):
    folder = os.path.dirname(relay.path)
    st = os.stat(folder)
    assert (st.st_uid, st.st_mode & 0o777) == (os.getuid(), 0o700)
    assert folder == os.path.join(tempfile.gettempdir(), f"hermes-cron-{os.getuid()}")


def test_a_relay_folder_others_can_enter_is_refused(tmp_path, monkeypatch, pg_url):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folder = tmp_path / f"hermes-cron-{os.getuid()}"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    with pytest.raises(StoreError, match="must be a directory of this user's, mode 0700"):
        start_relay(pg_url)
    assert os.listdir(folder) == []  # nothing listens there


def test_a_final_status_carries_its_metrics_through_the_relay(store, client):
    """``finish_run`` with metrics: the ``[name, value, unit]`` rows cross the relay as its
    arguments (pickled frames) and land in the status's transaction on its connection."""
    run = queued_run(store, "measured")
    sup = client()
    assert sup.attach_run(run.id, os.getpid(), None, hostname()) is True
    assert sup.mark_running(run.id, time.time(), os.getpid()) is True
    rows = [["rows", 1234.0, ""], ["ratio", 0.5, "%"], ["cpu_seconds", 0.3, "s"],
            ["peak_memory", 104857600, "B"], ["bad name", 1.0, ""]]
    done = sup.finish_run(run.id, "succeeded", 0, None, None, rows)
    assert (done.status, done.exit_code) == ("succeeded", 0)
    got = {r[0]: (r[1], r[2]) for r in store.db.execute(
        "SELECT name, value, unit FROM run_metrics WHERE run_id = ?", (run.id,)).fetchall()}
    assert got["rows"] == (1234.0, "") and got["ratio"] == (0.5, "%")
    assert got["cpu_seconds"] == (0.3, "s") and got["peak_memory"] == (104857600.0, "B")
    assert "bad name" not in got and "duration" in got
    assert connections(store) == 1  # the relay's: no session of the supervisor's own
