"""Widgets without a browser: their traits and state, on a real store with real runs."""

from __future__ import annotations

import html
import re
import time

import pytest

from hermes_cron_ext.frontends.terminal import Terminal, to_html
from hermes_cron_ext.frontends.widgets import (
    Dashboard,
    JobCard,
    LiveOutput,
    RunHistory,
    duration_chart,
    job_health,
)
from hermes_cron_ext.ops import Operations
from hermes_cron_ext.store import SQLiteStore
from tests.conftest import FakeClock, make_job, wait_for
from tests.notebook_support import settle, supervise

pytest_plugins = ("tests.notebook_fixtures",)


@pytest.fixture
def cron(local_env):
    c = Operations(local_env)
    yield c
    c.close()


@pytest.fixture
def clocked(local_env):
    """The same store with a clock the test moves, to write history at chosen instants."""
    clock = FakeClock(time.time() - 3600)
    s = SQLiteStore(local_env, clock=clock)
    yield s, clock
    s.close()


def history(store, clock, name: str, outcomes: list[tuple[str, float]]) -> None:
    """Runs of *name* that ended as given: ``[(status, duration)]``, oldest first."""
    for status, took in outcomes:
        run = store.request_run(name)
        store.mark_running(run.id, clock(), 0)
        clock.advance(took)
        store.finish_run(run.id, status, 0 if status == "succeeded" else 1,
                         None if status == "succeeded" else "exit code 1: boom")
        clock.advance(60)


# -- the terminal -------------------------------------------------------------------------

def test_terminal_renders_colours_and_carriage_returns():
    t = Terminal()
    t.feed("plain \x1b[1;31mbold red\x1b[0m back\n")
    t.feed("train  10%|#         |\rtrain  50%|#####     |\rtrain 100%|##########|\n")
    t.feed("warning: careful\n", "stderr")
    t.feed("\x1b[38;5;208morange\x1b[39m \x1b[48;2;0;0;255mblue bg\x1b[0m\n")
    t.feed("abc\bX\n")
    t.feed("xxxxxxxx\r\x1b[Kshort\n")
    t.feed("bar 1\nbar 2\n\x1b[2Abar 1 done\n\n")  # nested bars climb back up
    t.feed("no newline yet")
    assert t.lines == ["plain bold red back", "train 100%|##########|", "warning: careful",
                       "orange blue bg", "abX", "short", "bar 1 done", "bar 2",
                       "no newline yet"]
    html_lines = t.html_lines()
    assert html_lines[0] == 'plain <span class="ansi-red-fg ansi-bold">bold red</span> back'
    assert html_lines[2] == '<span class="hc-stderr">warning: careful</span>'
    assert 'style="color: #ff8700"' in html_lines[3]
    assert 'style="background-color: #0000ff"' in html_lines[3]
    assert to_html("<script>&") == "&lt;script&gt;&amp;"


def test_terminal_keeps_the_last_lines_and_counts_the_rest():
    t = Terminal(max_lines=100)
    t.feed("".join(f"line {i}\n" for i in range(1000)))
    lines = t.lines
    assert lines[-1] == "line 999" and len(lines) <= 100 + 40
    assert t.dropped + len(lines) == 1000


# -- job card ---------------------------------------------------------------------------------

def test_card_countdown_advances_with_the_clock(cron):
    job = cron.add({"name": "hourly", "schedule": "0 * * * *", "timezone": "UTC",
                    "command": "true"})
    due = job["next_run_at"]
    from hermes_cron_ext.domain.models import parse_iso

    clock = FakeClock(parse_iso(due) - 125)
    card = JobCard(job, client=cron, clock=clock, live=False)
    assert card.countdown == "in 2m 05s" and card.seconds_left == pytest.approx(125)
    clock.advance(1)
    card.tick()
    assert card.countdown == "in 2m 04s"
    clock.advance(124)
    card.tick()
    assert card.countdown == "due now"
    assert "next run: <b>due now</b>" in card._countdown.value
    assert card.state == "scheduled"
    assert "At the start of every hour" in card._info.value
    assert "<code>0 * * * *</code>" in card._info.value


def test_live_card_counts_down_on_its_own(cron):
    job = cron.add({"name": "later", "schedule": "@every 1h", "command": "true"})
    card = JobCard(job, client=cron)
    first = (card.countdown, card.seconds_left)
    wait_for(lambda: card.countdown != first[0], 5, what="the countdown to move")
    assert card.seconds_left < first[1]
    card.close()


