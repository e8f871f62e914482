"""One options schema, every front: the CLI, the magics, the REST validation, the
OpenAPI document and the panel's form each take exactly the options it declares."""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import re

import pytest

from hermes_cron_ext.domain import options
from hermes_cron_ext.domain.jobspec import policy_value, validate_new
from hermes_cron_ext.domain.models import Policy
from hermes_cron_ext.errors import InvalidInput
from hermes_cron_ext.frontends.cli import build_parser
from hermes_cron_ext.frontends.magics import _parsers
from hermes_cron_ext.server import openapi

NAMES = {o.name for o in options.OPTIONS}
FLAGGED = {o.name for o in options.OPTIONS if o.flag}
#: how the command-line fronts take the options without a flag
SPELLED = {"name": "name", "schedule": "schedule", "enabled": "disabled", "command": None}


def dests(parser: argparse.ArgumentParser) -> set[str]:
    return {a.dest for a in parser._actions}


def test_every_option_is_a_flag_or_says_how_it_is_spelled():
    for o in options.OPTIONS:
        assert o.flag or o.spelled, o.name
        assert o.permission in ("write", "execute"), o.name
        assert o.help, o.name
    assert NAMES - FLAGGED == set(SPELLED)


def test_the_policies_are_the_policy_model():
    """A field per policy option; its default is the option's (typed as the field says
    and accepted by the option's own check), and a job that sets no policy has them."""
    fields = {f.name: f for f in dataclasses.fields(Policy)}
    assert options.POLICY_FIELDS == set(fields)
    defaults = Policy()
    for o in options.OPTIONS:
        if o.policy:
            f = fields[o.name]  # a list's default is made afresh per Policy
            declared = f.default if f.default_factory is dataclasses.MISSING \
                else f.default_factory()
            assert declared == o.default, o.name
            assert getattr(defaults, o.name) == o.default, o.name
            kind = "None" if o.default is None else type(o.default).__name__
            assert kind in [t.partition("[")[0] for t in str(f.type).split(" | ")], (
                o.name, kind)
            assert policy_value(o, o.default) == o.default, o.name
    job = validate_new({"name": "plain", "schedule": "@daily", "command": "true"})
    assert job["policy"] == defaults


def subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("command", ["add", "edit"])
def test_the_cli_takes_every_option(command):
    got = dests(subparser(build_parser(), command))
    assert FLAGGED <= got
    assert {"name", "schedule" if command == "add" else "new_schedule"} <= got


@pytest.mark.parametrize("command", ["add", "edit", "cell"])
def test_the_magics_take_every_option(command):
    got = dests(_parsers()[command])
    # a %%cron cell is the code itself: it has no --kind or --code
    expected = FLAGGED - ({"kind", "code"} if command == "cell" else set())
    assert expected <= got
    assert not ({"kind", "code"} & got) if command == "cell" else True


def test_cli_and_magics_spell_each_option_the_same():
    cli = {a.dest: a.option_strings for a in subparser(build_parser(), "add")._actions}
    magics = {a.dest: a.option_strings for a in _parsers()["add"]._actions}
    for name in FLAGGED:
        assert cli[name] == magics[name], name


def test_a_flag_reads_back_as_the_field():
    parser = argparse.ArgumentParser()
    options.add_options(parser)
    args = parser.parse_args(["--tz", "UTC", "--retries", "2", "--retry-on-timeout", "true",
                              "--env", "A=1", "-p", "n=3", "--secret-env", "S=x",
                              "--idempotency-key", "k1"])
    assert options.fields_from_options(args) == {
        "timezone": "UTC", "retries": "2", "retry_on_timeout": True, "env": {"A": "1"},
        "parameters": {"n": 3}, "secret_env": {"S": "x"}, "idempotency_key": "k1"}


def test_rest_accepts_exactly_the_options():
    assert options.JOB_FIELDS | options.POLICY_FIELDS == NAMES | {"policy"}
    base = {"name": "j", "schedule": "@daily", "command": "true"}
    validate_new(base)
    with pytest.raises(InvalidInput) as err:
        validate_new({**base, "not_an_option": 1})
    assert err.value.field == "not_an_option"


