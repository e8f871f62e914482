"""The ``/api/cron`` routes of a Jupyter server, behind the same calls as the local
operations (:class:`~hermes_cron_ext.ops.base.CronClient`)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any, NoReturn

from hermes_cron_ext.domain.definitions import references
from hermes_cron_ext.errors import Conflict, HermesCronError, InvalidInput, NotFound
from hermes_cron_ext.ops.base import ConnectionFailed, CronClient, RunStream

_ERRORS = {400: InvalidInput, 404: NotFound, 409: Conflict}


def _api_base(url: str) -> str:
    """``http://host:port/base/`` from a server URL or a URL of the API itself."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/")
    for suffix in ("/api/cron", "/lab", "/tree"):
        if path.endswith(suffix):
            path = path[:-len(suffix)]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path + "/", "", ""))


class _SSEStream(RunStream):
    def __init__(self, client: RestClient, run_id: str, offset: int):
        super().__init__()
        self.client, self.run_id, self.offset = client, run_id, offset
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        super().close()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __iter__(self) -> Iterator[dict[str, Any]]:
        c = self.client
        parts = urllib.parse.urlsplit(c.base)
        path = f"{parts.path}api/cron/runs/{urllib.parse.quote(self.run_id)}/stream"
        # typeshed wants a str; a base with no host (http://:8888/) hands http.client None,
        # which raises TypeError here, as it always has
        host: str = parts.hostname  # type: ignore[assignment]
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(host, parts.port or 443,
                                               timeout=c.timeout + 30, context=c.ssl_context)
        else:
            conn = http.client.HTTPConnection(host, parts.port or 80, timeout=c.timeout + 30)
        self._conn = conn
        try:
            headers = {**c.headers(), "Accept": "text/event-stream"}
            if self.offset:
                headers["Last-Event-ID"] = str(self.offset)
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
            except OSError as exc:
                if self.closed:
                    return
                raise ConnectionFailed(f"cannot reach {c.base}: {exc}") from exc
            if resp.status != 200:
                c.raise_for(resp.status, resp.read())
            event: dict[str, Any] = {"event": "message", "data": "", "id": None}
            while not self.closed:
                try:
                    raw = resp.readline()
                except (OSError, ValueError):
                    if self.closed:
                        return
                    raise ConnectionFailed(f"the stream from {c.base} broke off")
                if not raw:
                    return  # the server ended the stream
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    if event["data"]:
                        event["data"] = json.loads(event["data"])
                        if event["id"] is not None:
                            event["id"] = int(event["id"])
                        yield event
                    event = {"event": "message", "data": "", "id": None}
                elif line.startswith(":"):
                    continue
                else:
                    key, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if key == "data":
                        event["data"] += value
                    elif key in ("event", "id"):
                        event[key] = value
        finally:
            conn.close()


