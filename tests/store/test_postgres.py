"""What only the PostgreSQL store has to show (the shared contract is one suite per
interface, run on both stores: contract.py):
events in commit order under concurrent writers, LISTEN/NOTIFY waking other
processes, output and artifacts in the database, real supervisors and a real
daemon on it, and three tickers in three processes claiming every slot once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from hermes_cron_ext.errors import StoreError
from hermes_cron_ext.runtime.executor import Executor
from hermes_cron_ext.store import AsyncStore, open_store, output
from tests.conftest import FakeClock, make_job, wait_for

pytestmark = pytest.mark.postgres
pytest.importorskip("psycopg")

ENV = {**os.environ, "HERMES_CRON_HEARTBEAT": "0.3"}


@pytest.fixture
def pg(pg_url):
    stores = []

    def make(**kwargs):
        s = open_store(pg_url, **kwargs)
        stores.append(s)
        return s
    yield make
    for s in stores:
        s.close()


def test_url_selects_postgres_and_unreachable_server_is_one_clear_error(pg):
    from hermes_cron_ext.store.postgres import PostgresStore

    assert isinstance(pg(), PostgresStore)
    with pytest.raises(StoreError, match="cannot reach the PostgreSQL store"):
        open_store("postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=2")


def test_events_commit_in_seq_order_under_concurrent_writers(pg):
    """A follower reading ``seq > cursor`` while 4 threads write never skips an event
    that committed late: every seq in the table is seen, in order."""
    writer = pg()
    for i in range(4):
        make_job(writer, f"w{i}", "@yearly", overlap="allow")
    follower = pg()
    stop = threading.Event()
    seen: list[int] = []

    def follow():
        cursor = 0
        while True:
            done = stop.is_set()  # the writers finished before this read
            batch = follower.events_since(cursor, 1000)
            seen.extend(e.seq for e in batch)
            if batch:
                cursor = batch[-1].seq
            elif done:
                return

    def write(i):
        s = pg()
        for _ in range(40):
            run = s.request_run(f"w{i}")
            s.attach_run(run.id, 1, None, "h")
            s.mark_running(run.id, time.time(), 2)
            s.heartbeat_run(run.id, time.time(), "phase", 0.5, 0)
            s.finish_run(run.id, "succeeded", 0)

    reader = threading.Thread(target=follow)
    reader.start()
    writers = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join(30)
    every = [r[0] for r in writer.db.execute("SELECT seq FROM events ORDER BY seq").fetchall()]
    assert len(every) == 4 + 4 * 40 * 4
    assert seen == every


def test_listen_hears_other_processes_events_and_output(pg, pg_url):
    store = pg()
    heard: list[tuple[str, str]] = []
    stop = store.listen(lambda kind, arg: heard.append((kind, arg)))
    wait_for(lambda: ("resync", "") in heard, 10, what="LISTEN connected")
    code = textwrap.dedent(f"""
        from hermes_cron_ext.domain.jobspec import validate_new
        from hermes_cron_ext.store import open_store
        s = open_store({pg_url!r})
        s.create_job(validate_new({{"name": "elsewhere", "schedule": "@daily",
                                   "timezone": "UTC", "command": "true"}}))
        run = s.request_run("elsewhere")
        w = s.output_writer(run.id)
        w.write("stdout", b"hello")
        w.close()
        print(run.id)
    """)
    run_id = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    wait_for(lambda: ("output", run_id) in heard, 5, what="output NOTIFY")
    events = [arg.split(" ")[1] for kind, arg in heard if kind == "event"]
    assert events[:2] == ["job.created", "run.queued"]
    stop()
    assert store.read_output(run_id) == b"hello"


class Recorder(Executor):
    """Records the runs a ticker hands over instead of starting supervisors."""

    def __init__(self):
        self.runs = []

    async def start(self, run):
        self.runs.append(run)

    async def start_many(self, runs):
        self.runs.extend(runs)

    async def close(self):
        pass


async def test_ticker_wakes_at_once_when_another_host_adds_a_job(pg_url):
    from hermes_cron_ext.runtime.ticker import Ticker

    store = AsyncStore(open_store(pg_url))
    recorder = Recorder()
    ticker = Ticker(store, recorder, poll=60.0, lead=0.5)  # polling cannot explain a fire
    await ticker.start()
    other = open_store(pg_url)
    try:
        await asyncio.sleep(2.0)  # idle: it sleeps for its 60 s poll (LISTEN is up by now)
        created = time.time()
        make_job(other, "soon", "@every 1s")
        while not recorder.runs and time.time() - created < 10:
            await asyncio.sleep(0.02)
        assert recorder.runs, "the ticker did not wake for a job created elsewhere"
        assert recorder.runs[0].scheduled_for - created < 3.0  # far below the 60 s poll
    finally:
        other.close()
        await ticker.stop()
        await store.aclose()


@pytest.mark.parametrize("chunks", [
    [("stdout", b"x" * 10)],
    [("stdout", b"a" * 30), ("stderr", b"b" * 50), ("stdout", b"c" * 40), ("stdout", b"d" * 7),
     ("stderr", b"e" * 300), ("stdout", b"TAIL-END")],
])
def test_output_in_the_database_is_capped_exactly_as_a_file(pg, tmp_path, chunks):
    """Same writes, same caps: the PostgreSQL log and the file log hold the same bytes,
    split into the same stream segments, and read the same at any offset."""
    from hermes_cron_ext.store.postgres import PGOutputWriter

    store = pg()
    job = make_job(store, "out")
    run = store.request_run(job.id)
    path = str(tmp_path / "file.log")
    writers = [PGOutputWriter(store, run.id, max_bytes=200, tail_bytes=60),
               output.OutputWriter(path, max_bytes=200, tail_bytes=60)]
    for w in writers:
        for stream, data in chunks:
            w.write(stream, data)
        w.system("[hermes-cron: a line of its own]\n")
        w.close()
    data = output.read(path)
    assert store.read_output(run.id) == data
    assert store.output_size(run.id) == output.size(path) == writers[0].size
    assert store.output_segments(run.id) == output.segments(path)
    for offset, limit in ((0, 7), (5, 100), (31, None), (len(data) - 3, 50), (len(data), 9)):
        assert store.read_output(run.id, offset, limit) == output.read(path, offset, limit)
        assert store.output_segments(run.id, offset, limit) == output.segments(
            path, offset, limit)
    if len(data) > 200:
        assert b"bytes cut here]" in data and data.endswith(b"TAIL-END")


def test_artifact_is_kept_in_the_database_for_every_host(pg, tmp_path):
    here = pg()
    job = make_job(here, "nb")
    run = here.request_run(job.id)
    with open(here.artifact_path(run.id), "wb") as f:
        f.write(b'{"cells": []}')
    here.output_writer(run.id).close()  # the supervisor closes the log when the run ends
    elsewhere = pg(logs_dir=str(tmp_path / "other-host"))
    assert elsewhere.read_artifact(run.id) == b'{"cells": []}'
    here.finish_run(run.id, "succeeded", 0)
    here.delete_job(job.id)
    assert elsewhere.read_artifact(run.id) is None
    assert not os.path.exists(here.artifact_path(run.id))


def test_real_supervisor_writes_live_output_to_postgres(pg, pg_url):
    store = pg()
    make_job(store, "sup", "@yearly",
             command="echo out; echo err >&2; sleep 1; echo more; exit 3", timeout=30)
    run = store.request_run("sup")
    proc = subprocess.Popen([sys.executable, "-m", "hermes_cron_ext.runtime.supervisor", pg_url,
                             run.id], env=ENV, start_new_session=True)
    try:
        # the first line is readable while the payload still runs
        wait_for(lambda: b"err" in store.read_output(run.id), 20, what="live output")
        assert store.get_run(run.id).status == "running"
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = store.get_run(run.id)
    assert (done.status, done.exit_code) == ("failed", 3)
    assert done.reason == "exit code 3: err" and done.heartbeat_at
    assert store.read_output(run.id) == b"out\nerr\nmore\n"
    assert [s[1] for s in store.output_segments(run.id)] == ["stdout", "stderr", "stdout"]
    assert done.output_bytes == store.output_size(run.id) == 13


def test_daemon_and_cli_on_postgres(pg, pg_url, tmp_path):
    env = {**ENV, "HERMES_CRON_DB": pg_url}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "hermes_cron_ext", *args], env=env,
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)

    added = cli("add", "pgjob", "@every 1s", "--json", "--", "echo from-postgres")
    assert added.returncode == 0, added.stderr
    daemon = subprocess.Popen([sys.executable, "-m", "hermes_cron_ext", "daemon"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store = pg()
    try:
        wait_for(lambda: [r for r in store.list_runs("pgjob").items
                          if r.status == "succeeded"], 30, what="a run of the daemon")
        status = json.loads(cli("status", "--json").stdout)
        assert [t["kind"] for t in status["tickers"] if t["alive"]] == ["daemon"]
        assert status["store"].startswith("postgresql://")
        logs = cli("logs", "pgjob")
        assert logs.stdout == "from-postgres\n", logs.stderr
    finally:
        daemon.terminate()
        daemon.wait(15)
        daemon.stderr.close()
    cli("pause", "pgjob")


TICKER = textwrap.dedent("""
    import asyncio, json, sys
    from hermes_cron_ext.runtime.executor import Executor
    from hermes_cron_ext.store import AsyncStore, open_store
    from hermes_cron_ext.runtime.ticker import Ticker

    class Recorder(Executor):
        async def start(self, run): pass
        async def start_many(self, runs): pass
        async def close(self): pass

    async def main(url):
        store = AsyncStore(open_store(url))
        ticker = Ticker(store, Recorder(), kind="daemon")
        await ticker.register()
        loop = asyncio.get_running_loop()
        print("ready", flush=True)
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip():
                break
            runs = await ticker.tick(float(line), 1.0)
            print(json.dumps([[r.job_id, r.scheduled_for] for r in runs]), flush=True)
        await ticker.stop()
        await store.aclose()

    asyncio.run(main(sys.argv[1]))
