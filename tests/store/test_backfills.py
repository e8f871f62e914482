"""The ``Backfills`` contract: past slots run a few at a time, each next slot queued by
the end of a run (and taken once), slots already run left out, a cancelled backfill
starting nothing more.

Every test runs against every store (SQLite and PostgreSQL), on a fake clock.
"""

from __future__ import annotations

import pytest

from hermes_cron_ext.errors import NotFound
from tests.conftest import make_job
from tests.store.contract import EVERY_BACKEND

pytestmark = EVERY_BACKEND


def test_a_backfill_runs_its_slots_a_few_at_a_time(store, clock):
    job = make_job(store, "bf", "@daily")
    slots = [1_700_000_000.0 + 86400 * i for i in range(5)]
    b = store.create_backfill(job.id, slots, 2)
    assert (b["slots"], b["started"], b["state"], b["runs"]) == (5, 2, "running", {"queued": 2})
    seen = []
    while (active := [r for r in store.active_runs() if r.backfill_id == b["id"]]):
        assert len(active) <= 2 and {r.trigger for r in active} == {"backfill"}
        run = active[0]
        seen.append(run.scheduled_for)
        assert store.attach_run(run.id, 1, None, "h")
        store.finish_run(run.id, "succeeded", 0)  # the next slot is queued in this commit
        # ... and the supervisor that ended a run takes it on (a ticker then finds it taken)
        for taken in store.take_next(run.id):
            assert store.get_run(taken).backfill_id == b["id"] and not store.dispatch(taken)
    assert sorted(seen) == slots
    done = store.get_backfill(b["id"])
    assert (done["state"], done["runs"]) == ("done", {"succeeded": 5})
    clock.advance(1)
    assert store.create_backfill(job.id, slots, 2)["slots"] == 0  # every slot has run
    listed = store.list_backfills("bf")
    assert [x["slots"] for x in listed] == [0, 5]  # newest first
    assert listed[1]["id"] == b["id"] and listed[1]["state"] == "done"
    with pytest.raises(NotFound):
        store.list_backfills("no-such-job")


def test_a_cancelled_backfill_starts_nothing_more(store, clock):
    job = make_job(store, "bf2", "@daily")
    b = store.create_backfill(job.id, [1_700_000_000.0 + 86400 * i for i in range(4)], 1)
    out = store.cancel_backfill(b["id"])
    assert (out["state"], out["runs"]) == ("cancelled", {"cancelled": 1})
    assert [r for r in store.active_runs() if r.backfill_id == b["id"]] == []
    with pytest.raises(NotFound):
        store.get_backfill("b_0000000000000000")
