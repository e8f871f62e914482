"""The map of the store's contract: ``Store`` is exactly its interfaces combined, each
interface is small, each has a contract suite that runs on every backend and calls
every one of its methods, and ``AsyncStore`` mirrors every method as an awaitable."""

from __future__ import annotations

import importlib
import inspect
import pathlib

import pytest

from hermes_cron_ext.store import NOT_AWAITED, AsyncStore
from hermes_cron_ext.store.base import INTERFACES, Store
from hermes_cron_ext.store.sqlite import SQLiteStore
from tests.store.contract import EVERY_BACKEND, SUITES

HERE = pathlib.Path(__file__).parent
#: APScheduler 4's ``DataStore``, the size each interface keeps to (STYLE.md)
DATASTORE_METHODS = 20


def methods(cls: type) -> dict[str, object]:
    """The public methods *cls* declares itself (abstract or with a default)."""
    return {name: value for name, value in vars(cls).items()
            if not name.startswith("_") and inspect.isfunction(value)}


def test_store_is_its_interfaces_combined_and_each_is_small():
    assert Store.__bases__ == INTERFACES
    declared = [name for interface in INTERFACES for name in methods(interface)]
    assert len(declared) == len(set(declared)), "a method in two interfaces"
    assert Store.__abstractmethods__ == {
        name for interface in INTERFACES for name in interface.__abstractmethods__} | {"close"}
    for interface in INTERFACES:
        assert len(interface.__abstractmethods__) <= DATASTORE_METHODS, interface.__name__
        for name, method in methods(interface).items():
            assert method.__doc__, f"{interface.__name__}.{name} says no contract"
    assert not SQLiteStore.__abstractmethods__
    pytest.importorskip("psycopg")
    from hermes_cron_ext.store.postgres import PostgresStore

    assert not PostgresStore.__abstractmethods__


def test_every_interface_has_a_suite_that_runs_on_every_backend():
    assert set(SUITES) == {*INTERFACES, Store}
    for module in SUITES.values():
        suite = importlib.import_module(f"tests.store.{module}")
        assert suite.pytestmark is EVERY_BACKEND, module


def test_every_method_is_called_in_its_interfaces_suite():
    for interface, module in SUITES.items():
        text = (HERE / f"{module}.py").read_text()
        never = [name for name in methods(interface) if f".{name}(" not in text]
        assert not never, f"{module}.py never calls {interface.__name__}.{never}"


def test_async_store_mirrors_every_method_with_its_signature():
    for interface in INTERFACES:
        for name, method in methods(interface).items():
            if name in NOT_AWAITED:
                assert not hasattr(AsyncStore, name), name
                continue
            mirrored = getattr(AsyncStore, name)
            assert inspect.iscoroutinefunction(mirrored), name
            assert inspect.signature(mirrored) == inspect.signature(method), name
            assert mirrored.__doc__ == method.__doc__ and mirrored.__name__ == name
    assert not hasattr(AsyncStore, "close")  # aclose: closing is awaited on a store thread
