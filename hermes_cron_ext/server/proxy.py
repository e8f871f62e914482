"""``/api/cron`` of a JupyterHub user's server, forwarded to the hub's hermes-cron service.

On a hub, one service schedules for every user (``server/hub.py``); a user's own
server then holds no store and no ticker. The side panel, the widgets and anything
else that talks to the user's server keep calling its ``/api/cron``: each request is
checked by the user's server (its user, Jupyter's ``cron`` permission) and sent on to
the service with the server's hub token (``JUPYTERHUB_API_TOKEN``), which the service
takes as the user's identity. Answers, errors and event streams come back as the
service sent them, chunk by chunk (a run's live output is not held back).

Flow control: what the service sends is passed on only as fast as the browser takes
it. Once :data:`WINDOW` bytes wait for a slow browser, the forwarding pauses: the
service's answer is not read on (TCP then holds the service back, whose own streams
wait for it or skip ahead as they do for a slow browser of theirs) until the browser
has taken them. So a browser that stops reading costs this server at most about
:data:`WINDOW` bytes and a chunk, never the stream. (With a Tornado older than 6.6,
whose client cannot pause, the answer is cut off once :data:`OVERFLOW` bytes wait,
with that reason in the log: an event stream's reader resumes from its last event.)
"""

from __future__ import annotations

import asyncio
import logging
import os
import urllib.parse
from collections.abc import Awaitable

import tornado
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import httpclient, httputil, web
from tornado.http1connection import HTTP1Connection
from tornado.iostream import StreamClosedError
from tornado.simple_httpclient import SimpleAsyncHTTPClient

#: request headers passed on to the service (besides its Authorization, ours)
FORWARDED = ("Content-Type", "Last-Event-ID", "Idempotency-Key", "Accept")
#: answer headers passed back (a Location names the service's path: ours is the same
#: under this server's base URL, so it is rewritten)
RETURNED = ("Content-Type", "Content-Disposition", "X-Log-Offset", "X-Log-Size",
            "Cache-Control", "X-Accel-Buffering", "Location")


#: bytes passed on to the browser and not yet taken by it, past which the forwarding
#: pauses (the service's answer is not read on until they are taken)
WINDOW = 1 << 20
#: without a client that can pause (Tornado < 6.6): past this many bytes waiting, the
#: answer is cut off instead of kept in memory
OVERFLOW = 16 << 20
#: whether the client awaits its streaming callback (Tornado 6.6's simple_httpclient)
PAUSES = tornado.version_info >= (6, 6)


class _Gone(httputil.HTTPInputError):
    """The browser went away, or (see :data:`OVERFLOW`) fell too far behind: the
    forwarded request is dropped. (An ``HTTPInputError``: Tornado's client then ends the
    request quietly, instead of logging an uncaught error from the callback.)"""


