"""``hermes-cron search``, ``timeline``, ``calendar``, ``diff`` and ``show RUN_ID`` as an
operator uses them: real processes on a real store file, runs really run (no ticker:
``run`` starts their supervisors)."""

from __future__ import annotations

import time

import pytest

from hermes_cron_ext.store import SQLiteStore
from tests.conftest import wait_for


@pytest.fixture
def two_runs(cli):
    """``etl``: a run that printed a KeyError and succeeded, then one that failed."""
    cli("add", "etl", "*/30 * * * *", "--tz", "UTC", "--",
        "printf", "start\\nKeyError: needle\\nend\\n")
    first = cli.json("run", "etl")["id"]
    wait_for(lambda: cli.json("runs", "etl")["runs"][0]["status"] == "succeeded", 60)
    cli("edit", "etl", "--", "sh", "-c", "echo start; echo other; exit 3")
    second = cli.json("run", "etl")["id"]
    wait_for(lambda: cli.json("runs", "etl")["runs"][0]["status"] == "failed"
             and cli.json("runs", "etl")["runs"][0]["id"] == second, 60)
    return first, second


def test_search_prints_the_lines_with_their_offsets(cli, two_runs):
    first, _ = two_runs
    out = cli("search", "KeyError").stdout
    assert f"run {first} of etl" in out
    assert ">         6  KeyError: needle" in out
    assert "start" in out and "end" in out  # the context
    answer = cli.json("search", "keyerror needle", "--job", "etl")
    assert [h["run_id"] for h in answer["hits"]] == [first]
    assert answer["hits"][0]["matches"][0]["offset"] == 6
    assert "no runs' output matches 'nothing-here'" in cli("search", "nothing-here").stdout


def test_timeline_calendar_and_diff(cli, two_runs):
    first, second = two_runs
    chart = cli("timeline", "--since", "1h", "--until", "2h").stdout
    row = next(line for line in chart.splitlines() if line.startswith("etl"))
    assert "X" in row and "." in row  # the failed run (over the succeeded), coming slots
    assert "^" in chart  # now
    assert cli.json("timeline", "--job", "etl")["runs"][-1]["id"] == second
    heat = cli("calendar", "etl", "--days", "14").stdout
    assert "etl: 14 days, 2 runs, 1 failed" in heat
    assert sum(line.count("X") for line in heat.splitlines()[1:8]) == 1  # today
    assert len(cli.json("calendar", "etl", "--days", "14")["days"]) == 14
    diff = cli("diff", first, second).stdout
    assert "succeeded" in diff and "failed" in diff
    assert "-KeyError: needle" in diff and "+other" in diff
    got = cli.json("diff", first, second)
    assert {f["field"] for f in got["fields"]} >= {"status", "exit_code", "job_version"}


def test_show_a_run_with_its_revision(cli, two_runs):
    _, second = two_runs
    out = cli("show", second).stdout
    assert f"run:         {second}" in out
    assert "failed, exit code 3" in out
    assert "rev 2" in out
    assert cli.json("show", second)["job_version"] == 2
    store = SQLiteStore(cli.db)  # a run-as run records its file's hash: as it does
    try:
        store.record_file_hash(second, "ab12" * 16)
    finally:
        store.close()
    assert "revision:    rev 2, sha256 ab12ab12\u2026" in cli("show", second).stdout
    assert cli.json("show", second)["file_sha256"] == "ab12" * 16


def test_bad_input_is_one_line(cli):
    cli("add", "etl", "@yearly", "--", "true")
    cases = [
        (["search", ""], "the search is empty"),
        (["search", "x", "--since", "yesterday"], "--since must be an ISO 8601 time or a "
                                                  "duration such as 24h or 7d"),
        (["search", "x", "--limit", "0"], "--limit must be between 1 and 100"),
        (["timeline", "--since", "soon"], "--since must be an ISO 8601 time"),
        (["timeline", "--until=-1d"], "--until must be after --since"),
        (["calendar", "etl", "--days", "400"], "--days must be between 1 and 366"),
        (["calendar", "nope"], "no job 'nope'"),
        (["diff", "r_0000000000000000", "etl"], "r_0000000000000000"),
    ]
    started = time.monotonic()
    for args, message in cases:
        proc = cli(*args, check=False)
        assert proc.returncode != 0, args
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert time.monotonic() - started < 60
