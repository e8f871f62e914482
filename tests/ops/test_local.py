"""What ``Operations`` gives the server and the CLI beyond the ``CronClient`` calls, so
neither holds the store: the store's address, a log's raw bytes for the shared output
feeds, and ``hermes-cron migrate``."""

from __future__ import annotations

import pytest

from hermes_cron_ext.errors import Conflict
from hermes_cron_ext.ops import Operations
from hermes_cron_ext.store import open_store
from tests.conftest import make_job


def test_display_url_is_the_stores(real_store):
    ops = Operations(real_store)
    assert ops.display_url == real_store.display_url
    assert ops.where == f"store {real_store.display_url}"


def test_log_bytes_are_the_stores_bytes_at_any_offset(real_store):
    make_job(real_store, "talker", "@yearly")
    run = real_store.request_run("talker")
    writer = real_store.output_writer(run.id)
    writer.write("stdout", "caf\u00e9\n".encode())
    writer.write("stderr", b"oops\n")
    ops = Operations(real_store)
    size = ops.log_size(run.id)
    assert size == 11
    for offset in range(size + 1):
        for limit in (None, 0, 1, 4, 100):
            assert ops.log_bytes(run.id, offset, limit) == real_store.read_output(
                run.id, offset, limit)
    assert ops.log_bytes(run.id) == "caf\u00e9\noops\n".encode()
    assert ops.log_bytes(run.id, size - 4, 4) == b"ops\n"


def test_migrate_copies_into_an_empty_store_and_refuses_a_full_one(real_store, tmp_path):
    make_job(real_store, "etl", "@daily")
    said = []
    counts = Operations(real_store).migrate(str(tmp_path / "new.db"), progress=said.append)
    assert counts["copied"]["jobs"] == counts["source"]["jobs"] == 1
    assert said and "copying 1 jobs" in said[0]
    target = open_store(str(tmp_path / "new.db"))
    try:
        assert [j.name for j in target.list_jobs().items] == ["etl"]
    finally:
        target.close()
    with pytest.raises(Conflict, match="not empty"):
        Operations(real_store).migrate(str(tmp_path / "new.db"))
