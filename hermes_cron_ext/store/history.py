"""Job revisions, the audit log and definitions applied whole, on the SQL stores.

**Who.** :meth:`HistorySQL.acting` sets, for the calling thread, who makes the writes
that follow and from where; the job and run methods of ``sql.py`` read it when they
record a revision or an audit record (outside it: actor ``''``, origin ``store``).

**Revisions.** ``job_revisions(job_id, rev, ...)`` gets a row in the transaction of
every change to a job's definition (``SQLStore._insert_job``, ``_change_job``,
``_remove_job``): ``rev`` is the job's version after it (``version + 1`` for a delete),
``spec`` the definition (``models.definition_of``), ``changes`` what differs. Rows are
never updated; they outlive the job.

**Audit log.** The job, run and backfill methods add their record to the transaction
(:meth:`HistorySQL._audit`); ``SQLStore._write`` appends them as the transaction's
last writes, after its events (:meth:`HistorySQL._flush_audit`). Each record is
chained: ``hash = sha256(prev_hash + canonical JSON of its other fields)``, ``seq``
one more than the last. The head (last seq and hash) is kept in ``meta``
(``audit_head``), so removing the newest records shows too; records pruned by ``gc``
leave the last one's seq and hash as the anchor (``audit_anchor``) the chain starts
from. SQLite's write lock, and on PostgreSQL the events' advisory lock
(``_audit_lock``), make appends one at a time in commit order.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hermes_cron_ext.domain.models import Job, Page, definition_changes, definition_of
from hermes_cron_ext.errors import Conflict, NotFound

#: schema 13: revisions, the audit log, and the file a run ran
MIGRATION_13 = [
    """CREATE TABLE job_revisions (
        job_id TEXT NOT NULL,
        rev INTEGER NOT NULL,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        origin TEXT NOT NULL,
        action TEXT NOT NULL,
        spec TEXT NOT NULL,
        changes TEXT NOT NULL,
        PRIMARY KEY (job_id, rev))""",
    """CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        origin TEXT NOT NULL,
        action TEXT NOT NULL,
        job_id TEXT,
        run_id TEXT,
        detail TEXT NOT NULL,
        before_hash TEXT,
        after_hash TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL)""",
    "CREATE INDEX audit_by_job ON audit(job_id, seq)",
    "CREATE INDEX audit_by_time ON audit(at)",
    "ALTER TABLE runs ADD COLUMN file_sha256 TEXT",
]

AUDIT_FIELDS = ("seq", "at", "actor", "origin", "action", "job_id", "run_id", "detail",
                "before_hash", "after_hash", "prev_hash", "hash")
#: the fields a record's hash covers (with the previous hash before them)
HASHED = AUDIT_FIELDS[:-2]
REVISION_FIELDS = ("rev", "at", "actor", "origin", "action", "changes")
#: outside :meth:`HistorySQL.acting`
NOBODY = ("", "store", None, None)


def canonical(obj: Any) -> str:
    """The JSON a hash is taken of: sorted keys, no spaces, UTF-8 as is."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def definition_hash(definition: dict[str, Any] | None) -> str | None:
    return None if definition is None else hashlib.sha256(
        canonical(definition).encode()).hexdigest()


def record_hash(prev_hash: str, record: dict[str, Any]) -> str:
    """sha256(prev_hash + canonical JSON of the record's :data:`HASHED` fields;
    ``detail`` as its stored text)."""
    body = canonical({k: record[k] for k in HASHED})
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


