"""Notifications' pure policy (``domain/notifications.py``): which events are worth a
message, the pings, ``notify_on``, the retry delays, the output's last lines, the
message, the masked destinations; and the options ``--notify``, ``--notify-on`` and
``--late-after`` from the command line to a validated job."""

from __future__ import annotations

import argparse

import pytest

from hermes_cron_ext.domain import notifications as notes
from hermes_cron_ext.domain import options
from hermes_cron_ext.domain.jobspec import validate_changes, validate_new
from hermes_cron_ext.domain.models import Job
from hermes_cron_ext.errors import InvalidInput

BASE = {"name": "etl", "schedule": "@daily", "timezone": "UTC", "command": "true"}


# -- which events are notified ------------------------------------------------------------

@pytest.mark.parametrize(("event_type", "data", "kind"), [
    ("run.finished", {"status": "failed"}, "failure"),
    ("run.finished", {"status": "timed_out"}, "failure"),
    ("run.finished", {"status": "succeeded"}, "succeeded"),
    ("run.finished", {"status": "succeeded", "recovered": True}, "recovered"),
    ("run.finished", {"status": "cancelled"}, None),
    ("run.finished", {"status": "skipped"}, None),
    ("run.lost", {"status": "lost"}, "lost"),
    ("job.blocked", {"reason": "5 failures in a row"}, "blocked"),
    ("run.late", {"scheduled_for": "2027-01-15T08:00:00+00:00"}, "late"),
    ("run.alert", {"alerts": [{"rule": "rows < 1", "message": "rows 0"}]}, "alert"),
    ("run.recovered", {"rules": ["rows < 1"]}, "recovered"),
    ("run.started", {}, "started"),
    ("run.skipped", {"reason": "missed: no ticker ran at 2027-01-15T08:00:00Z"}, "missed"),
    ("run.skipped", {"reason": "deadline passed: 90 s late, starting deadline is 60 s"},
     "missed"),
    ("run.skipped", {"reason": "overlap: run r_1 is still running"}, None),
    ("run.skipped", {}, None),
    ("run.queued", {}, None),
    ("job.created", {"name": "etl"}, None),
    ("job.paused", {}, None),
])
def test_classify(event_type, data, kind):
    assert notes.classify(event_type, data) == kind


def test_every_kind_is_classified_and_the_opt_in_ones_are_off_by_default():
    assert set(notes.DEFAULT_ON) == set(notes.KINDS) - {"succeeded", "started"}
    assert not notes.wants(None, "succeeded") and notes.wants(None, "late")
    assert notes.wants(["succeeded"], "succeeded") and not notes.wants([], "failure")


@pytest.mark.parametrize(("event_type", "data", "suffix"), [
    ("run.started", {}, "/start"),
    ("run.finished", {"status": "succeeded"}, ""),
    ("run.finished", {"status": "failed"}, "/fail"),
    ("run.finished", {"status": "timed_out"}, "/fail"),
    ("run.lost", {}, "/fail"),
    ("run.finished", {"status": "cancelled"}, None),
    ("run.late", {}, None),
])
def test_ping_suffix(event_type, data, suffix):
    assert notes.ping_suffix(event_type, data) == suffix


# -- notify_on -------------------------------------------------------------------------

def test_parse_on_takes_a_list_or_a_text():
    assert notes.parse_on("failure,lost, late") == ["failure", "lost", "late"]
    assert notes.parse_on(["failed", "failure", "recovered"]) == ["failure", "recovered"]
    assert notes.parse_on("") == [] and notes.parse_on([]) == []


@pytest.mark.parametrize(("value", "named"), [
    ("failure,explosion", "'explosion' is not an event"),
    (["late", "Failure"], "'Failure' is not an event"),
    (3, "must be a list of events"),
    ([1], "must be a list of events"),
])
def test_parse_on_names_the_bad_item(value, named):
    with pytest.raises(ValueError, match=named) as err:
        notes.parse_on(value)
    assert str(err.value).startswith("notify_on")
    if "is not an event" in named:
        assert all(kind in str(err.value) for kind in notes.KINDS)


# -- retries and the output's last lines ---------------------------------------------------

def test_backoff_doubles_from_the_first_delay_up_to_the_cap():
    assert [notes.backoff(n) for n in range(1, 6)] == [5, 10, 20, 40, 80]
    assert notes.backoff(0) == 5
    assert notes.backoff(11) == notes.MAX_DELAY == 3600  # 5 * 2**10 = 5120, capped
    assert notes.backoff(500) == 3600  # no overflow
    assert [notes.backoff(n, first=0.5) for n in (1, 2, 3)] == [0.5, 1, 2]
    assert notes.backoff(3, first=1, cap=3) == 3


