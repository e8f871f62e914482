"""The ``RunViews`` contract: runs' output indexed as it is written and searched (the
results are what the line rule finds in the raw logs), the runs of a time range, run
counts per bucket; index rows go with their runs; schema 13 stores move on to 14.

Every test runs against every store (SQLite and PostgreSQL), on a fake clock.
"""

from __future__ import annotations

import sqlite3

import pytest

from hermes_cron_ext.domain.search import parse_query
from hermes_cron_ext.errors import InvalidInput
from hermes_cron_ext.store import open_store
from hermes_cron_ext.store.output import PIECE
from hermes_cron_ext.store.sql import MIGRATIONS, SCHEMA_VERSION
from tests.conftest import make_job
from tests.store.contract import EVERY_BACKEND

pytestmark = EVERY_BACKEND

LOGS = [
    b"starting job\nloading /srv/app/foo.py\nTraceback (most recent call last):\n"
    b"KeyError: 'user_id'\n",
    b"all good\nconnection refused by peer\nretrying connection\n",
    b"KeyErrors are fine here\nfoo bar py\nConnecting to db\n",
    b"naive stra\xc3\x9fe line\nx" + b"y" * (PIECE + 100) + b" tail KeyError:\nend",
    b"Traceback in the middle\nno key error here\n",
]
QUERIES = ["KeyError:", "traceback", '"connection refused"', "conn*", "foo.py",
           "connection retrying", "stra\u00dfe", "tail keyerror", "key error"]


def _ran(store, clock, job: str, data: bytes, status: str = "succeeded", chunk: int = 7):
    """A run of *job* that wrote *data* (in small writes, indexed as it went)."""
    run = store.request_run(job)
    store.attach_run(run.id, 1, None, "h")
    store.mark_running(run.id, clock(), 2)
    writer = store.output_writer(run.id)
    for i in range(0, len(data), chunk):
        writer.write("stdout", data[i:i + chunk])
        if i % 21 == 0:  # a heartbeat
            store.index_output(run.id, writer.index_pending(False))
    writer.close()
    store.index_output(run.id, writer.index_pending(True))
    clock.advance(5)
    store.finish_run(run.id, status, 0 if status == "succeeded" else 1)
    clock.advance(60)
    return run


def _grep(store, run_ids, q) -> dict[str, list[tuple[int, str]]]:
    """The line rule applied to the raw logs: run -> [(offset, line)]."""
    out = {}
    for run_id in run_ids:
        lines, pos = [], 0
        for raw in store.read_output(run_id).split(b"\n"):
            line = raw.decode("utf-8", "replace")
            if q.matches(line):
                lines.append((pos, line))
            pos += len(raw) + 1
        if lines:
            out[run_id] = lines
    return out


def _found(store, hits, q) -> dict[str, list[tuple[int, str]]]:
    """The matching lines the returned chunks point at, read back whole from the log (as
    the ops layer does: a line over 8 KiB is split across chunks)."""
    out = {}
    for hit in hits:
        raw = store.read_output(hit["run_id"])
        starts = set()
        for offset, text in hit["chunks"]:
            pos = offset
            for part in text.split("\n"):
                starts.add(raw.rfind(b"\n", 0, pos) + 1 if pos > 0 else 0)
                pos += len(part.encode()) + 1
        lines = []
        for start in sorted(starts):
            end = raw.find(b"\n", start)
            line = raw[start:end if end >= 0 else len(raw)].decode("utf-8", "replace")
            if q.matches(line):
                lines.append((start, line))
        out[hit["run_id"]] = lines
    return out


def _search_all(store, q, **kw):
    hits, cursor = [], None
    while True:
        page = store.search_output(q, limit=2, cursor=cursor, **kw)
        hits += page.items
        cursor = page.cursor
        if cursor is None:
            return hits


