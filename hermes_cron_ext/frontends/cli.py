"""``hermes-cron``: the command line for operators and scripts.

Every read command takes ``--json``. Errors are one line on stderr and a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from hermes_cron_ext import __version__
from hermes_cron_ext.domain import schedule as sched
from hermes_cron_ext.domain.models import ACTIVE_STATUSES, parse_iso
from hermes_cron_ext.domain.options import fields_from_options, parameter_values
from hermes_cron_ext.domain.policy import KEEP_FAILURES, KEEP_RUNS, MAX_AGE
from hermes_cron_ext.domain.progress import Progress
from hermes_cron_ext.errors import HermesCronError, InvalidInput, NotFound
from hermes_cron_ext.frontends.commands import (
    COMMANDS,
    Arg,
    UsageError,
    add_arguments,
    arg,
    audit_text,
    check,
    plan_text,
    read_definitions,
    replace_job,
    revision_text,
    revisions_text,
    run_to_cancel,
    save_artifact,
)
from hermes_cron_ext.frontends.notifications import notifications_text
from hermes_cron_ext.frontends.render import (
    BACKFILL_COLUMNS,
    backfill_done,
    backfill_head,
    backfill_line,
    backfill_plan_text,
    backfill_rows,
    backfill_text,
    calendar_text,
    diff_text,
    end_text,
    job_text,
    jobs_table,
    local_time,
    metrics_text,
    no_backfills_text,
    pipeline_text,
    preview_text,
    progress_bar,
    progress_text,
    relative_time,
    revision_parts,
    runs_text,
    saved_text,
    search_text,
    state_line,
    status_text,
    text_table,
    timeline_text,
    unicode_ok,
)
from hermes_cron_ext.ops import Operations, host
from hermes_cron_ext.ops.base import CronClient
from hermes_cron_ext.ops.connect import for_cli, server_url
from hermes_cron_ext.processes import hostname, process_alive

EXIT_ERROR, EXIT_USAGE, EXIT_NO_TICKER = 1, 2, 3


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        raise UsageError(message)


# -- formatting (every text is render.py's) ---------------------------------------

def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


# -- commands -------------------------------------------------------------------

def _job_fields(args) -> dict:
    data = fields_from_options(args)
    if args.command:
        data["command"] = args.command[0] if len(args.command) == 1 else args.command
    if args.code is not None:
        data["code"] = sys.stdin.read() if args.code == "-" else args.code
        data.setdefault("kind", "python")
    return data


def cmd_add(args, ops: Operations) -> int:
    data = _job_fields(args)
    data["name"] = args.name
    data.setdefault("cwd", os.getcwd())
    if args.disabled:
        data["enabled"] = False
    if not args.command and args.code is None:
        raise InvalidInput("give the command after '--', e.g. hermes-cron add NAME "
                           "'*/5 * * * *' -- python etl.py", field="command")
    job = replace_job(ops, data) if args.replace else None
    if job is not None:  # --replace: the job of that name took these fields
        verb = "updated"
    else:
        job, created = ops.create(data)
        verb = "added" if created else "exists (same idempotency key)"
    warning = job.pop("warning", None)
    if args.json:
        _print_json(job)
    else:
        print(saved_text(verb, job, time.time()))
        if warning and verb == "updated":  # a job a definitions file manages
            print(f"warning: {warning}", file=sys.stderr)
        elif warning:
            _warn_no_ticker()
    return 0


def cmd_edit(args, ops: Operations) -> int:
    data = _job_fields(args)  # the schedule given once: commands.check
    if args.no_schedule:  # it runs after its upstreams only
        data["schedule"] = None
    if args.rename:
        data["name"] = args.rename
    if args.enable:
        data["enabled"] = True
    if args.disable:  # not both: commands.check
        data["enabled"] = False
    if not data:
        raise InvalidInput("nothing to change: give options such as --schedule or -- COMMAND")
    job = ops.edit(args.name, data)
    if args.json:
        _print_json(job)
    else:
        print(saved_text("changed", job, time.time()))
        if job.get("warning"):  # a job a definitions file manages
            print(f"warning: {job['warning']}", file=sys.stderr)
    return 0


def cmd_list(args, ops: Operations) -> int:
    jobs = ops.jobs(state=args.state, search=args.search)
    if args.json:  # the shape of every list: the REST API's, and runs --json
        _print_json({"jobs": jobs, "cursor": None})
        return 0
    if not jobs:
        print("no jobs; add one with: hermes-cron add NAME SCHEDULE -- COMMAND")
        return 0
    print(jobs_table(jobs, time.time()))
    return 0


def run_view(run: dict, current: int | None = None) -> str:
    """``show RUN_ID``: one run, field by field, with the revision of its job it ran and
    the sha256 of the file it executed, short (when it has them; ``--json``: in full)."""
    rows = [("run", run["id"]), ("job", f"{run.get('job_name') or '-'} ({run['job_id']})"),
            ("status", end_text(run)), ("trigger", run.get("trigger") or "-"),
            ("attempt", str(run.get("attempt", 1))),
            ("scheduled", local_time(run.get("scheduled_for"))),
            ("started", local_time(run.get("started_at"))),
            ("finished", local_time(run.get("finished_at")))]
    if run.get("parameters"):
        rows.append(("parameters", json.dumps(run["parameters"], ensure_ascii=False)))
    revision = revision_parts(run, current)
    if revision:
        rows.append(("revision", ", ".join(revision)))
    if run.get("host"):
        rows.append(("host", run["host"]))
    return "\n".join(f"{k + ':':<12} {v}" for k, v in rows)


def cmd_show(args, ops: Operations) -> int:
    if args.name.startswith("r_"):  # a run id: that run (a job so named: the job)
        try:
            run = ops.run(args.name)
        except NotFound:
            run = None
        if run is not None:
            if args.json:
                _print_json(run)
                return 0
            try:
                current = ops.job(run["job_id"]).get("version")
            except NotFound:  # its job was deleted
                current = None
            print(run_view(run, current))
            return 0
    job = ops.job(args.name)
    runs = ops.runs(job["id"], limit=5)["runs"]
    if args.json:
        _print_json({**job, "runs": runs})
        return 0
    note = None
    if job.get("after"):  # why its upstreams' runs may not trigger it
        me: dict[str, Any] = next(
            (n for n in ops.pipeline(job["id"])["nodes"] if n["id"] == job["id"]), {})
        note = me.get("note")
    print(job_text(job, runs, note, time.time()))
    return 0


def cmd_rm(args, ops: Operations) -> int:
    for name in args.names:
        job = ops.remove(name)
        if not args.json:
            print(f"{job['name']} removed")
    return 0


def cmd_pause(args, ops: Operations, paused: bool) -> int:
    out = []
    for name in args.names:
        job = ops.pause(name) if paused else ops.resume(name)
        out.append(job)
        if not args.json:
            print(state_line(job, time.time()))
    if args.json:
        _print_json(out)
    return 0


def _warn_no_ticker() -> None:
    print("warning: no ticker is alive on this store, so scheduled runs will NOT fire; "
          "start one with: hermes-cron daemon (or JupyterLab with hermes-cron-ext)",
          file=sys.stderr)


def cmd_run(args, ops: Operations) -> int:
    # with no ticker alive, its supervisor starts from here
    run = ops.run_now(args.name, parameter_values(args.param) or None)
    if args.json and not args.follow:
        _print_json(run)
        return 0
    if not args.follow:
        print(f"run {run['id']} of {args.name} started")
        return 0
    return _follow(ops, run["id"], _output(args))


def cmd_cancel(args, ops: Operations) -> int:
    if args.ref.startswith("b_"):
        print(backfill_line(ops.cancel_backfill(args.ref), cancelling=True))
        return 0
    run = ops.cancel(run_to_cancel(ops, args.ref)["id"])
    print(f"run {run['id']}: cancel requested")
    return 0


def cmd_artifact(args, ops: Operations) -> int:
    """Save a notebook run's executed notebook (a RUN id, or a JOB for its latest run)."""
    print(save_artifact(ops, args.ref, args.path))
    return 0


