"""Run a notebook job: ``python -m hermes_cron_ext.runtime.notebook PATH --output OUT.ipynb ...``.

The supervisor starts this as the payload of a ``kind: notebook`` run
(``supervisor.payload_argv``). It

1. reads the notebook and injects the job's parameters the papermill way: a new
   code cell tagged ``injected-parameters`` right after the cell tagged
   ``parameters`` (or at the top when there is none; an injected cell left by an
   earlier papermill or hermes-cron run is replaced);
2. runs it with nbclient's async API in the chosen kernel (``--kernel``, else the
   notebook's own kernelspec, else ``python3``), in the notebook's directory;
3. prints ``::progress:: k/n cell k+1 of n`` before each code cell (the
   supervisor turns that into the run's phase and progress) and streams every
   cell's output as it arrives: stream text to stdout or stderr, the
   ``text/plain`` of results and displays to stdout, errors to stderr;
4. saves the executed notebook to ``--output`` after every cell and at the end,
   on failure too, so the run's artifact shows how far it got;
5. exits 0 when every cell ran, 1 on a cell error (the error is printed to
   stderr), 2 on bad input (unreadable notebook, bad parameters, unknown kernel),
   and 143 when stopped by SIGTERM (timeout or cancel).

Warm start: with ``HERMES_CRON_GO_FD`` set (the supervisor does so, in the lead before
the slot), it starts the kernel and waits; a byte on that pipe at the instant runs the
first cell at once, end of file instead means "do not run" (skipped, cancelled) and
the kernel is shut down. End of file while the cells run means the supervisor died:
the run stops and the kernel is shut down, so no kernel outlives its run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

EXIT_CELL_ERROR, EXIT_BAD_INPUT, EXIT_TERMINATED = 1, 2, 143
INJECTED_TAG = "injected-parameters"
#: The read end of the supervisor's "go" pipe (see the module docstring).
GO_FD_ENV = "HERMES_CRON_GO_FD"


class BadInput(Exception):
    """The notebook, its parameters or its kernel cannot be used: exit 2."""


class NotStarted(Exception):
    """The supervisor closed the go pipe before the instant: run nothing."""


def parameters_source(params: dict[str, Any]) -> str:
    """Python assignments for *params*, as papermill writes them."""
    lines = ["# Parameters"]
    for key, value in params.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise BadInput(f"parameter name {key!r} is not a valid Python name")
        lines.append(f"{key} = {value!r}")
    return "\n".join(lines) + "\n"


def inject_parameters(nb, params: dict[str, Any]) -> int | None:
    """Add the parameters cell to *nb*; return its index (None when there are none)."""
    import nbformat

    if not params:
        return None
    cell = nbformat.v4.new_code_cell(parameters_source(params))
    cell.metadata["tags"] = [INJECTED_TAG]
    cells = nb.cells
    old = [i for i, c in enumerate(cells) if INJECTED_TAG in c.get("metadata", {}).get("tags", [])]
    if old:
        index = old[0]
        cells[index] = cell
        for i in reversed(old[1:]):
            del cells[i]
        return index
    tagged = [i for i, c in enumerate(cells)
              if "parameters" in c.get("metadata", {}).get("tags", [])]
    index = tagged[0] + 1 if tagged else 0
    cells.insert(index, cell)
    return index


def _write(nb, path: str) -> None:
    """Write atomically: a reader never sees half a notebook."""
    import nbformat

    tmp = f"{path}.tmp{os.getpid()}"
    # 0600 like the run's log: outputs may show what the job's secrets unlocked
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w",
              encoding="utf-8") as f:
        nbformat.write(nb, f)
    os.replace(tmp, path)


def _out(stream, text: str) -> None:
    stream.write(text)
    stream.flush()


def _make_client(nb, kernel: str, cwd: str, output_path: str | None, ipc_dir: str,
                 on_start=None):
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    class StreamingClient(NotebookClient):
        """nbclient, printing each cell's output the moment it arrives."""

        before_kernel_start: Callable[..., None] | None = None
        #: the code cell running, 1-based (0 before the first)
        current_cell: int = 0

        async def async_start_new_kernel(self, **kwargs):
            # nbclient has just put its own SIGTERM handler in place: take it back
            if self.before_kernel_start is not None:
                self.before_kernel_start()
            return await super().async_start_new_kernel(**kwargs)

        def process_message(self, msg, cell, cell_index):
            kind = msg.get("msg_type")
            content = msg.get("content", {})
            if kind == "stream":
                _out(sys.stderr if content.get("name") == "stderr" else sys.stdout,
                     content.get("text", ""))
            elif kind in ("execute_result", "display_data"):
                text = content.get("data", {}).get("text/plain")
                if text:
                    _out(sys.stdout, text if text.endswith("\n") else text + "\n")
            elif kind == "error":
                tb = content.get("traceback") or [
                    f"{content.get('ename')}: {content.get('evalue')}"]
                _out(sys.stderr, "\n".join(tb) + "\n")
            return super().process_message(msg, cell, cell_index)

    code_cells = [i for i, c in enumerate(nb.cells)
                  if c.cell_type == "code" and c.source.strip()]
    total = len(code_cells)
    position = {index: k for k, index in enumerate(code_cells)}

    def before(cell, cell_index, **_):
        k = position.get(cell_index)
        if k is not None:
            client.current_cell = k + 1
            _out(sys.stdout, f"::progress:: {k}/{total} cell {k + 1} of {total}\n")

    def after(cell, cell_index, **_):
        if output_path:
            try:
                _write(nb, output_path)
            except OSError as exc:  # a full disk must not stop the run itself
                _out(sys.stderr, f"[hermes-cron: cannot save the notebook: {exc}]\n")

    # IPC sockets in a private directory: no TCP ports, no "unencrypted TCP" warning
    km = AsyncKernelManager(kernel_name=kernel, transport="ipc",
                            ip=os.path.join(ipc_dir, "kernel"))
    client = StreamingClient(
        nb, km=km, kernel_name=kernel, timeout=None, startup_timeout=120,
        resources={"metadata": {"path": cwd}}, on_cell_execute=before,
        on_cell_executed=after, on_notebook_start=on_start)
    client.current_cell = 0
    return client, total