def test_tail_keeps_the_last_lines_and_characters():
    text = "".join(f"line {i}\n" for i in range(100))
    assert notes.tail(text).splitlines() == [f"line {i}" for i in range(80, 100)]
    assert notes.tail(text, lines=2) == "line 98\nline 99"
    assert notes.tail("x" * 10000) == "x" * notes.TAIL_BYTES
    assert notes.tail("a\n" + "b" * 50, limit=10) == "b" * 10
    assert notes.tail("") == "" and notes.tail("\n\n") == ""


# -- the message -----------------------------------------------------------------------

def test_run_link_points_at_the_run_in_jupyterlab():
    assert notes.run_link("https://hub.example.com/user/alice/", "r_1") == (
        "https://hub.example.com/user/alice/lab?hermes-cron-run=r_1")
    assert notes.run_link(None, "r_1") is None and notes.run_link("https://h/", None) is None


def test_compose_says_job_run_status_reason_rules_output_and_link():
    msg = notes.compose(
        "alert", job="etl", run_id="r_1", output="step 1\nstep 2 failed",
        link="https://h/lab?hermes-cron-run=r_1",
        data={"status": "failed", "exit_code": 3, "reason": "exit code 3: boom",
              "alerts": [{"rule": "rows < 1000", "message": "rows 12 < 1000"}]})
    assert msg["title"] == "hermes-cron: etl raised an alert" and msg["type"] == "warning"
    body = msg["body"]
    for part in ("Job: etl", "Run: r_1", "Status: failed (exit code 3)",
                 "Reason: exit code 3: boom", "Rule: rows < 1000: rows 12 < 1000",
                 "See it: https://h/lab?hermes-cron-run=r_1",
                 "Last lines of output:\nstep 1\nstep 2 failed"):
        assert part in body, part
    assert body.index("See it") < body.index("Last lines")


def test_compose_of_each_kind():
    late = notes.compose("late", job="etl", run_id=None, data={
        "scheduled_for": "2027-01-15T08:00:00+00:00", "late_after": 1800})
    assert late["title"] == "hermes-cron: etl is late" and late["type"] == "warning"
    assert "Slot: 2027-01-15T08:00:00+00:00" in late["body"]
    assert "No successful run within 30 min of its slot" in late["body"]
    assert "Run:" not in late["body"] and "Last lines" not in late["body"]
    back = notes.compose("recovered", job="etl", run_id="r_2", data={
        "status": "succeeded", "exit_code": 0, "rules": ["rows < 1000"]})
    assert back["type"] == "success" and "Passes again: rows < 1000" in back["body"]
    gone = notes.compose("failure", job=None, run_id="r_3", data={"status": "failed"},
                         output="   \n")
    assert gone["title"] == "hermes-cron: (deleted job) failed" and gone["type"] == "failure"
    assert "Last lines" not in gone["body"]
    assert notes.compose("started", job="etl", run_id="r", data={})["type"] == "info"
    for kind in notes.KINDS:
        assert notes.compose(kind, job="j", run_id="r", data={})["title"].startswith(
            "hermes-cron: j ")


# -- destinations as shown -----------------------------------------------------------------

SECRET_URLS = [
    "mailto://alice:hunter2@smtp.example.com?to=bob@example.com",
    "json://hooks.example.com:8443/secret/path?token=t0ps3cret",
    "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
    "tgram://123456789:AAHs3cr3t/987654",
    "ntfy://user:pa55@ntfy.example.com/topic-private",
    "jsons://u:p4ss@[2001:db8::1]:9000/x",
]


@pytest.mark.parametrize("url", SECRET_URLS)
def test_mask_url_hides_every_secret(url):
    shown = notes.mask_url(url)
    for secret in ("hunter2", "alice", "bob", "t0ps3cret", "secret/path", "A1BRTD4JD",
                   "TIiajk", "1JJ3", "AAHs3cr3t", "123456789", "pa55", "topic-private",
                   "p4ss", "user:", "?"):
        assert secret not in shown, (secret, shown)
    assert shown.split("://")[0] == url.split("://")[0]
    assert shown == notes.mask_url(url)  # stable


