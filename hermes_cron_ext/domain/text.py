"""Bytes and text of run output, as a terminal shows them (pure functions)."""

from __future__ import annotations


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


def render_text(data: str) -> str:
    """Apply carriage returns and backspaces the way a terminal would (tqdm bars)."""
    lines: list[str] = []
    for raw in data.split("\n"):
        line: list[str] = []
        col = 0
        for ch in raw:
            if ch == "\r":
                col = 0
            elif ch == "\b":
                col = max(0, col - 1)
            else:
                if col < len(line):
                    line[col] = ch
                else:
                    line.append(ch)
                col += 1
        lines.append("".join(line))
    return "\n".join(lines)
