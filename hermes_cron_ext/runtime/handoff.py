"""Durable by default: when the last Jupyter server stops, a detached daemon ticks on.

A Jupyter server that stops cleanly while enabled jobs exist and no other ticker
is alive on its store starts ``hermes-cron daemon --handoff`` (ticker kind
``handoff``), detached, on the same store. That daemon exits by itself as soon
as a ``server`` ticker is alive on the store again (a Jupyter server came back)
or no enabled job remains. One lock file per store keeps it to one handoff
daemon per store; slot claims keep every slot exactly-once across the handovers.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import subprocess
import sys
import time
from typing import IO

from hermes_cron_ext.domain.models import Ticker

CHECK_EVERY = 0.5


def lock_path(url: str) -> str:
    from jupyter_core.paths import jupyter_runtime_dir

    digest = hashlib.sha1(url.encode()).hexdigest()[:12]
    return os.path.join(jupyter_runtime_dir(), f"hermes-cron-handoff-{digest}.pid")


def take_lock(url: str) -> int | None:
    """Hold the store's handoff lock for this process's life; None when another holds it."""
    path = lock_path(url)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def needed(tickers: list[Ticker], enabled_jobs: int, own_id: str | None, now: float) -> bool:
    """Hand off when jobs would otherwise stop firing: enabled jobs, no other live ticker."""
    others = [t for t in tickers if t.id != own_id and t.alive(now)]
    return enabled_jobs > 0 and not others


def start_daemon(url: str, log_dir: str | None = None) -> int:
    """Start the detached handoff daemon; returns its pid."""
    log = open(os.path.join(log_dir, "handoff.log"), "ab") if log_dir else None
    err: IO[bytes] | int = subprocess.DEVNULL if log is None else log
    try:
        # the store URL (maybe with a PostgreSQL password) by environment: a command
        # line is readable by every local user
        proc = subprocess.Popen(
            [sys.executable, "-m", "hermes_cron_ext", "daemon", "--handoff"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            env={**os.environ, "HERMES_CRON_DB": url},
            start_new_session=True, cwd=os.path.expanduser("~"))
    finally:
        if log is not None:
            log.close()
    return proc.pid


async def wait_until_not_needed(store, own_id: str) -> str:
    """Return (with the reason) once a Jupyter server ticks again, no enabled job is left,
    or the store itself was deleted."""
    path = store.sync.path  # a SQLite file
    while True:
        if path and not os.path.exists(path):
            return "its store file is gone"
        now = time.time()
        tickers = await store.list_tickers()
        if any(t.kind == "server" and t.id != own_id and t.alive(now) for t in tickers):
            return "a Jupyter server is ticking again"
        if not (await store.jobs_by_state()).get("scheduled"):
            return "no enabled job is left"
        await asyncio.sleep(CHECK_EVERY)