""")


@pytest.mark.slow
def test_three_tickers_in_three_processes_fire_every_slot_exactly_once(pg, pg_url):
    """1,000 ``@every 1s`` jobs, three ticker processes claiming together at each step of a
    shared fake clock (0.25 s steps over 8 s): 9,000 slots, each claimed once, none
    missed, none skipped."""
    n_jobs, t0, steps = 1000, 1_800_000_000.0, 32
    clock = FakeClock(t0)
    store = pg(clock=clock)
    job_ids = set()
    for i in range(n_jobs):
        job_ids.add(make_job(store, f"every-{i:04d}", "@every 1s").id)
    procs = [subprocess.Popen([sys.executable, "-c", TICKER, pg_url], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]
    claims: list[list] = [[] for _ in procs]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for k in range(1, steps + 1):
            now = t0 + k * 0.25
            for p in procs:  # all three claim at once
                p.stdin.write(f"{now!r}\n")
                p.stdin.flush()
            for i, p in enumerate(procs):
                claims[i] += [tuple(c) for c in json.loads(p.stdout.readline())]
        for p in procs:
            p.stdin.write("\n")
            p.stdin.flush()
            assert p.wait(30) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    every = [c for per in claims for c in per]
    expected = {(j, t0 + s) for j in job_ids for s in range(1, 10)}  # due by t0 + 8 + lead
    assert len(every) == len(set(every)), "a slot was claimed twice"
    assert set(every) == expected, f"{len(expected - set(every))} slot(s) missed"
    rows = store.db.execute("SELECT trigger, status, COUNT(*) FROM runs "
                            "GROUP BY trigger, status").fetchall()
    assert [tuple(r) for r in rows] == [("schedule", "queued", len(expected))]
    print(f"slots claimed per ticker: {[len(per) for per in claims]}")


def _children(pid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except (OSError, NotADirectoryError):
            continue
        if int(data[data.rfind(b")") + 2:].split()[1]) == pid:
            out.append(int(name))
    return out


def _supervisor_connections(store) -> int:
    """Server connections of hermes-cron processes other than the test's own."""
    return store.db.execute(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND "
        "application_name = 'hermes-cron' AND pid != pg_backend_pid()").fetchone()[0]


