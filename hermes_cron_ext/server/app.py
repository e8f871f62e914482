"""The jupyter-server extension: one store, one ticker, the REST + SSE API.

Configure with ``c.HermesCron.<trait>`` in ``jupyter_server_config.py``.
"""

from __future__ import annotations

import os
import signal
import sys

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Float, List, Unicode

from hermes_cron_ext import __version__
from hermes_cron_ext.errors import HermesCronError
from hermes_cron_ext.ops.host import Host
from hermes_cron_ext.server.handlers import routes, unavailable_routes
from hermes_cron_ext.server.proxy import proxy_routes, service_url
from hermes_cron_ext.server.service import CronService


class HermesCron(ExtensionApp):
    name = "hermes_cron_ext"
    load_other_extensions = True

    service_url = Unicode(
        "", config=True,
        help="The JupyterHub hermes-cron service this server forwards /api/cron to "
             "(http://HOST:PORT/services/hermes-cron/), with its hub token as the user's "
             "identity; this server then keeps no store and runs no ticker. Default: "
             "$HERMES_CRON_URL when it is an http(s) URL (a hub sets it for every user).")
    db = Unicode(
        "", config=True,
        help="Store: a SQLite path or postgresql:// URL. Default: $HERMES_CRON_DB, else "
             "<jupyter data dir>/hermes_cron/hermes-cron.db.")
    ticker = Bool(
        True, config=True,
        help="Run a ticker inside this server (kind 'server'). Turn off when a "
             "hermes-cron daemon or systemd timer serves the store.")
    lead = Float(
        2.0, config=True,
        help="Seconds before a slot at which its supervisor is started (it then waits for "
             "the exact instant).")
    poll = Float(
        1.0, config=True,
        help="Longest sleep of the ticker, which bounds how late it sees jobs changed by "
             "other processes.")
    stream_interval = Float(
        0.01, config=True, help="How often watched output logs are checked for growth (s).")
    handoff = Bool(
        True, config=True,
        help="When this server stops while enabled jobs exist and no other ticker is alive, "
             "start a detached 'hermes-cron daemon --handoff' on the same store so jobs keep "
             "firing. It exits by itself when a Jupyter server ticks again.")
    notify_url = Unicode(
        "", config=True,
        help="Webhook (JSON POST) for every job's failed, lost, missed, blocked and recovered "
             "runs, besides each job's own notify_url. Default: $HERMES_CRON_NOTIFY_URL.")
    notify = List(
        Unicode(), config=True,
        help="Apprise URLs (mailto://, slack://, ntfy://, json://, ...) every job's "
             "notifications go to, besides each job's own 'notify'. Default: "
             "$HERMES_CRON_NOTIFY (URLs separated by spaces).")
    notify_on = List(
        Unicode(), default_value=None, allow_none=True, config=True,
        help="The events the default destinations get (failure, lost, blocked, missed, "
             "late, alert, recovered, succeeded, started). Default: $HERMES_CRON_NOTIFY_ON, "
             "else all but succeeded and started.")
    public_url = Unicode(
        "", config=True,
        help="The JupyterLab URL notifications link runs from (https://host/user/NAME/). "
             "Default: $HERMES_CRON_PUBLIC_URL, else this server's own URL.")
    allow_private_urls = Bool(
        False, config=True,
        help="Let jobs' own notify_url and ping_url reach hosts on loopback, private, "
             "link-local and other non-public addresses. Off: such URLs are refused at "
             "create and edit (400) and at delivery (where the host then resolves). The "
             "operator's own notify_url is never restricted.")
    timezone = Unicode(
        "", config=True, help="Default IANA time zone for new jobs (default: the server's).")
    executor = Unicode(
        "", config=True,
        help="Where this server's ticker runs jobs: '' or 'local' (a supervisor process per "
             "run on this machine), or 'dask://HOST:PORT' (a task per run on that Dask "
             "cluster; needs hermes-cron-ext[dask] and a store every worker reaches, e.g. "
             "PostgreSQL).")
    executors = List(
        Unicode(), ["local"], config=True,
        help="The executors a job may name in its 'executor' field ('local', "
             "'dask://HOST:PORT'); the API refuses any other (400) and the ticker records "
             "a run of a job naming another failed instead of contacting it. The default "
             "executor (c.HermesCron.executor) is always allowed. Default: local only.")
    run_as = List(
        Unicode(), [], config=True,
        help="On a hub whose users are Unix accounts: the command that starts the run-as "
             "helper, e.g. ['sudo', '-n', '/opt/hermes/bin/python', '-I', '-m', "
             "'hermes_cron_ext.runtime.runas', 'serve'] (that exact line allowed in "
             "sudoers). Runs of jobs with an owner then start as that owner (uid, groups, "
             "home, a login environment), never as this service's account; when the "
             "helper cannot start they are recorded failed. Empty: off (default: "
             "$HERMES_CRON_RUN_AS, shell-quoted).")

    switch_interval = Float(
        0.001, config=True,
        help="Python's thread switch interval for this server process (s; 0 leaves "
             "Python's 0.005). Store work runs on threads so the event loop never blocks, "
             "but a thread rendering a big page holds the GIL for up to this long each "
             "time the loop wants it back: 1 ms keeps other requests' tail latency low.")

    def initialize_settings(self) -> None:
        if self.switch_interval > 0:
            sys.setswitchinterval(self.switch_interval)
        self.unavailable = None
        self.forward_to = service_url(self.service_url)
        if self.forward_to:  # a hub user's server: the hub service schedules
            self.log.info("hermes-cron %s: /api/cron goes to the hub service at %s",
                          __version__, self.forward_to)
            return
        try:
            self.host = Host.open(
                self.db or None, kind="server", tick=self.ticker, executor=self.executor,
                executors=list(self.executors), lead=self.lead, poll=self.poll,
                notify_url=self.notify_url or None, allow_private_urls=self.allow_private_urls,
                default_tz=self.timezone or None, run_as=list(self.run_as),
                notify=list(self.notify) or None, notify_on=self._notify_on(),
                public_url=self.public_url or os.environ.get("HERMES_CRON_PUBLIC_URL")
                or self._own_url())
        except HermesCronError as exc:  # corrupt file, unreachable server: say so, loudly
            self.unavailable = exc.message
            self.log.error("hermes-cron: the scheduler is off: %s", exc.message)
            return
        self.service = CronService(self.host, stream_interval=self.stream_interval,
                                   log=self.log)
        self.settings["hermes_cron"] = self.service
        self.log.info("hermes-cron %s: store %s, in-server ticker %s", __version__,
                      self.host.display_url, "on" if self.ticker else "off")

    def _notify_on(self) -> list[str] | None:
        if self.notify_on is None:
            return None
        from hermes_cron_ext.domain.notifications import parse_on

        return parse_on(list(self.notify_on), "c.HermesCron.notify_on")

    def _own_url(self) -> str | None:
        """This server's URL without its token (links in notifications)."""
        try:
            return str(self.serverapp.connection_url).split("?", 1)[0]  # type: ignore[union-attr]
        except Exception:
            return None

    def initialize_handlers(self) -> None:
        if self.forward_to:
            token = os.environ.get("HERMES_CRON_TOKEN") or os.environ.get(
                "JUPYTERHUB_API_TOKEN")
            self.handlers.extend(proxy_routes(self.forward_to, token))
        elif self.unavailable:
            self.handlers.extend(unavailable_routes(self.unavailable))
        else:
            self.handlers.extend(routes())

    async def _start_jupyter_server_extension(self, serverapp) -> None:
        if self.unavailable or self.forward_to:
            return
        await self.service.start()  # the host's ticker too
        if self.host.ticker is not None:
            self.log.info("hermes-cron: ticking (pid %d)", os.getpid())
        self._stop_on_sigint(serverapp)

    @staticmethod
    def _stop_on_sigint(serverapp) -> None:
        """Stop cleanly on SIGINT when jupyter_server left it unhandled. It handles SIGINT
        only when stdin is a terminal; a spawned server (JupyterHub's spawners, the idle
        culler: both send SIGINT) would die of KeyboardInterrupt without stop_extension,
        so no handoff daemon would keep its jobs firing. Treat it as SIGTERM."""
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, serverapp._signal_stop)

    def current_activity(self):
        return None

    async def stop_extension(self) -> None:
        """Stop ticking and close streams; detached supervisors keep their runs going."""
        if (getattr(self, "_stopped", False) or getattr(self, "unavailable", None)
                or getattr(self, "forward_to", None)):
            return
        self._stopped = True
        await self.service.close()
        pid = await self.host.stop(handoff=self.handoff)
        if pid is not None:
            self.log.info(
                "hermes-cron: enabled jobs keep firing: handed ticking over to a detached "
                "'hermes-cron daemon --handoff' (pid %d) on %s; it exits by itself when a "
                "Jupyter server ticks again. Stop it now with: kill %d", pid,
                self.host.display_url, pid)
        elif self.host.ticker is not None and not self.handoff:
            self.log.warning("hermes-cron: handoff is off; unless another ticker serves %s, "
                             "enabled jobs will not fire", self.host.display_url)

