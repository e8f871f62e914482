"""Idempotency keys are each user's own: a replay answers only its sender, a different
body under the same key is a 409 (tests/server/test_handlers.py covers the token case)."""

from __future__ import annotations

import json

import pytest
from jupyter_server.auth.identity import IdentityProvider, User

from tests.server.test_handlers import cron, cron_db, server_ticker  # noqa: F401 (fixtures)


class HeaderIdentity(IdentityProvider):
    """Who the request says it is (``X-User``): two users of one server, as behind a hub."""

    def get_user(self, handler):
        name = handler.request.headers.get("X-User")
        return User(username=name) if name else super().get_user(handler)


@pytest.fixture
def jp_server_config(cron_db, server_ticker):  # noqa: F811
    return {"ServerApp": {"jpserver_extensions": {"hermes_cron_ext": True},
                          "identity_provider_class": HeaderIdentity,
                          "disable_check_xsrf": True},
            "HermesCron": {"db": cron_db, "ticker": False}}


async def _post(jp_fetch, user: str, body: dict, key: str):
    resp = await jp_fetch("api", "cron", "jobs", method="POST", body=json.dumps(body),
                          headers={"X-User": user, "Idempotency-Key": key,
                                   "Authorization": ""}, raise_error=False)
    return resp.code, json.loads(resp.body)


async def test_one_users_key_is_not_anothers(cron, jp_fetch):  # noqa: F811
    alice = {"name": "alice-job", "schedule": "@yearly", "command": "echo alice"}
    code, first = await _post(jp_fetch, "alice", alice, "nightly")
    assert code == 201
    assert (await _post(jp_fetch, "alice", alice, "nightly")) == (200, first)  # a retry
    # bob, with the same key and another body, makes his own job: no 409, no alice's job
    bob = {"name": "bob-job", "schedule": "@yearly", "command": "echo bob"}
    code, bobs = await _post(jp_fetch, "bob", bob, "nightly")
    assert code == 201 and bobs["id"] != first["id"] and bobs["name"] == "bob-job"
    # and alice's key with another body is her mistake: 409 naming the key
    code, err = await _post(jp_fetch, "alice", {**alice, "command": "rm -rf ~"}, "nightly")
    assert code == 409 and "idempotency key 'nightly' was used" in err["error"]["message"]
