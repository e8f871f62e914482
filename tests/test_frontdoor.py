"""The README's set-up, as a new user on a fresh machine does it (``make frontdoor``;
.ci/run runs it after ``make test``): clone, ``make demo``, watch the demo job fire,
stop, nothing left running; the same with no node on PATH; and a built wheel
installed where there is no node gives a working side panel.

Slow by nature (a fresh virtual environment per clone): deselected from the normal
suite by the ``frontdoor`` marker. pip's and yarn's caches are shared with the user's
so that it does not download everything each time.
"""

from __future__ import annotations

import glob
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import processes_with, wait_for

pytestmark = [pytest.mark.frontdoor, pytest.mark.timeout(1800)]

ROOT = pathlib.Path(__file__).resolve().parent.parent
NODE_TOOLS = {"node", "nodejs", "npm", "npx", "corepack", "yarn", "yarnpkg", "jlpm"}
BASE_PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _path_without_node(tmp: pathlib.Path) -> str:
    """A PATH with every program of this one but node's: a directory of symlinks."""
    farm = tmp / "bin-without-node"
    farm.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        if "pyenv" in folder:  # shims would find node's tools through pyenv
            continue
        for entry in glob.glob(os.path.join(folder, "*")):
            name = os.path.basename(entry)
            if name in NODE_TOOLS or (farm / name).exists() or not os.access(entry, os.X_OK):
                continue
            (farm / name).symlink_to(entry)
    (farm / "python3").unlink(missing_ok=True)
    (farm / "python3").symlink_to(BASE_PYTHON)
    return str(farm)


def _user_env(tmp: pathlib.Path, path: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HERMES_CRON", "JUPYTER", "VIRTUAL_ENV", "PYTEST"))
           and k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    cache = os.path.expanduser("~/.cache")
    env.update(HOME=str(home), PIP_CACHE_DIR=os.path.join(cache, "pip"),
               YARN_CACHE_FOLDER=os.path.join(cache, "yarn"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    if path is not None:
        env["PATH"] = path
    return env


def _get(url: str, token: str):
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read()


@pytest.mark.parametrize("node", ["with node", "without node"])
def test_make_demo_from_a_fresh_clone(tmp_path, node):
    if node == "with node" and not shutil.which("node"):
        pytest.skip("no node on this machine")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    path = _path_without_node(tmp_path) if node == "without node" else None
    env = _user_env(tmp_path, path)
    port = _free_port()
    log = open(tmp_path / "demo.log", "w+")
    proc = subprocess.Popen(["make", "demo", f"PYTHON={BASE_PYTHON}", f"PORT={port}"],
                            cwd=clone, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    marker = str(tmp_path / "home").encode()
    try:
        def url():
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError(f"make demo exited {proc.returncode}:\n{log.read()[-4000:]}")
            log.seek(0)
            for line in log.read().splitlines():
                if line.startswith("open: http://127.0.0.1:"):
                    return line.split("open: ", 1)[1]
            return None
        lab_url = wait_for(url, 1500, 1.0, "make demo to print the URL")
        assert lab_url.startswith(f"http://127.0.0.1:{port}/lab?token=")
        token = lab_url.split("token=", 1)[1]
        base = f"http://127.0.0.1:{port}"

        def ticking():
            try:
                return json.loads(_get(f"{base}/api/cron/status", token)[1])["ticking"]
            except OSError:
                return False
        wait_for(ticking, 120, 0.5, "the API and its ticker")
        log.seek(0)
        text = log.read()
        assert "will NOT fire" not in text  # no false alarm right before the ticking server
        built = "the side panel is not built (no node here)" not in text
        assert built == (node == "with node"), text[-3000:]
        if not built:
            assert "Traceback" not in text

        def fired():
            runs = json.loads(_get(f"{base}/api/cron/jobs/demo-heartbeat/runs", token)[1])
            return [r for r in runs["runs"] if r["status"] == "succeeded"]
        wait_for(fired, 70, 1.0, "the demo job to fire and succeed within 70 s")
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        finally:
            log.seek(0)
            text = log.read()
            log.close()
    assert "demo stopped: demo-heartbeat paused, no daemon left ticking" in text, text[-3000:]
    wait_for(lambda: processes_with(marker) == {}, 30, 0.5,
             f"nothing of the demo left running: {processes_with(marker)}")


def test_a_built_wheel_gives_the_panel_without_node(tmp_path):
    if not shutil.which("node"):
        pytest.skip("building the wheel needs node")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = _user_env(tmp_path)
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"),
                    str(clone)], check=True, env=env, capture_output=True)
    (wheel,) = glob.glob(str(tmp_path / "dist" / "*.whl"))
    venv = tmp_path / "venv"
    no_node = _user_env(tmp_path, _path_without_node(tmp_path))
    subprocess.run([BASE_PYTHON, "-m", "venv", str(venv)], check=True, env=no_node)
    py = str(venv / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "-q", f"{wheel}[lab]"], check=True, env=no_node)
    listed = subprocess.run([py, "-m", "jupyter", "labextension", "list"], env=no_node,
                            capture_output=True, text=True)
    assert "hermes-cron-ext" in listed.stdout + listed.stderr
    assert "enabled" in (listed.stdout + listed.stderr).split("hermes-cron-ext", 1)[1][:80]
    shipped = venv / "share" / "jupyter" / "labextensions" / "hermes-cron-ext" / "static"
    static = glob.glob(str(shipped / "remoteEntry.*.js"))
    assert static, "the wheel did not ship the built panel"
    port = _free_port()
    lab = subprocess.Popen([py, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
                            f"--port={port}", "--allow-root", "--ServerApp.token=t",
                            f"--ServerApp.root_dir={tmp_path}"], env=no_node,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"

        def up():
            try:
                return _get(f"{base}/api/cron/status", "t")[0] == 200
            except OSError:
                return False
        wait_for(up, 120, 0.5, "JupyterLab with the extension")
        name = os.path.basename(static[0])
        status, body = _get(f"{base}/lab/extensions/hermes-cron-ext/static/{name}", "t")
        assert status == 200 and body
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        lab.wait(30)
