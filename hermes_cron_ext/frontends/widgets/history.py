"""A job's run history: a paged table of runs over a chart of their durations
coloured by outcome (inline SVG, no plotting library)."""

from __future__ import annotations

import html
from typing import Any

from hermes_cron_ext.domain.models import FINAL_STATUSES
from hermes_cron_ext.frontends.render import (
    alert_badge_html,
    format_duration,
    local_time,
    revision_parts,
    runs_text,
    timestamp,
    trigger_text,
)
from hermes_cron_ext.frontends.widgets.base import (
    OUTCOME_COLOURS,
    Static,
    outcome_html,
    traitlets,
    widgets,
)
from hermes_cron_ext.ops import CronClient, get_client

__all__ = ["RunHistory", "duration_chart", "runs_table"]


def duration_chart(runs: list[dict], width: int = 560, height: int = 120,
                   axes: bool = True) -> str:
    """An SVG bar chart of run durations, oldest on the left, coloured by outcome.

    Runs without a duration (skipped, still queued) are drawn as short ticks so
    gaps in the history stay visible.
    """
    runs = [r for r in runs if r.get("status")]
    runs = sorted(runs, key=lambda r: (timestamp(r.get("started_at") or r.get("scheduled_for")
                                           or r.get("queued_at")) or 0.0))
    left, bottom, top = (44, 18, 8) if axes else (0, 0, 1)
    plot_w, plot_h = max(1, width - left - 2), max(1, height - bottom - top)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" class="hc-chart">']
    if not runs:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
                     f'font-size="12" fill="#888">no runs yet</text></svg>')
        return "".join(parts)
    longest = max((r.get("duration") or 0.0) for r in runs) or 1.0
    slot = plot_w / len(runs)
    bar_w = max(1.0, min(24.0, slot * 0.8))
    if axes:
        base_y = top + plot_h
        parts.append(f'<line x1="{left}" y1="{base_y}" x2="{width - 2}" y2="{base_y}" '
                     f'stroke="#bbb"/>')
        parts.append(f'<text x="{left - 4}" y="{top + 10}" text-anchor="end" font-size="10" '
                     f'fill="#666">{html.escape(format_duration(longest))}</text>')
        parts.append(f'<text x="{left - 4}" y="{base_y}" text-anchor="end" font-size="10" '
                     f'fill="#666">0</text>')
        first = timestamp(runs[0].get("started_at") or runs[0].get("scheduled_for"))
        last = timestamp(runs[-1].get("started_at") or runs[-1].get("scheduled_for"))
        parts.append(f'<text x="{left}" y="{height - 4}" font-size="10" fill="#666">'
                     f'{html.escape(local_time(first))}</text>')
        if len(runs) > 1:
            parts.append(f'<text x="{width - 2}" y="{height - 4}" text-anchor="end" '
                         f'font-size="10" fill="#666">{html.escape(local_time(last))}</text>')
    for i, r in enumerate(runs):
        status = r.get("status")
        colour = OUTCOME_COLOURS.get(status or "", "#757575")
        duration = r.get("duration")
        h = 2.0 if duration is None else max(2.0, plot_h * duration / longest)
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h - h
        tip = (f"{status} \u00b7 {format_duration(duration)} \u00b7 "
               f"{local_time(timestamp(r.get('started_at') or r.get('scheduled_for')))}"
               + (f" \u00b7 exit {r['exit_code']}" if r.get("exit_code") is not None else ""))
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                     f'fill="{colour}" data-status="{status}"><title>{html.escape(tip)}'
                     f'</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def _revision_html(run: dict, current: int | None) -> str:
    """Under a run's id: the job's revision it ran and its file's short sha256, and
    "older revision" when the job has changed since (as the panel's run view)."""
    parts = revision_parts(run, current)
    if not parts:
        return ""
    older = current is not None and (run.get("job_version") or current) < current
    colour = "#ef6c00" if older else "#888"
    return (f'<br><small data-role="run-rev" style="color:{colour}" '
            f'title="{html.escape(run.get("file_sha256") or "")}">'
            f'{html.escape(" · ".join(parts))}</small>')


