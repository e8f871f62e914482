"""Notifications: a JSON webhook on failed, lost, missed, blocked and recovered, and
healthchecks-style pings on start, success and failure.

They are derived from the store's events, which tickers claim in batches
(``Store.claim_events("notify")``): with any number of tickers on one store,
each notification goes out once. Delivery is off the ticker's path, one queue per
destination URL with its own thread (in order for that URL, a few retries with
backoff), so a dead or slow endpoint delays only its own messages, never another
job's webhook or ping; a failure is logged and never touches a run.

A job's own ``notify_url`` and ``ping_url`` go only to public addresses: a host on
loopback, link-local, private or other non-global ranges is refused (server-side
request forgery: a job must not make the scheduler post run details to
``169.254.169.254`` or an internal service) unless the operator allows it
(``c.HermesCron.allow_private_urls``; ``HERMES_CRON_ALLOW_PRIVATE_URLS=1`` for a
daemon). The API checks at create and edit (:func:`check_url`); delivery checks again
the address it actually connects to (DNS can change), and each redirect. The
operator's own webhook (``c.HermesCron.notify_url``, ``--notify-url``) may go anywhere.
"""

from __future__ import annotations

import collections
import http.client
import ipaddress
import json
import logging
import os
import socket
import threading
import time
import urllib.request
from urllib.parse import urlsplit

from hermes_cron_ext.domain.models import Event, iso
from hermes_cron_ext.errors import InvalidInput, NotFound

log = logging.getLogger("hermes_cron")

FAILED = ("failed", "timed_out")


def classify(event: Event) -> str | None:
    """The webhook kind of an event, or None when it is not worth a message."""
    status = event.data.get("status")
    if event.type == "run.finished":
        if status in FAILED:
            return "failed"
        if status == "succeeded" and event.data.get("recovered"):
            return "recovered"
    elif event.type == "run.lost":
        return "lost"
    elif event.type == "run.skipped":
        reason = event.data.get("reason") or ""
        if reason.startswith(("missed", "deadline")):
            return "missed"
    elif event.type == "job.blocked":
        return "blocked"
    return None


def ping_suffix(event: Event) -> str | None:
    """healthchecks.io convention: ``/start``, success on the bare URL, ``/fail``."""
    status = event.data.get("status")
    if event.type == "run.started":
        return "/start"
    if event.type == "run.finished" and status == "succeeded":
        return ""
    if event.type == "run.lost" or (event.type == "run.finished" and status in FAILED):
        return "/fail"
    return None


# -- where a job may send data ----------------------------------------------------------

def private_address(ip: str) -> bool:
    """Whether *ip* is not a public (global unicast) address: loopback, private,
    link-local, shared, reserved, unspecified or multicast, also IPv4-mapped."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return not addr.is_global or addr.is_multicast


def check_url(url: str, field: str, *, allow_private: bool = False,
              resolve: bool = True) -> None:
    """Refuse (:class:`InvalidInput` naming *field*) a URL a job may not send to: not
    http(s), no host, or (unless *allow_private*) a host that is, or resolves to, a
    non-public address. A name that does not resolve now passes: delivery checks again."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"{field} is not a valid URL: {exc}", field=field) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"{field} must be an http(s) URL with a host", field=field)
    if allow_private:
        return
    host = parts.hostname
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        addresses = []
        if resolve:
            try:
                addresses = [str(info[4][0]) for info in socket.getaddrinfo(
                    host, port or (443 if parts.scheme == "https" else 80),
                    proto=socket.IPPROTO_TCP)]
            except (OSError, UnicodeError):
                addresses = []
    bad = next((a for a in addresses if private_address(a)), None)
    if bad is not None:
        raise InvalidInput(
            f"{field}: {host} is a {'' if bad == host else f'name for {bad}, a '}"
            f"loopback, private or link-local address; a job may send only to public "
            f"hosts unless the operator sets c.HermesCron.allow_private_urls", field=field)


class PrivateAddress(OSError):
    """A delivery that would connect to a non-public address."""


def _check_peer(sock, host: str) -> None:
    peer = sock.getpeername()[0]
    if private_address(peer):
        sock.close()
        raise PrivateAddress(f"{host} is at {peer}, not a public address: refused "
                             f"(c.HermesCron.allow_private_urls)")


class _PublicHTTPConnection(http.client.HTTPConnection):
    def connect(self):
        super().connect()
        _check_peer(self.sock, self.host)


class _PublicHTTPSConnection(http.client.HTTPSConnection):
    def connect(self):
        super().connect()
        _check_peer(self.sock, self.host)


class _PublicHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_PublicHTTPConnection, req)


class _PublicHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_PublicHTTPSConnection, req, context=self._context)


