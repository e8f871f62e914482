"""The Dask executor on a real cluster (a dask-scheduler and dask-worker processes) with
a real Jupyter server on a real PostgreSQL store: a run executes on a worker, its
output streams live to an SSE client of the server, and a worker killed under a run
leaves it ``lost`` (then retried) within three heartbeat intervals."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from hermes_cron_ext.processes import process_alive
from hermes_cron_ext.store import open_store
from tests.server.test_handlers import SSE, api

pytestmark = [pytest.mark.dask, pytest.mark.postgres]
pytest.importorskip("distributed")
pytest.importorskip("psycopg")

HEARTBEAT = 0.5
ENV = {**os.environ, "HERMES_CRON_HEARTBEAT": str(HEARTBEAT), "PYTHONUNBUFFERED": "1"}


def _started(proc: subprocess.Popen, marker: str, timeout: float = 60.0) -> list[str]:
    """Lines of *proc*'s stderr up to the one containing *marker*."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline().decode(errors="replace")
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"no {marker!r} from {proc.args}:\n{''.join(lines)}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr:
        proc.stderr.close()


@pytest.fixture(scope="module")
def dask_scheduler():
    proc = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", "0", "--no-dashboard"], env=ENV, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    try:
        line = _started(proc, "Scheduler at:")[-1]
        yield line.split("Scheduler at:")[1].strip()
    finally:
        _stop(proc)


