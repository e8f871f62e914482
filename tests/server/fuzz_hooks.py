"""Schemathesis hooks for tests/server/test_api_fuzz.py: hostile values in generated requests.

Schemathesis generates requests that fit the OpenAPI document; the bodies that broke
the server were the ones that do not: JSON nested thousands of levels deep, instants
and intervals past what a datetime holds, numbers past any range. Every third job body
and preview query gets one of them, in turn, so the same run of the fuzzer proves
they are a 4xx, never a 500."""

from __future__ import annotations

import itertools

import schemathesis

_turn = itertools.count()


def _deep(levels: int):
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


BODY_HOSTILE = (
    # schemathesis itself recurses two frames a level: 5,000 levels are sent raw by
    # tests/security/test_hostile_input.py; here, deep values go all the way through
    lambda b: {**b, "parameters": {"deep": _deep(300)}},
    lambda b: {**b, "schedule": "@every 100000000h"},
    lambda b: {**b, "at": "9999-12-31T23:59", "timezone": "Etc/GMT+12"},
    lambda b: {**b, "retries": 10 ** 40, "timeout": 1e308},
    lambda b: {**b, "max_output": "9" * 400 + "G"},
    lambda b: {**b, "command": "echo \x00"},
)
QUERY_HOSTILE = (
    {"from": "9999-12-31T23:00:00Z"},
    {"count": 10 ** 20},
    {"schedule": "@every 100000000h"},
)


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    n = next(_turn)
    if n % 3:
        return
    path = case.operation.path
    if case.method in ("POST", "PATCH") and path in ("/jobs", "/jobs/{ref}"):
        body = case.body if isinstance(case.body, dict) else {}
        case.body = BODY_HOSTILE[(n // 3) % len(BODY_HOSTILE)](body)
    elif case.method == "GET" and path == "/preview":
        case.query = {**(case.query or {}), "schedule": "@daily",
                      **QUERY_HOSTILE[(n // 3) % len(QUERY_HOSTILE)]}
