"""Notebook widgets: job cards, run history, live output and a health dashboard.

All of them are clients of :mod:`hermes_cron_ext.ops` (REST or the local
store) and hold no scheduling logic. Nothing here blocks the kernel: live output
is read on a background thread, and a single shared clock thread advances the
cards' countdowns and refreshes their jobs. Every trait is assigned a fresh
value (never mutated in place), so each change reaches the front-end.

One module per widget, over a shared base:

- ``cards``: :class:`JobCard`: name, schedule in words and in cron, state pip, live
  countdown, last outcome and duration, buttons (run now, run with parameters,
  pause/resume, watch, history); :class:`JobCards` / :func:`job_cards`, every job;
  the clock thread;
- ``history``: :class:`RunHistory`: a paged table of runs and a chart of their
  durations coloured by outcome (:func:`duration_chart`, inline SVG, no plotting
  library);
- ``live_output``: :class:`LiveOutput`: a run's output as a terminal shows it (ANSI
  colours, ``\\r`` progress bars), following the end until the reader scrolls up, with
  phase, progress and a badge with the exit status when the run ends;
- ``dashboard``: :class:`Dashboard` / :func:`job_health`: every job's health, failing
  jobs first;
- ``graph``: :class:`PipelineGraph`: the pipeline a job is part of, each job's last
  status, live;
- ``forms``: :class:`ParametersForm`: a typed form that runs a job once with parameters;
- ``backfill``: :class:`BackfillProgress`: a backfill's progress bar, counts and Cancel;
- ``across``: :class:`Timeline` (every job's runs on one time axis, zoom and pan, a
  click opens a run), :class:`SearchResults` (runs whose output matches),
  :class:`RunDiff` (two runs compared), :class:`CalendarView` (a job's days as a
  heatmap, also on each card and in the Dashboard);
- ``base``: what they share: the install hint when ipywidgets or anywidget is missing,
  colours, and :class:`~hermes_cron_ext.frontends.widgets.base.Static`.

Each widget also carries a readable ``text/plain`` and ``text/html`` of what it
shows beside its widget view (``base.Static``), so a notebook saved, converted
(nbconvert), shown on GitHub or mailed shows real tables instead of a widget's
Python repr. A :class:`LiveOutput` that is displayed replaces its own display
when its run ends, so the saved notebook keeps the run's outcome and output.
"""

from __future__ import annotations

from hermes_cron_ext.frontends.widgets.across import (
    CalendarView,
    RunDiff,
    SearchResults,
    Timeline,
    TimelineChart,
)
from hermes_cron_ext.frontends.widgets.backfill import BackfillProgress
from hermes_cron_ext.frontends.widgets.cards import JobCard, JobCards, job_cards
from hermes_cron_ext.frontends.widgets.dashboard import Dashboard, job_health
from hermes_cron_ext.frontends.widgets.forms import ParametersForm
from hermes_cron_ext.frontends.widgets.graph import PipelineGraph
from hermes_cron_ext.frontends.widgets.history import RunHistory, duration_chart
from hermes_cron_ext.frontends.widgets.live_output import LiveOutput

__all__ = [
    "BackfillProgress",
    "CalendarView",
    "Dashboard",
    "JobCard",
    "JobCards",
    "LiveOutput",
    "ParametersForm",
    "PipelineGraph",
    "RunDiff",
    "RunHistory",
    "SearchResults",
    "Timeline",
    "TimelineChart",
    "duration_chart",
    "job_cards",
    "job_health",
]


# Every other name the single ``widgets`` module had, still importable from here and
# not part of ``*``: its helpers, and the text formats, render.py's (the widgets' text
# is in render's formats; notebooks/monitoring.ipynb uses ``cw.format_duration``).
from hermes_cron_ext.frontends.render import (  # noqa: E402, F401
    IDLE_STATES,
    after_text,
    backfill_done,
    backfill_text,
    card_state,
    describe_schedule,
    format_ago,
    format_countdown,
    format_duration,
    last_run_text,
    local_time,
    next_run_text,
    pipeline_text,
    progress_text,
    runs_text,
    schedule_text,
    text_table,
    timestamp,
    trigger_text,
)
from hermes_cron_ext.frontends.terminal import Terminal  # noqa: E402, F401
from hermes_cron_ext.frontends.widgets.base import (  # noqa: E402, F401
    OUTCOME_COLOURS,
    OUTCOME_MARKS,
    STATE_COLOURS,
    STATIC,
    html_table,
)
from hermes_cron_ext.frontends.widgets.cards import JOB_COLUMNS, _job_cells  # noqa: E402, F401
from hermes_cron_ext.frontends.widgets.dashboard import dashboard_html  # noqa: E402, F401
from hermes_cron_ext.frontends.widgets.graph import pipeline_html  # noqa: E402, F401
from hermes_cron_ext.frontends.widgets.history import runs_table  # noqa: E402, F401
from hermes_cron_ext.frontends.widgets.live_output import MARKER, STATIC_LINES  # noqa: E402, F401
