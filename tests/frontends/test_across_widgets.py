"""Across runs in a notebook (issue 34): the timeline, calendar, search and diff as
render.py writes them (text and HTML, from answers shaped as the ops contract says), the
widgets, and ``%cron timeline / search / calendar / diff`` on a real store with real runs."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest

from hermes_cron_ext.errors import NotFound
from hermes_cron_ext.frontends.render import (
    calendar_cell,
    calendar_html,
    calendar_text,
    diff_html,
    diff_text,
    highlight_html,
    revision_parts,
    search_html,
    search_text,
    timeline_html,
    timeline_text,
)
from hermes_cron_ext.frontends.widgets import JobCard, TimelineChart
from hermes_cron_ext.frontends.widgets.across import timeline_model_rows
from hermes_cron_ext.ops import Operations
from tests.conftest import wait_for
from tests.frontends.test_magics import Cell, db, ip  # noqa: F401 (fixtures)

pytest_plugins = ("tests.notebook_fixtures",)

T0 = "2026-12-07T00:00:00Z"


def _iso(hours: float) -> str:
    """A time *hours* after T0, as the API writes it."""
    at = datetime(2026, 12, 7, tzinfo=UTC) + timedelta(hours=hours)
    return at.isoformat().replace("+00:00", "Z")


def _run(rid: str, job: str, status: str, start: float, end: float | None, **more) -> dict:
    return {"id": rid, "job_id": f"j_{job}", "job_name": job, "status": status,
            "trigger": "schedule", "fire_at": _iso(start), "scheduled_for": _iso(start),
            "started_at": None if status == "skipped" else _iso(start),
            "finished_at": None if end is None else _iso(end), "reason": more.get("reason"),
            "missed": more.get("missed", False)}


TIMELINE = {
    "from": T0, "to": _iso(24), "now": _iso(18),
    "runs": [
        _run("r_1", "etl", "succeeded", 1, 2),
        _run("r_2", "etl", "failed", 6, 7, reason="exit code 1"),
        _run("r_3", "etl", "running", 17, None),
        _run("r_4", "report", "skipped", 3, 3, reason="missed: the ticker was down",
             missed=True),
        _run("r_5", "report", "skipped", 9, 9, reason="overlap"),
    ],
    "slots": [{"job_id": "j_etl", "job_name": "etl", "at": _iso(21)},
              {"job_id": "j_report", "job_name": "report", "at": _iso(22)}],
    "cursor": None,
}


def test_timeline_text_has_a_row_per_job_and_the_marks_of_the_cli():
    lines = timeline_text(TIMELINE, width=24).splitlines()  # one column an hour
    assert lines[0].startswith("etl    |") and lines[1].startswith("report |")
    etl = lines[0][len("etl    |"):-1]
    report = lines[1][len("report |"):-1]
    assert len(etl) == len(report) == 24
    assert etl[1] == "#" and etl[6] == "X" and etl[17] == ">" and etl[21] == "."
    assert report[3] == "m" and report[9] == "s" and report[22] == "."
    assert lines[2].index("^") - 2 - len("report") == 18  # now, under its hour
    assert "# succeeded  X failed  > running  s skipped  m missed  . coming slot" in lines


def test_timeline_html_draws_bars_marks_slots_and_now():
    page = timeline_html(TIMELINE)
    assert page.count("<rect") == 3  # succeeded, failed, running: bars
    assert 'data-run="r_2" data-status="failed"' in page and "#c62828" in page
    assert 'data-status="missed"' in page and 'data-status="skipped"' in page
    assert page.count('data-role="slot"') == 2 and 'data-role="now"' in page
    assert "run r_2" in page and "exit code 1" in page  # each bar's title
    rows = timeline_model_rows(TIMELINE)
    assert [r["name"] for r in rows] == ["etl", "report"]
    running = rows[0]["runs"][2]
    assert running["kind"] == "running" and running["b"] > running["a"]  # until now
    assert [r["kind"] for r in rows[1]["runs"]] == ["missed", "skipped"]


def test_timeline_chart_zooms_and_pans():
    chart = TimelineChart(start=0.0, end=1000.0, now=500.0, window=[0.0, 1000.0])
    chart.zoom(0.5)
    assert chart.window == [250.0, 750.0]
    chart.pan(-0.5)
    assert chart.window == [0.0, 500.0]
    chart.close()


def _days(n: int = 90, end: date = date(2026, 12, 7)) -> list[dict]:
    out = []
    for i in range(n):
        day = end - timedelta(days=n - 1 - i)
        out.append({"day": day.isoformat(), "total": 0, "succeeded": 0, "failed": 0,
                    "cancelled": 0, "skipped": 0, "running": 0})
    return out


def test_calendar_heatmap_weeks_as_columns_coloured_by_outcome():
    days = _days()
    days[-1].update(total=24, succeeded=22, failed=2)  # some failed: a light red
    days[-2].update(total=10, succeeded=10)  # all green
    days[-3].update(total=4, succeeded=1, failed=3)  # mostly failed: dark red
    cal = {"job_id": "j_1", "job_name": "etl", "tz": "Europe/Paris", "days": days}
    page = calendar_html(cal)
    assert page.count("<rect") == 90
    assert "<title>2026-12-07: 24 runs, 2 failed</title>" in page
    assert calendar_cell(days[-2]) == ("#43a047", "2026-12-06: 10 runs")
    assert calendar_cell(days[0])[0] == "#eeeeee"
    assert calendar_cell(days[-1])[0] != calendar_cell(days[-3])[0]  # shades by share
    xs = {int(m) for m in re.findall(r'<rect x="(\d+)"', page)}
    assert len(xs) == 14  # 90 days from a Tuesday to a Monday: 14 week columns
    ys = re.findall(r'<rect x="\d+" y="(\d+)"[^>]*data-day="2026-12-07"', page)
    assert ys == ["0"]  # 2026-12-07 is a Monday: the top row
    text = calendar_text(cal).splitlines()
    assert text[0].startswith("etl: 90 days, 38 runs, 5 failed")
    assert text[1].startswith("Mon ") and text[1].endswith("X")
    assert text[7] == "Sun " + "." * 12 + "# "  # Sunday the 6th, its week's last day


SEARCH = {
    "query": "KeyError user*",
    "hits": [{"run_id": "r_9", "job_id": "j_1", "job_name": "etl", "status": "failed",
              "trigger": "schedule", "fire_at": T0, "started_at": T0, "finished_at": T0,
              "matches": [{"offset": 1234, "line": "KeyError: 'username' <b>",
                           "before": ["Traceback (most recent call last):"],
                           "after": ["exit 1"]}],
              "more": True}],
    "cursor": "c1",
}


def test_search_marks_the_terms_and_keeps_the_context():
    assert highlight_html("KeyError: 'username' <b>", "KeyError user*") == (
        "<mark>KeyError</mark>: &#x27;<mark>username</mark>&#x27; &lt;b&gt;")
    assert highlight_html("keyerrors", "KeyError") == "keyerrors"  # whole tokens
    text = search_text(SEARCH).splitlines()
    assert text[0].startswith("run r_9 of etl \u00b7 failed \u00b7 ")
    assert text[1].strip() == "Traceback (most recent call last):"
    assert re.match(r"^>\s+1234  KeyError: 'username' <b>$", text[2])
    assert "more matches in this run" in text[-2] and "--cursor c1" in text[-1]
    page = search_html(SEARCH)
    assert 'data-role="match" data-offset="1234"' in page and "<mark>KeyError</mark>" in page
    assert "<b>" not in page.replace("<b>etl</b>", "")
    assert "no runs' output matches" in search_text({"query": "x", "hits": []})


DIFF = {
    "a": {"id": "r_a", "job_name": "nb", "status": "succeeded"},
    "b": {"id": "r_b", "job_name": "nb", "status": "failed"},
    "fields": [{"field": "status", "a": "succeeded", "b": "failed"},
               {"field": "exit_code", "a": 0, "b": 1}],
    "metrics": [{"name": "rows", "unit": "", "a": 10.0, "b": 12.0}],
    "output": {"same": False, "unified": "--- a\n+++ b\n@@ -1 +1 @@\n-rows 10\n+rows 12\n",
               "added": 1, "removed": 1, "truncated": False},
    "notebook": {"same": False, "cells": [
        {"index": 2, "index_a": 2, "cell_type": "code", "change": "modified",
         "source": "@@ -1 +1 @@\n-x = 1\n+x = 2\n",
         "outputs": [{"change": "modified", "mime": "image/png", "a": "QUFB", "b": "QkJC"},
                     {"change": "modified", "mime": "text/plain", "a": "1", "b": "2"}]}]},
}


def test_diff_shows_fields_metrics_output_and_changed_cells():
    text = diff_text(DIFF)
    assert re.search(r"status\s+succeeded\s+failed", text)
    assert re.search(r"exit_code\s+0\s+1", text) and re.search(r"rows\s+10\s+12", text)
    assert "output: +1 -1 lines" in text and "-rows 10\n+rows 12" in text
    assert "cell 2 (code): modified" in text and "-x = 1\n+x = 2" in text
    assert "image image/png: modified" in text
    page = diff_html(DIFF)
    assert '<span style="color:#2e7d32;background:#e8f5e9">+rows 12</span>' in page
    assert '<span style="color:#c62828;background:#ffebee">-rows 10</span>' in page
    # the images side by side, a then b
    a, b = page.index('data-side="a" style="max-width:100%" src="data:image/png;base64,QUFB"'), \
        page.index('src="data:image/png;base64,QkJC"')
    assert a < b and 'data-role="cell-output" style="display:flex' in page
    same = dict(DIFF, fields=[], metrics=[], notebook=None,
                output={"same": True, "unified": "", "added": 0, "removed": 0})
    assert "output: the same" in diff_text(same)


def test_revision_parts_say_an_older_revision():
    run = {"job_version": 3, "file_sha256": "1a2b3c4d5e6f" + "0" * 52}
    assert revision_parts(run, 3) == ["rev 3", "sha256 1a2b3c4d\u2026"]
    assert revision_parts(run, 5)[-1] == "older revision (the job is at rev 5 now)"
    assert revision_parts({}, 5) == []


@pytest.mark.parametrize("bad", [{"from": None, "to": T0}])
def test_a_timeline_without_its_range_is_refused(bad):
    with pytest.raises(ValueError):
        timeline_text(bad)


# -- %cron, on a real store with real runs ----------------------------------------------

@pytest.fixture
def cell(ip, capsys):  # noqa: F811
    return Cell(ip, capsys)


def _two_runs(cell, db) -> tuple[str, str]:  # noqa: F811
    """Two ended runs of ``flaky`` whose output differs in one line."""
    cell.ok('%cron add flaky "@yearly" -- echo start; echo "value $$-$RANDOM"; '
            'echo "KeyError: user_id"; echo end')
    ids = []
    for _ in range(2):
        run_id = cell.ok("%cron run flaky").split()[1]
        wait_for(lambda r=run_id: db.get_run(r).status == "succeeded", 30, what="the run")
        ids.append(run_id)
    return ids[0], ids[1]


def test_cron_timeline_search_calendar_diff_of_real_runs(cell, db):  # noqa: F811
    first, second = _two_runs(cell, db)
    lines = cell.ok("%cron timeline --since 1h --until 1h").splitlines()
    row = next(ln for ln in lines if ln.startswith("flaky "))
    assert "#" in row and "X" not in row
    assert "# succeeded  X failed  > running  s skipped  m missed  . coming slot" in lines
    assert cell.ok("%cron timeline --since 1h --until 1h --status failed").startswith(
        "no runs from ")
    helped = cell.ok("%cron help")
    for verb in ("search TEXT", "timeline [--since 24h]", "calendar NAME", "diff RUN_A RUN_B"):
        assert f"%cron {verb}" in helped

    found = cell.ok("%cron search 'keyerror user' --job flaky").splitlines()
    heads = [ln for ln in found if ln.startswith("run ")]
    assert [h.split()[1] for h in heads] == [second, first]  # newest first
    assert all(" of flaky \u00b7 succeeded \u00b7 " in h for h in heads)
    marked = [ln for ln in found if ln.startswith(">")]
    assert len(marked) == 2 and all(ln.endswith("KeyError: user_id") for ln in marked)
    offset = int(marked[0].split()[1])
    assert db.read_output(second, offset, 17) == b"KeyError: user_id"  # its byte offset
    assert "no runs' output matches" in cell.ok("%cron search 'nothing-like-this'")
    page = cell.ok("%cron search KeyError --limit 1")
    cursor = re.search(r"--cursor (\S+)\)", page).group(1)
    assert page.split()[1] == second
    assert cell.ok(f"%cron search KeyError --limit 1 --cursor {cursor}").split()[1] == first

    cal = cell.ok("%cron calendar flaky").splitlines()
    assert cal[0].startswith("flaky: 90 days, 2 runs, 0 failed")
    assert len(cal) == 9 and cal[-1].startswith("# all succeeded")

    diff = cell.ok(f"%cron diff {first} {second}")
    assert f"a: run {first} of flaky (succeeded)" in diff
    assert f"b: run {second} of flaky" in cell.ok(f"%cron diff {first} flaky")  # its latest
    assert "output: +1 -1 lines" in diff and "\n-value " in diff and "\n+value " in diff


def test_across_bad_input_is_one_line(cell, db):  # noqa: F811
    cell.ok('%cron add quiet "@yearly" -- echo quiet')
    cell.fails("%cron search ''", "the search is empty")
    cell.fails("%cron search x --since yesterday-ish")
    cell.fails("%cron search x --limit 0", "--limit must be between 1 and 100")
    cell.fails("%cron timeline --since soon")
    cell.fails("%cron calendar quiet --days 400", "--days must be between 1 and 366")
    cell.fails("%cron calendar nobody")
    cell.fails("%cron diff r_nope r_none")
    cell.fails("%cron diff r_nope", "RUN_B")


def test_widgets_open_the_run_a_search_hit_or_a_bar_names(cell, db):  # noqa: F811
    from hermes_cron_ext import ops as cron_client
    from hermes_cron_ext.frontends.widgets import SearchResults, Timeline

    first, second = _two_runs(cell, db)
    client = cron_client.get_client()
    found = SearchResults("KeyError", client=client, job="flaky")
    assert [h["run_id"] for h in found.answer["hits"]] == [second, first]
    offset = found.answer["hits"][1]["matches"][0]["offset"]
    out = found.show_run(first, offset)  # what the match's "Open at byte N" does
    assert out.run_id == first
    assert out.text.splitlines()[1:] == ["KeyError: user_id", "end"]  # from that line on
    assert out.text.splitlines()[0].startswith(f"[\u2026 from byte {offset:,}: ")
    timeline = Timeline(client, since="1h", until="1h", job="flaky")
    assert [r["name"] for r in timeline.chart.rows] == ["flaky"]
    timeline.chart.selected = second  # what a click on its bar does
    shown = timeline.detail.children[0]
    assert shown.run_id == second and "KeyError: user_id" in shown.text
    assert 'data-run="' + second + '"' in timeline.static_html()
    timeline.chart.zoom(0.5)
    assert timeline.chart.window[1] - timeline.chart.window[0] == pytest.approx(3600.0)


def test_cards_and_dashboard_show_the_calendar(cell, db):  # noqa: F811
    from hermes_cron_ext import ops as cron_client
    from hermes_cron_ext.frontends.widgets import Dashboard, JobCard

    _two_runs(cell, db)
    client = cron_client.get_client()
    card = JobCard("flaky", client=client, live=False)
    assert card.calendar["job_name"] == "flaky"
    assert sum(d["succeeded"] for d in card.calendar["days"]) == 2
    assert 'data-role="calendar"' in card._calendar.value
    today = card.calendar["days"][-1]["day"]
    assert f"<title>{today}: 2 runs</title>" in card.static_html()
    board = Dashboard(client)
    assert f"<title>{today}: 2 runs</title>" in board.static_html()


def test_run_views_say_the_revision_a_run_ran(cell, db):  # noqa: F811
    from hermes_cron_ext import ops as cron_client
    from hermes_cron_ext.frontends.widgets import LiveOutput, RunHistory
    from hermes_cron_ext.frontends.widgets.history import runs_table

    cell.ok('%cron add versioned "@yearly" -- echo one')
    run_id = cell.ok("%cron run versioned").split()[1]
    wait_for(lambda: db.get_run(run_id).status == "succeeded", 30, what="the run")
    client = cron_client.get_client()
    ran = client.run(run_id)["job_version"]
    assert ran is not None
    out = LiveOutput(run_id, client=client)
    assert out.revision == f"rev {ran}"
    assert out.plain_text().splitlines()[0].endswith(f" \u00b7 rev {ran}")
    cell.ok("%cron edit versioned -- echo two")
    now = client.job("versioned")["version"]
    assert now > ran
    out = LiveOutput(run_id, client=client)
    assert out.revision == f"rev {ran} \u00b7 older revision (the job is at rev {now} now)"
    # the run history says it of the runs its page carries it for (a listing leaves the
    # frozen spec out: the runs read one by one do)
    table = runs_table([client.run(run_id)], current=now)
    assert f"rev {ran} \u00b7 older revision (the job is at rev {now} now)" in table
    assert 'data-role="run-rev"' not in RunHistory("versioned", client=client).static_html() \
        or "older revision" in RunHistory("versioned", client=client).static_html()
    # and the revisions %cron made say they came from the magics
    revisions = client.revisions("versioned")["revisions"]
    assert len(revisions) == 2
    assert {r["origin"] for r in revisions} == {"magics"}


class _Counting(Operations):
    """Operations that count their calendar calls (a card must make one)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calendars: list[str] = []

    def calendar(self, ref: str, days: int = 90) -> dict:
        self.calendars.append(ref)
        return super().calendar(ref, days)


