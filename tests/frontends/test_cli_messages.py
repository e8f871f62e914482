"""What the CLI says, checked as a user reads it: zones on every time, exit statuses
that tell a typo from a failure, messages that name the real problem."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest

from tests.conftest import CLI

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


@pytest.fixture
def cli(tmp_path):
    runner = CLI(str(tmp_path / "store" / "cron.db"), str(tmp_path))
    yield runner
    runner.stop_all()


def test_after_says_what_it_takes_in_help(cli):
    text = cli("add", "--help").stdout
    assert "--after JOB[:success|failure|completion]" in text
    assert "--after NAME=VALUE" not in text


@pytest.mark.parametrize("args, message", [
    (("add", "x", "@daily"), "give the command after '--'"),
    (("edit", "x"), "nothing to change"),
    (("add", "x", "61 * * * *", "--", "true"), "minute 61 is out of range"),
    (("add", "x", "@daily", "--timeout", "-5", "--", "true"), "timeout cannot be negative"),
    (("add", "x", "@daily", "--kill-grace=-1s", "--", "true"),
     "kill_grace cannot be negative (got -1s)"),
    (("add", "x", "@daily", "--kill-grace", "soon", "--", "true"), "invalid duration 'soon'"),
    (("list", "--state", "bogus"), "state must be one of scheduled, running, paused, "
                                    "blocked, disabled, not 'bogus'"),
    (("runs", "--status", "done"), "status must be one of queued, running"),
    (("backfill", "x", "--from", "2026-11-03", "--to", "2026-11-01"),
     "the range is backwards: to (2026-11-01) is before from (2026-11-03); swap them"),
])
def test_refused_input_exits_2_with_one_line(cli, args, message):
    cli("add", "x", "@yearly", "--", "true")
    out = cli(*args, check=False)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr
    assert [j["name"] for j in cli.json("list")["jobs"]] == ["x"]  # nothing else stored


def test_a_failure_that_is_not_a_typo_exits_1(cli):
    out = cli("show", "nope", check=False)
    assert out.returncode == 1 and "no job 'nope'" in out.stderr


def test_every_time_is_printed_with_its_zone(cli):
    added = cli("add", "tea", "0 9 * * *", "--tz", "Asia/Kolkata", "--", "true").stdout
    assert re.search(rf"next run {STAMP} IST \(in ", added), added
    shown = cli("show", "tea").stdout
    assert re.search(rf"next run   {STAMP} IST", shown), shown
    edited = cli("edit", "tea", "30 9 * * *").stdout
    assert re.search(rf"next run {STAMP} IST", edited), edited
    nxt = cli("next", "0 9 * * *", "--tz", "Asia/Kolkata", "--count", "2").stdout
    assert re.findall(rf"  ({STAMP}) IST", nxt) and "09:00:00 IST" in nxt
    # a zone without an abbreviation shows its offset
    nxt = cli("next", "0 9 * * *", "--tz", "Asia/Dubai", "--count", "1").stdout
    assert re.search(rf"  {STAMP} \+04:00$", nxt.strip()), nxt
    cli("run", "tea", "-f", check=False)
    runs = cli("runs", "tea").stdout.splitlines()[1]
    assert len(re.findall(rf"{STAMP} [A-Z+]", runs)) == 2, runs  # SCHEDULED and STARTED


@pytest.mark.parametrize("how", ["paused", "disabled"])
def test_a_job_that_does_not_fire_shows_no_next_run(cli, how):
    if how == "paused":
        cli("add", "j", "@daily", "--", "true")
        cli("pause", "j")
    else:
        cli("add", "j", "@daily", "--disabled", "--", "true")
    assert cli.json("show", "j")["next_run_at"] is None
    assert f"next run   none ({how}" in cli("show", "j").stdout
    resumed = cli("resume" if how == "paused" else "edit", "j",
                  *(() if how == "paused" else ("--enable",))).stdout
    assert re.search(rf"next run {STAMP} ", resumed), resumed
    assert cli.json("show", "j")["next_run_at"] is not None


def test_the_end_line_names_the_exit_code_once(cli):
    cli("add", "three", "@yearly", "--", "exit 3")
    out = cli("run", "three", "-f", check=False)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == "[failed, exit code 3]"


def test_logs_of_a_job_whose_latest_run_is_a_waiting_retry(cli):
    cli("add", "flaky", "@yearly", "--retries", "1", "--retry-delay", "1h", "--",
        "echo tried once; exit 3")
    out = cli("logs", "flaky", check=False)  # no run at all yet
    assert out.returncode == 1 and "has no runs yet" in out.stderr
    cli("run", "flaky", "-f", check=False)
    runs = cli.json("runs", "flaky")["runs"]
    assert [(r["trigger"], r["status"]) for r in runs] == [("retry", "queued"),
                                                           ("manual", "failed")]
    out = cli("logs", "flaky")
    assert out.stdout == "tried once\n"
    assert (f"latest run {runs[0]['id']} (retry, attempt 2) is queued; this is the output "
            f"of run {runs[1]['id']} (failed)") in out.stderr
    # by run id: exactly that run, which has nothing yet
    out = cli("logs", runs[0]["id"])
    assert out.stdout == ""


def test_a_run_that_printed_nothing_says_so(cli):
    cli("add", "quiet", "@yearly", "--", "true")
    cli("run", "quiet", "-f")
    out = cli("logs", "quiet")
    assert out.stdout == "" and "wrote no output" in out.stderr


def test_a_folder_or_notebook_that_is_not_there_is_refused_when_saved(cli, tmp_path):
    out = cli("add", "nowhere", "@daily", "--cwd", str(tmp_path / "gone"), "--", "true",
              check=False)
    assert out.returncode == 2 and f"cwd {tmp_path / 'gone'} is not a folder" in out.stderr
    out = cli("add", "nb", "@daily", "--kind", "notebook", "--", "report.ipynb", check=False)
    assert out.returncode == 2
    assert f"the notebook {tmp_path / 'report.ipynb'} does not exist" in out.stderr
    out = cli("add", "py", "@daily", "--kind", "python", "--", "etl.py", "--day", "1",
              check=False)
    assert out.returncode == 2 and "the script" in out.stderr and "etl.py" in out.stderr
    assert cli.json("list")["jobs"] == []
    (tmp_path / "etl.py").write_text("print('ok')\n")
    cli("add", "py", "@daily", "--kind", "python", "--", "etl.py")
    # a job whose folder went away can still be paused and edited in other ways
    folder = tmp_path / "work"
    folder.mkdir()
    cli("add", "moved", "@daily", "--cwd", str(folder), "--", "true")
    folder.rmdir()
    cli("pause", "moved")
    cli("edit", "moved", "--timeout", "5m")
    out = cli("edit", "moved", "--", "false", check=False)
    assert out.returncode == 2 and "is not a folder" in out.stderr


def test_a_command_job_runs_with_the_python_it_was_made_from_first_on_path(cli, tmp_path):
    """``-- python etl.py`` works on a machine without a system ``python``: the job is
    made by this venv's hermes-cron, so its ``python`` is the venv's."""
    bare = {**cli.env, "PATH": "/usr/bin:/bin"}  # no venv, no pyenv shims
    cli.env = bare
    cli("add", "which", "@yearly", "--", "command -v python; python -c "
        "'import sys; print(sys.prefix)'")
    out = cli("run", "which", "-f")
    assert out.stdout.splitlines() == [os.path.join(os.path.dirname(sys.executable), "python"),
                                       sys.prefix]
    assert cli.json("show", "which")["interpreter"] == sys.executable
    # a PATH the job sets itself is its own
    cli("add", "own", "@yearly", "--env", "PATH=/usr/bin:/bin", "--", 'echo "$PATH"')
    assert cli("run", "own", "-f").stdout.strip() == "/usr/bin:/bin"


def test_daemon_stop_names_each_daemon_once(cli):
    proc = cli.daemon()
    out = cli("daemon", "stop")
    assert out.stdout.strip() == f"daemon pid {proc.pid}: stopped"
    assert json.loads(cli("daemon", "status", "--json", check=False).stdout)["daemons"] == []
