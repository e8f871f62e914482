"""The event bus: it tails the events table promptly while anyone reads, lazily when
nobody does, and a reader that arrives finds it caught up."""

from __future__ import annotations

import asyncio

from hermes_cron_ext.events.bus import EventBus
from hermes_cron_ext.store import AsyncStore, open_store
from tests.conftest import make_job


def test_an_idle_bus_waits_and_a_reader_catches_it_up(db_path):
    async def scenario():
        store = AsyncStore(open_store(db_path))
        writer = open_store(db_path)  # another process's changes, in real life
        bus = EventBus(store, interval=0.02, idle_interval=60.0)
        heard: list = []
        bus.add_listener(heard.extend)
        await bus.start()
        task = asyncio.create_task(bus.run())
        try:
            await asyncio.sleep(0.1)
            start = bus.cursor
            make_job(writer, "a")
            await asyncio.sleep(0.3)
            assert bus.cursor == start and heard == []  # nobody reads: not polled yet

            await bus.attach()  # a reader arrives: caught up before it reads
            assert bus.cursor > start and [e.type for e in heard] == ["job.created"]
            assert bus.busy
            make_job(writer, "b")
            await asyncio.wait_for(bus.wait(5.0), 5.0)  # and prompt from now on
            assert [e.type for e in heard] == ["job.created", "job.created"]

            bus.detach()
            interested = []
            bus.add_interest(lambda: bool(interested))
            assert not bus.busy
            interested.append(1)  # a run's feed, say: prompt again
            assert bus.busy
        finally:
            await bus.close()
            task.cancel()
            await store.aclose()
            writer.close()

    asyncio.run(scenario())
