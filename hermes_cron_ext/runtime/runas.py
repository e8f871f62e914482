"""Runs as their owner: one narrow privileged helper, and the client that talks to it.

On a JupyterHub, one service schedules for every hub user and each job has an
``owner`` (a Unix account on LocalProcessSpawner hubs). The service runs as an
unprivileged account; a run's payload must run as its owner (uid, gid, groups, home,
a login-like environment), so one user's job can neither read another's home nor
signal another's run.

**The helper** (``python -I -m hermes_cron_ext.runtime.runas serve``) is started once
by the service through ``sudo -n``, with a sudoers line allowing exactly that fixed
command, so it runs as root for as long as the service lives::

    hermes ALL=(root) NOPASSWD: /opt/hermes/bin/python -I -m hermes_cron_ext.runtime.runas serve

(``-I``: with ``-m``, Python would otherwise put the caller's working folder first on
``sys.path``, and a ``hermes_cron_ext/`` there would run as root; the interpreter and
the package must be root's and writable by no one else. sudo hands a stdin that is not
a terminal to the command as it is, ``use_pty`` or not: checked with sudo 1.9.13; the
helper refuses to serve on anything but the socketpair.) The helper:

- reads its store URL from a root-owned configuration file at a fixed path
  (:data:`CONFIG_PATH`; :data:`CONFIG_ENV` overrides it for tests only: sudo's
  ``env_reset`` drops it), never from its caller, and opens the store read-only
  (:func:`open_read_only`): it records nothing there;
- talks only over its stdin, a Unix ``SOCK_SEQPACKET`` socketpair, and the channels
  (socketpairs too) it hands out over it: no listening socket, so only the process that
  started it, and those it gave a channel to (the agents it forks), can ask anything;
- decides the account itself, from the store: the run's job's ``owner``. The caller
  names a run id and nothing else (no uid, argv, environment or folder); the helper
  refuses an owner that is empty, unknown, root, a system account (uid below
  ``UID_MIN`` of ``/etc/login.defs``), in group 0, denied by its configuration or
  outside its ``allow_groups``; and a run that is not queued, not attached on this
  host, or asked to be cancelled;
- builds argv, environment and folder as a supervisor does
  (``supervisor.payload_launch``) over the owner's login environment, with the run's
  secrets read from the store by itself (never on a command line, never from the
  caller), forks, and in the child: ``setsid``, the owner's groups (``initgroups``:
  the list from ``getgrouplist``, checked before the fork, set by ``setgroups``),
  ``setgid``, ``setuid``, each checked (and ``setuid(0)`` must then fail), umask
  0o077, ``chdir`` as the owner, the caller's descriptors as 1 and 2 (and a notebook
  runner's artifact and go pipes as 3 and 4), and ``exec``;
- signals only a process group it started for that run id, never a pid it is given;
- reaps its children and tells each exit (on the channel that started it); exits when
  its last channel closes (the service and what it forked are gone: agents outlive a
  fork server), leaving running payloads alone: they are their owners'.

Trust: the store's ``owner`` column is what the helper believes, and the service
account can write the store. So a compromised service can run code as any *regular*
account the configuration allows (as JupyterHub's sudospawner lets the hub start any
user's server): never as root, a system account or a denied one, and only what the
store holds. ``allow_groups`` narrows it to the hub's users.

**The protocol**: one JSON object per message, each way.

- ``{"op": "start", "n": N, "run": RUN_ID, "go": false}`` with the payload's stdout
  and stderr write ends as descriptors (``SCM_RIGHTS``); with ``"go": true`` a third,
  the read end of a go pipe: the payload is *primed* (``agent.GO_SCRIPT``: a shell as
  the owner that execs the payload when a line arrives, and exits at end of file), so
  the run-as step happens ahead of the instant and the instant costs one write.
  Answer: ``{"n": N, "ok": true, "pid": PID, "file_sha256": HEX}`` once the payload
  has exec'd (its group is PID; *file_sha256*: the script or notebook it runs, read by
  the child once it is the owner, before its exec; null for a command or a file the
  owner cannot read), or ``{"n": N, "ok": false, "reason": "..."}``.
- A notebook run (the job's ``kind`` in the store is ``notebook``) must add
  ``"artifact": true`` (and no other run may) and pass one more descriptor, last: the
  write end of a pipe (a FIFO, nothing else), the *artifact pipe*. The runner
  (``runtime/notebook.py``, as the owner) gets it as descriptor 3 and
  ``--artifact-fd 3`` on its command line, and its ``--output`` is the owner's own
  copy, :func:`owner_artifact` (``~/.local/share/hermes-cron/artifacts/RUN_ID.ipynb``,
  folders made 0700, the file 0600), never the service's folder; it writes each
  notebook it saves to the pipe, framed (``notebook.artifact_frame``), and the caller
  (``supervisor.ArtifactSink``, the service) writes the last whole frame to the store's
  artifact path: what the owner's code sends there spoils that run's artifact at most.
  With ``"go": true`` the go pipe is not a shell's stdin but the runner's descriptor 4,
  named by ``HERMES_CRON_GO_FD`` (its kernel starts ahead of the instant, and a byte
  runs the first cell: the runner's warm start); the descriptors are then stdout,
  stderr, go, artifact.
- ``{"op": "signal", "n": N, "run": RUN_ID, "sig": SIG}``: ``{"n": N, "ok": true,
  "sent": true}`` (``false``: its group is gone), or refused (not a run it started).
- ``{"op": "stop_orphan", "n": N, "run": RUN_ID}``: ``{"n": N, "ok": true, "stopped":
  [PGID, ...]}``: a ticker's reconcile, for a run whose agent or supervisor is gone (the
  service cannot read another user's ``/proc/PID/environ``, and a helper started after
  a service restart did not start that payload): the helper SIGKILLs the process groups
  of the processes that run as the run's owner and carry the run's id in their
  environment, from a child that has become the owner; refused while the run's agent
  or supervisor lives, or once the run has ended.
- ``{"op": "channel", "n": N}``: ``{"n": N, "ok": true, "pid": HELPER_PID}`` with one
  descriptor, a new channel's end, for a process the caller forks.
- from the helper, unasked: ``{"op": "ready", "ok": true, "pid": PID}`` first (or
  ``"ok": false`` with the reason, and it exits), then ``{"op": "exit", "run": RUN_ID,
  "pid": PID, "status": WAITSTATUS, "cpu": SECONDS, "maxrss": BYTES}`` as each payload
  ends (``os.wait4``: *cpu* is the user and system CPU time of the payload and of the
  descendants it waited for, *maxrss* the peak resident size of the largest process of
  that tree; a helper of an older version leaves both out).

**The client** (:class:`RunAs`) starts the helper and speaks the protocol:
:meth:`RunAs.launch` (a pid, or :class:`RunAsError` with the helper's reason: an
``OSError``, as a failed ``Popen`` raises), :meth:`RunAs.signal`, :meth:`RunAs.fileno`
and :meth:`RunAs.events` for a ``selectors`` loop, :meth:`RunAs.popen` (a
:class:`Process`: pipes made, ``pid``, ``stdout``, ``stderr``, ``poll``, ``wait``)
for code written around ``subprocess.Popen``, and :meth:`RunAs.channel` /
:meth:`RunAs.attach` for a forked process (one sudo and one helper per service),
:meth:`RunAs.forget` in a forked process that uses another channel, and
:meth:`RunAs.stop_orphan` for a ticker's reconcile.

How the service uses it (``executor.py``, ``agent.py``, ``supervisor.py``, ``ticker.py``;
docs/ARCHITECTURE.md, "Runs as their owner"): the ticker's local executor starts the
helper once and hands each fork server a channel, which gives each agent and supervisor
a channel of its own; runs of jobs with an owner start through it, the service's own
jobs as before.
"""

