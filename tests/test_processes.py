"""This host and its processes (``hermes_cron_ext.processes``): a pid and its start time
name one process; a pid reused, gone or a zombie is not alive."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from hermes_cron_ext.processes import hostname, proc_start_time, process_alive
from tests.conftest import wait_for


def test_hostname_is_the_machines():
    assert hostname() == socket.gethostname()


def test_a_running_process_is_alive_under_its_start_time_only():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = proc_start_time(proc.pid)
        assert isinstance(start, int) and start >= proc_start_time(os.getpid())
        assert process_alive(proc.pid, start) and process_alive(proc.pid, None)
        assert not process_alive(proc.pid, start + 1)  # another process under that pid
    finally:
        proc.kill()
        proc.wait()
    assert not process_alive(proc.pid, start)  # gone (or its pid another's)


def test_a_zombie_is_not_alive():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    start = proc_start_time(proc.pid)
    try:
        wait_for(lambda: not process_alive(proc.pid, start), 10, what="the child to exit")
        assert proc_start_time(proc.pid) == start  # not reaped yet: still in /proc
    finally:
        proc.wait()
    assert proc_start_time(proc.pid) is None


def test_no_pid_is_not_alive():
    assert not process_alive(None, None) and not process_alive(0, None)
