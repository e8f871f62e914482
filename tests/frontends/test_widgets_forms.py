"""The widgets that ask for something: a run with parameters from a typed form, a
backfill's progress with Cancel; on a real store with real runs (and a real daemon)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import ipywidgets
import nbformat
import pytest

from hermes_cron_ext.frontends.widgets import BackfillProgress, JobCard, ParametersForm
from hermes_cron_ext.ops import Operations
from tests.conftest import wait_for

pytest_plugins = ("tests.notebook_fixtures",)


@pytest.fixture
def cron(local_env):
    c = Operations(local_env)
    yield c
    c.close()


def parameters_notebook(path) -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    params = nbformat.v4.new_code_cell(
        'n = 3\nrate = 0.5\nloud = False\nday = "2026-11-01"\nregions = ["EU"]\nlabel = "x"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("print(n * 2, rate, loud, day, regions, label)")]
    nbformat.write(nb, str(path))
    return str(path)


def test_the_form_has_a_typed_field_per_declared_parameter_and_runs_with_them(
        cron, tmp_path):
    cron.create({"name": "report", "schedule": "@yearly", "kind": "notebook",
                 "command": parameters_notebook(tmp_path / "report.ipynb")})
    form = ParametersForm("report", client=cron, watch=False)
    f = form.fields
    assert isinstance(f["n"], ipywidgets.IntText) and f["n"].value == 3
    assert isinstance(f["rate"], ipywidgets.FloatText) and f["rate"].value == 0.5
    assert isinstance(f["loud"], ipywidgets.Checkbox) and f["loud"].value is False
    assert isinstance(f["day"], ipywidgets.DatePicker)
    assert f["day"].value == dt.date(2026, 11, 1)
    assert isinstance(f["regions"], ipywidgets.Text) and f["regions"].value == '["EU"]'
    assert isinstance(f["label"], ipywidgets.Text) and f["label"].value == "x"

    f["n"].value, f["loud"].value, f["day"].value = 7, True, dt.date(2026, 12, 1)
    f["regions"].value = '["EU", "US"]'
    run = form.submit()
    assert run is not None and form.error == ""
    assert form.message.startswith(f"run {run['id']} started with n=7, rate=0.5, loud=true")
    done = wait_for(lambda: (r := cron.run(run["id"]))["status"] == "succeeded" and r, 90,
                    0.2, "the notebook run")
    assert done["parameters"] == {"n": 7, "rate": 0.5, "loud": True, "day": "2026-12-01",
                                  "regions": ["EU", "US"], "label": "x"}
    assert "14 0.5 True 2026-12-01 ['EU', 'US'] x\n" in cron.text(run["id"])
    # the history shows them
    assert cron.runs("report")["runs"][0]["parameters"]["n"] == 7


def test_a_wrong_value_is_named_under_the_form_and_nothing_runs(cron, tmp_path):
    cron.create({"name": "report", "schedule": "@yearly", "kind": "notebook",
                 "command": parameters_notebook(tmp_path / "report.ipynb")})
    form = ParametersForm("report", client=cron, watch=False)
    form.fields["regions"].value = "EU, US"  # not JSON: goes as a string, refused there
    assert form.submit() is None
    assert form.error == 'parameter regions must be a list, not "EU, US"'
    assert "must be a list" in form._note.value and "#c62828" in form._note.value
    assert cron.runs("report")["runs"] == []
    form.fields["regions"].value = '["EU"]'  # corrected: it runs, the error is gone
    assert form.submit() is not None and form.error == ""


def test_a_script_job_gets_a_form_of_its_own_parameters(cron):
    cron.create({"name": "pm", "schedule": "@yearly", "kind": "command",
                 "command": "echo n=$HERMES_CRON_PARAM_n", "parameters": {"n": 1}})
    form = ParametersForm("pm", client=cron)
    assert list(form.fields) == ["n"] and isinstance(form.fields["n"], ipywidgets.IntText)
    form.fields["n"].value = 4
    run = form.submit()
    live = form.output.children[0]  # the run's live output, under the form
    assert live.run_id == run["id"]
    assert live.wait(60) and live.text.strip() == "n=4"
    assert "n (int) = 4" in form.plain_text() and "started with n=4" in form.plain_text()


def test_a_job_card_offers_the_form_only_where_there_is_something_to_fill_in(cron, tmp_path):
    cron.create({"name": "report", "schedule": "@yearly", "kind": "notebook",
                 "command": parameters_notebook(tmp_path / "report.ipynb")})
    cron.create({"name": "plain", "schedule": "@yearly", "command": "true"})
    card = JobCard("report", client=cron, live=False)
    assert card.params_button.layout.display is None
    form = card.toggle_parameters()
    assert isinstance(form, ParametersForm) and card.detail.children == (form,)
    assert card.toggle_parameters() is None and card.detail.children == ()
    assert JobCard("plain", client=cron, live=False).params_button.layout.display == "none"


def daemon(db: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "hermes_cron_ext", "--db", db, "daemon"],
                            env={**os.environ, "HERMES_CRON_HEARTBEAT": "0.3"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc


def test_backfill_progress_follows_a_backfill_to_its_end(cron, local_env):
    cron.create({"name": "nightly", "schedule": "0 6 * * *", "timezone": "UTC",
                 "command": "sleep 0.2"})
    b = cron.backfill("nightly", "2026-11-01", "2026-11-06", max_parallel=2)
    bar = BackfillProgress(b, client=cron, interval=0.1)
    assert bar.bar.max == 6 and bar.bar.value == 0 and not bar.cancel_button.disabled
    assert bar.plain_text().startswith("[" + "." * 30 + f"] backfill {b['id']} (running), "
                                       "2026-11-01T06:00:00.000Z .. 2026-11-06T06:00:00.000Z, "
                                       "2 at a time: 0/6 slots done")
    proc = daemon(local_env)
    try:
        wait_for(lambda: bar.backfill["state"] == "done", 90, 0.2, "the backfill to end")
    finally:
        proc.terminate()
        proc.wait(20)
    assert bar.bar.value == 6 and bar.bar.bar_style == "success"
    assert bar.cancel_button.disabled
    assert "6/6 slots done (6 succeeded)" in bar.label.value
    assert bar.plain_text().startswith("[" + "#" * 30 + "]")


def test_backfill_progress_cancel_stops_the_rest(cron):
    cron.create({"name": "slow", "schedule": "0 6 * * *", "timezone": "UTC",
                 "command": "sleep 30"})
    b = cron.backfill("slow", "2026-11-01", "2026-11-05", max_parallel=1)
    bar = BackfillProgress(b["id"], client=cron, interval=0)
    bar.cancel_button.click()
    assert bar.backfill["state"] == "cancelled" and bar.cancel_button.disabled
    assert bar.bar.bar_style == "warning"
    assert "(cancelled)" in bar.label.value and (
        "1/5 slots done (1 cancelled); 4 not run") in bar.label.value
    assert {r["status"] for r in cron.runs("slow")["runs"]} == {"cancelled"}
