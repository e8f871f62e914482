"""The CLI page's promises (docs/cli.md), each run as a user would: the real
``hermes-cron``."""

from __future__ import annotations

import json
import os
import pathlib
import pty
import re
import select
import signal
import sys
import time

import pytest

from hermes_cron_ext.domain.notifications import mask_url
from hermes_cron_ext.domain.options import BY_NAME, OPTIONS, POLICY_FIELDS
from tests.conftest import CLI, docs_cli_lines, paste_docs_line, wait_for

CLI_PAGE = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()


@pytest.fixture
def cli(tmp_path):
    return CLI(str(tmp_path / "store" / "cron.db"), str(tmp_path))


#: an Apprise destination with no host to look up (Slack's fixed address): nothing sent
SLACK = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"


def test_every_policy_has_an_option_of_the_same_name_on_every_front(cli):
    assert {o.name for o in OPTIONS if o.policy and o.flag} == POLICY_FIELDS
    values = {"timeout": "5m", "kill_grace": "3s", "retries": "2", "retry_delay": "7s",
              "retry_max_delay": "1m", "retry_on_timeout": "true", "overlap": "queue",
              "misfire": "all", "starting_deadline": "2m", "max_failures": "9",
              "jitter": "1s", "notify_url": "https://example.org/hook",
              "ping_url": "https://hc.example.org/x", "keep_runs": "7", "keep_failures": "3",
              "max_output": "500k", "alerts": "rows < 1000", "notify": SLACK,
              "notify_on": "failure,late", "late_after": "30m"}
    assert set(values) == POLICY_FIELDS
    # the same name, or its singular for a repeatable one (--alert RULE)
    flags = {k: BY_NAME[k].flag for k in values}
    assert all(f in ("--" + k.replace("_", "-"), "--" + k[:-1]) for k, f in flags.items())
    options = [a for k, v in values.items() for a in (flags[k], v)]
    cli("add", "all", "@daily", *options, "--", "true")
    policy = cli.json("show", "all")["policy"]
    assert policy == {"timeout": 300.0, "kill_grace": 3.0, "retries": 2, "retry_delay": 7.0,
                      "retry_max_delay": 60.0, "retry_on_timeout": True, "overlap": "queue",
                      "misfire": "all", "starting_deadline": 120.0, "max_failures": 9,
                      "jitter": 1.0, "notify_url": "https://example.org/hook",
                      "ping_url": "https://hc.example.org/x", "keep_runs": 7,
                      "keep_failures": 3, "max_output": 512000, "alerts": ["rows < 1000"],
                      "notify": [mask_url(SLACK)], "notify_on": ["failure", "late"],
                      "late_after": 1800.0}
    cli("edit", "all", "--kill-grace", "9s", "--keep-runs", "70", "--retry-on-timeout", "false")
    policy = cli.json("show", "all")["policy"]
    assert (policy["kill_grace"], policy["keep_runs"], policy["retry_on_timeout"]) == (
        9.0, 70, False)
    # the magics derive theirs from the same declaration
    from hermes_cron_ext.frontends.magics import _parsers

    parsed = _parsers()["add"].parse_args(["x", "@daily", *options])
    assert all(getattr(parsed, k) == (v if k not in ("alerts", "notify") else [v])
               for k, v in values.items())


def test_edit_takes_the_schedule_as_a_positional_argument(cli):
    cli("add", "etl", "0 2 * * *", "--", "true")
    cli("edit", "etl", "0 3 * * *")
    assert cli.json("show", "etl")["schedule"] == "0 3 * * *"
    twice = cli("edit", "etl", "0 4 * * *", "--schedule", "0 5 * * *", check=False)
    assert twice.returncode == 2 and "give the schedule once" in twice.stderr


def test_read_commands_take_json_and_lists_have_one_shape(cli):
    cli("add", "a", "@yearly", "--", "echo hi")
    listed = cli.json("list")
    assert set(listed) == {"jobs", "cursor"} and listed["jobs"][0]["name"] == "a"
    cli("run", "a", "-f")
    runs = cli.json("runs", "a")
    assert set(runs) == {"runs", "cursor"} and runs["runs"][0]["status"] == "succeeded"
    logs = cli.json("logs", "a")
    assert logs["output"] == "hi\n" and logs["run"]["id"] == runs["runs"][0]["id"]
    assert cli.json("next", "@daily", "--count", "1")["next"]
    assert "tickers" in json.loads(cli("status", "--json", check=False).stdout)


