"""Jobs as code: the canonical YAML file of job definitions, its JSON Schema, and the
plan that applying a file makes (pure: no I/O, no clock).

The file is one mapping, ``jobs:``, keyed by job name (the stable key). Each job lists
its fields in the options schema's order (``options.OPTIONS``), policies flat, and
leaves out every field at its default. Secrets are written by reference, never by
value: a ``secret_env`` value and a ``notify`` URL are ``${ENV_VAR}`` (export writes
``${HERMES_CRON_SECRET_<JOB>_<NAME>}`` and ``${HERMES_CRON_NOTIFY_<JOB>_<N>}``, each
with a comment naming the variable to set), resolved from the environment at apply.
A reference whose variable is not set keeps the value the job already has there, so a
file exported from a store applies back to it with no secret in the environment.

Export, then apply into an empty store, then export again gives the same bytes
(tests/domain/test_definitions.py builds a job with every option of the schema at a
non-default value). :func:`file_schema` is the file's JSON Schema, generated from the
options schema and shipped as ``jobs.schema.json`` (``python -m
hermes_cron_ext.ops.definitions --write``; ``--check`` fails when it is stale).

:func:`plan` compares the jobs a store has with a file: creates, changes field by field
(secrets masked), deletes, unchanged. A job that is not in the file is never deleted
without ``prune``; with it, only a job ``managed_by`` this same file is (a job made by
another front, or applied from another file, is listed as ``kept``). A file job whose
name an unmanaged job has adopts it: its fields become the file's and it is managed by
the file from then on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml  # type: ignore[import-untyped]

from hermes_cron_ext.domain import jobspec
from hermes_cron_ext.domain.models import Job
from hermes_cron_ext.domain.notifications import mask_url
from hermes_cron_ext.domain.options import BY_NAME, OPTIONS
from hermes_cron_ext.errors import InvalidInput

#: the schema's identity, named in every file's header and in ``jobs.schema.json``
SCHEMA_ID = "https://github.com/hermes-cron-ext/schemas/jobs-v1.json"
HEADER = ("# hermes-cron job definitions: hermes-cron apply FILE [--dry-run] [--prune]\n"
          f"# JSON Schema {SCHEMA_ID} (hermes_cron_ext/domain/jobs.schema.json)\n")

#: options that are not a definition's fields, and why
NOT_IN_FILE = {
    "name": "the key of the job's entry",
    "at": "written as its schedule, '@at TIME'",
    "idempotency_key": "a create request's, not the job's",
}
#: the fields of a job's entry, in the options schema's order
FILE_FIELDS: tuple[str, ...] = tuple(o.name for o in OPTIONS if o.name not in NOT_IN_FILE)
#: fields the file may leave out to mean "the machine's": a new job takes the applying
#: process's (zone, interpreter), a job that has one keeps it
MACHINE_DEFAULTS = ("timezone", "interpreter")
MASK = "********"
_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_SECONDS = {o.name for o in OPTIONS if o.unit == "seconds"}


def env_name(*parts: str) -> str:
    """An environment variable's name from parts: ``nightly-db.sync`` -> ``NIGHTLY_DB_SYNC``."""
    return "_".join(re.sub(r"[^A-Za-z0-9]+", "_", p).strip("_").upper() for p in parts)


def secret_ref(job: str, name: str) -> str:
    return env_name("HERMES_CRON_SECRET", job, name)


def notify_ref(job: str, n: int) -> str:
    return env_name("HERMES_CRON_NOTIFY", job, str(n))


# -- a job's definition -------------------------------------------------------------------

def _default(name: str) -> Any:
    return BY_NAME[name].default


def _is_default(name: str, value: Any) -> bool:
    default = _default(name)
    if value == default:
        return True
    return default is None and value in (None, "", {}, [])


