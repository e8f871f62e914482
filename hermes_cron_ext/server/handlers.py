"""REST and Server-Sent-Events handlers under ``{base_url}api/cron/``.

Thin on purpose: parse the request, call ``self.cron`` (a :class:`CronService`),
serialise. Every verb is ``@web.authenticated`` and ``@authorized`` on the
``cron`` resource: reads need ``read``; run/pause/resume/cancel/delete need
``write``; creating a job, or changing what it executes, where, with what, or where
it sends data, needs ``execute`` (a job runs code as the server's user, like a
terminal; the field list is ``jobspec.FIELD_PERMISSIONS``). Errors are JSON
``{"error": {"code", "message", "field"?}}`` with the right 4xx.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import overload

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.iostream import StreamClosedError

from hermes_cron_ext.domain import access
from hermes_cron_ext.domain.access import Viewer
from hermes_cron_ext.domain.models import ACTIVE_STATUSES
from hermes_cron_ext.errors import (
    Conflict,
    Forbidden,
    HermesCronError,
    InvalidInput,
    NotFound,
)
from hermes_cron_ext.ops.local import MAX_METRIC_POINTS
from hermes_cron_ext.server import openapi
from hermes_cron_ext.server.service import CronService
from hermes_cron_ext.server.streams import gap_frame, sse_frame

MAX_BODY = 1024 * 1024
STATUS = {InvalidInput: 400, Forbidden: 403, NotFound: 404, Conflict: 409}
HEARTBEAT = 15.0
ID = r"(?P<ref>[A-Za-z0-9][A-Za-z0-9._-]{0,99})"
#: where a request may say it comes from (``X-Hermes-Cron-Origin``)
ORIGINS = ("rest", "panel", "magics")


class CronAPIHandler(APIHandler):
    auth_resource = "cron"

    @property
    def viewer(self) -> Viewer | None:
        """Who asks, as a hub service's identity provider says (``server/hub.py``); None
        in a user's own Jupyter server, whose user may do everything."""
        return getattr(self.current_user, "hermes_viewer", None)

    @property
    def cron(self) -> CronService:
        """The service as this request's user may use it, acting as them (revisions and
        the audit log record who and from where: ``rest``, or ``panel`` / ``magics`` when
        the client says so in ``X-Hermes-Cron-Origin``)."""
        origin = self.request.headers.get("X-Hermes-Cron-Origin")
        return self.settings["hermes_cron"].as_user(self.viewer).as_origin(
            self.actor, origin if origin in ORIGINS else "rest")

    @property
    def actor(self) -> str | None:
        """Who asks, by name: the hub user; else the Jupyter user; None for the server's
        own token (the server's Unix user is recorded)."""
        if self.viewer is not None:
            return self.viewer.name
        if self.token_authenticated:
            return None
        name = getattr(self.current_user, "username", None)
        return name if isinstance(name, str) and name else None

    # -- errors -------------------------------------------------------------------
    def send_error(self, status_code: int = 500, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, HermesCronError):
            status_code = next((s for t, s in STATUS.items() if isinstance(exc, t)), 500)
        super().send_error(status_code, **kwargs)

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, HermesCronError):
            self.log.info("hermes-cron: %s %s: %s", self.request.method, self.request.path,
                          value.message)
        else:
            super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, HermesCronError) and status_code < 500:
            error = exc.to_dict()
        elif isinstance(exc, web.HTTPError) and status_code < 500:
            error = {"code": {401: "unauthenticated", 403: "forbidden", 404: "not_found",
                              405: "method_not_allowed", 413: "too_large"}.get(
                status_code, "bad_request"), "message": exc.log_message or exc.reason
                or self._reason}
        else:
            error = {"code": "internal", "message": "internal error (see the server log)"}
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": error}))

    # -- input ----------------------------------------------------------------------
    def json_body(self) -> dict:
        if len(self.request.body) > MAX_BODY:
            raise web.HTTPError(413, f"body larger than {MAX_BODY} bytes")
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise InvalidInput("the body is not valid JSON")
        except RecursionError:
            raise InvalidInput("the body is nested too deeply") from None
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object")
        return body

    @overload
    def int_arg(self, name: str, default: int, lo: int, hi: int) -> int: ...
    @overload
    def int_arg(self, name: str, default: None, lo: int, hi: int) -> int | None: ...

    def int_arg(self, name: str, default: int | None, lo: int, hi: int) -> int | None:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise InvalidInput(f"{name} must be a whole number", field=name)
        if not lo <= value <= hi:
            raise InvalidInput(f"{name} must be between {lo} and {hi}", field=name)
        return value

    def str_arg(self, name: str, max_len: int = 200) -> str | None:
        value = self.get_query_argument(name, None)
        if value is not None and len(value) > max_len:
            raise InvalidInput(f"{name} is too long", field=name)
        return value or None

    def reply(self, obj, status: int = 200) -> None:
        """Send *obj* as JSON; a ``str`` is JSON text already serialised off the loop."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(obj if isinstance(obj, str) else json.dumps(obj))

    async def allowed(self, action: str) -> bool:
        """An extra permission check beyond the verb's own (``execute`` for some changes)."""
        ok = self.authorizer.is_authorized(self, self.current_user, action, self.auth_resource)
        if asyncio.iscoroutine(ok):
            ok = await ok
        return bool(ok)


