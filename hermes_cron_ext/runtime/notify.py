"""Notifications that arrive: Apprise destinations, the JSON webhook, healthchecks pings.

What is worth a message, and what it says, is ``domain/notifications.py``. Here:

- :class:`Planner` turns the store's new events into deliveries: per event, each
  destination that wants its kind (a job's ``notify`` Apprise URLs and ``notify_on``;
  the operator's defaults; the job's and the operator's ``notify_url`` webhook; the
  job's ``ping_url``). The store writes them in the transaction that takes the events
  (``Store.plan_deliveries``), so with any number of tickers each is written once and
  a ticker killed before sending loses none (``store/outbox.py``).
- :class:`Notifier` sends them off the ticker's path: one worker thread per destination
  with deliveries due, each leasing its destination's rows from the store, so a slow or
  dead destination delays only itself, never another destination, a run or the ticker.
  A failed try is retried by whichever ticker is alive, 5 s doubling to 1 h, for a
  day (``hermes-cron notifications`` lists them all); the destination's later messages
  wait behind it, in order. A stopping ticker sends what is due for a few seconds at
  most and leaves the rest in the outbox.

A job's own destinations (``notify``, ``notify_url``, ``ping_url``) go only to public
addresses: a host on loopback, link-local, private or other non-global ranges is
refused (server-side
request forgery: a job must not make the scheduler post run details to
``169.254.169.254`` or an internal service) unless the operator allows it
(``c.HermesCron.allow_private_urls``; ``HERMES_CRON_ALLOW_PRIVATE_URLS=1`` for a
daemon). The API checks at create and edit (:func:`check_url`); delivery checks again
the address it actually connects to (DNS can change), and each redirect. The
operator's own webhook (``c.HermesCron.notify_url``, ``--notify-url``) may go anywhere.
"""

from __future__ import annotations

import http.client
import ipaddress
import itertools
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from hermes_cron_ext.domain import notifications as notes
from hermes_cron_ext.domain.models import Event, iso
from hermes_cron_ext.errors import InvalidInput, NotFound
from hermes_cron_ext.processes import hostname, proc_start_time, process_alive

log = logging.getLogger("hermes_cron")

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


#: seconds a sender holds the deliveries it took; another takes them after
LEASE = 60.0
#: rows a worker takes at a time from its destination
BATCH = 10
#: workers at once (one per destination with something due)
MAX_WORKERS = 64
#: the bytes of a run's output read for a message's last lines
TAIL_READ = 16384
#: the kinds whose message quotes the run's output
WITH_OUTPUT = ("failure", "lost", "alert", "late")
#: numbers the senders of this process (see ``Notifier.owner``)
_SENDERS = itertools.count(1)


def _env_list(name: str) -> list[str]:
    return [u for u in os.environ.get(name, "").split() if u]


