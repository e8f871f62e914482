"""Notifications: a JSON webhook on failed, lost, missed, blocked and recovered, and
healthchecks-style pings on start, success and failure.

They are derived from the store's events, which tickers claim in batches
(``Store.claim_events("notify")``): with any number of tickers on one store,
each notification goes out once. Delivery runs on a small thread pool with a few
retries; a failure is logged and never touches a run.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from .errors import NotFound
from .models import Event, iso

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


class Notifier:
    def __init__(self, store, default_url: str | None = None, *, attempts: int = 3,
                 backoff: float = 1.0, timeout: float = 5.0):
        self.store = store
        self.default_url = default_url or os.environ.get("HERMES_CRON_NOTIFY_URL") or None
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hermes-notify")
        self.sent = 0
        self.failed = 0

    def messages(self, events: list[Event]) -> list[tuple[str, dict | None]]:
        """``(url, json body or None for a bare ping)`` for each notification due."""
        out: list[tuple[str, dict | None]] = []
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
                for url in {u for u in (policy.notify_url if policy else None,
                                        self.default_url) if u}:
                    out.append((url, body))
            if suffix is not None and policy and policy.ping_url:
                out.append((policy.ping_url.rstrip("/") + suffix, None))
        return out

    def pump(self) -> int:
        """Claim new events and queue their notifications; returns how many were queued."""
        events = self.store.claim_events("notify")
        messages = self.messages(events) if events else []
        for url, body in messages:
            self._pool.submit(self._deliver, url, body)
        return len(messages)

    def _deliver(self, url: str, body: dict | None) -> bool:
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(1, self.attempts + 1):
            req = urllib.request.Request(
                url, data=data, method="POST" if data is not None else "GET",
                headers={"Content-Type": "application/json",
                         "User-Agent": "hermes-cron-ext"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    if resp.status < 400:
                        self.sent += 1
                        return True
            except Exception as exc:  # any network error: log, retry, never raise
                log.warning("hermes-cron: notification to %s failed (attempt %d/%d): %s",
                            url, attempt, self.attempts, exc)
            time.sleep(self.backoff * 2 ** (attempt - 1))
        self.failed += 1
        return False

    def close(self, wait: bool = False) -> None:
        self._pool.shutdown(wait=wait)
