"""``notebooks/``: the quickstart and the monitoring notebook, run headless with nbclient.

Each runs in a real kernel, once on the local store (``HERMES_CRON_URL=local``, a
temporary ``HERMES_CRON_DB``) and once against a real Jupyter server with the
extension (``HERMES_CRON_URL`` and ``HERMES_CRON_TOKEN``), with no cell error.
"""

from __future__ import annotations

import os
import re
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from hermes_cron_ext.ops import CronClient, Operations, RestClient
from tests.notebook_support import HEARTBEAT

pytest_plugins = ("tests.notebook_fixtures",)

NOTEBOOKS = os.path.join(os.path.dirname(__file__), "..", "..", "notebooks")


@pytest.fixture(params=["local", "server"])
def target(request, tmp_path, monkeypatch):
    """``(kernel env, client)`` for one backend."""
    env = {**os.environ, "HERMES_CRON_HEARTBEAT": HEARTBEAT}
    env.pop("JPY_PARENT_PID", None)
    if request.param == "local":
        db = str(tmp_path / "store" / "cron.db")
        monkeypatch.setenv("HERMES_CRON_HEARTBEAT", HEARTBEAT)
        env.update({"HERMES_CRON_URL": "local", "HERMES_CRON_DB": db})
        client: CronClient = Operations(db)
    else:
        server = request.getfixturevalue("cron_server")
        env.update({"HERMES_CRON_URL": server.url, "HERMES_CRON_TOKEN": server.token})
        client = RestClient(server.url, server.token)
    yield env, client
    client.close()


def execute(name: str, tmp_path, env: dict) -> nbformat.NotebookNode:
    path = tmp_path / name
    shutil.copy(os.path.join(NOTEBOOKS, name), path)
    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=120, startup_timeout=120,
                   resources={"metadata": {"path": str(tmp_path)}}).execute(env=env)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert errors == [], errors
    return nb


def outputs(nb, startswith: str) -> list:
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(startswith))
    return cell.outputs


def stdout(nb, startswith: str) -> str:
    return "".join(o.text for o in outputs(nb, startswith)
                   if o.output_type == "stream" and o.name == "stdout")


def test_quickstart(target, tmp_path):
    env, client = target
    nb = execute("quickstart.ipynb", tmp_path, env)
    assert stdout(nb, "%cron add quickstart-hello").startswith("quickstart-hello added: ")
    assert stdout(nb, "%%cron quickstart-cell").startswith("quickstart-cell added: @hourly")
    run_out = outputs(nb, "%cron run quickstart-hello")
    assert run_out[0].text.startswith("run r_")
    assert "application/vnd.jupyter.widget-view+json" in run_out[1].data  # the live output
    # replaced when the run ended: a saved or converted notebook shows how it went
    watched = run_out[1].data["text/plain"].splitlines()
    assert watched[0].startswith(f"{run_out[0].text.split(' started')[0]}: succeeded")
    assert "working 5/5" in watched and "all done" in watched
    result = outputs(nb, "from hermes_cron_ext import LiveOutput, get_client")
    where = result[0].text.strip()
    assert where == client.where
    assert result[-1].data["text/plain"] == "('succeeded', 0)"
    text = stdout(nb, 'print(cron.text(finished["id"]))')
    assert "hello from " in text and "working 5/5\n" in text and "all done" in text
    assert "working 1/5" not in text  # the carriage-return bar shows as a terminal shows it
    history = outputs(nb, "%cron runs quickstart-hello")[0].data
    assert "application/vnd.jupyter.widget-view+json" in history
    assert re.match(r"Runs of quickstart-hello \u00b7 (\d+)/\1 succeeded\n", history["text/plain"])
    cards = next(c.outputs for c in nb.cells if c.cell_type == "code" and c.source == "%cron")
    assert "quickstart-cell" in cards[0].data["text/plain"] and "<table" in cards[0].data[
        "text/html"]
    assert stdout(nb, "%cron rm").splitlines() == ["quickstart-hello removed",
                                                   "quickstart-cell removed"]
    assert not {"quickstart-hello", "quickstart-cell"} & {j["name"] for j in client.jobs()}


def test_monitoring(target, tmp_path):
    env, client = target
    good = client.add({"name": "mon-good", "schedule": "@yearly", "command": "echo fine"})
    bad = client.add({"name": "mon-bad", "schedule": "@yearly",
                      "command": "echo about to fail; echo 'KeyError: region' >&2; exit 2"})
    for job in (good, bad, good):
        client.wait(client.run_now(job["id"])["id"], 60)
    try:
        nb = execute("monitoring.ipynb", tmp_path, env)
    finally:
        client.remove("mon-good")
        client.remove("mon-bad")
    assert stdout(nb, "from IPython.display import").strip() == f"connected to {client.where}"
    health = stdout(nb, "rows = cw.job_health(cron)").splitlines()
    ours = [ln for ln in health if " mon-" in ln]
    assert ours[0].startswith("FAILING  mon-bad") and "success    0%" in ours[0]
    assert ours[1].startswith("ok       mon-good") and "success  100%" in ours[1]
    assert "runs 2/0" in ours[1]
    board = outputs(nb, "cw.Dashboard(cron)")[0].data
    assert "application/vnd.jupyter.widget-view+json" in board
    charts = [o.data["text/html"] for o in outputs(nb, "for r in rows[:12]")]
    assert any("<h4>mon-bad</h4><svg" in c for c in charts)
    why = stdout(nb, "for r in rows:\n    if not r")
    assert "== mon-bad: failed (exit 2)" in why and "KeyError: region" in why
