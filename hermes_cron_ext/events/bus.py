"""The event bus: one process's view of the store's append-only ``events`` table.

Every process writes what it did to ``events``; a bus tails that table from its
cursor and wakes whoever waits (``/events`` streams, run feeds). A broker's
notice (``poke``) makes it look at once instead of at its next poll.
"""

from __future__ import annotations

import asyncio
from collections import deque

from hermes_cron_ext.domain.models import Event
from hermes_cron_ext.store import AsyncStore


class EventBus:
    """Tails the events table; readers wait for ``seq`` beyond their cursor.

    It polls every *interval* while anyone reads (an ``/events`` stream, a run's feed)
    and only every *idle_interval* otherwise, so an idle server costs next to nothing;
    a reader that arrives catches the bus up first (:meth:`attach`)."""

    def __init__(self, store: AsyncStore, interval: float = 0.1, keep: int = 5000,
                 idle_interval: float = 10.0):
        self.store = store
        self.interval = interval
        self.idle_interval = idle_interval
        self.recent: deque[Event] = deque(maxlen=keep)
        self.cursor = 0
        self.readers = 0
        self._changed = asyncio.Condition()
        self._poke = asyncio.Event()
        self._pulling = asyncio.Lock()
        self.closed = False
        self._listeners: list = []
        self._interest: list = []

    async def start(self) -> None:
        self.cursor = await self.store.last_event_seq()

    def poke(self) -> None:
        """Something changed in this process: look now rather than at the next interval."""
        self._poke.set()

    def add_listener(self, fn) -> None:
        self._listeners.append(fn)

    def add_interest(self, fn) -> None:
        """*fn()* true: someone besides the bus's own readers wants events promptly."""
        self._interest.append(fn)

    @property
    def busy(self) -> bool:
        return self.readers > 0 or any(fn() for fn in self._interest)

    async def attach(self) -> None:
        """A reader arrives: the bus polls promptly from now on and is caught up (an
        idle bus may be up to ``idle_interval`` behind the table)."""
        self.readers += 1
        self.poke()
        await self.pull()

    def detach(self) -> None:
        self.readers = max(0, self.readers - 1)

    async def pull(self) -> int:
        """Read what the table has beyond the cursor; tell listeners and waiters."""
        async with self._pulling:
            try:
                events = await self.store.events_since(self.cursor, 1000)
            except Exception:
                events = []
            if events:
                self.recent.extend(events)
                self.cursor = events[-1].seq
                for fn in self._listeners:
                    fn(events)
                async with self._changed:
                    self._changed.notify_all()
            return len(events)

    async def run(self) -> None:
        while not self.closed:
            self._poke.clear()
            if await self.pull() == 1000:
                continue
            try:
                await asyncio.wait_for(self._poke.wait(),
                                       self.interval if self.busy else self.idle_interval)
            except TimeoutError:
                pass

    async def close(self) -> None:
        self.closed = True
        self._poke.set()
        async with self._changed:
            self._changed.notify_all()

    async def wait(self, timeout: float) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
            except TimeoutError:
                pass

    async def since(self, cursor: int, limit: int = 500) -> list[Event]:
        """Events after *cursor*: from memory when it reaches back far enough."""
        if self.recent and self.recent[0].seq <= cursor + 1:
            return [e for e in self.recent if e.seq > cursor][:limit]
        if cursor >= self.cursor:
            return []
        return await self.store.events_since(cursor, limit)
