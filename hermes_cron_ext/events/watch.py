"""Commits of other processes to a SQLite store, told at once and for nothing while idle.

Every commit to a SQLite database in WAL mode appends to its ``-wal`` file, and every
process that shares such a database runs on this host (WAL needs shared memory), so
the kernel's file notices (Linux inotify) on the store's folder see every writer's
commits: a thread blocked on them costs nothing until something is written. Where
inotify is missing (another OS, no ctypes, the per-user limit of instances reached)
:func:`watch_commits` answers None and callers poll as before.

A notice says only "something may have been committed" (a checkpoint into the main
file, this process's own commits and a folder change count too): callers confirm
with the store's ``change_token`` before they read anything.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import select
import struct
import sys
import threading
from collections.abc import Callable

log = logging.getLogger("hermes_cron")

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
MASK = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF
HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)

_libc = None


def _inotify():
    """libc with inotify, or None (not Linux, no ctypes)."""
    global _libc
    if _libc is None:
        if not sys.platform.startswith("linux"):
            _libc = False
        else:
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
                lib.inotify_init1.argtypes = [ctypes.c_int]
                lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
                _libc = lib
            except (OSError, AttributeError):
                _libc = False
    return _libc or None


class CommitWatch:
    """Calls *callback()* on its own thread, once per batch of writes to the database
    file *path* or its ``-wal`` (and when the kernel dropped notices: say "maybe")."""

    def __init__(self, fd: int, names: set[bytes], callback: Callable[[], None]):
        self._fd = fd
        self._names = names
        self._callback = callback
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="hermes-commit-watch")
        self._thread.start()

    def _relevant(self, data: bytes) -> bool:
        at = 0
        hit = False
        while at + HEADER.size <= len(data):
            _wd, mask, _cookie, size = HEADER.unpack_from(data, at)
            name = data[at + HEADER.size:at + HEADER.size + size].rstrip(b"\0")
            at += HEADER.size + size
            if mask & (IN_Q_OVERFLOW | IN_IGNORED | IN_DELETE_SELF) or name in self._names:
                hit = True
        return hit

    def _run(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self._fd, self._stop_r], [], [])
            except (OSError, ValueError):
                return
            if self._stop_r in ready:
                return
            hit = False
            while True:  # a burst of writes is one notice
                try:
                    data = os.read(self._fd, 64 * 1024)
                except BlockingIOError:
                    break
                except OSError:
                    return
                hit = self._relevant(data) or hit
            if hit:
                try:
                    self._callback()
                except Exception:  # a subscriber's bug must not end the watch
                    log.exception("hermes-cron: a commit notice's callback failed")

    def close(self) -> None:
        try:
            os.write(self._stop_w, b"x")
        except OSError:
            pass
        if self._thread is not threading.current_thread():
            self._thread.join(5)
        for fd in (self._fd, self._stop_r, self._stop_w):
            try:
                os.close(fd)
            except OSError:
                pass


def watch_commits(path: str, callback: Callable[[], None]) -> CommitWatch | None:
    """Watch the SQLite database *path* (its folder: the ``-wal`` comes and goes); None
    when this host cannot (then poll)."""
    lib = _inotify()
    if lib is None:
        return None
    fd = lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        log.info("hermes-cron: no inotify (%s); other processes' changes are polled",
                 os.strerror(ctypes.get_errno()))
        return None
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if lib.inotify_add_watch(fd, os.fsencode(folder), MASK | IN_ONLYDIR) < 0:
        log.info("hermes-cron: cannot watch %s (%s); other processes' changes are polled",
                 folder, os.strerror(ctypes.get_errno()))
        os.close(fd)
        return None
    base = os.fsencode(os.path.basename(path))
    return CommitWatch(fd, {base, base + b"-wal"}, callback)
