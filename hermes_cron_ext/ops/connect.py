"""Which backend a kernel or script uses, chosen once per process.

:func:`connect` picks one, in this order:

1. what was asked for: ``connect(url, token)``, ``connect(local=True, db=...)``,
   ``%cron connect URL TOKEN``;
2. ``HERMES_CRON_URL`` (with ``HERMES_CRON_TOKEN``, else, in a JupyterHub user's
   server, the hub token ``JUPYTERHUB_API_TOKEN``: the hub service then knows the
   user); ``HERMES_CRON_URL=local`` forces the local store;
3. the Jupyter server that started this kernel (``JPY_PARENT_PID`` matched
   against the running-server files), when it serves ``/api/cron``;
4. the local store (``HERMES_CRON_DB``, the Jupyter config, or the default file).
"""

from __future__ import annotations

import copy
import os
import threading
from typing import Any

from hermes_cron_ext.errors import HermesCronError
from hermes_cron_ext.ops.base import CronClient
from hermes_cron_ext.ops.local import Operations
from hermes_cron_ext.ops.rest import RestClient


def _running_server(pid: int) -> dict[str, Any] | None:
    """The running-server file of the Jupyter server with this pid, if any."""
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:
        return None
    info: dict[str, Any]  # a running-server file's JSON
    try:
        for info in list_running_servers():
            if info.get("pid") == pid:
                return info
    except Exception:  # noqa: BLE001 - unreadable runtime files mean "no server"
        return None
    return None


def _probe(client: RestClient) -> bool:
    """True when the server answers our API (the extension is enabled there)."""
    try:
        client.request("GET", "status")
        return True
    except HermesCronError:
        return False


def service_token() -> str | None:
    """The token for ``HERMES_CRON_URL``: ``HERMES_CRON_TOKEN``, else the hub's token of
    this user's server (a JupyterHub service takes it as the user's identity)."""
    return (os.environ.get("HERMES_CRON_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN")
            or None)


def for_cli(db: str | None) -> CronClient:
    """What ``hermes-cron`` works on: ``--db URL`` or ``HERMES_CRON_URL`` naming a
    server (``http(s)://``: a JupyterHub service or a Jupyter server) is reached over
    REST; anything else is a store (``--db``, ``HERMES_CRON_DB``, the config, the
    default file)."""
    url = server_url(db)
    return RestClient(url, service_token()) if url else Operations(db)


def server_url(db: str | None) -> str:
    """The server the CLI is to work through, or '' for a store (see :func:`for_cli`)."""
    url = db or ("" if os.environ.get("HERMES_CRON_DB") else
                 os.environ.get("HERMES_CRON_URL", "").strip())
    return url if url.startswith(("http://", "https://")) else ""


def discover() -> CronClient:
    """The backend this process should use (see the module docstring for the order)."""
    url = os.environ.get("HERMES_CRON_URL", "").strip()
    if url.lower() == "local":
        return Operations()
    if url:
        return RestClient(url, service_token())
    parent = os.environ.get("JPY_PARENT_PID", "")
    if parent.isdigit():
        info = _running_server(int(parent))
        if info is not None:
            token = info.get("token") or os.environ.get("JUPYTERHUB_API_TOKEN") or None
            client = RestClient(info["url"], token, timeout=10.0,
                                verify=not info.get("secure"))
            if _probe(client):
                client.timeout = 30.0
                return client
    return Operations()


_lock = threading.Lock()
_client: CronClient | None = None


def connect(url: str | None = None, token: str | None = None, *, local: bool = False,
            db: str | None = None, check: bool = True) -> CronClient:
    """Make a client and make it this process's default (what the magics use).

    ``connect()`` discovers; ``connect(url, token)`` uses that server;
    ``connect(local=True, db=...)`` opens a store file directly.
    """
    if local or db:
        client: CronClient = Operations(db)
    elif url:
        client = RestClient(url, token)
        if check:
            client.request("GET", "status")  # fail now, with the reason
    else:
        client = discover()
    set_client(client)
    return client


def as_origin(client: CronClient, origin: str) -> CronClient:
    """*client* acting from *origin* (``magics``): what revisions and the audit log record
    (a server records the request's user and, from a ``RestClient``, this origin)."""
    if isinstance(client, Operations):
        return client.as_origin(client.actor, origin)
    if isinstance(client, RestClient):
        view = copy.copy(client)
        view.origin = origin
        return view
    return client


def set_client(client: CronClient | None) -> None:
    global _client
    with _lock:
        old, _client = _client, client
    if old is not None and old is not client:
        old.close()


def get_client() -> CronClient:
    """This process's default client, discovered on first use."""
    global _client
    with _lock:
        if _client is None:
            _client = discover()
        return _client
