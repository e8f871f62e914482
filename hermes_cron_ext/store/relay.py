"""The host relay: supervisors of one fork server share one PostgreSQL connection.

A supervisor on PostgreSQL would otherwise open a session of its own: a server
process forked and its caches filled cold, ~25 ms of CPU each, which in a burst of a
thousand runs cost more than the lead and left the payloads late. The fork server
(``executor.py``) starts a :class:`Relay` before it forks supervisors; each
supervisor's store is a :class:`RelayClient` that sends its calls over a Unix
socket (pickled, length-prefixed; the socket's directory is this user's alone and
the relay checks each peer's uid). Every relayed call is safe to repeat, so a
supervisor whose relay is gone or silent simply makes it again on a connection of
its own.
"""

from __future__ import annotations

import heapq
import logging
import os
import pickle
import selectors
import socket
import struct
import tempfile
from collections.abc import Iterable
from typing import cast

import psycopg

from hermes_cron_ext import errors
from hermes_cron_ext.errors import HermesCronError, StoreError
from hermes_cron_ext.store.postgres import PostgresStore, _spool_dir

log = logging.getLogger("hermes_cron")

#: The store calls a supervisor or a host agent makes on its common path (all of them
#: safe to repeat, so
#: a call the relay may have done before it died is simply made again without it).
RELAYED = frozenset({"attach_run", "get_run", "check_start", "check_starts", "running_others",
                     "catchup_ahead", "turn_ahead", "run_secrets", "mark_running", "heartbeat_run",
                     "finish_run", "output_size", "_append_chunk", "import_artifact",
                     "take_next", "record_file_hash", "index_output"})
#: Answered first (lowest first): what stands between a run's instant and its payload.
URGENT = {"check_start": 0, "check_starts": 0, "attach_run": 1, "get_run": 1}
_FRAME = struct.Struct("!I")
#: A call the relay has not answered in this long is made on a connection of our own.
RELAY_TIMEOUT = 60.0


