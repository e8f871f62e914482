"""A run's output log: append-only bytes with stable offsets, plus a stream index.

``<run>.log`` holds stdout and stderr bytes in the order they arrived; a byte
offset into it names a position for good, so readers resume exactly where they
stopped (SSE ``Last-Event-ID``). ``<run>.log.idx`` records each switch of stream
as ``(offset, stream)``; the switch is written before the bytes it tags, so a
reader that sees the bytes also sees their stream.

The log is capped: past ``max_bytes`` the middle is cut (head kept on disk as it
was written, the last ``tail_bytes`` kept in memory and appended when the run
ends, with a line that says how much was cut).
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

    def _append(self, stream: int, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            if stream != self._stream:
                os.write(self._idx, _IDX.pack(self.size, stream))
                self._stream = stream
            while data:
                n = os.write(self._log, data)
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
