"""One run, from its instant to its final status, in a process of its own.

A supervisor is started (forked warm by ``executor.py``, or spawned) a little
before the run's instant, in a session of its own, so nothing that happens to
the ticker that started it reaches the run. It:

1. registers its pid with the run, then sleeps until ``fire_at``;
2. checks the run may still start (job not paused or deleted, overlap policy);
3. starts the payload in a new process group, appends stdout and stderr to the
   run's output log, reads progress from it, heartbeats into the store;
4. enforces the timeout and cancel requests (TERM the group, KILL after a grace);
5. records the final status and exit code, whatever happens (``finally``).
"""

from __future__ import annotations

import hashlib
import json
import os
import selectors
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING

from hermes_cron_ext.domain import policy as rules
from hermes_cron_ext.domain.metrics import Metrics
from hermes_cron_ext.domain.models import RunStatus, iso
from hermes_cron_ext.domain.policy import OverlapAction
from hermes_cron_ext.domain.progress import Progress
from hermes_cron_ext.processes import hostname, proc_start_time, process_alive
from hermes_cron_ext.runtime.indexer import Indexer
from hermes_cron_ext.runtime.notebook import (  # not at the instant
    GO_FD_ENV,
    PARAMETERS_ENV,
    FrameReader,
)
from hermes_cron_ext.runtime.runas import Process, RunAs, RunAsError
from hermes_cron_ext.store import output

if TYPE_CHECKING:
    from hermes_cron_ext.store.base import Store
    from hermes_cron_ext.store.relay import RelayClient

HEARTBEAT_INTERVAL = float(os.environ.get("HERMES_CRON_HEARTBEAT", "2.0"))
EXIT_DRAIN = 1.0  # after the payload exits, read what its children still write for this long
#: seconds the run-as helper has to tell the exit of a payload whose process is gone
EXIT_TOLD = 10.0

#: the largest notebook whose parameters cell the run-as helper reads (as root)
SOURCE_MAX = 16 << 20


def upstream_parameters(spec: dict, upstream: dict, given: dict,
                        owner: tuple[str, int] | None = None) -> dict:
    """What a downstream notebook is told of the run that triggered it: always
    ``upstream_run_id``; ``upstream_status``, ``upstream_exit_code`` and
    ``upstream_artifact`` (the executed notebook's path) where its parameters cell asks
    for them. Values given to the run itself win. *owner*: ``(home, uid)`` of the
    account the run runs as, for the run-as helper (root): ``~`` is that home, and the
    notebook is read only if it is a regular file of that uid's (no symlink followed at
    the end, no device, no FIFO), of :data:`SOURCE_MAX` bytes at most."""
    from hermes_cron_ext.domain.parameters import declared

    asked: set[str] = set()
    path = os.path.join(_expand(spec.get("cwd") or "~", owner),
                        _expand(str(spec.get("command") or ""), owner))
    try:
        asked = {p["name"] for p in declared(_read_source(path, owner))}
    except (OSError, ValueError):
        pass  # the runner says what is wrong with the notebook
    offered = {"upstream_run_id": upstream["run_id"], "upstream_status": upstream["status"],
               "upstream_exit_code": upstream["exit_code"],
               "upstream_artifact": upstream["artifact"]}
    return {k: v for k, v in offered.items()
            if k not in given and (k == "upstream_run_id" or k in asked)}


def _expand(path: str, owner: tuple[str, int] | None) -> str:
    if owner is None:
        return os.path.expanduser(path)
    return owner[0] + path[1:] if path == "~" or path.startswith("~/") else path


def _read_source(path: str, owner: tuple[str, int] | None) -> str:
    if owner is None:
        with open(path, encoding="utf-8") as f:
            return f.read()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != owner[1] or st.st_size > SOURCE_MAX:
            raise ValueError(f"{path} is not a notebook of the owner's")
        return f.read(SOURCE_MAX).decode("utf-8")


def python_path(spec: dict, path: str | None) -> str:
    """PATH with the bin folder of the Python the job was made from first, so ``python``,
    ``pip`` and console scripts in a command line are that environment's (as in the
    terminal it was made from), not whatever the ticker's PATH holds."""
    interpreter = spec.get("interpreter") or sys.executable
    folder = os.path.dirname(interpreter) if os.path.isabs(interpreter) else ""
    parts = [p for p in (path or os.defpath).split(os.pathsep) if p]
    if not folder or (parts and parts[0] == folder):
        return os.pathsep.join(parts)
    return os.pathsep.join([folder, *[p for p in parts if p != folder]])


def payload_argv(spec: dict, artifact: str) -> list[str]:
    """The argv a job spec runs (shell line, argv, python script or code, notebook)."""
    kind = spec.get("kind", "command")
    # jobspec checked it: a command job has one, a python job one or its code, a
    # notebook job the path of its .ipynb
    command: str | list[str] | None = spec.get("command")
    python = spec.get("interpreter") or sys.executable
    if kind == "command":
        assert command is not None
        return ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    if kind == "python":
        if spec.get("code"):
            return [python, "-u", "-c", spec["code"]]
        assert command is not None
        return [python, "-u", *([command] if isinstance(command, str) else command)]
    if kind == "notebook":
        # parameters go in the environment (PARAMETERS_ENV), not on a command line any
        # local user can read with ps
        return [sys.executable, "-u", "-m", "hermes_cron_ext.runtime.notebook", command,
                "--output", artifact,
                *(["--kernel", spec["kernel"]] if spec.get("kernel") else [])]
    raise ValueError(f"unknown job kind {kind!r}")


