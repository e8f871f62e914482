"""Schedule evaluation cost: the cronsim evaluator against the croniter one it replaced.

    python bench/schedule.py [--jobs 100000]

Per call: ``next_fire`` on a parsed schedule (what a ticker does after each claim),
and ``parse`` + ``next_fire`` (what creating a job, or a daemon that had to recompute
every job's next slot, does). The "before" figures import the replaced module, kept
verbatim in bench/baseline/schedule_croniter.py (needs ``pip install croniter
cron-descriptor``); without them only "after" is printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from hermes_cron_ext.domain import schedule as after  # noqa: E402

#: forms both evaluators accept (the old one refused "0 9 1 * 5#3", one of its bugs)
EXPRS = ("*/5 * * * *", "0 2 * * *", "30 9 * * mon-fri", "0 0 1 * *", "15 */4 * * *",
         "0 0 L * *", "0 0 * * 5#3", "*/15 9-17 * * 1-5", "0 3 * * 0", "0 12 1,15 * *")
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo")


def _baseline():
    path = os.path.join(HERE, "baseline", "schedule_croniter.py")
    try:
        spec = importlib.util.spec_from_file_location("hermes_cron_ext._schedule_before", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        return module
    except ImportError as exc:
        print(f"[bench] no 'before' figures: {exc}", file=sys.stderr)
        return None


def per_call(module, n: int = 20_000) -> float:
    """Microseconds per next_fire on parsed schedules, walking forward."""
    schedules = [module.parse(e, z) for e in EXPRS for z in ZONES]
    t = datetime(2026, 1, 1, tzinfo=UTC)
    start = time.perf_counter()
    for i in range(n):
        nxt = schedules[i % len(schedules)].next_fire(t)
        t = min(nxt, t + timedelta(hours=1)) if nxt else t
    return (time.perf_counter() - start) / n * 1e6


def many_jobs(module, jobs: int) -> float:
    """Seconds to parse and compute the next fire of *jobs* distinct schedules."""
    rng = random.Random(7)
    texts = [(f"{rng.randrange(60)} {rng.randrange(24)} * * {rng.randrange(7)}",
              rng.choice(ZONES)) for _ in range(jobs)]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    start = time.perf_counter()
    for text, zone in texts:
        module.parse(text, zone).next_fire(now)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    args = parser.parse_args()
    rows = [("after (cronsim)", after)]
    before = _baseline()
    if before is not None:
        rows.insert(0, ("before (croniter)", before))
    print("| evaluator | next_fire per call | parse + next_fire, "
          f"{args.jobs:,} jobs |\n| --- | --- | --- |")
    for name, module in rows:
        print(f"| {name} | {per_call(module):.1f} µs | {many_jobs(module, args.jobs):.2f} s |")
    print(f"\nload average {os.getloadavg()[0]:.2f}, Python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
