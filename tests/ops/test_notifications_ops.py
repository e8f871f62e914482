"""Notification settings and the outbox through the operations, once on the store
(``Operations``) and once through a real Jupyter server (``RestClient``): destination
URLs are secrets (masked in every answer, write-only: a masked value sent back keeps the
URL it stands for), a URL Apprise does not know or a private host is refused naming the
field with nothing stored, and ``notifications`` lists deliveries of the jobs the caller
may read. No test here sends anything: the URLs are literal public addresses of jobs
that never run, or Slack tokens."""

from __future__ import annotations

import os
import uuid

import pytest

from hermes_cron_ext.domain.access import Viewer
from hermes_cron_ext.errors import InvalidInput, NotFound
from hermes_cron_ext.ops import Operations, RestClient
from hermes_cron_ext.processes import hostname
from hermes_cron_ext.runtime.notify import Planner
from hermes_cron_ext.store import open_store

pytest_plugins = ("tests.notebook_fixtures",)

SMTP = "mailto://ops:s3cret-pass@93.184.216.34?to=ops@example.com&from=cron@example.com"
HOOK = "json://hook-user:hook-pass@93.184.216.34:8080/hooks/T0KEN123?x=1"
SLACK = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"
SECRETS = ("s3cret-pass", "hook-pass", "T0KEN123", "TIiajkdnlazkcOXrIdevi7FQ")


@pytest.fixture(params=["local", "rest"])
def ops(request, cron_server):
    client = (Operations(cron_server.db, allow_private_urls=False)
              if request.param == "local" else RestClient(cron_server.url, cron_server.token))
    yield client
    client.close()


@pytest.fixture
def name(ops):
    job = f"notify-{uuid.uuid4().hex[:8]}"
    yield job
    try:
        ops.remove(job)
    except NotFound:
        pass


def _stored(db: str, name: str) -> list[str]:
    """The job's destinations as the store keeps them (what a sender reads)."""
    store = open_store(db)
    try:
        return store.get_job(name).policy.notify
    finally:
        store.close()


def _no_secret(answer) -> None:
    text = repr(answer)
    for secret in SECRETS:
        assert secret not in text, f"{secret} shown in {text[:300]}"


def test_destinations_are_masked_in_every_answer_and_write_only(ops, name, cron_server):
    job = ops.add({"name": name, "schedule": "@yearly", "command": "true",
                   "notify": [SMTP, HOOK], "notify_on": "failure,late",
                   "late_after": "30m"})
    assert job["policy"]["notify_on"] == ["failure", "late"]
    assert job["policy"]["late_after"] == 1800
    shown = job["policy"]["notify"]
    assert shown[0].startswith("mailto://…@93.184.216.34") and shown[1].startswith(
        "json://…@93.184.216.34:8080/…")
    assert shown[0] != shown[1]
    for answer in (job, ops.job(name), ops.jobs()):
        _no_secret(answer)
    assert _stored(cron_server.db, name) == [SMTP, HOOK]
    # a form sends back what it was shown: the masked values keep their URLs
    again = ops.edit(name, {"notify": [*shown, SLACK], "retries": 1})
    _no_secret(again)
    assert _stored(cron_server.db, name) == [SMTP, HOOK, SLACK]
    # an edit of something else leaves them; one left out is gone; [] clears
    ops.edit(name, {"description": "x"})
    assert _stored(cron_server.db, name) == [SMTP, HOOK, SLACK]
    ops.edit(name, {"notify": [shown[1]]})
    assert _stored(cron_server.db, name) == [HOOK]
    assert ops.edit(name, {"notify": []})["policy"]["notify"] == []
    assert _stored(cron_server.db, name) == []


