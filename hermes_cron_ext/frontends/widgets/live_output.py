"""A run's output as a terminal shows it (ANSI colours, ``\\r`` progress bars), followed
on a background thread, with phase, progress and the run's outcome (:class:`LiveOutput`)."""

from __future__ import annotations

import html
import re
import threading
import time
import uuid
import weakref

from hermes_cron_ext.domain.models import ACTIVE_STATUSES, FINAL_STATUSES
from hermes_cron_ext.errors import HermesCronError
from hermes_cron_ext.frontends.render import (
    format_duration,
    next_run_text,
    progress_text,
    revision_parts,
)
from hermes_cron_ext.frontends.terminal import Terminal
from hermes_cron_ext.frontends.widgets.base import (
    OUTCOME_COLOURS,
    STATIC,
    Static,
    anywidget,
    traitlets,
)
from hermes_cron_ext.ops import ConnectionFailed, CronClient, RunStream, get_client

__all__ = ["MARKER", "STATIC_LINES", "LiveOutput"]


#: the supervisor's progress protocol: these lines feed the bar, they are not shown
MARKER = re.compile(r"^\s*::(?:progress|phase)::")
#: lines of output a static copy (text/plain, text/html) keeps: the last ones
STATIC_LINES = 200
#: every LiveOutput that has not been closed (``LiveOutput.wait_all``)
_following: weakref.WeakSet[LiveOutput] = weakref.WeakSet()


class LiveOutput(Static, anywidget.AnyWidget):
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
    #: ``rev 3 · sha256 1a2b3c4d… · older revision (the job is at rev 5 now)``: the
    #: job's revision the run ran, as the side panel's run view says it ("" without one)
    revision = traitlets.Unicode("").tag(sync=True)

    #: a log longer than this is shown from its last bytes only
    tail_bytes = 512 * 1024
    #: at most this many trait updates of ``lines`` per second
    rate = 10.0

    def __init__(self, run_id: str | None = None, *, client: CronClient | None = None,
                 max_lines: int = 2000, start: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.client = client or get_client()
        self.term = Terminal(max_lines=max_lines)
        self.offset = 0
        #: where the output shown begins (a search hit's line: its byte offset); 0: the start
        self.start = max(0, start)
        self._lock = threading.RLock()  # the screen, and publishing it in order
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream: RunStream | None = None
        self._dirty = False
        self._last_flush = 0.0
        self._timer: threading.Timer | None = None
        self._display_id: str | None = None
        self._display_lock = threading.Lock()
        self._jobs: dict[str, dict | None] = {}  # the job of each run shown, read once
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
        self._show_revision(run)

    def _job_of(self, run: dict) -> dict | None:
        """The run's job as it is now (read once per job), None when gone."""
        job_id = run.get("job_id")
        if not job_id:
            return None
        if job_id not in self._jobs:
            try:
                self._jobs[job_id] = self.client.job(job_id)
            except HermesCronError:
                self._jobs[job_id] = None
        return self._jobs[job_id]

    def _show_revision(self, run: dict) -> None:
        if run.get("job_version") is None and not run.get("file_sha256"):
            self.revision = ""
            return
        job = self._job_of(run) if run.get("job_version") is not None else None
        self.revision = " \u00b7 ".join(revision_parts(run, (job or {}).get("version")))

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
        """``run r_1 of etl: failed · exit 3 · 1.20 s · rev 3``"""
        what = f"run {self.run_id}" if self.run_id else "no run yet"
        job = f" of {self.job_name}" if self.job_name else ""
        status = {"waiting": "waiting for a run"}.get(self.status,
                                                       self.status.replace("_", " "))
        bits = [status]
        if self.exit_code is not None and self.status not in ACTIVE_STATUSES:
            bits.append(f"exit {self.exit_code}")
        if self.took:
            bits.append(self.took)
        if self.revision:  # rev 3 · sha256 1a2b3c4d… (· older revision …)
            bits.append(self.revision)
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
        self.phase = f"no run yet; next run {next_run_text(job, time.time())}"
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
        if self.start:  # from that line on (a search hit), the bytes before it left out
            self.offset = self.start
            with self._lock:
                self.term.feed(f"[\u2026 from byte {self.start:,}: %cron logs {run['id']} "
                               "prints the bytes before]\n", "system")
        elif (run.get("output_bytes") or 0) > self.tail_bytes:
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
        if ("job_version" in run or "file_sha256" in run) and run.get("job_id"):
            self._show_revision(run)
        url = getattr(self.client, "artifact_url", None)
        if (url is not None and not self.artifact_url and run["status"] not in ACTIVE_STATUSES
                and self._is_notebook(run)):
            self.artifact_url = url(run["id"])

    def _is_notebook(self, run: dict) -> bool:
        return (self._job_of(run) or {}).get("kind") == "notebook"

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
