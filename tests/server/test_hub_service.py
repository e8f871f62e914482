"""hermes-cron as ONE JupyterHub-managed service for every hub user: a real hub
(``python -m jupyterhub``, DummyAuthenticator, the in-memory NoProxy, loopback only)
starts ``python -m hermes_cron_ext.server.hub`` as its managed service, as an
unprivileged account when the tests run as root. Users, groups and tokens are made
through the hub's API by the test's own admin service; every request to hermes-cron is
real HTTP with a real hub token (or a browser's OAuth cookie)."""

from __future__ import annotations

import os
import re
import time

import pytest

pytest.importorskip("jupyterhub")

from tests.hub_support import (  # noqa: E402
    ADMIN_SCOPE,
    SERVICE,
    Browser,
    HubDeployment,
    call,
    proc_environ,
    proc_uids,
    running_hub,
    wait_until,
)

# it makes the service's Unix account when root: make accounts (and .ci/run) runs it
pytestmark = [pytest.mark.accounts, pytest.mark.timeout(120)]

ACCESS = f"access:services!service={SERVICE}"


@pytest.fixture(scope="module")
def hub() -> HubDeployment:
    """One hub for the module (a hub and its service take seconds to start): alice,
    bob and carol made through the hub's API, the group analysts (alice, carol), dana
    holding the admin scope through the hermes-cron-admin role, a token each."""
    # run-as off: this deployment lets its users share the service's account (a team that
    # trusts itself); tests/server/test_hub_users.py runs each run as its owner
    with running_hub(admin_user="dana", service_env={"HERMES_CRON_SHARED_ACCOUNT": "1"}) as hub:
        for name in ("alice", "bob", "carol"):
            status, reply = hub.admin(f"/users/{name}", "POST", {})
            assert status == 201, (status, reply)
        status, reply = hub.admin("/groups/analysts", "POST", {"users": ["alice", "carol"]})
        assert status == 201, (status, reply)
        for name in ("alice", "bob", "carol", "dana"):
            hub.tokens[name] = hub.token_for(name)
        yield hub


def test_the_service_runs_under_the_hub_and_ticks(hub):
    status, service = hub.admin(f"/services/{SERVICE}")
    assert status == 200, (status, service)
    assert service["command"][1:3] == ["-m", "hermes_cron_ext.server.hub"]
    status, report = wait_until(
        lambda: (lambda r: r if r[0] == 200 and r[1]["ticking"] else None)(
            hub.cron("api/cron/status", hub.tokens["alice"])), 30, "a ticking service")
    assert report["store"].endswith("cron.db")
    assert "hermes-cron: JupyterHub service listening on" in hub.log


def test_a_request_with_no_token_or_a_bad_one_is_401_not_a_redirect(hub):
    status, reply = hub.cron("api/cron/status")
    assert status == 401, (status, reply)
    assert reply["error"]["code"] == "unauthenticated"
    assert hub.cron("api/cron/jobs", method="POST", body={"name": "x"})[0] == 401
    assert hub.cron("api/cron/status", "0" * 32)[0] == 401
    assert hub.cron("api/cron/status", headers={
        "Authorization": "Bearer not-a-token"})[0] == 401


def test_bearer_and_token_headers_both_work(hub):
    assert hub.cron("api/cron/status", headers={
        "Authorization": f"Bearer {hub.tokens['bob']}"})[0] == 200
    assert hub.cron("api/cron/status", hub.tokens["bob"])[0] == 200


def test_a_token_without_the_access_scope_is_403(hub):
    # a real hub token of bob's that may only read his name: not enough to use the service
    narrow = hub.token_for("bob", scopes=["read:users:name!user"])
    status, reply = hub.cron("api/cron/status", narrow)
    assert status == 403, (status, reply)
    assert ACCESS in reply["error"]["message"]


