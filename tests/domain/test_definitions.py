"""Definitions as code (``domain/definitions.py``): the canonical file round-trips every
option of the schema byte for byte (the job is built from ``OPTIONS``, so a new option
cannot be forgotten), the plan says what applying a file changes and nothing when it is
applied again, and a bad file is refused naming the line, the job and the field."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
import yaml

from hermes_cron_ext.domain import definitions as defs
from hermes_cron_ext.domain.jobspec import validate_new
from hermes_cron_ext.domain.models import Job
from hermes_cron_ext.domain.options import OPTIONS
from hermes_cron_ext.errors import InvalidInput

NOW = 1_800_000_000.0  # 2027-01-15

#: a value other than the default for every option of the schema
NON_DEFAULT: dict[str, Any] = {
    "name": "every-option",
    "kind": "python",
    "schedule": "0 3 * * 1-5",
    "at": None,  # a second job: "@at", below
    "timezone": "Europe/Paris",
    "command": "job.py",
    "code": "import sys\nprint(sys.argv)\n",
    "interpreter": "/usr/bin/python3",
    "cwd": "/srv/jobs",
    "env": {"MODE": "full", "N": "3"},
    "secret_env": {"API_TOKEN": "s3cret"},
    "parameters": {"n": 3, "label": "x"},
    "kernel": "python3",
    "description": "every option at once",
    "executor": "dask://scheduler:8786",
    "after": [{"job": "upstream", "on": "failure"}],
    "shares": {"data-team": "read"},
    "enabled": False,
    "idempotency_key": "k-1",
    "timeout": 300,
    "kill_grace": 5,
    "retries": 3,
    "retry_delay": 20,
    "retry_max_delay": 900,
    "retry_on_timeout": True,
    "overlap": "queue",
    "misfire": "skip",
    "starting_deadline": 60,
    "max_failures": 2,
    "jitter": 7,
    "notify_url": "https://hooks.example.com/fail",
    "ping_url": "https://hc.example.com/ping/abc",
    "notify": ["mailto://user:pw@smtp.example.com?to=me@example.com",
               "json://hooks.example.com/token"],
    "notify_on": ["failure", "recovered"],
    "late_after": 1800,
    "keep_runs": 3,
    "keep_failures": 2,
    "max_output": 8192,
    "alerts": ["rows < 1000"],
}
SECRETS = {"HERMES_CRON_SECRET_EVERY_OPTION_API_TOKEN": "s3cret",
           "HERMES_CRON_NOTIFY_EVERY_OPTION_1": NON_DEFAULT["notify"][0],
           "HERMES_CRON_NOTIFY_EVERY_OPTION_2": NON_DEFAULT["notify"][1]}


def test_every_option_has_a_non_default_value_here():
    assert set(NON_DEFAULT) == {o.name for o in OPTIONS}
    for o in OPTIONS:
        if o.name not in ("at", "name"):
            assert NON_DEFAULT[o.name] != o.default, o.name


class Store:
    """A store in miniature: jobs from validated fields, ids from names."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}

    def create(self, fields: dict[str, Any], managed_by: str | None = None) -> Job:
        fields = dict(fields)
        fields.pop("idempotency_key", None)
        names = {j.name: j.id for j in self.jobs.values()}
        fields["after"] = [{"job": names.get(a["job"], a["job"]), "on": a["on"]}
                           for a in fields["after"]]
        job = Job(id=f"j_{len(self.jobs):016x}", **fields)
        job.managed_by = managed_by  # type: ignore[attr-defined]
        self.jobs[job.id] = job
        return job

    def apply(self, text: str, environ: dict[str, str], source: str = "jobs.yaml") -> defs.Plan:
        plan = defs.plan(list(self.jobs.values()), defs.parse(text, environ, now=NOW),
                         source=source)
        for fj in sorted(plan.creates, key=lambda f: bool(f.fields["after"])):
            self.create(fj.fields, source)
        return plan

    def export(self) -> str:
        return defs.export(list(self.jobs.values()))


def filled() -> Store:
    store = Store()
    store.create(validate_new({"name": "upstream", "schedule": "@hourly",
                               "command": "true", "timezone": "UTC",
                               "interpreter": "/usr/bin/python3"}, now=NOW))
    spec = {k: v for k, v in NON_DEFAULT.items() if k != "at"}
    store.create(validate_new(spec, now=NOW))
    store.create(validate_new({"name": "once", "at": "2027-02-01T09:00:00+00:00",
                               "command": "echo once", "timezone": "UTC",
                               "interpreter": "/usr/bin/python3"}, now=NOW))
    return store


