"""Pipelines with real tickers: two daemons on one store, jobs A and B every 2 s and C
after both (no schedule of its own). Each slot of A and B gives exactly one run of C,
told who triggered it, and C never fires by itself."""

from __future__ import annotations

import collections
import time

import pytest

from hermes_cron_ext.store import open_store
from tests.conftest import CLI, wait_for

# about a minute of daemons and supervisors on both stores: `make slow`, not `make test`
pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_cli(request, tmp_path):
    """The CLI on a SQLite file, or on a real PostgreSQL database."""
    db = (str(tmp_path / "store" / "cron.db") if request.param == "sqlite"
          else request.getfixturevalue("pg_url"))
    cli = CLI(db, str(tmp_path))
    yield cli
    cli.stop_all()


def test_fan_in_with_two_daemons_fires_each_downstream_slot_once(store_cli, tmp_path):
    cli = store_cli
    ledger = tmp_path / "ledger"
    cli("add", "a", "@every 2s", "--", "true")
    cli("add", "b", "@every 2s", "--", "sleep 0.3")
    cli("add", "c", "--after", "a", "--after", "b", "--", "sh", "-c",
        f'echo "$HERMES_CRON_LOGICAL_TIME $HERMES_CRON_UPSTREAM_STATUS" >> {ledger}')
    cli("add", "on-failure", "--after", "a:failure", "--", "true")
    cli.daemon()
    cli.daemon()  # two tickers race for every slot and every run's end
    store = open_store(cli.db)
    try:
        wait_for(lambda: len(store.list_runs("c").items) >= 3, 40, 0.2, "three runs of c")
        cli("pause", "a", "b")
        time.sleep(1.5)  # runs in flight end; their downstream runs are queued at once
        wait_for(lambda: not [r for r in store.active_runs()], 30, what="quiet")
        runs = {j: store.list_runs(j, limit=200).items for j in ("a", "b", "c")}
        both = ({r.scheduled_for for r in runs["a"] if r.status == "succeeded"}
                & {r.scheduled_for for r in runs["b"] if r.status == "succeeded"})
        per_slot = collections.Counter(r.scheduled_for for r in runs["c"])
        assert set(per_slot) == both and set(per_slot.values()) == {1}, per_slot
        assert {r.trigger for r in runs["c"]} == {"upstream"}  # never by itself
        shown = cli.json("show", "c")
        assert (shown["schedule"], shown["next_run_at"]) == (None, None)
        assert all(r.status == "succeeded" for r in runs["c"])
        lines = ledger.read_text().splitlines()
        assert len(lines) == len(runs["c"]) and {ln.split()[1] for ln in lines} == {
            "succeeded"}
        assert store.list_runs("on-failure").items == []  # a never failed
    finally:
        store.close()


def _notebook(path, cells: list[str], parameters: str | None = None) -> str:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.insert(0, cell)
    nbformat.write(nb, str(path))
    return str(path)


def test_downstream_gets_the_upstream_notebooks_artifact(store_cli, tmp_path):
    """A notebook's executed copy reaches the jobs after it: a script through
    ``HERMES_CRON_UPSTREAM_ARTIFACT``, a notebook through the parameters it asks for."""
    cli = store_cli
    up = _notebook(tmp_path / "extract.ipynb", ["rows = 41 + 1\nprint('rows', rows)"])
    reader = ("import nbformat\nnb = nbformat.read(upstream_artifact, as_version=4)\n"
              "print('read', nb.cells[-1].outputs[0]['text'].strip(), 'from', "
              "upstream_status, upstream_exit_code)")
    down = _notebook(tmp_path / "report.ipynb", [reader],
                     'upstream_artifact = ""\nupstream_status = ""\nupstream_exit_code = -1')
    cli("add", "extract", "@yearly", "--kind", "notebook", "--", up)
    cli("add", "report", "--kind", "notebook", "--after", "extract", "--", down)
    cli("add", "archive", "--after", "extract", "--", "sh", "-c",
        'echo "$HERMES_CRON_UPSTREAM_ARTIFACT"; '
        'grep -c "rows 42" "$HERMES_CRON_UPSTREAM_ARTIFACT"')
    cli.daemon()
    cli("run", "extract")
    store = open_store(cli.db)
    try:
        def ended(name: str) -> bool:
            runs = store.list_runs(name).items
            return bool(runs) and runs[0].status not in ("queued", "running")
        wait_for(lambda: ended("report") and ended("archive"), 90, 0.2,
                 "both downstream runs to end")
        extract = store.list_runs("extract").items[0]
        report, archive = store.list_runs("report").items[0], store.list_runs("archive").items[0]
        assert (report.status, archive.status) == ("succeeded", "succeeded"), (
            store.read_output(report.id), store.read_output(archive.id))
        assert b"read rows 42 from succeeded 0\n" in store.read_output(report.id)
        lines = store.read_output(archive.id).decode().splitlines()
        assert lines[0].endswith(f"{extract.id}.log.ipynb") and lines[1] == "1"
        assert store.get_run(report.id).spec["upstream"][0]["run_id"] == extract.id
        assert store.get_run(report.id).spec["upstream"][0]["job"] == "extract"
    finally:
        store.close()


