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
   on failure too, so the run's artifact shows how far it got (its folder made, 0700,
   when missing; the file 0600); with ``--artifact-fd N`` it also writes each saved
   notebook to descriptor N, a pipe, as a frame (:func:`artifact_frame`: an 8-byte
   big-endian length, then the bytes; none over :data:`ARTIFACT_MAX`): a run of a hub
   user's job runs as its owner, who cannot write the service's folder, so the runner
   keeps its own copy in the owner's home and the supervisor (the service) writes the
   last whole frame it reads to the store's artifact path (``supervisor.ArtifactSink``);
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
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

EXIT_CELL_ERROR, EXIT_BAD_INPUT, EXIT_TERMINATED = 1, 2, 143
INJECTED_TAG = "injected-parameters"
#: The read end of the supervisor's "go" pipe (see the module docstring).
GO_FD_ENV = "HERMES_CRON_GO_FD"
#: the largest executed notebook sent on the artifact pipe (``--artifact-fd``); a
#: larger one is kept in ``--output`` only (said on stderr)
ARTIFACT_MAX = 64 << 20
_FRAME = struct.Struct(">Q")


def artifact_frame(data: bytes) -> bytes:
    """One executed notebook as sent on the artifact pipe: its length, then its bytes."""
    return _FRAME.pack(len(data)) + data


class FrameReader:
    """The reading side of the artifact pipe: :meth:`feed` it what was read, it gives
    back the last whole frame in it. A length over *limit* breaks the stream for good
    (:attr:`broken` says why): what follows cannot be framed again."""

    def __init__(self, limit: int = ARTIFACT_MAX):
        self.limit = limit
        self.broken: str | None = None
        self._buf = bytearray()

    def feed(self, data: bytes) -> bytes | None:
        if self.broken is not None:
            return None
        self._buf += data
        last = None
        while len(self._buf) >= _FRAME.size:
            (size,) = _FRAME.unpack_from(self._buf)
            if size > self.limit:
                self.broken = f"a frame of {size} bytes (over {self.limit})"
                self._buf.clear()
                return last
            end = _FRAME.size + size
            if len(self._buf) < end:
                break
            last = bytes(self._buf[_FRAME.size:end])
            del self._buf[:end]
        return last

    @property
    def pending(self) -> int:
        """Bytes of a frame not yet whole (cut short, if the stream has ended)."""
        return len(self._buf)


class ArtifactPipe:
    """The runner's end of the artifact pipe (``--artifact-fd``). A pipe whose reader is
    gone (the supervisor died) is given up, never the run."""

    def __init__(self, fd: int):
        os.set_inheritable(fd, False)  # the kernel (the owner's code) never holds it
        self._f: Any = open(fd, "wb")  # noqa: SIM115 - closed by close()

    def send(self, data: bytes) -> None:
        if self._f is None:
            return
        if len(data) > ARTIFACT_MAX:
            _out(sys.stderr, f"[hermes-cron: the executed notebook ({len(data)} bytes) is "
                             f"over {ARTIFACT_MAX} bytes: not sent to the service]\n")
            return
        try:
            self._f.write(artifact_frame(data))
            self._f.flush()
        except OSError as exc:
            _out(sys.stderr, f"[hermes-cron: cannot send the notebook to the service: "
                             f"{exc}]\n")
            self.close()

    def close(self) -> None:
        f, self._f = self._f, None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass


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


def _write(nb, path: str | None, pipe: ArtifactPipe | None = None) -> None:
    """Write atomically (a reader never sees half a notebook) to *path*, and send it on
    *pipe*. A failure to write *path* is raised after the send."""
    import nbformat

    data = nbformat.writes(nb).encode("utf-8")
    if not data.endswith(b"\n"):
        data += b"\n"
    try:
        if path:
            _private_folders(os.path.dirname(os.path.abspath(path)))
            tmp = f"{path}.tmp{os.getpid()}"
            # 0600 like the run's log: outputs may show what the job's secrets unlocked
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                              0o600), "wb") as f:
                f.write(data)
            os.replace(tmp, path)
    finally:
        if pipe is not None:
            pipe.send(data)


def _private_folders(folder: str) -> None:
    """Make *folder* and the folders missing above it, each 0700 (``os.makedirs`` gives
    the ones above the umask's mode); those there already are left as they are."""
    missing = []
    while not os.path.isdir(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    for name in reversed(missing):
        try:
            os.mkdir(name, 0o700)
        except FileExistsError:
            pass


def _out(stream, text: str) -> None:
    stream.write(text)
    stream.flush()


def _make_client(nb, kernel: str, cwd: str, output_path: str | None, ipc_dir: str,
                 on_start=None, pipe: ArtifactPipe | None = None):
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
        if output_path or pipe is not None:
            try:
                _write(nb, output_path, pipe)
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
                       kernel: str | None = None, artifact_fd: int | None = None) -> int:
    """Execute *path*; return the exit status (see the module docstring). *artifact_fd*:
    a pipe each saved notebook is also sent on, framed (closed here)."""
    pipe = None if artifact_fd is None else ArtifactPipe(artifact_fd)
    try:
        return await _run_notebook(path, output_path, params, kernel, pipe)
    finally:
        if pipe is not None:
            pipe.close()


async def _run_notebook(path: str, output_path: str | None, params: dict[str, Any],
                        kernel: str | None, pipe: ArtifactPipe | None) -> int:
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

    client, total = _make_client(nb, kernel, cwd, output_path, ipc_dir, wait_go, pipe)
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
        if (output_path or pipe is not None) and status != "not started":
            _write(nb, output_path, pipe)
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
    parser.add_argument("--artifact-fd", type=int, metavar="N",
                        help="a pipe to send each saved notebook on, framed (a run as the "
                             "job's owner: the service's copy)")
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
        return asyncio.run(run_notebook(args.path, args.output, params, args.kernel,
                                        args.artifact_fd))
    except BadInput as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