from __future__ import annotations

import array
import collections
import errno
import grp
import itertools
import json
import os
import pwd
import select
import selectors
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any, NoReturn

#: the helper's configuration: root's, at a fixed path
CONFIG_PATH = "/etc/hermes-cron/runas.json"
#: another path for it, for tests that start the helper directly as root; sudo's
#: ``env_reset`` drops it, so a helper started through sudo reads :data:`CONFIG_PATH`
CONFIG_ENV = "HERMES_CRON_RUNAS_CONFIG"
LOGIN_DEFS = "/etc/login.defs"
#: accounts never run as, whatever the configuration adds
ALWAYS_DENIED = frozenset({"root", "nobody"})
#: groups whose members can become root (sudo, a container runtime): never run as one,
#: whatever the configuration says
PRIVILEGED_GROUPS = frozenset({"sudo", "wheel", "admin", "adm", "docker", "lxd", "libvirt",
                               "disk", "shadow"})
#: what a login shell's environment would carry over from the helper's (locale, zone)
KEPT_ENV = ("LANG", "LANGUAGE", "TZ")
MAX_MESSAGE = 65536
#: seconds a forked child has to exec before the helper gives up on it (a hung mount)
EXEC_LIMIT = 10.0
#: seconds between checks of the groups whose leader has exited (still signallable)
PRUNE_EVERY = 5.0
#: run ids whose group is gone that the helper still knows as its own (signal: not sent)
ENDED_KEPT = 16384
_FIELDS = {"start": {"op", "n", "run", "go", "artifact"}, "signal": {"op", "n", "run", "sig"},
           "stop_orphan": {"op", "n", "run"}, "channel": {"op", "n"}}
#: the service's setting (``c.HermesCron.run_as``, ``hermes-cron daemon --run-as``) when
#: neither is given: the helper's command line, split as a shell would
RUN_AS_ENV = "HERMES_CRON_RUN_AS"
#: where a notebook run as its owner keeps the owner's copy of the executed notebook,
#: under the owner's home (:func:`owner_artifact`)
OWNER_ARTIFACTS = os.path.join(".local", "share", "hermes-cron", "artifacts")
#: the runner's descriptors, in a notebook run as its owner: the artifact pipe, and the
#: go pipe of a warm start
ARTIFACT_FD, NOTEBOOK_GO_FD = 3, 4
#: the job kinds the helper starts
KINDS = ("command", "python", "notebook")
#: the payload's marker in its environment (``supervisor.payload_launch`` sets it)
RUN_MARKER = b"HERMES_CRON_RUN_ID="


class RunAsError(OSError):
    """The helper refused or could not start or signal a run; ``str()`` is its reason.
    An ``OSError``, so code that tells a failed ``Popen`` as "cannot start" tells this."""


@dataclass(frozen=True)
class Exit:
    """A payload the helper started has ended: *status* is its wait status; *cpu* its
    CPU seconds (user + system, with the descendants it waited for) and *maxrss* the
    peak resident bytes of the largest process of its tree, as the helper's ``wait4``
    measured them (None: unknown, a helper that does not tell them)."""

    run_id: str
    pid: int
    status: int
    cpu: float | None = None
    maxrss: int | None = None

    @property
    def returncode(self) -> int:
        """As ``Popen.returncode``: the exit code, or minus the signal that killed it."""
        return os.waitstatus_to_exitcode(self.status)


# -- the helper (root) -----------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    """What root tells the helper: where the store is, whom it never runs as."""

    store: str
    deny: frozenset[str] = frozenset()
    #: when not empty, an owner must be in one of these groups (the hub's users)
    allow_groups: frozenset[str] = frozenset()


def load_config(path: str) -> Config:
    """The configuration at *path*, which only root may have written: the file and its
    folder root's and writable by no one else (else its store URL is the caller's)."""
    for where in (path, os.path.dirname(os.path.abspath(path))):
        st = os.stat(where)
        if st.st_uid != 0 or st.st_mode & 0o022:
            raise ValueError(f"{where} must be owned by root and writable by root alone")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get("store"), str):
        raise ValueError(f"{path}: a JSON object with the store's URL as 'store'")
    unknown = set(data) - {"store", "deny", "allow_groups"}
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    lists = {}
    for key in ("deny", "allow_groups"):
        value = data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{path}: {key!r} is a list of names")
        lists[key] = frozenset(value)
    return Config(data["store"], lists["deny"], lists["allow_groups"])


def login_defs(path: str = LOGIN_DEFS) -> dict[str, str]:
    """``/etc/login.defs`` as a dict (``UID_MIN``, ``ENV_PATH``, ...); empty if absent."""
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split(None, 1)
                if len(parts) == 2 and not parts[0].startswith("#"):
                    out[parts[0]] = parts[1].strip()
    except OSError:
        pass
    return out


