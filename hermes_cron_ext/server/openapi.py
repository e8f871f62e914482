"""The OpenAPI document served at ``/api/cron/openapi.json``, and the panel's types.

Every shape a job has is declared once and generated here:

- from the options schema (``domain/options.py``): ``JobInput`` and ``JobChange`` (the
  create and change bodies), ``Policy`` (a job's ``policy``: every policy option, with
  its type and range) and ``Option`` (``GET /api/cron/options``, ``OPTION_JSON``);
- from the response tables next to each ``to_json`` (``JOB_JSON``, ``RUN_JSON``,
  ``EVENT_JSON``, ``TICKER_JSON`` in ``domain/models.py``): ``Job``, ``Run``, ``Event``
  and ``Ticker``, and the list pages ``JobPage`` and ``RunPage``;
- from the response tables of the two shapes that have no model, each beside the code
  that builds it: ``Backfill`` (``BACKFILL_JSON``, ``domain/models.py``: the store's
  ``get_backfill`` and a dry run) and ``Status`` (``STATUS_JSON``, ``ops/local.py``:
  ``status_report``), and ``Metrics`` with its ``MetricSeries`` and ``MetricPoint``
  (``METRICS_JSON``..., ``ops/local.py``: ``Operations.metrics``), and ``Search``,
  ``Timeline`` and ``Calendar`` with their parts (``SEARCH_JSON``..., ``ops/across.py``);
- ``labextension/src/generated.ts``: the same shapes as TypeScript (``IJob``,
  ``IPolicy``, ``IRun``, ``IOption``, ``IStatus``, ...) and the options themselves
  (``OPTIONS``), which the panel's form is built from.

The rest of ``openapi.json`` (the routes, ``Error``) is written by hand; the generated
schemas are written into it, so the committed file is the document as served. After
changing an option or a ``to_json``::

    python -m hermes_cron_ext.server.openapi --write

``--check`` exits 1 naming the files that are stale; tests/server/test_generated.py
fails the same way.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
from pathlib import Path

from hermes_cron_ext.domain.models import (
    ACTIVE_STATUSES,
    BACKFILL_JSON,
    BACKFILL_REQUIRED,
    EVENT_JSON,
    FAILED_STATUSES,
    JOB_JSON,
    JOB_KINDS,
    JOB_STATES,
    MISFIRE_POLICIES,
    OVERLAP_POLICIES,
    RUN_JSON,
    RUN_STATUSES,
    TICKER_JSON,
    TRIGGERS,
    UPSTREAM_ON,
)
from hermes_cron_ext.domain.options import OPTION_JSON, OPTIONS, json_properties
from hermes_cron_ext.ops.across import (
    CALENDAR_DAY_JSON,
    CALENDAR_JSON,
    SEARCH_HIT_JSON,
    SEARCH_JSON,
    SEARCH_MATCH_JSON,
    SLOT_JSON,
    TIMELINE_JSON,
    TIMELINE_RUN_JSON,
)
from hermes_cron_ext.ops.local import (
    METRIC_POINT_JSON,
    METRIC_SERIES_JSON,
    METRICS_JSON,
    NOTIFICATION_JSON,
    NOTIFICATIONS_JSON,
    STATUS_JSON,
)

PATH = os.path.join(os.path.dirname(__file__), "openapi.json")
#: the repository's panel sources (absent from an installed wheel)
TS_PATH = Path(__file__).resolve().parents[2] / "labextension" / "src" / "generated.ts"

_REF = "#/components/schemas/"
_CURSOR = {"type": ["string", "null"],
           "description": "fetches the next page; null: this was the last"}


def _ref(name: str) -> dict:
    return {"$ref": _REF + name}


def _closed(properties: dict, description: str) -> dict:
    """An object schema whose every field is always there."""
    return {"type": "object", "description": description, "required": list(properties),
            "properties": properties}


def schemas() -> dict[str, dict]:
    """The generated component schemas, by name."""
    policy = {o.name: {**o.schema, "description": o.schema.get("description", o.help)}
              for o in OPTIONS if o.policy}
    return {
        "JobInput": {"type": "object", "required": ["name"], "additionalProperties": False,
                     "description": "generated from the options schema (domain/options.py)",
                     "properties": json_properties(create=True)},
        "JobChange": {"type": "object", "additionalProperties": False,
                      "description": "generated from the options schema (domain/options.py)",
                      "properties": json_properties(create=False)},
        "Policy": {**_closed(policy, "a job's policies: every policy option (generated "
                                     "from domain/options.py)"),
                   "additionalProperties": False},
        "Option": _closed(OPTION_JSON, "one job option (domain/options.py, OPTION_JSON)"),
        "Job": {**_closed(JOB_JSON, "a job (Job.to_json, domain/models.py JOB_JSON)"),
                # added by a create when no ticker would fire the job
                "properties": {**JOB_JSON, "warning": {
                    "type": "string",
                    "description": "on a create: no ticker is alive to fire it"}}},
        "Run": _closed(RUN_JSON, "a run (Run.to_json, domain/models.py RUN_JSON)"),
        "JobPage": _closed({"jobs": {"type": "array", "items": _ref("Job")},
                            "cursor": _CURSOR}, "a page of jobs"),
        "RunPage": _closed({"runs": {"type": "array", "items": _ref("Run")},
                            "cursor": _CURSOR}, "a page of runs, newest first"),
        "Event": _closed(EVENT_JSON, "a change in the store (Event.to_json, "
                                     "domain/models.py EVENT_JSON)"),
        "Ticker": _closed(TICKER_JSON, "a ticker (Ticker.to_json, domain/models.py "
                                       "TICKER_JSON)"),
        "Status": _closed(STATUS_JSON, "who is ticking and how many jobs wait "
                                       "(status_report, ops/local.py STATUS_JSON)"),
        "Backfill": {**_closed(BACKFILL_JSON, "a backfill and its progress (built by the "
                                              "store and a dry run: domain/models.py "
                                              "BACKFILL_JSON)"),
                     "required": list(BACKFILL_REQUIRED)},
        "MetricPoint": _closed(METRIC_POINT_JSON, "one run's value of a metric "
                                                  "(ops/local.py METRIC_POINT_JSON)"),
        "MetricSeries": _closed(METRIC_SERIES_JSON, "one metric of a job's runs: its "
                                                    "newest points, oldest first, and "
                                                    "their summary (METRIC_SERIES_JSON)"),
        "Metrics": _closed(METRICS_JSON, "the metrics of a job's runs (Operations.metrics, "
                                         "ops/local.py METRICS_JSON)"),
        "Notification": _closed(NOTIFICATION_JSON, "one delivery of the notification "
                                                   "outbox (ops/local.py NOTIFICATION_JSON)"),
        "Notifications": {**_closed(NOTIFICATIONS_JSON, "the outbox, newest first "
                                                        "(Operations.notifications)"),
                          "required": ["notifications", "cursor"]},
        "SearchMatch": _closed(SEARCH_MATCH_JSON, "one matching line of a run's log "
                                                  "(ops/across.py SEARCH_MATCH_JSON)"),
        "SearchHit": _closed(SEARCH_HIT_JSON, "a run whose log matches "
                                              "(ops/across.py SEARCH_HIT_JSON)"),
        "Search": _closed(SEARCH_JSON, "runs whose logs match, newest first "
                                       "(Operations.search, ops/across.py)"),
        "TimelineRun": _closed(TIMELINE_RUN_JSON, "a run on the timeline "
                                                  "(ops/across.py TIMELINE_RUN_JSON)"),
        "Slot": _closed(SLOT_JSON, "a coming fire time (ops/across.py SLOT_JSON)"),
        "Timeline": _closed(TIMELINE_JSON, "runs over a time range and the coming slots "
                                           "(Operations.timeline, ops/across.py)"),
        "CalendarDay": _closed(CALENDAR_DAY_JSON, "a job's runs on one day, by outcome "
                                                  "(ops/across.py CALENDAR_DAY_JSON)"),
        "Calendar": _closed(CALENDAR_JSON, "a job's runs per day of its time zone "
                                           "(Operations.calendar, ops/across.py)"),
    }


def build(doc: dict) -> dict:
    """*doc* (the hand-written document) with the generated schemas put in."""
    doc = json.loads(json.dumps(doc))
    doc["components"]["schemas"].update(schemas())
    return doc


def _load() -> dict:
    with open(PATH, encoding="utf-8") as f:
        return json.load(f)


def openapi_text() -> str:
    """``openapi.json`` as it should be committed."""
    return json.dumps(build(_load()), indent=1, ensure_ascii=False) + "\n"


@functools.cache
def document() -> bytes:
    """The whole document, as served (built once per process; call it off the loop)."""
    return json.dumps(build(_load())).encode()


def options_json() -> bytes:
    """``GET /api/cron/options``: the options schema, for the panel's form and scripts."""
    return json.dumps({"options": [o.to_json() for o in OPTIONS]}).encode()


