"""Job cards: one job at a glance with its actions (:class:`JobCard`), every job as a
card (:class:`JobCards`, what ``%cron`` shows), and the one clock thread that advances
every live card's countdown and refreshes their jobs."""

from __future__ import annotations

import html
import threading
import time
import weakref

from hermes_cron_ext.domain.models import ACTIVE_STATUSES
from hermes_cron_ext.domain.policy import upstream_note
from hermes_cron_ext.errors import HermesCronError, NotFound
from hermes_cron_ext.frontends.render import (
    IDLE_STATES,
    after_text,
    alert_badge_html,
    calendar_html,
    card_state,
    describe_schedule,
    format_countdown,
    last_run_parts,
    last_run_text,
    local_time,
    managed_html,
    next_run_text,
    schedule_text,
    schedule_words,
    text_table,
    timestamp,
)
from hermes_cron_ext.frontends.widgets.across import calendar_of
from hermes_cron_ext.frontends.widgets.base import (
    STATE_COLOURS,
    Static,
    duration_spark_html,
    html_table,
    outcome_html,
    pip_html,
    recent_durations,
    traitlets,
    widgets,
)
from hermes_cron_ext.frontends.widgets.forms import ParametersForm
from hermes_cron_ext.frontends.widgets.history import RunHistory
from hermes_cron_ext.frontends.widgets.live_output import LiveOutput
from hermes_cron_ext.ops import CronClient, get_client

__all__ = ["JOB_COLUMNS", "JobCard", "JobCards", "job_cards"]


JOB_COLUMNS = ["job", "kind", "state", "schedule", "next run", "last run"]
#: the HTML table's column after ``JOB_COLUMNS``: the latest ended runs' durations
SPARK_HEADER = "durations"
#: and the one after it: the job's last CALENDAR_DAYS days as a heatmap
CALENDAR_HEADER = "last 90 days"
CALENDAR_DAYS = 90


def _job_cells(job: dict, state: str, now: float) -> list[str]:
    """A card's row of text (``JOB_COLUMNS``), in the formats of render.py."""
    return [job.get("name", "?"), job.get("kind", ""), state, schedule_words(job),
            next_run_text(job, now, state), last_run_text(job, now)]


def _job_html_cells(job: dict, state: str, now: float,
                    durations: list[float] | None = None,
                    calendar: dict | None = None) -> list[str]:
    """:func:`_job_cells` in HTML; with *durations*, a cell with their sparkline, then
    one with the calendar heatmap (empty without one)."""
    cells = [html.escape(c) for c in _job_cells(job, state, now)]
    cells[0] = f"<b>{cells[0]}</b>" + managed_html(job)
    cells[2] = f"{pip_html(state)}{cells[2]}"
    last = job.get("last_run")
    if last:
        cells[5] = " &middot; ".join([outcome_html(last.get("status")), *(
            html.escape(part) for part in last_run_parts(last, now)[1:])]) + alert_badge_html(last)
    if durations is not None:
        cells.append(duration_spark_html(durations))
        cells.append(calendar_html(calendar) if calendar else "")
    return cells


def _ended_key(job: dict) -> tuple | None:
    """What changes when another run of the job ends (its durations then change)."""
    last = job.get("last_run")
    if not last or last.get("status") in ACTIVE_STATUSES:
        return None
    return last.get("id"), last.get("status"), last.get("finished_at")



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

class JobCard(Static, widgets.VBox):
    """One job at a glance, with its actions; ``live`` cards update on their own."""

    job = traitlets.Dict()
    state = traitlets.Unicode("scheduled")
    countdown = traitlets.Unicode("")
    seconds_left = traitlets.Float(None, allow_none=True)
    error = traitlets.Unicode("")
    message = traitlets.Unicode("")
    #: the duration of its latest ended runs (up to ``SPARK_RUNS``), oldest first
    durations = traitlets.List(traitlets.Float())
    #: its days (``CronClient.calendar``, :data:`CALENDAR_DAYS`): read when the card is
    #: made and again when one of its runs ends, one call each time; {}: not readable
    calendar = traitlets.Dict()

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
        self._spark = widgets.HTML()
        self._calendar = widgets.HTML()
        self._calendar_read = False
        self._note = widgets.HTML()
        self._ended: tuple | None = None
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
            [self._head, self._info, self._spark, self._calendar, self._countdown, buttons,
             self._note,
             self.detail],
            layout=widgets.Layout(border="1px solid #ddd", padding="6px 10px",
                                  margin="4px 0"),
            **kwargs)
        self.add_class("hc-card")
        self.observe(self._on_job, names="job")
        self.observe(self._on_countdown, names="countdown")
        self.observe(self._on_note, names=["message", "error"])
        self.observe(self._on_durations, names="durations")
        self.observe(self._on_calendar, names="calendar")
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
        ended = _ended_key(job)
        if ended is not None and ended != self._ended:  # a run ended: one more duration
            self._ended = ended
            self.durations = recent_durations(self.client, job["id"])
            self._read_calendar()
        elif not self._calendar_read and self.state != "deleted":
            self._read_calendar()

    def _read_calendar(self) -> None:
        self._calendar_read = True
        self.calendar = calendar_of(self.client, self.job["id"], CALENDAR_DAYS) or {}

    def _on_calendar(self, change=None) -> None:
        cal = self.calendar
        self._calendar.value = (f'<div data-role="calendar">{calendar_html(cal)}</div>'
                                if cal else "")

    def _on_durations(self, change=None) -> None:
        values = self.durations
        self._spark.value = (
            f'<div data-role="durations" style="color:#555">durations: '
            f"{duration_spark_html(values)}</div>" if values else "")

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
            f'<div style="display:flex;align-items:center;gap:4px">{pip_html(state)}'
            f'<b style="font-size:1.1em">{name}</b>'
            f'<span style="color:#888;margin-left:6px">{kind}</span>{managed_html(job)}'
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
        if last:  # how it ended, as every front says it (render.last_run_parts)
            bits = [outcome_html(last.get("status")), *(
                html.escape(part) for part in last_run_parts(last, self.clock())[1:])]
            lines.append("last run: " + " &middot; ".join(bits) + alert_badge_html(last))
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
        zoned = local_time(nxt, self.job.get("timezone"))  # in the job's zone
        when = f' <span style="color:#888">({zoned})</span>' if (
            nxt and self.seconds_left is not None) else ""
        self._countdown.value = f"next run: <b>{html.escape(self.countdown)}</b>{when}"

    # -- without widgets ---------------------------------------------------------------
    def plain_text(self) -> str:
        return text_table(JOB_COLUMNS, [_job_cells(self.job, self.state, self.clock())])

    def static_html(self) -> str:
        return html_table(JOB_COLUMNS + [SPARK_HEADER, CALENDAR_HEADER], [
            _job_html_cells(self.job, self.state, self.clock(), list(self.durations),
                            self.calendar)], "hc-cards")

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


class JobCards(Static, widgets.VBox):
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
        rows = [_job_html_cells(c.job, c.state, c.clock(), list(c.durations), c.calendar)
                for c in self.cards]
        return head + "</div>" + (
            html_table(JOB_COLUMNS + [SPARK_HEADER, CALENDAR_HEADER], rows, "hc-cards")
            if rows else "")


def job_cards(client: CronClient | None = None, **kwargs) -> JobCards:
    """Every job as a card (what ``%cron`` shows)."""
    return JobCards(client, **kwargs)
