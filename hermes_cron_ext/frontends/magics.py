"""``%cron`` and ``%%cron``: the scheduler from a notebook.

Load with ``%load_ext hermes_cron_ext``. Then ``%cron help`` lists the commands:
those the CLI has too, from their one declaration (:mod:`.commands`), and the
magics' own::

    %cron                                     every job, as cards
    %cron add NAME "SCHEDULE" [options] -- COMMAND
    %cron run NAME [-p NAME=VALUE] [--watch]  run now (and show its live output)
    %cron run NAME --form                     a typed form of its parameters; Run runs it
    %cron watch NAME|RUN                      live output of the running (or last) run
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
from hermes_cron_ext.domain.options import fields_from_options, parameter_values
from hermes_cron_ext.errors import HermesCronError, NotFound
from hermes_cron_ext.frontends.commands import (
    COMMANDS,
    Arg,
    Command,
    add_arguments,
    arg,
    artifact_path,
    check,
    help_text,
    run_to_cancel,
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
        run = self.client.cancel(run_to_cancel(self.client, args.ref)["id"])
        print(f"run {run['id']}: cancel requested")

    def do_list(self, args) -> None:
        from hermes_cron_ext.frontends.render import jobs_table

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
        preview = self.client.preview(args.schedule, args.tz, args.count, start=args.start)
        print(f"{preview['schedule']} [{preview['timezone']}]: {preview['description']}")
        for t in preview["next"]:
            print(f"  {_local(parse_iso(t), preview['timezone'])}")
        if not preview["next"]:
            print("  (never fires again)")

    def do_artifact(self, args) -> None:
        run = self.client.resolve_run(args.ref)
        data = self.client.artifact(run["id"])
        path = artifact_path(run, args.path)
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
            self.do_run(argparse.Namespace(name=args.name, param=None, follow=True,
                                           form=False))


def usage() -> str:
    """``%cron help``: every command, the shared ones from their one declaration."""
    return "%cron commands:\n" + help_text("%cron", [
        OWN_COMMANDS[""], *COMMANDS.values(), *(c for n, c in OWN_COMMANDS.items() if n)]) + (
        "\n" + help_text("%%cron", [CELL]))


def load_ipython_extension(ipython) -> None:
    ipython.register_magics(CronMagics)
