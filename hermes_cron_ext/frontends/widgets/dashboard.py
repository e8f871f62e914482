"""Every job's health, failing jobs first (:func:`job_health`, :class:`Dashboard`)."""

from __future__ import annotations

import html
from typing import Any

from hermes_cron_ext.domain.models import FAILED_STATUSES
from hermes_cron_ext.frontends.render import (
    alert_badge,
    alert_badge_html,
    calendar_html,
    card_state,
    format_duration,
    managed_html,
    schedule_text,
    text_table,
)
from hermes_cron_ext.frontends.widgets.across import calendar_of
from hermes_cron_ext.frontends.widgets.base import (
    Static,
    duration_spark_html,
    outcome_html,
    pip_html,
    recent_durations,
    traitlets,
    widgets,
)
from hermes_cron_ext.frontends.widgets.history import duration_chart
from hermes_cron_ext.ops import CronClient, get_client

__all__ = ["Dashboard", "dashboard_html", "job_health"]


def job_health(client: CronClient | None = None, recent: int = 30,
               calendar_days: int = 90) -> list[dict]:
    """Every job with its success rate, durations and recent runs; failing jobs first.
    ``durations``: its latest ended runs' (``duration`` metric, oldest first);
    ``calendar``: its last *calendar_days* days (``CronClient.calendar``; None when it
    cannot be read; 0 days: not read)."""
    client = client or get_client()
    stats = {s["job_id"]: s for s in client.stats()["jobs"]}
    rows = []
    for job in client.jobs():
        s = stats.get(job["id"], {})
        runs = client.runs(job["id"], limit=recent)["runs"]
        state = card_state(job)
        last = job.get("last_run") or {}
        failing = state in ("blocked", "failing") or last.get("status") in FAILED_STATUSES
        rows.append({
            "id": job["id"], "name": job["name"], "state": state, "failing": failing,
            "managed_by": job.get("managed_by"),
            "schedule": schedule_text(job), "timezone": job["timezone"],
            "succeeded": s.get("succeeded", 0), "failed": s.get("failed", 0),
            "success_rate": s.get("success_rate"),
            "mean_duration": s.get("mean_duration"), "max_duration": s.get("max_duration"),
            "last_status": last.get("status"), "last_finished_at": last.get("finished_at"),
            # the fired alert rules of its last run (read from its recent runs)
            "last_alerts": next((r.get("alerts") for r in runs if r["id"] == last.get("id")),
                                None),
            "consecutive_failures": job.get("consecutive_failures", 0),
            "next_run_at": job.get("next_run_at"), "runs": runs,
            "durations": recent_durations(client, job["id"]) if last else [],
            "calendar": calendar_of(client, job["id"], calendar_days) if calendar_days
            else None,
        })
    rows.sort(key=lambda r: (not r["failing"], -(r["consecutive_failures"] or 0),
                             r["success_rate"] if r["success_rate"] is not None else 2.0,
                             r["name"]))
    return rows


def _rate_bar(rate: float | None) -> str:
    if rate is None:
        return '<span style="color:#888">-</span>'
    colour = "#2e7d32" if rate >= 0.95 else "#ef6c00" if rate >= 0.7 else "#c62828"
    return (f'<svg width="80" height="10"><rect width="80" height="10" fill="#eee"/>'
            f'<rect width="{80 * rate:.1f}" height="10" fill="{colour}"/></svg> '
            f"{rate * 100:.0f}%")


def dashboard_html(rows: list[dict], stats: dict) -> str:
    by_state = stats.get("jobs_by_state", {})
    by_status = stats.get("runs_by_status", {})
    summary = " ".join(f"{pip_html(s)}{n} {html.escape(s)}" for s, n in sorted(by_state.items()))
    runs = " &middot; ".join(f"{n} {html.escape(s)}" for s, n in sorted(by_status.items()))
    failing = sum(1 for r in rows if r["failing"])
    out = [f'<div class="hc-dashboard"><div><b>{len(rows)} jobs</b> &middot; {summary}</div>',
           f"<div>runs: {runs or 'none yet'}</div>"]
    if failing:
        out.append(f'<div style="color:#c62828"><b>{failing} failing</b> (listed first)</div>')
    out.append('<table style="border-collapse:collapse;font-size:12px;margin-top:6px">'
               "<thead><tr><th></th><th>job</th><th>success</th><th>runs ok/failed</th>"
               "<th>mean</th><th>max</th><th>durations over time</th><th>latest runs</th>"
               "<th>last run</th><th>last 90 days</th>"
               "</tr></thead><tbody>")
    for r in rows:
        out.append(
            f'<tr data-job="{html.escape(r["name"])}"><td>{pip_html(r["state"])}</td>'
            f'<td><b>{html.escape(r["name"])}</b>{managed_html(r)}'
            f'<br><code>{html.escape(r["schedule"])}</code>'
            f"</td><td>{_rate_bar(r['success_rate'])}</td>"
            f"<td>{r['succeeded']} / {r['failed']}</td>"
            f"<td>{html.escape(format_duration(r['mean_duration']))}</td>"
            f"<td>{html.escape(format_duration(r['max_duration']))}</td>"
            f"<td>{duration_chart(r['runs'], width=200, height=28, axes=False)}</td>"
            f'<td data-role="durations">{duration_spark_html(r.get("durations", []))}</td>'
            f"<td>{outcome_html(r['last_status'])}"
            f"{alert_badge_html({'alerts': r.get('last_alerts')})}</td>"
            f'<td data-role="calendar">'
            f"{calendar_html(r['calendar']) if r.get('calendar') else ''}</td></tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


class Dashboard(Static, widgets.VBox):
    """Health of every job (``/stats`` plus recent runs), failing jobs first."""

    rows: traitlets.List[dict[str, Any]] = traitlets.List()

    def __init__(self, client: CronClient | None = None, **kwargs):
        self.client = client or get_client()
        self.view = widgets.HTML()
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh",
                                             layout=widgets.Layout(width="auto"))
        self.refresh_button.on_click(lambda _: self.refresh())
        super().__init__([self.refresh_button, self.view], **kwargs)
        self.refresh()

    def refresh(self) -> None:
        rows = job_health(self.client)
        self.stats = self.client.stats()
        self.view.value = dashboard_html(rows, self.stats)
        self.rows = rows

    def plain_text(self) -> str:
        rows = self.rows
        failing = sum(1 for r in rows if r["failing"])
        head = f"{len(rows)} jobs" + (f" \u00b7 {failing} failing (listed first)"
                                       if failing else "")
        table = text_table(
            ["", "job", "state", "success", "runs ok/failed", "mean", "max", "last run"],
            [["!" if r["failing"] else "", r["name"], r["state"],
              "-" if r["success_rate"] is None else f"{r['success_rate'] * 100:.0f}%",
              f"{r['succeeded']} / {r['failed']}", format_duration(r["mean_duration"]),
              format_duration(r["max_duration"]),
              " ".join(t for t in ((r["last_status"] or "-").replace("_", " "),
                                   alert_badge({"alerts": r.get("last_alerts")})) if t)]
             for r in rows])
        return f"{head}\n{table}"

    def static_html(self) -> str:
        return self.view.value