class Planner:
    """Which deliveries an event makes, and their messages (see the module docstring).

    *defaults*: Apprise URLs every job's notifications also go to, of the kinds
    *default_on* (``notifications.DEFAULT_ON``); *default_url*: the operator's legacy
    JSON webhook; *public_url*: the JupyterLab base URL messages link runs from."""

    def __init__(self, store, *, defaults: list[str] | None = None,
                 default_on: list[str] | None = None, default_url: str | None = None,
                 public_url: str | None = None):
        self.store = store
        self.defaults = list(defaults or [])
        self.default_on = list(default_on) if default_on is not None else None
        self.default_url = default_url
        self.public_url = public_url

    def plan(self, events: list[Event]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        jobs: dict[str | None, Any] = {}
        tails: dict[str, str] = {}
        for event in events:
            kind = notes.classify(event.type, event.data)
            suffix = notes.ping_suffix(event.type, event.data)
            if kind is None and suffix is None:
                continue
            if event.job_id not in jobs:
                try:
                    jobs[event.job_id] = (self.store.get_job(event.job_id)
                                          if event.job_id else None)
                except NotFound:
                    jobs[event.job_id] = None
            job = jobs[event.job_id]
            policy = job.policy if job else None
            name = job.name if job else event.data.get("job")
            common = {"event_seq": event.seq, "kind": kind, "job_id": event.job_id,
                      "job_name": name, "run_id": event.run_id}
            if kind is not None:
                dedupe = (f"{kind}:{event.run_id}" if event.run_id and kind != "late"
                          else f"late:{event.job_id}:{event.data.get('scheduled_for')}"
                          if kind == "late" else f"{kind}:e{event.seq}")
                output = ""
                if kind in WITH_OUTPUT and event.run_id:
                    if event.run_id not in tails:
                        tails[event.run_id] = self._tail(event.run_id)
                    output = tails[event.run_id]
                data = dict(event.data)
                if kind == "recovered" and event.type == "run.finished":
                    data.setdefault("reason", "succeeded after failing")
                link = notes.run_link(self.public_url, event.run_id)
                message: dict[str, Any] = dict(notes.compose(
                    kind, job=name, run_id=event.run_id, data=data, output=output,
                    link=link))
                message["json"] = {  # the webhook's body (notify_url receivers read it)
                    "event": notes.WEBHOOK_EVENT.get(kind, kind), "at": iso(event.at),
                    "job_id": event.job_id, "job": name, "run_id": event.run_id,
                    "status": event.data.get("status"),
                    "exit_code": event.data.get("exit_code"),
                    "reason": event.data.get("reason") or (job.state_reason if job else None),
                    "scheduled_for": event.data.get("scheduled_for"),
                    "alerts": event.data.get("alerts"), "link": link,
                }
                on = policy.notify_on if policy else None
                targets: list[tuple[str, str, bool]] = []  # (channel, url, a job's own)
                if notes.wants(on, kind):
                    targets += [("apprise", u, True) for u in (policy.notify if policy else [])]
                    if policy and policy.notify_url:
                        targets.append(("webhook", policy.notify_url, True))
                if notes.wants(self.default_on, kind):
                    targets += [("apprise", u, False) for u in self.defaults]
                    if self.default_url:
                        targets.append(("webhook", self.default_url, False))
                seen: set[tuple[str, str]] = set()
                for channel, url, own in targets:
                    if (channel, url) in seen:
                        continue
                    seen.add((channel, url))
                    out.append({**common, "dedupe": dedupe, "channel": channel,
                                "queue": url, "destination": url,
                                "shown": notes.mask_url(url),
                                "message": {**message, "guard": own}})
            if suffix is not None and policy and policy.ping_url:
                base = policy.ping_url.rstrip("/")
                out.append({**common, "kind": kind or ("started" if suffix == "/start"
                                                       else "succeeded" if not suffix
                                                       else "failure"),
                            "dedupe": f"ping{suffix}:{event.run_id or event.seq}",
                            "channel": "ping", "queue": base, "destination": base + suffix,
                            "shown": notes.mask_url(base + suffix),
                            "message": {"title": "ping", "guard": True}})
        return out

    def _tail(self, run_id: str) -> str:
        try:
            size = self.store.output_size(run_id)
            data = self.store.read_output(run_id, max(0, size - TAIL_READ))
        except Exception:  # output gone (gc) or unreadable: the message says the rest
            return ""
        return notes.tail(data.decode("utf-8", errors="replace"))


class Notifier:
    """Plans deliveries from events (:meth:`pump`) and sends what is due, a worker per
    destination (see the module docstring). Thread-safe; a ticker owns one."""

    def __init__(self, store, default_url: str | None = None, *,
                 defaults: list[str] | None = None, default_on: list[str] | None = None,
                 public_url: str | None = None, timeout: float = 5.0,
                 allow_private_urls: bool | None = None, lease: float = LEASE,
                 first_delay: float = notes.FIRST_DELAY, clock=time.time):
        self.store = store
        default_url = default_url or os.environ.get("HERMES_CRON_NOTIFY_URL") or None
        if allow_private_urls is None:  # a daemon's setting (the server sets it itself)
            allow_private_urls = os.environ.get("HERMES_CRON_ALLOW_PRIVATE_URLS",
                                                "1") not in ("0", "false", "no", "")
        #: whether jobs' own URLs may reach non-public addresses
        self.allow_private_urls = allow_private_urls
        if default_on is None and os.environ.get("HERMES_CRON_NOTIFY_ON"):
            default_on = notes.parse_on(os.environ["HERMES_CRON_NOTIFY_ON"],
                                        "HERMES_CRON_NOTIFY_ON")
        self.planner = Planner(
            store, defaults=defaults if defaults is not None else _env_list(
                "HERMES_CRON_NOTIFY"), default_on=default_on, default_url=default_url,
            public_url=public_url or os.environ.get("HERMES_CRON_PUBLIC_URL") or None)
        self._public = _public_opener()
        self.timeout = timeout
        self.lease = lease
        #: the first retry's delay (doubled each time up to an hour)
        self.first_delay = first_delay
        self.clock = clock
        #: who holds a lease: this sender of this process (a dead process's leases are
        #: taken back early). Two senders of one process (a ticker stopped and another
        #: started) are told apart: a worker of the first still stuck on a dead
        #: destination must not record its outcome on a row the second took since.
        self.owner = (f"{hostname()}/{os.getpid()}/{proc_start_time(os.getpid()) or 0}"
                      f"/{next(_SENDERS)}")
        self._workers: dict[str, threading.Thread] = {}
        #: destinations whose first delivery failed: no worker for them before its
        #: retry, when it is due; their later deliveries wait behind it, still leased
        #: (so no sender takes them before it), given back when the retry starts
        self._held: dict[str, float] = {}
        self._parked: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._loop: threading.Thread | None = None
        self._next_reap = 0.0
        self.sent = 0
        self.failed = 0

    @property
    def default_url(self) -> str | None:
        """The operator's JSON webhook (``c.HermesCron.notify_url``)."""
        return self.planner.default_url

    @default_url.setter
    def default_url(self, url: str | None) -> None:
        self.planner.default_url = url

    # -- planning --------------------------------------------------------------------
    def pump(self) -> int:
        """Plan deliveries of new events now, on the caller's thread, and wake the
        sender; returns how many were written (``hermes-cron tick``, tests)."""
        written = self.store.plan_deliveries(self.planner.plan)
        self.start()
        if written:
            self._wake.set()
        return written

    def wake(self) -> None:
        """Something changed in the store: plan and send on the sender's own thread,
        off the caller's (a ticker's pass never waits for a burst of 1,000 messages to
        be planned)."""
        self.start()
        self._wake.set()

    def start(self) -> None:
        """Start the sender thread (once)."""
        with self._lock:
            if self._loop is not None or self._closed:
                return
            self._loop = threading.Thread(target=self._run, daemon=True,
                                          name="hermes-notify")
        self._loop.start()

    # -- sending ---------------------------------------------------------------------
    def _run(self) -> None:
        """Plan new events' deliveries, then start a worker for each destination with
        deliveries due; on a wake, and at least every second (retries, other
        processes' events)."""
        while not self._closed:
            try:
                self._reap()
                self.store.plan_deliveries(self.planner.plan)  # cheap when nothing is new
                now = self.clock()
                for queue in self.store.due_queues(now):
                    with self._lock:
                        if self._held.get(queue, 0.0) > now:
                            continue
                        self._held.pop(queue, None)
                        if (self._closed or queue in self._workers
                                or len(self._workers) >= MAX_WORKERS):
                            continue
                        worker = self._workers[queue] = threading.Thread(
                            target=self._work, args=(queue,), daemon=True,
                            name="hermes-notify-worker")
                    worker.start()
            except Exception as exc:  # the store is away: try again in a second
                log.warning("hermes-cron: notifications: %s", exc)
            self._wake.wait(self._idle())
            self._wake.clear()

    def _idle(self) -> float:
        """Seconds until the next look at the outbox: a second at most (other
        processes' deliveries), less when one of this sender's retries is due sooner
        (a short ``first_delay`` is kept)."""
        with self._lock:
            held = min(self._held.values(), default=None)
        if held is None:
            return 1.0
        return min(1.0, max(0.02, held - self.clock()))

    def _reap(self) -> None:
        """Take back, every 10 s, leases held by dead processes of this host (a
        ticker killed mid-send): their deliveries are due again now, not in a minute."""
        now = self.clock()
        if now < self._next_reap:
            return
        self._next_reap = now + 10.0
        host = hostname()
        for owner in self.store.lease_owners():
            h, pid, start = (owner.split("/") + ["", ""])[:3]
            if h == host and owner != self.owner and pid.isdigit() and not process_alive(
                    int(pid), int(start) if start.isdigit() and start != "0" else None):
                self.store.expire_leases(owner)

    def _work(self, queue: str) -> None:
        """Send one destination's due deliveries in order, then stop."""
        try:
            with self._lock:
                parked = self._parked.pop(queue, [])
            if parked:  # behind the one now due again: taken again in order with it
                self.store.release_deliveries(self.owner, parked)
            while not self._closed:
                now = self.clock()
                batch = self.store.claim_deliveries(queue, self.owner, now, self.lease, BATCH)
                if not batch:
                    return
                for i, row in enumerate(batch):
                    if self._closed or self.clock() > now + self.lease - 2 * self.timeout - 5:
                        self.store.release_deliveries(self.owner, [r["id"] for r in batch[i:]])
                        break
                    ok, error, final = self._send(row)
                    done_at = self.clock()
                    status = self.store.delivery_done(row["id"], self.owner, done_at,
                                                      ok=ok, error=error, final=final,
                                                      first_delay=self.first_delay)
                    if ok:
                        self.sent += 1
                        continue
                    log.warning("hermes-cron: notification %s to %s %s: %s", row["kind"],
                                notes.mask_url(row["destination"]),
                                "given up" if status == "failed" else "failed, will retry",
                                error)
                    if status == "failed":  # nothing to wait for: the next goes on
                        self.failed += 1
                        continue
                    # the rest of this destination waits for the retry, in order: still
                    # leased (no sender takes them first while the lease lasts), given
                    # back when the retry starts rather than when the lease ends
                    with self._lock:
                        self._held[queue] = done_at + notes.backoff(row["attempts"] + 1,
                                                                    self.first_delay)
                        self._parked[queue] = [r["id"] for r in batch[i + 1:]]
                    return
        except Exception as exc:
            log.warning("hermes-cron: notifications to %s: %s", notes.mask_url(queue), exc)
        finally:
            with self._lock:
                self._workers.pop(queue, None)
            self._wake.set()

    def _send(self, row: dict[str, Any]) -> tuple[bool, str | None, bool]:
        """One try: (sent, error, whether no retry can help)."""
        message, url = row["message"], row["destination"]
        guarded = bool(message.get("guard")) and not self.allow_private_urls
        if row["channel"] == "apprise":
            return self._apprise(url, message, guarded)
        body = message.get("json") if row["channel"] == "webhook" else None
        try:
            return self._deliver(url, body, job_url=bool(message.get("guard"))), None, False
        except Refused as exc:
            return False, str(exc), True
        except Exception as exc:
            return False, str(getattr(exc, "reason", exc)), False

    def _apprise(self, url: str, message: dict[str, Any],
                 guarded: bool) -> tuple[bool, str | None, bool]:
        import apprise

        from hermes_cron_ext.runtime.destinations import check_destination

        if guarded:
            try:
                check_destination(url, allow_private=False)
            except InvalidInput as exc:
                return False, exc.message, True
        with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as logs:
            ap = apprise.Apprise()
            if not ap.add(url):
                return False, "Apprise does not know this URL", True
            ok = ap.notify(title=message.get("title") or "hermes-cron",
                           body=message.get("body") or "",
                           notify_type=message.get("type") or "info")
        if ok:
            return True, None, False
        said = [line.strip() for line in logs.getvalue().splitlines() if line.strip()]
        return False, (said[-1] if said else "the service refused it")[:500], False

    def _deliver(self, url: str, body: dict | None, job_url: bool = False) -> bool:
        """One POST (a JSON *body*) or GET (a ping): True when answered below 400.
        *job_url*: a job's own URL, sent only to public addresses unless allowed (checked
        on the name and again on the connected peer). Raises :class:`Refused` on a
        refused address, ``OSError`` on any other failure."""
        data = json.dumps(body).encode() if body is not None else None
        job_url = job_url and not self.allow_private_urls
        if job_url:
            try:  # the literal or resolved host, then the connected peer (DNS can change)
                check_url(url, "notify_url" if body is not None else "ping_url")
            except InvalidInput as exc:
                raise Refused(exc.message) from None
        urlopen = self._public.open if job_url else urllib.request.urlopen
        req = urllib.request.Request(
            url, data=data, method="POST" if data is not None else "GET",
            headers={"Content-Type": "application/json", "User-Agent": "hermes-cron-ext"})
        try:
            with urlopen(req, timeout=self.timeout) as resp:
                if resp.status < 400:
                    return True
                raise OSError(f"HTTP {resp.status}")
        except urllib.error.HTTPError as exc:
            raise OSError(f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, PrivateAddress):
                raise Refused(str(exc.reason)) from None
            raise

    def close(self, wait: bool | float = False) -> int:
        """Stop taking deliveries; *wait*: first send what is due (seconds at most, when
        a number; ``hermes-cron tick`` does). What is left stays in the outbox for the
        next ticker. Returns how many destinations have deliveries due and not sent.

        A destination waiting for a retry is not waited for (its new deliveries wait
        behind the failed one)."""
        if wait:
            deadline = None if wait is True else time.monotonic() + float(wait)
            self.start()
            self._wake.set()
            while deadline is None or time.monotonic() < deadline:
                now = self.clock()
                # the outbox first, then the workers: a delivery not due because a worker
                # leased it has that worker registered until its outcome is written (the
                # other order could miss a worker that started in between, and go while it
                # sends: the next ticker would send that message again)
                due = set(self.store.due_queues(now))
                with self._lock:
                    busy = bool(self._workers)
                    held = {q for q, at in self._held.items() if at > now}
                if not busy and not due - held:
                    break
                time.sleep(0.05)
        with self._lock:
            self._closed = True
            workers = list(self._workers.values())
            loop = self._loop
        self._wake.set()
        # the planning loop is joined: its store calls must be over before the caller
        # closes the store's connections (one closed under a running query crashes)
        if loop is not None and loop is not threading.current_thread():
            loop.join(5.0)
        for worker in workers:
            worker.join(0.5 if wait else 0.1)
        try:  # what this process holds and did not try is due again for another
            self.store.expire_leases(self.owner)
        except Exception:
            pass
        try:
            left = len(self.store.due_queues(self.clock()))
        except Exception:
            left = 0
        if left:
            log.info("hermes-cron: %d destination(s) have notifications waiting in the "
                     "outbox for the next ticker", left)
        return left


class Refused(Exception):
    """A delivery no retry helps (a refused address)."""
