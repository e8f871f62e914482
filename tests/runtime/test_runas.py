"""Runs as their owner (runtime/runas.py), with real parts only: real Unix accounts made
here with useradd, a real SQLite store, the helper started as root (as ``sudo -n``
would start it) and payloads that are shell commands.

A run of a job is started as the job's owner: uid, gid, groups, home, a login-like
environment; what it makes is the owner's, mode 0600; it cannot read another user's
home nor signal another user's run; the helper takes the account from the store (the
caller cannot name one) and refuses root, system accounts, '' and unknown names; a
secret reaches the payload's environment and no command line; the helper signals only
what it started, and exits when its caller closes, leaving the payloads running."""

from __future__ import annotations

import grp
import json
import os
import pwd
import selectors
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

import nbformat
import pytest

from hermes_cron_ext.domain.jobspec import validate_new
from hermes_cron_ext.domain.models import Job
from hermes_cron_ext.processes import hostname
from hermes_cron_ext.runtime.notebook import FrameReader
from hermes_cron_ext.runtime.runas import (
    CONFIG_ENV,
    Exit,
    RunAs,
    RunAsError,
    open_read_only,
    owner_artifact,
)
from hermes_cron_ext.store import open_store
from tests.conftest import wait_for
from tests.runtime import runas_support
from tests.runtime.runas_support import ALICE, BOB, NEEDS_ROOT, SYSTEM, TEAM, TOOR, quiet

pytestmark = NEEDS_ROOT
accounts = runas_support.accounts  # the module's Unix accounts (a fixture)


@pytest.fixture(scope="module")
def owners_python():
    """The owners run this Python (a notebook's runner and kernel): pyenv keeps it under
    /root (0700 here), which other accounts may traverse (never read) for these tests."""
    import hermes_cron_ext
    from tests.hub_support import traversable

    with traversable([sys.executable, sys.prefix,
                      os.path.dirname(os.path.abspath(hermes_cron_ext.__file__))]):
        yield

SECRET = "s3cr3t-6f1c2a9e-value"


