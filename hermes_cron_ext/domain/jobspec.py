"""Validation of job input, shared by every entry point (REST, CLI, magics).

Which fields exist, and who may set them, is declared in ``options.py``; so is each
policy's type, range and choices (its JSON schema), which :func:`validate_policy`
reads. Here is the rest of what each value must be, and the messages.

Input is a plain dict (JSON body, CLI options). Unknown fields, wrong types and
schedules that cannot fire are rejected with a message naming the field; only a
dict that passed here ever reaches the store.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from hermes_cron_ext.domain import notifications
from hermes_cron_ext.domain import schedule as sched
from hermes_cron_ext.domain.access import validate_shares
from hermes_cron_ext.domain.alerts import RuleError, parse_rules
from hermes_cron_ext.domain.models import JOB_KINDS, UPSTREAM_ON, Job, Policy, parse_iso
from hermes_cron_ext.domain.options import (  # noqa: F401 - the fields are declared there
    BY_NAME,
    EXECUTE_FIELDS,
    FIELD_PERMISSIONS,
    JOB_FIELDS,
    POLICY_FIELDS,
    Option,
    duration_words,
    permission_for,
    size_text,
)
from hermes_cron_ext.errors import InvalidInput

NAME_RE = re.compile(BY_NAME["name"].schema["pattern"])
ID_RE = re.compile(r"^[jr]_[0-9a-f]{16}$")
#: "" (none: the ticker's executor) is read as None before this is matched
EXECUTOR_RE = re.compile(BY_NAME["executor"].schema["pattern"])
MAX_TEXT = 1_000_000
#: an --at time this far in the past is a mistake, not a clock skew
AT_GRACE = 60.0


def _str(data: dict[str, Any], key: str, *, required: bool = False,
         max_len: int = 4096) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise InvalidInput(f"{key} is required", field=key)
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{key} must be a string", field=key)
    if len(value) > max_len:
        raise InvalidInput(f"{key} is longer than {max_len} characters", field=key)
    _no_nul(value, key)
    return value


def _no_nul(value: str, key: str) -> None:
    """A NUL cannot reach a process (argv, environment, paths): refuse it when saved,
    not when the run fails to start."""
    if "\x00" in value:
        raise InvalidInput(f"{key} must not contain a NUL character", field=key)


def _str_map(value: Any, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidInput(f"{key} must be an object of string values", field=key)
    for k, v in value.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k):
            raise InvalidInput(f"{key}: {k!r} is not a valid variable name", field=key)
        _no_nul(v, key)
    return dict(value)


def validate_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or ID_RE.match(name):
        raise InvalidInput(
            "name must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit",
            field="name",
        )
    return name


#: how a message says what a string of this JSON schema ``format`` must be
_FORMAT_WORDS = {"uri": "an http(s) URL"}


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def _seconds(key: str, value: Any, schema: dict[str, Any]) -> float:
    """A policy duration: a number of seconds, or text ("90", "2.5", "1h30m"), within
    its option's ``minimum``/``exclusiveMinimum``/``maximum``; the message names what is
    wrong (not a number, negative, too short, too long)."""
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    if isinstance(value, str):
        if value.strip().startswith("-") and low is not None and low >= 0:
            raise InvalidInput(f"{key} cannot be negative (got {value.strip()})", field=key)
        try:
            value = float(value)
        except ValueError:
            value = sched.parse_duration(value, field=key).total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise InvalidInput(f"{key} must be a number of seconds or a duration such as 90s "
                           f"or 1h30m, not {value!r}", field=key)
    if value < 0 and low is not None and low >= 0:
        raise InvalidInput(f"{key} cannot be negative (got {value:g})", field=key)
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        raise InvalidInput(f"{key} must be more than {schema['exclusiveMinimum']:g} seconds",
                           field=key)
    if "minimum" in schema and value < schema["minimum"]:
        raise InvalidInput(f"{key} must be at least {duration_words(schema['minimum'])} "
                           f"(got {value:g} seconds)", field=key)
    if "maximum" in schema and value > schema["maximum"]:
        raise InvalidInput(f"{key} must be at most {duration_words(schema['maximum'])} "
                           f"(got {value:g} seconds)", field=key)
    return float(value)


def _whole(key: str, value: Any, schema: dict[str, Any]) -> int:
    """A count: a whole number (or its digits) within the option's range."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    low, high = schema.get("minimum"), schema.get("maximum")
    if (isinstance(value, bool) or not isinstance(value, int)
            or (low is not None and value < low) or (high is not None and value > high)):
        span = (f"from {low} to {high}" if low is not None and high is not None
                else f"of at least {low}" if low is not None
                else f"of at most {high}" if high is not None else "")
        raise InvalidInput(f"{key} must be a whole number {span}".rstrip(), field=key)
    return value


