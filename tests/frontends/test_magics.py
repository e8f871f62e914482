"""``%cron`` / ``%%cron`` through IPython's own shell, on a real store with real runs."""

from __future__ import annotations

import os
import re
import sys

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from hermes_cron_ext import ops as cron_client
from hermes_cron_ext.store import SQLiteStore
from tests.conftest import wait_for

pytest_plugins = ("tests.notebook_fixtures",)


@pytest.fixture
def ip(local_env):
    shell = InteractiveShell.instance()
    if "hermes_cron_ext" not in shell.extension_manager.loaded:
        shell.run_line_magic("load_ext", "hermes_cron_ext")
    return shell


@pytest.fixture
def db(local_env):
    s = SQLiteStore(local_env)
    yield s
    s.close()


class Cell:
    def __init__(self, shell, capsys):
        self.shell, self.capsys = shell, capsys

    def __call__(self, source: str):
        result = self.shell.run_cell(source)
        out, err = self.capsys.readouterr()
        return result, out, err

    def ok(self, source: str) -> str:
        result, out, err = self(source)
        assert result.success, (source, out, err)
        assert "Traceback" not in out + err
        return out

    def fails(self, source: str, *words: str) -> str:
        """Bad input: the cell fails with exactly one line, no traceback."""
        result, out, err = self(source)
        assert not result.success, (source, out, err)
        assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
        lines = [ln for ln in (out + err).splitlines() if ln.strip()]
        assert len(lines) == 1, lines
        assert lines[0].startswith("UsageError: "), lines
        assert "Traceback" not in lines[0]
        for word in words:
            assert word in lines[0], (word, lines[0])
        return lines[0]


@pytest.fixture
def cell(ip, capsys):
    return Cell(ip, capsys)


def test_load_ext_registers_line_and_cell_magic(ip):
    magics = ip.magics_manager.magics
    assert "cron" in magics["line"] and "cron" in magics["cell"]


