"""The handoff: one lock per store, held for a process's life, so at most one handoff
daemon ticks on a store (a second taker, here or in another process, gets None); a
handoff is needed only while enabled jobs would be left with no other live ticker;
the detached ``hermes-cron daemon --handoff`` takes over, keeps no store URL on its
command line, and exits by itself once it is not needed (a Jupyter server ticks
again, no enabled job is left, the store file is gone)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from hermes_cron_ext.processes import hostname, process_alive
from hermes_cron_ext.runtime import handoff
from hermes_cron_ext.store import AsyncStore
from tests.conftest import make_job, wait_for

HOLD = """
import sys
from hermes_cron_ext.runtime.handoff import take_lock
fd = take_lock(sys.argv[1])
print("none" if fd is None else "held", flush=True)
sys.stdin.read()  # hold it until the test closes our stdin
"""


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path, monkeypatch):
    """Lock files in this test's own runtime dir (children inherit it)."""
    path = tmp_path / "runtime"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(path))
    return path


@pytest.fixture
def holder():
    """Start a process that tries to take the lock of a store URL and then holds it."""
    procs = []

    def start(url: str) -> tuple[subprocess.Popen, str]:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, url], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc, proc.stdout.readline().strip()
    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()


def test_the_lock_file_is_one_per_store_and_holds_no_password(runtime_dir):
    url = "postgresql://cron:hunter2@db.example/cron"
    path = handoff.lock_path(url)
    assert os.path.dirname(path) == str(runtime_dir)
    assert path == handoff.lock_path(url) != handoff.lock_path(url + "2")
    assert "hunter2" not in path and "db.example" not in path


def test_a_second_taker_gets_none_while_the_first_holds_the_lock(db_path, holder):
    fd = handoff.take_lock(db_path)
    try:
        assert fd is not None
        with open(handoff.lock_path(db_path)) as f:
            assert f.read() == f"{os.getpid()}\n"  # who holds it
        assert oct(os.stat(handoff.lock_path(db_path)).st_mode & 0o777) == "0o600"
        assert handoff.take_lock(db_path) is None  # not even this process again
        _, got = holder(db_path)
        assert got == "none"  # nor another process
        _, other_store = holder(db_path + "-other")
        assert other_store == "held"  # another store's lock is another lock
    finally:
        os.close(fd)
    _, got = holder(db_path)
    assert got == "held"  # released: the next taker gets it


def test_the_lock_is_freed_when_its_holder_dies(db_path, holder):
    proc, got = holder(db_path)
    assert got == "held"
    assert handoff.take_lock(db_path) is None
    proc.send_signal(signal.SIGKILL)  # no clean-up at all
    proc.wait()
    fd = handoff.take_lock(db_path)
    assert fd is not None
    os.close(fd)


def test_a_handoff_is_needed_only_for_enabled_jobs_with_no_other_live_ticker(store, clock):
    now = clock()
    own = store.register_ticker("server", hostname(), os.getpid())
    assert handoff.needed(store.list_tickers(), 2, own.id, now)  # only we tick
    assert not handoff.needed(store.list_tickers(), 0, own.id, now)  # nothing to fire
    other = store.register_ticker("daemon", "another-host", 4242)
    assert not handoff.needed(store.list_tickers(), 2, own.id, now)  # another ticks
    # the other ticker falls silent: stale after 15 s, so it no longer counts
    assert handoff.needed(store.list_tickers(), 2, own.id, now + 16)
    store.unregister_ticker(other.id)
    # a ticker process of this host that is gone is dead at once, heartbeat or not
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        store.register_ticker("daemon", hostname(), proc.pid)
        assert not handoff.needed(store.list_tickers(), 1, own.id, now)
    finally:
        proc.kill()
        proc.wait()
    assert handoff.needed(store.list_tickers(), 1, own.id, now)


def _wait_reason(store, own_id: str) -> str:
    async def main():
        s = AsyncStore(store, owner=False)
        try:
            return await asyncio.wait_for(handoff.wait_until_not_needed(s, own_id), 15)
        finally:
            await s.aclose()
    return asyncio.run(main())


def test_the_handoff_waits_until_a_jupyter_server_ticks_again(real_store):
    make_job(real_store, "keep", "@yearly")
    own = real_store.register_ticker("handoff", hostname(), os.getpid())

    async def main():
        s = AsyncStore(real_store, owner=False)
        waiting = asyncio.ensure_future(handoff.wait_until_not_needed(s, own.id))
        try:
            await asyncio.sleep(handoff.CHECK_EVERY + 0.2)
            assert not waiting.done()  # a job to fire and nobody else: it stays
            real_store.register_ticker("daemon", hostname(), os.getpid())
            await asyncio.sleep(handoff.CHECK_EVERY + 0.2)
            assert not waiting.done()  # a plain daemon is not a Jupyter server
            real_store.register_ticker("server", hostname(), os.getpid())
            return await asyncio.wait_for(waiting, 15)
        finally:
            waiting.cancel()
            await s.aclose()

    assert asyncio.run(main()) == "a Jupyter server is ticking again"


def test_the_handoff_ends_when_no_enabled_job_is_left(real_store):
    make_job(real_store, "stop-me", "@yearly")
    own = real_store.register_ticker("handoff", hostname(), os.getpid())
    real_store.set_paused("stop-me", True)
    assert _wait_reason(real_store, own.id) == "no enabled job is left"


def test_the_handoff_ends_when_its_store_file_is_gone(real_store):
    make_job(real_store, "orphaned", "@yearly")
    own = real_store.register_ticker("handoff", hostname(), os.getpid())
    os.unlink(real_store.path)
    assert _wait_reason(real_store, own.id) == "its store file is gone"


def _handoff_tickers(store, pid: int) -> list:
    return [t for t in store.list_tickers() if t.kind == "handoff" and t.pid == pid
            and t.alive()]


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:  # reaped already
        pass


def test_start_daemon_takes_over_and_exits_by_itself(real_store, tmp_path):
    """The real detached daemon: it registers a ``handoff`` ticker, its command line
    holds no store path, and it exits once the last enabled job is paused."""
    make_job(real_store, "nightly", "@yearly")
    logs = tmp_path / "logs"
    logs.mkdir()
    pid = handoff.start_daemon(real_store.path, str(logs))
    try:
        wait_for(lambda: _handoff_tickers(real_store, pid), 30, what="the handoff daemon")
        assert os.getsid(pid) == pid  # detached: a session of its own
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        assert b"--handoff" in cmdline and real_store.path.encode() not in cmdline
        real_store.set_paused("nightly", True)
        wait_for(lambda: not process_alive(pid, None), 30, what="the daemon to exit")
    finally:
        if process_alive(pid, None):
            os.kill(pid, signal.SIGTERM)
        _reap(pid)
    log = (logs / "handoff.log").read_text(errors="replace")
    assert "handoff ticking on" in log and "no enabled job is left" in log
    assert not real_store.list_tickers()  # it removed its ticker row


def test_a_second_handoff_daemon_for_the_store_steps_aside(real_store, tmp_path):
    make_job(real_store, "nightly", "@yearly")
    logs = tmp_path / "logs"
    logs.mkdir()
    fd = handoff.take_lock(real_store.path)  # as a running handoff daemon holds it
    assert fd is not None
    try:
        pid = handoff.start_daemon(real_store.path, str(logs))
        wait_for(lambda: not process_alive(pid, None), 30, what="the second daemon to exit")
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert "a handoff daemon already ticks on" in (logs / "handoff.log").read_text(errors="replace")
    assert real_store.list_tickers() == []  # it never registered