@dataclass(frozen=True)
class Account:
    """The Unix account a run runs as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    shell: str


class Refused(Exception):
    """A request the helper will not do; the message says why, for the caller."""


def account_for(owner: str, config: Config, uid_min: int) -> Account:
    """The account *owner* names, if the helper may run as it at all.

    :raises Refused: empty, unknown, root, a system account, in group 0, denied."""
    if not owner:
        raise Refused("the job has no owner (a store one user keeps): its runs run as the "
                      "service, not through the run-as helper")
    if owner in ALWAYS_DENIED or owner in config.deny:
        raise Refused(f"the job's owner {owner!r} is denied by the run-as helper")
    try:
        pw = pwd.getpwnam(owner)
    except KeyError:
        raise Refused(f"the job's owner {owner!r} has no account on this host") from None
    if pw.pw_uid == 0:
        raise Refused(f"the job's owner {owner!r} is root (uid 0)")
    if pw.pw_uid < uid_min:
        raise Refused(f"the job's owner {owner!r} is a system account "
                      f"(uid {pw.pw_uid} < UID_MIN {uid_min})")
    groups = tuple(sorted(set(os.getgrouplist(pw.pw_name, pw.pw_gid))))
    if 0 in groups:
        raise Refused(f"the job's owner {owner!r} is in group 0 (root)")
    privileged = sorted({_group_name(g) for g in groups} & PRIVILEGED_GROUPS)
    if privileged:
        raise Refused(f"the job's owner {owner!r} is in {', '.join(privileged)}, a group "
                      "that can become root: the run-as helper never runs as such an account")
    if config.allow_groups:
        names = {_group_name(g) for g in groups}
        if not names & config.allow_groups:
            raise Refused(f"the job's owner {owner!r} is in none of the groups the run-as "
                          f"helper allows ({', '.join(sorted(config.allow_groups))})")
    if not os.path.isabs(pw.pw_dir):
        raise Refused(f"the job's owner {owner!r} has no home folder")
    return Account(pw.pw_name, pw.pw_uid, pw.pw_gid, groups, pw.pw_dir,
                   pw.pw_shell or "/bin/sh")


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def login_env(account: Account, path: str) -> dict[str, str]:
    """What a login gives *account*: HOME, USER, LOGNAME, SHELL, PATH (*path*), and the
    helper's locale and zone; nothing else of root's environment."""
    env = {k: v for k, v in os.environ.items() if k in KEPT_ENV or k.startswith("LC_")}
    env.update({"HOME": account.home, "USER": account.name, "LOGNAME": account.name,
                "SHELL": account.shell, "PATH": path})
    return env


def owner_artifact(home: str, run_id: str) -> str:
    """The owner's own copy of *run_id*'s executed notebook, under *home*."""
    if not run_id or os.sep in run_id or run_id.startswith("."):
        raise ValueError(f"not a run id: {run_id!r}")
    return os.path.join(home, OWNER_ARTIFACTS, f"{run_id}.ipynb")


class _Reads:
    """The store as the helper's ``payload_launch`` may use it, for *run_id*, which runs
    as *account*: reads only, and no path of the service's. ``artifact_path`` is the
    owner's own copy (:func:`owner_artifact`): for the run itself always (the runner's
    ``--output``); for another run (an upstream one: ``upstream_artifact``) only when
    that run's job is the same owner's and the copy is a regular file of the owner's
    (``lstat``), else ``""``, which names no file: the downstream is told none. Never a
    path in the service's folder (the owner cannot read it), never a copy (root would
    own it)."""

    def __init__(self, store: Any, account: Account, run_id: str):
        self._store, self._account, self._run_id = store, account, run_id

    def run_secrets(self, run_id: str) -> dict[str, str]:
        return self._store.run_secrets(run_id)

    def artifact_path(self, run_id: str) -> str:
        try:
            path = owner_artifact(self._account.home, run_id)
        except ValueError:
            return ""
        if run_id == self._run_id:
            return path
        if self._owner_of(run_id) != self._account.name:
            return ""
        try:
            st = os.lstat(path)
        except OSError:
            return ""
        return path if stat.S_ISREG(st.st_mode) and st.st_uid == self._account.uid else ""

    def _owner_of(self, run_id: str) -> str | None:
        from hermes_cron_ext.errors import NotFound

        try:
            run = self._store.get_run(run_id)
            if "owner" in (run.spec or {}):
                return run.spec["owner"]
            return self._store.get_job(run.job_id).owner
        except NotFound:
            return None

    def read_artifact(self, run_id: str) -> None:
        return None


@dataclass(eq=False)
class _Group:
    """A payload's process group, started by this helper for one run; its exit is told
    on the channel that asked for it."""

    run_id: str
    pid: int
    channel: socket.socket | None
    exited: bool = False


class Helper:
    """The root side: one request at a time, from the service's processes alone: over
    *sock* (its stdin) and the channels handed out over it (``channel``)."""

    def __init__(self, sock: socket.socket, store: Any, config: Config,
                 defs: dict[str, str] | None = None):
        from hermes_cron_ext.processes import hostname

        self.sock, self.store, self.config = sock, store, config
        self.channels: list[socket.socket] = []
        self._sel = selectors.DefaultSelector()
        defs = login_defs() if defs is None else defs
        try:
            self.uid_min = int(defs.get("UID_MIN", "1000"))
        except ValueError:
            self.uid_min = 1000
        env_path = defs.get("ENV_PATH", "")
        self.path = env_path[5:] if env_path.startswith("PATH=") else \
            env_path or "/usr/local/bin:/usr/bin:/bin"
        self.host = hostname()
        self.groups: dict[str, _Group] = {}  # run id -> its group, while it has members
        self.by_pid: dict[int, _Group] = {}  # leaders not yet reaped
        self.ended: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    def serve(self) -> int:
        """Answer until every channel is closed (the service and what it forked are
        gone); running payloads are left alone."""
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self._wake_w)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._open(self.sock)
        self._send(self.sock, {"op": "ready", "ok": True, "pid": os.getpid()})
        next_prune = time.monotonic() + PRUNE_EVERY
        try:
            while self.channels:
                for key, _ in self._sel.select(PRUNE_EVERY):
                    if key.fd == self._wake_r:
                        try:
                            os.read(self._wake_r, 4096)
                        except BlockingIOError:
                            pass
                    elif key.data in self.channels:
                        self._one_request(key.data)
                self._reap()
                if time.monotonic() >= next_prune:
                    self._prune()
                    next_prune = time.monotonic() + PRUNE_EVERY
            return 0
        finally:
            self._sel.close()
            self.store.close()

    def _open(self, channel: socket.socket) -> None:
        self.channels.append(channel)
        self._sel.register(channel, selectors.EVENT_READ, channel)

    def _close(self, channel: socket.socket) -> None:
        """The process at the other end is gone: its runs' exits are told to no one."""
        if channel in self.channels:
            self.channels.remove(channel)
            self._sel.unregister(channel)
            channel.close()

    def _send(self, channel: socket.socket, message: dict[str, Any],
              fds: Sequence[int] = ()) -> None:
        data = json.dumps(message).encode()
        try:
            if fds:
                socket.send_fds(channel, [data], fds)
            else:
                channel.send(data)
        except OSError:  # EPIPE, ECONNRESET: that end is gone
            self._close(channel)

    def _one_request(self, channel: socket.socket) -> None:
        """Read and answer one request on *channel*; at end of file, close it."""
        try:
            data, fds, flags, _ = socket.recv_fds(channel, MAX_MESSAGE, 4,
                                                  socket.MSG_CMSG_CLOEXEC)
        except OSError:
            data, fds, flags = b"", [], 0
        if not data and not fds:
            self._close(channel)
            return
        n: Any = None
        give: list[int] = []  # a new channel's end, for the caller
        answer: dict[str, Any]
        try:
            try:
                request = json.loads(data)
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                raise Refused(f"not a request: {exc}") from None
            n = request.get("n")
            if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
                raise Refused("the request or its descriptors were cut short")
            if request.get("op") == "channel" and not set(request) - _FIELDS["channel"]:
                mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                self._open(mine)
                give = [theirs.detach()]
                answer = {"ok": True, "pid": os.getpid()}
            else:
                answer = self.answer(request, fds, channel)
        except Refused as exc:
            answer = {"ok": False, "reason": str(exc)}
        except Exception as exc:  # noqa: BLE001 - the caller is told; the helper goes on
            answer = {"ok": False, "reason": f"run-as helper error: {exc!r}"}
        finally:
            for fd in fds:
                os.close(fd)
        try:
            self._send(channel, {"n": n, **answer}, give)
        finally:
            for fd in give:
                os.close(fd)

    def answer(self, request: dict[str, Any], fds: list[int],
               channel: socket.socket | None = None) -> dict[str, Any]:
        """The answer to a ``start`` or ``signal`` *request* on *channel*; *fds* are
        closed by the caller afterwards."""
        op = request.get("op")
        if op not in ("start", "signal", "stop_orphan"):
            raise Refused(f"unknown request {op!r}")
        unknown = set(request) - _FIELDS[op]
        if unknown:  # the caller names a run, never an account, command or place
            raise Refused(f"unknown field(s) in a {op} request: {', '.join(sorted(unknown))} "
                          "(the helper takes the account and the command from the store)")
        run_id = request.get("run")
        if not isinstance(run_id, str) or not run_id:
            raise Refused("a request names its run id as 'run'")
        if op == "signal":
            return self.signal(run_id, request.get("sig"))
        if op == "stop_orphan":
            return {"ok": True, "stopped": self.stop_orphan(run_id)}
        go, artifact = request.get("go", False), request.get("artifact", False)
        if not isinstance(go, bool) or not isinstance(artifact, bool):
            raise Refused("'go' and 'artifact' are true or false")
        pid, digest = self.start(run_id, fds, go, channel, artifact)
        return {"ok": True, "pid": pid, "file_sha256": digest}

    # -- start ------------------------------------------------------------------------
    def prepare(self, run_id: str
                ) -> tuple[Account, list[str], dict[str, str], str, str, str | None]:
        """The account, argv, environment, folder and kind of *run_id*'s payload, and
        the file it runs (a python script, a notebook: :func:`owner_payload_file`), from
        the store alone.

        :raises Refused: the run or its owner may not run through this helper."""
        from hermes_cron_ext.errors import NotFound
        from hermes_cron_ext.runtime.supervisor import payload_launch

        store = self.store
        try:
            run = store.get_run(run_id)
        except NotFound:
            raise Refused(f"no run {run_id!r} in the store") from None
        if run.status != "queued":
            raise Refused(f"run {run_id} is {run.status}, not queued: its payload is not "
                          "started (again)")
        if run.pid is None or run.host != self.host:
            raise Refused(f"run {run_id} is not attached on this host (no agent or "
                          "supervisor here has taken it)")
        if run.cancel_requested:
            raise Refused(f"run {run_id} is asked to be cancelled")
        try:
            job = store.get_job(run.job_id)
        except NotFound:
            raise Refused(f"run {run_id}'s job is gone") from None
        owner = job.owner
        frozen = run.spec.get("owner")
        if frozen is not None and frozen != owner:
            raise Refused(f"run {run_id} was queued for {frozen!r}; its job is now "
                          f"{owner!r}'s")
        account = account_for(owner, self.config, self.uid_min)
        kind = run.spec.get("kind", "command")
        if kind not in KINDS:
            raise Refused(f"run {run_id}: unknown job kind {kind!r}")
        try:
            argv, env, cwd = payload_launch(_Reads(store, account, run_id), run,
                                            login_env(account, self.path), account.uid)
        except ValueError as exc:
            raise Refused(f"run {run_id}: {exc}") from None
        cwd = os.path.join(account.home, cwd)
        return account, argv, env, cwd, kind, owner_payload_file(run.spec, cwd, account.home)

    def start(self, run_id: str, fds: list[int], go: bool,
              channel: socket.socket | None = None, artifact: bool = False
              ) -> tuple[int, str | None]:
        """Start *run_id*'s payload as its owner, its output on *fds* (stdout, stderr,
        with *go* the read end of its go pipe, with *artifact* (a notebook run) the
        write end of its artifact pipe); its pid once it has exec'd, and the sha256 of
        the file it runs as its owner read it (None: a command, or a file they cannot
        read). Its exit is told on *channel*."""
        names = ["stdout", "stderr"] + (["go"] if go else []) + \
            (["artifact"] if artifact else [])
        if len(fds) != len(names):
            raise Refused(f"a start request passes {len(names)} descriptors "
                          f"({', '.join(names)}); this one passed {len(fds)}")
        for fd, name in zip(fds, names, strict=True):
            _check_fd(fd, "r" if name == "go" else "w", pipe=name == "artifact")
        if run_id in self.groups or run_id in self.ended:  # before its end is recorded
            raise Refused(f"run {run_id} was started already by this helper")
        account, argv, env, cwd, kind, path = self.prepare(run_id)
        if (kind == "notebook") != artifact:
            raise Refused(f"run {run_id} is a {kind} run: a notebook run, and only one, "
                          "passes its artifact pipe (\"artifact\": true)")
        stdin: int | None = None
        program: str | None = None
        extra: list[int] = []  # the runner's descriptors 3 (artifact) and 4 (go)
        if kind == "notebook":
            from hermes_cron_ext.runtime.notebook import GO_FD_ENV

            extra.append(fds[-1])
            argv = [*argv, "--artifact-fd", str(ARTIFACT_FD)]
            if go:  # the runner's warm start: its kernel starts now, a byte runs it
                extra.append(fds[2])
                env[GO_FD_ENV] = str(NOTEBOOK_GO_FD)
        elif go:
            from hermes_cron_ext.runtime.agent import GO_SCRIPT  # agent may import us

            program, argv = argv[0], ["/bin/sh", "-c", GO_SCRIPT, "sh", *argv]
            stdin = fds[2]
        err_r, err_w = os.pipe()
        sha_r, sha_w = os.pipe()
        try:
            pid = os.fork()
            if pid == 0:
                _become(account, argv, env, cwd, stdin, fds[0], fds[1], err_w, program,
                        extra, (path, sha_w))
        finally:
            os.close(err_w)
            os.close(sha_w)
        try:
            why = _read_failure(err_r, pid)
            digest = os.read(sha_r, 128).decode("ascii", "replace") or None  # written
        finally:  # before the exec: there by now (or never)
            os.close(err_r)
            os.close(sha_r)
        if why is not None:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            raise Refused(why)
        group = _Group(run_id, pid, channel)
        self.groups[run_id] = self.by_pid[pid] = group
        return pid, digest if digest and len(digest) == 64 else None

    # -- signal, exits ----------------------------------------------------------------
    def signal(self, run_id: str, sig: Any) -> dict[str, Any]:
        """Signal *run_id*'s process group, if this helper started it."""
        if not isinstance(sig, int) or isinstance(sig, bool) or \
                (sig != 0 and sig not in signal.valid_signals()):
            raise Refused(f"not a signal: {sig!r}")
        group = self.groups.get(run_id)
        if group is None:
            if run_id in self.ended:
                return {"ok": True, "sent": False}
            raise Refused(f"run {run_id} was not started by this run-as helper")
        try:
            os.killpg(group.pid, sig)
            return {"ok": True, "sent": True}
        except ProcessLookupError:
            if group.exited:
                self._forget(group)
            return {"ok": True, "sent": False}

    def _forget(self, group: _Group) -> None:
        """*group* has no process left: its number may be given to another process, so
        it is never signalled again; its run is remembered as ended for a while."""
        self.groups.pop(group.run_id, None)
        self.ended[group.run_id] = None
        while len(self.ended) > ENDED_KEPT:
            self.ended.popitem(last=False)

    def _reap(self) -> None:
        """Collect ended payloads and tell each exit."""
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            group = self.by_pid.pop(pid, None)
            if group is None:
                continue
            group.exited = True
            if group.channel is not None and group.channel in self.channels:
                self._send(group.channel, {
                    "op": "exit", "run": group.run_id, "pid": pid, "status": status,
                    "cpu": usage.ru_utime + usage.ru_stime,
                    "maxrss": usage.ru_maxrss * 1024})  # KiB on Linux
            if not _group_alive(pid):
                self._forget(group)

    def _prune(self) -> None:
        """Forget the groups whose leader and members have all gone (their number may be
        given to another process later)."""
        for group in list(self.groups.values()):
            if group.exited and not _group_alive(group.pid):
                self._forget(group)

    # -- a lost run's payload -----------------------------------------------------------
    def stop_orphan(self, run_id: str) -> list[int]:
        """SIGKILL what is left of *run_id*'s payload once its agent or supervisor is
        gone (a ticker's reconcile asks: the service cannot read another user's
        ``/proc/PID/environ``, and this helper may not be the one that started it: the
        service restarted). The process groups of the processes that run as the run's
        owner (real uid) and carry the run's id in their environment (the recorded
        payload group among them, when one is recorded), signalled *as the owner*: a
        child that has become the owner sends the signals, so nothing the owner could
        not signal is hit. The groups signalled (empty: nothing left).

        :raises Refused: no such run, not this host's, ended, its agent or supervisor
            alive, or an owner the helper never runs as."""
        from hermes_cron_ext.errors import NotFound
        from hermes_cron_ext.processes import process_alive

        try:
            run = self.store.get_run(run_id)
        except NotFound:
            raise Refused(f"no run {run_id!r} in the store") from None
        if run.host != self.host:
            raise Refused(f"run {run_id} is not this host's")
        if run.status not in ("queued", "running", "lost"):
            raise Refused(f"run {run_id} is {run.status}: its payload is not stopped here")
        if run.pid is not None and process_alive(run.pid, run.proc_start):
            raise Refused(f"run {run_id}'s agent or supervisor (pid {run.pid}) is alive: it "
                          "stops its payload itself")
        try:
            job = self.store.get_job(run.job_id)
        except NotFound:
            raise Refused(f"run {run_id}'s job is gone") from None
        account = account_for(job.owner, self.config, self.uid_min)
        groups = _groups_carrying(run_id, account.uid)
        if run.payload_pid:
            groups &= {run.payload_pid}
        return _signal_as(account, sorted(groups), signal.SIGKILL) if groups else []


