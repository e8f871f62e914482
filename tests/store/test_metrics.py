"""The ``RunMetrics`` contract: the built-ins the store records when a run ends, what a
run reports (upserted, capped, checked), a job's series of one metric newest first and
paged, the history alert rules read, retention with the runs, and ``migrate`` copying
them.

Every test runs against every store (SQLite and PostgreSQL), on a fake clock.
"""

from __future__ import annotations

import math
import time

import pytest

from hermes_cron_ext.domain.alerts import parse_rule
from hermes_cron_ext.domain.jobspec import validate_new
from hermes_cron_ext.domain.metrics import MAX_PER_RUN, Metric
from hermes_cron_ext.errors import NotFound
from hermes_cron_ext.store import SQLiteStore
from hermes_cron_ext.store.migrate import copy_store, merge_store
from tests.conftest import make_job
from tests.store.contract import EVERY_BACKEND, run_to_end

pytestmark = EVERY_BACKEND

NO_RUN = "r_0000000000000000"


def values(store, run_id: str) -> dict[str, tuple[float, str, float]]:
    """A run's metrics as stored: ``{name: (value, unit, at)}``."""
    return {r["name"]: (r["value"], r["unit"], r["at"]) for r in store.db.execute(
        "SELECT name, value, unit, at FROM run_metrics WHERE run_id = ?", (run_id,)).fetchall()}


def started(store, clock, job: str, output_bytes: int = 0):
    run = store.request_run(job)
    store.attach_run(run.id, 1, None, "h")
    store.mark_running(run.id, clock(), 2)
    if output_bytes:
        store.heartbeat_run(run.id, clock(), None, None, output_bytes)
    return run


def test_built_ins_of_a_run_that_succeeded_or_failed(store, clock):
    make_job(store, "b", "* * * * *", overlap="allow")
    ok = started(store, clock, "b", output_bytes=1234)
    clock.advance(2.5)
    store.finish_run(ok.id, "succeeded", 0)
    end = clock()
    assert values(store, ok.id) == {"duration": (2.5, "s", end), "exit_code": (0, "", end),
                                    "output_bytes": (1234, "B", end)}
    bad = started(store, clock, "b")
    clock.advance(4)
    store.finish_run(bad.id, "failed", 3, "exit code 3: boom")
    assert values(store, bad.id) == {"duration": (4, "s", clock()),
                                     "exit_code": (3, "", clock()),
                                     "output_bytes": (0, "B", clock())}
    # a second finish changes nothing, its metrics neither
    clock.advance(10)
    store.finish_run(bad.id, "succeeded", 0)
    assert values(store, bad.id)["exit_code"] == (3, "", clock() - 10)


def test_built_ins_of_a_lost_run_a_cancelled_one_and_skipped_slots(store, clock):
    make_job(store, "l", "* * * * *", overlap="allow")
    lost = started(store, clock, "l", output_bytes=10)
    clock.advance(7)
    assert store.mark_lost(lost.id, "supervisor gone", 1)
    assert values(store, lost.id) == {"duration": (7, "s", clock()),
                                      "output_bytes": (10, "B", clock())}  # no exit code
    never = store.request_run("l")  # lost before it was attached: it never started
    assert store.mark_lost(never.id, "never attached", None)
    assert values(store, never.id) == {"output_bytes": (0, "B", clock())}
    cancelled = store.request_run("l")
    store.request_cancel(cancelled.id)
    assert set(values(store, cancelled.id)) == {"output_bytes"}
    # slots missed and skipped by the misfire policy, and a run ended skipped: nothing
    make_job(store, "m", "*/5 * * * *", misfire="skip")
    clock.advance(1000)
    store.claim_due(clock() + 2, clock(), "t")
    skipped = [r for r in store.list_runs("m").items if r.status == "skipped"]
    assert len(skipped) == 3 and all(values(store, r.id) == {} for r in skipped)
    run = store.request_run("m")
    store.finish_run(run.id, "skipped", reason="overlap")
    assert values(store, run.id) == {}
    assert [n for n, _, _ in store.metric_names(store.get_job("m").id)] == []