async def run_notebook(path: str, output_path: str | None, params: dict[str, Any],
                       kernel: str | None = None) -> int:
    """Execute *path*; return the exit status (see the module docstring)."""
    import nbformat
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read notebook {path}: {exc}") from exc
    inject_parameters(nb, params)
    kernel = kernel or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    _check_kernel(kernel)
    cwd = os.path.dirname(os.path.abspath(path))
    meta = nb.metadata.setdefault("hermes_cron", {})
    meta.update({"parameters": params, "kernel": kernel, "source": os.path.abspath(path),
                 "run_id": os.environ.get("HERMES_CRON_RUN_ID"),
                 "job": os.environ.get("HERMES_CRON_JOB"),
                 "started_at": _now(), "finished_at": None, "status": "running"})
    ipc_dir = tempfile.mkdtemp(prefix="hermes-cron-nb-")
    # the kernel's own stdout/stderr carry its logs only (cell output comes over
    # iopub, fd-level writes included); keep them aside and show them if it dies
    kernel_log = open(os.path.join(ipc_dir, "kernel.log"), "w+b")
    task = asyncio.current_task()
    assert task is not None  # run_notebook runs as a task (asyncio.run)
    loop = asyncio.get_running_loop()
    stopped: list[str] = []
    go = _go_pipe(loop, lambda: on_term("its supervisor is gone"))

    async def wait_go(**_):
        if go is not None and not await go:
            raise NotStarted
        meta["started_at"] = _now()

    client, total = _make_client(nb, kernel, cwd, output_path, ipc_dir, wait_go)
    status, code = "failed", EXIT_CELL_ERROR

    def on_term(why: str = "SIGTERM"):
        stopped.append(why)
        task.cancel()  # nbclient then shuts the kernel down on its way out

    def take_sigterm(**_):
        # nbclient puts its own SIGTERM handler in place when it starts the kernel
        loop.add_signal_handler(signal.SIGTERM, on_term)
    take_sigterm()
    client.before_kernel_start = take_sigterm
    try:
        await client.async_execute(stdout=kernel_log, stderr=kernel_log)
        status, code = "succeeded", 0
        _out(sys.stdout, f"::progress:: {total}/{total} done\n")
    except CellExecutionError as exc:
        where = f"cell {client.current_cell} of {total}" if client.current_cell else "a cell"
        _out(sys.stderr, f"notebook failed in {where}: {exc.ename}: {exc.evalue}\n")
    except NotStarted:
        status, code = "not started", 0
        await _shutdown(client)
    except (DeadKernelError, RuntimeError, asyncio.CancelledError) as exc:
        if stopped:  # nbclient reports our cancellation as a dead kernel
            status, code = "cancelled", EXIT_TERMINATED
            await _shutdown(client)  # stopped while the kernel was starting or waiting
            _out(sys.stderr, f"notebook stopped by {stopped[0]}; the kernel was shut down\n")
        elif isinstance(exc, asyncio.CancelledError):
            raise
        else:
            kernel_log.seek(0)
            tail = kernel_log.read()[-4000:].decode("utf-8", "replace").strip()
            _out(sys.stderr, (f"kernel log:\n{tail}\n" if tail else "")
                 + f"notebook failed: the kernel died or did not start ({exc})\n")
    finally:
        try:
            loop.remove_signal_handler(signal.SIGTERM)
        except RuntimeError:
            pass
        meta.update({"finished_at": _now(), "status": status})
        if output_path and status != "not started":
            _write(nb, output_path)
        kernel_log.close()
        shutil.rmtree(ipc_dir, ignore_errors=True)
    return code