class _QuietGone(logging.Filter):
    """Tornado's client logs a dropped forward as a malformed answer: not one."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(isinstance(arg, _Gone) for arg in args)


logging.getLogger("tornado.general").addFilter(_QuietGone())


class ServiceProxyHandler(APIHandler):
    """Every method of every ``api/cron/...`` route, forwarded (see the module doc)."""

    auth_resource = "cron"

    def initialize(self, service: str, token: str | None) -> None:
        self.service = service  # ends with "/"
        self.hub_token = token
        self._started = False
        self._gone = False
        #: bytes written for the browser and not yet taken by its connection (this
        #: forward's buffer: at most about WINDOW and a chunk)
        self.waiting = 0
        self._unflushed = 0  # of those, written since the flush in progress began
        self._flushing = False
        self._drained: asyncio.Future[None] | None = None  # the paused forward's wait

    def on_connection_close(self) -> None:
        self._gone = True
        self._resume(_Gone("the browser went away"))

    def _header(self, line: str) -> None:
        if line.startswith("HTTP/"):
            parts = line.split(" ", 2)
            self.set_status(int(parts[1]), parts[2].strip() if len(parts) > 2 else None)
            return
        if ":" not in line:
            return
        name, value = (part.strip() for part in line.split(":", 1))
        if name.title() in RETURNED or name in RETURNED:
            if name.lower() == "location":
                prefix = urllib.parse.urlparse(self.service).path + "api/cron/"
                if not value.startswith(prefix):
                    return  # somewhere else: not passed on
                value = self.base_url.rstrip("/") + "/api/cron/" + value[len(prefix):]
            self.set_header(name, value)

    def _chunk(self, data: bytes) -> Awaitable[None] | None:
        """Pass a chunk of the service's answer on; while too much waits for the
        browser, a future the client awaits before it reads on (see the module doc)."""
        if self._gone:
            raise _Gone("the browser went away")
        self.write(data)
        self._started = True
        self.waiting += len(data)
        self._unflushed += len(data)
        self._flush_more()
        if self.waiting <= WINDOW:
            return None
        if not PAUSES:
            if self.waiting <= OVERFLOW:
                return None
            self.log.warning("hermes-cron: %s: the browser takes the answer too slowly "
                             "(%d bytes wait for it): cut off (an event stream resumes from "
                             "its last event)", self.request.path, self.waiting)
            self._gone = True
            self._cut()
            raise _Gone("the browser reads too slowly")
        if self._drained is None or self._drained.done():
            self._drained = asyncio.get_running_loop().create_future()
        return self._drained

    def _flush_more(self) -> None:
        """Hand what was written to the browser's connection, one flush at a time, so
        each flush's end says how many bytes the browser has taken."""
        if self._flushing or not self._unflushed or self._gone:
            return
        covered, self._unflushed, self._flushing = self._unflushed, 0, True

        def done(fut: asyncio.Future[None]) -> None:
            self._flushing = False
            if fut.exception() is not None:  # the browser's connection closed
                self._gone = True
                self._resume(_Gone("the browser went away"))
                return
            self.waiting -= covered
            self._flush_more()
            if self.waiting <= WINDOW:
                self._resume()

        self.flush().add_done_callback(done)

    def _resume(self, error: Exception | None = None) -> None:
        """Let a paused forward read on (or, with *error*, end)."""
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            if error is None:
                drained.set_result(None)
            else:
                drained.set_exception(error)

    def _cut(self) -> None:
        """End the connection without finishing the answer: a client that got part of it
        sees it broken, not whole."""
        conn = self.request.connection
        if isinstance(conn, HTTP1Connection):
            conn.close()

    async def forward(self, rest: str) -> None:
        if any(part in ("..", ".") for part in rest.split("/")):
            raise web.HTTPError(404, "no such API route")
        url = self.service + "api/cron/" + urllib.parse.quote(rest, safe="/")
        if self.request.query:
            url += "?" + self.request.query
        headers = httputil.HTTPHeaders()
        for name in FORWARDED:
            if name in self.request.headers:
                headers[name] = self.request.headers[name]
        if self.hub_token:
            headers["Authorization"] = f"token {self.hub_token}"
        method = self.request.method or "GET"
        body = self.request.body if method in ("POST", "PATCH", "PUT") else None
        request = httpclient.HTTPRequest(
            url, method=method, headers=headers, body=body if body is not None else (
                b"" if method == "POST" else None),
            allow_nonstandard_methods=True, connect_timeout=10,
            request_timeout=0 if rest.endswith(("stream", "events")) else 120,
            header_callback=self._header, streaming_callback=self._chunk,
            follow_redirects=False, decompress_response=False)
        try:
            response = await _client().fetch(request, raise_error=False)
        except _Gone:
            return
        except (OSError, ValueError, httpclient.HTTPClientError) as exc:
            if self._gone:
                return
            if self._started:  # cut off midway: the browser must not take it as whole
                self._cut()
                return
            raise web.HTTPError(502, f"the hermes-cron service at {self.service} did not "
                                     f"answer: {exc}") from None
        if response.code == 599:  # no connection, a timeout, or cut off midway
            if self._gone:  # the browser went, or was cut off: no one to answer
                return
            if self._started:
                self._cut()
                return
            raise web.HTTPError(502, f"the hermes-cron service at {self.service} did not "
                                     f"answer: {response.error}")
        try:
            self.finish()
        except StreamClosedError:
            pass

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) else None
        self.set_header("Content-Type", "application/json")
        code = {401: "unauthenticated", 403: "forbidden", 502: "service_unavailable"}.get(
            status_code, "internal")
        self.finish({"error": {"code": code, "message": message or self._reason}})

    @web.authenticated
    @authorized
    async def get(self, rest: str) -> None:
        await self.forward(rest)

    # a POST or PATCH may create a job or change what it runs: which one is the service's
    # to judge, so here both need execute (the server's user has it; a user this server
    # is shared with may lack it)
    @web.authenticated
    @authorized(action="execute")
    async def post(self, rest: str) -> None:
        await self.forward(rest)

    @web.authenticated
    @authorized(action="execute")
    async def patch(self, rest: str) -> None:
        await self.forward(rest)

    @web.authenticated
    @authorized
    async def delete(self, rest: str) -> None:
        await self.forward(rest)


_CLIENT: httpclient.AsyncHTTPClient | None = None


def _client() -> httpclient.AsyncHTTPClient:
    """This server's own client for the service: event and run streams stay open, so the
    process-wide client's 10 connections would soon all be held by them. Tornado's
    simple client, whatever the process configured: it awaits the streaming callback
    (Tornado 6.6), which is how a forward pauses (curl's client cannot)."""
    global _CLIENT
    if _CLIENT is None:
        _CLIENT = SimpleAsyncHTTPClient(force_instance=True, max_clients=1000,
                                        max_body_size=1 << 40)
    return _CLIENT


def service_url(configured: str) -> str:
    """The hub service's URL this server forwards to: the configured one, else
    ``HERMES_CRON_URL`` when it names a server; '' when this server keeps its own store."""
    url = (configured or os.environ.get("HERMES_CRON_URL", "")).strip()
    if not url.startswith(("http://", "https://")):
        return ""
    url = url.split("api/cron", 1)[0]
    return url if url.endswith("/") else url + "/"


def proxy_routes(service: str, token: str | None) -> list[tuple]:
    return [(r"api/cron/(?P<rest>.*)", ServiceProxyHandler,
             {"service": service, "token": token})]
