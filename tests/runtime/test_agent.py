"""The host agent (runtime/agent.py): many runs in one warm process, each recorded as a
supervisor records it; a cancel reaches only its run; a payload primed for a run that
must not start never runs; and a ``kill -9`` of the agent in the middle of a burst of
1,000 runs loses nothing silently and runs nothing twice."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from hermes_cron_ext.runtime.agent import handles
from hermes_cron_ext.runtime.executor import AGENTS, LocalExecutor
from hermes_cron_ext.runtime.ticker import Ticker
from hermes_cron_ext.store import AsyncStore, output
from hermes_cron_ext.store.sqlite import SQLiteStore
from tests.conftest import make_job, processes_with, wait_for

FINAL = {"succeeded", "failed", "cancelled", "timed_out", "skipped", "lost"}


@pytest.fixture
def sqlite(db_path):
    store = SQLiteStore(db_path)
    yield store
    store.close()


def queue(store, name: str, at: float | None = None, **job):
    """A run of a new job *name*, due at *at* (now when None)."""
    make_job(store, name, "@yearly", **job)
    if at is None:
        return store.request_run(name)
    clock, store.clock = store.clock, lambda: at
    try:
        return store.request_run(name)
    finally:
        store.clock = clock


def run_through_executor(store, runs, until, timeout: float = 60.0, during=None):
    """Hand *runs* to a real fork server; wait until ``until()``; *during(executor)* runs
    once the runs are handed over."""

    async def main():
        executor = LocalExecutor(store.path, store.logs_dir)
        try:
            await executor.start_many(runs)
            if during is not None:
                await asyncio.to_thread(during, executor)
            await asyncio.to_thread(wait_for, until, timeout, 0.05, "the runs")
            return executor._proc.pid
        finally:
            await executor.close()

    return asyncio.run(main())


def test_the_agent_takes_command_and_python_runs_and_leaves_the_others(sqlite):
    assert handles(queue(sqlite, "cmd", command="true"))
    assert handles(queue(sqlite, "py", kind="python", command=None, code="print(1)"))
    assert handles(queue(sqlite, "allow", command="true", overlap="allow"))
    assert not handles(queue(sqlite, "queue", command="true", overlap="queue"))
    assert not handles(queue(sqlite, "replace", command="true", overlap="replace"))


def test_one_agent_watches_many_runs_each_recorded_as_a_supervisor_would(sqlite, tmp_path):
    runs = [queue(sqlite, f"ok-{i}", command=f"echo out {i}; echo err {i} >&2")
            for i in range(12)]
    failing = queue(sqlite, "failing", command="echo about to fail >&2; exit 3")
    slow = queue(sqlite, "slow", command="echo started; sleep 30", timeout=0.5,
                 kill_grace=0.5)
    missing = queue(sqlite, "missing", command=["/no/such/program"])
    pyjob = queue(sqlite, "py", kind="python", command=None,
                  code="import os; print('python', os.environ['HERMES_CRON_RUN_ID'])")
    every = [*runs, failing, slow, missing, pyjob]
    server = run_through_executor(
        sqlite, every, lambda: all(sqlite.get_run(r.id).status in FINAL for r in every))

    done = {r.id: sqlite.get_run(r.id) for r in every}
    for i, run in enumerate(runs):
        got = done[run.id]
        assert (got.status, got.exit_code) == ("succeeded", 0)
        segs = {s: d for _, s, d in output.segments(sqlite.log_path(run.id))}
        assert segs == {"stdout": f"out {i}\n".encode(), "stderr": f"err {i}\n".encode()}
    assert (done[failing.id].status, done[failing.id].exit_code) == ("failed", 3)
    assert done[failing.id].reason == "exit code 3: about to fail"
    assert done[slow.id].status == "timed_out"
    assert done[slow.id].reason == "timed out after 0.5 s"
    assert b"started\n" in sqlite.read_output(slow.id)
    assert (done[missing.id].status, done[missing.id].exit_code) == ("failed", 127)
    assert done[missing.id].reason.startswith("cannot start: ")
    assert "/no/such/program" in done[missing.id].reason
    assert sqlite.read_output(pyjob.id) == f"python {pyjob.id}\n".encode()
    # a few warm agents watched them all, each in a session of its own
    pids = {r.pid for r in done.values()}
    assert 1 <= len(pids) <= AGENTS and server not in pids
    assert all(r.payload_pid and r.payload_pid not in pids for r in done.values()
               if r.id != missing.id)


def test_a_cancel_sent_to_the_agent_stops_only_its_run(sqlite):
    """``ops.cancel`` records the request and signals the run's pid: the agent's. Only
    the run asked for stops; the agent's other runs go on."""
    victim = queue(sqlite, "victim", command="echo in; sleep 30")
    other = queue(sqlite, "other", command="sleep 1.5; echo fine")

    def cancel(_executor):
        running = wait_for(lambda: (r := sqlite.get_run(victim.id)).status == "running"
                           and r, 20, what="the victim to run")
        sqlite.request_cancel(victim.id)
        os.kill(running.pid, signal.SIGTERM)

    run_through_executor(sqlite, [victim, other],
                         lambda: all(sqlite.get_run(r.id).status in FINAL
                                     for r in (victim, other)), during=cancel)
    assert sqlite.get_run(victim.id).status == "cancelled"
    done = sqlite.get_run(other.id)
    assert (done.status, done.exit_code) == ("succeeded", 0)
    assert sqlite.read_output(other.id) == b"fine\n"


