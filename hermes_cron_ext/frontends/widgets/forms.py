"""A run with parameters of its own, from a typed form (:class:`ParametersForm`)."""

from __future__ import annotations

import html
import json

from hermes_cron_ext.errors import HermesCronError
from hermes_cron_ext.frontends.widgets.base import Static, traitlets, widgets
from hermes_cron_ext.frontends.widgets.live_output import LiveOutput
from hermes_cron_ext.ops import CronClient, get_client

__all__ = ["ParametersForm"]


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


class ParametersForm(Static, widgets.VBox):
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
