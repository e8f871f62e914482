"""Definitions as code through the operations, once on the store (``Operations``) and once
through a real Jupyter server (``RestClient``): export, apply (a plan; a dry run changes
nothing; applying again changes nothing; --prune deletes only what this file applied and
left it), a plan applies exactly what it printed, a job changed between the plan and the
apply is a conflict with nothing changed, revisions and revert, the audit log and its
check."""

from __future__ import annotations

import sqlite3
import uuid

import pytest
import yaml

from hermes_cron_ext.domain.access import Viewer
from hermes_cron_ext.errors import Conflict, Forbidden, InvalidInput, NotFound
from hermes_cron_ext.ops import Operations, RestClient
from hermes_cron_ext.ops.local import managed_warning

pytest_plugins = ("tests.notebook_fixtures",)


@pytest.fixture(params=["local", "rest"])
def ops(request, cron_server):
    client = (Operations(cron_server.db) if request.param == "local"
              else RestClient(cron_server.url, cron_server.token))
    yield client
    client.close()


@pytest.fixture
def names(ops):
    prefix = f"defs-{uuid.uuid4().hex[:8]}"
    made = [f"{prefix}-up", f"{prefix}-down", f"{prefix}-extra"]
    yield made
    for name in made:
        try:
            ops.remove(name)
        except NotFound:
            pass


def _make(ops, names, tmp_path) -> None:
    up, down, _ = names
    ops.add({"name": up, "schedule": "0 3 * * *", "command": "true", "timezone": "UTC",
             "cwd": str(tmp_path)})
    ops.add({"name": down, "after": [{"job": up, "on": "failure"}], "kind": "python",
             "code": "print('hi')\n", "timezone": "Europe/Paris", "cwd": str(tmp_path),
             "env": {"MODE": "x"}, "secret_env": {"TOKEN": "s3cret"},
             "notify": ["json://hooks.example.com/t0k3n"], "retries": 2, "timeout": 300,
             "description": "the downstream", "alerts": ["rows < 10"]})


def _secrets(monkeypatch, down: str) -> None:
    from hermes_cron_ext.domain.definitions import notify_ref, secret_ref

    monkeypatch.setenv(secret_ref(down, "TOKEN"), "s3cret")
    monkeypatch.setenv(notify_ref(down, 1), "json://hooks.example.com/t0k3n")


def test_export_then_apply_after_removal_gives_the_same_bytes(ops, names, tmp_path,
                                                              monkeypatch):
    up, down, _ = names
    _make(ops, names, tmp_path)
    text = ops.export([up, down])
    assert "s3cret" not in text and "t0k3n" not in text
    assert list(yaml.safe_load(text)["jobs"]) == sorted([up, down])
    ops.remove(down)
    ops.remove(up)
    _secrets(monkeypatch, down)
    source = f"{up}.yaml"
    plan = ops.apply(text, source=source)
    assert sorted(c["name"] for c in plan["create"]) == sorted([up, down])
    assert plan["applied"] and "s3cret" not in str(plan) and "t0k3n" not in str(plan)
    assert ops.export([up, down]) == text
    job = ops.job(down)
    assert job["managed_by"] == source and job["after"][0]["name"] == up
    assert job["env"]["TOKEN"] == "********"
    # applying it again changes nothing, even with no secret in the environment
    monkeypatch.delenv(next(iter(_refs(text))))
    again = ops.apply(text, source=source)
    assert not again["create"] and not again["change"] and not again["delete"]
    assert not again["applied"] and sorted(again["unchanged"]) == sorted([up, down])


def _refs(text: str) -> set[str]:
    from hermes_cron_ext.domain.definitions import references

    return references(text)


def test_a_dry_run_changes_nothing_and_the_apply_does_what_it_printed(ops, names,
                                                                      tmp_path):
    up, down, _ = names
    _make(ops, names, tmp_path)
    source = f"{up}.yaml"
    text = ops.export([up, down])
    ops.apply(text, source=source)
    before = ops.job(down)
    edited = text.replace("retries: 2", "retries: 4").replace("    timeout: 300\n", "")
    dry = ops.apply(edited, source=source, dry_run=True)
    (change,) = dry["change"]
    assert change["name"] == down
    assert {(c["field"], c["before"], c["after"]) for c in change["changes"]} == {
        ("retries", 2, 4), ("timeout", 300, None)}
    assert dry["dry_run"] and not dry["applied"]
    assert ops.job(down)["version"] == before["version"]
    done = ops.apply(edited, source=source)
    assert done["change"] == dry["change"] and done["applied"]
    after = ops.job(down)
    assert after["policy"]["retries"] == 4 and after["policy"]["timeout"] is None
    changed = {k for k in after["policy"] if after["policy"][k] != before["policy"][k]}
    assert changed == {"retries", "timeout"}


