"""The one grammar of the command fronts.

``hermes-cron`` (:mod:`~hermes_cron_ext.frontends.cli`) and ``%cron``
(:mod:`~hermes_cron_ext.frontends.magics`) build their parsers for the shared commands
from :data:`COMMANDS`: each command's name, usage, help, arguments and options, declared
once here; job options come from :func:`hermes_cron_ext.domain.options.add_options`. A
command or argument added here appears in both. Each front adds only what is its own,
declared beside its parser (``cli.OWN`` and ``magics.OWN``: the CLI's ``--json``, the
magics' ``run --form``...) and its own commands (the CLI's ``daemon``, ``tick``,
``migrate``, ``doctor``, ``gc``; the magics' ``connect``, ``watch``, ``help`` and
``%%cron``). tests/frontends/test_commands.py holds both fronts to this table.

:func:`check` says, for both fronts alike, what argparse cannot: a number out of its
range, and options that exclude each other; :func:`replace_job`,
:func:`run_to_cancel` and :func:`save_artifact` what a shared command does with an
argument both fronts read alike.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hermes_cron_ext.domain.models import ACTIVE_STATUSES
from hermes_cron_ext.domain.options import add_options
from hermes_cron_ext.errors import Conflict, InvalidInput, NotFound
from hermes_cron_ext.frontends.render import text_table

__all__ = ["COMMANDS", "Arg", "Command", "UsageError", "add_arguments", "arg",
           "audit_text", "check", "help_text", "plan_text", "read_definitions",
           "replace_job", "revision_text", "revisions_text", "run_to_cancel",
           "save_artifact"]


class UsageError(InvalidInput):
    """What was typed does not fit the command (the CLI exits 2; the magics print one
    line): nothing was done."""


@dataclass(frozen=True)
class Arg:
    """One argument or option: its flags (or positional name) and argparse keywords."""

    flags: tuple[str, ...]
    options: dict = field(default_factory=dict)
    #: inclusive bounds of an int option, said by :func:`check` in the same words
    between: tuple[int, int] | None = None

    @property
    def dest(self) -> str:
        if "dest" in self.options:
            return self.options["dest"]
        long = [f for f in self.flags if f.startswith("--")] or list(self.flags)
        return long[0].lstrip("-").replace("-", "_")


def arg(*flags: str, between: tuple[int, int] | None = None, **options) -> Arg:
    return Arg(flags, options, between)


@dataclass(frozen=True)
class Command:
    name: str
    #: what follows ``hermes-cron NAME`` / ``%cron NAME``
    usage: str
    help: str
    args: tuple[Arg, ...] = ()
    #: every job option with a flag (domain/options.py)
    job_options: bool = False
    #: takes ``-- COMMAND`` after its options
    takes_command: bool = False
    #: dests of which at most one may be given
    exclusive: tuple[str, ...] = ()


def _name(help: str = "the job's name or id") -> Arg:
    return arg("name", metavar="NAME", help=help)


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("add", 'NAME ["SCHEDULE"] [options] -- COMMAND',
            "add a job; with --after JOB and no SCHEDULE it runs only after JOB's runs", (
                arg("name", metavar="NAME", help="the job's name"),
                arg("schedule", nargs="?", metavar="SCHEDULE",
                    help="cron expression, @daily, '@every 30s' ... (none with --after: it "
                         "runs only after those jobs)"),
                arg("--disabled", action="store_true",
                    help="saved but not fired: neither its schedule nor its --after jobs "
                         "trigger it until it is enabled"),
                arg("--replace", action="store_true",
                    help="change the job of that name if it exists")),
            job_options=True, takes_command=True),
    Command("edit", 'NAME ["SCHEDULE"] [options] [-- COMMAND]',
            "change a job: its schedule, options or command", (
                _name(),
                arg("new_schedule", nargs="?", metavar="SCHEDULE",
                    help="the new schedule (or --schedule)"),
                arg("--schedule"),
                arg("--no-schedule", action="store_true",
                    help="no schedule of its own: it runs only after the jobs in --after"),
                arg("--rename", metavar="NAME"),
                arg("--enable", action="store_true"),
                arg("--disable", action="store_true")),
            job_options=True, takes_command=True, exclusive=("enable", "disable")),
    Command("list", "[--state STATE] [--search TEXT]",
            "jobs: state, schedule, next run, last outcome", (
                arg("--state"),
                arg("--search", metavar="TEXT"))),
    Command("show", "NAME", "one job in detail, with its recent runs", (_name(),)),
    Command("rm", "NAME...", "delete jobs", (arg("names", nargs="+", metavar="NAME"),)),
    Command("pause", "NAME...", "pause jobs", (arg("names", nargs="+", metavar="NAME"),)),
    Command("resume", "NAME...", "resume jobs", (arg("names", nargs="+", metavar="NAME"),)),
    Command("run", "NAME [-p NAME=VALUE ...] [-f]",
            "run a job now (-f: follow its output live)", (
                _name(),
                arg("-p", "--param", action="append", metavar="NAME=VALUE",
                    help="a parameter for this run alone (VALUE read as JSON when it can "
                         "be); a notebook's are checked against its parameters cell"),
                arg("-f", "--follow", "--watch", action="store_true", dest="follow",
                    help="follow its output live"))),
    Command("runs", "[NAME] [--limit N] [--status STATUS]", "a job's runs, newest first", (
        arg("name", nargs="?", metavar="NAME", help="the job (default: every job)"),
        arg("--limit", type=int, default=20, metavar="N", between=(1, 500)),
        arg("--status"))),
    Command("logs", "RUN_OR_JOB [-f] [--tail N]",
            "a run's output (a RUN id, or a JOB for its latest run)", (
                arg("ref", metavar="RUN_OR_JOB"),
                arg("-f", "--follow", action="store_true", help="follow it live"),
                arg("--tail", type=int, metavar="N", help="only the last N bytes"))),
    Command("cancel", "RUN_OR_JOB|BACKFILL",
            "stop a running run (by its id or its job's name), or a whole backfill (b_...)",
            (arg("ref", metavar="RUN_OR_JOB"),)),
    Command("backfill", "NAME --from DATE --to DATE [--max-parallel N] [--dry-run]",
            "run a job once per past slot in that range", (
                _name(),
                arg("--from", dest="start", required=True, metavar="DATE",
                    help="first slot: ISO 8601 time or a date (that day's midnight)"),
                arg("--to", dest="end", required=True, metavar="DATE",
                    help="last slot: ISO 8601 time or a date (through that day)"),
                arg("--max-parallel", type=int, default=1, metavar="N",
                    help="runs at once (default 1)"),
                arg("--dry-run", action="store_true", help="list the slots, run nothing"))),
    Command("backfills", "NAME", "a job's backfills, newest first, with progress",
            (_name(),)),
    Command("metrics", "NAME [--metric M] [--limit N]",
            "the numbers of a job's runs (duration, exit code, output bytes, what they "
            "reported): per metric its last, min, median, max and a sparkline", (
                _name(),
                arg("--metric", metavar="M", help="that metric alone"),
                arg("--limit", type=int, default=100, metavar="N", between=(1, 1000),
                    help="the newest N runs of each metric (default 100)"))),
    Command("notifications", "[NAME] [--status STATUS] [--limit N]",
            "notifications sent and waiting (the outbox): event, job, run, destination "
            "(masked), status, tries and the last error", (
                arg("name", nargs="?", metavar="NAME", help="the job (default: every job)"),
                arg("--status", help="pending, sending, sent or failed"),
                arg("--limit", type=int, default=50, metavar="N", between=(1, 500)))),
    Command("graph", "NAME", "the pipeline a job is part of, with last statuses", (_name(),)),
    Command("next", '"SCHEDULE" [--tz ZONE] [--from TIME] [--count N]',
            "preview fire times of a schedule", (
                arg("schedule", metavar="SCHEDULE"),
                arg("--tz", metavar="ZONE"),
                arg("--from", dest="start", metavar="TIME",
                    help="after this time (ISO 8601; default now)"),
                arg("--count", type=int, default=5, metavar="N", between=(1, 100)))),
    Command("status", "[NAME]", "which tickers are alive; with NAME, that job (as show)",
            (arg("name", nargs="?", metavar="NAME"),)),
    Command("export", "[NAME...]",
            "write jobs as a definitions file (YAML; secrets by reference), e.g. > jobs.yaml",
            (arg("names", nargs="*", metavar="NAME",
                 help="these jobs (default: every job)"),)),
    Command("apply", "FILE [--dry-run] [--prune]",
            "create and change jobs to match a definitions file, in one transaction; "
            "prints the plan", (
                arg("file", metavar="FILE", help="the definitions file ('-': stdin)"),
                arg("--dry-run", action="store_true", help="print the plan, change nothing"),
                arg("--prune", action="store_true",
                    help="also delete the jobs this file applied before that left it"),
                arg("--source", metavar="NAME",
                    help="the name the jobs are managed by (default: FILE's name)"))),
    Command("revisions", "NAME [--limit N]",
            "a job's revisions, newest first: who, when, from where, what changed", (
                _name(),
                arg("--limit", type=int, default=20, metavar="N", between=(1, 500)),
                arg("--rev", type=int, metavar="REV",
                    help="that revision in full, with the job's definition then"))),
    Command("revert", "NAME --to REV", "change a job back to a revision's definition", (
        _name(),
        arg("--to", dest="rev", type=int, required=True, metavar="REV",
            help="the revision (see revisions NAME)"))),
    Command("audit", "[--since 7d] [--job NAME] [--verify]",
            "the audit log: every action, who, when, from where; --verify checks its hash "
            "chain", (
                arg("--since", metavar="AGE", help="a duration back from now (7d, 12h) or "
                                                   "an ISO 8601 time"),
                arg("--job", metavar="NAME", help="one job's records"),
                arg("--limit", type=int, default=100, metavar="N", between=(1, 1000)),
                arg("--verify", action="store_true",
                    help="check the hash chain (exit 1 when it is broken)"))),
    # across runs (issue 34; docs/across-runs.md)
    Command("search", "TEXT [--job NAME] [--since 7d] [--status STATUS] [--limit N]",
            "runs whose output has a line with every word of TEXT, the lines with context", (
                arg("q", metavar="TEXT", help='words, "a phrase", a prefix*'),
                arg("--job", metavar="NAME", help="one job's runs"),
                arg("--since", metavar="AGE", help="a duration back from now (7d) or ISO 8601"),
                arg("--status", help="runs in that status only"),
                arg("--limit", type=int, default=20, metavar="N", between=(1, 100)),
                arg("--cursor", help="the page after the one that printed it"))),
    Command("timeline", "[--since 24h] [--until 6h] [--job NAME]",
            "every job's runs on one time axis, marked by status, and the coming slots", (
                arg("--since", metavar="AGE", help="from this long ago (24h) or ISO 8601"),
                arg("--until", metavar="AGE",
                    help="to this long ahead of now (6h) or ISO 8601"),
                arg("--job", metavar="NAME", help="that job alone"),
                arg("--status", help="runs in that status only"))),
    Command("calendar", "NAME [--days 90]",
            "a job's days as a heatmap (weeks as columns): all succeeded, some failed, none", (
                arg("name", metavar="NAME"),
                arg("--days", type=int, default=90, metavar="N", between=(1, 366)))),
    Command("diff", "RUN_A RUN_B",
            "two runs compared: fields, metrics, the output diff, a notebook's changed cells",
            (arg("run_a", metavar="RUN_A"), arg("run_b", metavar="RUN_B"))),
    Command("artifact", "RUN_OR_JOB [PATH]", "save a notebook run's executed notebook", (
        arg("ref", metavar="RUN_OR_JOB"),
        arg("path", nargs="?", metavar="PATH",
            help="where to write it (default: JOB-RUN.ipynb here)"))),
)}


def add_arguments(parser: argparse.ArgumentParser, command: Command, own: Iterable[Arg] = (),
                  *, leave_out: tuple[str, ...] = ()) -> None:
    """The command's arguments on *parser*, then the front's *own*; *leave_out* names
    dests (arguments or job options) a front does not take."""
    for a in (*command.args, *own):
        if a.dest not in leave_out:
            parser.add_argument(*a.flags, **a.options)
    if command.job_options:
        add_options(parser, exclude=leave_out)


def check(command: Command, args: argparse.Namespace) -> None:
    """What the grammar says that argparse cannot, alike on every front.

    :raises UsageError: a number out of its range; options that exclude each other
    """
    for a in command.args:
        value = getattr(args, a.dest, None)
        if a.between and value is not None and not a.between[0] <= value <= a.between[1]:
            raise UsageError(f"{a.flags[-1]} must be between {a.between[0]} and "
                             f"{a.between[1]}, not {value}", field=a.dest)
    given = [d for d in command.exclusive if getattr(args, d, None)]
    if len(given) > 1:
        raise UsageError("give " + " or ".join(f"--{d.replace('_', '-')}" for d in given)
                         + ", not both")
    if command.name == "edit":  # the schedule: positional or --schedule, or none of its own
        if args.new_schedule is not None:
            if args.schedule is not None:
                raise UsageError("give the schedule once: as SCHEDULE or --schedule",
                                 field="schedule")
            args.schedule = args.new_schedule
        if args.no_schedule and args.schedule is not None:
            raise UsageError("give a schedule or --no-schedule, not both", field="schedule")


def help_text(prefix: str, commands: Iterable[Command], width: int = 44,
              total: int = 92) -> str:
    """One entry per command: ``PREFIX NAME USAGE`` and its help beside it (or under it
    when the usage is long), wrapped at *total* columns."""
    lines = []
    for c in commands:
        left = "    " + " ".join(part for part in (prefix, c.name, c.usage) if part)
        wrapped = textwrap.wrap(c.help, total - width) or [""]
        if len(left) <= width - 2:
            lines.append(left.ljust(width) + wrapped[0])
            wrapped = wrapped[1:]
        else:
            lines.append(left)
        lines += [" " * width + w for w in wrapped]
    return "\n".join(lines)


# -- what the shared commands' arguments mean -----------------------------------------

def replace_job(client, data: dict) -> dict | None:
    """``add --replace``: the job named ``data["name"]`` takes these fields (a python
    cell's code replaces its command); None when there is no such job (add it)."""
    try:
        job = client.job(data["name"])
    except NotFound:
        return None
    changes = {k: v for k, v in data.items() if k != "name"}
    if "code" in changes:
        changes["command"] = data.get("command")
    return client.edit(job["id"], changes)


def run_to_cancel(client, ref: str) -> dict:
    """The run ``cancel REF`` means: the run of that id, or the job's latest run, which
    must still be queued or running.

    :raises Conflict: a job's latest run has ended
    """
    run = client.resolve_run(ref)
    if run["id"] != ref and run["status"] not in ACTIVE_STATUSES:
        raise Conflict(f"{ref} has no running run (its last run {run['id']} "
                       f"{run['status']})", field="run")
    return run


def save_artifact(client, ref: str, path: str | None) -> str:
    """``artifact REF [PATH]``: write the executed notebook of the run *ref* means to
    *path* (default ``JOB-RUN.ipynb`` here); what was done, in words."""
    run = client.resolve_run(ref)
    data = client.artifact(run["id"])
    path = path or f"{run.get('job_name') or 'run'}-{run['id']}.ipynb"
    with open(path, "wb") as f:
        f.write(data)
    return f"saved the executed notebook of run {run['id']} to {path}"


# -- definitions as code, revisions, audit ------------------------------------------------

def read_definitions(path: str, source: str | None = None) -> tuple[str, str]:
    """``apply FILE``: the file's text and the name its jobs are managed by (*source*,
    else the file's own name; ``-``: stdin, ``stdin``)."""
    if path == "-":
        return sys.stdin.read(), source or "stdin"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}", field="file") from None
    return text, source or os.path.basename(path)