@pytest.mark.parametrize(("notify", "said"), [
    (["nope://x"], "is not a notification URL Apprise knows"),
    (["json://127.0.0.1:9/x"], "127.0.0.1 is a loopback, private or link-local address"),
    (["ntfy://10.1.2.3/topic"], "10.1.2.3 is a loopback, private or link-local address"),
    # e-mail's SMTP server is checked, not only the address's domain
    ([f"{SMTP}&smtp=127.0.0.1"], "127.0.0.1 is a loopback"),
    (["not a url"], "is not a URL such as"),
])
def test_a_bad_destination_is_refused_naming_it_and_nothing_is_stored(ops, name,
                                                                     cron_server, notify,
                                                                     said):
    ops.add({"name": name, "schedule": "@yearly", "command": "true", "notify": [HOOK]})
    with pytest.raises(InvalidInput, match="notify") as err:
        ops.edit(name, {"notify": notify})
    assert said in str(err.value)
    assert "hook-pass" not in str(err.value) and "s3cret" not in str(err.value)
    assert _stored(cron_server.db, name) == [HOOK]
    with pytest.raises(InvalidInput, match=said.split(" ")[0]):
        ops.add({"name": f"{name}-2", "schedule": "@yearly", "command": "true",
                 "notify": notify})
    with pytest.raises(NotFound):
        ops.job(f"{name}-2")


@pytest.mark.parametrize(("fields", "said"), [
    ({"notify_on": "failure,sometimes"}, "notify_on: 'sometimes' is not an event"),
    ({"late_after": "soon"}, "invalid duration 'soon'"),
    ({"late_after": -5}, "late_after"),
])
def test_bad_notify_on_and_late_after_are_refused(ops, name, fields, said):
    ops.add({"name": name, "schedule": "@yearly", "command": "true"})
    with pytest.raises(InvalidInput, match=said):
        ops.edit(name, fields)
    job = ops.job(name)
    assert job["policy"]["late_after"] is None
    assert "late" in job["policy"]["notify_on"]


def test_the_outbox_lists_each_delivery_of_the_jobs_a_user_may_read(real_store):
    """Deliveries planned from two users' failing runs: each sees their own; the admin
    and the store's own user see all, with counts; filters and pages; bad ones are 400s."""
    real_store.register_ticker("daemon", hostname(), os.getpid())
    ops = Operations(real_store)
    alice, bob = Viewer("alice"), Viewer("bob")
    real_store.plan_deliveries(lambda events: [])  # the notify cursor starts here
    runs = {}
    for who in (alice, bob):
        mine = ops.as_user(who)
        mine.create({"name": "etl", "schedule": "@yearly", "command": "false",
                     "notify": [SLACK, HOOK]})
        for _ in range(3):
            run = mine.run_now("etl")
            real_store.finish_run(run["id"], "failed", 1, "exit 1")
            runs.setdefault(who.name, []).append(run["id"])
    planner = Planner(real_store, public_url="http://127.0.0.1:8888/")
    assert real_store.plan_deliveries(planner.plan) == 12  # 6 failures x 2 destinations
    assert real_store.plan_deliveries(planner.plan) == 0

    seen = ops.as_user(alice).notifications(limit=4)
    assert "counts" not in seen  # a user's list says nothing of others' deliveries
    assert [n["run_id"] for n in seen["notifications"]] == [
        r for r in reversed(runs["alice"]) for _ in range(2)][:4]
    rest = ops.as_user(alice).notifications(limit=4, cursor=seen["cursor"])
    assert len(rest["notifications"]) == 2 and rest["cursor"] is None
    for n in seen["notifications"] + rest["notifications"]:
        assert n["job"] == "etl" and n["event"] == "failure" and n["status"] == "pending"
        assert n["title"] == "hermes-cron: etl failed" and n["attempts"] == 0
        assert n["destination"].startswith(("slack://T…", "json://…@93.184.216.34"))
    _no_secret(seen)
    assert {n["run_id"] for n in ops.as_user(bob).notifications()["notifications"]} == set(
        runs["bob"])
    with pytest.raises(NotFound):
        ops.as_user(bob).notifications("etl" if False else runs["alice"][0])
    everyone = ops.as_user(Viewer("root", admin=True)).notifications(limit=500)
    assert len(everyone["notifications"]) == 12 and everyone["counts"] == {"pending": 12}
    assert ops.notifications(status="sent")["notifications"] == []
    with pytest.raises(InvalidInput, match="status must be one of"):
        ops.notifications(status="lost-in-the-mail")
    with pytest.raises(InvalidInput, match="limit"):
        ops.notifications(limit=0)
    with pytest.raises(InvalidInput, match="cursor"):
        ops.notifications(cursor="abc")
