"""APScheduler 3.11 side of the side-by-side rows: run by its venv's Python, never ours.

    aps3_worker.py latency DB OUT N PERIOD GRACE  # IntervalTrigger(PERIOD s); N runs, then stop
    aps3_worker.py burst DB OUT N INSTANT GRACE   # N yearly cron jobs due at INSTANT (epoch s)
    aps3_worker.py idle DB N GRACE                # N yearly cron jobs; run until SIGTERM

The setup a user picking APScheduler 3 would write: ``BackgroundScheduler`` with a
``SQLAlchemyJobStore`` on a SQLite file (persistent) and ``ThreadPoolExecutor(20)`` (the
pool its user guide configures; the class's own default is 10), timezone UTC. GRACE
``default`` leaves ``misfire_grace_time`` at APScheduler's default (1 s: a run that waits
longer than that for a thread is dropped as missed); ``none`` sets it to None in the
job defaults (no run is dropped). The payload is ``aps_common.record_date`` (``/bin/date``
as a subprocess). The last line on stdout (JSON) counts the runs executed, failed and
missed (the scheduler's own events).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from datetime import UTC, datetime

from aps_common import emit, wait_lines
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

EVENTS = {EVENT_JOB_EXECUTED: "executed", EVENT_JOB_ERROR: "error", EVENT_JOB_MISSED: "missed"}


class Counted:
    """A BackgroundScheduler as configured above, with its job events counted."""

    def __init__(self, db: str, grace: str):
        defaults = {} if grace == "default" else {"misfire_grace_time": None}
        if grace not in ("default", "none"):
            raise SystemExit(f"GRACE is default or none, not {grace}")
        self.scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{db}")},
            executors={"default": ThreadPoolExecutor(20)}, job_defaults=defaults,
            timezone="UTC")
        self.counts = dict.fromkeys(EVENTS.values(), 0)
        self.lock = threading.Lock()
        self.scheduler.add_listener(self.event, sum(EVENTS))

    def event(self, ev) -> None:
        with self.lock:
            self.counts[EVENTS[ev.code]] += 1

    def accounted(self, n: int) -> bool:
        with self.lock:
            return sum(self.counts.values()) >= n


def yearly(t: float) -> dict:
    """Cron fields that fire once a year, at *t* (a whole second, UTC)."""
    w = datetime.fromtimestamp(t, UTC)
    return dict(month=w.month, day=w.day, hour=w.hour, minute=w.minute, second=w.second)


def latency(db: str, out: str, n: int, period: float, grace: str) -> None:
    import aps_common  # the function by reference: a persistent store keeps "module:name"

    c = Counted(db, grace)
    c.scheduler.start()
    start = float(int(time.time()) + 2)
    c.scheduler.add_job(aps_common.grid_tick, "interval", seconds=period,
                        start_date=datetime.fromtimestamp(start, UTC),
                        args=[out, start, period], id="tick")
    emit(ready=time.time(), start=start)
    how = wait_lines(out, n, start, quiet=period * 5 + 10, limit=n * period * 2 + 60)
    c.scheduler.remove_job("tick")
    c.scheduler.shutdown(wait=True)
    emit(done=how, **c.counts)


def burst(db: str, out: str, n: int, instant: float, grace: str) -> None:
    import aps_common

    c = Counted(db, grace)
    c.scheduler.start()
    t0 = time.time()
    for i in range(n):
        c.scheduler.add_job(aps_common.record_date, "cron", **yearly(instant),
                            args=[out, f"b{i:05d}", instant], id=f"burst-{i:05d}")
    emit(ready=time.time(), adds_s=time.time() - t0, lead=instant - time.time())
    how = wait_lines(out, n, instant, done=lambda: c.accounted(n))
    c.scheduler.shutdown(wait=True)
    emit(done=how, **c.counts)


def idle(db: str, n: int, grace: str) -> None:
    import aps_common

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    c = Counted(db, grace)
    t0 = time.time()
    for i in range(n):  # 03:00 UTC on 1 January: none due in the window
        c.scheduler.add_job(aps_common.noop, "cron", month=1, day=1, hour=3, minute=0,
                            id=f"yearly-{i:05d}")
    c.scheduler.start()  # the pending jobs go into the store here
    took = time.time() - t0
    time.sleep(1)
    print(f"ready {took:.2f} {len(c.scheduler.get_jobs())}", flush=True)
    stop.wait()
    c.scheduler.shutdown(wait=False)


def main() -> int:
    mode, a = sys.argv[1], sys.argv[2:]
    if mode == "latency":
        latency(a[0], a[1], int(a[2]), float(a[3]), a[4])
    elif mode == "burst":
        burst(a[0], a[1], int(a[2]), float(a[3]), a[4])
    elif mode == "idle":
        idle(a[0], int(a[1]), a[2])
    else:
        raise SystemExit(f"unknown mode {mode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