def _groups_carrying(run_id: str, uid: int) -> set[int]:
    """The process groups of the processes whose real uid is *uid* and whose environment
    holds ``HERMES_CRON_RUN_ID=run_id``: one pass over ``/proc``."""
    marker = RUN_MARKER + run_id.encode()
    found: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", "rb") as f:
                real = next((line.split()[1] for line in f if line.startswith(b"Uid:")), None)
            if real is None or int(real) != uid:
                continue
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if marker not in f.read().split(b"\0"):
                    continue
            found.add(os.getpgid(int(entry.name)))
        except (OSError, ValueError):
            continue  # gone meanwhile
    return found


def _signal_as(account: Account, groups: list[int], sig: int) -> list[int]:
    """Send *sig* to each of *groups* from a child that has become *account*; those it
    reached."""
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the owner, then the signals; never back to the helper
        code = 1
        try:
            os.close(out_r)
            signal.set_wakeup_fd(-1)
            os.setgroups(list(account.groups))
            os.setgid(account.gid)
            os.setuid(account.uid)
            if os.getresuid() != (account.uid,) * 3:
                raise OSError("not the owner")
            sent = []
            for pgid in groups:
                try:
                    os.killpg(pgid, sig)
                    sent.append(pgid)
                except OSError:
                    pass
            os.write(out_w, json.dumps(sent).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(out_w)
    try:
        chunks = []
        while data := os.read(out_r, 65536):
            chunks.append(data)
    finally:
        os.close(out_r)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    if not chunks:
        raise Refused("the run-as helper could not become the owner to signal the groups")
    return [int(g) for g in json.loads(b"".join(chunks))]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _check_fd(fd: int, mode: str, pipe: bool = False) -> None:
    """A descriptor the caller passed: a pipe or socket (or /dev/null), open for *mode*;
    with *pipe*, a pipe alone. Not a file: the owner's payload could truncate it, or
    read what else it holds."""
    import fcntl

    st = os.fstat(fd)
    if pipe:
        if not stat.S_ISFIFO(st.st_mode):
            raise Refused("a notebook run's artifact descriptor is a pipe")
    elif not (stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode)
              or (stat.S_ISCHR(st.st_mode) and st.st_rdev == os.stat(os.devnull).st_rdev)):
        raise Refused("a payload's descriptors are pipes or sockets (or /dev/null)")
    access = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    if access != os.O_RDWR and access != (os.O_WRONLY if mode == "w" else os.O_RDONLY):
        raise Refused(f"a payload's {'output' if mode == 'w' else 'go pipe'} descriptor "
                      f"is not open for {'writing' if mode == 'w' else 'reading'}")