def cmd_graph(args, ops: Operations) -> int:
    """The pipeline NAME is part of: its jobs by level, each with its last run's status,
    and the links between them."""
    graph = ops.pipeline(args.name)
    if args.json:
        _print_json(graph)
    elif not graph["edges"]:
        print(f"{args.name} is in no pipeline (no job runs after it, and it runs after "
              f"none: see --after on add and edit)")
    else:
        print(pipeline_text(graph))
    return 0


def cmd_backfills(args, ops: Operations) -> int:
    """A job's backfills, newest first, with their progress."""
    backfills = ops.backfills(args.name)
    if args.json:
        _print_json(backfills)
    elif not backfills:
        print(no_backfills_text(args.name, "hermes-cron"))
    else:
        print(text_table(BACKFILL_COLUMNS, backfill_rows(backfills)))
    return 0


def cmd_backfill(args, ops: Operations) -> int:
    """Queue the slots, then (unless --no-wait) show progress until the backfill ends;
    Ctrl-C cancels it as a whole."""
    b = ops.backfill(args.name, args.start, args.end, max_parallel=args.max_parallel,
                     dry_run=args.dry_run)
    if args.dry_run:
        if args.json:
            _print_json(b)
        else:
            print(backfill_plan_text(args.name, b))
        return 0
    warning = b.pop("warning", None)
    if warning:
        _warn_no_ticker()
    if args.no_wait or args.json:
        if args.json:
            _print_json(b)
        else:
            print(f"{backfill_head(b, args.name)}; cancel it with: "
                  f"hermes-cron cancel {b['id']}")
        return 0
    print(f"{backfill_head(b, args.name)} (Ctrl-C cancels it)", file=sys.stderr)
    tty = sys.stderr.isatty()
    try:
        while b["state"] == "running":
            if tty:
                bar = progress_bar(backfill_done(b) / max(1, b["slots"]))
                sys.stderr.write(f"\r\x1b[K{bar} {backfill_text(b)}")
                sys.stderr.flush()
            time.sleep(0.5)
            b = ops.get_backfill(b["id"])
    except KeyboardInterrupt:
        b = ops.cancel_backfill(b["id"])
        if tty:
            sys.stderr.write("\r\x1b[K")
        print(backfill_line(b))
        return 130
    if tty:
        sys.stderr.write("\r\x1b[K")
    print(backfill_line(b))
    failed = sum(n for s, n in b["runs"].items() if s not in ("succeeded", "skipped"))
    return EXIT_ERROR if failed or b["state"] != "done" else 0


