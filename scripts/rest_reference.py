"""The REST reference page, rendered from the OpenAPI document at build time.

A MkDocs hook (``mkdocs.yml``: ``hooks``): :func:`on_files` adds ``rest-reference.md``
to the site, made from the document the server serves at ``/api/cron/openapi.json``
(``hermes_cron_ext/server/openapi.json``, with the job bodies the server fills in
from the options schema), so the page is never stale and never checked in. Each
path and method becomes a section with its summary, parameters, request body and
responses; each schema in ``components`` a table of its properties.

Also a script: ``python scripts/rest_reference.py`` prints the page.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OPENAPI = ROOT / "hermes_cron_ext" / "server" / "openapi.json"
PAGE = "rest-reference.md"
METHODS = ("get", "put", "post", "patch", "delete", "head", "options")


def load() -> dict:
    """The document as served: the file, with what the server adds to it when it
    serves it (the job bodies from the options schema), when the package imports."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        from hermes_cron_ext.server.openapi import document
    except ImportError:
        return json.loads(OPENAPI.read_text(encoding="utf-8"))
    return json.loads(document())


def _text(value: str) -> str:
    """Prose for a table cell or a paragraph: one line, pipes escaped, and ``<``,
    ``*`` and ``_`` outside code spans kept from being read as HTML or emphasis."""
    parts = str(value).replace("\r", " ").replace("\n", " ").split("`")
    for i in range(0, len(parts), 2):  # outside code spans
        parts[i] = (parts[i].replace("&", "&amp;").replace("<", "&lt;")
                    .replace(">", "&gt;").replace("*", r"\*").replace("_", r"\_"))
    return "`".join(parts).replace("|", r"\|").strip()


def _code(value) -> str:
    """A value as a code span (a pipe in a code span does not split a table's cells)."""
    text = value if isinstance(value, str) else json.dumps(value)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _anchor(name: str) -> str:
    return name.lower()


def _type(schema: dict | None) -> str:
    """A schema in a few words: ``string or null``, ``array of [Job](#job)``, ..."""
    if not schema:
        return "any"
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{_anchor(name)})"
    for key, word in (("oneOf", " or "), ("anyOf", " or "), ("allOf", " and ")):
        if key in schema:
            return word.join(_type(s) for s in schema[key])
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds] if kinds else []
    words = []
    for kind in kinds:
        if kind == "array":
            words.append("array of " + _type(schema.get("items")))
        elif kind == "object" and schema.get("properties"):
            fields = "; ".join(f"`{name}`: {_type(sub)}"
                               for name, sub in schema["properties"].items())
            words.append(f"object ({fields})")
        else:
            words.append(kind)
    text = " or ".join(words) or "any"
    if "format" in schema:
        text += f" ({schema['format']})"
    return text


def _limits(schema: dict | None) -> str:
    """What a value may be beyond its type: enum, bounds, pattern, default."""
    schema = schema or {}
    said = []
    if "enum" in schema:
        said.append("one of " + ", ".join(_code(v) for v in schema["enum"]))
    for key, word in (("minimum", "at least"), ("maximum", "at most"),
                      ("exclusiveMinimum", "more than"), ("exclusiveMaximum", "less than"),
                      ("minLength", "length at least"), ("maxLength", "length at most"),
                      ("minItems", "items at least"), ("maxItems", "items at most")):
        if key in schema:
            said.append(f"{word} {schema[key]}")
    if "pattern" in schema:
        said.append("matches " + _code(schema["pattern"]))
    if "default" in schema:
        said.append("default " + _code(schema["default"]))
    return "; ".join(said)


def _describe(schema: dict | None, description: str = "") -> str:
    """The description column: the given text, then the schema's own, then its limits."""
    schema = schema or {}
    words = [_text(d) for d in (description, schema.get("description", "")) if d]
    limits = _limits(schema)
    if limits:
        words.append(limits)
    return "; ".join(dict.fromkeys(words))