def _due_runs(store, n: int, command: str) -> list:
    for i in range(n):
        make_job(store, f"relayed-{i:02d}", "@yearly", command=command)
    return [store.request_run(f"relayed-{i:02d}") for i in range(n)]


async def test_forked_supervisors_share_one_connection_through_the_relay(pg, pg_url):
    """30 runs at once through the real fork server: each runs once with its output,
    while the server sees one connection for all their supervisors (the relay)."""
    from hermes_cron_ext.runtime.executor import LocalExecutor

    store = pg()
    runs = _due_runs(store, 30, "echo hi; sleep 2")
    executor = LocalExecutor(pg_url)
    await executor.start_many(runs)
    try:
        most_running = most_conns = 0
        deadline = time.time() + 60
        while time.time() < deadline:
            states = [store.get_run(r.id).status for r in runs]
            most_running = max(most_running, states.count("running"))
            most_conns = max(most_conns, _supervisor_connections(store))
            if all(s == "succeeded" for s in states):
                break
            time.sleep(0.05)
    finally:
        await executor.close()
    assert [store.get_run(r.id).status for r in runs] == ["succeeded"] * 30
    assert all(store.read_output(r.id) == b"hi\n" for r in runs)
    assert most_running >= 10, "the runs did not overlap; nothing was measured"
    assert most_conns == 1, f"{most_conns} connections for {most_running} running supervisors"