def test_reported_metrics_are_recorded_and_the_last_value_wins(store, clock):
    job = make_job(store, "r", "* * * * *")
    run = started(store, clock, "r")
    assert store.record_metrics(run.id, [Metric("rows", 10), Metric("lag", 1.5, "s")]) == 2
    recorded = clock()
    assert values(store, run.id) == {"rows": (10, "", recorded), "lag": (1.5, "s", recorded)}
    clock.advance(1)
    # again (the same name twice in one call: the last one), and a new name
    assert store.record_metrics(run.id, [Metric("rows", 11), Metric("rows", 12, "rows"),
                                         Metric("errors", 0)]) == 2
    assert values(store, run.id)["rows"] == (12, "rows", clock())
    assert store.record_metrics(run.id, []) == 0
    clock.advance(5)
    store.finish_run(run.id, "succeeded", 0)
    end = clock()
    got = values(store, run.id)
    # at the run's end every value takes its instant: a series is ordered by runs' ends
    assert {name: v[2] for name, v in got.items()} == dict.fromkeys(got, end)
    assert {name: v[0] for name, v in got.items()} == {
        "rows": 12, "lag": 1.5, "errors": 0, "duration": 6, "exit_code": 0, "output_bytes": 0}
    # a run that ended may still be told (an agent's last word arrives after the end)
    clock.advance(3)
    assert store.record_metrics(run.id, [Metric("late", 1)]) == 1
    assert values(store, run.id)["late"] == (1, "", end)
    assert store.metric_names(job.id) == [
        ("duration", "s", 1), ("errors", "", 1), ("exit_code", "", 1), ("lag", "s", 1),
        ("late", "", 1), ("output_bytes", "B", 1), ("rows", "rows", 1)]


def test_what_a_run_may_report_is_capped_and_checked(store, clock):
    make_job(store, "c", "* * * * *")
    run = started(store, clock, "c")
    many = [Metric(f"m{i}", i) for i in range(MAX_PER_RUN + 10)]
    assert store.record_metrics(run.id, many) == MAX_PER_RUN
    assert store.record_metrics(run.id, [Metric("extra", 1)]) == 0  # no room left
    assert store.record_metrics(run.id, [Metric("m0", 42)]) == 1  # known names still move
    assert values(store, run.id)["m0"][0] == 42
    for bad in (Metric("duration", 1), Metric("exit_code", 0), Metric("rows", math.nan),
                Metric("rows", math.inf), Metric("9lives", 1), Metric("rows", 1, "a unit")):
        with pytest.raises(ValueError):
            store.record_metrics(run.id, [Metric("fine", 1), bad])
    assert "fine" not in values(store, run.id)  # a refused call writes nothing
    with pytest.raises(NotFound):
        store.record_metrics(NO_RUN, [Metric("rows", 1)])
    # the built-ins do not count against the cap
    store.finish_run(run.id, "succeeded", 0)
    assert len(values(store, run.id)) == MAX_PER_RUN + 3


def _runs_with(store, clock, job: str, rows: list[float]) -> list[str]:
    ids = []
    for n in rows:
        run = started(store, clock, job)
        store.record_metrics(run.id, [Metric("rows", n)])
        clock.advance(1)
        store.finish_run(run.id, "succeeded", 0)
        ids.append(run.id)
    return ids


def test_a_series_is_newest_first_and_pages_without_a_loss(store, clock):
    job = make_job(store, "s", "* * * * *", overlap="allow")
    ids = _runs_with(store, clock, "s", [float(n) for n in range(12)])
    series = store.metric_series(job.id, "rows")
    assert [r[0] for r in series] == list(reversed(ids))
    assert [r[2] for r in series] == [float(n) for n in reversed(range(12))]
    assert all(r[3] == "" and r[1] > s[1] for r, s in zip(series, series[1:], strict=False))
    seen, before, before_run = [], None, None
    while True:
        page = store.metric_series(job.id, "rows", limit=5, before=before,
                                   before_run=before_run)
        seen += page
        if len(page) < 5:
            break
        before, before_run = page[-1][1], page[-1][0]
    assert seen == series
    # before alone: strictly earlier
    assert store.metric_series(job.id, "rows", before=series[3][1]) == series[4:]
    assert store.metric_series(job.id, "rows", limit=0) == []
    assert store.metric_series(job.id, "nothing") == []
    assert store.metric_series("j_0000000000000000", "rows") == []
    # the built-ins are a series too
    assert [r[2] for r in store.metric_series(job.id, "duration", limit=3)] == [1, 1, 1]
    assert ("rows", "", 12) in store.metric_names(job.id)


def test_runs_ending_at_one_instant_page_without_a_loss_or_a_repeat(store, clock):
    job = make_job(store, "tie", "* * * * *", overlap="allow")
    runs = [started(store, clock, "tie") for _ in range(7)]
    for i, run in enumerate(runs):  # the fake clock stands still: one instant
        store.record_metrics(run.id, [Metric("rows", i)])
        store.finish_run(run.id, "succeeded", 0)
    seen, before, before_run = [], None, None
    while True:
        page = store.metric_series(job.id, "rows", limit=3, before=before,
                                   before_run=before_run)
        seen += page
        if len(page) < 3:
            break
        before, before_run = page[-1][1], page[-1][0]
    assert sorted(r[0] for r in seen) == sorted(r.id for r in runs)
    assert len(seen) == 7