def test_export_then_apply_into_an_empty_store_gives_the_same_bytes():
    text = filled().export()
    again = Store()
    plan = again.apply(text, SECRETS)
    assert sorted(c.name for c in plan.creates) == ["every-option", "once", "upstream"]
    assert again.export() == text
    # every job field, secrets included, is reproduced
    src, dst = ({j.name: defs.definition(j, {i.id: i.name for i in s.jobs.values()})
                 for j in s.jobs.values()} for s in (filled(), again))
    assert src == dst


def test_every_option_is_in_the_file_and_no_secret_value_is():
    text = filled().export()
    entry = yaml.safe_load(text)["jobs"]["every-option"]
    for o in OPTIONS:
        if o.name in defs.NOT_IN_FILE:
            assert o.name not in entry, o.name
        else:
            assert o.name in entry, f"{o.name} is not exported"
    assert yaml.safe_load(text)["jobs"]["once"]["schedule"] == "@at 2027-02-01T09:00:00+00:00"
    for secret in SECRETS.values():
        assert secret not in text
    assert entry["secret_env"] == {"API_TOKEN": "${HERMES_CRON_SECRET_EVERY_OPTION_API_TOKEN}"}
    assert "# set HERMES_CRON_NOTIFY_EVERY_OPTION_2 to this destination's URL" in text
    assert text.startswith("# hermes-cron job definitions") and defs.SCHEMA_ID in text


def test_options_are_in_the_schema_order_and_defaults_are_left_out():
    entry = yaml.safe_load(filled().export())["jobs"]
    order = [o.name for o in OPTIONS]
    keys = list(entry["every-option"])
    assert keys == sorted(keys, key=order.index)
    assert list(entry["upstream"]) == ["schedule", "timezone", "command", "interpreter"]


def test_applying_the_same_file_again_plans_nothing_even_without_the_secrets():
    store = filled()
    text = store.export()
    first = store.apply(text, {})
    assert not first.creates and not first.deletes
    assert {c.field for u in first.updates for c in u.changes} == {"managed_by"}
    for u in first.updates:
        u.job.managed_by = "jobs.yaml"  # type: ignore[attr-defined]
    second = store.apply(text, {})
    assert second.empty and sorted(second.unchanged) == ["every-option", "once", "upstream"]


def test_a_change_is_listed_field_by_field_with_secrets_masked():
    store = filled()
    text = store.export()
    text = text.replace("retries: 3", "retries: 4").replace("    description: every option at "
                                                            "once\n", "")
    env = SECRETS | {"HERMES_CRON_SECRET_EVERY_OPTION_API_TOKEN": "n3w",
                     "HERMES_CRON_NOTIFY_EVERY_OPTION_2": "json://other.example.com/t0k"}
    plan = store.apply(text, env)
    (update,) = [u for u in plan.updates if u.job.name == "every-option"]
    shown = {c["field"]: (c["before"], c["after"])
             for c in plan.to_json()["change"][
                 [c["name"] for c in plan.to_json()["change"]].index("every-option")]["changes"]}
    assert shown["retries"] == (3, 4)
    assert shown["description"] == ("every option at once", "")
    assert shown["secret_env"] == ({"API_TOKEN": defs.MASK}, {"API_TOKEN": defs.MASK})
    assert "t0k" not in json.dumps(shown) and "n3w" not in json.dumps(shown)
    assert update.fields["secret_env"] == {"API_TOKEN": "n3w"}
    assert update.fields["retries"] == 4 and update.fields["description"] == ""


def test_prune_deletes_only_jobs_this_file_manages():
    store = filled()
    for job in store.jobs.values():
        job.managed_by = "jobs.yaml"  # type: ignore[attr-defined]
    mine = store.create(validate_new({"name": "by-hand", "schedule": "@daily",
                                      "command": "true"}, now=NOW))
    other = store.create(validate_new({"name": "other-file", "schedule": "@daily",
                                       "command": "true"}, now=NOW), managed_by="other.yaml")
    text = store.export()
    entries = yaml.safe_load(text)
    del entries["jobs"]["once"], entries["jobs"]["by-hand"], entries["jobs"]["other-file"]
    small = yaml.safe_dump(entries)
    current = list(store.jobs.values())
    parsed = defs.parse(small, SECRETS, now=NOW)
    without = defs.plan(current, parsed, source="jobs.yaml")
    assert not without.deletes and sorted(without.kept) == ["by-hand", "once", "other-file"]
    pruned = defs.plan(current, parsed, source="jobs.yaml", prune=True)
    assert [j.name for j in pruned.deletes] == ["once"]
    assert sorted(pruned.kept) == [mine.name, other.name]


