"""This host and its processes: the host's name, and whether a process (its pid and
its start time) still lives.

The I/O the domain must not do (it reads ``/proc`` and asks for the host name), in
one small module of the standard library alone, with no state. Like ``errors``, every
layer may import it (tests/test_layers.py): the store names the process that
registers a ticker, the runtime watches supervisors and payloads, ops and the CLI
signal processes of this host, and a domain ``Ticker`` asks whether its process is
gone.
"""

from __future__ import annotations

import socket


def hostname() -> str:
    return socket.gethostname()


def proc_start_time(pid: int) -> int | None:
    """Start time of *pid* in clock ticks since boot (field 22 of /proc/PID/stat).

    A pid plus its start time names one process for good: a reused pid has a
    different start time, so a dead supervisor is never mistaken for a live one.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # the command name may hold spaces and parens: split after the last ')'
    fields = data[data.rfind(b")") + 2:].split()
    return int(fields[19])


def process_alive(pid: int | None, start: int | None) -> bool:
    """Whether *pid* runs (not a zombie) and, given its *start* time, is that process."""
    if not pid:
        return False
    current = proc_start_time(pid)
    if current is None:
        return False
    if start is not None and current != start:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"