def test_search_finds_what_the_line_rule_finds_in_the_raw_logs(store, clock):
    make_job(store, "a", "@yearly")
    make_job(store, "b", "@yearly")
    runs = [_ran(store, clock, "ab"[i % 2], data, "failed" if i == 0 else "succeeded")
            for i, data in enumerate(LOGS)]
    ids = [r.id for r in runs]
    for text in QUERIES:
        q = parse_query(text)
        want = _grep(store, ids, q)
        hits = _search_all(store, q)
        # newest first, each run once
        assert [h["run_id"] for h in hits] == [i for i in reversed(ids) if i in want], text
        assert _found(store, hits, q) == want, text
    hit = store.search_output(parse_query("KeyError:")).items[-1]
    assert hit["run_id"] == runs[0].id and hit["job_name"] == "a"
    assert (hit["status"], hit["trigger"]) == ("failed", "manual")
    assert hit["fire_at"] == runs[0].fire_at and hit["finished_at"] > hit["started_at"]
    # filters: job, status, since
    q = parse_query("KeyError:")
    job_a = store.get_job("a").id
    assert {h["job_id"] for h in _search_all(store, q, job_ids=[job_a])} == {job_a}
    assert [h["run_id"] for h in _search_all(store, q, status="failed")] == [runs[0].id]
    assert [h["run_id"] for h in _search_all(store, q, since=runs[3].fire_at)] == [
        runs[3].id]
    assert _search_all(store, q, job_ids=[]) == []
    assert store.search_output(parse_query("nowhere")).items == []
    with pytest.raises(InvalidInput):
        store.search_output(q, cursor="not-a-cursor")
    with pytest.raises(InvalidInput):
        store.search_output(q, status="bogus")


def test_a_common_word_is_answered_from_the_newest_runs(store, clock, monkeypatch):
    """More matching chunks than the index hands over at once: the runs are walked newest
    first, and the page is the same as the whole list's start."""
    from hermes_cron_ext.store import views

    make_job(store, "many", "@yearly")
    runs = [_ran(store, clock, "many", b"common line %d\nother\n" % i, chunk=100)
            for i in range(8)]
    q = parse_query("common")
    rare = store.search_output(q, limit=3)
    monkeypatch.setattr(views, "FEW", 2)
    common = store.search_output(q, limit=3)
    assert [h["run_id"] for h in common.items] == [r.id for r in runs[::-1][:3]]
    assert common.items == rare.items
    rest = store.search_output(q, limit=10, cursor=common.cursor)
    assert [h["run_id"] for h in rest.items] == [r.id for r in runs[::-1][3:]]
    assert rest.cursor is None
    prefix = parse_query("comm*")  # matched once, not run by run (FTS5 merges prefixes)
    monkeypatch.setattr(views, "FEW", 2000)
    rare = store.search_output(prefix, limit=3)
    monkeypatch.setattr(views, "FEW", 2)
    assert store.search_output(prefix, limit=3).items == rare.items == common.items
    # SQLite asks FTS5 for a range of chunk ids; with too many matches in it, each
    # chunk by rowid (a prefix: the whole list once): the same pages
    monkeypatch.setattr(views, "SPAN", 0)
    for query in (q, prefix):
        assert store.search_output(query, limit=3).items == common.items
        again = store.search_output(query, limit=10, cursor=common.cursor)
        assert again.items == rest.items and again.cursor is None


def test_index_rows_go_with_their_runs(store, clock):
    make_job(store, "keep", "@yearly", keep_runs=1)
    make_job(store, "gone", "@yearly")
    old = _ran(store, clock, "keep", b"needle one\n")
    new = _ran(store, clock, "keep", b"needle two\n")
    _ran(store, clock, "gone", b"needle three\n")
    q = parse_query("needle")
    assert len(_search_all(store, q)) == 3
    store.index_output(new.id, [(0, "needle two\n")])  # again: harmless
    assert len(store.search_output(q).items[1]["chunks"]) == 1
    store.gc(clock(), keep_runs=1, keep_failures=0)
    assert [h["run_id"] for h in _search_all(store, q) if h["job_name"] == "keep"] == [new.id]
    store.delete_job("gone")
    assert [h["run_id"] for h in _search_all(store, q)] == [new.id]
    count = store.db.execute("SELECT COUNT(*) FROM output_chunks").fetchone()[0]
    assert count == 1 and old.id
    if store.path:
        assert store.db.execute("SELECT COUNT(*) FROM output_fts").fetchone()[0] == 1


