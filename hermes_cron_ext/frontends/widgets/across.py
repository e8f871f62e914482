"""Across runs (issue 34): every job's runs on one time axis (:class:`Timeline`), the
runs whose output matches a search (:class:`SearchResults`), two runs compared
(:class:`RunDiff`) and a job's days as a heatmap (:class:`CalendarView`). Clients of
``CronClient.timeline`` / ``search`` / ``diff`` / ``calendar``; their text and HTML are
render.py's (what a notebook without the widget manager shows)."""

from __future__ import annotations

import html
from typing import Any

from hermes_cron_ext.errors import HermesCronError
from hermes_cron_ext.frontends.render import (
    MISSED_COLOUR,
    OUTCOME_COLOURS,
    _axis,
    _mark,
    calendar_html,
    calendar_text,
    diff_html,
    diff_text,
    local_time,
    run_span,
    search_hit_html,
    search_html,
    search_text,
    timeline_html,
    timeline_rows,
    timeline_text,
)
from hermes_cron_ext.frontends.widgets.base import STATIC, Static, anywidget, traitlets, widgets
from hermes_cron_ext.frontends.widgets.live_output import LiveOutput
from hermes_cron_ext.ops import CronClient, get_client

__all__ = ["CalendarView", "RunDiff", "SearchResults", "Timeline", "TimelineChart",
           "calendar_of", "timeline_model_rows"]


def timeline_model_rows(answer: dict) -> list[dict[str, Any]]:
    """The rows the chart draws: per job its runs as ``{id, status, kind, a, b, colour,
    tip}`` (epoch seconds) and its coming slots."""
    _, _, now = _axis(answer)
    rows = []
    for name, runs, slots in timeline_rows(answer):
        items = []
        for r in runs:
            a, b = run_span(r, now)
            kind = _mark(r)
            colour = (MISSED_COLOUR if kind == "missed"
                      else OUTCOME_COLOURS.get(r.get("status") or "", "#757575"))
            tip = (f"{name} \u00b7 run {r.get('id')} \u00b7 "
                   f"{(r.get('status') or '').replace('_', ' ')}"
                   f"{' (missed)' if r.get('missed') else ''} \u00b7 {local_time(a)}"
                   + (f" \u00b7 {r['reason']}" if r.get("reason") else ""))
            items.append({"id": r.get("id"), "status": r.get("status"), "kind": kind,
                          "a": a, "b": b, "colour": colour, "tip": tip})
        rows.append({"name": name, "runs": items, "slots": slots})
    return rows


class TimelineChart(anywidget.AnyWidget):
    """The chart itself (static/timeline.js): ``window`` is the span shown, changed by
    the wheel, a drag, the buttons or :meth:`zoom` / :meth:`pan`; a click on a bar sets
    ``selected``."""

    _esm = STATIC / "timeline.js"
    _css = STATIC / "timeline.css"

    rows: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)
    start = traitlets.Float(0.0).tag(sync=True)
    end = traitlets.Float(1.0).tag(sync=True)
    now = traitlets.Float(0.0).tag(sync=True)
    window = traitlets.List(traitlets.Float()).tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)

    def zoom(self, factor: float) -> None:
        """*factor* < 1 zooms in around the middle, > 1 out (as the +/- buttons)."""
        t0, t1 = self.window or [self.start, self.end]
        mid = (t0 + t1) / 2
        self.window = [mid - (mid - t0) * factor, mid + (t1 - mid) * factor]

    def pan(self, fraction: float) -> None:
        """Move by *fraction* of the span shown (negative: earlier), as the arrows."""
        t0, t1 = self.window or [self.start, self.end]
        d = (t1 - t0) * fraction
        self.window = [t0 + d, t1 + d]


