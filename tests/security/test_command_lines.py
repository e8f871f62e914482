"""Every process the project starts keeps secrets off its command line, which every
local user can read (``ps``, ``/proc/PID/cmdline``): a daemon with its fork server,
supervisors, a notebook runner and its kernel, and a one-off ``run``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid

import nbformat

from tests.conftest import CLI, processes_with, wait_for


def test_no_process_shows_the_store_or_a_parameter_on_its_command_line(tmp_path):
    db = str(tmp_path / "store" / "cron.db")
    mark = f"HERMES_TEST_MARK={uuid.uuid4().hex}"
    cli = CLI(db, str(tmp_path))
    cli.env[mark.split("=")[0]] = mark.split("=")[1]
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    cell = nbformat.v4.new_code_cell("token = 'default'")
    cell.metadata["tags"] = ["parameters"]
    nb.cells += [cell, nbformat.v4.new_code_cell("import time\nprint(token)\ntime.sleep(4)")]
    path = tmp_path / "p.ipynb"
    nbformat.write(nb, str(path))
    cli("add", "nb", "@yearly", "--kind", "notebook", "-p", "token=param-s3cret", "--",
        str(path))
    cli("add", "cmd", "@yearly", "--", "sleep 4")
    env = {k: v for k, v in cli.env.items()}
    daemon = subprocess.Popen([sys.executable, "-m", "hermes_cron_ext", "daemon"],
                              env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    seen: dict[int, str] = {}
    try:
        wait_for(lambda: json.loads(cli("status", "--json", check=False).stdout)["alive"],
                 30, what="the daemon")
        cli("run", "nb")
        cli("run", "cmd")
        one_off = cli.start("run", "cmd", "-f")

        def watch():
            seen.update(processes_with(mark.encode()))
            runs = cli.json("runs", "nb")["runs"]
            return runs and runs[0]["status"] == "succeeded"
        wait_for(watch, 90, 0.05, "the notebook run")
        one_off.wait(60)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(15)
    kinds = " ".join(seen.values())
    assert "hermes_cron_ext daemon" in kinds and "hermes_cron_ext.runtime.notebook" in kinds
    assert "ipykernel" in kinds  # the kernel was seen too
    leaks = {pid: line for pid, line in seen.items() if "param-s3cret" in line}
    assert leaks == {}
    ours = {pid: line for pid, line in seen.items()
            if "hermes_cron_ext" in line}
    assert ours and not [line for line in ours.values() if db in line], ours