def test_a_primed_payload_of_a_run_refused_at_its_instant_never_runs(sqlite, tmp_path):
    """The first runs an agent takes wait as a shell primed to exec their payload at the
    instant; a run whose job is deleted before the instant is skipped, its payload unrun."""
    marker = tmp_path / "ran"
    run = queue(sqlite, "deleted-late", at=time.time() + 3, command=f"touch {marker}")

    def pause(_executor):
        wait_for(lambda: sqlite.get_run(run.id).pid, 20, what="the agent to take it")
        tag = f"HERMES_CRON_RUN_ID={run.id}".encode()
        primed = wait_for(lambda: processes_with(tag), 10, what="the primed payload")
        assert all("sh -c read _" in line for line in primed.values())
        sqlite.delete_job("deleted-late")

    run_through_executor(sqlite, [run], lambda: sqlite.get_run(run.id).status in FINAL,
                         during=pause)
    done = sqlite.get_run(run.id)
    assert (done.status, done.reason) == ("skipped", "job was deleted")
    time.sleep(0.3)
    assert not marker.exists()
    assert processes_with(f"HERMES_CRON_RUN_ID={run.id}".encode()) == {}


@pytest.mark.slow
def test_kill9_of_the_agents_mid_burst_loses_nothing_silently_and_runs_nothing_twice(
        sqlite, tmp_path):
    """1,000 runs: 500 due at one instant (half end at once, half run 30 s), 500 due a
    few seconds later. Once the quick half has ended, every agent is killed with
    SIGKILL. A ticker's reconcile then marks every run it cannot finish ``lost`` with the
    reason and stops the payloads left running; the runs not yet started never start
    under the dead agents: they are put back, and the next ticker's claim starts each
    of them once, at its instant; every run that ran, ran once."""
    ledger = tmp_path / "ledger"
    now = time.time()
    first, later = now + 4, now + 9
    runs = []
    for i in range(1000):
        at, tail = (first, "sleep 0.1" if i % 2 else "sleep 30") if i < 500 else (later, "")
        runs.append(queue(sqlite, f"burst-{i:04d}", at=at, env={"BURST_TAG": str(ledger)},
                          command=f'echo "$HERMES_CRON_RUN_ID" >> {ledger}; {tail}'))
    quick = [r for i, r in enumerate(runs) if i < 500 and i % 2]
    long = [r for i, r in enumerate(runs) if i < 500 and not i % 2]
    waiting = runs[500:]
    killed: set[int] = set()

    def kill_agents(_executor):
        wait_for(lambda: all(sqlite.get_run(r.id).status == "succeeded" for r in quick),
                 60, 0.2, what="the quick half of the burst")
        assert all(sqlite.get_run(r.id).status == "running" for r in long)
        assert all(sqlite.get_run(r.id).status == "queued" for r in waiting)
        killed.update(r.pid for r in sqlite.active_runs())
        assert 1 <= len(killed) <= AGENTS  # the agents, not a process per run
        for pid in killed:
            os.kill(pid, signal.SIGKILL)

    run_through_executor(sqlite, runs, lambda: True, during=kill_agents)

    def held() -> list:
        """Active runs still held by a supervisor or agent (not put back)."""
        return [r for r in sqlite.active_runs() if r.pid is not None]

    async def reconcile():
        ticker = Ticker(AsyncStore(sqlite), None)
        try:
            for _ in range(100):
                await ticker.reconcile()
                if not held():
                    return
                await asyncio.sleep(0.1)
        finally:
            await ticker.close_executors()

    asyncio.run(reconcile())
    assert held() == []
    for run in long:
        lost = sqlite.get_run(run.id)
        assert lost.status == "lost", (lost.status, lost.reason)
        assert "supervisor" in lost.reason and "gone" in lost.reason
        assert "its payload (process group" in lost.reason and "was stopped" in lost.reason
    # not started, their instant still to come: put back, not lost, and not yet run
    assert {r.id for r in sqlite.active_runs()} == {r.id for r in waiting}
    for run in waiting:
        back = sqlite.get_run(run.id)
        assert (back.status, back.pid, back.dispatched_at) == ("queued", None, None)
    assert set(ledger.read_text().split()) == {r.id for r in quick + long}
    # the next ticker's claim hands each out once, and each runs once, at its instant
    claimed = sqlite.claim_due(later + 1, time.time(), "survivor")
    assert sorted(r.id for r in claimed) == sorted(r.id for r in waiting)
    assert sqlite.claim_due(later + 1, time.time(), "survivor") == []
    run_through_executor(sqlite, claimed, lambda: all(
        sqlite.get_run(r.id).status in FINAL for r in waiting), timeout=90)
    for run in waiting:
        done = sqlite.get_run(run.id)
        assert done.status == "succeeded" and done.started_at >= later - 0.01, done
    assert processes_with(f"BURST_TAG={ledger}".encode()) == {}
    ran = ledger.read_text().split()
    assert len(ran) == len(set(ran)), "a run ran twice"
    assert set(ran) == {r.id for r in runs}
    for run in quick:
        assert sqlite.get_run(run.id).status == "succeeded"


