"""Notebook widgets: job cards, run history, live output and a health dashboard.

All of them are clients of :mod:`hermes_cron_ext.ops` (REST or the local
store) and hold no scheduling logic. Nothing here blocks the kernel: live output
is read on a background thread, and a single shared clock thread advances the
cards' countdowns and refreshes their jobs. Every trait is assigned a fresh
value (never mutated in place), so each change reaches the front-end.

- :class:`JobCard`: name, schedule in words and in cron, state pip, live
  countdown, last outcome and duration, buttons (run now, run with parameters,
  pause/resume, watch, history);
- :class:`RunHistory`: a paged table of runs and a chart of their durations
  coloured by outcome (inline SVG, no plotting library);
- :class:`LiveOutput`: a run's output as a terminal shows it (ANSI colours,
  ``\\r`` progress bars), following the end until the reader scrolls up, with
  phase, progress and a badge with the exit status when the run ends;
- :class:`Dashboard`: every job's health, failing jobs first;
- :class:`PipelineGraph`: the pipeline a job is part of, each job's last status, live;
- :class:`ParametersForm`: a typed form that runs a job once with parameters;
- :class:`BackfillProgress`: a backfill's progress bar, counts and Cancel.

Each widget also carries a readable ``text/plain`` and ``text/html`` of what it
shows beside its widget view (:class:`_Static`), so a notebook saved, converted
(nbconvert), shown on GitHub or mailed shows real tables instead of a widget's
Python repr. A :class:`LiveOutput` that is displayed replaces its own display
when its run ends, so the saved notebook keeps the run's outcome and output.
"""

from __future__ import annotations

import html
import json
import pathlib
import re
import threading
import time
import uuid
import weakref

try:
    import anywidget
    import ipywidgets as widgets
    import traitlets
except ImportError as exc:  # pragma: no cover - the notebook extra is missing
    raise ImportError(
        "the hermes-cron widgets need ipywidgets and anywidget: "
        "pip install 'hermes-cron-ext[notebook]'") from exc

from hermes_cron_ext.domain.models import ACTIVE_STATUSES, FAILED_STATUSES, FINAL_STATUSES
from hermes_cron_ext.domain.policy import upstream_note
from hermes_cron_ext.errors import HermesCronError, NotFound
from hermes_cron_ext.frontends.render import (
    after_text,
    backfill_done,
    backfill_text,
    card_state,
    describe_schedule,
    format_ago,
    format_countdown,
    format_duration,
    local_time,
    pipeline_text,
    schedule_text,
    timestamp,
    trigger_text,
)
from hermes_cron_ext.frontends.terminal import Terminal
from hermes_cron_ext.ops import ConnectionFailed, CronClient, get_client

__all__ = [
    "BackfillProgress",
    "Dashboard",
    "JobCard",
    "JobCards",
    "LiveOutput",
    "ParametersForm",
    "PipelineGraph",
    "RunHistory",
    "duration_chart",
    "job_cards",
    "job_health",
]

STATIC = pathlib.Path(__file__).parent / "static"
STATE_COLOURS = {
    "scheduled": "#2e7d32", "running": "#1565c0", "paused": "#9e9e9e", "blocked": "#c62828",
    "failing": "#ef6c00", "disabled": "#bdbdbd", "deleted": "#616161",
}
OUTCOME_COLOURS = {
    "succeeded": "#2e7d32", "failed": "#c62828", "timed_out": "#ad1457", "lost": "#6a1b9a",
    "cancelled": "#757575", "skipped": "#bdbdbd", "running": "#1565c0", "queued": "#64b5f6",
}
OUTCOME_MARKS = {"succeeded": "\u2714", "failed": "\u2718", "timed_out": "\u231b",
                 "lost": "?", "cancelled": "\u25a0", "skipped": "\u21b7", "running": "\u25b6",
                 "queued": "\u2026"}


# -- formatting ------------------------------------------------------------------------

def _pip(state: str) -> str:
    colour = STATE_COLOURS.get(state, "#9e9e9e")
    return (f'<span title="{state}" style="display:inline-block;width:10px;height:10px;'
            f'border-radius:50%;background:{colour};margin-right:6px"></span>')


def _outcome(status: str | None) -> str:
    if not status:
        return "-"
    colour = OUTCOME_COLOURS.get(status, "#757575")
    mark = OUTCOME_MARKS.get(status, "")
    return (f'<span style="color:{colour};font-weight:600">{mark} '
            f'{html.escape(status.replace("_", " "))}</span>')


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
        colour = OUTCOME_COLOURS.get(status, "#757575")
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


