"""Server-side request forgery: a job's webhook and ping URLs may not reach inside.

Checked when a job is created or changed (400 naming the field), and again at delivery
on the address actually connected to (DNS can change). The operator may allow private
hosts (``c.HermesCron.allow_private_urls``); the operator's own webhook is never limited.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.server.test_handlers import (  # noqa: F401 (fixtures)
    api,
    cron,
    cron_db,
    hermes_config,
    jp_server_config,
    server_ticker,
)

PRIVATE_URLS = ("http://127.0.0.1:9/x", "http://localhost/x", "http://169.254.169.254/latest",
                "http://10.0.0.1/", "https://192.168.1.1/h", "http://[::1]:8080/",
                "http://[::ffff:127.0.0.1]/", "http://100.64.0.1/", "http://0.0.0.0/",
                "http://[fe80::1]/")


async def test_webhook_and_ping_urls_must_be_public(cron, jp_fetch):  # noqa: F811
    base = {"name": "hook", "schedule": "@yearly", "command": "true"}
    for field in ("notify_url", "ping_url"):
        for url in PRIVATE_URLS:
            err = await api(jp_fetch, "jobs", method="POST", expect=400,
                            body={**base, field: url})
            assert err["error"]["field"] == field, (url, err)
            assert "c.HermesCron.allow_private_urls" in err["error"]["message"]
        for url in ("http://", "ftp://example.com/x", "http:///path", "http://h:99999/"):
            err = await api(jp_fetch, "jobs", method="POST", expect=400,
                            body={**base, field: url})
            assert err["error"]["field"] == field, (url, err)
    assert (await api(jp_fetch, "jobs"))["jobs"] == []
    public = "https://93.184.215.14/hook"  # a literal public address: no DNS needed
    job = await api(jp_fetch, "jobs", method="POST", expect=201,
                    body={**base, "notify_url": public, "ping_url": public})
    assert job["policy"]["notify_url"] == public
    for url in PRIVATE_URLS[:3]:
        await api(jp_fetch, "jobs", "hook", method="PATCH", expect=400,
                  body={"policy": {"ping_url": url}})
    # unchanged URLs are not checked again; a change of schedule goes through
    await api(jp_fetch, "jobs", "hook", method="PATCH", body={"schedule": "@daily"})


@pytest.mark.parametrize("hermes_config", [{"allow_private_urls": True}])
async def test_operator_may_allow_private_urls(cron, jp_fetch):  # noqa: F811
    job = await api(jp_fetch, "jobs", method="POST", expect=201, body={
        "name": "internal", "schedule": "@yearly", "command": "true",
        "notify_url": "http://127.0.0.1:9/x", "ping_url": "http://10.0.0.1/p"})
    assert job["policy"]["ping_url"] == "http://10.0.0.1/p"


async def test_a_stored_private_url_is_refused_at_delivery(cron, jp_fetch):  # noqa: F811
    """A job whose webhook points inside (stored before, or its name now resolves
    there) gets no delivery; the operator's own webhook on the same host still does."""
    from hermes_cron_ext.domain.jobspec import validate_new
    from tests.runtime.test_policies import Receiver

    receiver = Receiver()
    try:
        cron.host.ticker.notifier.default_url = f"{receiver.url}/operator"
        await cron.host.store.create_job(validate_new({
            "name": "inside", "schedule": "@yearly", "command": "false",
            "notify_url": f"{receiver.url}/job", "ping_url": f"{receiver.url}/ping"}))
        run = await api(jp_fetch, "jobs", "inside", "run", method="POST", body="",
                        expect=202)
        for _ in range(300):
            if any(p == "/operator" for m, p, b in receiver.hits):
                break
            await asyncio.sleep(0.05)
        hits = [p for m, p, b in receiver.hits]
        assert "/operator" in hits, hits
        assert (await api(jp_fetch, "runs", run["id"]))["status"] == "failed"
        await asyncio.sleep(1.0)  # deliveries run on a pool: give the job's a chance
        assert [p for m, p, b in receiver.hits] == ["/operator"]
        assert cron.host.ticker.notifier.failed >= 2  # the job's webhook and its pings
    finally:
        receiver.close()


def test_delivery_checks_the_address_it_connects_to():
    """The connection itself refuses a non-public peer, whatever the name resolved to
    when it was checked (DNS can change between the check and the connect)."""
    import urllib.error
    import urllib.request

    from hermes_cron_ext.runtime.notify import Notifier, PrivateAddress, Refused
    from tests.runtime.test_policies import Receiver

    receiver = Receiver()
    try:
        notifier = Notifier(None, allow_private_urls=False)
        with pytest.raises(urllib.error.URLError) as err:
            notifier._public.open(urllib.request.Request(f"{receiver.url}/x"), timeout=5)
        assert isinstance(err.value.reason, PrivateAddress)
        with pytest.raises(Refused, match="loopback, private or link-local"):
            notifier._deliver(f"{receiver.url}/x", {"a": 1}, job_url=True)
        assert receiver.hits == []
        assert notifier._deliver(f"{receiver.url}/op", {"a": 1}, job_url=False) is True
        allowed = Notifier(None, allow_private_urls=True)
        assert allowed._deliver(f"{receiver.url}/y", None, job_url=True) is True
        assert [p for m, p, b in receiver.hits] == ["/op", "/y"]
        notifier.close()
        allowed.close()
    finally:
        receiver.close()
