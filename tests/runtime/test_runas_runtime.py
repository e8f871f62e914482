"""Runs as their owner on every path, with real parts only: real Unix accounts (useradd),
a real SQLite store, a real ``hermes-cron daemon --run-as`` whose ticker starts the
run-as helper (as root here, directly, with a test configuration; ``sudo -n`` in
production) and hands runs to its fork server, agents and supervisors.

A scheduled run of alice's job runs as alice through a host agent, and a run that waits
its turn (overlap ``queue``) or replaces another (``replace``) through a supervisor;
bob's job cannot read alice's private file; a timeout stops an owned run (TERM, then
KILL, through the helper) and a cancel does; runs of a job owned by root or by no
account are recorded failed with the helper's refusal; an owned notebook's runner and
kernel run as the owner, its executed notebook is theirs (in their home) and the
service's (the API's artifact), on success, failure and timeout; the service's hub
token reaches no run; a helper that cannot start leaves the service's own jobs running
and fails the owned ones, never running them as the service, and says so in the log
and as the ticker's fault until it can start; a killed helper costs the exit status of
the runs in flight and is replaced; after a restart, a lost run's payload that runs as
its owner is stopped through the new helper (``stop_orphan``, as the owner, nothing
else); owned runs go to no Dask executor; a one-off ``hermes-cron run`` with no ticker
alive runs as the owner too; with run-as off, owned jobs run as they always did."""

from __future__ import annotations

import asyncio
import hashlib
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
from datetime import UTC, datetime

import nbformat
import pytest

from hermes_cron_ext.domain.jobspec import validate_new
from hermes_cron_ext.domain.models import Job, Run
from hermes_cron_ext.ops.host import Host
from hermes_cron_ext.ops.local import Operations
from hermes_cron_ext.processes import hostname, proc_start_time
from hermes_cron_ext.runtime import executor
from hermes_cron_ext.runtime.agent import handles
from hermes_cron_ext.runtime.runas import (
    CONFIG_ENV,
    RUN_AS_ENV,
    RunAs,
    RunAsError,
    helper_argv,
    owner_artifact,
)
from hermes_cron_ext.runtime.ticker import RUN_AS_LOCAL_ONLY
from hermes_cron_ext.store.sqlite import SQLiteStore
from tests.conftest import processes_with, wait_for
from tests.runtime import runas_support
from tests.runtime.runas_support import ALICE, BOB, NEEDS_ROOT

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

FINAL = {"succeeded", "failed", "cancelled", "timed_out", "skipped", "lost"}
#: the service's own credentials, in the daemon's environment as a hub gives them
TOKEN = "hub-service-token-7d41e0c9b2"
SERVICE_ENV = {"JUPYTERHUB_API_TOKEN": TOKEN, "JPY_API_TOKEN": TOKEN,
               "HERMES_CRON_TOKEN": TOKEN, "JUPYTERHUB_SERVICE_NAME": "hermes-cron"}
RUN_AS = shlex.join(helper_argv())