class HistorySQL:
    """Mixed into :class:`~hermes_cron_ext.store.sql.SQLStore` (which provides ``db``,
    ``_write``, ``_lock``, ``_local``, ``_job_row``, ``clock`` and the job helpers)."""

    db: Any
    _lock: str
    _local: threading.local
    clock: Callable[[], float]
    _integrity_errors: tuple[type[BaseException], ...]
    # SQLStore's: the transaction, rows, and the job changes that apply shares
    _write: Callable[..., Any]
    _job_row: Callable[..., Any]
    _insert_job: Callable[..., Job]
    _change_job: Callable[..., Job]
    _remove_job: Callable[..., tuple[Job, list[str]]]
    _forget_output: Callable[[list[str]], None]
    _set_meta: Callable[[Any, str, str], None]

    # -- who ------------------------------------------------------------------------
    @contextmanager
    def acting(self, actor: str, origin: str, *, action: str | None = None,
               detail: dict[str, Any] | None = None) -> Iterator[None]:
        """This thread's writes inside are *actor*'s, from *origin* (see ``History``)."""
        before = getattr(self._local, "acting", None)
        self._local.acting = (actor or "", origin or "store", action, detail)
        try:
            yield
        finally:
            self._local.acting = before

    def _who(self) -> tuple[str, str, str | None, dict[str, Any] | None]:
        return getattr(self._local, "acting", None) or NOBODY

    # -- revisions --------------------------------------------------------------------
    def _revise(self, db, job: Job, before: dict[str, Any] | None, action: str,
                now: float, rev: int | None = None) -> dict[str, Any] | None:
        """Append the revision of a change to *job* (its definition after the change;
        None after a delete) in the caller's transaction; returns the definition."""
        actor, origin, override, _ = self._who()
        after = None if action == "delete" else definition_of(job)
        if override and action == "update":
            action = override  # a revert is an update that says so
        db.execute("INSERT INTO job_revisions (job_id, rev, at, actor, origin, action, spec, "
                   "changes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (job.id, rev if rev is not None else job.version, now, actor, origin,
                    action, json.dumps(after if after is not None else before),
                    json.dumps(definition_changes(before, after))))
        return after

    def job_revisions(self, job_id: str, limit: int = 50,
                      cursor: int | None = None) -> Page[dict[str, Any]]:
        args: list[Any] = [job_id]
        sql = f"SELECT {', '.join(REVISION_FIELDS)} FROM job_revisions WHERE job_id = ?"
        if cursor is not None:
            sql += " AND rev < ?"
            args.append(int(cursor))
        rows = self.db.execute(sql + " ORDER BY rev DESC LIMIT ?",
                               (*args, limit + 1)).fetchall()
        items = [_revision(r) for r in rows[:limit]]
        return Page(items, str(items[-1]["rev"]) if len(rows) > limit else None)

    def job_revision(self, job_id: str, rev: int) -> dict[str, Any]:
        row = self.db.execute(f"SELECT {', '.join(REVISION_FIELDS)}, spec FROM job_revisions "
                              "WHERE job_id = ? AND rev = ?", (job_id, rev)).fetchone()
        if row is None:
            raise NotFound(f"job {job_id!r} has no revision {rev}", field="rev")
        return {**_revision(row), "spec": json.loads(row["spec"])}

    def record_file_hash(self, run_id: str, sha256: str) -> None:
        with self._write(durable=False) as db:
            db.execute("UPDATE runs SET file_sha256 = ? WHERE id = ?", (sha256, run_id))

    # -- the audit log ----------------------------------------------------------------------
    def _audit(self, action: str, job_id: str | None = None, run_id: str | None = None,
               detail: dict[str, Any] | None = None, before: dict[str, Any] | None = None,
               after: dict[str, Any] | None = None, at: float | None = None) -> None:
        """Add an audit record to this thread's transaction (appended at its end)."""
        actor, origin, override, extra = self._who()
        if override and action == "edit":
            action = override
        self._local.audits.append({
            "at": at if at is not None else self.clock(), "actor": actor, "origin": origin,
            "action": action, "job_id": job_id, "run_id": run_id,
            "detail": canonical({**(detail or {}), **(extra or {})}),
            "before_hash": definition_hash(before), "after_hash": definition_hash(after)})

    def _audit_lock(self, db) -> None:
        """Serialise audit appends to commit order (PostgreSQL: the events' lock)."""

    def _audit_head(self, db) -> tuple[int, str]:
        """The last record's (seq, hash): the newest row, or the head kept in meta (past
        the rows when the newest were removed), or the anchor left by pruning."""
        best = (0, "")
        for key in ("audit_anchor", "audit_head"):
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            if row is not None:
                seq, digest = json.loads(row[0])
                best = max(best, (int(seq), digest))
        row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        if row is not None and int(row[0]) >= best[0]:
            best = (int(row[0]), row[1])
        return best

    def _flush_audit(self, db, records: list[dict[str, Any]]) -> None:
        """Append the transaction's records, chained, as its last writes."""
        self._audit_lock(db)
        seq, prev = self._audit_head(db)
        for record in records:
            seq += 1
            record = {**record, "seq": seq}
            digest = record_hash(prev, record)
            db.execute(f"INSERT INTO audit ({', '.join(AUDIT_FIELDS)}) "
                       f"VALUES ({', '.join('?' * len(AUDIT_FIELDS))})",
                       tuple(record[k] for k in HASHED) + (prev, digest))
            prev = digest
        self._set_meta(db, "audit_head", json.dumps([seq, prev]))

    def audit_log(self, *, since: float | None = None, job_id: str | None = None,
                  limit: int = 100, cursor: int | None = None) -> Page[dict[str, Any]]:
        sql, args = f"SELECT {', '.join(AUDIT_FIELDS)} FROM audit WHERE 1=1", list[Any]()
        if since is not None:
            sql += " AND at >= ?"
            args.append(since)
        if job_id is not None:
            sql += " AND job_id = ?"
            args.append(job_id)
        if cursor is not None:
            sql += " AND seq < ?"
            args.append(int(cursor))
        rows = self.db.execute(sql + " ORDER BY seq DESC LIMIT ?",
                               (*args, limit + 1)).fetchall()
        items = [{**{k: r[k] for k in AUDIT_FIELDS}, "at": float(r["at"]),
                  "detail": json.loads(r["detail"])} for r in rows[:limit]]
        return Page(items, str(items[-1]["seq"]) if len(rows) > limit else None)

    def verify_audit(self) -> dict[str, Any]:
        db = self.db
        anchor = db.execute("SELECT value FROM meta WHERE key = 'audit_anchor'").fetchone()
        seq, prev = json.loads(anchor[0]) if anchor is not None else (0, "")
        head = db.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
        records = 0

        def bad(at: int, problem: str) -> dict[str, Any]:
            return {"ok": False, "records": records, "first_bad": at, "problem": problem}
        while True:
            rows = db.execute(f"SELECT {', '.join(AUDIT_FIELDS)} FROM audit WHERE seq > ? "
                              "ORDER BY seq LIMIT 1000", (seq,)).fetchall()
            for r in rows:
                record = {k: r[k] for k in AUDIT_FIELDS}
                record["at"] = float(record["at"])
                if record["seq"] != seq + 1:
                    return bad(seq + 1, f"records {seq + 1} to {record['seq'] - 1} "
                                        "are missing")
                if record["prev_hash"] != prev:
                    return bad(record["seq"], f"record {record['seq']} does not follow "
                                              f"record {seq}: one of them was altered")
                if record_hash(prev, record) != record["hash"]:
                    return bad(record["seq"], f"record {record['seq']} was altered")
                seq, prev = record["seq"], record["hash"]
                records += 1
            if len(rows) < 1000:
                break
        if head is not None:
            head_seq, head_hash = json.loads(head[0])
            if head_seq > seq:
                return bad(seq + 1, f"records {seq + 1} to {head_seq} are missing "
                                    "(the newest)")
            if head_seq == seq and head_hash != prev:
                return bad(seq, f"record {seq} was altered")
        return {"ok": True, "records": records, "first_bad": None, "problem": None}

    def _prune_audit(self, db, before: float) -> int:
        """Delete the records older than *before*; the last one deleted is the anchor
        the chain then starts from (in the caller's transaction)."""
        self._audit_lock(db)
        last = db.execute("SELECT seq, hash FROM audit WHERE at < ? ORDER BY seq DESC "
                          "LIMIT 1", (before,)).fetchone()
        if last is None:
            return 0
        n = db.execute("DELETE FROM audit WHERE seq <= ?", (last[0],)).rowcount
        self._set_meta(db, "audit_anchor", json.dumps([int(last[0]), last[1]]))
        return n

    # -- definitions applied whole ------------------------------------------------------
    def apply_definitions(self, creates: list[dict[str, Any]],
                          updates: list[tuple[str, dict[str, Any], int]],
                          deletes: list[tuple[str, int]], source: str) -> dict[str, list[str]]:
        try:
            return self._apply(creates, updates, deletes, source)
        except self._integrity_errors as exc:  # a name taken by a create meanwhile
            raise Conflict(f"a job was created meanwhile ({exc}): plan again",
                           field="name") from exc

    def _apply(self, creates, updates, deletes, source: str) -> dict[str, list[str]]:
        now = self.clock()
        out: dict[str, list[str]] = {"created": [], "updated": [], "deleted": []}
        gone: list[str] = []
        audit = {"source": source}
        with self._write() as db:
            seen = {job_id: version for job_id, _, version in updates}
            seen.update(deletes)
            rows = {}
            for job_id in sorted(seen):  # one lock order: applies never deadlock
                try:
                    row = self._job_row(db, job_id, lock=True)
                except NotFound:
                    raise Conflict(f"job {job_id} was deleted since the plan: plan again",
                                   field="version") from None
                if row["version"] != seen[job_id]:
                    raise Conflict(f"job {row['name']!r} was changed since the plan "
                                   f"(version {row['version']}, the plan saw "
                                   f"{seen[job_id]}): plan again", field="version")
                rows[job_id] = row
            # the ids the new jobs get: an ``after`` naming one of them links to it
            from hermes_cron_ext.store.sql import new_id  # sql.py imports this module

            ids = {f["name"]: new_id("j") for f in creates}
            for job_id, _ in deletes:
                job, finished = self._remove_job(db, rows[job_id], now, audit=audit)
                gone += finished
                out["deleted"].append(job.id)
            for job_id, fields, _ in updates:
                job = self._change_job(db, rows[job_id], _linked(fields, source, ids), now,
                                       audit=audit)
                out["updated"].append(job.id)
            for fields in creates:
                job = self._insert_job(db, _linked(fields, source, ids), now, audit=audit,
                                       job_id=ids[fields["name"]])
                out["created"].append(job.id)
        self._forget_output(gone)
        return out


def _linked(fields: dict[str, Any], source: str, ids: dict[str, str]) -> dict[str, Any]:
    """An applied job's fields: marked ``managed_by`` *source*, each ``after`` entry that
    names a job the same apply creates (*ids*: name to id) linked to that job's id."""
    after = [{**a, "job": ids[a["job"]]} if a.get("job") in ids else a
             for a in fields.get("after") or []]
    return {**fields, "managed_by": source, "after": after}


def _revision(row) -> dict[str, Any]:
    return {"rev": int(row["rev"]), "at": float(row["at"]), "actor": row["actor"],
            "origin": row["origin"], "action": row["action"],
            "changes": json.loads(row["changes"])}
