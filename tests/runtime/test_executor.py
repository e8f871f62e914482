"""The local executor and the operator's allow-list of executors, on a real SQLite store:
an executor spelled several ways is one executor; a job naming an executor the
operator did not allow has its run recorded failed with a reason that says what is
allowed, and nothing is contacted; the fork server forks a detached supervisor per
run that takes the run to ``succeeded``, and that supervisor outlives the fork server
(closed, or killed with SIGKILL), which the executor starts again for the next run."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal

import pytest

from hermes_cron_ext.runtime.executor import (
    AllowedExecutors,
    LocalExecutor,
    Refused,
    executor_specs,
    normalize_executor,
    restrict_executors,
)
from hermes_cron_ext.runtime.ticker import Ticker
from hermes_cron_ext.store import AsyncStore, output
from tests.conftest import make_job

FINAL = ("succeeded", "failed", "cancelled", "timed_out", "lost", "skipped")


@pytest.mark.parametrize(("spec", "one"), [
    (None, "local"), ("", "local"), ("local", "local"),
    ("dask://sched:8786", "tcp://sched:8786"), ("tcp://sched:8786/", "tcp://sched:8786"),
    ("dask+tls://sched:8786", "tls://sched:8786"), ("tls://sched:8786", "tls://sched:8786"),
])
def test_one_executor_has_one_spelling(spec, one):
    assert normalize_executor(spec) == one


def test_executor_specs_from_the_command_line_or_the_environment(monkeypatch):
    monkeypatch.setenv("HERMES_CRON_EXECUTOR", "dask://a:1, ,tcp://b:2,")
    assert executor_specs(["dask://c:3", " local "]) == ["dask://c:3", "local"]
    assert executor_specs("dask://c:3") == ["dask://c:3"]
    assert executor_specs(None) == ["dask://a:1", "tcp://b:2"]  # blanks dropped
    monkeypatch.delenv("HERMES_CRON_EXECUTOR")
    assert executor_specs(None) == [] and executor_specs([]) == []


def test_the_allow_list_knows_an_executor_by_any_of_its_spellings():
    allowed = AllowedExecutors(["local", "dask://sched:8786"])
    for spec in (None, "", "local", "dask://sched:8786", "tcp://sched:8786",
                 "tcp://sched:8786/"):
        assert spec in allowed, spec
    for spec in ("dask://other:8786", "tls://sched:8786", "tcp://sched:1"):
        assert spec not in allowed, spec
    only_local = AllowedExecutors([])
    assert only_local.specs == ["local"] and "local" in only_local
    assert "dask://sched:8786" not in only_local


def test_a_refusal_names_the_executor_and_what_is_allowed():
    allowed = AllowedExecutors(["local", "dask://sched:8786", "local"])
    assert allowed.describe() == "local, dask://sched:8786"  # each once
    message = allowed.refusal("dask://evil:1")
    assert "'dask://evil:1' is not one the operator allows" in message
    assert "allowed: local, dask://sched:8786" in message
    assert "c.HermesCron.executors" in message and "--executor" in message


async def _until(predicate, timeout: float = 30.0, what: str = "condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _over(store, run_id: str):
    run = store.get_run(run_id)
    return run if run.status in FINAL else None


def test_a_ticker_refuses_an_executor_the_operator_did_not_allow(real_store):
    """A job stored naming an executor that is not on the allow-list: its run is failed
    at once with the refusal; a job on the ticker's own executor runs as usual."""
    make_job(real_store, "elsewhere", "@yearly", command="echo must not run",
             executor="dask://unlisted.example:8786")
    make_job(real_store, "here", "@yearly", command="echo ran here")
    refused = real_store.request_run("elsewhere")
    local = real_store.request_run("here")

    async def main():
        ticker = Ticker(AsyncStore(real_store), None)
        allowed = AllowedExecutors(["local"])
        restrict_executors(ticker, allowed)
        assert ticker.allowed_executors is allowed
        try:
            executor = ticker.executor_for(real_store.get_run(refused.id))
            assert isinstance(executor, Refused)
            assert isinstance(ticker.executor_for(real_store.get_run(local.id)),
                              LocalExecutor)
            claimed = await ticker.tick()
            assert {r.id for r in claimed} == {refused.id, local.id}
            return await _until(lambda: _over(real_store, local.id), what="the local run")
        finally:
            await ticker.close_executors()

    done = asyncio.run(main())
    assert done.status == "succeeded"
    assert output.read(real_store.log_path(local.id)) == b"ran here\n"
    run = real_store.get_run(refused.id)
    assert run.status == "failed" and run.pid is None  # no supervisor was ever started
    assert run.reason == AllowedExecutors(["local"]).refusal("dask://unlisted.example:8786")
    assert output.read(real_store.log_path(refused.id)) == b""


