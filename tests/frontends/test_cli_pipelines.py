"""``hermes-cron`` with pipelines: a job that runs only after others needs no schedule,
and graph and show say why upstream runs do not trigger a job (real processes, a real
store file)."""

from __future__ import annotations

import pytest

from hermes_cron_ext.errors import InvalidInput
from hermes_cron_ext.ops import Operations
from tests.conftest import docs_cli_lines, paste_docs_line, wait_for


def test_a_job_after_others_needs_no_schedule(cli):
    cli("add", "extract", "0 2 * * *", "--", "true")
    cli("add", "load", "0 2 * * *", "--", "true")
    out = cli("add", "report", "--after", "extract", "--after", "load", "--", "python3",
              "report.py")
    assert out.stdout.startswith("report added: after extract, load; next run none (")
    job = cli.json("show", "report")
    assert (job["schedule"], job["next_run_at"], job["state"]) == (None, None, "scheduled")
    assert [(a["name"], a["on"]) for a in job["after"]] == [("extract", "success"),
                                                            ("load", "success")]
    [row] = [r for r in cli("list").stdout.splitlines() if r.startswith("report ")]
    assert row.split()[:5] == ["report", "scheduled", "after", "extract,", "load"]
    assert "  schedule   none of its own\n  runs       after extract, load\n" in cli(
        "show", "report").stdout

    # neither a schedule nor after: it would never run
    lonely = cli("add", "lonely", "--", "true", check=False)
    assert lonely.returncode == 2 and "it has neither, so it would never run" in lonely.stderr
    unknown = cli("add", "orphan", "--after", "nope", "--", "true", check=False)
    assert unknown.returncode == 2 and "after: no job 'nope'" in unknown.stderr
    cycle = cli("edit", "extract", "--after", "report", check=False)
    assert cycle.returncode == 2 and "extract -> report -> extract is a cycle" in cycle.stderr

    # a schedule of its own, then none again
    assert cli("edit", "report", "@daily").stdout.startswith(
        "report changed: @daily (")
    assert cli("edit", "report", "--no-schedule").stdout.startswith(
        "report changed: after extract, load; next run none (")
    assert cli.json("show", "report")["schedule"] is None
    ops = Operations(cli.db)
    try:  # without after (REST and %cron can say so) it would never run: refused
        with pytest.raises(InvalidInput, match="report has no schedule of its own, so "
                                               "without after it would never run"):
            ops.edit("report", {"after": []})
        assert ops.edit("report", {"after": [], "schedule": "@hourly"})["schedule"] == (
            "@hourly")
        assert ops.edit("report", {"after": ["extract"], "schedule": None})["schedule"] is None
    finally:
        ops.close()

    # no slots of its own to backfill: its upstreams' are
    fill = cli("backfill", "report", "--from", "2026-11-01", "--to", "2026-11-03",
               check=False)
    assert fill.returncode == 2 and fill.stderr.strip().endswith(
        "report has no schedule of its own, so it has no slots to backfill: it runs after "
        "extract; backfill extract instead, and their backfilled runs trigger report slot "
        "by slot")


def test_graph_and_show_say_why_upstream_runs_do_not_trigger_a_job(cli):
    cli("add", "extract", "@yearly", "--", "true")
    cli("add", "load", "@yearly", "--", "true")
    cli("add", "report", "--after", "extract", "--after", "load", "--", "true")
    held = cli("add", "alert", "--after", "extract", "--disabled", "--", "true")
    assert "note: alert is disabled: runs of extract do not trigger it until it is " \
           "enabled" in held.stdout
    for name in ("extract", "load"):  # by hand: no ticker, each starts its own run
        cli("run", name, check=False)
    wait_for(lambda: "0: extract [succeeded]   load [succeeded]" in cli(
        "graph", "report").stdout, 30, 0.2, "both upstreams to succeed")
    lines = cli("graph", "report").stdout.splitlines()
    assert lines[1] == "1: alert [no run]   report [no run]"
    assert "alert: disabled: upstream runs do not trigger it" in lines
    assert ("report: runs once extract and load have both succeeded for the same slot; the "
            "last runs of extract and load were manual, and a manual run's slot is the "
            "instant it was asked for, so manual runs never trigger it (their scheduled or "
            "backfilled runs do)") in lines
    show = cli("show", "alert").stdout
    assert ("  runs       after extract\n"
            "             disabled: upstream runs do not trigger it\n") in show
    nodes = {n["name"]: n for n in cli.json("graph", "report")["nodes"]}
    assert nodes["alert"]["note"] == "disabled: upstream runs do not trigger it"
    assert nodes["extract"]["note"] is None
    assert cli("edit", "alert", "--enable").stdout.startswith("alert changed: after extract;")
    assert cli.json("graph", "alert")["nodes"][1]["note"] is None


def test_the_pipelines_page_runs_after_the_cli_page(cli, tmp_path):
    """Pasted top to bottom: the CLI page's block (docs/cli.md), then the Pipelines
    block (docs/pipelines.md), on one store: no name is taken twice, and the fan-in runs
    once per backfilled day."""
    for script in ("etl", "extract", "load", "summary", "report"):
        (tmp_path / f"{script}.py").write_text("print('ran')\n")
    (tmp_path / "page-me.sh").write_text("#!/bin/sh\n")
    (tmp_path / "page-me.sh").chmod(0o755)
    for setup in ("a", "b", "c"):  # the CLI block's placeholders
        cli("add", setup, "@daily", "--", "true")
    cli_lines = docs_cli_lines("cli.md", "# CLI")
    pipelines = docs_cli_lines("pipelines.md", "## Pipelines", "## Parameters")
    assert any(" --after " in line for line in pipelines), pipelines
    for line in cli_lines + pipelines:
        if line == pipelines[0]:
            # the CLI block's `tick` counts as a systemd timer's ticker for a while, so a
            # backfill would wait for its next tick: a daemon ticks, as a service would
            cli.daemon()
        paste_docs_line(cli, line, tmp_path)
    assert cli.json("show", "summary")["schedule"] is None
    wait_for(lambda: len([r for r in cli.json("runs", "summary", "--limit", "100")["runs"]
                          if r["status"] == "succeeded"]) == 30, 120, 0.5,
             "a summary run for each backfilled day")
