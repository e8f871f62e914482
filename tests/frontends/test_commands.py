"""One grammar for the command fronts: ``hermes-cron`` and ``%cron`` take the shared
commands' arguments from frontends/commands.py, each adding only what it declares as
its own, and read the same line alike."""

from __future__ import annotations

import argparse
import re
import shlex

import pytest

from hermes_cron_ext.frontends import cli, magics
from hermes_cron_ext.frontends.commands import COMMANDS, UsageError, check
from tests.frontends.test_magics import Cell
from tests.frontends.test_magics import ip as ip  # noqa: F401 - fixtures

pytest_plugins = ("tests.notebook_fixtures",)


def cli_parsers() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in cli.build_parser()._actions
               if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def signature(parser: argparse.ArgumentParser) -> dict[str, tuple]:
    """Each argument by its flags (or a positional's dest): what it takes and gives."""
    out = {}
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        key = "/".join(a.option_strings) or a.dest
        out[key] = (a.dest, type(a).__name__, a.nargs, a.required, a.default, a.const,
                    getattr(a.type, "__name__", a.type), tuple(a.choices or ()), a.metavar)
    return out


def own_signature(own) -> dict[str, tuple]:
    parser = argparse.ArgumentParser(add_help=False)
    for a in own:
        parser.add_argument(*a.flags, **a.options)
    return signature(parser)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_both_fronts_take_the_same_arguments_for_a_shared_command(name):
    front_cli, front_magics = cli_parsers()[name], magics._parsers()[name]
    cli_own = own_signature(cli.OWN.get(name, ()))
    magics_own = own_signature(magics.OWN.get(name, ()))
    cli_args, magics_args = signature(front_cli), signature(front_magics)
    # each front's extras are exactly what it declares as its own...
    assert {k: v for k, v in cli_args.items() if k not in magics_args} == cli_own
    assert {k: v for k, v in magics_args.items() if k not in cli_args} == magics_own
    # ...an option both fronts have comes from the table, not from each front
    assert not set(cli_own) & set(magics_own)
    shared = {k: v for k, v in cli_args.items() if k not in cli_own}
    assert shared == {k: v for k, v in magics_args.items() if k not in magics_own}
    assert shared, f"{name}: no arguments at all?"


def test_every_shared_command_is_a_command_of_both_fronts_and_nothing_else_is():
    cli_only = set(cli_parsers()) - set(COMMANDS)
    magics_only = set(magics.VERBS) - set(COMMANDS)
    assert cli_only == {"daemon", "tick", "migrate", "doctor", "gc", "hub-service"}
    assert magics_only == {name for name in magics.OWN_COMMANDS if name} == {
        "watch", "connect", "help"}
    assert set(COMMANDS) <= set(magics.VERBS) and set(COMMANDS) <= set(cli_parsers())
    assert set(cli.HANDLERS) == set(COMMANDS)
    assert all(hasattr(magics.CronMagics, f"do_{name}") for name in magics.VERBS
               if name != "help")


LINES = [
    'add etl "0 2 * * *" --tz UTC --replace --after extract:failure --timeout 5m -p n=1',
    "add etl --after extract --disabled --kind python",
    'edit etl "0 3 * * *" --enable --retries 2',
    "edit etl --no-schedule --rename etl2 --disable",
    "list --state paused --search et",
    "show etl",
    "rm a b",
    "pause a",
    "resume a b",
    "run etl -p n=3 -p day=\"2026-01-01\" --watch",
    "run etl -f",
    "runs",
    "runs etl --limit 5 --status failed",
    "logs r_0123456789abcdef -f --tail 100",
    "cancel b_0123456789abcdef",
    "backfill etl --from 2026-11-01 --to 2026-11-03 --max-parallel 2 --dry-run",
    "backfills etl",
    "graph etl",
    'next "0 9 * * mon" --tz Asia/Kolkata --from 2026-01-01T00:00:00Z --count 3',
    "status",
    "status etl",
    "artifact etl out.ipynb",
]


