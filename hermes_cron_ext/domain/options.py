"""The job options schema: every field a job has, declared once.

Each :class:`Option` says its name (the JSON field), its JSON schema (type, range,
choices), its help, its default, the permission on Jupyter's ``cron`` resource that
setting it needs, whether it is a policy, how the command-line fronts spell it, and how a
form shows it (label, choice labels, unit). From this one table:

- the REST API accepts exactly these fields (``jobspec``: unknown ones are a 400), and
  ``jobspec.validate_policy`` checks each policy against its schema;
- the OpenAPI document's ``JobInput``, ``JobChange``, ``Policy`` and ``Option`` and the
  panel's TypeScript types and options (``labextension/src/generated.ts``) are generated
  (``server/openapi.py``; tests/server/test_generated.py fails when they are stale);
- ``hermes-cron add/edit`` and ``%cron add/edit`` get one option per flagged field
  (:func:`add_options`, read back by :func:`fields_from_options`);
- ``GET /api/cron/options`` lists it, and the panel's form is built from it: every
  option marked ``form`` (the ones it does not lay out itself under "More policies");
- the authorization of a change comes from each option's ``permission``.

Adding an option here, then ``python -m hermes_cron_ext.server.openapi --write``, makes
it appear in every front (the store keeps policies as JSON; a job field also needs its
column). tests/domain/test_options.py checks each front against this table. Each default
is stated once: as an option's ``default`` (the ``Policy`` model, ``models.py``, takes
its field defaults from here), or as a constant below when a job's null means it
(``MAX_OUTPUT``, and retention's ``KEEP_RUNS`` and ``KEEP_FAILURES``). The choices come
from ``enums.py``, so this module imports no model.

``write`` lets a user decide *when* and *how often* a job runs and what is kept;
``execute`` is needed to decide *what* runs, *where*, *with what* (code, interpreter,
working directory, environment, notebook parameters, the executor) and *where data is
sent* (webhook and ping URLs). Creating a job always needs ``execute``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Any

from hermes_cron_ext.domain.access import GROUP_PATTERN, SHARE_LEVELS
from hermes_cron_ext.domain.alerts import MAX_LENGTH as MAX_RULE_LENGTH
from hermes_cron_ext.domain.alerts import MAX_RULES
from hermes_cron_ext.domain.enums import (
    JOB_KINDS,
    MISFIRE_POLICIES,
    OVERLAP_POLICIES,
    UPSTREAM_ON,
)
from hermes_cron_ext.domain.notifications import DEFAULT_ON, KINDS, MAX_DESTINATIONS, MAX_URL
from hermes_cron_ext.errors import InvalidInput

# -- defaults that are not a policy's own value (a job leaves the policy null) ------------
#: the runs, and failed runs besides, that ``gc`` keeps of a job whose ``keep_runs`` /
#: ``keep_failures`` is null (retention is decided in ``policy.py``)
KEEP_RUNS = 50
KEEP_FAILURES = 10
#: output kept per run (its head and tail) when a job sets no ``max_output``
MAX_OUTPUT = 10 * 1024 * 1024
#: the longest duration a policy takes (ten years)
MAX_SECONDS = 10 * 365 * 86400

#: a non-negative number of seconds, or a duration text ("90", "1h30m") on the command line
_SECONDS = {"type": "number", "minimum": 0, "maximum": MAX_SECONDS}
_SECONDS_OR_NONE = {"type": ["number", "null"], "minimum": 0, "maximum": MAX_SECONDS}
_COUNT = {"type": "integer", "minimum": 0, "maximum": 10000}
_COUNT_OR_NONE = {"type": ["integer", "null"], "minimum": 0, "maximum": 10000}
_URL = {"type": ["string", "null"], "format": "uri", "pattern": "^https?://"}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

#: what the ``unit`` of a number option may be
UNITS = ("seconds", "bytes")


def duration_text(seconds: float) -> str:
    """A duration as a default is written: ``10s``, ``10m``, ``1h``, ``0``."""
    if not seconds:
        return "0"
    for size, suffix in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds % size == 0:
            return f"{seconds / size:g}{suffix}"
    return f"{seconds:g}s"


def duration_words(seconds: float) -> str:
    """A limit in words: ``10 years``, ``1 hour``, ``90 seconds``."""
    for size, word in ((365 * 86400, "year"), (86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n:g} {word}{'s' if n != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"


def size_text(size: float) -> str:
    """A number of bytes as sizes are written: ``4k``, ``10M``, ``1G`` (powers of 1024)."""
    for power, suffix in ((3, "G"), (2, "M"), (1, "k")):
        if size >= 1024 ** power and size % 1024 ** power == 0:
            return f"{size // 1024 ** power:g}{suffix}"
    return f"{size:g}"


def value_text(value: Any, unit: str | None = None) -> str:
    """A value as help and forms write it: ``true``, ``10s``, ``10M``, ``forbid``."""
    if value is None or isinstance(value, (list, tuple)) and not value:
        return "none"
    if isinstance(value, (list, tuple)):
        return "; ".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if unit == "seconds":
        return duration_text(value)
    if unit == "bytes":
        return size_text(value)
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


@dataclass(frozen=True)
class Option:
    """One job field (see the module docstring).

    ``help`` may say ``{default}``: it is written as :attr:`default_text`, so a default is
    stated once, as the value."""

    name: str
    schema: dict[str, Any]
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
    #: what a form calls it (default: its name in words)
    label: str = ""
    #: each value of the enum in words, as a chooser lists it
    choice_labels: dict[str, str] | None = None
    #: what a number is: ``seconds`` (given as 90 or "1h30m") or ``bytes`` ("50M")
    unit: str | None = None
    #: what null means when it is not "none" (``keep_runs``: the ``gc`` default)
    null_means: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "help", self.help.replace("{default}", self.default_text))
        if not self.label:
            object.__setattr__(self, "label", self.name.replace("_", " ").capitalize())

    @property
    def cli_choices(self) -> tuple[str, ...] | None:
        if self.choices is not None:
            return self.choices
        enum = self.schema.get("enum")
        return tuple(enum) if enum else None

    @property
    def default_text(self) -> str:
        """The default as a person reads it: what leaving the field out means."""
        value = self.default if self.default is not None else self.null_means
        return value_text(value, self.unit)

    def to_json(self) -> dict[str, Any]:
        """What ``GET /api/cron/options`` lists for it (the fields of :data:`OPTION_JSON`)."""
        return {"name": self.name, "schema": self.schema, "help": self.help,
                "permission": self.permission, "default": self.default,
                "policy": self.policy, "flag": self.flag, "form": self.form,
                "label": self.label, "choice_labels": self.choice_labels, "unit": self.unit,
                "default_text": self.default_text}


#: what :meth:`Option.to_json` returns, as JSON schemas: the OpenAPI document's
#: ``Option`` and the panel's ``IOption`` are generated from it (``server/openapi.py``)
OPTION_JSON: dict[str, dict[str, Any]] = {
    "name": {"type": "string"},
    "schema": {"type": "object", "description": "the JSON schema of its value"},
    "help": {"type": "string"},
    "permission": {"type": "string", "enum": ["write", "execute"],
                   "description": "the permission on the cron resource that setting it needs"},
    "default": {"description": "the value a job gets when it is left out"},
    "policy": {"type": "boolean", "description": "a policy: flat in a body, or under policy"},
    "flag": {"type": ["string", "null"], "description": "its command-line flag"},
    "form": {"type": "boolean", "description": "the panel's job form shows it"},
    "label": {"type": "string", "description": "what a form calls it"},
    "choice_labels": {"type": ["object", "null"], "additionalProperties": {"type": "string"},
                      "description": "each value of its enum in words"},
    "unit": {"type": ["string", "null"], "enum": [*UNITS, None],
             "description": "seconds: a duration (90, '1h30m'); bytes: a size ('50M')"},
    "default_text": {"type": "string",
                     "description": "the default as a person reads it ('10s', 'none')"},
}


OPTIONS: tuple[Option, ...] = (
    # -- what the job is and when it fires ---------------------------------------------
    Option("name", {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"},
           "the job's name (unique)", "write", spelled="NAME argument; edit --rename",
           form=True),
    Option("kind", {"type": "string", "enum": list(JOB_KINDS)},
           "what COMMAND is: a shell line (default), a python script, a notebook path",
           "execute", "command", flag="--kind", form=True,
           choice_labels={"command": "Shell command", "python": "Python",
                          "notebook": "Notebook"}),
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
           "IANA time zone (default: this machine's)", "write", flag="--tz", form=True,
           label="Time zone"),
    Option("command", {"oneOf": [{"type": "string"},
                                 {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
           "the shell line, script or notebook path", "execute", spelled="after --",
           form=True),
    Option("code", {"type": "string"}, "inline python code ('-' reads stdin)", "execute",
           flag="--code", form=True),
    Option("interpreter", {"type": "string"}, "python interpreter for python jobs", "execute",
           flag="--interpreter"),
    Option("cwd", {"type": "string"}, "working directory (default: the current one)",
           "execute", flag="--cwd", form=True, label="Working directory"),
    Option("env", _STRING_MAP, "environment variable NAME=VALUE (repeatable)", "execute",
           flag="--env", pairs=True, form=True, label="Environment"),
    Option("secret_env", {**_STRING_MAP, "description": "write-only"},
           "write-only variable NAME=VALUE, never shown (repeatable)", "execute",
           flag="--secret-env", pairs=True, label="Secret environment"),
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
           form=True, label="Runs after"),
    Option("shares", {"type": "object", "propertyNames": {"pattern": GROUP_PATTERN},
                      "additionalProperties": {"type": "string", "enum": list(SHARE_LEVELS)},
                      "description": "hub groups the job is shared with: read (see it, its "
                                     "runs and output) or execute (also run it and cancel "
                                     "its runs)"},
           "share with a JupyterHub group: read (see it and its runs) or execute (also run "
           "and cancel) (repeatable)", "execute",
           flag="--share", pairs=True, metavar="GROUP=read|execute", label="Shared with"),
    Option("enabled", {"type": "boolean"},
           "fire on its schedule and after its upstreams (default {default}; disabled: "
           "neither)", "write", True,
           spelled="add --disabled; edit --enable / --disable", form=True),
    Option("idempotency_key", {"type": "string", "maxLength": 200},
           "a retried create with this key returns the first job", "write",
           flag="--idempotency-key"),
    # -- policies ----------------------------------------------------------------------
    Option("timeout", {"type": ["number", "null"], "exclusiveMinimum": 0,
                       "maximum": MAX_SECONDS},
           "per attempt, e.g. 300 or 5m (default {default})", "write", policy=True,
           flag="--timeout", form=True, unit="seconds"),
    Option("kill_grace", _SECONDS, "after SIGTERM, SIGKILL this much later (default {default})",
           "write", 10.0, policy=True, flag="--kill-grace", unit="seconds"),
    Option("retries", _COUNT, "retries after a failure (default {default})", "write", 0,
           policy=True, flag="--retries", form=True),
    Option("retry_delay", _SECONDS, "first retry delay, doubled each time (default {default})",
           "write", 10.0, policy=True, flag="--retry-delay", form=True, unit="seconds"),
    Option("retry_max_delay", _SECONDS, "cap on the retry delay (default {default})", "write",
           600.0, policy=True, flag="--retry-max-delay", form=True, unit="seconds",
           label="Retry delay cap"),
    Option("retry_on_timeout", {"type": "boolean"},
           "retry a timed-out run too: true or false (default {default})", "write", False,
           policy=True, flag="--retry-on-timeout", choices=("true", "false"), form=True),
    Option("overlap", {"type": "string", "enum": list(OVERLAP_POLICIES)},
           "a slot due while the job runs (default {default})", "write", "forbid",
           policy=True, flag="--overlap", form=True, label="When still running",
           choice_labels={"forbid": "forbid: skip the slot (recorded)",
                          "allow": "allow: run side by side",
                          "replace": "replace: stop the running one",
                          "queue": "queue: at most one waiting"}),
    Option("misfire", {"type": "string", "enum": list(MISFIRE_POLICIES)},
           "missed slots after downtime (default {default})", "write", "latest", policy=True,
           flag="--misfire", form=True, label="Missed runs",
           choice_labels={"latest": "latest: run once, as catch-up",
                          "skip": "skip: record and wait",
                          "all": "all: run every missed slot (capped)"}),
    Option("starting_deadline", _SECONDS_OR_NONE,
           "skip a run that would start later than this", "write", policy=True,
           flag="--starting-deadline", form=True, unit="seconds"),
    Option("max_failures", _COUNT,
           "block the job after N failures in a row (default {default}, 0: never)", "write",
           5, policy=True, flag="--max-failures", form=True, label="Pause after failures"),
    Option("jitter", _SECONDS, "random delay up to this long (default {default})", "write",
           0.0, policy=True, flag="--jitter", form=True, unit="seconds"),
    Option("notify_url", _URL, "webhook for failures and recoveries", "execute",
           policy=True, flag="--notify-url", form=True, label="Notify URL"),
    Option("ping_url", _URL, "healthchecks-style ping URL", "execute", policy=True,
           flag="--ping-url", form=True, label="Ping URL"),
    Option("notify", {"type": "array", "maxItems": MAX_DESTINATIONS,
                      "items": {"type": "string", "minLength": 1, "maxLength": MAX_URL},
                      "description": "where the job's notifications go: Apprise URLs "
                                     "(mailto://, slack://, ntfy://, json://, ... 100+ "
                                     "services); secrets: shown masked, and a masked "
                                     "value sent back keeps the URL it stands for; [] "
                                     "clears them"},
           "send notifications to this Apprise URL, e.g. mailto://user:pass@host?to=me@x "
           "or json://host/path (repeatable; '' clears them)", "execute", [], policy=True,
           flag="--notify", pairs=True, metavar="URL", form=True, label="Notify"),
    Option("notify_on", {"type": "array", "uniqueItems": True,
                         "items": {"type": "string", "enum": list(KINDS)},
                         "description": "the events the job's destinations get"},
           "the events notified: a comma-separated list of " + ", ".join(KINDS) +
           " (default {default})", "write", list(DEFAULT_ON), policy=True,
           flag="--notify-on", form=True, label="Notify on"),
    Option("late_after", _SECONDS_OR_NONE,
           "raise 'late' when a slot has no successful run this long after its time, "
           "e.g. 30m (the run goes on)", "write", policy=True, flag="--late-after",
           form=True, unit="seconds", label="Late after"),
    Option("keep_runs", _COUNT_OR_NONE, "runs kept per job (default {default})", "write",
           policy=True, flag="--keep-runs", form=True, label="Runs kept",
           null_means=KEEP_RUNS),
    Option("keep_failures", _COUNT_OR_NONE, "failed runs kept besides (default {default})",
           "write", policy=True, flag="--keep-failures", form=True, label="Failed runs kept",
           null_means=KEEP_FAILURES),
    Option("max_output", {"type": ["integer", "null"], "minimum": 4096,
                          "maximum": 1 << 30},
           "output kept per run, its head and tail, e.g. 500k or 50M (default {default})",
           "write", policy=True, flag="--max-output", form=True, unit="bytes",
           label="Output kept", null_means=MAX_OUTPUT),
    Option("alerts", {"type": "array", "maxItems": MAX_RULES,
                      "items": {"type": "string", "minLength": 1,
                                "maxLength": MAX_RULE_LENGTH},
                      "description": "alert rules checked when a run ends, e.g. "
                                     "'rows < 1000', 'duration > 2 * median(20)' (a "
                                     "metric or duration compared with a number or with "
                                     "a statistic of the job's last N runs); [] clears "
                                     "them"},
           "alert when a run's metric is off, e.g. 'rows < 1000' or 'duration > 2 * "
           "median(20)' (repeatable; '' clears them)", "write", [], policy=True,
           flag="--alert", pairs=True, metavar="RULE", label="Alert rules", form=True),
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


def json_properties(*, create: bool = True) -> dict[str, Any]:
    """The JSON schema properties of a create (``JobInput``) or change (``JobChange``)
    body: every option, flat, and the policies again under ``policy``."""
    props = {o.name: dict(o.schema) for o in OPTIONS
             if create or o.name != "idempotency_key"}
    props["policy"] = {"type": "object", "additionalProperties": False, "properties": {
        o.name: dict(o.schema) for o in OPTIONS if o.policy}}
    return props


# -- the command-line fronts (``hermes-cron add/edit``, ``%cron add/edit``) ----------------

def add_options(parser: argparse.ArgumentParser, *, exclude: tuple[str, ...] = ()) -> None:
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


def parameter_values(items: list[str] | None) -> dict[str, Any]:
    """``-p NAME=VALUE`` notebook parameters; VALUE is read as JSON when it can be."""
    out: dict[str, Any] = {}
    for key, value in name_values(items, "--param", "parameters").items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def fields_from_options(args: argparse.Namespace) -> dict[str, Any]:
    """The job fields for the flagged options given (an argparse namespace made with
    :func:`add_options`); values stay text, ``jobspec`` checks and converts them."""
    data: dict[str, Any] = {}
    if getattr(args, "schedule", None):  # the SCHEDULE argument (or edit's --schedule)
        data["schedule"] = args.schedule
    for o in OPTIONS:
        if o.flag is None:
            continue
        value = getattr(args, o.name, None)
        if value is None:
            continue
        if o.name == "parameters":
            value = parameter_values(value)
        elif o.name == "after":  # JOB or JOB:on
            value = [dict(zip(("job", "on"), item.rsplit(":", 1), strict=False))
                     if item.rsplit(":", 1)[-1] in UPSTREAM_ON else {"job": item}
                     for item in value]
        elif o.name in ("alerts", "notify"):  # --alert '' clears them
            value = [item for item in value if item.strip()]
        elif o.name == "notify_on":  # failure,lost,late
            value = [part.strip() for part in value.split(",") if part.strip()]
        elif o.pairs:
            value = name_values(value, o.flag, o.name)
        elif o.schema.get("type") == "boolean":
            value = value == "true"
        data[o.name] = value
    return data
