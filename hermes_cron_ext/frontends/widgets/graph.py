"""A pipeline drawn: the jobs a job runs after and before, by level, each with its
last run's status, redrawn live (:class:`PipelineGraph`)."""

from __future__ import annotations

import html
import threading

from hermes_cron_ext.frontends.render import pipeline_text
from hermes_cron_ext.frontends.widgets.base import Static, outcome_html, widgets
from hermes_cron_ext.ops import CronClient, get_client

__all__ = ["PipelineGraph", "pipeline_html"]


def pipeline_html(graph: dict, focus: str | None = None) -> str:
    """Columns by level, a box per job coloured by its last run, the links below."""
    names = {n["id"]: n["name"] for n in graph["nodes"]}
    columns = []
    for level in sorted({n["level"] for n in graph["nodes"]}):
        boxes = []
        for n in (x for x in graph["nodes"] if x["level"] == level):
            edge = "2px solid #1976d2" if n["id"] == focus else "1px solid #ccc"
            boxes.append(
                f'<div class="hc-node" data-job="{html.escape(n["name"])}" style="border:{edge};'
                f'border-radius:4px;padding:4px 8px;margin:4px 0">'
                f"<b>{html.escape(n['name'])}</b><br>{outcome_html(n['last_status'])} "
                f'<span style="color:#888">{html.escape(n["state"])}</span></div>')
        columns.append('<div style="display:flex;flex-direction:column;margin-right:24px">'
                       + "".join(boxes) + "</div>")
    links = "".join(
        f"<li>{html.escape(names.get(e['from'], e['from']))} &rarr; "
        f"{html.escape(names.get(e['to'], e['to']))}"
        + ("" if e["on"] == "success" else f" <i>(on {html.escape(e['on'])})</i>") + "</li>"
        for e in graph["edges"])
    notes = "".join(f'<div class="hc-note" data-job="{html.escape(n["name"])}">'
                    f"<b>{html.escape(n['name'])}</b>: {html.escape(n['note'])}</div>"
                    for n in graph["nodes"] if n.get("note"))
    return (f'<div class="hc-pipeline"><div style="display:flex">{"".join(columns)}</div>'
            f'<ul style="font-size:12px;color:#555">{links}</ul>'
            f'<div style="font-size:12px;color:#ef6c00">{notes}</div></div>')


class PipelineGraph(Static, widgets.VBox):
    """The pipeline a job is part of, live: each job's last status, redrawn every
    *interval* seconds on a background thread (the kernel stays free) until closed."""

    def __init__(self, job: str, client: CronClient | None = None, *, interval: float = 2.0,
                 **kwargs):
        self.client = client or get_client()
        self.ref = job
        self.graph = self.client.pipeline(job)
        self.view = widgets.HTML(pipeline_html(self.graph, self.graph["job"]))
        super().__init__([self.view], **kwargs)
        self.add_class("hc-pipeline-graph")
        self._stop = threading.Event()
        if interval > 0:
            threading.Thread(target=self._follow, args=(interval,), daemon=True,
                             name="hermes-cron-graph").start()

    def refresh(self) -> None:
        self.graph = self.client.pipeline(self.ref)
        self.view.value = pipeline_html(self.graph, self.graph["job"])

    def _follow(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - a server gone for a while: try again later
                continue

    def close(self) -> None:
        self._stop.set()
        super().close()

    def plain_text(self) -> str:
        return pipeline_text(self.graph)

    def static_html(self) -> str:
        return pipeline_html(self.graph, self.graph["job"])