def test_the_openapi_document_is_generated_from_the_options():
    doc = json.loads(openapi.document())
    schemas = doc["components"]["schemas"]
    assert set(schemas["JobInput"]["properties"]) == NAMES | {"policy"}
    assert set(schemas["JobChange"]["properties"]) == NAMES - {"idempotency_key"} | {"policy"}
    assert set(schemas["JobInput"]["properties"]["policy"]["properties"]) == \
        options.POLICY_FIELDS
    for o in options.OPTIONS:
        assert schemas["JobInput"]["properties"][o.name] == o.schema
    # a job's policy object in responses: every policy option, always there
    policy = schemas["Policy"]
    assert set(policy["required"]) == set(policy["properties"]) == options.POLICY_FIELDS
    for o in options.OPTIONS:
        if o.policy:
            assert {k: v for k, v in policy["properties"][o.name].items()
                    if k != "description"} == {k: v for k, v in o.schema.items()
                                               if k != "description"}
    assert schemas["Job"]["properties"]["policy"] == {"$ref": "#/components/schemas/Policy"}


def test_each_default_is_stated_once():
    """Help says a default by rendering the option's own (``{default}``), and the
    defaults that are not a policy's value (retention, output) are one constant each."""
    for o in options.OPTIONS:
        assert "{default}" not in o.help, o.name
        if "(default " in o.help and o.default is not None:
            assert f"(default {o.default_text}" in o.help, o.name
    assert options.BY_NAME["keep_runs"].help == \
        f"runs kept per job (default {options.KEEP_RUNS})"
    assert options.BY_NAME["keep_failures"].default_text == str(options.KEEP_FAILURES)
    assert options.BY_NAME["max_output"].default_text == "10M" == options.size_text(
        options.MAX_OUTPUT)
    assert options.BY_NAME["retry_max_delay"].help.endswith("(default 10m)")


def test_retention_and_output_defaults_are_read_not_repeated():
    """Every gc signature reads retention's constants (policy.py, where retention is
    decided); the output writer reads MAX_OUTPUT."""
    import inspect

    from hermes_cron_ext.domain import policy
    from hermes_cron_ext.ops.local import Operations
    from hermes_cron_ext.store import AsyncStore, output
    from hermes_cron_ext.store.base import Store
    from hermes_cron_ext.store.sql import SQLStore

    assert (options.KEEP_RUNS, options.KEEP_FAILURES) == (policy.KEEP_RUNS,
                                                          policy.KEEP_FAILURES)
    for gc in (Operations.gc, AsyncStore.gc, Store.gc, SQLStore.gc):
        params = inspect.signature(gc).parameters
        assert (params["keep_runs"].default, params["keep_failures"].default,
                params["max_age"].default) == (policy.KEEP_RUNS, policy.KEEP_FAILURES,
                                               policy.MAX_AGE), gc.__qualname__
    assert output.DEFAULT_MAX_BYTES == options.MAX_OUTPUT
    assert options.BY_NAME["enabled"].help.startswith(
        "fire on its schedule and after its upstreams (default true;")


def test_every_field_permission_comes_from_the_options():
    assert {k for k, v in options.FIELD_PERMISSIONS.items() if v == "execute"} == {
        o.name for o in options.OPTIONS if o.permission == "execute"}
    assert options.permission_for("no-such-field") == "execute"  # fail closed


FORM = pathlib.Path(__file__).resolve().parents[2] / "labextension" / "src" / "form.ts"


def test_the_panel_form_is_built_from_the_options():
    """The form lays out some options itself (``_row('name', ...)`` and the policies in
    ``POLICY_ROWS``) and builds a row for every other option the schema marks ``form``;
    it must not invent fields, and it takes labels, help, choices, their labels,
    defaults and ranges from the options (``OPTIONS``, generated.ts), not its own copy."""
    source = FORM.read_text()
    laid_out = set(re.findall(r"this\._row\('([a-z_]+)'", source))
    policy_rows = set(re.findall(r"'([a-z_]+)'", re.search(
        r"const POLICY_ROWS = \[(.*?)\];", source).group(1)))
    form = {o.name for o in options.OPTIONS if o.form}
    assert laid_out <= form, laid_out - form
    assert policy_rows <= {o.name for o in options.OPTIONS if o.form and o.policy}
    assert "OPTIONS } from './api'" in source  # the rest come from the schema
    assert "_select('" not in source  # every chooser is an option's enum
    policies = "|".join(sorted(options.POLICY_FIELDS))
    assert not re.search(rf"_input\('({policies})'", source)  # built by _control
    for o in options.OPTIONS:
        if o.form and o.name != "command":  # command's label changes with its kind
            assert f"'{o.label}'" not in source, o.name
        for value, label in (o.choice_labels or {}).items():
            assert f"['{value}', '" not in source, (o.name, value)  # no [value, label] pairs
            assert o.name == "kind" or label not in source, (o.name, label)


def test_options_json_lists_the_schema():
    listed = json.loads(options_json := openapi.options_json())["options"]
    assert [o["name"] for o in listed] == [o.name for o in options.OPTIONS]
    assert options_json.startswith(b"{")