def test_a_server_token_needs_the_access_scope_added(hub):
    """What c.Spawner.server_token_scopes is for (docs/jupyterhub.md): a token with the
    default server role's scopes is refused; with the service's access scope added, and
    the admin scope (granted only to those who hold it), it is let in."""
    default = hub.token_for("alice", scopes=["users:activity!user"])
    assert hub.cron("api/cron/status", default)[0] == 403
    for name, admin in (("alice", False), ("dana", True)):
        widened = hub.token_for(name, scopes=["users:activity!user", ACCESS, ADMIN_SCOPE]
                                if admin else ["users:activity!user", ACCESS])
        status, me = hub.cron("api/cron/me", widened)
        assert status == 200 and me["admin"] is admin, (name, status, me)


def test_another_service_is_not_a_user_here(hub):
    # the test's admin service holds no access scope to hermes-cron, and is no hub user
    assert hub.cron("api/cron/status", hub.admin_token)[0] == 403


def test_me_is_the_hubs_identity_with_groups_and_admin(hub):
    status, me = hub.cron("api/cron/me", hub.tokens["alice"])
    assert status == 200, (status, me, "GET /api/cron/me (the lead's route) is not there yet")
    assert me == {"name": "alice", "groups": ["analysts"], "admin": False}
    assert hub.cron("api/cron/me", hub.tokens["bob"])[1] == {
        "name": "bob", "groups": [], "admin": False}
    assert hub.cron("api/cron/me", hub.tokens["dana"])[1] == {
        "name": "dana", "groups": [], "admin": True}


def test_a_token_narrowed_by_its_owner_is_not_admin(hub):
    """admin is the token's scope, not the user's: dana's token made only to use the
    service is no admin token."""
    narrow = hub.token_for("dana", scopes=[ACCESS])
    status, me = hub.cron("api/cron/me", narrow)
    assert status == 200, (status, me)
    assert me["admin"] is False


@pytest.mark.parametrize("path", [
    "api/contents", "api/contents/svc-home", "api/kernels", "api/kernelspecs",
    "api/sessions", "api/terminals", "api/me", "api/status", "api/config/x",
    "files/cron.db", "view/cron.db", "nbconvert/html/x.ipynb", "api/shutdown",
    "api/events/subscribe", "lab", "tree"])
def test_nothing_but_cron_is_served(hub, path):
    status, _ = hub.cron(path, hub.tokens["alice"])
    assert status in (403, 404), (path, status)
    assert hub.cron(path, hub.tokens["alice"], "POST", {})[0] in (403, 404, 405), path


def test_the_service_runs_as_its_own_unprivileged_account(hub):
    if hub.account is None:
        pytest.skip("the tests do not run as root: the service runs as this account")
    pid = hub.service_pid()
    assert proc_uids(pid) == [hub.account.pw_uid] * 4
    status, report = hub.cron("api/cron/status", hub.tokens["alice"])
    ticker_pids = {t["pid"] for t in report["tickers"] if t["alive"]}
    assert pid in ticker_pids, (pid, report["tickers"])
    assert os.stat(hub.store).st_uid == hub.account.pw_uid


def test_the_services_hub_token_has_no_privilege_and_is_not_in_its_environment(hub):
    """The hub's token for the service (its JUPYTERHUB_API_TOKEN) identifies it and
    nothing more; the service keeps it out of its environment (it execs itself without
    it: a variable merely removed stays readable in /proc/PID/environ)."""
    pid = hub.service_pid()
    environ = proc_environ(pid)
    assert "JUPYTERHUB_API_TOKEN" not in environ and "JPY_API_TOKEN" not in environ
    assert hub.service_token not in open(f"/proc/{pid}/environ", "rb").read().decode(
        errors="replace")
    token = hub.service_token
    status, model = call(f"{hub.api}/user", token)
    assert status == 200 and model["kind"] == "service" and model["name"] == SERVICE
    assert model["scopes"] == [], model["scopes"]
    for path in ("/users", "/groups", "/users/alice/tokens", "/services"):
        assert call(hub.api + path, token)[0] == 403, path
    assert call(f"{hub.api}/users/alice/tokens", token, "POST", {})[0] == 403


