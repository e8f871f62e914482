"""Backfill: a job's past slots run as a whole, a few at a time, each told its slot,
with a real daemon (its ticker and supervisors) on a real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hermes_cron_ext.errors import InvalidInput
from hermes_cron_ext.ops import Operations
from tests.conftest import wait_for

DAYS = [datetime(2026, 11, d, tzinfo=UTC) for d in range(1, 31)]


def ledger_job(cli, name: str, ledger, sleep: float) -> None:
    """A job whose runs write their logical time, start and end to *ledger*."""
    cli("add", name, "@daily", "--tz", "UTC", "--", "sh", "-c",
        f'echo "$HERMES_CRON_LOGICAL_TIME $(date +%s.%N) start" >> {ledger}; sleep {sleep}; '
        f'echo "$HERMES_CRON_LOGICAL_TIME $(date +%s.%N) end" >> {ledger}')


def most_at_once(lines: list[str]) -> int:
    marks = sorted((float(t), 1 if what == "start" else -1)
                   for _, t, what in (line.split() for line in lines))
    now = peak = 0
    for _, step in marks:
        now += step
        peak = max(peak, now)
    return peak


def test_thirty_daily_slots_four_at_a_time(cli, tmp_path):
    ledger = tmp_path / "ledger"
    ledger_job(cli, "nightly", ledger, 0.3)
    cli.daemon()
    ops = Operations(cli.db)
    try:
        dry = ops.backfill("nightly", "2026-11-01", "2026-11-30", max_parallel=4,
                           dry_run=True)
        assert dry["next"] == [d.isoformat(timespec="milliseconds").replace("+00:00", "Z")
                               for d in DAYS]
        b = ops.backfill("nightly", "2026-11-01", "2026-11-30", max_parallel=4)
        assert (b["slots"], b["state"]) == (30, "running")
        done = wait_for(lambda: (x := ops.get_backfill(b["id"]))["state"] == "done" and x,
                        90, 0.2, "the backfill to end")
        assert done["runs"] == {"succeeded": 30}
        runs = ops.runs("nightly", limit=100)["runs"]
        assert {r["trigger"] for r in runs} == {"backfill"} and len(runs) == 30
        assert sorted(r["logical_time"] for r in runs) == dry["next"]
        assert {r["backfill_id"] for r in runs} == {b["id"]}
        lines = ledger.read_text().splitlines()
        told = sorted({line.split()[0] for line in lines})
        assert told == dry["next"]  # each payload was told its own slot, once
        assert len(lines) == 60
        assert most_at_once(lines) <= 4
        # again: every slot has run, so nothing more is queued (it resumes, never repeats)
        again = ops.backfill("nightly", "2026-11-01", "2026-11-30", max_parallel=4)
        assert (again["slots"], again["state"]) == (0, "done")
    finally:
        ops.close()


def test_a_backfill_runs_to_its_end_with_no_ticker_alive(cli, tmp_path):
    """Nothing ticks: the first slots' supervisors start from the caller, and each goes
    on with the next slot as its run ends, still at most max_parallel at once."""
    ledger = tmp_path / "ledger"
    ledger_job(cli, "lonely", ledger, 0.2)
    ops = Operations(cli.db)
    try:
        b = ops.backfill("lonely", "2026-11-01", "2026-11-08", max_parallel=3)
        assert b["warning"].startswith("no ticker is alive")  # schedules still won't fire
        done = wait_for(lambda: (x := ops.get_backfill(b["id"]))["state"] == "done" and x,
                        60, 0.2, "the backfill to end without a ticker")
        assert done["runs"] == {"succeeded": 8}
        lines = ledger.read_text().splitlines()
        assert sorted({ln.split()[0][:10] for ln in lines}) == [
            f"2026-11-0{d}" for d in range(1, 9)]
        assert most_at_once(lines) <= 3
        assert ops.store.list_tickers() == []
    finally:
        ops.close()


def test_cancel_stops_the_rest(cli, tmp_path):
    ledger = tmp_path / "ledger"
    ledger_job(cli, "slow", ledger, 2)
    cli.daemon()
    ops = Operations(cli.db)
    try:
        b = ops.backfill("slow", "2026-11-01", "2026-11-30", max_parallel=2)
        wait_for(lambda: ops.get_backfill(b["id"])["runs"].get("running", 0) == 2, 30,
                 what="two runs running")
        cancelled = ops.cancel_backfill(b["id"])
        assert cancelled["state"] == "cancelled"
        final = wait_for(lambda: (x := ops.get_backfill(b["id"]))["runs"].get("running", 0)
                         + x["runs"].get("queued", 0) == 0 and x, 30, what="nothing active")
        assert sum(final["runs"].values()) == 2 and final["runs"] == {"cancelled": 2}
        started = [line for line in ledger.read_text().splitlines() if line.endswith("start")]
        assert len(started) == 2  # no slot started after the cancel
    finally:
        ops.close()


@pytest.mark.parametrize(("args", "field"), [
    (("2026-11-30", "2026-11-01"), "to"),
    (("yesterday", "2026-11-01"), "from"),
    (("2026-11-01", "2026-11-02", 0), "max_parallel"),
    (("2026-11-01T00:30", "2026-11-01T00:40"), "from"),  # no daily slot in it
])
def test_bad_ranges_name_the_field(cli, args, field):
    cli("add", "d", "@daily", "--tz", "UTC", "--", "true")
    ops = Operations(cli.db)
    try:
        start, end, *rest = args
        with pytest.raises(InvalidInput) as err:
            ops.backfill("d", start, end, max_parallel=rest[0] if rest else 1)
        assert err.value.field == field
        assert ops.runs("d")["runs"] == []
    finally:
        ops.close()


def test_future_slots_are_left_to_the_schedule(cli):
    cli("add", "h", "@hourly", "--tz", "UTC", "--", "true")
    ops = Operations(cli.db)
    try:
        now = datetime.now(UTC)
        got = ops.backfill("h", (now - timedelta(hours=3)).isoformat(),
                           (now + timedelta(days=2)).isoformat(), dry_run=True)
        assert 2 <= got["slots"] <= 3
        assert all(datetime.fromisoformat(t.replace("Z", "+00:00")) <= now
                   for t in got["next"])
    finally:
        ops.close()


def test_the_cli_shows_progress_and_cancels_by_id(cli, tmp_path):
    ledger = tmp_path / "ledger"
    ledger_job(cli, "c", ledger, 0)
    cli.daemon()
    out = cli("backfill", "c", "--from", "2026-11-01", "--to", "2026-11-03",
              "--max-parallel", "3")
    assert "done; 3/3 slots done (3 succeeded)" in out.stdout
    cli("edit", "c", "--", "sleep", "5")
    queued = cli.json("backfill", "c", "--from", "2026-10-01", "--to", "2026-10-05",
                      "--no-wait")
    assert (queued["slots"], queued["max_parallel"]) == (5, 1)
    # the daemon's ticker starts the first slot (this test once cancelled before it had,
    # on a loaded machine: then no slot is done, not 1 cancelled)
    wait_for(lambda: any(r["status"] == "running" and r["backfill_id"] == queued["id"]
                         for r in cli.json("runs", "c")["runs"]), 30, 0.1,
             "the backfill's first slot to run")
    cancel = cli("cancel", queued["id"])
    assert cancel.stdout.startswith(f"backfill {queued['id']}: cancelled; ")
    # its running slot is stopped (its supervisor TERMs the payload): then it is told
    wait_for(lambda: not any(r["status"] == "running" for r in cli.json("runs", "c")["runs"]),
             30, 0.1, "the cancelled slot to stop")
    listed = cli("backfills", "c").stdout.splitlines()
    assert listed[0].split() == ["ID", "STATE", "SLOTS", "FROM", "..", "TO", "AT", "ONCE",
                                 "PROGRESS"]
    assert listed[1].startswith(f"{queued['id']}  cancelled  2026-10-01T00:00 .. "
                                "2026-10-05T00:00  1")
    assert listed[1].endswith("1/5 slots done (1 cancelled); 4 not run")
    assert listed[2].split()[1] == "done" and listed[2].endswith(
        "3/3 slots done (3 succeeded)")
    assert [b["id"] for b in cli.json("backfills", "c")][0] == queued["id"]
    missing = cli("backfills", "nope", check=False)
    assert missing.returncode != 0 and missing.stderr.strip().count("\n") == 0
    assert "nope" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.parametrize("overlap", ["replace", "queue"])
def test_a_backfill_is_not_overlap_with_itself(cli, tmp_path, overlap):
    """max_parallel is the backfill's own limit: under ``replace`` its runs must not stop
    each other, under ``queue`` not wait for each other (no ticker: fewer moving parts)."""
    ledger = tmp_path / "ledger"
    ledger_job(cli, "wide", ledger, 0.6)
    cli("edit", "wide", "--overlap", overlap)
    ops = Operations(cli.db)
    try:
        b = ops.backfill("wide", "2026-11-01", "2026-11-06", max_parallel=3)
        done = wait_for(lambda: (x := ops.get_backfill(b["id"]))["state"] == "done" and x,
                        60, 0.2, "the backfill to end")
        assert done["runs"] == {"succeeded": 6}, done
        lines = ledger.read_text().splitlines()
        assert len(lines) == 12 and most_at_once(lines) == 3
    finally:
        ops.close()