def _public_opener() -> urllib.request.OpenerDirector:
    """urllib that connects to public addresses only (redirects included); no proxy,
    since a proxy would hide where the request goes."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _PublicHTTPHandler,
                                       _PublicHTTPSHandler)


class Notifier:
    def __init__(self, store, default_url: str | None = None, *, attempts: int = 3,
                 backoff: float = 1.0, timeout: float = 5.0,
                 allow_private_urls: bool | None = None):
        self.store = store
        self.default_url = default_url or os.environ.get("HERMES_CRON_NOTIFY_URL") or None
        if allow_private_urls is None:  # a daemon's setting (the server sets it itself)
            allow_private_urls = os.environ.get("HERMES_CRON_ALLOW_PRIVATE_URLS",
                                                "1") not in ("0", "false", "no", "")
        #: whether jobs' own URLs may reach non-public addresses
        self.allow_private_urls = allow_private_urls
        self._public = _public_opener()
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        #: destination -> messages waiting; a thread drains each while it has some
        self._queues: dict[str, collections.deque] = {}
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.sent = 0
        self.failed = 0

    def messages(self, events: list[Event]) -> list[tuple[str, dict | None, bool]]:
        """``(url, json body or None for a bare ping, whether the URL is a job's own)``
        for each notification due."""
        out: list[tuple[str, dict | None, bool]] = []
        jobs: dict = {}
        for event in events:
            kind, suffix = classify(event), ping_suffix(event)
            if kind is None and suffix is None:
                continue
            if event.job_id not in jobs:
                try:
                    jobs[event.job_id] = self.store.get_job(event.job_id) if event.job_id else None
                except NotFound:
                    jobs[event.job_id] = None
            job = jobs[event.job_id]
            policy = job.policy if job else None
            if kind is not None:
                body = {
                    "event": kind, "at": iso(event.at), "job_id": event.job_id,
                    "job": job.name if job else None, "run_id": event.run_id,
                    "status": event.data.get("status"), "exit_code": event.data.get("exit_code"),
                    "reason": event.data.get("reason") or (job.state_reason if job else None),
                    "scheduled_for": event.data.get("scheduled_for"),
                }
                if self.default_url:
                    out.append((self.default_url, body, False))
                own = policy.notify_url if policy else None
                if own and own != self.default_url:
                    out.append((own, body, True))
            if suffix is not None and policy and policy.ping_url:
                out.append((policy.ping_url.rstrip("/") + suffix, None, True))
        return out

    def pump(self) -> int:
        """Claim new events and queue their notifications; returns how many were queued."""
        events = self.store.claim_events("notify")
        messages = self.messages(events) if events else []
        for url, body, job_url in messages:
            self.submit(url, body, job_url)
        return len(messages)

    def submit(self, url: str, body: dict | None, job_url: bool = False) -> None:
        """Queue one delivery behind the others to the same destination (a ping's
        ``/start`` and ``/fail`` count as its URL: they stay in order)."""
        key = url.removesuffix("/start").removesuffix("/fail")
        with self._lock:
            if self._closed:
                return
            queue = self._queues.get(key)
            fresh = queue is None
            if queue is None:
                queue = self._queues[key] = collections.deque()
            queue.append((url, body, job_url))
            if fresh:
                thread = threading.Thread(target=self._drain, args=(key,), daemon=True,
                                          name="hermes-notify")
                self._threads.add(thread)
        if fresh:
            thread.start()

    def _drain(self, key: str) -> None:
        try:
            while True:
                with self._lock:
                    queue = self._queues[key]
                    if not queue:
                        del self._queues[key]
                        return
                    url, body, job_url = queue[0]
                self._deliver(url, body, job_url)
                with self._lock:
                    queue.popleft()
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _deliver(self, url: str, body: dict | None, job_url: bool = False) -> bool:
        data = json.dumps(body).encode() if body is not None else None
        guarded = job_url and not self.allow_private_urls
        if guarded:
            try:  # the literal or resolved host, then the connected peer (DNS can change)
                check_url(url, "notify_url" if body is not None else "ping_url")
            except InvalidInput as exc:
                log.warning("hermes-cron: notification to %s not sent: %s", url, exc.message)
                self.failed += 1
                return False
        urlopen = self._public.open if guarded else urllib.request.urlopen
        for attempt in range(1, self.attempts + 1):
            req = urllib.request.Request(
                url, data=data, method="POST" if data is not None else "GET",
                headers={"Content-Type": "application/json",
                         "User-Agent": "hermes-cron-ext"})
            try:
                with urlopen(req, timeout=self.timeout) as resp:
                    if resp.status < 400:
                        self.sent += 1
                        return True
            except Exception as exc:  # any network error: log, retry, never raise
                refused = getattr(exc, "reason", exc)  # urllib wraps it in a URLError
                if isinstance(refused, PrivateAddress):
                    log.warning("hermes-cron: notification to %s not sent: %s", url, refused)
                    self.failed += 1
                    return False
                log.warning("hermes-cron: notification to %s failed (attempt %d/%d): %s",
                            url, attempt, self.attempts, exc)
            time.sleep(self.backoff * 2 ** (attempt - 1))
        self.failed += 1
        return False

    def close(self, wait: bool | float = False) -> int:
        """Take no more; *wait*: until what is queued has been tried (seconds at most,
        when a number). Returns how many messages were left untried."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        if wait:
            deadline = None if wait is True else time.monotonic() + float(wait)
            for thread in threads:
                thread.join(None if deadline is None else max(0.0, deadline -
                                                              time.monotonic()))
        with self._lock:
            left = sum(len(q) for q in self._queues.values())
        if left:
            log.warning("hermes-cron: %d notification(s) not sent before stopping", left)
        return left
