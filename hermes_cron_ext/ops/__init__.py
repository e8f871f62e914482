"""The one operations layer: what every front (CLI, magics, widgets, REST) can do.

- :class:`Operations` (``ops/local.py``): the operations on a store, synchronous;
  the CLI and kernels without a server use it directly, the server through
  :class:`~hermes_cron_ext.server.service.CronService` (its async face).
- :class:`RestClient` (``ops/rest.py``): the same calls over ``/api/cron``.
- :class:`CronClient` (``ops/base.py``): the interface both implement.
- :func:`connect` / :func:`get_client` (``ops/connect.py``): which one a kernel uses.
- :class:`Host` (``ops/host.py``): the scheduler a process hosts (store, broker,
  ticker, operations), for the server extension and the daemon.
"""

from hermes_cron_ext.ops.base import ConnectionFailed, CronClient, RunStream
from hermes_cron_ext.ops.connect import as_origin, connect, discover, get_client, set_client
from hermes_cron_ext.ops.local import NO_TICKER, Operations, status_report
from hermes_cron_ext.ops.rest import RestClient

__all__ = [
    "NO_TICKER",
    "ConnectionFailed",
    "CronClient",
    "Operations",
    "RestClient",
    "RunStream",
    "as_origin",
    "connect",
    "discover",
    "get_client",
    "set_client",
    "status_report",
]
