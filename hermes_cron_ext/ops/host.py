"""The scheduler hosted in one process: a store, its broker, a ticker, the operations.

The Jupyter server extension and ``hermes-cron daemon`` host the same thing; this
is where it is put together, so the server and the CLI only say what they want
(a ticker or not, which executors, who may send where) and never touch the
runtime or the store themselves.

    host = Host.open(db, kind="server", tick=True, executor="", executors=["local"])
    await host.start()      # ticker registered, event bus tailing
    ...                     # host.ops answers the API (on host.store's threads)
    pid = await host.stop(handoff=True)   # a detached daemon ticks on, if needed
"""

from __future__ import annotations

import asyncio
import os
import shlex
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from hermes_cron_ext.events import EventBroker, broker_for
from hermes_cron_ext.events.bus import EventBus
from hermes_cron_ext.ops.local import Operations
from hermes_cron_ext.runtime import handoff as handoffs
from hermes_cron_ext.runtime.executor import AllowedExecutors, restrict_executors
from hermes_cron_ext.runtime.runas import RUN_AS_ENV, run_as_argv
from hermes_cron_ext.store import AsyncStore, open_store, resolve_db

if TYPE_CHECKING:
    from hermes_cron_ext.runtime.ticker import Ticker  # imported when a host ticks

T = TypeVar("T")


