"""``hermes-cron export / apply / revisions / revert / audit`` as an operator uses them:
real processes on a real store file."""

from __future__ import annotations

import getpass
import os
import sqlite3

pytest_plugins = ("tests.notebook_fixtures",)


def test_export_apply_round_trip_into_an_empty_store(cli, tmp_path):
    cli("add", "etl", "0 2 * * *", "--tz", "Europe/Berlin", "--retries", "3",
        "--secret-env", "TOKEN=s3cret", "--notify", "json://hooks.example.com/t0k", "--",
        "python", "etl.py")
    cli("add", "report", "--after", "etl:failure", "--tz", "UTC", "--", "echo", "done")
    text = cli("export").stdout
    assert "s3cret" not in text and "t0k" not in text
    assert "# set HERMES_CRON_SECRET_ETL_TOKEN to this secret's value" in text
    (tmp_path / "jobs.yaml").write_text(text)

    other = type(cli)(str(tmp_path / "other.db"), cli.cwd)
    other.env |= {"HERMES_CRON_SECRET_ETL_TOKEN": "s3cret",
                  "HERMES_CRON_NOTIFY_ETL_1": "json://hooks.example.com/t0k"}
    out = other("apply", "jobs.yaml").stdout
    assert out.splitlines()[:2] == ["+ create etl", "+ create report"]
    assert out.splitlines()[-1] == "applied: 2 created, 0 changed, 0 deleted"
    assert other("export").stdout == text
    assert other.json("show", "report")["managed_by"] == "jobs.yaml"
    again = other("apply", "jobs.yaml").stdout
    assert "nothing to change: the jobs match jobs.yaml" in again


def test_apply_prints_the_plan_and_a_dry_run_changes_nothing(cli, tmp_path):
    cli("add", "etl", "0 2 * * *", "--tz", "UTC", "--", "true")
    cli("add", "old", "@daily", "--tz", "UTC", "--", "true")
    path = tmp_path / "jobs.yaml"
    path.write_text(cli("export").stdout)
    cli("apply", str(path))
    path.write_text(path.read_text().replace("0 2 * * *", "0 3 * * *").replace(
        "  old:\n    schedule: '@daily'\n    timezone: UTC\n    command: 'true'\n", ""))
    interpreter = cli.json("show", "etl")["interpreter"]
    assert interpreter in path.read_text()
    out = cli("apply", str(path), "--dry-run", "--prune").stdout
    assert out.splitlines() == ["~ change etl", "    schedule: 0 2 * * * -> 0 3 * * *",
                                "- delete old", "dry run: nothing changed"]
    assert cli.json("show", "etl")["schedule"] == "0 2 * * *"
    plan = cli.json("apply", str(path), "--prune")
    assert plan["applied"] and [d["name"] for d in plan["delete"]] == ["old"]
    assert cli.json("show", "etl")["schedule"] == "0 3 * * *"
    assert cli("show", "old", check=False).returncode != 0


def test_an_edit_of_a_managed_job_prints_the_warning(cli, tmp_path):
    cli("add", "etl", "@daily", "--tz", "UTC", "--", "true")
    (tmp_path / "jobs.yaml").write_text(cli("export").stdout)
    cli("apply", "jobs.yaml")
    proc = cli("edit", "etl", "--retries", "2")
    assert ("warning: managed by jobs.yaml: the next apply will undo this edit"
            in proc.stderr)


def test_bad_files_are_one_line_and_store_nothing(cli, tmp_path):
    cases = {
        "bad.yaml": ("jobs:\n  etl:\n    schedule: '@daily'\n    command: 'true'\n"
                     "    retries: many\n", "line 2: job etl: retries:"),
        "unknown.yaml": ("jobs:\n  etl:\n    schedule: '@daily'\n    colour: red\n",
                         "job etl: colour: unknown field 'colour'"),
        "secret.yaml": ("jobs:\n  etl:\n    schedule: '@daily'\n    command: 'true'\n"
                        "    secret_env:\n      T: ${NOT_SET_ANYWHERE}\n",
                        "set the environment variable NOT_SET_ANYWHERE"),
    }
    for name, (text, said) in cases.items():
        (tmp_path / name).write_text(text)
        proc = cli("apply", name, check=False)
        assert proc.returncode == 2 and said in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    proc = cli("apply", "missing.yaml", check=False)
    assert proc.returncode == 2 and "cannot read missing.yaml" in proc.stderr
    assert cli.json("list")["jobs"] == []


def test_revisions_revert_and_audit(cli, tmp_path):
    cli("add", "etl", "0 2 * * *", "--tz", "UTC", "--", "true")
    cli("edit", "etl", "--schedule", "0 5 * * *")
    out = cli("revisions", "etl").stdout.splitlines()
    assert out[0].split() == ["REV", "AT", "ACTOR", "ORIGIN", "ACTION", "CHANGED"]
    assert out[1].split()[0] == "2" and "cli" in out[1] and "schedule" in out[1]
    assert getpass.getuser() in out[1]
    rev = cli.json("revisions", "etl", "--rev", "1")
    assert rev["spec"]["schedule"] == "0 2 * * *"
    assert "reverted to revision 1" in cli("revert", "etl", "--to", "1").stdout
    assert cli.json("show", "etl")["schedule"] == "0 2 * * *"
    audit = cli.json("audit", "--job", "etl", "--verify")
    assert [r["action"] for r in audit["records"]] == ["revert", "edit", "create"]
    assert {r["job"] for r in audit["records"]} == {"etl"}
    assert audit["verify"]["ok"]
    assert "the hash chain is intact" in cli("audit", "--since", "7d", "--verify").stdout
    with sqlite3.connect(cli.db) as conn:
        conn.execute("DELETE FROM audit WHERE seq = 2")
    proc = cli("audit", "--verify", check=False)
    assert proc.returncode == 1 and "BROKEN at record" in proc.stdout
    assert os.path.exists(cli.db)


# -- %cron export / apply / revisions (the same commands in a notebook) -------------------

def test_magics_export_apply_and_revisions(local_env, tmp_path, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    if "hermes_cron_ext" not in shell.extension_manager.loaded:
        shell.run_line_magic("load_ext", "hermes_cron_ext")

    def cron(line: str, cell: str | None = None) -> str:
        if cell is None:
            shell.run_line_magic("cron", line)
        else:
            shell.run_cell_magic("cron", line, cell)
        return capsys.readouterr().out

    cron("add etl '0 2 * * *' --tz UTC -- true")
    text = cron("export")
    assert text.startswith("# hermes-cron job definitions") and "  etl:\n" in text
    path = tmp_path / "nb.yaml"
    path.write_text(text.replace("0 2 * * *", "0 4 * * *"))
    out = cron(f"apply {path} --dry-run")
    assert out.splitlines() == ["~ change etl", "    schedule: 0 2 * * * -> 0 4 * * *",
                                f"    managed_by: none -> {path.name}",
                                "dry run: nothing changed"]
    out = cron("apply --source cells.yaml", text.replace("0 2 * * *", "0 6 * * *"))
    assert out.splitlines()[-1] == "applied: 0 created, 1 changed, 0 deleted"
    shell.run_line_magic("cron", "edit etl --retries 1")
    assert "managed by cells.yaml: the next apply will undo this edit" in capsys.readouterr().err
    revisions = [line.split() for line in cron("revisions etl").splitlines()]
    assert [r[0] for r in revisions[1:]] == ["3", "2", "1"]
    assert revisions[1][5:8] == ["magics", "update", "retries"]
    assert revisions[2][5:7] == ["apply", "update"]  # the file's apply
    assert revisions[3][5:7] == ["magics", "create"]