class _OldServer(Operations):
    """A server from before issue 34: no calendar to read."""

    def calendar(self, ref: str, days: int = 90) -> dict:
        raise NotFound("no such route: /api/cron/jobs/x/calendar")


def test_a_card_reads_its_calendar_once_and_again_when_a_run_ends(local_env, db):  # noqa: F811
    from hermes_cron_ext.frontends.widgets import JobCards

    client = _Counting(local_env)
    try:
        for name in ("one", "two"):
            client.add({"name": name, "schedule": "@yearly", "command": "echo hi"})
        cards = JobCards(client, live=False)
        assert sorted(client.calendars) == sorted(c.job["id"] for c in cards.cards)
        run = client.run_now("one")
        wait_for(lambda: db.get_run(run["id"]).status == "succeeded", 30, what="the run")
        one = next(c for c in cards.cards if c.job["name"] == "one")
        one.refresh()
        assert len(client.calendars) == 3 and client.calendars[-1] == one.job["id"]
        assert one.calendar["days"][-1]["succeeded"] == 1
        one.refresh()  # nothing ended since: no new call
        assert len(client.calendars) == 3
        cards.close()
    finally:
        client.close()
    old = _OldServer(local_env)
    try:
        card = JobCard("one", client=old, live=False)
        assert card.calendar == {} and card._calendar.value == ""
        assert "<b>one</b>" in card.static_html()
        card.close()
    finally:
        old.close()
