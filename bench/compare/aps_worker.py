"""APScheduler 4 side of the comparison: run by the APScheduler venv's Python, never ours.

    aps_worker.py fire DB OUT N PERIOD     # IntervalTrigger(PERIOD s); stop after N runs
    aps_worker.py latency DB OUT N PERIOD  # the same with /bin/date as the payload
    aps_worker.py burst DB OUT N INSTANT   # N yearly CronTrigger schedules due at INSTANT
    aps_worker.py idle DB N                # N yearly CronTrigger schedules; run until SIGTERM

Both use ``SQLAlchemyDataStore`` on a SQLite file through aiosqlite, the persistent setup
APScheduler 4 documents. ``fire``: the job's function appends ``time.time()`` (its first
instruction) and the scheduled fire time APScheduler hands the job
(``current_job.get().scheduled_fire_time``) to OUT. ``latency`` and ``burst`` (the
side-by-side rows, ``side.py``) run ``/bin/date`` as a subprocess instead, through
``aps_common.record_date`` (a plain function: APScheduler runs it in its thread pool);
``burst`` adds its schedules to the running scheduler, prints ``{"ready": ...}`` with the
seconds the adds took, and ``{"done": ...}`` once every run wrote its line (or none came
for 15 s). ``idle`` prints ``ready <seconds the adds took> N`` once the schedules are
stored and the scheduler runs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import UTC, datetime

from aps_common import emit, record_date, wait_lines
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


def date_tick() -> None:
    """The side-by-side payload: ``/bin/date``, with the slot APScheduler hands the job."""
    fire = current_job.get().scheduled_fire_time
    record_date(os.environ[OUT_ENV], "tick", fire.timestamp())


def noop() -> None:
    pass


async def fire(db: str, out: str, n: int, period: float, func: str = "tick") -> None:
    os.environ[OUT_ENV] = out
    import aps_worker  # the function must be importable by reference (a persistent store)

    store = SQLAlchemyDataStore(create_async_engine(f"sqlite+aiosqlite:///{db}"))
    async with AsyncScheduler(store) as scheduler:
        start = datetime.fromtimestamp(int(time.time()) + 2, UTC)
        await scheduler.add_schedule(getattr(aps_worker, func), IntervalTrigger(
            seconds=period, start_time=start), id="tick",
            conflict_policy=ConflictPolicy.replace)
        await scheduler.start_in_background()
        emit(ready=time.time(), start=start.timestamp())
        how = await asyncio.to_thread(wait_lines, out, n, start.timestamp(), period * 5 + 10,
                                      n * period * 2 + 60)
        await scheduler.remove_schedule("tick")
    emit(done=how)


async def burst(db: str, out: str, n: int, instant: float) -> None:
    when = datetime.fromtimestamp(instant, UTC)
    store = SQLAlchemyDataStore(create_async_engine(f"sqlite+aiosqlite:///{db}"))
    async with AsyncScheduler(store) as scheduler:
        await scheduler.start_in_background()
        t0 = time.time()
        for i in range(n):  # yearly, at the instant (to the second)
            await scheduler.add_schedule(record_date, CronTrigger(
                month=when.month, day=when.day, hour=when.hour, minute=when.minute,
                second=when.second, timezone="UTC"), args=[out, f"b{i:05d}", instant],
                id=f"burst-{i:05d}", conflict_policy=ConflictPolicy.replace)
        emit(ready=time.time(), adds_s=time.time() - t0, lead=instant - time.time())
        how = await asyncio.to_thread(wait_lines, out, n, instant)
        emit(done=how)


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
    if mode in ("fire", "latency"):
        asyncio.run(fire(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]),
                         "tick" if mode == "fire" else "date_tick"))
    elif mode == "burst":
        asyncio.run(burst(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])))
    elif mode == "idle":
        asyncio.run(idle(sys.argv[2], int(sys.argv[3])))
    else:
        raise SystemExit(f"unknown mode {mode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