def runs_table(runs: list[dict], current: int | None = None) -> str:
    """The runs as a table; *current*: their job's version now (to mark the runs of an
    older revision)."""
    head = ("<tr><th>status</th><th>trigger</th><th>try</th><th>started</th>"
            "<th>duration</th><th>exit</th><th>run</th><th>reason</th></tr>")
    rows = []
    for r in runs:
        code = "-" if r.get("exit_code") is None else str(r["exit_code"])
        reason = r.get("reason") or ""
        rows.append(
            f"<tr data-run=\"{html.escape(r['id'])}\"><td>{outcome_html(r.get('status'))}"
            f"{alert_badge_html(r)}</td>"
            f"<td>{html.escape(trigger_text(r))}</td><td>{r.get('attempt', 1)}</td>"
            f"<td>{html.escape(local_time(timestamp(r.get('started_at'))))}</td>"
            f"<td>{html.escape(format_duration(r.get('duration')))}</td><td>{code}</td>"
            f"<td><code>{html.escape(r['id'])}</code>{_revision_html(r, current)}</td>"
            f"<td title=\"{html.escape(reason)}\">{html.escape(reason[:60])}</td></tr>")
    if not rows:
        rows.append('<tr><td colspan="8" style="color:#888">no runs yet</td></tr>')
    return ('<table class="hc-runs" style="border-collapse:collapse;font-size:12px">'
            f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>")



class RunHistory(Static, widgets.VBox):
    """A job's runs (or every job's: *job* None), newest first, a page at a time, over a
    chart of their durations; *status* keeps the runs in that status only."""

    runs: traitlets.List[dict[str, Any]] = traitlets.List()
    page = traitlets.Int(0)
    has_next = traitlets.Bool(False)

    def __init__(self, job: str | None, client: CronClient | None = None, *,
                 page_size: int = 20, status: str | None = None, **kwargs):
        self.client = client or get_client()
        self.job = self.client.job(job) if job else None
        self.status = status
        self.page_size = page_size
        self._cursors: list[str | None] = [None]  # the cursor of each page seen
        self._next: str | None = None
        self._title = widgets.HTML()
        self.chart = widgets.HTML()
        self.table = widgets.HTML()
        self.prev_button = widgets.Button(description="Newer", icon="arrow-left",
                                          layout=widgets.Layout(width="auto"))
        self.next_button = widgets.Button(description="Older", icon="arrow-right",
                                          layout=widgets.Layout(width="auto"))
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh",
                                             layout=widgets.Layout(width="auto"))
        self._page_label = widgets.HTML()
        self.prev_button.on_click(lambda _: self.prev_page())
        self.next_button.on_click(lambda _: self.next_page())
        self.refresh_button.on_click(lambda _: self.refresh())
        nav = widgets.HBox([self.prev_button, self._page_label, self.next_button,
                            self.refresh_button])
        super().__init__([self._title, self.chart, self.table, nav], **kwargs)
        self.add_class("hc-history")
        self._load()

    def _load(self) -> None:
        page = self.client.runs(self.job["id"] if self.job else None, limit=self.page_size,
                                cursor=self._cursors[self.page], status=self.status)
        self._next = page["cursor"]
        self.has_next = self._next is not None
        self.runs = list(page["runs"])
        self._draw()

    def _rate(self) -> str:
        done = [r for r in self.runs
                if r["status"] in FINAL_STATUSES and r["status"] != "skipped"]
        ok = sum(1 for r in done if r["status"] == "succeeded")
        return f"{ok}/{len(done)} succeeded" if done else ""

    def _draw(self) -> None:
        runs = self.runs
        rate = self._rate()
        self._title.value = f"<b>{html.escape(self._title_text())}</b>" + (
            f" &middot; {rate}" if rate else "")
        self.chart.value = duration_chart(runs)
        self.table.value = runs_table(runs, self._version())
        self._page_label.value = f"page {self.page + 1}"
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = not self.has_next

    def _version(self) -> int | None:
        """The job's version now (None for every job's runs)."""
        return self.job.get("version") if self.job else None

    def next_page(self) -> None:
        if self._next is None:
            return
        del self._cursors[self.page + 1:]
        self._cursors.append(self._next)
        self.page += 1
        self._load()

    def prev_page(self) -> None:
        if self.page == 0:
            return
        self.page -= 1
        self._load()

    def refresh(self) -> None:
        self._load()

    def _title_text(self) -> str:
        """``Runs of etl`` (``failed runs of etl`` with a status; ``of every job``)."""
        whose = self.job["name"] if self.job else "every job"
        what = f"{self.status.replace('_', ' ')} runs" if self.status else "Runs"
        return f"{what} of {whose}"

    def _heading(self) -> str:
        rate = self._rate()
        more = f", page {self.page + 1}" + (", older runs on the next" if self.has_next else "")
        return self._title_text() + (f" \u00b7 {rate}" if rate else "") + (
            more if self.page or self.has_next else "")

    def plain_text(self) -> str:
        return f"{self._heading()}\n{runs_text(self.runs)}"

    def static_html(self) -> str:
        return (f'<div class="hc-history"><b>{html.escape(self._heading())}</b>'
                f"<div>{duration_chart(self.runs)}</div>"
                f"{runs_table(self.runs, self._version())}</div>")
