"""The notification outbox and the late-slot watch, on the SQL stores (SQLite, PostgreSQL).

**Outbox.** A state change and its event commit together (``SQLStore._write``): the
event log is where every notification starts. :meth:`OutboxSQL.plan_deliveries`
turns new events into ``deliveries`` rows, one per (event, destination), written in
the same transaction that moves the ``notify`` consumer's cursor past them (a
compare-and-set: the messages are composed before it, so the transaction is short and
no ticker waits behind a burst): a ticker killed anywhere leaves either the events
unplanned (the next planner plans them) or the rows written, never neither and never
both. A unique key (the kind of notification for
that run, or the event, and the destination) keeps one row even if an event were
planned twice; ``run.finished`` and ``run.recovered`` of one run make one
"recovered".

Senders take rows with a *lease* (:meth:`~OutboxSQL.claim_deliveries`): rows of one
destination in order, from its oldest pending one, as long as they are due and not
leased by a live sender; ``FOR UPDATE`` on PostgreSQL, SQLite's single writer
otherwise. A destination whose oldest message waits for its retry (or is being sent)
waits whole, in every process: one destination's messages arrive in order. The
outcome is written only by the lease holder (:meth:`~OutboxSQL.delivery_done`): sent,
or tried again after a backoff (5 s doubling to 1 h), or given up a day after the
event. A sender killed between
sending and recording leaves a lease that expires, so that one message may go twice;
killed anywhere else, it goes once.

**Late watch.** ``late_watch`` holds, per job with ``late_after``, the next slot to
check and when it is due (slot + late_after), indexed: :meth:`~OutboxSQL.check_late`
reads only what is due, so any ticker (a server, a daemon, ``hermes-cron tick``)
raises ``run.late`` for a slot with no successful run, once (the row moves in the
transaction that raises it), even for slots no ticker fired.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hermes_cron_ext.domain import notifications as notes
from hermes_cron_ext.domain.models import Event, Page, iso
from hermes_cron_ext.domain.notifications import FIRST_DELAY
from hermes_cron_ext.domain.options import duration_words

#: schema 12: the outbox and the late watch (see the module docstring)
MIGRATION_12 = [
    """CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_seq INTEGER NOT NULL,
        dedupe TEXT NOT NULL,
        kind TEXT NOT NULL,
        job_id TEXT,
        job_name TEXT,
        run_id TEXT,
        channel TEXT NOT NULL,
        queue TEXT NOT NULL,
        destination TEXT NOT NULL,
        shown TEXT NOT NULL,
        message TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL,
        lease_owner TEXT,
        lease_until REAL,
        last_error TEXT,
        created_at REAL NOT NULL,
        sent_at REAL)""",
    "CREATE UNIQUE INDEX deliveries_once ON deliveries(dedupe, channel, destination)",
    "CREATE INDEX deliveries_due ON deliveries(queue, next_at) WHERE status = 'pending'",
    "CREATE INDEX deliveries_by_job ON deliveries(job_id, id)",
    """CREATE TABLE late_watch (
        job_id TEXT PRIMARY KEY,
        slot REAL NOT NULL,
        due_at REAL NOT NULL)""",
    "CREATE INDEX late_watch_due ON late_watch(due_at)",
    # the notify cursor starts here (a store's first failure is notified even when it
    # happens before any ticker ran; an upgraded store keeps the cursor it has)
    "INSERT INTO meta (key, value) SELECT 'cursor:notify', '' || COALESCE(MAX(seq), 0) "
    "FROM events WHERE 1 = 1 ON CONFLICT DO NOTHING",  # WHERE: SQLite's parser needs it
]

DELIVERY_COLUMNS = ("id", "event_seq", "kind", "job_id", "job_name", "run_id", "channel",
                    "queue", "destination", "shown", "message", "status", "attempts",
                    "next_at", "lease_owner", "lease_until", "last_error", "created_at",
                    "sent_at")
#: events planned per transaction (each batch's rows are written in one short one)
PLAN_BATCH = 100
#: the most slots of one job a pass reads one by one (a longer outage: the newest only)
MAX_SCAN = 10000
#: the most late slots one pass raises per job (a ticker down for a week on a
#: per-minute job raises these, the newest, and says how many more were late)
LATE_CAP = 10

#: what ``plan_deliveries``' planner returns per delivery
Planned = dict[str, Any]


def delivery_json(row: Any, now: float) -> dict[str, Any]:
    """A delivery as lists show it: the destination masked, the message's title."""
    message = json.loads(row["message"])
    leased = row["lease_until"] is not None and row["lease_until"] > now
    status = "sending" if row["status"] == "pending" and leased else row["status"]
    return {
        "id": row["id"], "event": row["kind"], "event_seq": row["event_seq"],
        "job_id": row["job_id"], "job": row["job_name"], "run_id": row["run_id"],
        "channel": row["channel"], "destination": row["shown"], "status": status,
        "attempts": row["attempts"], "last_error": row["last_error"],
        "next_attempt_at": iso(row["next_at"]) if row["status"] == "pending" else None,
        "created_at": iso(row["created_at"]), "sent_at": iso(row["sent_at"]),
        "title": message.get("title"),
    }