def test_timeline_runs_overlapping_a_range_oldest_first(store, clock):
    make_job(store, "t1", "@yearly")
    make_job(store, "t2", "@yearly")
    t0 = clock()
    long = store.request_run("t1")  # fired long before the range, ends inside it
    store.attach_run(long.id, 1, None, "h")
    store.mark_running(long.id, clock(), 2)
    clock.advance(7200)
    early = _ran(store, clock, "t2", b"x\n")  # fired and ended before the range
    clock.advance(1000)
    start = clock()
    inside = [_ran(store, clock, "t2", b"y\n", "failed" if i == 1 else "succeeded")
              for i in range(3)]
    store.finish_run(long.id, "succeeded", 0)
    running = store.request_run("t2")  # not finished
    clock.advance(10)
    end = clock()
    clock.advance(10)
    store.request_run("t1")  # after the range
    page = store.timeline_runs(start, end)
    assert [r["id"] for r in page.items] == [long.id] + [r.id for r in inside] + [running.id]
    assert page.cursor is None and early.id not in {r["id"] for r in page.items}
    first = page.items[0]
    assert set(first) == {"id", "job_id", "job_name", "status", "trigger", "fire_at",
                          "scheduled_for", "started_at", "finished_at", "reason"}
    assert (first["job_name"], first["fire_at"], first["status"]) == ("t1", t0, "succeeded")
    got, cursor = [], None
    while True:
        part = store.timeline_runs(start, end, limit=2, cursor=cursor)
        got += [r["id"] for r in part.items]
        if part.cursor is None:
            break
        cursor = part.cursor
    assert got == [r["id"] for r in page.items]
    t2 = store.get_job("t2").id
    assert [r["id"] for r in store.timeline_runs(start, end, job_ids=[t2]).items] == [
        r.id for r in inside] + [running.id]
    assert [r["id"] for r in store.timeline_runs(start, end, status="failed").items] == [
        inside[1].id]
    with pytest.raises(InvalidInput):
        store.timeline_runs(start, end, cursor="zzz")


def test_due_jobs_soonest_first_from_the_due_index(store, clock):
    hourly = make_job(store, "hourly", "0 * * * *")  # due within the hour
    fives = make_job(store, "fives", "*/5 * * * *")  # due within 5 minutes
    daily = make_job(store, "daily", "0 0 * * *")
    make_job(store, "yearly", "@yearly")
    paused = make_job(store, "paused", "*/5 * * * *")
    store.set_paused("paused", True)
    make_job(store, "off", "*/5 * * * *", enabled=False)
    horizon = clock() + 86400 + 1
    got = store.due_jobs(horizon, 10)
    assert [j.name for j in got] == ["fives", "hourly", "daily"]
    assert [j.next_run_at for j in got] == sorted(j.next_run_at for j in got)
    assert [j.name for j in store.due_jobs(horizon, 2)] == ["fives", "hourly"]
    assert store.due_jobs(horizon, 0) == []
    assert [j.name for j in store.due_jobs(horizon, 10, [daily.id, hourly.id, paused.id])
            ] == ["hourly", "daily"]
    many = [daily.id, hourly.id, paused.id] + [f"j-gone-{i}" for i in range(70)]
    assert [j.name for j in store.due_jobs(horizon, 10, many)] == ["hourly", "daily"]
    assert store.due_jobs(horizon, 10, []) == []
    assert [j.id for j in store.due_jobs(fives.next_run_at + 1, 10)] == [fives.id]
    assert store.due_jobs(fives.next_run_at, 10) == []  # before: strictly
    if store_kind(store) == "sqlite":  # the partial index, in its order: no sort
        plan = " ".join(str(tuple(r)) for r in store.db.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM jobs WHERE enabled = 1 AND state = "
            "'scheduled' AND next_run_at < ? ORDER BY next_run_at, id LIMIT ?",
            (horizon, 10)).fetchall())
        assert "jobs_due" in plan, plan


