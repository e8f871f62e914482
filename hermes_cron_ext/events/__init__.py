"""Event brokers: how a process learns, at once, that another one changed the store.

Every change is also a row of the store's ``events`` table, so polling that table
(:class:`~hermes_cron_ext.events.bus.EventBus`) is always correct; a broker only
makes the news fast. Two brokers, chosen by the store (:func:`broker_for`):

- :class:`LocalBroker` (SQLite): changes made in this process are published in
  this process; other processes' changes are found by polling (0.1 s).
  :class:`SQLiteBroker` adds, where the host can (Linux inotify), a ``("commit", "")``
  notice whenever any process may have committed to the store's file
  (:mod:`~hermes_cron_ext.events.watch`), so a subscriber that confirms with the
  store's ``change_token`` can poll seldom.
- :class:`PostgresBroker`: PostgreSQL LISTEN/NOTIFY delivers every host's
  changes within milliseconds; polling only backs it up (once a second).

A subscriber gets ``callback(kind, arg)``: ``("event", "SEQ TYPES")`` when events
were committed, ``("output", RUN_ID)`` when a run's output grew, ``("resync", "")``
when notices may have been missed (reconnect), ``("commit", "")`` when something may
have been committed to a SQLite store by any process. Callbacks run on a broker thread
or inline: hand work to your own loop (``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

from hermes_cron_ext.store import is_postgres
from hermes_cron_ext.store.base import Store

if TYPE_CHECKING:
    from hermes_cron_ext.events.watch import CommitWatch

Callback = Callable[[str, str], None]


class EventBroker(ABC):
    """Delivers change notices to subscribers; polling the events table backs it up."""

    #: how often a subscriber should still poll the events table (seconds)
    poll_events: float = 0.1
    #: how often a watched run's log should still be polled (seconds)
    poll_output: float = 0.01
    #: whether notices arrive from other processes (else only from this one)
    remote: bool = False

    @property
    def watches_commits(self) -> bool:
        """Whether every process's commits reach subscribers as ``commit`` notices (with
        one subscriber or more): then a change detector need not be polled often."""
        return False

    @abstractmethod
    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call *callback* on every notice until the returned function is called."""

    @abstractmethod
    def publish(self, kind: str, arg: str = "") -> None:
        """Tell this process's subscribers (the store tells other processes itself)."""


class LocalBroker(EventBroker):
    """In-process delivery: what this process changed, its subscribers hear at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callback] = []

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        with self._lock:
            self._callbacks.append(callback)

        def stop() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)
        return stop

    def publish(self, kind: str, arg: str = "") -> None:
        with self._lock:
            callbacks = list(self._callbacks)
        for fn in callbacks:
            fn(kind, arg)


class PostgresBroker(LocalBroker):
    """LISTEN/NOTIFY: every host's commits reach subscribers (the store's listen thread)."""

    poll_events = 1.0
    poll_output = 0.1
    remote = True

    def __init__(self, store) -> None:
        super().__init__()
        self._store = store
        self._unlisten: Callable[[], None] | None = None

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        stop_local = super().subscribe(callback)
        stop_remote = self._store.listen(callback)

        def stop() -> None:
            stop_local()
            stop_remote()
        return stop


class SQLiteBroker(LocalBroker):
    """In-process delivery, plus ``("commit", "")`` when any process may have committed
    to the store's file (a watch thread while anyone subscribes; none where the host
    cannot watch files, and then :attr:`watches_commits` is False)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path
        self._watch: CommitWatch | None = None
        self._watching = 0

    @property
    def watches_commits(self) -> bool:
        return self._watch is not None

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        from hermes_cron_ext.events.watch import watch_commits

        stop_local = super().subscribe(callback)
        with self._lock:
            self._watching += 1
            if self._watching == 1:
                self._watch = watch_commits(self._path, lambda: self.publish("commit"))
        stopped = False

        def stop() -> None:
            nonlocal stopped
            stop_local()
            with self._lock:
                if stopped:
                    return
                stopped = True
                self._watching -= 1
                watch = self._watch if self._watching == 0 else None
                if watch is not None:
                    self._watch = None
            if watch is not None:
                watch.close()
        return stop


def broker_for(store: Store) -> EventBroker:
    """The broker that fits *store*: NOTIFY on PostgreSQL, in-process on SQLite (with
    other processes' commits watched, where the host can)."""
    if is_postgres(store.url):
        return PostgresBroker(store)
    path = getattr(store, "path", None)
    if path:
        return SQLiteBroker(path)
    return LocalBroker()