def test_history_is_what_an_alert_rule_reads(store, clock):
    job = make_job(store, "h", "* * * * *", overlap="allow")
    ids = _runs_with(store, clock, "h", [100, 110, 90, 105, 20])
    assert store.metric_history(job.id, "rows", 3) == [20, 105, 90]
    # before the last run: the runs before it, newest first, the run itself left out
    history = store.metric_history(job.id, "rows", 20, before_run=ids[-1])
    assert history == [105, 90, 110, 100]
    assert store.metric_history(job.id, "rows", 2, before_run=ids[2]) == [110, 100]
    assert store.metric_history(job.id, "rows", 5, before_run=ids[0]) == []
    assert store.metric_history(job.id, "rows", 5, before_run=NO_RUN) == []
    assert store.metric_history(job.id, "rows", 0) == []
    rule = parse_rule("rows < 0.5 * median(10)")
    assert rule.check(20, history).outcome == "fired"
    assert rule.check(100, store.metric_history(job.id, "rows", 10, ids[-2])).outcome == \
        "passed"
    # a run still running: every earlier value is before it, its own are not
    running = started(store, clock, "h")
    store.record_metrics(running.id, [Metric("rows", 1)])
    assert store.metric_history(job.id, "rows", 2, before_run=running.id) == [20, 105]
    # built-ins have a history as well (duration > 2 * median(20))
    assert store.metric_history(job.id, "duration", 10, before_run=ids[-1]) == [1, 1, 1, 1]


def test_metrics_go_with_their_runs(store, clock):
    gone = make_job(store, "gone", "* * * * *", overlap="allow")
    kept = make_job(store, "kept", "* * * * *", overlap="allow")
    for _ in range(6):
        for name in ("gone", "kept"):
            run_to_end(store, store.request_run(name))
            clock.advance(1)
    active = started(store, clock, "gone")
    store.record_metrics(active.id, [Metric("rows", 5)])
    # gc: the runs it deletes take their metrics
    assert store.gc(clock(), keep_runs=2, keep_failures=0)["runs_deleted"] == 8
    for job in (gone, kept):
        assert len(store.metric_series(job.id, "duration")) == 2
    # deleting a job takes its ended runs' metrics; an active run keeps its own
    store.delete_job("gone")
    assert store.metric_series(gone.id, "duration") == []
    assert store.metric_series(gone.id, "rows") == [(active.id, clock(), 5, "")]
    assert len(store.metric_series(kept.id, "exit_code")) == 2
    # and gc takes that run's once it has ended (a run of a deleted job)
    store.finish_run(active.id, "succeeded", 0)
    store.gc(clock())
    assert store.db.execute("SELECT COUNT(*) FROM run_metrics WHERE job_id = ?",
                            (gone.id,)).fetchone()[0] == 0
    assert store.metric_names(kept.id) == [
        ("duration", "s", 2), ("exit_code", "", 2), ("output_bytes", "B", 2)]


def _source(tmp_path, clock) -> tuple[SQLiteStore, str, list[str]]:
    src = SQLiteStore(str(tmp_path / "src" / "hermes-cron.db"), clock=clock)
    job = make_job(src, "etl", "* * * * *", overlap="allow")
    ids = _runs_with(src, clock, "etl", [1, 2, 3])
    return src, job.id, ids


def test_migrate_copies_a_stores_metrics(store, clock, tmp_path):
    src, job_id, ids = _source(tmp_path, clock)
    try:
        counts = copy_store(src, store)
        assert counts["source"]["metrics"] == counts["copied"]["metrics"] == 3 * 4
        assert store.metric_series(job_id, "rows") == src.metric_series(job_id, "rows")
        assert store.metric_names(job_id) == src.metric_names(job_id)
    finally:
        src.close()


def test_migrate_owner_moves_the_metrics_of_the_runs_it_moves(store, clock, tmp_path):
    fields = validate_new({"name": "etl", "schedule": "@daily", "command": "true"}, "UTC",
                          now=clock())
    store.create_job({**fields, "owner": "bob"})  # bob's "etl", in the shared store
    src, job_id, ids = _source(tmp_path, clock)
    clock.advance(1)
    waiting = started(src, clock, "etl")  # a run still active stays behind, its metrics too
    src.record_metrics(waiting.id, [Metric("rows", 9)])
    try:
        counts = merge_store(src, store, "alice", force=True)
        assert counts["source"]["metrics"] == counts["copied"]["metrics"] == 3 * 4
        assert store.metric_series(job_id, "rows") == src.metric_series(job_id, "rows")[1:]
        assert store.metric_history(job_id, "rows", 5, ids[-1]) == [2, 1]
    finally:
        src.close()