def test_prune_deletes_only_what_this_file_applied_and_left_it(ops, names, tmp_path):
    up, down, extra = names
    _make(ops, names, tmp_path)
    source = f"{up}.yaml"
    ops.apply(ops.export([up]), source=source)
    ops.add({"name": extra, "schedule": "@daily", "command": "true", "cwd": str(tmp_path)})
    ops.apply(ops.export([extra]), source=source)
    data = yaml.safe_load(ops.export([up]))
    only_up = yaml.safe_dump(data)
    kept = ops.apply(only_up, source=source)
    assert not kept["delete"] and extra in kept["kept"] and down in kept["kept"]
    pruned = ops.apply(only_up, source=source, prune=True)
    assert [d["name"] for d in pruned["delete"]] == [extra]
    with pytest.raises(NotFound):
        ops.job(extra)
    assert ops.job(down)["managed_by"] is None  # made by hand: never pruned
    assert ops.job(up)["managed_by"] == source


def test_an_edit_of_a_managed_job_warns_that_apply_will_undo_it(ops, names, tmp_path):
    up = names[0]
    _make(ops, names, tmp_path)
    ops.apply(ops.export([up]), source="team.yaml")
    assert ops.edit(up, {"description": "by hand"})["warning"] == managed_warning(
        "team.yaml")


def test_a_bad_file_is_refused_naming_the_job_and_field_nothing_stored(ops, names):
    up = names[0]
    text = f"jobs:\n  {up}:\n    schedule: '@daily'\n    command: 'true'\n    retries: -1\n"
    with pytest.raises(InvalidInput) as err:
        ops.apply(text, source="bad.yaml")
    assert f"job {up}" in err.value.message and "retries" in err.value.message
    with pytest.raises(NotFound):
        ops.job(up)


def test_revisions_and_revert(ops, names, tmp_path):
    up = names[0]
    _make(ops, names, tmp_path)
    ops.edit(up, {"schedule": "0 4 * * *", "retries": 3})
    page = ops.revisions(up)
    newest, first = page["revisions"][0], page["revisions"][-1]
    assert first["rev"] == 1 and first["action"] == "create"
    assert newest["changes"]["retries"] == [0, 3] and newest["origin"] in ("cli", "rest")
    assert newest["actor"]
    rev = ops.revision(up, 1)
    assert rev["spec"]["schedule"] == "0 3 * * *"
    job = ops.revert(up, 1)
    assert job["schedule"] == "0 3 * * *" and job["policy"]["retries"] == 0
    latest = ops.revisions(up, limit=1)["revisions"][0]
    assert latest["action"] == "revert" and latest["changes"]["retries"] == [3, 0]
    with pytest.raises(NotFound):
        ops.revision(up, 99)


def test_the_audit_log_records_the_actions(ops, names, tmp_path):
    up = names[0]
    _make(ops, names, tmp_path)
    ops.pause(up)
    out = ops.audit(job=up, verify=True)
    actions = [r["action"] for r in out["records"]]
    assert actions[:2] == ["pause", "create"]
    assert out["verify"]["ok"]


# -- the store's own: a race, a hub user, a tampered log ---------------------------------

def test_an_apply_with_a_dry_runs_plan_id_applies_only_that_plan(ops, names, tmp_path):
    """What a person was shown is what is applied: a plan_id of a dry run is refused
    once the jobs changed since (409, nothing changed), and accepted while they did not."""
    up, down, _ = names
    _make(ops, names, tmp_path)
    source = f"{up}.yaml"
    text = ops.export([up])
    ops.apply(text, source=source)
    edited = text.replace("0 3 * * *", "0 4 * * *")
    shown = ops.apply(edited, source=source, dry_run=True)
    ops.edit(up, {"retries": 3})  # someone else, after the plan was shown
    with pytest.raises(Conflict, match="plan again"):
        ops.apply(edited, source=source, plan_id=shown["plan_id"])
    assert ops.job(up)["schedule"] == "0 3 * * *"
    again = ops.apply(edited, source=source, dry_run=True)
    assert again["plan_id"] != shown["plan_id"]
    done = ops.apply(edited, source=source, plan_id=again["plan_id"])
    assert done["applied"] and done["plan_id"] == again["plan_id"]
    assert ops.job(up)["schedule"] == "0 4 * * *"