def test_a_run_id_that_names_nothing_says_no_run(cli):
    cli("add", "a", "@yearly", "--", "true")
    out = cli("logs", "r_nonexistent", check=False)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == ["hermes-cron: error: no run 'r_nonexistent'"]


PROGRESS_JOB = ("sh", "-c", r'printf "\033[31mred\033[0m\n"; echo "::progress:: 1/2 half"; '
                r'echo plain; echo "::phase:: writing"; echo "::progress:: 2/2 done"')


def test_piped_output_has_no_markers_and_no_ansi_unless_asked(cli):
    cli("add", "p", "@yearly", "--", *PROGRESS_JOB)
    followed = cli("run", "p", "-f")
    assert followed.stdout == "red\nplain\n"
    assert cli("logs", "p").stdout == "red\nplain\n"
    assert cli("logs", "p", "--color").stdout == "\x1b[31mred\x1b[0m\nplain\n"


def test_on_a_terminal_progress_lines_become_a_bar(cli):
    cli("add", "p", "@yearly", "--", *PROGRESS_JOB)
    cli("run", "p", "-f")
    pid, fd = pty.fork()
    if pid == 0:  # the child: hermes-cron with a terminal on stdout and stderr
        os.chdir(cli.cwd)
        os.execve(sys.executable, [sys.executable, "-m", "hermes_cron_ext", "logs", "p"],
                  cli.env)
    out = b""
    deadline = time.time() + 30
    while time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert "::progress::" not in text and "::phase::" not in text
    assert "\r\x1b[K[##############################] 100% done" in text  # drawn, redrawable
    assert "\x1b[31mred\x1b[0m" in text  # colours kept on a terminal


def test_a_paused_job_shows_no_countdown(cli):
    cli("add", "a", "*/5 * * * *", "--", "true")
    assert re.search(r"\bin \d", cli("list").stdout)
    cli("pause", "a")
    row = cli("list").stdout.splitlines()[1].split()
    assert row[:2] == ["a", "paused"] and row[7] == "-"  # NAME STATE SCHEDULE(5) NEXT


@pytest.mark.parametrize("count", ["0", "-3", "101"])
def test_next_count_out_of_range_is_a_usage_error(cli, count):
    out = cli("next", "@daily", "--count", count, check=False)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"hermes-cron: --count must be between 1 and 100, not {count}")


def test_at_in_the_past_is_refused_and_now_runs_once(cli):
    past = cli("add", "late", "--at", "2020-01-01T00:00", "--", "true", check=False)
    assert past.returncode == 2 and "is in the past" in past.stderr
    assert cli.json("list")["jobs"] == []  # nothing stored
    cli("add", "soon", "--at", "now", "--", "echo ran")
    daemon = cli.start("daemon")
    try:
        wait_for(lambda: [r["status"] for r in cli.json("runs", "soon")["runs"]]
                 == ["succeeded"], 30, what="the --at now run")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(15)


def test_every_cli_line_on_the_cli_page_runs(cli, tmp_path):
    """Each command of the CLI page's first block, in order, against a fresh store: what a
    user would paste. Placeholders get real values; the daemon runs for a moment."""
    (tmp_path / "etl.py").write_text("print('etl ran')\n")
    lines = docs_cli_lines("cli.md")
    assert len(lines) >= 18, lines
    for setup in ("a", "b", "c"):
        cli("add", setup, "@daily", "--", "true")
    for line in lines:
        out = paste_docs_line(cli, line, tmp_path)
        if line.split()[1:3] == ["run", "nightly-etl"]:
            assert "etl ran" in out.stdout


def test_a_marker_line_split_across_reads_is_never_printed():
    """Output arrives in pieces: a marker line cut in two must not leak its tail."""
    import io

    from hermes_cron_ext.frontends.cli import _Output

    sink = io.BytesIO()
    out = _Output(sink, tty=False, color=False)
    for chunk in (b"a\n::progr", b"ess:: 1/2 ha", b"lf\nb\n", b"tail without newline"):
        out.write(chunk)
    out.flush()
    assert sink.getvalue() == b"a\nb\ntail without newline"
    assert (out.progress.fraction, out.progress.phase) == (0.5, "half")
