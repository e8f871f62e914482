"""Progress a payload reports in its own output: ``::progress::`` and ``::phase::``
lines, and tqdm bars. Pure: the supervisor feeds it output, the CLI too (to draw its
bar), and reads phase and fraction back."""

from __future__ import annotations

import re

_PROGRESS = re.compile(rb"::progress::[ \t]*(\d+(?:\.\d+)?)(%|/(\d+(?:\.\d+)?))?[ \t]*([^\r\n]*)")
_PHASE = re.compile(rb"::phase::[ \t]*([^\r\n]+)")
_TQDM = re.compile(rb"(?:([^\r\n|]{1,60}?):\s*)?(\d{1,3})%\|")


def _tqdm_marks(data: bytes) -> list[re.Match[bytes]]:
    """tqdm bars (``desc:  45%|``), searched only near each ``%|`` rather than everywhere."""
    out: list[re.Match[bytes]] = []
    pos = data.find(b"%|")
    while pos != -1:
        start = max(0, pos - 70)
        line_start = max(data.rfind(b"\n", start, pos), data.rfind(b"\r", start, pos)) + 1
        m = _TQDM.search(data, max(start, line_start), pos + 2)
        if m is not None:
            out.append(m)
        pos = data.find(b"%|", pos + 2)
    return out


class Progress:
    """Phase and fraction read from ``::progress::`` / ``::phase::`` lines and tqdm bars."""

    def __init__(self) -> None:
        self.phase: str | None = None
        self.fraction: float | None = None
        self._carry = b""
        self.changed = False

    def feed(self, data: bytes) -> None:
        text = self._carry + data
        cut = max(text.rfind(b"\n"), text.rfind(b"\r"))
        complete, self._carry = (text[:cut + 1], text[cut + 1:][-4096:]) if cut >= 0 else (
            b"", text[-4096:])
        # cheap substring tests first: the regexes cost ~100 ms per 64 KiB of plain output
        marks = []
        if b"::" in complete:
            marks += [*_PROGRESS.finditer(complete), *_PHASE.finditer(complete)]
        if b"%|" in complete:
            marks += _tqdm_marks(complete)
        marks.sort(key=lambda m: m.start())
        for m in marks:  # in the order they were printed
            if m.re is _PHASE:
                self._set(m.group(1).decode(errors="replace").strip(), self.fraction)
            elif m.re is _TQDM:
                desc = m.group(1).decode(errors="replace").strip() if m.group(1) else None
                self._set(desc or self.phase, int(m.group(2)) / 100.0)
            else:
                value = float(m.group(1))
                fraction: float | None
                if m.group(3):
                    total = float(m.group(3))
                    fraction = value / total if total else None
                else:
                    fraction = value / 100.0 if m.group(2) == "%" or value > 1 else value
                self._set(m.group(4).decode(errors="replace").strip() or self.phase, fraction)

    def _set(self, phase: str | None, fraction: float | None) -> None:
        if fraction is not None:
            fraction = max(0.0, min(1.0, fraction))
        if (phase, fraction) != (self.phase, self.fraction):
            self.phase, self.fraction, self.changed = phase, fraction, True
