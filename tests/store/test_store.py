"""The ``Store`` contract beyond its interfaces (each has its own suite: see
``contract.py``): closing and reopening, the schema version, and ``AsyncStore``
running every call on a store thread.

Every test runs against every store (SQLite and PostgreSQL), on a fake clock.
"""

from __future__ import annotations

import threading

import pytest

from hermes_cron_ext.domain.jobspec import validate_new
from hermes_cron_ext.errors import Conflict, NotFound, StoreError
from hermes_cron_ext.store import AsyncStore
from hermes_cron_ext.store.sql import SCHEMA_VERSION
from tests.conftest import make_job
from tests.store.contract import EVERY_BACKEND, T0

pytestmark = EVERY_BACKEND


def test_close_closes_every_threads_connection_and_store_reopens(store):
    make_job(store, "threads")
    names = []
    worker = threading.Thread(target=lambda: names.append(store.get_job("threads").name))
    worker.start()
    worker.join()
    store.close()
    assert store.get_job("threads").name == "threads" and names == ["threads"]


def test_schema_version_and_newer_store_refused(open_test_store, store):
    assert store.schema_version() == SCHEMA_VERSION
    store.db.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="upgrade"):
        open_test_store()


async def test_async_store_awaits_each_call_on_a_store_thread(open_test_store):
    """Every interface method is awaitable, with the store's arguments, answers and
    exceptions, and runs on the store's threads, never on the loop's."""
    threads: set[str] = set()

    def clock() -> float:  # the store reads its clock inside each write
        threads.add(threading.current_thread().name)
        return T0

    astore = AsyncStore(open_test_store(clock=clock), threads=2)
    try:
        job, created = await astore.create_job(validate_new(
            {"name": "a", "schedule": "@daily", "timezone": "UTC", "command": "true"}))
        assert created and (await astore.get_job("a")).id == job.id
        assert [j.name for j in (await astore.list_jobs(limit=1)).items] == ["a"]
        run = await astore.request_run("a", parameters=None)
        assert await astore.dispatch(run.id) and not await astore.dispatch(run.id)
        with pytest.raises(NotFound):
            await astore.get_job("nope")
        await astore.attach_run(run.id, 1, None, "h")
        await astore.mark_running(run.id, T0, 2)
        with pytest.raises(Conflict):
            await astore.request_run("a")  # overlap forbid, as the store raises it
        assert (await astore.finish_run(run.id, "succeeded", 0)).status == "succeeded"
        assert await astore.gc(T0) == {"runs_deleted": 0, "events_deleted": 0,
                                       "audit_deleted": 0}
        assert threads and all(name.startswith("hermes-store") for name in threads)
        assert threading.current_thread().name not in threads
    finally:
        await astore.aclose()
