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


def _old_sqlite_store(path, version: int, jobs: list[tuple]) -> sqlite3.Connection:
    """A SQLite store as hermes-cron of schema *version* left it, holding *jobs* (rows in
    that version's column order); the connection is open, the rows committed."""
    path.parent.mkdir(mode=0o700)
    db = sqlite3.connect(path)
    for v in range(1, version + 1):
        for stmt in MIGRATIONS[v]:
            db.execute(stmt)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(version),))
    for row in jobs:
        db.execute(f"INSERT INTO jobs VALUES ({', '.join('?' * len(row))})", row)
    db.commit()
    return db


def _pg_back_to_v8(conn) -> None:
    """Undo versions 11, 10 and 9 on a PostgreSQL store made now (no owners, names
    unique)."""
    conn.execute("ALTER TABLE runs DROP COLUMN alerts")
    conn.execute("DROP TABLE run_metrics")
    conn.execute("DROP TABLE job_shares")
    conn.execute("ALTER TABLE jobs DROP CONSTRAINT jobs_owner_name_key")
    conn.execute("ALTER TABLE jobs DROP CONSTRAINT jobs_owner_idempotency_key_key")
    conn.execute("ALTER TABLE jobs DROP COLUMN owner")
    conn.execute("ALTER TABLE jobs ADD CONSTRAINT jobs_name_key UNIQUE (name)")
    conn.execute("ALTER TABLE jobs ADD CONSTRAINT jobs_idempotency_key_key "
                 "UNIQUE (idempotency_key)")


def _after_only(store) -> None:
    """What version 7 allows: a job with no schedule of its own, after another."""
    old = store.get_job("old")
    assert (old.schedule, old.next_run_at, old.command) == ("@daily", 1.8e9, "true")
    job, _ = store.create_job(validate_new(
        {"name": "report", "after": [{"job": old.id}], "command": "true"}))
    assert (store.get_job("report").schedule, job.next_run_at) == (None, None)
    assert store.schema_version() == SCHEMA_VERSION >= 7


def test_a_version_6_sqlite_store_takes_jobs_with_no_schedule(tmp_path):
    path = tmp_path / "store" / "cron.db"
    db = _old_sqlite_store(path, 6, [JOB_V6])
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
        _drop_v13(conn)
        _drop_v12(conn)
        _pg_back_to_v8(conn)
        conn.execute("ALTER TABLE jobs ALTER COLUMN schedule SET NOT NULL")
        conn.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
        conn.execute(f"INSERT INTO jobs VALUES ({', '.join(['%s'] * len(JOB_V6))})", JOB_V6)
    store = open_store(pg_url)
    try:
        _after_only(store)
    finally:
        store.close()


def _zones_v7(store) -> None:
    """Version 8: jobs saved with a posix/ or right/ zone (refused now) take the civil
    name, so they can still be shown, edited and fired."""
    assert {j.name: j.timezone for j in store.list_jobs(limit=10).items} == {
        "p": "Europe/Berlin", "r": "America/New_York", "u": "UTC"}
    assert store.schema_version() == SCHEMA_VERSION


def _job_row(job_id: str, name: str, tz: str) -> tuple:
    return (job_id, name, "command", "@daily", tz) + JOB_V6[5:]


def test_a_version_7_sqlite_store_keeps_jobs_saved_with_a_posix_or_right_zone(tmp_path):
    path = tmp_path / "store" / "cron.db"
    _old_sqlite_store(path, 7, [_job_row("j_1", "p", "posix/Europe/Berlin"),
                                _job_row("j_2", "r", "right/America/New_York"),
                                _job_row("j_3", "u", "UTC")]).close()
    store = open_store(str(path))
    try:
        _zones_v7(store)
    finally:
        store.close()