class World:
    """The store, the helper's configuration, and a helper on it, in *base* (root's)."""

    def __init__(self, base: str):
        self.base = base
        self.db = os.path.join(base, "store", "hermes-cron.db")
        self.store = open_store(self.db)
        self.config = self.make_config()
        self.runas = self.helper()
        self._n = 0

    def make_config(self, store: str | None = None, **extra) -> str:
        """A root-owned configuration for a helper, in a folder of its own."""
        path = os.path.join(tempfile.mkdtemp(dir=self.base), "runas.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"store": store or self.db, **extra}, f)
        return path

    def helper(self, config: str | None = None) -> RunAs:
        return RunAs(env={**os.environ, CONFIG_ENV: config or self.config})

    def job(self, owner: str, command: str | list[str], via: list[str] | None = None,
            **extra) -> Job:
        """A new job of *owner* running *command*; *via*: the groups its ``after``
        links go through (another owner's upstream shared with them)."""
        self._n += 1
        fields = validate_new({"name": f"job-{self._n}", "schedule": "@yearly",
                               "timezone": "UTC", "command": command, "overlap": "allow",
                               **extra}, now=time.time())
        fields["owner"] = owner
        if via is not None:
            fields["after"] = [{**a, "via": via} for a in fields["after"]]
        return self.store.create_job(fields)[0]

    def queue(self, owner: str, command: str | list[str], attach: bool = True,
              **extra) -> str:
        """A queued run of a new job of *owner* running *command*, attached as an agent
        of this host would have it."""
        run = self.store.request_run(self.job(owner, command, **extra).id)
        if attach:
            assert self.store.attach_run(run.id, os.getpid(), None, hostname())
        return run.id

    def run(self, run_id: str, runas: RunAs | None = None,
            timeout: float = 20.0) -> tuple[int, str, str]:
        """Start *run_id* through the helper; its return code, stdout and stderr."""
        proc = (runas or self.runas).popen(run_id)
        out = proc.stdout.read().decode()
        err = proc.stderr.read().decode()
        proc.stdout.close()
        proc.stderr.close()
        return proc.wait(timeout), out, err


@pytest.fixture(scope="module")
def world(accounts):
    base = tempfile.mkdtemp(prefix="hc-runas-store-")
    w = World(base)
    yield w
    w.runas.close()
    w.store.close()
    shutil.rmtree(base, ignore_errors=True)


def _lines(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _uid_of(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError(f"no Uid in /proc/{pid}/status")


# -- who a run is ------------------------------------------------------------------------

def test_a_run_runs_as_its_owner_with_a_login_environment(world, accounts):
    alice = accounts[ALICE]
    rc, out, err = world.run(world.queue(ALICE, (
        'echo user=$(id -un); echo uid=$(id -u); echo gid=$(id -g); echo groups="$(id -G)"; '
        'echo home=$HOME; echo USER=$USER; echo LOGNAME=$LOGNAME; echo SHELL=$SHELL; '
        'echo pwd=$(pwd); echo umask=$(umask); echo config=${' + CONFIG_ENV + '-unset}; '
        'echo sid=$(ps -o sid= -p $$ | tr -d " "); echo pid=$$')))
    assert rc == 0, err
    got = _lines(out)
    expected_groups = {alice.pw_gid, grp.getgrnam(TEAM).gr_gid}
    assert got["user"] == ALICE
    assert (int(got["uid"]), int(got["gid"])) == (alice.pw_uid, alice.pw_gid)
    assert set(map(int, got["groups"].split())) == expected_groups  # initgroups: hc-team too
    assert got["home"] == got["pwd"] == alice.pw_dir  # the default folder is the home
    assert (got["USER"], got["LOGNAME"], got["SHELL"]) == (ALICE, ALICE, "/bin/sh")
    assert got["umask"] == "0077"
    assert got["config"] == "unset"  # nothing of root's environment but locale and zone
    assert got["sid"] == got["pid"]  # a session (and process group) of its own


def test_what_a_run_makes_is_its_owners_and_private(world, accounts):
    alice = accounts[ALICE]
    rc, _, err = world.run(world.queue(ALICE, "echo made > made.txt && mkdir made.d"))
    assert rc == 0, err
    for name, mode in (("made.txt", 0o600), ("made.d", 0o700)):
        st = os.stat(os.path.join(alice.pw_dir, name))
        assert (st.st_uid, st.st_gid) == (alice.pw_uid, alice.pw_gid)
        assert st.st_mode & 0o777 == mode


def test_a_run_cannot_read_another_users_home(world, accounts):
    bob = accounts[BOB]
    secret = os.path.join(bob.pw_dir, "diary.txt")
    with open(secret, "w", encoding="utf-8") as f:
        f.write("bob's\n")
    os.chown(secret, bob.pw_uid, bob.pw_gid)
    os.chmod(secret, 0o700)
    rc, out, err = world.run(world.queue(ALICE, f"cat {secret}"))
    assert rc != 0 and "bob's" not in out
    assert "Permission denied" in err
    rc, out, err = world.run(world.queue(ALICE, f"ls {bob.pw_dir}"))
    assert rc != 0 and "diary" not in out and "Permission denied" in err
    # nor start in it: the folder is entered as the owner, so the start fails
    with pytest.raises(RunAsError, match="Permission denied"):
        world.runas.popen(world.queue(ALICE, "pwd", cwd=bob.pw_dir))
    # bob's own run reads it
    rc, out, _ = world.run(world.queue(BOB, f"cat {secret}"))
    assert (rc, out) == (0, "bob's\n")


# -- whom the helper refuses -------------------------------------------------------------

@pytest.mark.parametrize(("owner", "reason"), [
    ("", "has no owner"),
    ("root", "denied"),
    ("nobody", "denied"),
    (SYSTEM, "is a system account"),
    ("hc-no-such-user", "has no account on this host"),
])
def test_root_system_empty_and_unknown_owners_are_refused(world, accounts, owner, reason):
    run_id = world.queue(owner, "id -un")
    with pytest.raises(RunAsError, match=reason):
        world.runas.popen(run_id)
    assert world.store.get_run(run_id).status == "queued"  # nothing started


def test_a_root_account_by_another_name_is_refused(world, accounts):
    """uid 0 under a name no deny list holds."""
    subprocess.run(["useradd", "-o", "-u", "0", "-g", "0", "-M", "-d", "/nonexistent",
                    TOOR], check=True, capture_output=True)
    try:
        with pytest.raises(RunAsError, match="is root"):
            world.runas.popen(world.queue(TOOR, "id -un"))
    finally:
        quiet("userdel", "-f", TOOR)
    assert TOOR not in {p.pw_name for p in pwd.getpwall()}


def test_an_account_that_can_become_root_is_refused(world, accounts):
    """A member of sudo (or docker, wheel, ...) could become root: never run as one."""
    subprocess.run(["groupadd", "-f", "sudo"], check=True, capture_output=True)
    subprocess.run(["usermod", "-aG", "sudo", BOB], check=True, capture_output=True)
    try:
        with pytest.raises(RunAsError, match="in sudo, a group that can become root"):
            world.runas.popen(world.queue(BOB, "id -un"))
    finally:
        subprocess.run(["gpasswd", "-d", BOB, "sudo"], capture_output=True)
    assert world.run(world.queue(BOB, "id -un"))[1] == f"{BOB}\n"


def test_the_configuration_denies_and_allows(world, accounts):
    with world.helper(world.make_config(deny=[BOB])) as runas:
        with pytest.raises(RunAsError, match="denied"):
            runas.popen(world.queue(BOB, "id -un"))
        assert world.run(world.queue(ALICE, "id -un"), runas)[1] == f"{ALICE}\n"
    with world.helper(world.make_config(allow_groups=[TEAM])) as runas:
        with pytest.raises(RunAsError, match="none of the groups"):
            runas.popen(world.queue(BOB, "id -un"))
        assert world.run(world.queue(ALICE, "id -un"), runas)[1] == f"{ALICE}\n"


def test_the_caller_names_a_run_never_an_account(world, accounts):
    """The helper takes the account (and the command) from the store: a request that
    names a user, a uid or a command is refused, and bob's run, asked for by the same
    caller that starts alice's, runs as bob."""
    bobs = world.queue(BOB, "id -un")
    out_r, out_w = os.pipe()
    try:
        for extra in ({"user": ALICE}, {"uid": 0}, {"argv": ["id"]}, {"cwd": "/"}):
            with pytest.raises(RunAsError, match="unknown field"):
                world.runas._call({"op": "start", "run": bobs, "go": False, **extra},
                                  [out_w, out_w])
        with pytest.raises(RunAsError, match="passes 2 descriptors"):
            world.runas._call({"op": "start", "run": bobs, "go": False}, [out_w])
        with open(os.path.join(world.base, "a-file"), "wb") as f, \
                pytest.raises(RunAsError, match="pipes or sockets"):
            world.runas.launch(bobs, f.fileno(), out_w)  # a file: it could be truncated
        with pytest.raises(RunAsError, match="not open for writing"):
            world.runas.launch(bobs, out_r, out_w)
    finally:
        os.close(out_r)
        os.close(out_w)
    assert world.run(bobs)[1] == f"{BOB}\n"
    assert world.run(world.queue(ALICE, "id -un"))[1] == f"{ALICE}\n"


def test_only_a_queued_run_attached_here_starts_and_only_once(world, accounts):
    with pytest.raises(RunAsError, match="no run"):
        world.runas.popen("r_0000000000000000")
    with pytest.raises(RunAsError, match="not attached"):
        world.runas.popen(world.queue(ALICE, "true", attach=False))
    done = world.queue(ALICE, "true")
    world.store.finish_run(done, "succeeded", 0)
    with pytest.raises(RunAsError, match="is succeeded, not queued"):
        world.runas.popen(done)
    asked = world.queue(ALICE, "true")
    world.store.request_cancel(asked)
    with pytest.raises(RunAsError, match="cancel"):
        world.runas.popen(asked)
    twice = world.queue(ALICE, "sleep 30")
    proc = world.runas.popen(twice)
    try:
        with pytest.raises(RunAsError, match="started already"):
            world.runas.popen(twice)
    finally:
        assert proc.killpg(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    with pytest.raises(RunAsError, match="started already"):  # ended, its end not recorded
        world.runas.popen(twice)
    with pytest.raises(RunAsError, match="No such file or directory: '/no/such/program'"):
        world.runas.popen(world.queue(ALICE, ["/no/such/program"]))


# -- notebooks -----------------------------------------------------------------------------

def _owners_notebook(account: pwd.struct_passwd, name: str, *cells: str) -> str:
    """A notebook of *cells* in *account*'s home, theirs, 0600."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    path = os.path.join(account.pw_dir, name)
    nbformat.write(nb, path)
    os.chown(path, account.pw_uid, account.pw_gid)
    os.chmod(path, 0o600)
    return path


def _owners_folders(account: pwd.struct_passwd, folder: str) -> None:
    """*folder* and those missing above it, under *account*'s home: theirs, 0700."""
    if folder != account.pw_dir and not os.path.isdir(folder):
        _owners_folders(account, os.path.dirname(folder))
        os.mkdir(folder, 0o700)
        os.chown(folder, account.pw_uid, account.pw_gid)


def _frames(pipe) -> list[bytes]:
    reader, frames = FrameReader(), []
    while data := pipe.read(65536):
        if (frame := reader.feed(data)) is not None:
            frames.append(frame)
    assert reader.pending == 0 and reader.broken is None
    return frames


def test_a_notebook_run_runs_as_its_owner_and_sends_its_notebook_on_the_pipe(
        world, accounts, owners_python):
    """The runner and its kernel run as alice; her copy of the executed notebook is in
    her home (folders 0700, file 0600, hers), and the same bytes come on the artifact
    pipe, framed, for the service."""
    alice = accounts[ALICE]
    path = _owners_notebook(alice, "whoami.ipynb",
                            "import getpass, os\nprint(f'uid={os.getuid()}')\n"
                            "print(f'user={getpass.getuser()}')\n"
                            "print(f\"home={os.environ['HOME']}\")",
                            "print(f'kernel_ppid_uid={os.stat(f\"/proc/{os.getppid()}\").st_uid}')")
    run_id = world.queue(ALICE, path, kind="notebook")
    proc = world.runas.popen(run_id, artifact=True)
    assert proc.artifact is not None
    frames = _frames(proc.artifact)
    out = proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 0, err
    for f in (proc.stdout, proc.stderr, proc.artifact):
        f.close()
    got = _lines(out)
    assert (int(got["uid"]), got["user"], got["home"]) == (alice.pw_uid, ALICE, alice.pw_dir)
    assert int(got["kernel_ppid_uid"]) == alice.pw_uid  # the runner is hers too
    mine = owner_artifact(alice.pw_dir, run_id)
    assert mine == os.path.join(alice.pw_dir, ".local", "share", "hermes-cron", "artifacts",
                                f"{run_id}.ipynb")
    st = os.stat(mine)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (alice.pw_uid, alice.pw_gid, 0o600)
    for folder in ("artifacts", "hermes-cron"):
        st = os.stat(os.path.join(alice.pw_dir, ".local", "share", folder)
                     if folder == "hermes-cron" else os.path.dirname(mine))
        assert (st.st_uid, st.st_mode & 0o777) == (alice.pw_uid, 0o700)
    with open(mine, "rb") as f:
        assert frames and frames[-1] == f.read()
    nb = nbformat.reads(frames[-1].decode(), as_version=4)
    assert nb.metadata["hermes_cron"]["status"] == "succeeded"
    assert f"uid={alice.pw_uid}" in nb.cells[0].outputs[0]["text"]
    assert not os.path.exists(world.store.artifact_path(run_id))  # the caller writes that


def test_a_notebook_run_passes_an_artifact_pipe_and_only_a_notebook_run(world, accounts):
    """The artifact descriptor: a pipe's write end, passed by a notebook run alone."""
    path = _owners_notebook(accounts[ALICE], "nothing.ipynb", "1")
    notebook = world.queue(ALICE, path, kind="notebook")
    with pytest.raises(RunAsError, match="a notebook run, and only one, passes its artifact"):
        world.runas.popen(notebook)
    with pytest.raises(RunAsError, match="a notebook run, and only one, passes its artifact"):
        world.runas.popen(world.queue(ALICE, "id -un"), artifact=True)
    out_r, out_w = os.pipe()
    mine, theirs = socket.socketpair()
    try:
        with pytest.raises(RunAsError, match="artifact descriptor is a pipe"):
            world.runas.launch(notebook, out_w, out_w, artifact=theirs.fileno())
        with pytest.raises(RunAsError, match="not open for writing"):
            world.runas.launch(notebook, out_w, out_w, artifact=out_r)
        with pytest.raises(RunAsError, match="passes 3 descriptors"):
            world.runas._call({"op": "start", "run": notebook, "go": False,
                               "artifact": True}, [out_w, out_w, out_w, out_w])
    finally:
        for fd in (out_r, out_w):
            os.close(fd)
        mine.close()
        theirs.close()
    assert world.store.get_run(notebook).status == "queued"  # nothing started


def test_a_downstream_run_is_told_its_owners_copy_of_the_upstream_notebook(world, accounts):
    """``HERMES_CRON_UPSTREAM_ARTIFACT``: the owner's own copy of the upstream run's
    notebook when that run's job is the same owner's and the copy is there; else
    nothing: never the service's folder (the owner cannot read it)."""
    alice, bob = accounts[ALICE], accounts[BOB]
    upstream = world.job(ALICE, "up.ipynb", kind="notebook", shares={TEAM: "read"})
    shows = "echo artifact=$HERMES_CRON_UPSTREAM_ARTIFACT"
    alices = world.job(ALICE, shows, after=[upstream.id])
    bobs = world.job(BOB, shows, after=[upstream.id], via=[TEAM])  # shared with bob

    def told(up_run: str) -> dict[str, str]:
        world.store.finish_run(up_run, "succeeded", 0)
        out = {}
        for name, job in ((ALICE, alices), (BOB, bobs)):
            (down,) = [r for r in world.store.list_runs(job.id, limit=50).items
                       if r.status == "queued"]
            assert world.store.attach_run(down.id, os.getpid(), None, hostname())
            rc, text, err = world.run(down.id)
            assert rc == 0, err
            world.store.finish_run(down.id, "succeeded", 0)
            out[name] = _lines(text)["artifact"]
        return out

    first = world.store.request_run(upstream.id).id  # no copy of alice's: nothing told
    assert told(first) == {ALICE: "", BOB: ""}
    second = world.store.request_run(upstream.id).id
    copy = owner_artifact(alice.pw_dir, second)
    for account, path in ((alice, copy), (bob, owner_artifact(bob.pw_dir, second))):
        _owners_folders(account, os.path.dirname(path))
        with open(path, "w", encoding="utf-8") as f:
            f.write("{}")
        os.chown(path, account.pw_uid, account.pw_gid)
    with open(world.store.artifact_path(second), "w", encoding="utf-8") as f:
        f.write("{}")  # the service's copy: never told to an owner
    assert told(second) == {ALICE: copy, BOB: ""}  # bob's own file is no copy of it


# -- signals -----------------------------------------------------------------------------

def test_the_helper_signals_only_groups_it_started(world, accounts):
    bob = world.runas.popen(world.queue(BOB, "sleep 30 & sleep 30; wait"))
    try:
        assert _uid_of(bob.pid) == accounts[BOB].pw_uid
        with pytest.raises(RunAsError, match="not started by this run-as helper"):
            world.runas.signal(world.queue(BOB, "true"), signal.SIGTERM)
        with pytest.raises(RunAsError, match="not a signal"):
            world.runas.signal(bob.run_id, 12345)
        # another helper (another caller) did not start it: refused there
        with world.helper() as other, pytest.raises(RunAsError, match="not started by"):
            other.signal(bob.run_id, signal.SIGKILL)
        # alice's run can signal neither bob's payload nor its group
        rc, out, err = world.run(world.queue(
            ALICE, f"kill -TERM {bob.pid}; echo rc=$?; /bin/kill -TERM -- -{bob.pid}; "
                   "echo group=$?"))
        assert _lines(out) == {"rc": "1", "group": "1"}
        assert err.count("not permitted") == 2, err
        assert bob.poll() is None
        # the helper can, for the run it started: the whole group goes
        assert bob.killpg(signal.SIGTERM)
        assert bob.wait(10) == -signal.SIGTERM
        wait_for(lambda: not world.runas.signal(bob.run_id, 0), 10, what="the group gone")
        assert world.runas.signal(bob.run_id, signal.SIGKILL) is False  # gone, still its own
    finally:
        subprocess.run(["pkill", "-KILL", "-g", str(bob.pid)], check=False)


# -- secrets -----------------------------------------------------------------------------

def test_a_secret_reaches_the_payload_and_no_command_line(world, accounts):
    run_id = world.queue(ALICE, 'echo "token=$TOKEN"; exec sleep 30',
                         env={"PLAIN": "x"}, secret_env={"TOKEN": SECRET})
    assert SECRET not in json.dumps(world.store.get_run(run_id).spec)  # never in the run
    proc = world.runas.popen(run_id)
    try:
        assert proc.stdout.readline().decode() == f"token={SECRET}\n"

        def environ() -> list[bytes]:
            # reads empty while the shell is in the middle of its exec of sleep
            with open(f"/proc/{proc.pid}/environ", "rb") as f:
                return [v for v in f.read().split(b"\0") if v]
        assert f"TOKEN={SECRET}".encode() in wait_for(environ, 10, 0.01,
                                                      "the payload's environment")
        lines = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    lines.append((pid, f.read()))
            except OSError:
                pass
        assert str(world.runas.pid) in dict(lines) and str(proc.pid) in dict(lines)
        assert [pid for pid, line in lines if SECRET.encode() in line] == []
    finally:
        proc.killpg(signal.SIGKILL)
        proc.wait(10)
    # bob's runs never see alice's secret
    rc, out, _ = world.run(world.queue(BOB, "env"))
    assert rc == 0 and SECRET not in out and "TOKEN" not in out


# -- primed payloads ---------------------------------------------------------------------

def test_a_primed_payload_runs_as_its_owner_when_told_and_never_without(world, accounts):
    primed = world.runas.popen(world.queue(ALICE, "id -un"), go=True)
    assert primed.go is not None
    assert _uid_of(primed.pid) == accounts[ALICE].pw_uid  # the waiting shell is alice's
    time.sleep(0.2)
    assert primed.poll() is None  # waits for its line
    os.write(primed.go, b"\n")
    os.close(primed.go)
    assert primed.stdout.read() == f"{ALICE}\n".encode()
    assert primed.wait(10) == 0
    dropped = world.runas.popen(world.queue(ALICE, "echo ran"), go=True)
    assert dropped.go is not None
    os.close(dropped.go)  # the run must not start: end of file
    assert dropped.stdout.read() == b""
    assert dropped.wait(10) != 0
    with pytest.raises(RunAsError, match="No such file or directory: 'no-such-program'"):
        world.runas.popen(world.queue(ALICE, ["no-such-program"]), go=True)


# -- the helper's life ---------------------------------------------------------------------

def test_exits_come_to_a_selector_loop(world, accounts):
    runas = world.runas
    runas.events()
    sel = selectors.DefaultSelector()
    sel.register(runas.fileno(), selectors.EVENT_READ)
    out_r, out_w = os.pipe()
    try:
        pid = runas.launch(world.queue(ALICE, "exit 3"), out_w, out_w)
    finally:
        os.close(out_w)
    os.close(out_r)
    seen: list = []
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        sel.select(1.0)  # readable when the exit comes (or it came with the answer)
        seen = [e for e in runas.events() if e.pid == pid]
    sel.close()
    assert [e.returncode for e in seen] == [3]
    # measured by the helper's wait4: CPU seconds and peak resident bytes of the payload
    assert seen[0].cpu is not None and seen[0].cpu >= 0
    assert seen[0].maxrss is not None and seen[0].maxrss > 100_000


def test_an_exit_message_without_cpu_and_maxrss_is_still_read():
    """An older helper's exit message (no ``cpu``, no ``maxrss``): they are unknown."""
    done = Exit("r_1", 12, 3 << 8)
    assert (done.returncode, done.cpu, done.maxrss) == (3, None, None)


def test_the_helper_exits_when_its_caller_closes_and_leaves_the_payloads(world, accounts):
    runas = world.helper()
    helper = runas._proc
    assert helper is not None
    proc = runas.popen(world.queue(ALICE, "exec sleep 30"))
    try:
        runas.close()
        assert helper.wait(10) == 0
        assert not os.path.exists(f"/proc/{runas.pid}")
        assert _uid_of(proc.pid) == accounts[ALICE].pw_uid  # still running, alice's
    finally:
        os.killpg(proc.pid, signal.SIGKILL)


def test_a_forked_process_gets_a_channel_of_its_own(world, accounts):
    """A fork server's agent: one helper, one sudo; the forked process asks on a channel
    of its own (answers never cross), is told its own runs' exits, and the helper lives
    until its last channel closes."""
    runas = world.helper()
    helper = runas._proc
    assert helper is not None
    channel = runas.channel()
    assert channel.pid == runas.pid
    alices = world.queue(ALICE, "id -un")
    child = os.fork()
    if child == 0:  # the agent: the channel alone, never the parent's socket
        code = 3
        try:
            proc = channel.popen(alices)
            out = proc.stdout.read()
            code = 0 if (out, proc.wait(10)) == (f"{ALICE}\n".encode(), 0) else 1
        finally:
            os._exit(code)
    channel.close()  # the parent's copy
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert world.store.get_run(alices).status == "queued"  # the store is the agent's job
    # the first channel's runs are told to it; a run another channel started may be
    # signalled from here (the reconcile of a dead agent's runs)
    other = runas.channel()
    bobs = other.popen(world.queue(BOB, "exec sleep 30"))
    assert runas.signal(bobs.run_id, signal.SIGKILL)
    assert bobs.wait(10) == -signal.SIGKILL
    assert all(e.pid != bobs.pid for e in runas.events())
    # closing the helper's stdin while a channel is open: it stays for that channel
    runas.close(timeout=0.5)
    assert helper.poll() is None
    assert world.run(world.queue(BOB, "id -un"), other)[1] == f"{BOB}\n"
    other.close()
    assert helper.wait(10) == 0


def test_the_helper_takes_its_configuration_from_root_alone(world, accounts, tmp_path):
    loose = world.make_config()
    os.chmod(loose, 0o666)
    with pytest.raises(RunAsError, match="writable by root alone"):
        world.helper(loose)
    os.chown(loose, accounts[ALICE].pw_uid, -1)
    os.chmod(loose, 0o600)
    with pytest.raises(RunAsError, match="owned by root"):
        world.helper(loose)
    with pytest.raises(RunAsError, match="no store at"):
        world.helper(world.make_config(str(tmp_path / "nothing-here.db")))
    assert not (tmp_path / "nothing-here.db").exists()  # never made by root
    # its stdin must be the caller's socketpair
    proc = subprocess.run([sys.executable, "-I", "-m", "hermes_cron_ext.runtime.runas",
                           "serve"], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "SOCK_SEQPACKET" in proc.stderr


# -- its store: read-only --------------------------------------------------------------------

def _job_fields(name: str) -> dict:
    fields = validate_new({"name": name, "schedule": "@yearly", "timezone": "UTC",
                           "command": "true"}, now=time.time())
    fields["owner"] = ALICE
    return fields


def test_the_helper_opens_its_sqlite_store_read_only(world, accounts):
    """It records nothing: its store is opened ``?mode=ro`` (the helper's descriptor of
    the file is O_RDONLY), so a write through it fails, and the store is unchanged."""
    run_id = world.queue(ALICE, "true")
    store = open_read_only(world.db)
    try:
        assert store.get_run(run_id).status == "queued"  # it reads
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.request_cancel(run_id)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.create_job(_job_fields("written-by-the-helper"))
    finally:
        store.close()
    assert not world.store.get_run(run_id).cancel_requested
    assert "written-by-the-helper" not in {j.name for j in world.store.list_jobs().items}
    with world.helper() as runas:
        assert world.run(world.queue(ALICE, "id -un"), runas)[1] == f"{ALICE}\n"
        modes = []
        for fd in os.listdir(f"/proc/{runas.pid}/fd"):
            try:
                if os.readlink(f"/proc/{runas.pid}/fd/{fd}") != world.db:
                    continue
                with open(f"/proc/{runas.pid}/fdinfo/{fd}", encoding="utf-8") as f:
                    flags = next(int(line.split()[1], 8) for line in f
                                 if line.startswith("flags:"))
            except (OSError, StopIteration):
                continue
            modes.append(flags & os.O_ACCMODE)
        assert modes == [os.O_RDONLY]


def test_the_helper_refuses_a_store_reached_through_a_symbolic_link(world, accounts):
    """The service's account owns the store's folder: a link it puts there (the file,
    its -wal or -shm) must not make root's SQLite open, or write, what it points to."""
    folder = tempfile.mkdtemp(dir=world.base)
    db = os.path.join(folder, "hermes-cron.db")
    open_store(db).close()  # a store, closed: no -wal or -shm left
    decoy = os.path.join(world.base, "decoy")
    with open(decoy, "w", encoding="utf-8") as f:
        f.write("root's own\n")
    link = os.path.join(folder, "linked.db")
    os.symlink(db, link)
    with pytest.raises(RunAsError, match="linked.db is a symbolic link"):
        world.helper(world.make_config(link))
    os.symlink(decoy, f"{db}-shm")
    with pytest.raises(RunAsError, match="-shm is a symbolic link"):
        world.helper(world.make_config(db))
    with open(decoy, encoding="utf-8") as f:
        assert f.read() == "root's own\n"
    os.unlink(f"{db}-shm")
    linked_folder = os.path.join(world.base, "linked-folder")
    os.symlink(folder, linked_folder)
    with pytest.raises(RunAsError, match="reached through a symbolic link"):
        world.helper(world.make_config(os.path.join(linked_folder, "hermes-cron.db")))
    with world.helper(world.make_config(db)):  # the store itself is fine
        pass


@pytest.mark.postgres
def test_the_helper_opens_a_postgres_store_read_only(pg_url, accounts):
    """PostgreSQL: each session of the helper's store defaults to read-only
    transactions, so a write through it fails in the server."""
    import psycopg

    owner = open_store(pg_url)
    store = open_read_only(pg_url)
    try:
        job, _ = owner.create_job(_job_fields("pg-job"))
        run = owner.request_run(job.id)
        assert store.get_run(run.id).status == "queued"  # it reads
        assert store.db.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            store.request_cancel(run.id)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            store.create_job(_job_fields("written-by-the-helper"))
        assert not owner.get_run(run.id).cancel_requested
        assert [j.name for j in owner.list_jobs().items] == ["pg-job"]
    finally:
        store.close()
        owner.close()


def test_a_launch_costs_a_fork_and_an_exec_not_a_python_start(world, accounts):
    """200 runs of ``true``: each started as alice and told ended with 0. The cost per
    launch is printed; the goals are bench/'s, not a test's."""
    runs = [world.queue(ALICE, "true") for _ in range(200)]
    world.runas.events()
    took, pids = [], set()
    for run_id in runs:
        out_r, out_w = os.pipe()
        start = time.perf_counter()
        pids.add(world.runas.launch(run_id, out_w, out_w))
        took.append(time.perf_counter() - start)
        os.close(out_w)
        os.close(out_r)
    ended: dict[int, int] = {}
    wait_for(lambda: ended.update({e.pid: e.returncode for e in world.runas.events()})
             or pids <= set(ended), 20, what="the 200 exits")
    assert {ended[pid] for pid in pids} == {0}
    took.sort()
    print(f"\nrun-as launch of `true` (n={len(took)}): p50 {took[len(took) // 2] * 1e3:.2f} "
          f"ms, p99 {took[int(len(took) * 0.99) - 1] * 1e3:.2f} ms, max {took[-1] * 1e3:.2f} ms")