def _bodies(content: dict | None) -> str:
    if not content:
        return "–"
    return "; ".join(f"{_type(media.get('schema'))} (`{kind}`)"
                     for kind, media in content.items())


def _operation(path: str, method: str, op: dict, shared: list[dict]) -> list[str]:
    out = [f"## `{method.upper()} {path}`", ""]
    if op.get("summary"):
        out += [_text(op["summary"]) + ".", ""]
    if op.get("description"):
        out += [_text(op["description"]), ""]
    params = {(p["name"], p["in"]): p for p in shared}
    params.update({(p["name"], p["in"]): p for p in op.get("parameters", [])})
    if params:
        out += ["| parameter | in | type | required | description |",
                "| --- | --- | --- | --- | --- |"]
        for p in params.values():
            out.append(f"| `{p['name']}` | {p['in']} | {_type(p.get('schema'))} | "
                       f"{'yes' if p.get('required') else 'no'} | "
                       f"{_describe(p.get('schema'), p.get('description', '')) or '–'} |")
        out.append("")
    body = op.get("requestBody")
    if body:
        need = "required" if body.get("required") else "optional"
        out += [f"Request body ({need}): {_bodies(body.get('content'))}.", ""]
    out += ["| response | description | body |", "| --- | --- | --- |"]
    for status, response in op.get("responses", {}).items():
        out.append(f"| {status} | {_text(response.get('description', '')) or '–'} | "
                   f"{_bodies(response.get('content'))} |")
    out.append("")
    return out


def _schema(name: str, schema: dict) -> list[str]:
    out = [f"### {name}", ""]
    if schema.get("description"):
        out += [_text(schema["description"]), ""]
    properties = schema.get("properties")
    if not properties:
        return out + [f"Type: {_type(schema)}.", ""]
    required = set(schema.get("required", []))
    out += ["| property | type | required | description |", "| --- | --- | --- | --- |"]
    for prop, sub in properties.items():
        out.append(f"| `{prop}` | {_type(sub)} | {'yes' if prop in required else 'no'} | "
                   f"{_describe(sub) or '–'} |")
    if schema.get("additionalProperties") is False:
        out += ["", "No other properties are accepted."]
    return out + [""]


def render(doc: dict) -> str:
    """The reference page, as markdown."""
    info = doc.get("info", {})
    base = ", ".join(f"`{s['url']}`" for s in doc.get("servers", [])) or "`/`"
    out = ["# REST reference", "",
           f"{_text(info.get('title', ''))} {info.get('version', '')}, OpenAPI "
           f"{doc.get('openapi', '')}. Generated from `hermes_cron_ext/server/openapi.json` "
           "(as the server serves it at `/api/cron/openapi.json`) when the site is built; "
           "the overview is on the [REST API](rest.md) page.", ""]
    if info.get("description"):
        out += [_text(info["description"]), ""]
    out += [f"Paths are relative to {base} under the server's base URL."]
    for scheme in doc.get("components", {}).get("securitySchemes", {}).values():
        where = scheme.get("name", "")
        out.append(f"Authentication: the `{where}` {scheme.get('in', '')} "
                   f"({_text(scheme.get('description', ''))}).")
    out += [""]
    for path, item in doc.get("paths", {}).items():
        shared = item.get("parameters", [])
        for method in METHODS:
            if method in item:
                out += _operation(path, method, item[method], shared)
    schemas = doc.get("components", {}).get("schemas", {})
    if schemas:
        out += ["## Schemas", ""]
        for name, schema in schemas.items():
            out += _schema(name, schema)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).rstrip("\n") + "\n"


# -- the MkDocs hook ------------------------------------------------------------------
def on_files(files, config):
    """Add the generated page to the site's files (before the nav is resolved)."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render(load())))
    return files


def on_serve(server, config, builder):
    """``mkdocs serve`` rebuilds when the document changes."""
    server.watch(str(OPENAPI))
    return server


if __name__ == "__main__":
    sys.stdout.write(render(load()))