class StatusHandler(CronAPIHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.reply(await self.cron.status())


class MeHandler(CronAPIHandler):
    """Who the scheduler takes the caller for: ``{"name", "groups", "admin"}`` (name
    null in a user's own server: they own every job there)."""

    @web.authenticated
    @authorized
    async def get(self):
        self.reply(await self.cron.me())


class JobsHandler(CronAPIHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.reply(await self.cron.list_jobs(
            limit=self.int_arg("limit", 100, 1, 500), cursor=self.str_arg("cursor", 2000),
            state=self.str_arg("state"), search=self.str_arg("q")))

    @web.authenticated
    @authorized(action="execute")
    async def post(self):
        body = self.json_body()
        if self.request.headers.get("Idempotency-Key") and "idempotency_key" not in body:
            body["idempotency_key"] = self.request.headers["Idempotency-Key"]
        key = body.get("idempotency_key")
        if isinstance(key, str):  # one user's key is not another's
            body["idempotency_key"] = f"{self.idempotency_scope()}/{key}"
        try:
            job, created = await self.cron.create_job(body)
        except Conflict as exc:
            if exc.field == "idempotency_key":  # name the key as the user gave it
                raise Conflict(exc.message.replace(body["idempotency_key"], key),
                               field="idempotency_key") from None
            raise
        self.set_header("Location", self.request.path.rstrip("/") + "/" + job["id"])
        self.reply(job, 201 if created else 200)


    def idempotency_scope(self) -> str:
        """Whose keys these are: the user's name, or "token" for the server's own token
        (jupyter_server makes up a new anonymous user for each such request, so its name
        would defeat retries; whoever holds that token is the server's owner)."""
        if self.token_authenticated:
            return "token"
        return "user:" + getattr(self.current_user, "username", "anonymous")


class JobHandler(CronAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, ref: str):
        self.reply(await self.cron.get_job(ref))

    @web.authenticated
    @authorized(action="write")
    async def patch(self, ref: str):
        # which fields need execute: jobspec.FIELD_PERMISSIONS (checked against the
        # stored job, so re-sending an unchanged command needs only write)
        body = self.json_body()
        self.reply(await self.cron.update_job(ref, body,
                                              may_execute=await self.allowed("execute")))

    @web.authenticated
    @authorized(action="write")
    async def delete(self, ref: str):
        await self.cron.delete_job(ref)
        self.set_status(204)
        self.finish()


class JobActionHandler(CronAPIHandler):
    @web.authenticated
    @authorized(action="write")
    async def post(self, ref: str, action: str):
        if action == "run":  # parameters, if given, need execute (they change what runs)
            body = self.json_body() if self.request.body.strip() else {}
            self.reply(await self.cron.run_job(
                ref, body, may_execute=not body.get("parameters")
                or await self.allowed("execute")), 202)
        else:
            self.reply(await self.cron.set_paused(ref, action == "pause"))


class JobPipelineHandler(CronAPIHandler):
    """The jobs linked to this one by ``after``, with their last statuses."""

    @web.authenticated
    @authorized
    async def get(self, ref: str):
        self.reply(await self.cron.pipeline(ref))


class JobParametersHandler(CronAPIHandler):
    """What a run of the job may be given (a notebook's ``parameters`` cell, typed)."""

    @web.authenticated
    @authorized
    async def get(self, ref: str):
        self.reply(await self.cron.job_parameters(ref))


class JobBackfillHandler(CronAPIHandler):
    """Run a job once per past slot in a range (``{"from", "to", "max_parallel",
    "dry_run"}``): 201 with the backfill's progress, 200 for a dry run. GET: the job's
    backfills, newest first."""

    @web.authenticated
    @authorized
    async def get(self, ref: str):
        self.reply(await self.cron.backfills(ref))

    @web.authenticated
    @authorized(action="write")
    async def post(self, ref: str):
        out = await self.cron.backfill(ref, self.json_body())
        self.reply(out, 200 if out["state"] == "dry-run" else 201)


class BackfillHandler(CronAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, ref: str):
        self.reply(await self.cron.get_backfill(ref))


class BackfillCancelHandler(CronAPIHandler):
    @web.authenticated
    @authorized(action="write")
    async def post(self, ref: str):
        self.reply(await self.cron.cancel_backfill(ref), 202)


class JobMetricsHandler(CronAPIHandler):
    """The numbers the job's runs have: per metric its newest points, oldest first, and
    their summary (``Operations.metrics``)."""

    @web.authenticated
    @authorized
    async def get(self, ref: str):
        self.reply(await self.cron.metrics(
            ref, metric=self.str_arg("metric", 64),
            limit=self.int_arg("limit", 100, 1, MAX_METRIC_POINTS),
            cursor=self.str_arg("cursor", 2000)))


class NotificationsHandler(CronAPIHandler):
    """The notification outbox: deliveries with their attempts and errors, newest first
    (``Operations.notifications``); ``?job=`` one job's, ``?status=`` one status."""

    @web.authenticated
    @authorized
    async def get(self):
        self.reply(await self.cron.notifications(
            self.str_arg("job", 200), status=self.str_arg("status"),
            limit=self.int_arg("limit", 50, 1, 500), cursor=self.str_arg("cursor", 40)))


class ExportHandler(CronAPIHandler):
    """The canonical definitions file (YAML) of the jobs ``?job=`` (repeatable), else of
    all the caller's; secrets by reference (docs/definitions.md)."""

    @web.authenticated
    @authorized
    async def get(self):
        names = self.get_query_arguments("job")
        if any(len(n) > 200 for n in names):
            raise InvalidInput("job is too long", field="job")
        text = await self.cron.export(names)
        self.finish(text.encode(), set_content_type="application/yaml; charset=utf-8")


class ApplyHandler(CronAPIHandler):
    """Apply a definitions file (``{"text", "source", "dry_run", "prune", "environ"}``):
    the plan, carried out in one transaction unless ``dry_run``. Creating and changing
    jobs from a file needs ``execute``, as a create does."""

    @web.authenticated
    @authorized(action="execute")
    async def post(self):
        self.reply(await self.cron.apply(self.json_body()))


class JobRevisionsHandler(CronAPIHandler):
    """The job's revisions, newest first: who, when, from where, what changed."""

    @web.authenticated
    @authorized
    async def get(self, ref: str):
        self.reply(await self.cron.revisions(ref, limit=self.int_arg("limit", 50, 1, 500),
                                             cursor=self.str_arg("cursor", 40)))


class JobRevisionHandler(CronAPIHandler):
    """One revision, with the job's definition then (``spec``)."""

    @web.authenticated
    @authorized
    async def get(self, ref: str, rev: str):
        self.reply(await self.cron.revision(ref, rev))


class JobRevertHandler(CronAPIHandler):
    """Change the job back to a revision's definition (``{"rev"}``): a new revision.
    It may change what runs, so it needs ``execute``."""

    @web.authenticated
    @authorized(action="execute")
    async def post(self, ref: str):
        self.reply(await self.cron.revert(ref, self.json_body()))


class AuditHandler(CronAPIHandler):
    """The audit log, newest first (``?since=7d&job=&verify=1``); admins only in a hub."""

    @web.authenticated
    @authorized
    async def get(self):
        verify = self.get_query_argument("verify", "0")
        if verify not in ("0", "1", "true", "false"):
            raise InvalidInput("verify must be 1 or 0", field="verify")
        self.reply(await self.cron.audit(
            since=self.str_arg("since", 64), job=self.str_arg("job"),
            limit=self.int_arg("limit", 100, 1, 1000), cursor=self.str_arg("cursor", 40),
            verify=verify in ("1", "true")))


class JobRunsHandler(CronAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, ref: str | None = None):
        self.reply(await self.cron.list_runs(
            ref, limit=self.int_arg("limit", 50, 1, 500), cursor=self.str_arg("cursor", 2000),
            status=self.str_arg("status")))


class RunHandler(CronAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, ref: str):
        self.reply((await self.cron.get_run(ref)).to_json())


class RunCancelHandler(CronAPIHandler):
    @web.authenticated
    @authorized(action="write")
    async def post(self, ref: str):
        self.reply(await self.cron.cancel_run(ref), 202)


class RunLogHandler(CronAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, ref: str):
        tail = self.int_arg("tail", None, 0, 1 << 40)
        offset = self.int_arg("offset", 0, 0, 1 << 40)
        limit = self.int_arg("limit", None, 0, 64 * 1024 * 1024)
        data, start, size = await self.cron.read_log(ref, offset, limit, tail)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("X-Log-Offset", str(start))
        self.set_header("X-Log-Size", str(size))
        self.finish(data)


class RunArtifactHandler(CronAPIHandler):
    """The executed notebook of a notebook run (404 when the run has none)."""

    @web.authenticated
    @authorized
    async def get(self, ref: str):
        run = await self.cron.get_run(ref)
        data = await self.cron.read_artifact(run.id)  # any host's; 404 when it has none
        name = f"{run.spec.get('job_name') or run.job_id}-{run.id}.ipynb"
        self.set_header("Content-Type", "application/x-ipynb+json")
        self.set_header("Content-Disposition", f'attachment; filename="{name}"')
        self.finish(data)


class SearchHandler(CronAPIHandler):
    """Runs whose logs have a line with every term of ``?q=``, newest first, with the
    matching lines and their context (``Operations.search``)."""

    @web.authenticated
    @authorized
    async def get(self):
        self.reply(await self.cron.search(
            self.str_arg("q", 200), job=self.str_arg("job"), since=self.str_arg("since", 64),
            status=self.str_arg("status"), limit=self.int_arg("limit", 20, 1, 100),
            cursor=self.str_arg("cursor", 2000), context=self.int_arg("context", 2, 0, 10)))


class TimelineHandler(CronAPIHandler):
    """The runs overlapping ``?from=&to=`` (ISO 8601 or durations from now), oldest
    first, and the coming slots (``Operations.timeline``)."""

    @web.authenticated
    @authorized
    async def get(self):
        self.reply(await self.cron.timeline(
            self.str_arg("from", 64), self.str_arg("to", 64), job=self.str_arg("job"),
            status=self.str_arg("status"), limit=self.int_arg("limit", 1000, 1, 5000),
            cursor=self.str_arg("cursor", 2000)))


class JobCalendarHandler(CronAPIHandler):
    """A job's runs per day of its time zone (``Operations.calendar``)."""

    @web.authenticated
    @authorized
    async def get(self, ref: str):
        self.reply(await self.cron.calendar(ref, self.int_arg("days", 90, 1, 366)))


class DiffHandler(CronAPIHandler):
    """What differs between the runs ``?a=`` and ``?b=`` (``Operations.diff``)."""

    @web.authenticated
    @authorized
    async def get(self):
        self.reply(await self.cron.diff(self.str_arg("a", 100), self.str_arg("b", 100)))


class StatsHandler(CronAPIHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.reply(await self.cron.stats())


class PreviewHandler(CronAPIHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.reply(await self.cron.preview(
            self.str_arg("schedule", 1000), self.str_arg("tz"),
            self.int_arg("count", 5, 1, 100), self.str_arg("from")))


class OpenAPIHandler(CronAPIHandler):
    """The OpenAPI document; its job bodies come from the options schema."""

    @web.authenticated
    @authorized
    async def get(self):
        data = await asyncio.get_running_loop().run_in_executor(None, openapi.document)
        self.set_header("Content-Type", "application/json")
        self.finish(data)


class OptionsHandler(CronAPIHandler):
    """The job options schema (``domain/options.py``): what the panel's form shows."""

    @web.authenticated
    @authorized
    async def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish(openapi.options_json())


# -- Server-Sent Events ---------------------------------------------------------------

class SSEHandler(CronAPIHandler):
    """``text/event-stream`` with comment heartbeats; ends when the server stops."""

    def start_stream(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")

    def event(self, name: str, data, id_: int | str | None = None) -> None:
        self.write(sse_frame(name, data, id_))

    def resume_from(self, param: str) -> int | None:
        header = self.request.headers.get("Last-Event-ID")
        if header:
            try:
                return max(0, int(header))
            except ValueError:
                raise InvalidInput("Last-Event-ID must be a number", field="Last-Event-ID")
        return self.int_arg(param, None, 0, 1 << 62)


class RunStreamHandler(SSEHandler):
    """A run's output, progress and status; resumable by byte offset.

    A viewer of an active run keeps up with it: when it falls far behind (a flood of
    output), it skips ahead with a ``gap`` event (see streams.py). ``?lossless=1``
    asks for every byte instead, at the reader's own pace."""

    async def stream_run(self, run_id: str) -> None:
        cron = self.cron
        run = await cron.get_run(run_id)  # 404 before any byte is sent
        offset = self.resume_from("offset") or 0
        lossless = self.get_argument("lossless", "0")
        if lossless not in ("0", "1", "true", "false"):
            raise InvalidInput("lossless must be 1 or 0", field="lossless")
        live = run.status in ACTIVE_STATUSES and lossless in ("0", "false")
        self.start_stream()
        feed = cron.feeds.watch(run_id)
        cron.bus.poke()  # an idle bus polls promptly again: the feed learns the run's end
        try:
            self.event("status", run.to_json())
            await self.flush()
            last = (run.status, run.phase, run.progress)
            last_write = time.monotonic()
            while not cron.closing:
                run = feed.run or run
                skip = feed.skip_to(offset) if live else None
                if skip is not None:
                    self.write(gap_frame(offset, skip)[2])
                    offset = skip
                taken = feed.take(offset, live)
                if taken is None:  # behind the shared frames: read on our own
                    taken = await cron.feeds.read_behind(feed, offset)
                data, offset = taken
                state = (run.status, run.phase, run.progress)
                if state[1:] != last[1:]:
                    self.event("progress", {"phase": run.phase, "progress": run.progress})
                if data:
                    self.write(data)
                if state[0] != last[0]:
                    self.event("status", run.to_json())
                if data or skip is not None or state != last:
                    last = state
                    await self.flush()  # backpressure: a slow client waits here alone
                    last_write = time.monotonic()
                if feed.done and feed.read_to is not None and offset >= feed.read_to:
                    self.event("end", {"status": run.status, "exit_code": run.exit_code,
                                       "reason": run.reason, "offset": offset})
                    await self.flush()
                    return
                if data and offset < (feed.read_to or 0):
                    continue  # more is ready (a reader catching up)
                # shared by every reader of the run; never cancelled by one's timeout
                await asyncio.wait((feed.changed(),), timeout=HEARTBEAT)
                if time.monotonic() - last_write >= HEARTBEAT:
                    self.write(": keep-alive\n\n")
                    await self.flush()
                    last_write = time.monotonic()
        except StreamClosedError:
            pass
        finally:
            cron.feeds.unwatch(feed)

    @web.authenticated
    @authorized
    async def get(self, ref: str):
        await self.stream_run(ref)


class JobStreamHandler(RunStreamHandler):
    """The job's running run, or 404 at once when nothing runs."""

    @web.authenticated
    @authorized
    async def get(self, ref: str):
        run = await self.cron.active_run(ref)
        await self.stream_run(run["id"])


class EventsHandler(SSEHandler):
    """Every job and run change, from a cursor (``Last-Event-ID`` or ``?cursor=``)."""

    @web.authenticated
    @authorized
    async def get(self):
        cron = self.cron
        cursor = self.resume_from("cursor")
        job = self.str_arg("job")
        if job:  # a job that is not there is a 404, not a stream that stays silent
            job = (await cron.get_job(job))["id"]
        await cron.bus.attach()  # caught up: its cursor is the table's end
        if cursor is None:
            cursor = cron.bus.cursor
        self.start_stream()
        try:
            self.write(": connected\n\n")
            await self.flush()
            last_write = time.monotonic()
            readable: dict[str, bool] = {}  # a hub user's: which jobs' events they see
            while not cron.closing:
                events = await cron.bus.since(cursor)
                if self.viewer is not None:
                    await self._learn_readable(cron, events, readable)
                for e in events:
                    cursor = e.seq
                    if job and e.job_id != job:
                        continue
                    if e.job_id and not readable.get(e.job_id, self.viewer is None):
                        continue
                    self.event(e.type, e.to_json(), e.seq)
                if events:
                    await self.flush()
                    last_write = time.monotonic()
                    continue
                await cron.bus.wait(HEARTBEAT)
                if time.monotonic() - last_write >= HEARTBEAT:
                    self.write(": keep-alive\n\n")
                    await self.flush()
                    last_write = time.monotonic()
        except StreamClosedError:
            pass
        finally:
            cron.bus.detach()


    async def _learn_readable(self, cron: CronService, events: list,
                              readable: dict[str, bool]) -> None:
        """Which jobs of *events* the viewer may read: asked once per job (again after
        it changes: its shares may have), a deleted job's from its deletion's event,
        which carries its owner and shares as they were: a feed resumed after the job
        went (``Last-Event-ID``) still tells whoever could read it then, and no one
        else, whether or not this connection saw the job before."""
        viewer = self.viewer
        for e in events:
            if e.type == "job.updated":
                readable.pop(e.job_id, None)
            elif e.type == "job.deleted" and viewer is not None:
                shares = e.data.get("shares")
                readable[e.job_id] = bool(readable.get(e.job_id)) or access.allowed(
                    viewer, str(e.data.get("owner") or ""),
                    shares if isinstance(shares, dict) else {}, "read")
        unknown = sorted({e.job_id for e in events if e.job_id and e.job_id not in readable})
        if unknown:
            seen = await cron.readable(unknown)
            readable.update({j: j in seen for j in unknown})


class UnknownRouteHandler(CronAPIHandler):
    """A JSON 404 for any other path under the API (clients parse errors one way)."""

    @web.authenticated
    @authorized
    async def get(self, rest: str):
        raise NotFound(f"no such API route: {self.request.path}")

    post = patch = delete = put = get


class UnavailableHandler(CronAPIHandler):
    """Every route while the store cannot be opened: 503 with the reason (which names
    the store's file), instead of the extension vanishing into HTML 404s."""

    def initialize(self, reason: str) -> None:
        self.reason = reason

    @web.authenticated
    @authorized
    async def get(self, *_):
        self.set_status(503)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": {"code": "store_unavailable",
                                          "message": self.reason}}))

    post = patch = delete = put = get


def unavailable_routes(reason: str) -> list[tuple]:
    return [(r"api/cron(?:/.*)?", UnavailableHandler, {"reason": reason})]


def routes() -> list[tuple]:
    base = "api/cron"
    return [
        (rf"{base}/status", StatusHandler),
        (rf"{base}/me", MeHandler),
        (rf"{base}/jobs", JobsHandler),
        (rf"{base}/jobs/{ID}", JobHandler),
        (rf"{base}/jobs/{ID}/(?P<action>run|pause|resume)", JobActionHandler),
        (rf"{base}/jobs/{ID}/runs", JobRunsHandler),
        (rf"{base}/jobs/{ID}/stream", JobStreamHandler),
        (rf"{base}/runs", JobRunsHandler),
        (rf"{base}/jobs/{ID}/backfill", JobBackfillHandler),
        (rf"{base}/jobs/{ID}/parameters", JobParametersHandler),
        (rf"{base}/jobs/{ID}/pipeline", JobPipelineHandler),
        (rf"{base}/jobs/{ID}/metrics", JobMetricsHandler),
        (rf"{base}/jobs/{ID}/revisions", JobRevisionsHandler),
        (rf"{base}/jobs/{ID}/revisions/(?P<rev>[0-9]{{1,12}})", JobRevisionHandler),
        (rf"{base}/jobs/{ID}/revert", JobRevertHandler),
        (rf"{base}/export", ExportHandler),
        (rf"{base}/apply", ApplyHandler),
        (rf"{base}/audit", AuditHandler),
        (rf"{base}/backfills/{ID}", BackfillHandler),
        (rf"{base}/backfills/{ID}/cancel", BackfillCancelHandler),
        (rf"{base}/runs/{ID}", RunHandler),
        (rf"{base}/runs/{ID}/cancel", RunCancelHandler),
        (rf"{base}/runs/{ID}/log", RunLogHandler),
        (rf"{base}/runs/{ID}/stream", RunStreamHandler),
        (rf"{base}/runs/{ID}/artifact", RunArtifactHandler),
        (rf"{base}/events", EventsHandler),
        (rf"{base}/notifications", NotificationsHandler),
        (rf"{base}/search", SearchHandler),
        (rf"{base}/timeline", TimelineHandler),
        (rf"{base}/jobs/{ID}/calendar", JobCalendarHandler),
        (rf"{base}/diff", DiffHandler),
        (rf"{base}/stats", StatsHandler),
        (rf"{base}/preview", PreviewHandler),
        (rf"{base}/openapi.json", OpenAPIHandler),
        (rf"{base}/options", OptionsHandler),
        (rf"{base}/(?P<rest>.*)", UnknownRouteHandler),
    ]