def policy_value(option: Option, value: Any) -> Any:
    """One policy value, checked against its option: the JSON schema's ``type``,
    ``enum``, ``minimum``, ``exclusiveMinimum``, ``maximum`` and ``pattern``, read as
    its ``unit`` says (``seconds``: a duration; ``bytes``: a size)."""
    key, schema = option.name, option.schema
    types = _types(schema)
    if value is None and "null" in types:
        return None
    if "enum" in schema:
        if value not in schema["enum"]:
            raise InvalidInput(f"{key} must be one of {', '.join(schema['enum'])}", field=key)
        return value
    if "boolean" in types:
        if not isinstance(value, bool):
            raise InvalidInput(f"{key} must be true or false", field=key)
        return value
    if "array" in types and key == "alerts":
        return validate_alerts(value)
    if "array" in types and key == "notify":
        return validate_destinations(value)
    if "array" in types and key == "notify_on":
        try:
            return notifications.parse_on(value)
        except ValueError as exc:
            raise InvalidInput(str(exc), field=key) from None
    if option.unit == "seconds":
        return _seconds(key, value, schema)
    if option.unit == "bytes":
        return parse_size(value, key, schema)
    if "integer" in types:
        return _whole(key, value, schema)
    if "string" in types:
        if not isinstance(value, str) or not re.match(schema.get("pattern", ""), value):
            words = _FORMAT_WORDS.get(schema.get("format", ""), "a string")
            raise InvalidInput(f"{key} must be {words}", field=key)
        return value
    raise TypeError(f"policy option {key}: no check for its schema {schema}")


def validate_alerts(value: Any) -> list[str]:
    """A job's alert rules: a list of rule texts (or one text, a rule a line), each
    parsed (``alerts.parse_rules``); kept as written, trimmed. An empty list clears them.
    A bad rule is refused with the message naming it and its problem."""
    if isinstance(value, str):
        value = [line for line in value.splitlines() if line.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InvalidInput("alerts must be a list of rules, e.g. ['rows < 1000']",
                           field="alerts")
    try:
        return [rule.text for rule in parse_rules(list(value))]
    except RuleError as exc:
        raise InvalidInput(str(exc), field="alerts") from None


def validate_destinations(value: Any) -> list[str]:
    """A job's ``notify`` list: URLs ``scheme://...`` (Apprise's; whether Apprise knows
    the scheme, and where it points, is checked by ops); one text is one URL."""
    if isinstance(value, str):
        value = [value] if value.strip() else []
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InvalidInput("notify must be a list of URLs, e.g. ['mailto://me@example.com']",
                           field="notify")
    urls = [v.strip() for v in value if v.strip()]
    if len(urls) > notifications.MAX_DESTINATIONS:
        raise InvalidInput(f"notify takes at most {notifications.MAX_DESTINATIONS} URLs",
                           field="notify")
    for url in urls:
        if len(url) > notifications.MAX_URL or not re.match(
                r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$", url):
            raise InvalidInput(f"notify: {notifications.mask_url(url)} is not a URL such "
                               f"as mailto://user:pass@host or json://host/path",
                               field="notify")
    return urls


def validate_policy(data: dict[str, Any], base: Policy | None = None) -> Policy:
    """Merge *data* (policy keys only) over *base* and check every value against its
    option (:func:`policy_value`)."""
    out = Policy(**vars(base)) if base else Policy()
    for key, value in data.items():
        option = BY_NAME.get(key)
        if option is None or not option.policy:
            raise InvalidInput(f"unknown policy field {key!r}", field=key)
        if key == "notify" and base is not None and isinstance(value, (list, tuple)):
            value = notifications.keep_masked(list(value), base.notify)
        setattr(out, key, policy_value(option, value))
    return out


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)


def parse_size(value: Any, key: str, schema: dict[str, Any] | None = None) -> int:
    """A number of bytes: ``1048576``, ``"500k"``, ``"50M"``, ``"1G"`` (powers of 1024),
    within *schema*'s range (default ``max_output``'s: from 4 KiB to 1 GiB)."""
    schema = BY_NAME["max_output"].schema if schema is None else schema
    low, high = schema.get("minimum", 0), schema.get("maximum", float("inf"))
    if isinstance(value, str):
        m = _SIZE.match(value)
        if not m:
            raise InvalidInput(f"{key} must be a size such as 500k or 50M", field=key)
        value = float(m.group(1)) * 1024 ** " kmg".index(m.group(2).lower() or " ")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            low <= value <= high):
        raise InvalidInput(f"{key} must be from {size_text(low)} to {size_text(high)}",
                           field=key)
    return int(value)


