"""``hermes-cron add/edit/show --notify/--notify-on/--late-after`` and ``hermes-cron
notifications`` (a real CLI process on a store), and ``%cron notifications`` (IPython's
own shell): destinations shown masked everywhere, the outbox as a table with each
delivery's status, tries and last error, the ops answer as JSON, one line for what is
wrong. Deliveries are planned and tried here by a real Notifier against a local sink."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hermes_cron_ext.runtime.notify import Notifier
from hermes_cron_ext.store import SQLiteStore
from tests.conftest import wait_for
from tests.frontends.test_magics import Cell, cell, db, ip  # noqa: F401 (fixtures)

pytest_plugins = ("tests.notebook_fixtures",)

SECRET = "hunter2-password"


class Sink:
    """A local HTTP endpoint answering *status* to every POST, counting them."""

    def __init__(self, status: int = 200):
        self.status, self.bodies = status, []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                sink.bodies.append(json.loads(self.rfile.read(
                    int(self.headers["Content-Length"]))))
                self.send_response(sink.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sinks():
    made: list[Sink] = []
    yield lambda status=200: made.append(Sink(status)) or made[-1]
    for sink in made:
        sink.close()


def failed_runs(path: str, name: str, n: int) -> None:
    """*n* failed runs of job *name*, and their deliveries planned and tried (a sender
    with a short retry delay, closed after)."""
    store = SQLiteStore(path)
    notifier = Notifier(store, allow_private_urls=True, first_delay=60.0)
    try:
        notifier.pump()  # the notify cursor starts before these runs
        for _ in range(n):
            run = store.request_run(name)
            store.finish_run(run.id, "failed", 2, "exit 2")
        notifier.pump()
        wait_for(lambda: not store.due_queues(time.time()) and not notifier._workers, 10,
                 what="every delivery tried once")
    finally:
        notifier.close()
        store.close()


def test_cli_settings_masked_and_the_outbox_table(cli, sinks):
    ok, down = sinks(200), sinks(503)
    good = f"json://ops:{SECRET}@127.0.0.1:{ok.port}/hook"
    bad = f"json://127.0.0.1:{down.port}/down"
    cli.env["HERMES_CRON_ALLOW_PRIVATE_URLS"] = "1"
    added = cli("add", "etl", "@yearly", "--notify", good, "--notify", bad,
                "--notify-on", "failure,late", "--late-after", "30m", "--", "false")
    assert SECRET not in added.stdout
    shown = cli.json("show", "etl")
    assert shown["policy"]["notify_on"] == ["failure", "late"]
    assert shown["policy"]["late_after"] == 1800
    assert shown["policy"]["notify"][0].startswith(f"json://…@127.0.0.1:{ok.port}/…#")
    assert SECRET not in cli("show", "etl").stdout + json.dumps(shown)

    failed_runs(cli.db, "etl", 2)
    assert len(ok.bodies) == 2 and {b["title"] for b in ok.bodies} == {
        "hermes-cron: etl failed"}
    table = cli("notifications").stdout
    assert SECRET not in table
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["WHEN", "EVENT", "JOB", "RUN"]
    rows = [line for line in lines[1:] if " etl " in line]
    assert len(rows) == 4
    assert sum("SENT" in r for r in rows) == 2
    # the dead destination's first message failed and waits for its retry; the one
    # behind it waits its turn (one destination's messages stay in order)
    assert sum("PENDING (retrying)" in r and "503" in r for r in rows) == 1
    assert lines[-1] == "outbox: 2 pending, 2 sent, 0 failed"
    answer = cli.json("notifications", "etl", "--status", "pending")
    first, second = sorted(answer["notifications"], key=lambda n: n["id"])
    assert first["attempts"] == 1 and "error=503" in first["last_error"]
    assert first["next_attempt_at"] and second["attempts"] == 0
    assert "counts" not in answer  # one job's list: the store's counts are not its own
    assert cli.json("notifications")["counts"] == {"pending": 2, "sent": 2}
    page = cli.json("notifications", "--limit", "3")
    assert len(page["notifications"]) == 3 and page["cursor"]
    more = cli.json("notifications", "--limit", "3", "--cursor", page["cursor"])
    assert len(more["notifications"]) == 1 and more["cursor"] is None

    # bad input: one line each, nothing changed
    for args, said in ((("notifications", "--status", "lost"), "status must be one of"),
                       (("notifications", "nope"), "nope"),
                       (("edit", "etl", "--notify-on", "failure,someday"),
                        "'someday' is not an event"),
                       (("edit", "etl", "--notify", "nope://x"),
                        "not a notification URL Apprise knows")):
        bad_run = cli(*args, check=False)
        assert bad_run.returncode != 0
        assert bad_run.stderr.count("\n") == 1 and said in bad_run.stderr, bad_run.stderr
    assert cli.json("show", "etl")["policy"]["notify_on"] == ["failure", "late"]
    # --notify '' clears them
    cli("edit", "etl", "--notify", "")
    assert cli.json("show", "etl")["policy"]["notify"] == []


def test_cron_notifications_html_and_text(cell, db, monkeypatch, sinks):  # noqa: F811
    sink = sinks(200)
    monkeypatch.setenv("HERMES_CRON_ALLOW_PRIVATE_URLS", "1")
    cell.ok(f"%cron add report @yearly --notify json://u:{SECRET}@127.0.0.1:{sink.port}/x "
            f"-- false")
    failed_runs(db.path, "report", 1)
    out = cell.ok("%cron notifications")
    assert "failure" in out and "report" in out and "SENT" in out and SECRET not in out
    shown = []
    monkeypatch.setattr("hermes_cron_ext.frontends.magics.display", shown.append)
    cell.ok("%cron notifications report")
    html = shown[-1]._repr_html_()
    assert html.startswith("<table class='hermes-cron-notifications'")
    assert "data-status='sent'" in html and SECRET not in html
    cell.fails("%cron notifications --status nope", "status must be one of")
