"""What the REST handlers delegate to: one object per server, async, never blocking the loop.

``CronService`` validates input, calls the store through :class:`AsyncStore`
(the store's own thread), wakes the in-server ticker, and feeds live streams:

- an :class:`EventBus` tails the store's append-only ``events`` table, so changes
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
import functools
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from hermes_cron_ext import __version__
from hermes_cron_ext.domain import schedule as sched
from hermes_cron_ext.domain.jobspec import validate_changes, validate_new
from hermes_cron_ext.domain.models import (
    ACTIVE_STATUSES,
    Event,
    Run,
    hostname,
    iso,
    parse_iso,
    process_alive,
)
from hermes_cron_ext.errors import HermesCronError, InvalidInput, NotFound
from hermes_cron_ext.events import EventBroker, broker_for
from hermes_cron_ext.events.bus import EventBus
from hermes_cron_ext.runtime.executor import AllowedExecutors
from hermes_cron_ext.runtime.notify import check_url
from hermes_cron_ext.server.streams import Feeds
from hermes_cron_ext.store import AsyncStore

#: The permission on Jupyter's ``cron`` resource that setting each job field needs: the
#: one declaration of it. ``write`` lets a user decide *when* and *how often* a job runs
#: and what is kept; ``execute`` is needed to decide *what* runs, *where*, *with what*
#: (code, interpreter, working directory, environment, notebook and its parameters, the
#: executor) and *where data is sent* (webhook and ping URLs). Creating a job always needs
#: ``execute``; a change needs it when it changes a field marked so. A field missing here
#: needs ``execute`` (fail closed); tests check every job and policy field is listed.
FIELD_PERMISSIONS: dict[str, str] = {
    # what runs, where, with what
    "kind": "execute", "command": "execute", "code": "execute", "interpreter": "execute",
    "cwd": "execute", "env": "execute", "secret_env": "execute", "kernel": "execute",
    "parameters": "execute", "executor": "execute",
    # where data goes
    "notify_url": "execute", "ping_url": "execute",
    # when, how often, what is kept
    "name": "write", "schedule": "write", "at": "write", "timezone": "write",
    "description": "write", "enabled": "write", "idempotency_key": "write",
    "policy": "write",  # its fields are listed one by one below
    "misfire": "write", "starting_deadline": "write", "overlap": "write",
    "retries": "write", "retry_delay": "write", "retry_max_delay": "write",
    "retry_on_timeout": "write", "timeout": "write", "kill_grace": "write",
    "max_failures": "write", "jitter": "write", "keep_runs": "write",
    "keep_failures": "write",
}
#: the fields whose change needs ``execute``
EXECUTE_FIELDS = frozenset(k for k, v in FIELD_PERMISSIONS.items() if v == "execute")


def permission_for(field: str) -> str:
    return FIELD_PERMISSIONS.get(field, "execute")


class Forbidden(HermesCronError):
    """The user lacks the permission a change needs (403)."""

    code = "forbidden"


def execute_changes(job, fields: dict) -> list[str]:
    """The fields of a validated change (``jobspec.validate_changes``) that need
    ``execute`` and whose value differs from *job*'s (re-sending a value unchanged, as
    the panel's edit form does, needs only ``write``)."""
    def env_parts(env: dict, secrets: list) -> dict:  # secret values live in env
        return {"env": {k: v for k, v in env.items() if k not in secrets},
                "secret_env": {k: v for k, v in env.items() if k in secrets}}
    old = env_parts(job.env, job.secret_env)
    new = env_parts(fields.get("env") or {}, fields.get("secret_env") or [])
    changed = []
    for key, value in fields.items():
        if key in new:
            if new[key] != old[key]:
                changed.append(key)
        elif key == "policy":
            for name in vars(value):
                if (permission_for(name) == "execute"
                        and getattr(value, name) != getattr(job.policy, name, None)):
                    changed.append(name)
        elif permission_for(key) == "execute" and value != getattr(job, key, None):
            changed.append(key)
    return changed


NO_TICKER = ("no ticker is alive on this store: scheduled runs will not fire until one starts "
             "(the Jupyter server's own ticker, hermes-cron daemon, or a systemd timer)")