def _number(name: str, value: Any) -> Any:
    """Seconds as written: a whole number as an integer (``300``, not ``300.0``)."""
    if name in _SECONDS and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def definition(job: Job, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every field of *job*'s definition (:data:`FILE_FIELDS`), defaults included, with
    secret values (``secret_env`` as ``{name: value}``); ``after`` names its upstreams
    (*names*: job id -> name)."""
    names = names or {}
    secrets = {k: v for k, v in job.env.items() if k in job.secret_env}
    out: dict[str, Any] = {
        "kind": job.kind, "schedule": job.schedule, "timezone": job.timezone,
        "command": job.command, "code": job.code, "interpreter": job.interpreter,
        "cwd": job.cwd, "env": {k: v for k, v in job.env.items() if k not in secrets},
        "secret_env": secrets, "parameters": dict(job.parameters), "kernel": job.kernel,
        "description": job.description, "executor": job.executor,
        "after": [{"job": names.get(a["job"], a.get("name") or a["job"]),
                   "on": a.get("on", "success")} for a in job.after or []],
        "shares": dict(job.shares), "enabled": job.enabled,
    }
    out |= {k: _copy(v) for k, v in vars(job.policy).items()}
    return {k: out[k] for k in FILE_FIELDS}


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def definition_of_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The definition of validated fields (``jobspec.validate_new``'s result)."""
    secrets = {k: v for k, v in fields["env"].items() if k in fields["secret_env"]}
    out = {k: fields.get(k) for k in FILE_FIELDS if not BY_NAME[k].policy}
    out["env"] = {k: v for k, v in fields["env"].items() if k not in secrets}
    out["secret_env"] = secrets
    out["after"] = [dict(a) for a in fields.get("after") or []]
    out |= {k: _copy(v) for k, v in vars(fields["policy"]).items()}
    return {k: out[k] for k in FILE_FIELDS}


def _entry(name: str, defn: dict[str, Any]) -> dict[str, Any]:
    """A job's entry in the file: defaults left out, secrets as references."""
    entry: dict[str, Any] = {}
    for key in FILE_FIELDS:
        value = defn[key]
        if _is_default(key, value):
            continue
        if key == "secret_env":
            value = {k: f"${{{secret_ref(name, k)}}}" for k in sorted(value)}
        elif key == "notify":
            value = [f"${{{notify_ref(name, i)}}}" for i in range(1, len(value) + 1)]
        elif key == "after":
            value = [{"job": a["job"]} | ({"on": a["on"]} if a["on"] != "success" else {})
                     for a in value]
        entry[key] = _number(key, value)
    return entry


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # lists indented under their key


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:  # code as a block, as it was written
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_presenter)
_COMMENT = re.compile(r"^(\s*(?:- |[A-Za-z_][A-Za-z0-9_]*: ))\$\{((HERMES_CRON_(?:SECRET|NOTIFY)"
                      r")_[A-Z0-9_]+)\}$")


def dump(definitions: Mapping[str, dict[str, Any]]) -> str:
    """The canonical file of *definitions* (job name -> :func:`definition`), by name."""
    body = {"jobs": {name: _entry(name, definitions[name]) for name in sorted(definitions)}}
    text = yaml.dump(body, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=100)
    lines = []
    for line in text.splitlines():
        m = _COMMENT.match(line)
        if m:
            what = "this secret's value" if m[3].endswith("SECRET") else "this destination's URL"
            line += f"  # set {m[2]} to {what}"
        lines.append(line)
    return HEADER + "\n".join(lines) + "\n"


def export(jobs: list[Job], names: Mapping[str, str] | None = None) -> str:
    """The canonical file of *jobs* (*names*: every job id -> name, for ``after``)."""
    names = dict(names or {}) | {j.id: j.name for j in jobs}
    return dump({j.name: definition(j, names) for j in jobs})


# -- reading a file -----------------------------------------------------------------------

@dataclass
class FileJob:
    """One job of a file, validated: *fields* as ``jobspec.validate_new`` returns them,
    *given* the fields the file wrote, *unresolved* the secret slots whose reference
    names a variable that is not set (``("secret_env", NAME)`` / ``("notify", N)``)."""

    name: str
    fields: dict[str, Any]
    given: set[str]
    unresolved: dict[tuple[str, Any], str] = field(default_factory=dict)
    line: int | None = None