def test_a_run_does_not_inherit_the_hub_token(hub):
    alice = hub.tokens["alice"]
    status, job = hub.cron("api/cron/jobs", alice, "POST", {
        "name": "env", "schedule": "@daily", "command": "id -u; env"})
    assert status == 201, (status, job)
    status, run = hub.cron(f"api/cron/jobs/{job['id']}/run", alice, "POST")
    assert status in (200, 201, 202), (status, run)

    def ended():
        s, r = hub.cron(f"api/cron/runs/{run['id']}", alice)
        return r if s == 200 and r.get("finished_at") else None
    ended_run = wait_until(ended, 30, "the run to end", 0.2)
    assert ended_run["status"] == "succeeded", ended_run
    status, log = hub.cron(f"api/cron/runs/{run['id']}/log", alice)
    text = log if isinstance(log, str) else str(log)
    assert status == 200, (status, log)
    assert "JUPYTERHUB_API_TOKEN" not in text and "JPY_API_TOKEN" not in text, text
    if hub.account is not None:  # this deployment shares the service's account
        assert re.search(rf"^{hub.account.pw_uid}$", text, re.M), text


def test_a_browser_logs_in_through_the_hubs_oauth(hub):
    browser = Browser(hub)
    status, _, page = browser.request(hub.hub_url + "/hub/login")
    assert status == 200
    xsrf = re.search(r'name="_xsrf"\s+value="([^"]+)"', page)
    assert xsrf, page[:2000]
    status, url, _ = browser.request(hub.hub_url + "/hub/login?next=%2Fhub%2Fhome", {
        "username": "dana", "password": "x", "_xsrf": xsrf.group(1)})
    assert status == 200 and url.endswith("/hub/home"), (status, url)
    # a page of the service: to the hub's OAuth, back with a code, a cookie, then here
    t0 = time.monotonic()
    status, url, body = browser.request(hub.service_url + "api/cron/status")
    assert status == 200 and url == hub.service_url + "api/cron/status", (status, url, body)
    assert '"ticking"' in body
    assert any(c.path.startswith(f"/services/{SERVICE}") for c in browser.jar)
    # the cookie alone authenticates the browser's API calls now, admin scope included
    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.jar
                       if c.path.startswith(f"/services/{SERVICE}"))
    status, me = hub.cron("api/cron/me", headers={"Cookie": cookie})
    assert status == 200 and me["name"] == "dana" and me["admin"] is True, (status, me)
    assert time.monotonic() - t0 < 10
    # a script with no credentials is still told 401, never sent to a login page
    assert hub.cron("api/cron/status")[0] == 401


def test_idempotency_keys_are_each_users_own(hub):
    """Two users sending the same Idempotency-Key make two jobs, each their own: a key
    is scoped by the hub user, not by 'token-authenticated' (every hub request is)."""
    key = {"Idempotency-Key": "same-key-for-both"}
    made = {}
    for name in ("alice", "bob"):
        status, job = hub.cron("api/cron/jobs", hub.tokens[name], "POST", {
            "name": f"idem-{name}", "schedule": "@daily", "command": "true"}, key)
        assert status == 201, (name, status, job)
        made[name] = job
    assert made["alice"]["id"] != made["bob"]["id"]
    # a retry is still recognised, for its own user
    status, again = hub.cron("api/cron/jobs", hub.tokens["bob"], "POST", {
        "name": "idem-bob", "schedule": "@daily", "command": "true"}, key)
    assert status == 200 and again["id"] == made["bob"]["id"], (status, again)