def test_an_unmanaged_job_of_the_same_name_is_adopted():
    store = filled()
    plan = defs.plan(list(store.jobs.values()),
                     defs.parse(store.export(), {}, now=NOW), source="team.yaml")
    for u in plan.updates:
        assert [c.to_json() for c in u.changes] == [
            {"field": "managed_by", "before": None, "after": "team.yaml"}]


def test_a_new_job_needs_its_secrets_set():
    text = filled().export()
    with pytest.raises(InvalidInput) as err:
        Store().apply(text, {})
    assert "job every-option" in err.value.message
    assert "HERMES_CRON_SECRET_EVERY_OPTION_API_TOKEN" in err.value.message


def test_machine_defaults_are_kept_by_an_existing_job_and_taken_by_a_new_one():
    text = "jobs:\n  a:\n    schedule: '@daily'\n    command: 'true'\n"
    parsed = defs.parse(text, now=NOW)
    plan = defs.plan([], parsed, source="f", defaults={"timezone": "Asia/Tokyo",
                                                        "interpreter": "/py"})
    fields = plan.creates[0].fields
    assert (fields["timezone"], fields["interpreter"]) == ("Asia/Tokyo", "/py")
    job = Job(id="j_0000000000000001", **{k: v for k, v in fields.items()
                                          if k != "idempotency_key"})
    job.managed_by = "f"  # type: ignore[attr-defined]
    again = defs.plan([job], defs.parse(text, now=NOW), source="f",
                      defaults={"timezone": "UTC", "interpreter": "/other"})
    assert again.empty


@pytest.mark.parametrize(("text", "said"), [
    ("jobs:\n  a:\n    schedule: '@daily'\n    command: 'true'\n    retries: many\n",
     "line 2: job a: retries:"),
    ("jobs:\n  ok:\n    schedule: '@daily'\n    command: 'true'\n  b:\n"
     "    schedule: nope\n    command: 'true'\n", "line 5: job b: schedule:"),
    ("jobs:\n  a:\n    schedule: '@daily'\n    command: 'true'\n    colour: red\n",
     "job a: colour: unknown field 'colour'"),
    ("jobs:\n  a:\n    schedule: '@daily'\n    command: 'true'\n    idempotency_key: x\n",
     "a create request's"),
    ("jobs:\n  a:\n    command: 'true'\n", "job a: schedule:"),
    ("jobs:\n  a: [1]\n", "job a: a job's entry must be a mapping"),
    ("jobs: [a]\n", "jobs must be a mapping"),
    ("other: 1\n", "the file must be one mapping"),
    ("jobs:\n  a: {schedule: '@daily'\n", "not YAML"),
    ("jobs:\n  'bad name':\n    schedule: '@daily'\n    command: 'true'\n", "job bad name"),
])
def test_a_bad_file_is_refused_naming_the_job_and_field(text, said):
    with pytest.raises(InvalidInput) as err:
        defs.parse(text, now=NOW)
    assert said in err.value.message


def test_a_job_twice_in_the_plan_is_refused():
    parsed = defs.parse("jobs:\n  a:\n    schedule: '@daily'\n    command: 'true'\n", now=NOW)
    with pytest.raises(InvalidInput, match="twice"):
        defs.plan([], parsed + [replace(parsed[0])], source="f")


def test_the_file_schema_covers_every_option_and_rejects_unknown_fields():
    schema = defs.file_schema()
    props = schema["properties"]["jobs"]["additionalProperties"]["properties"]
    assert set(props) == {o.name for o in OPTIONS} - {"name", "idempotency_key"}
    assert schema["$id"] == defs.SCHEMA_ID
    jsonschema = pytest.importorskip("jsonschema")
    data = yaml.safe_load(filled().export())
    jsonschema.validate(data, schema)
    data["jobs"]["upstream"]["colour"] = "red"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


def test_the_shipped_schema_is_current():
    from hermes_cron_ext.ops import definitions as generator
    assert generator.main(["--check"]) == 0, "run python -m hermes_cron_ext.ops.definitions --write"


def test_jobs_that_would_run_after_each_other_in_a_circle_are_refused():
    text = ("jobs:\n  a:\n    command: 'true'\n    after: [b]\n"
            "  b:\n    command: 'true'\n    after: [{job: a, 'on': failure}]\n")
    with pytest.raises(InvalidInput, match="in a circle: (a -> b -> a|b -> a -> b)"):
        defs.plan([], defs.parse(text, now=NOW), source="f")
    store = filled()  # every-option runs after upstream: upstream may not follow it
    text = ("jobs:\n  upstream:\n    schedule: '@hourly'\n    command: 'true'\n"
            "    after: [every-option]\n")
    with pytest.raises(InvalidInput, match="circle"):
        defs.plan(list(store.jobs.values()), defs.parse(text, now=NOW), source="f")
