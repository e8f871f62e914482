"""A tiny terminal: run output (ANSI colours, ``\\r`` progress bars) rendered as HTML lines.

:class:`Terminal` is fed decoded text chunk by chunk, tagged with the stream it
came from, and keeps the screen a terminal would show: a carriage return moves
back to the start of the line so a tqdm bar overwrites itself, ``\\b`` steps
back, ``ESC[K`` erases, ``ESC[nA`` climbs to an earlier line (nested bars), and
SGR sequences set colours (16, 256 and 24-bit), bold, dim, italic and underline.
Other escape sequences are dropped. stderr text carries a class of its own so it
stays distinguishable from stdout.

Lines far enough above the cursor are frozen into HTML once; only the last
:data:`LIVE_LINES` stay editable, so feeding is linear in the output size.
Colour classes are JupyterLab's own (``ansi-red-fg``, ``ansi-bold``...), so the
output follows the theme.
"""

from __future__ import annotations

import html
import re
from typing import Any

__all__ = ["Terminal", "to_html"]

LIVE_LINES = 40  # lines above the cursor that cursor-up may still reach
_NAMES = ("black", "red", "green", "yellow", "blue", "magenta", "cyan", "white")
_ESCAPE = re.compile(
    r"\x1b\[([0-9;?]*)([@-~])"  # CSI: parameters and final byte
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC (titles, hyperlinks): dropped
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes: dropped
)

# a style: (fg, bg, bold, dim, italic, underline, stream); fg/bg are an int 0-255,
# an "#rrggbb" string, or None
_PLAIN = (None, None, False, False, False, False, "stdout")