def test_a_job_on_an_allowed_executor_is_not_refused(real_store):
    """An allowed executor spelled another way is still allowed: the run goes to the
    executor the ticker itself makes for that address."""
    spec = "tcp://sched.example:8786"
    make_job(real_store, "dask", "@yearly", executor=spec)
    run = real_store.request_run("dask")

    async def main():
        ticker = Ticker(AsyncStore(real_store), None)
        restrict_executors(ticker, AllowedExecutors(["dask://sched.example:8786"]))
        try:
            executor = ticker.executor_for(run)
            assert not isinstance(executor, Refused)
            assert executor is ticker.executors[spec]
        finally:
            await ticker.close_executors()

    asyncio.run(main())
    assert real_store.get_run(run.id).status == "queued"  # nothing recorded it failed


def wait_for_file(path) -> str:
    """Shell that waits for *path* (the test's go-ahead), for 30 s at most."""
    return f"for i in $(seq 600); do [ -e {path} ] && break; sleep 0.05; done"


def test_the_fork_server_runs_a_queued_run_to_success(real_store):
    make_job(real_store, "hello", "@yearly", command="echo hello; echo to-err >&2")
    run = real_store.request_run("hello")

    async def main():
        executor = LocalExecutor(real_store.path, real_store.logs_dir)
        try:
            await executor.start(run)
            return await _until(lambda: _over(real_store, run.id), what="the run to end")
        finally:
            await executor.close()

    done = asyncio.run(main())
    assert (done.status, done.exit_code) == ("succeeded", 0)
    assert done.pid and done.pid != os.getpid()
    segs = output.segments(real_store.log_path(run.id))
    assert [(s, d) for _, s, d in segs] == [("stdout", b"hello\n"), ("stderr", b"to-err\n")]


def test_a_supervisor_outlives_the_executor_closing(real_store, tmp_path):
    """``close()`` stops the fork server; a run it already forked goes on in a session
    of its own and still ends ``succeeded``."""
    go = tmp_path / "go"
    make_job(real_store, "long", "@yearly",
             command=f"echo started; {wait_for_file(go)}; echo finished")
    run = real_store.request_run("long")

    async def main():
        executor = LocalExecutor(real_store.path, real_store.logs_dir)
        try:
            await executor.start(run)
            server = executor._proc
            running = await _until(lambda: (r := real_store.get_run(run.id)).status
                                   == "running" and r, what="the run to start")
            await executor.close()
            assert server.returncode is not None  # the fork server is gone
            assert running.status == "running" and not _over(real_store, run.id)
            # the supervisor is detached: a session of its own, not the fork server's
            assert os.getsid(running.pid) == running.pid != server.pid
        finally:
            go.touch()
            await executor.close()
        return await _until(lambda: _over(real_store, run.id), what="the run to end")

    done = asyncio.run(main())
    assert (done.status, done.exit_code) == ("succeeded", 0)
    assert output.read(real_store.log_path(run.id)) == b"started\nfinished\n"


def test_a_killed_fork_server_is_started_again_and_its_runs_go_on(real_store, tmp_path):
    """SIGKILL to the fork server while its supervisor runs: the run ends as usual, and
    the executor starts a new fork server for the next run. A run id the store does not
    know fails that one supervisor only (its traceback goes to supervisors.err)."""
    go = tmp_path / "go"
    make_job(real_store, "first", "@yearly",
             command=f"{wait_for_file(go)}; echo first")
    make_job(real_store, "second", "@yearly", command="echo second")
    first = real_store.request_run("first")
    second = real_store.request_run("second")

    async def main():
        executor = LocalExecutor(real_store.path, real_store.logs_dir)
        try:
            await executor.start(first)
            old = executor._proc
            await _until(lambda: real_store.get_run(first.id).status == "running",
                         what="the first run to start")
            os.kill(old.pid, signal.SIGKILL)
            await asyncio.wait_for(old.wait(), 10)
            assert real_store.get_run(first.id).status == "running"
            go.touch()
            await executor.start_many([dataclasses.replace(second, id="r-no-such-run"),
                                       second])
            assert executor._proc is not old and executor._proc.returncode is None
            await _until(lambda: _over(real_store, second.id), what="the second run")
            return await _until(lambda: _over(real_store, first.id), what="the first run")
        finally:
            go.touch()
            await executor.close()

    asyncio.run(main())
    for run, text in ((first, b"first\n"), (second, b"second\n")):
        done = real_store.get_run(run.id)
        assert (done.status, done.exit_code) == ("succeeded", 0)
        assert output.read(real_store.log_path(run.id)) == text
    with open(os.path.join(real_store.logs_dir, "supervisors.err"), errors="replace") as f:
        assert "r-no-such-run" in f.read()