def status_report(store, server_ticker: bool = False) -> dict:
    """Who is ticking on *store* and how many jobs wait (sync: one trip to a store thread).

    Never reads the runs: it is polled, and cheap at any history size."""
    now = time.time()
    tickers = store.list_tickers()
    alive = [t for t in tickers if t.alive(now)]
    by_state = store.jobs_by_state()
    enabled = by_state.get("scheduled", 0)
    return {
        "version": __version__, "store": store.display_url,
        "tickers": [t.to_json(now) for t in tickers], "alive": len(alive),
        "ticking": bool(alive), "jobs_by_state": by_state, "server_ticker": server_ticker,
        "ticker_fault": None,  # the server's own ticker's, when it cannot write (service)
        "warning": None if alive else NO_TICKER + (
            f"; {enabled} enabled job(s) are waiting" if enabled else ""),
    }


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
    def __init__(self, store: AsyncStore, *, ticker=None, default_tz: str | None = None,
                 stream_interval: float = 0.01, log=None, executors=None,
                 allow_private_urls: bool = False, broker: EventBroker | None = None):
        self.store = store
        #: how changes are told: ours to the in-server ticker, others' to the bus and feeds
        self.broker = broker or broker_for(store.sync)
        #: whether jobs' notify_url / ping_url may name non-public hosts (notify.py)
        self.allow_private_urls = allow_private_urls
        #: the executors a job may name (``runtime.executor.AllowedExecutors``)
        self.executors = executors or AllowedExecutors(["local"])
        self.runs_json = RunsJSON()
        self.ticker = ticker
        self.default_tz = default_tz
        self.io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hermes-io")
        self.bus = EventBus(store)
        self.feeds = Feeds(store.sync, self.io, stream_interval)
        self.bus.add_listener(self._on_events)
        self._bus_task: asyncio.Task | None = None
        self._unlisten = None
        self.closing = False
        self.log = log

    async def start(self) -> None:
        await self.bus.start()
        self._bus_task = asyncio.create_task(self.bus.run(), name="hermes-cron-events")
        self._listen()

    def _listen(self) -> None:
        """Wake on the broker's notices: events poke the bus, output the log's feed."""
        loop = asyncio.get_running_loop()

        def on_notify(kind: str, arg: str) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._on_notify, kind, arg)
        self._unlisten = self.broker.subscribe(on_notify)
        if self.broker.remote:  # polls only back the notices up (a busy reader catches up)
            self.bus.interval = max(self.bus.interval, self.broker.poll_events)
            self.feeds.interval = max(self.feeds.interval, self.broker.poll_output)

    def _on_notify(self, kind: str, arg: str) -> None:
        if kind == "output":
            self.feeds.poke()
        else:
            self.bus.poke()

    async def close(self) -> None:
        """Wake and end every stream (server shutdown)."""
        self.closing = True
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        await self.bus.close()
        await self.feeds.close()
        if self._bus_task is not None:
            self._bus_task.cancel()
        self.io.shutdown(wait=False)

    def _on_events(self, events: list[Event]) -> None:
        for e in events:
            if e.run_id:
                self.feeds.changed(e.run_id)

    def _changed(self) -> None:
        """This process changed the store: the bus and the in-server ticker look now."""
        self.broker.publish("changed")

    async def _io(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.io, fn, *args)

    # -- status ------------------------------------------------------------------
    async def alive_tickers(self) -> list:
        now = time.time()
        return [t for t in await self.store.list_tickers() if t.alive(now)]

    async def status(self) -> dict:
        report = await self.store.run(status_report, self.store.sync, self.ticker is not None)
        fault = self.ticker.fault if self.ticker is not None else None
        report["ticker_fault"] = None if fault is None else {
            "since": iso(fault["since"]), "error": fault["error"]}
        if fault is not None:  # alive, but not firing: say why
            report["warning"] = (f"this server's ticker cannot write to the store since "
                                 f"{iso(fault['since'])}: {fault['error']}; jobs do not "
                                 "fire until it can")
        return report

    # -- jobs ----------------------------------------------------------------------
    async def list_jobs(self, *, limit: int, cursor: str | None, state: str | None,
                        search: str | None) -> str:
        def page() -> str:  # one trip to a store thread: query and JSON together
            return _page_json("jobs", self.store.sync.list_jobs(
                limit=limit, cursor=cursor, state=state, search=search))
        return await self.store.run(page)

    def _check_executor(self, spec: str | None) -> None:
        if spec and spec not in self.executors:
            raise InvalidInput(self.executors.refusal(spec), field="executor")

    async def _check_urls(self, policy, before=None) -> None:
        """A job's webhook and ping URLs: public hosts only (notify.check_url; resolving a
        name takes a DNS lookup, off the loop). Unchanged URLs are not checked again."""
        for field in ("notify_url", "ping_url"):
            url = getattr(policy, field)
            if url and url != (getattr(before, field) if before is not None else None):
                await self._io(functools.partial(
                    check_url, url, field, allow_private=self.allow_private_urls))

    async def create_job(self, body: dict) -> tuple[dict, bool]:
        fields = validate_new(body, self.default_tz)
        self._check_executor(fields["executor"])
        await self._check_urls(fields["policy"])
        job, created = await self.store.create_job(fields)
        self._changed()
        out = job.to_json()
        if not await self.alive_tickers():
            out["warning"] = NO_TICKER
        return out, created

    async def get_job(self, ref: str) -> dict:
        return (await self.store.get_job(ref)).to_json()

    async def update_job(self, ref: str, body: dict, *, may_execute: bool = True) -> dict:
        """Apply a change; without *may_execute* (the user lacks ``execute``), a change
        to a field that needs it is refused with :class:`Forbidden`."""
        job = await self.store.get_job(ref)
        fields = validate_changes(job, body)
        if not may_execute:
            denied = execute_changes(job, fields)
            if denied:
                raise Forbidden(f"changing {', '.join(denied)} needs the execute permission "
                                f"on cron (write lets you change when a job runs, not what, "
                                f"where or where it sends data)", field=denied[0])
        if fields["executor"] != job.executor:
            self._check_executor(fields["executor"])
        await self._check_urls(fields["policy"], job.policy)
        job = await self.store.update_job(job.id, fields)
        self._changed()
        return job.to_json()

    async def delete_job(self, ref: str) -> None:
        await self.store.delete_job(ref)
        self._changed()

    async def set_paused(self, ref: str, paused: bool) -> dict:
        job = await self.store.set_paused(ref, paused)
        self._changed()
        return job.to_json()

    async def run_job(self, ref: str) -> dict:
        run = await self.store.request_run(ref)
        self._changed()
        if self.ticker is None and not await self.alive_tickers():
            # nobody would pick it up: start its supervisor from here
            from hermes_cron_ext.runtime.executor import spawn_supervisor

            if await self.store.dispatch(run.id):
                await self._io(spawn_supervisor, self.store.sync.url, run.id)
        return run.to_json()

    # -- runs ----------------------------------------------------------------------
    async def list_runs(self, ref: str | None, *, limit: int, cursor: str | None,
                        status: str | None) -> str:
        def page() -> str:
            return self.runs_json.page(self.store.sync.list_runs(
                ref, limit=limit, cursor=cursor, status=status))
        return await self.store.run(page)

    async def get_run(self, run_id: str) -> Run:
        return await self.store.get_run(run_id)

    async def cancel_run(self, run_id: str) -> dict:
        run = await self.store.request_cancel(run_id)
        if run.status in ACTIVE_STATUSES and run.pid and run.host == hostname():
            def term():
                if process_alive(run.pid, run.proc_start):
                    os.kill(run.pid, signal.SIGTERM)
            await self._io(term)
        self._changed()
        return run.to_json()

    async def active_run(self, ref: str) -> Run:
        job = await self.store.get_job(ref)
        page = await self.store.list_runs(job.id, limit=10, status="running")
        if page.items:
            return page.items[0]
        raise NotFound(f"job {job.name!r} has no running run", field="job")

    async def read_log(self, run_id: str, offset: int, limit: int | None,
                       tail: int | None) -> tuple[bytes, int, int]:
        """``(data, start, size)`` of a run's log."""
        await self.store.get_run(run_id)
        out = self.store.sync

        def read():
            size = out.output_size(run_id)
            start = max(0, size - tail) if tail is not None else offset
            return out.read_output(run_id, start, limit), start, size
        return await self._io(read)

    async def read_segments(self, run_id: str, offset: int, limit: int):
        return await self._io(self.store.sync.output_segments, run_id, offset, limit)

    async def log_size(self, run_id: str) -> int:
        return await self._io(self.store.sync.output_size, run_id)

    # -- other -----------------------------------------------------------------------
    async def stats(self) -> dict:
        return await self.store.stats()

    async def preview(self, schedule: str | None, tz: str | None, count: int,
                      start: str | None) -> dict:
        if not schedule:
            raise InvalidInput("schedule is required", field="schedule")
        parsed = sched.parse(schedule, tz or self.default_tz)
        begin = (datetime.fromtimestamp(parse_iso(start, "from"), UTC)
                 if start else None)
        times = sched.preview(parsed, count, begin)
        return {"schedule": parsed.text, "timezone": parsed.tz,
                "description": sched.describe(parsed),
                "next": [t.isoformat().replace("+00:00", "Z") for t in times]}
