"""``hermes-cron migrate --to postgresql://...``: a SQLite store moved into PostgreSQL,
jobs, runs, events and output, with the counts checked."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hermes_cron_ext.store import SQLiteStore, open_store
from tests.conftest import make_job

pytestmark = pytest.mark.postgres
pytest.importorskip("psycopg")


def migrate(db: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hermes_cron_ext", "--db", db, "migrate",
                           *args], capture_output=True, text=True, timeout=120)


def _fill(store: SQLiteStore) -> tuple[dict, str]:
    """Jobs, finished runs with output (stdout, stderr, system lines), a notebook artifact,
    a failure and a skipped slot, and a notification cursor."""
    make_job(store, "etl", "*/5 * * * *", retries=1, env={"A": "1"},
             secret_env={"TOKEN": "s3cret"})
    make_job(store, "report", "@daily", kind="python", code="print('hi')", command=None)
    make_job(store, "paused", "@hourly")
    store.set_paused("paused", True)
    store.claim_events("notify")  # a consumer cursor, as the webhook notifier keeps one
    outputs = {}
    for name, status, code in (("etl", "succeeded", 0), ("etl", "failed", 2),
                               ("report", "succeeded", 0)):
        run = store.request_run(name)
        store.attach_run(run.id, 1234, None, "old-host")
        store.mark_running(run.id, store.clock(), 1235)
        w = store.output_writer(run.id)
        w.write("stdout", f"{name} says hello\n".encode())
        w.write("stderr", "caf\u00e9 warning\n".encode())
        w.system("[hermes-cron: a line of its own]\n")
        w.write("stdout", b"\x1b[32mgreen\x1b[0m done\n")
        w.close()
        store.heartbeat_run(run.id, store.clock(), "done", 1.0, w.size)
        store.finish_run(run.id, status, code, None if code == 0 else "exit code 2: boom")
        outputs[run.id] = store.read_output(run.id)
    with open(store.artifact_path(run.id), "wb") as f:
        f.write(b'{"cells": [], "nbformat": 4}')
    return outputs, run.id


def test_migrate_moves_everything_and_checks_the_counts(tmp_path, pg_url):
    db = str(tmp_path / "old" / "hermes-cron.db")
    (tmp_path / "old").mkdir()
    src = SQLiteStore(db)
    outputs, notebook_run = _fill(src)
    events = src.events_since(0, 10_000)
    jobs = [j.to_json() for j in src.list_jobs().items]
    runs = src.list_runs(limit=100).items
    cursor = int(src.db.execute("SELECT value FROM meta WHERE key = 'cursor:notify'")
                 .fetchone()[0])
    src.close()

    done = migrate(db, "--to", pg_url)
    assert done.returncode == 0, done.stderr
    assert "migrated" in done.stdout and "CHECK" in done.stdout
    table = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[2:]
             if line and line.split()[0] in ("jobs", "runs", "events", "metrics",
                                             "output_bytes")}
    assert len(runs) == 4  # three finished and the failed one's retry, waiting
    assert table["jobs"][:2] == ["3", "3"] and table["runs"][:2] == ["4", "4"]
    assert table["events"][0] == table["events"][1] == str(len(events))
    assert table["metrics"][:2] == ["9", "9"]  # duration, exit code, output bytes of 3 runs
    assert int(table["output_bytes"][0]) == sum(len(o) for o in outputs.values())

    pg = open_store(pg_url)
    try:
        assert [j.to_json() for j in pg.list_jobs().items] == jobs
        assert pg.get_job("etl").env == {"A": "1", "TOKEN": "s3cret"}  # secrets kept
        assert pg.list_runs(limit=100).items == runs  # every field, the frozen spec too
        etl = pg.get_job("etl").id
        assert pg.metric_history(etl, "exit_code", 5) == [2, 0]
        assert pg.events_since(0, 10_000) == events  # same seq: client cursors stay valid
        for run_id, data in outputs.items():
            assert pg.read_output(run_id) == data
            sqlite = SQLiteStore(db)
            assert pg.output_segments(run_id) == sqlite.output_segments(run_id)
            sqlite.close()
        assert pg.read_artifact(notebook_run) == b'{"cells": [], "nbformat": 4}'
        # the notifier's cursor came along: it goes on with what it had not sent yet
        assert pg.claim_events("notify", 10_000) == [e for e in events if e.seq > cursor]
        # the store goes on where the old one stopped
        make_job(pg, "new-on-pg")
        assert pg.last_event_seq() == events[-1].seq + 1
        assert pg.get_job("paused").state == "paused"
    finally:
        pg.close()

    again = migrate(db, "--to", pg_url, "--json")
    assert again.returncode == 1 and "is not empty" in again.stderr


def test_migrate_refuses_a_store_in_use(tmp_path, pg_url):
    db = str(tmp_path / "busy" / "hermes-cron.db")
    (tmp_path / "busy").mkdir()
    src = SQLiteStore(db)
    make_job(src, "job")
    src.register_ticker("daemon", "host", 1)
    src.close()
    busy = migrate(db, "--to", pg_url)
    assert busy.returncode == 1 and "in use" in busy.stderr and "--force" in busy.stderr
    forced = migrate(db, "--to", pg_url, "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    counts = json.loads(forced.stdout)
    assert counts["source"] == counts["copied"]
    assert counts["copied"]["jobs"] == 1


def test_migrate_owner_moves_a_users_store_into_the_hub_store_in_use(tmp_path, pg_url):
    """``migrate --owner alice``: alice's own store joins the hub service's store, which
    holds other users' jobs and keeps its own; every job is alice's, nothing lost."""
    from hermes_cron_ext.domain.access import Viewer
    from hermes_cron_ext.ops import Operations

    db = str(tmp_path / "alice" / "hermes-cron.db")
    (tmp_path / "alice").mkdir()
    src = SQLiteStore(db)
    outputs, notebook_run = _fill(src)
    src_events = [e for e in src.events_since(0, 10_000) if e.job_id]
    waiting = len(src.active_runs())  # runs still to start stay behind
    src.close()
    hub = Operations(open_store(pg_url))
    try:
        theirs = hub.as_user(Viewer("bob")).create(
            {"name": "etl", "schedule": "@daily", "command": "true"})[0]  # bob's "etl"
        mine = hub.as_user(Viewer("alice")).create(
            {"name": "kept", "schedule": "@daily", "command": "true"})[0]
        before = hub.store.last_event_seq()
        done = migrate(db, "--to", pg_url, "--owner", "alice", "--json")
        assert done.returncode == 0, done.stderr
        counts = json.loads(done.stdout)
        assert counts["source"] == {k: v for k, v in counts["copied"].items()
                                    if k in counts["source"]}
        assert counts["owner"] == "alice" and counts["source"]["jobs"] == 3
        alice = hub.as_user(Viewer("alice"))
        assert sorted(j["name"] for j in alice.jobs()) == ["etl", "kept", "paused", "report"]
        assert {j["owner"] for j in alice.jobs()} == {"alice"}
        assert alice.job("paused")["state"] == "paused"
        assert alice.job(mine["id"])["name"] == "kept"
        assert hub.as_user(Viewer("bob")).job("etl")["id"] == theirs["id"]  # untouched
        for run_id, data in outputs.items():
            assert alice.log(run_id)[0] == data
        assert alice.artifact(notebook_run) == b'{"cells": [], "nbformat": 4}'
        moved = [e for e in hub.store.events_since(before, 10_000) if e.job_id]
        assert [(e.type, e.job_id) for e in moved] == [(e.type, e.job_id) for e in src_events]
        assert counts["not_moved"] == {"waiting_runs": waiting}
        # once more: the names are alice's now, so nothing is moved twice
        again = migrate(db, "--to", pg_url, "--owner", "alice")
        assert again.returncode == 1
        assert "alice already has jobs named etl, paused, report" in again.stderr
        assert len(alice.jobs()) == 4
    finally:
        hub.close()


def test_migrate_owner_refuses_rows_that_reach_into_other_jobs(tmp_path, pg_url):
    """A store file can be edited: a run, backfill or link naming a job it does not hold
    (someone else's, in the shared store) is refused, and nothing is moved; a run still
    waiting to start is left behind (it would start with the spec frozen in the file)."""
    import sqlite3

    from hermes_cron_ext.ops import Operations

    db = str(tmp_path / "alice" / "hermes-cron.db")
    (tmp_path / "alice").mkdir()
    src = SQLiteStore(db)
    make_job(src, "mine", "@daily")
    waiting = src.request_run("mine")
    src.close()
    done = migrate(db, "--to", pg_url, "--owner", "alice", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["not_moved"] == {"waiting_runs": 1}
    hub = Operations(open_store(pg_url))
    try:
        from hermes_cron_ext.errors import NotFound
        with pytest.raises(NotFound):
            hub.store.get_run(waiting.id)
        alices = hub.store.get_job("mine", owner="alice").id  # a job of the shared store
    finally:
        hub.close()
    db2 = str(tmp_path / "carol" / "hermes-cron.db")
    (tmp_path / "carol").mkdir()
    src = SQLiteStore(db2)
    make_job(src, "other", "@daily")
    src.close()
    with sqlite3.connect(db2) as conn:  # a link onto a job of the shared store
        conn.execute("INSERT INTO job_after (job_id, upstream_id) SELECT id, ? FROM jobs",
                     (alices,))
    done = migrate(db2, "--to", pg_url, "--owner", "carol")
    assert done.returncode == 1
    assert "job_after name jobs it does not hold" in done.stderr
    hub = Operations(open_store(pg_url))
    try:
        assert hub.store.jobs_named("other") == []  # nothing moved
    finally:
        hub.close()