@pytest.mark.parametrize("line", LINES)
def test_the_fronts_read_a_line_alike(line):
    words = shlex.split(line)
    name = words[0]
    by_cli = cli.build_parser().parse_args(words)
    by_magics = magics._parsers()[name].parse_args(words[1:])
    for args in (by_cli, by_magics):
        check(COMMANDS[name], args)
    own = {a.dest for a in (*cli.OWN.get(name, ()), *magics.OWN.get(name, ()))}
    shared = {k: v for k, v in vars(by_magics).items() if k not in own}
    assert shared == {k: v for k, v in vars(by_cli).items() if k in shared}
    assert len(shared) >= 1


@pytest.mark.parametrize("line, message", [
    ('next "@daily" --count 0', "--count must be between 1 and 100, not 0"),
    ('next "@daily" --count 101', "--count must be between 1 and 100, not 101"),
    ("runs etl --limit 0", "--limit must be between 1 and 500, not 0"),
    ("edit etl --enable --disable", "give --enable or --disable, not both"),
    ('edit etl "@daily" --schedule "@hourly"', "give the schedule once: as SCHEDULE or "
                                               "--schedule"),
    ('edit etl --schedule "@daily" --no-schedule', "give a schedule or --no-schedule, "
                                                   "not both"),
])
def test_both_fronts_refuse_alike(line, message, ip, capsys):  # noqa: F811
    words = shlex.split(line)
    with pytest.raises(UsageError) as refused:
        check(COMMANDS[words[0]], cli.build_parser().parse_args(words))
    assert refused.value.message == message
    # the CLI: one line, exit 2, before it opens a store
    assert cli.main(["--db", "/nonexistent/dir/cron.db", *words]) == 2
    assert capsys.readouterr().err == f"hermes-cron: {message}\n"
    # the magics: one line, the same words
    assert Cell(ip, capsys).fails(f"%cron {line}", message) == f"UsageError: {message}"


def test_help_lists_every_command_of_the_front(ip, capsys):  # noqa: F811
    text = Cell(ip, capsys).ok("%cron help")
    for c in COMMANDS.values():
        assert f"%cron {c.name} {c.usage}" in text and c.help.split()[0] in text
    for name in ("watch", "connect", "help"):
        assert f"%cron {name}" in text
    assert '%%cron NAME "SCHEDULE" [options] [--run]' in text
    listed = cli.build_parser().format_help()
    for c in COMMANDS.values():
        assert f"    {c.name} " in listed or f"    {c.name}\n" in listed
    assert "hermes-cron add " + COMMANDS["add"].usage in cli_parsers()["add"].format_usage()


def _same(text: str) -> str:
    """Text with what moves between two reads (countdowns, ages) made equal."""
    text = re.sub(r"in (\d+[dhms] ?)+|due now", "in T", text)
    text = re.sub(r"\d+(\.\d)? (s|min|h|days) ago", "T ago", text)
    return re.sub(r" +", " ", text)


def test_the_fronts_print_the_same_text(cli, ip, capsys):  # noqa: F811
    """One place for text: hermes-cron and %cron print a job, the job list, runs, fire
    times and backfills alike, on the same store."""
    cell = Cell(ip, capsys)
    cli("add", "etl", "0 2 * * *", "--tz", "Europe/Berlin", "--", "echo hi; exit 3")
    cli("add", "after", "--after", "etl:failure", "--disabled", "--", "true")
    cli("run", "etl", "-f", check=False)
    backfill = cli.json("backfill", "etl", "--from", "2026-11-01", "--to", "2026-11-03",
                        "--no-wait")
    cli("cancel", backfill["id"])
    for line in ("show etl", "status after", "list", "runs etl", "backfills etl",
                 'next "0 9 * * *" --tz Asia/Kolkata --from 2026-01-01T00:00:00Z',
                 'next "@yearly" --count 1', "graph etl"):
        by_cli = cli(*shlex.split(line)).stdout
        by_magics = cell.ok(f"%cron {line}")
        if line.startswith(("runs", "graph")):  # a widget: its heading, then its text
            by_magics = by_magics.split("\n", 1)[1] if line.startswith("runs") else by_magics
        assert _same(by_magics) == _same(by_cli), line
    assert "exit 3" in cell.ok("%cron show etl")  # the last run's end, said alike
