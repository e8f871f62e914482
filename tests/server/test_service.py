"""The service behind the handlers: what its shortcuts must never change."""

from __future__ import annotations

import json

from hermes_cron_ext.server.service import RunsJSON, _page_json
from tests.conftest import make_job


def test_history_pages_from_kept_json_equal_fresh_ones(store, clock):
    make_job(store, "hist", "* * * * *", overlap="allow")
    runs = []
    for _ in range(6):
        runs.append(store.request_run("hist"))
        clock.advance(1)  # newest first: runs[5], runs[4], ...
    for run in runs[:4]:
        clock.advance(1)
        store.finish_run(run.id, "succeeded", 0)
    pages = RunsJSON(size=3)  # smaller than a page: the cache also empties itself

    def check():
        page = store.list_runs("hist", limit=5)
        assert json.loads(pages.page(page)) == json.loads(_page_json("runs", page))
        return json.loads(pages.page(page))

    first = check()
    store.heartbeat_run(runs[5].id, clock(), "epoch 2", 0.5, 10)
    store.finish_run(runs[4].id, "failed", 3)
    second = check()
    by_id = {r["id"]: r for r in second["runs"]}
    assert second != first and by_id[runs[4].id]["status"] == "failed"
    assert by_id[runs[5].id]["phase"] == "epoch 2"
    assert check()["cursor"] is not None


SECRET = "s3cret-not-on-cmdline"


async def test_fork_server_command_line_holds_no_store_password(pg_url):
    """``ps`` shows every local user each process's command line: the fork server gets
    the store URL (with its password) by environment, and its supervisors and payloads
    do not inherit it."""
    import os

    import psycopg

    from hermes_cron_ext.runtime.executor import FORK_SERVER_DB, LocalExecutor
    from hermes_cron_ext.store.embedded import as_url

    info = psycopg.conninfo.conninfo_to_dict(pg_url)
    url = as_url(psycopg.conninfo.make_conninfo(**info, password=SECRET))
    executor = LocalExecutor(url)
    try:
        await executor.warm_up()
        pid = executor._proc.pid
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        assert b"hermes_cron_ext.runtime.executor" in cmdline
        assert SECRET.encode() not in cmdline and b"postgresql" not in cmdline
    finally:
        await executor.close()
    assert FORK_SERVER_DB not in os.environ
