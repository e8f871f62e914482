"""hermes-cron as one JupyterHub-managed service for all of the hub's users.

The hub starts ``python -m hermes_cron_ext.server.hub --db PATH`` (a managed service,
see docs/jupyterhub.md): a jupyter_server that serves only the hermes_cron_ext
extension, under ``JUPYTERHUB_SERVICE_PREFIX``, on ``JUPYTERHUB_SERVICE_URL``.

- :class:`HubIdentityProvider` asks the hub who makes each request (a hub token in
  ``Authorization: token|Bearer X``, or the OAuth cookie a browser gets from the hub),
  with the calls JupyterHub's own single-user servers make (``HubOAuth``, cached, async),
  but lets in every hub user holding the service's access scope, not one owner. The
  user it returns carries ``hermes_viewer`` (:class:`~hermes_cron_ext.domain.access.Viewer`):
  the name and groups the hub says, and whether the token holds :data:`ADMIN_SCOPE`.
- :class:`HubCronAuthorizer` allows the ``cron`` resource to such a user and denies
  everything else jupyter_server has (contents, kernels, terminals, ...): nothing of the
  service's account is exposed. Who may touch which job is the ops layer's rule
  (domain/access.py).
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from jupyter_core.paths import jupyter_runtime_dir
from jupyter_server.auth import Authorizer, IdentityProvider, User
from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.auth.logout import LogoutHandler
from jupyter_server.base.handlers import APIHandler
from jupyter_server.serverapp import ServerApp
from tornado import web
from tornado.httputil import url_concat
from traitlets import Instance, Unicode, default
from traitlets.config import Config

from hermes_cron_ext.domain.access import Viewer

try:
    from jupyterhub.services.auth import (  # type: ignore[import-untyped]
        HubOAuth,
        HubOAuthCallbackHandler,
    )
except ImportError as exc:  # an optional dependency: say which
    raise ImportError("hermes-cron's JupyterHub service needs jupyterhub in its "
                      "environment: pip install 'jupyterhub>=5'") from exc

#: the custom scope (``c.JupyterHub.custom_scopes``) whose holders see and manage all jobs
ADMIN_SCOPE = "custom:hermes-cron:admin"
#: the only jupyter_server resource this service allows (the REST handlers' auth_resource)
CRON_RESOURCE = "cron"
EXTENSION = "hermes_cron_ext"
#: a managed service's secret: kept in memory, out of the environment runs inherit
_SECRET_ENV = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN")


@dataclass
class HubCronUser(User):
    """A hub user as this service knows them; ``hermes_viewer`` is what the REST handlers
    pass to the ops layer, ``hub_user`` the hub's model (with the token's scopes)."""

    hermes_viewer: Viewer | None = None
    hub_user: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def viewer_for(model: dict[str, Any], admin_scope: str = ADMIN_SCOPE) -> Viewer:
    """The :class:`Viewer` for a hub user model as ``GET /hub/api/user`` answers it: the
    hub always adds the user's own name and groups to that answer (its identify scopes),
    so no scope of the service's is needed to learn the groups."""
    return Viewer(str(model["name"]), frozenset(model.get("groups") or ()),
                  admin_scope in (model.get("scopes") or ()))


def _needs_user(handler: web.RequestHandler) -> bool:
    """Whether the handler's method requires a user (login, logout and static files do
    not: they must keep working for anyone)."""
    method = getattr(handler, (handler.request.method or "get").lower(), None)
    return not getattr(method, "__allow_unauthenticated", False)


def _browser_navigation(handler: web.RequestHandler) -> bool:
    """A page a browser navigates to (which may be sent to the hub's login), not a
    script's call (which is told 401)."""
    return handler.request.headers.get("Sec-Fetch-Mode", "") == "navigate"


def _refuse(handler: web.RequestHandler, status: int, message: str) -> None:
    """End the request with *status*: no redirect to a login page for an API call."""
    handler.current_user = None
    handler._jupyter_current_user = None  # type: ignore[attr-defined]
    raise web.HTTPError(status, message)


class HubLogoutHandler(LogoutHandler):
    """Forget the service's OAuth cookie and log out of the hub too."""

    @allow_unauthenticated
    def get(self) -> None:
        hub_auth = self.identity_provider.hub_auth  # type: ignore[attr-defined]
        hub_auth.clear_cookie(self)
        self.redirect(hub_auth.hub_host + hub_auth.hub_prefix + "logout")


