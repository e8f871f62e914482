"""The layer contract: each layer imports only the layers below it.

    frontends/  server/        (fronts: call ops and read domain)
         \\       /
           ops/                (the one operations layer)
            |
         runtime/              (ticker, supervisor, executors, notify)
            |
         events/               (event brokers)
            |
          store/               (persistence only)
            |
          domain/              (models, schedule, options, policy: pure)

``errors`` and the package root (``__version__``) may be imported by any layer.
The root's ``__init__`` and ``__main__`` wire the layers together and are exempt.
Imports inside functions count: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "hermes_cron_ext"
ANYWHERE = {"errors", ""}  # hermes_cron_ext.errors and hermes_cron_ext itself
ALLOWED = {
    "domain": set(),
    "store": {"domain"},
    "events": {"store", "domain"},
    "runtime": {"events", "store", "domain"},
    "ops": {"runtime", "events", "store", "domain"},
    "server": {"ops", "domain"},
    "frontends": {"ops", "domain"},
}


def layer_of(module: str) -> str:
    """``hermes_cron_ext.store.sql`` -> ``store``; the root and ``errors`` -> themselves."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports_of(path: pathlib.Path, module: str) -> set[str]:
    """Every ``hermes_cron_ext...`` module *path* imports, relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # ``from hermes_cron_ext import errors``: the name may be a module
            found.update(f"{target}.{a.name}" for a in node.names
                         if (PACKAGE.parent / f"{target}.{a.name}".replace(".", "/")).with_suffix(
                             ".py").exists())
    return {m for m in found if m == "hermes_cron_ext" or m.startswith("hermes_cron_ext.")}


def modules() -> list[tuple[str, pathlib.Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), path))
    return out


def violations() -> list[str]:
    bad = []
    for module, path in modules():
        layer = layer_of(module)
        if layer in ("", "__main__", "errors"):
            continue
        assert layer in ALLOWED, f"{module}: a module outside every layer (add it to one)"
        for target in sorted(imports_of(path, module)):
            to = layer_of(target)
            if to in ANYWHERE or to == layer or to in ALLOWED[layer]:
                continue
            bad.append(f"{module} imports {target} ({layer} -> {to})")
    return bad


def test_every_module_respects_the_layers():
    assert violations() == []


def test_a_forbidden_import_is_caught(tmp_path, monkeypatch):
    """The checker itself: a domain module importing the store must be reported."""
    fake = tmp_path / "hermes_cron_ext"
    (fake / "domain").mkdir(parents=True)
    (fake / "store").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "domain" / "__init__.py").write_text("")
    (fake / "store" / "__init__.py").write_text("")
    (fake / "store" / "sql.py").write_text("")
    (fake / "domain" / "models.py").write_text("def f():\n    from ..store import sql\n")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    assert violations() == [
        "hermes_cron_ext.domain.models imports hermes_cron_ext.store (domain -> store)",
        "hermes_cron_ext.domain.models imports hermes_cron_ext.store.sql (domain -> store)"]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_is_a_folder(layer):
    assert (PACKAGE / layer / "__init__.py").exists()