def _relay_dir() -> str:
    """A directory only this user can enter, for relay sockets."""
    path = os.path.join(tempfile.gettempdir(), f"hermes-cron-{os.getuid()}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise StoreError(f"{path} must be a directory of this user's, mode 0700")
    return path


def _send(sock: socket.socket, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_FRAME.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            raise ConnectionError("relay closed the connection")
        buf += part
    return bytes(buf)


def start_relay(url: str, err_path: str = os.devnull,
                close_fds: Iterable[int] = ()) -> tuple[str, int]:
    """Fork a relay for *url* (called by the fork server before it forks supervisors);
    returns its socket path and pid. The socket listens before the fork, so supervisors
    may connect at once. Its stderr goes to *err_path*; *close_fds*: descriptors of the
    fork server the relay must not hold open (its agents' inboxes)."""
    path = os.path.join(_relay_dir(), f"relay-{os.getpid()}.sock")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4096)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            for fd in close_fds:
                os.close(fd)
            null = os.open(os.devnull, os.O_RDWR)
            err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.dup2(err, 2)
            Relay(url, listener, path, parent).serve()
            code = 0
        except BaseException:
            log.exception("hermes-cron: the relay failed")
        finally:
            os._exit(code)
    listener.close()
    return path, pid


class Relay:
    """One process per fork server that makes its supervisors' store calls on one warm
    connection.

    Measured on a 1,000-run burst (2 cores): a connection per supervisor costs ~25 ms of
    CPU each (a server process forked, its catalog caches filled cold: 5x a warm call),
    so the supervisors were still connecting 10 s after the instant, and 1,000 server
    processes then fought the payloads for the CPU. Here the calls queue on a Unix
    socket and are made one at a time on one connection: start checks first (a payload
    waits on them), then the bookkeeping, whose waits for the disk are shared by a whole
    round. A supervisor whose relay is gone carries on with a connection of its own
    (:class:`RelayClient`). The relay exits when its fork server is gone and no
    supervisor is connected.
    """

    def __init__(self, url: str, listener: socket.socket, path: str, parent: int):
        self.url, self.listener, self.path, self.parent = url, listener, path, parent

    def serve(self) -> None:
        store = PostgresStore(self.url)
        store.group_flushes = True
        self.sel = sel = selectors.DefaultSelector()
        self.listener.setblocking(False)
        sel.register(self.listener, selectors.EVENT_READ)
        buffers: dict[socket.socket, bytearray] = {}  # client -> bytes not yet a whole call
        self.buffers = buffers
        queue: list[tuple[int, int, socket.socket, tuple]] = []  # (urgency, seq, client, call)
        held: list[tuple[socket.socket, tuple]] = []  # replies waiting for the disk
        seq = 0
        try:
            while True:
                for key, _ in sel.select(0 if queue else 1.0):
                    if key.fileobj is self.listener:
                        self._accept()
                        continue
                    # every other object registered is a client's socket (_accept)
                    client = cast(socket.socket, key.fileobj)
                    try:
                        data = client.recv(1 << 20)
                    except OSError:
                        data = b""
                    if not data:
                        self._drop(client)
                        continue
                    buf = buffers[client]
                    buf += data
                    while len(buf) >= 4:
                        size = _FRAME.unpack_from(buf)[0]
                        if len(buf) < 4 + size:
                            break
                        call = pickle.loads(bytes(buf[4:4 + size]))
                        del buf[:4 + size]
                        seq += 1
                        heapq.heappush(queue, (URGENT.get(call[0], 2), seq, client, call))
                if queue and queue[0][3][0] == "check_start":  # every start check queued
                    checks = []
                    while queue and queue[0][3][0] == "check_start":
                        checks.append(heapq.heappop(queue))
                    for (_, _, client, _), reply in zip(checks, self._checks(store, checks)):
                        self._reply(client, reply)
                elif queue:
                    _, _, client, call = heapq.heappop(queue)
                    reply = self._call(store, call)
                    if store.flush_owed:
                        held.append((client, reply))
                    else:
                        self._reply(client, reply)
                if held and (not queue or len(held) >= 64):
                    try:
                        store.wait_durable()
                    except psycopg.Error as exc:  # not known to be on disk: say so
                        held = [(c, ("error", ("StoreError", str(exc), None)))
                                for c, _ in held]
                    for client, reply in held:
                        self._reply(client, reply)
                    held = []
                if not queue and not buffers and os.getppid() != self.parent:
                    return  # the fork server is gone and nobody is left to serve
        finally:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            store.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except BlockingIOError:
                return
            cred = client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                     struct.calcsize("3i"))
            if struct.unpack("3i", cred)[1] != os.getuid():
                client.close()
                continue
            client.settimeout(5.0)  # a reply that cannot be sent drops that client only
            self.sel.register(client, selectors.EVENT_READ)
            self.buffers[client] = bytearray()

    def _drop(self, client: socket.socket) -> None:
        """Forget a client (its supervisor sees the relay gone and connects itself)."""
        if self.buffers.pop(client, None) is not None:
            self.sel.unregister(client)
            client.close()

    def _checks(self, store: PostgresStore, checks: list) -> list[tuple]:
        """Replies to many start checks, from one query when it can."""
        ids = [call[1][0] for _, _, _, call in checks]
        try:
            found = store.check_starts(ids)
        except Exception:  # one bad run id must not fail the others
            return [self._call(store, call) for _, _, _, call in checks]
        return [("ok", found[rid]) for rid in ids]

    @staticmethod
    def _call(store: PostgresStore, call: tuple) -> tuple:
        method, args, kwargs = call
        if method not in RELAYED:
            return "error", ("StoreError", f"{method} is not relayed", None)
        try:
            return "ok", getattr(store, method)(*args, **kwargs)
        except HermesCronError as exc:
            return "error", (type(exc).__name__, exc.message, exc.field)
        except psycopg.Error as exc:
            return "error", ("OperationalError", str(exc), None)
        except Exception as exc:
            log.exception("hermes-cron: relayed %s failed", method)
            return "error", ("StoreError", f"{type(exc).__name__}: {exc}", None)

    def _reply(self, client: socket.socket, reply: tuple) -> None:
        if client not in self.buffers:
            return  # gone while its call waited
        try:
            _send(client, reply)
        except OSError:
            self._drop(client)


class RelayClient:
    """A supervisor's store when its fork server runs a relay: the calls in ``RELAYED`` go
    through the relay; anything else, and everything once the relay is gone, through a
    connection of its own (the supervisor contract never depends on the relay)."""

    def __init__(self, url: str, path: str):
        self.url, self.path = url, path
        self.logs_dir = _spool_dir(url)
        self._sock: socket.socket | None = None
        self._direct: PostgresStore | None = None

    def _store(self) -> PostgresStore:
        if self._direct is None:
            self._direct = PostgresStore(self.url, logs_dir=self.logs_dir)
        return self._direct

    def _call(self, method: str, *args, **kwargs):
        if self._direct is None:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    self._sock.settimeout(RELAY_TIMEOUT)
                    self._sock.connect(self.path)
                _send(self._sock, (method, args, kwargs))
                kind, value = pickle.loads(_recv_exact(
                    self._sock, _FRAME.unpack(_recv_exact(self._sock, 4))[0]))
            except OSError as exc:
                log.warning("hermes-cron: relay %s unusable (%s); connecting directly",
                            self.path, exc)
                self._close_socket()
            else:
                if kind == "ok":
                    return value
                name, message, field = value
                if name == "OperationalError":  # as a direct call would raise it
                    raise psycopg.OperationalError(message)
                raise getattr(errors, name, StoreError)(message, field=field)
        return getattr(self._store(), method)(*args, **kwargs)

    def __getattr__(self, name: str):
        if name in RELAYED:
            return lambda *args, **kwargs: self._call(name, *args, **kwargs)
        return getattr(self._store(), name)

    # what the supervisor needs locally (no connection): the store's own, on logs_dir
    log_path = PostgresStore.log_path
    artifact_path = PostgresStore.artifact_path
    output_writer = PostgresStore.output_writer
    _save_artifact = PostgresStore._save_artifact

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        self._close_socket()
        if self._direct is not None:
            self._direct.close()