def payload_launch(store, run, base: Mapping[str, str] | None = None,
                   owner_uid: int | None = None) -> tuple[list[str], dict[str, str], str]:
    """What starting *run*'s payload takes: its argv, environment and working folder.
    Store reads (secrets, upstream artifacts) happen here, before the instant. *base*:
    the environment the payload starts from, this process's by default; the run-as
    helper (``runas.py``) gives the owner's login environment, whose HOME ``~`` in the
    cwd then means, and the owner's uid as *owner_uid* (see :func:`upstream_parameters`).
    The scheduler's own credentials (:data:`SERVICE_ENV`, ``JUPYTERHUB_*``)
    are left out of it.

    :raises ValueError: the spec names an unknown kind."""
    spec = run.spec
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not _service_secret(k)}
    if "PATH" not in (spec.get("env") or {}):
        env["PATH"] = python_path(spec, env.get("PATH"))
    env.update(spec.get("env") or {})
    if spec.get("secret_env"):
        env.update(store.run_secrets(run.id))
    parameters = dict(spec.get("parameters") or {})
    upstream = [{**u, "artifact": upstream_artifact(store, u["run_id"])}
                for u in spec.get("upstream") or []]
    if upstream:  # the run(s) that triggered this one (pipelines)
        first = upstream[0]
        env.update({"HERMES_CRON_UPSTREAM": json.dumps(upstream),
                    "HERMES_CRON_UPSTREAM_RUN_ID": first["run_id"],
                    "HERMES_CRON_UPSTREAM_STATUS": first["status"],
                    "HERMES_CRON_UPSTREAM_EXIT_CODE": str(first["exit_code"]),
                    "HERMES_CRON_UPSTREAM_ARTIFACT": first["artifact"] or ""})
    if spec.get("kind") == "notebook":
        if spec.get("logical_time"):  # a backfilled slot: the notebook is told which
            parameters.setdefault("logical_time", spec["logical_time"])
        if upstream:
            owner = None if base is None or owner_uid is None else \
                (base.get("HOME", "/"), owner_uid)
            parameters.update(upstream_parameters(spec, upstream[0], parameters, owner))
        env[PARAMETERS_ENV] = json.dumps(parameters)
    elif parameters:  # a script reads them as JSON, or one by one
        env[PARAMETERS_ENV] = json.dumps(parameters)
        for key, value in parameters.items():
            env[f"HERMES_CRON_PARAM_{key}"] = value if isinstance(value, str) \
                else json.dumps(value)
    env.update({"PYTHONUNBUFFERED": "1", "HERMES_CRON_RUN_ID": run.id,
                "HERMES_CRON_JOB": spec.get("job_name") or run.job_id,
                "HERMES_CRON_SCHEDULED_FOR": str(run.scheduled_for or ""),
                # the slot this run stands for, as ISO 8601 UTC (a backfill's past slot)
                "HERMES_CRON_LOGICAL_TIME": iso(run.scheduled_for) or ""})
    env.pop("HERMES_CRON_FORKSERVER", None)
    cwd = spec.get("cwd") or "~"
    if base is None:
        cwd = os.path.expanduser(cwd)  # JupyterLab reports "~/..." roots
    elif cwd == "~" or cwd.startswith("~/"):
        cwd = base.get("HOME", "/") + cwd[1:]
    if base is None:  # the run-as helper hashes its runs' files as their owner reads them
        record_payload_file(store, run.id, spec, cwd)
    return payload_argv(spec, store.artifact_path(run.id)), env, cwd


def payload_file(spec: dict, cwd: str) -> str | None:
    """The file a python job given a script, or a notebook job, runs (None: a command,
    code, or ``python -m``)."""
    command = spec.get("command")
    if spec.get("kind") not in ("python", "notebook") or spec.get("code") or not command:
        return None
    path = command if isinstance(command, str) else command[0]
    if not path or path.startswith("-"):
        return None
    return os.path.join(cwd, os.path.expanduser(path))


def file_sha256(path: str) -> str | None:
    """The sha256 of a file's bytes; None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def record_payload_file(store, run_id: str, spec: dict, cwd: str) -> None:
    """Record which file a python or notebook run runs (its sha256), as its payload is
    prepared, before the instant; nothing for a command, and nothing when the file is
    missing (the start then says so). A store that cannot record it does not stop the
    run (nor does a store with no ``record_file_hash``)."""
    path = payload_file(spec, cwd)
    digest = file_sha256(path) if path else None
    if digest is None:
        return
    try:
        store.record_file_hash(run_id, digest)
    except Exception:  # noqa: BLE001 - which file it ran is worth less than the run
        pass


#: The scheduling process's own credentials and hub settings (a hub service's token, a
#: hub user's server's, the token hermes-cron reaches a server with): never inherited
#: by a payload. A job that needs one names it in its own env or secret_env.
SERVICE_ENV_PREFIXES = ("JUPYTERHUB_",)
SERVICE_ENV = frozenset({"JPY_API_TOKEN", "HERMES_CRON_TOKEN"})


def _service_secret(name: str) -> bool:
    return name in SERVICE_ENV or name.startswith(SERVICE_ENV_PREFIXES)


def upstream_artifact(store, run_id: str) -> str | None:
    """The executed notebook of an upstream notebook run, as a local file: the one
    it wrote here, or a copy of the store's (its run was on another host)."""
    path = store.artifact_path(run_id)
    if os.path.exists(path):
        return path
    try:
        data = store.read_artifact(run_id)
    except Exception:  # noqa: BLE001 - the downstream runs without it, as told
        data = None
    if not data:
        return None
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(data)
    return path