def _where(name: str, line: int | None) -> str:
    return f"line {line}: job {name}" if line else f"job {name}"


def parse(text: str, environ: Mapping[str, str] | None = None, *,
          now: float | None = None, default_tz: str = "UTC") -> list[FileJob]:
    """The jobs of a file, each validated; *environ* resolves ``${VAR}`` references.

    :raises InvalidInput: naming the line, the job and the field (``field`` is the job's
        field; ``job`` set on the error's message)"""
    environ = environ or {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise InvalidInput(f"{where}not YAML: {getattr(exc, 'problem', None) or exc}") from None
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "jobs" and isinstance(value, yaml.MappingNode):
                lines = {k.value: k.start_mark.line + 1 for k, _ in value.value}
    if data is None:
        data = {"jobs": {}}
    if not isinstance(data, dict) or set(data) - {"jobs"}:
        raise InvalidInput("the file must be one mapping, jobs: {NAME: {field: value}}")
    jobs = data.get("jobs") or {}
    if not isinstance(jobs, dict):
        raise InvalidInput("jobs must be a mapping of job name to its fields", field="jobs")
    out = []
    for name, entry in jobs.items():
        name = str(name)
        line = lines.get(name)
        try:
            out.append(_parse_job(name, entry, environ, now, default_tz, line))
        except InvalidInput as exc:
            field_ = f" {exc.field}:" if exc.field else ""
            raise InvalidInput(f"{_where(name, line)}:{field_} {exc.message}",
                               field=exc.field) from None
    return out


def _parse_job(name: str, entry: Any, environ: Mapping[str, str], now: float | None,
               default_tz: str, line: int | None) -> FileJob:
    if entry is None:
        entry = {}
    if not isinstance(entry, dict):
        raise InvalidInput("a job's entry must be a mapping of its fields")
    unknown = [k for k in entry if k not in FILE_FIELDS and k != "at"]
    if unknown:
        key = str(unknown[0])
        why = f" ({NOT_IN_FILE[key]})" if key in NOT_IN_FILE else ""
        raise InvalidInput(f"unknown field {key!r}{why}", field=key)
    spec = dict(entry)
    unresolved: dict[tuple[str, Any], str] = {}
    secrets = spec.get("secret_env")
    if isinstance(secrets, dict):
        spec["secret_env"] = {k: _resolve(v, ("secret_env", k), environ, unresolved, "x")
                              for k, v in secrets.items()}
    notify = spec.get("notify")
    if isinstance(notify, list):
        spec["notify"] = [_resolve(v, ("notify", i), environ, unresolved,
                                   "json://unresolved.invalid/")
                          for i, v in enumerate(notify, 1)]
    if "after" in spec and isinstance(spec["after"], list):
        spec["after"] = [{"job": a} if isinstance(a, str) else a for a in spec["after"]]
    if spec.get("schedule") is None and "at" not in spec and not spec.get("after"):
        raise InvalidInput(jobspec.NO_TRIGGER, field="schedule")
    fields = jobspec.validate_new({"name": name, **spec}, default_tz, now=now)
    return FileJob(name, fields, set(entry), unresolved, line)


def _resolve(value: Any, slot: tuple[str, Any], environ: Mapping[str, str],
             unresolved: dict[tuple[str, Any], str], placeholder: str) -> Any:
    if not isinstance(value, str):
        return value
    m = _REF.match(value.strip())
    if not m:
        return value
    if m[1] in environ:
        return environ[m[1]]
    unresolved[slot] = m[1]
    return placeholder


def references(text: str) -> set[str]:
    """The environment variables a file's secrets refer to (``${VAR}`` in ``secret_env``
    and ``notify``); none when it is not a definitions file (:func:`parse` says why)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return set()
    jobs = data.get("jobs") if isinstance(data, dict) else None
    found = set()
    for entry in (jobs or {}).values() if isinstance(jobs, dict) else ():
        if not isinstance(entry, dict):
            continue
        secrets = entry.get("secret_env")
        notify = entry.get("notify")
        values = [*(secrets.values() if isinstance(secrets, dict) else ()),
                  *(notify if isinstance(notify, list) else ())]
        found |= {m[1] for v in values if isinstance(v, str) and (m := _REF.match(v.strip()))}
    return found


# -- the plan -----------------------------------------------------------------------------

def _shown(key: str, value: Any) -> Any:
    """A value as a plan shows it: secrets masked."""
    if key == "secret_env" and isinstance(value, dict):
        return dict.fromkeys(value, MASK)
    if key == "notify" and isinstance(value, list):
        return [mask_url(u) for u in value]
    return _number(key, value)


@dataclass
class Change:
    field: str
    before: Any
    after: Any

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "before": _shown(self.field, self.before),
                "after": _shown(self.field, self.after)}


@dataclass
class Update:
    job: Job
    changes: list[Change]
    #: the change to send (PATCH fields, real values; ``secret_env`` the whole map)
    fields: dict[str, Any]


@dataclass
class Plan:
    source: str
    creates: list[FileJob] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    deletes: list[Job] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: jobs not in the file that stay (unmanaged, another file's, or no --prune)
    kept: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.creates or self.updates or self.deletes)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "create": [{"name": c.name, "fields": {
                k: _shown(k, v) for k, v in definition_of_fields(c.fields).items()
                if not _is_default(k, v)}} for c in self.creates],
            "change": [{"name": u.job.name, "id": u.job.id,
                        "changes": [c.to_json() for c in u.changes]} for u in self.updates],
            "delete": [{"name": j.name, "id": j.id} for j in self.deletes],
            "unchanged": list(self.unchanged), "kept": list(self.kept),
        }


def managed_by(job: Job) -> str | None:
    return getattr(job, "managed_by", None)


def plan(current: list[Job], file_jobs: list[FileJob], *, source: str, prune: bool = False,
         defaults: Mapping[str, Any] | None = None) -> Plan:
    """What applying *file_jobs* (from *source*) to the store's *current* jobs does.

    *defaults* gives the machine defaults (:data:`MACHINE_DEFAULTS`) a new job that
    leaves them out takes; an existing job keeps its own."""
    defaults = defaults or {}
    names = {j.id: j.name for j in current}
    by_name = {j.name: j for j in current}
    out = Plan(source)
    seen = set()
    for fj in file_jobs:
        if fj.name in seen:
            raise InvalidInput(f"job {fj.name} is in the file twice")
        seen.add(fj.name)
        job = by_name.get(fj.name)
        if job is None:
            if fj.unresolved:
                (what, slot), var = next(iter(fj.unresolved.items()))
                raise InvalidInput(f"{_where(fj.name, fj.line)}: {what} {slot}: set the "
                                   f"environment variable {var} (the job is new, so it has "
                                   f"no value to keep)", field=what)
            for key in MACHINE_DEFAULTS:
                if key not in fj.given and defaults.get(key):
                    fj.fields[key] = defaults[key]
            out.creates.append(fj)
            continue
        before = definition(job, names)
        after = definition_of_fields(fj.fields)
        for key in MACHINE_DEFAULTS:
            if key not in fj.given:
                after[key] = before[key]
        for (what, slot), _var in fj.unresolved.items():
            if what == "secret_env":
                if slot not in before["secret_env"]:
                    raise InvalidInput(f"{_where(fj.name, fj.line)}: secret_env {slot}: set "
                                       f"the environment variable {_var}", field=what)
                after["secret_env"][slot] = before["secret_env"][slot]
            else:
                if slot > len(before["notify"]):
                    raise InvalidInput(f"{_where(fj.name, fj.line)}: notify {slot}: set the "
                                       f"environment variable {_var}", field=what)
                after["notify"][slot - 1] = before["notify"][slot - 1]
        changes = [Change(k, before[k], after[k]) for k in FILE_FIELDS if before[k] != after[k]]
        if managed_by(job) != source:
            changes.append(Change("managed_by", managed_by(job), source))
        if changes:
            out.updates.append(Update(job, changes, {c.field: after[c.field] for c in changes
                                                      if c.field != "managed_by"}))
        else:
            out.unchanged.append(job.name)
    _no_cycle(current, file_jobs, names)
    for job in current:
        if job.name in seen:
            continue
        if prune and managed_by(job) == source:
            out.deletes.append(job)
        else:
            out.kept.append(job.name)
    return out


def _no_cycle(current: list[Job], file_jobs: list[FileJob], names: Mapping[str, str]) -> None:
    """The jobs' ``after`` links once the file is applied must not run in a circle.

    :raises InvalidInput: naming the circle"""
    links = {j.name: [names.get(a["job"], a["job"]) for a in j.after or []] for j in current}
    links |= {fj.name: [a["job"] for a in fj.fields.get("after") or []] for fj in file_jobs}
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            circle = [*path[path.index(node):], node]
            raise InvalidInput(f"job {path[-1]}: after: the jobs would run after each other "
                               f"in a circle: {' -> '.join(circle)}", field="after")
        if node in done:
            return
        for upstream in links.get(node, ()):
            visit(upstream, [*path, node])
        done.add(node)

    for name in links:
        visit(name, [])


def change_body(fields: dict[str, Any]) -> dict[str, Any]:
    """An update's fields as a change ``jobspec.validate_changes`` takes (secret_env is
    set afterwards as a whole: see :func:`set_secrets`)."""
    return {k: v for k, v in fields.items() if k != "secret_env"}


def set_secrets(validated: dict[str, Any], secrets: dict[str, str]) -> None:
    """Make *validated* (``validate_changes``' result) hold exactly *secrets*."""
    plain = {k: v for k, v in validated["env"].items() if k not in validated["secret_env"]}
    validated["env"] = plain | secrets
    validated["secret_env"] = sorted(secrets)


# -- the file's JSON Schema ---------------------------------------------------------------

def file_schema() -> dict[str, Any]:
    """The JSON Schema of a definitions file, from the options schema."""
    props: dict[str, Any] = {}
    for o in OPTIONS:
        if o.name in NOT_IN_FILE and o.name != "at":
            continue
        schema = dict(o.schema)
        schema["description"] = o.help
        if o.name == "secret_env":
            schema = {"type": "object", "additionalProperties": {"type": "string"},
                      "description": "secret variables, each by reference: NAME: ${ENV_VAR} "
                                     "(resolved from the environment at apply)"}
        elif o.name == "notify":
            schema["items"] = {"type": "string", "minLength": 1}
            schema["description"] = ("Apprise URLs, each best written as ${ENV_VAR} "
                                     "(resolved from the environment at apply)")
        elif o.name == "after":
            schema = {"type": "array", "items": {"oneOf": [
                {"type": "string"}, {**o.schema["items"],
                                     "properties": {"job": {"type": "string"},
                                                    "on": o.schema["items"]["properties"]["on"]}}
            ]}, "description": o.help}
        elif o.name == "at":
            schema["description"] = "one-shot ISO 8601 instant instead of schedule"
        if o.default is not None:
            schema["default"] = o.default
        props[o.name] = schema
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "hermes-cron job definitions",
        "type": "object", "additionalProperties": False, "required": ["jobs"],
        "properties": {"jobs": {
            "type": ["object", "null"],
            "propertyNames": {"pattern": BY_NAME["name"].schema["pattern"]},
            "additionalProperties": {"type": ["object", "null"],
                                     "additionalProperties": False, "properties": props}}},
    }


def schema_text() -> str:
    """``jobs.schema.json``'s text (written by ``python -m hermes_cron_ext.ops.definitions
    --write``)."""
    return json.dumps(file_schema(), indent=2) + "\n"


__all__ = ["FILE_FIELDS", "Change", "FileJob", "Plan", "Update", "definition",
           "dump", "export", "file_schema", "parse", "plan"]
