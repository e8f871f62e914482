"""Notifications that arrive, end to end with real parts: ``hermes-cron daemon`` and
``hermes-cron tick`` processes on one store, a real SMTP server (aiosmtpd), a local HTTP
sink for Apprise's ``json://`` posts, a destination that answers 503 and then recovers,
kill -9 of a ticker, two tickers on one store, late slots and the private-address guard.

Every message is counted per run at its destination: "once" means exactly once."""

from __future__ import annotations

import email
import email.policy
import json
import re
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from hermes_cron_ext.runtime.notify import Notifier
from hermes_cron_ext.store import open_store
from tests.conftest import CLI, make_job, wait_for

#: real daemons, kill -9, a real SMTP server: `make delivery` (.ci/run runs it)
pytestmark = pytest.mark.delivery

PUBLIC = "https://lab.example.com/user/alice/"


class Sink:
    """A local HTTP endpoint: records every request (path, JSON body, the status it
    answered) and answers ``status`` (200 unless a test says otherwise)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status = 200
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                code = sink.status
                sink.requests.append({"path": self.path, "body": json.loads(raw or b"null"),
                                      "status": code, "at": time.time()})
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def json_url(self, path: str = "/hook") -> str:
        """Apprise's JSON service posting here."""
        return f"json://127.0.0.1:{self.port}{path}"

    def delivered(self) -> list[dict]:
        """What it accepted (answered below 300)."""
        return [r for r in list(self.requests) if r["status"] < 300]

    def per_run(self) -> Counter:
        """Accepted messages per run id (Apprise's body line ``Run: ...``; the legacy
        webhook's ``run_id``)."""
        return Counter(run_of(r["body"]) for r in self.delivered())

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def run_of(body: dict) -> str | None:
    if "run_id" in body:
        return body["run_id"]
    m = re.search(r"^Run: (\S+)$", body.get("message") or "", re.M)
    return m.group(1) if m else None


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.close()


@pytest.fixture
def smtp():
    """A real SMTP server on 127.0.0.1 (no TLS, no login), collecting envelopes."""

    class Handler:
        def __init__(self):
            self.envelopes: list = []

        async def handle_DATA(self, server, session, envelope):
            self.envelopes.append(envelope)
            return "250 OK"

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    handler = Handler()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    controller.envelopes = handler.envelopes  # type: ignore[attr-defined]
    yield controller
    controller.stop()


@pytest.fixture
def db(cli):
    """The store the CLI and the daemons use, opened here too (polled by the test)."""
    s = open_store(cli.db)
    yield s
    s.close()


def daemon(cli: CLI, **env: str) -> subprocess.Popen:
    """A ``hermes-cron daemon`` on the test's store, registered; *env* on top."""
    saved = cli.env
    cli.env = {**saved, **env}
    try:
        return cli.daemon()
    finally:
        cli.env = saved


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, as an operator stops it (it sends what is due first)."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


