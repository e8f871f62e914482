"""Parameters given when a run is asked for: what a notebook declares, and checking values.

A notebook declares its parameters papermill's way: a code cell tagged ``parameters``
whose assignments (``n = 3``, ``when = "2026-11-01"``) are the defaults. Their types
(int, float, bool, str, list, dict, date) make the form a front shows and the check a
value given at trigger time must pass: a wrong type is refused with the parameter named.
"""

from __future__ import annotations

import ast
import json
import re
from datetime import date
from typing import Any

from hermes_cron_ext.errors import InvalidInput

TYPES = ("int", "float", "bool", "str", "list", "dict", "date", "any")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def type_of(value: object) -> str:
    """The parameter type a default value stands for."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "date" if _DATE.match(value) else "str"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return "any"


def declared(notebook_text: str) -> list[dict[str, Any]]:
    """``[{"name", "type", "default"}]`` from the notebook's ``parameters`` cell, in the
    order written; ``[]`` when it has none. Values that are not literals are ``any``."""
    try:
        nb = json.loads(notebook_text)
    except ValueError:
        raise InvalidInput("the notebook is not valid JSON", field="command") from None
    for cell in nb.get("cells", []) if isinstance(nb, dict) else []:
        tags = (cell.get("metadata") or {}).get("tags") or []
        if cell.get("cell_type") != "code" or "parameters" not in tags:
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        try:
            tree = ast.parse(source)
        except SyntaxError:
            return []
        out = []
        for node in tree.body:
            target = node.targets[0] if isinstance(node, ast.Assign) and len(
                node.targets) == 1 else getattr(node, "target", None)
            value = getattr(node, "value", None)  # Assign and AnnAssign have one
            if not isinstance(target, ast.Name) or value is None:
                continue
            try:
                default = ast.literal_eval(value)
                kind = type_of(default)
            except (ValueError, SyntaxError, TypeError):
                default, kind = None, "any"
            out.append({"name": target.id, "type": kind, "default": default})
        return out
    return []


def check(values: dict[str, Any], spec: list[dict[str, Any]]) -> dict[str, Any]:
    """*values* given at trigger time, checked against the declared *spec*: each of the
    declared type (an int is a float too; a date is ``YYYY-MM-DD``); names not declared
    are refused when anything is declared. :raises InvalidInput: naming the parameter."""
    if not isinstance(values, dict):
        raise InvalidInput("parameters must be an object", field="parameters")
    types = {p["name"]: p["type"] for p in spec}
    for name, value in values.items():
        field = f"parameters.{name}"
        if not isinstance(name, str) or not name.isidentifier():
            raise InvalidInput(f"parameter {name!r} is not a valid name", field="parameters")
        if types and name not in types:
            raise InvalidInput(f"the notebook declares no parameter {name!r} (it has "
                               f"{', '.join(types)})", field=field)
        want = types.get(name, "any")
        ok = {
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "str": isinstance(value, str),
            "list": isinstance(value, list),
            "dict": isinstance(value, dict),
            "date": isinstance(value, str) and _is_date(value),
        }.get(want, True)
        if not ok:
            raise InvalidInput(f"parameter {name} must be {_article(want)}, not "
                               f"{json.dumps(value)[:60]}", field=field)
    return dict(values)


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return bool(_DATE.match(text))


def _article(kind: str) -> str:
    return {"int": "a whole number", "float": "a number", "bool": "true or false",
            "str": "a string", "list": "a list", "dict": "an object",
            "date": "a date (YYYY-MM-DD)"}.get(kind, kind)
