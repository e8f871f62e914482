"""Pipelines from a notebook: ``%cron add NAME --after JOB`` needs no schedule, and the
cards, tables, status and graph show "after JOB" and say why upstream runs do not
trigger a job (IPython's own shell, a real store)."""

from __future__ import annotations

import pytest

from hermes_cron_ext.frontends.widgets import JobCard, _job_cells, pipeline_html
from hermes_cron_ext.ops import Operations
from tests.frontends.test_magics import Cell
from tests.frontends.test_magics import db as db  # noqa: F401 - fixtures
from tests.frontends.test_magics import ip as ip  # noqa: F401

pytest_plugins = ("tests.notebook_fixtures",)


@pytest.fixture
def cell(ip, capsys):  # noqa: F811
    return Cell(ip, capsys)


def test_a_job_after_others_needs_no_schedule_in_a_notebook(cell, db):  # noqa: F811
    cell.ok('%cron add extract "0 2 * * *" -- true')
    cell.ok('%cron add load "0 2 * * *" -- true')
    out = cell.ok("%cron add report --after extract --after load -- python3 report.py")
    assert out.startswith("report added: after extract, load; next run none (")
    assert db.get_job("report").schedule is None
    cell.fails("%cron add lonely -- true", "missing the schedule", "--after JOB")
    status = cell.ok("%cron status report")
    assert "  schedule   none of its own\n  runs       after extract, load\n" in status
    assert "             runs once extract and load have both succeeded for the same " \
           "slot\n" in status
    assert cell.ok('%cron edit report --schedule "@daily"').startswith(
        "report changed: @daily (")
    assert cell.ok("%cron edit report --no-schedule").startswith(
        "report changed: after extract, load; next run none (")
    held = cell.ok("%cron edit report --disable")  # said where it is saved, as the CLI does
    assert held.splitlines()[1] == ("note: report is disabled: runs of extract and load do "
                                    "not trigger it until it is enabled")
    assert "             disabled: upstream runs do not trigger it\n" in cell.ok(
        "%cron status report")


def test_cards_tables_and_graph_show_after(local_env):
    client = Operations(local_env)
    try:
        client.add({"name": "extract", "schedule": "@daily", "command": "true"})
        client.add({"name": "load", "schedule": "@daily", "command": "true"})
        report = client.add({"name": "report", "after": ["extract", "load"],
                             "command": "true"})
        alert = client.add({"name": "alert", "after": [{"job": "extract", "on": "failure"}],
                            "command": "true", "enabled": False})
        card = JobCard(report, client=client, live=False)
        assert card._info.value.startswith("after extract, load<br>")
        assert ('data-role="after-note">runs once extract and load have both succeeded '
                'for the same slot<') in card._info.value
        held = JobCard(alert, client=client, live=False)
        assert held._info.value.startswith("after extract:failure<br>")
        assert "disabled: upstream runs do not trigger it" in held._info.value
        assert _job_cells(report, "scheduled", 0)[3] == "after extract, load"
        graph = pipeline_html(client.pipeline("report"), None)
        assert ('<b>alert</b>: disabled: upstream runs do not trigger it</div>') in graph
        card.close()
        held.close()
    finally:
        client.close()
