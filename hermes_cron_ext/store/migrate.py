"""``hermes-cron migrate --to URL``: copy a whole store into an empty one; with
``--owner NAME``, move a one-user store into a JupyterHub service's store in use.

Typically the embedded SQLite store into PostgreSQL when a team outgrows one
machine. Jobs, runs (with their frozen specs), events (same ``seq``, so event
cursors held by clients stay valid), notification cursors, run metrics, job revisions,
the audit log (same ``seq`` and chain: it verifies there too), run output
(same bytes at the same offsets, streams kept) and notebook artifacts are copied; the
ticker registry is not (tickers register again when they start on the new store).

The source is read in one snapshot and left as it was; the rows land in the target
in one transaction. Afterwards every count is read back from the target and
compared; a mismatch raises :class:`StoreError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hermes_cron_ext.domain.models import ACTIVE_STATUSES
from hermes_cron_ext.errors import Conflict, StoreError
from hermes_cron_ext.store.base import Store
from hermes_cron_ext.store.sql import SQLStore

#: copied in this order; tickers are not copied
COPIED = ("jobs", "runs", "events", "meta", "backfills", "job_after", "job_shares",
          "run_metrics", "deliveries", "late_watch", "job_revisions", "audit")


def _count(store: SQLStore, table: str) -> int:
    return store.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def copy_store(source: Store, target: Store, *, force: bool = False,
               progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Copy *source* into the empty *target*; returns ``{"source", "copied", "target"}``
    counts (jobs, runs, events, cursors, output bytes, artifacts).

    :raises Conflict: when the target is not empty, or (unless *force*) the source is
        still in use: active runs keep writing to the store they started on
    :raises StoreError: when a count read back from the target differs
    """
    say = progress or (lambda msg: None)
    if not isinstance(source, SQLStore) or not isinstance(target, SQLStore):
        raise StoreError("migrate copies between SQL stores only")
    if source.url == target.url:
        raise Conflict("the target is the source store", field="to")
    busy = [t for t in ("jobs", "runs", "events") if _count(target, t)]
    if busy:
        raise Conflict(f"the target store {_show(target)} is not empty ({', '.join(busy)}): "
                       "migrate only into a new, empty store", field="to")
    _check_idle(source, force)

    tables: dict[str, tuple[list[str], list[tuple]]] = {}
    with source.snapshot():
        for table in COPIED:
            cols, rows = source.table_rows(table)
            if table == "meta":  # the target has its own schema version
                rows = [r for r in rows if r[cols.index("key")] != "schema_version"]
            tables[table] = (cols, rows)
    run_ids = [r[0] for r in tables["runs"][1]]
    expected = {"jobs": len(tables["jobs"][1]), "runs": len(run_ids),
                "events": len(tables["events"][1]), "cursors": len(tables["meta"][1]),
                "backfills": len(tables["backfills"][1]),
                "metrics": len(tables["run_metrics"][1])}
    say(f"copying {expected['jobs']} jobs, {expected['runs']} runs, "
        f"{expected['events']} events into {_show(target)}")
    with target._write() as db:
        # what the new store's migrations wrote (the notify cursor): the source's wins
        db.execute("DELETE FROM meta WHERE key <> 'schema_version'")
        for table in COPIED:
            cols, rows = tables[table]
            target.import_rows(db, table, cols, rows)
        target.after_import(db)

    artifacts = _copy_output(source, target, run_ids, say)["artifacts"]
    expected.update(output_bytes=sum(source.output_size(r) for r in run_ids),
                    artifacts=artifacts)

    copied = {
        "jobs": _count(target, "jobs"), "runs": _count(target, "runs"),
        "events": _count(target, "events"),
        "cursors": _count(target, "meta") - 1,
        "backfills": _count(target, "backfills"),
        "metrics": _count(target, "run_metrics"),
        "output_bytes": sum(target.output_size(r) for r in run_ids),
        "artifacts": sum(target.read_artifact(r) is not None for r in run_ids),
    }
    wrong = {k: (expected[k], copied[k]) for k in expected if expected[k] != copied[k]}
    if wrong:
        raise StoreError("migrate: counts differ after the copy (source, target): "
                         + ", ".join(f"{k} {a} != {b}" for k, (a, b) in wrong.items()))
    cols = tables["runs"][0]
    started = sum(1 for r in tables["runs"][1] if r[cols.index("status")] in ACTIVE_STATUSES
                  and (r[cols.index("pid")] is not None or r[cols.index("dispatched_at")]))
    if started:
        say(f"note: {started} run(s) were started when copied; their supervisors report to "
            "the old store, so the new one will mark them lost")
    return {"source": expected, "copied": copied, "target": _show(target)}