def killpg(pgid: int, sig: int) -> bool:
    """Signal a payload's process group; False when it is gone (or not ours)."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def owned(store, run) -> bool:
    """Whether *run*'s job has an owner (a hub user): with run-as on, its payload starts
    as that owner through the run-as helper, never as the service. A job gone meanwhile
    counts as owned (never run as the service; the start check drops its run)."""
    from hermes_cron_ext.errors import NotFound

    if "owner" in (run.spec or {}):
        return bool(run.spec["owner"])
    try:
        return bool(patiently(store.get_job, run.job_id, limit=60).owner)
    except NotFound:
        return True


#: set (not "" or "0") where a hub's users may run as the service's own account (a team
#: that trusts itself, no run-as helper): the one way a hub user's job runs as another
SHARED_ENV = "HERMES_CRON_SHARED_ACCOUNT"
NOT_AS_SERVICE = ("run-as is off here, and a hub user's job runs only as its owner: start "
                  "the service with run-as (HERMES_CRON_RUN_AS, see docs/jupyterhub.md), or "
                  f"let every job run as the service's account ({SHARED_ENV}=1)")


def foreign(store, run) -> bool:
    """Whether *run*'s job belongs to a hub user other than this process's account, so
    this process, with no run-as helper, must not run it (fail closed: a CLI run by an
    admin, a daemon started without run-as)."""
    if os.environ.get(SHARED_ENV, "") not in ("", "0"):
        return False
    if not owned(store, run):
        return False
    owner = (run.spec or {}).get("owner")
    if owner is None:
        try:
            owner = patiently(store.get_job, run.job_id, limit=60).owner
        except Exception:  # noqa: BLE001 - gone: not ours to run
            return True
    try:
        import pwd

        return owner != pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return True


def signal_payload(proc, sig: int) -> bool:
    """Signal a payload's process group: through the run-as helper for one it started
    (the service may not signal another user's processes), else ourselves. False when
    the group is gone, or the helper cannot be asked (said on stderr)."""
    if isinstance(proc, Process):
        try:
            return proc.killpg(sig)
        except RunAsError as exc:
            _complain(f"run {proc.run_id}: {_signal_name(sig)} not sent through the run-as "
                      f"helper: {exc}")
            return False
    return killpg(proc.pid, sig)


def exit_fd(proc) -> int | None:
    """A pidfd that is readable once *proc* has ended; None when it has ended already. A
    payload the run-as helper started is the helper's child, which reaps it at once:
    its end is asked of the helper first, so the pid is never one reused since."""
    if isinstance(proc, Process):
        try:
            if proc.poll() is not None:
                return None
        except RunAsError:  # the helper is gone: the pidfd still tells the end
            pass
        try:
            return os.pidfd_open(proc.pid)
        except ProcessLookupError:
            return None
    return os.pidfd_open(proc.pid)


#: a payload's resource use: (CPU seconds, peak memory in bytes)
Usage = tuple[float, int]


def reap(proc: subprocess.Popen, block: bool = True) -> Usage | None:
    """Reap *proc* with ``os.wait4`` (its ``returncode`` set as ``Popen.wait`` sets it)
    and return its resource use: the user + system CPU seconds of the payload and of the
    descendants it waited for (a shell's commands, a pool's workers), and ``ru_maxrss``
    (KiB on Linux, here in bytes): the peak resident size of the *largest single
    process* of that tree, not the sum of them. None when it was reaped already, or,
    not *block*ing, has not ended yet."""
    if proc.returncode is not None:
        return None
    try:
        pid, status, usage = os.wait4(proc.pid, 0 if block else os.WNOHANG)
    except ChildProcessError:  # reaped by someone else: Popen tells what it can
        proc.poll()
        return None
    if pid == 0:
        return None
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def told_usage(proc) -> Usage | None:
    """The resource use the run-as helper told with the exit of a payload it started
    (None: not told, or a helper that does not measure it)."""
    done = getattr(proc, "exit", None) if isinstance(proc, Process) else None
    if done is None or done.cpu is None or done.maxrss is None:
        return None
    return done.cpu, done.maxrss


def stream_metrics() -> dict[str, Metrics]:
    """A parser per output stream (a line half written on one is not cut by the other)."""
    return {"stdout": Metrics(), "stderr": Metrics()}


def metric_rows(streams: dict[str, Metrics], usage: Usage | None) -> list[list]:
    """What a run's final status carries (``finish_run(metrics=...)``): what its output
    reported (stdout's value of a name reported on both), then ``cpu_seconds`` and
    ``peak_memory`` when measured."""
    values = {}
    for name in ("stderr", "stdout"):
        streams[name].close()
        values.update(streams[name].values)
    rows: list[list] = [[m.name, m.value, m.unit] for m in values.values()]
    if usage is not None:
        rows += [["cpu_seconds", round(usage[0], 6), "s"], ["peak_memory", usage[1], "B"]]
    return rows


def exit_status(proc) -> int | str:
    """The return code of *proc*, which has ended (``Popen.returncode``'s sign); for a
    payload the run-as helper started and whose exit it did not tell, why not."""
    if not isinstance(proc, Process):
        return proc.wait()
    try:
        return proc.wait(EXIT_TOLD)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"its exit status is unknown: {exc}"


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _complain(text: str) -> None:
    """A line to the supervisor's stderr (the fork server's supervisors.err), which may
    sit on the very disk that is full: never let telling fail the run."""
    try:
        print(f"hermes-cron supervisor {os.getpid()}: {text}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def patiently(call, *args, limit: float):
    """``call(*args)``, tried again while the store cannot write (disk full, database
    locked or unreachable) for up to *limit* seconds, so a passing fault does not lose
    the run's record. Refusals (not found, conflict, bad input) are not retried."""
    from hermes_cron_ext.errors import HermesCronError, StoreError

    deadline, pause = time.monotonic() + limit, 0.2
    fault: Exception
    while True:
        try:
            return call(*args)
        except HermesCronError as exc:
            if not isinstance(exc, StoreError) or time.monotonic() >= deadline:
                raise
            fault = exc
        except Exception as exc:  # sqlite3 / psycopg OperationalError, OSError
            if time.monotonic() >= deadline:
                raise
            fault = exc
        _complain(f"{getattr(call, '__name__', 'store call')} failed ({fault}); "
                  f"trying again in {pause:g} s")
        time.sleep(pause)
        pause = min(pause * 2, 5.0)


def outcome(rc: int, stopping: str | None, timeout: float | None,
            writer: output.OutputWriter, last_err: bytes) -> tuple[str, int, str | None]:
    """``(status, exit_code, reason)`` of a payload that exited with *rc* (negative: the
    signal), *stopping* why it was stopped (``timed_out``, ``cancelled``,
    ``write_failed``), *last_err* the last line it wrote to stderr."""
    if rc < 0:
        exit_code, why = 128 - rc, f"killed by {_signal_name(-rc)}"
    else:
        exit_code, why = rc, f"exit code {rc}"
    if stopping == "timed_out":
        return "timed_out", exit_code, f"timed out after {timeout:g} s"
    if stopping == "cancelled":
        return "cancelled", exit_code, "cancelled"
    if stopping == "write_failed":
        err = writer.error
        return "failed", exit_code, (f"cannot write the run's output: "
                                     f"{getattr(err, 'strerror', None) or err} ({writer.path})")
    if rc == 0:
        return "succeeded", 0, None
    detail = last_err.decode(errors="replace").strip()
    return "failed", exit_code, f"{why}: {detail}" if detail else why


class ArtifactSink:
    """The service's copy of the executed notebook of a notebook run that runs as its
    job's owner (through the run-as helper). The owner cannot write the service's
    folder: the runner keeps its own copy in the owner's home and sends each notebook it
    saves on a pipe, framed (``notebook.artifact_frame``, ``--artifact-fd``); the last
    whole frame read is written to *path*, the store's ``artifact_path`` of the run
    (tmp + rename, 0600), so ``read_artifact`` (and a PostgreSQL store's copy, taken when
    the run's output writer closes) has it as for any notebook run. Whatever the owner's
    code sends there spoils that run's artifact at most: a frame over
    ``notebook.ARTIFACT_MAX`` ends the stream (the pipe is closed, the last whole
    notebook kept), and nothing is written but *path*."""

    def __init__(self, pipe: IO[bytes], path: str):
        self.pipe: IO[bytes] | None = pipe
        self.path = path
        self.frames = FrameReader()
        self.saved = 0
        #: why the last notebook could not be written to *path* (None: it was)
        self.error: str | None = None
        os.set_blocking(pipe.fileno(), False)

    def fileno(self) -> int:
        assert self.pipe is not None, "closed"
        return self.pipe.fileno()

    def read(self) -> bool:
        """Read what the runner sent (never blocking) and save the last whole notebook;
        False once the stream has ended (end of file, or a frame it cannot take)."""
        if self.pipe is None:
            return False
        while True:
            try:
                data = os.read(self.pipe.fileno(), 1 << 20)
            except BlockingIOError:
                return True
            except OSError:
                data = b""
            if not data:
                return False
            frame = self.frames.feed(data)
            if frame is not None:
                self._save(frame)
            if self.frames.broken is not None:
                return False

    def _save(self, data: bytes) -> None:
        tmp = f"{self.path}.tmp{os.getpid()}"
        try:
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                              0o600), "wb") as f:
                f.write(data)
            os.replace(tmp, self.path)
            self.saved += 1
            self.error = None
        except OSError as exc:  # a full disk: the run goes on, the last copy stays
            self.error = str(exc)
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def close(self) -> None:
        """Read what is left, then close the pipe (a runner still sending gets EPIPE)."""
        if self.pipe is not None:
            self.read()
            self.pipe.close()
            self.pipe = None