@pytest.fixture
def dask_worker(dask_scheduler):
    """One worker process (no nanny: killing it kills it) with 4 threads."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", dask_scheduler, "--nthreads",
         "4", "--no-nanny", "--no-dashboard", "--name", f"hermes-test-{os.getpid()}"],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _started(proc, "Registered to")
        yield proc
    finally:
        _stop(proc)


@pytest.fixture
def jp_server_config(pg_url, dask_scheduler, dask_worker):
    address = dask_scheduler.replace("tcp://", "dask://")
    return {
        "ServerApp": {"jpserver_extensions": {"hermes_cron_ext": True}},
        "HermesCron": {"db": pg_url, "ticker": True, "lead": 0.5, "poll": 0.2,
                       "handoff": False, "executor": address},
    }


@pytest.fixture
def cron(jp_serverapp, jp_asyncio_loop, pg_url):
    app = jp_serverapp.extension_manager.extension_points["hermes_cron_ext"].app
    jp_asyncio_loop.run_until_complete(app._start_jupyter_server_extension(jp_serverapp))
    yield app
    jp_asyncio_loop.run_until_complete(app.stop_extension())
    store = open_store(pg_url)
    try:
        for run in store.active_runs():  # leave no supervisor or payload behind
            for pid in (run.pid, store.db.execute("SELECT payload_pid FROM runs WHERE id = ?",
                                                  (run.id,)).fetchone()[0]):
                if pid and process_alive(pid, None):
                    os.kill(pid, signal.SIGKILL)
    finally:
        store.close()


@pytest.fixture
def sse_url(jp_http_port, jp_base_url):
    def make(path: str) -> str:
        return f"http://127.0.0.1:{jp_http_port}{jp_base_url}api/cron/{path}"
    return make


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[1])


async def _wait_status(jp_fetch, run_id: str, want, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = await api(jp_fetch, "runs", run_id)
        if run["status"] in want:
            return run
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {run_id} never became {want}: {run}")


async def test_run_on_a_dask_worker_streams_live_output_to_sse(
        cron, jp_fetch, sse_url, jp_auth_header, dask_worker):
    await api(jp_fetch, "jobs", method="POST", expect=201, body={
        "name": "on-dask", "schedule": "@yearly", "timezone": "UTC",
        "command": "echo first; echo warn >&2; sleep 1.5; echo second"})
    run = await api(jp_fetch, "jobs", "on-dask", "run", method="POST", body="", expect=202)
    stream = SSE(sse_url(f"runs/{run['id']}/stream"), jp_auth_header).start()
    first = await stream.wait_for(lambda e: e["event"] == "output" and
                                  "first" in e["data"]["text"], 60)
    running = await api(jp_fetch, "runs", run["id"])
    assert running["status"] == "running"  # the line came while the payload ran
    assert first["data"]["stream"] == "stdout"
    # the supervisor is a child of the worker process, on the worker's host
    assert _parent(running["pid"]) == dask_worker.pid
    end = await stream.wait_for(lambda e: e["event"] == "end", 30)
    assert end["data"]["status"] == "succeeded"
    assert "".join(e["data"]["text"] for e in stream.of("output")) == "first\nwarn\nsecond\n"
    assert [e["data"]["stream"] for e in stream.of("output")][:2] == ["stdout", "stderr"]


async def test_killing_the_worker_marks_the_run_lost_within_three_heartbeats(
        cron, jp_fetch, dask_worker, pg_url):
    await api(jp_fetch, "jobs", method="POST", expect=201, body={
        "name": "doomed", "schedule": "@yearly", "timezone": "UTC", "retries": 1,
        "command": "echo started; sleep 60"})
    run = await api(jp_fetch, "jobs", "doomed", "run", method="POST", body="", expect=202)
    running = await _wait_status(jp_fetch, run["id"], ("running",), 60)
    store = open_store(pg_url)
    try:
        payload = store.db.execute("SELECT payload_pid FROM runs WHERE id = ?",
                                   (run["id"],)).fetchone()[0]
        assert process_alive(payload, None) and process_alive(running["pid"], None)
        dask_worker.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        lost = await _wait_status(jp_fetch, run["id"], ("lost", "failed", "cancelled",
                                                        "succeeded"), 10)
        took = time.monotonic() - killed
        assert lost["status"] == "lost" and "Dask worker" in lost["reason"]
        print(f"marked lost {took:.3f} s after the worker was killed")
        assert took <= 3 * HEARTBEAT, f"marked lost {took:.2f} s after the kill"
        # the worker's death took the payload's process group down with it
        deadline = time.monotonic() + 5
        while process_alive(payload, None) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not process_alive(payload, None)
        # and the retry policy applies: a second attempt is queued
        retry = store.list_runs("doomed").items[0]
        assert (retry.trigger, retry.attempt, retry.status) == ("retry", 2, "queued")
    finally:
        store.close()


async def test_each_job_can_name_its_executor(pg_url, dask_scheduler, dask_worker):
    """A ticker whose own executor is local sends the job that names the cluster to a
    worker, and keeps the rest (and jobs naming "local") on this machine."""
    from hermes_cron_ext.domain.jobspec import validate_new
    from hermes_cron_ext.runtime.ticker import Ticker
    from hermes_cron_ext.store import AsyncStore

    store = AsyncStore(open_store(pg_url))
    ticker = Ticker(store, None, lead=0.5, poll=0.2)
    address = dask_scheduler.replace("tcp://", "dask://")
    try:
        await ticker.start()
        runs = {}
        for name, executor in (("on-cluster", address), ("here", "local"), ("default", None)):
            await store.create_job(validate_new({
                "name": name, "schedule": "@yearly", "timezone": "UTC",
                "command": "sleep 2", "executor": executor}))
            runs[name] = (await store.request_run(name)).id
        ticker.wake()
        parents = {}
        deadline = time.monotonic() + 60
        while len(parents) < 3 and time.monotonic() < deadline:
            for name, run_id in runs.items():
                run = await store.get_run(run_id)
                if run.status == "running" and name not in parents:
                    parents[name] = _parent(run.pid)
            await asyncio.sleep(0.05)
        assert set(parents) == set(runs), f"not all runs started: {parents}"
        assert parents["on-cluster"] == dask_worker.pid
        assert parents["here"] != dask_worker.pid and parents["default"] != dask_worker.pid
        assert len(ticker.executors) == 2  # "local" is the ticker's own; one Dask client
    finally:
        await ticker.stop()
        for run_id in runs.values():
            run = await store.get_run(run_id)
            for pid in (run.pid,):
                if pid and process_alive(pid, None):
                    os.kill(pid, signal.SIGKILL)
        await store.aclose()


SECRET = "s3cret-not-for-dask"


@pytest.fixture
def secret_url(pg_url):
    """The test database's URL with a password (the embedded server trusts local
    connections, so any password connects: only where it travels matters here)."""
    import psycopg

    from hermes_cron_ext.store.embedded import as_url

    info = psycopg.conninfo.conninfo_to_dict(pg_url)
    return as_url(psycopg.conninfo.make_conninfo(**info, password=SECRET))


@pytest.fixture
def start_worker(dask_scheduler):
    procs = []

    def start(env: dict) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", dask_scheduler,
             "--nthreads", "2", "--no-nanny", "--no-dashboard"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)
        _started(proc, "Registered to")
        return proc
    yield start
    for proc in procs:
        _stop(proc)


async def _scheduler_tasks(address: str) -> bytes:
    """Every hermes-cron task the scheduler holds, pickled as it holds it."""
    import pickle

    from distributed import Client

    def dump(dask_scheduler):
        return pickle.dumps([(str(key), ts.run_spec) for key, ts in
                             dask_scheduler.tasks.items() if "hermes-cron-" in str(key)])
    async with Client(address, asynchronous=True) as client:
        return await client.run_on_scheduler(dump)


async def test_the_store_password_never_reaches_the_cluster(
        secret_url, dask_scheduler, start_worker, monkeypatch):
    """The worker reads the store's URL from its own environment; the task, as
    submitted and as the scheduler holds it, carries no password."""
    import pickle

    import distributed

    from hermes_cron_ext.domain.jobspec import validate_new
    from hermes_cron_ext.runtime.ticker import Ticker
    from hermes_cron_ext.store import AsyncStore

    submitted = []
    real_submit = distributed.Client.submit

    def spy(self, fn, *args, **kwargs):
        submitted.append(pickle.dumps((fn, args, kwargs)))
        return real_submit(self, fn, *args, **kwargs)
    monkeypatch.setattr(distributed.Client, "submit", spy)
    worker = start_worker({**ENV, "HERMES_CRON_DB": secret_url})
    store = AsyncStore(open_store(secret_url))
    ticker = Ticker(store, dask_scheduler.replace("tcp://", "dask://"), lead=0.5, poll=0.2)
    run_id = None
    try:
        await ticker.start()
        await store.create_job(validate_new({
            "name": "secretless", "schedule": "@yearly", "timezone": "UTC",
            "command": "sleep 1; echo done"}))
        run_id = (await store.request_run("secretless")).id
        ticker.wake()
        deadline = time.monotonic() + 60
        while (run := await store.get_run(run_id)).status in ("queued",) and \
                time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert run.status == "running", run
        held = await _scheduler_tasks(dask_scheduler)  # the task runs while its run does
        assert run_id.encode() in held  # (the dump shows the task's arguments)
        assert SECRET.encode() not in held
        assert len(submitted) == 1 and run_id.encode() in submitted[0]
        assert SECRET.encode() not in submitted[0]
        assert _parent(run.pid) == worker.pid  # ... and it ran on the worker
        while (run := await store.get_run(run_id)).status == "running" and \
                time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert run.status == "succeeded", run
        assert (await store.run(store.sync.read_output, run_id, 0, None)) == b"done\n"
    finally:
        await ticker.stop()
        await store.aclose()


async def test_a_worker_without_the_store_configured_says_so(secret_url, dask_scheduler,
                                                             start_worker):
    """No password sent, none configured on the worker: the run is recorded lost with
    what to set, and the message holds no password either."""
    from hermes_cron_ext.domain.jobspec import validate_new
    from hermes_cron_ext.runtime.ticker import Ticker
    from hermes_cron_ext.store import AsyncStore

    start_worker({k: v for k, v in ENV.items() if k != "HERMES_CRON_DB"})
    store = AsyncStore(open_store(secret_url))
    ticker = Ticker(store, dask_scheduler.replace("tcp://", "dask://"), lead=0.5, poll=0.2)
    try:
        await ticker.start()
        await store.create_job(validate_new({
            "name": "unconfigured", "schedule": "@yearly", "timezone": "UTC",
            "command": "echo never"}))
        run_id = (await store.request_run("unconfigured")).id
        ticker.wake()
        deadline = time.monotonic() + 60
        while (run := await store.get_run(run_id)).status == "queued" and \
                time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert run.status == "lost", run
        assert "has no store configured: set HERMES_CRON_DB" in run.reason
        assert "password=***" in run.reason and SECRET not in run.reason
    finally:
        await ticker.stop()
        await store.aclose()
