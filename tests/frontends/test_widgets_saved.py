"""What a saved notebook shows of the widgets: a notebook executed headless (nbclient, a
real kernel, the local store), then its saved outputs and its nbconvert exports.

A front-end with the widget manager shows the widget view; everything else (nbconvert,
GitHub, a mailed report, JupyterLab without the kernel) shows the ``text/plain`` or
``text/html`` beside it. Those must be readable tables of jobs, runs and output, not a
widget's Python repr (``VBox(children=(HTML(value=...``).
"""

from __future__ import annotations

import os
import re

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import _kill_supervisors
from tests.notebook_support import HEARTBEAT

WIDGET = "application/vnd.jupyter.widget-view+json"
REPRS = ("VBox(", "HBox(", "HTML(value", "JobCard(", "RunHistory(", "Dashboard(",
         "LiveOutput(", "children=")

CELLS = [
    "%load_ext hermes_cron_ext",
    '%cron add saved-ok "@yearly" -- echo first line; echo "::progress:: 1/2 halfway"; '
    "sleep 0.6; printf '\\033[32mgreen end\\033[0m\\n'",
    '%cron add saved-paused "@daily" -- true',
    "%cron pause saved-paused",
    "%cron run saved-ok --watch",
    "from hermes_cron_ext.frontends.widgets import Dashboard, LiveOutput\n"
    "assert LiveOutput.wait_all(60)",
    "%cron",
    "%cron runs saved-ok",
    "Dashboard()",
    "%cron watch saved-ok",
    "assert LiveOutput.wait_all(60)",
]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("saved")
    db = str(tmp / "store" / "cron.db")
    env = {**os.environ, "HERMES_CRON_URL": "local", "HERMES_CRON_DB": db,
           "HERMES_CRON_HEARTBEAT": HEARTBEAT}
    env.pop("JPY_PARENT_PID", None)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    try:
        NotebookClient(nb, kernel_name="python3", timeout=120, startup_timeout=120,
                       resources={"metadata": {"path": str(tmp)}}).execute(env=env)
    finally:
        _kill_supervisors(db)
    errors = [o for c in nb.cells for o in c.outputs if o.output_type == "error"]
    assert errors == [], errors
    return nb


def shown(nb, source: str) -> dict:
    """The widget output of the cell *source*, checked for reprs."""
    cell = next(c for c in nb.cells if c.source == source)
    found = [o.data for o in cell.outputs if o.output_type in ("display_data", "execute_result")
             and WIDGET in o.data]
    assert len(found) == 1, cell.outputs
    data = found[0]
    for mime in ("text/plain", "text/html"):
        assert not [r for r in REPRS if r in data[mime]], (mime, data[mime])
    return data


def rows(text: str) -> list[list[str]]:
    """A text table's rows, split on runs of two or more spaces."""
    return [re.split(r"\s{2,}", ln.strip()) for ln in text.splitlines()]


def test_cards_are_a_table_with_paused_jobs_not_counting_down(executed):
    data = shown(executed, "%cron")
    plain = data["text/plain"]
    lines = plain.splitlines()
    assert lines[0].startswith("2 jobs \u00b7 store ")
    assert lines[1].startswith("warning: no ticker is alive")  # no server, no daemon here
    table = rows("\n".join(lines[2:]))
    assert table[0] == ["JOB", "KIND", "STATE", "SCHEDULE", "NEXT RUN", "LAST RUN"]
    by_name = {r[0]: r for r in table[1:]}
    ok, paused = by_name["saved-ok"], by_name["saved-paused"]
    assert ok[1:3] == ["command", "scheduled"] and ok[3].startswith("@yearly (")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ \(in \d+d \d\dh \d\dm\)", ok[4]), ok
    assert re.fullmatch(r"succeeded \u00b7 exit 0 \u00b7 \d+\.\d\d s \u00b7 \d+ s ago", ok[5]), ok
    assert paused[2] == "paused" and paused[4] == "none (paused)"  # no countdown to a run
    assert paused[5] == "none yet"
    page = data["text/html"]
    assert "<table" in page and "<th" in page
    paused_row = next(r for r in page.split("<tr>") if "saved-paused" in r)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", paused_row)
    assert cells[2].endswith("</span>paused") and cells[4] == "none (paused)"