class _Output:
    """A run's output as a terminal user or a pipe wants it. ``::progress::`` and
    ``::phase::`` marker lines are never printed raw: on a terminal they become a bar
    on stderr that redraws itself; piped they are left out. Piped output also loses
    its ANSI escapes unless ``--color`` is given."""

    def __init__(self, out, tty: bool, color: bool):
        self.out, self.tty, self.keep_ansi = out, tty, tty or color
        self.progress = Progress()
        self._carry = b""
        self._bar = False

    def write(self, data: bytes) -> None:
        text = self._carry + data
        cut = text.rfind(b"\n") + 1
        complete, self._carry = text[:cut], text[cut:]
        if len(self._carry) > 65536 or not _maybe_marker(self._carry):
            complete, self._carry = text, b""  # only a possible marker line waits
        self._emit(complete)

    def flush(self) -> None:
        self._emit(self._carry)
        self._carry = b""
        self._clear_bar()
        self.out.flush()

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        if b"::" in data:
            self.progress.feed(data if data.endswith(b"\n") else data + b"\n")
            data = _MARKER_LINE.sub(b"", data)
        if not self.keep_ansi:
            data = _ANSI.sub(b"", data)
        if data:
            self._clear_bar()
            self.out.write(data)
            self.out.flush()
        if self.tty and self.progress.changed:
            self.progress.changed = False
            self._draw_bar()

    def _draw_bar(self) -> None:
        line = progress_text(self.progress.fraction, self.progress.phase)
        sys.stderr.write("\r\x1b[K" + line[:120])
        sys.stderr.flush()
        self._bar = True

    def _clear_bar(self) -> None:
        if self._bar:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._bar = False


def _maybe_marker(part: bytes) -> bool:
    """Whether an unfinished line may still become a marker line."""
    return any(m.startswith(part[:len(m)]) for m in (b"::progress::", b"::phase::"))


