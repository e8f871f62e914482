"""Parameters a notebook declares (its ``parameters`` cell) and the check of values
given when a run is asked for."""

from __future__ import annotations

import json

import pytest

from hermes_cron_ext.domain.parameters import check, declared
from hermes_cron_ext.errors import InvalidInput


def notebook(source: str, tags=("parameters",)) -> str:
    return json.dumps({"cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "# report"},
        {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": source},
        {"cell_type": "code", "metadata": {}, "source": "print(n)"}]})


SOURCE = ('n = 3\nrate = 0.5\nverbose = False\nname = "all"\nday = "2026-11-01"\n'
          'ids = [1, 2]\nopts = {"a": 1}\nwhen = compute()  # not a literal\n')


def test_the_parameters_cell_declares_names_types_and_defaults():
    assert declared(notebook(SOURCE)) == [
        {"name": "n", "type": "int", "default": 3},
        {"name": "rate", "type": "float", "default": 0.5},
        {"name": "verbose", "type": "bool", "default": False},
        {"name": "name", "type": "str", "default": "all"},
        {"name": "day", "type": "date", "default": "2026-11-01"},
        {"name": "ids", "type": "list", "default": [1, 2]},
        {"name": "opts", "type": "dict", "default": {"a": 1}},
        {"name": "when", "type": "any", "default": None},
    ]


def test_no_parameters_cell_declares_nothing():
    assert declared(notebook("n = 3", tags=())) == []
    assert declared(notebook("n = (", tags=("parameters",))) == []
    with pytest.raises(InvalidInput):
        declared("{not json")


SPEC = declared(notebook(SOURCE))


@pytest.mark.parametrize("values", [
    {"n": 5}, {"rate": 2}, {"rate": 2.5}, {"verbose": True}, {"day": "2026-02-28"},
    {"ids": []}, {"when": object.__name__}, {},
])
def test_values_of_the_declared_type_pass(values):
    assert check(values, SPEC) == values


@pytest.mark.parametrize(("values", "field", "words"), [
    ({"n": "5"}, "parameters.n", "a whole number"),
    ({"n": True}, "parameters.n", "a whole number"),
    ({"rate": "fast"}, "parameters.rate", "a number"),
    ({"verbose": "yes"}, "parameters.verbose", "true or false"),
    ({"day": "2026-02-30"}, "parameters.day", "a date"),
    ({"ids": "1,2"}, "parameters.ids", "a list"),
    ({"typo": 1}, "parameters.typo", "declares no parameter 'typo'"),
])
def test_a_wrong_value_is_refused_naming_the_parameter(values, field, words):
    with pytest.raises(InvalidInput) as err:
        check(values, SPEC)
    assert err.value.field == field and words in err.value.message


def test_with_nothing_declared_any_value_of_any_name_passes():
    assert check({"x": [1], "y": "z"}, []) == {"x": [1], "y": "z"}
    with pytest.raises(InvalidInput):
        check({"not a name": 1}, [])