def test_run_watch_follows_the_run_it_started_to_its_end(executed):
    cell = next(c for c in executed.cells if c.source == "%cron run saved-ok --watch")
    run_id = re.match(r"run (r_\w+) of saved-ok started", cell.outputs[0].text).group(1)
    data = shown(executed, "%cron run saved-ok --watch")
    plain = data["text/plain"].splitlines()
    # the display was replaced when the run ended: the outcome and the whole output
    # ... and the job's revision it ran (issue 33)
    assert re.fullmatch(rf"run {run_id} of saved-ok: succeeded \u00b7 exit 0 \u00b7 .+ s"
                        r" \u00b7 rev \d+", plain[0]), plain
    assert plain[1].startswith("[##############################] 100% halfway")
    assert plain[2:] == ["first line", "green end"]  # the ::progress:: line is the bar
    page = data["text/html"]
    assert f"run {run_id} of saved-ok: succeeded" in page
    assert '<progress max="1" value="1.000">' in page
    assert '<span class="ansi-green-fg">green end</span>' in page
    assert "::progress::" not in page
    assert "no run yet" not in data["text/plain"] + page


def test_watch_of_a_finished_run_and_history(executed):
    watched = shown(executed, "%cron watch saved-ok")["text/plain"].splitlines()
    assert re.match(r"run r_\w+ of saved-ok: succeeded \u00b7 exit 0", watched[0])
    assert watched[-2:] == ["first line", "green end"]

    data = shown(executed, "%cron runs saved-ok")
    plain = data["text/plain"].splitlines()
    assert plain[0] == "Runs of saved-ok \u00b7 1/1 succeeded"
    table = rows("\n".join(plain[1:]))
    assert table[0] == ["RUN", "STATUS", "TRIGGER", "TRY", "SCHEDULED", "STARTED", "TOOK",
                        "EXIT", "REASON"]
    assert table[1][0].startswith("r_") and table[1][1:4] == ["succeeded", "manual", "1"]
    assert re.fullmatch(r"\d+\.\d\d s", table[1][6]) and table[1][7] == "0"
    assert "<svg" in data["text/html"] and 'class="hc-runs"' in data["text/html"]


def test_dashboard_is_a_table(executed):
    data = shown(executed, "Dashboard()")
    plain = data["text/plain"].splitlines()
    assert plain[0] == "2 jobs"
    table = rows("\n".join(plain[1:]))
    assert table[0] == ["JOB", "STATE", "SUCCESS", "RUNS OK/FAILED", "MEAN", "MAX",
                        "LAST RUN"]
    by_name = {r[0]: r for r in table[1:]}
    assert by_name["saved-ok"][1:4] == ["scheduled", "100%", "1 / 0"]
    assert by_name["saved-paused"][1] == "paused"
    assert 'data-job="saved-paused"' in data["text/html"]


def test_nbconvert_exports_show_the_tables(executed):
    from nbconvert import HTMLExporter, MarkdownExporter

    markdown, _ = MarkdownExporter(exclude_input=True).from_notebook_node(executed)
    assert "saved-paused" in markdown and "<table" in markdown
    assert not [r for r in REPRS if r in markdown]
    # JupyterLab saves no widget state unless asked: the HTML export shows the fallbacks
    nb = nbformat.from_dict(executed)
    nb.metadata.pop("widgets", None)
    page, _ = HTMLExporter(exclude_input=True).from_notebook_node(nb)
    assert "Runs of saved-ok" in page and "first line" in page
    assert not [r for r in REPRS if r in page]


def _sparks(page: str) -> dict[str, int]:
    """Each table row's duration sparkline: the row's job and its number of points."""
    found = {}
    for row in re.split(r"<tr[ >]", page)[1:]:
        spark = re.search(r'class="hc-spark" data-points="(\d+)"', row)
        name = re.search(r"saved-\w+", row)
        if spark and name:
            found[name.group(0)] = int(spark.group(1))
            line = re.search(r'<polyline [^>]*points="([^"]*)"', row)
            assert (len(line.group(1).split()) if line else 0) == found[name.group(0)], row
    return found


def test_saved_cards_and_dashboard_keep_their_duration_sparklines(executed):
    # the run that ended: one point (its duration); the paused job never ran: none
    assert _sparks(shown(executed, "%cron")["text/html"]) == {"saved-ok": 1, "saved-paused": 0}
    assert _sparks(shown(executed, "Dashboard()")["text/html"]) == {
        "saved-ok": 1, "saved-paused": 0}
    nb = nbformat.from_dict(executed)
    nb.metadata.pop("widgets", None)
    from nbconvert import HTMLExporter

    page, _ = HTMLExporter(exclude_input=True).from_notebook_node(nb)
    assert page.count('class="hc-spark" data-points="1"') == 2  # the cards and the board
    assert '<svg class="hc-sparkline"' in page
