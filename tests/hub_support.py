"""JupyterHub test support.

- ``NoProxy``: a proxy that keeps routes in memory: the hub needs one, and
  configurable-http-proxy is a node program this machine need not have. The tests talk
  to the hub and to the servers and services directly.
- ``running_hub()``: a real hub with hermes-cron as its managed service (the deployment
  docs/jupyterhub.md describes), run as a Unix account of its own when the tests are root;
  ``HubDeployment`` (its URLs, the test's admin token, users' tokens), ``Browser`` (a
  cookie-keeping client that follows the OAuth redirects a browser would), ``call``."""

from __future__ import annotations

import contextlib
import fcntl
import http.cookiejar
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from jupyterhub.proxy import Proxy


class NoProxy(Proxy):
    should_start = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.routes: dict = {}

    async def add_route(self, routespec, target, data):
        self.routes[routespec] = {"routespec": routespec, "target": target, "data": data}

    async def delete_route(self, routespec):
        self.routes.pop(routespec, None)

    async def get_all_routes(self):
        return dict(self.routes)


# -- a real hub with hermes-cron as its managed service (tests/server/test_hub_service.py) --

HERE = os.path.dirname(os.path.abspath(__file__))
#: the service's name on the hub, hence its prefix /services/hermes-cron/ and access scope
SERVICE = "hermes-cron"
ADMIN_SCOPE = "custom:hermes-cron:admin"
#: the unprivileged account the service runs as when the tests run as root (its name
#: ends in the test process's pid)
SERVICE_ACCOUNT = "hermes-svc"
#: every folder the tests make starts so, which is how a leftover account is recognised
TEMP_PREFIX = "hermes-hub-test-"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, token: str | None = None, method: str = "GET", body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One HTTP request on loopback: (status, JSON body or text or None); 4xx/5xx are
    answers here, not exceptions."""
    head = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        head.setdefault("Authorization", f"token {token}")
    req = urllib.request.Request(url, method=method, headers=head,
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            status, data = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, data = exc.code, exc.read()
    try:
        return status, json.loads(data) if data else None
    except ValueError:
        return status, data.decode(errors="replace")


def wait_until(check: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


#: shared by every process that runs these tests (two sessions may run them at once):
#: the folders made traversable, their modes before, and which processes need them
_TRAVERSE_STATE = os.path.join(tempfile.gettempdir(), "hermes-hub-test-traverse.json")


@contextlib.contextmanager
def _traverse_state() -> Iterator[dict[str, Any]]:
    """The shared state, read and written under an exclusive lock."""
    with open(_TRAVERSE_STATE + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(_TRAVERSE_STATE) as f:
                state = json.load(f)
        except (OSError, ValueError):
            state = {}
        # a process that died without leaving holds nothing
        for entry in state.values():
            entry["holders"] = [p for p in entry["holders"] if os.path.exists(f"/proc/{p}")]
        yield state
        with open(_TRAVERSE_STATE + ".tmp", "w") as f:
            json.dump(state, f)
        os.replace(_TRAVERSE_STATE + ".tmp", _TRAVERSE_STATE)


def _closed_folders(paths: list[str], opened: Any = ()) -> list[str]:
    """The folders above *paths* (symlinks resolved) that others may not traverse, or
    that another test process has *opened* for them."""
    found: list[str] = []
    for path in paths:
        folder = os.path.dirname(os.path.realpath(path))
        while True:
            if (folder in opened or not os.stat(folder).st_mode & stat.S_IXOTH) \
                    and folder not in found:
                found.append(folder)
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
    return found


@contextlib.contextmanager
def traversable(paths: list[str]) -> Iterator[None]:
    """Let other accounts traverse (o+x, never read) every folder above *paths* that
    they cannot (/root, where pyenv keeps the venv's python), and put back each one's
    exact mode when the last process of these tests that needs it is done."""
    me = os.getpid()
    with _traverse_state() as state:
        for folder in _closed_folders(paths, state):
            mode = stat.S_IMODE(os.stat(folder).st_mode)
            entry = state.setdefault(folder, {"mode": mode, "holders": []})
            os.chmod(folder, mode | stat.S_IXOTH)
            entry["holders"].append(me)  # only the folders this process needs
    try:
        yield
    finally:
        with _traverse_state() as state:
            for folder, entry in list(state.items()):
                entry["holders"] = [p for p in entry["holders"] if p != me]
                if not entry["holders"]:
                    with contextlib.suppress(FileNotFoundError):  # a test's temp folder
                        os.chmod(folder, entry["mode"])
                    del state[folder]


def _account_pids(uid: int) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if proc_uids(int(name))[0] == uid:
                    pids.append(int(name))
            except (OSError, AssertionError):
                pass
    return pids


def _drop_account(name: str) -> None:
    """Remove the account *name* of these tests, stopping what still runs as it (the
    service's fork server and agents, which are ours)."""
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return
    with contextlib.suppress(AssertionError):
        wait_until(lambda: not _account_pids(uid), 5, f"{name}'s processes to end")
    for pid in _account_pids(uid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    subprocess.run(["userdel", name], check=False, capture_output=True)


def _drop_stale_accounts() -> None:
    """Accounts an earlier, killed run of these tests left (their process is gone)."""
    for entry in pwd.getpwall():
        prefix, _, pid = entry.pw_name.rpartition("-")
        if prefix == SERVICE_ACCOUNT and pid.isdigit() and TEMP_PREFIX in entry.pw_dir \
                and not os.path.exists(f"/proc/{pid}"):
            _drop_account(entry.pw_name)
            shutil.rmtree(os.path.dirname(entry.pw_dir), ignore_errors=True)


@contextlib.contextmanager
def unix_account(home: str) -> Iterator[pwd.struct_passwd]:
    """A system account of this process's own (SERVICE_ACCOUNT-PID: runs of these tests
    in other sessions have theirs), with its own group and *home* (made, owned by it,
    0700); removed afterwards."""
    _drop_stale_accounts()
    name = f"{SERVICE_ACCOUNT}-{os.getpid()}"
    _drop_account(name)
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                    "--home-dir", home, "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True)
    try:
        account = pwd.getpwnam(name)
        os.makedirs(home, mode=0o700, exist_ok=True)
        os.chown(home, account.pw_uid, account.pw_gid)
        yield account
    finally:
        _drop_account(name)


def proc_uids(pid: int) -> list[int]:
    """The real, effective, saved and filesystem uids of process *pid*."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no Uid line for pid {pid}")


def proc_environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [item.decode(errors="replace").partition("=")
                 for item in f.read().split(b"\0") if item]
    return {k: v for k, _, v in pairs}


@dataclass
class HubDeployment:
    """A running hub with hermes-cron as its managed service, and what the tests need."""

    proc: subprocess.Popen
    base: str
    api: str                 # http://127.0.0.1:HUBPORT/hub/api
    hub_url: str             # http://127.0.0.1:HUBPORT
    service_url: str         # http://127.0.0.1:PORT/services/hermes-cron/
    admin_token: str         # the test's own admin service (not hermes-cron's)
    service_token: str       # hermes-cron's own hub token (its api_token in the config)
    store: str
    account: pwd.struct_passwd | None
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def log(self) -> str:
        with open(os.path.join(self.base, "hub", "hub.log"), errors="replace") as f:
            return f.read()

    def admin(self, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
        return call(self.api + path, self.admin_token, method, body)

    def cron(self, path: str, token: str | None = None, method: str = "GET",
             body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return call(self.service_url + path, token, method, body, headers)

    def token_for(self, user: str, scopes: list[str] | None = None) -> str:
        body: dict[str, Any] = {"note": "hermes-cron test", "expires_in": 3600}
        if scopes is not None:
            body["scopes"] = scopes
        status, reply = self.admin(f"/users/{user}/tokens", "POST", body)
        assert status == 201, (status, reply)
        return str(reply["token"])

    def service_pid(self) -> int:
        """The service's process: the hub's managed child running our module."""
        out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(self.proc.pid)],
                             capture_output=True, text=True).stdout
        pids = [int(line.split()[0]) for line in out.splitlines()
                if "hermes_cron_ext.server.hub" in line]
        assert len(pids) == 1, out
        return pids[0]


def hub_config(base: str, *, hub_port: int, service_port: int, admin_token: str,
               store: str, account: str | None, users: dict[str, list[str]],
               service_env: dict[str, str] | None = None, service_token: str = "",
               cwd: str | None = None) -> str:
    """jupyterhub_config.py for the tests: the deployment docs/jupyterhub.md describes
    (the service, its scopes, the users' and admins' roles), on loopback, with the
    in-memory proxy and the test's own admin service. *users*: role name -> users;
    *cwd*: the service's folder (default: the SQLite *store*'s)."""
    service: dict[str, Any] = {
        "name": SERVICE, "url": f"http://127.0.0.1:{service_port}",
        "command": [sys.executable, "-m", "hermes_cron_ext.server.hub", "--db", store],
        "oauth_no_confirm": True,
        "oauth_client_allowed_scopes": [ADMIN_SCOPE],
        "cwd": cwd or os.path.dirname(store),
        "environment": {"HERMES_CRON_HEARTBEAT": "0.5", **(service_env or {})},
        "api_token": service_token,
    }
    if account:
        service["user"] = account
    return f"""
import sys
sys.path.insert(0, {HERE!r})
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.proxy_class = "hub_support.NoProxy"
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {free_port()}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{base}/hub/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{base}/hub/cookie_secret"
c.JupyterHub.custom_scopes = {{
    {ADMIN_SCOPE!r}: {{"description": "see and manage every user's hermes-cron jobs"}},
}}
c.JupyterHub.services = [
    {service!r},
    {{"name": "test-admin", "api_token": {admin_token!r}}},
]
c.JupyterHub.load_roles = [
    # every user may use the service (what extra_user_scopes does, spelled for hub 5 too)
    {{"name": "user", "scopes": ["self", "access:services!service={SERVICE}"]}},
    {{"name": "hermes-cron-admin", "users": {users.get("hermes-cron-admin", [])!r},
      "scopes": [{ADMIN_SCOPE!r}, "access:services!service={SERVICE}"]}},
    # the test's own service: makes users, groups and their tokens
    {{"name": "test-admin", "services": ["test-admin"],
      "scopes": ["admin:users", "admin:groups", "admin:servers", "tokens",
                 "read:services"]}},
]
"""


@contextlib.contextmanager
def running_hub(*, admin_user: str = "dana",
                extra: Callable[[dict[str, Any]], str] | None = None,
                service_env: dict[str, str] | None = None,
                store: str | None = None) -> Iterator[HubDeployment]:
    """A hub with hermes-cron as its managed service, run as SERVICE_ACCOUNT when this
    process is root (else as ourselves). Folders: a 0755 TEMP_PREFIX folder holding
    ``hub/`` (root's: config, database, log), ``svc-home/`` and ``store/`` (the
    service's, 0700). *extra* is given ``{"base", "store", "account", "service_url"}``
    before the hub starts and returns more ``jupyterhub_config.py`` (users' servers);
    *service_env* goes into the service's environment; *store*: the service's store (a
    ``postgresql://`` URL) instead of ``store/cron.db``."""
    base = tempfile.mkdtemp(prefix=TEMP_PREFIX)
    os.chmod(base, 0o755)
    stack = contextlib.ExitStack()
    stack.callback(shutil.rmtree, base, True)
    with stack:
        os.makedirs(os.path.join(base, "hub"), mode=0o700)
        store_dir = os.path.join(base, "store")
        os.makedirs(store_dir, mode=0o700)
        account = None
        if os.geteuid() == 0:
            account = stack.enter_context(unix_account(os.path.join(base, "svc-home")))
            os.chown(store_dir, account.pw_uid, account.pw_gid)
            stack.enter_context(traversable([sys.executable, sys.prefix, HERE]))
        hub_port, service_port = free_port(), free_port()
        admin_token, service_token = os.urandom(16).hex(), os.urandom(16).hex()
        store = store or os.path.join(store_dir, "cron.db")
        config = os.path.join(base, "hub", "jupyterhub_config.py")
        service_url = f"http://127.0.0.1:{service_port}/services/{SERVICE}/"
        with open(config, "w") as f:
            f.write(hub_config(base, hub_port=hub_port, service_port=service_port,
                               admin_token=admin_token, store=store,
                               account=account.pw_name if account else None,
                               users={"hermes-cron-admin": [admin_user]},
                               service_env=service_env, service_token=service_token,
                               cwd=store_dir))
            if extra is not None:
                f.write(extra({"base": base, "store": store, "account": account,
                               "service_url": service_url}))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("HERMES_CRON", "JUPYTER"))}
        env["JUPYTER_DATA_DIR"] = os.path.join(base, "hub", "data")
        with open(os.path.join(base, "hub", "hub.log"), "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", config],
                cwd=os.path.join(base, "hub"), env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        hub = HubDeployment(
            proc=proc, base=base, api=f"http://127.0.0.1:{hub_port}/hub/api",
            hub_url=f"http://127.0.0.1:{hub_port}",
            service_url=service_url,
            admin_token=admin_token, service_token=service_token, store=store,
            account=account)
        stack.callback(_stop_hub, hub)

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError("the hub exited:\n" + hub.log[-4000:])
            try:
                # the hub handles SIGTERM (stopping its service) once it says it runs
                return call(hub.service_url + "api/cron/status")[0] == 401 and \
                    "JupyterHub is now running" in hub.log
            except OSError:
                return False
        wait_until(up, 60, "the hub and its hermes-cron service")
        yield hub


def _stop_hub(hub: HubDeployment) -> None:
    """SIGTERM the hub (it stops its managed service), then make sure both are gone."""
    try:
        pid = hub.service_pid()
    except AssertionError:
        pid = None
    hub.proc.send_signal(signal.SIGTERM)
    try:
        hub.proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(hub.proc.pid, signal.SIGKILL)
        hub.proc.wait(10)
    if pid is not None:
        try:
            wait_until(lambda: not os.path.exists(f"/proc/{pid}") or
                       open(f"/proc/{pid}/stat").read().split()[2] == "Z", 15,
                       "the service to stop with the hub")
        except AssertionError:
            os.killpg(pid, signal.SIGKILL)  # its own session (the hub starts it so)


class Browser:
    """A cookie-keeping HTTP client that follows redirects by hand, sending a path to the
    hub or to the service as a proxy would (there is none here: NoProxy)."""

    def __init__(self, hub: HubDeployment):
        self.hub = hub
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())

    def _absolute(self, url: str, current: str) -> str:
        if url.startswith("/"):
            origin = self.hub.hub_url if url.startswith("/hub/") else \
                self.hub.service_url.split("/services/")[0]
            return origin + url
        return urllib.parse.urljoin(current, url)

    def request(self, url: str, data: dict[str, str] | None = None,
                max_hops: int = 10) -> tuple[int, str, str]:
        """Navigate to *url* (POSTing form *data*), following redirects: (status, final
        URL, body)."""
        for _ in range(max_hops):
            req = urllib.request.Request(
                url, data=urllib.parse.urlencode(data).encode() if data else None,
                headers={"Sec-Fetch-Mode": "navigate", "Accept": "text/html"})
            try:
                with self.opener.open(req, timeout=15) as resp:
                    return resp.status, url, resp.read().decode(errors="replace")
            except urllib.error.HTTPError as exc:
                if exc.code not in (301, 302, 303, 307):
                    return exc.code, url, exc.read().decode(errors="replace")
                url, data = self._absolute(exc.headers["Location"], url), None
        raise AssertionError(f"more than {max_hops} redirects, last {url}")

    def xsrf(self) -> str:
        return next(c.value for c in self.jar if c.name == "_xsrf" and c.path == "/hub/")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