def test_card_buttons_act_on_the_store(cron, local_env):
    store = SQLiteStore(local_env)
    cron.add({"name": "act", "schedule": "@yearly", "kind": "python",
              "code": "print('ran from the card')"})
    card = JobCard("act", client=cron, live=False)
    assert card.pause_button.description == "Pause"
    card.pause_button.click()
    assert store.get_job("act").state == "paused"
    assert card.state == "paused" and card.countdown == "paused"
    assert card.pause_button.description == "Resume"
    # paused: the card says so instead of counting down to a run that will not happen
    assert store.get_job("act").next_run_at is not None  # the schedule still has one
    assert "next run" not in card._countdown.value
    assert html.unescape(re.sub("<[^>]+>", "", card._countdown.value)) == (
        "paused \u00b7 no runs until resumed")
    cols = re.split(r"\s{2,}", card.plain_text().splitlines()[1])  # the text fallback
    assert (cols[0], cols[2], cols[4]) == ("act", "paused", "none (paused)")  # state, next
    card.pause_button.click()
    assert store.get_job("act").state == "scheduled" and card.state == "scheduled"

    card.run_button.click()  # a real run, started by the card
    runs = store.list_runs("act").items
    assert len(runs) == 1 and runs[0].trigger == "manual"
    live = card.detail.children[0]
    assert isinstance(live, LiveOutput) and live.run_id == runs[0].id
    assert live.wait(30)
    assert live.status == "succeeded" and live.text == "ran from the card"
    card.refresh()
    assert "succeeded" in card._info.value

    card.history_button.click()
    shown = card.detail.children[0]
    assert isinstance(shown, RunHistory) and [r["id"] for r in shown.runs] == [runs[0].id]
    card.history_button.click()
    assert card.detail.children == ()
    card.watch_button.click()
    watching = card.detail.children[0]
    assert isinstance(watching, LiveOutput) and watching.wait(10)
    assert watching.run_id == runs[0].id and "ran from the card" in watching.text

    store.delete_job("act")
    card.refresh()
    assert card.state == "deleted" and card.run_button.disabled
    store.close()


def test_card_state_pip_failing_and_blocked(cron, clocked):
    store, clock = clocked
    make_job(store, "flaky", "@daily", max_failures=2)
    history(store, clock, "flaky", [("succeeded", 1.0), ("failed", 0.5)])
    card = JobCard("flaky", client=cron, live=False)
    assert card.state == "failing"
    assert "exit 1" in card._info.value and "boom" in card._info.value
    history(store, clock, "flaky", [("failed", 0.5)])
    card.refresh()
    assert card.state == "blocked" and card.countdown == "blocked"
    assert "2 consecutive failures" in card._info.value
    assert card.pause_button.description == "Resume"
    card.pause_button.click()  # resuming clears the circuit breaker
    assert store.get_job("flaky").state == "scheduled"


# -- run history ---------------------------------------------------------------------------------

def test_run_history_pages_and_charts(cron, clocked):
    store, clock = clocked
    make_job(store, "busy", "@daily")
    outcomes = [("succeeded", 1.0 + i) if i % 4 else ("failed", 0.5) for i in range(25)]
    history(store, clock, "busy", outcomes)
    h = RunHistory("busy", client=cron, page_size=10)
    first = [r["id"] for r in h.runs]
    assert len(first) == 10 and h.page == 0 and h.prev_button.disabled
    assert not h.next_button.disabled
    svg = h.chart.value
    assert svg.startswith("<svg") and svg.count("<rect") == 10
    assert {"succeeded", "failed"} <= set(re.findall(r'data-status="(\w+)"', svg))
    assert "#c62828" in svg and "#2e7d32" in svg  # coloured by outcome
    assert h.table.value.count("<tr data-run=") == 10 and "exit code 1: boom" in h.table.value
    h.next_button.click()
    second = [r["id"] for r in h.runs]
    assert h.page == 1 and not set(first) & set(second) and len(second) == 10
    h.next_button.click()
    assert h.page == 2 and len(h.runs) == 5 and h.next_button.disabled
    h.prev_button.click()
    assert [r["id"] for r in h.runs] == second
    every = first + second + [r["id"] for r in cron.runs("busy", limit=100)["runs"][20:]]
    assert len(set(every)) == 25
    # newest first in the table, oldest on the left of the chart
    starts = [r["started_at"] for r in h.runs]
    assert starts == sorted(starts, reverse=True)