def _split(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate job fields from policy fields (accepted flat or under ``policy``)."""
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object")
    job, policy = {}, {}
    for key, value in data.items():
        if key in POLICY_FIELDS:
            policy[key] = value
        elif key in JOB_FIELDS:
            job[key] = value
        else:
            raise InvalidInput(f"unknown field {key!r}", field=key)
    nested = job.pop("policy", None)
    if nested is not None:
        if not isinstance(nested, dict):
            raise InvalidInput("policy must be an object", field="policy")
        policy = {**nested, **policy}
    return job, policy


#: a job with neither a schedule nor upstreams would never run
NO_TRIGGER = ("a job needs a schedule (a cron expression, an alias, '@every 30s' or an "
              "'at' time) or after (the jobs whose runs trigger it); it has neither, so it "
              "would never run")


def _present(now: float | None) -> float:
    """*now*, which a caller validating an ``at`` time gives: the domain reads no clock."""
    if now is None:
        raise TypeError("an 'at' time is read against the present: pass now (Unix seconds)")
    return now


def _schedule(job: dict[str, Any], tz: str, after: bool = False,
              now: float | None = None) -> str | None:
    """The schedule given (normal form), or None: no schedule of its own, which only a
    job with *after* may have (it runs when its upstreams' runs end, never by itself).

    An ``at`` time is read against *now*: ``"now"`` is one second after *now* rounded
    up to a whole second, and a time more than ``AT_GRACE`` before *now* is refused."""
    at = job.get("at")
    text = job.get("schedule")
    if text == "":  # "schedule": "" as null: none of its own
        text = None
    if at is not None and text is not None:
        raise InvalidInput("give either schedule or at, not both", field="at")
    if at is not None:
        if not isinstance(at, str):
            raise InvalidInput("at must be an ISO 8601 time", field="at")
        if at.strip().lower() == "now":  # asked for explicitly: once, as soon as possible
            at = datetime.fromtimestamp(math.ceil(_present(now)) + 1, UTC).isoformat()
        text = f"@at {at}"
    if text is None:
        if after:
            return None
        raise InvalidInput(NO_TRIGGER, field="schedule")
    if not isinstance(text, str):
        raise InvalidInput("schedule must be a string", field="schedule")
    try:
        parsed = sched.parse(text, tz)
    except InvalidInput as exc:
        if at is None:
            raise
        raise InvalidInput(exc.message, field="at") from None  # name what the user gave
    if (parsed.kind == "at" and parsed.at is not None
            and parsed.at.timestamp() < _present(now) - AT_GRACE):
        # it would be stored 'scheduled' with no next run, for ever
        raise InvalidInput(
            f"at {parsed.at.isoformat()} is in the past: give a future time, or 'now' to "
            "run it once as soon as possible", field="at" if at is not None else "schedule")
    return parsed.text


def _payload(job: dict[str, Any], kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    command = job.get("command")
    if command is not None:
        if isinstance(command, list):
            if not command or not all(isinstance(c, str) for c in command):
                raise InvalidInput("command must be a string or a non-empty list of strings",
                                   field="command")
        elif not isinstance(command, str) or not command.strip():
            raise InvalidInput("command must be a string or a non-empty list of strings",
                               field="command")
        elif len(command) > MAX_TEXT:
            raise InvalidInput("command is too long", field="command")
        for part in command if isinstance(command, list) else [command]:
            _no_nul(part, "command")
    code = _str(job, "code", max_len=MAX_TEXT)
    if kind == "command" and not command:
        raise InvalidInput("a command job needs a command", field="command")
    if kind == "python" and not (command or code):
        raise InvalidInput("a python job needs a script path (command) or inline code",
                           field="code")
    if kind == "notebook" and not (isinstance(command, str) and command.endswith(".ipynb")):
        raise InvalidInput("a notebook job needs the path of an .ipynb file as command",
                           field="command")
    out["command"] = command
    out["code"] = code
    for key in ("interpreter", "cwd", "kernel"):
        out[key] = _str(job, key)
    out["description"] = _str(job, "description") or ""
    out["executor"] = validate_executor(job.get("executor"))
    params = job.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput("parameters must be an object", field="parameters")
    out["parameters"] = params
    out["after"] = validate_after(job.get("after"))
    out["shares"] = validate_shares(job.get("shares"))
    return out


def validate_after(value: Any) -> list[dict[str, Any]]:
    """``after``: upstream jobs by name or id, each with when it triggers (default
    ``success``). Whether they exist, and that no cycle forms, the operations check."""

    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput("after must be a list of {job, on}", field="after")
    out = []
    for item in value:
        if isinstance(item, str):
            item = {"job": item}
        # "name": the upstream's name, as a job's JSON shows it (sent back unchanged)
        if not isinstance(item, dict) or not isinstance(item.get("job"), str) or set(
                item) - {"job", "on", "name"}:
            raise InvalidInput("after must be a list of {job, on}", field="after")
        on = item.get("on", "success")
        if on not in UPSTREAM_ON:
            raise InvalidInput(f"after: on must be one of {', '.join(UPSTREAM_ON)}",
                               field="after")
        out.append({"job": item["job"], "on": on})
    return out


def validate_executor(value: Any) -> str | None:
    """Where a job's runs execute: None (or "") for the ticker's own executor."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not EXECUTOR_RE.match(value):
        raise InvalidInput("executor must be 'local' or a Dask scheduler address "
                           "dask://HOST:PORT", field="executor")
    return value


def _env(job: dict[str, Any], env: dict[str, str] | None = None,
         secrets: list[str] | None = None) -> tuple[dict[str, str], list[str]]:
    env = dict(env or {})
    secrets = list(secrets or [])
    if "env" in job:
        new = _str_map(job["env"], "env")
        env = {k: v for k, v in env.items() if k in secrets} | new
        secrets = [s for s in secrets if s not in new]
    if "secret_env" in job:
        new = _str_map(job["secret_env"], "secret_env")
        env.update(new)
        secrets = sorted(set(secrets) | set(new))
    return env, secrets


def validate_new(data: dict[str, Any], default_tz: str | None = None, *,
                 now: float | None = None) -> dict[str, Any]:
    """Check a create request; return the fields the store needs to create the job.

    *now* (Unix seconds, the caller's clock) is needed when the job has an ``at`` time
    (:class:`TypeError` without it)."""
    job, policy = _split(data)
    name = validate_name(job.get("name"))
    kind = job.get("kind") or ("python" if job.get("code") else "command")
    if kind not in JOB_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(JOB_KINDS)}", field="kind")
    tz_name = job.get("timezone") or default_tz or sched.local_zone()
    if not isinstance(tz_name, str):
        raise InvalidInput("timezone must be a string", field="timezone")
    sched.parse_timezone(tz_name)
    enabled = job.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidInput("enabled must be true or false", field="enabled")
    key = _str(job, "idempotency_key", max_len=400)  # the API adds its scope
    env, secrets = _env(job)
    payload = _payload(job, kind)
    return {
        "name": name, "kind": kind,
        "schedule": _schedule(job, tz_name, bool(payload["after"]), now),
        "timezone": tz_name, **payload, "env": env, "secret_env": secrets,
        "policy": validate_policy(policy), "enabled": enabled, "idempotency_key": key,
    }


def validate_changes(job_obj: Job, data: dict[str, Any], *,
                     now: float | None = None) -> dict[str, Any]:
    """Check a PATCH against an existing job; return the full new field set. *now* as
    for :func:`validate_new`: needed when the change gives an ``at`` time."""
    job, policy = _split(data)
    if "idempotency_key" in job:
        raise InvalidInput("idempotency_key cannot be changed", field="idempotency_key")
    merged = {
        "name": job_obj.name, "kind": job_obj.kind, "command": job_obj.command,
        "code": job_obj.code, "interpreter": job_obj.interpreter, "cwd": job_obj.cwd,
        "kernel": job_obj.kernel, "description": job_obj.description,
        "executor": job_obj.executor, "parameters": job_obj.parameters,
        "timezone": job_obj.timezone, "after": job_obj.after, "shares": job_obj.shares,
    }
    schedule_given = "schedule" in job or "at" in job
    merged.update({k: v for k, v in job.items() if k not in ("env", "secret_env")})
    name = validate_name(merged["name"])
    kind = merged["kind"]
    if kind not in JOB_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(JOB_KINDS)}", field="kind")
    tz_name = merged["timezone"]
    if not isinstance(tz_name, str):
        raise InvalidInput("timezone must be a string", field="timezone")
    sched.parse_timezone(tz_name)
    payload = _payload(merged, kind)
    if schedule_given:
        text = _schedule(job, tz_name, after=True, now=now)  # none: checked below
    elif job_obj.schedule:
        text = sched.parse(job_obj.schedule, tz_name).text
    else:
        text = None  # runs after its upstreams only, as before
    if text is None and not payload["after"]:
        if job_obj.schedule:  # its schedule taken away, and no after
            raise InvalidInput(NO_TRIGGER, field="schedule")
        raise InvalidInput(
            f"{name} has no schedule of its own, so without after it would never run: give "
            "it a schedule in the same change, or keep after", field="after")
    enabled = job.get("enabled", job_obj.enabled)
    if not isinstance(enabled, bool):
        raise InvalidInput("enabled must be true or false", field="enabled")
    env, secrets = _env(job, job_obj.env, job_obj.secret_env)
    return {
        "name": name, "kind": kind, "schedule": text, "timezone": tz_name,
        **payload, "env": env, "secret_env": secrets,
        "policy": validate_policy(policy, job_obj.policy), "enabled": enabled,
    }


def parse_at(text: str) -> float:
    return parse_iso(text, "at")


def execute_changes(job: Job, fields: dict[str, Any]) -> list[str]:
    """The fields of a validated change (``jobspec.validate_changes``) that need
    ``execute`` and whose value differs from *job*'s (re-sending a value unchanged, as
    the panel's edit form does, needs only ``write``)."""
    # secret values live in env
    def env_parts(env: dict[str, str], secrets: list[str]) -> dict[str, dict[str, str]]:
        return {"env": {k: v for k, v in env.items() if k not in secrets},
                "secret_env": {k: v for k, v in env.items() if k in secrets}}
    old = env_parts(job.env, job.secret_env)
    new = env_parts(fields.get("env") or {}, fields.get("secret_env") or [])
    changed = []
    for key, value in fields.items():
        if key in new:
            if new[key] != old[key]:
                changed.append(key)
        elif key == "policy":
            for name in vars(value):
                if (permission_for(name) == "execute"
                        and getattr(value, name) != getattr(job.policy, name, None)):
                    changed.append(name)
        elif permission_for(key) == "execute" and value != getattr(job, key, None):
            changed.append(key)
    return changed
