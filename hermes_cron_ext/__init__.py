"""hermes-cron-ext: the durable cron scheduler for Jupyter."""

from __future__ import annotations

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict]:
    from .app import HermesCron

    return [{"module": "hermes_cron_ext", "app": HermesCron}]


def _jupyter_labextension_paths() -> list[dict]:
    return [{"src": "labextension", "dest": "hermes-cron-ext"}]


def load_ipython_extension(ipython) -> None:
    """``%load_ext hermes_cron_ext``: registers the ``%cron`` and ``%%cron`` magics."""
    from .magics import load_ipython_extension as load

    load(ipython)