def _read_failure(err_r: int, pid: int) -> str | None:
    """What the child wrote before it exec'd (None: it did)."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + EXEC_LIMIT
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([err_r], [], [], max(0.0, left))
        if not ready:
            os.kill(pid, signal.SIGKILL)
            return f"the payload did not start within {EXEC_LIMIT:g} s"
        data = os.read(err_r, 4096)
        if not data:
            return b"".join(chunks).decode(errors="replace") or None
        chunks.append(data)


def _become(account: Account, argv: list[str], env: dict[str, str], cwd: str,
            stdin: int | None, stdout: int, stderr: int, err_w: int,
            program: str | None, extra: Sequence[int] = (),
            payload: tuple[str | None, int] | None = None) -> NoReturn:
    """In the forked child: become *account*, checking each step, and exec, with
    *stdin*, *stdout*, *stderr* as 0, 1, 2 and *extra* as 3, 4, ... What fails is
    written to *err_w* (close-on-exec: end of file means the exec worked). *payload*:
    the file the payload runs and a pipe to write its sha256 to, read once the child is
    the owner (so the helper, root, reads nothing the owner could not)."""
    import fcntl

    step = "setsid"
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT,
                    signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()
        step = "setgroups"
        os.setgroups(list(account.groups))
        step = "setgid"
        os.setgid(account.gid)
        step = "setuid"
        os.setuid(account.uid)
        step = "checking the account"
        if (os.getresuid() != (account.uid,) * 3 or os.getresgid() != (account.gid,) * 3
                or sorted(set(os.getgroups())) != list(account.groups)):
            raise OSError("the process is not exactly the owner's")
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            raise OSError("root could be taken back")
        os.umask(0o077)
        step = "chdir"
        os.chdir(cwd)  # as the owner: a folder they may not enter is not entered
        if payload is not None:
            _write_sha256(*payload)
        step = "exec"
        null = os.open(os.devnull, os.O_RDONLY) if stdin is None else stdin
        # above every target first, so no dup2 overwrites a source (or err_w) yet to use
        err_w = fcntl.fcntl(err_w, fcntl.F_DUPFD_CLOEXEC, 16)
        sources = [fcntl.fcntl(fd, fcntl.F_DUPFD, 16) for fd in (null, stdout, stderr,
                                                                 *extra)]
        for target, fd in enumerate(sources):
            os.dup2(fd, target)
        first = 3 + len(extra)
        os.closerange(first, err_w)
        os.closerange(err_w + 1, max(os.sysconf("SC_OPEN_MAX"), err_w + 1))
        if program is not None and not _findable(program, env, cwd):  # a primed payload
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        os.execvpe(argv[0], argv, env)
    except BaseException as exc:  # noqa: BLE001 - told to the helper, the child exits
        if step == "exec" and isinstance(exc, OSError) and exc.filename is None:
            exc = OSError(exc.errno, exc.strerror, argv[0])  # as Popen says it
        text = str(exc) if step in ("exec", "chdir") else f"{step}: {exc}"
        try:
            os.write(err_w, text.encode(errors="replace")[:4000])
        finally:
            os._exit(127)
    os._exit(127)  # execvpe does not return


def owner_payload_file(spec: dict[str, Any], cwd: str, home: str) -> str | None:
    """The file a run of *spec* runs (``supervisor.payload_file``), with ``~`` the
    owner's *home* (this process's own HOME is root's)."""
    from hermes_cron_ext.runtime.supervisor import payload_file

    command = spec.get("command")
    if isinstance(command, str) and (command == "~" or command.startswith("~/")):
        command = home + command[1:]
    elif isinstance(command, list) and command and isinstance(command[0], str) \
            and (command[0] == "~" or command[0].startswith("~/")):
        command = [home + command[0][1:], *command[1:]]
    path: str | None = payload_file({**spec, "command": command}, cwd)
    return path


