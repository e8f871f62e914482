"""The operations every front uses, as an interface: :class:`CronClient`.

Two implementations answer the same calls with the same JSON shapes (the REST
API's): :class:`~hermes_cron_ext.ops.local.Operations` on a store (the CLI, the
server's service, kernels with no server) and
:class:`~hermes_cron_ext.ops.rest.RestClient` over ``/api/cron``. The tests run
one suite against both, so they cannot drift apart.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

from hermes_cron_ext.domain.models import FINAL_STATUSES
from hermes_cron_ext.domain.text import render_text
from hermes_cron_ext.errors import HermesCronError, NotFound


class ConnectionFailed(HermesCronError):
    """The server could not be reached, or answered something that is not our API."""

    code = "connection_failed"


class RunStream:
    """Events of one run, as the SSE route sends them: ``{"event", "data", "id"}``.

    Iterate it (blocking, so do it on a thread); :meth:`close` from any thread
    ends the iteration.
    """

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def __iter__(self) -> Iterator[dict[str, Any]]:  # pragma: no cover - overridden
        return iter(())


class CronClient(ABC):
    """What the magics and widgets need; both backends implement it."""

    kind: str  # "server" or "local"
    where: str  # human-readable: "server http://..." or "store /path"

    # -- jobs -----------------------------------------------------------------------
    @abstractmethod
    def jobs(self, state: str | None = None,
             search: str | None = None) -> list[dict[str, Any]]:
        """Every job (all pages), sorted by name."""

    @abstractmethod
    def job(self, ref: str) -> dict[str, Any]:
        """One job by name or id. :raises NotFound:"""

    @abstractmethod
    def add(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Create a job (validated as the REST API does); may carry a ``warning``."""

    @abstractmethod
    def edit(self, ref: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change a job (PATCH semantics)."""

    @abstractmethod
    def remove(self, ref: str) -> dict[str, Any] | None:
        """Delete a job and its finished runs; the job as it was, where the backend has it
        (the local store does; the REST API's DELETE answers no body)."""

    @abstractmethod
    def pause(self, ref: str) -> dict[str, Any]: ...

    @abstractmethod
    def resume(self, ref: str) -> dict[str, Any]: ...

    @abstractmethod
    def run_now(self, ref: str,
                parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Queue a manual run, with *parameters* over the job's own for this run alone;
        :raises Conflict: when the overlap policy refuses; :raises InvalidInput: naming a
        parameter of the wrong type."""

    @abstractmethod
    def pipeline(self, ref: str) -> dict[str, Any]:
        """The jobs linked to this one by ``after`` (either way), with their levels and
        last statuses, and the links between them."""

    @abstractmethod
    def job_parameters(self, ref: str) -> list[dict[str, Any]]:
        """What a run may be given: ``[{"name", "type", "default"}]`` (a notebook's from
        its ``parameters`` cell)."""

    @abstractmethod
    def backfill(self, ref: str, start: str, end: str, *, max_parallel: int = 1,
                 dry_run: bool = False) -> dict[str, Any]:
        """Run the job once per past slot from *start* to *end*, *max_parallel* at a time
        (trigger ``backfill``); its progress, or with *dry_run* the slots it would run."""

    @abstractmethod
    def get_backfill(self, backfill_id: str) -> dict[str, Any]: ...

    @abstractmethod
    def cancel_backfill(self, backfill_id: str) -> dict[str, Any]: ...

    @abstractmethod
    def backfills(self, ref: str) -> list[dict[str, Any]]:
        """The job's backfills, newest first (the last 20), each with its progress."""

    # -- runs -----------------------------------------------------------------------
    @abstractmethod
    def runs(self, ref: str | None = None, *, limit: int = 50, cursor: str | None = None,
             status: str | None = None) -> dict[str, Any]:
        """``{"runs": [...], "cursor": next-or-None}``, newest first."""

    @abstractmethod
    def run(self, run_id: str) -> dict[str, Any]: ...

    @abstractmethod
    def cancel(self, run_id: str) -> dict[str, Any]: ...

    @abstractmethod
    def log(self, run_id: str, offset: int = 0, limit: int | None = None,
            tail: int | None = None) -> tuple[bytes, int, int]:
        """``(data, start, size)``: bytes from ``start`` and the log's size."""

    @abstractmethod
    def stream(self, run_id: str, offset: int = 0) -> RunStream:
        """Follow a run from byte ``offset``: replays, then streams, then ends."""

    @abstractmethod
    def artifact(self, run_id: str) -> bytes:
        """The executed notebook of a notebook run. :raises NotFound:"""

    @abstractmethod
    def metrics(self, ref: str, metric: str | None = None, limit: int = 100,
                cursor: str | None = None) -> dict[str, Any]:
        """``{"job_id", "job_name", "metrics": [{"name", "unit", "builtin", "count",
        "points": [{"run_id", "at", "value"}] (oldest first), "summary": {"last", "min",
        "max", "mean", "median"}, "cursor"}]}``: the numbers the job's runs have, each
        metric's newest *limit* points; *metric* alone; *cursor* (a metric's) the
        points before. :raises NotFound: no such job, or no such metric."""

    @abstractmethod
    def notifications(self, ref: str | None = None, *, status: str | None = None,
                      limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        """``{"notifications": [{"id", "event", "job", "run_id", "destination" (masked),
        "status", "attempts", "last_error", "next_attempt_at", "created_at", "sent_at",
        "title", ...}], "cursor", "counts"?}``: the deliveries of the job *ref* (else
        of every job the caller may read), newest first."""

    # -- across runs (issue 34; docs/across-runs.md) -------------------------------------
    @abstractmethod
    def search(self, q: str, *, job: str | None = None, since: str | None = None,
               status: str | None = None, limit: int = 20, cursor: str | None = None,
               context: int = 2) -> dict[str, Any]:
        """Runs whose logs have a line with every term of *q* (``domain/search.py``),
        newest first: ``{"query", "hits": [{"run_id", "job_id", "job_name", "status",
        "trigger", "fire_at", "started_at", "finished_at", "matches": [{"offset" (byte
        offset of the line), "line", "before": [str], "after": [str]}] (at most 5),
        "more": bool}], "cursor"}``. *since*: ``7d`` or ISO 8601; only the jobs the
        caller may read. :raises InvalidInput: bad q, since, status, limit or cursor."""

    @abstractmethod
    def timeline(self, start: str | None = None, end: str | None = None, *,
                 job: str | None = None, status: str | None = None, limit: int = 1000,
                 cursor: str | None = None) -> dict[str, Any]:
        """Runs overlapping [start, end), oldest first, and the coming slots:
        ``{"from", "to", "now", "runs": [{"id", "job_id", "job_name", "status",
        "trigger", "fire_at", "scheduled_for", "started_at", "finished_at", "reason",
        "missed"}], "slots": [{"job_id", "job_name", "at"}] (first page only), "cursor"}``.
        *start*: ISO 8601 or a duration back from now (default ``24h``); *end*: ISO 8601
        or a duration ahead of now (default ``6h``; ``-1h``: back)."""

    @abstractmethod
    def calendar(self, ref: str, days: int = 90) -> dict[str, Any]:
        """A job's runs per day of its time zone: ``{"job_id", "job_name", "tz",
        "days": [{"day": "YYYY-MM-DD", "total", "succeeded", "failed" (failed,
        timed_out, lost), "cancelled", "skipped", "running" (queued, running)}]}``,
        oldest first, every one of the last *days* (1..366) days, zeros included."""

    @abstractmethod
    def diff(self, run_a: str, run_b: str) -> dict[str, Any]:
        """What differs between two runs (``ops/diff.py``): ``{"a", "b", "fields":
        [{"field", "a", "b"}], "metrics": [{"name", "unit", "a", "b"}], "output":
        {"same", "unified", "added", "removed", "truncated"}, "notebook": None |
        {"same", "cells": [...]}}``. Both runs must be readable by the caller."""

    # -- definitions as code, revisions, audit ------------------------------------------
    @abstractmethod
    def export(self, names: list[str] | None = None) -> str:
        """The canonical definitions file (YAML) of the jobs *names*, else of all the
        caller's jobs; secrets by reference (``docs/definitions.md``)."""

    @abstractmethod
    def apply(self, text: str, *, source: str = "jobs.yaml", dry_run: bool = False,
              prune: bool = False, plan_id: str | None = None) -> dict[str, Any]:
        """Apply a definitions file: ``{"source", "create", "change", "delete",
        "unchanged", "kept", "dry_run", "applied", "plan_id"}``; in one transaction
        unless *dry_run*; with *plan_id* (a dry run's), only that plan. :raises
        InvalidInput: naming the line, job and field; :raises Conflict: a job changed
        since the plan (nothing changed)."""

    @abstractmethod
    def revisions(self, ref: str, limit: int = 50,
                  cursor: str | None = None) -> dict[str, Any]:
        """``{"job_id", "job_name", "revisions": [{"rev", "at", "actor", "origin",
        "action", "changes"}], "cursor"}``, newest first."""

    @abstractmethod
    def revision(self, ref: str, rev: int) -> dict[str, Any]:
        """One revision with ``spec``, the job's definition then (destinations masked)."""

    @abstractmethod
    def revert(self, ref: str, rev: int) -> dict[str, Any]:
        """Change the job back to revision *rev*'s definition (a new revision); the job."""

    @abstractmethod
    def audit(self, since: str | None = None, job: str | None = None, limit: int = 100,
              cursor: str | None = None, verify: bool = False) -> dict[str, Any]:
        """``{"records", "cursor", "verify"?}``: the audit log, newest first (admins only
        on a hub store); *verify*: the hash chain checked."""

    # -- other ----------------------------------------------------------------------
    @abstractmethod
    def stats(self) -> dict[str, Any]: ...

    @abstractmethod
    def status(self) -> dict[str, Any]: ...

    @abstractmethod
    def preview(self, schedule: str, tz: str | None = None, count: int = 5,
                start: str | None = None) -> dict[str, Any]:
        """The next *count* fire times after *start* (ISO 8601; default now), and the
        schedule in words. :raises InvalidInput: naming the schedule's fault."""

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to close
        """Release what the backend holds (the local store's connection)."""

    # -- helpers on top ---------------------------------------------------------------
    def latest_run(self, ref: str) -> dict[str, Any] | None:
        """The run a user means by a job's name: its running run; else one asked for by
        hand and waiting to start (the oldest first: it goes first); else its newest run
        that started; else its newest. A run queued ahead of its slot is not it (the
        ticker hands runs over before their instant, with nothing to show yet)."""
        page: list[dict[str, Any]] = self.runs(ref, limit=20)["runs"]
        running = [r for r in page if r["status"] == "running"]
        if running:
            return running[-1]
        asked = [r for r in page if r["status"] == "queued" and r["trigger"] != "schedule"]
        if asked:
            return asked[-1]
        started = [r for r in page if r["started_at"] is not None]
        first = started or page
        return first[0] if first else None

    def resolve_run(self, ref: str) -> dict[str, Any]:
        """A run by id, or a job's latest run by the job's name or id."""
        if ref.startswith("r_"):
            try:
                return self.run(ref)
            except NotFound as no_run:
                try:  # a job may be named like a run id; if none is, say "no run"
                    self.job(ref)
                except NotFound:
                    raise no_run from None
        run = self.latest_run(ref)
        if run is None:
            job = self.job(ref)
            raise NotFound(f"job {job['name']!r} has no runs yet", field="run")
        return run

    def wait(self, run_id: str, timeout: float = 60.0,
             poll: float = 0.2) -> dict[str, Any]:
        """Block until the run is over (scripts and tests; the widgets never block)."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run["status"] in FINAL_STATUSES:
                return run
            if time.monotonic() >= deadline:
                raise TimeoutError(f"run {run_id} is still {run['status']} after {timeout:g} s")
            time.sleep(poll)

    def text(self, run_id: str, tail: int | None = None) -> str:
        """A run's output as a terminal shows it (carriage returns applied)."""
        data, _, _ = self.log(run_id, tail=tail)
        return render_text(data.decode("utf-8", "replace"))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.where}>"