def test_owner_comes_from_the_hub_and_groups_from_the_hub_too(hub):
    """A job is its creator's as the hub names them (the body cannot name one); a share
    with a hub group reaches its members; an admin sees it; anyone else is told 404."""
    alice = hub.tokens["alice"]
    spec = {"name": "report", "schedule": "@daily", "command": "true",
            "shares": {"analysts": "read"}}
    status, refused = hub.cron("api/cron/jobs", alice, "POST", {**spec, "owner": "bob"})
    assert status == 400 and refused["error"]["field"] == "owner", (status, refused)
    status, job = hub.cron("api/cron/jobs", alice, "POST", spec)
    assert status == 201, (status, job)
    assert job["owner"] == "alice"
    path = f"api/cron/jobs/{job['id']}"
    assert hub.cron(path, hub.tokens["bob"])[0] == 404          # not in analysts
    assert hub.cron(path, hub.tokens["carol"])[0] == 200        # analysts: read
    assert hub.cron(path, hub.tokens["carol"], "DELETE")[0] in (403, 404)
    status, seen = hub.cron(path, hub.tokens["dana"])           # the admin scope
    assert status == 200 and seen["owner"] == "alice"
    assert job["id"] not in {j["id"] for j in hub.cron("api/cron/jobs", hub.tokens["bob"])[1]
                             ["jobs"]}


# -- every route and stream x {owner, other user, group member, admin, no token} -------
#: who asks: alice owns the job; carol is in analysts, which it is shared with to read;
#: bob is no one to it; dana holds the admin scope; "none" sends no token
WHO = ("alice", "bob", "carol", "dana", "none")
#: the answer each of WHO gets, route by route (``{job}``, ``{run}``, ``{backfill}``:
#: alice's). 404 for bob everywhere: the job does not exist for him.
MATRIX = [
    ("GET", "jobs/{job}", None, (200, 404, 200, 200, 401)),
    ("GET", "jobs/{job}/runs", None, (200, 404, 200, 200, 401)),
    ("GET", "jobs/{job}/parameters", None, (200, 404, 200, 200, 401)),
    ("GET", "jobs/{job}/pipeline", None, (200, 404, 200, 200, 401)),
    ("GET", "jobs/{job}/backfill", None, (200, 404, 200, 200, 401)),
    ("GET", "jobs/{job}/stream", None, (200, 404, 200, 200, 401)),
    ("GET", "runs/{run}", None, (200, 404, 200, 200, 401)),
    ("GET", "runs/{run}/log", None, (200, 404, 200, 200, 401)),
    ("GET", "runs/{run}/stream", None, (200, 404, 200, 200, 401)),
    ("GET", "backfills/{backfill}", None, (200, 404, 200, 200, 401)),
    ("PATCH", "jobs/{job}", {"description": "checked"}, (200, 404, 403, 200, 401)),
    ("POST", "jobs/{job}/pause", None, (200, 404, 403, 200, 401)),
    ("POST", "jobs/{job}/resume", None, (200, 404, 403, 200, 401)),
    ("POST", "jobs/{job}/backfill", {"from": "2026-01-01", "to": "2026-01-02",
                                     "dry_run": True}, (200, 404, 403, 200, 401)),
    ("POST", "backfills/{backfill}/cancel", None, (202, 404, 403, 202, 401)),
    # alice's cancel ends the run: dana's then finds it ended (409), not missing
    ("POST", "runs/{run}/cancel", None, (202, 404, 403, 409, 401)),
    ("POST", "jobs/{job}/run", None, (202, 404, 403, 202, 401)),
]


def _status_only(hub, path: str, token: str | None) -> int:
    """The status of a request whose answer may be an endless stream (SSE)."""
    import http.client
    import urllib.parse

    url = urllib.parse.urlsplit(hub.service_url + path)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=15)
    try:
        conn.request("GET", url.path + (f"?{url.query}" if url.query else ""),
                     headers={"Authorization": f"token {token}"} if token else {})
        return conn.getresponse().status
    finally:
        conn.close()


