"""hermes-cron-ext: the durable cron scheduler for Jupyter."""

from __future__ import annotations

__version__ = "0.1.0"

#: The public Python API, imported on first use (``hermes-cron`` and supervisors
#: import this package and should not pay for ipywidgets or jupyter_server).
_PUBLIC = {
    "connect": "hermes_cron_ext.ops",
    "get_client": "hermes_cron_ext.ops",
    "set_client": "hermes_cron_ext.ops",
    "CronClient": "hermes_cron_ext.ops",
    "LiveOutput": "hermes_cron_ext.frontends.widgets",
    "RunHistory": "hermes_cron_ext.frontends.widgets",
    "job_cards": "hermes_cron_ext.frontends.widgets",
    "Dashboard": "hermes_cron_ext.frontends.widgets",
    "job_health": "hermes_cron_ext.frontends.widgets",
    "PipelineGraph": "hermes_cron_ext.frontends.widgets",
    "ParametersForm": "hermes_cron_ext.frontends.widgets",
    "BackfillProgress": "hermes_cron_ext.frontends.widgets",
}
__all__ = ["__version__", "load_ipython_extension", "metric", "widgets", *_PUBLIC]


def metric(name: str, value: float, unit: str = "") -> None:
    """Report a number from a running job (a Python job, or a notebook job's cell):
    prints ``::metric NAME=VALUE [UNIT]``, which the scheduler reads from the run's
    output and keeps with the run. Anywhere else it is just that line.

    :raises ValueError: a name, value or unit that could not be read back."""
    from hermes_cron_ext.domain.metrics import metric_line

    print(metric_line(name, value, unit), flush=True)


def __getattr__(name: str):
    import importlib

    if name == "widgets":
        return importlib.import_module("hermes_cron_ext.frontends.widgets")
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'hermes_cron_ext' has no attribute {name!r}")


def _jupyter_server_extension_points() -> list[dict]:
    from hermes_cron_ext.server.app import HermesCron

    return [{"module": "hermes_cron_ext", "app": HermesCron}]


def _jupyter_labextension_paths() -> list[dict]:
    return [{"src": "labextension", "dest": "hermes-cron-ext"}]


def load_ipython_extension(ipython) -> None:
    """``%load_ext hermes_cron_ext``: registers the ``%cron`` and ``%%cron`` magics."""
    from hermes_cron_ext.frontends.magics import load_ipython_extension as load

    load(ipython)
