"""Notebook jobs: a real supervisor runs ``hermes_cron_ext.runtime.notebook`` with nbclient."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import nbformat
import pytest

from hermes_cron_ext.errors import NotFound
from hermes_cron_ext.ops import RestClient
from hermes_cron_ext.processes import process_alive
from hermes_cron_ext.runtime.notebook import (
    ARTIFACT_MAX,
    INJECTED_TAG,
    FrameReader,
    artifact_frame,
    inject_parameters,
    parameters_source,
)
from tests.conftest import make_job, processes_with, wait_for
from tests.notebook_support import settle, supervise

pytest_plugins = ("tests.notebook_fixtures",)


def write_notebook(path, *cells, parameters: str | None = "n = 1\ngreeting = 'hello'\n"):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells.append(nbformat.v4.new_markdown_cell("# a report"))
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells += [nbformat.v4.new_code_cell(src) for src in cells]
    nbformat.write(nb, str(path))
    return str(path)


REPORT = (
    "import time\nfor i in range(n):\n    print(greeting, i, flush=True)\n    time.sleep(0.2)",
    "import sys\nprint('a warning', file=sys.stderr)",
    "n * 7",
)


def test_notebook_job_with_parameters_runs_through_a_supervisor(real_store, tmp_path):
    path = write_notebook(tmp_path / "report.ipynb", *REPORT)
    make_job(real_store, "report", "@yearly", kind="notebook", command=path,
             parameters={"n": 3, "greeting": "hi"})
    run = real_store.request_run("report")
    settle(supervise(real_store.path, run.id), 120)
    done = real_store.get_run(run.id)
    assert (done.status, done.exit_code) == ("succeeded", 0), done.reason
    assert done.progress == 1.0 and done.phase == "done"  # reached n of n

    # progress went cell by cell, and was reported while the run went on
    seen = [e.data["progress"] for e in real_store.events_since(0)
            if e.run_id == run.id and e.type == "run.progress"]
    assert seen[-1] == 1.0 and any(0 < p < 1 for p in seen if p is not None)
    log = real_store.read_output(run.id).decode()
    assert [ln for ln in log.splitlines() if ln.startswith("::progress::")] == [
        "::progress:: 0/5 cell 1 of 5", "::progress:: 1/5 cell 2 of 5",
        "::progress:: 2/5 cell 3 of 5", "::progress:: 3/5 cell 4 of 5",
        "::progress:: 4/5 cell 5 of 5", "::progress:: 5/5 done"]
    assert "hi 0\nhi 1\nhi 2\n" in log and "21\n" in log  # cell output streamed
    streams = {data.decode().strip(): stream
               for _, stream, data in real_store.output_segments(run.id)}
    assert streams.get("a warning") == "stderr"

    # the artifact: the executed notebook, parameters injected after the tagged cell
    nb = nbformat.read(real_store.artifact_path(run.id), as_version=4)
    assert os.stat(real_store.artifact_path(run.id)).st_mode & 0o777 == 0o600  # owner only
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert tags.index([INJECTED_TAG]) == tags.index(["parameters"]) + 1
    injected = nb.cells[tags.index([INJECTED_TAG])]
    assert injected.source == "# Parameters\nn = 3\ngreeting = 'hi'\n"
    loop = nb.cells[tags.index([INJECTED_TAG]) + 1]
    assert "".join(o.get("text", "") for o in loop.outputs) == "hi 0\nhi 1\nhi 2\n"
    assert nb.cells[-1].outputs[0]["data"]["text/plain"] == "21"
    assert nb.metadata["hermes_cron"]["status"] == "succeeded"
    assert nb.metadata["hermes_cron"]["run_id"] == run.id
    assert nb.metadata["hermes_cron"]["parameters"] == {"n": 3, "greeting": "hi"}


def test_parameters_never_appear_on_a_command_line(real_store, tmp_path):
    """Any local user can read every process's command line (ps): a notebook's
    parameters reach it through the environment instead."""
    path = write_notebook(tmp_path / "p.ipynb", "import time\nprint(token)\ntime.sleep(3)",
                          parameters="token = 'default'\n")
    make_job(real_store, "params", "@yearly", kind="notebook", command=path,
             parameters={"token": "xyzzy-param-7"})
    run = real_store.request_run("params")
    proc = supervise(real_store.path, run.id)
    seen: list[str] = []
    while proc.poll() is None:
        seen += list(processes_with(b"xyzzy-param-7", "cmdline").values())
        time.sleep(0.05)
    settle(proc)
    done = real_store.get_run(run.id)
    assert done.status == "succeeded", done.reason
    assert "xyzzy-param-7" in real_store.read_output(run.id).decode()  # it did get there
    assert seen == []


def test_failing_cell_fails_the_run_and_keeps_the_artifact(real_store, tmp_path):
    path = write_notebook(tmp_path / "broken.ipynb", "x = 1", "1 / 0", "print('never')",
                          parameters=None)
    make_job(real_store, "broken", "@yearly", kind="notebook", command=path)
    run = real_store.request_run("broken")
    settle(supervise(real_store.path, run.id), 120)
    done = real_store.get_run(run.id)
    assert (done.status, done.exit_code) == ("failed", 1)
    assert done.reason == ("exit code 1: notebook failed in cell 2 of 3: ZeroDivisionError: "
                           "division by zero")
    nb = nbformat.read(real_store.artifact_path(run.id), as_version=4)
    assert nb.cells[2].outputs[0]["ename"] == "ZeroDivisionError"
    assert nb.cells[3].outputs == [] and nb.metadata["hermes_cron"]["status"] == "failed"
    assert "ZeroDivisionError" in real_store.read_output(run.id).decode()


def test_bad_input_exits_2_with_a_clear_message(tmp_path):
    path = write_notebook(tmp_path / "k.ipynb", "1")
    cases = [
        (["--kernel", "no-such-kernel"], "kernel 'no-such-kernel' is not installed here"),
        (["--parameters", "[1]"], "--parameters must be a JSON object"),
        (["--parameters", '{"not a name": 1}'], "is not a valid Python name"),
    ]
    for extra, message in cases:
        proc = subprocess.run([sys.executable, "-m", "hermes_cron_ext.runtime.notebook", path,
                               "--output", str(tmp_path / "o.ipynb"), *extra],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "hermes_cron_ext.runtime.notebook",
                           str(tmp_path / "missing.ipynb")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "cannot read notebook" in proc.stderr


def _frames(fd: int) -> tuple[list[bytes], FrameReader]:
    """Every whole frame sent on the read end *fd*, until end of file."""
    reader, frames = FrameReader(), []
    while data := os.read(fd, 65536):
        for i in range(0, len(data), 7):  # fed in small pieces: frames cross the reads
            frame = reader.feed(data[i:i + 7])
            if frame is not None:
                frames.append(frame)
    return frames, reader


def test_the_runner_sends_each_saved_notebook_on_its_artifact_pipe(tmp_path):
    """``--artifact-fd``: each notebook saved (after every cell and at the end) is also
    a frame on the pipe; the last is the file's bytes; ``--output``'s missing folders
    are made 0700, the file 0600."""
    path = write_notebook(tmp_path / "piped.ipynb", "print('one')", "2 * 21", parameters=None)
    out = tmp_path / "home" / ".local" / "share" / "hermes-cron" / "artifacts" / "r.ipynb"
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "hermes_cron_ext.runtime.notebook", path,
                                 "--output", str(out), "--artifact-fd", str(write_end)],
                                pass_fds=(write_end,), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        os.close(write_end)
        frames, reader = _frames(read_end)
        _, err = proc.communicate(timeout=120)
    finally:
        os.close(read_end)
    assert proc.returncode == 0, err
    assert len(frames) == 3 and reader.pending == 0 and reader.broken is None
    assert frames[-1] == out.read_bytes()
    nb = nbformat.reads(frames[-1].decode(), as_version=4)
    assert nb.cells[1].outputs[0]["text"] == "one\n"
    assert nb.cells[2].outputs[0]["data"]["text/plain"] == "42"
    assert nb.metadata["hermes_cron"]["status"] == "succeeded"
    assert nbformat.reads(frames[0].decode(), as_version=4).cells[2].outputs == []
    assert out.stat().st_mode & 0o777 == 0o600
    for folder in (out.parent, out.parent.parent, tmp_path / "home" / ".local"):
        assert folder.stat().st_mode & 0o777 == 0o700


def test_the_runner_goes_on_when_its_artifact_pipe_is_closed(tmp_path):
    """The reader gone (the supervisor died, or gave the stream up): the run goes on, its
    own copy saved."""
    path = write_notebook(tmp_path / "alone.ipynb", "print('still')", parameters=None)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "hermes_cron_ext.runtime.notebook", path,
                               "--output", str(tmp_path / "o.ipynb"), "--artifact-fd",
                               str(write_end)], pass_fds=(write_end,), capture_output=True,
                              text=True, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert "still" in proc.stdout and "cannot send the notebook to the service" in proc.stderr
    assert nbformat.read(str(tmp_path / "o.ipynb"), as_version=4).cells[1].outputs


def test_frames_are_whole_or_nothing_and_capped():
    reader = FrameReader(limit=10)
    assert reader.feed(artifact_frame(b"abc")[:5]) is None and reader.pending == 5
    assert reader.feed(artifact_frame(b"abc")[5:] + artifact_frame(b"de")) == b"de"
    assert reader.feed(artifact_frame(b"")) == b"" and reader.pending == 0
    assert reader.feed(artifact_frame(b"0123456789")) == b"0123456789"
    assert reader.feed(artifact_frame(b"x") + artifact_frame(b"y" * 11)) == b"x"
    assert reader.broken == "a frame of 11 bytes (over 10)"
    assert reader.feed(artifact_frame(b"z")) is None  # nothing after a broken frame
    assert ARTIFACT_MAX == 64 << 20


def test_parameters_are_injected_the_papermill_way():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os"), nbformat.v4.new_code_cell("a = 1")]
    assert inject_parameters(nb, {}) is None and len(nb.cells) == 2
    assert inject_parameters(nb, {"a": 2}) == 0  # no tagged cell: at the top
    assert nb.cells[0].source == "# Parameters\na = 2\n"
    nb.cells[2].metadata["tags"] = ["parameters"]
    # an injected cell from an earlier run is replaced, not stacked
    assert inject_parameters(nb, {"a": 3, "flag": True, "names": ["x"], "none": None}) == 0
    assert [c.source for c in nb.cells].count("a = 1") == 1 and len(nb.cells) == 3
    assert nb.cells[0].source == "# Parameters\na = 3\nflag = True\nnames = ['x']\nnone = None\n"
    assert parameters_source({"s": "it's"}) == "# Parameters\ns = \"it's\"\n"


def test_artifact_downloads_through_the_api(cron_server, tmp_path):
    server = cron_server
    path = write_notebook(tmp_path / "api.ipynb", "print(greeting * n)")
    api = RestClient(server.url, server.token)
    api.add({"name": "nbjob", "schedule": "@yearly", "kind": "notebook", "command": path,
             "parameters": {"n": 2, "greeting": "ab"}})
    api.add({"name": "shjob", "schedule": "@yearly", "command": "echo plain"})
    run = api.run_now("nbjob")
    plain = api.run_now("shjob")
    done = api.wait(run["id"], timeout=120)
    assert done["status"] == "succeeded" and done["progress"] == 1.0
    nb = nbformat.reads(api.artifact(run["id"]).decode(), as_version=4)
    printed = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "stream"]
    assert printed[0].text == "abab\n"
    assert api.text(run["id"]).endswith("abab\n::progress:: 3/3 done\n")
    assert api.wait(plain["id"])["status"] == "succeeded"
    with pytest.raises(NotFound, match="has no executed notebook"):
        api.artifact(plain["id"])
    with pytest.raises(NotFound, match="no run"):
        api.artifact("r_0000000000000000")
    api.remove("nbjob")
    api.remove("shjob")


def test_timeout_stops_the_kernel_and_keeps_what_ran(real_store, tmp_path):
    path = write_notebook(tmp_path / "slow.ipynb",
                          "import os\nprint('kernel', os.getpid(), flush=True)",
                          "import time\ntime.sleep(120)", parameters=None)
    make_job(real_store, "slow-nb", "@yearly", kind="notebook", command=path, timeout=6,
             kill_grace=10)
    run = real_store.request_run("slow-nb")
    settle(supervise(real_store.path, run.id), 120)
    done = real_store.get_run(run.id)
    log = real_store.read_output(run.id).decode()
    assert done.status == "timed_out" and done.exit_code == 143, log  # it stopped on TERM
    log = real_store.read_output(run.id).decode()
    assert "notebook stopped by SIGTERM; the kernel was shut down" in log
    kernel_pid = int(log.split("kernel ", 1)[1].split()[0])
    wait_for(lambda: not process_alive(kernel_pid, None), 10, what="the kernel to be gone")
    nb = nbformat.read(real_store.artifact_path(run.id), as_version=4)
    assert nb.metadata["hermes_cron"]["status"] == "cancelled"
    assert nb.cells[1].outputs[0]["text"].startswith("kernel ")


# -- warm starts: the kernel starts in the lead before the slot ------------------------

def _run_processes(run_id: str) -> list[int]:
    """Every live process started for *run_id* (runner, kernel): they carry its id."""
    return list(processes_with(f"HERMES_CRON_RUN_ID={run_id}\0".encode()))


def _due_in(store, name: str, seconds: float):
    """A run of *name* whose instant is *seconds* away (as a ticker hands it out ahead)."""
    run = store.request_run(name)
    store.db.execute("UPDATE runs SET fire_at = ?, scheduled_for = ? WHERE id = ?",
                     (time.time() + seconds, time.time() + seconds, run.id))
    return store.get_run(run.id)


KERNEL_STARTED = (
    "import os, time\n"
    "boot = time.time() - float(open('/proc/uptime').read().split()[0])\n"
    "ticks = int(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19])\n"
    "print('first cell', time.time(), 'kernel started', boot + ticks / os.sysconf('SC_CLK_TCK'))")


def test_the_kernel_is_ready_before_the_instant_and_the_first_cell_runs_at_it(
        real_store, tmp_path):
    path = write_notebook(tmp_path / "warm.ipynb", KERNEL_STARTED, parameters=None)
    make_job(real_store, "warm", "@yearly", kind="notebook", command=path)
    run = _due_in(real_store, "warm", 4.0)
    settle(supervise(real_store.path, run.id), 60)
    done = real_store.get_run(run.id)
    assert done.status == "succeeded", done.reason
    words = real_store.read_output(run.id).decode().split("first cell ", 1)[1].split()
    first_cell, kernel_started = float(words[0]), float(words[3])
    assert kernel_started < run.fire_at <= first_cell  # warm before, cells not before
    assert done.started_at >= run.fire_at


def test_a_run_cancelled_while_its_kernel_waits_leaves_no_kernel(real_store, tmp_path):
    path = write_notebook(tmp_path / "never.ipynb", "print('ran')", parameters=None)
    make_job(real_store, "never", "@yearly", kind="notebook", command=path)
    run = _due_in(real_store, "never", 30.0)
    sup = supervise(real_store.path, run.id)
    wait_for(lambda: len(_run_processes(run.id)) >= 2, 30, what="runner and kernel")
    sup.send_signal(15)  # what a cancel does to a local supervisor
    settle(sup, 30)
    wait_for(lambda: _run_processes(run.id) == [], 15, what="no process of the run left")
    done = real_store.get_run(run.id)
    assert (done.status, done.reason) == ("cancelled", "cancelled before it started")
    assert b"ran" not in real_store.read_output(run.id)
    assert not os.path.exists(real_store.artifact_path(run.id))


def test_a_killed_supervisor_leaves_no_kernel(real_store, tmp_path):
    path = write_notebook(tmp_path / "long.ipynb", "import time\nprint('up', flush=True)\n"
                          "time.sleep(120)", parameters=None)
    make_job(real_store, "long", "@yearly", kind="notebook", command=path)
    run = real_store.request_run("long")
    sup = supervise(real_store.path, run.id)
    wait_for(lambda: b"up" in real_store.read_output(run.id), 60, what="the cell to run")
    sup.kill()
    sup.wait()
    wait_for(lambda: _run_processes(run.id) == [], 20, what="runner and kernel gone")


def test_a_run_given_parameters_injects_them_and_keeps_them_with_the_run(real_store, tmp_path):
    """``run NAME -p n=2``: the notebook's declared parameters are typed from its cell,
    a value of the wrong type is refused naming it, and the run's own values go over
    the job's, are injected, and stay with the run (its history shows them)."""
    from hermes_cron_ext.errors import InvalidInput
    from hermes_cron_ext.ops import Operations

    path = write_notebook(tmp_path / "report.ipynb", *REPORT)
    make_job(real_store, "report", "@yearly", kind="notebook", command=path,
             parameters={"greeting": "hi"})
    ops = Operations(real_store)
    assert ops.job_parameters("report") == [
        {"name": "n", "type": "int", "default": 1},
        {"name": "greeting", "type": "str", "default": "hi"}]
    with pytest.raises(InvalidInput) as err:
        ops.run_now("report", {"n": "two"})
    assert err.value.field == "parameters.n"
    assert real_store.list_runs("report").items == []
    run = real_store.request_run("report", parameters={"n": 2})
    settle(supervise(real_store.path, run.id), 120)
    done = real_store.get_run(run.id)
    assert done.status == "succeeded" and done.parameters == {"n": 2}
    assert real_store.list_runs("report").items[0].to_json()["parameters"] == {"n": 2}
    assert "hi 0\nhi 1\n" in real_store.read_output(run.id).decode()
    nb = nbformat.read(real_store.artifact_path(run.id), as_version=4)
    assert nb.metadata["hermes_cron"]["parameters"] == {"n": 2, "greeting": "hi"}
