"""What both APScheduler workers share (standard library only: it runs in their venvs).

The payload of the side-by-side rows is ``/bin/date +%s.%N`` run as a subprocess, like our
command jobs; :func:`record_date` is the function APScheduler calls. It appends one line
``<date's printed clock> <slot> <tag>`` to OUT, with one ``write`` on an ``O_APPEND``
descriptor (whole lines even with 20 threads at once). The workers print JSON lines on
stdout for ``side.py``: ``{"ready": ...}`` once the jobs are stored and the scheduler runs,
and for the burst a last ``{"done": ...}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

DATE = ["/bin/date", "+%s.%N"]


def record_date(out: str, tag: str, slot: float) -> None:
    """The payload: ``date`` as a subprocess; its clock, the slot and the tag go to *out*."""
    printed = subprocess.run(DATE, capture_output=True, check=True).stdout.decode().strip()
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{printed} {slot!r} {tag}\n".encode())
    finally:
        os.close(fd)


def grid_tick(out: str, start: float, period: float) -> None:
    """The payload on an interval whose scheduler does not hand the job its slot
    (APScheduler 3): the slot is the last point of the grid at or before the call."""
    record_date(out, "tick", grid_slot(time.time(), start, period))


def noop() -> None:
    """The idle fleet's function (never due in the window)."""


def lines(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


def wait_lines(out: str, n: int, start: float, quiet: float = 15.0,
               limit: float = 300.0, done=None) -> str:
    """After *start*: wait until *out* has *n* lines, or ``done()`` says so, or nothing new
    came for *quiet* seconds, or *limit* seconds passed; which one, as a word."""
    time.sleep(max(0.0, start - time.time()))
    last, last_t = -1, time.time()
    while time.time() < start + limit:
        got = lines(out)
        if got >= n:
            return "all"
        if done is not None and done():
            return "accounted"
        if got != last:
            last, last_t = got, time.time()
        elif time.time() - last_t > quiet:
            return f"quiet {quiet:g} s"
        time.sleep(0.1)
    return f"limit {limit:g} s"


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def args_of(argv: list[str]) -> tuple[str, dict[str, str]]:
    """``MODE key=value ...`` -> ``(mode, {key: value})``."""
    if not argv:
        raise SystemExit("usage: MODE key=value ...")
    return argv[0], dict(a.split("=", 1) for a in argv[1:])


def grid_slot(t: float, start: float, period: float) -> float:
    """The last slot of an interval grid at or before *t*."""
    return start + ((t - start) // period) * period
