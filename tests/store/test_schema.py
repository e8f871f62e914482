"""Forward migrations: a store made by an older hermes-cron opens in this one, its rows
kept, its schema moved on (SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlite3

import pytest

from hermes_cron_ext.domain.jobspec import validate_new
from hermes_cron_ext.store import open_store
from hermes_cron_ext.store.sql import MIGRATIONS, SCHEMA_VERSION

JOB_V6 = ("j_00000000000000aa", "old", "command", "@daily", "UTC",
          '{"command": "true", "after": null}', "{}", "scheduled", None, 1, 1.8e9, None, 0, 0,
          1.7e9, 1.7e9, 1, None, None)


def _after_only(store) -> None:
    """What version 7 allows: a job with no schedule of its own, after another."""
    old = store.get_job("old")
    assert (old.schedule, old.next_run_at, old.command) == ("@daily", 1.8e9, "true")
    job, _ = store.create_job(validate_new(
        {"name": "report", "after": [{"job": old.id}], "command": "true"}))
    assert (store.get_job("report").schedule, job.next_run_at) == (None, None)
    assert store.schema_version() == SCHEMA_VERSION == 7


def test_a_version_6_sqlite_store_takes_jobs_with_no_schedule(tmp_path):
    path = tmp_path / "store" / "cron.db"
    path.parent.mkdir(mode=0o700)
    db = sqlite3.connect(path)
    for version in range(1, 7):
        for stmt in MIGRATIONS[version]:
            db.execute(stmt)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute("INSERT INTO meta VALUES ('schema_version', '6')")
    db.execute(f"INSERT INTO jobs VALUES ({', '.join('?' * len(JOB_V6))})", JOB_V6)
    db.commit()
    with pytest.raises(sqlite3.IntegrityError):  # what version 6 refused
        db.execute("INSERT INTO jobs (id, name, kind, schedule, timezone, payload, policy, "
                   "state, enabled, created_at, updated_at) VALUES ('j_1', 'x', 'command', "
                   "NULL, 'UTC', '{}', '{}', 'scheduled', 1, 0, 0)")
    db.close()
    store = open_store(str(path))
    try:
        _after_only(store)
        # the table made again keeps its index for the ticker and its unique name
        indexes = {r[1] for r in store.db.execute("PRAGMA index_list(jobs)").fetchall()}
        assert "jobs_due" in indexes
        assert store.db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    finally:
        store.close()


@pytest.mark.postgres
def test_a_version_6_postgres_store_takes_jobs_with_no_schedule(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:  # back to version 6's schema
        conn.execute("ALTER TABLE jobs ALTER COLUMN schedule SET NOT NULL")
        conn.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
        conn.execute(f"INSERT INTO jobs VALUES ({', '.join(['%s'] * len(JOB_V6))})", JOB_V6)
    store = open_store(pg_url)
    try:
        _after_only(store)
    finally:
        store.close()