def test_mask_url_shows_the_host_and_tells_urls_apart():
    a = notes.mask_url("json://hooks.example.com:8443/a?token=1")
    b = notes.mask_url("json://hooks.example.com:8443/b?token=2")
    assert a.startswith("json://hooks.example.com:8443/…#") and a != b
    assert notes.mask_url("mailto://u:p@smtp.example.com").startswith(
        "mailto://…@smtp.example.com#")
    assert notes.mask_url("slack://T1JJ3T3L2/A/B").startswith("slack://T…/…#")
    assert notes.mask_url("json://localhost").startswith("json://localhost#")
    assert notes.mask_url("not a url") == "…"


def test_keep_masked_maps_a_shown_value_back_to_its_url():
    old = ["mailto://u:p@smtp.example.com?to=x@example.com", "json://hooks.example.com/a"]
    shown = [notes.mask_url(u) for u in old]
    new = "ntfy://ntfy.example.com/t"
    assert notes.keep_masked([shown[1], new], old) == [old[1], new]
    assert notes.keep_masked(shown, old) == old
    # a masked value of a URL the job never had stays as it is (and is no URL)
    stranger = notes.mask_url("json://elsewhere.example.com/x")
    assert notes.keep_masked([stranger], old) == [stranger]
    assert notes.keep_masked([], old) == []


# -- the options ---------------------------------------------------------------------------

def cli_fields(*argv: str) -> dict:
    parser = argparse.ArgumentParser()
    options.add_options(parser)
    return options.fields_from_options(parser.parse_args(list(argv)))


def test_the_flags_read_back_as_fields_and_validate():
    fields = cli_fields("--notify", "mailto://u:p@smtp.example.com", "--notify",
                        "json://hooks.example.com/x", "--notify-on", "failure, late,recovered",
                        "--late-after", "30m")
    assert fields == {"notify": ["mailto://u:p@smtp.example.com", "json://hooks.example.com/x"],
                      "notify_on": ["failure", "late", "recovered"], "late_after": "30m"}
    policy = validate_new({**BASE, **fields})["policy"]
    assert policy.notify == fields["notify"]
    assert policy.notify_on == ["failure", "late", "recovered"]
    assert policy.late_after == 1800
    assert cli_fields("--notify", "") == {"notify": []}
    assert cli_fields() == {}


def test_defaults_and_clearing():
    policy = validate_new(BASE)["policy"]
    assert policy.notify == [] and policy.late_after is None
    assert policy.notify_on == list(notes.DEFAULT_ON)
    job = Job(id="j_0000000000000001", name="etl", kind="command", schedule="@daily",
              timezone="UTC", command="true",
              policy=validate_new({**BASE, "notify": ["json://h.example.com/x?k=1"],
                                   "late_after": "1h"})["policy"])
    assert job.policy.late_after == 3600
    assert validate_changes(job, {"notify": ""})["policy"].notify == []
    assert validate_changes(job, {"notify": []})["policy"].notify == []
    assert validate_changes(job, {"late_after": None})["policy"].late_after is None
    # the masked value sent back keeps the URL it stands for
    masked = notes.mask_url("json://h.example.com/x?k=1")
    kept = validate_changes(job, {"notify": [masked, "ntfy://ntfy.example.com/t"]})
    assert kept["policy"].notify == ["json://h.example.com/x?k=1", "ntfy://ntfy.example.com/t"]


@pytest.mark.parametrize(("given", "field", "named"), [
    ({"notify_on": "failure,nope"}, "notify_on", "'nope' is not an event"),
    ({"notify_on": ["late", "exploded"]}, "notify_on", "'exploded' is not an event"),
    ({"notify": ["not a url"]}, "notify", "is not a URL"),
    ({"notify": ["json://h.example.com"] * (notes.MAX_DESTINATIONS + 1)}, "notify",
     f"at most {notes.MAX_DESTINATIONS}"),
    ({"late_after": "soon"}, "late_after", "invalid duration 'soon'"),
    ({"late_after": -5}, "late_after", "late_after"),
])
def test_bad_values_are_refused_naming_them(given, field, named):
    with pytest.raises(InvalidInput) as err:
        validate_new({**BASE, **given})
    assert err.value.field == field and named in err.value.message


def test_a_refused_url_is_shown_masked():
    with pytest.raises(InvalidInput) as err:
        validate_new({**BASE, "notify": ["mailto:alice:hunter2@smtp.example.com"]})
    assert "hunter2" not in err.value.message
