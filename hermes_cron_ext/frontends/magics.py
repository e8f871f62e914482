"""``%cron`` and ``%%cron``: the scheduler from a notebook.

Load with ``%load_ext hermes_cron_ext``. Then ``%cron help`` lists the commands:
those the CLI has too, from their one declaration (:mod:`.commands`), and the
magics' own::

    %cron                                     every job, as cards
    %cron add NAME "SCHEDULE" [options] -- COMMAND
    %cron run NAME [-p NAME=VALUE] [--watch]  run now (and show its live output)
    %cron run NAME --form                     a typed form of its parameters; Run runs it
    %cron watch NAME|RUN                      live output of the running (or last) run
    %cron timeline [--since 24h] [--until 6h] every job's runs on one time axis
    %cron search TEXT [--job NAME]            runs whose output matches, with the lines
    %cron calendar NAME                       a job's last 90 days as a heatmap
    %cron diff RUN_A RUN_B                    two runs compared
    %cron connect [URL [TOKEN] | --local [DB]]
    %%cron NAME "SCHEDULE" [options] [--run]  the cell body becomes a python job
    %%cron apply [--dry-run] [--prune]        the cell body is a definitions file

Bad input (a bad schedule, an unknown job, a missing ``--``, an unknown verb)
is one line, IPython's ``UsageError``, never a traceback. The magics are clients
of :mod:`hermes_cron_ext.ops`: the kernel's Jupyter server when it runs the
extension, else the local store.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display

from hermes_cron_ext import ops as cron_client
from hermes_cron_ext.domain.models import ACTIVE_STATUSES
from hermes_cron_ext.domain.options import fields_from_options, parameter_values
from hermes_cron_ext.errors import HermesCronError, NotFound
from hermes_cron_ext.frontends.commands import (
    COMMANDS,
    Arg,
    Command,
    add_arguments,
    arg,
    audit_text,
    check,
    help_text,
    plan_text,
    read_definitions,
    replace_job,
    revision_text,
    revisions_text,
    run_to_cancel,
    save_artifact,
)
from hermes_cron_ext.frontends.notifications import notifications_html, notifications_text
from hermes_cron_ext.frontends.render import (
    BACKFILL_COLUMNS,
    backfill_head,
    backfill_line,
    backfill_plan_text,
    backfill_rows,
    job_text,
    jobs_table,
    metrics_html,
    metrics_text,
    no_backfills_text,
    preview_text,
    saved_text,
    state_line,
    status_text,
    text_table,
)

#: what the magics add to the shared commands of frontends/commands.py: their own options
OWN: dict[str, tuple[Arg, ...]] = {
    "run": (arg("--form", action="store_true",
                help="show a typed form of the job's parameters; its Run button runs it"),),
}
#: the magics' own commands (and ``%cron`` alone; ``%%cron`` is the cell magic)
OWN_COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("", "", "every job, as cards"),
    Command("watch", "NAME|RUN", "live output of the running (or last) run",
            (arg("ref", metavar="NAME|RUN"),)),
    Command("connect", "[URL [TOKEN] | --local [DB]]",
            "use this Jupyter server, or a store file directly", (
                arg("url", nargs="?"), arg("token", nargs="?"),
                arg("--local", action="store_true", help="use a store file directly"))),
    Command("help", "", "these commands"),
)}

CELL = Command("", 'NAME "SCHEDULE" [options] [--run]', "the cell body becomes a python job")
CELL_APPLY = Command("apply", "[--dry-run] [--prune] [--source NAME]",
                     "the cell body is a definitions file: apply it (the plan is printed)")
VERBS = (*COMMANDS, *(name for name in OWN_COMMANDS if name))
_DASHES = re.compile(r"(?<!\S)--(?!\S)")


class _HelpShown(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports in one line and never exits the kernel."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status=0, message=None):
        if message:
            print(message, file=sys.stderr)
        raise _HelpShown()


def split_command(line: str) -> tuple[str, str | None]:
    """``(options, command)`` around the first ``--`` that is not inside quotes."""
    for m in _DASHES.finditer(line):
        head = line[:m.start()]
        try:
            shlex.split(head)
        except ValueError:  # the "--" sits inside a quoted string
            continue
        return head, line[m.end():].strip()
    return line, None


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"cannot read the arguments: {exc}") from None


def _parsers() -> dict[str, _Parser]:
    """A parser per verb: the shared commands' from their one declaration, then the
    magics' own, and ``cell`` for ``%%cron`` (``add`` without --replace, --kind or --code:
    the cell is the code, and running it again changes the job)."""
    out: dict[str, _Parser] = {}
    for c in (*COMMANDS.values(), *OWN_COMMANDS.values()):
        if c.name:
            out[c.name] = _Parser(prog=f"%cron {c.name}", usage=f"%cron {c.name} {c.usage}")
            add_arguments(out[c.name], c, OWN.get(c.name, ()))
    out["cell"] = _Parser(prog="%%cron", usage=f"%%cron {CELL.usage}")
    add_arguments(out["cell"], COMMANDS["add"],
                  (arg("--run", action="store_true", help="also run it now"),),
                  leave_out=("replace", "kind", "code"))
    return out


def job_fields(args) -> dict:
    """The REST/``jobspec`` fields for the options given."""
    return fields_from_options(args)


def _command(kind: str | None, command: str) -> str | list[str]:
    if kind == "python":
        return _split(command)
    if kind == "notebook":
        path = _split(command)
        if len(path) != 1:
            raise UsageError("a notebook job takes one .ipynb path after '--' "
                             "(parameters go in -p NAME=VALUE)")
        return os.path.abspath(os.path.expanduser(path[0]))
    return command


class Rich:
    """A text and its HTML: a notebook shows the HTML, a terminal (or ``print``) the
    text (``%cron metrics``)."""

    def __init__(self, text: str, html: str):
        self.text, self.html = text, html

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        return self.html


@magics_class
class CronMagics(Magics):
    """``%cron`` / ``%%cron``; see the module docstring."""

    def __init__(self, shell=None):
        super().__init__(shell)
        self.parsers = _parsers()

    @property
    def client(self) -> cron_client.CronClient:
        """The kernel's client, acting from ``magics`` (what revisions record)."""
        return cron_client.as_origin(cron_client.get_client(), "magics")

    @line_cell_magic
    def cron(self, line: str = "", cell: str | None = None):
        """Schedule and watch jobs: ``%cron help`` lists the commands."""
        try:
            if cell is not None and _split(line)[:1] == ["apply"]:
                self.cell_apply(line, cell)
            elif cell is not None:
                self.cell_job(line, cell)
            else:
                self.dispatch(line)
        except _HelpShown:
            pass
        except cron_client.ConnectionFailed as exc:
            cron_client.set_client(None)  # the next %cron looks for the server again
            raise UsageError(f"{exc.message} (%cron connect to choose another)") from None
        except HermesCronError as exc:
            raise UsageError(exc.message) from None
        except TimeoutError as exc:
            raise UsageError(str(exc)) from None
        except ImportError as exc:
            raise UsageError(f"{exc}") from None

    # -- dispatch ---------------------------------------------------------------------------
    def dispatch(self, line: str) -> None:
        head, command = split_command(line)
        words = _split(head)
        if not words:
            if command is not None:
                raise UsageError('missing the verb: %cron add NAME "SCHEDULE" -- COMMAND')
            return self.show_cards()
        verb, rest = words[0], words[1:]
        if verb in ("-h", "--help"):
            verb = "help"
        if verb not in VERBS:
            raise UsageError(f"unknown command {verb!r}: use one of {', '.join(VERBS)} "
                             "(%cron help)")
        shared = COMMANDS.get(verb)
        takes_command = shared is not None and shared.takes_command
        if command is not None and not takes_command:
            raise UsageError(f"%cron {verb} takes no '-- COMMAND'")
        if verb == "help":
            print(usage())
            return None
        if verb == "add" and command is None:
            raise UsageError("missing '--' before the command: "
                             '%cron add NAME "SCHEDULE" [options] -- COMMAND')
        args = self.parsers[verb].parse_args(rest)
        if shared is not None:
            check(shared, args)  # ranges, options that exclude each other (every front)
        return getattr(self, f"do_{verb}")(args, command) if takes_command else \
            getattr(self, f"do_{verb}")(args)

    # -- verbs --------------------------------------------------------------------------------
    def show_cards(self) -> None:
        jobs = self.client.jobs()
        if not jobs:
            print(f'no jobs yet ({self.client.where}); add one with: '
                  '%cron add NAME "SCHEDULE" -- COMMAND')
            return
        from hermes_cron_ext.frontends.widgets import job_cards

        display(job_cards(self.client))

    def do_add(self, args, command: str | None) -> None:
        if command is None:
            raise UsageError("missing '--' before the command: "
                             '%cron add NAME "SCHEDULE" [options] -- COMMAND')
        if not command:
            raise UsageError("give the command after '--': "
                             '%cron add NAME "SCHEDULE" -- python etl.py')
        if not args.schedule and not args.at and not args.after:
            raise UsageError('missing the schedule: %cron add NAME "SCHEDULE" -- COMMAND '
                             '(a cron expression, @daily, "@every 30s", or --at TIME; or '
                             '--after JOB for a job that runs only after others)')
        data = job_fields(args)
        data["name"] = args.name
        data["command"] = _command(args.kind, command)
        data.setdefault("cwd", os.getcwd())
        data.setdefault("interpreter", sys.executable)  # this kernel's env, first on PATH
        if args.disabled:
            data["enabled"] = False
        self._save(data, args.replace)

    def _save(self, data: dict, replace: bool) -> dict:
        job = replace_job(self.client, data) if replace else None
        if job is not None:  # the job of that name took these fields
            print(saved_text("updated", job, time.time()))
        else:
            job = self.client.add(data)
            print(saved_text("added", job, time.time()))
        if job.get("warning"):
            print(f"warning: {job['warning']}", file=sys.stderr)
        return job

    def do_edit(self, args, command: str | None) -> None:
        job = self.client.job(args.name)
        data = job_fields(args)  # the schedule given once: commands.check
        if args.rename:
            data["name"] = args.rename
        if args.enable:
            data["enabled"] = True
        if args.disable:  # not both: commands.check
            data["enabled"] = False
        if args.no_schedule:  # it runs after its upstreams only
            data["schedule"] = None
        if command is not None:
            if not command:
                raise UsageError("give the new command after '--'")
            kind = data.get("kind") or job["kind"]
            data["command"] = _command(kind, command)
            if kind == "python":
                data["code"] = None
        if not data:
            raise UsageError("nothing to change: give options such as --schedule, or "
                             "-- COMMAND")
        job = self.client.edit(job["id"], data)
        print(saved_text("changed", job, time.time()))
        if job.get("warning"):  # a job a definitions file manages
            print(f"warning: {job['warning']}", file=sys.stderr)

    def do_rm(self, args) -> None:
        for name in args.names:
            self.client.remove(name)
            print(f"{name} removed")

    def do_pause(self, args) -> None:
        for name in args.names:
            print(state_line(self.client.pause(name), time.time()))

    def do_resume(self, args) -> None:
        for name in args.names:
            print(state_line(self.client.resume(name), time.time()))

    def do_run(self, args) -> None:
        if args.form:
            if args.param:
                raise UsageError("give either -p values or --form, not both")
            from hermes_cron_ext.frontends.widgets import ParametersForm

            display(ParametersForm(args.name, client=self.client))
            return
        run = self.client.run_now(args.name, parameter_values(args.param) or None)
        print(f"run {run['id']} of {args.name} started")
        if args.follow:
            from hermes_cron_ext.frontends.widgets import LiveOutput

            display(LiveOutput(run["id"], client=self.client))

    def do_runs(self, args) -> None:
        from hermes_cron_ext.frontends.widgets import RunHistory

        display(RunHistory(args.name, client=self.client, page_size=args.limit,
                           status=args.status))

    def do_logs(self, args) -> None:
        if args.follow:  # followed live: the live output widget
            return self.do_watch(args)
        run = self.client.resolve_run(args.ref)
        text = self.client.text(run["id"], tail=args.tail)
        sys.stdout.write(text if not text or text.endswith("\n") else text + "\n")
        if run["status"] in ACTIVE_STATUSES:
            print(f"(run {run['id']} is still {run['status']}: %cron watch "
                  f"{run.get('job_name') or args.ref} follows it)", file=sys.stderr)

    def do_watch(self, args) -> None:
        from hermes_cron_ext.frontends.widgets import LiveOutput

        if args.ref.startswith("r_"):
            try:
                display(LiveOutput(args.ref, client=self.client))
                return
            except NotFound as no_run:
                try:  # a job may be named like a run id; if none is, say "no run"
                    self.client.job(args.ref)
                except NotFound:
                    raise no_run from None
        display(LiveOutput.for_job(args.ref, client=self.client))

    def do_metrics(self, args) -> None:
        answer = self.client.metrics(args.name, args.metric, args.limit)
        display(Rich(metrics_text(answer), metrics_html(answer)))

    def do_notifications(self, args) -> None:
        answer = self.client.notifications(args.name, status=args.status, limit=args.limit)
        display(Rich(notifications_text(answer), notifications_html(answer)))

    # -- across runs (issue 34) ------------------------------------------------------------
    def do_timeline(self, args) -> None:
        from hermes_cron_ext.frontends.widgets import Timeline

        display(Timeline(self.client, since=args.since, until=args.until, job=args.job,
                         status=args.status))

    def do_search(self, args) -> None:
        from hermes_cron_ext.frontends.widgets import SearchResults

        display(SearchResults(args.q, client=self.client, job=args.job, since=args.since,
                              status=args.status, limit=args.limit, cursor=args.cursor))

    def do_calendar(self, args) -> None:
        from hermes_cron_ext.frontends.widgets import CalendarView

        display(CalendarView(args.name, client=self.client, days=args.days))

    def do_diff(self, args) -> None:
        from hermes_cron_ext.frontends.widgets import RunDiff

        # a job's name means its latest run, as hermes-cron diff says
        a, b = (self.client.resolve_run(ref)["id"] for ref in (args.run_a, args.run_b))
        display(RunDiff(a, b, client=self.client))

    def do_graph(self, args) -> None:
        from hermes_cron_ext.frontends.widgets import PipelineGraph

        display(PipelineGraph(args.name, client=self.client))

    def do_backfill(self, args) -> None:
        b = self.client.backfill(args.name, args.start, args.end,
                                 max_parallel=args.max_parallel, dry_run=args.dry_run)
        if args.dry_run:
            print(backfill_plan_text(args.name, b))
            return
        print(f"{backfill_head(b, args.name)}; cancel it with: %cron cancel {b['id']}")
        if b.get("warning"):
            print(f"warning: {b['warning']}")
        if b["slots"]:
            from hermes_cron_ext.frontends.widgets import BackfillProgress

            display(BackfillProgress(b, client=self.client))

    def do_backfills(self, args) -> None:
        """The job's backfills; a running one as its live progress bar."""
        backfills = self.client.backfills(args.name)
        if not backfills:
            print(no_backfills_text(args.name, "%cron"))
            return
        from hermes_cron_ext.frontends.widgets import BackfillProgress

        print(text_table(BACKFILL_COLUMNS, backfill_rows(backfills)))
        for b in backfills:
            if b["state"] == "running":
                display(BackfillProgress(b, client=self.client))

    def do_cancel(self, args) -> None:
        if args.ref.startswith("b_"):
            print(backfill_line(self.client.cancel_backfill(args.ref), cancelling=True))
            return
        run = self.client.cancel(run_to_cancel(self.client, args.ref)["id"])
        print(f"run {run['id']}: cancel requested")

    def do_list(self, args) -> None:
        jobs = self.client.jobs(state=args.state, search=args.search)
        if not jobs:
            print(f'no jobs ({self.client.where}); add one with: '
                  '%cron add NAME "SCHEDULE" -- COMMAND')
            return
        print(jobs_table(jobs, time.time()))

    def do_show(self, args) -> None:
        self._job_status(args.name)

    def do_status(self, args) -> None:
        client = self.client
        if args.name:  # one job, as show
            return self._job_status(args.name)
        status = client.status()
        print(f"connected  {client.where}")
        print(status_text(status, time.time()))
        if status.get("warning"):
            print(f"warning: {status['warning']}", file=sys.stderr)

    def _job_status(self, name: str) -> None:
        """One job in detail, as ``hermes-cron show`` prints it."""
        job = self.client.job(name)
        runs = self.client.runs(job["id"], limit=5)["runs"]
        note = None
        if job.get("after"):  # why its upstreams' runs may not trigger it
            me: dict[str, Any] = next((n for n in self.client.pipeline(job["id"])["nodes"]
                       if n["id"] == job["id"]), {})
            note = me.get("note")
        print(job_text(job, runs, note, time.time()))

    def do_next(self, args) -> None:
        preview = self.client.preview(args.schedule, args.tz, args.count, start=args.start)
        print(preview_text(preview))

    def do_artifact(self, args) -> None:
        print(save_artifact(self.client, args.ref, args.path))

    def do_export(self, args) -> None:
        print(self.client.export(args.names or None), end="")

    def do_apply(self, args) -> None:
        text, source = read_definitions(args.file, args.source)
        print(plan_text(self.client.apply(text, source=source, dry_run=args.dry_run,
                                          prune=args.prune)))

    def do_revisions(self, args) -> None:
        if args.rev is not None:
            print(revision_text(self.client.revision(args.name, args.rev)))
            return
        page = self.client.revisions(args.name, limit=args.limit)
        print(revisions_text(page))

    def do_revert(self, args) -> None:
        job = self.client.revert(args.name, args.rev)
        print(saved_text(f"reverted to revision {args.rev}", job, time.time()))
        if job.get("warning"):
            print(f"warning: {job['warning']}", file=sys.stderr)

    def do_audit(self, args) -> None:
        print(audit_text(self.client.audit(args.since, args.job, args.limit,
                                           verify=args.verify)))

    def do_connect(self, args) -> None:
        if args.local:
            client = cron_client.connect(local=True, db=args.url or None)
        elif args.url:
            client = cron_client.connect(args.url, args.token)
        else:
            client = cron_client.connect()
        print(f"hermes-cron: using {client.where}")

    # -- %%cron ---------------------------------------------------------------------------------
    def cell_job(self, line: str, cell: str) -> None:
        head, command = split_command(line)
        if command is not None:
            raise UsageError("%%cron takes no '-- COMMAND': the cell body is the job")
        args = self.parsers["cell"].parse_args(_split(head))
        if not args.schedule and not args.at and not args.after:
            raise UsageError('missing the schedule: %%cron NAME "SCHEDULE" [options] (or '
                             '--after JOB for a job that runs only after others)')
        if not cell.strip():
            raise UsageError("the cell is empty: its body is the code the job runs")
        try:
            compile(cell, f"<%%cron {args.name}>", "exec")
        except SyntaxError as exc:
            raise UsageError(f"the cell does not compile: line {exc.lineno}: {exc.msg}") \
                from None
        data = job_fields(args)
        data.update({"name": args.name, "kind": "python", "code": cell})
        data.setdefault("cwd", os.getcwd())
        data.setdefault("interpreter", sys.executable)
        if args.disabled:
            data["enabled"] = False
        self._save(data, replace=True)
        if args.run:
            self.do_run(argparse.Namespace(name=args.name, param=None, follow=True,
                                           form=False))


    def cell_apply(self, line: str, cell: str) -> None:
        """``%%cron apply [--dry-run] [--prune] [--source NAME]``: the cell is the file."""
        args = self.parsers["apply"].parse_args(["-", *_split(line)[1:]])
        plan = self.client.apply(cell, source=args.source or "notebook", dry_run=args.dry_run,
                                 prune=args.prune)
        print(plan_text(plan))


def usage() -> str:
    """``%cron help``: every command, the shared ones from their one declaration."""
    return "%cron commands:\n" + help_text("%cron", [
        OWN_COMMANDS[""], *COMMANDS.values(), *(c for n, c in OWN_COMMANDS.items() if n)]) + (
        "\n" + help_text("%%cron", [CELL, CELL_APPLY]))


def load_ipython_extension(ipython) -> None:
    ipython.register_magics(CronMagics)