def store_kind(store) -> str:
    return "postgres" if "Postgres" in type(store).__name__ else "sqlite"


def test_run_counts_per_bucket(store, clock):
    clock.now = 1_800_000_000.0  # a multiple of 900
    make_job(store, "c", "@yearly")
    job = store.get_job("c").id
    _ran(store, clock, "c", b"a\n")  # 0 .. +65
    _ran(store, clock, "c", b"a\n", "failed")  # +65
    clock.advance(900)
    _ran(store, clock, "c", b"a\n")
    counts = store.run_counts([job], 1_800_000_000.0, clock())
    assert counts == [(job, 1_800_000_000.0, "failed", 1),
                      (job, 1_800_000_000.0, "succeeded", 1),
                      (job, 1_800_000_900.0, "succeeded", 1)]
    assert store.run_counts([job], 1_800_000_000.0, clock(), bucket=3600) == [
        (job, 1_800_000_000.0 - 1_800_000_000.0 % 3600, "failed", 1),
        (job, 1_800_000_000.0 - 1_800_000_000.0 % 3600, "succeeded", 2)]
    assert store.run_counts([], 0, clock()) == []


def test_a_schema_13_store_moves_on_to_14(store_backend, tmp_path, pg_url_or_none):
    """Made by schema 13: it opens, gets the index tables, and runs' output indexed from
    now on is searchable."""
    if store_backend == "sqlite":
        path = tmp_path / "old" / "cron.db"
        path.parent.mkdir(mode=0o700)
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        for v in range(1, 14):
            for stmt in MIGRATIONS[v]:
                db.execute(stmt)
        db.execute("INSERT INTO meta VALUES ('schema_version', '13')")
        db.commit()
        db.close()
        url = str(path)
    else:
        import psycopg

        url = pg_url_or_none
        open_store(url).close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE output_chunks")
            conn.execute("DROP INDEX runs_open")
            conn.execute("DROP INDEX runs_long")
            conn.execute("UPDATE meta SET value = '13' WHERE key = 'schema_version'")
    store = open_store(url)
    try:
        assert store.schema_version() == SCHEMA_VERSION == 14
        make_job(store, "old", "@yearly")
        run = store.request_run("old")
        store.index_output(run.id, [(0, "found me\n")])
        assert [h["run_id"] for h in store.search_output(parse_query("found")).items] == [
            run.id]
    finally:
        store.close()


@pytest.fixture
def pg_url_or_none(store_backend, request):
    if store_backend == "postgres":
        return request.getfixturevalue("store_url")
    return None


def test_a_copied_store_can_search_the_runs_it_copied(store, clock, tmp_path):
    """``hermes-cron migrate`` copies each log whole: the copy indexes what it imports."""
    from hermes_cron_ext.store.migrate import copy_store

    make_job(store, "moved", "@yearly")
    run = _ran(store, clock, "moved", LOGS[0])
    target = open_store(str(tmp_path / "copy" / "cron.db"))
    try:
        copy_store(store, target)
        q = parse_query("KeyError:")
        hits = target.search_output(q).items
        assert [h["run_id"] for h in hits] == [run.id]
        assert _found(target, hits, q) == _grep(target, [run.id], q) != {}
    finally:
        target.close()


def test_postgres_text_index_has_no_pending_list(store):
    """New entries go into the GIN index at once: a pending list is read by every search
    and makes the planner scan the table instead (0.3 s at 2,000 runs x 100 KB)."""
    if store_kind(store) != "postgres":
        pytest.skip("PostgreSQL's GIN index")
    options = store.db.execute(
        "SELECT reloptions FROM pg_class WHERE relname = 'output_chunks_tsv'").fetchone()[0]
    assert "fastupdate=off" in options