async def test_a_relayed_supervisor_reads_the_jobs_secret_at_start(pg, pg_url):
    """Through the relay too, a secret reaches the payload from the job, not the run."""
    from hermes_cron_ext.runtime.executor import LocalExecutor

    store = pg()
    make_job(store, "secret", "@yearly", command="echo token=$TOKEN",
             secret_env={"TOKEN": "pg-s3cr3t"})
    run = store.request_run("secret")
    executor = LocalExecutor(pg_url)
    await executor.start_many([run])
    try:
        deadline = time.time() + 30
        while store.get_run(run.id).status in ("queued", "running") and time.time() < deadline:
            time.sleep(0.05)
    finally:
        await executor.close()
    assert store.get_run(run.id).status == "succeeded"
    assert store.read_output(run.id) == b"token=pg-s3cr3t\n"
    raw = store.db.execute("SELECT spec FROM runs WHERE id = ?", (run.id,)).fetchone()[0]
    assert "pg-s3cr3t" not in raw


async def test_runs_carry_on_when_their_relay_is_killed(pg, pg_url):
    """Kill -9 the relay while its supervisors run: they connect on their own and every
    run still ends with its status, exit code and whole output."""
    from hermes_cron_ext.runtime.executor import LocalExecutor

    store = pg()
    runs = _due_runs(store, 5, "echo before; sleep 1.5; echo after; exit 4")
    executor = LocalExecutor(pg_url)
    await executor.start_many(runs)
    try:
        wait_for(lambda: all(store.get_run(r.id).status == "running" for r in runs), 30,
                 what="all runs running")
        forks = _children(executor._proc.pid)
        relay = [pid for pid in forks if not _children(pid)]  # supervisors have a payload
        assert len(relay) == 1, forks
        os.kill(relay[0], 9)
        wait_for(lambda: all(store.get_run(r.id).status == "failed" for r in runs), 30,
                 what="all runs finished")
    finally:
        await executor.close()
    for r in runs:
        done = store.get_run(r.id)
        assert (done.exit_code, done.reason) == (4, "exit code 4")
        assert store.read_output(r.id) == b"before\nafter\n"
