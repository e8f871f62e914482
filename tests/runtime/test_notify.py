"""notify.py's sender on the outbox: real local HTTP endpoints, one worker per
destination, and what a stopping sender leaves for the next one.

The deliveries come the way a ticker makes them: jobs with destinations, failed runs in
the store's event log, :meth:`Notifier.pump` planning them into the outbox."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import apprise  # noqa: F401  (imported here, so its 0.2 s import is not in a timing)

from hermes_cron_ext.runtime.notify import Notifier
from tests.conftest import make_job, wait_for


class _Receiver:
    """Records (path, JSON body, arrival time) of every request it accepts; answers
    ``status`` (200; any other is recorded in ``refused``)."""

    def __init__(self, port: int = 0):
        got = self.got = []
        refused = self.refused = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _ok(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver.status
                (got if status < 300 else refused).append(
                    (self.path, json.loads(raw) if raw else None, time.monotonic()))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            do_GET = do_POST = _ok

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self) -> list[str]:
        return [p for p, _, _ in self.got]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _dead_socket() -> socket.socket:
    """Accepts connections (the kernel does) and never answers: each try times out."""
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(64)
    return dead


def _fail(store, job: str) -> str:
    """One failed run of *job* (its run.finished event): the run's id."""
    run = store.request_run(job)
    store.finish_run(run.id, "failed", 3, "exit code 3")
    return run.id


def _run_of(body: dict) -> str | None:
    """The run a message is about: the webhook's ``run_id``, or Apprise's body line."""
    if "run_id" in body:
        return body["run_id"]
    for line in body["message"].splitlines():
        if line.startswith("Run: "):
            return line[5:]
    return None


def _join(notifier: Notifier, timeout: float = 10.0) -> None:
    """Wait for the worker threads a closed notifier left (stuck on a dead socket)."""
    for worker in list(notifier._workers.values()):
        worker.join(timeout)
        assert not worker.is_alive()


def test_a_dead_destination_does_not_delay_another_and_each_stays_in_order(real_store):
    store = real_store
    dead = _dead_socket()
    receiver = _Receiver()
    notifier = Notifier(store, allow_private_urls=True, timeout=5.0, first_delay=0.2)
    try:
        notifier.pump()  # a ticker's first pass: the cursor starts here
        dead_url = f"http://127.0.0.1:{dead.getsockname()[1]}"
        for i in range(4):  # dead destinations first: their workers start first
            make_job(store, f"dead-{i}", schedule="@yearly", notify_url=f"{dead_url}/hook-{i}",
                     notify=[f"json://127.0.0.1:{dead.getsockname()[1]}/apprise-{i}"])
            for _ in range(2):
                _fail(store, f"dead-{i}")
        make_job(store, "live", schedule="@yearly", notify_url=f"{receiver.url}/hook",
                 notify=[f"json://127.0.0.1:{receiver.port}/apprise"])
        runs = [_fail(store, "live") for _ in range(3)]
        started = time.monotonic()
        notifier.pump()  # (its own thread may plan some first: the outbox is what counts)
        assert len(store.list_deliveries(limit=500).items) == 4 * 2 * 2 + 3 * 2
        wait_for(lambda: len(receiver.got) == 6, 10, what="the live job's six messages")
        # none waited for a dead destination's timeout (5 s, and Apprise's 4 s)
        assert max(at for _, _, at in receiver.got) - started < 2.0
        # one destination's messages arrive in the order of their events
        for path in ("/hook", "/apprise"):
            assert [_run_of(body) for p, body, _ in receiver.got if p == path] == runs
        assert all(body["title"] == "hermes-cron: live failed"
                   for p, body, _ in receiver.got if p == "/apprise")
        assert [body["event"] for p, body, _ in receiver.got if p == "/hook"] == ["failed"] * 3
        # the dead ones are being tried (or will be again), not given up
        assert notifier.failed == 0
        rows = store.list_deliveries(limit=100).items
        assert {r["status"] for r in rows if r["job"] != "live"} <= {"pending", "sending"}
        assert {r["status"] for r in rows if r["job"] == "live"} == {"sent"}
    finally:
        dead.close()  # the stuck tries end at once (connection reset)
        notifier.close()
        _join(notifier)
        receiver.close()


