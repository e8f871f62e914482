"""Where an Apprise destination connects, and whether a job may send there.

A job's own ``notify`` URLs go only to public addresses unless the operator allows
private ones (as for ``notify_url``: ``notify.check_url``), checked when the job is
saved and again before each send. Apprise URLs name their host in different places:
``json://host/path``, ``ntfy://host/topic``, and e-mail's SMTP server, which is not the
address's domain (``mailto://user@example.com?smtp=10.0.0.5``): every one is checked.
Services at their vendor's fixed address (``slack://``, ``tgram://``) name no host.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from hermes_cron_ext.domain.notifications import mask_url
from hermes_cron_ext.errors import InvalidInput
from hermes_cron_ext.runtime.notify import check_url

_HOST = re.compile(r"^(localhost|[0-9a-fA-F:.]+|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)$")
#: the plugin attributes that name a host it connects to
HOST_ATTRIBUTES = ("host", "smtp_host")


def plugin_hosts(url: str) -> tuple[Any, list[tuple[str, int | None]]]:
    """Apprise's plugin for *url* (None: a URL Apprise does not know) and the
    ``(host, port)`` pairs it connects to that the URL names."""
    import apprise  # slow to import (0.2 s): only where notifications are checked or sent

    with apprise.LogCapture(level=logging.ERROR):
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None:
        return None, []
    hosts: list[tuple[str, int | None]] = []
    for attribute in HOST_ATTRIBUTES:
        host = getattr(plugin, attribute, None)
        if not isinstance(host, str):
            continue
        host = host.strip("[]")
        if _HOST.match(host) and (host, None) not in hosts:
            port = getattr(plugin, "port", None) if attribute == "host" else None
            hosts.append((host, port if isinstance(port, int) else None))
    return plugin, hosts


def check_destination(url: str, field: str = "notify", *, allow_private: bool = False,
                      resolve: bool = True) -> None:
    """Refuse (:class:`InvalidInput` naming *field*, the URL masked) a destination Apprise
    does not know, or (unless *allow_private*) one with a host that is or resolves to a
    loopback, private or link-local address."""
    plugin, hosts = plugin_hosts(url)
    shown = mask_url(url)
    if plugin is None:
        raise InvalidInput(f"{field}: {shown} is not a notification URL Apprise knows "
                           f"(e.g. mailto://user:pass@host, slack://..., json://host/path; "
                           f"https://github.com/caronc/apprise/wiki)", field=field)
    if allow_private:
        return
    for host, port in hosts:
        literal = f"[{host}]" if ":" in host else host
        try:
            check_url(f"http://{literal}{f':{port}' if port else ''}/", field,
                      resolve=resolve)
        except InvalidInput as exc:
            raise InvalidInput(exc.message.replace(f"{field}: ", f"{field}: {shown}: ", 1),
                               field=field) from None
