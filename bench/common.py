"""What every benchmark script here shares: result rows, percentiles, and a keep-alive
HTTP client (standard library only: the comparison harness imports it too)."""

from __future__ import annotations

import http.client
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

TOKEN = "tok"  # every bench server runs with this token


@dataclass
class Row:
    figure: str
    goal: str
    measured: str
    ok: bool | None = None  # None: for information, no goal


@dataclass
class Result:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def pct(values: list[float], p: float) -> float:
    """The p-th percentile, linear between closest ranks (nan when empty)."""
    s = sorted(values)
    if not s:
        return math.nan
    k = (len(s) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    return f"{seconds * 1000:.2f} ms" if seconds < 0.1 else f"{seconds * 1000:.0f} ms"


def spread(values: list[float]) -> str:
    """``p50 / p99 / max`` of durations in seconds, and the sample count."""
    if not values:
        return "no samples"
    return (f"p50 {ms(pct(values, 50))} / p99 {ms(pct(values, 99))} / "
            f"max {ms(max(values))} (n={len(values):,})")


def mib(n: float) -> str:
    return f"{n / 1048576:.1f} MiB"


class Client:
    """One keep-alive connection with the bench token (what a browser tab holds)."""

    def __init__(self, port: int, timeout: float = 30.0, token: str = TOKEN):
        self.port = port
        self.timeout = timeout
        self.auth = {"Authorization": f"token {token}"}
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: dict | None = None
                ) -> tuple[int, bytes, float]:
        """``(status, body, seconds)``: seconds from sending to the last body byte."""
        headers = dict(self.auth)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):  # once more on a fresh connection if the old one broke
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=self.timeout)
            try:
                t0 = time.perf_counter()
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                return resp.status, raw, time.perf_counter() - t0
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: dict | None = None,
             expect: tuple[int, ...] = (200,)):
        status, raw, _ = self.request(method, path, body)
        if status not in expect:
            raise RuntimeError(f"{method} {path} -> {status}: {raw[:300]!r}")
        return json.loads(raw) if raw else None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# -- processes and logs -----------------------------------------------------------------

def tagged_pids(marker: bytes) -> list[int]:
    """Every live process (but this one) whose environment holds *marker*: what a
    bench started, however deep (servers pass their environment on)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if marker in f.read():
                    out.append(int(name))
        except OSError:
            pass
    return out


def stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after *grace* seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def log_tail(path: str, n: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            return f.read()[-n:].decode(errors="replace")
    except OSError:
        return ""


def log_problems(path: str) -> list[str]:
    """Tracebacks and 5xx lines a server logged (each one is a bug)."""
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    return [ln.strip()[:200] for ln in lines
            if "Traceback" in ln or " 500 " in ln or "[E " in ln][:10]


def proc_stat(pid: int) -> list[bytes] | None:
    """Fields 3.. of /proc/PID/stat (after the command name), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2:].split()


def kill_until_gone(find_pids, rounds: int = 50, pause: float = 0.1) -> list[str]:
    """SIGKILL whatever ``find_pids()`` names, round after round, until it names
    nothing; the command lines of what was killed."""
    killed = []
    for _ in range(rounds):
        pids = find_pids()
        if not pids:
            break
        for pid in pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    what = f.read().replace(b"\0", b" ").decode(errors="replace")[:100]
                os.kill(pid, signal.SIGKILL)
                killed.append(what.strip())
            except (ProcessLookupError, FileNotFoundError):
                pass
        time.sleep(pause)
    return killed


def kill_tagged(marker: bytes) -> list[str]:
    """SIGKILL what is still running with *marker* after a clean stop (what a server or
    daemon left behind), until nothing is; the command lines of what was killed."""
    return kill_until_gone(lambda: tagged_pids(marker))


def save(text: str, path: str) -> None:
    """Write a results table (and say where, on stderr)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    print(f"[bench] saved {path}", file=sys.stderr)


class PeakSampler:
    """Samples the machine every *every* seconds in a thread while a figure runs: the
    number of processes (``/proc`` entries), the runnable tasks (``/proc/loadavg``'s
    fourth field, before the slash: the instantaneous load) and the 1-minute load
    average. ``with PeakSampler() as s: ...`` then ``s.peak_procs``, ``s.peak_runnable``,
    ``s.peak_load``, ``s.base_procs`` (the count before)."""

    def __init__(self, every: float = 0.02):
        import threading

        self.every = every
        self.base_procs = self.peak_procs = self._procs()
        self.peak_runnable = 0
        self.peak_load = os.getloadavg()[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _procs() -> int:
        return sum(1 for e in os.scandir("/proc") if e.name.isdigit())

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.peak_procs = max(self.peak_procs, self._procs())
            with open("/proc/loadavg") as f:
                fields = f.read().split()
            self.peak_load = max(self.peak_load, float(fields[0]))
            # the sampler itself is one of the runnable tasks it counts
            self.peak_runnable = max(self.peak_runnable, int(fields[3].split("/")[0]) - 1)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def describe(self) -> str:
        return (f"peak {self.peak_procs:,} processes on the machine ({self.base_procs:,} "
                f"before), {self.peak_runnable} runnable, 1-min load average "
                f"{self.peak_load:.2f}")