def test_a_stopping_sender_does_not_hang_and_the_next_sends_what_it_left(real_store):
    """A ticker stopping while its sender is stuck on a dead destination goes in about
    the time it was given; the deliveries it held are due again at once, and the next
    sender (here, of the same process) sends each of them once, in order."""
    store = real_store
    dead = _dead_socket()
    port = dead.getsockname()[1]
    receiver = None
    stuck = Notifier(store, allow_private_urls=True, timeout=5.0)
    after = None
    try:
        stuck.pump()
        make_job(store, "job", schedule="@yearly", notify_url=f"http://127.0.0.1:{port}/hook")
        runs = [_fail(store, "job") for _ in range(2)]
        stuck.pump()  # (its own thread may plan them first: the outbox is what counts)
        assert len(store.list_deliveries().items) == 2
        wait_for(lambda: store.list_deliveries(status="sending").items, 10,
                 what="the sender to take the dead destination's deliveries")

        started = time.monotonic()
        assert stuck.close(wait=0.5) == 1  # one destination has deliveries waiting
        assert time.monotonic() - started < 1.5
        rows = store.list_deliveries().items
        assert [(r["status"], r["attempts"]) for r in rows] == [("pending", 0)] * 2

        # the destination comes back (on the same port); the next sender sends both
        dead.close()
        receiver = _Receiver(port)
        after = Notifier(store, allow_private_urls=True, timeout=5.0)
        after.pump()  # nothing new to plan: the outbox holds them
        assert len(store.list_deliveries().items) == 2
        wait_for(lambda: len(receiver.got) == 2, 10, what="the two messages left")
        assert [body["run_id"] for _, body, _ in receiver.got] == runs
        _join(stuck)  # the stuck try ended: it records nothing on rows no longer its own
        after.close(wait=2.0)
        assert len(receiver.got) == 2
        rows = store.list_deliveries().items
        assert [(r["status"], r["attempts"], r["last_error"]) for r in rows] == \
            [("sent", 1, None)] * 2
    finally:
        dead.close()
        stuck.close()
        _join(stuck)
        if after is not None:
            after.close()
        if receiver is not None:
            receiver.close()


def test_a_destination_waiting_for_a_retry_keeps_its_order_and_holds_no_stop(real_store):
    """A new message for a destination whose first one waits for its retry goes after
    it, not before; and a stopping sender does not wait for that retry."""
    store = real_store
    receiver = _Receiver()
    receiver.status = 503
    notifier = Notifier(store, allow_private_urls=True, first_delay=0.3)
    try:
        notifier.pump()
        make_job(store, "job", schedule="@yearly", notify_url=f"{receiver.url}/hook")
        first = _fail(store, "job")
        notifier.pump()
        wait_for(lambda: receiver.refused, 10, what="the first try (503)")
        second = _fail(store, "job")  # planned while the first waits for its retry
        notifier.pump()
        wait_for(lambda: len(receiver.refused) >= 3, 10, what="two retries of the first")
        assert {body["run_id"] for _, body, _ in receiver.refused} == {first}
        receiver.status = 200
        wait_for(lambda: len(receiver.got) == 2, 10, what="both messages")
        assert [body["run_id"] for _, body, _ in receiver.got] == [first, second]
    finally:
        notifier.close()

    receiver.status = 503
    slow = Notifier(store, allow_private_urls=True, first_delay=60.0)
    try:
        slow.pump()
        third = _fail(store, "job")
        slow.pump()
        wait_for(lambda: len(receiver.refused) >= 4, 10, what="the third message's try")
        fourth = _fail(store, "job")
        slow.pump()
        started = time.monotonic()
        slow.close(wait=10.0)  # the fourth is left for the next ticker, behind the third
        assert time.monotonic() - started < 2.0  # not the retry's minute, nor the 10 s
        assert receiver.refused[-1][1]["run_id"] == third
        assert fourth not in [body["run_id"] for _, body, _ in receiver.refused]
        rows = {r["run_id"]: r for r in store.list_deliveries().items}
        assert (rows[third]["status"], rows[third]["attempts"]) == ("pending", 1)
        assert (rows[fourth]["status"], rows[fourth]["attempts"]) == ("pending", 0)
    finally:
        slow.close()
        receiver.close()
