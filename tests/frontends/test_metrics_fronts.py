"""``hermes-cron metrics`` (a real CLI process, on a store and through a server's REST
API) and ``%cron metrics`` (IPython's own shell): a table per metric with a sparkline,
the ops answer as JSON, one line for what is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from hermes_cron_ext.domain.metrics import Metric
from hermes_cron_ext.frontends.render import SPARK_ASCII, SPARK_BLOCKS, sparkline
from hermes_cron_ext.store import SQLiteStore
from tests.conftest import make_job
from tests.frontends.test_magics import Cell, cell, db, ip  # noqa: F401 (fixtures)

pytest_plugins = ("tests.notebook_fixtures",)

DURATIONS = (1.0, 2.0, 4.0, 8.0, 3.0)


def ended_runs(path: str, name: str = "etl") -> list[str]:
    """Five ended runs of *name* (durations ``DURATIONS``, the third failed, ``rows``
    reported by all but the second) in the store at *path*."""
    store = SQLiteStore(path)
    try:
        make_job(store, name, overlap="allow")
        make_job(store, "fresh")
        ids = []
        for i, took in enumerate(DURATIONS):
            run = store.request_run(name)
            store.attach_run(run.id, 1, None, "h")
            store.mark_running(run.id, time.time() - took, 2)  # it took *took* s
            if i != 1:
                store.record_metrics(run.id, [Metric("rows", 10 * (i + 1), "rows")])
            store.finish_run(run.id, "failed" if i == 2 else "succeeded", 3 if i == 2 else 0)
            ids.append(run.id)
        return ids
    finally:
        store.close()


def test_sparkline_levels_width_and_ascii():
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == SPARK_BLOCKS
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8], ascii=True) == SPARK_ASCII
    assert sparkline([0, 10], width=1) == "▄"  # the newest alone: flat
    assert sparkline([5, 5, 5]) == "▄▄▄" and sparkline([]) == ""
    assert sparkline(list(range(50)), width=10) == sparkline(list(range(40, 50)))


def test_cli_table_sparkline_json_filter_and_errors(cli):
    ids = ended_runs(cli.db)
    cli.env["COLUMNS"] = "120"
    out = cli("metrics", "etl").stdout.splitlines()
    assert out[0].split() == ["METRIC", "UNIT", "RUNS", "LAST", "MIN", "MEDIAN", "MAX",
                              "TREND"]
    table = {line.split()[0]: line.split() for line in out[1:]}
    assert list(table) == ["duration", "exit_code", "output_bytes", "rows"]
    assert table["exit_code"][1:] == ["-", "5", "0", "0", "0", "3", "▁▁█▁▁"]
    assert table["rows"][1:] == ["rows", "4", "50", "rows", "10", "rows", "35", "rows",
                                 "50", "rows", "▁▅▆█"]
    assert table["duration"][-1] == sparkline(list(DURATIONS)) == "▁▂▄█▃"
    assert table["duration"][2:4] == ["5", "3.00"]  # LAST: 3.00 s

    answer = cli.json("metrics", "etl")
    assert [m["name"] for m in answer["metrics"]] == list(table)
    assert [p["run_id"] for p in answer["metrics"][1]["points"]] == ids
    assert answer["metrics"][3]["summary"]["median"] == 35

    only = cli.json("metrics", "etl", "--metric", "rows", "--limit", "2")
    assert [m["name"] for m in only["metrics"]] == ["rows"]
    assert [p["value"] for p in only["metrics"][0]["points"]] == [40, 50]
    cursor = only["metrics"][0]["cursor"]
    text = cli("metrics", "etl", "--metric", "rows", "--limit", "2").stdout
    assert text.splitlines()[-1] == f"older rows: --metric rows --cursor {cursor}"
    older = cli.json("metrics", "etl", "--cursor", cursor, "--limit", "2")
    assert [p["value"] for p in older["metrics"][0]["points"]] == [10, 30]

    # a terminal that cannot print the blocks gets the same levels in ASCII
    cli.env["PYTHONIOENCODING"] = "ascii"
    plain = cli("metrics", "etl", "--metric", "exit_code").stdout.splitlines()
    assert plain[1].split()[-1] == "__#__"
    del cli.env["PYTHONIOENCODING"]

    assert cli("metrics", "fresh").stdout == (
        "fresh has no metrics yet: none of its runs has ended\n")
    bad = cli("metrics", "etl", "--metric", "lag", check=False)
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr == ("hermes-cron: error: job 'etl' has no metric 'lag': its runs have "
                          "duration, exit_code, output_bytes, rows\n")
    gone = cli("metrics", "nope", check=False)
    assert gone.returncode == 1 and gone.stderr.count("\n") == 1 and "nope" in gone.stderr
    limit = cli("metrics", "etl", "--limit", "0", check=False)
    assert limit.returncode == 2
    assert limit.stderr == "hermes-cron: --limit must be between 1 and 1000, not 0\n"


def test_cli_through_a_servers_rest_api(cron_server, tmp_path):
    """``HERMES_CRON_URL``: the same command over ``GET /jobs/{ref}/metrics`` (RestClient),
    on a job that really ran."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HERMES_CRON", "JUPYTERHUB"))}
    env.update({"HERMES_CRON_URL": cron_server.url, "HERMES_CRON_TOKEN": cron_server.token,
                "JUPYTER_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "100"})

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hermes_cron_ext", *args], env=env,
                              capture_output=True, text=True, timeout=60)
    try:
        assert run("add", "metrics-remote", "@yearly", "--", "echo", "hi").returncode == 0
        assert run("run", "metrics-remote", "--follow").returncode == 0
        answer = json.loads(run("metrics", "metrics-remote", "--json").stdout)
        assert answer["job_name"] == "metrics-remote"
        byname = {m["name"]: m for m in answer["metrics"]}
        assert {"duration", "exit_code", "output_bytes"} <= set(byname)
        assert byname["exit_code"]["summary"]["last"] == 0
        assert byname["output_bytes"]["summary"]["last"] == 3  # "hi\n"
        text = run("metrics", "metrics-remote").stdout.splitlines()
        assert text[0].split()[0] == "METRIC" and len(text) == 1 + len(byname)
        bad = run("metrics", "metrics-remote", "--metric", "lag")
        assert bad.returncode == 1
        assert bad.stderr.startswith("hermes-cron: error: job 'metrics-remote' has no "
                                     "metric 'lag': its runs have duration, exit_code")
    finally:
        run("rm", "metrics-remote")


def test_cron_metrics_html_with_svg_and_text(cell, db, monkeypatch):  # noqa: F811
    ended_runs(db.path)
    out = cell.ok("%cron metrics etl")  # the shell prints the text form
    lines = out.splitlines()
    assert lines[0].split()[0] == "METRIC" and lines[-1].split()[0] == "rows"
    shown = []
    monkeypatch.setattr("hermes_cron_ext.frontends.magics.display", shown.append)
    cell.ok("%cron metrics etl --metric rows")
    html = shown[-1]._repr_html_()
    assert html.startswith('<table class="hc-metrics"') and html.count("<svg") == 1
    assert 'data-metric="rows"' in html and "<polyline" in html
    assert repr(shown[-1]).splitlines()[1].split()[0] == "rows"
    cell.ok("%cron metrics fresh")
    assert repr(shown[-1]) == "fresh has no metrics yet: none of its runs has ended"
    assert "<p>fresh has no metrics yet" in shown[-1]._repr_html_()
    cell.fails("%cron metrics etl --metric lag", "has no metric 'lag'", "duration")
    cell.fails("%cron metrics nope", "nope")
    cell.fails("%cron metrics etl --limit 0", "--limit must be between 1 and 1000")
    cell.fails("%cron metrics", "NAME")


@pytest.mark.parametrize("encoding,blocks", [("utf-8", True), ("ascii", False),
                                             ("latin-1", False), (None, False)])
def test_unicode_ok_by_encoding(encoding, blocks):
    from hermes_cron_ext.frontends.render import unicode_ok

    assert unicode_ok(encoding) is blocks
