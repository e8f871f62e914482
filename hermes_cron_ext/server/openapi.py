"""The OpenAPI document served at ``/api/cron/openapi.json``.

``openapi.json`` holds the routes and the response shapes; the job bodies
(``JobInput``, ``JobChange``) are generated from the options schema
(``domain/options.py``), so a new option is in the document without an edit here.
"""

from __future__ import annotations

import functools
import json
import os

from hermes_cron_ext.domain.options import OPTIONS, json_properties

PATH = os.path.join(os.path.dirname(__file__), "openapi.json")


@functools.cache
def document() -> bytes:
    """The whole document, as served (built once per process; call it off the loop)."""
    with open(PATH, encoding="utf-8") as f:
        doc = json.load(f)
    schemas = doc["components"]["schemas"]
    schemas["JobInput"]["properties"] = json_properties(create=True)
    schemas["JobChange"]["properties"] = json_properties(create=False)
    return json.dumps(doc).encode()


def options_json() -> bytes:
    """``GET /api/cron/options``: the options schema, for the panel's form and scripts."""
    return json.dumps({"options": [o.to_json() for o in OPTIONS]}).encode()