_MARKER_LINE = re.compile(rb"^::(?:progress|phase)::[^\n]*(?:\n|$)", re.MULTILINE)
_ANSI = re.compile(rb"\x1b\[[0-9;?]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def _output(args) -> _Output:
    return _Output(sys.stdout.buffer, sys.stdout.isatty(), getattr(args, "color", False))


def _follow(ops: Operations, run_id: str, out) -> int:
    """Print a run's output as it is written, until the run ends."""
    offset = 0
    while True:
        run = ops.run(run_id)
        data, _, _ = ops.log(run_id, offset)
        if data:
            out.write(data)  # shown at once; only a marker line still being written waits
            offset += len(data)
        if run["status"] not in ACTIVE_STATUSES:
            data, _, _ = ops.log(run_id, offset)
            if data:
                out.write(data)
            out.flush()
            print(f"\n[{end_text(run)}]", file=sys.stderr)
            return 0 if run["status"] == "succeeded" else EXIT_ERROR
        time.sleep(0.1)


def _run_with_output(ops: Operations, ref: str, run: dict) -> dict:
    """For ``logs JOB``: a job's latest run may be a retry or a slot still waiting to
    start, with nothing to show yet; then the newest run that started, saying so."""
    if run["started_at"] is not None or ref.startswith("r_") and ref == run["id"]:
        return run
    waiting = (f"latest run {run['id']} ({run['trigger']}, attempt {run['attempt']}) is "
               f"{run['status']}")
    started = [r for r in ops.runs(run["job_id"], limit=20)["runs"]
               if r["started_at"] is not None]
    if not started:
        raise NotFound(f"{ref} has no output yet: its {waiting}", field="run")
    print(f"hermes-cron: the {waiting}; this is the output of run {started[0]['id']} "
          f"({started[0]['status']})", file=sys.stderr)
    return started[0]


def cmd_logs(args, ops: Operations) -> int:
    run = ops.resolve_run(args.ref)
    if not args.follow:
        run = _run_with_output(ops, args.ref, run)
    data, start, _ = ops.log(run["id"], tail=args.tail or None)
    if args.json:  # the run and its output, as text, for scripts
        _print_json({"run": run, "offset": start, "output": data.decode("utf-8", "replace")})
        return 0
    out = _output(args)
    if args.follow:
        return _follow(ops, run["id"], out)
    out.write(data)
    out.flush()
    if not data and run["status"] not in ACTIVE_STATUSES:
        print(f"hermes-cron: run {run['id']} ({run['status']}) wrote no output",
              file=sys.stderr)
    return 0


def _print_page(args, page: dict, text: Callable[[], str]) -> int:
    """A keyset page: its JSON with ``--json``, else its *text* and how to get the next."""
    if args.json:
        _print_json(page)
        return 0
    print(text())
    if page["cursor"]:
        print(f"more: --cursor {page['cursor']}")
    return 0


def cmd_runs(args, ops: Operations) -> int:
    page = ops.runs(args.name, limit=args.limit, cursor=args.cursor, status=args.status)
    return _print_page(args, page, lambda: runs_text(page["runs"]))


@contextlib.contextmanager
def _as_options(options: dict[str, str]) -> Iterator[None]:
    """An answer's complaint about a field, in the words of the option the user typed
    (``from`` is ``--since`` on the command line)."""
    try:
        yield
    except InvalidInput as exc:
        if exc.field not in options:
            raise
        message = exc.message
        for name, flag in options.items():
            message = re.sub(rf"\b(?<!-){name}\b", flag, message)
        raise InvalidInput(message, field=exc.field) from None


def cmd_search(args, ops: Operations) -> int:
    """Runs whose output has a line with every term, newest first, the lines shown."""
    with _as_options({"since": "--since"}):
        answer = ops.search(args.q, job=args.job, since=args.since, status=args.status,
                            limit=args.limit, cursor=args.cursor)
    if args.json:
        _print_json(answer)
        return 0
    print(search_text(answer).replace("%cron logs", "hermes-cron logs"))
    return 0


def cmd_timeline(args, ops: Operations) -> int:
    """Every job's runs on one time axis (all pages of the range), and the coming slots."""
    with _as_options({"from": "--since", "to": "--until"}):
        answer = ops.timeline(args.since, args.until, job=args.job, status=args.status)
    pages = 1
    while answer["cursor"] and pages < 20 and not args.json:
        more = ops.timeline(answer["from"], answer["to"], job=args.job, status=args.status,
                            cursor=answer["cursor"])
        answer = {**answer, "runs": answer["runs"] + more["runs"], "cursor": more["cursor"]}
        pages += 1
    if args.json:
        _print_json(answer)
        return 0
    width = shutil.get_terminal_size((100, 24)).columns
    print(timeline_text(answer, max(20, min(120, width - 30))))
    return 0


def cmd_calendar(args, ops: Operations) -> int:
    """A job's runs per day of its time zone: a heatmap, weeks as columns."""
    answer = ops.calendar(args.name, args.days)
    if args.json:
        _print_json(answer)
    else:
        print(calendar_text(answer))
    return 0


def cmd_diff(args, ops: Operations) -> int:
    """Two runs compared (a job's name means its latest run)."""
    a, b = ops.resolve_run(args.run_a)["id"], ops.resolve_run(args.run_b)["id"]
    answer = ops.diff(a, b)
    if args.json:
        _print_json(answer)
    else:
        print(diff_text(answer))
    return 0


def cmd_metrics(args, ops: Operations) -> int:
    answer = ops.metrics(args.name, args.metric, args.limit, args.cursor)
    if args.json:
        _print_json(answer)
        return 0
    width = shutil.get_terminal_size((100, 24)).columns
    print(metrics_text(answer, width, ascii=not unicode_ok(sys.stdout.encoding)))
    for m in answer["metrics"]:
        if m["cursor"]:
            print(f"older {m['name']}: --metric {m['name']} --cursor {m['cursor']}")
    return 0


def cmd_notifications(args, ops: Operations) -> int:
    answer = ops.notifications(args.name, status=args.status, limit=args.limit,
                               cursor=args.cursor)
    return _print_page(args, answer, lambda: notifications_text(answer))


def cmd_export(args, ops: Operations) -> int:
    sys.stdout.write(ops.export(args.names or None))
    return 0


def cmd_apply(args, ops: Operations) -> int:
    text, source = read_definitions(args.file, args.source)
    plan = ops.apply(text, source=source, dry_run=args.dry_run, prune=args.prune)
    if args.json:
        _print_json(plan)
    else:
        print(plan_text(plan))
    return 0


def cmd_revisions(args, ops: Operations) -> int:
    if args.rev is not None:
        rev = ops.revision(args.name, args.rev)
        if args.json:
            _print_json(rev)
        else:
            print(revision_text(rev))
        return 0
    page = ops.revisions(args.name, limit=args.limit, cursor=args.cursor)
    return _print_page(args, page, lambda: revisions_text(page))


def cmd_revert(args, ops: Operations) -> int:
    job = ops.revert(args.name, args.rev)
    warning = job.pop("warning", None)
    if args.json:
        _print_json(job)
    else:
        print(saved_text(f"reverted to revision {args.rev}", job, time.time()))
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    return 0


def cmd_audit(args, ops: Operations) -> int:
    answer = ops.audit(args.since, args.job, args.limit, args.cursor, args.verify)
    if args.json:
        _print_json(answer)
    else:
        print(audit_text(answer))
        if answer["cursor"]:
            print(f"more: --cursor {answer['cursor']}")
    check = answer.get("verify")
    return EXIT_ERROR if check is not None and not check["ok"] else 0


def cmd_next(args) -> int:
    schedule = sched.parse(args.schedule, args.tz)
    start = (datetime.fromtimestamp(parse_iso(args.start, "from"), UTC)
             if args.start else datetime.now(UTC))
    times = sched.preview(schedule, args.count, start)
    preview = {"schedule": schedule.text, "timezone": schedule.tz,
               "description": sched.describe(schedule),
               "next": [t.isoformat().replace("+00:00", "Z") for t in times]}
    if args.json:
        _print_json(preview)
    else:
        print(preview_text(preview))
    return 0


def cmd_doctor(args) -> int:
    """Open the store's file without the store (which refuses a broken one) and run
    SQLite's quick_check; PostgreSQL: whether it opens."""
    ok, lines = host.doctor(args.db)
    for line in lines:
        print(line)
    return 0 if ok else EXIT_ERROR


def cmd_status(args, ops: Operations) -> int:
    if args.name:  # one job, as show
        return cmd_show(args, ops)
    report = ops.status()
    tickers, by_state = report["tickers"], report["jobs_by_state"]
    alive = report["alive"]
    enabled = by_state.get("scheduled", 0)
    if args.json:
        _print_json({"store": report["store"], "version": __version__,
                     "tickers": tickers, "alive": alive, "jobs_by_state": by_state,
                     "warning": None if alive or not enabled else
                     "no ticker is alive: enabled jobs will not fire"})
    else:
        print(status_text(report, time.time()))
    if not alive:
        msg = ("NO TICKER IS ALIVE: enabled jobs will NOT fire. Start one: hermes-cron daemon, "
               "a systemd unit (see README), or JupyterLab with hermes-cron-ext.")
        if not args.json:
            print(msg, file=sys.stderr)
        return EXIT_NO_TICKER if enabled else 0
    return 0


def cmd_gc(args, ops: Operations) -> int:
    max_age = sched.parse_duration(args.max_age).total_seconds()
    audit_age = (sched.parse_duration(args.audit_max_age).total_seconds()
                 if args.audit_max_age else None)
    result = ops.gc(args.keep_runs, args.keep_failures, max_age, audit_max_age=audit_age)
    if args.json:
        _print_json(result)
    else:
        print(f"removed {result['runs_deleted']} runs and {result['events_deleted']} events"
              + (f", and {result.get('audit_deleted', 0)} audit records"
                 if audit_age is not None else ""))
    return 0


#: the daemon's pidfile, held open (and so locked) for the process's life
_pidfile_fd: int | None = None


def _write_pidfile(path: str) -> None:
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise HermesCronError(f"another daemon holds {path}")
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    global _pidfile_fd
    _pidfile_fd = fd  # keep the lock for the process's life


def _local_daemons(ops: Operations) -> list[dict]:
    """The daemons (hand-started and handoff) ticking on this store from this host."""
    return [t for t in ops.status()["tickers"] if t["kind"] in ("daemon", "handoff")
            and t["host"] == hostname() and t["alive"]]


def cmd_daemon_status(args, ops: Operations) -> int:
    daemons = _local_daemons(ops)
    if args.json:
        _print_json({"store": ops.display_url, "daemons": daemons})
        return 0 if daemons else EXIT_NO_TICKER
    if not daemons:
        print(f"no daemon ticks on {ops.display_url} from this host")
        return EXIT_NO_TICKER
    now = time.time()
    rows = [[t["kind"], str(t["pid"]), local_time(t["started_at"]),
             relative_time(t["heartbeat_at"], now)]
            for t in daemons]
    print(text_table(["KIND", "PID", "SINCE", "HEARTBEAT"], rows))
    print("stop with: hermes-cron daemon stop")
    return 0


def cmd_daemon_stop(args, ops: Operations, timeout: float = 20.0) -> int:
    """SIGTERM every daemon of this store on this host and wait until each is gone."""
    daemons = _local_daemons(ops)
    if not daemons:
        print(f"no daemon ticks on {ops.display_url} from this host")
        return 0
    for t in daemons:
        try:
            os.kill(t["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + timeout
    left = daemons
    while left and time.time() < deadline:
        time.sleep(0.1)
        left = [t for t in left if process_alive(t["pid"], t.get("proc_start"))]
    for t in daemons:
        state = "still running" if t in left else "stopped"
        what = "daemon" if t["kind"] == "daemon" else f"{t['kind']} daemon"
        print(f"{what} pid {t['pid']}: {state}")
    if left:
        print(f"hermes-cron: {len(left)} daemon(s) did not stop within {timeout:.0f} s",
              file=sys.stderr)
        return EXIT_ERROR
    return 0


def cmd_daemon(args, ops: Operations) -> int:
    if args.action == "status":
        return cmd_daemon_status(args, ops)
    if args.action == "stop":
        return cmd_daemon_stop(args, ops)
    url = ops.display_url
    ops.close()
    if args.handoff and not host.take_handoff_lock(args.db):
        print(f"hermes-cron: a handoff daemon already ticks on {url}", file=sys.stderr)
        return 0

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)
    try:
        return asyncio.run(host.serve(
            args.db, kind="handoff" if args.handoff else "daemon", executors=args.executor,
            lead=args.lead, notify_url=args.notify_url, say=say, run_as=args.run_as,
            # written once SIGTERM stops it cleanly: a supervisor may signal at once
            on_signals=(lambda: _write_pidfile(args.pidfile)) if args.pidfile else None))
    finally:
        if args.pidfile:
            try:
                os.unlink(args.pidfile)
            except OSError:
                pass


def cmd_tick(args, ops: Operations) -> int:
    ops.close()
    started = asyncio.run(host.tick_once(args.db, executors=args.executor, lead=args.lead))
    if not args.quiet:
        print(f"tick: started {started} run(s)")
    return 0


def cmd_hub_service(args) -> int:
    """The JupyterHub service for every hub user, as the hub starts it; options after the
    command go to its Jupyter server (``--HermesCron.x=...``). This process becomes the
    service (``server/hub.py``: a front of its own, so the CLI execs it, not imports)."""
    argv = [sys.executable, "-m", "hermes_cron_ext.server.hub",
            *(["--db", args.db] if args.db else []), *args.rest]
    os.execv(sys.executable, argv)
    return 0  # not reached


def cmd_migrate(args, ops: Operations) -> int:
    """Copy this store (jobs, runs, events, output) into an empty one, counts checked."""
    counts = ops.migrate(args.to, force=args.force, owner=args.owner,
                         progress=None if args.json else (
                             lambda msg: print(msg, file=sys.stderr, flush=True)))
    if args.json:
        _print_json(counts)
    else:
        mine = f" as {args.owner}'s jobs" if args.owner else ""
        print(f"migrated {ops.display_url} -> {counts['target']}{mine}")
        rows = [[what, str(n), str(counts["copied"][what]), "ok"]
                for what, n in counts["source"].items()]
        print(text_table(["WHAT", "SOURCE", "TARGET", "CHECK"], rows))
        if args.owner:
            print(f"next: stop {args.owner}'s own tickers (the hub service fires these "
                  f"jobs now); the old store is left as it was")
        else:
            print(f"next: point every Jupyter server, daemon and CLI at it, e.g. "
                  f"HERMES_CRON_DB='{args.to}'; the old store is left as it was")
    return 0


# -- parser -----------------------------------------------------------------------

_JSON = arg("--json", action="store_true", help="print JSON (the REST API's shapes)")

#: what the CLI adds to the shared commands of frontends/commands.py: its own options
OWN: dict[str, tuple[Arg, ...]] = {
    **{name: (_JSON,) for name in ("add", "edit", "list", "show", "rm", "pause", "resume",
                                   "run", "backfills", "graph", "next", "status")},
    "runs": (arg("--cursor", help="the page after the one that printed it (more: ...)"),
             _JSON),
    "metrics": (arg("--cursor", help="a metric's older runs (as printed: older ...)"),
                _JSON),
    "notifications": (arg("--cursor", help="the page after the one that printed it"),
                      _JSON),
    "logs": (arg("--color", action="store_true", help="keep ANSI colours when piped"), _JSON),
    "apply": (_JSON,),
    "revisions": (arg("--cursor", help="the page after the one that printed it"), _JSON),
    "revert": (_JSON,),
    "audit": (arg("--cursor", help="the page after the one that printed it"), _JSON),
    **{name: (_JSON,) for name in ("search", "timeline", "calendar", "diff")},
    "backfill": (arg("--no-wait", action="store_true",
                     help="queue it and return (default: show its progress until done)"),
                 _JSON),
}

#: the function of each shared command; ``next`` needs no store
HANDLERS = {
    "add": cmd_add, "edit": cmd_edit, "list": cmd_list, "show": cmd_show, "rm": cmd_rm,
    "pause": lambda a, s: cmd_pause(a, s, True), "resume": lambda a, s: cmd_pause(a, s, False),
    "run": cmd_run, "runs": cmd_runs, "logs": cmd_logs, "cancel": cmd_cancel,
    "backfill": cmd_backfill, "backfills": cmd_backfills, "graph": cmd_graph, "next": cmd_next,
    "metrics": cmd_metrics, "notifications": cmd_notifications,
    "status": cmd_status, "artifact": cmd_artifact, "export": cmd_export,
    "apply": cmd_apply, "revisions": cmd_revisions, "revert": cmd_revert, "audit": cmd_audit,
    "search": cmd_search, "timeline": cmd_timeline, "calendar": cmd_calendar, "diff": cmd_diff,
}
NO_STORE = ("next",)
#: the CLI's own commands that need the store itself, never a server's API
STORE_ONLY = ("daemon", "tick", "gc", "migrate")


def build_parser() -> Parser:
    parser = Parser(prog="hermes-cron", description="Durable cron for Jupyter.")
    parser.add_argument("--db", help="store path or postgresql:// URL, or the http(s):// URL "
                        "of a JupyterHub hermes-cron service or Jupyter server (default: "
                        "$HERMES_CRON_DB, else $HERMES_CRON_URL, Jupyter config, the "
                        "Jupyter data dir)")
    parser.add_argument("--version", action="version", version=f"hermes-cron {__version__}")
    sub = parser.add_subparsers(dest="cmd", parser_class=Parser, metavar="COMMAND")

    for command in COMMANDS.values():  # the commands every front has, declared once
        p = sub.add_parser(command.name, help=command.help, description=command.help,
                           usage=f"hermes-cron {command.name} {command.usage}")
        add_arguments(p, command, OWN.get(command.name, ()))
        p.set_defaults(func=HANDLERS[command.name], no_store=command.name in NO_STORE)

    # the CLI's own: the store's upkeep and the processes that tick
    p = sub.add_parser("doctor", help="check the store file (SQLite's quick_check)")
    p.set_defaults(func=cmd_doctor, no_store=True)

    p = sub.add_parser("gc", help="prune old runs now")
    p.add_argument("--keep-runs", type=int, default=KEEP_RUNS,
                   help=f"per job, the newest runs kept (default {KEEP_RUNS})")
    p.add_argument("--keep-failures", type=int, default=KEEP_FAILURES,
                   help=f"per job, failed runs kept beyond those (default {KEEP_FAILURES})")
    p.add_argument("--max-age", default=f"{int(MAX_AGE // 86400)}d",
                   help=f"runs older than this go (default {int(MAX_AGE // 86400)}d)")
    p.add_argument("--audit-max-age", metavar="AGE",
                   help="audit records older than this go too, e.g. 400d (default: the "
                        "audit log is kept whole; its chain still verifies after)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("daemon", help="tick in the foreground until SIGTERM; 'daemon status' "
                       "and 'daemon stop' list and stop this host's daemons of the store "
                       "(handoff ones too)")
    p.add_argument("action", nargs="?", choices=["run", "status", "stop"], default="run")
    p.add_argument("--json", action="store_true")
    p.add_argument("--pidfile")
    p.add_argument("--notify-url", help="webhook for every job's failures and recoveries "
                   "(default: $HERMES_CRON_NOTIFY_URL)")
    p.add_argument("--handoff", action="store_true",
                   help="started by a stopping Jupyter server: exit when a server ticks again "
                        "or no enabled job is left")
    p.add_argument("--lead", type=float, default=2.0, help=argparse.SUPPRESS)
    p.add_argument("--executor", action="append", metavar="URL",
                   help="an executor jobs may name: 'local' (always allowed) or "
                        "dask://HOST:PORT; repeat for several. The first is where jobs that "
                        "name none run (default: local). A job naming another is recorded "
                        "failed, never sent there (default: $HERMES_CRON_EXECUTOR, "
                        "comma-separated)")
    p.add_argument("--run-as", metavar="ARGV",
                   help="on a hub whose users are Unix accounts: the command that starts "
                        "the run-as helper, shell-quoted, e.g. 'sudo -n /opt/hermes/bin/"
                        "python -I -m hermes_cron_ext.runtime.runas serve'; runs of jobs "
                        "with an owner then start as that owner, never as the daemon's "
                        "account (default: $HERMES_CRON_RUN_AS; empty: off)")
    p.set_defaults(func=cmd_daemon)

    p = sub.add_parser("tick", help="fire what is due now, then exit (systemd timer)")
    p.add_argument("--lead", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--executor", action="append", metavar="URL",
                   help="an executor jobs may name, as for daemon (repeatable; default: "
                        "$HERMES_CRON_EXECUTOR)")
    p.set_defaults(func=cmd_tick)

    p = sub.add_parser("hub-service", help="serve every JupyterHub user as one hub-managed "
                       "service (see docs/jupyterhub.md); other options go to its server")
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_hub_service, no_store=True)

    p = sub.add_parser("migrate", help="copy this store into an empty PostgreSQL store "
                                       "(migrate --to postgresql://...), or move a user's "
                                       "store into a JupyterHub service's (--owner NAME)")
    p.add_argument("--to", required=True, metavar="URL",
                   help="the target store (postgresql://USER@HOST/DB or a file); it must be "
                        "empty, unless --owner")
    p.add_argument("--owner", metavar="HUB_USER",
                   help="move into the hub service's store (in use) as this hub user's "
                        "jobs; their names must be free there")
    p.add_argument("--force", action="store_true",
                   help="copy even while tickers are alive or runs are active")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_migrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1:]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.cmd is None:
            parser.print_help()
            return EXIT_USAGE
        args.command = command
        shared = COMMANDS.get(args.cmd)
        if command and not (shared and shared.takes_command):
            raise UsageError(f"'{args.cmd}' takes no command after '--'")
        if shared is not None:
            check(shared, args)  # ranges, options that exclude each other (every front)
        if getattr(args, "no_store", False):
            return args.func(args)
        # the store (--db, $HERMES_CRON_DB, the config, the default file), or a server:
        # --db http(s)://... or $HERMES_CRON_URL (a JupyterHub user's: the hub service)
        if args.cmd in STORE_ONLY:
            server = server_url(args.db)
            if server:
                raise UsageError(f"'{args.cmd}' works on a store (a file or postgresql:// "
                                 f"URL given with --db), not on the server at {server}")
            ops: CronClient = Operations(args.db)
        else:
            ops = for_cli(args.db)
        if isinstance(ops, Operations):  # revisions record the Unix user, from the CLI
            ops.actor, ops.origin = None, "cli"
        try:
            return args.func(args, ops)
        finally:
            ops.close()
    except UsageError as exc:
        print(f"hermes-cron: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except InvalidInput as exc:  # what was typed is refused, nothing was done
        print(f"hermes-cron: error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except HermesCronError as exc:
        print(f"hermes-cron: error: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: still one line, with where to look
        print(f"hermes-cron: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