def _xterm_rgb(n: int) -> str:
    if n < 16:
        base = [(0, 0, 0), (205, 49, 49), (13, 188, 121), (229, 229, 16), (36, 114, 200),
                (188, 63, 188), (17, 168, 205), (229, 229, 229), (102, 102, 102),
                (241, 76, 76), (35, 209, 139), (245, 245, 67), (59, 142, 234), (214, 112, 214),
                (41, 184, 219), (255, 255, 255)]
        r, g, b = base[n]
    elif n < 232:
        n -= 16
        r, g, b = (0 if c == 0 else 55 + 40 * c for c in (n // 36, n // 6 % 6, n % 6))
    else:
        r = g = b = 8 + 10 * (n - 232)
    return f"#{r:02x}{g:02x}{b:02x}"


def _span(style: tuple, text: str) -> str:
    fg, bg, bold, dim, italic, underline, stream = style
    classes, css = [], []
    if stream == "stderr":
        classes.append("hc-stderr")
    elif stream == "system":
        classes.append("hc-system")
    for value, kind in ((fg, "fg"), (bg, "bg")):
        if isinstance(value, int) and value < 16:
            classes.append(f"ansi-{_NAMES[value % 8]}{'-intense' if value >= 8 else ''}-{kind}")
        elif value is not None:
            rgb = value if isinstance(value, str) else _xterm_rgb(value)
            css.append(f"{'color' if kind == 'fg' else 'background-color'}: {rgb}")
    if bold:
        classes.append("ansi-bold")
    if dim:
        css.append("opacity: 0.7")
    if italic:
        css.append("font-style: italic")
    if underline:
        classes.append("ansi-underline")
        css.append("text-decoration: underline")
    text = html.escape(text, quote=False)
    if not classes and not css:
        return text
    attrs = f' class="{" ".join(classes)}"' if classes else ""
    attrs += f' style="{"; ".join(css)}"' if css else ""
    return f"<span{attrs}>{text}</span>"


def _render(cells: list[tuple[str, tuple]]) -> tuple[str, str]:
    """HTML and plain text of one line of cells, merging runs of one style."""
    out, plain = [], []
    run_style: tuple[Any, ...] = ()  # set before any cell joins the run
    run: list[str] = []
    for ch, style in cells:
        plain.append(ch)
        if style != run_style and run:
            out.append(_span(run_style, "".join(run)))
            run = []
        run_style = style
        run.append(ch)
    if run:
        out.append(_span(run_style, "".join(run)))
    return "".join(out), "".join(plain)


class Terminal:
    """A screen fed with text; :meth:`html_lines` and :attr:`text` show what it holds."""

    def __init__(self, max_lines: int = 5000):
        self.max_lines = max_lines
        self.frozen_html: list[str] = []
        self.frozen_text: list[str] = []
        self.dropped = 0  # frozen lines forgotten off the top (over max_lines)
        self.live: list[list[tuple[str, tuple]]] = [[]]
        self.row = 0  # cursor line, an index into live
        self.col = 0
        self.style = {stream: _PLAIN[:6] + (stream,) for stream in ("stdout", "stderr",
                                                                       "system")}

    # -- input ----------------------------------------------------------------------
    def feed(self, text: str, stream: str = "stdout") -> None:
        pos = 0
        for m in _ESCAPE_OR_CONTROL.finditer(text):
            if m.start() > pos:
                self._put(text[pos:m.start()], stream)
            pos = m.end()
            token = m.group(0)
            if token == "\n":
                self._newline()
            elif token == "\r":
                self.col = 0
            elif token == "\b":
                self.col = max(0, self.col - 1)
            elif token == "\t":
                self._put(" " * (8 - self.col % 8), stream)
            elif m.group(2) is not None:
                self._csi(m.group(1), m.group(2), stream)
        if pos < len(text):
            self._put(text[pos:], stream)

    def _put(self, text: str, stream: str) -> None:
        line = self.live[self.row]
        style = self.style[stream]
        if self.col > len(line):
            line.extend([(" ", _PLAIN[:6] + (stream,))] * (self.col - len(line)))
        end = self.col + len(text)
        cells = [(ch, style) for ch in text]
        line[self.col:end] = cells
        self.col = end

    def _newline(self) -> None:
        self.row += 1
        self.col = 0
        if self.row == len(self.live):
            self.live.append([])
            if len(self.live) > LIVE_LINES:
                self._freeze(len(self.live) - LIVE_LINES)

    def _freeze(self, count: int) -> None:
        for cells in self.live[:count]:
            html_line, text = _render(cells)
            self.frozen_html.append(html_line)
            self.frozen_text.append(text)
        del self.live[:count]
        self.row -= count
        over = len(self.frozen_html) - self.max_lines
        if over > 0:
            del self.frozen_html[:over]
            del self.frozen_text[:over]
            self.dropped += over

    def _csi(self, params: str, final: str, stream: str) -> None:
        args = [int(p) if p.isdigit() else 0 for p in params.lstrip("?").split(";")] \
            if params else []
        n = args[0] if args and args[0] else 1
        if final == "m":
            self.style[stream] = self._sgr(self.style[stream], args or [0])
        elif final == "K":  # erase in line
            line = self.live[self.row]
            mode = args[0] if args else 0
            if mode == 0:
                del line[self.col:]
            elif mode == 1:
                line[:self.col] = [(" ", _PLAIN)] * min(self.col, len(line))
            else:
                line.clear()
        elif final == "A":  # cursor up, as far as the live lines reach
            self.row = max(0, self.row - n)
        elif final == "B":
            for _ in range(n):
                self._newline()
        elif final == "C":
            self.col += n
        elif final == "D":
            self.col = max(0, self.col - n)
        elif final == "G":
            self.col = max(0, n - 1)
        elif final == "J" and args and args[0] == 2:  # clear screen: start a fresh page
            self._freeze(len(self.live))
            self.live, self.row, self.col = [[]], 0, 0

    @staticmethod
    def _sgr(style: tuple, args: list[int]) -> tuple:
        fg, bg, bold, dim, italic, underline, stream = style
        i = 0
        while i < len(args):
            a = args[i]
            if a == 0:
                fg, bg, bold, dim, italic, underline = _PLAIN[:6]
            elif a == 1:
                bold = True
            elif a == 2:
                dim = True
            elif a == 3:
                italic = True
            elif a == 4:
                underline = True
            elif a == 22:
                bold = dim = False
            elif a == 23:
                italic = False
            elif a == 24:
                underline = False
            elif 30 <= a <= 37:
                fg = a - 30
            elif 90 <= a <= 97:
                fg = a - 90 + 8
            elif a == 39:
                fg = None
            elif 40 <= a <= 47:
                bg = a - 40
            elif 100 <= a <= 107:
                bg = a - 100 + 8
            elif a == 49:
                bg = None
            elif a in (38, 48) and i + 1 < len(args):
                color: int | str | None = None
                if args[i + 1] == 5 and i + 2 < len(args):
                    color, i = args[i + 2] % 256, i + 2
                elif args[i + 1] == 2 and i + 4 < len(args):
                    r, g, b = (max(0, min(255, c)) for c in args[i + 2:i + 5])
                    color, i = f"#{r:02x}{g:02x}{b:02x}", i + 4
                if a == 38:
                    fg = color
                else:
                    bg = color
            i += 1
        return (fg, bg, bold, dim, italic, underline, stream)

    # -- output -----------------------------------------------------------------------
    def _live_end(self) -> int:
        """Live lines worth showing: drop one empty line after the last newline."""
        end = len(self.live)
        return end - 1 if end > 1 and not self.live[-1] else end

    def html_lines(self) -> list[str]:
        """Every line held, as HTML (frozen ones first, then the editable ones)."""
        live = [_render(cells)[0] for cells in self.live[:self._live_end()]]
        return self.frozen_html + live

    @property
    def lines(self) -> list[str]:
        live = [_render(cells)[1] for cells in self.live[:self._live_end()]]
        return self.frozen_text + live

    @property
    def text(self) -> str:
        """The plain text on screen, lines joined with newlines."""
        return "\n".join(self.lines)


_ESCAPE_OR_CONTROL = re.compile(_ESCAPE.pattern + r"|[\r\n\b\t]")


def to_html(text: str, stream: str = "stdout") -> str:
    """Render a whole text at once (``<br>``-free: lines joined with newlines for a ``pre``)."""
    term = Terminal(max_lines=10 ** 9)
    term.feed(text, stream)
    return "\n".join(term.html_lines())