class HubOAuthCallback(HubOAuthCallbackHandler):
    """The end of a browser's OAuth login with the hub: stores the token in a cookie."""

    def initialize(self, hub_auth: HubOAuth) -> None:
        self.hub_auth = hub_auth

    @allow_unauthenticated
    async def get(self) -> None:
        await super().get()


class HubIdentityProvider(IdentityProvider):
    """Every request is a hub user's: who they are (name, groups, admin) comes from the
    hub, never from the request. Anyone else: 401 (no or a bad token), 403 (a hub
    identity without the service's access scope, or not a user: another service)."""

    logout_handler_class = HubLogoutHandler
    hub_auth = Instance(HubOAuth)
    admin_scope = Unicode(
        ADMIN_SCOPE, config=True,
        help="The hub scope (define it in c.JupyterHub.custom_scopes) whose holders see and "
             "manage every user's jobs.")

    @default("hub_auth")
    def _default_hub_auth(self) -> HubOAuth:
        # the hub gives a managed service its settings in the environment
        return HubOAuth(parent=self)

    @default("token")
    def _no_token(self) -> str:
        """No jupyter_server token: the hub's tokens are the only credentials here."""
        return ""

    def _patch_get_login_url(self, handler: web.RequestHandler) -> None:
        """Send a browser to the hub's OAuth (as JupyterHub's single-user servers do),
        remembering where it was going; the state cookie is set only when used."""
        hub_auth = self.hub_auth
        url: list[str] = []

        def get_login_url() -> str:
            if not url:
                params: dict[str, str] = {}
                verifier = None
                if hub_auth.pkce_enabled:
                    verifier, challenge, method = hub_auth.generate_pkce_code_challenge()
                    params.update(code_challenge=challenge, code_challenge_method=method)
                params["state"] = hub_auth.set_state_cookie(
                    handler, next_url=handler.request.uri, code_verifier=verifier)
                url.append(url_concat(hub_auth.login_url, params))
            return url[0]

        handler.get_login_url = get_login_url  # type: ignore[method-assign]

    def refusal(self, model: dict[str, Any]) -> str | None:
        """Why the hub identity *model* may not use the service, or None."""
        kind, name = model.get("kind", "user"), model.get("name")
        if kind != "user":
            return f"{kind} {name} is not a hub user; only hub users may use hermes-cron"
        if not self.hub_auth.check_scopes(self.hub_auth.access_scopes, model):
            return (f"user {name}'s token lacks the scope to use this service "
                    f"({' or '.join(sorted(self.hub_auth.access_scopes))})")
        return None

    async def get_user(self, handler: web.RequestHandler) -> HubCronUser | None:
        if hasattr(handler, "_hermes_hub_user"):
            return handler._hermes_hub_user
        handler._hermes_hub_user = None  # type: ignore[attr-defined]
        self._patch_get_login_url(handler)
        self.hub_auth._patch_xsrf(handler)
        # HubAuth: the token (header, else the OAuth cookie), asked of GET /hub/api/user
        # without blocking the loop, the answer cached for cache_max_age by token
        model = await self.hub_auth.get_user(handler, sync=False)
        if model is None:
            if (isinstance(handler, APIHandler) and _needs_user(handler)
                    and not _browser_navigation(handler)):
                _refuse(handler, 401, "a JupyterHub token is needed "
                                      "(Authorization: token <token>), or a hub login")
            return None  # a page: @web.authenticated sends the browser to the hub's login
        why = self.refusal(model)
        if why:
            self.log.warning("hermes-cron: refused %s %s: %s", handler.request.method,
                             handler.request.path, why)
            if _needs_user(handler):
                _refuse(handler, 403, why)
            return None
        user = HubCronUser(username=model["name"],
                           hermes_viewer=viewer_for(model, self.admin_scope), hub_user=model)
        handler._hermes_hub_user = user  # type: ignore[attr-defined]
        self.hub_auth._persist_url_token_if_set(handler)
        return user

    def get_handlers(self) -> list[tuple[Any, ...]]:
        return [("/logout", self.logout_handler_class),
                ("/oauth_callback", HubOAuthCallback, {"hub_auth": self.hub_auth})]

    def validate_security(self, app: Any, ssl_options: dict[str, Any] | None = None) -> None:
        """The hub authenticates every request: jupyter_server's warnings do not apply."""