def _write_sha256(path: str | None, out: int) -> None:
    """In the child, as the owner: the sha256 of *path* to *out*, if it is a regular
    file they can read (nothing otherwise: a FIFO or a device is never read, the start
    then says what is wrong). *out* is closed either way."""
    import hashlib

    try:
        if path is not None:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
            with open(fd, "rb") as f:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    digest = hashlib.sha256()
                    while chunk := f.read(1 << 20):
                        digest.update(chunk)
                    os.write(out, digest.hexdigest().encode())
    except OSError:
        pass
    finally:
        os.close(out)


def _findable(program: str, env: dict[str, str], cwd: str) -> bool:
    """Whether *program* names a file the owner may execute, as exec would find it."""
    import shutil

    if "/" in program:
        path = os.path.join(cwd, program)
        return os.path.isfile(path) and os.access(path, os.X_OK)
    return shutil.which(program, path=env.get("PATH", os.defpath)) is not None


def open_read_only(url: str) -> Any:
    """The store at *url* as the helper opens it (as root): read-only, because the
    helper only reads (a run, its job, its secrets) and records nothing, so nothing it
    does can change the store (a migration, a write a bug would make):

    - SQLite: the file is opened with ``?mode=ro`` (its descriptor ``O_RDONLY``), never
      created, never migrated (a schema other than this version's is refused: the
      service migrates it), and refused when it, its folder, or its ``-wal`` / ``-shm``
      files are reached through a symbolic link or are not regular files of the file's
      owner (root's SQLite would otherwise open, and write the shared-memory index of,
      whatever the service's account linked there);
    - PostgreSQL: each connection's session is ``SET default_transaction_read_only =
      on`` before its first query, so a write fails in the server
      (``ReadOnlySqlTransaction``)."""
    from hermes_cron_ext.store import is_postgres

    if is_postgres(url):
        from hermes_cron_ext.store.postgres import PostgresStore

        class ReadOnlyPostgres(PostgresStore):
            def _connect(self):
                conn = super()._connect()
                conn.execute("SET default_transaction_read_only = on")
                return conn

            def _migrate(self) -> None:
                _check_schema(self)

        return ReadOnlyPostgres(url)
    from hermes_cron_ext.store.sqlite import SQLiteStore

    class ReadOnlySQLite(SQLiteStore):
        def __init__(self, path: str):
            # SQLiteStore's own would make the logs folder and the file: not as root
            self.path = path
            self.logs_dir = os.path.join(os.path.dirname(path), "logs")
            self._conns = []
            self._conns_lock = threading.Lock()
            self._serials = itertools.count(1)
            self.url, self.clock = path, time.time
            self._local = threading.local()
            _check_schema(self)

        @property
        def db(self) -> sqlite3.Connection:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                _check_sqlite_files(self.path)
                conn = sqlite3.connect(f"file:{urllib.parse.quote(self.path)}?mode=ro",
                                       uri=True, timeout=30.0, isolation_level=None,
                                       check_same_thread=False)
                conn.row_factory = sqlite3.Row
                self._local.conn = conn
                self._local.serial = next(self._serials)
                with self._conns_lock:
                    self._conns.append(conn)
            return conn

    path = url[len("sqlite://"):] if url.startswith("sqlite:///") else url
    return ReadOnlySQLite(os.path.abspath(path))


def _check_schema(store: Any) -> None:
    """A store whose schema is this version's (the helper never migrates one)."""
    from hermes_cron_ext.store.sql import SCHEMA_VERSION

    version = store.schema_version()
    if version != SCHEMA_VERSION:
        store.close()
        raise ValueError(f"the store has schema version {version}, this run-as helper "
                         f"reads {SCHEMA_VERSION}: start the service (which migrates it) "
                         "with the same hermes-cron-ext as the helper")


