"""What the REST handlers delegate to: one object per server, async, never blocking the loop.

``CronService`` is the async face of the operations layer: each call runs
:class:`~hermes_cron_ext.ops.local.Operations` (validation, permissions, the
rules) on a store thread of the :class:`~hermes_cron_ext.ops.host.Host`. What is
the server's own is the live part:

- the host's event bus tails the store's append-only ``events`` table, so changes
  made by any process (daemon, CLI, supervisors) reach ``/events`` and run
  streams; changes made here are pushed at once;
- :class:`~hermes_cron_ext.server.streams.Feeds` reads each watched run's new output
  once, off the loop, and shares it as ready-made SSE frames with every viewer
  (see ``streams.py``).

On a store that can LISTEN (PostgreSQL), NOTIFY wakes the bus and the watched logs
at once, on every host; polling then only backs it up (events once a second, each
watched log ten times a second).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from hermes_cron_ext.domain.access import Viewer
from hermes_cron_ext.domain.models import ACTIVE_STATUSES
from hermes_cron_ext.errors import InvalidInput
from hermes_cron_ext.ops.host import Host
from hermes_cron_ext.server.streams import Feeds


def _page_json(key: str, page) -> str:
    """A page as JSON text, built off the event loop (a 500-run page costs ~40 ms)."""
    return json.dumps({key: [item.to_json() for item in page.items], "cursor": page.cursor})


class RunsJSON:
    """Run history pages as JSON text, each finished run serialized once.

    A finished run no longer changes (a late heartbeat of a lost run's supervisor can
    still move ``heartbeat_at`` and ``output_bytes``, so those are part of the key),
    and history pages list mostly finished runs: rendering them costs more than
    finding them (the newest 50 of a million runs: ~0.4 ms to find, ~1 ms to render).
    """

    def __init__(self, size: int = 20_000):
        self.size = size
        self._texts: dict[tuple, str] = {}

    def page(self, page) -> str:
        parts = []
        for run in page.items:
            key = (run.id, run.heartbeat_at, run.output_bytes)
            text = self._texts.get(key)
            if text is None:
                text = json.dumps(run.to_json())
                if run.status not in ACTIVE_STATUSES:
                    if len(self._texts) >= self.size:
                        self._texts.clear()
                    self._texts[key] = text
            parts.append(text)
        return f'{{"runs": [{", ".join(parts)}], "cursor": {json.dumps(page.cursor)}}}'


class CronService:
    """The operations, awaited (see the module docstring), and the live feeds."""

    def __init__(self, host: Host, *, stream_interval: float = 0.01, log=None):
        self.host = host
        self.ops = host.ops
        self.ticker = host.ticker
        self.runs_json = RunsJSON()
        self.io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hermes-io")
        self.bus = host.bus
        self.feeds = Feeds(self.ops, self.io, stream_interval)
        self.bus.add_listener(self._on_events)
        self.bus.add_interest(self.feeds.watching)  # a run's feed learns its end from events
        self._bus_task: asyncio.Task | None = None
        self._unlisten: Callable[[], None] | None = None
        #: set once by close(): shared with the views as_user and as_origin make (their
        #: streams end with the server's)
        self._closed = threading.Event()
        self.log = log

    @property
    def closing(self) -> bool:
        """The server is stopping: every stream ends."""
        return self._closed.is_set()

    def as_user(self, viewer: Viewer | None) -> CronService:
        """This service as one hub user uses it: the same feeds, bus and threads, the
        operations as *viewer* (``Operations.as_user``). None: the server's own user."""
        if viewer is None:
            return self
        view = copy.copy(self)
        view.ops = self.ops.as_user(viewer)
        return view

    def as_origin(self, actor: str | None, origin: str) -> CronService:
        """This service acting for *actor* (a Jupyter user's name; None: the server's
        Unix user) from *origin* (``rest``, ``panel``): what revisions and the audit log
        record (``Operations.as_origin``)."""
        view = copy.copy(self)
        view.ops = self.ops.as_origin(actor, origin)
        return view

    async def me(self) -> dict:
        return self.ops.me()

    async def readable(self, job_ids: list[str]) -> set[str]:
        """Which of *job_ids* this service's viewer may read (one query, off the loop)."""
        if self.ops.viewer is None or self.ops.viewer.admin:
            return set(job_ids)
        return await self._ops(self.ops.readable, job_ids)

    async def start(self) -> None:
        await self.host.start()
        self._bus_task = asyncio.create_task(self.bus.run(), name="hermes-cron-events")
        self._unlisten = self.host.subscribe(self.host.loop_callback(self._on_notify))
        if self.host.broker.remote:  # polls only back the notices up (a busy reader catches up)
            self.bus.interval = max(self.bus.interval, self.host.broker.poll_events)
            self.feeds.interval = max(self.feeds.interval, self.host.broker.poll_output)

    def _on_notify(self, kind: str, arg: str) -> None:
        """A broker's notice: output wakes the log feeds, anything else the event bus."""
        if kind == "output":
            self.feeds.poke()
        else:
            self.bus.poke()

    async def close(self) -> None:
        """Wake and end every stream (server shutdown)."""
        self._closed.set()
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        await self.bus.close()
        await self.feeds.close()
        if self._bus_task is not None:
            self._bus_task.cancel()
        self.io.shutdown(wait=False)

    def _on_events(self, events: list) -> None:
        for e in events:
            if e.run_id:
                self.feeds.changed(e.run_id)

    async def _ops(self, fn, *args, **kwargs):
        """An operation, on a store thread."""
        return await self.host.io(functools.partial(fn, *args, **kwargs))

    async def _io(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.io, fn, *args)

    # -- jobs ---------------------------------------------------------------------------
    async def status(self) -> dict:
        return await self._ops(self.ops.status)

    async def list_jobs(self, *, limit: int, cursor: str | None, state: str | None,
                        search: str | None) -> dict:
        return await self._ops(self.ops.jobs_page, limit=limit, cursor=cursor, state=state,
                               search=search)

    async def create_job(self, body: dict) -> tuple[dict, bool]:
        return await self._ops(self.ops.create, body)

    async def get_job(self, ref: str) -> dict:
        return await self._ops(self.ops.job, ref)

    async def update_job(self, ref: str, body: dict, *, may_execute: bool = True) -> dict:
        return await self._ops(self.ops.edit, ref, body, may_execute=may_execute)

    async def delete_job(self, ref: str) -> None:
        await self._ops(self.ops.remove, ref)

    async def set_paused(self, ref: str, paused: bool) -> dict:
        return await self._ops(self.ops.pause if paused else self.ops.resume, ref)

    async def run_job(self, ref: str, body: dict | None = None, *,
                      may_execute: bool = True) -> dict:
        body = body or {}
        unknown = set(body) - {"parameters"}
        if unknown:
            field = sorted(unknown)[0]
            raise InvalidInput(f"unknown field {field!r}", field=field)
        return await self._ops(self.ops.run_now, ref, body.get("parameters"),
                               may_execute=may_execute)

    async def pipeline(self, ref: str) -> dict:
        return await self._ops(self.ops.pipeline, ref)

    async def metrics(self, ref: str, *, metric: str | None, limit: int,
                      cursor: str | None) -> dict:
        return await self._ops(self.ops.metrics, ref, metric=metric, limit=limit,
                               cursor=cursor)

    async def notifications(self, ref: str | None, *, status: str | None, limit: int,
                            cursor: str | None) -> dict:
        return await self._ops(self.ops.notifications, ref, status=status, limit=limit,
                               cursor=cursor)

    async def job_parameters(self, ref: str) -> dict:
        return {"parameters": await self._ops(self.ops.job_parameters, ref)}

    async def backfill(self, ref: str, body: dict) -> dict:
        unknown = set(body) - {"from", "to", "max_parallel", "dry_run"}
        if unknown:
            field = sorted(unknown)[0]
            raise InvalidInput(f"unknown field {field!r}", field=field)
        for key in ("from", "to"):
            if not isinstance(body.get(key), str):
                raise InvalidInput(f"{key} is required: an ISO 8601 time or a date", field=key)
        dry = body.get("dry_run", False)
        if not isinstance(dry, bool):
            raise InvalidInput("dry_run must be true or false", field="dry_run")
        return await self._ops(self.ops.backfill, ref, body["from"], body["to"],
                               max_parallel=body.get("max_parallel", 1), dry_run=dry)

    async def get_backfill(self, backfill_id: str) -> dict:
        return await self._ops(self.ops.get_backfill, backfill_id)

    async def backfills(self, ref: str) -> dict:
        return {"backfills": await self._ops(self.ops.backfills, ref)}

    async def cancel_backfill(self, backfill_id: str) -> dict:
        return await self._ops(self.ops.cancel_backfill, backfill_id)

    # -- definitions as code, revisions, audit ------------------------------------------
    async def export(self, names: list[str]) -> str:
        return await self._ops(self.ops.export, names or None)

    async def apply(self, body: dict) -> dict:
        unknown = set(body) - {"text", "source", "dry_run", "prune", "environ", "plan_id"}
        if unknown:
            field = sorted(unknown)[0]
            raise InvalidInput(f"unknown field {field!r}", field=field)
        if not isinstance(body.get("text"), str):
            raise InvalidInput("text is required: the definitions file's text", field="text")
        for key in ("dry_run", "prune"):
            if not isinstance(body.get(key, False), bool):
                raise InvalidInput(f"{key} must be true or false", field=key)
        environ = body.get("environ") or {}
        if not isinstance(environ, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in environ.items()):
            raise InvalidInput("environ must be an object of string values", field="environ")
        # ${VAR} references are read from the body alone: never from the server's own
        # environment (a hub service's holds its secrets, not its users')
        return await self._ops(self.ops.apply, body["text"],
                               source=body.get("source") or "jobs.yaml",
                               dry_run=body.get("dry_run", False),
                               prune=body.get("prune", False), environ=environ,
                               plan_id=_plan_id(body.get("plan_id")))

    async def revisions(self, ref: str, *, limit: int, cursor: str | None) -> dict:
        return await self._ops(self.ops.revisions, ref, limit, cursor)

    async def revision(self, ref: str, rev: str) -> dict:
        return await self._ops(self.ops.revision, ref, rev)

    async def revert(self, ref: str, body: dict) -> dict:
        unknown = set(body) - {"rev"}
        if unknown:
            field = sorted(unknown)[0]
            raise InvalidInput(f"unknown field {field!r}", field=field)
        if "rev" not in body:
            raise InvalidInput("rev is required: the revision to go back to", field="rev")
        return await self._ops(self.ops.revert, ref, body["rev"])

    async def audit(self, *, since: str | None, job: str | None, limit: int,
                    cursor: str | None, verify: bool) -> dict:
        return await self._ops(self.ops.audit, since, job, limit, cursor, verify)

    # -- runs ---------------------------------------------------------------------------
    async def list_runs(self, ref: str | None, *, limit: int, cursor: str | None,
                        status: str | None) -> str:
        def page() -> str:
            return self.runs_json.page(self.ops.runs_page(
                ref, limit=limit, cursor=cursor, status=status))
        return await self.host.io(page)

    async def get_run(self, run_id: str):
        return await self._ops(self.ops.get_run, run_id)

    async def cancel_run(self, run_id: str) -> dict:
        return await self._ops(self.ops.cancel, run_id)

    async def active_run(self, ref: str) -> dict:
        return await self._ops(self.ops.active_run, ref)

    async def read_log(self, run_id: str, offset: int, limit: int | None,
                       tail: int | None) -> tuple[bytes, int, int]:
        """``(data, start, size)`` of a run's log (file reads: on the I/O threads)."""
        await self.get_run(run_id)
        return await self._io(functools.partial(self.ops.log, run_id, offset, limit, tail))

    async def read_artifact(self, run_id: str) -> bytes:
        return await self._ops(self.ops.artifact, run_id)

    async def read_segments(self, run_id: str, offset: int, limit: int):
        return await self._io(self.ops.segments, run_id, offset, limit)

    async def log_size(self, run_id: str) -> int:
        return await self._io(self.ops.log_size, run_id)

    # -- across runs (ops/across.py) ----------------------------------------------------
    async def search(self, q: str | None, *, job: str | None, since: str | None,
                     status: str | None, limit: int, cursor: str | None,
                     context: int) -> dict:
        if q is None:
            raise InvalidInput("q is required: what to look for", field="q")
        return await self._ops(self.ops.search, q, job=job, since=since, status=status,
                               limit=limit, cursor=cursor, context=context)

    async def timeline(self, start: str | None, end: str | None, *, job: str | None,
                       status: str | None, limit: int, cursor: str | None) -> dict:
        return await self._ops(self.ops.timeline, start, end, job=job, status=status,
                               limit=limit, cursor=cursor)

    async def calendar(self, ref: str, days: int) -> dict:
        return await self._ops(self.ops.calendar, ref, days)

    async def diff(self, run_a: str | None, run_b: str | None) -> dict:
        for name, value in (("a", run_a), ("b", run_b)):
            if not value:
                raise InvalidInput(f"{name} is required: a run id", field=name)
        return await self._ops(self.ops.diff, run_a, run_b)

    # -- other -----------------------------------------------------------------------
    async def stats(self) -> dict:
        return await self._ops(self.ops.stats)

    async def preview(self, schedule: str | None, tz: str | None, count: int,
                      start: str | None) -> dict:
        return await self._ops(self.ops.preview, schedule, tz, count, start)


def _plan_id(value) -> str | None:
    """A dry run's ``plan_id``, checked (an apply of exactly that plan), or None."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidInput("plan_id must be the plan_id a dry run answered", field="plan_id")
    return value