class Timeline(Static, widgets.VBox):
    """Every job's runs (or one's) in a time range, one row per job; a click on a run
    opens its output below (:class:`LiveOutput`, live when it still runs). Reads up to
    *pages* pages of the range (as ``hermes-cron timeline``)."""

    pages = 20

    def __init__(self, client: CronClient | None = None, *, since: str | None = None,
                 until: str | None = None, job: str | None = None,
                 status: str | None = None, **kwargs):
        self.client = client or get_client()
        self.since, self.until, self.job, self.status = since, until, job, status
        self.chart = TimelineChart()
        self.detail = widgets.VBox()
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh",
                                             layout=widgets.Layout(width="auto"))
        self.refresh_button.on_click(lambda _: self.refresh())
        self._head = widgets.HTML()
        super().__init__([widgets.HBox([self.refresh_button, self._head]), self.chart,
                          self.detail], **kwargs)
        self.add_class("hc-timeline")
        self.chart.observe(lambda change: self.show_run(change["new"]), names="selected")
        self.refresh()

    def refresh(self) -> None:
        """Read the range again (its end stays ``--until`` from now)."""
        answer = self.client.timeline(self.since, self.until, job=self.job,
                                      status=self.status)
        for _ in range(self.pages - 1):
            if not answer.get("cursor"):
                break
            more = self.client.timeline(answer["from"], answer["to"], job=self.job,
                                        status=self.status, cursor=answer["cursor"])
            answer = {**answer, "runs": answer["runs"] + more["runs"],
                      "cursor": more["cursor"]}
        self.answer = answer
        start, end, now = _axis(self.answer)
        n = len(self.answer.get("runs") or [])
        self._head.value = (f"{n} run{'s' if n != 1 else ''} from "
                            f"{html.escape(local_time(start))} to "
                            f"{html.escape(local_time(end))}"
                            + (" (more in this range: narrow it)" if self.answer.get("cursor")
                               else ""))
        with self.chart.hold_sync():
            self.chart.start, self.chart.end, self.chart.now = start, end, now
            self.chart.rows = timeline_model_rows(self.answer)
            if not self.chart.window:
                self.chart.window = [start, end]

    def show_run(self, run_id: str) -> LiveOutput | None:
        """Show the run *run_id* below the chart (its output, live while it runs)."""
        for old in self.detail.children:
            old.close()
        if not run_id:
            self.detail.children = ()
            return None
        try:
            out = LiveOutput(run_id, client=self.client)
        except HermesCronError as exc:
            self.detail.children = (widgets.HTML(
                f'<span style="color:#c62828">{html.escape(exc.message)}</span>'),)
            return None
        self.detail.children = (out,)
        return out

    def plain_text(self) -> str:
        return timeline_text(self.answer)

    def static_html(self) -> str:
        return timeline_html(self.answer)


class SearchResults(Static, widgets.VBox):
    """The runs whose output matches; each match's button opens the run's output at that
    line (a :class:`LiveOutput` from the line's byte offset on, live if it still runs)."""

    def __init__(self, q: str, client: CronClient | None = None, **options: Any):
        self.client = client or get_client()
        self.q = q
        self.answer = self.client.search(q, **options)
        self.detail = widgets.VBox()
        items: list[widgets.Widget] = []
        for hit in self.answer.get("hits") or []:
            buttons = []
            for m in hit.get("matches") or []:
                button = widgets.Button(
                    description=f"Open at byte {m['offset']:,}", icon="external-link",
                    tooltip=f"the output of run {hit['run_id']} from this line on",
                    layout=widgets.Layout(width="auto"))
                button.on_click(lambda _, r=hit["run_id"], at=m["offset"]:
                                self.show_run(r, at))
                buttons.append(button)
            items.append(widgets.VBox([widgets.HTML(search_hit_html(hit, q)),
                                       widgets.HBox(buttons)]))
        if not items:
            items.append(widgets.HTML(search_html(self.answer)))
        super().__init__([*items, self.detail])
        self.add_class("hc-search")

    def show_run(self, run_id: str, offset: int = 0) -> LiveOutput:
        """The run's output under the results, from byte *offset* on (a match's line)."""
        for old in self.detail.children:
            old.close()
        out = LiveOutput(run_id, client=self.client, start=offset)
        self.detail.children = (out,)
        return out

    def plain_text(self) -> str:
        return search_text(self.answer)

    def static_html(self) -> str:
        return search_html(self.answer)


class _Rich(Static, widgets.HTML):
    """An HTML view with its own text: what the diff and the calendar show."""

    def __init__(self, text: str, html_text: str):
        super().__init__(html_text)
        self._text = text

    def plain_text(self) -> str:
        return self._text

    def static_html(self) -> str:
        return str(self.value)


class RunDiff(_Rich):
    """Two runs compared: the fields and metrics that differ, the output diff coloured,
    a notebook's changed cells (their source diff, outputs side by side)."""

    def __init__(self, run_a: str, run_b: str, client: CronClient | None = None):
        self.answer = (client or get_client()).diff(run_a, run_b)
        super().__init__(diff_text(self.answer), diff_html(self.answer))


class CalendarView(_Rich):
    """A job's last *days* days as a heatmap (one cell a day, weeks as columns)."""

    def __init__(self, ref: str, client: CronClient | None = None, days: int = 90):
        self.answer = (client or get_client()).calendar(ref, days=days)
        super().__init__(calendar_text(self.answer), calendar_html(self.answer))


def calendar_of(client: CronClient, job_id: str, days: int = 90) -> dict | None:
    """The job's calendar, or None when it cannot be read (an older server, an error):
    a card without its heatmap rather than no card."""
    try:
        return client.calendar(job_id, days=days)
    except (HermesCronError, AttributeError, NotImplementedError):
        return None