def runs_table(runs: list[dict]) -> str:
    head = ("<tr><th>status</th><th>trigger</th><th>try</th><th>started</th>"
            "<th>duration</th><th>exit</th><th>run</th><th>reason</th></tr>")
    rows = []
    for r in runs:
        code = "-" if r.get("exit_code") is None else str(r["exit_code"])
        reason = r.get("reason") or ""
        rows.append(
            f"<tr data-run=\"{html.escape(r['id'])}\"><td>{_outcome(r.get('status'))}</td>"
            f"<td>{html.escape(trigger_text(r))}</td><td>{r.get('attempt', 1)}</td>"
            f"<td>{html.escape(local_time(timestamp(r.get('started_at'))))}</td>"
            f"<td>{html.escape(format_duration(r.get('duration')))}</td><td>{code}</td>"
            f"<td><code>{html.escape(r['id'])}</code></td>"
            f"<td title=\"{html.escape(reason)}\">{html.escape(reason[:60])}</td></tr>")
    if not rows:
        rows.append('<tr><td colspan="8" style="color:#888">no runs yet</td></tr>')
    return ('<table class="hc-runs" style="border-collapse:collapse;font-size:12px">'
            f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>")


# -- what a front-end without widgets shows ------------------------------------------------

class _Static:
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


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, a rule under the header."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def html_table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    """A table of cells already in HTML (escape text before passing it)."""
    head = "".join(f'<th style="text-align:left;padding:2px 8px">{h}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f'<td style="padding:2px 8px">{c}</td>' for c in r)
                   + "</tr>" for r in rows)
    return (f'<table class="{cls}" style="border-collapse:collapse;font-size:12px">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


#: job states in which a job does not fire on its schedule: no countdown for them
IDLE_STATES = ("paused", "blocked", "disabled", "deleted")


def next_run_text(job: dict, state: str, now: float) -> str:
    """``in 4m 05s (2026-01-02 03:04:05)``, or the state when the job does not fire."""
    if state in IDLE_STATES:
        return {"deleted": "job deleted"}.get(state, state)
    nxt = timestamp(job.get("next_run_at"))
    if nxt is None:
        return "no next run"
    return f"{format_countdown(nxt - now)} ({local_time(nxt, job.get('timezone'))})"


def last_run_text(job: dict, now: float) -> str:
    last = job.get("last_run")
    if not last:
        return "none yet"
    bits = [str(last.get("status", "?")).replace("_", " ")]
    if last.get("exit_code") is not None and last.get("status") != "succeeded":
        bits.append(f"exit {last['exit_code']}")
    if last.get("duration") is not None:
        bits.append(f"in {format_duration(last['duration'])}")
    ago = format_ago(timestamp(last.get("finished_at") or last.get("started_at")), now)
    if ago:
        bits.append(ago)
    return ", ".join(bits)


JOB_COLUMNS = ["job", "kind", "state", "schedule", "next run", "last run"]


def _job_cells(job: dict, state: str, now: float) -> list[str]:
    schedule = f"{job.get('schedule', '')} [{job.get('timezone') or ''}]"
    words = describe_schedule(job.get("schedule", ""), job.get("timezone"))
    if words and words != job.get("schedule"):
        schedule += f" {words}"
    if not job.get("schedule"):  # none of its own: it runs after its upstreams
        schedule = schedule_text(job)
    return [job.get("name", "?"), job.get("kind", ""), state, schedule,
            next_run_text(job, state, now), last_run_text(job, now)]


def _job_html_cells(job: dict, state: str, now: float) -> list[str]:
    cells = [html.escape(c) for c in _job_cells(job, state, now)]
    cells[0] = f"<b>{cells[0]}</b>"
    cells[2] = f"{_pip(state)}{cells[2]}"
    last = job.get("last_run")
    if last:
        cells[5] = _outcome(last.get("status")) + html.escape(
            last_run_text(job, now)[len(str(last.get("status", "?"))):])
    return cells


def runs_text(runs: list[dict]) -> str:
    if not runs:
        return "no runs yet"
    rows = []
    for r in runs:
        rows.append([str(r.get("status", "")).replace("_", " "), trigger_text(r),
                     str(r.get("attempt", 1)), local_time(timestamp(r.get("started_at"))),
                     format_duration(r.get("duration")),
                     "-" if r.get("exit_code") is None else str(r["exit_code"]), r["id"],
                     (r.get("reason") or "")[:60]])
    return text_table(["status", "trigger", "try", "started", "duration", "exit", "run",
                       "reason"], rows)


def progress_text(progress: float | None, phase: str | None, width: int = 20) -> str:
    """``[########------------]  40% phase`` (a text progress bar)."""
    if progress is None:
        return phase or ""
    done = max(0, min(width, round(progress * width)))
    bar = f"[{'#' * done}{'-' * (width - done)}] {progress * 100:3.0f}%"
    return f"{bar} {phase}" if phase else bar


# -- the shared clock -------------------------------------------------------------------

class _Clock(threading.Thread):
    """One daemon thread for every live card: countdowns each second, jobs every few."""

    interval = 1.0
    refresh_every = 5.0

    def __init__(self) -> None:
        super().__init__(name="hermes-cron-cards", daemon=True)
        self.cards: weakref.WeakSet[JobCard] = weakref.WeakSet()
        self._stop_event = threading.Event()
        self._last_refresh = time.monotonic()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            cards = [c for c in list(self.cards) if c.live]
            for card in cards:
                try:
                    card.tick()
                except Exception:  # noqa: BLE001 - one card must not stop the others
                    pass
            if time.monotonic() - self._last_refresh >= self.refresh_every:
                self._last_refresh = time.monotonic()
                _refresh_cards(cards)


def _refresh_cards(cards: list[JobCard]) -> None:
    """One job listing per client, whatever the number of cards."""
    by_client: dict[int, list[JobCard]] = {}
    for card in cards:
        by_client.setdefault(id(card.client), []).append(card)
    for group in by_client.values():
        try:
            jobs = {j["id"]: j for j in group[0].client.jobs()}
        except HermesCronError as exc:
            for card in group:
                card.error = str(exc)
            continue
        for card in group:
            card.error = ""
            job = jobs.get(card.job.get("id"))
            if job is None:
                card.mark_deleted()
            elif job != card.job:
                card.job = job


_clock_lock = threading.Lock()
#: every LiveOutput that has not been closed (``LiveOutput.wait_all``)
_following: weakref.WeakSet[LiveOutput] = weakref.WeakSet()
_clock: _Clock | None = None


def _register(card: JobCard) -> None:
    global _clock
    with _clock_lock:
        if _clock is None or not _clock.is_alive():
            _clock = _Clock()
            _clock.start()
        _clock.cards.add(card)


def _unregister(card: JobCard) -> None:
    with _clock_lock:
        if _clock is not None:
            _clock.cards.discard(card)


# -- job card ---------------------------------------------------------------------------

class JobCard(_Static, widgets.VBox):
    """One job at a glance, with its actions; ``live`` cards update on their own."""

    job = traitlets.Dict()
    state = traitlets.Unicode("scheduled")
    countdown = traitlets.Unicode("")
    seconds_left = traitlets.Float(None, allow_none=True)
    error = traitlets.Unicode("")
    message = traitlets.Unicode("")

    def __init__(self, job: dict | str, client: CronClient | None = None, *, clock=time.time,
                 live: bool = True, **kwargs):
        self.client = client or get_client()
        self.clock = clock
        self.live = live
        if isinstance(job, str):
            job = self.client.job(job)
        self._head = widgets.HTML()
        self._info = widgets.HTML()
        self._countdown = widgets.HTML()
        self._note = widgets.HTML()
        self.run_button = widgets.Button(description="Run now", icon="play",
                                         tooltip="start a run now")
        self.pause_button = widgets.Button(description="Pause", icon="pause")
        self.watch_button = widgets.Button(description="Watch", icon="eye",
                                           tooltip="live output of the running or last run")
        self.history_button = widgets.Button(description="History", icon="list",
                                             tooltip="runs of this job")
        self.params_button = widgets.Button(description="Run with…", icon="sliders",
                                            tooltip="run now with parameters for this run "
                                                    "alone (a typed form)")
        for b in (self.run_button, self.params_button, self.pause_button, self.watch_button,
                  self.history_button):
            b.layout = widgets.Layout(width="auto")
        self.run_button.on_click(lambda _: self.run_now())
        self.params_button.on_click(lambda _: self.toggle_parameters())
        self.pause_button.on_click(lambda _: self.toggle_pause())
        self.watch_button.on_click(lambda _: self.toggle_watch())
        self.history_button.on_click(lambda _: self.toggle_history())
        self.detail = widgets.VBox()
        buttons = widgets.HBox([self.run_button, self.params_button, self.pause_button,
                                self.watch_button, self.history_button])
        super().__init__(
            [self._head, self._info, self._countdown, buttons, self._note, self.detail],
            layout=widgets.Layout(border="1px solid #ddd", padding="6px 10px",
                                  margin="4px 0"),
            **kwargs)
        self.add_class("hc-card")
        self.observe(self._on_job, names="job")
        self.observe(self._on_countdown, names="countdown")
        self.observe(self._on_note, names=["message", "error"])
        self.job = job
        if live:
            _register(self)

    # -- state --------------------------------------------------------------------------
    def _on_job(self, change=None) -> None:
        job = self.job
        if self.state != "deleted":
            self.state = card_state(job)
        self._draw()
        self.tick()

    def mark_deleted(self) -> None:
        self.state = "deleted"
        self.live = False
        for b in (self.run_button, self.params_button, self.pause_button, self.watch_button,
                  self.history_button):
            b.disabled = True
        self._draw()
        self.countdown = "job deleted"

    def refresh(self) -> None:
        """Read the job again (the shared clock does this every few seconds)."""
        try:
            self.job = self.client.job(self.job["id"])
            self.error = ""
        except NotFound:
            self.mark_deleted()
        except HermesCronError as exc:
            self.error = str(exc)

    def tick(self) -> None:
        """Recompute the countdown from the clock."""
        job, state = self.job, self.state
        if state in IDLE_STATES:  # it does not fire: no countdown to a next run
            self.seconds_left = None
            self.countdown = {"deleted": "job deleted"}.get(state, state)
            return
        nxt = timestamp(job.get("next_run_at"))
        if nxt is None:
            self.seconds_left = None
            self.countdown = "no next run"
            return
        self.seconds_left = nxt - self.clock()
        self.countdown = format_countdown(self.seconds_left)

    # -- drawing --------------------------------------------------------------------------
    def _draw(self) -> None:
        job, state = self.job, self.state
        name = html.escape(job.get("name", "?"))
        kind = html.escape(job.get("kind", ""))
        self._head.value = (
            f'<div style="display:flex;align-items:center;gap:4px">{_pip(state)}'
            f'<b style="font-size:1.1em">{name}</b>'
            f'<span style="color:#888;margin-left:6px">{kind}</span>'
            f'<span style="margin-left:auto;color:{STATE_COLOURS.get(state, "#888")}">'
            f"{html.escape(state)}</span></div>")
        schedule, tz = job.get("schedule", ""), job.get("timezone")
        if schedule:
            words = html.escape(describe_schedule(schedule, tz))
            lines = [f"{words} &middot; <code>{html.escape(schedule)}</code> "
                     f'<span style="color:#888">({html.escape(tz or "")})</span>']
        else:
            lines = [html.escape(schedule_text(job))]
        if job.get("after"):  # a pipeline: which jobs trigger it, and whether they do now
            if schedule:
                lines[0] += f" &middot; {html.escape(after_text(job))}"
            held = upstream_note(enabled=job.get("enabled", True), state=job.get("state", ""),
                                 upstreams=[(a.get("name") or a["job"], a["on"], None)
                                            for a in job["after"]])
            if held:  # disabled or paused: not triggered; a fan-in: its rule
                lines.append(f'<span style="color:#ef6c00" data-role="after-note">'
                             f"{html.escape(held)}</span>")
        last = job.get("last_run")
        if last:
            bits = [_outcome(last.get("status"))]
            if last.get("exit_code") is not None and last.get("status") != "succeeded":
                bits.append(f"exit {last['exit_code']}")
            if last.get("duration") is not None:
                bits.append(f"in {html.escape(format_duration(last['duration']))}")
            ago = format_ago(timestamp(last.get("finished_at") or last.get("started_at")),
                             self.clock())
            if ago:
                bits.append(ago)
            lines.append("last run: " + " &middot; ".join(bits))
            if last.get("reason") and last.get("status") != "succeeded":
                lines.append(f'<span style="color:#c62828">'
                             f"{html.escape(str(last['reason'])[:200])}</span>")
        else:
            lines.append('<span style="color:#888">no runs yet</span>')
        if job.get("state_reason") and state in ("blocked", "paused"):
            lines.append(f'<span style="color:{STATE_COLOURS[state]}">'
                         f"{html.escape(job['state_reason'])}</span>")
        self._info.value = "<br>".join(lines)
        # a form only where there is something to fill in: a notebook, or own parameters
        self.params_button.layout.display = (
            None if job.get("kind") == "notebook" or job.get("parameters") else "none")
        paused = job.get("state") in ("paused", "blocked")
        self.pause_button.description = "Resume" if paused else "Pause"
        self.pause_button.icon = "play-circle" if paused else "pause"

    def _on_countdown(self, change=None) -> None:
        state = self.state
        if state in IDLE_STATES:
            until = {"paused": "no runs until resumed", "blocked": "no runs until resumed",
                     "disabled": "no runs until enabled"}.get(state)
            self._countdown.value = (
                f'<b style="color:{STATE_COLOURS.get(state, "#888")}">'
                f"{html.escape(self.countdown)}</b>"
                + (f' <span style="color:#888">&middot; {until}</span>' if until else ""))
            return
        nxt = timestamp(self.job.get("next_run_at"))
        when = f' <span style="color:#888">({local_time(nxt)})</span>' if (
            nxt and self.seconds_left is not None) else ""
        self._countdown.value = f"next run: <b>{html.escape(self.countdown)}</b>{when}"

    # -- without widgets ---------------------------------------------------------------
    def plain_text(self) -> str:
        return text_table(JOB_COLUMNS, [_job_cells(self.job, self.state, self.clock())])

    def static_html(self) -> str:
        return html_table(JOB_COLUMNS, [_job_html_cells(self.job, self.state, self.clock())],
                          "hc-cards")

    def _on_note(self, change=None) -> None:
        text = self.error or self.message
        colour = "#c62828" if self.error else "#555"
        self._note.value = (f'<span style="color:{colour}">{html.escape(text)}</span>'
                            if text else "")

    # -- actions ---------------------------------------------------------------------------
    def _act(self, fn):
        try:
            result = fn()
            self.error = ""
            return result
        except HermesCronError as exc:
            self.error = exc.message
            return None

    def run_now(self) -> dict | None:
        run = self._act(lambda: self.client.run_now(self.job["id"]))
        if run is not None:
            self.message = f"run {run['id']} started"
            self.watch(run["id"])
            self.refresh()
        return run

    def toggle_pause(self) -> None:
        paused = self.job.get("state") in ("paused", "blocked")
        job = self._act(lambda: (self.client.resume if paused else self.client.pause)(
            self.job["id"]))
        if job is not None:
            self.job = job
            self.message = "resumed" if paused else "paused"

    def _shown(self, cls):
        kids = self.detail.children
        return kids[0] if kids and isinstance(kids[0], cls) else None

    def _show(self, widget) -> None:
        for old in self.detail.children:
            if old is not widget and isinstance(old, LiveOutput):
                old.stop()
        self.detail.children = (widget,) if widget is not None else ()

    def watch(self, run_id: str | None = None) -> LiveOutput | None:
        out = LiveOutput(client=self.client)
        if run_id:
            out.follow(run_id)
        else:
            out.watch_job(self.job["id"])
        self._show(out)
        return out

    def toggle_watch(self) -> LiveOutput | None:
        if self._shown(LiveOutput) is not None:
            self._show(None)
            return None
        return self.watch()

    def toggle_parameters(self) -> ParametersForm | None:
        """Show (or hide) the typed form that runs the job with parameters."""
        if self._shown(ParametersForm) is not None:
            self._show(None)
            return None
        form = self._act(lambda: ParametersForm(self.job["id"], client=self.client,
                                                on_run=lambda run: self.refresh()))
        if form is not None:
            self._show(form)
        return form

    def toggle_history(self) -> RunHistory | None:
        if self._shown(RunHistory) is not None:
            self._show(None)
            return None
        history = self._act(lambda: RunHistory(self.job["id"], client=self.client))
        if history is not None:
            self._show(history)
        return history

    def close(self) -> None:
        _unregister(self)
        self.live = False
        for child in self.detail.children:
            child.close()
        super().close()


class JobCards(_Static, widgets.VBox):
    """Every job as a card, under a line with the count, the store and any warning."""

    def __init__(self, client: CronClient | None = None, **card_kwargs):
        self.client = client or get_client()
        jobs = self.client.jobs()
        self.warning = self.client.status().get("warning") or ""
        self.where = self.client.where
        self.cards = [JobCard(j, client=self.client, **card_kwargs) for j in jobs]
        head = f"<b>{html.escape(self._count())}</b> &middot; {html.escape(self.where)}"
        if self.warning:
            head += f'<br><span style="color:#c62828">{html.escape(self.warning)}</span>'
        super().__init__([widgets.HTML(head), *self.cards])

    def _count(self) -> str:
        n = len(self.cards)
        return f"{n} job{'s' if n != 1 else ''}"

    def plain_text(self) -> str:
        head = f"{self._count()} \u00b7 {self.where}"
        if self.warning:
            head += f"\nwarning: {self.warning}"
        rows = [_job_cells(c.job, c.state, c.clock()) for c in self.cards]
        return f"{head}\n{text_table(JOB_COLUMNS, rows)}" if rows else head

    def static_html(self) -> str:
        head = f"<div><b>{html.escape(self._count())}</b> &middot; {html.escape(self.where)}"
        if self.warning:
            head += f'<br><span style="color:#c62828">{html.escape(self.warning)}</span>'
        rows = [_job_html_cells(c.job, c.state, c.clock()) for c in self.cards]
        return head + "</div>" + (html_table(JOB_COLUMNS, rows, "hc-cards") if rows else "")


def job_cards(client: CronClient | None = None, **kwargs) -> JobCards:
    """Every job as a card (what ``%cron`` shows)."""
    return JobCards(client, **kwargs)


# -- run history -------------------------------------------------------------------------

class RunHistory(_Static, widgets.VBox):
    """A job's runs, newest first, a page at a time, over a chart of their durations."""

    runs = traitlets.List()
    page = traitlets.Int(0)
    has_next = traitlets.Bool(False)

    def __init__(self, job: str, client: CronClient | None = None, *, page_size: int = 20,
                 **kwargs):
        self.client = client or get_client()
        self.job = self.client.job(job)
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
        page = self.client.runs(self.job["id"], limit=self.page_size,
                                cursor=self._cursors[self.page])
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
        name = html.escape(self.job["name"])
        rate = self._rate()
        self._title.value = f"<b>Runs of {name}</b>" + (f" &middot; {rate}" if rate else "")
        self.chart.value = duration_chart(runs)
        self.table.value = runs_table(runs)
        self._page_label.value = f"page {self.page + 1}"
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = not self.has_next

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

    def _heading(self) -> str:
        rate = self._rate()
        more = f", page {self.page + 1}" + (", older runs on the next" if self.has_next else "")
        return f"Runs of {self.job['name']}" + (f" \u00b7 {rate}" if rate else "") + (
            more if self.page or self.has_next else "")

    def plain_text(self) -> str:
        return f"{self._heading()}\n{runs_text(self.runs)}"

    def static_html(self) -> str:
        return (f'<div class="hc-history"><b>{html.escape(self._heading())}</b>'
                f"<div>{duration_chart(self.runs)}</div>{runs_table(self.runs)}</div>")


# -- pipelines -----------------------------------------------------------------------------

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
                f"<b>{html.escape(n['name'])}</b><br>{_outcome(n['last_status'])} "
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


class PipelineGraph(_Static, widgets.VBox):
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


# -- parameters for one run ----------------------------------------------------------------

def _param_field(p: dict) -> widgets.Widget:
    """The input for one declared parameter: its type picks the widget."""
    kind, default = p["type"], p.get("default")
    layout = widgets.Layout(width="260px")
    if kind == "bool":
        return widgets.Checkbox(value=default is True, indent=False)
    if kind == "int":
        return widgets.IntText(value=default if isinstance(default, int) else 0, layout=layout)
    if kind == "float":
        return widgets.FloatText(value=float(default) if isinstance(default, (int, float))
                                 else 0.0, layout=layout)
    if kind == "date":
        from datetime import date

        try:
            value = date.fromisoformat(default) if isinstance(default, str) else None
        except ValueError:
            value = None
        return widgets.DatePicker(value=value, layout=layout)
    if kind in ("list", "dict", "any"):
        text = "" if default is None else json.dumps(default)
        return widgets.Text(value=text, placeholder="JSON", layout=layout)
    return widgets.Text(value="" if default is None else str(default), layout=layout)


def _param_value(p: dict, field: widgets.Widget):
    """The value a field holds, as the type the parameter declares (the server checks
    it again; a value that is not what it must be goes as typed, to be refused there)."""
    kind, value = p["type"], field.value
    if kind == "date":
        return value.isoformat() if value is not None else None
    if kind in ("list", "dict", "any"):
        if value.strip() == "":
            return None
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class ParametersForm(_Static, widgets.VBox):
    """Run a job once with parameters of its own, from a typed form: one field per
    parameter the job declares (a notebook's ``parameters`` cell, the defaults filled
    in). The server checks the values; a wrong one is shown under the form, named."""

    error = traitlets.Unicode("")
    message = traitlets.Unicode("")

    def __init__(self, job: str, client: CronClient | None = None, *, on_run=None,
                 watch: bool = True, **kwargs):
        self.client = client or get_client()
        self.ref = job
        self.on_run = on_run
        self.watch = watch
        self.spec = self.client.job_parameters(job)
        self.fields = {p["name"]: _param_field(p) for p in self.spec}
        rows: list[widgets.Widget] = [
            widgets.HBox([widgets.HTML(f"<code>{html.escape(p['name'])}</code> "
                                       f'<span style="color:#888">{html.escape(p["type"])}'
                                       "</span>", layout=widgets.Layout(width="180px")),
                          self.fields[p["name"]]])
            for p in self.spec]
        if not rows:
            rows = [widgets.HTML('<span style="color:#888">this job declares no parameters: '
                                 "Run starts it as it is</span>")]
        self.run_button = widgets.Button(description="Run", icon="play",
                                         button_style="primary",
                                         tooltip="run now with these values, for this run alone")
        self.run_button.on_click(lambda _: self.submit())
        self._note = widgets.HTML()
        self.output = widgets.VBox()
        super().__init__([widgets.HTML(f"<b>Run {html.escape(job)} with:</b>"), *rows,
                          self.run_button, self._note, self.output], **kwargs)
        self.add_class("hc-params-form")
        self.observe(self._on_note, names=["message", "error"])

    def values(self) -> dict:
        """The form's values, typed as declared."""
        return {p["name"]: _param_value(p, self.fields[p["name"]]) for p in self.spec}

    def submit(self) -> dict | None:
        """Ask for the run; a refusal (a wrong value, no permission) becomes the error
        shown under the form, never a traceback."""
        values = self.values()
        try:
            run = self.client.run_now(self.ref, values or None)
        except HermesCronError as exc:
            self.message, self.error = "", exc.message
            return None
        self.error = ""
        given = ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items())
        self.message = f"run {run['id']} started" + (f" with {given}" if given else "")
        if self.watch:
            for old in self.output.children:
                old.close()
            self.output.children = (LiveOutput(run["id"], client=self.client),)
        if self.on_run is not None:
            self.on_run(run)
        return run

    def _on_note(self, change=None) -> None:
        text = self.error or self.message
        colour = "#c62828" if self.error else "#555"
        self._note.value = (f'<span style="color:{colour}">{html.escape(text)}</span>'
                            if text else "")

    def close(self) -> None:
        output = getattr(self, "output", None)  # None: __init__ failed (an unknown job)
        for child in output.children if output is not None else ():
            child.close()
        super().close()

    def plain_text(self) -> str:
        lines = [f"run {self.ref} with:"] + [
            f"  {p['name']} ({p['type']}) = {json.dumps(v)}"
            for p, v in zip(self.spec, self.values().values(), strict=True)]
        note = self.error or self.message
        return "\n".join(lines + ([note] if note else []))

    def static_html(self) -> str:
        return f"<pre>{html.escape(self.plain_text())}</pre>"


# -- backfill progress ---------------------------------------------------------------------

class BackfillProgress(_Static, widgets.VBox):
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
        filled = int(30 * backfill_done(b) / max(1, b["slots"]))
        return f"[{'#' * filled}{'.' * (30 - filled)}] {self._line()}"

    def static_html(self) -> str:
        return f"<pre>{html.escape(self.plain_text())}</pre>"


# -- live output -------------------------------------------------------------------------

#: the supervisor's progress protocol: these lines feed the bar, they are not shown
MARKER = re.compile(r"^\s*::(?:progress|phase)::")
#: lines of output a static copy (text/plain, text/html) keeps: the last ones
STATIC_LINES = 200


class LiveOutput(_Static, anywidget.AnyWidget):
    """A run's output, followed on a background thread: the kernel stays free.

    ``::progress::`` / ``::phase::`` lines of the output are not shown: they are
    the phase and progress bar in the header. Displayed in a kernel, it replaces
    its display when the run ends (``update_display``), so a notebook saved or
    executed headless keeps the outcome and the output rather than the state it
    had when the cell ran.
    """

    _esm = STATIC / "live_output.js"
    _css = STATIC / "live_output.css"

    run_id = traitlets.Unicode("").tag(sync=True)
    job_name = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("waiting").tag(sync=True)
    phase = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    progress = traitlets.Float(None, allow_none=True).tag(sync=True)
    exit_code = traitlets.Int(None, allow_none=True).tag(sync=True)
    reason = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    took = traitlets.Unicode("").tag(sync=True)
    lines = traitlets.List(traitlets.Unicode()).tag(sync=True)
    dropped = traitlets.Int(0).tag(sync=True)
    done = traitlets.Bool(False).tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    pinned = traitlets.Bool(True).tag(sync=True)  # False while the reader has scrolled up
    artifact_url = traitlets.Unicode("").tag(sync=True)

    #: a log longer than this is shown from its last bytes only
    tail_bytes = 512 * 1024
    #: at most this many trait updates of ``lines`` per second
    rate = 10.0

    def __init__(self, run_id: str | None = None, *, client: CronClient | None = None,
                 max_lines: int = 2000, **kwargs):
        super().__init__(**kwargs)
        self.client = client or get_client()
        self.term = Terminal(max_lines=max_lines)
        self.offset = 0
        self._lock = threading.RLock()  # the screen, and publishing it in order
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream = None
        self._dirty = False
        self._last_flush = 0.0
        self._timer: threading.Timer | None = None
        self._display_id: str | None = None
        self._display_lock = threading.Lock()
        _following.add(self)
        if run_id:
            self.follow(run_id)

    # -- starting and stopping --------------------------------------------------------------
    @classmethod
    def for_job(cls, ref: str, client: CronClient | None = None, **kwargs) -> LiveOutput:
        out = cls(client=client, **kwargs)
        out.watch_job(ref)
        return out

    def follow(self, run_id: str) -> LiveOutput:
        """Follow one run, from the start of its log."""
        run = self.client.run(run_id)  # NotFound here, in the caller's cell
        self._show_run(run)
        self._start(lambda: self._follow(run), run)
        return self

    def _show_run(self, run: dict) -> None:
        """Which run this is, set before the widget is first shown (not by the thread)."""
        self.run_id = run["id"]
        self.job_name = run.get("job_name") or self.job_name
        self.status = run["status"]

    def watch_job(self, ref: str) -> LiveOutput:
        """Follow the job's running run; else show its last run; else wait for its first."""
        job = self.client.job(ref)
        self.job_name = job["name"]
        run = self.client.latest_run(job["id"])
        if run is not None:
            self._show_run(run)
            self._start(lambda: self._follow(run), run)
        else:
            self._start(lambda: self._await_first(job))
        return self

    def _start(self, target, run: dict | None = None) -> None:
        self.stop()
        self._stop.clear()
        self._finished.clear()
        if run is not None and run["status"] in FINAL_STATUSES:
            # a run that has ended is read at once, here: the widget is complete when it is
            # first shown (a saved notebook keeps it whole), with no thread to wait for
            self._thread = None
            self._guarded(target)
            return
        self._thread = threading.Thread(target=self._guarded, args=(target,),
                                        name="hermes-cron-live", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following (the output shown so far stays)."""
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run has ended and its output is shown (scripts, tests)."""
        return self._finished.wait(timeout)

    @classmethod
    def wait_all(cls, timeout: float | None = 60.0) -> bool:
        """Block until every live output still following a run has ended.

        For notebooks executed headless (nbclient, papermill, a notebook job): a
        last cell ``LiveOutput.wait_all()`` lets the runs being watched end, and
        their displays be replaced by the outcome, before the kernel stops.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for out in list(_following):
            thread = out._thread
            if thread is None or not thread.is_alive():
                continue
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not out._finished.wait(left):
                return False
        return True

    def close(self) -> None:
        self.stop()
        _following.discard(self)
        super().close()

    def __repr__(self) -> str:
        return f"LiveOutput({self.headline()})"

    def headline(self) -> str:
        """``run r_1 of etl: failed · exit 3 · 1.20 s``"""
        what = f"run {self.run_id}" if self.run_id else "no run yet"
        job = f" of {self.job_name}" if self.job_name else ""
        status = {"waiting": "waiting for a run"}.get(self.status,
                                                       self.status.replace("_", " "))
        bits = [status]
        if self.exit_code is not None and self.status not in ACTIVE_STATUSES:
            bits.append(f"exit {self.exit_code}")
        if self.took:
            bits.append(self.took)
        return f"{what}{job}: " + " \u00b7 ".join(bits)

    def _screen(self) -> tuple[list[str], list[str]]:
        """``(html_lines, text_lines)`` shown: the output without the progress markers."""
        with self._lock:
            texts, htmls = self.term.lines, self.term.html_lines()
        keep = [i for i, t in enumerate(texts) if not MARKER.match(t)]
        if len(keep) == len(texts):
            return htmls, texts
        return [htmls[i] for i in keep], [texts[i] for i in keep]

    @property
    def text(self) -> str:
        """The output as plain text, as a terminal shows it (without progress markers)."""
        return "\n".join(self._screen()[1])

    # -- without widgets ------------------------------------------------------------------
    def _static_parts(self) -> tuple[list[str], str, list[str], list[str]]:
        html_lines, text_lines = self._screen()
        cut = len(text_lines) - STATIC_LINES
        notes = []
        if self.dropped or cut > 0:
            notes.append(f"[\u2026 {self.dropped + max(0, cut)} earlier lines not shown: "
                         f"%cron logs {self.run_id or self.job_name} prints them all]")
        if cut > 0:
            html_lines, text_lines = html_lines[cut:], text_lines[cut:]
        bar = progress_text(self.progress, self.phase) if not self.done or (
            self.progress is not None) else ""
        return notes, bar, html_lines, text_lines

    def plain_text(self) -> str:
        notes, bar, _, text_lines = self._static_parts()
        head = [self.headline()]
        if bar:
            head.append(bar)
        if self.reason and self.status != "succeeded":
            head.append(f"reason: {self.reason}")
        if self.error:
            head.append(f"error: {self.error}")
        return "\n".join(head + notes + text_lines)

    def static_html(self) -> str:
        notes, bar, html_lines, _ = self._static_parts()
        colour = OUTCOME_COLOURS.get(self.status, "#757575")
        out = [f'<div class="hc-live-static"><div><span style="color:{colour};'
               f'font-weight:600">{html.escape(self.headline())}</span></div>']
        if self.progress is not None:
            out.append(f'<div><progress max="1" value="{self.progress:.3f}"></progress> '
                       f"{self.progress * 100:.0f}% {html.escape(self.phase or '')}</div>")
        elif self.phase:
            out.append(f"<div>{html.escape(self.phase)}</div>")
        if self.reason and self.status != "succeeded":
            out.append(f'<div style="color:#c62828">{html.escape(self.reason)}</div>')
        if self.error:
            out.append(f'<div style="color:#c62828">{html.escape(self.error)}</div>')
        body = "\n".join([*(f'<i>{html.escape(n)}</i>' for n in notes), *html_lines])
        out.append(f'<pre class="hc-term" style="max-height:360px;overflow:auto">{body}</pre>'
                   "</div>")
        return "".join(out)

    # -- its display in a notebook ----------------------------------------------------------
    def _ipython_display_(self) -> None:
        """Shown with a display id, so that the end of the run can replace it."""
        from IPython.display import display

        with self._display_lock:  # so the end's update cannot land before this display
            if self._display_id is None:
                self._display_id = f"hermes-cron-live-{uuid.uuid4().hex}"
            bundle = self._repr_mimebundle_()
            if bundle is None:
                return
            data, metadata = bundle
            display(data, metadata=metadata, raw=True, display_id=self._display_id)

    def _update_display(self) -> None:
        """Replace this widget's displays with its final state (a kernel only: a terminal
        IPython would print it again)."""
        if self._display_id is None:
            return
        try:
            from IPython import get_ipython
            from IPython.display import update_display
        except ImportError:  # pragma: no cover
            return
        shell = get_ipython()
        if shell is None or getattr(shell, "kernel", None) is None:
            return
        with self._display_lock:
            bundle = self._repr_mimebundle_()
            if bundle is None:
                return
            data, metadata = bundle
            update_display(data, metadata=metadata, raw=True, display_id=self._display_id)

    # -- the reading thread -----------------------------------------------------------------
    def _guarded(self, target) -> None:
        try:
            target()
        except HermesCronError as exc:
            self.error = exc.message
        except Exception as exc:  # noqa: BLE001 - shown in the widget, not lost in a thread
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._flush(force=True)
            if self.done or self.error:
                try:
                    self._update_display()
                except Exception:  # noqa: BLE001 - the widget itself is up to date
                    pass
            self._finished.set()

    def _await_first(self, job: dict) -> None:
        self.status = "waiting"
        self.phase = f"no run yet; next one {job.get('next_run_at') or 'not scheduled'}"
        while not self._stop.wait(1.0):
            run = self.client.latest_run(job["id"])
            if run is not None:
                self.phase = None
                self._follow(run)
                return

    def _follow(self, run: dict) -> None:
        self._apply_run(run)
        self.job_name = run.get("job_name") or self.job_name
        self.run_id = run["id"]
        if (run.get("output_bytes") or 0) > self.tail_bytes:
            _, start, size = self.client.log(run["id"], tail=self.tail_bytes, limit=0)
            self.offset = start
            with self._lock:
                self.term.feed(f"[\u2026 the first {start} bytes are not shown]\n", "system")
        failures = 0
        while not self._stop.is_set():
            self._stream = stream = self.client.stream(run["id"], self.offset)
            try:
                for event in stream:
                    if self._stop.is_set():
                        return
                    failures = 0
                    if self._handle(event):
                        return
            except ConnectionFailed as exc:
                failures += 1
                if failures > 10:
                    raise
                self.error = f"{exc.message}; retrying"
                self._stop.wait(min(10.0, 0.5 * 2 ** failures))
                continue
            finally:
                self._stream = None
            if self._stop.is_set():
                return
            # the stream ended without an end event (server restarting): pick up again
            self._stop.wait(0.5)

    def _apply_run(self, run: dict) -> None:
        self.status = run["status"]
        self.phase = run.get("phase")
        self.progress = run.get("progress")
        self.exit_code = run.get("exit_code")
        self.reason = run.get("reason")
        if run.get("duration") is not None and run["status"] not in ACTIVE_STATUSES:
            self.took = format_duration(run["duration"])
        url = getattr(self.client, "artifact_url", None)
        if (url is not None and not self.artifact_url and run["status"] not in ACTIVE_STATUSES
                and self._is_notebook(run)):
            self.artifact_url = url(run["id"])

    def _is_notebook(self, run: dict) -> bool:
        try:
            return self.client.job(run["job_id"]).get("kind") == "notebook"
        except HermesCronError:
            return False

    def _handle(self, event: dict) -> bool:
        """Apply one stream event; True when the run is over."""
        kind, data = event["event"], event["data"]
        if kind == "output":
            with self._lock:
                self.term.feed(data["text"], data["stream"])
                self.offset = event["id"] if event.get("id") is not None else (
                    data["offset"] + len(data["text"].encode()))
                self._dirty = True
            self._flush()
            if self.error:
                self.error = ""
        elif kind == "gap":  # the live view fell behind a flood and skipped ahead
            with self._lock:
                self.term.feed(f"[\u2026 {data['bytes']:,} bytes skipped to keep up; "
                               f"hermes-cron logs {self.run_id} has every byte]\n", "system")
                self.offset = data["to"]
                self._dirty = True
            self._flush()
        elif kind == "progress":
            self.phase = data.get("phase")
            self.progress = data.get("progress")
        elif kind == "status":
            self._apply_run(data)
        elif kind == "end":
            self._flush(force=True)
            try:  # the final record: duration, reason
                self._apply_run(self.client.run(self.run_id))
            except HermesCronError:
                self.status = data["status"]
                self.exit_code = data.get("exit_code")
                self.reason = data.get("reason")
            if self.status == "succeeded":
                self.progress = 1.0 if self.progress is not None else None
            self.done = True
            return True
        return False

    def _flush(self, force: bool = False) -> None:
        """Push the screen to ``lines``, at most ``rate`` times a second."""
        with self._lock:  # held while assigning, so an older screen never lands last
            if not self._dirty:
                return
            now = time.monotonic()
            wait = 1.0 / self.rate - (now - self._last_flush)
            if wait > 0 and not force:
                if self._timer is None:
                    self._timer = threading.Timer(wait, self._flush_later)
                    self._timer.daemon = True
                    self._timer.start()
                return
            self._dirty = False
            self._last_flush = now
            self.dropped = self.term.dropped
            self.lines = self._screen()[0]

    def _flush_later(self) -> None:
        with self._lock:
            self._timer = None
        self._flush(force=True)


# -- dashboard ------------------------------------------------------------------------------

def job_health(client: CronClient | None = None, recent: int = 30) -> list[dict]:
    """Every job with its success rate, durations and recent runs; failing jobs first."""
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
            "schedule": schedule_text(job), "timezone": job["timezone"],
            "succeeded": s.get("succeeded", 0), "failed": s.get("failed", 0),
            "success_rate": s.get("success_rate"),
            "mean_duration": s.get("mean_duration"), "max_duration": s.get("max_duration"),
            "last_status": last.get("status"), "last_finished_at": last.get("finished_at"),
            "consecutive_failures": job.get("consecutive_failures", 0),
            "next_run_at": job.get("next_run_at"), "runs": runs,
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
    summary = " ".join(f"{_pip(s)}{n} {html.escape(s)}" for s, n in sorted(by_state.items()))
    runs = " &middot; ".join(f"{n} {html.escape(s)}" for s, n in sorted(by_status.items()))
    failing = sum(1 for r in rows if r["failing"])
    out = [f'<div class="hc-dashboard"><div><b>{len(rows)} jobs</b> &middot; {summary}</div>',
           f"<div>runs: {runs or 'none yet'}</div>"]
    if failing:
        out.append(f'<div style="color:#c62828"><b>{failing} failing</b> (listed first)</div>')
    out.append('<table style="border-collapse:collapse;font-size:12px;margin-top:6px">'
               "<thead><tr><th></th><th>job</th><th>success</th><th>runs ok/failed</th>"
               "<th>mean</th><th>max</th><th>durations over time</th><th>last run</th>"
               "</tr></thead><tbody>")
    for r in rows:
        out.append(
            f'<tr data-job="{html.escape(r["name"])}"><td>{_pip(r["state"])}</td>'
            f'<td><b>{html.escape(r["name"])}</b><br><code>{html.escape(r["schedule"])}</code>'
            f"</td><td>{_rate_bar(r['success_rate'])}</td>"
            f"<td>{r['succeeded']} / {r['failed']}</td>"
            f"<td>{html.escape(format_duration(r['mean_duration']))}</td>"
            f"<td>{html.escape(format_duration(r['max_duration']))}</td>"
            f"<td>{duration_chart(r['runs'], width=200, height=28, axes=False)}</td>"
            f"<td>{_outcome(r['last_status'])}</td></tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


class Dashboard(_Static, widgets.VBox):
    """Health of every job (``/stats`` plus recent runs), failing jobs first."""

    rows = traitlets.List()

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
              (r["last_status"] or "-").replace("_", " ")] for r in rows])
        return f"{head}\n{table}"

    def static_html(self) -> str:
        return self.view.value
