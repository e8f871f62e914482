"""The job options schema: every field a job has, declared once.

Each :class:`Option` says its name (the JSON field), its JSON schema, its help, its
default, the permission on Jupyter's ``cron`` resource that setting it needs, whether
it is a policy, and how the command-line fronts spell it. From this one table:

- the REST API accepts exactly these fields (``jobspec``: unknown ones are a 400);
- the OpenAPI document's ``JobInput`` and ``JobChange`` are generated (``server/openapi.py``);
- ``hermes-cron add/edit`` and ``%cron add/edit`` get one option per flagged field
  (:func:`add_options`, read back by :func:`fields_from_options`);
- ``GET /api/cron/options`` lists it, and the panel's form shows every option marked
  ``form`` (the ones it does not lay out itself, under "More policies");
- the authorization of a change comes from each option's ``permission``.

Adding an option here is the only edit that makes it appear in every front (the store
keeps policies as JSON; a job field also needs its column). tests/domain/test_options.py
checks each front against this table.

``write`` lets a user decide *when* and *how often* a job runs and what is kept;
``execute`` is needed to decide *what* runs, *where*, *with what* (code, interpreter,
working directory, environment, notebook parameters, the executor) and *where data is
sent* (webhook and ping URLs). Creating a job always needs ``execute``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hermes_cron_ext.domain.models import JOB_KINDS, MISFIRE_POLICIES, OVERLAP_POLICIES
from hermes_cron_ext.errors import InvalidInput

#: when an upstream run triggers: it succeeded, it failed (for good: no retry follows),
#: or either
UPSTREAM_ON = ("success", "failure", "completion")

#: a non-negative number of seconds, or a duration text ("90", "1h30m") on the command line
_SECONDS = {"type": "number", "minimum": 0}
_SECONDS_OR_NONE = {"type": ["number", "null"], "minimum": 0}
_COUNT = {"type": "integer", "minimum": 0, "maximum": 10000}
_COUNT_OR_NONE = {"type": ["integer", "null"], "minimum": 0}
_URL = {"type": ["string", "null"], "format": "uri"}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


@dataclass(frozen=True)
class Option:
    """One job field (see the module docstring)."""

    name: str
    schema: dict
    help: str
    permission: str  # "write" or "execute"
    default: Any = None
    policy: bool = False
    #: the command-line flag of ``hermes-cron add/edit`` and ``%cron add/edit``; None when
    #: the fronts spell it otherwise (see ``spelled``)
    flag: str | None = None
    #: how the command-line fronts take an option that has no flag
    spelled: str = ""
    #: repeatable (``--env NAME=VALUE``); *metavar* is what ``--help`` shows for a value
    pairs: bool = False
    metavar: str = "NAME=VALUE"
    #: shown in the panel's job form
    form: bool = False
    #: argparse choices (text), when the JSON enum is not text
    choices: tuple[str, ...] | None = field(default=None)

    @property
    def cli_choices(self) -> tuple[str, ...] | None:
        if self.choices is not None:
            return self.choices
        enum = self.schema.get("enum")
        return tuple(enum) if enum else None

    def to_json(self) -> dict:
        return {"name": self.name, "schema": self.schema, "help": self.help,
                "permission": self.permission, "default": self.default,
                "policy": self.policy, "flag": self.flag, "form": self.form}


OPTIONS: tuple[Option, ...] = (
    # -- what the job is and when it fires ---------------------------------------------
    Option("name", {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"},
           "the job's name (unique)", "write", spelled="NAME argument; edit --rename",
           form=True),
    Option("kind", {"type": "string", "enum": list(JOB_KINDS)},
           "what COMMAND is: a shell line (default), a python script, a notebook path",
           "execute", "command", flag="--kind", form=True),
    Option("schedule", {"type": ["string", "null"],
                        "description": "cron expression, alias, '@every 30s'; null (or left "
                                       "out, with after): no schedule of its own, it runs "
                                       "only after its upstreams"},
           "cron expression, @daily, '@every 30s' ... (none with --after: it runs only "
           "after those jobs)", "write",
           spelled="SCHEDULE argument; edit --schedule", form=True),
    Option("at", {"type": "string", "description": "one-shot ISO 8601 instant instead of schedule"},
           "one-shot ISO 8601 time instead of a schedule ('now': once, at once)", "write",
           flag="--at"),
    Option("timezone", {"type": "string", "description": "IANA zone (default: the server's)"},
           "IANA time zone (default: this machine's)", "write", flag="--tz", form=True),
    Option("command", {"oneOf": [{"type": "string"},
                                 {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
           "the shell line, script or notebook path", "execute", spelled="after --",
           form=True),
    Option("code", {"type": "string"}, "inline python code ('-' reads stdin)", "execute",
           flag="--code", form=True),
    Option("interpreter", {"type": "string"}, "python interpreter for python jobs", "execute",
           flag="--interpreter"),
    Option("cwd", {"type": "string"}, "working directory (default: the current one)",
           "execute", flag="--cwd", form=True),
    Option("env", _STRING_MAP, "environment variable NAME=VALUE (repeatable)", "execute",
           flag="--env", pairs=True, form=True),
    Option("secret_env", {**_STRING_MAP, "description": "write-only"},
           "write-only variable NAME=VALUE, never shown (repeatable)", "execute",
           flag="--secret-env", pairs=True),
    Option("parameters", {"type": "object"},
           "notebook parameter NAME=VALUE (VALUE is read as JSON when it can be)", "execute",
           flag="--param", pairs=True, form=True),
    Option("kernel", {"type": "string"}, "kernel for notebook jobs", "execute",
           flag="--kernel", form=True),
    Option("description", {"type": "string"}, "what this job is for", "write",
           "", flag="--description", form=True),
    Option("executor", {"type": ["string", "null"],
                        "pattern": r"^(?:|local|(?:dask|dask\+tls|tcp|tls)://[^\s/]+:\d{1,5}/?)$",
                        "description": "where runs execute: 'local' or a Dask scheduler "
                                       "dask://HOST:PORT; null or empty: the ticker's executor"},
           "where runs execute: 'local' or dask://HOST:PORT (default: the ticker's)",
           "execute", flag="--executor"),
    Option("after", {"type": "array", "items": {
               "type": "object", "required": ["job"], "additionalProperties": False,
               "properties": {"job": {"type": "string"},
                              "on": {"type": "string", "enum": list(UPSTREAM_ON)},
                              # as a job's JSON shows it; ignored when sent back
                              "name": {"type": "string"}}}},
           "run after another job's run ends: JOB or JOB:failure or JOB:completion "
           "(repeatable; with several, after all of them for the same slot)", "write",
           flag="--after", pairs=True, metavar="JOB[:success|failure|completion]",
           form=True),
    Option("enabled", {"type": "boolean"},
           "fire on its schedule and after its upstreams (default true; disabled: neither)",
           "write", True,
           spelled="add --disabled; edit --enable / --disable", form=True),
    Option("idempotency_key", {"type": "string", "maxLength": 200},
           "a retried create with this key returns the first job", "write",
           flag="--idempotency-key"),
    # -- policies ----------------------------------------------------------------------
    Option("timeout", {"type": ["number", "null"], "exclusiveMinimum": 0},
           "per attempt, e.g. 300 or 5m (default: none)", "write", policy=True,
           flag="--timeout", form=True),
    Option("kill_grace", _SECONDS, "after SIGTERM, SIGKILL this much later (default 10s)",
           "write", 10.0, policy=True, flag="--kill-grace"),
    Option("retries", _COUNT, "retries after a failure (default 0)", "write", 0, policy=True,
           flag="--retries", form=True),
    Option("retry_delay", _SECONDS, "first retry delay, doubled each time (default 10s)",
           "write", 10.0, policy=True, flag="--retry-delay", form=True),
    Option("retry_max_delay", _SECONDS, "cap on the retry delay (default 10m)", "write",
           600.0, policy=True, flag="--retry-max-delay", form=True),
    Option("retry_on_timeout", {"type": "boolean"},
           "retry a timed-out run too: true or false (default false)", "write", False,
           policy=True, flag="--retry-on-timeout", choices=("true", "false"), form=True),
    Option("overlap", {"type": "string", "enum": list(OVERLAP_POLICIES)},
           "a slot due while the job runs (default forbid)", "write", "forbid", policy=True,
           flag="--overlap", form=True),
    Option("misfire", {"type": "string", "enum": list(MISFIRE_POLICIES)},
           "missed slots after downtime (default latest)", "write", "latest", policy=True,
           flag="--misfire", form=True),
    Option("starting_deadline", _SECONDS_OR_NONE,
           "skip a run that would start later than this", "write", policy=True,
           flag="--starting-deadline", form=True),
    Option("max_failures", _COUNT,
           "block the job after N failures in a row (default 5, 0: never)", "write", 5,
           policy=True, flag="--max-failures", form=True),
    Option("jitter", _SECONDS, "random delay up to this long (default 0)", "write", 0.0,
           policy=True, flag="--jitter", form=True),
    Option("notify_url", _URL, "webhook for failures and recoveries", "execute",
           policy=True, flag="--notify-url", form=True),
    Option("ping_url", _URL, "healthchecks-style ping URL", "execute", policy=True,
           flag="--ping-url", form=True),
    Option("keep_runs", _COUNT_OR_NONE, "runs kept per job (default 50)", "write",
           policy=True, flag="--keep-runs", form=True),
    Option("keep_failures", _COUNT_OR_NONE, "failed runs kept besides (default 10)", "write",
           policy=True, flag="--keep-failures", form=True),
    Option("max_output", {"type": ["integer", "null"], "minimum": 4096,
                          "maximum": 1 << 30},
           "output kept per run, its head and tail, e.g. 500k or 50M (default 10M)",
           "write", policy=True, flag="--max-output", form=True),
)

BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
#: the policy fields (flat in a body, or under ``policy``)
POLICY_FIELDS = frozenset(o.name for o in OPTIONS if o.policy)
#: the job fields a body may carry (``policy`` holds the policies nested)
JOB_FIELDS = frozenset(o.name for o in OPTIONS if not o.policy) | {"policy"}
#: the permission setting each field needs (``policy`` itself: its fields decide)
FIELD_PERMISSIONS: dict[str, str] = {o.name: o.permission for o in OPTIONS} | {
    "policy": "write"}
#: the fields whose change needs ``execute``
EXECUTE_FIELDS = frozenset(k for k, v in FIELD_PERMISSIONS.items() if v == "execute")


def permission_for(name: str) -> str:
    """The permission a field needs; an unknown field needs ``execute`` (fail closed)."""
    return FIELD_PERMISSIONS.get(name, "execute")


def json_properties(*, create: bool = True) -> dict:
    """The JSON schema properties of a create (``JobInput``) or change (``JobChange``)
    body: every option, flat, and the policies again under ``policy``."""
    props = {o.name: dict(o.schema) for o in OPTIONS
             if create or o.name != "idempotency_key"}
    props["policy"] = {"type": "object", "additionalProperties": False, "properties": {
        o.name: dict(o.schema) for o in OPTIONS if o.policy}}
    return props


# -- the command-line fronts (``hermes-cron add/edit``, ``%cron add/edit``) ----------------

def add_options(parser, *, exclude: tuple[str, ...] = ()) -> None:
    """Every flagged option on an argparse parser; the parsed value lands on the option's
    name (``--tz`` sets ``args.timezone``). Read them back with :func:`fields_from_options`."""
    for o in OPTIONS:
        if o.flag is None or o.name in exclude:
            continue
        flags = ["-p", o.flag] if o.name == "parameters" else [o.flag]
        if o.pairs:
            parser.add_argument(*flags, dest=o.name, action="append", metavar=o.metavar,
                                help=o.help)
        else:
            parser.add_argument(*flags, dest=o.name, choices=o.cli_choices, help=o.help)


def name_values(items: list[str] | None, option: str, field: str) -> dict[str, str]:
    """``NAME=VALUE`` options (``--env``, ``--param``) as a dict."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InvalidInput(f"{option} takes NAME=VALUE, got {item!r}", field=field)
        out[name] = value
    return out


def parameter_values(items: list[str] | None) -> dict:
    """``-p NAME=VALUE`` notebook parameters; VALUE is read as JSON when it can be."""
    out: dict = {}
    for key, value in name_values(items, "--param", "parameters").items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def fields_from_options(args) -> dict:
    """The job fields for the flagged options given (an argparse namespace made with
    :func:`add_options`); values stay text, ``jobspec`` checks and converts them."""
    data: dict = {}
    if getattr(args, "schedule", None):  # the SCHEDULE argument (or edit's --schedule)
        data["schedule"] = args.schedule
    for o in OPTIONS:
        value = getattr(args, o.name, None) if o.flag else None
        if value is None:
            continue
        if o.name == "parameters":
            value = parameter_values(value)
        elif o.name == "after":  # JOB or JOB:on
            value = [dict(zip(("job", "on"), item.rsplit(":", 1), strict=False))
                     if item.rsplit(":", 1)[-1] in UPSTREAM_ON else {"job": item}
                     for item in value]
        elif o.pairs:
            value = name_values(value, o.flag, o.name)
        elif o.schema.get("type") == "boolean":
            value = value == "true"
        data[o.name] = value
    return data