# -- TypeScript ---------------------------------------------------------------------------

#: enums the panel names: a JSON enum with exactly these values is written as the name
TS_ENUMS: dict[str, tuple] = {
    "JobKind": JOB_KINDS, "JobState": JOB_STATES, "RunStatus": RUN_STATUSES,
    "Trigger": TRIGGERS, "Misfire": MISFIRE_POLICIES, "Overlap": OVERLAP_POLICIES,
    "UpstreamOn": UPSTREAM_ON,
}
#: lists of run statuses the panel tests against
TS_STATUS_LISTS: dict[str, tuple] = {"ACTIVE": ACTIVE_STATUSES, "FAILED": FAILED_STATUSES}
#: the interfaces written, each from the component schema of the same name
TS_INTERFACES = ("Policy", "Job", "Run", "JobPage", "RunPage", "Option", "Event", "Ticker",
                 "Status", "Backfill", "MetricPoint", "MetricSeries", "Metrics",
                 "Notification", "Notifications")
#: fields whose TypeScript type is not their schema's
TS_OVERRIDES = {("Option", "schema"): "IJSONSchema"}

_TS_HEAD = """\
/**
 * GENERATED by `python -m hermes_cron_ext.server.openapi --write` from the options
 * schema (hermes_cron_ext/domain/options.py) and the response tables next to each
 * to_json (hermes_cron_ext/domain/models.py, STATUS_JSON in ops/local.py): do not edit.
 * tests/server/test_generated.py fails when this file is stale.
 */

/** The part of JSON Schema the options use. */
export interface IJSONSchema {
  type?: string | string[];
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  maxLength?: number;
  minItems?: number;
  pattern?: string;
  format?: string;
  description?: string;
  items?: IJSONSchema;
  oneOf?: IJSONSchema[];
  properties?: { [key: string]: IJSONSchema };
  required?: string[];
  additionalProperties?: boolean | IJSONSchema;
  [keyword: string]: unknown;
}
"""

