"""notify.py: deliveries to real local HTTP endpoints, one queue per destination."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hermes_cron_ext.runtime.notify import Notifier
from tests.conftest import wait_for


class _Receiver:
    """Records (path, arrival time) of every request."""

    def __init__(self):
        got = self.got = []

        class Handler(BaseHTTPRequestHandler):
            def _ok(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                got.append((self.path, time.monotonic()))
                self.send_response(204)
                self.end_headers()
            do_GET = do_POST = _ok

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_dead_webhook_does_not_delay_another_jobs_notifications():
    dead = socket.socket()  # accepts connections, never answers: each try times out
    dead.bind(("127.0.0.1", 0))
    dead.listen(16)
    receiver = _Receiver()
    notifier = Notifier(None, allow_private_urls=True, attempts=3, backoff=1.0, timeout=3.0)
    try:
        dead_url = f"http://127.0.0.1:{dead.getsockname()[1]}/hook"
        for i in range(4):  # enough to fill any fixed pool of workers
            notifier.submit(dead_url, {"n": i}, True)
            notifier.submit(f"{dead_url}-{i}", {"n": i}, True)
        sent = time.monotonic()
        notifier.submit(f"{receiver.url}/other-job", {"event": "failed"}, True)
        notifier.submit(f"{receiver.url}/ping", None, True)
        notifier.submit(f"{receiver.url}/ping/fail", None, True)
        wait_for(lambda: len(receiver.got) == 3, 10, what="the other job's messages")
        assert max(at for _, at in receiver.got) - sent < 1.0
        # one destination's messages stay in order: the ping, then its /fail
        assert [p for p, _ in receiver.got if p.startswith("/ping")] == ["/ping", "/ping/fail"]
        assert notifier.failed == 0  # the dead ones are still being retried
    finally:
        notifier.close()
        receiver.close()
        dead.close()


def test_a_stopping_ticker_sends_what_it_claimed_within_a_bound():
    """Claimed notifications are the stopping ticker's alone: it tries them before it
    goes (the next ticker would not), but a dead endpoint cannot hold the stop up."""
    receiver = _Receiver()
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(4)
    try:
        notifier = Notifier(None, allow_private_urls=True, attempts=1, timeout=2.0)
        notifier.submit(f"{receiver.url}/run-failed", {"event": "failed"}, True)
        assert notifier.close(wait=5.0) == 0
        assert [p for p, _ in receiver.got] == ["/run-failed"]

        stuck = Notifier(None, allow_private_urls=True, attempts=3, timeout=3.0)
        stuck.submit(f"http://127.0.0.1:{dead.getsockname()[1]}/x", {"n": 1}, True)
        started = time.monotonic()
        assert stuck.close(wait=0.5) == 1  # told, not waited for
        assert time.monotonic() - started < 1.5
    finally:
        receiver.close()
        dead.close()
