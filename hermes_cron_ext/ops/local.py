"""The one operations layer: every front's create, edit, run now, cancel, preview...

:class:`Operations` is synchronous and works on a store. The CLI and kernels with
no server use it directly (``connect(local=True)`` gives one); the server's
:class:`~hermes_cron_ext.server.service.CronService` runs the same methods on a
store thread (its async face); :class:`~hermes_cron_ext.ops.rest.RestClient`
answers the same calls over HTTP. So a rule (validation, who may change what, the
overlap check of a manual run, starting a supervisor when no ticker is alive)
is written once, here.

Answers are the REST API's JSON shapes (``Job.to_json()``, ``Run.to_json()``).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import getpass
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hermes_cron_ext import __version__
from hermes_cron_ext.domain import definitions as defs
from hermes_cron_ext.domain import parameters as params
from hermes_cron_ext.domain import policy as rules
from hermes_cron_ext.domain import schedule as sched
from hermes_cron_ext.domain.access import Viewer, allowed, link_via
from hermes_cron_ext.domain.alerts import statistic
from hermes_cron_ext.domain.jobspec import execute_changes, validate_changes, validate_new
from hermes_cron_ext.domain.metrics import BUILTIN
from hermes_cron_ext.domain.models import (
    ACTIVE_STATUSES,
    JOB_STATES,
    RUN_STATUSES,
    Job,
    Page,
    Policy,
    Run,
    Ticker,
    iso,
    parse_iso,
)
from hermes_cron_ext.domain.notifications import KINDS, mask_url
from hermes_cron_ext.domain.schedule import backfill_slots
from hermes_cron_ext.domain.text import utf8_boundary
from hermes_cron_ext.errors import Conflict, Forbidden, InvalidInput, NotFound
from hermes_cron_ext.events import EventBroker
from hermes_cron_ext.ops import across
from hermes_cron_ext.ops.base import CronClient, RunStream
from hermes_cron_ext.processes import hostname, process_alive
from hermes_cron_ext.runtime.destinations import check_destination
from hermes_cron_ext.runtime.executor import AllowedExecutors, spawn_supervisor
from hermes_cron_ext.runtime.notify import check_url
from hermes_cron_ext.store import open_store
from hermes_cron_ext.store.base import Store

if TYPE_CHECKING:
    from hermes_cron_ext.runtime import ticker as ticking

def managed_warning(source: str) -> str:
    """What an edit of a job a definitions file manages is told."""
    return f"managed by {source}: the next apply will undo this edit"


NO_TICKER = ("no ticker is alive on this store: scheduled runs will not fire until one starts "
             "(the Jupyter server's own ticker, hermes-cron daemon, or a systemd timer)")


#: what a delivery's status can be (``sending``: pending, leased by a sender now)
DELIVERY_STATUSES = ("pending", "sending", "sent", "failed")
_TIME_OR_NONE = {"type": ["string", "null"], "format": "date-time"}
#: one delivery of the outbox (``store/outbox.py`` ``delivery_json``), field by field
NOTIFICATION_JSON: dict[str, dict[str, Any]] = {
    "id": {"type": "integer"},
    "event": {"type": "string", "enum": list(KINDS),
              "description": "what it tells (docs/notifications.md)"},
    "event_seq": {"type": "integer", "description": "the event it was made of"},
    "job_id": {"type": ["string", "null"]},
    "job": {"type": ["string", "null"], "description": "the job's name"},
    "run_id": {"type": ["string", "null"]},
    "channel": {"type": "string", "enum": ["apprise", "webhook", "ping"],
                "description": "apprise: a notify URL; webhook: a notify_url; ping: ping_url"},
    "destination": {"type": "string", "description": "where it goes, masked"},
    "status": {"type": "string", "enum": list(DELIVERY_STATUSES)},
    "attempts": {"type": "integer", "description": "tries so far"},
    "last_error": {"type": ["string", "null"], "description": "why the last try failed"},
    "next_attempt_at": {**_TIME_OR_NONE, "description": "the next try, while pending"},
    "created_at": {"type": "string", "format": "date-time"},
    "sent_at": _TIME_OR_NONE,
    "title": {"type": ["string", "null"], "description": "the message's title"},
}
NOTIFICATIONS_JSON: dict[str, dict[str, Any]] = {
    "notifications": {"type": "array",
                      "items": {"$ref": "#/components/schemas/Notification"},
                      "description": "newest first"},
    "cursor": {"type": ["string", "null"], "description": "the next page; null: the last"},
    "counts": {"type": "object", "additionalProperties": {"type": "integer"},
               "description": "deliveries per status in the whole store (to an admin, or "
                              "on a one-user store)"},
}


def _one_of(name: str, value: str | None, allowed: tuple[str, ...]) -> None:
    """A list filter names a value that exists: an unknown one is an error, not an
    empty list that looks like "nothing matches"."""
    if value is not None and value not in allowed:
        raise InvalidInput(f"{name} must be one of {', '.join(allowed)}, not {value!r}",
                           field=name)


#: what :func:`status_report` (``GET /status``, :meth:`Operations.status`) returns, field by
#: field: there is no model; the OpenAPI document's ``Status`` and the panel's ``IStatus``
#: are generated from this table (server/openapi.py)
STATUS_JSON: dict[str, dict[str, Any]] = {
    "version": {"type": "string"},
    "store": {"type": "string", "description": "the store's URL (no password)"},
    "tickers": {"type": "array", "items": {"$ref": "#/components/schemas/Ticker"}},
    "alive": {"type": "integer", "description": "how many tickers are alive"},
    "ticking": {"type": "boolean"},
    "jobs_by_state": {"type": "object", "additionalProperties": {"type": "integer"}},
    "server_ticker": {"type": "boolean", "description": "this server ticks itself"},
    "ticker_fault": {"type": ["object", "null"],
                     "description": "the in-process ticker's, while it cannot write",
                     "required": ["since", "error"],
                     "properties": {"since": {"type": "number",
                                              "description": "Unix seconds"},
                                    "error": {"type": "string"}}},
    "warning": {"type": ["string", "null"], "description": "no ticker is alive"},
}


#: the statistics of a metric's summary (``domain/alerts.py`` ``statistic``), in order
METRIC_STATS = ("last", "min", "max", "mean", "median")
#: the most points of one metric a page holds (``limit``)
MAX_METRIC_POINTS = 1000

#: what :meth:`Operations.metrics` (``GET /jobs/{ref}/metrics``) returns, field by field;
#: the OpenAPI document's ``Metrics`` and ``MetricSeries`` and the panel's ``IMetrics``
#: are generated from these tables (server/openapi.py)
METRIC_POINT_JSON: dict[str, dict[str, Any]] = {
    "run_id": {"type": "string"},
    "at": {"type": "string", "format": "date-time",
           "description": "when the run ended (ISO 8601, UTC)"},
    "value": {"type": "number"},
}
METRIC_SERIES_JSON: dict[str, dict[str, Any]] = {
    "name": {"type": "string"},
    "unit": {"type": "string", "description": "of the newest value ('' when none)"},
    "builtin": {"type": "boolean", "description": "measured for every run (duration, "
                                                 "exit_code, output_bytes, ...)"},
    "count": {"type": "integer", "description": "how many runs have it, in all"},
    "points": {"type": "array", "items": {"$ref": "#/components/schemas/MetricPoint"},
               "description": "the newest `limit` values (before the cursor), oldest "
                              "first: ready to chart"},
    "summary": {"type": "object", "required": list(METRIC_STATS),
                "description": "of the points on this page (null when there are none)",
                "properties": {s: {"type": ["number", "null"]} for s in METRIC_STATS}},
    "cursor": {"type": ["string", "null"],
               "description": "the older points of this metric (pass it as cursor); null: "
                              "these were the oldest"},
}
METRICS_JSON: dict[str, dict[str, Any]] = {
    "job_id": {"type": "string"},
    "job_name": {"type": "string"},
    "metrics": {"type": "array", "items": {"$ref": "#/components/schemas/MetricSeries"},
                "description": "the built-ins first, then what its runs reported, by name; "
                               "[] when no run has ended"},
}


def _metric_cursor(name: str, at: float, run_id: str) -> str:
    raw = json.dumps([name, at, run_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _read_metric_cursor(cursor: str) -> tuple[str, float, str]:
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        name, at, run_id = parts
        if not (isinstance(name, str) and isinstance(run_id, str)
                and isinstance(at, int | float) and not isinstance(at, bool)):
            raise ValueError
        return name, float(at), run_id
    except (ValueError, TypeError):
        raise InvalidInput("cursor is not one this server handed out",
                           field="cursor") from None


def metric_summary(values: list[float]) -> dict[str, float | None]:
    """``{last, min, max, mean, median}`` of a series, oldest first (None: no values)."""
    out: dict[str, float | None] = {"last": values[-1] if values else None}
    for name in METRIC_STATS[1:]:
        out[name] = statistic(name, values)
    return out


def status_report(store: Store, server_ticker: bool = False,
                  viewer: Viewer | None = None) -> dict[str, Any]:
    """Who is ticking on *store* and how many jobs (that *viewer* may read) wait.

    Never reads the runs: it is polled, and cheap at any history size."""
    now = time.time()
    tickers = store.list_tickers()
    alive = [t for t in tickers if t.alive(now)]
    by_state = store.jobs_by_state(viewer)
    enabled = by_state.get("scheduled", 0)
    return {
        "version": __version__, "store": store.display_url,
        "tickers": [t.to_json(now) for t in tickers], "alive": len(alive),
        "ticking": bool(alive), "jobs_by_state": by_state, "server_ticker": server_ticker,
        "ticker_fault": None,  # the in-process ticker's, when it cannot write
        "warning": None if alive else NO_TICKER + (
            f"; {enabled} enabled job(s) are waiting" if enabled else ""),
    }


class _LocalStream(RunStream):
    def __init__(self, client: Operations, run_id: str, offset: int, interval: float):
        super().__init__()
        self.client, self.run_id, self.offset, self.interval = client, run_id, offset, interval

    def __iter__(self) -> Iterator[dict[str, Any]]:
        store = self.client.store
        run = store.get_run(self.run_id)
        offset = self.offset
        yield {"event": "status", "data": run.to_json(), "id": None}
        last = (run.status, run.phase, run.progress)
        while not self.closed:
            size = store.output_size(self.run_id)
            over = run.status not in ACTIVE_STATUSES
            while offset < size and not self.closed:
                segs = store.output_segments(self.run_id, offset, min(64 * 1024, size - offset))
                if not segs:
                    break
                stalled = False
                for seg_offset, stream, data in segs:
                    cut = len(data) if over else utf8_boundary(data)
                    if cut:
                        offset = seg_offset + cut
                        yield {"event": "output", "id": offset, "data": {
                            "stream": stream, "offset": seg_offset,
                            "text": data[:cut].decode("utf-8", "replace")}}
                    if cut < len(data):
                        stalled = True
                        break
                if stalled:
                    break
            if over and offset >= size:
                yield {"event": "end", "id": None, "data": {
                    "status": run.status, "exit_code": run.exit_code, "reason": run.reason,
                    "offset": offset}}
                return
            time.sleep(self.interval)
            run = store.get_run(self.run_id)
            state = (run.status, run.phase, run.progress)
            if state[1:] != last[1:]:
                yield {"event": "progress", "id": None,
                       "data": {"phase": run.phase, "progress": run.progress}}
            if state[0] != last[0]:
                yield {"event": "status", "id": None, "data": run.to_json()}
            last = state


class Operations(CronClient):
    """The operations on one store (see the module docstring).

    The options say who is asking and what this process may decide:

    - *default_tz*: the zone of a job created without one (else the machine's);
    - *executors*: the executors a job may name (None: any; the server passes its
      operator's allow-list);
    - *allow_private_urls*: whether webhook and ping URLs may name non-public hosts
      (a user of the store file may; the server asks its operator);
    - *ticker*: the ticker running in this process, if any (a manual run is then left
      to it, and its fault is part of :meth:`status`);
    - *broker*: told of every change this process makes (it wakes that ticker and the
      server's streams).

    On a store that several hub users share, :meth:`as_user` gives the operations as
    one of them sees them (``domain/access.py``): their own jobs, those shared with
    their groups, or all for an admin; any other job, and its runs, is "not found".
    """

    kind = "local"

    def __init__(self, store: Store | str | None = None, *, default_tz: str | None = None,
                 executors: AllowedExecutors | None = None, allow_private_urls: bool = True,
                 ticker: ticking.Ticker | None = None, broker: EventBroker | None = None,
                 poll: float = 0.1):
        self.owns_store = not isinstance(store, Store)
        self.store: Store = store if isinstance(store, Store) else open_store(store)
        self.where = f"store {self.store.display_url}"
        self.default_tz = default_tz
        self.executors = executors
        self.allow_private_urls = allow_private_urls
        self.ticker = ticker
        self.broker = broker
        self.poll = poll
        #: who asks (None: the store's own user, who may do everything)
        self.viewer: Viewer | None = None
        #: who acts, as revisions and the audit log record it (a hub viewer's name wins;
        #: else the Jupyter identity a server passes; else the Unix user), and from where
        self.actor: str | None = None
        self.origin = "cli"

    def as_user(self, viewer: Viewer | None) -> Operations:
        """These operations as *viewer* may use them (same store, ticker and broker)."""
        view = copy.copy(self)
        view.owns_store = False
        view.viewer = viewer
        return view

    def as_origin(self, actor: str | None, origin: str) -> Operations:
        """These operations acting for *actor* (None: the Unix user) from *origin*
        (``cli``, ``rest``, ``magics``, ``panel``): what revisions and the audit log record."""
        view = copy.copy(self)
        view.owns_store = False
        view.actor = actor
        view.origin = origin
        return view

    @property
    def actor_name(self) -> str:
        if self.viewer is not None:
            return self.viewer.name
        if self.actor:
            return self.actor
        try:
            return getpass.getuser()
        except (KeyError, OSError):  # no name for this uid (a container)
            return f"uid:{os.getuid()}"

    def _acting(self, origin: str | None = None, *, action: str | None = None,
                detail: dict[str, Any] | None = None) -> contextlib.AbstractContextManager[None]:
        """The store records who and where (and, for a revert, what) for the writes
        made inside."""
        return self.store.acting(self.actor_name, origin or self.origin, action=action,
                                 detail=detail)

    def me(self) -> dict[str, Any]:
        """Who the operations act for: ``{"name", "groups", "admin"}`` (name None: the
        store's own user)."""
        if self.viewer is None:
            return {"name": None, "groups": [], "admin": True}
        return self.viewer.to_json()

    def _job(self, ref: str, action: str = "read") -> Job:
        """The job *ref* names for the viewer: by id, else by name among their own jobs,
        else among those shared with them. :raises NotFound: also for a job they may not
        read (its name does not leak); :raises Forbidden: one they may read, not
        *action*."""
        viewer = self.viewer
        if viewer is None:
            return self.store.get_job(ref)
        try:
            job = self.store.get_job(ref, owner=viewer.name)
        except NotFound:
            named = self.store.jobs_named(ref, viewer)
            if len(named) > 1:
                raise InvalidInput(
                    f"{len(named)} jobs named {ref!r} are shared with you (owners "
                    f"{', '.join(j.owner for j in named)}): name the one you mean by its id",
                    field="job") from None
            if not named:
                raise
            job = named[0]
        if not allowed(viewer, job.owner, job.shares, "read"):
            raise NotFound(f"no job {ref!r}", field="job")
        if not allowed(viewer, job.owner, job.shares, action):
            may = "read and run" if allowed(viewer, job.owner, job.shares, "run") else "read"
            what = {"run": "run it or cancel its runs", "change": "change it"}[action]
            raise Forbidden(f"job {job.name!r} is {job.owner}'s, shared with your group to "
                            f"{may}: only its owner or an admin may {what}", field="job")
        return job

    def _run_of(self, run_id: str, action: str = "read") -> Run:
        """A run, when the viewer may *action* its job (else "no run", as if it were not
        there)."""
        run = self.store.get_run(run_id)
        if self.viewer is not None and not self.viewer.admin:  # admins: deleted jobs' too
            try:
                self._job(run.job_id, action)
            except NotFound:
                raise NotFound(f"no run {run_id!r}", field="run") from None
        return run

    def readable(self, job_ids: list[str]) -> set[str]:
        """Which of *job_ids* the viewer may read (an events feed filters by it)."""
        if self.viewer is None or self.viewer.admin:
            return set(job_ids)
        return self.store.readable_jobs(job_ids, self.viewer)

    def _admin_only(self, what: str) -> None:
        if self.viewer is not None and not self.viewer.admin:
            raise Forbidden(f"{what} is for the service's admins "
                            f"(the custom:hermes-cron:admin scope)")

    @property
    def display_url(self) -> str:
        """Where the store is, safe to print (a URL without its password)."""
        return self.store.display_url

    def close(self) -> None:
        if self.owns_store:
            self.store.close()

    def _changed(self) -> None:
        if self.broker is not None:
            self.broker.publish("changed")

    def alive_tickers(self) -> list[Ticker]:
        now = time.time()
        return [t for t in self.store.list_tickers() if t.alive(now)]

    # -- jobs -------------------------------------------------------------------------
    def jobs_page(self, *, limit: int = 100, cursor: str | None = None,
                  state: str | None = None, search: str | None = None) -> dict[str, Any]:
        _one_of("state", state, JOB_STATES)
        page = self.store.list_jobs(limit=limit, cursor=cursor, state=state, search=search,
                                    viewer=self.viewer)
        return {"jobs": [j.to_json() for j in page.items], "cursor": page.cursor}

    def jobs(self, state: str | None = None,
             search: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.jobs_page(limit=500, cursor=cursor, state=state, search=search)
            out += page["jobs"]
            cursor = page["cursor"]
            if cursor is None:
                return out

    def job(self, ref: str) -> dict[str, Any]:
        return self._job(ref).to_json()

    def _check_executor(self, spec: str | None) -> None:
        if spec and self.executors is not None and spec not in self.executors:
            raise InvalidInput(self.executors.refusal(spec), field="executor")

    @staticmethod
    def _check_paths(fields: dict[str, Any], before: Job | None = None) -> None:
        """A working folder, notebook or script that is not there would fail every run:
        refuse it when saved. Only for runs on this machine (a Dask worker has its own
        files), and only what changed (a job whose folder has gone can still be paused)."""
        if (fields.get("executor") or "local") != "local":
            return
        keys = ("kind", "command", "cwd", "executor")
        if before is not None and all(fields.get(k) == getattr(before, k) for k in keys):
            return
        cwd = os.path.expanduser(fields.get("cwd") or "~")
        if not os.path.isdir(cwd):
            raise InvalidInput(f"cwd {fields.get('cwd')} is not a folder on this machine",
                               field="cwd")
        command, kind = fields.get("command"), fields.get("kind")
        first = command if isinstance(command, str) else (command or [""])[0]
        if kind == "python" and not fields.get("code") and first and first[0] != "-":
            target, what = first, "script"  # (not "-c CODE" or "-m MODULE")
        elif kind == "notebook" and isinstance(command, str):
            target, what = command, "notebook"
        else:
            return
        path = os.path.join(cwd, os.path.expanduser(target))
        if not os.path.isfile(path):
            raise InvalidInput(f"the {what} {path} does not exist (create it first; a "
                               f"relative path is read from the job's cwd {cwd})",
                               field="command")

    def _check_urls(self, policy: Policy, before: Policy | None = None) -> None:
        """Webhook and ping URLs: public hosts only, unless allowed (``notify.check_url``;
        a name is resolved). Unchanged URLs are not checked again."""
        for field in ("notify_url", "ping_url"):
            url = getattr(policy, field)
            if url and url != (getattr(before, field) if before is not None else None):
                check_url(url, field, allow_private=self.allow_private_urls)
        for url in policy.notify:  # Apprise destinations (a masked value kept its URL)
            if before is None or url not in before.notify:
                check_destination(url, "notify", allow_private=self.allow_private_urls)

    def _all_jobs(self, viewer: Viewer | None = None) -> list[Job]:
        """Every job (that *viewer* may read)."""
        out: list[Job] = []
        cursor = None
        while True:
            page = self.store.list_jobs(limit=500, cursor=cursor, viewer=viewer)
            out += page.items
            cursor = page.cursor
            if cursor is None:
                return out

    def _resolve_after(self, after: list[dict[str, Any]], job_id: str | None,
                       name: str, owner: str) -> list[dict[str, Any]]:
        """Upstream jobs by id (given by name or id): each must exist and be readable by
        the viewer, and the pipeline must not run in a circle. A link to another user's
        job records what lets *owner* (the job's) read it (``via``: ``access.link_via``):
        the link holds only while that does. :raises InvalidInput: naming ``after``."""
        if not after:
            return []
        jobs = self._all_jobs()
        mine = self._all_jobs(self.viewer) if self.viewer is not None else jobs
        # a name is the viewer's own job's first, then a shared one's; only readable jobs
        by_ref = {j.name: j for j in reversed(mine) if self.viewer is None
                  or j.owner != self.viewer.name} | {
            j.name: j for j in mine if self.viewer is None or j.owner == self.viewer.name
        } | {j.id: j for j in mine}
        out = []
        for item in after:
            if item["job"] in (job_id, name):
                raise InvalidInput(f"job {name!r} cannot run after itself", field="after")
            upstream = by_ref.get(item["job"])
            if upstream is None:
                raise InvalidInput(f"after: no job {item['job']!r}", field="after")
            link: dict[str, Any] = {"job": upstream.id, "on": item["on"]}
            via = link_via(self.viewer, owner, upstream.owner, upstream.shares)
            if via is not None:
                link["via"] = via
            out.append(link)
        # a cycle: following the upstreams of an upstream leads back to this job
        graph = {j.id: [a["job"] for a in (j.after or [])] for j in jobs}
        graph[job_id or ""] = [a["job"] for a in out]
        path: list[str] = []

        def visit(node: str, seen: set[str]) -> None:
            for up in graph.get(node, []):
                path.append(up)
                if up == (job_id or ""):
                    names = " -> ".join(by_ref[p].name if p in by_ref else name for p in path)
                    raise InvalidInput(f"after: {name} -> {names} is a cycle", field="after")
                if up not in seen:
                    seen.add(up)
                    visit(up, seen)
                path.pop()
        visit(job_id or "", set())
        return out

    def pipeline(self, ref: str) -> dict[str, Any]:
        """The pipeline the job is part of: every job linked to it by ``after``, either
        way, each with its level (0: no upstream in it) and its last run's status, and
        the links (``{"from", "to", "on"}``)."""
        jobs = self._all_jobs(self.viewer)  # links to jobs the viewer may not read: left out
        by_id = {j.id: j for j in jobs}
        start = self._job(ref)
        by_id.setdefault(start.id, start)  # readable by id, though not listed (an admin's)
        downstream: dict[str, list[tuple[str, str]]] = {}
        for j in jobs:
            for a in j.after or []:
                downstream.setdefault(a["job"], []).append((j.id, a["on"]))
        seen, todo, edges = {start.id}, [start.id], set()
        while todo:
            node = todo.pop()
            linked = [(a["job"], node, a["on"]) for a in by_id[node].after or []
                      if a["job"] in by_id]
            linked += [(node, d, on) for d, on in downstream.get(node, [])]
            for edge in linked:
                edges.add(edge)
                for end in edge[:2]:
                    if end not in seen:
                        seen.add(end)
                        todo.append(end)
        level: dict[str, int] = {}

        def depth(node: str) -> int:  # the longest way from a job with no upstream here
            if node not in level:
                ups = [a for a, b, _ in edges if b == node]
                level[node] = 1 + max((depth(u) for u in ups), default=-1)
            return level[node]
        def note(job: Job) -> str | None:  # why its upstreams' runs may not trigger it
            ups = [(by_id[a["job"]].name, a["on"], (by_id[a["job"]].last_run or {}).get(
                "trigger")) for a in job.after or [] if a["job"] in by_id]
            return rules.upstream_note(enabled=job.enabled, state=job.state, upstreams=ups)
        nodes = [{"id": by_id[n].id, "name": by_id[n].name, "state": by_id[n].display_state,
                  "last_status": (by_id[n].last_run or {}).get("status"), "level": depth(n),
                  "note": note(by_id[n])}
                 for n in seen]
        nodes.sort(key=lambda x: (x["level"], x["name"]))
        order = sorted(edges, key=lambda e: (level[e[0]], by_id[e[0]].name, by_id[e[1]].name))
        return {"job": start.id, "nodes": nodes,
                "edges": [{"from": a, "to": b, "on": on} for a, b, on in order]}

    def create(self, spec: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create a job; ``(job, created)``: a known idempotency key gives the stored
        job and False. The job carries a ``warning`` when no ticker would fire it."""
        fields = validate_new(spec, self.default_tz, now=time.time())
        # the hub user who asks owns it: from the hub's identity, never from the request
        fields["owner"] = self.viewer.name if self.viewer is not None else ""
        # the Python environment the job is made from: its python, and first on PATH
        fields["interpreter"] = fields.get("interpreter") or sys.executable
        fields["after"] = self._resolve_after(fields["after"], None, fields["name"],
                                              fields["owner"])
        self._check_executor(fields["executor"])
        if self.viewer is None:  # a hub user's paths are theirs: not looked at as the service
            self._check_paths(fields)
        self._check_urls(fields["policy"])
        with self._acting():
            job, created = self.store.create_job(fields)
        self._changed()
        out = job.to_json()
        if self.ticker is None and not self.alive_tickers():
            out["warning"] = NO_TICKER
        return out, created

    def add(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self.create(spec)[0]

    def edit(self, ref: str, changes: dict[str, Any], *,
             may_execute: bool = True) -> dict[str, Any]:
        """Apply a change (PATCH semantics); without *may_execute* (the user lacks
        ``execute``), a change to a field that needs it is :class:`Forbidden`."""
        job = self._job(ref, "change")
        fields = validate_changes(job, changes, now=time.time())
        if "after" in changes:
            fields["after"] = self._resolve_after(fields["after"], job.id, fields["name"],
                                                  job.owner)
        if not may_execute:
            denied = execute_changes(job, fields)
            if denied:
                raise Forbidden(f"changing {', '.join(denied)} needs the execute permission "
                                f"on cron (write lets you change when a job runs, not what, "
                                f"where or where it sends data)", field=denied[0])
        if fields["executor"] != job.executor:
            self._check_executor(fields["executor"])
        if self.viewer is None:
            self._check_paths(fields, job)
        self._check_urls(fields["policy"], job.policy)
        with self._acting():
            job = self.store.update_job(job.id, fields)
        self._changed()
        out = job.to_json()
        source = defs.managed_by(job)
        if source:
            out["warning"] = managed_warning(source)
        return out

    def remove(self, ref: str) -> dict[str, Any]:
        target = self._job(ref, "change")
        with self._acting():
            job = self.store.delete_job(target.id)
        self._changed()
        return job.to_json()

    def pause(self, ref: str) -> dict[str, Any]:
        return self._set_paused(ref, True)

    def resume(self, ref: str) -> dict[str, Any]:
        return self._set_paused(ref, False)

    def _set_paused(self, ref: str, paused: bool) -> dict[str, Any]:
        target = self._job(ref, "change")
        with self._acting():
            job = self.store.set_paused(target.id, paused)
        self._changed()
        return job.to_json()

    def job_parameters(self, ref: str) -> list[dict[str, Any]]:
        """The parameters a run of the job may be given: ``[{"name", "type", "default"}]``.
        A notebook job's come from its ``parameters`` cell (the job's own values as the
        defaults); other jobs' from the job's ``parameters``."""
        job = self._job(ref)
        own = dict(job.parameters or {})
        declared: list[dict[str, Any]] = []
        # a hub user's notebook is theirs to read, not the service's
        if job.kind == "notebook" and isinstance(job.command, str) and self.viewer is None:
            path = os.path.join(os.path.expanduser(job.cwd or "~"),
                                os.path.expanduser(job.command))
            try:
                with open(path, encoding="utf-8") as f:
                    declared = params.declared(f.read())
            except OSError as exc:
                raise NotFound(f"cannot read the notebook {path}: {exc.strerror}",
                               field="command") from None
        names = {p["name"] for p in declared}
        out = [{**p, "default": own.get(p["name"], p["default"])} for p in declared]
        out += [{"name": k, "type": params.type_of(v), "default": v}
                for k, v in own.items() if k not in names]
        return out

    def run_now(self, ref: str, parameters: dict[str, Any] | None = None, *,
                may_execute: bool = True) -> dict[str, Any]:
        """Queue a manual run (:class:`Conflict` when the overlap policy refuses). With
        no ticker alive to pick it up, its supervisor is started from here.

        *parameters* go over the job's own for this run alone, checked against what the
        job declares (:meth:`job_parameters`); giving them changes what runs, so it needs
        ``execute`` (without *may_execute*: :class:`Forbidden`), and on a hub store the
        job's owner or an admin: it runs as the owner."""
        job = self._job(ref, "change" if parameters else "run")
        ref = job.id
        if parameters:
            if not may_execute:
                raise Forbidden("running with parameters needs the execute permission on "
                                "cron (they change what the job runs)", field="parameters")
            parameters = params.check(parameters, self.job_parameters(ref))
        elif parameters is not None and not isinstance(parameters, dict):
            raise InvalidInput("parameters must be an object", field="parameters")
        with self._acting():
            run = self.store.request_run(ref, parameters=parameters or None)
        self._changed()
        if self.ticker is None and not self.alive_tickers() and self.store.dispatch(run.id):
            spawn_supervisor(self.store.url, run.id)
        return run.to_json()

    # -- backfills ---------------------------------------------------------------------
    def backfill(self, ref: str, start: str, end: str, *, max_parallel: int = 1,
                 dry_run: bool = False) -> dict[str, Any]:
        """Run *ref* once for each of its schedule's slots from *start* to *end*
        (inclusive, ISO 8601 or a date), *max_parallel* at a time, each told its slot
        (``HERMES_CRON_LOGICAL_TIME``). With *dry_run*, only the slots it would run."""
        job = self._job(ref, "change")
        if job.schedule is None:  # its runs come from its upstreams' runs, slot by slot
            ups = " and ".join(a.get("name", a["job"]) for a in job.after or [])
            raise InvalidInput(
                f"{job.name} has no schedule of its own, so it has no slots to backfill: it "
                f"runs after {ups}; backfill {ups} instead, and their backfilled runs "
                f"trigger {job.name} slot by slot", field="job")
        slots = backfill_slots(job.schedule, job.timezone, start, end, time.time())
        if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or not (
                1 <= max_parallel <= 100):
            raise InvalidInput("max_parallel must be from 1 to 100", field="max_parallel")
        if dry_run:
            return {"id": None, "job_id": job.id, "state": "dry-run", "slots": len(slots),
                    "next": [iso(s) for s in slots], "max_parallel": max_parallel}
        with self._acting():
            out = self.store.create_backfill(job.id, slots, max_parallel)
        self._changed()
        if self.ticker is None and not self.alive_tickers():
            # no ticker to start them: the first slots' supervisors start from here, and
            # each goes on with the next slot as its run ends (Store.take_next)
            out["warning"] = NO_TICKER
            queued = self.store.list_runs(job.id, status="queued", limit=200).items
            for run in queued:
                if run.backfill_id == out["id"] and self.store.dispatch(run.id):
                    spawn_supervisor(self.store.url, run.id)
        return out

    def _backfill(self, backfill_id: str, action: str) -> dict[str, Any]:
        out = self.store.get_backfill(backfill_id)
        if self.viewer is not None:
            try:
                self._job(out["job_id"], action)
            except NotFound:
                raise NotFound(f"no backfill {backfill_id!r}", field="backfill") from None
        return out

    def get_backfill(self, backfill_id: str) -> dict[str, Any]:
        return self._backfill(backfill_id, "read")

    def backfills(self, ref: str) -> list[dict[str, Any]]:
        return self.store.list_backfills(self._job(ref).id)

    def cancel_backfill(self, backfill_id: str) -> dict[str, Any]:
        self._backfill(backfill_id, "change")
        with self._acting():
            out = self.store.cancel_backfill(backfill_id)
        self._changed()
        return out

    # -- runs ---------------------------------------------------------------------------
    def runs_page(self, ref: str | None = None, *, limit: int = 50,
                  cursor: str | None = None, status: str | None = None) -> Page[Run]:
        """A page of runs as models (the server renders them with a cache)."""
        _one_of("status", status, RUN_STATUSES)
        if ref is not None:
            ref = self._job(ref).id
        return self.store.list_runs(ref, limit=limit, cursor=cursor, status=status,
                                    viewer=self.viewer)

    def runs(self, ref: str | None = None, *, limit: int = 50, cursor: str | None = None,
             status: str | None = None) -> dict[str, Any]:
        page = self.runs_page(ref, limit=limit, cursor=cursor, status=status)
        return {"runs": [r.to_json() for r in page.items], "cursor": page.cursor}

    def notifications(self, ref: str | None = None, *, status: str | None = None,
                      limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        """The outbox, newest first: ``{"notifications": [...], "cursor", "counts"}``
        (``store/outbox.py``: each delivery's event, job, run, destination masked,
        status pending/sending/sent/failed, attempts, last error, next try). Of the job
        *ref*, else of every job the viewer may read; ``counts`` (by status) for the
        whole store, to an admin or on a one-user store."""
        _one_of("status", status, DELIVERY_STATUSES)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 500:
            raise InvalidInput("limit must be between 1 and 500", field="limit")
        below: int | None = None
        if cursor:
            if not cursor.isdigit():
                raise InvalidInput("cursor is not one this list handed out", field="cursor")
            below = int(cursor)
        job_ids: list[str] | None = None
        if ref is not None:
            job_ids = [self._job(ref).id]
        elif self.viewer is not None and not self.viewer.admin:
            job_ids = [j.id for j in self._all_jobs(self.viewer)]
        page = self.store.list_deliveries(job_ids=job_ids, status=status, limit=limit,
                                          cursor=below)
        out: dict[str, Any] = {"notifications": page.items, "cursor": page.cursor}
        if job_ids is None:
            out["counts"] = self.store.delivery_counts()
        return out

    def get_run(self, run_id: str) -> Run:
        return self._run_of(run_id)

    def run(self, run_id: str) -> dict[str, Any]:
        return self._run_of(run_id).to_json()

    def active_run(self, ref: str) -> dict[str, Any]:
        """The job's running run. :raises NotFound: when none runs."""
        job = self._job(ref)
        page = self.store.list_runs(job.id, limit=10, status="running")
        if page.items:
            return page.items[0].to_json()
        raise NotFound(f"job {job.name!r} has no running run", field="job")

    def cancel(self, run_id: str) -> dict[str, Any]:
        """Ask the run to stop: recorded at once; its supervisor, when it runs on this
        host, is told now (elsewhere it sees the request at its next heartbeat)."""
        self._run_of(run_id, "run")
        with self._acting():
            run = self.store.request_cancel(run_id)
        if (run.status in ACTIVE_STATUSES and run.pid and run.host == hostname()
                and process_alive(run.pid, run.proc_start)):
            os.kill(run.pid, signal.SIGTERM)
        self._changed()
        return run.to_json()

    def log(self, run_id: str, offset: int = 0, limit: int | None = None,
            tail: int | None = None) -> tuple[bytes, int, int]:
        self._run_of(run_id)
        size = self.store.output_size(run_id)
        start = max(0, size - tail) if tail is not None else offset
        return self.store.read_output(run_id, start, limit), start, size

    def log_bytes(self, run_id: str, offset: int = 0, limit: int | None = None) -> bytes:
        """A run's log from *offset*, at most *limit* bytes, with no check that the run
        exists: for readers that hold it already (the server's shared feeds)."""
        return self.store.read_output(run_id, offset, limit)

    def segments(self, run_id: str, offset: int = 0,
                 limit: int | None = None) -> list[tuple[int, str, bytes]]:
        """Output from *offset* split by stream: ``[(offset, stream, bytes)]``."""
        return self.store.output_segments(run_id, offset, limit)

    def log_size(self, run_id: str) -> int:
        return self.store.output_size(run_id)

    def stream(self, run_id: str, offset: int = 0) -> RunStream:
        self._run_of(run_id)  # NotFound now, not on the reading thread
        return _LocalStream(self, run_id, offset, self.poll)

    def artifact(self, run_id: str) -> bytes:
        self._run_of(run_id)
        data = self.store.read_artifact(run_id)
        if data is None:
            raise NotFound(f"run {run_id} has no executed notebook", field="run")
        return data

    # -- metrics ------------------------------------------------------------------------
    def metrics(self, ref: str, metric: str | None = None, limit: int = 100,
                cursor: str | None = None) -> dict[str, Any]:
        """The numbers the job's runs have (``METRICS_JSON``): per metric name its unit,
        how many runs have it, its newest *limit* points oldest first, and their
        summary (last, min, max, mean, median). *metric*: that one alone. *cursor* (a
        metric's ``cursor``): that metric's older points, the page before.

        :raises NotFound: no job the viewer may read; a *metric* its runs do not have
            (the message names those they have)
        :raises InvalidInput: *limit* out of 1..1000, a cursor not handed out here
        """
        job = self._job(ref)
        if isinstance(limit, bool) or not isinstance(limit, int) or not (
                1 <= limit <= MAX_METRIC_POINTS):
            raise InvalidInput(f"limit must be between 1 and {MAX_METRIC_POINTS}",
                               field="limit")
        before: float | None = None
        before_run: str | None = None
        if cursor:
            named, before, before_run = _read_metric_cursor(cursor)
            if metric is not None and metric != named:
                raise InvalidInput(f"the cursor is one of metric {named!r}, not {metric!r}",
                                   field="cursor")
            metric = named
        order = {name: i for i, name in enumerate(BUILTIN)}  # the built-ins first
        names = sorted(self.store.metric_names(job.id),
                       key=lambda n: (order.get(n[0], len(order)), n[0]))
        if metric is not None:
            chosen = [n for n in names if n[0] == metric]
            if not chosen:
                have = ", ".join(n[0] for n in names)
                raise NotFound(f"job {job.name!r} has no metric {metric!r}" + (
                    f": its runs have {have}" if have else ": no run of it has ended yet"),
                    field="metric")
            names = chosen
        out = []
        for name, unit, count in names:
            rows = self.store.metric_series(job.id, name, limit + 1, before, before_run)
            more = len(rows) > limit
            rows = rows[:limit]
            rows.reverse()  # oldest first: ready to chart
            points = [{"run_id": r[0], "at": iso(r[1]), "value": r[2]} for r in rows]
            out.append({
                "name": name, "unit": unit, "builtin": name in BUILTIN, "count": count,
                "points": points, "summary": metric_summary([r[2] for r in rows]),
                "cursor": _metric_cursor(name, rows[0][1], rows[0][0]) if more else None})
        return {"job_id": job.id, "job_name": job.name, "metrics": out}

    # -- across runs (the logic: ops/across.py) ----------------------------------------
    def search(self, q: str, *, job: str | None = None, since: str | None = None,
               status: str | None = None, limit: int = 20, cursor: str | None = None,
               context: int = 2) -> dict[str, Any]:
        return across.search(self, q, job=job, since=since, status=status, limit=limit,
                             cursor=cursor, context=context)

    def timeline(self, start: str | None = None, end: str | None = None, *,
                 job: str | None = None, status: str | None = None, limit: int = 1000,
                 cursor: str | None = None) -> dict[str, Any]:
        return across.timeline(self, start, end, job=job, status=status, limit=limit,
                               cursor=cursor)

    def calendar(self, ref: str, days: int = 90) -> dict[str, Any]:
        return across.calendar(self, ref, days)

    def diff(self, run_a: str, run_b: str) -> dict[str, Any]:
        return across.diff(self, run_a, run_b)

    # -- other ------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return self.store.stats(self.viewer)

    def status(self) -> dict[str, Any]:
        report = status_report(self.store, self.ticker is not None, self.viewer)
        fault = self.ticker.fault if self.ticker is not None else None
        if fault is not None:
            report["ticker_fault"] = fault
        return report

    def gc(self, keep_runs: int = rules.KEEP_RUNS, keep_failures: int = rules.KEEP_FAILURES,
           max_age: float = rules.MAX_AGE, *,
           audit_max_age: float | None = None) -> dict[str, Any]:
        """Prune finished runs by the retention limits (the tickers also do, hourly), and
        audit records older than *audit_max_age* when given (only then: the audit log's
        retention is its own)."""
        self._admin_only("gc")
        return self.store.gc(time.time(), keep_runs, keep_failures, max_age,
                             audit_max_age=audit_max_age)

    def migrate(self, to: str, *, force: bool = False, owner: str | None = None,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Copy this store (jobs, runs, events, output) into the empty store at *to*, the
        counts checked (``hermes-cron migrate``; see :mod:`hermes_cron_ext.store.migrate`).
        With *owner*: move it into the JupyterHub service's store at *to* (in use, not
        empty), every job now that hub user's.

        :raises Conflict: when *to* is not empty (without *owner*), a moved name is
            *owner*'s already, or (unless *force*) this store is in use
        """
        from hermes_cron_ext.store.migrate import copy_store, merge_store

        self._admin_only("migrate")
        target = open_store(to)
        try:
            if owner is not None:
                return merge_store(self.store, target, owner, force=force,
                                   progress=progress)
            return copy_store(self.store, target, force=force, progress=progress)
        finally:
            target.close()

    def preview(self, schedule: str | None, tz: str | None = None, count: int = 5,
                start: str | None = None) -> dict[str, Any]:
        """The next *count* fire times of a schedule, and what it means in words."""
        if not schedule:
            raise InvalidInput("schedule is required", field="schedule")
        # 0 or a negative count is a mistake, not "never fires again"
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100:
            raise InvalidInput("count must be between 1 and 100", field="count")
        parsed = sched.parse(schedule, tz or self.default_tz)
        begin = (datetime.fromtimestamp(parse_iso(start, "from"), UTC)
                 if start else datetime.now(UTC))
        times = sched.preview(parsed, count, begin)
        return {"schedule": parsed.text, "timezone": parsed.tz,
                "description": sched.describe(parsed),
                "next": [t.isoformat().replace("+00:00", "Z") for t in times]}


    # -- definitions as code, revisions, audit ---------------------------------------------
    def _own_jobs(self) -> list[Job]:
        """The jobs a file's names refer to: the viewer's own (every job for the store's
        own user)."""
        jobs = self._all_jobs(self.viewer)
        if self.viewer is None:
            return jobs
        return [j for j in jobs if j.owner == self.viewer.name]

    def export(self, names: list[str] | None = None) -> str:
        """The canonical definitions file (``domain/definitions.py``) of the jobs *names*
        (default: every job of the caller's); secrets by reference, never their values."""
        everyone = self._all_jobs(self.viewer)
        ids = {j.id: j.name for j in everyone}
        if names:
            jobs = [self._job(n) for n in dict.fromkeys(names)]
        else:
            jobs = self._own_jobs()
        return defs.export(jobs, ids)

    def apply(self, text: str, *, source: str = "jobs.yaml", dry_run: bool = False,
              prune: bool = False, environ: dict[str, str] | None = None,
              plan_id: str | None = None) -> dict[str, Any]:
        """Apply a definitions file: the plan (``Plan.to_json`` with ``applied`` and
        ``plan_id``); unless *dry_run*, carried out in one transaction with the versions
        the plan saw (a job changed since: :class:`Conflict` naming it, nothing changed).
        *plan_id* (a dry run's): apply only if the plan is still that one, the jobs at
        the versions it saw (else :class:`Conflict`, nothing changed): a plan shown to a
        person is the plan applied. ``${VAR}`` references are read from *environ* (None:
        this process's environment)."""
        if not isinstance(text, str):
            raise InvalidInput("text must be the file's text", field="text")
        if not isinstance(source, str) or not source.strip() or len(source) > 500:
            raise InvalidInput("source must name the file (e.g. jobs.yaml)", field="source")
        env = dict(os.environ) if environ is None else environ
        tz = self.default_tz or sched.local_zone()
        parsed = defs.parse(text, env, now=time.time(), default_tz=tz)
        current = self._own_jobs()
        plan = defs.plan(current, parsed, source=source, prune=prune,
                         defaults={"timezone": tz, "interpreter": sys.executable})
        shown = plan.to_json()
        out = shown | {"dry_run": dry_run, "applied": False}
        seen = sorted([(u.job.id, u.job.version) for u in plan.updates]
                      + [(j.id, j.version) for j in plan.deletes])
        out["plan_id"] = hashlib.sha256(json.dumps([shown, seen], sort_keys=True,
                                                   default=str).encode()).hexdigest()[:16]
        if plan_id is not None and plan_id != out["plan_id"]:
            raise Conflict("the jobs or the file changed since that plan was made: nothing "
                           "was applied; plan again", field="plan_id")
        if plan.empty:
            return out
        # every job checked as a create or an edit is (a dry run too: it says what fails)
        owner = self.viewer.name if self.viewer is not None else ""
        creates = []
        new_names = {c.name for c in plan.creates}
        for fj in plan.creates:
            fields = dict(fj.fields)
            fields["owner"] = owner
            fields["interpreter"] = fields.get("interpreter") or sys.executable
            fields["after"] = self._apply_after(fields["after"], None, fj.name, owner,
                                                new_names)
            self._check_definition(fields, None)
            creates.append(fields)
        updates = []
        for u in plan.updates:
            fields = validate_changes(u.job, defs.change_body(u.fields), now=time.time())
            if "secret_env" in u.fields:
                defs.set_secrets(fields, u.fields["secret_env"])
            if "after" in u.fields:
                fields["after"] = self._apply_after(fields["after"], u.job.id, u.job.name,
                                                    u.job.owner, new_names)
            self._check_definition(fields, u.job)
            updates.append((u.job.id, fields, u.job.version))
        deletes = [(j.id, j.version) for j in plan.deletes]
        if dry_run:
            return out
        with self._acting("apply"):
            self.store.apply_definitions(creates, updates, deletes, source)
        self._changed()
        out["applied"] = True
        return out

    def _apply_after(self, after: list[dict[str, Any]], job_id: str | None, name: str,
                     owner: str, new_names: set[str]) -> list[dict[str, Any]]:
        """``after`` of a file's job: upstreams the store has resolved to ids; one the same
        apply creates is left by name (``apply_definitions`` links it to the new job)."""
        known = [a for a in after if a["job"] not in new_names]
        resolved = iter(self._resolve_after(known, job_id, name, owner))
        return [a if a["job"] in new_names else next(resolved) for a in after]

    def _check_definition(self, fields: dict[str, Any], before: Job | None) -> None:
        if before is None or fields["executor"] != before.executor:
            self._check_executor(fields["executor"])
        if self.viewer is None:
            self._check_paths(fields, before)
        self._check_urls(fields["policy"], before.policy if before else None)

    @staticmethod
    def _masked(name: str, value: Any) -> Any:
        """A definition's value as shown: destinations masked (secret values are never
        in a revision)."""
        if name == "notify" and isinstance(value, list):
            return [mask_url(u) if isinstance(u, str) else u for u in value]
        if name in ("notify_url", "ping_url") and isinstance(value, str):
            return mask_url(value)
        return value

    def _masked_revision(self, rev: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
        out = dict(rev)
        if isinstance(out.get("changes"), dict):
            out["changes"] = {k: [self._masked(k, v) for v in pair]
                              if isinstance(pair, list) else pair
                              for k, pair in out["changes"].items()}
        spec = out.get("spec")
        if isinstance(spec, dict):
            spec = {k: self._masked(k, v) for k, v in spec.items()}
            if isinstance(spec.get("after"), list):  # upstreams by name too
                spec["after"] = [a | {"name": names[a["job"]]} if isinstance(a, dict)
                                 and a.get("job") in names else a for a in spec["after"]]
            out["spec"] = spec
        return out

    def revisions(self, ref: str, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        """``{"job_id", "job_name", "revisions": [{"rev", "at", "actor", "origin",
        "action", "changes"}], "cursor"}``, newest first, secrets masked."""
        job = self._job(ref)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 500:
            raise InvalidInput("limit must be between 1 and 500", field="limit")
        page = self.store.job_revisions(job.id, limit=limit,
                                        cursor=_int_cursor(cursor, "cursor"))
        return {"job_id": job.id, "job_name": job.name,
                "revisions": [self._masked_revision(r, {}) for r in page.items],
                "cursor": page.cursor}

    def revision(self, ref: str, rev: int) -> dict[str, Any]:
        """One revision, with ``spec``: the job's definition then (destinations masked,
        secret values never kept)."""
        job = self._job(ref)
        found = self.store.job_revision(job.id, _revision_number(rev))
        names = {j.id: j.name for j in self._all_jobs(self.viewer)}
        return self._masked_revision(found, names) | {"job_id": job.id,
                                                       "job_name": job.name}

    def revert(self, ref: str, rev: int) -> dict[str, Any]:
        """Change the job back to its definition at revision *rev*: an edit like any
        other (checked as one), recorded as a new revision."""
        job = self._job(ref, "change")
        number = _revision_number(rev)
        found = self.store.job_revision(job.id, number)
        spec = found.get("spec")
        if not isinstance(spec, dict):
            raise NotFound(f"revision {number} of {job.name} keeps no definition",
                           field="rev")
        change = revert_change(spec)
        fields = validate_changes(job, change, now=time.time())
        # secret values are never kept: the names the revision had keep today's values
        defs.set_secrets(fields, {k: v for k, v in job.env.items()
                                  if k in job.secret_env and k in spec.get("secret_env", [])})
        if "after" in change:
            fields["after"] = self._resolve_after(fields["after"], job.id, fields["name"],
                                                  job.owner)
        self._check_definition(fields, job)
        with self._acting(self.origin, action="revert", detail={"to": number}):
            updated = self.store.update_job(job.id, fields)
        self._changed()
        out = updated.to_json()
        out["reverted_to"] = number
        source = defs.managed_by(updated)
        if source:
            out["warning"] = managed_warning(source)
        return out

    def audit(self, since: str | None = None, job: str | None = None, limit: int = 100,
              cursor: str | None = None, verify: bool = False) -> dict[str, Any]:
        """The audit log, newest first (``{"records", "cursor"}``; each record also has
        ``job``, its job's name when the job is still there), and with *verify* the
        hash chain's check (``{"ok", "records", "first_bad", "problem"}``). Admins only
        on a hub store. *since*: a duration back from now (``7d``) or an ISO time."""
        self._admin_only("the audit log")
        start = None
        if since:
            try:
                start = time.time() - sched.parse_duration(since, field="since").total_seconds()
            except InvalidInput:
                start = parse_iso(since, "since")
        job_id = self._job(job).id if job else None
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000", field="limit")
        page = self.store.audit_log(since=start, job_id=job_id, limit=limit,
                                    cursor=_int_cursor(cursor, "cursor"))
        names = {j.id: j.name for j in self._all_jobs(self.viewer)}
        # each with its job's name today (not part of what the chain hashes)
        out: dict[str, Any] = {"records": [r | {"job": names.get(r.get("job_id") or "")}
                                           for r in page.items], "cursor": page.cursor}
        if verify:
            out["verify"] = self.store.verify_audit()
        return out


def _revision_number(rev: Any) -> int:
    if isinstance(rev, str) and rev.strip().isdigit():
        rev = int(rev)
    if isinstance(rev, bool) or not isinstance(rev, int) or rev < 1:
        raise InvalidInput("rev must be a revision number (1, 2, ...)", field="rev")
    return rev


def _int_cursor(cursor: Any, name: str) -> int | None:
    if cursor is None or cursor == "":
        return None
    try:
        return int(cursor)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be one a page gave", field=name) from None


def revert_change(spec: dict[str, Any]) -> dict[str, Any]:
    """A change (PATCH fields) that gives a job the definition *spec* (a revision's,
    ``models.definition_of``: flat, secret names without values, ``after`` by id)."""
    change = {k: v for k, v in spec.items()
              if k in defs.FILE_FIELDS and k != "secret_env" or k == "name"}
    if isinstance(change.get("after"), list):
        change["after"] = [{"job": a["job"], "on": a.get("on") or "success"}
                           for a in change["after"] if isinstance(a, dict)]
    if change.get("schedule") is None and not change.get("after"):
        change.pop("schedule", None)
    return change
