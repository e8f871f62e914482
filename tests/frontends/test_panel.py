"""The JupyterLab side panel in a real browser.

A real ``jupyter lab`` (the extension installed as ``pip install`` installs it)
with its own store, driven through Debian's Chromium by Playwright. Screenshots
go to ``tests/artifacts/``; ``docs/panel.png`` (the README picture) is refreshed
when ``HERMES_CRON_DOCS_SHOT=1``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import _kill_supervisors, wait_for

CHROMIUM = os.environ.get("HERMES_CRON_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
TOKEN = "panel-test-token"

if not os.path.exists(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium; .ci/run does)",
                allow_module_level=True)
playwright_sync = pytest.importorskip("playwright.sync_api")
pytest.importorskip("jupyterlab")
# Chromium: `make browser` (and .ci/run), so the normal suite keeps under 10 minutes
pytestmark = pytest.mark.browser


def _labextension_installed() -> bool:
    from jupyter_core.paths import jupyter_path

    return any(os.path.exists(os.path.join(p, "hermes-cron-ext", "package.json"))
               for p in jupyter_path("labextensions"))


if not _labextension_installed():
    pytest.fail("the hermes-cron-ext labextension is not installed: run `pip install -e .` "
                "(it builds labextension/; why a build failed: build/panel-build.outcome) "
                "before these tests", pytrace=False)


@pytest.fixture
def jp_asyncio_loop():
    """pytest-jupyter's autouse loop fixture would close Playwright's running loop: not here."""
    yield None


@pytest.fixture
def jp_server_cleanup():
    """No in-process ServerApp in this module (jupyter lab runs as a subprocess)."""
    yield


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """``jupyter lab`` on 127.0.0.1 with a temp store, root dir and settings."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.root = tmp / "root"
        self.root.mkdir()
        self.db = str(tmp / "store" / "hermes-cron.db")
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "HERMES_CRON_DB": self.db,
            "HERMES_CRON_HEARTBEAT": "0.5",
            "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
            "JUPYTER_CONFIG_DIR": str(tmp / "config"),
            "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
        }
        # no "get notified about Jupyter news?" toast over the screenshots
        labconfig = tmp / "config" / "labconfig"
        labconfig.mkdir(parents=True)
        (labconfig / "page_config.json").write_text(json.dumps(
            {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
        self.env = env
        #: more options for jupyter lab, from the next (re)start
        self.args: list[str] = []
        self.log = open(tmp / "lab.log", "ab")
        self.start()

    def start(self) -> None:
        # the server extension is enabled by etc/jupyter in sys.prefix, as installed
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
             f"--port={self.port}", f"--IdentityProvider.token={TOKEN}", "--allow-root",
             f"--ServerApp.root_dir={self.root}",
             "--HermesCron.handoff=False",  # no daemon left behind when it stops
             *self.args],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=str(self.root),
            start_new_session=True)
        try:
            wait_for(self._ready, 90, 0.25, "jupyter lab to answer")
        except BaseException:
            self._kill()
            raise AssertionError(f"jupyter lab did not start:\n{self.log_text()[-3000:]}")

    def restart(self) -> None:
        """Stop the server (runs go on: their supervisors are detached) and start it again."""
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)
        self.start()

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"jupyter lab exited:\n{self.log_text()[-3000:]}")
        try:
            return self.call("status")["ticking"]
        except (OSError, ValueError):
            return False

    def log_text(self) -> str:
        self.log.flush()
        return (self.tmp / "lab.log").read_text(errors="replace")

    def call(self, path: str, method: str = "GET", body=None, **query):
        url = f"{self.base}/api/cron/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        req = urllib.request.Request(
            url, method=method, data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=15) as resp:
            return json.loads(resp.read() or b"null")

    def error(self, path: str, **query) -> dict:
        with pytest.raises(urllib.error.HTTPError) as info:
            self.call(path, **query)
        return json.loads(info.value.read())["error"]

    def error_post(self, path: str, body) -> dict:
        with pytest.raises(urllib.error.HTTPError) as info:
            self.call(path, "POST", body)
        return json.loads(info.value.read())["error"]

    def create(self, name: str, schedule: str, command: str, **extra) -> dict:
        return self.call("jobs", "POST", {"name": name, "schedule": schedule,
                                          "command": command, "timezone": "UTC", **extra})

    def _kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def stop(self) -> None:
        self._kill()
        self.log.close()
        _kill_supervisors(self.db)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    server = Lab(tmp_path_factory.mktemp("lab"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_sync.sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic",
                  "--disable-features=Translate,MediaRouter"])
        yield chromium
        chromium.close()
    # leave a fresh, idle event loop for the modules that run after this one
    asyncio.set_event_loop(asyncio.new_event_loop())