def _value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return repr(value) if not value or value != value.strip() else value
    return json.dumps(value, ensure_ascii=False)


def plan_text(plan: dict[str, Any]) -> str:
    """A plan as ``apply`` prints it: ``+ create``, ``~ change`` with ``field: before ->
    after`` lines, ``- delete``, the jobs left as they were; then what was done."""
    lines = [f"+ create {c['name']}" for c in plan["create"]]
    for c in plan["change"]:
        lines.append(f"~ change {c['name']}")
        lines += [f"    {x['field']}: {_value(x['before'])} -> {_value(x['after'])}"
                  for x in c["changes"]]
    lines += [f"- delete {d['name']}" for d in plan["delete"]]
    if plan["unchanged"]:
        lines.append(f"= unchanged: {', '.join(plan['unchanged'])}")
    if plan["kept"]:
        lines.append(f"  not in the file, kept: {', '.join(plan['kept'])}")
    if not (plan["create"] or plan["change"] or plan["delete"]):
        lines.append(f"nothing to change: the jobs match {plan['source']}")
    elif plan["dry_run"]:
        lines.append("dry run: nothing changed")
    elif plan["applied"]:
        n = len(plan["create"]), len(plan["change"]), len(plan["delete"])
        lines.append(f"applied: {n[0]} created, {n[1]} changed, {n[2]} deleted")
    return "\n".join(lines)


