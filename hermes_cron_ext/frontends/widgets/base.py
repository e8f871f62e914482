"""What every widget shares: the optional-dependency check, the colours and marks of
states and outcomes, and :class:`Static`, the readable ``text/plain`` and ``text/html``
each widget carries beside its widget view (its text in render.py's formats)."""

from __future__ import annotations

import html
import pathlib

from hermes_cron_ext.errors import HermesCronError
from hermes_cron_ext.frontends.render import OUTCOME_COLOURS, _svg_sparkline, format_metric
from hermes_cron_ext.ops import CronClient

try:  # every widget module imports these from here, so a missing one says what to install
    import anywidget
    import ipywidgets as widgets
    import traitlets
except ImportError as exc:  # pragma: no cover - the notebook extra is missing
    raise ImportError(
        "the hermes-cron widgets need ipywidgets and anywidget: "
        "pip install 'hermes-cron-ext[notebook]'") from exc

__all__ = ["OUTCOME_COLOURS", "OUTCOME_MARKS", "SPARK_RUNS", "STATE_COLOURS", "STATIC",
           "Static", "anywidget", "duration_spark_html", "html_table", "outcome_html",
           "pip_html", "recent_durations", "traitlets", "widgets"]

#: how many of a job's latest ended runs the duration sparklines show
SPARK_RUNS = 20
#: the live output's front-end code and style (anywidget's ``_esm`` and ``_css``)
STATIC = pathlib.Path(__file__).parent / "static"
STATE_COLOURS = {
    "scheduled": "#2e7d32", "running": "#1565c0", "paused": "#9e9e9e", "blocked": "#c62828",
    "failing": "#ef6c00", "disabled": "#bdbdbd", "deleted": "#616161",
}
OUTCOME_MARKS = {"succeeded": "\u2714", "failed": "\u2718", "timed_out": "\u231b",
                 "lost": "?", "cancelled": "\u25a0", "skipped": "\u21b7", "running": "\u25b6",
                 "queued": "\u2026"}


def pip_html(state: str) -> str:
    """The coloured dot of a job's state."""
    colour = STATE_COLOURS.get(state, "#9e9e9e")
    return (f'<span title="{state}" style="display:inline-block;width:10px;height:10px;'
            f'border-radius:50%;background:{colour};margin-right:6px"></span>')


def outcome_html(status: str | None) -> str:
    """A run's status, coloured and marked (``✔ succeeded``)."""
    if not status:
        return "-"
    colour = OUTCOME_COLOURS.get(status, "#757575")
    mark = OUTCOME_MARKS.get(status, "")
    return (f'<span style="color:{colour};font-weight:600">{mark} '
            f'{html.escape(status.replace("_", " "))}</span>')


def recent_durations(client: CronClient, job_id: str, limit: int = SPARK_RUNS) -> list[float]:
    """The ``duration`` of the job's latest *limit* ended runs, oldest first (its metric,
    ``Operations.metrics``); [] when none has ended or it cannot be read now."""
    try:
        answer = client.metrics(job_id, metric="duration", limit=limit)
    except HermesCronError:  # NotFound: no run of it has ended yet
        return []
    series = answer.get("metrics") or [{}]
    return [float(p["value"]) for p in series[0].get("points", [])]


def duration_spark_html(values: list[float], width: int = 100, height: int = 22) -> str:
    """The durations as %cron metrics draws a metric (render's inline SVG sparkline),
    with the last one as text; ``-`` for none. Its ``data-points`` counts the runs."""
    if not values:
        return '<span class="hc-spark" data-points="0" style="color:#888">-</span>'
    title = html.escape(f"duration of the last {len(values)} ended runs, oldest first; "
                        f"min {format_metric(min(values), 's')}, "
                        f"max {format_metric(max(values), 's')}")
    return (f'<span class="hc-spark" data-points="{len(values)}" title="{title}" '
            f'style="display:inline-flex;align-items:center;gap:4px;color:#1565c0">'
            f"{_svg_sparkline(values, width, height)}"
            f'<span style="color:#555">{html.escape(format_metric(values[-1], "s"))}</span>'
            f"</span>")


class Static:
    """A readable ``text/plain`` and ``text/html`` beside the widget view.

    ipywidgets and anywidget put only ``repr(widget)`` beside the view; a saved or
    converted notebook (nbconvert, GitHub, a mailed report) then shows
    ``VBox(children=(HTML(value=...``. Front-ends with the widget manager still
    pick the widget view (it ranks first); the others get these.
    """

    def plain_text(self) -> str:  # pragma: no cover - every widget here overrides it
        raise NotImplementedError

    def static_html(self) -> str:  # pragma: no cover
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:  # a closed widget
            return None
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        try:
            fallback = {"text/plain": self.plain_text(), "text/html": self.static_html()}
        except Exception as exc:  # noqa: BLE001 - the fallback must never break the display
            fallback = {"text/plain": f"{type(self).__name__} ({type(exc).__name__}: {exc})"}
        return {**data, **fallback}, metadata


def html_table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    """A table of cells already in HTML (escape text before passing it)."""
    head = "".join(f'<th style="text-align:left;padding:2px 8px">{h}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f'<td style="padding:2px 8px">{c}</td>' for c in r)
                   + "</tr>" for r in rows)
    return (f'<table class="{cls}" style="border-collapse:collapse;font-size:12px">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


