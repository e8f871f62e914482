"""Fixtures of the notebook-side tests, loaded as a plugin (``pytest_plugins``) so the
session's Jupyter server is started once however many modules use it."""

from __future__ import annotations

import os

import pytest

from tests.conftest import _kill_supervisors
from tests.notebook_support import HEARTBEAT, start_server, stop_server


@pytest.fixture(scope="session")
def cron_server(tmp_path_factory):
    """One real Jupyter server with the extension for the whole session (it is slow to start).

    Tests on it use job names of their own and remove their jobs.
    """
    tmp = tmp_path_factory.mktemp("cron-server")
    server = start_server(tmp, str(tmp / "store" / "cron.db"))
    yield server
    stop_server(server)


@pytest.fixture
def local_env(db_path, monkeypatch):
    """This process (and the supervisors it spawns) on the test's own store, no server."""
    from hermes_cron_ext import ops as client

    os.makedirs(os.path.dirname(db_path), exist_ok=True)
    monkeypatch.setenv("HERMES_CRON_DB", db_path)
    monkeypatch.setenv("HERMES_CRON_URL", "local")
    monkeypatch.setenv("HERMES_CRON_HEARTBEAT", HEARTBEAT)
    monkeypatch.delenv("JPY_PARENT_PID", raising=False)
    client.set_client(None)
    yield db_path
    client.set_client(None)
    _close_widgets()
    _kill_supervisors(db_path)


def _close_widgets() -> None:
    try:
        import ipywidgets
    except ImportError:
        return
    ipywidgets.Widget.close_all()
