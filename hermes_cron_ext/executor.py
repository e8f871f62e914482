"""The local executor: supervisors forked from a warm process.

Starting Python costs 15-65 ms here (150+ ms through the pyenv shim), a fork from
a warm process about 1 ms. So the executor keeps one *fork server*: a child
process that has already imported the supervisor and forks one supervisor per
run on request. Each forked supervisor calls ``setsid`` at once, so it outlives
the fork server and the ticker (a ``kill -9`` of either leaves runs going), and
the fork server ignores SIGCHLD so the kernel reaps its children.

On PostgreSQL the fork server also forks a relay (``store/postgres.py``), so its
supervisors share one warm connection instead of opening a server process each.

The ticker hands runs over ``lead`` seconds before their instant; supervisors
wait for the instant themselves, so the fire latency is a timer wake-up plus one
``fork+exec`` of the payload.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys

from .abc import Executor
from .models import Run

log = logging.getLogger("hermes_cron")


class LocalExecutor(Executor):
    def __init__(self, db: str, logs_dir: str | None = None):
        self.db = db
        self.logs_dir = logs_dir
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def _server(self) -> asyncio.subprocess.Process:
        async with self._lock:
            if self._proc is None or self._proc.returncode is not None:
                if self._proc is not None:
                    log.warning("hermes-cron fork server exited (%s); starting a new one",
                                self._proc.returncode)
                self._proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "hermes_cron_ext.executor", self.db,
                    self.logs_dir or "", stdin=asyncio.subprocess.PIPE,
                    start_new_session=True)
            return self._proc

    async def warm_up(self) -> None:
        await self._server()

    async def start(self, run: Run) -> None:
        await self.start_many([run])

    async def start_many(self, runs: list[Run]) -> None:
        if not runs:
            return
        proc = await self._server()
        assert proc.stdin is not None
        proc.stdin.write(b"".join(json.dumps({"run_id": r.id}).encode() + b"\n" for r in runs))
        try:
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            log.error("hermes-cron fork server died; %d run(s) will be marked lost", len(runs))

    async def close(self) -> None:
        """Let the fork server finish what it was sent, then exit; runs go on."""
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except asyncio.TimeoutError:
            proc.kill()


def spawn_supervisor(db: str, run_id: str) -> int:
    """Start one supervisor without a fork server (one-off ``hermes-cron run``)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hermes_cron_ext.supervisor", db, run_id],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    return proc.pid


def serve(db: str, logs_dir: str) -> None:
    """The fork server's loop: one JSON line in, one detached supervisor out."""
    from .store import is_postgres, preload
    from .supervisor import supervise

    preload(db)  # import the store (and its driver) once, here, before any fork: warm children
    relay = relay_pid = None

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps our children
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the server
    err_path = os.path.join(logs_dir, "supervisors.err") if logs_dir else os.devnull
    for line in sys.stdin.buffer:
        try:
            run_id = json.loads(line)["run_id"]
        except (ValueError, KeyError):
            continue
        if is_postgres(db) and not _alive(relay_pid):  # (re)start the supervisors' relay
            from .store.relay import start_relay

            relay, relay_pid = start_relay(db, err_path)
        if os.fork() == 0:
            code = 1
            try:
                os.setsid()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                null = os.open(os.devnull, os.O_RDWR)
                err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                os.dup2(null, 0)
                os.dup2(null, 1)
                os.dup2(err, 2)
                code = supervise(db, run_id, relay)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):  # gone (reaped), or its pid reused
        return False


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