def test_a_series_of_ten_thousand_runs(store, store_backend, clock):
    """Where the query stands against the issue's goal (p50 <= 10 ms for a job of 10,000
    runs): printed, not asserted (the rows are written straight, as 10,000 runs would
    leave them)."""
    if store_backend != "sqlite":
        pytest.skip("timed on SQLite")
    job = make_job(store, "big", "* * * * *")
    others = make_job(store, "other", "* * * * *")
    with store._write() as db:
        for jid in (job.id, others.id):
            rows = [(f"r_{jid}_{i:05d}", jid, name, float(i), unit, 1.7e9 + 60 * i)
                    for i in range(10_000) for name, unit in (
                        ("duration", "s"), ("exit_code", ""), ("output_bytes", "B"),
                        ("rows", ""))]
            db.executemany("INSERT INTO run_metrics (run_id, job_id, name, value, unit, at) "
                           "VALUES (?, ?, ?, ?, ?, ?)", rows)
    store.db.execute("ANALYZE")

    def p50(call, n=31) -> float:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            call()
            times.append(time.perf_counter() - t)
        return sorted(times)[n // 2] * 1000

    assert len(store.metric_series(job.id, "rows", limit=10_000)) == 10_000
    print(f"\nmetric query, job of 10,000 runs (SQLite, p50): "
          f"series newest 100 {p50(lambda: store.metric_series(job.id, 'rows')):.2f} ms, "
          f"all 10,000 {p50(lambda: store.metric_series(job.id, 'rows', 10_000)):.2f} ms, "
          f"history 20 {p50(lambda: store.metric_history(job.id, 'rows', 20)):.2f} ms, "
          f"names {p50(lambda: store.metric_names(job.id)):.2f} ms")


def test_a_final_status_carries_the_runs_metrics(store, clock):
    """``finish_run(metrics=...)``: what the run reported and the runtime's built-ins
    (cpu_seconds, peak_memory: this path only), in the status's transaction; bad rows are
    dropped and the status is recorded all the same; a second call changes nothing."""
    make_job(store, "f", "* * * * *")
    run = started(store, clock, "f")
    store.record_metrics(run.id, [Metric("early", 1)])
    clock.advance(1.0)
    rows = [["rows", 1234, ""], ["ratio", 0.5, "%"], ["cpu_seconds", 0.75, "ignored"],
            ["peak_memory", 104857600, "B"],
            # dropped, each alone: a store built-in, bad names, values and units, bad shapes
            ["duration", 99, "s"], ["9lives", 1, ""], ["nan", math.nan, ""],
            ["str", "12", ""], ["unit", 1, "a unit"], ["cpu_seconds", -1, "s"],
            ["peak_memory", math.inf, "B"], ["short", 1], "rows=1", None]
    done = store.finish_run(run.id, "succeeded", 0, None, None, rows)
    assert (done.status, done.exit_code) == ("succeeded", 0)
    got = values(store, run.id)
    end = clock()
    assert {n: (v, u) for n, (v, u, _) in got.items()} == {
        "early": (1.0, ""), "rows": (1234.0, ""), "ratio": (0.5, "%"),
        "cpu_seconds": (0.75, "s"), "peak_memory": (104857600.0, "B"),
        "duration": (1.0, "s"), "exit_code": (0.0, ""), "output_bytes": (0.0, "B")}
    assert {at for _, _, at in got.values()} == {end}
    # the status is final: a repeat (the relay's, an owed retry) changes nothing
    store.finish_run(run.id, "failed", 1, None, None, [["rows", 1, ""]])
    assert values(store, run.id)["rows"][0] == 1234
    # record_metrics keeps refusing the runtime's built-ins
    with pytest.raises(ValueError):
        store.record_metrics(run.id, [Metric("cpu_seconds", 1)])


def test_a_final_status_with_metrics_past_the_cap(store, clock):
    make_job(store, "g", "* * * * *")
    run = started(store, clock, "g")
    store.record_metrics(run.id, [Metric(f"m{i}", i) for i in range(MAX_PER_RUN - 1)])
    rows = [["m0", 42, ""], ["new1", 1, ""], ["new2", 2, ""], ["cpu_seconds", 0.1, "s"]]
    assert store.finish_run(run.id, "failed", 3, "boom", None, rows).status == "failed"
    got = values(store, run.id)
    assert got["m0"][0] == 42 and "new1" in got and "new2" not in got  # one name of room
    assert got["cpu_seconds"][0] == 0.1  # built-ins do not count against the cap
    # a skipped slot gets none
    skipped = store.request_run("g")
    store.finish_run(skipped.id, "skipped", None, "no", None, [["rows", 1, ""]])
    assert values(store, skipped.id) == {}
