"""The live output widget in a real JupyterLab, through Debian's Chromium and Playwright.

A notebook runs ``%load_ext hermes_cron_ext`` and ``%cron run NAME --watch`` in a
kernel started by ``jupyter lab``; the kernel finds that server by itself
(``JPY_PARENT_PID``). The widget must show lines while the run is going, stay
pinned to the bottom, stop following when the reader scrolls up, and end with a
badge. Screenshots go to ``tests/artifacts/live-output-*.png``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import nbformat
import pytest

from tests.conftest import _kill_supervisors, wait_for
from tests.notebook_support import _free_port

CHROMIUM = os.environ.get("HERMES_CRON_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TOKEN = "widget-test-token"

if not os.path.exists(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)",
                allow_module_level=True)
playwright_sync = pytest.importorskip("playwright.sync_api")
pytest.importorskip("jupyterlab")
# Chromium: `make browser` (and .ci/run), so the normal suite keeps under 10 minutes
pytestmark = pytest.mark.browser

SCRIPT = textwrap.dedent("""\
    import sys, time
    print("\\x1b[32mstarting\\x1b[0m", flush=True)
    for i in range(1, 6):
        sys.stdout.write(f"\\rdownload {i * 20}%")
        sys.stdout.flush()
        time.sleep(0.1)
    print(flush=True)
    for i in range(1, 61):
        if i % 20 == 1:
            print(f"::progress:: {i // 20}/3 part {i // 20 + 1}", flush=True)
        print(f"line {i}", flush=True)
        time.sleep(0.12)
    print("careful", file=sys.stderr, flush=True)
