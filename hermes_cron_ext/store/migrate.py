"""``hermes-cron migrate --to URL``: copy a whole store into an empty one.

Typically the embedded SQLite store into PostgreSQL when a team outgrows one
machine. Jobs, runs (with their frozen specs), events (same ``seq``, so event
cursors held by clients stay valid), notification cursors, run output (same
bytes at the same offsets, streams kept) and notebook artifacts are copied; the
ticker registry is not (tickers register again when they start on the new store).

The source is read in one snapshot and left as it was; the rows land in the target
in one transaction. Afterwards every count is read back from the target and
compared; a mismatch raises :class:`StoreError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hermes_cron_ext.domain.models import ACTIVE_STATUSES
from hermes_cron_ext.errors import Conflict, StoreError
from hermes_cron_ext.store.base import Store
from hermes_cron_ext.store.sql import SQLStore

#: copied in this order; tickers are not copied
COPIED = ("jobs", "runs", "events", "meta", "backfills", "job_after", "job_shares")


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
    if not force:
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
                "backfills": len(tables["backfills"][1])}
    say(f"copying {expected['jobs']} jobs, {expected['runs']} runs, "
        f"{expected['events']} events into {_show(target)}")
    with target._write() as db:
        for table in COPIED:
            cols, rows = tables[table]
            target.import_rows(db, table, cols, rows)
        target.after_import(db)

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
    expected.update(output_bytes=sum(source.output_size(r) for r in run_ids),
                    artifacts=artifacts)

    copied = {
        "jobs": _count(target, "jobs"), "runs": _count(target, "runs"),
        "events": _count(target, "events"),
        "cursors": _count(target, "meta") - 1,
        "backfills": _count(target, "backfills"),
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


def _show(store: SQLStore) -> str:
    try:
        from hermes_cron_ext.store.postgres import redact
    except ImportError:
        return store.url
    return redact(store.url) if store.url.startswith(("postgres://", "postgresql://")) \
        else store.url
