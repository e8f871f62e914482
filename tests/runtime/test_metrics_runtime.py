"""Run metrics from the runtime, on real runs through the real executor: what a run's
output reports (``::metric NAME=VALUE [UNIT]`` lines, ``hermes_cron_ext.metric()``) and
the CPU seconds and peak memory of its payload (``wait4`` where it is reaped) go with
its final status, from the agent (command and python runs) and from a supervisor (runs
that wait their turn, notebooks); a bad line or a rejected metric never fails a run."""

from __future__ import annotations

import asyncio
import time

import nbformat
import pytest

from hermes_cron_ext.domain.metrics import MAX_PER_RUN
from hermes_cron_ext.runtime.agent import handles
from hermes_cron_ext.runtime.executor import LocalExecutor
from hermes_cron_ext.store.sqlite import SQLiteStore
from tests.conftest import make_job, wait_for

FINAL = {"succeeded", "failed", "cancelled", "timed_out", "skipped", "lost"}
#: a payload that burns ~0.3 s of CPU and holds 100 MB at once
BURN = ("import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3:\n"
        "    pass\nblock = bytearray(100_000_000)\n")


@pytest.fixture
def sqlite(db_path):
    store = SQLiteStore(db_path)
    yield store
    store.close()


def queue(store, name: str, **job):
    make_job(store, name, "@yearly", **job)
    return store.request_run(name)


def run_all(store, runs, timeout: float = 90.0) -> None:
    """Hand *runs* to a real fork server and wait for their final statuses."""

    async def main():
        executor = LocalExecutor(store.path, store.logs_dir)
        try:
            await executor.start_many(runs)
            await asyncio.to_thread(
                wait_for, lambda: all(store.get_run(r.id).status in FINAL for r in runs),
                timeout, 0.05, "the runs")
        finally:
            await executor.close()

    asyncio.run(main())


def metrics_of(store, run) -> dict[str, tuple[float, str]]:
    """``{name: (value, unit)}`` of *run*, read through the store's interface."""
    out = {}
    for name, _, _ in store.metric_names(run.job_id):
        for run_id, _, value, unit in store.metric_series(run.job_id, name):
            if run_id == run.id:
                out[name] = (value, unit)
    return out


def check_measured(got: dict[str, tuple[float, str]], burns: bool = True) -> None:
    assert got["cpu_seconds"][1] == "s" and got["peak_memory"][1] == "B"
    if burns:
        assert got["cpu_seconds"][0] >= 0.25, got
        assert got["peak_memory"][0] >= 100e6, got
    assert {"duration", "exit_code", "output_bytes"} <= got.keys()


def test_an_agents_command_and_python_runs_carry_their_metrics(sqlite):
    cmd = queue(sqlite, "cmd", command=(
        "echo '::metric rows=1234'; echo '::metric ratio=0.5 %' >&2; "
        f"python3 -c '{BURN}'"))
    py = queue(sqlite, "py", kind="python", command=None,
               code="import hermes_cron_ext\nhermes_cron_ext.metric('rows', 7)\n"
                    "hermes_cron_ext.metric('speed', 2.5, 'MB/s')\n" + BURN)
    idle = queue(sqlite, "idle", command="true")
    assert all(handles(r) for r in (cmd, py, idle))
    run_all(sqlite, [cmd, py, idle])
    for run in (cmd, py, idle):
        assert sqlite.get_run(run.id).status == "succeeded", sqlite.get_run(run.id).reason

    got = metrics_of(sqlite, cmd)
    assert got["rows"] == (1234.0, "") and got["ratio"] == (0.5, "%")
    check_measured(got)  # the shell waited for its python: its CPU and memory count
    got = metrics_of(sqlite, py)
    assert got["rows"] == (7.0, "") and got["speed"] == (2.5, "MB/s")
    check_measured(got)
    got = metrics_of(sqlite, idle)
    check_measured(got, burns=False)
    assert got["cpu_seconds"][0] < 0.25 and 0 < got["peak_memory"][0] < 100e6


def test_a_bad_metric_line_or_a_rejected_metric_never_fails_the_run(sqlite):
    names = " ".join(f"'::metric m{i}=1'" for i in range(MAX_PER_RUN + 5))
    run = queue(sqlite, "bad", command=(
        "echo '::metric 9lives=1'; echo '::metric rows=lots'; echo '::metric duration=5'; "
        "echo '::metric unit=1 a b'; echo 'text ::metric echoed=1'; "
        f"printf '%s\\n' {names}; printf '::metric last=3'"))
    fails = queue(sqlite, "fails", command="echo '::metric rows=5'; exit 4")
    run_all(sqlite, [run, fails])
    done = sqlite.get_run(run.id)
    assert done.status == "succeeded", done.reason
    got = metrics_of(sqlite, run)
    assert got["duration"][0] < 5  # the store's, not the run's
    assert not {"9lives", "rows", "unit", "echoed"} & got.keys()
    assert sum(1 for n in got if n.startswith("m")) == MAX_PER_RUN  # the cap
    assert "last" not in got  # past the cap too (a line without a newline counts)
    done = sqlite.get_run(fails.id)
    assert (done.status, done.exit_code) == ("failed", 4)
    got = metrics_of(sqlite, fails)
    assert got["rows"] == (5.0, "") and got["exit_code"] == (4.0, "")
    check_measured(got, burns=False)


def test_a_run_that_waits_its_turn_carries_its_metrics_through_its_supervisor(sqlite):
    run = queue(sqlite, "queued", kind="python", command=None, overlap="queue",
                code="import sys, hermes_cron_ext\nhermes_cron_ext.metric('rows', 42)\n"
                     "print('::metric errs=2', file=sys.stderr)\n" + BURN)
    assert not handles(run)  # a supervisor's
    run_all(sqlite, [run])
    assert sqlite.get_run(run.id).status == "succeeded"
    got = metrics_of(sqlite, run)
    assert got["rows"] == (42.0, "") and got["errs"] == (2.0, "")
    check_measured(got)


def _notebook(path, *cells: str) -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells += [nbformat.v4.new_code_cell(src) for src in cells]
    nbformat.write(nb, str(path))
    return str(path)


def test_a_notebook_cell_reports_a_metric(sqlite, tmp_path):
    path = _notebook(tmp_path / "m.ipynb", "import hermes_cron_ext",
                     "hermes_cron_ext.metric('accuracy', 0.93)\n"
                     "hermes_cron_ext.metric('rows', 10, 'k')")
    run = queue(sqlite, "nb", kind="notebook", command=path)
    started = time.monotonic()
    run_all(sqlite, [run], timeout=120)
    done = sqlite.get_run(run.id)
    assert done.status == "succeeded", done.reason
    got = metrics_of(sqlite, run)
    assert got["accuracy"] == (0.93, "") and got["rows"] == (10.0, "k")
    # the runner's own tree (its kernel is its child): some CPU, some memory
    assert got["cpu_seconds"][0] > 0 and got["peak_memory"][0] > 10e6
    assert time.monotonic() - started < 120