class Hub:
    """A store in *base* (root's), the helper's configuration, and daemons on it."""

    def __init__(self, base: str):
        self.base = base
        self.db = os.path.join(base, "store", "hermes-cron.db")
        os.makedirs(os.path.dirname(self.db))
        self.store = SQLiteStore(self.db)
        self.config = self.make_config()
        self.env = {**os.environ, "HERMES_CRON_DB": self.db, "HERMES_CRON_HEARTBEAT": "0.5",
                    CONFIG_ENV: self.config, **SERVICE_ENV}
        self.env.pop(RUN_AS_ENV, None)
        self.procs: dict[subprocess.Popen, str] = {}  # each daemon, its stderr's file
        self.current: subprocess.Popen | None = None  # the daemon that ticks now
        self._n = 0

    def make_config(self, **extra) -> str:
        path = os.path.join(tempfile.mkdtemp(dir=self.base), "runas.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"store": self.db, **extra}, f)
        return path

    def daemon(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """``hermes-cron daemon ARGS``, once its ticker is registered; its stderr goes to
        a file (:meth:`said`)."""
        err = os.path.join(self.base, f"daemon-{len(self.procs)}.err")
        with open(err, "wb") as f:
            proc = subprocess.Popen([sys.executable, "-m", "hermes_cron_ext", "daemon", *args],
                                    env=env or self.env, stdout=subprocess.DEVNULL, stderr=f)
        self.procs[proc] = err

        def registered():
            if proc.poll() is not None:
                raise AssertionError(f"the daemon exited: {self.said(proc)}")
            return any(t.pid == proc.pid for t in self.store.list_tickers())
        wait_for(registered, 30, 0.1, "the daemon to register")
        return proc

    def swap(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Stop the daemon that ticks now and start ``daemon ARGS`` instead: one daemon
        on the store, so it is the one that claims the slots."""
        if self.current is not None:
            self.stop(self.current)
        self.current = self.daemon(*args, env=env)
        return self.current

    def said(self, proc: subprocess.Popen) -> str:
        with open(self.procs[proc], encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def job(self, owner: str, command: str | list[str], at: float | None = None,
            **extra) -> Job:
        """A job of *owner*'s that runs once, at *at* (two seconds from now by default)."""
        self._n += 1
        when = datetime.fromtimestamp(round(at or time.time() + 2, 3), UTC).isoformat()
        fields = validate_new({"name": f"job-{self._n}", "at": when, "timezone": "UTC",
                               "command": command, **extra}, now=time.time())
        fields["owner"] = owner
        job, _ = self.store.create_job(fields)
        return job

    def runs(self, job: Job) -> list[Run]:
        return self.store.list_runs(job.id, limit=50).items

    def run_of(self, job: Job, status: set[str] | frozenset[str] | str = frozenset(FINAL),
               timeout: float = 30.0) -> Run:
        """The job's one run, once its status is one of *status*."""
        wanted = {status} if isinstance(status, str) else set(status)
        found = wait_for(lambda: next((r for r in self.runs(job) if r.status in wanted), None),
                         timeout, 0.05, f"a run of {job.name} {sorted(wanted)}")
        return self.store.get_run(found.id)  # with its spec

    def output(self, run: Run) -> str:
        return self.store.read_output(run.id).decode(errors="replace")

    def close(self) -> None:
        for proc in self.procs:
            self.stop(proc)
        for run in self.store.active_runs():  # nothing of this store left running
            for pid in processes_with(f"HERMES_CRON_RUN_ID={run.id}\0".encode()):
                try:
                    os.killpg(os.getpgid(pid), signal.SIGKILL)
                except OSError:
                    pass
        self.store.close()


@pytest.fixture(scope="module")
def hub(accounts):
    """A store and one ``hermes-cron daemon --run-as`` on it, for the module."""
    base = tempfile.mkdtemp(prefix="hc-runas-hub-")
    h = Hub(base)
    h.swap("--run-as", RUN_AS)
    yield h
    h.close()
    shutil.rmtree(base, ignore_errors=True)


def _lines(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _left(run: Run) -> dict[int, str]:
    """Processes still carrying *run*'s id (root reads every environment)."""
    return processes_with(f"HERMES_CRON_RUN_ID={run.id}\0".encode())


# -- who a run is, on each path ------------------------------------------------------------

def test_a_scheduled_run_of_alices_job_runs_as_alice_through_an_agent(hub, accounts):
    alice = accounts[ALICE]
    job = hub.job(ALICE, "echo user=$(id -un); echo uid=$(id -u); echo home=$HOME; "
                         "echo pwd=$(pwd); echo umask=$(umask)")
    run = hub.run_of(job)
    assert run.trigger == "schedule" and handles(run)  # the host agent's
    assert (run.status, run.exit_code) == ("succeeded", 0), (run.reason, hub.output(run))
    got = _lines(hub.output(run))
    assert (got["user"], int(got["uid"])) == (ALICE, alice.pw_uid)
    assert got["home"] == got["pwd"] == alice.pw_dir
    assert got["umask"] == "0077"
    assert run.pid != run.payload_pid and run.payload_pid  # watched by the agent


def test_a_run_that_waits_its_turn_runs_as_alice_through_a_supervisor(hub, accounts):
    """Overlap ``queue``: the second run waits for the first, in a supervisor."""
    job = hub.job(ALICE, "sleep 1; id -un", overlap="queue")
    first = hub.run_of(job, "running")
    assert not handles(first)  # a supervisor's
    second = hub.store.request_run(job.id)
    wait_for(lambda: (hub.store.get_run(second.id).phase or "").startswith("waiting"), 20,
             what="the second run to wait its turn")
    done = [wait_for(lambda r=r: (x := hub.store.get_run(r.id)).status in FINAL and x, 30,
                     what="the runs to end") for r in (first, second)]
    for run in done:
        assert (run.status, hub.output(run)) == ("succeeded", f"{ALICE}\n"), run.reason
    assert done[1].started_at >= done[0].finished_at  # it waited its turn


def test_a_run_that_replaces_another_stops_it_and_runs_as_alice(hub, accounts):
    """Overlap ``replace``: the new run's supervisor has the running one cancelled (its
    agent or supervisor stops alice's payload through the helper), then runs."""
    flag = f"replaced-{time.time_ns()}"
    job = hub.job(ALICE, f"if [ -e {flag} ]; then echo second=$(id -un); else touch {flag}; "
                         "echo first; sleep 60; fi", overlap="replace")
    first = hub.run_of(job, "running")
    wait_for(lambda: "first" in hub.output(first), 10, what="the first run's payload")
    second = hub.store.request_run(job.id)
    done = [wait_for(lambda r=r: (x := hub.store.get_run(r.id)).status in FINAL and x, 30,
                     what="the runs to end") for r in (first, second)]
    assert (done[0].status, done[0].reason) == ("cancelled", f"replaced by run {second.id}")
    assert (done[1].status, hub.output(done[1])) == ("succeeded", f"second={ALICE}\n")
    assert not _left(done[0])


@pytest.mark.parametrize("overlap", ["forbid", "queue"])
def test_an_owned_runs_cpu_and_peak_memory_come_with_the_helpers_exit_message(
        hub, accounts, owners_python, overlap):
    """The helper reaps an owned payload (``wait4``) and tells its CPU seconds and peak
    memory with its exit: they go with the final status, from the agent (``forbid``)
    and from a supervisor (``queue``), with what the run reported."""
    burn = ("import time; t = time.process_time()\n"
            "while time.process_time() - t < 0.3: pass\n"
            "b = bytearray(100_000_000); print('::metric rows=1234')")
    job = hub.job(ALICE, [sys.executable, "-c", burn], overlap=overlap)
    run = hub.run_of(job)
    assert handles(run) == (overlap == "forbid")
    assert run.status == "succeeded", (run.reason, hub.output(run))
    got = {name: hub.store.metric_history(job.id, name, 1) for name in
           ("rows", "cpu_seconds", "peak_memory")}
    assert got["rows"] == [1234.0]
    assert got["cpu_seconds"][0] >= 0.25 and got["peak_memory"][0] >= 100e6, got


@pytest.mark.parametrize("overlap", ["forbid", "queue"])
def test_bobs_job_cannot_read_a_private_file_in_alices_home(hub, accounts, overlap):
    alice = accounts[ALICE]
    secret = os.path.join(alice.pw_dir, f"private-{overlap}.txt")
    with open(secret, "w", encoding="utf-8") as f:
        f.write("alice's own\n")
    os.chown(secret, alice.pw_uid, alice.pw_gid)
    os.chmod(secret, 0o700)
    bobs = hub.job(BOB, f"cat {secret}", overlap=overlap)
    alices = hub.job(ALICE, f"cat {secret}", overlap=overlap)
    bob_run, alice_run = hub.run_of(bobs), hub.run_of(alices)
    assert bob_run.status == "failed" and "alice's own" not in hub.output(bob_run)
    assert "Permission denied" in bob_run.reason
    assert (alice_run.status, hub.output(alice_run)) == ("succeeded", "alice's own\n")


# -- stopping a run that is another user's ---------------------------------------------------

@pytest.mark.parametrize("overlap", ["forbid", "queue"])
def test_a_timeout_stops_an_owned_run_term_then_kill(hub, accounts, overlap):
    """The payload ignores SIGTERM: the helper sends it, then SIGKILL after the grace, to
    the whole group (a child too), as the service could not."""
    job = hub.job(ALICE, "trap '' TERM; sleep 60 & echo started; sleep 60", timeout=1,
                  kill_grace=1, overlap=overlap)
    running = hub.run_of(job, "running")
    wait_for(lambda: _left(running), 10, what="the payload")
    assert {_uid(pid) for pid in _left(running)} == {accounts[ALICE].pw_uid}
    run = hub.run_of(job)
    assert (run.status, run.reason) == ("timed_out", "timed out after 1 s")
    assert run.exit_code == 128 + signal.SIGKILL
    text = hub.output(run)
    assert "sending SIGTERM to the process group" in text
    assert "sent SIGKILL to the process group" in text
    wait_for(lambda: not _left(run), 10, what="the payload's group gone")


@pytest.mark.parametrize("overlap", ["forbid", "queue"])
def test_a_cancel_stops_an_owned_run(hub, accounts, overlap):
    job = hub.job(ALICE, "echo in; sleep 60", overlap=overlap)
    running = hub.run_of(job, "running")
    wait_for(lambda: "in" in hub.output(running), 10, what="the payload's first line")
    Operations(hub.db).cancel(running.id)  # as hermes-cron cancel (the API) does
    run = hub.run_of(job)
    assert (run.status, run.reason) == ("cancelled", "cancelled")
    wait_for(lambda: not _left(run), 10, what="the payload gone")


# -- whom the helper refuses ----------------------------------------------------------------

@pytest.mark.parametrize("overlap", ["forbid", "queue"])
@pytest.mark.parametrize(("owner", "refusal"), [
    ("root", "the job's owner 'root' is denied by the run-as helper"),
    ("hc-no-such-user", "the job's owner 'hc-no-such-user' has no account on this host"),
])
def test_a_run_the_helper_refuses_is_failed_with_its_reason(hub, accounts, overlap, owner,
                                                            refusal):
    job = hub.job(owner, "id -un", overlap=overlap)
    run = hub.run_of(job)
    assert (run.status, run.exit_code) == ("failed", 127)
    assert run.reason == f"cannot start: {refusal}"
    assert refusal in hub.output(run)
    shown = subprocess.run([sys.executable, "-m", "hermes_cron_ext", "runs", job.id, "--json"],
                           env=hub.env, capture_output=True, text=True, check=True)
    assert [(r["status"], r["reason"]) for r in json.loads(shown.stdout)["runs"]] == [
        ("failed", f"cannot start: {refusal}")]


# -- notebooks ------------------------------------------------------------------------------

def _notebook(account: pwd.struct_passwd, name: str, *cells: str) -> str:
    """A notebook of *cells* in *account*'s home (0700: only they can read it), theirs."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    path = os.path.join(account.pw_dir, name)
    nbformat.write(nb, path)
    os.chown(path, account.pw_uid, account.pw_gid)
    os.chmod(path, 0o600)
    return path


def _artifacts(hub: Hub, run: Run, account: pwd.struct_passwd) -> nbformat.NotebookNode:
    """The run's executed notebook as the service reads it (the API's artifact), checked
    against the owner's own copy: the same bytes, theirs, 0600."""
    data = Operations(hub.db).artifact(run.id)
    service = os.stat(hub.store.artifact_path(run.id))
    assert (service.st_uid, service.st_mode & 0o777) == (os.getuid(), 0o600)
    mine = owner_artifact(account.pw_dir, run.id)
    st = os.stat(mine)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (account.pw_uid, account.pw_gid,
                                                         0o600)
    assert os.stat(os.path.dirname(mine)).st_mode & 0o777 == 0o700
    with open(mine, "rb") as f:
        assert f.read() == data
    return nbformat.reads(data.decode(), as_version=4)


def test_an_owned_notebooks_cells_run_as_its_owner_and_the_service_gets_its_artifact(
        hub, accounts, owners_python):
    """The runner and its kernel run as alice (uid, user, home); the executed notebook
    is hers in her home, and the service's copy (the API's artifact) is the same."""
    alice = accounts[ALICE]
    path = _notebook(alice, "whoami.ipynb",
                     "import getpass, os\nprint(f'uid={os.getuid()}')\n"
                     "print(f'user={getpass.getuser()}')\nprint(f\"home={os.environ['HOME']}\")",
                     "6 * 7")
    run = hub.run_of(hub.job(ALICE, path, kind="notebook"), timeout=120)
    assert (run.status, run.exit_code) == ("succeeded", 0), (run.reason, hub.output(run))
    got = _lines(hub.output(run))
    assert (int(got["uid"]), got["user"], got["home"]) == (alice.pw_uid, ALICE, alice.pw_dir)
    nb = _artifacts(hub, run, alice)
    assert nb.metadata["hermes_cron"]["status"] == "succeeded"
    assert f"uid={alice.pw_uid}\nuser={ALICE}\n" in nb.cells[0].outputs[0]["text"]
    assert nb.cells[1].outputs[0]["data"]["text/plain"] == "42"
    assert TOKEN not in json.dumps(nb)


def test_an_owned_runs_script_and_notebook_are_hashed_as_their_owner_reads_them(
        hub, accounts, owners_python):
    """The helper's child hashes the file an owned run runs once it is the owner, and
    the supervisor or the host agent (overlap ``forbid``) records it: alice's private
    script and notebook (0600 in her home) have the hash of their bytes; a command has
    none. Bob's job naming her script records none (the helper
    reads nothing for him that he could not) and fails as he cannot read it."""
    alice = accounts[ALICE]
    script = os.path.join(alice.pw_dir, "hashed.py")
    with open(script, "w", encoding="utf-8") as f:
        f.write("print('hashed')\n")
    os.chown(script, alice.pw_uid, alice.pw_gid)
    os.chmod(script, 0o600)
    notebook = _notebook(alice, "hashed.ipynb", "print('hashed')")

    def sha256(path: str) -> str:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    py = hub.run_of(hub.job(ALICE, script, kind="python", overlap="queue"))
    assert not handles(py)  # a supervisor's
    assert (py.status, py.file_sha256) == ("succeeded", sha256(script)), (
        py.reason, hub.output(py))
    by_agent = hub.run_of(hub.job(ALICE, script, kind="python", overlap="forbid"))
    assert handles(by_agent)  # the host agent's: it records the helper's hash too
    assert (by_agent.status, by_agent.file_sha256) == ("succeeded", sha256(script)), (
        by_agent.reason, hub.output(by_agent))
    command = hub.run_of(hub.job(ALICE, f"cat {script}", overlap="forbid"))
    assert handles(command) and (command.status, command.file_sha256) == ("succeeded", None)
    nb = hub.run_of(hub.job(ALICE, notebook, kind="notebook"), timeout=120)
    assert (nb.status, nb.file_sha256) == ("succeeded", sha256(notebook)), nb.reason
    bobs = hub.run_of(hub.job(BOB, script, kind="python", overlap="queue"))
    assert (bobs.status, bobs.file_sha256) == ("failed", None)
    assert "Permission denied" in hub.output(bobs)


def test_an_owned_notebook_cannot_read_a_file_in_bobs_home(hub, accounts, owners_python):
    bob = accounts[BOB]
    secret = os.path.join(bob.pw_dir, "notes.txt")
    with open(secret, "w", encoding="utf-8") as f:
        f.write("bob's notes\n")
    os.chown(secret, bob.pw_uid, bob.pw_gid)
    os.chmod(secret, 0o600)
    path = _notebook(accounts[ALICE], "peek.ipynb", f"print(open({secret!r}).read())")
    run = hub.run_of(hub.job(ALICE, path, kind="notebook"), timeout=120)
    assert (run.status, run.exit_code) == ("failed", 1), run.reason
    assert "PermissionError" in run.reason and "bob's notes" not in hub.output(run)
    nb = _artifacts(hub, run, accounts[ALICE])
    assert nb.cells[0].outputs[0]["ename"] == "PermissionError"


def test_an_owned_notebook_with_a_failing_cell_fails_with_its_artifact_saved(
        hub, accounts, owners_python):
    path = _notebook(accounts[ALICE], "broken.ipynb", "x = 1\nprint('before')", "1 / 0",
                     "print('never')")
    run = hub.run_of(hub.job(ALICE, path, kind="notebook"), timeout=120)
    assert (run.status, run.exit_code) == ("failed", 1)
    assert run.reason == ("exit code 1: notebook failed in cell 2 of 3: ZeroDivisionError: "
                          "division by zero")
    nb = _artifacts(hub, run, accounts[ALICE])
    assert nb.cells[0].outputs[0]["text"] == "before\n"
    assert nb.cells[1].outputs[0]["ename"] == "ZeroDivisionError"
    assert nb.cells[2].outputs == [] and nb.metadata["hermes_cron"]["status"] == "failed"


def test_an_owned_notebook_cancelled_while_its_kernel_waits_leaves_nothing(
        hub, accounts, owners_python):
    """Warm start as the owner: a run that waits its turn (overlap ``queue``) has its
    runner and kernel (alice's) up already, waiting on the go pipe the helper handed
    over; a cancel closes it and the kernel is shut down, nothing run."""
    path = _notebook(accounts[ALICE], "turns.ipynb", "print('ran', flush=True)",
                     "import time\ntime.sleep(60)")
    job = hub.job(ALICE, path, kind="notebook", overlap="queue")
    first = hub.run_of(job, "running", timeout=60)
    wait_for(lambda: "ran" in hub.output(first), 60, what="the first run's first cell")
    second = hub.store.request_run(job.id)
    wait_for(lambda: (hub.store.get_run(second.id).phase or "").startswith("waiting"), 30,
             what="the second run to wait its turn")
    wait_for(lambda: len(_left(second)) >= 2, 30, what="its runner and kernel, warm")
    assert {_uid(pid) for pid in _left(second)} == {accounts[ALICE].pw_uid}
    ops = Operations(hub.db)
    ops.cancel(second.id)
    done = wait_for(lambda: (r := hub.store.get_run(second.id)).status in FINAL and r, 30,
                    what="the second run to end")
    assert done.status == "cancelled" and done.reason.startswith("cancelled while waiting")
    wait_for(lambda: not _left(second), 20, what="its runner and kernel gone")
    assert "ran" not in hub.output(done)
    assert not os.path.exists(hub.store.artifact_path(second.id))
    assert not os.path.exists(owner_artifact(accounts[ALICE].pw_dir, second.id))
    ops.cancel(first.id)
    wait_for(lambda: hub.store.get_run(first.id).status == "cancelled", 30,
             what="the first run cancelled")
    wait_for(lambda: not _left(first), 20, what="the first run's runner and kernel gone")


def test_a_timeout_stops_an_owned_notebook_and_its_kernel(hub, accounts, owners_python):
    """The runner (alice's) is signalled through the helper; it shuts its kernel down,
    and what ran is kept in the artifact."""
    path = _notebook(accounts[ALICE], "slow.ipynb", "print('started', flush=True)",
                     "import time\ntime.sleep(120)")
    job = hub.job(ALICE, path, kind="notebook", timeout=4, kill_grace=10)
    running = hub.run_of(job, "running", timeout=60)
    wait_for(lambda: "started" in hub.output(running), 60, what="the first cell")
    assert {_uid(pid) for pid in _left(running)} == {accounts[ALICE].pw_uid}
    assert len(_left(running)) >= 2  # the runner and its kernel
    run = hub.run_of(job, timeout=60)
    assert (run.status, run.reason) == ("timed_out", "timed out after 4 s"), hub.output(run)
    wait_for(lambda: not _left(run), 20, what="the runner and the kernel gone")
    nb = _artifacts(hub, run, accounts[ALICE])
    assert nb.cells[0].outputs[0]["text"] == "started\n"
    assert nb.metadata["hermes_cron"]["status"] == "cancelled"


# -- the service's own -----------------------------------------------------------------------

def test_the_services_token_reaches_no_run_and_its_own_jobs_run_as_it(hub, accounts):
    jobs = {"agent": hub.job(ALICE, "env; echo uid=$(id -u)"),
            "supervisor": hub.job(ALICE, "env; echo uid=$(id -u)", overlap="queue"),
            "service's own": hub.job("", "env; echo uid=$(id -u)")}
    daemon_uid = os.getuid()
    for what, job in jobs.items():
        run = hub.run_of(job)
        assert run.status == "succeeded", (what, run.reason)
        text = hub.output(run)
        assert TOKEN not in text and "JUPYTERHUB_" not in text, what
        assert "JPY_API_TOKEN" not in text and "HERMES_CRON_TOKEN" not in text, what
        uid = int(_lines(text)["uid"])
        assert uid == (daemon_uid if what == "service's own" else
                       pwd.getpwnam(ALICE).pw_uid), what


def test_a_run_of_an_owned_job_is_never_sent_to_another_executor(hub, accounts):
    """A Dask worker would run it as its own account: recorded failed instead."""
    dask = "dask://127.0.0.1:1"
    try:
        hub.swap("--run-as", RUN_AS, "--executor", "local", "--executor", dask)
        run = hub.run_of(hub.job(ALICE, "id -un", executor=dask))
        assert run.status == "failed"
        assert run.reason == RUN_AS_LOCAL_ONLY.format(dask)
    finally:
        hub.swap("--run-as", RUN_AS)


def test_a_one_off_run_with_no_ticker_alive_runs_as_its_owner(accounts):
    """``hermes-cron run`` with no ticker alive starts the run's supervisor itself; with
    ``$HERMES_CRON_RUN_AS`` set, that supervisor starts a helper of its own."""
    base = tempfile.mkdtemp(prefix="hc-runas-oneoff-")
    try:
        hub = Hub(base)
        job = hub.job(ALICE, "id -un", at=time.time() + 3600)
        env = {**hub.env, RUN_AS_ENV: RUN_AS}
        subprocess.run([sys.executable, "-m", "hermes_cron_ext", "run", job.name], env=env,
                       capture_output=True, check=True, timeout=60)
        run = hub.run_of(job)
        assert (run.status, hub.output(run)) == ("succeeded", f"{ALICE}\n"), run.reason
        hub.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- the helper's life -----------------------------------------------------------------------

def test_a_helper_that_cannot_start_fails_owned_runs_and_says_so(hub, accounts, tmp_path):
    """No configuration: the daemon says so, the service's own job runs, alice's job is
    recorded failed with the reason, never run as the service."""
    env = {**hub.env, CONFIG_ENV: str(tmp_path / "no-such-runas.json")}
    try:
        broken = hub.swap("--run-as", RUN_AS, env=env)
        said = wait_for(lambda: "ticking on" in (text := hub.said(broken)) and text, 20,
                        what="the daemon to say it ticks")
        assert "RUN-AS IS BROKEN" in said and "no-such-runas.json" in said, said
        alices = hub.job(ALICE, "id -un")
        own = hub.job("", "echo mine")
        run = hub.run_of(alices)
        assert run.status == "failed" and "the run-as helper cannot start" in run.reason
        assert "no-such-runas.json" in run.reason and not hub.output(run).startswith(ALICE)
        assert hub.run_of(own).status == "succeeded"
    finally:
        hub.swap("--run-as", RUN_AS)


def test_a_helper_that_cannot_start_is_the_tickers_fault_until_it_can(hub, accounts,
                                                                     tmp_path, monkeypatch):
    """The hub service's ticker (in its server): its status (``hermes-cron status`` through
    the API) shows the fault; once the helper can start (its configuration written), it
    is started at a run's start and alice's runs run as alice."""
    config = tmp_path / "runas.json"
    monkeypatch.setenv(CONFIG_ENV, str(config))
    monkeypatch.setattr(executor, "RUNAS_RETRY", 0.5)  # a minute by default

    async def main():
        host = Host.open(hub.db, kind="server", tick=True, run_as=helper_argv(), threads=1)
        try:
            await host.start()
            broken = host.ops.status()
            assert host.ticker is not None
            config.write_text(json.dumps({"store": hub.db}))
            await asyncio.sleep(0.6)
            job = hub.job(ALICE, "id -un")
            run = await asyncio.to_thread(hub.run_of, job)
            return broken, host.ops.status(), run
        finally:
            await host.stop()
    assert hub.current is not None
    hub.stop(hub.current)  # this host's ticker claims the slots
    try:
        broken, fixed, run = asyncio.run(main())
    finally:
        hub.swap("--run-as", RUN_AS)
    fault = broken["ticker_fault"]
    assert fault is not None and "the run-as helper cannot start" in fault["error"]
    assert str(config) in fault["error"]
    assert fixed["ticker_fault"] is None
    assert (run.status, hub.output(run)) == ("succeeded", f"{ALICE}\n"), run.reason


def test_a_killed_helper_costs_the_exit_status_of_runs_in_flight_and_is_replaced(hub,
                                                                                   accounts):
    """``kill -9`` of the helper (root's: only root can): alice's payload in flight runs
    to its end (its output kept), its exit status is lost; the next run of an owned job
    starts through a new helper (and a new fork server)."""
    job = hub.job(ALICE, "sleep 1.5; echo done")
    running = hub.run_of(job, "running")
    assert hub.current is not None
    (helper,) = [pid for pid, line in processes_with(b"runtime.runas", "cmdline").items()
                 if _parent(pid) == hub.current.pid]
    os.kill(helper, signal.SIGKILL)
    run = hub.run_of(job)
    assert run.status == "failed" and run.reason.startswith(
        "its exit status is unknown: the run-as helper is gone"), run.reason
    assert hub.output(run) == "done\n" and run.id == running.id
    after = hub.run_of(hub.job(ALICE, "id -un"))
    assert (after.status, hub.output(after)) == ("succeeded", f"{ALICE}\n"), after.reason
    (again,) = [pid for pid, line in processes_with(b"runtime.runas", "cmdline").items()
                if _parent(pid) == hub.current.pid]
    assert again != helper


def test_after_a_restart_a_lost_runs_payload_is_stopped_through_the_new_helper(hub, accounts):
    """The daemon stops (its agent keeps the run), then the agent is killed: the run's
    helper exits with its last channel and alice's payload runs on, unwatched. The next
    daemon's reconcile marks the run lost and stops the payload, which the service can
    neither see (another user's environment) nor signal, through its own helper."""
    job = hub.job(ALICE, "sleep 300 & exec sleep 300")
    running = hub.run_of(job, "running")
    wait_for(lambda: len(_left(running)) == 2, 10, what="the payload and its child")
    assert hub.current is not None
    hub.stop(hub.current)
    os.kill(running.pid, signal.SIGKILL)  # the agent
    time.sleep(1.0)
    assert len(_left(running)) == 2  # alice's, running on
    hub.swap("--run-as", RUN_AS)
    run = hub.run_of(job, "lost")
    assert run.reason.startswith(f"its supervisor (pid {running.pid}) is gone")
    assert run.reason.endswith(f"its payload (process group {running.payload_pid}) was "
                               "stopped by the run-as helper")
    wait_for(lambda: not _left(run), 10, what="the payload gone")


def test_the_helper_stops_a_lost_runs_payload_as_its_owner_and_nothing_else(accounts):
    """``stop_orphan``, asked of a helper that did not start the payload (the one that
    did has exited, as after a service restart): refused while the run's agent lives or
    once the run has ended; then it stops the groups of alice's processes that carry the
    run's id, and not a process of bob's that carries it too."""
    base = tempfile.mkdtemp(prefix="hc-runas-orphan-")
    try:
        hub = Hub(base)
        env = {**os.environ, CONFIG_ENV: hub.config}
        job = hub.job(ALICE, "sleep 300 & exec sleep 300", at=time.time() + 3600)
        run = hub.store.request_run(job.id)
        agent = subprocess.Popen(["sleep", "60"])  # stands for the run's agent
        assert hub.store.attach_run(run.id, agent.pid, proc_start_time(agent.pid), hostname())
        first = RunAs(env=env)
        payload = first.popen(run.id)
        first.close()  # the payload runs on, alice's
        bob = pwd.getpwnam(BOB)
        decoy = subprocess.Popen(["sleep", "300"], user=bob.pw_uid, group=bob.pw_gid,
                                 extra_groups=[], process_group=0,
                                 env={"HERMES_CRON_RUN_ID": run.id})
        try:
            wait_for(lambda: len(_left(run)) == 3, 10, what="the payload, its child, a decoy")
            with RunAs(env=env) as second:
                with pytest.raises(RunAsError, match=f"pid {agent.pid}.* is alive"):
                    second.stop_orphan(run.id)
                agent.kill()
                agent.wait()
                assert second.stop_orphan(run.id) == [payload.pid]
                wait_for(lambda: set(_left(run)) == {decoy.pid}, 10,
                         what="alice's processes gone, bob's left")
                assert second.stop_orphan(run.id) == []  # nothing left of it
                hub.store.finish_run(run.id, "failed", None, reason="lost")
                with pytest.raises(RunAsError, match="is failed"):
                    second.stop_orphan(run.id)
        finally:
            for proc in (agent, decoy):
                proc.kill()
                proc.wait()
            payload.stdout.close()
            payload.stderr.close()
            hub.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- off ------------------------------------------------------------------------------------

def test_with_run_as_off_owned_jobs_fail_closed_unless_the_account_is_shared(hub, accounts):
    """Run-as off: a hub user's job is never run as the daemon's account by accident
    (recorded failed, saying why); a deployment that lets its users share the service's
    account (HERMES_CRON_SHARED_ACCOUNT=1) runs it so, the service's token still out."""
    try:
        off = hub.swap()
        job = hub.job(ALICE, "echo uid=$(id -u); env")
        run = hub.run_of(job)
        assert run.status == "failed"
        assert run.reason.startswith("cannot start: run-as is off here"), run.reason
        assert "uid=" not in hub.output(run)
        assert "run-as" not in hub.said(off).lower()
        hub.swap(env={**hub.env, "HERMES_CRON_SHARED_ACCOUNT": "1"})
        job = hub.job(ALICE, "echo uid=$(id -u); env")
        run = hub.run_of(job)
        assert run.status == "succeeded", run.reason
        text = hub.output(run)
        assert int(_lines(text)["uid"]) == os.getuid()  # the daemon's account
        assert TOKEN not in text  # the service's token still stays out
    finally:
        hub.swap("--run-as", RUN_AS)


# -- what it costs ---------------------------------------------------------------------------

def test_fire_latency_of_owned_and_unowned_runs(hub, accounts):
    """Runs at distinct instants, the service's own and alice's (primed through the
    helper), each printing the time its payload ran (``date +%s.%N``): how late after
    its instant. Printed, a rough figure: bench/ measures it and holds the goals."""
    late: dict[str, list[float]] = {"service's own": [], ALICE: []}
    start = time.time() + 3
    jobs = [(owner, hub.job(owner if owner == ALICE else "", ["date", "+%s.%N"],
                            at=start + i * 1.0 + (0.5 if owner == ALICE else 0)))
            for i in range(10) for owner in late]
    for owner, job in jobs:
        run = hub.run_of(job, timeout=60)
        assert run.status == "succeeded", run.reason
        late[owner].append(float(hub.output(run)) - run.fire_at)
    for owner, values in late.items():
        values.sort()
        print(f"\nfire latency, {owner} runs (n={len(values)}, date as the payload): p50 "
              f"{values[len(values) // 2] * 1e3:.2f} ms, max {values[-1] * 1e3:.2f} ms")


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        return int(next(line for line in f if line.startswith("PPid:")).split()[1])


def _uid(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        return int(next(line for line in f if line.startswith("Uid:")).split()[1])