class Payload:
    """A started payload process; *go_w*: the write end of a warm notebook's go pipe;
    *artifact*: where the executed notebook of a run as its owner comes in."""

    def __init__(self, proc, go_w: int | None = None, artifact: ArtifactSink | None = None):
        self.proc, self.go_w, self.artifact = proc, go_w, artifact
        self.warm = go_w is not None

    def go(self) -> None:
        """Run now. The pipe stays open: its end of file later tells the runner that
        its supervisor is gone."""
        assert self.go_w is not None, "go() on a payload that is not warm, or closed"
        try:
            os.write(self.go_w, b"g")
        except OSError:  # the runner has already exited (bad input): _watch reports it
            pass

    def close(self) -> None:
        if self.go_w is not None:
            os.close(self.go_w)
            self.go_w = None
        if self.artifact is not None:
            self.artifact.close()

    def abort(self, grace: float = 30.0) -> None:
        """Never run it: end of file on the go pipe makes the runner shut its kernel
        down and exit; killed if it has not after *grace* seconds (through the run-as
        helper for a payload that runs as its owner)."""
        self.close()
        try:
            self.proc.wait(grace)
        except Exception:
            signal_payload(self.proc, signal.SIGKILL)
            exit_status(self.proc)


class Supervisor:
    """*runas*: this process's channel to the run-as helper, when run-as is on (a run of
    a job with an owner starts as that owner through it); *runas_error*: why there is
    none while run-as is on (such runs are then recorded failed with it)."""

    def __init__(self, store, run_id: str, heartbeat: float = HEARTBEAT_INTERVAL,
                 runas: RunAs | None = None, runas_error: str | None = None,
                 indexer: Indexer | None = None):
        self.store = store
        #: writes the output index off the read loop (``supervise``'s, for all its runs)
        self.indexer = indexer if indexer is not None else Indexer(store)
        self._own_indexer = indexer is None
        self.run_id = run_id
        self.heartbeat = heartbeat
        self.runas, self.runas_error = runas, runas_error
        self.owned = False  # the run's payload starts as its job's owner
        self.stop_reason: str | None = None  # "cancelled" or "timed_out"
        self._progress = Progress()
        self._metrics = stream_metrics()  # what the payload's output reports
        self._usage: Usage | None = None  # its CPU time and peak memory, once reaped
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    def _on_signal(self, signum, frame) -> None:
        self.stop_reason = self.stop_reason or "cancelled"
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def run(self) -> int:
        try:
            return self._run()
        finally:
            if self._own_indexer:
                self.indexer.close()

    def _run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        store, run_id = self.store, self.run_id
        pid = os.getpid()
        if not patiently(store.attach_run, run_id, pid, proc_start_time(pid), hostname(),
                         limit=60):
            # marked lost (or cancelled) before this supervisor came up: never run it
            print(f"hermes-cron: run {run_id} was no longer queued when its supervisor "
                  "started; not running it", file=sys.stderr)
            return 0
        run = store.get_run(run_id)
        if self.runas is not None or self.runas_error is not None:
            self.owned = owned(store, run)
        elif foreign(store, run):  # no helper here: recorded as a start it cannot make
            self.owned, self.runas_error = True, NOT_AS_SERVICE
        # a notebook's kernel starts now, in the lead before the slot, and waits for "go"
        warm = self._spawn(run, warm=True) if run.spec.get("kind") == "notebook" else None
        try:
            if not self._ready_to_start(run):
                if isinstance(warm, Payload):
                    warm.abort()
                return 0
        except BaseException:
            if isinstance(warm, Payload):
                warm.abort()
            raise
        return self._execute(run, warm)

    def _ready_to_start(self, run) -> bool:
        """Wait for the instant, then for the run's turn; False (the run recorded as
        cancelled or skipped) when it must not start."""
        store, run_id = self.store, run.id
        while self.stop_reason is None:  # sleep until the instant, precisely
            left = (run.fire_at or 0) - time.time()
            if left <= 0:
                break
            time.sleep(min(left, 0.5))
        if self.stop_reason:
            store.finish_run(run_id, RunStatus.CANCELLED, reason="cancelled before it started")
            return False
        plan = rules.start_plan(run.trigger, run.spec.get("overlap"))
        if plan.after_catchups and not self._wait_turn(run):
            return False
        why = store.check_start(run_id)
        if why:
            store.finish_run(run_id, RunStatus.SKIPPED, reason=why)
            return False
        if plan.overlap == OverlapAction.REPLACE and not self._settle_overlap(run):
            return False
        if plan.overlap == OverlapAction.WAIT and not self._wait_in_line(run, plan.recheck):
            return False
        return True

    def _wait_turn(self, run) -> bool:
        """A catch-up of a missed slot (``policy.start_plan``) waits for the runs before
        it: ``store.catchup_ahead`` names them (``policy.catchup_ahead``)."""
        return self._wait_while(run, lambda: self.store.catchup_ahead(run.id),
                                rules.CATCHUP_PHASE)

    def _wait_while(self, run, blocker, phase: str) -> bool:
        """Heartbeat with *phase* while ``blocker()`` names a run; False if cancelled."""
        store, next_beat = self.store, 0.0
        while (other := blocker()) is not None:
            if time.monotonic() >= next_beat:
                if store.heartbeat_run(run.id, time.time(), phase.format(other), None, 0):
                    self.stop_reason = "cancelled"
                next_beat = time.monotonic() + self.heartbeat
            if self.stop_reason:
                store.finish_run(run.id, RunStatus.CANCELLED,
                                 reason=f"cancelled while {phase.format(other)}")
                return False
            time.sleep(0.1)
        store.heartbeat_run(run.id, time.time(), None, None, 0)
        return True

    def _settle_overlap(self, run) -> bool:
        """``replace``: stop the job's running runs first, and wait until they end."""
        store = self.store
        others = store.running_others(run.id)
        if not others:
            return True
        for other in others:
            store.request_cancel(other.id, reason=f"replaced by run {run.id}")
            if other.host == hostname() and process_alive(other.pid, other.proc_start):
                os.kill(other.pid, signal.SIGTERM)
        return self._wait_while(
            run, lambda: next((o.id for o in store.running_others(run.id)), None),
            rules.REPLACING_PHASE.format(others[0].id))

    def _wait_in_line(self, run, recheck: bool) -> bool:
        """Overlap ``queue``, or a run owed to its slot (``policy.on_overlap``): wait
        while ``store.turn_ahead`` names a run ahead of it (``policy.turn_ahead``); then
        start, once *recheck* (``policy.start_plan``) has found the job still wants it."""
        ahead = lambda: self.store.turn_ahead(run.id)  # noqa: E731
        if ahead() is None:  # its turn at once: nothing written
            return True
        if not self._wait_while(run, ahead, rules.WAITING_PHASE):
            return False
        if recheck:
            why = self.store.check_start(run.id)  # paused, disabled or deleted meanwhile
            if why:
                self.store.finish_run(run.id, RunStatus.SKIPPED, reason=why)
                return False
        return True

    def _spawn(self, run, warm: bool = False) -> Payload | Exception:
        """Start the payload; *warm*: a notebook runner that starts its kernel and waits
        for :meth:`Payload.go`. An exception returned says why it cannot start."""
        if self.owned:
            return self._spawn_as_owner(run, warm)
        go_r: int | None = None
        go_w: int | None = None
        try:
            argv, env, cwd = payload_launch(self.store, run)
            if warm:
                go_r, go_w = os.pipe()
                env[GO_FD_ENV] = str(go_r)
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=cwd, env=env, process_group=0, close_fds=True,
                pass_fds=() if go_r is None else (go_r,))  # set when warm
        except (OSError, ValueError, TypeError) as exc:
            if go_w is not None:
                os.close(go_w)
            return exc
        finally:
            if go_r is not None:
                os.close(go_r)
        return Payload(proc, go_w)

    def _spawn_as_owner(self, run, warm: bool = False) -> Payload | Exception:
        """Start the payload as the run's owner, through the run-as helper (which takes
        the command, the account and the environment from the store); never as this
        process's account. A notebook's runner (and its kernel) runs as the owner too,
        warm (*warm*: its kernel starts now, its go pipe handed over by the helper); it
        keeps its executed notebook in the owner's home and sends a copy on an artifact
        pipe, which :class:`ArtifactSink` writes to the store's artifact path."""
        if self.runas is None:
            return RunAsError(self.runas_error or "no run-as helper")
        notebook = run.spec.get("kind") == "notebook"
        try:
            proc = self.runas.popen(run.id, go=warm and notebook, artifact=notebook)
        except OSError as exc:  # RunAsError: the helper's reason
            return exc
        go_w, proc.go = proc.go, None  # the Payload's to write and close
        if proc.file_sha256 is not None:  # what it runs, as its owner read it (the helper)
            try:
                self.store.record_file_hash(run.id, proc.file_sha256)
            except Exception:  # noqa: BLE001 - which file it ran is worth less than the run
                pass
        sink = None
        if proc.artifact is not None:
            sink = ArtifactSink(proc.artifact, self.store.artifact_path(run.id))
            proc.artifact = None
        return Payload(proc, go_w, sink)

    def _execute(self, run, payload: Payload | Exception | None = None) -> int:
        spec, store = run.spec, self.store
        if payload is None:
            payload = self._spawn(run)
        if isinstance(payload, Exception):
            started = time.time()
            store.mark_running(run.id, started, 0)
            writer = store.output_writer(run.id, spec.get("max_output"))
            writer.system(f"[hermes-cron: cannot start the job: {payload}]\n")
            writer.close()
            self.indexer.finish(run.id, writer)
            store.finish_run(run.id, "failed", 127, reason=f"cannot start: {payload}")
            return 0
        proc = payload.proc
        started = time.time()
        if payload.warm:  # the run is taken first, then its first cell runs
            if not patiently(store.mark_running, run.id, started, proc.pid, limit=60):
                payload.abort()
                return 0
            payload.go()
        else:
            time.sleep(0.001)  # let the payload take the CPU first (2 cores): latency first
        status, exit_code, reason = "failed", None, None
        writer = store.output_writer(run.id, spec.get("max_output"))
        try:
            if not payload.warm and not patiently(store.mark_running, run.id, started,
                                                  proc.pid, limit=60):
                signal_payload(proc, signal.SIGKILL)  # ended meanwhile
                exit_status(proc)
                return 0
            status, exit_code, reason = self._watch(proc, spec, writer, payload.artifact)
        except BaseException as exc:  # never leave the run without a final status
            reason = f"supervisor error: {exc!r}"
            signal_payload(proc, signal.SIGKILL)
            raise
        finally:
            payload.close()
            writer.close()
            # the rest of the index written (waited for, 30 s at most) before the final
            # status, so a finished run is searchable
            self.indexer.finish(run.id, writer)
            try:
                store.heartbeat_run(run.id, time.time(), self._progress.phase,
                                    self._progress.fraction, writer.size)
            except Exception as exc:
                _complain(f"last heartbeat not recorded: {exc}")
            # the final status matters most: keep trying while the store cannot write
            patiently(store.finish_run, run.id, status, exit_code, reason, None,
                      metric_rows(self._metrics, self._usage), limit=600)
        return 0

    _killpg = staticmethod(killpg)

    def _watch(self, proc, spec: dict, writer: output.OutputWriter,
               artifact: ArtifactSink | None = None):
        self._progress = progress = Progress()
        self._metrics = metrics = stream_metrics()
        sel = selectors.DefaultSelector()
        streams = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
        for fd in streams:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        artifact_fd = None
        if artifact is not None:
            artifact_fd = artifact.fileno()
            sel.register(artifact_fd, selectors.EVENT_READ)
        pidfd = exit_fd(proc)
        if pidfd is not None:
            sel.register(pidfd, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        start = time.monotonic()
        timeout = spec.get("timeout")
        grace = float(spec.get("kill_grace") or 10.0)
        deadline = start + timeout if timeout else None
        next_beat = start + self.heartbeat
        last_beat = start
        kill_at = None
        exited_at = None if pidfd is not None else start  # ended before it was watched
        last_err = b""
        stopping = None
        while True:
            now = time.monotonic()
            waits = [next_beat, deadline, kill_at,
                     exited_at + EXIT_DRAIN if exited_at is not None else None]
            wait = min(w for w in waits if w is not None) - now
            for key, _ in sel.select(max(0.0, wait)):
                fd = key.fd
                if fd in streams:
                    try:
                        data = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    if not data:
                        sel.unregister(fd)
                        del streams[fd]
                        continue
                    writer.write(streams[fd], data)
                    if writer.error is not None and stopping is None:
                        self.stop_reason = stopping = "write_failed"
                    progress.feed(data)
                    metrics[streams[fd]].feed(data)
                    if streams[fd] == "stderr":
                        lines = [ln for ln in data.replace(b"\r", b"\n").split(b"\n")
                                 if ln.strip()]
                        if lines:
                            last_err = lines[-1][:200]
                elif fd == artifact_fd and artifact is not None:
                    if not artifact.read():
                        sel.unregister(fd)
                        artifact_fd = None
                        if artifact.frames.broken is not None:
                            writer.system(f"[hermes-cron: the executed notebook the runner "
                                          f"sent is unreadable ({artifact.frames.broken}); "
                                          "the last whole one is kept]\n")
                        artifact.close()
                elif fd == pidfd:
                    sel.unregister(pidfd)
                    exited_at = time.monotonic()
                elif fd == self._wake_r:
                    os.read(self._wake_r, 64)
            now = time.monotonic()
            if stopping is None and self.stop_reason:
                stopping = self.stop_reason
            if stopping is None and deadline is not None and now >= deadline:
                stopping = self.stop_reason = "timed_out"
            if stopping and kill_at is None:
                what = ("cannot write the run's output" if stopping == "write_failed"
                        else f"timed out after {timeout:g} s" if stopping == "timed_out"
                        else "cancelled")
                writer.system(f"\n[hermes-cron: {what}; sending SIGTERM to the process group, "
                              f"SIGKILL in {grace:g} s]\n")
                signal_payload(proc, signal.SIGTERM)
                kill_at = now + grace
                deadline = None
            if kill_at is not None and now >= kill_at:
                if signal_payload(proc, signal.SIGKILL):
                    writer.system("[hermes-cron: sent SIGKILL to the process group]\n")
                kill_at = None if exited_at is not None else now + grace
            if now >= next_beat or (progress.changed and now - last_beat >= 0.5):
                progress.changed = False
                # both written by the indexer's thread: this loop never waits for the
                # store's write lock (the beat's answer, cancel, comes at the next beat)
                cancel = self.indexer.beat(self.run_id, time.time(), progress.phase,
                                           progress.fraction, writer.size)
                self.indexer.hand(self.run_id, writer)
                if cancel and not self.stop_reason:
                    self.stop_reason = "cancelled"
                    continue
                last_beat = now
                next_beat = now + self.heartbeat
            if exited_at is not None:
                if stopping:  # take the rest of the group down with the leader
                    signal_payload(proc, signal.SIGKILL)
                if (not streams and artifact_fd is None) or now >= exited_at + EXIT_DRAIN:
                    break
        sel.close()
        if artifact is not None:
            artifact.close()
            if artifact.error is not None:
                writer.system(f"[hermes-cron: cannot save the executed notebook for the "
                              f"service: {artifact.error}]\n")
        if pidfd is not None:
            os.close(pidfd)
        # wait4 on the payload's pid measures it alone: a supervisor that goes on with the
        # next run of a pipeline has forked others (fan-out), which RUSAGE_CHILDREN counts
        usage = None if isinstance(proc, Process) else reap(proc)
        rc = exit_status(proc)
        self._usage = told_usage(proc) if isinstance(proc, Process) else usage
        for f in (proc.stdout, proc.stderr):
            f.close()
        if isinstance(rc, str):
            return "failed", None, rc
        return outcome(rc, stopping, timeout, writer, last_err)


def supervise(db: str, run_id: str, relay: str | None = None, runas: RunAs | None = None,
              runas_error: str | None = None) -> int:
    """Entry point for a fresh process or a forked child; *relay* is the socket of the
    fork server's PostgreSQL relay, used instead of a connection of our own. *runas*:
    this process's own channel to the run-as helper while run-as is on (closed here at
    the end), *runas_error* why there is none (see :class:`Supervisor`)."""
    from hermes_cron_ext.store import open_store

    store: Store | RelayClient
    if relay:
        from hermes_cron_ext.store.relay import RelayClient

        store = RelayClient(db, relay)
    else:
        store = open_store(db)
    forked: list[int] = []
    indexer = Indexer(store)  # one thread for the output index of every run here
    try:
        code = Supervisor(store, run_id, runas=runas, runas_error=runas_error,
                          indexer=indexer).run()
        # a pipeline or a backfill: this warm process goes on as the supervisor of a run
        # its run's end queued (a ticker would start it at its next pass, up to a second
        # later, if one is alive at all); other runs it queued (fan-out) go to forks of it
        while taken := store.take_next(run_id):
            run_id, *others = taken
            if others:
                with indexer.paused():  # no SQLite lock or transaction across the fork
                    _before_fork(store)
                    forked += [_fork_supervisor(db, other, relay, runas, runas_error)
                               for other in others]
            code = Supervisor(store, run_id, runas=runas, runas_error=runas_error,
                              indexer=indexer).run()
        return code
    finally:
        indexer.close()
        store.close()
        if runas is not None:
            runas.close(timeout=2.0)
        for pid in forked:  # those that ended are reaped; init takes the others on
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def _before_fork(store) -> None:
    """No SQLite connection crosses a fork: ours is closed (and opened again on its next
    use). SQLite's file locks belong to a process, and so does its record of the locks
    it holds on a file: a child forked with our connection open that opens the file
    again believes it holds our locks and takes none of its own. Once every process
    with real locks has gone (the ``hermes-cron`` that started a backfill, say), the
    next one to close thinks it is the last, checkpoints and deletes the WAL under the
    others, and their commits are lost: runs left queued or running for ever."""
    from hermes_cron_ext.store.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        store.close()


def _fork_supervisor(db: str, run_id: str, relay: str | None, runas: RunAs | None = None,
                     runas_error: str | None = None) -> int:
    """Supervise *run_id* in a fork of this warm process (a fraction of a millisecond;
    nothing waits for it). The fork opens a store of its own and never touches ours, and
    asks the run-as helper on a channel of its own."""
    channel, why = child_channel(runas, runas_error)
    pid = os.fork()
    if pid:
        if channel is not None:
            channel.forget()
        return pid
    code = 1
    try:
        os.setsid()  # a session of its own, like every supervisor
        if runas is not None:
            runas.forget()
        code = supervise(db, run_id, relay, channel, why)
    finally:
        os._exit(code)


def child_channel(runas: RunAs | None, runas_error: str | None
                  ) -> tuple[RunAs | None, str | None]:
    """What a process about to fork a supervisor or an agent hands it: a channel of its
    own to the run-as helper, or why there is none while run-as is on; ``(None, None)``
    while it is off."""
    if runas is None:
        return None, runas_error
    try:
        return runas.channel(), None
    except RunAsError as exc:
        return None, f"the run-as helper cannot be reached: {exc}"


def standalone(db: str, run_id: str) -> int:
    """A supervisor started on its own (``hermes-cron run`` with no ticker alive): with
    run-as on (``$HERMES_CRON_RUN_AS``), it starts a helper of its own."""
    import shlex

    from hermes_cron_ext.runtime.runas import run_as_argv

    argv = run_as_argv(None)
    runas = error = None
    if argv:
        try:
            runas = RunAs(argv)
        except Exception as exc:  # noqa: BLE001 - its runs of owned jobs fail with it
            error = f"the run-as helper cannot start ({shlex.join(argv)}): {exc}"
            _complain(error)
    return supervise(db, run_id, None, runas, error)


#: Where ``python -m hermes_cron_ext.runtime.supervisor RUN_ID`` finds its store (not on the
#: command line, which every local user can read); taken out of the environment at once.
SUPERVISE_DB_ENV = "HERMES_CRON_SUPERVISE_DB"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    db = os.environ.pop(SUPERVISE_DB_ENV, None)
    if len(argv) == 1 and db:
        return standalone(db, argv[0])
    if len(argv) != 2:
        print("usage: python -m hermes_cron_ext.runtime.supervisor [DB] RUN_ID (DB: else "
              f"${SUPERVISE_DB_ENV})", file=sys.stderr)
        return 2
    return standalone(argv[0], argv[1])


if __name__ == "__main__":
    sys.exit(main())