def test_add_edit_pause_resume_rm(cell, db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the notebook's folder: the script and notebook are there
    assert "no jobs yet" in cell.ok("%cron")
    out = cell.ok('%cron add nightly-etl "0 2 * * *" --tz Europe/Paris --timeout 5m '
                  '--env MODE=prod -- python etl.py > out.txt')
    assert out.startswith(
        "nightly-etl added: 0 2 * * * (Europe/Paris), At 02:00 every day; next run ")
    job = db.get_job("nightly-etl")
    assert job.command == "python etl.py > out.txt"  # verbatim: the shell sees redirections
    assert (job.kind, job.timezone, job.cwd) == ("command", "Europe/Paris", os.getcwd())
    assert job.env == {"MODE": "prod"} and job.policy.timeout == 300
    cell.ok('%cron add once --at 2099-01-01T10:00:00Z -- echo "-- not a separator"')
    assert db.get_job("once").command == 'echo "-- not a separator"'
    assert db.get_job("once").schedule.startswith("@at 2099-01-01T10:00:00")
    cell.fails('%cron add script "@hourly" --kind python -- job.py --day "2 Jan"',
               f"the script {tmp_path / 'job.py'} does not exist")
    (tmp_path / "job.py").write_text("print('ok')\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "sales.ipynb").write_text("{}")
    cell.ok('%cron add script "@hourly" --kind python -- job.py --day "2 Jan"')
    assert db.get_job("script").command == ["job.py", "--day", "2 Jan"]
    cell.ok('%cron add report "@daily" --kind notebook -p n=3 -p title=Sales -p flag=true '
            "-- reports/sales.ipynb")
    nb_job = db.get_job("report")
    assert nb_job.parameters == {"n": 3, "title": "Sales", "flag": True}
    assert nb_job.command == os.path.abspath("reports/sales.ipynb")

    out = cell.ok('%cron edit nightly-etl --schedule "30 3 * * *" --retries 2 -- python etl2.py')
    assert out.startswith("nightly-etl changed: 30 3 * * *")
    job = db.get_job("nightly-etl")
    assert (job.schedule, job.command, job.policy.retries) == ("30 3 * * *", "python etl2.py", 2)
    cell.ok("%cron edit nightly-etl --rename etl")
    assert db.get_job("etl").id == job.id
    cell.ok('%cron add etl "@hourly" --replace -- echo replaced')
    assert db.get_job("etl").command == "echo replaced"

    assert cell.ok("%cron pause etl once").splitlines() == ["etl paused", "once paused"]
    assert db.get_job("etl").state == "paused"
    assert cell.ok("%cron resume etl").startswith("etl scheduled; next run ")
    assert db.get_job("etl").state == "scheduled"
    assert cell.ok("%cron rm etl once") == "etl removed\nonce removed\n"
    assert [j.name for j in db.list_jobs().items] == ["report", "script"]


def test_cards_status_next_help(cell, db):
    cell.ok('%cron add tick "@every 1h" -- echo tick')
    cell.ok('%cron add resting "@daily" -- echo rest')
    cell.ok("%cron pause resting")
    # the cards; outside a browser, their text: a table, a paused job without a countdown
    lines = cell.ok("%cron").splitlines()
    assert lines[0] == f"2 jobs \u00b7 store {db.path}"
    assert lines[1].startswith("warning: no ticker is alive")
    assert lines[2].split() == ["JOB", "KIND", "STATE", "SCHEDULE", "NEXT", "RUN", "LAST",
                                "RUN"]
    tick = next(ln for ln in lines if ln.startswith("tick "))
    resting = next(ln for ln in lines if ln.startswith("resting "))
    assert re.search(r"^tick +command +scheduled +@every 1h \(\S+\), every hour +"
                     r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ \(in (\d+h )?(\d+m )?\d+s\) +"
                     r"none yet$", tick), tick
    assert re.search(r"^resting +command +paused +@daily \(\S+\), .+ +none \(paused\) +"
                     r"none yet$", resting), resting
    assert " in " not in resting and "due now" not in resting
    out = cell.ok("%cron status tick")
    assert out.splitlines()[0].startswith("tick  (j_") and "scheduled" in out
    assert "every hour" in out and "last run   none yet" in out and "echo tick" in out
    result, out, err = cell("%cron status")
    assert result.success and f"store {db.path}" in out
    assert "no ticker is alive" in err  # says loudly that nothing will fire
    out = cell.ok('%cron next "0 9 * * mon" --tz UTC --count 3')
    assert out.splitlines()[0] == "0 9 * * mon [UTC]: At 09:00 on Monday"
    assert len(out.splitlines()) == 4
    out = cell.ok("%cron help")
    for verb in ("add", "edit", "rm", "pause", "resume", "run", "runs", "logs", "watch",
                 "status", "%%cron"):
        assert verb in out


def test_run_logs_runs_watch_for_a_real_run(cell, db):
    code = "import sys; print('hello \\033[32mgreen\\033[0m'); print('oops', file=sys.stderr)"
    cell.ok(f'%cron add greet "@yearly" --kind python -- -c "{code}"')
    out = cell.ok("%cron run greet")
    run_id = out.split()[1]
    assert out == f"run {run_id} of greet started\n"
    wait_for(lambda: db.get_run(run_id).status == "succeeded", 30, what="the run")
    out = cell.ok("%cron logs greet")
    assert "hello \x1b[32mgreen\x1b[0m" in out and "oops" in out
    assert cell.ok(f"%cron logs {run_id} --tail 5") == "oops\n"
    history = cell.ok("%cron runs greet --limit 5").splitlines()
    assert history[0] == "Runs of greet \u00b7 1/1 succeeded"
    assert history[1].split()[:4] == ["RUN", "STATUS", "TRIGGER", "TRY"]
    assert history[2].split()[:4] == [run_id, "succeeded", "manual", "1"]
    for ref in ("greet", run_id):  # a finished run is shown whole, output and outcome
        watched = cell.ok(f"%cron watch {ref}").splitlines()
        assert watched[0].startswith(f"run {run_id} of greet: succeeded \u00b7 exit 0 \u00b7 ")
        assert watched[1:] == ["hello green", "oops"]
    out = cell.ok("%cron run greet --watch").splitlines()
    second = out[0].split()[1]
    assert out[0] == f"run {second} of greet started" and second != run_id
    # the live output follows the run it started, from the moment it is shown
    assert re.match(rf"run {second} of greet: (queued|running)", out[1]), out
    wait_for(lambda: db.get_job("greet").last_run["status"] == "succeeded"
             and db.get_job("greet").running_count == 0, 30, what="second run")
    assert db.list_runs("greet").items[0].trigger == "manual"
    assert "last run   succeeded · exit 0 · " in cell.ok("%cron status greet")


def test_cancel_and_overlap_refusal(cell, db):
    cell.ok('%cron add slow "@yearly" -- echo started; sleep 30')
    run_id = cell.ok("%cron run slow").split()[1]
    wait_for(lambda: db.get_run(run_id).status == "running", 30, what="running")
    cell.fails("%cron run slow", "overlap policy is forbid")
    assert cell.ok("%cron cancel slow") == f"run {run_id}: cancel requested\n"
    wait_for(lambda: db.get_run(run_id).status == "cancelled", 30, what="cancelled")
    cell.fails("%cron cancel slow", "has no running run")


def test_cell_magic_freezes_the_body(cell, db):
    body = "import os\nprint('from the cell', os.environ['HERMES_CRON_JOB'])\n"
    out = cell.ok(f'%%cron frozen "*/10 * * * *" --tz UTC --timeout 60\n{body}')
    assert out.startswith("frozen added: */10 * * * * (UTC)")
    job = db.get_job("frozen")
    assert (job.kind, job.code, job.command) == ("python", body, None)
    assert job.interpreter == sys.executable and job.policy.timeout == 60
    # running the cell again changes the job instead of failing
    out = cell.ok(f'%%cron frozen "@hourly" --run\n{body}print("v2")\n')
    assert out.startswith("frozen updated: @hourly")
    assert re.search(r"^run (r_\w+) of frozen started\nrun \1 of frozen: (queued|running)",
                     out, re.M), out
    assert db.get_job("frozen").code.endswith('print("v2")\n')
    wait_for(lambda: (db.get_job("frozen").last_run or {}).get("status") == "succeeded", 30,
             what="the cell job to run")
    assert cell.ok("%cron logs frozen") == "from the cell frozen\nv2\n"


def test_bad_input_is_one_clear_line(cell, db):
    cell.ok('%cron add known "@daily" -- true')
    cell.fails('%cron add x "61 * * * *" -- true', "minute 61 is out of range 0-59")
    cell.fails('%cron add x "0 0 31 2 *" -- true', "never occurs in February")
    cell.fails('%cron add x "@daily" --tz Mars/Olympus -- true', "unknown time zone")
    cell.fails('%cron add x "@daily" python etl.py', "missing '--'")
    cell.fails('%cron add x "@daily" --', "give the command after '--'")
    cell.fails("%cron add x -- true", "missing the schedule")
    cell.fails('%cron add known "@daily" -- true', "already exists")
    cell.fails('%cron add "bad name!" "@daily" -- true', "name must be")
    cell.fails('%cron add x "@daily --tz UTC -- true', "No closing quotation")
    cell.fails('%cron add x "@daily" --bogus 1 -- true', "unrecognized arguments: --bogus")
    cell.fails('%cron add x "@daily" --env NOEQUALS -- true', "--env takes NAME=VALUE")
    cell.fails('%cron add x "@daily" --retries many -- true', "retries")
    cell.fails("%cron frobnicate known", "unknown command 'frobnicate'")
    cell.fails("%cron pause -- true", "takes no '-- COMMAND'")
    for verb in ("edit nosuch --schedule @daily", "rm nosuch", "pause nosuch", "resume nosuch",
                 "run nosuch", "runs nosuch", "logs nosuch", "watch nosuch",
                 "status nosuch", "cancel nosuch", "artifact nosuch"):
        cell.fails(f"%cron {verb}", "no job 'nosuch'")
    for verb in ("logs", "watch", "cancel", "artifact"):
        cell.fails(f"%cron {verb} r_nonexistent", "no run 'r_nonexistent'")
    cell.fails("%cron logs known", "has no runs yet")
    cell.fails("%cron edit known", "nothing to change")
    cell.fails('%cron edit known --schedule "* * *"', "expected 5 fields")
    cell.fails("%cron rm", "the following arguments are required: NAME")
    cell.fails('%cron next "every day"', "expected 5 fields")
    for count in ("0", "-1", "=-5", "101"):  # a mistake, not "never fires again"
        sep = "" if count.startswith("=") else " "
        cell.fails(f'%cron next "@daily" --count{sep}{count}', "--count must be between 1")
    cell.fails('%cron next "@daily" --count many', "invalid int value: 'many'")
    cell.fails('%%cron c1 "@daily"\nprint("unclosed"\n', "does not compile: line 1")
    cell.fails('%%cron c1 "@daily"\n\n', "the cell is empty")
    cell.fails('%%cron c1 "@daily" -- echo\nprint(1)\n', "takes no '-- COMMAND'")
    cell.fails('%%cron c1\nprint(1)\n', "missing the schedule")
    cell.fails('%%cron c1 "@fortnightly"\nprint(1)\n', "unknown alias '@fortnightly'")
    cell.fails("%cron connect http://127.0.0.1:9/ tok", "cannot reach")
    assert [j.name for j in db.list_jobs().items] == ["known"]  # nothing half-made


def test_artifact_of_a_run_without_one(cell, db):
    cell.ok('%cron add plain "@yearly" -- echo hi')
    run_id = cell.ok("%cron run plain").split()[1]
    wait_for(lambda: db.get_run(run_id).status == "succeeded", 30, what="the run")
    cell.fails("%cron artifact plain", "has no executed notebook")


def test_connect_local_store(cell, tmp_path, db):
    other = str(tmp_path / "other" / "cron.db")
    out = cell.ok(f"%cron connect --local {other}")
    assert out == f"hermes-cron: using store {other}\n"
    cell.ok('%cron add elsewhere "@daily" -- true')
    assert db.list_jobs().items == []
    assert cron_client.get_client().where == f"store {other}"
    cell.ok("%cron connect")  # discover again: HERMES_CRON_URL=local, the test's store
    assert cron_client.get_client().where == f"store {db.path}"


def test_notebook_job_and_its_artifact(cell, db, tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    params = nbformat.v4.new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("print('x is', x)")]
    nbformat.write(nb, str(tmp_path / "p.ipynb"))
    cell.ok(f'%cron add nbjob "@yearly" --kind notebook -p x=5 -- {tmp_path / "p.ipynb"}')
    run_id = cell.ok("%cron run nbjob").split()[1]
    wait_for(lambda: db.get_run(run_id).status == "succeeded", 60, what="the notebook run")
    saved = tmp_path / "executed.ipynb"
    assert cell.ok(f"%cron artifact nbjob {saved}") == (
        f"saved the executed notebook of run {run_id} to {saved}\n")
    executed = nbformat.read(str(saved), as_version=4)
    assert executed.cells[1].source == "# Parameters\nx = 5\n"
    assert executed.cells[2].outputs[0]["text"] == "x is 5\n"


def test_backfill_from_a_notebook(cell, db, monkeypatch):
    shown = []
    monkeypatch.setattr("hermes_cron_ext.frontends.magics.display", shown.append)
    cell.ok('%cron add nightly "0 6 * * *" --tz UTC -- sleep 30')
    out = cell.ok("%cron backfill nightly --from 2026-11-01 --to 2026-11-03 --dry-run")
    assert out.splitlines() == ["nightly: 3 slot(s) would run, 1 at a time",
                                "  2026-11-01T06:00:00.000Z", "  2026-11-02T06:00:00.000Z",
                                "  2026-11-03T06:00:00.000Z"]
    cell.fails("%cron backfill nightly --from 2026-11-03 --to 2026-11-01",
               "to (2026-11-01) is before from (2026-11-03); swap them: --from 2026-11-01 "
               "--to 2026-11-03")
    out = cell.ok("%cron backfill nightly --from 2026-11-01 --to 2026-11-03 --max-parallel 2")
    backfill_id = re.match(r"backfill (b_\w+) of nightly: 3 slot\(s\), 2 at a time", out)[1]
    assert shown[0].backfill["id"] == backfill_id and shown[0].bar.max == 3  # its progress
    assert re.fullmatch(rf"backfill {backfill_id}: cancelled; \d/3 slots done.*; \d not run\n",
                        cell.ok(f"%cron cancel {backfill_id}"))
    shown.clear()
    listed = cell.ok("%cron backfills nightly").splitlines()
    assert listed[0].split()[:2] == ["ID", "STATE"] and listed[1].startswith(
        f"{backfill_id}  cancelled  2026-11-01T06:00 .. 2026-11-03T06:00  2")
    assert shown == []  # no running one: no bar
    cell.fails("%cron backfills nope", "nope")
    assert {r.trigger for r in db.list_runs("nightly").items} <= {"backfill"}


def test_run_form_shows_the_typed_form(cell, db, monkeypatch):
    shown = []
    monkeypatch.setattr("hermes_cron_ext.frontends.magics.display", shown.append)
    cell.ok('%cron add pm "@yearly" --param n=1 -- echo n=$HERMES_CRON_PARAM_n')
    cell.ok("%cron run pm --form")
    from hermes_cron_ext.frontends.widgets import ParametersForm

    assert isinstance(shown[0], ParametersForm) and list(shown[0].fields) == ["n"]
    assert db.list_runs("pm").items == []  # the form runs it, not the magic
    cell.fails("%cron run pm --form -p n=2", "either -p values or --form")
    cell.fails("%cron run nope --form", "nope")


def test_run_with_parameters_from_a_notebook(cell, db):
    cell.ok('%cron add pm "@yearly" --param n=1 -- echo n=$HERMES_CRON_PARAM_n')
    cell.fails("%cron run pm -p n=three", "parameter n must be a whole number")
    run_id = cell.ok("%cron run pm -p n=3").split()[1]
    wait_for(lambda: db.get_run(run_id).status == "succeeded", 30, what="the run")
    assert cell.ok("%cron logs pm") == "n=3\n"
    assert db.get_run(run_id).parameters == {"n": 3}


def test_graph_shows_the_pipeline_with_last_statuses(cell, db):
    from hermes_cron_ext import PipelineGraph, get_client

    cell.ok('%cron add up "@yearly" -- true')
    cell.ok('%cron add down "@yearly" --after up -- true')
    cell.ok('%cron add page "@yearly" --after down:failure -- true')
    graph = PipelineGraph("down", client=get_client(), interval=0)
    assert graph.plain_text() == ("0: up [no run]\n1: down [no run]\n2: page [no run]\n"
                                  "up -> down\ndown -> page (on failure)")
    run_id = cell.ok("%cron run up").split()[1]
    wait_for(lambda: db.get_run(run_id).status == "succeeded", 30, what="the run")
    wait_for(lambda: db.list_runs("down").items, 30, what="down, after up")
    wait_for(lambda: db.get_job("down").last_run, 30, what="down's run to end")
    graph.refresh()
    assert graph.plain_text().splitlines()[:2] == ["0: up [succeeded]", "1: down [succeeded]"]
    assert 'data-job="down"' in graph.static_html()
    graph.close()
    cell.ok("%cron graph down")  # the same, as a widget, from the notebook


def test_times_carry_their_zone_and_a_paused_job_no_next_run(cell, db):
    out = cell.ok('%cron add chai "0 9 * * *" --tz Asia/Kolkata -- true')
    assert re.search(r"next run \d{4}-\d\d-\d\d 09:00:00 IST \(in ", out), out
    nxt = cell.ok('%cron next "0 9 * * *" --tz Asia/Dubai --count 1')
    assert re.search(r"\d{4}-\d\d-\d\d 09:00:00 \+04:00", nxt), nxt
    cell.ok("%cron pause chai")
    assert "next run   none (paused)" in cell.ok("%cron status chai")


def test_what_the_cli_has_the_magics_have_too(cell, db, monkeypatch):
    """edit's SCHEDULE, list, show, next --from, run -f, logs -f, runs --status and every
    job's runs: one grammar (commands.py)."""
    from hermes_cron_ext.frontends.widgets import LiveOutput, RunHistory

    shown = []
    monkeypatch.setattr("hermes_cron_ext.frontends.magics.display", shown.append)
    cell.ok('%cron add etl "0 2 * * *" --tz UTC -- echo hi')
    cell.ok('%cron edit etl "0 3 * * *"')
    assert db.get_job("etl").schedule == "0 3 * * *"
    cell.fails('%cron edit etl "0 4 * * *" --schedule "0 5 * * *"', "give the schedule once")
    listed = cell.ok("%cron list").splitlines()
    assert listed[0].split() == ["NAME", "STATE", "SCHEDULE", "NEXT", "LAST", "COMMAND"]
    assert listed[1].split()[:2] == ["etl", "scheduled"] and listed[1].endswith("echo hi")
    assert cell.ok("%cron list --state paused").startswith("no jobs (store ")
    countdown = re.compile(r"\(in [^)]*\)")  # it moves between the two reads
    assert countdown.sub("", cell.ok("%cron show etl")) == countdown.sub(
        "", cell.ok("%cron status etl"))
    nxt = cell.ok('%cron next "0 9 * * *" --tz UTC --from 2026-01-01T00:00:00Z --count 2')
    assert nxt.splitlines()[1:] == ["  2026-01-01 09:00:00 UTC", "  2026-01-02 09:00:00 UTC"]

    run_id = cell.ok("%cron run etl -f").split()[1]
    assert isinstance(shown[-1], LiveOutput) and shown[-1].run_id == run_id
    assert shown[-1].wait(30) and shown[-1].status == "succeeded"
    cell.ok("%cron logs etl -f")
    assert isinstance(shown[-1], LiveOutput) and shown[-1].run_id == run_id
    assert shown[-1].wait(30) and shown[-1].text == "hi"
    cell.ok("%cron runs --status failed")
    assert isinstance(shown[-1], RunHistory) and shown[-1].runs == []
    assert shown[-1].plain_text().startswith("failed runs of every job")
    cell.ok("%cron runs etl --status succeeded")
    assert [r["id"] for r in shown[-1].runs] == [run_id]
    cell.fails("%cron runs etl --limit 501", "--limit must be between 1 and 500, not 501")
    for widget in shown:
        widget.close()