def test_duration_chart_without_runs():
    assert "no runs yet" in duration_chart([])


# -- live output -----------------------------------------------------------------------------------

PAYLOAD = r"""
import sys, time
print("\033[32mgreen start\033[0m", flush=True)
for i in range(6):
    print(f"line {i}", flush=True)
    time.sleep(0.25)
for p in range(0, 101, 25):
    sys.stdout.write(f"\rdownload {p:3d}%"); sys.stdout.flush(); time.sleep(0.1)
print()
print("careful", file=sys.stderr, flush=True)
time.sleep(0.2)  # two pipes: let the supervisor read stderr before the next stdout line
print("::progress:: 1/2 halfway", flush=True)
time.sleep(0.6)
print("bye")
"""


def test_live_output_follows_a_real_run_without_blocking(cron, local_env):
    store = SQLiteStore(local_env)
    make_job(store, "live", "@yearly", kind="python", code=PAYLOAD, command=None)
    run = store.request_run("live")
    proc = supervise(store.path, run.id)
    out = LiveOutput(run.id, client=cron)
    updates = []
    out.observe(lambda change: updates.append(change["new"]), names="lines")

    # the test goes on doing its own work while the widget fills in
    seen_while_running, progress_seen, spins = [], set(), 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not out.done:
        spins += 1
        status = store.get_run(run.id).status
        if status == "running" and any("line 1" in ln for ln in out.lines):
            seen_while_running.append(list(out.lines))
        if not out.done:
            progress_seen.add((out.progress, out.phase))
        time.sleep(0.02)
    assert out.wait(30)
    settle(proc)
    assert seen_while_running, "no output reached the widget while the run was going"
    assert spins > 20  # the caller was never blocked
    assert len(updates) >= 2 and all(isinstance(u, list) for u in updates)
    assert updates[0] is not updates[-1]  # fresh lists, so every change syncs

    assert (out.status, out.exit_code, out.done) == ("succeeded", 0, True)
    assert out.run_id == run.id and out.job_name == "live"
    assert out.took and out.progress == 1.0 and out.phase == "halfway"
    # the ::progress:: line is the bar in the header (half way, while it ran), not a line
    assert (0.5, "halfway") in progress_seen
    text = out.text
    assert text.splitlines() == ["green start", *[f"line {i}" for i in range(6)],
                                 "download 100%", "careful", "bye"]
    assert not [ln for ln in out.lines if "::progress::" in ln]
    assert "::progress::" not in out.plain_text() and "::progress::" not in out.static_html()
    # the log itself keeps every byte, the marker included
    assert "::progress:: 1/2 halfway\n" in cron.text(run.id)
    assert '<span class="ansi-green-fg">green start</span>' in out.lines
    assert '<span class="hc-stderr">careful</span>' in out.lines
    assert out.offset == store.get_run(run.id).output_bytes
    store.close()


def test_live_output_of_a_finished_run_stays_readable(cron, local_env):
    store = SQLiteStore(local_env)
    make_job(store, "done", "@yearly", command="echo one; echo two >&2; exit 3")
    run = store.request_run("done")
    settle(supervise(store.path, run.id))
    out = LiveOutput.for_job("done", client=cron)
    assert out.wait(10)
    assert (out.status, out.exit_code, out.done) == ("failed", 3, True)
    assert out.text == "one\ntwo" and out.reason == "exit code 3: two"
    store.close()


def test_live_output_waits_for_the_first_run(cron, local_env):
    store = SQLiteStore(local_env)
    make_job(store, "fresh", "@yearly", command="echo first ever")
    out = LiveOutput.for_job("fresh", client=cron)
    time.sleep(0.3)
    assert out.status == "waiting" and not out.done
    run = store.request_run("fresh")
    proc = supervise(store.path, run.id)
    assert out.wait(30)
    settle(proc)
    assert out.run_id == run.id and out.text == "first ever" and out.status == "succeeded"
    store.close()