def _check_sqlite_files(path: str) -> None:
    """*path* (an SQLite store) and its folder reached with no symbolic link, and it and
    its ``-wal`` and ``-shm`` files (when there) regular files of one owner."""
    folder = os.path.dirname(path)
    if os.path.realpath(folder) != folder:
        raise ValueError(f"the store's folder {folder} is reached through a symbolic link")
    try:
        st = os.lstat(path)
    except FileNotFoundError:  # never create a store as root: the service makes it
        raise ValueError(f"no store at {path}") from None
    for name in (path, f"{path}-wal", f"{path}-shm"):
        try:
            other = os.lstat(name)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(other.st_mode) or other.st_uid != st.st_uid:
            raise ValueError(f"{name} is a symbolic link or not a file of the store's "
                             "owner: the run-as helper does not open it")


def serve(sock: socket.socket, config_path: str) -> int:
    """The helper's life: its configuration, its store (read-only), then requests until
    EOF."""
    os.chdir("/")
    os.umask(0o077)
    try:
        config = load_config(config_path)
        store = open_read_only(config.store)
    except Exception as exc:  # noqa: BLE001 - told to the caller, who shows it
        reason = f"run-as helper cannot start: {exc}"
        print(f"hermes-cron runas: {reason}", file=sys.stderr, flush=True)
        try:
            sock.send(json.dumps({"op": "ready", "ok": False, "reason": reason}).encode())
        except OSError:
            pass
        return 1
    return Helper(sock, store, config).serve()


# -- the client (the unprivileged service) ---------------------------------------------

def helper_argv() -> list[str]:
    """The helper's command, to be allowed as is in sudoers (prefix ``sudo -n``)."""
    return [sys.executable, "-I", "-m", "hermes_cron_ext.runtime.runas", "serve"]


def run_as_argv(given: Sequence[str] | str | None = None) -> list[str]:
    """The service's run-as setting: the command that starts the helper (``sudo -n
    /opt/hermes/bin/python -I -m hermes_cron_ext.runtime.runas serve``), *given* as a
    list or one shell-quoted line, else :data:`RUN_AS_ENV`'s; empty: runs run as the
    service, as they always did."""
    import shlex

    if isinstance(given, str):
        return shlex.split(given)
    if given:
        return [str(part) for part in given]
    return shlex.split(os.environ.get(RUN_AS_ENV, ""))


@dataclass(eq=False)
class Process:
    """A payload started through the helper, shaped like the ``subprocess.Popen`` the
    agent holds: ``pid`` (its group too), ``stdout`` and ``stderr`` (read ends),
    ``go`` (a primed payload's go pipe: write a line to run it, close it to drop it),
    ``artifact`` (a notebook run's artifact pipe, read end), ``returncode``,
    :meth:`poll`, :meth:`wait`, :meth:`killpg`."""

    runas: RunAs
    run_id: str
    pid: int
    stdout: IO[bytes]
    stderr: IO[bytes]
    go: int | None = None
    returncode: int | None = None
    artifact: IO[bytes] | None = None
    #: what the helper told of its end (its CPU time and peak memory with it)
    exit: Exit | None = None
    #: the sha256 of the script or notebook it runs, read by the helper as its owner
    #: (None: a command, code, a file the owner cannot read, an older helper); the
    #: service records it (``store.record_file_hash``), as it hashes its own runs' files
    file_sha256: str | None = None

    def poll(self) -> int | None:
        self.runas.events(keep=True)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Its return code; :class:`subprocess.TimeoutExpired` after *timeout* s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"run {self.run_id}", timeout or 0.0)
            self.runas._pump(left)
        return self.returncode

    def killpg(self, sig: int) -> bool:
        """Signal its process group through the helper; False when it is gone."""
        return self.runas.signal(self.run_id, sig)


