"""The one place for text (frontends/render.py): each format once, as every front prints it."""

from __future__ import annotations

import pytest

from hermes_cron_ext.frontends import render

NOW = 1_780_000_000.0  # 2026-05-28T20:26:40Z


@pytest.mark.parametrize("seconds, text", [
    (None, "-"), (0.0523, "0.05 s"), (9.994, "9.99 s"), (12.34, "12.3 s"), (59.9, "59.9 s"),
    (65, "1m 05s"), (3599, "59m 59s"), (3725, "1h 02m"), (90061, "25h 01m"),
])
def test_one_duration_format(seconds, text):
    assert render.format_duration(seconds) == text


@pytest.mark.parametrize("ahead, text", [
    (0.4, "due now"), (5, "in 5s"), (125, "in 2m 05s"), (3725, "in 1h 02m 05s"),
    (90061, "in 1d 01h 01m"),
])
def test_countdowns(ahead, text):
    assert render.format_countdown(ahead) == text
    assert render.relative_time(NOW + ahead, NOW) == text


@pytest.mark.parametrize("behind, text", [
    (5, "5 s ago"), (600, "10 min ago"), (5400, "1.5 h ago"), (3 * 86400, "3 days ago"),
])
def test_times_behind(behind, text):
    assert render.format_ago(NOW - behind, NOW) == text
    assert render.relative_time(NOW - behind, NOW) == text
    assert render.relative_time(None, NOW) == "-"


def test_times_carry_their_zone():
    assert render.local_time(NOW, "Europe/Berlin") == "2026-05-28 22:26:40 CEST"
    assert render.local_time("2026-05-28T20:26:40Z", "Asia/Dubai") == (
        "2026-05-29 00:26:40 +04:00")  # no abbreviation: the offset
    assert render.local_time(None) == "-"


def test_one_table_style():
    table = render.text_table(["name", "NEXT RUN"], [["a-long-name", "-"], ["b", "in 5s"]])
    assert table.splitlines() == ["NAME         NEXT RUN", "a-long-name  -",
                                  "b            in 5s"]


def test_next_run_text_says_when_or_why_not():
    job = {"name": "etl", "state": "scheduled", "schedule": "0 2 * * *",
           "timezone": "Europe/Berlin", "next_run_at": NOW + 125}
    assert render.next_run_text(job, NOW) == "2026-05-28 22:28:45 CEST (in 2m 05s)"
    assert render.next_run_text(job, NOW, "deleted") == "none (job deleted)"
    for state, why in (("paused", "paused"), ("blocked", "blocked: resume it to fire again"),
                       ("disabled", "disabled: enable it to fire again")):
        assert render.next_run_text({**job, "state": state}, NOW) == f"none ({why})"
    downstream = {"name": "load", "state": "scheduled", "schedule": None, "next_run_at": None,
                  "after": [{"job": "j_1", "name": "etl", "on": "success"}]}
    assert render.next_run_text(downstream, NOW) == (
        "none (no schedule of its own: it runs after etl)")
    assert render.next_run_text({**job, "next_run_at": None}, NOW) == (
        "none (its schedule fires no more)")


def test_last_run_and_end_lines():
    failed = {"status": "failed", "exit_code": 3, "duration": 0.5, "reason": "exit code 3",
              "finished_at": NOW - 5}
    assert render.last_run_text({"last_run": failed}, NOW) == (
        "failed \u00b7 exit 3 \u00b7 0.50 s \u00b7 5 s ago")
    assert render.last_run_text({"last_run": None}, NOW) == "none yet"
    assert render.end_text(failed) == "failed, exit code 3"  # the exit code said once
    assert render.end_text({**failed, "status": "timed_out", "exit_code": None,
                            "reason": "timed out after 5 s"}) == (
        "timed_out: timed out after 5 s")


def test_progress_is_one_bar():
    assert render.progress_text(0.5, "half") == f"[{'#' * 15}{'.' * 15}]  50% half"
    assert render.progress_text(1.0, None) == f"[{'#' * 30}] 100%"
    assert render.progress_text(None, "writing") == "writing"
    assert render.progress_bar(2 / 3, width=3) == "[##.]"


def test_a_saved_job_line_and_its_note():
    job = {"name": "alert", "state": "disabled", "schedule": "0 2 * * *", "timezone": "UTC",
           "next_run_at": None, "after": [{"job": "j_1", "name": "etl", "on": "failure"}]}
    assert render.saved_text("added", job, NOW).splitlines() == [
        "alert added: 0 2 * * * (UTC), At 02:00 every day, and after etl:failure; next run "
        "none (disabled: enable it to fire again)",
        "note: alert is disabled: runs of etl do not trigger it until it is enabled"]
    assert render.state_line({**job, "state": "paused"}, NOW) == "alert paused"


def test_a_hub_jobs_text_says_whose_it_is_and_who_shares_it():
    from hermes_cron_ext.frontends.render import job_text

    job = {"id": "j_1", "name": "report", "kind": "command", "command": "true",
           "schedule": "@daily", "timezone": "UTC", "state": "scheduled", "enabled": True,
           "next_run_at": None, "last_run": None, "policy": {}, "after": [],
           "owner": "alice", "shares": {"ops": "execute", "analysts": "read"}}
    text = job_text(job, [], None, 0.0)
    assert "  owner      alice\n" in text
    assert "  shared     analysts (read), ops (execute)\n" in text
    alone = job_text({**job, "owner": "", "shares": {}}, [], None, 0.0)
    assert "owner" not in alone and "shared" not in alone  # a one-user store: as before


def test_a_jobs_text_names_its_revision_and_the_file_that_manages_it():
    from hermes_cron_ext.frontends.render import job_text

    job = {"id": "j_1", "name": "report", "kind": "command", "command": "true",
           "schedule": "@daily", "timezone": "UTC", "state": "scheduled", "enabled": True,
           "next_run_at": None, "last_run": None, "policy": {}, "after": [], "version": 3,
           "managed_by": "jobs.yaml"}
    text = job_text(job, [], None, 0.0)
    assert "  revision   3  (hermes-cron revisions report)\n" in text
    assert "  managed by jobs.yaml (the next apply undoes edits made elsewhere)\n" in text
    assert "managed" not in job_text({**job, "managed_by": None}, [], None, 0.0)


def test_alert_badge_html_names_the_fired_rules():
    """The widgets' and ``%cron``'s badge: ``⚠ ALERT`` with each fired rule and what was
    seen as its tooltip; nothing for a run none fired for."""
    fired = {"alerts": [{"rule": "rows < 1000", "message": "rows = 5 < 1000"}]}
    badge = render.alert_badge_html(fired)
    assert 'data-role="alert-badge"' in badge and ">\u26a0 ALERT</span>" in badge
    assert 'title="rows &lt; 1000: rows = 5 &lt; 1000"' in badge
    two = render.alert_badge_html({"alerts": [*fired["alerts"],
                                              {"rule": "duration > 60", "message": "d"}]})
    assert "ALERT \u00d72" in two and "rows &lt; 1000: rows = 5 &lt; 1000\nduration" in two
    assert render.alert_badge_html({"alerts": None}) == ""
    assert render.alert_badge_html({"alerts": []}) == render.alert_badge_html({}) == ""
