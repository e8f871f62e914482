"""``hermes-cron`` as an operator uses it: real processes on a real store file."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import time

import pytest

from hermes_cron_ext.store import SQLiteStore
from tests.conftest import wait_for


def test_add_list_show_json_contract(cli):
    out = cli("add", "nightly-etl", "0 2 * * *", "--tz", "Europe/Berlin", "--", "python",
              "etl.py")
    assert "nightly-etl added" in out.stdout
    assert "no ticker is alive" in out.stderr  # loud, not silent
    (job,) = cli.json("list")["jobs"]
    for key in ("id", "name", "kind", "schedule", "timezone", "command", "state", "enabled",
                "next_run_at", "last_run"):
        assert key in job
    assert job["command"] == ["python", "etl.py"]
    assert job["timezone"] == "Europe/Berlin" and job["state"] == "scheduled"
    assert job["next_run_at"].endswith("Z") and job["next_run_at"][11:16] in ("01:00", "00:00")
    shown = cli.json("show", "nightly-etl")
    assert shown["id"] == job["id"] and shown["runs"] == []
    assert "At 02:00 every day" in cli("show", "nightly-etl").stdout


def test_errors_are_one_line_and_store_nothing(cli):
    cases = [
        (["add", "x", "61 * * * *", "--", "true"], "minute 61 is out of range 0-59"),
        (["add", "x", "0 0 31 2 *", "--", "true"], "day-of-month 31 never occurs in February"),
        (["add", "x", "* * * * *", "--tz", "Europe/Berln", "--", "true"],
         "unknown time zone 'Europe/Berln'"),
        (["add", "x", "* * * * *"], "give the command after '--'"),
        (["add", "x", "* * * * * *", "--", "true"], "expected 5 fields"),
        (["show", "nope"], "no job 'nope'"),
        (["logs", "nope"], "no job 'nope'"),
        (["next", "@fortnightly"], "@fortnightly"),
        (["runs", "x", "--limit", "zz"], "invalid int value"),
        (["frobnicate"], "invalid choice"),
    ]
    for args, message in cases:
        proc = cli(*args, check=False)
        assert proc.returncode != 0, args
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert cli.json("list") == {"jobs": [], "cursor": None}


def test_next_previews_dst_fire_times(cli):
    out = cli.json("next", "30 2 * * *", "--tz", "Europe/Berlin", "--from",
                   "2025-10-25T12:00:00Z", "--count", "3")
    assert out["next"] == ["2025-10-26T00:30:00Z", "2025-10-27T01:30:00Z",
                           "2025-10-28T01:30:00Z"]
    every = cli.json("next", "@every 1h30m", "--from", "2025-01-01T00:00:00Z", "--count", "2")
    assert every["next"] == ["2025-01-01T01:30:00Z", "2025-01-01T03:00:00Z"]


def _runs(cli, name, **kw):
    return cli.json("runs", name, "--limit", "200", **kw)["runs"]


def test_daemon_fires_and_logs_follow_streams_live(cli, tmp_path):
    cli("add", "ticker", "@every 1s", "--", "sh", "-c",
        "echo first line; sleep 4; echo second line")
    cli.daemon()
    run = wait_for(lambda: next((r for r in _runs(cli, "ticker") if r["status"] == "running"),
                                None), 15, what="a running run")
    follow = cli.start("logs", "-f", run["id"])
    # the first line arrives while the run is still going
    first = follow.stdout.readline().decode()
    assert _status(cli, run["id"]) == "running"
    assert first == "first line\n"
    rest = follow.stdout.read().decode()
    follow.wait(15)
    assert rest.startswith("second line")
    assert follow.returncode == 0
    assert _status(cli, run["id"]) == "succeeded"
    assert cli("logs", run["id"]).stdout == "first line\nsecond line\n"


def _status(cli, run_id):
    store = SQLiteStore(cli.db)
    try:
        return store.get_run(run_id).status
    finally:
        store.close()


@pytest.mark.slow
def test_two_daemons_and_ticks_fire_every_slot_exactly_once(cli, tmp_path):
    ledger = tmp_path / "ledger.txt"
    for i in range(3):
        cli("add", f"j{i}", "@every 1s", "--overlap", "allow", "--", "sh", "-c",
            f'echo "$HERMES_CRON_JOB $HERMES_CRON_SCHEDULED_FOR" >> {ledger}')
    cli.daemon()
    cli.daemon()
    end = time.time() + 8
    while time.time() < end:  # a systemd timer's ticks racing the two daemons
        cli("tick", "-q")
    for proc in cli.procs:
        proc.send_signal(signal.SIGTERM)
    for proc in cli.procs:
        proc.wait(10)
    store = SQLiteStore(cli.db)
    wait_for(lambda: not store.active_runs(), 15, what="runs to finish")
    lines = ledger.read_text().splitlines()
    fired = [tuple(line.split()) for line in lines]
    assert len(fired) == len(set(fired)), "a slot fired twice"
    for i in range(3):
        slots = sorted(float(s) for name, s in fired if name == f"j{i}")
        assert len(slots) >= 6
        gaps = {round(b - a) for a, b in zip(slots, slots[1:])}
        assert gaps == {1}, f"j{i} missed a slot: {gaps}"
    rows = store.db.execute("SELECT job_id, scheduled_for, COUNT(*) FROM runs "
                            "WHERE status != 'skipped' GROUP BY 1, 2 HAVING COUNT(*) > 1")
    assert rows.fetchall() == []
    store.close()


@pytest.mark.slow
def test_kill9_daemon_runs_finish_and_are_not_rerun(cli, tmp_path):
    ledger = tmp_path / "ledger.txt"
    cli("add", "long", "@every 1s", "--overlap", "allow", "--", "sh", "-c",
        f'sleep 3; echo "$HERMES_CRON_RUN_ID" >> {ledger}; exit 7')
    daemon = cli.daemon()
    wait_for(lambda: [r for r in _runs(cli, "long") if r["status"] == "running"], 15,
             what="runs in flight")
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.wait()
    killed_at = time.time()
    in_flight = [r["id"] for r in _runs(cli, "long") if r["status"] in ("running", "queued")]
    assert in_flight
    store = SQLiteStore(cli.db)
    wait_for(lambda: all(store.get_run(r).status not in ("queued", "running")
                         for r in in_flight), 20, what="orphaned runs to finish")
    for run_id in in_flight:
        run = store.get_run(run_id)
        assert (run.status, run.exit_code) in (("failed", 7), ("skipped", None),
                                               ("lost", None)), (run_id, run.status)
    finished = [r for r in in_flight if store.get_run(r).status == "failed"]
    assert finished, "no run survived the daemon's kill -9"
    # restart: nothing that ran is run again
    cli.daemon()
    time.sleep(2)
    ran = ledger.read_text().split()
    assert len(ran) == len(set(ran))
    for run_id in finished:
        assert ran.count(run_id) == 1
        assert store.get_run(run_id).finished_at > killed_at
    store.close()


def test_pause_resume_rm_bulk(cli):
    for name in ("a", "b", "c"):
        cli("add", name, "@hourly", "--", "true")
    cli("pause", "a", "b")
    states = {j["name"]: j["state"] for j in cli.json("list")["jobs"]}
    assert states == {"a": "paused", "b": "paused", "c": "scheduled"}
    cli("resume", "a", "b")
    cli("rm", "a", "c")
    assert [j["name"] for j in cli.json("list")["jobs"]] == ["b"]


def test_run_now_without_ticker_and_follow(cli):
    cli("add", "manual", "@yearly", "--", "sh", "-c", "echo hello from a manual run")
    proc = cli("run", "manual", "-f")
    assert "hello from a manual run" in proc.stdout
    (run,) = _runs(cli, "manual")
    assert (run["trigger"], run["status"], run["exit_code"]) == ("manual", "succeeded", 0)


def test_status_json_and_loud_warning(cli):
    cli("add", "s", "@hourly", "--", "true")
    proc = cli("status", check=False)
    assert proc.returncode == 3 and "NO TICKER IS ALIVE" in proc.stderr
    daemon = cli.daemon()
    status = cli.json("status")
    (ticker,) = [t for t in status["tickers"] if t["alive"]]
    assert (ticker["kind"], ticker["pid"]) == ("daemon", daemon.pid)
    assert status["warning"] is None


def test_daemon_sigterm_is_clean_and_pidfile(cli, tmp_path):
    pidfile = tmp_path / "d.pid"
    proc = cli.start("daemon", "--pidfile", str(pidfile))
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 15, what="pidfile")
    second = cli("daemon", "--pidfile", str(pidfile), check=False)
    assert second.returncode == 1 and "another daemon holds" in second.stderr
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert not pidfile.exists()
    con = sqlite3.connect(cli.db)
    assert con.execute("SELECT COUNT(*) FROM tickers").fetchone()[0] == 0


def test_gc_command(cli):
    cli("add", "g", "@yearly", "--overlap", "allow", "--", "true")
    for _ in range(3):
        cli("run", "g", "-f")
    out = json.loads(cli("gc", "--keep-runs", "1", "--keep-failures", "0", "--json").stdout)
    assert out["runs_deleted"] == 2 and out["audit_deleted"] == 0  # the audit is kept
    assert len(_runs(cli, "g")) == 1
    # the audit log's retention is its own: pruned only when asked, still verifiable
    kept = len(cli.json("audit")["records"])
    assert kept >= 4  # the create and the three runs
    time.sleep(1.1)  # every record is now more than a second old
    assert cli("gc", "--audit-max-age", "1s").stdout.endswith(
        f", and {kept} audit records\n")
    audit = cli.json("audit", "--verify")
    assert audit["records"] == [] and audit["verify"]["ok"]


def test_tick_is_quiet_and_registers(cli):
    proc = subprocess.run(cli.argv("tick"), capture_output=True, text=True, env=cli.env)
    assert proc.returncode == 0 and "started 0 run(s)" in proc.stdout
    cli("tick", "-q")
    kinds = [t["kind"] for t in cli.json("status")["tickers"]]
    assert kinds == ["tick"]  # one row per host, however often it ticks


@pytest.mark.postgres
def test_status_never_shows_the_store_password(pg_url, tmp_path):
    import psycopg

    from hermes_cron_ext.store.embedded import as_url
    from tests.conftest import CLI

    info = psycopg.conninfo.conninfo_to_dict(pg_url)
    info["password"] = secret = info.get("password") or "s3cret-Pw"  # trust auth ignores it
    cli = CLI(as_url(psycopg.conninfo.make_conninfo(**info)), str(tmp_path))
    for args in (("status", "--json"), ("status",)):
        proc = cli(*args, check=False)
        assert secret not in proc.stdout + proc.stderr
        assert "***" in proc.stdout


def test_run_with_parameters(cli):
    cli("add", "p", "@yearly", "--param", "n=1", "--", 'echo "n=$HERMES_CRON_PARAM_n"')
    out = cli("run", "p", "-p", "n=7", "-f")
    assert out.stdout.strip() == "n=7"
    assert _runs(cli, "p")[0]["parameters"] == {"n": 7}
    bad = cli("run", "p", "-p", "n=seven", check=False)
    assert bad.returncode == 2 and bad.stderr.strip() == (  # refused input: 2
        'hermes-cron: error: parameter n must be a whole number, not "seven"')


def test_graph_shows_a_pipeline_with_last_statuses(cli):
    cli("add", "extract", "@yearly", "--", "true")
    cli("add", "load", "@yearly", "--after", "extract", "--", "true")
    cli("add", "alert", "@yearly", "--after", "load:failure", "--", "true")
    cli("add", "alone", "@yearly", "--", "true")
    assert cli("graph", "load").stdout == (
        "0: extract [no run]\n1: load [no run]\n2: alert [no run]\n"
        "extract -> load\nload -> alert (on failure)\n")
    cli("run", "extract", check=False)  # no ticker: it starts the run itself (and load)
    wait_for(lambda: "1: load [succeeded]" in cli("graph", "alert").stdout, 30, 0.2,
             "load to run after extract")
    assert cli("graph", "alert").stdout.startswith("0: extract [succeeded]\n")
    assert cli.json("graph", "alert")["edges"][1] == {
        "from": cli.json("show", "load")["id"], "to": cli.json("show", "alert")["id"],
        "on": "failure"}
    assert "alone is in no pipeline" in cli("graph", "alone").stdout
    missing = cli("graph", "nope", check=False)
    assert missing.returncode != 0 and "nope" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_what_the_magics_have_the_cli_has_too(cli, tmp_path):
    """add --replace, status NAME, cancel JOB, artifact: one grammar (commands.py)."""
    cli("add", "etl", "@yearly", "--", "echo one")
    out = cli("add", "etl", "@daily", "--replace", "--", "echo", "two")
    assert out.stdout.startswith("etl updated: @daily (")
    assert cli.json("show", "etl")["command"] == ["echo", "two"]
    assert cli.json("show", "etl")["schedule"] == "@daily"
    countdown = re.compile(r"\(in [^)]*\)")  # it moves between the two reads
    assert countdown.sub("", cli("status", "etl").stdout) == countdown.sub(
        "", cli("show", "etl").stdout)
    assert cli.json("status", "etl")["name"] == "etl"
    both = cli("edit", "etl", "--enable", "--disable", check=False)
    assert both.returncode == 2 and both.stderr == (
        "hermes-cron: give --enable or --disable, not both\n")

    cli("add", "slow", "@yearly", "--", "sleep 30")
    run_id = cli("run", "slow").stdout.split()[1]
    wait_for(lambda: _status(cli, run_id) == "running", 30, what="the run to start")
    assert cli("cancel", "slow").stdout == f"run {run_id}: cancel requested\n"
    wait_for(lambda: _status(cli, run_id) == "cancelled", 30, what="the cancel")
    again = cli("cancel", "slow", check=False)
    assert again.returncode == 1 and again.stderr == (
        f"hermes-cron: error: slow has no running run (its last run {run_id} cancelled)\n")
    none = cli("artifact", "slow", check=False)
    assert none.returncode == 1 and f"run {run_id} has no executed notebook" in none.stderr

    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("print('from the notebook')")]
    nbformat.write(nb, str(tmp_path / "n.ipynb"))
    cli("add", "nb", "@yearly", "--kind", "notebook", "--", str(tmp_path / "n.ipynb"))
    cli("run", "nb", "-f")
    (run,) = _runs(cli, "nb")
    saved = cli("artifact", "nb").stdout  # default path: JOB-RUN.ipynb, here
    assert saved == (f"saved the executed notebook of run {run['id']} to "
                     f"nb-{run['id']}.ipynb\n")
    executed = nbformat.read(str(tmp_path / f"nb-{run['id']}.ipynb"), as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "from the notebook\n"


def test_alert_rules_on_the_command_line(cli):
    """``--alert RULE`` (repeatable): ``show`` lists the rules; a run they fire for has
    the ALERT badge in ``runs`` and ``show``; ``--alert ''`` clears them; a bad rule is a
    one-line error naming it, nothing stored."""
    cli("add", "counted", "@yearly", "--alert", "rows < 10", "--alert",
        "duration > 2 * median(20)", "--", "sh", "-c", "echo '::metric rows=5'")
    shown = cli("show", "counted").stdout
    assert "  alerts     rows < 10; duration > 2 * median(20)" in shown
    assert cli.json("show", "counted")["policy"]["alerts"] == [
        "rows < 10", "duration > 2 * median(20)"]
    cli("run", "counted", "-f")
    (run,) = _runs(cli, "counted")
    assert run["alerts"] == [{"rule": "rows < 10", "message": "rows = 5 < 10"}]
    lines = cli("runs", "counted").stdout.splitlines()
    assert lines[0].split()[:3] == ["RUN", "STATUS", "TRIGGER"] and len(lines) == 2
    assert run["id"] in lines[1] and lines[1].rstrip().endswith("ALERT rows < 10")
    assert re.search(rf"{run['id']}\s+succeeded .*exit=0  ALERT rows < 10$",
                     cli("show", "counted").stdout, re.M)
    cli("edit", "counted", "--alert", "")
    assert cli.json("show", "counted")["policy"]["alerts"] == []
    assert "alerts" not in cli("show", "counted").stdout.split("recent runs")[0]
    for args in (["add", "bad", "@daily", "--alert", "rows < 1 GiB per day", "--", "true"],
                 ["edit", "counted", "--alert", "rows << 3"]):
        proc = cli(*args, check=False)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        assert "alert rule 'rows" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert [j["name"] for j in cli.json("list")["jobs"]] == ["counted"]
    assert cli.json("show", "counted")["policy"]["alerts"] == []