class OutboxSQL:
    """Mixed into :class:`~hermes_cron_ext.store.sql.SQLStore` (which provides ``db``,
    ``_write``, ``_lock``, ``_lock_skip``, ``_event``, ``clock`` and the schedule helpers)."""

    db: Any
    _lock: str
    _lock_skip: str
    clock: Callable[[], float]
    _write: Callable[..., Any]
    _event: Callable[..., None]

    # -- the outbox -----------------------------------------------------------------
    def plan_deliveries(self, planner: Callable[[list[Event]], list[Planned]],
                        consumer: str = "notify", limit: int = 500) -> int:
        """Plan the *consumer*'s new events, *limit* at a time: *planner* makes their
        deliveries outside any transaction (it reads jobs and output), then one short
        transaction writes them and moves the cursor, if no other planner moved it
        meanwhile (then this batch is dropped, planned by that one). Returns how many
        rows were written. A new consumer starts at the newest event; ``notify``
        starts with the store (schema 12)."""
        from hermes_cron_ext.store.sql import _row_event  # the shared row reader
        key = f"cursor:{consumer}"
        written = 0
        batch = max(1, min(limit, PLAN_BATCH))
        for _ in range(max(1, limit // batch)):
            seen = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            newest = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
            if seen is None:
                with self._write() as db:
                    db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                               "ON CONFLICT DO NOTHING", (key, str(newest)))
                return written
            cursor = int(seen[0])
            if cursor >= newest:
                return written  # nothing new: no write lock taken
            rows = self.db.execute("SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                   (cursor, batch)).fetchall()
            if not rows:
                return written
            planned = planner([_row_event(r) for r in rows])
            now = self.clock()
            with self._write() as db:
                row = db.execute(f"SELECT value FROM meta WHERE key = ?{self._lock}",
                                 (key,)).fetchone()
                if row is None or int(row[0]) != cursor:
                    continue  # another planner took this batch: look again
                for p in planned:
                    cur = db.execute(
                        "INSERT INTO deliveries (event_seq, dedupe, kind, job_id, job_name, "
                        "run_id, channel, queue, destination, shown, message, status, "
                        "attempts, next_at, created_at) VALUES "
                        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?) "
                        "ON CONFLICT DO NOTHING",
                        (p["event_seq"], p["dedupe"], p["kind"], p["job_id"], p["job_name"],
                         p["run_id"], p["channel"], p["queue"], p["destination"], p["shown"],
                         json.dumps(p["message"]), now, now))
                    written += max(cur.rowcount, 0)
                db.execute("UPDATE meta SET value = ? WHERE key = ?",
                           (str(rows[-1]["seq"]), key))
        return written

    #: each destination's oldest pending delivery (its messages go in order)
    _HEADS = ("SELECT d.queue, d.next_at, d.lease_until FROM deliveries d JOIN "
              "(SELECT MIN(id) AS head FROM deliveries WHERE status = 'pending' "
              "GROUP BY queue) h ON d.id = h.head")

    def due_queues(self, now: float, limit: int = 200) -> list[str]:
        """Destinations (queues) whose oldest pending delivery is due and not leased by a
        live sender."""
        rows = self.db.execute(
            f"{self._HEADS} WHERE d.next_at <= ? AND (d.lease_until IS NULL OR "
            "d.lease_until <= ?) LIMIT ?", (now, now, limit)).fetchall()
        return [r[0] for r in rows]

    def next_delivery_at(self) -> float | None:
        """When the earliest destination's oldest pending delivery is due (a retry's
        time), or None."""
        row = self.db.execute(f"SELECT MIN(next_at) FROM ({self._HEADS}) heads").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def claim_deliveries(self, queue: str, owner: str, now: float, lease: float,
                         limit: int = 20) -> list[dict[str, Any]]:
        """Lease to *owner* until ``now + lease`` up to *limit* deliveries of one
        destination, in order from its oldest pending one while they are due and not
        leased (none while that one waits for a retry or is another sender's):
        ``{"id", "kind", "channel", "destination", "message", "attempts",
        "created_at"}``."""
        with self._write() as db:
            ids: list[int] = []
            for r in db.execute(
                    "SELECT id, next_at, lease_until FROM deliveries WHERE queue = ? AND "
                    f"status = 'pending' ORDER BY id LIMIT ?{self._lock}",
                    (queue, limit)).fetchall():
                if r[1] > now or (r[2] is not None and r[2] > now):
                    break
                ids.append(r[0])
            if not ids:
                return []
            marks = ", ".join("?" * len(ids))
            db.execute(f"UPDATE deliveries SET lease_owner = ?, lease_until = ? "
                       f"WHERE id IN ({marks})", (owner, now + lease, *ids))
            out = db.execute(
                "SELECT id, kind, channel, destination, message, attempts, created_at "
                f"FROM deliveries WHERE id IN ({marks}) ORDER BY id", ids).fetchall()
        return [{"id": r[0], "kind": r[1], "channel": r[2], "destination": r[3],
                 "message": json.loads(r[4]), "attempts": r[5], "created_at": r[6]}
                for r in out]

    def delivery_done(self, delivery_id: int, owner: str, now: float, *, ok: bool,
                      error: str | None = None, final: bool = False,
                      first_delay: float = FIRST_DELAY) -> str | None:
        """Record one attempt of *owner*'s leased delivery: ``sent``; or failed and
        ``pending`` again after :func:`notifications.backoff` (from *first_delay*); or
        ``failed`` (given up a day after it was made, or *final*: a refusal no retry
        changes). Returns the
        new status, None when the lease was no longer *owner*'s (nothing written)."""
        with self._write() as db:
            row = db.execute(
                f"SELECT attempts, created_at, lease_owner FROM deliveries WHERE id = ? "
                f"AND status = 'pending'{self._lock}", (delivery_id,)).fetchone()
            if row is None or row[2] != owner:
                return None
            attempts = row[0] + 1
            if ok:
                db.execute("UPDATE deliveries SET status = 'sent', attempts = ?, sent_at = ?, "
                           "last_error = NULL, lease_owner = NULL, lease_until = NULL "
                           "WHERE id = ?", (attempts, now, delivery_id))
                return "sent"
            delay = notes.backoff(attempts, first_delay)
            status = ("failed" if final or now + delay > row[1] + notes.GIVE_UP_AFTER
                      else "pending")
            db.execute("UPDATE deliveries SET status = ?, attempts = ?, next_at = ?, "
                       "last_error = ?, lease_owner = NULL, lease_until = NULL WHERE id = ?",
                       (status, attempts, now + delay, (error or "failed")[:1000],
                        delivery_id))
            return status

    def release_deliveries(self, owner: str, ids: list[int]) -> None:
        """Give back leased deliveries not tried (a sender stopping)."""
        if not ids:
            return
        marks = ", ".join("?" * len(ids))
        with self._write() as db:
            db.execute(f"UPDATE deliveries SET lease_owner = NULL, lease_until = NULL "
                       f"WHERE lease_owner = ? AND id IN ({marks})", (owner, *ids))

    def lease_owners(self) -> list[str]:
        """The senders holding leases now."""
        return [r[0] for r in self.db.execute(
            "SELECT DISTINCT lease_owner FROM deliveries WHERE status = 'pending' "
            "AND lease_owner IS NOT NULL AND lease_until > ?", (self.clock(),)).fetchall()]

    def expire_leases(self, owner: str) -> int:
        """End a dead sender's leases: its deliveries are due again at once."""
        with self._write() as db:
            return db.execute("UPDATE deliveries SET lease_owner = NULL, lease_until = NULL "
                              "WHERE lease_owner = ? AND status = 'pending'",
                              (owner,)).rowcount

    def list_deliveries(self, *, job_ids: list[str] | None = None, status: str | None = None,
                        limit: int = 50, cursor: int | None = None,
                        now: float | None = None) -> Page[dict[str, Any]]:
        """Deliveries newest first (``delivery_json``), of *job_ids* only when given,
        *status* one of pending (or sending), sent, failed; *cursor*: below that id."""
        now = self.clock() if now is None else now
        where: list[str] = ["1 = 1"]
        args: list[Any] = []
        if job_ids is not None:
            if not job_ids:
                return Page([], None)
            where.append(f"job_id IN ({', '.join('?' * len(job_ids))})")
            args += job_ids
        if status == "sending":
            where.append("status = 'pending' AND lease_until > ?")
            args.append(now)
        elif status:
            where.append("status = ?")
            args.append(status)
        if cursor is not None:
            where.append("id < ?")
            args.append(cursor)
        rows = self.db.execute(
            f"SELECT {', '.join(DELIVERY_COLUMNS)} FROM deliveries WHERE "
            f"{' AND '.join(where)} ORDER BY id DESC LIMIT ?", (*args, limit + 1)).fetchall()
        items = [delivery_json(r, now) for r in rows[:limit]]
        return Page(items, str(rows[limit - 1]["id"]) if len(rows) > limit else None)

    def delivery_counts(self) -> dict[str, int]:
        """How many deliveries are pending, sent and failed (``status``)."""
        return {r[0]: r[1] for r in self.db.execute(
            "SELECT status, COUNT(*) FROM deliveries GROUP BY status").fetchall()}

    # -- late slots -----------------------------------------------------------------
    def _watch_late(self, db, job_id: str, late_after: float | None, first_slot: float | None,
                    keep: bool = False) -> None:
        """Keep ``late_watch`` in step with a job saved: watched from *first_slot* when it
        has ``late_after`` and a schedule; *keep*: leave a watched job's place alone
        (neither its schedule nor its ``late_after`` changed)."""
        if late_after is None or first_slot is None:
            db.execute("DELETE FROM late_watch WHERE job_id = ?", (job_id,))
            return
        if keep and db.execute("SELECT 1 FROM late_watch WHERE job_id = ?",
                               (job_id,)).fetchone():
            return
        db.execute("INSERT INTO late_watch (job_id, slot, due_at) VALUES (?, ?, ?) "
                   "ON CONFLICT (job_id) DO UPDATE SET slot = excluded.slot, "
                   "due_at = excluded.due_at", (job_id, first_slot, first_slot + late_after))

    def next_late_check(self) -> float | None:
        """When the earliest watched slot becomes late, or None."""
        row = self.db.execute("SELECT MIN(due_at) FROM late_watch").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def check_late(self, now: float) -> int:
        """Raise ``run.late`` for every watched slot due by *now* whose run has not
        succeeded (at most :data:`LATE_CAP` per job a pass, the newest late ones; the
        first says how many earlier slots were late too), and move each watch to its next slot.
        Paused, disabled and blocked jobs move on silently. Returns how many were
        raised."""
        if self.db.execute("SELECT 1 FROM late_watch WHERE due_at <= ? LIMIT 1",
                           (now,)).fetchone() is None:
            return 0  # the common case: nothing due, nothing written
        from hermes_cron_ext.store.sql import _next, _prev, _row_job, _schedule
        raised = 0
        with self._write() as db:
            for watch in db.execute(
                    f"SELECT job_id, slot, due_at FROM late_watch WHERE due_at <= ? "
                    f"ORDER BY due_at LIMIT 200{self._lock_skip}", (now,)).fetchall():
                job_id, slot = watch[0], float(watch[1])
                jrow = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
                job = _row_job(jrow) if jrow is not None else None
                late_after = job.policy.late_after if job else None
                schedule = _schedule(job.schedule, job.timezone) if job else None
                if job is None or late_after is None or schedule is None:
                    db.execute("DELETE FROM late_watch WHERE job_id = ?", (job_id,))
                    continue
                due: list[float] = []
                nxt: float | None = slot
                while nxt is not None and nxt + late_after <= now and len(due) < MAX_SCAN:
                    due.append(nxt)
                    nxt = _next(schedule, nxt)
                beyond = 0
                if nxt is not None and nxt + late_after <= now:
                    # a long outage of a frequent job: only the newest slots are read, the
                    # ones between are counted as late without being looked at
                    newest: list[float] = []
                    back = _prev(schedule, now - late_after)
                    while back is not None and back >= nxt and len(newest) < LATE_CAP * 10:
                        newest.append(back)
                        back = _prev(schedule, back - 0.5)
                    if newest:
                        beyond = (len(self._unsucceeded(db, job_id, due))
                                  + _count_between(schedule, due[-1], newest[-1]))
                        due = sorted(newest)
                        nxt = _next(schedule, due[-1])
                # a paused, disabled or blocked job is not expected to run: no late (it
                # said "blocked" once; resuming it starts the watch afresh)
                # (a one-shot ``@at`` job is disabled once its one slot fired: that slot
                # is still owed a successful run)
                quiet = (job.state in ("paused", "blocked") or (
                    (job.state == "disabled" or not job.enabled) and schedule.kind != "at"))
                missing = [] if quiet or not due else self._unsucceeded(db, job_id, due)
                late = missing[-LATE_CAP:]
                earlier = len(missing) - len(late) + (beyond if not quiet else 0)
                for i, s in enumerate(late):
                    run = db.execute(
                        "SELECT id, status FROM runs WHERE job_id = ? AND scheduled_for = ? "
                        "ORDER BY attempt DESC LIMIT 1", (job_id, s)).fetchone()
                    extra = {"earlier_late": earlier} if i == 0 and earlier else {}
                    self._event(db, "run.late", job_id, run[0] if run else None,
                                at=now, job=job.name, scheduled_for=iso(s),
                                late_after=late_after, status=run[1] if run else None,
                                reason=_late_reason(run[1] if run else None, late_after),
                                **extra)
                raised += len(late)
                if nxt is None:
                    db.execute("DELETE FROM late_watch WHERE job_id = ?", (job_id,))
                else:
                    db.execute("UPDATE late_watch SET slot = ?, due_at = ? WHERE job_id = ?",
                               (nxt, nxt + late_after, job_id))
        return raised

    @staticmethod
    def _unsucceeded(db, job_id: str, slots: list[float]) -> list[float]:
        """The *slots* (ascending) with no successful run, read in one query."""
        ok = {float(r[0]) for r in db.execute(
            "SELECT DISTINCT scheduled_for FROM runs WHERE job_id = ? AND status = "
            "'succeeded' AND scheduled_for >= ? AND scheduled_for <= ?",
            (job_id, slots[0], slots[-1])).fetchall()}
        return [s for s in slots if s not in ok]


def _count_between(schedule, first: float, last: float, limit: int = 10 ** 6) -> int:
    """How many slots lie strictly between *first* and *last*: by the period of an
    ``@every`` schedule, else by stepping (at most *limit*)."""
    from hermes_cron_ext.store.sql import _next

    if schedule.every is not None:
        return max(0, round((last - first) / schedule.every.total_seconds()) - 1)
    n, t = 0, _next(schedule, first)
    while t is not None and t < last and n < limit:
        n, t = n + 1, _next(schedule, t)
    return n


def _late_reason(status: str | None, late_after: float) -> str:
    within = duration_words(late_after)
    if status is None:
        return f"no run of this slot within {within} (nothing fired it)"
    if status in ("queued", "running"):
        return f"its run is still {status} {within} after the slot"
    return f"its run ended {status} and none succeeded within {within}"
