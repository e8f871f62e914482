"""A backfill as it goes: its bar, counts and Cancel (:class:`BackfillProgress`)."""

from __future__ import annotations

import html
import threading

from hermes_cron_ext.domain.models import FAILED_STATUSES
from hermes_cron_ext.errors import HermesCronError
from hermes_cron_ext.frontends.render import backfill_done, backfill_text, progress_bar
from hermes_cron_ext.frontends.widgets.base import Static, traitlets, widgets
from hermes_cron_ext.ops import CronClient, get_client

__all__ = ["BackfillProgress"]


class BackfillProgress(Static, widgets.VBox):
    """A backfill as it goes: a bar of the slots whose runs ended, the counts by status
    and a Cancel button, read every *interval* seconds on a background thread until the
    backfill ends (the kernel stays free)."""

    backfill = traitlets.Dict()

    def __init__(self, backfill: dict | str, client: CronClient | None = None, *,
                 interval: float = 1.0, **kwargs):
        self._stop = threading.Event()
        self.client = client or get_client()
        if isinstance(backfill, str):
            backfill = self.client.get_backfill(backfill)
        self.bar = widgets.IntProgress(min=0, max=max(1, backfill["slots"]),
                                       layout=widgets.Layout(width="320px"))
        self.label = widgets.HTML()
        self.cancel_button = widgets.Button(description="Cancel", icon="stop",
                                            tooltip="stop the slots not run yet",
                                            layout=widgets.Layout(width="auto"))
        self.cancel_button.on_click(lambda _: self.cancel())
        super().__init__([widgets.HBox([self.bar, self.cancel_button]), self.label], **kwargs)
        self.add_class("hc-backfill")
        self.observe(self._draw, names="backfill")
        self.backfill = backfill
        if interval > 0 and backfill["state"] == "running":
            threading.Thread(target=self._follow, args=(interval,), daemon=True,
                             name="hermes-cron-backfill").start()

    def refresh(self) -> None:
        self.backfill = self.client.get_backfill(self.backfill["id"])

    def cancel(self) -> None:
        try:
            self.backfill = self.client.cancel_backfill(self.backfill["id"])
        except HermesCronError as exc:
            self.label.value = f'<span style="color:#c62828">{html.escape(exc.message)}</span>'

    def _follow(self, interval: float) -> None:
        while not self._stop.wait(interval) and self.backfill.get("state") == "running":
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - a server gone for a while: try again later
                continue

    def _draw(self, change=None) -> None:
        b = self.backfill
        done, running = backfill_done(b), b["state"] == "running"
        self.bar.value = done
        failed = sum(n for s, n in (b.get("runs") or {}).items() if s in FAILED_STATUSES)
        self.bar.bar_style = ("danger" if failed else "" if running else
                              "warning" if b["state"] == "cancelled" else "success")
        self.cancel_button.disabled = not running
        self.label.value = html.escape(self._line())

    def _line(self) -> str:
        b = self.backfill
        span = f"{b.get('from') or '-'} .. {b.get('to') or '-'}"
        return (f"backfill {b['id']} ({b['state']}), {span}, {b['max_parallel']} at a time: "
                f"{backfill_text(b)}")

    def close(self) -> None:
        self._stop.set()
        super().close()

    def plain_text(self) -> str:
        b = self.backfill
        return f"{progress_bar(backfill_done(b) / max(1, b['slots']))} {self._line()}"

    def static_html(self) -> str:
        return f"<pre>{html.escape(self.plain_text())}</pre>"