class HubCronAuthorizer(Authorizer):
    """The ``cron`` resource for a hub user this service let in; nothing else at all
    (contents, kernels, terminals, sessions, ... of the service's own account)."""

    def is_authorized(self, handler: web.RequestHandler, user: User, action: str,
                      resource: str) -> bool:
        if resource != CRON_RESOURCE or not isinstance(user, HubCronUser) \
                or user.hermes_viewer is None:
            return False
        # again the access scope, as JupyterHub's own authorizer does: redundant with the
        # identity provider on purpose
        hub_auth = getattr(self.identity_provider, "hub_auth", None)
        return hub_auth is not None and bool(
            hub_auth.check_scopes(hub_auth.access_scopes, user.hub_user))


class HubServiceApp(ServerApp):
    """A jupyter_server that serves hermes_cron_ext and nothing else, for the hub."""

    name = "hermes-cron-service"  # reads hermes_cron_service_config.py, not a user server's
    description = "hermes-cron as a JupyterHub service"
    subcommands: dict[str, Any] = {}
    #: no contents, files, kernels, sessions, terminals, ... handlers at all: the
    #: authorizer would deny them anyway; "auth" adds only the OAuth callback and logout
    default_services = ("auth",)  # type: ignore[assignment]

    @default("identity_provider_class")
    def _hub_identity(self) -> type[IdentityProvider]:
        return HubIdentityProvider

    @default("authorizer_class")
    def _cron_only(self) -> type[Authorizer]:
        return HubCronAuthorizer

    def find_server_extensions(self) -> None:
        """No other extension (jupyterlab, ...) however the environment enables them."""

    def init_server_extensions(self) -> None:
        self.jpserver_extensions = {EXTENSION: True}
        super().init_server_extensions()

    def init_webapp(self) -> None:
        super().init_webapp()
        # tornado would check XSRF before prepare(), before the hub has said whether the
        # request is token-authenticated (no XSRF then); jupyter_server checks it again in
        # prepare(), with HubOAuth's rules. JupyterHub's single-user servers do the same.
        self.web_app.settings["xsrf_cookies"] = False
        headers = self.web_app.settings.setdefault("headers", {})
        headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")

    def initialize(self, argv: Any = None, find_extensions: bool = False,
                   new_httpserver: bool = True, starter_extension: Any = None) -> None:
        super().initialize(argv, find_extensions=False, new_httpserver=new_httpserver,
                           starter_extension=starter_extension)
        if self._dispatching:
            return
        hub_auth = getattr(self.identity_provider, "hub_auth", None)
        self.log.info(
            "hermes-cron: JupyterHub service listening on %s, API %sapi/cron/; hub %s; "
            "users need %s, admins hold %s", self.connection_url, self.base_url,
            hub_auth.api_url if hub_auth else "?",
            " or ".join(sorted(hub_auth.access_scopes)) if hub_auth else "?",
            getattr(self.identity_provider, "admin_scope", ADMIN_SCOPE))


def _runtime_dir() -> str | None:
    """A runtime folder when the account's own cannot be made (a service account with
    no home): a private one for this process, removed at exit."""
    if os.environ.get("JUPYTER_RUNTIME_DIR"):
        return None
    try:
        path = jupyter_runtime_dir()
        os.makedirs(path, mode=0o700, exist_ok=True)
        if os.access(path, os.W_OK | os.X_OK):
            return None
    except OSError:
        pass
    path = tempfile.mkdtemp(prefix="hermes-cron-service-")
    atexit.register(shutil.rmtree, path, True)
    return path