_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


def _ts_literal(value) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return json.dumps(value)


def _ts_type(schema: dict, indent: str = "") -> str:
    """The TypeScript type of a JSON schema."""
    if "$ref" in schema:
        return "I" + schema["$ref"].removeprefix(_REF)
    if "oneOf" in schema or "anyOf" in schema:
        options = schema["oneOf"] if "oneOf" in schema else schema["anyOf"]
        return " | ".join(_ts_type(s, indent) for s in options)
    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if "enum" in schema:
        values = [v for v in schema["enum"] if v is not None]
        named = next((n for n, e in TS_ENUMS.items() if tuple(values) == tuple(e)), None)
        parts = [named] if named else [_ts_literal(v) for v in values]
        if None in schema["enum"] or "null" in types:
            parts.append("null")
        return " | ".join(parts)
    if not types:
        return "unknown"
    parts = []
    for t in types:
        if t in ("number", "integer"):
            parts.append("number")
        elif t in ("string", "boolean", "null"):
            parts.append(t)
        elif t == "array":
            item = _ts_type(schema["items"], indent) if "items" in schema else "unknown"
            parts.append(f"({item})[]" if " " in item and not item.startswith("{") else
                         f"{item}[]")
        else:  # object
            parts.append(_ts_object(schema, indent))
    return " | ".join(parts)