class Host:
    """One process's scheduler (see the module docstring). Make it with :meth:`open`."""

    def __init__(self, store: AsyncStore, broker: EventBroker, ops: Operations,
                 ticker: Ticker | None = None, *, executor: str = "",
                 executors: list[str] | None = None, allow_private_urls: bool = False,
                 run_as: list[str] | None = None):
        self.store = store
        self.broker = broker
        self.ops = ops
        self.ticker = ticker
        #: every change in the store, for ``/events`` and the run streams
        self.bus = EventBus(store)
        self.executor = executor
        self.executors = executors or ["local"]
        self.allow_private_urls = allow_private_urls
        #: the run-as helper's command; empty: runs run as this process's account
        self.run_as = run_as or []

    @classmethod
    def open(cls, db: str | None = None, *, kind: str = "server", tick: bool = True,
             executor: str = "", executors: list[str] | None = None, lead: float = 2.0,
             poll: float = 1.0, notify_url: str | None = None,
             allow_private_urls: bool = False, default_tz: str | None = None,
             threads: int = 4, run_as: Sequence[str] | str | None = None,
             notify: list[str] | None = None, notify_on: list[str] | None = None,
             public_url: str | None = None) -> Host:
        """Open the store (:class:`~hermes_cron_ext.errors.HermesCronError` when it is
        unusable: corrupt, unreachable, read-only) and build the rest on it.

        *run_as*: the command that starts the run-as helper (a list, or one shell-quoted
        line; default ``$HERMES_CRON_RUN_AS``; empty: off): the ticker then starts the
        runs of jobs with an owner as that owner, through the helper
        (``runtime/runas.py``), and never as this process's account."""
        run_as = run_as_argv(run_as)
        opened = open_store(resolve_db(db))
        # API calls share *threads* store threads; the ticker has one of its own, so no
        # burst of requests (or one slow statistics query) ever delays a job's start
        store = AsyncStore(opened, threads=threads)
        broker = broker_for(opened)  # one for the API and the ticker: a change wakes it
        allowed = AllowedExecutors([*(executors or ["local"]), executor or "local"])
        ticker: Ticker | None = None
        if tick:
            from hermes_cron_ext.runtime.ticker import Ticker

            ticker = Ticker(store.lane(), executor or None, kind=kind, lead=lead,
                            poll=poll, notify_url=notify_url or None, broker=broker,
                            run_as=run_as, notify=notify, notify_on=notify_on,
                            public_url=public_url)
            restrict_executors(ticker, allowed)
            ticker.notifier.allow_private_urls = allow_private_urls
        ops = Operations(opened, default_tz=default_tz, executors=allowed,
                         allow_private_urls=allow_private_urls, ticker=ticker,
                         broker=broker)
        return cls(store, broker, ops, ticker, executor=executor,
                   executors=executors, allow_private_urls=allow_private_urls,
                   run_as=run_as)

    @property
    def display_url(self) -> str:
        return self.store.sync.display_url

    def subscribe(self, callback: Callable[[str, str], None]) -> Callable[[], None]:
        """Notices of changes (see :mod:`hermes_cron_ext.events`)."""
        return self.broker.subscribe(callback)

    async def start(self) -> None:
        await self.bus.start()
        if self.ticker is not None:
            await self.ticker.start()

    async def handoff_needed(self) -> bool:
        """Whether stopping now would leave enabled jobs with no ticker alive."""
        if self.ticker is None:
            return False
        own = self.ticker.info.id if self.ticker.info else None
        by_state = await self.store.jobs_by_state()
        return handoffs.needed(await self.store.list_tickers(), by_state.get("scheduled", 0),
                               own, time.time())

    async def stop(self, *, handoff: bool = False) -> int | None:
        """Stop ticking and close the store; detached supervisors keep their runs going.

        With *handoff*, when enabled jobs would be left with no ticker, a detached
        ``hermes-cron daemon --handoff`` takes over this host's executors and URL policy;
        its pid is returned."""
        hand_off = handoff and await self.handoff_needed()
        if self.ticker is not None:
            await self.ticker.stop()
            await self.ticker.store.aclose()
        pid = None
        if hand_off:
            # the daemon takes over this host's executors: its default first, then the
            # rest of the allow-list (handoff.start_daemon passes the environment on)
            os.environ["HERMES_CRON_EXECUTOR"] = ",".join(dict.fromkeys(
                [self.executor or "local", *self.executors]))
            os.environ["HERMES_CRON_ALLOW_PRIVATE_URLS"] = "1" if self.allow_private_urls \
                else "0"
            os.environ[RUN_AS_ENV] = shlex.join(self.run_as)  # and its run-as
            pid = handoffs.start_daemon(self.store.sync.url, self.store.sync.logs_dir)
        await self.bus.close()
        await self.store.aclose()
        return pid

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on a store thread (never on the event loop)."""
        return await self.store.run(fn, *args)

    @staticmethod
    def loop_callback(fn: Callable[[str, str], None]) -> Callable[[str, str], None]:
        """*fn* called on the running loop, whatever thread the broker calls from."""
        loop = asyncio.get_running_loop()

        def call(kind: str, arg: str) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(fn, kind, arg)
        return call


# -- the daemon and the one-shot tick (``hermes-cron daemon`` / ``tick``) ----------------

def take_handoff_lock(db: str | None) -> bool:
    """Hold the store's handoff lock for this process's life; False when another does
    (one handoff daemon per store)."""
    return handoffs.take_lock(resolve_db(db)) is not None


def private_urls_allowed() -> bool:
    """A daemon's and a tick's setting: ``HERMES_CRON_ALLOW_PRIVATE_URLS`` (default: on,
    the store's own user runs them; a server has ``c.HermesCron.allow_private_urls``)."""
    return os.environ.get("HERMES_CRON_ALLOW_PRIVATE_URLS", "1") not in ("0", "false",
                                                                        "no", "")


async def serve(db: str | None, *, kind: str = "daemon", executors: list[str] | None = None,
                lead: float = 2.0, notify_url: str | None = None,
                on_signals: Callable[[], None] | None = None,
                say: Callable[[str], None] = print,
                run_as: Sequence[str] | str | None = None) -> int:
    """Tick until SIGTERM, SIGINT or SIGHUP (or, for ``kind="handoff"``, until a Jupyter
    server ticks again). *executors*: the first is the default, all may be named.
    *on_signals* runs once the signals stop it cleanly (write a pidfile then). *run_as*:
    see :meth:`Host.open`."""
    import signal

    from hermes_cron_ext.runtime.executor import executor_specs

    specs = executor_specs(executors)
    host = Host.open(db, kind=kind, executor=specs[0] if specs else "",
                     executors=["local", *specs], lead=lead, notify_url=notify_url,
                     allow_private_urls=private_urls_allowed(), threads=1, run_as=run_as)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    if on_signals is not None:
        on_signals()
    await host.start()
    say(f"hermes-cron {kind} ticking on {host.display_url} (pid {os.getpid()})")
    if host.run_as:
        assert host.ticker is not None
        fault = host.ticker.runas_fault
        say(f"RUN-AS IS BROKEN: {fault['error']}" if fault is not None else
            f"runs of jobs with an owner start as their owner through: "
            f"{shlex.join(host.run_as)}")
    waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
    if kind == "handoff":
        # Host.open made a ticker, and start() registered it
        assert host.ticker is not None and host.ticker.info is not None
        waiters.append(asyncio.ensure_future(
            handoffs.wait_until_not_needed(host.store, host.ticker.info.id)))
    done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    why = next(iter(done)).result()
    await host.stop()
    say(f"hermes-cron {kind} stopped" + (f": {why}" if isinstance(why, str) else "")
        + "; runs in flight go on")
    return 0


async def tick_once(db: str | None, *, executors: list[str] | None = None,
                    lead: float = 1.0) -> int:
    """Fire what is due now and return how many runs started (a systemd timer's tick)."""
    from hermes_cron_ext.runtime.executor import executor_specs

    specs = executor_specs(executors)
    host = Host.open(db, kind="tick", executor=specs[0] if specs else "",
                     executors=["local", *specs], lead=lead, threads=1,
                     allow_private_urls=private_urls_allowed())
    assert host.ticker is not None  # Host.open makes one unless told not to
    ticker, store = host.ticker, host.ticker.store
    try:
        await ticker.register()
        runs = await ticker.tick()
        await store.check_late(time.time())  # slots no ticker fired are late here too
        await store.run(ticker.notifier.pump)
        # what is due is sent now (half a minute at most); retries wait in the outbox
        # for the next tick
        await asyncio.to_thread(ticker.notifier.close, 30.0)
        assert ticker.info is not None  # set by register()
        await store.ticker_heartbeat(ticker.info.id, time.time(), True)
        await store.gc(time.time())
        await ticker.close_executors()
    finally:
        await store.aclose()
        await host.store.aclose()
    return len(runs)


def doctor(db: str | None) -> tuple[bool, list[str]]:
    """Check the store without opening it as a store (which refuses a broken one)."""
    from hermes_cron_ext.store import doctor as check

    return check(resolve_db(db))