def service_config(db: str | None = None, environ: dict[str, str] | None = None) -> Config:
    """The ServerApp configuration of the service, from what the hub puts in a managed
    service's environment (*environ*, default ``os.environ``)."""
    env = os.environ if environ is None else environ
    url = env.get("JUPYTERHUB_SERVICE_URL")
    if not url:
        raise SystemExit(
            "hermes-cron hub service: JUPYTERHUB_SERVICE_URL is not set. JupyterHub sets it "
            "for a managed service that has a 'url' (see docs/jupyterhub.md).")
    bind = urlparse(url)
    c = Config()
    s = c.ServerApp
    s.ip = bind.hostname or ""
    s.port = bind.port or (443 if bind.scheme == "https" else 80)
    s.port_retries = 0  # the hub routes to exactly this port
    s.base_url = env.get("JUPYTERHUB_SERVICE_PREFIX") or "/"
    s.default_url = "api/cron/status"  # a browser sent to the service logs in, then sees this
    s.jpserver_extensions = {EXTENSION: True}
    s.identity_provider_class = HubIdentityProvider
    s.authorizer_class = HubCronAuthorizer
    s.terminals_enabled = False
    s.open_browser = False
    s.quit_button = False
    s.answer_yes = True
    s.allow_remote_access = True  # the proxy forwards the public Host
    s.trust_xheaders = True
    s.allow_root = os.geteuid() == 0  # only when the hub runs it as root
    home = os.path.expanduser("~")
    s.root_dir = home if os.path.isdir(home) and os.access(home, os.X_OK) \
        else tempfile.gettempdir()  # unserved (no contents): it must only exist
    for trait, name in (("keyfile", "JUPYTERHUB_SSL_KEYFILE"),
                        ("certfile", "JUPYTERHUB_SSL_CERTFILE"),
                        ("client_ca", "JUPYTERHUB_SSL_CLIENT_CA")):
        if env.get(name):
            s[trait] = env[name]
    c.HermesCron.handoff = False  # the hub restarts its service; no daemon takes over
    if db:
        c.HermesCron.db = db
    return c


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hermes_cron_ext.server.hub", allow_abbrev=False,
        description="Run hermes-cron as a JupyterHub-managed service (docs/jupyterhub.md). "
                    "Other options go to jupyter_server, e.g. --HermesCron.poll=0.5.")
    p.add_argument("--db", default=None,
                   help="the store: a SQLite path or postgresql:// URL (default: "
                        "$HERMES_CRON_DB, else the service account's Jupyter data dir)")
    return p


#: the descriptor the service's token is read from after its re-exec (see :func:`main`)
TOKEN_FD_ENV = "HERMES_CRON_HUB_TOKEN_FD"
#: the settings that turn run-as on, or allow a team to share the service's account
RUN_AS_ENV, SHARED_ENV = "HERMES_CRON_RUN_AS", "HERMES_CRON_SHARED_ACCOUNT"
NO_RUN_AS = (
    "hermes-cron hub service: run-as is off, so every user's job would run as this "
    "service's account, which can read every user's jobs, output and secrets. Turn "
    f"run-as on (${RUN_AS_ENV} or --HermesCron.run_as, see docs/jupyterhub.md), or, "
    f"for a team that trusts itself, set {SHARED_ENV}=1.")


def _token_hidden(argv: list[str]) -> str:
    """The hub's token for this service (also its OAuth client secret), read so that no
    process can find it in this one's environment: a variable removed from
    ``os.environ`` stays in ``/proc/PID/environ``, which every process of the same
    account reads. So the service execs itself once without it, handing the token over
    through a pipe, and reads it from there."""
    fd = os.environ.pop(TOKEN_FD_ENV, None)
    if fd is not None:
        with os.fdopen(int(fd), "r") as f:
            return f.read()
    token = next((os.environ[name] for name in _SECRET_ENV if os.environ.get(name)), "")
    if not token:
        return ""
    env = {k: v for k, v in os.environ.items() if k not in _SECRET_ENV}
    r, w = os.pipe()
    os.write(w, token.encode())  # a few bytes: the pipe holds them
    os.close(w)
    os.set_inheritable(r, True)
    env[TOKEN_FD_ENV] = str(r)
    os.execve(sys.executable, [sys.executable, "-m", "hermes_cron_ext.server.hub", *argv],
              env)
    raise AssertionError("not reached")


def main(argv: list[str] | None = None) -> None:
    """Start the service as the hub asks (``hermes-cron hub-service``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args, rest = _parser().parse_known_args(argv)
    run_as = os.environ.get(RUN_AS_ENV, "").strip() or any(
        a.startswith("--HermesCron.run_as") for a in rest)
    if not run_as and os.environ.get(SHARED_ENV, "") in ("", "0"):
        raise SystemExit(NO_RUN_AS)  # fail closed: no user's job runs as this account
    token = _token_hidden(argv)
    for name in _SECRET_ENV:
        os.environ.pop(name, None)
    config = service_config(args.db or os.environ.get("HERMES_CRON_DB") or None)
    config.HubOAuth.api_token = token
    runtime = _runtime_dir()
    if runtime:
        os.environ["JUPYTER_RUNTIME_DIR"] = runtime
    HubServiceApp.launch_instance(argv=rest, config=config)


if __name__ == "__main__":  # the canonical module's classes, not copies in __main__
    from hermes_cron_ext.server.hub import main as _main

    _main()