def kill9(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(10)


def start_run(cli: CLI, job: str) -> str:
    out = cli("run", job).stdout
    m = re.search(r"\brun (r_\w+)", out)
    assert m, out
    return m.group(1)


def status_of(db, run_id: str) -> str:
    return db.get_run(run_id).status


def deliveries(cli: CLI, *args: str) -> list[dict]:
    return cli.json("notifications", *args)["notifications"]


def all_sent(db, n: int) -> bool:
    return db.delivery_counts() == {"sent": n}


def next_slot(every: float) -> float:
    """The next slot of ``@every EVERY`` (slots at multiples of it since the epoch)."""
    return (int(time.time() // every) + 1) * every


def iso_second(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S")


# -- 1. json:// to a local HTTP sink, through a daemon ----------------------------------

def test_a_failed_run_posts_one_json_message_with_everything(cli, sink, db):
    d = daemon(cli, HERMES_CRON_PUBLIC_URL=PUBLIC)
    cli("add", "boom", "@yearly", "--notify", sink.json_url(), "--",
        "echo first line; echo the last words; exit 3")
    run_id = start_run(cli, "boom")
    wait_for(sink.delivered, 20, what="the failure message")
    wait_for(lambda: all_sent(db, 1), 10, what="the delivery recorded as sent")
    stop(d)

    (post,) = sink.requests
    assert post["path"] == "/hook" and post["status"] == 200
    body = post["body"]
    assert body["title"] == "hermes-cron: boom failed"
    assert body["type"] == "failure"
    text = body["message"]
    for line in ("Job: boom", f"Run: {run_id}", "Status: failed (exit code 3)",
                 "Reason: exit code 3",
                 f"See it: {PUBLIC}lab?hermes-cron-run={run_id}"):
        assert line in text.splitlines(), (line, text)
    assert text.endswith("first line\nthe last words")  # the last lines of output

    (row,) = deliveries(cli)
    assert (row["event"], row["job"], row["run_id"], row["status"], row["attempts"]) == \
        ("failure", "boom", run_id, "sent", 1)
    assert row["destination"].startswith(f"json://127.0.0.1:{sink.port}/")
    listing = cli("notifications").stdout
    assert "boom" in listing and "SENT" in listing


# -- 2. mail through a real SMTP server -------------------------------------------------

def test_a_failed_run_sends_one_mail_to_a_real_smtp_server(cli, smtp, db):
    url = (f"mailto://127.0.0.1:{smtp.port}?from=cron@example.com&to=ops@example.com")
    d = daemon(cli)
    cli("add", "mailer", "@yearly", "--notify", url, "--", "echo disk full; exit 2")
    run_id = start_run(cli, "mailer")
    wait_for(lambda: smtp.envelopes, 20, what="the mail")
    wait_for(lambda: all_sent(db, 1), 10, what="the delivery recorded as sent")
    stop(d)

    (envelope,) = smtp.envelopes
    assert envelope.mail_from == "cron@example.com"
    assert envelope.rcpt_tos == ["ops@example.com"]
    mail = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert mail["Subject"] == "hermes-cron: mailer failed"
    part = mail.get_body(("plain", "html"))
    assert part is not None
    text = part.get_content()
    for words in ("Job: mailer", f"Run: {run_id}", "Status: failed (exit code 2)",
                  "disk full"):
        assert words in text, (words, text)
    (row,) = deliveries(cli)
    assert row["status"] == "sent" and row["destination"].startswith("mailto://")


# -- 3. a destination that answers 503, then recovers -----------------------------------

def test_a_destination_answering_503_then_recovering_gets_each_message_once(
        cli, sink, real_store):
    store = real_store  # the CLI's store (one file), a sender here with short retries
    notifier = Notifier(store, allow_private_urls=True, first_delay=0.2)
    sink.status = 503
    try:
        notifier.pump()  # the cursor starts here, as a ticker's first pass sets it
        make_job(store, "flaky", schedule="@yearly", notify=[sink.json_url()])
        runs = []
        for _ in range(3):
            run = store.request_run("flaky")
            store.finish_run(run.id, "failed", 1, "exit code 1")
            runs.append(run.id)
        notifier.pump()  # (its own thread may plan them first: the outbox is what counts)
        assert len([r for r in deliveries(cli) if r["run_id"] in runs]) == 3

        def refused_twice():
            rows = deliveries(cli)
            first = [r for r in rows if r["run_id"] == runs[0]][0]
            return (first["attempts"] >= 2 and first["status"] in ("pending", "sending")
                    and "503" in (first["last_error"] or "")) and rows
        rows = wait_for(refused_twice, 20, what="two tries answered 503, in the listing")
        # the destination's later messages wait behind its first: none was tried yet
        assert [r["attempts"] for r in rows if r["run_id"] != runs[0]] == [0, 0]
        assert notifier.failed == 0

        sink.status = 200  # the destination recovers
        wait_for(lambda: len(sink.delivered()) == 3, 20, what="the three messages")
        wait_for(lambda: all_sent(store, 3), 10, what="all three recorded as sent")
    finally:
        notifier.close()
    assert sink.per_run() == Counter({r: 1 for r in runs})
    assert [run_of(r["body"]) for r in sink.delivered()] == runs  # in order
    refused = [r for r in sink.requests if r["status"] == 503]
    assert len(refused) >= 2 and {run_of(r["body"]) for r in refused} == {runs[0]}
    rows = {r["run_id"]: r for r in deliveries(cli)}
    assert rows[runs[0]]["attempts"] == len(refused) + 1
    assert [rows[r]["attempts"] for r in runs[1:]] == [1, 1]
    assert all(rows[r]["status"] == "sent" and rows[r]["last_error"] is None for r in runs)


# -- 4. kill -9 of the daemon -----------------------------------------------------------

def test_kill9_of_the_daemon_during_a_run_still_notifies_once(cli, sink, db):
    d1 = daemon(cli)
    cli("add", "slow", "@yearly", "--notify", sink.json_url(), "--",
        "sleep 1; echo gave up; exit 4")
    run_id = start_run(cli, "slow")
    wait_for(lambda: status_of(db, run_id) == "running", 20, what="the run to start")
    kill9(d1)
    # the run's supervisor is its own process: it records the failure with no ticker
    wait_for(lambda: status_of(db, run_id) == "failed", 20, what="the run to fail")
    assert sink.requests == [] and db.delivery_counts() == {}  # nobody planned it yet

    d2 = daemon(cli)
    wait_for(lambda: all_sent(db, 1), 20, what="the next daemon to send it")
    stop(d2)
    assert sink.per_run() == Counter({run_id: 1})
    assert len(sink.requests) == 1


def test_kill9_of_the_daemon_right_after_a_run_ends_still_notifies_once(cli, sink, db):
    d1 = daemon(cli)
    cli("add", "quick", "@yearly", "--notify", sink.json_url(), "--", "exit 5")
    run_id = start_run(cli, "quick")
    wait_for(lambda: status_of(db, run_id) == "failed", 20, interval=0.005,
             what="the run to fail")
    kill9(d1)  # planned or not, sent or not: the outbox says

    d2 = daemon(cli)
    wait_for(lambda: all_sent(db, 1), 20, what="the delivery sent")
    stop(d2)
    assert sink.per_run() == Counter({run_id: 1})
    assert len(sink.requests) == 1


# -- 5. two daemons on one store --------------------------------------------------------

def test_two_daemons_on_one_store_deliver_each_notification_once(cli, sink, db):
    d1, d2 = daemon(cli), daemon(cli)
    names = [f"every-{i}" for i in range(20)]
    for name in names:  # all on one @every slot: they fail at the same instants
        make_job(db, name, schedule="@every 2s", command="exit 1", max_failures=0,
                 notify=[sink.json_url()], notify_on=["failure"])

    def failed() -> list[str]:
        return [r[0] for r in db.db.execute(
            "SELECT id FROM runs WHERE status = 'failed'").fetchall()]
    wait_for(lambda: len(failed()) >= 40, 30, what="two slots of 20 failures")
    for name in names:
        db.set_paused(name, True)
    wait_for(lambda: not db.active_runs(), 20, what="the runs in flight to end")
    runs = failed()
    wait_for(lambda: all_sent(db, len(runs)), 30, what="every failure's delivery sent")
    assert d1.poll() is None and d2.poll() is None
    stop(d1)
    stop(d2)
    assert sink.per_run() == Counter({r: 1 for r in runs})
    assert len(sink.requests) == len(runs)


# -- 6. late slots ----------------------------------------------------------------------

def test_tick_raises_late_for_a_slot_no_ticker_fired_once(cli, sink, db):
    """No daemon: the operator's default destination (HERMES_CRON_NOTIFY) gets the late
    slot when a ``hermes-cron tick`` comes after it; the next tick raises nothing more
    (the job's next slot is not late yet)."""
    cli.env["HERMES_CRON_NOTIFY"] = sink.json_url("/ops")
    cli.env["HERMES_CRON_NOTIFY_ON"] = "late"
    cli("add", "nightly", "@every 4s", "--late-after", "1s", "--", "exit 1")
    (slot,) = db.db.execute("SELECT slot FROM late_watch").fetchone()
    assert slot >= time.time() - 1  # its first slot is the next one
    wait_for(lambda: time.time() > slot + 1.1, 10, what="the slot to be 1 s late")
    cli("tick")  # sends what is due before it returns
    assert len(sink.requests) == 1, [r["body"]["message"] for r in sink.requests]
    (post,) = sink.requests
    assert post["path"] == "/ops" and post["status"] == 200
    body = post["body"]
    assert body["title"] == "hermes-cron: nightly is late"
    assert body["type"] == "warning"
    assert f"Slot: {iso_second(slot)}" in body["message"]
    assert "No successful run within 1 s of its slot" in body["message"]

    cli("tick")
    assert time.time() < slot + 5  # (before the next slot is late)
    assert len(sink.requests) == 1, [r["body"]["message"] for r in sink.requests]
    (row,) = deliveries(cli)
    assert (row["event"], row["job"], row["status"]) == ("late", "nightly", "sent")
    late = db.db.execute("SELECT COUNT(*) FROM events WHERE type = 'run.late'").fetchone()
    assert late[0] == 1


def test_a_daemon_tells_a_long_run_late_once_while_it_goes_on(cli, sink, db):
    d = daemon(cli)
    cli("add", "long", "@every 4s", "--late-after", "1s", "--notify", sink.json_url(),
        "--notify-on", "late,succeeded", "--", "sleep 2.5; echo made it")
    late = wait_for(sink.delivered, 20, what="the late message")[0]["body"]
    assert late["title"] == "hermes-cron: long is late"
    run_id = run_of(late)
    assert run_id is not None
    assert status_of(db, run_id) == "running"  # told while it goes on
    assert "Status: running" in late["message"]
    assert "Reason: its run is still running" in late["message"]

    wait_for(lambda: len(sink.delivered()) == 2, 20, what="the success message")
    db.set_paused("long", True)  # no next slot
    assert status_of(db, run_id) == "succeeded"
    stop(d)
    titles = [r["body"]["title"] for r in sink.requests]
    assert titles == ["hermes-cron: long is late", "hermes-cron: long succeeded"]
    assert sink.per_run() == Counter({run_id: 2})


# -- 7. the private-address guard -------------------------------------------------------

def test_a_daemon_refuses_a_jobs_private_destinations(cli, sink, db):
    """A job stored with destinations on 127.0.0.1 (past the API's check, as an older
    version or a direct write could leave it) sends nothing there when the daemon does
    not allow private addresses; the operator's own destination is not a job's and may."""
    make_job(db, "sneaky", schedule="@yearly", command="exit 1",
             notify=[sink.json_url("/apprise")], notify_url=f"{sink.url}/webhook")
    d = daemon(cli, HERMES_CRON_ALLOW_PRIVATE_URLS="0",
               HERMES_CRON_NOTIFY=sink.json_url("/operator"))
    run_id = start_run(cli, "sneaky")
    wait_for(lambda: db.delivery_counts() == {"failed": 2, "sent": 1}, 20,
             what="the job's two refused and the operator's sent")
    stop(d)

    assert [r["path"] for r in sink.requests] == ["/operator"]
    rows = {r["channel"]: r for r in deliveries(cli)}
    for channel in ("apprise", "webhook"):
        row = rows[channel]
        assert (row["run_id"], row["status"], row["attempts"]) == (run_id, "failed", 1)
        assert "127.0.0.1" in row["last_error"]
        assert re.search(r"loopback, private or link-local|not a public address",
                         row["last_error"]), row["last_error"]
    listing = cli("notifications", "sneaky").stdout
    assert "FAILED" in listing and "loopback" in listing
