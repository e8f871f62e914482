"""JupyterHub scale: one service, 100 hub users x 10 jobs, every run as its owner.

    sudo python bench/hub.py [--quick] [--users 100] [--jobs 10]

Needs root (it makes the users with ``useradd`` and removes them after). What it
measures, on one store and one ``hermes-cron daemon`` with run-as on (the privileged
helper ``runtime/runas.py``, started once; here directly, as the daemon is root: in a
hub the unprivileged service starts it once through ``sudo -n``, which costs nothing
per run):

- **fire latency through the run-as step**: 1,000 one-shot jobs of 100 users, ten
  due each second, each payload ``date +%s.%N`` run as its owner; latency = the
  payload's clock - the slot. Goal: p50 <= 20 ms, p99 <= 100 ms;
- **the same, run as the service** (jobs of the store's own user, no helper): what
  the run-as step costs per run is the difference;
- **service idle CPU** with those 1,000 jobs waiting (the 20 s before runs due soon
  are claimed, which is up to 30 s ahead), as a share of one core.

Prints a markdown table and saves it as ``bench/results/hub-latest.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from hermes_cron_ext.domain.access import Viewer
from hermes_cron_ext.ops import Operations
from hermes_cron_ext.runtime import runas
from hermes_cron_ext.store import open_store

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import Result, Row, kill_tagged, pct, save, spread, stop  # noqa: E402

DATE = ["/bin/date", "+%s.%N"]
TAG = "HERMES_BENCH_TAG"
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: seconds from the jobs' creation to the first slot; the daemon's idle CPU is read over
#: the part of it before runs due soon are claimed and primed (up to 30 s ahead)
IDLE = 60.0
CLAIM_AHEAD = 30.0


@contextlib.contextmanager
def users(n: int, base: str) -> Iterator[list[str]]:
    """*n* Unix accounts with homes under *base*, in one group; removed after."""
    prefix = f"hcb{os.getpid() % 100000}-"
    group = prefix + "users"
    subprocess.run(["groupadd", group], check=True, capture_output=True)
    names: list[str] = []
    try:
        for i in range(n):
            name = f"{prefix}{i:03d}"
            subprocess.run(["useradd", "--create-home", "--home-dir",
                            os.path.join(base, name), "--groups", group,
                            "--shell", "/bin/sh", name], check=True, capture_output=True)
            names.append(name)
        yield names
    finally:
        for name in names:
            subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
            subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", group], capture_output=True)


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total / CLK_TCK


def family(pid: int) -> list[int]:
    """*pid* and every process below it (the daemon, its fork server, agents)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def phase(base: str, owners: list[str], jobs: int, per_second: int,
          run_as: bool) -> tuple[list[float], float, dict[str, int]]:
    """One store, one daemon, ``len(owners) * jobs`` one-shot jobs due *per_second*
    a second after an idle window: (latencies, daemon CPU share while idle, others)."""
    folder = tempfile.mkdtemp(prefix="hub-", dir=base)
    db = os.path.join(folder, "store", "hermes-cron.db")
    store = open_store(db)
    env = {**os.environ, "HERMES_CRON_DB": db, TAG: folder}
    if run_as:
        etc = os.path.join(folder, "etc")
        os.makedirs(etc, mode=0o755)
        config = os.path.join(etc, "runas.json")
        with open(config, "w") as f:
            json.dump({"store": db}, f)
        os.chmod(config, 0o644)
        env[runas.CONFIG_ENV] = config
        env[runas.RUN_AS_ENV] = shlex.join(runas.helper_argv())
    ops = Operations(store)
    total = len(owners) * jobs
    first = int(time.time() + IDLE + total / 500) + 1
    for i in range(total):
        owner = owners[i % len(owners)]
        view = ops.as_user(Viewer(owner)) if run_as else ops
        view.create({"name": f"{owner}-j{i // len(owners)}" if not run_as else
                     f"j{i // len(owners)}", "at": time.strftime(
                         "%Y-%m-%dT%H:%M:%SZ", time.gmtime(first + i // per_second)),
                     "command": DATE, "timezone": "UTC"})
    err = open(os.path.join(folder, "daemon.err"), "wb")
    daemon = subprocess.Popen([sys.executable, "-m", "hermes_cron_ext", "--db", db,
                               "daemon"], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=err, cwd=folder)
    try:
        time.sleep(5)  # started, agents forked
        t0, c0 = time.time(), cpu_seconds(family(daemon.pid))
        time.sleep(max(1.0, first - CLAIM_AHEAD - 3 - time.time()))
        idle = (cpu_seconds(family(daemon.pid)) - c0) / (time.time() - t0)
        last = first + (total - 1) // per_second
        deadline = last + 30
        while time.time() < deadline:
            done = store.db.execute(
                "SELECT COUNT(*) FROM runs WHERE finished_at IS NOT NULL").fetchone()[0]
            if done >= total:
                break
            time.sleep(1)
        lat: list[float] = []
        other: dict[str, int] = {}
        for run in store.list_runs(limit=total + 10).items:
            text = store.read_output(run.id).decode(errors="replace").split()
            if run.status == "succeeded" and text and run.scheduled_for:
                lat.append(float(text[0]) - run.scheduled_for)
            else:
                key = f"{run.status}" + (f" ({run.reason[:80]})" if run.reason else "")
                other[key] = other.get(key, 0) + 1
        return lat, idle, other
    finally:
        stop(daemon, 15.0)
        err.close()
        kill_tagged(f"{TAG}={folder}".encode() + b"\0")
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=10, help="jobs per user")
    parser.add_argument("--per-second", type=int, default=10,
                        help="one-shot jobs due each second")
    parser.add_argument("--quick", action="store_true", help="10 users x 10 jobs")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/hub.py needs root: it makes Unix users (useradd) and runs jobs as "
              "them", file=sys.stderr)
        return 2
    n = 10 if args.quick else args.users
    base = tempfile.mkdtemp(prefix="hermes-bench-hub-", dir="/tmp")
    os.chmod(base, 0o755)
    res = Result()
    try:
        with users(n, os.path.join(base, "home")) as owners:
            for run_as in (True, False):
                print(f"[bench] {n} users x {args.jobs} jobs, run as "
                      f"{'owner' if run_as else 'service'} ...", file=sys.stderr, flush=True)
                lat, idle, other = phase(base, owners, args.jobs, args.per_second, run_as)
                total = n * args.jobs
                if run_as:
                    ok = (len(lat) == total and pct(lat, 50) <= 0.020
                          and pct(lat, 99) <= 0.100)
                    res.rows.append(Row(
                        f"Fire latency through the run-as helper, {n} hub users x "
                        f"{args.jobs} jobs, {args.per_second} due each second (n={len(lat)} "
                        f"of {total})", "p50 ≤ 20 ms, p99 ≤ 100 ms", spread(lat), ok))
                    res.rows.append(Row(
                        f"Service idle CPU with those {total} jobs waiting", "–",
                        f"{idle * 100:.2f} % of a core", None))
                    owned = lat
                else:
                    res.rows.append(Row(
                        f"The same {total} jobs run as the service (no helper)", "–",
                        spread(lat), None))
                    res.notes.append(
                        f"run-as cost per run: p50 {1000 * (pct(owned, 50) - pct(lat, 50)):.1f}"
                        f" ms, p99 {1000 * (pct(owned, 99) - pct(lat, 99)):.1f} ms (owner "
                        "minus service)")
                if other:
                    res.notes.append(f"runs without a sample ({'owner' if run_as else 'service'}"
                                     f"): {other}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    lines = ["# hermes-cron-ext JupyterHub benchmark", "",
             "| figure | goal | measured | pass? |", "|---|---|---|---|"]
    for r in res.rows:
        ok = "–" if r.ok is None else ("yes" if r.ok else "**NO**")
        lines.append(f"| {r.figure} | {r.goal} | {r.measured} | {ok} |")
    lines += ["", "Notes:", ""] + [f"- {note}" for note in res.notes]
    text = "\n".join(lines) + "\n"
    print(text)
    save(text, os.path.join(HERE, "results", "hub-latest.md"))
    return 1 if any(r.ok is False for r in res.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
