"""Bytes and text of run output, as a terminal shows them (pure functions)."""

from __future__ import annotations

import re


def utf8_boundary(data: bytes) -> int:
    """Length of the longest prefix of *data* that does not end inside a UTF-8 character."""
    end = len(data)
    for back in range(1, min(4, end) + 1):
        byte = data[end - back]
        if byte < 0x80:
            return end
        if byte >= 0xC0:  # the lead byte of the last character
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return end if back >= need else end - back
    return end


#: an ANSI escape sequence (CSI such as colours, OSC such as titles): it takes no column
_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_TOKEN = re.compile(_ESCAPE.pattern + r"|[\s\S]")


def render_text(data: str) -> str:
    """Apply carriage returns and backspaces the way a terminal would (tqdm bars).

    Escape sequences (colours) take no column: each belongs to the character written
    just before it (or, at the start of a line, the one after), and goes when that
    character is drawn over; so a redraw over a coloured line leaves nothing of the old
    one behind, and a coloured bar redrawn in place ends in its last state."""
    lines: list[str] = []
    for raw in data.split("\n"):
        if "\r" not in raw and "\b" not in raw:
            lines.append(raw)  # nothing to redraw: the common case, left as it is
            continue
        cells: list[list[str]] = []  # [escapes before + character, escapes after]
        col, pending = 0, ""
        for token in _TOKEN.findall(raw):
            if len(token) > 1 or token == "\x1b":
                if col == 0 or col > len(cells):
                    pending += token
                else:
                    cells[col - 1][1] += token
            elif token == "\r":
                col = 0
            elif token == "\b":
                col = max(0, col - 1)
            else:
                cell = [pending + token, ""]
                if col < len(cells):
                    cells[col] = cell
                else:
                    cells.append(cell)
                pending = ""
                col += 1
        lines.append("".join(a + b for a, b in cells) + pending)
    return "\n".join(lines)