def test_every_route_answers_each_user_as_the_rules_say(hub):
    tokens = {**hub.tokens, "none": None}
    alice = hub.tokens["alice"]
    status, job = hub.cron("api/cron/jobs", alice, "POST", {
        "name": "matrix", "schedule": "@daily", "command": "sleep 30",
        "shares": {"analysts": "read"}, "overlap": "allow"})  # each run now is started
    assert status == 201, job
    status, run = hub.cron(f"api/cron/jobs/{job['id']}/run", alice, "POST", {})
    assert status == 202, run
    wait_until(lambda: hub.cron(f"api/cron/runs/{run['id']}", alice)[1]["status"]
               == "running", 30, "the run to start")
    status, backfill = hub.cron(f"api/cron/jobs/{job['id']}/backfill", alice, "POST", {
        "from": "2026-01-01", "to": "2026-01-03", "max_parallel": 1})
    assert status == 201, backfill
    ids = {"job": job["id"], "run": run["id"], "backfill": backfill["id"]}
    answers = {}
    for method, route, body, expected in MATRIX:
        path = "api/cron/" + route.format(**ids)
        got = []
        for who in WHO:
            if method == "GET" and route.endswith("stream"):
                got.append(_status_only(hub, path, tokens[who]))
            else:
                got.append(hub.cron(path, tokens[who], method, body)[0])
            if route == "runs/{run}/cancel" and who == "alice":
                # her cancel ends the run (its supervisor stops it and records the
                # end): the others then ask of an ended run
                wait_until(lambda: hub.cron(f"api/cron/runs/{run['id']}", alice)[1]["status"]
                           == "cancelled", 30, "the cancelled run to end")
        answers[f"{method} {route}"] = (tuple(got), expected)
    wrong = {k: v for k, v in answers.items() if v[0] != v[1]}
    assert not wrong, wrong
    # the lists: alice's job is in alice's, carol's and dana's, never in bob's
    for who, sees in (("alice", True), ("bob", False), ("carol", True), ("dana", True)):
        status, page = hub.cron("api/cron/jobs", tokens[who])
        assert status == 200 and (job["id"] in [j["id"] for j in page["jobs"]]) is sees
        status, runs = hub.cron("api/cron/runs?limit=500", tokens[who])
        assert status == 200 and (run["id"] in [r["id"] for r in runs["runs"]]) is sees
        status, stats = hub.cron("api/cron/stats", tokens[who])
        assert (job["id"] in [j["job_id"] for j in stats["jobs"]]) is sees
    assert hub.cron("api/cron/jobs", None)[0] == 401
    # deleting: not bob (no such job), not carol (she reads it), not without a token;
    # dana, an admin, may; then it is gone for alice too
    path = f"api/cron/jobs/{job['id']}"
    assert [hub.cron(path, tokens[who], "DELETE")[0] for who in ("bob", "carol", "none")
            ] == [404, 403, 401]
    assert hub.cron(path, tokens["dana"], "DELETE")[0] == 204
    assert hub.cron(path, alice)[0] == 404


def test_the_events_feed_carries_only_the_users_jobs(hub):
    import http.client
    import urllib.parse

    alice = hub.tokens["alice"]
    status, job = hub.cron("api/cron/jobs", alice, "POST", {
        "name": "feed", "schedule": "@daily", "command": "true"})
    assert status == 201, job
    hub.cron(f"api/cron/jobs/{job['id']}/pause", alice, "POST")

    def feed(token: str) -> str:
        """Everything the feed replays from the start, read for a second."""
        url = urllib.parse.urlsplit(hub.service_url + "api/cron/events?cursor=0")
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=1.5)
        conn.request("GET", f"{url.path}?{url.query}",
                     headers={"Authorization": f"token {token}"})
        resp = conn.getresponse()
        assert resp.status == 200
        data = b""
        try:
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            pass
        finally:
            conn.close()
        return data.decode(errors="replace")
    assert job["id"] in feed(alice)
    assert job["id"] in feed(hub.tokens["dana"])
    assert job["id"] not in feed(hub.tokens["bob"])
    assert hub.cron(f"api/cron/jobs/{job['id']}", alice, "DELETE")[0] == 204