def test_a_job_changed_between_plan_and_apply_is_a_conflict(tmp_path, monkeypatch):
    db = str(tmp_path / "s.db")
    ops, other = Operations(db), Operations(db)
    ops.add({"name": "a", "schedule": "@daily", "command": "true", "cwd": str(tmp_path)})
    ops.apply(ops.export(), source="f.yaml")
    text = ops.export().replace("schedule: '@daily'", "schedule: '@hourly'")
    real = ops.store.apply_definitions

    def racing(*args, **kwargs):
        other.edit("a", {"retries": 9})  # between the plan and its transaction
        return real(*args, **kwargs)

    monkeypatch.setattr(ops.store, "apply_definitions", racing)
    with pytest.raises(Conflict, match="'a' was changed since the plan"):
        ops.apply(text, source="f.yaml")
    job = other.job("a")
    assert job["schedule"] == "@daily" and job["policy"]["retries"] == 9


def test_the_audit_log_is_for_admins_on_a_hub_store(tmp_path):
    ops = Operations(str(tmp_path / "s.db"))
    with pytest.raises(Forbidden):
        ops.as_user(Viewer("bob")).audit()
    assert ops.as_user(Viewer("root", admin=True)).audit()["records"] == []


def test_verify_finds_a_deleted_and_an_altered_record(tmp_path):
    db = str(tmp_path / "s.db")
    ops = Operations(db)
    ops.add({"name": "a", "schedule": "@daily", "command": "true", "cwd": str(tmp_path)})
    for _ in range(3):
        ops.pause("a")
        ops.resume("a")
    assert ops.audit(verify=True)["verify"]["ok"]
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 3")
    check = ops.audit(verify=True)["verify"]
    assert not check["ok"] and check["first_bad"] == 3
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit SET actor = (SELECT actor FROM audit WHERE seq = 2) "
                     "WHERE seq = 3")
        conn.execute("DELETE FROM audit WHERE seq = 5")
    check = ops.audit(verify=True)["verify"]
    assert not check["ok"] and check["first_bad"] == 5, check  # the missing one


# -- every option of the schema, through a real store of each backend ---------------------

@pytest.mark.parametrize("store_backend", ["sqlite", pytest.param("postgres", marks=(
    pytest.mark.postgres,))], indirect=True)
def test_every_option_round_trips_through_a_real_store(store_url, open_test_store, tmp_path,
                                                        monkeypatch):
    from tests.domain.test_definitions import NON_DEFAULT, SECRETS

    (tmp_path / "job.py").write_text("print(1)\n")
    spec = {k: v for k, v in NON_DEFAULT.items() if k != "at"} | {"cwd": str(tmp_path)}
    ops = Operations(open_test_store())
    ops.add({"name": "upstream", "schedule": "@hourly", "command": "true",
             "timezone": "UTC", "cwd": str(tmp_path)})
    ops.add(spec)
    ops.add({"name": "once", "at": "2099-02-01T09:00:00+00:00", "command": "echo once",
             "timezone": "UTC", "cwd": str(tmp_path)})
    text = ops.export()
    assert "s3cret" not in text and "smtp.example.com" not in text
    entry = yaml.safe_load(text)["jobs"]["every-option"]
    assert set(entry) == {o for o in NON_DEFAULT if o not in ("name", "at", "idempotency_key")}
    for name in ("every-option", "once", "upstream"):
        ops.remove(name)
    for var, value in SECRETS.items():
        monkeypatch.setenv(var, value)
    plan = ops.apply(text, source="all.yaml")
    assert sorted(c["name"] for c in plan["create"]) == ["every-option", "once", "upstream"]
    assert ops.export() == text
    job = ops.store.get_job("every-option")
    assert job.env["API_TOKEN"] == "s3cret" and job.policy.notify == NON_DEFAULT["notify"]
    assert not ops.apply(text, source="all.yaml")["applied"]