def _check_idle(source: SQLStore, force: bool) -> None:
    """:raises Conflict: unless *force*, when tickers or started runs use *source*."""
    if force:
        return
    alive = [t for t in source.list_tickers() if t.alive()]
    # a run waiting for its instant (a retry) moves as it is; one that a supervisor
    # holds would go on reporting to the old store
    held = [r for r in source.active_runs()
            if r.status == "running" or r.pid is not None or r.dispatched_at is not None]
    if alive or held:
        raise Conflict(
            f"the source store is in use ({len(alive)} ticker(s) alive, {len(held)} "
            "run(s) started or starting): stop its Jupyter servers' tickers and daemons "
            "and let the runs end first (or pass --force)", field="db")


def _copy_output(source: SQLStore, target: SQLStore, run_ids: list[str],
                 say: Callable[[str], None]) -> dict[str, int]:
    """Each run's output (same bytes at the same offsets) and notebook; what landed."""
    artifacts = 0
    for i, run_id in enumerate(run_ids, 1):
        segments = source.output_segments(run_id)
        if segments:
            target.import_output(run_id, segments)
        notebook = source.read_artifact(run_id)
        if notebook is not None:
            target.import_artifact(run_id, notebook)
            artifacts += 1
        if i % 1000 == 0:
            say(f"  output of {i}/{len(run_ids)} runs copied")
    return {"output_bytes": sum(target.output_size(r) for r in run_ids),
            "artifacts": artifacts}


def _show(store: SQLStore) -> str:
    try:
        from hermes_cron_ext.store.postgres import redact
    except ImportError:
        return store.url
    return redact(store.url) if store.url.startswith(("postgres://", "postgresql://")) \
        else store.url