""")


@pytest.fixture
def jp_asyncio_loop():
    """pytest-jupyter's autouse loop fixture would close Playwright's running loop: not here."""
    yield None


@pytest.fixture
def jp_server_cleanup():
    """No in-process ServerApp in this module (jupyter lab runs as a subprocess)."""
    yield


@pytest.fixture
def lab(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    db = str(tmp_path / "store" / "cron.db")
    port = _free_port()
    env = {**os.environ, "HERMES_CRON_DB": db, "HERMES_CRON_HEARTBEAT": "0.5",
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    for name in ("HERMES_CRON_URL", "HERMES_CRON_TOKEN", "JPY_PARENT_PID"):
        env.pop(name, None)
    labconfig = tmp_path / "config" / "labconfig"
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    (root / "job.py").write_text(SCRIPT)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in (
        "%load_ext hermes_cron_ext",
        f'%cron add slow "@yearly" -- {sys.executable} -u job.py',
        "%cron run slow --watch",
        'print("the kernel is free")',
    )]
    nbformat.write(nb, str(root / "watch.ipynb"))
    log = open(tmp_path / "lab.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={TOKEN}", "--allow-root",
         f"--ServerApp.root_dir={root}",
         "--HermesCron.handoff=False"],  # no daemon left behind when it stops
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(root), start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def call(path: str):
        req = urllib.request.Request(f"{base}/api/cron/{path}",
                                     headers={"Authorization": f"token {TOKEN}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def ready():
        if proc.poll() is not None:
            raise AssertionError((tmp_path / "lab.log").read_text(errors="replace")[-3000:])
        try:
            return call("status")["ticking"]
        except (OSError, ValueError):
            return False
    try:
        wait_for(ready, 120, 0.25, "jupyter lab to answer")
        yield base, call, root
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        _kill_supervisors(db)


@pytest.fixture
def page():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_sync.sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-features=Translate,MediaRouter"])
        context = chromium.new_context(viewport={"width": 1300, "height": 1000})
        pg = context.new_page()
        pg.errors = []
        pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
        yield pg
        context.close()
        chromium.close()
    asyncio.set_event_loop(asyncio.new_event_loop())


def test_live_output_widget_streams_and_stays_pinned(lab, page):
    base, call, root = lab
    page.goto(f"{base}/lab/tree/watch.ipynb?token={TOKEN}", wait_until="domcontentloaded")
    page.locator(".jp-Notebook").wait_for(timeout=60_000)
    select = page.locator(".jp-Dialog button", has_text="Select")
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").or_(select).first \
        .wait_for(timeout=60_000)
    if select.is_visible():  # JupyterLab asks which kernel when none was started yet
        select.click()
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=60_000)
    first = page.locator(".jp-Cell .jp-InputPrompt").first
    for _ in range(5):  # a freshly opened notebook may ignore the first command
        page.locator(".jp-Cell").first.click()
        page.keyboard.press("Escape")
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        try:
            wait_for(lambda: "[" in first.inner_text() and first.inner_text() != "[ ]:", 5,
                     what="the cells to start")
            break
        except AssertionError:
            continue

    widget = page.locator(".hc-live")
    term = widget.locator(".hc-term")
    try:
        term.locator(".hc-line", has_text="line 3").wait_for(timeout=60_000)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "live-output-failed.png"))
        raise
    run_id = widget.locator(".hc-live-title").inner_text().split(" \u00b7 ")[1]
    assert call(f"runs/{run_id}")["status"] == "running"  # live, not a replay
    assert widget.locator(".hc-badge").inner_text() == "running"
    # the kernel ran the next cell while the run was going
    page.locator(".jp-OutputArea-output", has_text="the kernel is free").wait_for()
    assert call(f"runs/{run_id}")["status"] == "running"
    # ::progress:: lines are the header's phase and bar, not lines of the output
    widget.locator(".hc-live-phase", has_text="part 2").wait_for(timeout=30_000)
    bar = widget.locator(".hc-live-progress")
    assert bar.is_visible() and 0.3 <= float(bar.evaluate("el => el.value")) <= 0.7
    assert widget.locator(".hc-live-percent").inner_text() == "33%"
    assert "::progress::" not in term.inner_text()

    def geometry():
        return term.evaluate("el => [el.scrollTop, el.clientHeight, el.scrollHeight]")

    # once the output overflows, the view stays at the bottom as lines arrive
    wait_for(lambda: geometry()[2] > geometry()[1] + 100, 30, what="the output to overflow")
    for _ in range(3):
        before = term.locator(".hc-line").count()
        wait_for(lambda n=before: term.locator(".hc-line").count() > n, 10,
                 what="more lines")
        top, height, full = geometry()
        assert top + height >= full - 4, (top, height, full)
    page.screenshot(path=str(ARTIFACTS / "live-output-running.png"))

    # the reader scrolls up: following stops, and new lines do not pull the view down
    term.hover()
    page.mouse.wheel(0, -300)
    widget.locator(".hc-follow").wait_for()
    held = geometry()[0]
    before = term.locator(".hc-line").count()
    wait_for(lambda: term.locator(".hc-line").count() > before + 2, 10, what="more lines")
    assert abs(geometry()[0] - held) < 2
    page.screenshot(path=str(ARTIFACTS / "live-output-scrolled-up.png"))
    widget.locator(".hc-follow").click()
    top, height, full = geometry()
    assert top + height >= full - 4 and widget.locator(".hc-follow").is_hidden()

    badge = widget.locator(".hc-badge-ok")
    badge.wait_for(timeout=60_000)
    assert badge.inner_text().startswith("succeeded \u00b7 exit 0 \u00b7 ")
    text = term.inner_text()
    assert "::progress::" not in text
    assert widget.locator(".hc-live-phase").inner_text() == "part 3"
    assert widget.locator(".hc-live-percent").inner_text() == "100%"  # kept full, as the panel
    assert "download 100%" in text and "download 20%" not in text
    assert text.rstrip().endswith("line 60\ncareful")
    assert term.locator(".ansi-green-fg", has_text="starting").count() == 1
    assert term.locator(".hc-stderr", has_text="careful").count() == 1
    top, height, full = geometry()
    assert top + height >= full - 4  # ended pinned to the bottom
    page.screenshot(path=str(ARTIFACTS / "live-output-done.png"))

    # the display was replaced when the run ended: the saved notebook keeps the outcome
    # and the output as text and HTML (nbconvert, GitHub), not the state at the start
    page.locator(".jp-Notebook").click()
    page.keyboard.press("Control+s")

    def saved():
        nb = nbformat.read(str(root / "watch.ipynb"), as_version=4)
        cell = next(c for c in nb.cells if c.source == "%cron run slow --watch")
        return next((o.data for o in cell.outputs if "text/plain" in o.get("data", {})
                     and "line 60" in o.data["text/plain"]), None)
    data = wait_for(saved, 20, what="the saved notebook")
    plain = data["text/plain"].splitlines()
    assert plain[0].startswith(f"run {run_id} of slow: succeeded \u00b7 exit 0")
    assert plain[1].startswith("[##############################] 100% part 3")
    assert plain[-2:] == ["line 60", "careful"] and "::progress::" not in data["text/plain"]
    assert "line 60" in data["text/html"] and "application/vnd.jupyter.widget-view+json" in data
    assert not [e for e in page.errors if "hc-" in e or "hermes" in e.lower()], page.errors


TIMELINE_CELLS = (
    "%load_ext hermes_cron_ext",
    '%cron add quick "@yearly" -- echo "quick output"',
    textwrap.dedent("""\
        import time
        from hermes_cron_ext import ops
        c = ops.get_client()
        rid = c.run_now("quick")["id"]
        while c.run(rid)["status"] not in ("succeeded", "failed"):
            time.sleep(0.2)
        print("ran", rid)"""),
    "%cron timeline --since 1h --until 1h",
)


def test_timeline_widget_zooms_pans_and_opens_a_run(lab, page):
    """``%cron timeline``: the run is a bar in its job's row; +, - and the arrows change
    the window shown; a click on the bar opens the run's output under the chart."""
    base, call, root = lab
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in TIMELINE_CELLS]
    nbformat.write(nb, str(root / "timeline.ipynb"))
    page.goto(f"{base}/lab/tree/timeline.ipynb?token={TOKEN}", wait_until="domcontentloaded")
    page.locator(".jp-Notebook").wait_for(timeout=60_000)
    select = page.locator(".jp-Dialog button", has_text="Select")
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").or_(select).first \
        .wait_for(timeout=60_000)
    if select.is_visible():
        select.click()
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=60_000)
    chart = page.locator(".hc-timeline-widget")
    for _ in range(5):  # a freshly opened notebook may ignore the first command
        page.locator(".jp-Cell").first.click()
        page.keyboard.press("Escape")
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        try:
            chart.wait_for(timeout=30_000)
            break
        except Exception:
            continue
    try:
        bar = chart.locator("rect.hc-tl-run[data-status='succeeded']")
        bar.wait_for(timeout=30_000)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "timeline-failed.png"))
        raise
    run_id = bar.get_attribute("data-run")
    assert call(f"runs/{run_id}")["job_name"] == "quick"
    assert chart.locator("text", has_text="quick").count() == 1  # its row
    page.screenshot(path=str(ARTIFACTS / "timeline.png"))

    span = chart.locator(".hc-tl-range")
    whole = span.inner_text()
    chart.locator("button", has_text="+").click()  # zoom in: the range narrows
    wait_for(lambda: span.inner_text() != whole, 10, what="the zoom")
    zoomed = span.inner_text()
    x = float(bar.get_attribute("x"))
    chart.locator("button", has_text="\u2190").click()  # earlier: the run moves right
    wait_for(lambda: span.inner_text() != zoomed, 10, what="the pan")
    wait_for(lambda: float(bar.get_attribute("x")) > x + 50, 10, what="the bar to move")
    chart.locator("button", has_text="reset").click()
    wait_for(lambda: span.inner_text() == whole, 10, what="the reset")

    bar.click()  # the run opens under the chart
    live = page.locator(".hc-live")
    live.wait_for(timeout=30_000)
    wait_for(lambda: run_id in live.locator(".hc-live-title").inner_text(), 20,
             what="the run's output")
    live.locator(".hc-line", has_text="quick output").wait_for(timeout=30_000)
    assert live.locator(".hc-live-rev").inner_text().startswith("rev ")
    page.screenshot(path=str(ARTIFACTS / "timeline-opened.png"))
    assert not [e for e in page.errors if "hc-" in e or "hermes" in e.lower()], page.errors