def test_a_fault_in_one_runs_bookkeeping_fails_that_run_only(sqlite):
    """The agent watches many runs in one process: a run whose log cannot be opened (a
    folder stands where its file goes) ends ``failed`` with the reason, its payload
    stopped; the agent's other runs go on."""
    broken = queue(sqlite, "broken", command="echo never seen; sleep 30")
    fine = [queue(sqlite, f"fine-{i}", command="sleep 0.5; echo fine")
            for i in range(2 * AGENTS - 1)]  # runs are dealt to the agents in turn
    os.makedirs(sqlite.log_path(broken.id))
    run_through_executor(sqlite, [broken, *fine],
                         lambda: all(sqlite.get_run(r.id).status in FINAL
                                     for r in (broken, *fine)))
    failed = sqlite.get_run(broken.id)
    assert failed.status == "failed" and "agent error" in failed.reason
    assert "IsADirectoryError" in failed.reason
    assert processes_with(f"HERMES_CRON_RUN_ID={broken.id}".encode()) == {}
    done = [sqlite.get_run(r.id) for r in fine]
    assert all((r.status, r.exit_code) == ("succeeded", 0) for r in done)
    assert all(sqlite.read_output(r.id) == b"fine\n" for r in done)
    assert failed.pid in {r.pid for r in done}  # one shared the broken run's agent


def test_a_payload_started_but_not_yet_recorded_is_stopped_when_its_agent_dies(sqlite):
    """An agent starts a burst's payloads first and records them running after: killed
    in between, it leaves a queued run whose payload runs with no group on record. The
    reconcile finds that payload by the run id in its environment and stops it."""
    import subprocess
    import sys

    from hermes_cron_ext.processes import hostname

    run = queue(sqlite, "window", command="sleep 30")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])  # the dead agent's pid
    gone.wait()
    assert sqlite.attach_run(run.id, gone.pid, None, hostname())
    payload = subprocess.Popen(["sleep", "30"], process_group=0,
                               env={**os.environ, "HERMES_CRON_RUN_ID": run.id})
    try:
        async def reconcile():
            ticker = Ticker(AsyncStore(sqlite), None)
            try:
                return await ticker.reconcile()
            finally:
                await ticker.close_executors()

        assert asyncio.run(reconcile()) == [run.id]
        lost = sqlite.get_run(run.id)
        assert lost.status == "lost" and f"(pid {gone.pid}) is gone" in lost.reason
        assert f"its payload (process group {payload.pid}) was stopped" in lost.reason
        assert payload.wait(5) == -signal.SIGKILL
    finally:
        payload.kill()
        payload.wait()


def test_a_sigterm_with_no_cancel_recorded_stops_nothing(sqlite):
    """A cancel is recorded first, then the run's pid (the agent) is signalled: a signal
    that finds no cancel recorded (the run it was meant for ended meanwhile) stops none
    of the agent's other runs."""
    runs = [queue(sqlite, f"steady-{i}", command="sleep 1.5; echo steady")
            for i in range(2 * AGENTS)]

    def stray_signal(_executor):
        pids = wait_for(lambda: {r.pid for r in map(sqlite.get_run, (x.id for x in runs))
                                 if r.status == "running"}, 20, what="the runs to start")
        for pid in pids:
            os.kill(pid, signal.SIGTERM)

    run_through_executor(sqlite, runs, lambda: all(sqlite.get_run(r.id).status in FINAL
                                                   for r in runs), during=stray_signal)
    done = [sqlite.get_run(r.id) for r in runs]
    assert [(r.status, r.exit_code) for r in done] == [("succeeded", 0)] * len(runs)
    assert all(sqlite.read_output(r.id) == b"steady\n" for r in done)