def test_live_output_stop_leaves_what_was_shown(cron, local_env):
    store = SQLiteStore(local_env)
    make_job(store, "endless", "@yearly",
             command="echo begun; sleep 1; echo later; sleep 30")
    run = store.request_run("endless")
    proc = supervise(store.path, run.id)
    out = LiveOutput(run.id, client=cron)
    wait_for(lambda: out.text == "begun", 20, what="first line")
    reader = out._thread
    started = time.monotonic()
    out.stop()
    assert time.monotonic() - started < 2 and not out.done
    assert not reader.is_alive()  # no reading thread left behind
    # the run goes on writing; the stopped widget keeps what it showed and reads no more
    wait_for(lambda: b"later" in store.read_output(run.id), 20, what="more output")
    time.sleep(0.5)
    assert out.text == "begun" and out.status == "running" and not out.done
    store.request_cancel(run.id)
    settle(proc)
    store.close()


# -- dashboard ------------------------------------------------------------------------------------

def test_dashboard_lists_failing_jobs_first(cron, clocked):
    store, clock = clocked
    for name in ("alpha", "beta", "gamma"):
        make_job(store, name, "@daily")
    history(store, clock, "alpha", [("succeeded", 2.0)] * 4)
    history(store, clock, "beta", [("succeeded", 1.0), ("failed", 3.0), ("failed", 1.0)])
    history(store, clock, "gamma", [("failed", 1.0), ("succeeded", 1.0)] * 2)
    rows = job_health(cron)
    assert [r["name"] for r in rows] == ["beta", "gamma", "alpha"]  # worst first
    beta = rows[0]
    assert beta["failing"] and beta["state"] == "failing"
    assert beta["success_rate"] == pytest.approx(1 / 3) and beta["max_duration"] == 3.0
    board = Dashboard(cron)
    page = board.view.value
    assert page.index('data-job="beta"') < page.index('data-job="alpha"')
    assert "1 failing" in page and "33%" in page and "100%" in page
    assert [r["name"] for r in board.rows] == ["beta", "gamma", "alpha"]



def test_runs_with_fired_alerts_have_the_badge(cron, clocked):
    """A run whose job's alert rules fired shows ``⚠ ALERT`` with the rule's message as
    its tooltip in the run history and the dashboard; a run none fired for has none."""
    store, clock = clocked
    make_job(store, "counted", "@daily", policy={"alerts": ["rows < 10"]})
    make_job(store, "quiet", "@daily", policy={"alerts": ["rows < 10"]})
    for name, rows in (("counted", 5), ("quiet", 50)):
        run = store.request_run(name)
        store.mark_running(run.id, clock(), 0)
        clock.advance(1)
        store.finish_run(run.id, "succeeded", 0, metrics=[["rows", rows, ""]])
    title = 'title="rows &lt; 10: rows = 5 &lt; 10"'
    counted = RunHistory("counted", cron).table.value
    assert "\u26a0 ALERT" in counted and title in counted
    assert "ALERT rows < 10" in RunHistory("counted", cron).plain_text()
    quiet = RunHistory("quiet", cron).table.value
    assert "<tr data-run=" in quiet and "alert-badge" not in quiet
    board = Dashboard(cron)
    row = re.search(r'<tr data-job="counted">.*?</tr>', board.view.value).group(0)
    assert title in row
    quiet_row = re.search(r'<tr data-job="quiet">.*?</tr>', board.view.value).group(0)
    assert "alert-badge" not in quiet_row
    assert "succeeded ALERT rows < 10" in board.plain_text()

def test_a_job_applied_from_a_file_says_so_on_its_card_and_in_the_list(cron, tmp_path):
    cron.add({"name": "mine", "schedule": "@daily", "command": "true", "cwd": str(tmp_path)})
    cron.add({"name": "filed", "schedule": "@daily", "command": "true", "cwd": str(tmp_path)})
    cron.apply(cron.export(["filed"]), source="jobs.yaml")
    card = JobCard("filed", client=cron, live=False)
    assert 'data-role="managed"' in card._head.value
    assert "managed by jobs.yaml" in card._head.value
    assert "managed" not in JobCard("mine", client=cron, live=False)._head.value
    board = Dashboard(cron)
    row = re.search(r'<tr data-job="filed">.*?</tr>', board.view.value).group(0)
    assert "managed by jobs.yaml" in row
    from hermes_cron_ext.frontends.render import jobs_table

    table = jobs_table(cron.jobs(), time.time()).splitlines()
    assert [line.split()[:2] for line in table[1:3]] == [["filed", "*"], ["mine", "scheduled"]]
    assert table[-1] == "* managed by jobs.yaml: the next apply undoes edits made here"