class RestClient(CronClient):
    """The ``/api/cron`` routes of a Jupyter server, with its token."""

    kind = "server"

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 30.0,
                 verify: bool = True):
        self.base = _api_base(url)
        self.token = token or None
        self.timeout = timeout
        self.where = f"server {self.base}"
        self.ssl_context = None if verify else ssl._create_unverified_context()
        #: the HTTP status of the last request (201 or 200 tells a create from a replay)
        self.last_status = 0
        #: where the calls come from (``magics``), told to the server for its records
        self.origin: str | None = None

    @property
    def display_url(self) -> str:
        return self.base

    def headers(self) -> dict[str, str]:
        out = {"Authorization": f"token {self.token}"} if self.token else {}
        if self.origin:
            out["X-Hermes-Cron-Origin"] = self.origin
        return out

    @staticmethod
    def raise_for(status: int, body: bytes) -> NoReturn:
        try:
            error = json.loads(body or b"{}").get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        message = error.get("message") or f"HTTP {status}"
        if status in (401, 403):
            raise HermesCronError(f"the server refused: {message}", code="forbidden")
        cls = _ERRORS.get(status, HermesCronError)
        raise cls(message, field=error.get("field"))

    def request(self, method: str, path: str, body: Any = None,
                query: dict[str, Any] | None = None, raw: bool = False) -> Any:
        """The route's JSON (None when it has no body), or with *raw* ``(bytes, headers)``."""
        url = self.base + "api/cron/" + path
        query = {k: v for k, v in (query or {}).items() if v is not None}
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else (
            b"" if method == "POST" else None)
        req = urllib.request.Request(url, data=data, method=method, headers={
            **self.headers(), "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout,
                                        context=self.ssl_context) as resp:
                payload = resp.read()
                self.last_status = resp.status
                if raw:
                    return payload, resp.headers
                return json.loads(payload) if payload else None
        except urllib.error.HTTPError as err:
            self.raise_for(err.code, err.read())
        except (OSError, http.client.HTTPException) as exc:
            raise ConnectionFailed(f"cannot reach {self.base}: {exc}") from exc

    def _json(self, method: str, path: str, body: Any = None,
              query: dict[str, Any] | None = None) -> dict[str, Any]:
        """:meth:`request` for the routes that answer a JSON object."""
        answer: dict[str, Any] = self.request(method, path, body, query)
        return answer

    @staticmethod
    def _q(ref: str) -> str:
        return urllib.parse.quote(ref, safe="")

    def jobs(self, state: str | None = None,
             search: str | None = None) -> list[dict[str, Any]]:
        out, cursor = [], None
        while True:
            page = self.request("GET", "jobs", query={"limit": 500, "cursor": cursor,
                                                      "state": state, "q": search})
            out += page["jobs"]
            cursor = page["cursor"]
            if cursor is None:
                return out

    def job(self, ref: str) -> dict[str, Any]:
        return self._json("GET", f"jobs/{self._q(ref)}")

    def add(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "jobs", spec)

    def create(self, spec: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """``(job, created)``, as ``Operations.create``: a replayed idempotency key
        answers 200 with the first job."""
        job = self.add(spec)
        return job, self.last_status == 201

    def me(self) -> dict[str, Any]:
        """Who the server takes this client for (a hub service: the hub user)."""
        return self._json("GET", "me")

    def edit(self, ref: str, changes: dict[str, Any]) -> dict[str, Any]:
        return self._json("PATCH", f"jobs/{self._q(ref)}", changes)

    def remove(self, ref: str) -> None:
        self.request("DELETE", f"jobs/{self._q(ref)}")

    def pause(self, ref: str) -> dict[str, Any]:
        return self._json("POST", f"jobs/{self._q(ref)}/pause")

    def resume(self, ref: str) -> dict[str, Any]:
        return self._json("POST", f"jobs/{self._q(ref)}/resume")

    def run_now(self, ref: str,
                parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"parameters": parameters} if parameters else None
        return self._json("POST", f"jobs/{self._q(ref)}/run", body)

    def pipeline(self, ref: str) -> dict[str, Any]:
        return self._json("GET", f"jobs/{self._q(ref)}/pipeline")

    def job_parameters(self, ref: str) -> list[dict[str, Any]]:
        params: list[dict[str, Any]] = self._json(
            "GET", f"jobs/{self._q(ref)}/parameters")["parameters"]
        return params

    def backfill(self, ref: str, start: str, end: str, *, max_parallel: int = 1,
                 dry_run: bool = False) -> dict[str, Any]:
        return self._json("POST", f"jobs/{self._q(ref)}/backfill", {
            "from": start, "to": end, "max_parallel": max_parallel, "dry_run": dry_run})

    def get_backfill(self, backfill_id: str) -> dict[str, Any]:
        return self._json("GET", f"backfills/{self._q(backfill_id)}")

    def backfills(self, ref: str) -> list[dict[str, Any]]:
        backfills: list[dict[str, Any]] = self._json(
            "GET", f"jobs/{self._q(ref)}/backfill")["backfills"]
        return backfills

    def cancel_backfill(self, backfill_id: str) -> dict[str, Any]:
        return self._json("POST", f"backfills/{self._q(backfill_id)}/cancel")

    def runs(self, ref: str | None = None, *, limit: int = 50, cursor: str | None = None,
             status: str | None = None) -> dict[str, Any]:
        path = f"jobs/{self._q(ref)}/runs" if ref else "runs"
        return self._json("GET", path, query={"limit": limit, "cursor": cursor,
                                                "status": status})

    def run(self, run_id: str) -> dict[str, Any]:
        return self._json("GET", f"runs/{self._q(run_id)}")

    def cancel(self, run_id: str) -> dict[str, Any]:
        return self._json("POST", f"runs/{self._q(run_id)}/cancel")

    def log(self, run_id: str, offset: int = 0, limit: int | None = None,
            tail: int | None = None) -> tuple[bytes, int, int]:
        data, headers = self.request("GET", f"runs/{self._q(run_id)}/log", raw=True, query={
            "offset": offset if tail is None else None, "limit": limit, "tail": tail})
        return data, int(headers.get("X-Log-Offset", offset)), int(
            headers.get("X-Log-Size", len(data)))

    def stream(self, run_id: str, offset: int = 0) -> RunStream:
        return _SSEStream(self, run_id, offset)

    def artifact(self, run_id: str) -> bytes:
        data: bytes = self.request("GET", f"runs/{self._q(run_id)}/artifact", raw=True)[0]
        return data

    def metrics(self, ref: str, metric: str | None = None, limit: int = 100,
                cursor: str | None = None) -> dict[str, Any]:
        return self._json("GET", f"jobs/{self._q(ref)}/metrics",
                          query={"metric": metric, "limit": limit, "cursor": cursor})

    def notifications(self, ref: str | None = None, *, status: str | None = None,
                      limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        return self._json("GET", "notifications", query={
            "job": ref, "status": status, "limit": limit, "cursor": cursor})

    def search(self, q: str, *, job: str | None = None, since: str | None = None,
               status: str | None = None, limit: int = 20, cursor: str | None = None,
               context: int = 2) -> dict[str, Any]:
        return self._json("GET", "search", query={
            "q": q, "job": job, "since": since, "status": status, "limit": limit,
            "cursor": cursor, "context": context})

    def timeline(self, start: str | None = None, end: str | None = None, *,
                 job: str | None = None, status: str | None = None, limit: int = 1000,
                 cursor: str | None = None) -> dict[str, Any]:
        return self._json("GET", "timeline", query={
            "from": start, "to": end, "job": job, "status": status, "limit": limit,
            "cursor": cursor})

    def calendar(self, ref: str, days: int = 90) -> dict[str, Any]:
        return self._json("GET", f"jobs/{self._q(ref)}/calendar", query={"days": days})

    def diff(self, run_a: str, run_b: str) -> dict[str, Any]:
        return self._json("GET", "diff", query={"a": run_a, "b": run_b})

    def export(self, names: list[str] | None = None) -> str:
        query = urllib.parse.urlencode([("job", n) for n in names or []])
        data: bytes = self.request("GET", "export" + (f"?{query}" if query else ""),
                                   raw=True)[0]
        return data.decode("utf-8")

    def apply(self, text: str, *, source: str = "jobs.yaml", dry_run: bool = False,
              prune: bool = False, plan_id: str | None = None) -> dict[str, Any]:
        # the file's ${VAR} references are read here, from this process's environment
        # (the server never reads its own for a request)
        environ = {k: os.environ[k] for k in sorted(references(text)) if k in os.environ}
        body = {"text": text, "source": source, "dry_run": dry_run, "prune": prune,
                "environ": environ}
        if plan_id is not None:
            body["plan_id"] = plan_id
        return self._json("POST", "apply", body)

    def revisions(self, ref: str, limit: int = 50,
                  cursor: str | None = None) -> dict[str, Any]:
        return self._json("GET", f"jobs/{self._q(ref)}/revisions",
                          query={"limit": limit, "cursor": cursor})

    def revision(self, ref: str, rev: int) -> dict[str, Any]:
        return self._json("GET", f"jobs/{self._q(ref)}/revisions/{self._q(str(rev))}")

    def revert(self, ref: str, rev: int) -> dict[str, Any]:
        return self._json("POST", f"jobs/{self._q(ref)}/revert", {"rev": rev})

    def audit(self, since: str | None = None, job: str | None = None, limit: int = 100,
              cursor: str | None = None, verify: bool = False) -> dict[str, Any]:
        return self._json("GET", "audit", query={
            "since": since, "job": job, "limit": limit, "cursor": cursor,
            "verify": "1" if verify else None})

    def stats(self) -> dict[str, Any]:
        return self._json("GET", "stats")

    def status(self) -> dict[str, Any]:
        return self._json("GET", "status")

    def preview(self, schedule: str, tz: str | None = None, count: int = 5,
                start: str | None = None) -> dict[str, Any]:
        return self._json("GET", "preview", query={"schedule": schedule, "tz": tz,
                                                     "count": count, "from": start})

    def artifact_url(self, run_id: str) -> str:
        """Where a browser logged in to this server downloads the executed notebook."""
        return f"{self.base}api/cron/runs/{self._q(run_id)}/artifact"
