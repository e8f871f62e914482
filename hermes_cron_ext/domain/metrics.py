"""Numbers a run reports about itself: ``::metric NAME=VALUE [UNIT]`` lines in its output.

Pure, like ``progress.py``: the supervisor and the agent feed it a run's output as it
arrives and read the metrics back when the run ends. A Python job or a notebook's cell
calls :func:`hermes_cron_ext.metric`, which prints such a line, so every kind of run
reports the same way and a run's log shows what it reported.

Besides what a run reports, every run gets the :data:`BUILTIN` metrics (duration, exit
code, output bytes, CPU seconds, peak memory), measured by what watched it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

#: a metric's name: a letter or ``_`` first, then letters, digits, ``_``, ``.``, ``-``
NAME = r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}"
NAME_PATTERN = re.compile(NAME)
#: the most metrics one run keeps (a loop printing a new name per row must not fill the store)
MAX_PER_RUN = 100
#: the built-in metrics every run has, and their units
BUILTIN: dict[str, str] = {
    "duration": "s",
    "exit_code": "",
    "output_bytes": "B",
    "cpu_seconds": "s",
    "peak_memory": "B",
}

_LINE = re.compile(
    rb"::metric[ \t]+(" + NAME.encode() + rb")[ \t]*=[ \t]*"
    rb"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)[ \t]*([A-Za-z%/]{0,16})[ \t]*(?=[\r\n])")


@dataclass(frozen=True)
class Metric:
    """One reported value; *unit* is whatever the run wrote after it ('' when none)."""

    name: str
    value: float
    unit: str = ""


def metric_line(name: str, value: float, unit: str = "") -> str:
    """The line that reports *value* (what :func:`hermes_cron_ext.metric` prints).

    :raises ValueError: a name that is not :data:`NAME`, a value that is not a finite
        number, or a unit with spaces."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"metric name {name!r}: use letters, digits, '_', '.' or '-', "
                         "starting with a letter or '_' (at most 64)")
    if name in BUILTIN:
        raise ValueError(f"metric name {name!r} is built in (every run has it)")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"metric {name}: {value!r} is not a finite number")
    if not re.fullmatch(r"[A-Za-z%/]{0,16}", unit):
        raise ValueError(f"metric {name}: unit {unit!r} is letters, '%' or '/' (at most 16)")
    return f"::metric {name}={value!r}{' ' + unit if unit else ''}"


class Metrics:
    """The metrics a run's output reports, the last value of each name winning (a run
    that reports ``rows`` twice means its final count). Names beyond
    :data:`MAX_PER_RUN` are dropped and counted in :attr:`dropped`."""

    def __init__(self) -> None:
        self.values: dict[str, Metric] = {}
        self.dropped = 0
        self._carry = b""

    def feed(self, data: bytes) -> None:
        text = self._carry + data
        cut = max(text.rfind(b"\n"), text.rfind(b"\r"))
        if cut < 0:
            self._carry = text[-4096:]
            return
        complete, self._carry = text[:cut + 1], text[cut + 1:][-4096:]
        if b"::metric" not in complete:  # the regex costs more than this on plain output
            return
        for m in _LINE.finditer(complete):
            start = m.start()
            if start and complete[start - 1:start] not in (b"\n", b"\r"):
                continue  # only at the start of a line: an echoed "::metric" is text
            name = m.group(1).decode()
            value = float(m.group(2))
            if not math.isfinite(value) or name in BUILTIN:
                continue
            if name not in self.values and len(self.values) >= MAX_PER_RUN:
                self.dropped += 1
                continue
            self.values[name] = Metric(name, value, m.group(3).decode())

    def close(self) -> None:
        """The run ended: a last line without a newline counts too."""
        if self._carry:
            self.feed(b"\n")