@pytest.fixture(scope="module")
def page(lab, browser):
    """One Lab page for the module, with the Cron panel open."""
    # three jobs exist before the page loads: the panel must list them
    lab.create("rest-alpha", "*/5 * * * *", "echo alpha")
    lab.create("rest-beta", "@daily", "echo beta", description="made over REST")
    lab.create("rest-gamma", "@every 90s", "echo gamma")
    (lab.root / "report.ipynb").write_text(json.dumps(
        {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    context = browser.new_context(viewport={"width": 1400, "height": 900},
                                  device_scale_factor=1)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(f"{lab.base}/lab?token={TOKEN}", wait_until="domcontentloaded")
    pg.locator('li[data-id="hermes-cron-panel"]').click(timeout=60_000)
    pg.locator(".jp-HermesCron-panel[data-loaded='true']").wait_for(timeout=20_000)
    # a wider side bar, as a user would drag it
    handle = pg.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    pg.mouse.move(box["x"] + box["width"] / 2, box["y"] + 300)
    pg.mouse.down()
    pg.mouse.move(box["x"] + 160, box["y"] + 300, steps=5)
    pg.mouse.up()
    pg.errors = errors
    yield pg
    shot(pg, "final")
    context.close()
    assert not [e for e in errors if "hermes" in e.lower()], errors


def shot(pg, name: str) -> None:
    pg.screenshot(path=str(ARTIFACTS / f"panel-{name}.png"))


def job_item(pg, name: str):
    return pg.locator(f'.jp-HermesCron-job[data-name="{name}"]')


def select(pg, name: str):
    job_item(pg, name).click()
    pg.locator(".jp-HermesCron-detail [data-role='job-name']", has_text=name).wait_for()
    return pg.locator(".jp-HermesCron-detail")


# -- the tests ------------------------------------------------------------------------------


def test_panel_lists_jobs_created_over_rest(lab, page):
    for name in ("rest-alpha", "rest-beta", "rest-gamma"):
        job_item(page, name).wait_for()
    alpha = job_item(page, "rest-alpha")
    assert "Every 5 minutes" in alpha.inner_text()
    assert re.search(r"in \d+", alpha.locator(".jp-HermesCron-countdown").inner_text())
    assert page.locator("[data-role='count']").inner_text() == "3"
    # the in-server ticker is alive: no loud banner, a quiet status bar item
    assert page.locator("[data-role='ticker-banner']").is_hidden()
    assert page.locator(".jp-HermesCron-status").get_attribute("data-state") == "ok"

    # a job created while the page is open arrives through /events, with no reload
    lab.create("rest-delta", "0 3 * * 1-5", "echo delta")
    job_item(page, "rest-delta").wait_for(timeout=10_000)
    wait_for(lambda: page.locator("[data-role='count']").inner_text() == "4", 10,
             what="the count badge to reach 4")

    # the detail: schedule in words, the next 5 fire times from /preview, policies
    detail = select(page, "rest-beta")
    expected = lab.call("preview", schedule="@daily", tz="UTC", count=5)
    times = detail.locator("[data-role='next-times'] li")
    times.nth(4).wait_for()
    assert times.count() == 5
    assert [times.nth(i).get_attribute("title") for i in range(5)] == expected["next"]
    assert detail.locator("[data-role='schedule-words']").inner_text() == "At 00:00"
    assert "overlap: forbid" in detail.inner_text()
    assert "made over REST" in detail.inner_text()

    # the filter searches the server
    page.fill(".jp-HermesCron-filter", "gamma")
    wait_for(lambda: page.locator(".jp-HermesCron-job").count() == 1, 10, what="filtering")
    job_item(page, "rest-gamma").wait_for()
    shot(page, "filter")
    page.fill(".jp-HermesCron-filter", "")
    wait_for(lambda: page.locator(".jp-HermesCron-job").count() == 4, 10, what="unfiltering")
    shot(page, "list")


def test_schedule_a_notebook_from_the_file_browser(lab, page):
    page.locator('li[data-id="filebrowser"]').click()
    item = page.locator(".jp-DirListing-item", has_text="report.ipynb")
    item.click(button="right")
    page.locator(".lm-Menu-item", has_text="Schedule…").click()
    form = page.locator(".jp-HermesCron-form")
    form.wait_for()
    assert form.locator("[data-field='kind']").input_value() == "notebook"
    assert form.locator("[data-field='command']").input_value() == "report.ipynb"
    assert form.locator("[data-field='name']").input_value() == "report"
    assert form.locator("[data-field='cwd']").input_value() == str(lab.root)
    assert form.locator("[data-row='kernel']").is_visible()
    form.locator("button", has_text="Cancel").click()
    form.wait_for(state="detached")
    page.locator(".jp-HermesCron-panel").wait_for()


def test_create_job_through_form(lab, page):
    # "New Cron Job…" from the command palette
    page.keyboard.press("Control+Shift+C")
    page.locator(".lm-CommandPalette-input").fill("New Cron Job")
    page.keyboard.press("Enter")
    form = page.locator(".jp-HermesCron-form")
    form.wait_for()
    form.locator("[data-field='name']").fill("form-made")
    form.locator("[data-field='command']").fill("echo made by the form")

    # a bad schedule: the server's own message, next to the field, live and on submit
    bad = "61 * * * *"
    message = lab.error("preview", schedule=bad, tz="UTC")["message"]
    form.locator("[data-field='schedule']").fill(bad)
    form.locator("[data-field='timezone']").fill("UTC")
    error = form.locator("[data-error-for='schedule']")
    error.wait_for()
    assert error.inner_text() == message
    form.locator("[data-role='save']").click()
    page.locator("[data-role='form-error']", has_text=message).wait_for()
    shot(page, "form-error")
    with pytest.raises(urllib.error.HTTPError):
        lab.call("jobs/form-made")

    # a good one: the preview lists the next 5 fire times
    form.locator("[data-field='schedule']").fill("*/10 * * * *")
    preview = form.locator("[data-role='preview'][data-state='ok']")
    preview.wait_for()
    assert preview.locator("li").count() == 5
    assert error.is_hidden()
    shot(page, "form")
    form.locator("[data-role='save']").click()
    form.wait_for(state="detached")

    job = lab.call("jobs/form-made")
    assert job["schedule"] == "*/10 * * * *" and job["command"] == "echo made by the form"
    assert job["timezone"] == "UTC"
    job_item(page, "form-made").wait_for()
    detail = page.locator(".jp-HermesCron-detail")
    detail.locator("[data-role='job-name']", has_text="form-made").wait_for()

    # edit: the form comes back filled in; a change is PATCHed and shows at once
    detail.locator("[data-action='edit']").click()
    form.wait_for()
    assert form.locator("[data-field='schedule']").input_value() == "*/10 * * * *"
    assert form.locator("[data-field='command']").input_value() == "echo made by the form"
    form.locator("[data-field='schedule']").fill("@every 2m")
    form.locator("[data-field='timeout']").fill("90")
    form.locator("[data-role='save']").click()
    form.wait_for(state="detached")
    job = lab.call("jobs/form-made")
    assert job["schedule"] == "@every 2m" and job["policy"]["timeout"] == 90
    detail.locator("[data-role='schedule-words']", has_text="Every 2m").wait_for()
    assert "timeout: 1m 30s" in detail.inner_text()

    # every other option the schema marks for the form gets a row built from
    # GET /api/cron/options (a new option needs no panel change), filled in and saved
    from hermes_cron_ext.domain.options import OPTIONS

    detail.locator("[data-action='edit']").click()
    form.wait_for()
    more = form.locator("[data-role='more-options']")
    more.locator("[data-field='jitter']").wait_for()
    built = set(more.locator("[data-field]").evaluate_all(
        "els => els.map(e => e.dataset.field)"))
    laid_out = set(form.locator("[data-field]").evaluate_all(
        "els => els.map(e => e.dataset.field)")) - built
    assert built == {o.name for o in OPTIONS if o.form} - laid_out
    assert {"retry_delay", "jitter", "keep_runs", "notify_url"} <= built
    assert more.locator("[data-field='retry_delay']").input_value() == "10"  # the job's
    more.locator("[data-field='jitter']").fill("5s")
    more.locator("[data-field='keep_runs']").fill("7")
    more.locator("[data-field='retry_on_timeout']").check()
    form.locator("[data-role='save']").click()
    form.wait_for(state="detached")
    policy = lab.call("jobs/form-made")["policy"]
    assert (policy["jitter"], policy["keep_runs"], policy["retry_on_timeout"]) == (5.0, 7, True)
    assert policy["timeout"] == 90  # untouched fields stay as they were


SCRIPT = textwrap.dedent("""\
    import sys, time
    print("\\x1b[32mhello in green\\x1b[0m: nightly ETL starting", flush=True)
    for i in range(1, 21):  # a tqdm-style bar, redrawn in place with \\r
        bar = "█" * i + " " * (20 - i)
        sys.stdout.write(f"\\rextract: {i * 5:3d}%|{bar}| {i}/20")
        sys.stdout.flush()
        time.sleep(0.04)
    print(flush=True)
    for i in range(1, 11):
        print(f"::progress:: {i}/10 transform", flush=True)
        print(f"line {i}: batch {i} (\\x1b[1m{i * 1000}\\x1b[0m rows)", flush=True)
        time.sleep(0.4)
    print("\\x1b[33ma warning on stderr\\x1b[0m", file=sys.stderr, flush=True)
    print("\\x1b[32mdone\\x1b[0m", flush=True)
""")


def test_run_now_streams_output_live(lab, page):
    script = lab.root / "job.py"
    script.write_text(SCRIPT)
    lab.create("live-run", "@yearly", f"{sys.executable} -u {script}",
               description="prints for ~5 s")
    job_item(page, "live-run").wait_for()
    detail = select(page, "live-run")
    detail.locator("[data-action='run']").click()

    output = page.locator(".jp-HermesCron-outputBox .jp-HermesCron-output")
    terminal = output.locator(".jp-HermesCron-terminal")
    terminal.locator(".jp-HermesCron-line", has_text="line 2").wait_for(timeout=20_000)
    # still running: the line arrived live, not as a replay of a finished log
    run_id = output.get_attribute("data-run-id")
    assert lab.call(f"runs/{run_id}")["status"] == "running"
    assert output.get_attribute("data-ended") is None
    assert output.get_attribute("data-status") == "running"
    assert "line 10" not in terminal.inner_text()
    # the supervisor's progress (from ::progress:: lines) shows in the pane's header
    output.locator(".jp-HermesCron-phase", has_text="transform").wait_for(timeout=10_000)
    assert output.locator(".jp-HermesCron-bar").is_visible()
    shot(page, "live")

    # the user scrolls up: following pauses until "Jump to latest"
    scroller = page.locator(".jp-HermesCron-outputBox .jp-HermesCron-scroller")
    scroller.evaluate("el => { el.style.height = '60px'; el.scrollTop = el.scrollHeight; }")
    scroller.hover()
    page.mouse.wheel(0, -400)
    page.locator(".jp-HermesCron-outputBox .jp-HermesCron-jump").wait_for()
    assert output.get_attribute("data-follow") == "false"
    lines = terminal.locator(".jp-HermesCron-line").count()
    wait_for(lambda: terminal.locator(".jp-HermesCron-line").count() > lines, 10,
             what="more output")
    assert scroller.evaluate("el => el.scrollTop") == 0  # it did not jump back down

    output.locator(".jp-HermesCron-badge", has_text="Completed").wait_for(timeout=30_000)
    assert output.get_attribute("data-status") == "succeeded"
    text = terminal.inner_text()
    # a carriage-return progress bar ends as one line, as in a terminal
    assert text.count("extract:") == 1 and "extract: 100%|" + "█" * 20 + "| 20/20" in text
    assert text.index("hello in green") < text.index("line 1") < text.index("done")
    assert terminal.locator(".ansi-green-fg", has_text="hello in green").count() == 1
    assert terminal.locator(".jp-HermesCron-stderr", has_text="a warning on stderr").count() == 1
    page.locator(".jp-HermesCron-outputBox .jp-HermesCron-jump").click()
    page.locator(".jp-HermesCron-outputBox .jp-HermesCron-output[data-follow='true']").wait_for()
    scroller.evaluate("el => { el.style.height = ''; }")

    # the history shows the run; the job's last outcome is a tick
    row = detail.locator(f"tr[data-run-id='{run_id}']")
    row.locator(".jp-HermesCron-badge", has_text="Completed").wait_for(timeout=10_000)
    assert "manual" in row.inner_text()
    assert row.locator("td").nth(4).inner_text() == "0"
    job_item(page, "live-run").locator(".jp-HermesCron-outcome[data-tone='ok']").wait_for()
    shot(page, "run-done")

    # back to this job later: a click on the finished run replays its output in the pane
    select(page, "rest-beta")
    detail = select(page, "live-run")
    assert page.locator(".jp-HermesCron-outputBox").is_hidden()
    detail.locator(f"tr[data-run-id='{run_id}']").click()
    output = page.locator(".jp-HermesCron-outputBox .jp-HermesCron-output[data-ended='true']")
    output.wait_for(timeout=10_000)
    assert "line 10" in output.locator(".jp-HermesCron-terminal").inner_text()
    # and "Open in tab" shows it in the main area
    output.locator("button", has_text="Open in tab").click()
    tab = page.locator(f".jp-MainAreaWidget .jp-HermesCron-output[data-run-id='{run_id}']")
    tab.locator(".jp-HermesCron-badge", has_text="Completed").wait_for(timeout=10_000)
    assert "| 20/20" in tab.locator(".jp-HermesCron-terminal").inner_text()
    shot(page, "run-tab")
    if os.environ.get("HERMES_CRON_DOCS_SHOT") == "1":
        detail.evaluate("el => { el.scrollTop = 0; }")
        (ROOT / "docs").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "docs" / "panel.png"))


def test_output_survives_a_server_restart(lab, page):
    """The stream drops with the server; the pane reconnects from its offset: no loss, no repeat."""
    script = lab.root / "slow.py"
    script.write_text(textwrap.dedent("""\
        import time
        for i in range(1, 31):
            print(f"tick {i:02d}", flush=True)
            time.sleep(0.25)
    """))
    lab.create("survivor", "@yearly", f"{sys.executable} -u {script}")
    job_item(page, "survivor").wait_for()
    detail = select(page, "survivor")
    detail.locator("[data-action='run']").click()
    output = page.locator(".jp-HermesCron-outputBox .jp-HermesCron-output")
    terminal = output.locator(".jp-HermesCron-terminal")
    terminal.locator(".jp-HermesCron-line", has_text="tick 03").wait_for(timeout=20_000)
    lab.restart()
    output.locator(".jp-HermesCron-badge", has_text="Completed").wait_for(timeout=30_000)
    lines = [ln for ln in terminal.inner_text().splitlines() if ln.strip()]
    assert lines == [f"tick {i:02d}" for i in range(1, 31)]
    shot(page, "after-restart")
    # Lab's own "Server Connection Error" dialog from the restart
    lost = page.locator(".jp-Dialog", has_text="Server Connection Error")
    if lost.count():
        lost.locator("button", has_text="Close").click()
        lost.wait_for(state="detached")


def test_pause_resume_and_delete(lab, page):
    detail = select(page, "rest-alpha")
    state = detail.locator("[data-role='job-state']")
    detail.locator("[data-action='pause']").click()
    detail.locator("[data-role='job-state'][data-state='paused']").wait_for()
    assert lab.call("jobs/rest-alpha")["state"] == "paused"
    job_item(page, "rest-alpha").locator(".jp-HermesCron-pip[data-state='paused']").wait_for()
    # a paused job shows "paused", never a countdown, in the list and in the detail; the
    # countdowns tick once a second: wait past a few ticks, which must leave the word alone
    countdown = job_item(page, "rest-alpha").locator(".jp-HermesCron-countdown")
    page.wait_for_timeout(2500)
    assert countdown.inner_text() == "paused"
    next_run = detail.locator("[data-role='next-run']")
    assert next_run.inner_text() == "paused"
    assert not re.search(r"\bin \d|due now|overdue", next_run.inner_text())
    assert "once resumed" in detail.locator("[data-role='next-times-caption']").inner_text()
    shot(page, "paused")

    detail.locator("[data-action='resume']").click()
    detail.locator("[data-role='job-state'][data-state='scheduled']").wait_for()
    assert state.inner_text() == "scheduled"
    assert lab.call("jobs/rest-alpha")["state"] == "scheduled"

    # a change made elsewhere (the CLI, a notebook) shows up through /events
    lab.call("jobs/rest-alpha/pause", "POST")
    job_item(page, "rest-alpha").locator(".jp-HermesCron-pip[data-state='paused']").wait_for()
    lab.call("jobs/rest-alpha/resume", "POST")

    detail.locator("[data-action='delete']").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    assert "rest-alpha" in dialog.inner_text()
    shot(page, "delete-confirm")
    dialog.locator("button", has_text="Delete").click()
    job_item(page, "rest-alpha").wait_for(state="detached", timeout=10_000)
    with pytest.raises(urllib.error.HTTPError) as info:
        lab.call("jobs/rest-alpha")
    assert info.value.code == 404


def test_no_ticker_banner(lab, page):
    """A ticker that dies without a word: the panel and the status bar say so loudly."""
    banner = page.locator("[data-role='ticker-banner']")
    db = sqlite3.connect(lab.db, timeout=10)
    try:
        for _ in range(5):
            # age every ticker's heartbeat; the live one beats again within 5 s, so
            # look at once and retry if it won the race
            with db:
                db.execute("UPDATE tickers SET heartbeat_at = heartbeat_at - 3600")
            page.locator("[data-action='refresh']").click()
            try:
                banner.wait_for(timeout=2_000)
                break
            except playwright_sync.TimeoutError:
                continue
    finally:
        db.close()
    assert banner.is_visible()
    assert "no ticker is alive" in banner.inner_text().lower()
    assert page.locator(".jp-HermesCron-status").get_attribute("data-state") == "no-ticker"
    shot(page, "no-ticker")


def test_large_fleet_is_capped_at_50(lab, page):
    for i in range(60):
        lab.create(f"fleet-{i:03d}", "*/15 * * * *", "true")
    page.fill(".jp-HermesCron-filter", "fleet-")
    jobs = page.locator(".jp-HermesCron-job")
    # the filter applies after a short pause in typing: wait for the list it made (the
    # unfiltered first page may be fleet-000..049 too; 'more' clicked before the filter
    # applied would then be undone by it)
    page.locator(".jp-HermesCron-listBox[data-filter='fleet-']").wait_for(timeout=10_000)
    wait_for(lambda: jobs.count() == 50, 10, what="the filtered list")
    footer = page.locator(".jp-HermesCron-listFooter")
    footer.wait_for(timeout=10_000)
    assert jobs.count() == 50
    assert "50+" in footer.inner_text()
    shot(page, "fleet")
    footer.locator("[data-action='more']").click()
    wait_for(lambda: page.locator(".jp-HermesCron-job").count() == 60, 10, what="60 jobs")
    assert footer.is_hidden()
    # a search reaches the jobs beyond the first page
    page.fill(".jp-HermesCron-filter", "fleet-059")
    wait_for(lambda: page.locator(".jp-HermesCron-job").count() == 1, 10, what="the search")
    page.fill(".jp-HermesCron-filter", "")


def test_dark_theme(page):
    page.locator(".lm-MenuBar-item", has_text="Settings").click()
    page.locator(".lm-Menu-item").filter(has_text=re.compile(r"^Theme$")).hover()
    page.get_by_role("menuitem", name="JupyterLab Dark", exact=True).click()
    page.locator("body[data-jp-theme-light='false']").wait_for(state="attached", timeout=10_000)
    page.fill(".jp-HermesCron-filter", "live-run")
    wait_for(lambda: page.locator(".jp-HermesCron-job").count() <= 1, 10, what="the filter")
    if job_item(page, "live-run").count():  # after test_run_now_streams_output_live
        select(page, "live-run")
        page.locator(".jp-HermesCron-run").first.click()
        page.locator(".jp-HermesCron-outputBox .jp-HermesCron-output[data-ended='true']").wait_for()
    shot(page, "dark")
    bg = page.locator(".jp-HermesCron-panel").evaluate(
        "el => getComputedStyle(el).backgroundColor")
    r, g, b = (int(x) for x in re.findall(r"\d+", bg)[:3])
    assert r + g + b < 200, bg  # the panel follows the theme


def test_run_a_notebook_with_parameters_from_its_form(lab, page):
    """The form is built from the notebook's parameters cell (typed), the server checks
    the values (a wrong one is named), and the run's history shows what it was given."""
    cells = [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None,
         "outputs": [], "source": "n = 2\nlabel = 'plain'\nloud = False\n"},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
         "source": "print(label.upper() if loud else label, n * 10)"},
    ]
    (lab.root / "params.ipynb").write_text(json.dumps({
        "cells": cells, "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}}}))
    lab.create("params-nb", "@yearly", str(lab.root / "params.ipynb"), kind="notebook")
    page.fill(".jp-HermesCron-filter", "params-nb")  # other tests leave many jobs
    detail = select(page, "params-nb")
    detail.locator("[data-action='run-with']").click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator("[data-param='n']").wait_for()
    assert dialog.locator("[data-param='n']").get_attribute("type") == "number"
    assert dialog.locator("[data-param='n']").input_value() == "2"
    assert dialog.locator("[data-param='loud']").get_attribute("type") == "checkbox"
    dialog.locator("[data-param='n']").fill("7")
    dialog.locator("[data-param='label']").fill("given")
    dialog.locator("[data-param='loud']").check()
    shot(page, "run-with-parameters")
    dialog.locator("button", has_text="Run").click()
    row = detail.locator("tr.jp-HermesCron-run").first
    row.locator("[data-role='trigger']", has_text="manual n=7, label=given, loud=true").wait_for()
    runs = lab.call("jobs/params-nb/runs")["runs"]
    assert runs[0]["parameters"] == {"n": 7, "label": "given", "loud": True}
    done = wait_for(lambda: (r := lab.call(f"runs/{runs[0]['id']}"))["status"] not in (
        "queued", "running") and r, 90, 0.1, "the run to end")
    assert done["status"] == "succeeded", done
    log = urllib.request.urlopen(urllib.request.Request(
        f"{lab.base}/api/cron/runs/{runs[0]['id']}/log",
        headers={"Authorization": f"token {TOKEN}"}), timeout=15).read().decode()
    assert "GIVEN 70" in log
    # a value of the wrong type is refused by the server, which names it
    err = lab.error_post("jobs/params-nb/run", {"parameters": {"n": "seven"}})
    assert err["field"] == "parameters.n"
    page.fill(".jp-HermesCron-filter", "")


def test_a_jobs_detail_shows_its_pipeline(lab, page):
    lab.create("pipe-up", "@yearly", "true")
    lab.create("pipe-down", "@yearly", "true", after=["pipe-up"])
    lab.create("pipe-alert", "@yearly", "true", after=[{"job": "pipe-down", "on": "failure"}])
    page.fill(".jp-HermesCron-filter", "pipe-")
    detail = select(page, "pipe-down")
    detail.locator("[data-role='upstream'] [data-job='pipe-up']").wait_for()
    assert detail.locator("[data-role='downstream']").inner_text() == \
        "then: pipe-alert (on failure)"
    lab.call("jobs/pipe-up/run", "POST")  # its badge shows the upstream's last run
    detail.locator("[data-role='upstream'] [data-job='pipe-up'] .jp-HermesCron-badge").wait_for(
        timeout=30_000)
    # the run it triggered says what it ran after
    detail.locator(".jp-HermesCron-outputMeta",
                   has_text="trigger upstream · after pipe-up succeeded").wait_for(timeout=30_000)
    detail = select(page, "pipe-alert")
    detail.locator("[data-role='upstream'] [data-job='pipe-down']").wait_for()
    assert detail.locator("[data-role='downstream']").count() == 0
    page.fill(".jp-HermesCron-filter", "")


def test_a_job_after_others_needs_no_schedule_in_the_panel(lab, page):
    """The form makes a job with "Runs after" and no schedule; the list and the detail
    show "after ...", with no fire times and no Backfill; the detail says why upstream
    runs do not trigger a disabled job, and a fan-in's rule; the form's errors come
    from the server (neither schedule nor after; after taken from a job with none)."""
    lab.create("na-extract", "0 2 * * *", "true")
    lab.create("na-load", "0 2 * * *", "true")
    page.keyboard.press("Control+Shift+C")
    page.locator(".lm-CommandPalette-input").fill("New Cron Job")
    page.keyboard.press("Enter")
    form = page.locator(".jp-HermesCron-form")
    form.wait_for()
    form.locator("[data-field='name']").fill("na-report")
    form.locator("[data-field='command']").fill("true")
    form.locator("[data-role='save']").click()  # neither a schedule nor after
    never = lab.error_post("jobs", {"name": "x", "command": "true"})["message"]
    form.locator("[data-error-for='schedule']", has_text=never).wait_for()
    form.locator("[data-field='after']").fill("na-extract, na-load")
    form.locator("[data-role='preview'][data-state='after']",
                 has_text="No schedule of its own: it runs only after na-extract, na-load."
                 ).wait_for()
    form.locator("[data-role='save']").click()
    form.wait_for(state="detached")
    job = lab.call("jobs/na-report")
    assert (job["schedule"], job["next_run_at"]) == (None, None)
    assert [a["name"] for a in job["after"]] == ["na-extract", "na-load"]

    page.fill(".jp-HermesCron-filter", "na-")
    item = job_item(page, "na-report")
    item.wait_for()
    assert item.locator(".jp-HermesCron-jobSchedule").inner_text() == (
        "after na-extract, na-load")
    detail = select(page, "na-report")
    assert detail.locator("[data-role='schedule-after']").inner_text() == (
        "after na-extract, na-load")
    assert detail.locator("[data-role='next-run']").inner_text() == (
        "none of its own: after na-extract, na-load")
    assert detail.locator("[data-role='next-times'] li").count() == 0
    assert detail.locator("[data-action='backfill']").count() == 0
    detail.locator("[data-role='pipeline-note']",
                   has_text="runs once na-extract and na-load have both succeeded for the "
                            "same slot").wait_for()
    shot(page, "after-only")

    # taking "Runs after" away from a job with no schedule is refused, by the server
    detail.locator("[data-action='edit']").click()
    form.wait_for()
    assert form.locator("[data-field='after']").input_value() == "na-extract, na-load"
    form.locator("[data-field='after']").fill("")
    form.locator("[data-role='save']").click()
    form.locator("[data-error-for='after']",
                 has_text="na-report has no schedule of its own, so without after it would "
                          "never run").wait_for()
    form.locator("[data-field='after']").fill("na-extract:failure")
    form.locator("[data-field='enabled']").uncheck()
    form.locator("[data-role='save']").click()
    form.wait_for(state="detached")
    assert lab.call("jobs/na-report")["after"][0]["on"] == "failure"
    detail.locator("[data-role='schedule-after']", has_text="after na-extract:failure").wait_for()
    detail.locator("[data-role='pipeline-note']",
                   has_text="disabled: upstream runs do not trigger it").wait_for()
    page.fill(".jp-HermesCron-filter", "")


def test_a_pipeline_graph_is_drawn_live_and_leads_to_its_jobs(lab, page):
    """The detail draws the whole pipeline: a box per job with its last status, an arrow
    per link; a run of another job of the pipeline redraws it; a click opens that job."""
    lab.create("graph-a", "@yearly", "true")
    lab.create("graph-b", "@yearly", "true")
    lab.create("graph-c", "@yearly", "true", after=["graph-a", "graph-b"])
    lab.create("graph-d", "@yearly", "exit 3", after=[{"job": "graph-c", "on": "failure"}])
    page.fill(".jp-HermesCron-filter", "graph-")
    detail = select(page, "graph-c")
    graph = detail.locator("[data-role='pipeline-graph']")
    graph.wait_for()
    nodes = graph.locator(".jp-HermesCron-graphNode")
    assert sorted(nodes.evaluate_all("ns => ns.map(n => n.dataset.job)")) == [
        "graph-a", "graph-b", "graph-c", "graph-d"]
    assert graph.locator("[data-job='graph-c']").get_attribute("data-focus") == "true"
    edges = graph.locator(".jp-HermesCron-graphEdge").evaluate_all(
        "es => es.map(e => [e.dataset.from, e.dataset.to, e.dataset.on])")
    assert sorted(edges) == [["graph-a", "graph-c", "success"],
                             ["graph-b", "graph-c", "success"],
                             ["graph-c", "graph-d", "failure"]]
    # columns by level: a and b left of c, c left of d
    x = {n: graph.locator(f"[data-job='{n}']").bounding_box()["x"] for n in
         ("graph-a", "graph-b", "graph-c", "graph-d")}
    assert x["graph-a"] == x["graph-b"] < x["graph-c"] < x["graph-d"]
    assert graph.locator("[data-job='graph-d']").get_attribute("data-status") == "none"
    # live: a run of graph-d (not the job shown, not upstream of it) redraws its box
    lab.call("jobs/graph-d/run", "POST")
    graph.locator("[data-job='graph-d'][data-status='failed']").wait_for(timeout=30_000)
    shot(page, "pipeline-graph")
    graph.locator("[data-job='graph-a']").click()  # a box opens its job
    page.locator(".jp-HermesCron-detail [data-role='job-name']", has_text="graph-a").wait_for()
    page.fill(".jp-HermesCron-filter", "")


def test_backfill_from_the_panel_with_its_progress(lab, page):
    """The dialog counts the range's slots before anything runs; Start queues them, and
    a bar under the job follows the backfill to its end; Cancel stops another's rest."""
    lab.create("bf-panel", "0 6 * * *", "sleep 0.2")
    page.fill(".jp-HermesCron-filter", "bf-panel")
    detail = select(page, "bf-panel")
    detail.locator("[data-action='backfill']").click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator("[data-field='from']").fill("2026-11-03")
    dialog.locator("[data-field='from']").dispatch_event("change")
    dialog.locator("[data-field='to']").fill("2026-11-01")
    dialog.locator("[data-field='to']").dispatch_event("change")
    dialog.locator("[data-role='backfill-preview'][data-tone='bad']",
                   has_text="before").wait_for()  # a wrong range is told, nothing queued
    dialog.locator("[data-field='to']").fill("2026-11-10")
    dialog.locator("[data-field='to']").dispatch_event("change")
    dialog.locator("[data-field='max_parallel']").fill("3")
    dialog.locator("[data-field='max_parallel']").dispatch_event("change")
    dialog.locator("[data-role='backfill-preview'][data-slots='8']",
                   has_text="8 slots would run, 3 at a time").wait_for()
    assert lab.call("jobs/bf-panel/runs")["runs"] == []  # a preview runs nothing
    shot(page, "backfill-dialog")
    dialog.locator("button", has_text="Start").click()
    box = detail.locator("[data-role='backfill']")
    box.wait_for()
    box.locator("xpath=self::*[@data-state='done']").wait_for(timeout=60_000)
    assert box.locator("[data-role='backfill-text']").inner_text() == (
        "Backfill 2026-11-03 → 2026-11-10 (done): 8/8 slots done (8 succeeded)")
    assert box.locator("progress").evaluate("p => [p.value, p.max]") == [8, 8]
    assert box.locator("[data-action='cancel-backfill']").is_disabled()
    runs = lab.call("jobs/bf-panel/runs")["runs"]
    assert sorted(r["logical_time"][:10] for r in runs) == [
        f"2026-11-{d:02d}" for d in range(3, 11)]
    assert {r["trigger"] for r in runs} == {"backfill"}
    shot(page, "backfill-done")

    lab.create("bf-slow", "0 6 * * *", "sleep 30")
    page.fill(".jp-HermesCron-filter", "bf-slow")
    detail = select(page, "bf-slow")
    assert detail.locator("[data-role='backfill']").count() == 0  # another job's, not shown
    detail.locator("[data-action='backfill']").click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator("[data-field='from']").fill("2026-11-01")
    dialog.locator("[data-field='to']").fill("2026-11-05")
    dialog.locator("[data-field='to']").dispatch_event("change")
    dialog.locator("[data-role='backfill-preview'][data-slots='5']").wait_for()
    dialog.locator("button", has_text="Start").click()
    box = detail.locator("[data-role='backfill']")
    box.locator("[data-action='cancel-backfill']").click()
    box.locator("xpath=self::*[@data-state='cancelled']").wait_for(timeout=30_000)
    assert "not run" in box.locator("[data-role='backfill-text']").inner_text()
    wait_for(lambda: all(r["status"] == "cancelled"
                         for r in lab.call("jobs/bf-slow/runs")["runs"]), 30, 0.2,
             "the slow backfill's runs to stop")

    # a backfill started elsewhere (the CLI, a notebook, REST) shows when its job does
    lab.create("bf-rest", "0 6 * * *", "sleep 30")
    other = lab.call("jobs/bf-rest/backfill", "POST", {"from": "2026-11-01", "to": "2026-11-04"})
    page.fill(".jp-HermesCron-filter", "bf-rest")
    detail = select(page, "bf-rest")
    box = detail.locator("[data-role='backfill'][data-state='running']")
    box.wait_for()
    assert "2026-11-01 → 2026-11-04 (running): 0/4 slots done" in box.inner_text()
    lab.call(f"backfills/{other['id']}/cancel", "POST")  # and it follows what happens
    detail.locator("[data-role='backfill'][data-state='cancelled']").wait_for(timeout=15_000)
    page.fill(".jp-HermesCron-filter", "")


def test_a_hub_jobs_detail_says_whose_it_is_and_who_shares_it(lab, page):
    """A job of a JupyterHub user (as the hub service's store holds it): the detail names
    its owner and the groups it is shared with; a job of this server's own user has
    neither line."""
    from hermes_cron_ext.domain.access import Viewer
    from hermes_cron_ext.ops import Operations

    ops = Operations(lab.db)
    try:
        ops.as_user(Viewer("alice")).create({
            "name": "hub-report", "schedule": "@yearly", "command": "true",
            "shares": {"ops": "execute", "analysts": "read"}})
    finally:
        ops.close()
    lab.create("hub-mine", "@yearly", "true")
    page.fill(".jp-HermesCron-filter", "hub-")
    select(page, "hub-report")
    more = page.locator(".jp-HermesCron-detail")
    more.locator("[data-role='owner']", has_text="alice").wait_for(timeout=20_000)
    assert more.locator("[data-role='shares']").inner_text() == \
        "analysts (read), ops (execute)"
    select(page, "hub-mine")
    page.locator(".jp-HermesCron-detail [data-role='job-name']", has_text="hub-mine").wait_for()
    assert more.locator("[data-role='owner']").count() == 0
    assert more.locator("[data-role='shares']").count() == 0
    page.fill(".jp-HermesCron-filter", "")


def _ended(lab, run_id: str) -> bool:
    return lab.call(f"runs/{run_id}")["status"] not in ("queued", "running")


def _points(section, metric: str) -> int:
    """The points the sparkline of *metric* draws: its polyline's, checked against its
    ``data-points``."""
    svg = section.locator(f"[data-metric='{metric}'] svg.jp-HermesCron-sparkline")
    drawn = svg.evaluate("el => { const l = el.querySelector('polyline');"
                         " return l ? l.getAttribute('points').trim().split(/\\s+/).length : 0 }")
    assert drawn == int(svg.get_attribute("data-points")), metric
    return drawn


def test_a_jobs_metrics_are_sparklines_refreshed_as_its_runs_end(lab, page):
    counter = lab.tmp / "metric-count"
    # each run reports one more hundred rows (a ::metric line), after its built-ins
    command = (f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; "
               'echo "::metric rows=$((n*100)) rows"')
    job = lab.create("metric-rows", "@yearly", command)
    for _ in range(3):
        run_id = lab.call(f"jobs/{job['id']}/run", "POST")["id"]
        wait_for(lambda rid=run_id: _ended(lab, rid), 30, 0.2, "the run to end")
    page.fill(".jp-HermesCron-filter", "metric-rows")
    detail = select(page, "metric-rows")
    section = detail.locator(".jp-HermesCron-metricsBox")
    section.locator(".jp-HermesCron-sectionTitle", has_text="Metrics").wait_for(timeout=10_000)
    section.locator("[data-metric='rows'] svg[data-points='3']").wait_for(timeout=10_000)
    names = section.locator("[data-metric]").evaluate_all("els => els.map(e => e.dataset.metric)")
    assert names[0] == "duration" and "rows" in names and "exit_code" in names  # built-ins first
    assert _points(section, "duration") == 3 and _points(section, "rows") == 3
    rows = section.locator("[data-metric='rows']")
    assert rows.locator("[data-role='last']").inner_text() == "300 rows"
    assert rows.locator("[data-role='range']").inner_text() == \
        "min 100 rows · median 200 rows · max 300 rows"
    assert section.locator("[data-metric='duration'] [data-role='last']").inner_text() \
        .endswith("s")
    # another run ends while the job is shown: the sparklines gain its point
    detail.locator("[data-action='run']").click()
    section.locator("[data-metric='duration'] svg[data-points='4']").wait_for(timeout=30_000)
    section.locator("[data-metric='rows'] [data-role='last']",
                    has_text="400 rows").wait_for(timeout=10_000)
    assert _points(section, "duration") == 4 and _points(section, "rows") == 4
    section.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "panel-metrics.png"))
    page.fill(".jp-HermesCron-filter", "")


# -- monitoring: alert badges, the alert rules in the form, toasts, links to a run -------

def _toasts(pg, text: str):
    """JupyterLab's toasts (Notification) that say *text*."""
    return pg.locator(".Toastify__toast", has_text=text)


def test_a_run_whose_alert_rule_fired_has_the_alert_badge(lab, page):
    """The run list and the run view show ⚠ ALERT with the rule and what was seen as its
    tooltip; a run none fired for has no badge. The run.alert, seen live, is a toast."""
    job = lab.create("alerting", "@yearly", "echo '::metric rows=5'",
                     policy={"alerts": ["rows < 10"]})
    run_id = lab.call(f"jobs/{job['id']}/run", "POST")["id"]
    wait_for(lambda: _ended(lab, run_id), 30, 0.2, "the run to end")
    assert lab.call(f"runs/{run_id}")["alerts"] == [{"rule": "rows < 10",
                                                      "message": "rows = 5 < 10"}]
    page.fill(".jp-HermesCron-filter", "alerting")
    detail = select(page, "alerting")
    row = detail.locator(f"tr[data-run-id='{run_id}']")
    badge = row.locator("[data-role='alert-badge']")
    badge.wait_for(timeout=10_000)
    assert badge.inner_text() == "⚠ ALERT"
    assert badge.get_attribute("title") == "rows < 10: rows = 5 < 10"
    row.click()
    head = detail.locator(f".jp-HermesCron-output[data-run-id='{run_id}'] "
                          ".jp-HermesCron-outputHeader [data-role='alert-badge']")
    head.wait_for(timeout=10_000)
    assert head.get_attribute("title") == "rows < 10: rows = 5 < 10"
    _toasts(page, "alerting ALERT rows < 10 (rows = 5 < 10)").wait_for(timeout=10_000)
    shot(page, "alert-badge")
    # a run of a job with no rules: no badge, in the list or the view
    lab.call(f"jobs/{job['id']}", "PATCH", {"policy": {"alerts": []}})
    quiet = lab.call(f"jobs/{job['id']}/run", "POST")["id"]
    wait_for(lambda: _ended(lab, quiet), 30, 0.2, "the run to end")
    detail.locator(f"tr[data-run-id='{quiet}']").click()
    detail.locator(f".jp-HermesCron-output[data-run-id='{quiet}'][data-ended]").wait_for(
        timeout=10_000)
    assert detail.locator(f"tr[data-run-id='{quiet}'] [data-role='alert-badge']").count() == 0
    assert not detail.locator(f".jp-HermesCron-output[data-run-id='{quiet}'] "
                              "[data-role='alert-badge']").is_visible()
    page.fill(".jp-HermesCron-filter", "")


def test_alert_rules_are_edited_in_the_form(lab, page):
    """One rule per line; the server's refusal of a bad rule is shown under the field,
    naming the rule, and nothing is saved."""
    lab.create("ruled", "@yearly", "true")
    page.fill(".jp-HermesCron-filter", "ruled")
    detail = select(page, "ruled")
    detail.locator("[data-action='edit']").click()
    form = page.locator(".jp-HermesCron-form")
    field = form.locator("textarea[data-field='alerts']")
    field.wait_for()
    assert field.input_value() == ""
    field.fill("rows < 1000\nduration > 2 * median(20)\n")
    # the last test's toast may lie over the form's buttons (at the bottom of a long form)
    form.locator("[data-role='save']").dispatch_event("click")
    form.wait_for(state="detached")
    assert lab.call("jobs/ruled")["policy"]["alerts"] == [
        "rows < 1000", "duration > 2 * median(20)"]

    detail.locator("[data-action='edit']").click()
    field = form.locator("textarea[data-field='alerts']")
    assert field.input_value() == "rows < 1000\nduration > 2 * median(20)"
    field.fill("rows < 1000\nrows <")
    form.locator("[data-role='save']").dispatch_event("click")
    error = form.locator("[data-error-for='alerts']")
    error.wait_for(timeout=10_000)
    assert "alert rule 'rows <'" in error.inner_text()
    assert "alert rule 'rows <'" in form.locator("[data-role='form-error']").inner_text()
    assert lab.call("jobs/ruled")["policy"]["alerts"] == [
        "rows < 1000", "duration > 2 * median(20)"]
    shot(page, "alert-rule-error")
    field.fill("")  # an edit that empties it clears them
    form.locator("[data-role='save']").dispatch_event("click")
    form.wait_for(state="detached")
    assert lab.call("jobs/ruled")["policy"]["alerts"] == []
    page.fill(".jp-HermesCron-filter", "")


def test_a_run_failing_live_is_a_toast_whose_button_opens_it(lab, page):
    """A run that fails while the page is open is a toast; "Show run" opens it in the
    panel. A burst of failures is a few toasts and one "N more runs failed"."""
    lab.create("toast-bystander", "@yearly", "true")
    page.fill(".jp-HermesCron-filter", "toast-")
    select(page, "toast-bystander")  # another job is shown
    job = lab.create("toast-fail", "@yearly", "echo oops; exit 3")
    run_id = lab.call(f"jobs/{job['id']}/run", "POST")["id"]
    toast = _toasts(page, "Cron: toast-fail failed")
    toast.wait_for(timeout=30_000)
    shot(page, "toast")
    toast.get_by_role("button", name="Show run").click()
    detail = page.locator(".jp-HermesCron-detail")
    detail.locator("[data-role='job-name']", has_text="toast-fail").wait_for(timeout=10_000)
    detail.locator(f".jp-HermesCron-output[data-run-id='{run_id}']").wait_for(timeout=10_000)
    detail.locator(f"tr[data-run-id='{run_id}'].jp-mod-selected").wait_for(timeout=10_000)

    # a burst: 8 failing runs at once are at most 3 toasts and one summary
    burst = [lab.create(f"burst-{i}", "@yearly", "exit 1") for i in range(8)]
    ids = [lab.call(f"jobs/{j['id']}/run", "POST")["id"] for j in burst]
    for rid in ids:
        wait_for(lambda rid=rid: _ended(lab, rid), 30, 0.2, "the burst to end")
    summary = _toasts(page, "more runs failed")
    summary.wait_for(timeout=10_000)
    page.wait_for_timeout(600)  # the last batch is read
    single = _toasts(page, "Cron: burst-").count()
    more = int(re.search(r"(\d+) more runs failed", summary.inner_text()).group(1))
    assert single <= 3 and single + more >= 8, (single, more)
    assert summary.count() == 1
    page.fill(".jp-HermesCron-filter", "")


def test_a_link_to_a_run_opens_the_panel_at_it(lab, browser):
    """``<lab url>?hermes-cron-run=RUN_ID`` (the backend's notifications link to runs so)
    opens the Cron panel with the run's job selected and the run shown."""
    job = lab.create("linked", "@yearly", "echo linked")
    run_id = lab.call(f"jobs/{job['id']}/run", "POST")["id"]
    wait_for(lambda: _ended(lab, run_id), 30, 0.2, "the run to end")
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        pg = context.new_page()
        pg.goto(f"{lab.base}/lab?token={TOKEN}&hermes-cron-run={run_id}",
                wait_until="domcontentloaded")
        detail = pg.locator(".jp-HermesCron-detail")
        detail.locator("[data-role='job-name']", has_text="linked").wait_for(timeout=60_000)
        output = detail.locator(f".jp-HermesCron-output[data-run-id='{run_id}']")
        output.wait_for(timeout=10_000)
        output.locator(".jp-HermesCron-line", has_text="linked").wait_for(timeout=10_000)
        assert pg.locator(".jp-HermesCron-panel").is_visible()
        pg.screenshot(path=str(ARTIFACTS / "panel-run-link.png"))
    finally:
        context.close()


# -- notifications: the form's destinations, the outbox in the panel ------------------------

PUBLIC_HOOK = "json://hook-user:hook-sekret@93.184.216.34/hook"  # a public address literal


def _stored_notify(lab, name: str) -> list[str]:
    """The job's notify URLs as stored (the API only ever shows them masked)."""
    from hermes_cron_ext.store import open_store

    store = open_store(lab.db)
    try:
        return list(store.get_job(name).policy.notify)
    finally:
        store.close()


def test_notify_and_notify_on_in_the_form(lab, page):
    """The form shows a job's destinations masked; saving another field keeps the URLs
    they stand for; a private address is refused with the server's message under the
    field; the events are checkboxes."""
    lab.create("notified", "@yearly", "true", policy={"notify": [PUBLIC_HOOK]})
    masked = lab.call("jobs/notified")["policy"]["notify"]
    assert len(masked) == 1 and "hook-sekret" not in masked[0]
    page.fill(".jp-HermesCron-filter", "notified")
    detail = select(page, "notified")
    detail.locator("[data-action='edit']").click()
    form = page.locator(".jp-HermesCron-form")
    field = form.locator("textarea[data-field='notify']")
    field.wait_for()
    assert field.input_value() == masked[0]
    assert "hook-sekret" not in form.inner_html()
    assert form.locator("[data-role='notify-help'] a").get_attribute("href") == \
        "https://github.com/caronc/apprise/wiki"
    on = {k: form.locator(f"input[data-notify-on='{k}']").is_checked()
          for k in ("failure", "late", "recovered", "succeeded", "started")}
    assert on == {"failure": True, "late": True, "recovered": True, "succeeded": False,
                  "started": False}
    form.locator("[data-field='description']").fill("told when it fails")
    form.locator("input[data-notify-on='succeeded']").check()
    form.locator("input[data-notify-on='late']").uncheck()
    # earlier tests' toasts (one stays until closed) may lie over the form's buttons
    form.locator("[data-role='save']").dispatch_event("click")
    form.wait_for(state="detached")
    job = lab.call("jobs/notified")
    assert job["description"] == "told when it fails"
    assert job["policy"]["notify"] == masked
    assert "succeeded" in job["policy"]["notify_on"] and "late" not in job["policy"]["notify_on"]
    assert _stored_notify(lab, "notified") == [PUBLIC_HOOK]  # the masked value kept it

    # a private address: refused, the server's message under the field, nothing stored
    detail.locator("[data-action='edit']").click()
    field = form.locator("textarea[data-field='notify']")
    field.fill(f"{masked[0]}\njson://127.0.0.1:9/private")
    form.locator("[data-role='save']").dispatch_event("click")
    error = form.locator("[data-error-for='notify']")
    error.wait_for(timeout=10_000)
    text = error.inner_text()
    assert text.startswith("notify:") and "127.0.0.1" in text and "loopback" in text, text
    shot(page, "notify-error")
    form.locator("button", has_text="Cancel").dispatch_event("click")
    form.wait_for(state="detached")
    assert _stored_notify(lab, "notified") == [PUBLIC_HOOK]
    page.fill(".jp-HermesCron-filter", "")


class _Sink:
    """An HTTP server on 127.0.0.1: POST /ok answers 200, POST /busy 503."""

    def __init__(self):
        import http.server
        import threading

        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hits.append((self.path, self.headers.get("Authorization"), body))
                self.send_response(200 if self.path.startswith("/ok") else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_the_notifications_tab_lists_deliveries(lab, page):
    """A failed run's notification to a local sink: the Notifications tab lists it sent,
    1 try, the destination masked; one to a sink answering 503 waits for its retry with
    the error; job and run open from a delivery; the job detail lists its own."""
    allow = "--HermesCron.allow_private_urls=True"  # the sink is on 127.0.0.1
    if allow not in lab.args:
        lab.args.append(allow)
        lab.restart()
        page.locator("[data-role='conn-banner']").wait_for(state="hidden", timeout=30_000)
        lost = page.locator(".jp-Dialog", has_text="Server Connection Error")
        if lost.count():
            lost.locator("button", has_text="Close").click()
    sink = _Sink()
    busy = None
    try:
        ok = lab.create("notify-fail", "@yearly", "echo oops; exit 2", policy={
            "notify": [f"json://sink-user:sink-sekret@127.0.0.1:{sink.port}/ok"],
            "notify_on": ["failure"]})
        busy = lab.create("notify-busy", "@yearly", "exit 3", policy={
            "notify": [f"json://busy-user:busy-sekret@127.0.0.1:{sink.port}/busy"]})
        page.locator(".jp-HermesCron-tab[data-tab='notifications']").click()
        view = page.locator("[data-role='notifications-view']")
        view.wait_for()
        # the runs fail while the tab is shown: the list follows the event feed
        run_id = lab.call(f"jobs/{ok['id']}/run", "POST")["id"]
        busy_run = lab.call(f"jobs/{busy['id']}/run", "POST")["id"]
        sent = view.locator(f".jp-HermesCron-delivery[data-status='sent']"
                            f":has([data-role='run-link'][title='Show run {run_id}'])")
        sent.wait_for(timeout=30_000)
        assert sent.locator("[data-role='event']").inner_text() == "failed"
        assert sent.locator("[data-role='job-link']").inner_text() == "notify-fail"
        assert sent.locator("[data-role='attempts']").inner_text() == "1 try"
        assert sent.locator("[data-role='delivery-status']").get_attribute("data-tone") == "ok"
        dest = sent.locator("[data-role='destination']").inner_text()
        api = lab.call("notifications", job="notify-fail")["notifications"]
        assert [n["destination"] for n in api] == [dest]
        assert f"127.0.0.1:{sink.port}" in dest and "sink-sekret" not in dest
        assert [h[0] for h in sink.hits].count("/ok") == 1

        waiting = view.locator(f".jp-HermesCron-delivery[data-status='pending']"
                               f":has([data-role='run-link'][title='Show run {busy_run}'])"
                               ":has([data-attempts='1'])")
        waiting.wait_for(timeout=30_000)
        assert "503" in waiting.locator("[data-role='error']").inner_text()
        assert waiting.locator("[data-role='next-try']").inner_text().startswith("next try")
        counts = view.locator("[data-role='counts']")
        counts.locator("[data-status='sent']").wait_for()
        html = page.content()
        assert "sink-sekret" not in html and "busy-sekret" not in html
        page.screenshot(path=str(ARTIFACTS / "panel-notifications.png"))

        # the status filter asks the server for those alone
        view.locator("[data-role='status-filter']").select_option("sent")
        view.locator(".jp-HermesCron-delivery[data-status='pending']").wait_for(state="detached")
        # (the list is read again: wait for it, not for its first instant)
        view.locator(".jp-HermesCron-delivery[data-status='sent']").first.wait_for(
            timeout=10_000)
        view.locator("[data-role='status-filter']").select_option("")

        # a delivery's run opens the run in the Jobs tab
        sent.locator("[data-role='run-link']").click()
        detail = page.locator(".jp-HermesCron-detail")
        detail.locator("[data-role='job-name']", has_text="notify-fail").wait_for(timeout=10_000)
        detail.locator(f".jp-HermesCron-output[data-run-id='{run_id}']").wait_for(
            timeout=10_000)
        # the job detail lists the job's own notifications; "All…" filters the tab by it
        mine = detail.locator("[data-role='job-notifications'] .jp-HermesCron-delivery")
        mine.first.wait_for(timeout=10_000)
        assert mine.count() == 1 and mine.first.get_attribute("data-status") == "sent"
        detail.locator("[data-action='all-notifications']").click()
        view.locator("[data-role='job-filter']", has_text="notify-fail").wait_for()
        wait_for(lambda: view.locator(".jp-HermesCron-delivery").count() == 1, 10,
                 what="the job's deliveries alone")
        view.locator("[data-action='clear-job-filter']").click()
        view.locator(".jp-HermesCron-delivery[data-status='pending']").first.wait_for(
            timeout=10_000)
        # and its job opens the job
        view.locator("[data-role='job-link']", has_text="notify-busy").first.click()
        detail.locator("[data-role='job-name']", has_text="notify-busy").wait_for(
            timeout=10_000)
    finally:
        sink.close()
        if busy:  # no retries left going
            lab.call(f"jobs/{busy['id']}", "DELETE")
        # the next tests start on the Jobs tab, whatever happened here
        page.locator(".jp-HermesCron-tab[data-tab='jobs']").click()


# -- definitions as code (issue 33) ----------------------------------------------------------

DEFS_YAML = textwrap.dedent("""\
    jobs:
      defs-one:
        schedule: '@yearly'
        timezone: UTC
        command: echo one
      defs-two:
        schedule: '@yearly'
        timezone: UTC
        command: echo two
    """)


def _close_dialog(pg) -> None:
    pg.locator(".jp-Dialog .jp-Dialog-button", has_text="Close").click()
    pg.locator(".jp-Dialog").wait_for(state="detached")


def test_import_definitions_plans_then_applies_and_marks_jobs_managed(lab, page):
    """Import…: the dry-run plan (+ create, ~ change field before → after), then Apply;
    the jobs are listed with the "managed by" badge; a bad file's error names the field;
    the edit form of a managed job warns that the next apply undoes the edit."""
    page.locator("[data-action='import']").click()
    dialog = page.locator(".jp-HermesCron-import")
    dialog.locator("[data-role='import-text']").fill(DEFS_YAML)
    dialog.locator("[data-action='plan']").click()
    plan = dialog.locator("[data-role='plan']")
    plan.locator("li[data-op='create'][data-job='defs-one']").wait_for(timeout=10_000)
    assert plan.locator("li[data-op='create']").count() == 2
    assert "+ create defs-two" in plan.inner_text()
    # a dry run: nothing created yet
    assert lab.error("jobs/defs-one")["code"] == "not_found"
    shot(page, "import-plan")
    dialog.locator("[data-action='apply']").click()
    dialog.locator("[data-role='applied']").wait_for(timeout=10_000)
    assert lab.call("jobs/defs-one")["managed_by"] == "jobs.yaml"

    # the same file, changed: the plan shows the field before -> after
    dialog.locator("[data-role='import-text']").fill(DEFS_YAML.replace("echo one", "echo uno"))
    assert dialog.locator("[data-action='apply']").is_disabled()  # the text changed: plan again
    dialog.locator("[data-action='plan']").click()
    change = plan.locator("li[data-op='change'][data-job='defs-one'] li[data-field='command']")
    change.wait_for(timeout=10_000)
    assert change.locator(".jp-HermesCron-diffBefore").inner_text() == "echo one"
    assert change.locator(".jp-HermesCron-diffAfter").inner_text() == "echo uno"
    assert "unchanged: defs-two" in dialog.locator("[data-role='plan-notes']").inner_text()
    # the server's refusal, in the dialog
    dialog.locator("[data-role='import-text']").fill(
        "jobs:\n  defs-bad:\n    schedule: 'not a schedule'\n    command: echo\n")
    dialog.locator("[data-action='plan']").click()
    error = dialog.locator("[data-role='import-error']")
    error.wait_for(timeout=10_000)
    assert "defs-bad" in error.inner_text(), error.inner_text()
    _close_dialog(page)

    for name in ("defs-one", "defs-two"):
        badge = job_item(page, name).locator("[data-role='managed']")
        badge.wait_for(timeout=10_000)
        assert badge.inner_text() == "jobs.yaml"
    detail = select(page, "defs-two")
    assert detail.locator("[data-role='managed-by']").inner_text() == "managed by jobs.yaml"
    # Export…: every job's YAML, or the selected job's alone
    page.locator("[data-action='export']").click()
    text = page.locator(".jp-HermesCron-export [data-role='export-text'][data-loaded='true']")
    text.wait_for(timeout=10_000)
    assert "defs-one:" in text.input_value() and "defs-two:" in text.input_value()
    page.locator(".jp-HermesCron-export [data-role='export-scope']").select_option("defs-two")
    text.wait_for(timeout=10_000)
    wait_for(lambda: "defs-one:" not in text.input_value(), 10, what="the job's export")
    assert "defs-two:" in text.input_value()
    _close_dialog(page)
    detail.locator("[data-action='edit']").click()
    form = page.locator(".jp-HermesCron-form")
    warning = form.locator("[data-role='managed-warning']")
    warning.wait_for()
    assert "next apply" in warning.inner_text()
    form.locator("[data-field='description']").fill("edited by hand")
    form.locator("[data-role='save']").dispatch_event("click")
    form.wait_for(state="detached")
    _toasts(page, "managed by jobs.yaml: the next apply will undo this edit").first.wait_for(
        timeout=10_000)
    shot(page, "managed")


def test_revisions_list_a_diff_and_revert(lab, page):
    """The Revisions section lists who changed what from where; a revision shows its
    diff; "Revert to this" (confirmed) restores the old value as a new revision."""
    job = lab.create("revised", "@yearly", "echo before")
    lab.call(f"jobs/{job['id']}", "PATCH", {"command": "echo after"})
    page.fill(".jp-HermesCron-filter", "revised")
    detail = select(page, "revised")
    section = detail.locator("[data-role='revisions']")
    section.locator("tr[data-rev='2']").wait_for(timeout=10_000)
    assert section.locator("tr[data-rev]").count() == 2
    row = section.locator("tr[data-rev='2']")
    assert row.locator("[data-role='origin']").inner_text() == "rest"
    row.click()
    diff = section.locator("[data-detail-rev='2'] li[data-field='command']")
    diff.wait_for()
    assert diff.locator(".jp-HermesCron-diffBefore").inner_text() == "echo before"
    assert diff.locator(".jp-HermesCron-diffAfter").inner_text() == "echo after"
    section.locator("tr[data-rev='1']").click()
    section.locator("[data-detail-rev='1'] [data-action='revert']").click()
    page.locator(".jp-Dialog .jp-Dialog-button", has_text="Revert").click()
    new = section.locator("tr[data-rev='3']")
    new.wait_for(timeout=10_000)
    assert new.locator("[data-role='origin']").inner_text() == "panel"
    # what the revert restored: the revision (when the server says) or the fields
    assert new.locator("[data-role='action']").inner_text() in (
        "revert to rev 1", "revert: command")
    assert lab.call(f"jobs/{job['id']}")["command"] == job["command"]
    shot(page, "revisions")
    page.fill(".jp-HermesCron-filter", "")


def test_a_run_header_shows_its_revision(lab, page):
    """The run view says which revision the run ran, the file's short sha256 (full in
    its title), and "older revision" once the job has changed since."""
    script = lab.root / "versioned.py"
    script.write_text("print('hi')\n")
    job = lab.create("versioned", "@yearly", str(script), kind="python")
    run_id = lab.call(f"jobs/{job['id']}/run", "POST")["id"]
    wait_for(lambda: _ended(lab, run_id), 30, 0.2, "the run to end")
    run = lab.call(f"runs/{run_id}")
    assert run["job_version"] == 1
    page.fill(".jp-HermesCron-filter", "versioned")
    detail = select(page, "versioned")
    detail.locator(f"tr[data-run-id='{run_id}']").click()
    head = detail.locator(
        f".jp-HermesCron-output[data-run-id='{run_id}'] [data-role='run-revision']")
    head.locator("[data-role='run-rev']").wait_for(timeout=10_000)
    assert head.locator("[data-role='run-rev']").inner_text() == "rev 1"
    if run["file_sha256"]:
        sha = head.locator("[data-role='run-sha']")
        assert sha.inner_text() == f"sha256 {run['file_sha256'][:8]}…"
        assert run["file_sha256"] in sha.get_attribute("title")
    assert head.locator("[data-role='run-older']").count() == 0
    # the job changes: the run now ran an older revision (the shown header says so)
    lab.call(f"jobs/{job['id']}", "PATCH", {"description": "v2"})
    older = head.locator("[data-role='run-older']")
    older.wait_for(timeout=10_000)
    assert older.inner_text() == "older revision"
    assert run["file_sha256"], "a python file's run records its sha256"
    shot(page, "run-revision")
    page.fill(".jp-HermesCron-filter", "")


# -- across runs (issue 34) ------------------------------------------------------------------


def _run_and_wait(lab, job_id: str) -> str:
    run_id = lab.call(f"jobs/{job_id}/run", "POST")["id"]
    wait_for(lambda: _ended(lab, run_id), 30, 0.2, "the run to end")
    return run_id


def _tab(pg, name: str):
    pg.locator(f".jp-HermesCron-tab[data-tab='{name}']").click()


def _left(bar) -> float:
    return float(bar.evaluate("el => parseFloat(el.style.left)"))


def test_the_timeline_draws_runs_as_bars_and_a_bar_opens_its_run(lab, page):
    """The Timeline tab: a row per job, a bar per run coloured by its outcome, a skipped
    run as a point, the coming slots as ticks; the wheel zooms around the pointer and ‹
    pans, each reading the visible range again; clicking a bar opens that run in the
    job's detail."""
    # every second, each run 2 s: under "forbid" the slots in between are skipped
    busy = lab.create("tl-skip", "@every 1s", "sleep 2")
    ok = lab.create("tl-ok", "0 * * * *", "echo timeline ok")
    bad = lab.create("tl-bad", "@yearly", "echo timeline bad; exit 3")
    try:
        ok_run = _run_and_wait(lab, ok["id"])
        bad_run = _run_and_wait(lab, bad["id"])
        skipped = wait_for(lambda: lab.call(f"jobs/{busy['id']}/runs", status="skipped")[
            "runs"], 30, 0.2, "a skipped slot")[0]
        lab.call(f"jobs/{busy['id']}/pause", "POST")
        _tab(page, "timeline")
        view = page.locator("[data-role='timeline-view']")
        bar = view.locator(f".jp-HermesCron-tlRow[data-job='tl-ok'] "
                           f".jp-HermesCron-tlBar[data-run-id='{ok_run}']")
        bar.wait_for(timeout=15_000)
        assert bar.get_attribute("data-status") == "succeeded"
        assert bar.get_attribute("data-tone") == "ok"
        failed = view.locator(f".jp-HermesCron-tlRow[data-job='tl-bad'] "
                              f".jp-HermesCron-tlBar[data-run-id='{bad_run}']")
        assert failed.get_attribute("data-status") == "failed"
        assert failed.get_attribute("data-tone") == "bad"
        point = view.locator(f".jp-HermesCron-tlRow[data-job='tl-skip'] "
                             f".jp-HermesCron-tlBar[data-run-id='{skipped['id']}']")
        point.wait_for(timeout=10_000)
        assert point.get_attribute("data-status") == "skipped"
        assert "jp-mod-point" in point.get_attribute("class")
        assert "skipped" in point.get_attribute("title").lower()
        # an hourly job's coming slots (the next 6 hours are shown)
        slots = view.locator(".jp-HermesCron-tlRow[data-job='tl-ok'] [data-role='slot']")
        assert slots.count() >= 5, slots.count()

        # the wheel over the bar zooms in around it: it stays, the range is read again
        bar.scroll_into_view_if_needed()
        before = bar.bounding_box()
        span0 = view.evaluate("el => Number(el.dataset.to) - Number(el.dataset.from)")
        page.mouse.move(before["x"] + 1, before["y"] + before["height"] / 2)
        for _ in range(12):
            page.mouse.wheel(0, -120)
        wait_for(lambda: view.evaluate(
            "el => Number(el.dataset.to) - Number(el.dataset.from)") < span0 / 2, 10,
            what="the zoom")
        wait_for(lambda: view.get_attribute("data-loaded") == "true" and view.get_attribute(
            "data-loaded-from") == view.get_attribute("data-from"), 10,
            what="the zoomed range read again")
        bar.wait_for()
        shot(page, "timeline")
        # ‹ pans to earlier times: the bar moves right
        x0 = _left(bar)
        view.locator("[data-action='pan-left']").click()
        wait_for(lambda: _left(bar) > x0, 10, what="the bar to move right")
        wait_for(lambda: view.get_attribute("data-loaded") == "true" and view.get_attribute(
            "data-loaded-from") == view.get_attribute("data-from"), 10,
            what="the panned range read again")
        # a status filter asks the server for those runs alone
        view.locator("[data-role='timeline-status']").select_option("failed")
        view.locator(f".jp-HermesCron-tlBar[data-run-id='{ok_run}']").wait_for(
            state="detached", timeout=10_000)
        view.locator("[data-role='timeline-status']").select_option("")
        view.locator("[data-action='now']").click()
        bar.wait_for(timeout=10_000)
        bar.click()
        detail = page.locator(".jp-HermesCron-detail")
        detail.locator("[data-role='job-name']", has_text="tl-ok").wait_for(timeout=10_000)
        detail.locator(f".jp-HermesCron-output[data-run-id='{ok_run}']").wait_for(
            timeout=10_000)
        assert page.locator(".jp-HermesCron-panel").get_attribute("data-tab") == "jobs"
    finally:
        page.locator(".jp-HermesCron-tab[data-tab='jobs']").click()
        for job in (ok, bad, busy):
            lab.call(f"jobs/{job['id']}", "DELETE")


def test_search_finds_a_line_and_opens_the_output_at_it(lab, page):
    """A word printed by one run, in the middle of 400 lines: the Search tab finds that
    run alone, the line with its context and the word marked; clicking it opens the
    run's output scrolled to that line, marked."""
    job = lab.create("searched", "@yearly",
                     "seq 1 300; echo 'found needle-zebra-42 here'; seq 301 400")
    run_id = _run_and_wait(lab, job["id"])
    offset = len("".join(f"{i}\n" for i in range(1, 301)).encode())
    try:
        _tab(page, "search")
        view = page.locator("[data-role='search-view']")
        view.locator("[data-role='search-query']").fill("zebra")
        view.locator("[data-role='search-query']").press("Enter")
        hit = view.locator(f".jp-HermesCron-hit[data-run-id='{run_id}']")
        hit.wait_for(timeout=15_000)
        assert view.locator(".jp-HermesCron-hit").count() == 1
        match = hit.locator("[data-role='match']").first
        assert int(match.get_attribute("data-offset")) == offset
        assert match.locator("[data-role='match-line']").inner_text() == \
            "found needle-zebra-42 here"
        assert match.locator("mark").all_inner_texts() == ["zebra"]
        assert "300" in match.inner_text() and "301" in match.inner_text()  # context
        shot(page, "search")
        match.click()
        detail = page.locator(".jp-HermesCron-detail")
        output = detail.locator(f".jp-HermesCron-output[data-run-id='{run_id}']")
        target = output.locator("[data-role='target-line']")
        target.wait_for(timeout=15_000)
        assert target.inner_text() == "found needle-zebra-42 here"
        assert target.get_attribute("data-offset") == str(offset)
        # scrolled to: the line is inside the output's visible box
        wait_for(lambda: _inside(target, output.locator(".jp-HermesCron-scroller")), 5,
                 what="the line scrolled into view")
        shot(page, "search-opened")
        # the status filter: the run succeeded, so no failed run prints it
        _tab(page, "search")
        view.locator("[data-role='search-status']").select_option("failed")
        view.locator("[data-role='search-empty']").wait_for(timeout=10_000)
        view.locator("[data-role='search-status']").select_option("")
        view.locator("[data-role='search-job']").fill("searched")
        view.locator("[data-role='search-query']").press("Enter")
        hit.wait_for(timeout=10_000)
        view.locator("[data-role='search-job']").fill("")
        # nothing matches: says so
        view.locator("[data-role='search-query']").fill("nosuchwordanywhere")
        view.locator("[data-role='search-query']").press("Enter")
        view.locator("[data-role='search-empty']").wait_for(timeout=10_000)
    finally:
        page.locator(".jp-HermesCron-tab[data-tab='jobs']").click()
        lab.call(f"jobs/{job['id']}", "DELETE")


def test_a_search_hit_in_a_long_log_opens_the_output_at_its_line(lab, page):
    """A word near the start (line 50) of a 20,500-line log: opened from the search hit,
    the pane reads from a little before the line (not from the start, whose last 5,000
    lines would have dropped it), marks it and scrolls to it; the earlier output loads on
    demand and the line stays put; the rest is read a page at a time ("Load more"), and
    "Jump to latest" reads on to the end."""
    program = ('awk \'BEGIN{p=sprintf("%2000s",""); gsub(/ /,"x",p); '
               'for(i=1;i<=20500;i++){ if(i==50) print "found needle-walrus-77 here"; '
               'else if(i<50) print i, p; else print i }}\'')
    job = lab.create("long-searched", "@yearly", program)
    run_id = _run_and_wait(lab, job["id"])
    offset = len("".join(f"{i} {'x' * 2000}\n" for i in range(1, 50)).encode())
    try:
        _tab(page, "search")
        view = page.locator("[data-role='search-view']")
        view.locator("[data-role='search-query']").fill("walrus")
        view.locator("[data-role='search-query']").press("Enter")
        hit = view.locator(f".jp-HermesCron-hit[data-run-id='{run_id}']")
        hit.wait_for(timeout=15_000)
        match = hit.locator("[data-role='match']").first
        assert int(match.get_attribute("data-offset")) == offset
        match.click()
        output = page.locator(
            f".jp-HermesCron-detail .jp-HermesCron-output[data-run-id='{run_id}']")
        scroller = output.locator(".jp-HermesCron-scroller")
        target = output.locator("[data-role='target-line']")
        target.wait_for(timeout=15_000)
        assert target.inner_text() == "found needle-walrus-77 here"
        assert target.get_attribute("data-offset") == str(offset)
        wait_for(lambda: _inside(target, scroller), 5, what="the line scrolled into view")
        # read from a line start at most 64 KiB before the hit: some long lines, not all
        start = int(output.get_attribute("data-start"))
        assert 0 < start < offset and offset - start <= 64 * 1024
        lines = output.locator(".jp-HermesCron-line")
        first = lines.first.inner_text()
        assert first.endswith("x" * 2000) and int(first.split()[0]) > 1
        earlier = output.locator("[data-role='earlier-output']")
        assert earlier.is_visible()
        assert f"{start:,} bytes before" in earlier.inner_text()
        # a page of lines, not the whole log: the rest waits for "Load more"
        more = output.locator("[data-role='more-output']")
        more.wait_for(timeout=10_000)
        shown = lines.count()
        assert 2000 <= shown < 5000
        assert output.locator(".jp-HermesCron-line", has_text="20500").count() == 0
        shot(page, "search-long-opened")
        # the earlier output, on demand: down to line 1, what was on screen staying put
        scroller.evaluate("s => { s.scrollTop = 0; }")
        old_first = output.locator(f".jp-HermesCron-line[data-offset='{start}']")
        y = old_first.bounding_box()["y"]
        earlier.locator("[data-action='load-earlier']").click()
        wait_for(lambda: output.get_attribute("data-start") == "0", 10,
                 what="the earlier output loaded")
        assert earlier.is_hidden()
        assert lines.first.inner_text() == "1 " + "x" * 2000
        assert lines.nth(48).inner_text().startswith("49 ")
        assert lines.nth(49).inner_text() == "found needle-walrus-77 here"
        assert output.locator("[data-role='target-line']").count() == 1
        assert abs(old_first.bounding_box()["y"] - y) < 2
        assert old_first.inner_text().startswith(first.split()[0] + " ")
        # "Load more" reads another page
        before = lines.count()
        more.locator("[data-action='load-more']").click()
        wait_for(lambda: lines.count() >= before + 2000, 10, what="another page")
        # "Jump to latest": on to the end of the log, followed
        output.locator(".jp-HermesCron-jump").click()
        output.locator(".jp-HermesCron-line", has_text="20500").first.wait_for(timeout=20_000)
        wait_for(lambda: output.get_attribute("data-ended") == "true", 10, what="the end")
        assert more.is_hidden()
        assert output.locator("[data-role='target-line']").count() == 0  # dropped (5,000 kept)
        # the hit again, in the same pane: its line is read once more and marked
        _tab(page, "search")
        match.click()
        target.wait_for(timeout=15_000)
        assert target.inner_text() == "found needle-walrus-77 here"
        wait_for(lambda: _inside(target, scroller), 5, what="the line scrolled into view again")
        assert int(output.get_attribute("data-start")) == start
    finally:
        page.locator(".jp-HermesCron-tab[data-tab='jobs']").click()
        lab.call(f"jobs/{job['id']}", "DELETE")


def _inside(el, box) -> bool:
    a, b = el.bounding_box(), box.bounding_box()
    return bool(a and b and a["y"] >= b["y"] and a["y"] + a["height"] <= b["y"] + b["height"])


def test_a_jobs_calendar_shows_todays_runs(lab, page):
    """A job's detail has its last 90 days, a cell per day: today's has its two runs
    (one failed) in its title and colour."""
    job = lab.create("calendared", "@yearly",
                     f"test -f {lab.tmp}/cal-once && exit 1; touch {lab.tmp}/cal-once")
    _run_and_wait(lab, job["id"])
    _run_and_wait(lab, job["id"])
    page.fill(".jp-HermesCron-filter", "calendared")
    try:
        detail = select(page, "calendared")
        cal = detail.locator("[data-role='calendar']")
        grid = cal.locator("[data-role='calendar-grid']")
        grid.wait_for(timeout=10_000)
        assert grid.locator(".jp-HermesCron-calDay").count() == 90
        today = lab.call(f"jobs/{job['id']}/calendar", days=1)["days"][0]["day"]
        cell = grid.locator(f"[data-day='{today}']")
        wait_for(lambda: cell.get_attribute("data-total") == "2", 10, what="today's 2 runs")
        assert cell.get_attribute("data-outcome") == "mixed"
        assert cell.get_attribute("title") == f"{today}: 2 runs (1 succeeded, 1 failed)"
        # today is the last cell: every other day is empty
        assert grid.locator("[data-total='0']").count() == 89
        cal.scroll_into_view_if_needed()
        shot(page, "calendar")
    finally:
        page.fill(".jp-HermesCron-filter", "")
        lab.call(f"jobs/{job['id']}", "DELETE")


def test_compare_two_runs_shows_the_changed_line(lab, page):
    """"Compare" on a run, then "With this" on another: the diff view says which fields
    differ and shows the output's changed line, removed and added."""
    marker = lab.tmp / "cmp-once"
    job = lab.create("compared", "@yearly",
                     f"echo start; if test -f {marker}; then echo colour=blue; c=4; "
                     f"else touch {marker}; echo colour=red; c=0; fi; echo end; exit $c")
    first = _run_and_wait(lab, job["id"])
    second = _run_and_wait(lab, job["id"])
    page.fill(".jp-HermesCron-filter", "compared")
    try:
        detail = select(page, "compared")
        detail.locator(f"tr[data-run-id='{second}']").wait_for(timeout=10_000)
        detail.locator(f"tr[data-run-id='{first}'] [data-action='compare']").click()
        detail.locator("[data-role='compare-hint']").wait_for()
        with_this = detail.locator(f"tr[data-run-id='{second}'] [data-action='compare']")
        assert with_this.inner_text() == "With this"
        with_this.click()
        view = detail.locator(f"[data-role='run-diff'][data-a='{first}'][data-b='{second}']")
        view.locator("[data-role='diff-body']").wait_for(timeout=15_000)
        assert view.locator("[data-role='run-a']").get_attribute("data-run-id") == first
        status = view.locator("[data-role='diff-fields'] tr[data-field='status']")
        assert status.locator(".jp-HermesCron-diffAfter").inner_text() == "failed"
        lines = "[data-role='unified'] .jp-HermesCron-diffLine"
        dels = view.locator(f"{lines}[data-kind='del']").all_inner_texts()
        adds = view.locator(f"{lines}[data-kind='add']").all_inner_texts()
        assert "-colour=red" in dels and "+colour=blue" in adds, (dels, adds)
        assert not [x for x in dels + adds if "start" in x or x.endswith("end")]
        assert view.locator("[data-role='diff-counts']").inner_text().startswith("+")
        view.scroll_into_view_if_needed()
        shot(page, "diff")
        view.locator("[data-action='close-diff']").click()
        view.wait_for(state="detached")
    finally:
        page.fill(".jp-HermesCron-filter", "")
        lab.call(f"jobs/{job['id']}", "DELETE")



def _png(rgb: tuple[int, int, int]) -> str:
    """A 4x4 PNG of one colour, base64."""
    import base64
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    rows = b"".join(b"\0" + bytes(rgb) * 4 for _ in range(4))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return base64.b64encode(png).decode()


def test_compare_two_notebook_runs_shows_their_changed_cells(lab, page):
    """Two runs of a notebook given different parameters: Compare shows the changed
    cells, the printed line and the image of each run side by side."""
    pngs = {1: _png((200, 0, 0)), 2: _png((0, 0, 200))}
    cells = [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None,
         "outputs": [], "source": "n = 1\n"},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
         "source": "print('shade', n)"},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ("import base64\nfrom IPython.display import Image, display\n"
                    f"PNGS = {pngs!r}\ndisplay(Image(data=base64.b64decode(PNGS[n])))")},
    ]
    (lab.root / "shades.ipynb").write_text(json.dumps({
        "cells": cells, "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}}}))
    job = lab.create("shades-nb", "@yearly", str(lab.root / "shades.ipynb"), kind="notebook")
    runs = []
    for n in (1, 2):
        run_id = lab.call(f"jobs/{job['id']}/run", "POST", {"parameters": {"n": n}})["id"]
        wait_for(lambda r=run_id: _ended(lab, r), 90, 0.2, "the notebook run to end")
        done = lab.call(f"runs/{run_id}")
        assert done["status"] == "succeeded", done
        runs.append(run_id)
    page.fill(".jp-HermesCron-filter", "shades-nb")
    try:
        detail = select(page, "shades-nb")
        detail.locator(f"tr[data-run-id='{runs[1]}']").wait_for(timeout=10_000)
        detail.locator(f"tr[data-run-id='{runs[0]}'] [data-action='compare']").click()
        detail.locator(f"tr[data-run-id='{runs[1]}'] [data-action='compare']").click()
        view = detail.locator("[data-role='run-diff'] [data-role='diff-body']")
        view.wait_for(timeout=20_000)
        cells_view = view.locator("[data-role='diff-cells']")
        # the injected parameters: the source diff
        adds = cells_view.locator(".jp-HermesCron-diffLine[data-kind='add']").all_inner_texts()
        assert "+n = 2" in adds, adds
        printed = cells_view.locator(".jp-HermesCron-diffOutput[data-mime$='stdout']")
        sides = printed.locator(".jp-HermesCron-diffSide").all_inner_texts()
        assert [x.strip() for x in sides] == ["shade 1", "shade 2"]
        image = cells_view.locator(".jp-HermesCron-diffOutput[data-mime='image/png']")
        assert image.count() == 1
        srcs = image.locator("img").evaluate_all("els => els.map(e => e.src)")
        assert srcs == [f"data:image/png;base64,{pngs[1]}", f"data:image/png;base64,{pngs[2]}"]
        assert image.locator("img").first.evaluate("el => el.naturalWidth") == 4
        image.scroll_into_view_if_needed()
        shot(page, "diff-notebook")
    finally:
        page.fill(".jp-HermesCron-filter", "")
        lab.call(f"jobs/{job['id']}", "DELETE")

def test_the_audit_view_lists_an_edit_and_verifies_the_chain(lab, page):
    """The Audit tab (the server's own user is its admin): newest first, an edit made
    over REST with who, where from, what and which job; Verify says the chain is ok."""
    job = lab.create("audited", "@yearly", "echo audited")
    lab.call(f"jobs/{job['id']}", "PATCH", {"description": "changed for the audit"})
    try:
        tab = page.locator(".jp-HermesCron-tab[data-tab='audit']")
        assert tab.is_visible()
        tab.click()
        view = page.locator("[data-role='audit-view']")
        edit = view.locator(".jp-HermesCron-auditRecord[data-action='edit']",
                            has=page.locator("[data-role='audit-job']", has_text="audited"))
        edit.first.wait_for(timeout=10_000)
        assert edit.first.locator("[data-role='origin']").inner_text() == "rest"
        assert "changed: description" in edit.first.locator("[data-role='detail']").inner_text()
        seqs = [int(s) for s in view.locator(".jp-HermesCron-auditRecord").evaluate_all(
            "els => els.map(e => e.dataset.seq)")]
        assert seqs == sorted(seqs, reverse=True) and len(seqs) >= 2
        view.locator("[data-action='verify']").click()
        result = view.locator("[data-role='verify-result'][data-ok='true']")
        result.wait_for(timeout=10_000)
        assert result.inner_text().startswith("✓ ok")
        shot(page, "audit")
    finally:
        page.locator(".jp-HermesCron-tab[data-tab='jobs']").click()
        lab.call(f"jobs/{job['id']}", "DELETE")
