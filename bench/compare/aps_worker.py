"""APScheduler 4 side of the comparison: run by the APScheduler venv's Python, never ours.

    aps_worker.py fire DB OUT N PERIOD   # IntervalTrigger(PERIOD s); stop after N runs
    aps_worker.py idle DB N              # N yearly CronTrigger schedules; run until SIGTERM

Both use ``SQLAlchemyDataStore`` on a SQLite file through aiosqlite, the persistent setup
APScheduler 4 documents. ``fire``: the job's function appends ``time.time()`` (its first
instruction) and the scheduled fire time APScheduler hands the job
(``current_job.get().scheduled_fire_time``) to OUT. ``idle`` prints ``ready <seconds the
adds took>`` once the schedules are stored and the scheduler runs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import UTC, datetime

from apscheduler import AsyncScheduler, ConflictPolicy, current_job
from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import create_async_engine

OUT_ENV = "HERMES_COMPARE_APS_OUT"


def tick() -> None:
    """The payload: its first instruction reads the clock."""
    t = time.time()
    fire = current_job.get().scheduled_fire_time
    with open(os.environ[OUT_ENV], "a") as f:
        f.write(f"{t} {fire.timestamp()}\n")


def noop() -> None:
    pass


def lines(path: str) -> int:
    try:
        with open(path) as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


async def fire(db: str, out: str, n: int, period: float) -> None:
    os.environ[OUT_ENV] = out
    import aps_worker  # the function must be importable by reference (a persistent store)

    store = SQLAlchemyDataStore(create_async_engine(f"sqlite+aiosqlite:///{db}"))
    async with AsyncScheduler(store) as scheduler:
        start = datetime.fromtimestamp(int(time.time()) + 2, UTC)
        await scheduler.add_schedule(aps_worker.tick, IntervalTrigger(
            seconds=period, start_time=start), id="tick",
            conflict_policy=ConflictPolicy.replace)
        await scheduler.start_in_background()
        print("ready", flush=True)
        deadline = time.time() + 2 + n * period * 2 + 30
        while lines(out) < n and time.time() < deadline:
            await asyncio.sleep(0.2)
        await scheduler.remove_schedule("tick")


async def idle(db: str, n: int) -> None:
    import aps_worker

    store = SQLAlchemyDataStore(create_async_engine(f"sqlite+aiosqlite:///{db}"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with AsyncScheduler(store) as scheduler:
        t0 = time.time()
        for i in range(n):  # yearly: 03:00 UTC on 1 January, none due in the window
            await scheduler.add_schedule(
                aps_worker.noop, CronTrigger(month=1, day=1, hour=3, minute=0,
                                             timezone="UTC"),
                id=f"yearly-{i:05d}", conflict_policy=ConflictPolicy.replace)
        took = time.time() - t0
        await scheduler.start_in_background()
        await asyncio.sleep(1)
        print(f"ready {took:.2f} {n}", flush=True)
        await stop.wait()


def main() -> int:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    mode = sys.argv[1]
    if mode == "fire":
        asyncio.run(fire(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])))
    elif mode == "idle":
        asyncio.run(idle(sys.argv[2], int(sys.argv[3])))
    else:
        raise SystemExit(f"unknown mode {mode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