@pytest.mark.postgres
def test_a_version_7_postgres_store_keeps_jobs_saved_with_a_posix_or_right_zone(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        _drop_v13(conn)
        _drop_v12(conn)
        _pg_back_to_v8(conn)
        conn.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
        for row in (_job_row("j_1", "p", "posix/Europe/Berlin"),
                    _job_row("j_2", "r", "right/America/New_York"),
                    _job_row("j_3", "u", "UTC")):
            conn.execute(f"INSERT INTO jobs VALUES ({', '.join(['%s'] * len(row))})", row)
    store = open_store(pg_url)
    try:
        _zones_v7(store)
    finally:
        store.close()


def _owners_v9(store) -> None:
    """Version 9: a job saved before hubs belongs to the store's own user (''); names are
    unique per owner from then on."""
    old = store.get_job("old")
    assert old.owner == "" and old.command == "true"
    fields = validate_new({"name": "old", "schedule": "@daily", "command": "true"}, "UTC",
                          now=1.7e9)
    theirs, created = store.create_job({**fields, "owner": "alice"})
    assert created and theirs.owner == "alice"
    assert store.get_job("old").id == old.id  # the store's own user's, as before
    assert store.schema_version() == SCHEMA_VERSION >= 9


def test_a_version_8_sqlite_store_gives_its_jobs_to_the_stores_own_user(tmp_path):
    path = tmp_path / "store" / "cron.db"
    _old_sqlite_store(path, 8, [JOB_V6]).close()
    store = open_store(str(path))
    try:
        _owners_v9(store)
        assert store.db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    finally:
        store.close()


@pytest.mark.postgres
def test_a_version_8_postgres_store_gives_its_jobs_to_the_stores_own_user(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        _drop_v13(conn)
        _drop_v12(conn)
        _pg_back_to_v8(conn)
        conn.execute("UPDATE meta SET value = '8' WHERE key = 'schema_version'")
        conn.execute(f"INSERT INTO jobs VALUES ({', '.join(['%s'] * len(JOB_V6))})", JOB_V6)
    store = open_store(pg_url)
    try:
        _owners_v9(store)
    finally:
        store.close()


JOB_V9 = (JOB_V6[0], "", *JOB_V6[1:])  # owner '' after the id
#: runs as hermes-cron of version 9 left them: (id, status, started_at, finished_at,
#: exit_code, output_bytes)
RUNS_V9 = [("r_ok", "succeeded", 1.7e9, 1.7e9 + 2.5, 0, 100),
           ("r_failed", "failed", 1.7e9 + 60, 1.7e9 + 64, 3, 0),
           ("r_lost", "lost", None, 1.7e9 + 120, None, 0),
           ("r_skipped", "skipped", None, 1.7e9 + 180, None, 0),
           ("r_queued", "queued", None, None, None, 0)]
RUN_INSERT = ("INSERT INTO runs (id, job_id, status, trigger, attempt, queued_at, fire_at, "
              "started_at, finished_at, exit_code, output_bytes, spec) "
              "VALUES ({0}, {0}, {0}, 'manual', 1, {0}, {0}, {0}, {0}, {0}, {0}, '{{}}')")


def _run_rows() -> list[tuple]:
    return [(run_id, JOB_V9[0], status, 1.7e9, 1.7e9, started, finished, code, size)
            for run_id, status, started, finished, code, size in RUNS_V9]


def _metrics_v10(store) -> None:
    """Version 10: run metrics; the runs that had ended get their built-ins, so alert
    rules over past runs work at once; a skipped slot or a waiting run has none."""
    from hermes_cron_ext.domain.metrics import Metric

    job = JOB_V9[0]
    assert store.schema_version() == SCHEMA_VERSION >= 10
    assert store.metric_series(job, "duration") == [
        ("r_failed", 1.7e9 + 64, 4.0, "s"), ("r_ok", 1.7e9 + 2.5, 2.5, "s")]
    assert store.metric_history(job, "exit_code", 10) == [3, 0]
    assert store.metric_names(job) == [("duration", "s", 2), ("exit_code", "", 2),
                                       ("output_bytes", "B", 3)]
    assert store.record_metrics("r_queued", [Metric("rows", 5)]) == 1


def test_a_version_9_sqlite_store_gets_run_metrics(tmp_path):
    path = tmp_path / "store" / "cron.db"
    db = _old_sqlite_store(path, 9, [JOB_V9])
    for row in _run_rows():
        db.execute(RUN_INSERT.format("?"), row)
    db.commit()
    db.close()
    store = open_store(str(path))
    try:
        _metrics_v10(store)
        assert store.db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    finally:
        store.close()


@pytest.mark.postgres
def test_a_version_9_postgres_store_gets_run_metrics(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        _drop_v13(conn)
        _drop_v12(conn)
        conn.execute("ALTER TABLE runs DROP COLUMN alerts")
        conn.execute("DROP TABLE run_metrics")
        conn.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")
        row = (*JOB_V6, "")  # PostgreSQL added the owner last
        conn.execute(f"INSERT INTO jobs VALUES ({', '.join(['%s'] * len(row))})", row)
        for row in _run_rows():
            conn.execute(RUN_INSERT.format("%s"), row)
    store = open_store(pg_url)
    try:
        _metrics_v10(store)
    finally:
        store.close()


def _alerts_v11(store) -> None:
    """Version 11: a run keeps the alert rules that fired when it ended; the runs of
    before have none, and are kept as they were."""
    from hermes_cron_ext.domain.jobspec import validate_changes

    assert store.schema_version() == SCHEMA_VERSION >= 11
    runs = {r.id: r for r in store.list_runs(JOB_V9[0]).items}
    assert {r: (runs[r].status, runs[r].alerts) for r in runs} == {
        run_id: (status, None) for run_id, status, *_ in RUNS_V9}
    assert store.get_run("r_ok").to_json()["alerts"] is None
    old = store.get_job(JOB_V9[0])
    assert old.policy.alerts == []  # a policy stored before: none
    store.update_job(old.id, validate_changes(old, {"alerts": ["rows < 10"]}))
    done = store.finish_run("r_queued", "failed", 1, None, None, [["rows", 3, ""]])
    assert done.alerts == [{"rule": "rows < 10", "message": "rows = 3 < 10"}]
    assert store.get_run("r_queued").alerts == done.alerts


def test_a_version_10_sqlite_store_gets_run_alerts(tmp_path):
    path = tmp_path / "store" / "cron.db"
    db = _old_sqlite_store(path, 10, [JOB_V9])
    for row in _run_rows():
        db.execute(RUN_INSERT.format("?"), row)
    db.commit()
    db.close()
    store = open_store(str(path))
    try:
        _alerts_v11(store)
        assert store.db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    finally:
        store.close()


@pytest.mark.postgres
def _drop_v13(conn) -> None:
    """Back to before schema 13 (revisions, the audit log, the file a run ran)."""
    conn.execute("DROP TABLE job_revisions")
    conn.execute("DROP TABLE audit")
    conn.execute("ALTER TABLE runs DROP COLUMN file_sha256")


def _drop_v12(conn) -> None:
    """Back to before schema 12 (the outbox and the late watch)."""
    conn.execute("DROP TABLE deliveries")
    conn.execute("DROP TABLE late_watch")


def test_a_version_10_postgres_store_gets_run_alerts(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        _drop_v13(conn)
        _drop_v12(conn)
        conn.execute("ALTER TABLE runs DROP COLUMN alerts")
        conn.execute("UPDATE meta SET value = '10' WHERE key = 'schema_version'")
        row = (*JOB_V6, "")  # PostgreSQL added the owner last
        conn.execute(f"INSERT INTO jobs VALUES ({', '.join(['%s'] * len(row))})", row)
        for row in _run_rows():
            conn.execute(RUN_INSERT.format("%s"), row)
    store = open_store(pg_url)
    try:
        _alerts_v11(store)
    finally:
        store.close()