def _go_pipe(loop, on_gone) -> asyncio.Future | None:
    """Follow the supervisor's go pipe (``GO_FD_ENV``): the future is True on "go",
    False on end of file before it; end of file after it calls *on_gone*."""
    fd_text = os.environ.pop(GO_FD_ENV, None)
    if not fd_text:
        return None
    fd, go = int(fd_text), loop.create_future()

    def readable():
        try:
            data = os.read(fd, 64)
        except OSError:
            data = b""
        if data and not go.done():
            go.set_result(True)
        elif not data:
            loop.remove_reader(fd)
            if not go.done():
                go.set_result(False)
            else:
                on_gone()
    loop.add_reader(fd, readable)
    return go


async def _shutdown(client) -> None:
    km = client.km
    if km is not None and km.has_kernel:
        await km.shutdown_kernel(now=True)


def _now() -> str:
    from hermes_cron_ext.domain.models import iso

    stamp = iso(time.time())
    assert stamp is not None  # iso() is None only for a None instant
    return stamp


def _check_kernel(name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        known = ", ".join(sorted(KernelSpecManager().find_kernel_specs())) or "none"
        raise BadInput(f"kernel {name!r} is not installed here (installed: {known}); "
                       "set the job's kernel") from None


#: The parameters as a JSON object when ``--parameters`` is not given (the supervisor's
#: way: an environment is readable by its owner alone, a command line by every user).
PARAMETERS_ENV = "HERMES_CRON_PARAMETERS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hermes_cron_ext.runtime.notebook",
                                     description="Run a notebook as a hermes-cron job.")
    parser.add_argument("path", help="the .ipynb to run")
    parser.add_argument("--output", help="where to save the executed notebook")
    parser.add_argument("--parameters", default=os.environ.pop(PARAMETERS_ENV, "{}"),
                        help=f"a JSON object of parameters (default: ${PARAMETERS_ENV})")
    parser.add_argument("--kernel", help="kernel name (default: the notebook's, else python3)")
    args = parser.parse_args(argv)
    # nbformat -> jsonschema imports rfc3987_syntax when it is installed, which builds
    # a grammar for seconds; IRI format checks are never needed to run a notebook
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    try:
        import nbclient  # noqa: F401
        import nbformat  # noqa: F401
    except ImportError as exc:
        print(f"notebook jobs need nbclient and nbformat ({exc}): "
              "pip install 'hermes-cron-ext[notebook]'", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        params = json.loads(args.parameters)
        if not isinstance(params, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        print(f"--parameters must be a JSON object: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return asyncio.run(run_notebook(args.path, args.output, params, args.kernel))
    except BadInput as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