def _ts_fields(schema: dict, indent: str, owner: str = "") -> list[str]:
    required = set(schema.get("required", []))
    lines = []
    for name, prop in schema.get("properties", {}).items():
        if prop.get("description"):
            lines.append(f"{indent}/** {prop['description'].replace('*/', '* /')} */")
        key = name if _IDENT.match(name) else json.dumps(name)
        kind = TS_OVERRIDES.get((owner, name)) or _ts_type(prop, indent)
        lines.append(f"{indent}{key}{'' if name in required else '?'}: {kind};")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        lines.append(f"{indent}[key: string]: {_ts_type(extra, indent)};")
    elif not schema.get("properties") and extra is not False:
        lines.append(f"{indent}[key: string]: unknown;")
    return lines


def _ts_object(schema: dict, indent: str) -> str:
    inner = indent + "  "
    lines = _ts_fields(schema, inner)
    if not schema.get("properties"):  # a map: one line
        return "{ " + lines[0].strip().rstrip(";") + " }"
    return "{\n" + "\n".join(lines) + f"\n{indent}}}"


def typescript() -> str:
    """``labextension/src/generated.ts`` as it should be committed."""
    components = schemas()
    out = [_TS_HEAD]
    for name, values in TS_ENUMS.items():
        out.append(f"export type {name} = {' | '.join(_ts_literal(v) for v in values)};\n")
    for name, values in TS_STATUS_LISTS.items():
        out.append(f"export const {name}: RunStatus[] = "
                   f"[{', '.join(_ts_literal(v) for v in values)}];\n")
    for name in TS_INTERFACES:
        schema = components[name]
        out.append(f"/** {schema['description']} */")
        out.append(f"export interface I{name} {{")
        out.extend(_ts_fields(schema, "  ", name))
        out.append("}\n")
    out.append("/** Every job option, in the order the fronts list them (as GET "
               "/api/cron/options does). */")
    out.append("export const OPTIONS: IOption[] = [")
    out.extend(f"  {json.dumps(o.to_json(), ensure_ascii=False)}," for o in OPTIONS)
    out.append("];\n")
    return "\n".join(out)


# -- writing and checking -----------------------------------------------------------------

def generated() -> dict[str, str]:
    """Each generated file's path and the text it should have (the panel's only in a
    checkout, where its sources are)."""
    files = {PATH: openapi_text()}
    if TS_PATH.parent.is_dir():
        files[str(TS_PATH)] = typescript()
    return files


def stale() -> list[str]:
    """The generated files whose committed text is not what they would be now."""
    out = []
    for path, text in generated().items():
        try:
            with open(path, encoding="utf-8") as f:
                same = f.read() == text
        except FileNotFoundError:
            same = False
        if not same:
            out.append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hermes_cron_ext.server.openapi",
        description="Generate openapi.json's schemas and the panel's generated.ts from "
                    "domain/options.py and domain/models.py.")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write the generated files")
    mode.add_argument("--check", action="store_true",
                      help="exit 1 when a generated file is stale")
    args = parser.parse_args(argv)
    if args.check:
        paths = stale()
        for path in paths:
            print(f"stale: {path} (run python -m hermes_cron_ext.server.openapi --write)",
                  file=sys.stderr)
        return 1 if paths else 0
    for path, text in generated().items():
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