#: every public name the single ``widgets`` module had before it became a package
MODULE_NAMES = [
    "BackfillProgress", "Dashboard", "IDLE_STATES", "JOB_COLUMNS", "JobCard", "JobCards",
    "LiveOutput", "MARKER", "OUTCOME_COLOURS", "OUTCOME_MARKS", "ParametersForm",
    "PipelineGraph", "RunHistory", "STATE_COLOURS", "STATIC", "STATIC_LINES", "Terminal",
    "after_text", "backfill_done", "backfill_text", "card_state", "dashboard_html",
    "describe_schedule", "duration_chart", "format_ago", "format_countdown", "format_duration",
    "html_table", "job_cards", "job_health", "last_run_text", "local_time", "next_run_text",
    "pipeline_html", "pipeline_text", "progress_text", "runs_table", "runs_text",
    "schedule_text", "text_table", "timestamp", "trigger_text"]


def test_the_widgets_package_keeps_the_modules_names():
    """One module per widget, and every name the single module had still imports from
    ``hermes_cron_ext.frontends.widgets``, ``hermes_cron_ext.widgets`` and the root."""
    import hermes_cron_ext
    from hermes_cron_ext.frontends import widgets

    assert [n for n in MODULE_NAMES if not hasattr(widgets, n)] == []
    assert hermes_cron_ext.widgets is widgets
    assert {n: getattr(hermes_cron_ext, n) for n in hermes_cron_ext._PUBLIC
            if n not in ("connect", "get_client", "set_client", "CronClient")} == {
        n: getattr(widgets, n) for n in widgets.__all__ if n in hermes_cron_ext._PUBLIC}
    assert widgets.LiveOutput.__module__ == "hermes_cron_ext.frontends.widgets.live_output"
    assert (widgets.STATIC / "live_output.js").read_text().strip(), "its front-end code ships"


# -- duration sparklines (the ``duration`` metric of ended runs) ---------------------------

def _spark_points(page: str) -> list[int]:
    """Each sparkline's number of points: ``data-points`` and its polyline's, checked alike."""
    counts = [int(n) for n in re.findall(r'class="hc-spark" data-points="(\d+)"', page)]
    lines = [len(p.split()) for p in re.findall(r'<polyline [^>]*points="([^"]*)"', page)]
    assert lines == [n for n in counts if n], page
    return counts


def test_card_sparkline_of_its_runs_durations(cron, clocked):
    store, clock = clocked
    make_job(store, "trend", "@daily")
    make_job(store, "fresh", "@daily")
    history(store, clock, "trend", [("succeeded", 1.0), ("failed", 3.0), ("succeeded", 2.0)])
    card = JobCard("trend", client=cron, live=False)
    assert card.durations == pytest.approx([1.0, 3.0, 2.0])  # oldest first
    assert _spark_points(card._spark.value) == [3]
    assert 'data-role="durations"' in card._spark.value and "2.00 s" in card._spark.value
    assert _spark_points(card.static_html()) == [3]  # what a saved notebook shows
    history(store, clock, "trend", [("succeeded", 4.0)])
    card.refresh()  # another run ended: its duration joins the line
    assert card.durations == pytest.approx([1.0, 3.0, 2.0, 4.0])
    assert _spark_points(card._spark.value) == [4]
    empty = JobCard("fresh", client=cron, live=False)  # no run yet: no line, no request
    assert empty.durations == [] and empty._spark.value == ""
    assert _spark_points(empty.static_html()) == [0]
    history(store, clock, "trend", [("succeeded", 1.0)] * 25)
    card.refresh()
    assert len(card.durations) == 20 and _spark_points(card._spark.value) == [20]


def test_dashboard_rows_have_duration_sparklines(cron, clocked):
    store, clock = clocked
    for name in ("one", "two", "idle"):
        make_job(store, name, "@daily")
    history(store, clock, "one", [("succeeded", 1.0), ("succeeded", 2.5)])
    history(store, clock, "two", [("failed", 0.5)] * 5)
    board = Dashboard(cron)
    by_name = {r["name"]: r for r in board.rows}
    assert by_name["one"]["durations"] == pytest.approx([1.0, 2.5])
    assert len(by_name["two"]["durations"]) == 5 and by_name["idle"]["durations"] == []
    page = board.view.value
    for name, n in (("one", 2), ("two", 5), ("idle", 0)):
        row = page[page.index(f'<tr data-job="{name}"'):]
        row = row[:row.index("</tr>")]
        assert _spark_points(row) == [n], row
    assert board.static_html() == page  # the saved notebook keeps them