def _when(at: Any) -> str:
    if isinstance(at, (int, float)):
        return datetime.fromtimestamp(at, UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    return str(at or "-")


def revisions_text(page: dict[str, Any]) -> str:
    """``revisions NAME``: one line per revision, newest first."""
    rows = [[str(r["rev"]), _when(r["at"]), r.get("actor") or "-", r.get("origin") or "-",
             r.get("action") or "-",
             "-" if r.get("action") in ("create", "delete")
             else ", ".join(r.get("changes") or {}) or "-"]
            for r in page["revisions"]]
    if not rows:
        return f"{page['job_name']} has no revisions"
    return text_table(["rev", "at", "actor", "origin", "action", "changed"], rows)


def revision_text(rev: dict[str, Any]) -> str:
    """``revisions NAME --rev N``: what changed, then the definition then."""
    lines = [f"{rev['job_name']} revision {rev['rev']}: {rev.get('action')} by "
             f"{rev.get('actor') or '-'} from {rev.get('origin') or '-'} at {_when(rev['at'])}"]
    for name, pair in (rev.get("changes") or {}).items():
        before, after = pair if isinstance(pair, list) and len(pair) == 2 else (None, pair)
        lines.append(f"    {name}: {_value(before)} -> {_value(after)}")
    spec = rev.get("spec")
    if isinstance(spec, dict):
        lines.append("definition:")
        lines += [f"    {k}: {_value(v)}" for k, v in spec.items()
                  if v not in (None, "", [], {})]
    return "\n".join(lines)


def audit_text(answer: dict[str, Any]) -> str:
    """``audit``: one line per record, newest first, and the chain's check."""
    rows = [[str(r.get("seq")), _when(r.get("at")), r.get("actor") or "-",
             r.get("origin") or "-", r.get("action") or "-",
             r.get("job") or r.get("job_id") or "-", r.get("run_id") or "-"]
            for r in answer["records"]]
    lines = [text_table(["seq", "at", "actor", "origin", "action", "job", "run"], rows)
             if rows else "no audit records"]
    check = answer.get("verify")
    if check is not None:
        if check["ok"]:
            lines.append(f"verified: {check['records']} records, the hash chain is intact")
        else:
            lines.append(f"BROKEN at record {check['first_bad']}: {check['problem']}")
    return "\n".join(lines)
