"""A run's output log: append-only bytes with stable offsets, plus a stream index.

``<run>.log`` holds stdout and stderr bytes in the order they arrived; a byte
offset into it names a position for good, so readers resume exactly where they
stopped (SSE ``Last-Event-ID``). ``<run>.log.idx`` records each switch of stream
as ``(offset, stream)``; the switch is written before the bytes it tags, so a
reader that sees the bytes also sees their stream.

The log is capped: past ``max_bytes`` the middle is cut (head kept on disk as it
was written, the last ``tail_bytes`` kept in memory and appended when the run
ends, with a line that says how much was cut).

The writer also keeps what it appended since the supervisor last asked
(:meth:`OutputWriter.index_pending`), as line-aligned pieces for the store's output
index: what the log holds is indexed as it is written, never by reading it again.
"""

from __future__ import annotations

import os
import struct

from hermes_cron_ext.domain.options import MAX_OUTPUT
from hermes_cron_ext.domain.text import render_text  # noqa: F401 - where readers look for it

STREAMS = {"stdout": 1, "stderr": 2, "system": 3}
STREAM_NAMES = {v: k for k, v in STREAMS.items()}
_IDX = struct.Struct("<QB")
DEFAULT_MAX_BYTES = MAX_OUTPUT  # a job's max_output when it sets none (domain/options.py)
DEFAULT_TAIL_BYTES = 2 * 1024 * 1024
#: the longest piece handed to the output index (a longer line is split)
PIECE = 8192


def _utf8_cut(data: bytes | bytearray, at: int) -> int:
    """*at*, moved back (by at most 3) so as not to split a UTF-8 character."""
    cut = at
    while cut > at - 3 and cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if cut > 0 else at


def pieces(data: bytes | bytearray, start: int, final: bool, most: int | None = None
           ) -> tuple[list[tuple[int, str]], int]:
    """Line-aligned pieces of *data* (whose first byte is at offset *start*), each at
    most :data:`PIECE` bytes (a longer line split there), decoded UTF-8 "replace":
    ``([(offset, text)], bytes used)``. An unfinished last line is left (unused) unless
    *final* or it is already a whole piece long; with *most*, pieces stop once that many
    bytes are used (the rest is left for later)."""
    out: list[tuple[int, str]] = []
    pos, n = 0, len(data)
    while pos < n and (most is None or pos < most):
        end = min(n, pos + PIECE)
        if end - pos == PIECE and end < n:
            nl = data.rfind(b"\n", pos, end)
            end = nl + 1 if nl >= 0 else _utf8_cut(data, end)
        else:  # the rest fits in one piece: up to its last newline, or all of it
            nl = data.rfind(b"\n", pos, end)
            if nl + 1 != end and not final:
                if nl < pos:
                    break
                end = nl + 1
        out.append((start + pos, bytes(data[pos:end]).decode("utf-8", "replace")))
        pos = end
    return out, pos


def cap(max_bytes: int | None) -> tuple[int, int]:
    """``(max_bytes, tail_bytes)`` for a run's output limit (None: the defaults). The
    tail kept is a fifth of a limit under the default, so the head keeps the rest."""
    if not max_bytes or max_bytes >= DEFAULT_MAX_BYTES:
        return max_bytes or DEFAULT_MAX_BYTES, DEFAULT_TAIL_BYTES
    return max_bytes, max_bytes // 5