class RunAs:
    """The unprivileged side: starts the helper (*argv*: :func:`helper_argv`, behind
    ``["sudo", "-n"]`` in production) and asks it, one request at a time.

    For a ``selectors`` loop: register :meth:`fileno`; when it is readable, and after
    each call here (a call reads the exits that arrive meanwhile and keeps them), call
    :meth:`events`.

    :raises RunAsError: the helper did not start (its reason: configuration, store)."""

    timeout: float
    pid: int

    def __init__(self, argv: Sequence[str] | None = None, *,
                 env: dict[str, str] | None = None, timeout: float = 30.0):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            proc = subprocess.Popen(list(argv or helper_argv()), stdin=theirs.fileno(),
                                    env=env, close_fds=True)
        except OSError:
            mine.close()
            raise
        finally:
            theirs.close()
        self._setup(mine, proc, timeout)
        try:
            hello = self._next(timeout, want=lambda m: m.get("op") == "ready")
            if not hello.get("ok"):
                raise RunAsError(hello.get("reason") or "the run-as helper did not start")
        except BaseException:
            self.close()
            raise
        #: the helper's pid (behind sudo, not the sudo process's)
        self.pid = int(hello["pid"])

    @classmethod
    def attach(cls, fd: int, pid: int, timeout: float = 30.0) -> RunAs:
        """A client on a channel another client handed out (:meth:`channel`): *fd* is
        its socket, *pid* the helper's."""
        self = cls.__new__(cls)
        self._setup(socket.socket(fileno=fd), None, timeout)
        self.pid = pid
        return self

    def _setup(self, sock: socket.socket, proc: subprocess.Popen | None,
               timeout: float) -> None:
        self.timeout = timeout
        self._proc = proc  # the helper (or sudo) this client started, if it did
        self._n = 0
        self._answers: list[dict[str, Any]] = []
        self._events: list[Exit] = []
        self._procs: dict[int, Process] = {}  # by pid, until their exit is told
        self._gone: str | None = None  # why the helper can no longer answer
        sock.setblocking(False)
        self._sock: socket.socket | None = sock
        self.pid = 0

    # -- requests ---------------------------------------------------------------------
    def launch(self, run_id: str, stdout: int, stderr: int, go: int | None = None,
               artifact: int | None = None) -> int:
        """Start *run_id*'s payload as its owner, writing to *stdout* and *stderr*
        (descriptors; the caller closes its copies); with *go* (a pipe's read end) it is
        primed and waits for a line there (a notebook's runner: a byte); *artifact* (a
        pipe's write end) a notebook run's artifact pipe, which it needs. Its pid, which
        is also its process group.

        :raises RunAsError: with the helper's reason (refused, cannot start)."""
        return int(self._start(run_id, stdout, stderr, go, artifact)["pid"])

    def _start(self, run_id: str, stdout: int, stderr: int, go: int | None,
               artifact: int | None) -> dict[str, Any]:
        """:meth:`launch`'s answer: ``pid``, and ``file_sha256`` (see :class:`Process`)."""
        fds = [stdout, stderr] + ([] if go is None else [go]) + \
            ([] if artifact is None else [artifact])
        request: dict[str, Any] = {"op": "start", "run": run_id, "go": go is not None}
        if artifact is not None:
            request["artifact"] = True
        return self._call(request, fds)

    def popen(self, run_id: str, go: bool = False, artifact: bool = False) -> Process:
        """:meth:`launch` with pipes made here: a :class:`Process` to read and wait on
        (*artifact*: a notebook run, whose executed notebooks come in on
        ``Process.artifact``, framed)."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        go_r, go_w = os.pipe() if go else (None, None)
        art_r, art_w = os.pipe() if artifact else (None, None)
        try:
            answer = self._start(run_id, out_w, err_w, go_r, art_w)
        except BaseException:
            for fd in (out_r, err_r, go_w, art_r):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            for fd in (out_w, err_w, go_r, art_w):
                if fd is not None:
                    os.close(fd)
        pid, digest = int(answer["pid"]), answer.get("file_sha256")
        proc = Process(self, run_id, pid, open(out_r, "rb", buffering=0),  # noqa: SIM115
                       open(err_r, "rb", buffering=0), go_w,  # noqa: SIM115
                       artifact=None if art_r is None else open(art_r, "rb", buffering=0),
                       file_sha256=digest if isinstance(digest, str) else None)
        told = next((e for e in self._events if e.pid == pid), None)
        if told is None:  # its exit may have come in with the answer
            self._procs[pid] = proc
        else:
            proc.returncode = told.returncode
        return proc

    def signal(self, run_id: str, sig: int) -> bool:
        """Signal the process group the helper started for *run_id*; False when it is
        gone. :raises RunAsError: not a run this helper started, not a signal."""
        return bool(self._call({"op": "signal", "run": run_id, "sig": int(sig)})["sent"])

    def stop_orphan(self, run_id: str) -> list[int]:
        """SIGKILL what is left of a lost run's payload, as its owner (see
        :meth:`Helper.stop_orphan`): the process groups signalled (empty: none left).

        :raises RunAsError: refused (its agent or supervisor is alive, an owner the
            helper never runs as, ...)."""
        return [int(g) for g in self._call({"op": "stop_orphan", "run": run_id})["stopped"]]

    def channel(self) -> RunAs:
        """A new client of the same helper, on a socket of its own: for a process this
        one forks (an agent of the fork server), which must not share this socket (the
        answers would cross). No new helper, no sudo: the helper lives until its last
        channel is closed; each channel is told the exits of the runs it started, and may
        signal any run the helper started."""
        answer = self._call({"op": "channel"})
        fds = answer.get("_fds") or []
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise RunAsError("the run-as helper sent no channel")
        return RunAs.attach(fds[0], int(answer["pid"]), self.timeout)

    @property
    def gone(self) -> str | None:
        """Why the helper can no longer answer (it exited, or this client is closed), as
        far as this client has read; None while it may."""
        return "the run-as helper is closed" if self._sock is None else self._gone

    def forget(self) -> None:
        """In a forked process that does not use this client (another has a channel of
        its own): close the socket here, never waiting for the helper."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._proc = None

    def fileno(self) -> int:
        """The socket to the helper, for a selector: readable when exits arrive."""
        assert self._sock is not None, "closed"
        return self._sock.fileno()

    def events(self, keep: bool = False) -> list[Exit]:
        """The exits told since the last call (read now without blocking, with those
        a call read meanwhile); *keep*: leave them for the next call."""
        self._pump(0)
        out = list(self._events)
        if not keep:
            self._events.clear()
        return out

    def close(self, timeout: float = 5.0) -> None:
        """Close the socket: the helper exits; payloads it started go on."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            self._proc = None

    def __enter__(self) -> RunAs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the wire ---------------------------------------------------------------------
    def _call(self, request: dict[str, Any], fds: Sequence[int] = ()) -> dict[str, Any]:
        if self._sock is None:
            raise RunAsError("the run-as helper is closed")
        self._n += 1
        n = request["n"] = self._n
        data = json.dumps(request).encode()
        while True:
            try:
                if fds:
                    self._sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                 array.array("i", fds))])
                else:
                    self._sock.send(data)
                break
            except BlockingIOError:
                select.select([], [self._sock], [], self.timeout)
            except OSError as exc:
                raise RunAsError(f"the run-as helper is gone ({exc})") from None
        answer = self._next(self.timeout, want=lambda m: m.get("n") == n)
        if not answer.get("ok"):
            raise RunAsError(answer.get("reason") or "refused by the run-as helper")
        return answer

    def _next(self, timeout: float, want: Callable[[dict[str, Any]], bool]
              ) -> dict[str, Any]:
        """The next message *want* accepts; exits read meanwhile are kept."""
        deadline = time.monotonic() + timeout
        while True:
            for i, message in enumerate(self._answers):
                if want(message):
                    del self._answers[i]
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise RunAsError(f"the run-as helper did not answer within {timeout:g} s")
            self._pump(left)

    def _pump(self, timeout: float | None) -> None:
        """Read what the helper sent, waiting up to *timeout* s for the first message.

        :raises RunAsError: the helper is gone (what it sent before is read first)."""
        sock = self._sock
        if sock is None:
            raise RunAsError("the run-as helper is closed")
        if self._gone is not None:
            raise RunAsError(self._gone)
        if timeout is None or timeout > 0:
            select.select([sock], [], [], timeout)
        while True:
            fds: list[int] = []
            try:
                data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 1,
                                                  socket.MSG_CMSG_CLOEXEC)
            except BlockingIOError:
                return
            except OSError as exc:
                data, why = b"", str(exc)
            else:
                why = "it exited"
            if not data:
                code = self._proc.poll() if self._proc is not None else None
                self._gone = (f"the run-as helper is gone ({why}"
                              f"{'' if code is None else f', exit code {code}'})")
                return
            message = json.loads(data)
            if message.get("op") == "exit":
                cpu, maxrss = message.get("cpu"), message.get("maxrss")
                done = Exit(message["run"], int(message["pid"]), int(message["status"]),
                            None if cpu is None else float(cpu),
                            None if maxrss is None else int(maxrss))
                self._events.append(done)
                proc = self._procs.pop(done.pid, None)
                if proc is not None:
                    proc.exit = done
                    proc.returncode = done.returncode
            else:
                if fds:
                    message["_fds"] = fds
                self._answers.append(message)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["serve"]:
        print("usage: python -I -m hermes_cron_ext.runtime.runas serve (started by the "
              "service, its stdin a socketpair)", file=sys.stderr)
        return 2
    try:
        sock = socket.socket(fileno=os.dup(0))
    except OSError:
        sock = None
    if sock is None or sock.family != socket.AF_UNIX or sock.type != socket.SOCK_SEQPACKET:
        print("hermes-cron runas: stdin must be the SOCK_SEQPACKET socketpair of the "
              "service that started it (RunAs)", file=sys.stderr)
        return 2
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return serve(sock, os.environ.get(CONFIG_ENV) or CONFIG_PATH)


if __name__ == "__main__":
    sys.exit(main())
