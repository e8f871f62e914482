"""``%cron`` and ``%%cron``: the scheduler from a notebook.

Load with ``%load_ext hermes_cron_ext``. Then::

    %cron                                     every job, as cards
    %cron add NAME "SCHEDULE" [options] -- COMMAND
    %cron add NAME --after JOB [options] -- COMMAND   runs only after JOB's runs
    %cron edit NAME [--schedule S | --no-schedule] [options] [-- COMMAND]
    %cron rm|pause|resume NAME...
    %cron run NAME [-p NAME=VALUE] [--watch]  run now (and show its live output)
    %cron run NAME --form                     a typed form of its parameters; Run runs it
    %cron runs NAME                           run history: table and duration chart
    %cron logs NAME|RUN [--tail BYTES]        a run's output, printed
    %cron watch NAME|RUN                      live output of the running (or last) run
    %cron status [NAME]                       tickers and store, or one job in detail
    %cron cancel NAME|RUN|BACKFILL            stop a running run, or a whole backfill
    %cron graph NAME                          the pipeline NAME is part of, live
    %cron backfills NAME                      its backfills (a running one as a bar)
    %cron backfill NAME --from DATE --to DATE [--max-parallel N] [--dry-run]
                                              run NAME once per past slot in that range
                                              (a progress bar with Cancel)
    %cron next "SCHEDULE" [--tz ZONE]         preview fire times
    %cron artifact NAME|RUN [PATH]            save a notebook run's executed notebook
    %cron connect [URL [TOKEN] | --local [DB]]
    %%cron NAME "SCHEDULE" [options] [--run]  the cell body becomes a python job

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

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display

from hermes_cron_ext import ops as cron_client
from hermes_cron_ext.domain.models import ACTIVE_STATUSES, parse_iso
from hermes_cron_ext.domain.options import add_options, fields_from_options, parameter_values
from hermes_cron_ext.errors import HermesCronError, NotFound

VERBS = ("add", "edit", "rm", "pause", "resume", "run", "runs", "logs", "watch", "status",
         "cancel", "backfill", "backfills", "graph", "next", "artifact", "connect", "help")
USAGE = __doc__.split("Load with ``%load_ext hermes_cron_ext``. Then::", 1)[1].split(
    "Bad input", 1)[0].rstrip()
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


def _job_options(p: argparse.ArgumentParser, kind: bool = True) -> None:
    """Every job option with a flag, from its one declaration (options.py); a ``%%cron``
    cell is the code, so it takes no --kind or --code."""
    add_options(p, exclude=() if kind else ("kind", "code"))


def _parsers() -> dict[str, _Parser]:
    out: dict[str, _Parser] = {}

    p = out["add"] = _Parser(prog="%cron add", usage='%cron add NAME "SCHEDULE" [options] -- '
                             "COMMAND")
    p.add_argument("name")
    p.add_argument("schedule", nargs="?")
    p.add_argument("--disabled", action="store_true")
    p.add_argument("--replace", action="store_true", help="change the job if it exists")
    _job_options(p)

    p = out["cell"] = _Parser(prog="%%cron", usage='%%cron NAME "SCHEDULE" [options] [--run]')
    p.add_argument("name")
    p.add_argument("schedule", nargs="?")
    p.add_argument("--disabled", action="store_true")
    p.add_argument("--run", action="store_true", help="also run it now")
    _job_options(p, kind=False)

    p = out["edit"] = _Parser(prog="%cron edit", usage="%cron edit NAME [options] [-- COMMAND]")
    p.add_argument("name")
    p.add_argument("--schedule")
    p.add_argument("--no-schedule", action="store_true",
                   help="no schedule of its own: it runs only after the jobs in --after")
    p.add_argument("--rename")
    p.add_argument("--enable", action="store_true")
    p.add_argument("--disable", action="store_true")
    _job_options(p)

    for verb in ("rm", "pause", "resume"):
        p = out[verb] = _Parser(prog=f"%cron {verb}", usage=f"%cron {verb} NAME...")
        p.add_argument("names", nargs="+")
    p = out["graph"] = _Parser(prog="%cron graph", usage="%cron graph NAME")
    p.add_argument("name")
    p = out["backfill"] = _Parser(prog="%cron backfill",
                                  usage="%cron backfill NAME --from DATE --to DATE "
                                        "[--max-parallel N] [--dry-run]")
    p.add_argument("name")
    p.add_argument("--from", dest="start", required=True)
    p.add_argument("--to", dest="end", required=True)
    p.add_argument("--max-parallel", type=int, default=1)
    p.add_argument("--dry-run", action="store_true")
    p = out["backfills"] = _Parser(prog="%cron backfills", usage="%cron backfills NAME")
    p.add_argument("name")
    p = out["run"] = _Parser(prog="%cron run",
                             usage="%cron run NAME [-p NAME=VALUE] [--watch] [--form]")
    p.add_argument("name")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE")
    p.add_argument("--watch", action="store_true", help="show the run's live output")
    p.add_argument("--form", action="store_true",
                   help="show a typed form of the job's parameters; its Run button runs it")
    p = out["runs"] = _Parser(prog="%cron runs", usage="%cron runs NAME [--limit N]")
    p.add_argument("name")
    p.add_argument("--limit", type=int, default=20)
    p = out["logs"] = _Parser(prog="%cron logs", usage="%cron logs NAME|RUN [--tail BYTES]")
    p.add_argument("ref")
    p.add_argument("--tail", type=int)
    for verb in ("watch", "cancel"):
        p = out[verb] = _Parser(prog=f"%cron {verb}", usage=f"%cron {verb} NAME|RUN")
        p.add_argument("ref")
    p = out["status"] = _Parser(prog="%cron status", usage="%cron status [NAME]")
    p.add_argument("name", nargs="?")
    p = out["next"] = _Parser(prog="%cron next", usage='%cron next "SCHEDULE" [--tz ZONE] '
                              "[--count N]")
    p.add_argument("schedule")
    p.add_argument("--tz")
    p.add_argument("--count", type=int, default=5)
    p = out["artifact"] = _Parser(prog="%cron artifact", usage="%cron artifact NAME|RUN [PATH]")
    p.add_argument("ref")
    p.add_argument("path", nargs="?")
    p = out["connect"] = _Parser(prog="%cron connect",
                                 usage="%cron connect [URL [TOKEN]] | --local [DB]")
    p.add_argument("url", nargs="?")
    p.add_argument("token", nargs="?")
    p.add_argument("--local", action="store_true", help="use a store file directly")
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


# -- text -------------------------------------------------------------------------------

def _local(ts: float | None, tz: str | None = None) -> str:
    from hermes_cron_ext.frontends.render import local_time

    return local_time(ts, tz)


def _when(job: dict) -> str:
    from hermes_cron_ext.frontends.render import next_fire_text

    return next_fire_text(job, time.time())


def _job_line(verb: str, job: dict) -> str:
    from hermes_cron_ext.frontends.render import describe_schedule, schedule_text

    if not job["schedule"]:  # it runs after its upstreams only
        return f"{verb} {job['name']}: {schedule_text(job)}; next run {_when(job)}"
    words = describe_schedule(job["schedule"], job["timezone"])
    return (f"{verb} {job['name']}: {job['schedule']} ({job['timezone']}), {words}; "
            f"next run {_when(job)}")


def _command_text(job: dict) -> str:
    if job.get("kind") == "python" and job.get("code"):
        lines = job["code"].strip().splitlines()
        return f"python code, {len(lines)} line{'s' if len(lines) != 1 else ''}: " + (
            lines[0][:60] if lines else "")
    command = job.get("command")
    return shlex.join(command) if isinstance(command, list) else str(command)


@magics_class
class CronMagics(Magics):
    """``%cron`` / ``%%cron``; see the module docstring."""

    def __init__(self, shell=None):
        super().__init__(shell)
        self.parsers = _parsers()

    @property
    def client(self) -> cron_client.CronClient:
        return cron_client.get_client()

    @line_cell_magic
    def cron(self, line: str = "", cell: str | None = None):
        """Schedule and watch jobs: ``%cron help`` lists the commands."""
        try:
            if cell is not None:
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
        if command is not None and verb not in ("add", "edit"):
            raise UsageError(f"%cron {verb} takes no '-- COMMAND'")
        if verb == "help":
            print("%cron commands:" + USAGE)
            return None
        if verb == "add" and command is None:
            raise UsageError("missing '--' before the command: "
                             '%cron add NAME "SCHEDULE" [options] -- COMMAND')
        args = self.parsers[verb].parse_args(rest)
        return getattr(self, f"do_{verb}")(args, command) if verb in ("add", "edit") else \
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
        self._save(args.name, data, args.replace)

    def _save(self, name: str, data: dict, replace: bool) -> dict:
        client = self.client
        exists = False
        if replace:
            try:
                client.job(name)
                exists = True
            except NotFound:
                pass
        if exists:
            changes = {k: v for k, v in data.items() if k != "name"}
            if data.get("kind") == "python" and "code" in data:
                changes["command"] = data.get("command")
            job = client.edit(name, changes)
            print(_job_line("updated", job))
        else:
            job = client.add(data)
            print(_job_line("added", job))
        if job.get("warning"):
            print(f"warning: {job['warning']}", file=sys.stderr)
        return job

    def do_edit(self, args, command: str | None) -> None:
        job = self.client.job(args.name)
        data = job_fields(args)
        if args.rename:
            data["name"] = args.rename
        if args.enable and args.disable:
            raise UsageError("give --enable or --disable, not both")
        if args.enable:
            data["enabled"] = True
        if args.disable:
            data["enabled"] = False
        if args.no_schedule:  # it runs after its upstreams only
            if data.get("schedule"):
                raise UsageError("give --schedule or --no-schedule, not both")
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
        print(_job_line("changed", self.client.edit(job["id"], data)))

    def do_rm(self, args) -> None:
        for name in args.names:
            self.client.remove(name)
            print(f"{name} removed")

    def do_pause(self, args) -> None:
        for name in args.names:
            job = self.client.pause(name)
            print(f"{job['name']} {job['state']}")

    def do_resume(self, args) -> None:
        for name in args.names:
            job = self.client.resume(name)
            print(f"{job['name']} {job['state']}; next run {_when(job)}")

    def do_run(self, args) -> None:
        if getattr(args, "form", False):  # the cell magic's --run gives no form
            if args.param:
                raise UsageError("give either -p values or --form, not both")
            from hermes_cron_ext.frontends.widgets import ParametersForm

            display(ParametersForm(args.name, client=self.client))
            return
        run = self.client.run_now(args.name, parameter_values(getattr(args, "param", None)) or None)
        print(f"run {run['id']} of {args.name} started")
        if args.watch:
            from hermes_cron_ext.frontends.widgets import LiveOutput

            display(LiveOutput(run["id"], client=self.client))

    def do_runs(self, args) -> None:
        if args.limit < 1 or args.limit > 500:
            raise UsageError("--limit must be between 1 and 500")
        from hermes_cron_ext.frontends.widgets import RunHistory

        display(RunHistory(args.name, client=self.client, page_size=args.limit))

    def do_logs(self, args) -> None:
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

    def do_graph(self, args) -> None:
        from hermes_cron_ext.frontends.widgets import PipelineGraph

        display(PipelineGraph(args.name, client=self.client))

    def do_backfill(self, args) -> None:
        b = self.client.backfill(args.name, args.start, args.end,
                                 max_parallel=args.max_parallel, dry_run=args.dry_run)
        if args.dry_run:
            print(f"{args.name}: {b['slots']} slot(s) would run, {b['max_parallel']} at a time: "
                  + ", ".join(b["next"][:5]) + (" ..." if b["slots"] > 5 else ""))
            return
        print(f"backfill {b['id']} of {args.name}: {b['slots']} slot(s), "
              f"{b['max_parallel']} at a time; stop it with %cron cancel {b['id']}")
        if b.get("warning"):
            print(f"warning: {b['warning']}")
        if b["slots"]:
            from hermes_cron_ext.frontends.widgets import BackfillProgress

            display(BackfillProgress(b, client=self.client))

    def do_backfills(self, args) -> None:
        """The job's backfills; a running one as its live progress bar."""
        from hermes_cron_ext.frontends.render import BACKFILL_COLUMNS, backfill_rows

        backfills = self.client.backfills(args.name)
        if not backfills:
            print(f"{args.name} has no backfills")
            return
        from hermes_cron_ext.frontends.widgets import BackfillProgress, text_table

        print(text_table(BACKFILL_COLUMNS, backfill_rows(backfills)))
        for b in backfills:
            if b["state"] == "running":
                display(BackfillProgress(b, client=self.client))

    def do_cancel(self, args) -> None:
        if args.ref.startswith("b_"):
            b = self.client.cancel_backfill(args.ref)
            print(f"backfill {b['id']}: {b['state']}")
            return
        run = self.client.resolve_run(args.ref)
        if run["status"] not in ACTIVE_STATUSES:
            raise UsageError(f"{args.ref} has no running run (its last run {run['id']} "
                             f"{run['status']})")
        run = self.client.cancel(run["id"])
        print(f"run {run['id']}: cancel requested")

    def do_status(self, args) -> None:
        client = self.client
        if args.name:
            return self._job_status(args.name)
        status = client.status()
        print(f"connected  {client.where}")
        if client.kind == "server":
            print(f"store      {status.get('store')}")
        jobs = ", ".join(f"{n} {s}" for s, n in sorted(status.get("jobs_by_state", {}).items()))
        print(f"jobs       {jobs or 'none'}")
        alive = [t for t in status.get("tickers", []) if t.get("alive")]
        for t in alive:
            print(f"ticker     {t['kind']} on {t['host']} (pid {t['pid']}), "
                  f"last heartbeat {t['heartbeat_at']}")
        if status.get("warning"):
            print(f"warning: {status['warning']}", file=sys.stderr)

    def _job_status(self, name: str) -> None:
        from hermes_cron_ext.frontends.render import (
            after_text,
            describe_schedule,
            format_duration,
        )

        job = self.client.job(name)
        state = job["state"] + (f": {job['state_reason']}" if job.get("state_reason") else "")
        print(f"{job['name']} ({job['id']}) {state}")
        if job["schedule"]:
            print(f"  schedule  {job['schedule']} [{job['timezone']}]  "
                  f"{describe_schedule(job['schedule'], job['timezone'])}")
        else:
            print("  schedule  none of its own")
        if job.get("after"):
            print(f"  runs      {after_text(job)}")
            me = next((n for n in self.client.pipeline(job["id"])["nodes"]
                       if n["id"] == job["id"]), {})
            if me.get("note"):
                print(f"            {me['note']}")
        print(f"  next run  {_when(job)}")
        last = job.get("last_run")
        if last:
            code = "" if last.get("exit_code") is None else f" · exit {last['exit_code']}"
            print(f"  last run  {last['status']}{code} · "
                  f"{format_duration(last.get('duration'))} · {last.get('started_at') or '-'}")
        else:
            print("  last run  none yet")
        print(f"  {job['kind']:<8}  {_command_text(job)}")
        p = job.get("policy") or {}
        print(f"  policy    overlap={p.get('overlap')} misfire={p.get('misfire')} "
              f"retries={p.get('retries')} timeout={p.get('timeout') or '-'} "
              f"max_failures={p.get('max_failures')}")

    def do_next(self, args) -> None:
        if not 1 <= args.count <= 100:
            raise UsageError("--count must be between 1 and 100")
        preview = self.client.preview(args.schedule, args.tz, args.count)
        print(f"{preview['schedule']} [{preview['timezone']}]: {preview['description']}")
        for t in preview["next"]:
            print(f"  {_local(parse_iso(t), preview['timezone'])}")
        if not preview["next"]:
            print("  (never fires again)")

    def do_artifact(self, args) -> None:
        run = self.client.resolve_run(args.ref)
        data = self.client.artifact(run["id"])
        path = args.path or f"{run.get('job_name') or 'run'}-{run['id']}.ipynb"
        with open(path, "wb") as f:
            f.write(data)
        print(f"saved the executed notebook of run {run['id']} to {path}")

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
        self._save(args.name, data, replace=True)
        if args.run:
            self.do_run(argparse.Namespace(name=args.name, watch=True))


def load_ipython_extension(ipython) -> None:
    ipython.register_magics(CronMagics)