def test_fan_out_starts_every_downstream_without_a_ticker(store_cli, tmp_path):
    """The upstream's supervisor goes on as one downstream's and forks one for each
    other: with no ticker alive at all, every job after it still runs, once."""
    cli = store_cli
    cli("add", "src", "@yearly", "--", "true")
    for name in ("left", "middle", "right"):
        cli("add", name, "--after", "src", "--", "sh", "-c",
            f"echo {name} $HERMES_CRON_UPSTREAM_STATUS")
    cli("run", "src", check=False)  # no ticker: it warns, and starts the run itself
    store = open_store(cli.db)
    try:
        def ended(name: str) -> bool:
            runs = store.list_runs(name).items
            return bool(runs) and runs[0].status not in ("queued", "running")
        wait_for(lambda: all(ended(n) for n in ("left", "middle", "right")), 60, 0.2,
                 "every downstream run to end")
        for name in ("left", "middle", "right"):
            runs = store.list_runs(name).items
            assert [r.status for r in runs] == ["succeeded"], (name, runs)
            assert store.read_output(runs[0].id) == f"{name} succeeded\n".encode()
        assert store.list_tickers() == []  # no ticker ran any of them
    finally:
        store.close()


def test_a_failed_upstream_triggers_only_failure_and_completion_jobs(store_cli, tmp_path):
    """With a real ticker: an upstream that fails for good (its retry too) triggers the
    jobs after it ``on: failure`` and ``on: completion`` once, and never ``on: success``;
    the attempt that is retried triggers nothing yet."""
    cli = store_cli
    cli("add", "flaky", "@yearly", "--retries", "1", "--retry-delay", "1s", "--",
        "exit 4")
    cli("add", "publish", "--after", "flaky", "--", "true")
    cli("add", "page-me", "--after", "flaky:failure", "--", "sh", "-c",
        "echo $HERMES_CRON_UPSTREAM_STATUS $HERMES_CRON_UPSTREAM_EXIT_CODE")
    cli("add", "cleanup", "--after", "flaky:completion", "--", "true")
    cli.daemon()
    cli("run", "flaky")
    store = open_store(cli.db)
    try:
        def ended(name: str) -> bool:
            runs = store.list_runs(name).items
            return bool(runs) and runs[0].status not in ("queued", "running")
        wait_for(lambda: ended("page-me") and ended("cleanup"), 60, 0.2,
                 "the failure and completion jobs to run")
        time.sleep(1.0)  # a wrong extra run (or a publish) would be queued by now
        flaky = store.list_runs("flaky").items
        assert sorted((r.attempt, r.status) for r in flaky) == [(1, "failed"), (2, "failed")]
        [page] = store.list_runs("page-me").items
        assert page.status == "succeeded" and store.read_output(page.id) == b"failed 4\n"
        assert store.get_run(page.id).spec["upstream"][0]["run_id"] == max(
            flaky, key=lambda r: r.attempt).id  # the attempt that failed for good
        assert [r.status for r in store.list_runs("cleanup").items] == ["succeeded"]
        assert store.list_runs("publish").items == []
    finally:
        store.close()


def test_backfilling_both_upstreams_runs_the_fan_in_job_once_per_slot(store_cli, tmp_path):
    """Both upstreams of a fan-in job backfilled over 30 days: the job runs exactly once
    for each day, none skipped. A run triggered by upstreams is owed to its slot: under
    overlap ``forbid`` it waits for the running one instead of being skipped."""
    from hermes_cron_ext.ops import Operations

    cli = store_cli
    cli("add", "extract", "@daily", "--tz", "UTC", "--", "true")
    cli("add", "load", "@daily", "--tz", "UTC", "--", "true")
    cli("add", "report", "--after", "extract", "--after", "load", "--", "true")
    cli.daemon()
    ops = Operations(cli.db)
    try:
        fills = [ops.backfill(name, "2026-11-01", "2026-11-30", max_parallel=4)
                 for name in ("extract", "load")]
        for b in fills:
            wait_for(lambda b=b: ops.get_backfill(b["id"])["state"] == "done", 120, 0.2,
                     "both backfills to end")
        wait_for(lambda: not ops.store.active_runs(), 60, 0.2, "every report run to end")
        runs = ops.store.list_runs("report", limit=200).items
        per_slot = collections.Counter(r.scheduled_for for r in runs)
        assert len(per_slot) == 30 and set(per_slot.values()) == {1}, (
            [(r.status, r.reason) for r in runs if r.status != "succeeded"])
        assert {(r.trigger, r.status) for r in runs} == {("upstream", "succeeded")}
    finally:
        ops.close()


def test_a_fan_in_backfilled_with_no_ticker_alive_runs_once_per_slot(store_cli, tmp_path):
    """No ticker at all: ``hermes-cron backfill`` starts the first slots and exits; each
    upstream's supervisor goes on with the job after it and forks one for its next slot.
    Every downstream run ends, once per slot, after the command that started it is gone
    (a fork used to carry an open SQLite connection: its commits could be lost)."""
    cli = store_cli
    for name in ("extract", "load"):
        cli("add", name, "@daily", "--tz", "UTC", "--", "true")
    cli("add", "report", "--after", "extract", "--after", "load", "--", "true")
    for name in ("extract", "load"):
        cli("backfill", name, "--from", "2026-11-01", "--to", "2026-11-30")
    store = open_store(cli.db)
    try:
        wait_for(lambda: len([r for r in store.list_runs("report", limit=100).items
                              if r.status == "succeeded"]) == 30, 60, 0.5,
                 "a report run for each of the 30 days")
        runs = store.list_runs("report", limit=100).items
        assert len(runs) == 30 and len({r.scheduled_for for r in runs}) == 30
        assert store.list_tickers() == []
    finally:
        store.close()