def merge_store(source: Store, target: Store, owner: str, *, force: bool = False,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Move a one-user store into a shared (JupyterHub) store, every job now *owner*'s.

    The target is in use (the hub service ticks on it), so nothing of it is replaced:
    the jobs, their runs and their metrics, backfills, links and events are added in one
    transaction
    (events get new ``seq`` numbers at the end of the target's feed; the source's
    event cursors mean nothing there and stay behind), then output and notebooks. The
    counts are read back inside that transaction, before it commits.

    :raises Conflict: the source has hub users' jobs, *owner* already has a job of a
        name being moved, an id is taken, or (unless *force*) the source is in use
    :raises StoreError: when a count read back differs (nothing is then committed)
    """
    say = progress or (lambda msg: None)
    if not isinstance(source, SQLStore) or not isinstance(target, SQLStore):
        raise StoreError("migrate copies between SQL stores only")
    if source.url == target.url:
        raise Conflict("the target is the source store", field="to")
    if not owner or not isinstance(owner, str):
        raise Conflict("give the hub user the jobs move to", field="owner")
    _check_idle(source, force)
    with source.snapshot():
        tables = {t: source.table_rows(t) for t in ("jobs", "runs", "events", "backfills",
                                                   "job_after", "job_shares",
                                                   "run_metrics")}
    jcols, jobs = tables["jobs"]
    owners = sorted({r[jcols.index("owner")] for r in jobs} - {""})
    if owners:
        raise Conflict(f"the source store has jobs of hub users ({', '.join(owners)}): "
                       "migrate --owner moves a store one user kept", field="db")
    names = [r[jcols.index("name")] for r in jobs]
    job_ids = [r[jcols.index("id")] for r in jobs]
    # every row must be of a job moved: a run, backfill or link naming another job (a
    # file can be edited) would reach into someone else's job in the shared store
    moved = set(job_ids)
    for table, keys in (("runs", ("job_id",)), ("backfills", ("job_id",)),
                        ("job_after", ("job_id", "upstream_id")), ("job_shares", ("job_id",)),
                        ("run_metrics", ("job_id",))):
        cols, rows = tables[table]
        stray = {r[cols.index(k)] for r in rows for k in keys} - moved
        if stray:
            raise Conflict(f"the source store's {table} name jobs it does not hold "
                           f"({', '.join(sorted(stray)[:3])}): not moved", field="db")
    # a run still to start would start with the spec frozen in the file: not moved
    rcols, runs = tables["runs"]
    waiting = [r for r in runs if r[rcols.index("status")] in ACTIVE_STATUSES]
    tables["runs"] = (rcols, [r for r in runs if r[rcols.index("status")]
                              not in ACTIVE_STATUSES])
    run_ids = [r[0] for r in tables["runs"][1]]
    mcols, metrics = tables["run_metrics"]  # of the runs moved only
    moved_runs = set(run_ids)
    tables["run_metrics"] = (mcols, [m for m in metrics
                                     if m[mcols.index("run_id")] in moved_runs])
    ecols, events = tables["events"]
    events = [e for e in events if e[ecols.index("job_id")] in set(job_ids)]
    expected = {"jobs": len(jobs), "runs": len(run_ids), "events": len(events),
                "backfills": len(tables["backfills"][1]),
                "metrics": len(tables["run_metrics"][1])}
    say(f"moving {expected['jobs']} jobs, {expected['runs']} runs, {expected['events']} "
        f"events into {_show(target)} as {owner}'s")
    with target._write() as db:
        taken = set(_matching(db, "jobs", "owner = ? AND name", names, [owner]))
        if taken:
            raise Conflict(f"{owner} already has jobs named {', '.join(sorted(taken))} in "
                           f"{_show(target)}: rename or remove them on one side first",
                           field="owner")
        clash = set(_matching(db, "jobs", "id", job_ids) + _matching(db, "runs", "id", run_ids))
        if clash:
            raise Conflict(f"ids already in the target: {', '.join(sorted(clash)[:5])}",
                           field="to")
        target.import_rows(db, "jobs", jcols, [
            tuple(owner if c == "owner" else v for c, v in zip(jcols, r, strict=True))
            for r in jobs])
        for table in ("runs", "backfills", "job_after", "job_shares", "run_metrics"):
            target.import_rows(db, table, *tables[table])
        for e in events:  # appended as the target appends its own (its feed's order)
            row = dict(zip(ecols, e, strict=True))
            target._event(db, row["type"], row["job_id"], row["run_id"], row["at"],
                          **json.loads(row["data"]))
        counted = {
            "jobs": len(_matching(db, "jobs", "owner = ? AND id", job_ids, [owner])),
            "runs": len(_matching(db, "runs", "id", run_ids)),
            "backfills": len(_matching(db, "backfills", "job_id", job_ids)),
            "metrics": len(_matching(db, "run_metrics", "run_id", run_ids)),
        }
        wrong = {k: (expected[k], counted[k]) for k in counted if expected[k] != counted[k]}
        if wrong:
            raise StoreError("migrate: counts differ in the target (source, target), "
                             "nothing was committed: " + ", ".join(
                                 f"{k} {a} != {b}" for k, (a, b) in wrong.items()))
    copied = dict(counted, events=_count_where(target, "events", "job_id", job_ids))
    copied.update(_copy_output(source, target, run_ids, say))
    expected.update(output_bytes=sum(source.output_size(r) for r in run_ids),
                    artifacts=sum(source.read_artifact(r) is not None for r in run_ids))
    wrong = {k: (expected[k], copied[k]) for k in expected if copied[k] < expected[k]}
    if wrong:
        raise StoreError("migrate: counts differ after the move (source, target): "
                         + ", ".join(f"{k} {a} != {b}" for k, (a, b) in wrong.items()))
    if waiting:
        say(f"note: {len(waiting)} run(s) waiting to start were not moved (they would "
            "start with what the old store froze for them); the service fires the jobs now")
    return {"source": expected, "copied": copied, "target": _show(target), "owner": owner,
            "not_moved": {"waiting_runs": len(waiting)}}


def _matching(db, table: str, where: str, values: list, before: list | None = None) -> list:
    """The last column of *where* (``"owner = ? AND id"``) of each row of *table* whose
    value is one of *values* (asked by chunks; *before*: the other placeholders)."""
    column = where.rsplit(" ", 1)[-1]
    found: list = []
    for i in range(0, len(values), 500):
        chunk = values[i:i + 500]
        found += [r[0] for r in db.execute(
            f"SELECT {column} FROM {table} WHERE {where} IN "
            f"({', '.join('?' * len(chunk))})", [*(before or []), *chunk]).fetchall()]
    return found


def _count_where(store: SQLStore, table: str, column: str, values: list) -> int:
    return sum(store.db.execute(
        f"SELECT COUNT(*) FROM {table} WHERE {column} IN ({', '.join('?' * len(chunk))})",
        chunk).fetchone()[0] for chunk in (values[i:i + 500]
                                           for i in range(0, len(values), 500)))
