"""Pipelines with real tickers: two daemons on one store, jobs A and B every 2 s and C
after both. Each slot of A and B gives exactly one run of C, told who triggered it."""

from __future__ import annotations

import collections
import time

import pytest

from hermes_cron_ext.store import open_store
from tests.conftest import CLI, wait_for


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_cli(request, tmp_path):
    """The CLI on a SQLite file, or on a real PostgreSQL database."""
    db = (str(tmp_path / "store" / "cron.db") if request.param == "sqlite"
          else request.getfixturevalue("pg_url"))
    cli = CLI(db, str(tmp_path))
    yield cli
    cli.stop_all()


def test_fan_in_with_two_daemons_fires_each_downstream_slot_once(store_cli, tmp_path):
    cli = store_cli
    ledger = tmp_path / "ledger"
    cli("add", "a", "@every 2s", "--", "true")
    cli("add", "b", "@every 2s", "--", "sleep 0.3")
    cli("add", "c", "@yearly", "--after", "a", "--after", "b", "--", "sh", "-c",
        f'echo "$HERMES_CRON_LOGICAL_TIME $HERMES_CRON_UPSTREAM_STATUS" >> {ledger}')
    cli("add", "on-failure", "@yearly", "--after", "a:failure", "--", "true")
    cli.daemon()
    cli.daemon()  # two tickers race for every slot and every run's end
    store = open_store(cli.db)
    try:
        wait_for(lambda: len(store.list_runs("c").items) >= 3, 40, 0.2, "three runs of c")
        cli("pause", "a", "b")
        time.sleep(1.5)  # runs in flight end; their downstream runs are queued at once
        wait_for(lambda: not [r for r in store.active_runs()], 30, what="quiet")
        runs = {j: store.list_runs(j, limit=200).items for j in ("a", "b", "c")}
        both = ({r.scheduled_for for r in runs["a"] if r.status == "succeeded"}
                & {r.scheduled_for for r in runs["b"] if r.status == "succeeded"})
        per_slot = collections.Counter(r.scheduled_for for r in runs["c"])
        assert set(per_slot) == both and set(per_slot.values()) == {1}, per_slot
        assert {r.trigger for r in runs["c"]} == {"upstream"}
        assert all(r.status == "succeeded" for r in runs["c"])
        lines = ledger.read_text().splitlines()
        assert len(lines) == len(runs["c"]) and {ln.split()[1] for ln in lines} == {
            "succeeded"}
        assert store.list_runs("on-failure").items == []  # a never failed
    finally:
        store.close()