class OutputWriter:
    """Used by the supervisor only: one writer per run."""

    def __init__(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES,
                 tail_bytes: int = DEFAULT_TAIL_BYTES):
        self.path = path
        self._log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._idx = os.open(path + ".idx", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.size = os.fstat(self._log).st_size
        self.head_limit = max(0, max_bytes - tail_bytes)
        self.tail_bytes = tail_bytes
        self._stream: int | None = None
        self._tail: list[tuple[int, bytes]] = []
        self._tail_len = 0
        self.cut = 0  # bytes dropped from the middle
        self.cutting = False
        #: the first write that failed (disk full, ...): nothing more is written, and the
        #: supervisor ends the run failed with it
        self.error: OSError | None = None
        self._pending = bytearray()  # appended, not yet handed to the output index
        self._pending_at = self.size

    def _collect(self, offset: int, data: bytes) -> None:
        """Keep appended bytes for :meth:`index_pending` (a gap restarts the pieces)."""
        if offset != self._pending_at + len(self._pending):
            self._pending = bytearray()
            self._pending_at = offset
        self._pending += data

    def index_pending(self, final: bool = False, most: int | None = None
                      ) -> list[tuple[int, str]]:
        """What was appended since the last call, as pieces for ``Store.index_output``:
        ``[(offset, text)]``, whole lines of at most 8 KiB; an unfinished last line is
        kept for the next call, unless *final* (the log is closed). *most*: about that
        many bytes at most, the rest kept for the next call (a heartbeat's share)."""
        out, used = pieces(self._pending, self._pending_at, final and most is None, most)
        del self._pending[:used]
        self._pending_at += used
        return out

    def _append(self, stream: int, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            if stream != self._stream:
                os.write(self._idx, _IDX.pack(self.size, stream))
                self._stream = stream
            while data:
                n = os.write(self._log, data)
                self._collect(self.size, data[:n])
                self.size += n
                data = data[n:]
        except OSError as exc:
            self.error = exc

    def write(self, stream: str, data: bytes) -> None:
        if not data:
            return
        code = STREAMS[stream]
        if not self.cutting:
            room = self.head_limit - self.size
            if len(data) <= room:
                self._append(code, data)
                return
            self._append(code, data[:room])
            data = data[room:]
            self.cutting = True
            self._append(STREAMS["system"], (
                f"\n[hermes-cron: output passed {self.head_limit // 1024} KiB; the middle is "
                f"cut and the last {self.tail_bytes // 1024} KiB follow when the run ends]\n"
            ).encode())
        self._tail.append((code, data))
        self._tail_len += len(data)
        while self._tail_len - len(self._tail[0][1]) >= self.tail_bytes:
            dropped = self._tail.pop(0)[1]
            self._tail_len -= len(dropped)
            self.cut += len(dropped)

    def system(self, text: str) -> None:
        """A line from hermes-cron itself (timeout, cancel), never cut."""
        self._append(STREAMS["system"], text.encode())

    def close(self) -> None:
        if self._log < 0:  # closed already: its descriptors may be someone else's now
            return
        if self.cutting:
            extra = self._tail_len - self.tail_bytes
            if extra > 0:  # trim the oldest tail chunk to the exact budget
                code, data = self._tail[0]
                self._tail[0] = (code, data[extra:])
                self.cut += extra
            self._append(STREAMS["system"],
                         f"[hermes-cron: {self.cut} bytes cut here]\n".encode())
            for code, data in self._tail:
                self._append(code, data)
            self._tail = []
            self.cutting = False
        os.close(self._log)
        os.close(self._idx)
        self._log = self._idx = -1


def size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def read(path: str, offset: int = 0, limit: int | None = None) -> bytes:
    """Bytes ``[offset, offset + limit)`` of the log (fewer at its end)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, offset))
            return f.read(-1 if limit is None else limit)
    except FileNotFoundError:
        return b""


def _index(path: str) -> list[tuple[int, int]]:
    try:
        with open(path + ".idx", "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return []
    usable = len(raw) - len(raw) % _IDX.size
    return [_IDX.unpack_from(raw, i) for i in range(0, usable, _IDX.size)]


def segments(path: str, offset: int = 0, limit: int | None = None
             ) -> list[tuple[int, str, bytes]]:
    """The bytes from *offset*, split where the stream changes: ``[(offset, stream, bytes)]``."""
    data = read(path, offset, limit)
    if not data:
        return []
    index = _index(path)
    end = offset + len(data)
    cuts = [(o, s) for o, s in index if offset < o < end]
    current = 1
    for o, s in index:
        if o <= offset:
            current = s
        else:
            break
    out, pos = [], offset
    for o, s in cuts:
        if o > pos:
            out.append((pos, STREAM_NAMES.get(current, "stdout"), data[pos - offset:o - offset]))
        pos, current = o, s
    out.append((pos, STREAM_NAMES.get(current, "stdout"), data[pos - offset:]))
    return out
