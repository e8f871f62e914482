"""The side panel of a JupyterHub user, in a real browser, through a real hub and its
real proxy, with nothing set up by the user.

configurable-http-proxy (JupyterHub's default proxy, a node program) stands in front,
as on a real hub: one origin for ``/hub/``, ``/user/NAME/`` and
``/services/hermes-cron/``. It is installed at test time from the project's own
``tests/hub_proxy/package.json`` and ``package-lock.json`` (``npm ci --prefix
build/chp``, once; reused while the lock is unchanged), and the hub starts it
(``c.ConfigurableHTTPProxy.command``).

hb-alice (a hub user and a Unix account) logs in at ``/hub/login`` as a person would
(the DummyAuthenticator); the hub spawns her server (LocalProcessSpawner, as her);
in JupyterLab she opens the hermes-cron panel, makes a job with its form, runs one
and watches its output arrive live; hb-bob's job is not listed. Her server is then
stopped the way the idle culler stops it; meanwhile her job fires on its schedule,
and another run starts. She logs in again: the run that happened while her server
was down is listed with its output, the one still running streams live, and the
detail names her as the owner. Screenshot: ``tests/artifacts/panel-hub.png``.

Needs root (Unix accounts, a sudoers file), sudo, Chromium, node and npm (and the
npm registry, the first time)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import filecmp
import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pytest

pytest.importorskip("jupyterhub")
pytest.importorskip("jupyterlab")

from tests.hub_support import (  # noqa: E402
    call,
    free_port,
    proc_uids,
    running_hub,
    wait_until,
)

CHROMIUM = os.environ.get("HERMES_CRON_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
#: the proxy's package files (committed) and where npm installs them (not committed)
CHP_SOURCE = ROOT / "tests" / "hub_proxy"
CHP_PREFIX = ROOT / "build" / "chp"

pytestmark = [
    pytest.mark.accounts,  # make accounts (and .ci/run), not the normal suite
    pytest.mark.timeout(300),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: it makes Unix accounts and "
                                                 "a sudoers file, and spawns servers as "
                                                 "those accounts"),
    pytest.mark.skipif(shutil.which("sudo") is None or shutil.which("useradd") is None,
                       reason="needs sudo and useradd (.ci/run installs sudo)"),
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"),
    pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                       reason="needs node and npm: configurable-http-proxy, the hub's "
                              "proxy, is a node program"),
]

playwright_sync = pytest.importorskip("playwright.sync_api")

ALICE, BOB, GROUP = "hb-alice", "hb-bob", "hb-users"
HELPER = [sys.executable, "-I", "-m", "hermes_cron_ext.runtime.runas", "serve"]
#: a run that prints a numbered line every 0.3 s until the test lets it finish (it
#: makes ~/hb-done; at most 2 minutes)
LIVE = ('i=0; while [ ! -e "$HOME/hb-done" ] && [ $i -lt 400 ]; do i=$((i+1)); '
        'echo "line $i from $(id -un)"; sleep 0.3; done; rm -f "$HOME/hb-done"; echo finished')


@pytest.fixture
def jp_asyncio_loop():
    """pytest-jupyter's autouse loop fixture would close Playwright's running loop: not here."""
    yield None


@pytest.fixture
def jp_server_cleanup():
    """No in-process ServerApp in this module."""
    yield


# -- configurable-http-proxy, from the project's own lock --------------------------------


def configurable_http_proxy() -> str:
    """The proxy's executable under build/chp, installed with ``npm ci`` from
    tests/hub_proxy when missing or when the committed lock changed (under a lock: two
    sessions may run this at once)."""
    exe = CHP_PREFIX / "node_modules" / ".bin" / "configurable-http-proxy"
    CHP_PREFIX.mkdir(parents=True, exist_ok=True)
    with open(CHP_PREFIX.parent / "chp.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        installed = CHP_PREFIX / "package-lock.json"
        if exe.exists() and installed.exists() and \
                filecmp.cmp(installed, CHP_SOURCE / "package-lock.json", shallow=False):
            return str(exe)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(CHP_SOURCE / name, CHP_PREFIX / name)
        done = subprocess.run(
            ["npm", "ci", "--prefix", str(CHP_PREFIX), "--no-audit", "--no-fund",
             "--loglevel=error"], capture_output=True, text=True, timeout=300)
        if done.returncode != 0 or not exe.exists():
            installed.unlink(missing_ok=True)  # not taken as installed next time
            pytest.fail(f"npm ci of configurable-http-proxy (tests/hub_proxy) failed:\n"
                        f"{done.stdout}\n{done.stderr}", pytrace=False)
        return str(exe)


# -- the Unix accounts ---------------------------------------------------------------------


def _pids_of(uid: int) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError, AssertionError):
                if proc_uids(int(name))[0] == uid:
                    pids.append(int(name))
    return pids


def _drop_accounts() -> None:
    """hb-alice and hb-bob, what still runs as them (their servers and runs: ours), and
    their group."""
    for name in (ALICE, BOB):
        try:
            uid = pwd.getpwnam(name).pw_uid
        except KeyError:
            continue
        for pid in _pids_of(uid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["userdel", "-r", name], capture_output=True, check=False)
    subprocess.run(["groupdel", GROUP], capture_output=True, check=False)


def _stop_proxy(pid: int | None) -> None:
    """The proxy runs in a session of its own: if the hub did not stop it, we do."""
    if pid is None:
        return
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"configurable-http-proxy" in f.read():
                os.kill(pid, signal.SIGTERM)


@pytest.fixture(scope="module")
def deployment():
    """The hub behind configurable-http-proxy, its service with run-as, and hb-alice and
    hb-bob: ``(hub, info)``; *info* has the public URL (the proxy's) and the homes."""
    chp = configurable_http_proxy()
    _drop_accounts()  # what a killed earlier run left
    homes = tempfile.mkdtemp(prefix="hb-homes-")
    os.chmod(homes, 0o755)
    etc = tempfile.mkdtemp(prefix="hb-etc-")  # root's, 0755: the helper's configuration
    os.chmod(etc, 0o755)
    sudoers = f"/etc/sudoers.d/hermes-cron-browser-test-{os.getpid()}"
    public_port, api_port = free_port(), free_port()
    public = f"http://127.0.0.1:{public_port}"
    proxy_pid = None
    try:
        subprocess.run(["groupadd", GROUP], check=True, capture_output=True)
        for name in (ALICE, BOB):
            home = f"{homes}/{name}"
            subprocess.run(["useradd", "-m", "-d", home, "-s", "/bin/sh", "-G", GROUP,
                            name], check=True, capture_output=True)
            os.chmod(home, 0o700)
            # no "get notified about Jupyter news?" toast over the screenshot (her own
            # Lab settings, as she would answer it)
            labconfig = Path(home, ".jupyter", "labconfig")
            labconfig.mkdir(parents=True)
            (labconfig / "page_config.json").write_text(json.dumps(
                {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
            account = pwd.getpwnam(name)
            subprocess.run(["chown", "-R", f"{account.pw_uid}:{account.pw_gid}",
                            f"{home}/.jupyter"], check=True)
        config = os.path.join(etc, "runas.json")

        def extra(hub: dict) -> str:
            with open(config, "w") as f:
                json.dump({"store": hub["store"], "allow_groups": [GROUP]}, f)
            account = hub["account"].pw_name
            with open(sudoers, "w") as f:  # the deployment's sudoers line, and the test's
                f.write(f'Defaults:{account} env_keep += "HERMES_CRON_RUNAS_CONFIG"\n'
                        f"{account} ALL=(root) NOPASSWD: {shlex.join(HELPER)}\n")
            os.chmod(sudoers, 0o440)
            # a real proxy instead of hub_support's in-memory one (a later setting wins)
            return f"""
c.JupyterHub.proxy_class = "configurable-http-proxy"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.JupyterHub.port = {public_port}
c.Spawner.cmd = [{sys.executable!r}, "-m", "jupyterhub.singleuser"]
c.Spawner.ip = "127.0.0.1"
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90
c.Spawner.environment = {{"HERMES_CRON_URL": {hub["service_url"]!r}}}
c.Spawner.server_token_scopes = [
    "users:activity!user", "access:servers!server", "access:services!service=hermes-cron"]
"""
        env = {"HERMES_CRON_RUN_AS": shlex.join(["sudo", "-n", *HELPER]),
               "HERMES_CRON_RUNAS_CONFIG": config}
        with running_hub(extra=extra, service_env=env) as hub:
            with contextlib.suppress(OSError, ValueError):
                proxy_pid = int(Path(hub.base, "hub", "jupyterhub-proxy.pid").read_text())
            # the hub and the service answer through the proxy
            wait_until(lambda: call(f"{public}/hub/api/")[0] == 200, 30, "the proxy")
            assert call(f"{public}/services/hermes-cron/api/cron/status")[0] == 401
            for name in (ALICE, BOB):
                assert hub.admin(f"/users/{name}", "POST", {})[0] == 201
                hub.tokens[name] = hub.token_for(name)
            yield hub, {"public": public, "homes": homes}
    finally:
        _stop_proxy(proxy_pid)
        if os.path.exists(sudoers):
            os.unlink(sudoers)
        _drop_accounts()
        shutil.rmtree(homes, ignore_errors=True)
        shutil.rmtree(etc, ignore_errors=True)


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


# -- what a person does --------------------------------------------------------------------


def log_in_and_open_the_panel(browser, public: str, user: str):
    """A new browser session: /hub/login, any password; the hub spawns the server and
    sends the browser to it; JupyterLab; the hermes-cron panel. ``(context, page)``."""
    context = browser.new_context(viewport={"width": 1400, "height": 900},
                                  device_scale_factor=1)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(f"{public}/hub/login", wait_until="domcontentloaded")
    page.fill("#username_input", user)
    page.fill("#password_input", "anything")
    page.locator("#login_submit").click()
    # spawn-pending, then the server's OAuth round trip with the hub, then Lab
    page.wait_for_url(f"{public}/user/{user}/lab**", timeout=90_000)
    # Lab restores her last layout (the panel open, the second time) before its splash
    # screen goes: the panel's tab opens it only if that did not
    page.locator('li[data-id="hermes-cron-panel"]').wait_for(timeout=90_000)
    page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=60_000)
    if not page.locator(".jp-HermesCron-panel").is_visible():
        page.locator('li[data-id="hermes-cron-panel"]').click()
    page.locator(".jp-HermesCron-panel[data-loaded='true']").wait_for(timeout=30_000)
    # a wider side bar, as a user would drag it
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 300)
    page.mouse.down()
    page.mouse.move(box["x"] + 220, box["y"] + 300, steps=5)
    page.mouse.up()
    return context, page


def job_item(page, name: str):
    return page.locator(f'.jp-HermesCron-job[data-name="{name}"]')


def select(page, name: str):
    job_item(page, name).click()
    page.locator(".jp-HermesCron-detail [data-role='job-name']", has_text=name).wait_for()
    return page.locator(".jp-HermesCron-detail")


def new_job_with_the_form(page, name: str, schedule: str, command: str) -> None:
    page.keyboard.press("Control+Shift+C")
    page.locator(".lm-CommandPalette-input").fill("New Cron Job")
    page.keyboard.press("Enter")
    form = page.locator(".jp-HermesCron-form")
    form.wait_for()
    form.locator("[data-field='name']").fill(name)
    form.locator("[data-field='command']").fill(command)
    form.locator("[data-field='schedule']").fill(schedule)
    form.locator("[data-field='timezone']").fill("UTC")
    form.locator("[data-role='preview'][data-state='ok']").wait_for(timeout=15_000)
    form.locator("[data-role='save']").click()
    form.wait_for(state="detached", timeout=15_000)
    job_item(page, name).wait_for(timeout=15_000)


def lines_of(terminal) -> list[str]:
    return [ln for ln in terminal.inner_text().splitlines() if ln.strip()]


def finish_live_run(homes: str) -> None:
    """Let the running LIVE run end (it looks for ~/hb-done, as hb-alice)."""
    done = Path(homes, ALICE, "hb-done")
    done.touch()
    account = pwd.getpwnam(ALICE)
    os.chown(done, account.pw_uid, account.pw_gid)


# -- the test ------------------------------------------------------------------------------


def test_a_hub_users_panel_through_the_hub_and_after_her_server_was_culled(
        deployment, browser):
    hub, info = deployment
    public, homes = info["public"], info["homes"]
    alice, bob = hub.tokens[ALICE], hub.tokens[BOB]
    status, bobs = hub.cron("api/cron/jobs", bob, "POST", {
        "name": "bob-private", "schedule": "@yearly", "command": "echo bob's"})
    assert status == 201, bobs

    context, page = log_in_and_open_the_panel(browser, public, ALICE)
    new_job_with_the_form(page, "hb-live", "@yearly", LIVE)
    new_job_with_the_form(page, "hb-tick", "@every 3s", 'echo "tick from $(id -un)"')
    status, page_of_jobs = hub.cron("api/cron/jobs", alice)
    mine = {j["name"]: j for j in page_of_jobs["jobs"]}
    assert set(mine) == {"hb-live", "hb-tick"}, page_of_jobs
    assert {j["owner"] for j in mine.values()} == {ALICE}
    live, tick = mine["hb-live"], mine["hb-tick"]
    # bob's job exists, and is not hers to see, in the list or by its events
    wait_until(lambda: page.locator("[data-role='count']").inner_text() == "2", 10,
               "the panel to count her two jobs")
    assert job_item(page, "bob-private").count() == 0
    assert hub.cron(f"api/cron/jobs/{bobs['id']}/pause", bob, "POST")[0] == 200

    # run now: its output arrives live, through the proxy, her server and the service
    detail = select(page, "hb-live")
    detail.locator("[data-role='owner']", has_text=ALICE).wait_for(timeout=10_000)
    detail.locator("[data-action='run']").click()
    output = page.locator(".jp-HermesCron-outputBox .jp-HermesCron-output")
    terminal = output.locator(".jp-HermesCron-terminal")
    terminal.locator(".jp-HermesCron-line", has_text="line 3 from hb-alice").wait_for(
        timeout=30_000)
    run_id = output.get_attribute("data-run-id")
    assert hub.cron(f"api/cron/runs/{run_id}", alice)[1]["status"] == "running"
    assert output.get_attribute("data-status") == "running"
    seen = len(lines_of(terminal))
    wait_until(lambda: len(lines_of(terminal)) > seen + 2, 15, "more live lines")
    finish_live_run(homes)
    output.locator(".jp-HermesCron-badge", has_text="Completed").wait_for(timeout=30_000)
    lines = lines_of(terminal)
    assert lines[-1] == "finished"
    assert lines[:-1] == [f"line {i} from {ALICE}" for i in range(1, len(lines))], lines
    detail.locator(f"tr[data-run-id='{run_id}'] .jp-HermesCron-badge",
                   has_text="Completed").wait_for(timeout=10_000)
    assert job_item(page, "bob-private").count() == 0
    assert not [e for e in page.errors if "hermes" in e.lower()], page.errors
    context.close()

    # the idle culler's call: her server stops; her job fires meanwhile, and a run of
    # the other starts (as her CLI would start it, with her token)
    status, _ = hub.admin(f"/users/{ALICE}/server", "DELETE")
    assert status in (202, 204)
    wait_until(lambda: not hub.admin(f"/users/{ALICE}")[1]["servers"], 60,
               "the hub to report her server stopped")
    stopped = time.time()
    # her URL is the hub's again (the proxy dropped her route): no server answers there
    assert call(f"{public}/user/{ALICE}/api/cron/jobs", alice)[0] != 200

    def a_run_while_down():
        status, runs = hub.cron(f"api/cron/jobs/{tick['id']}/runs?status=succeeded", alice)
        found = [r for r in runs["runs"] if r["trigger"] == "schedule" and
                 datetime.fromisoformat(r["scheduled_for"].replace("Z", "+00:00"))
                 .timestamp() > stopped]
        return found[-1] if found else None
    while_down = wait_until(a_run_while_down, 30, "a run of hb-tick while her server is down")
    status, running = hub.cron(f"api/cron/jobs/{live['id']}/run", alice, "POST")
    assert status == 202, running
    running_id = running["id"]
    # pause the ticker job, so the history shown below stays put
    assert hub.cron(f"api/cron/jobs/{tick['id']}/pause", alice, "POST")[0] == 200

    # she comes back: logs in, the hub spawns her server again, the panel shows it all
    context, page = log_in_and_open_the_panel(browser, public, ALICE)
    try:
        assert job_item(page, "bob-private").count() == 0
        detail = select(page, "hb-tick")
        row = detail.locator(f"tr[data-run-id='{while_down['id']}']")
        row.locator(".jp-HermesCron-badge", has_text="Completed").wait_for(timeout=15_000)
        row.click()
        replay = page.locator(".jp-HermesCron-outputBox "
                              f".jp-HermesCron-output[data-run-id='{while_down['id']}']")
        replay.locator(".jp-HermesCron-line", has_text=f"tick from {ALICE}").wait_for(
            timeout=15_000)
        detail.locator("[data-role='owner']", has_text=ALICE).wait_for()

        detail = select(page, "hb-live")
        assert detail.locator("[data-role='owner']").inner_text() == ALICE
        detail.locator(f"tr[data-run-id='{running_id}']").click()
        output = page.locator(".jp-HermesCron-outputBox "
                              f".jp-HermesCron-output[data-run-id='{running_id}']")
        terminal = output.locator(".jp-HermesCron-terminal")
        terminal.locator(".jp-HermesCron-line").first.wait_for(timeout=15_000)
        assert output.get_attribute("data-status") == "running"
        seen = len(lines_of(terminal))
        wait_until(lambda: len(lines_of(terminal)) > seen + 2, 15,
                   "live lines of the run started while her server was down")
        # the shot: whose job it is, the live output below
        detail.locator("[data-role='owner']").evaluate(
            "el => el.scrollIntoView({block: 'start'})")
        page.screenshot(path=str(ARTIFACTS / "panel-hub.png"))
        finish_live_run(homes)
        output.locator(".jp-HermesCron-badge", has_text="Completed").wait_for(timeout=30_000)
        lines = lines_of(terminal)
        assert lines[-1] == "finished"
        assert lines[:-1] == [f"line {i} from {ALICE}" for i in range(1, len(lines))], lines
        assert not [e for e in page.errors if "hermes" in e.lower()], page.errors
    finally:
        context.close()
