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

``errors``, ``processes`` (this host's name and its processes: the I/O the domain
must not do, on the standard library alone) and the package root (``__version__``)
may be imported by any layer; ``errors`` and ``processes`` import nothing of ours but
each other. The root's ``__init__`` and ``__main__`` wire the
layers together and are exempt. The fronts (server, frontends) hold no store either:
no attribute of theirs is named ``store`` (what they need of it is an operation).

Every module's imports are read with :mod:`ast` and each is resolved to the module
it reaches, wherever it is written (at the top, inside a function, under ``if``):

- ``import hermes_cron_ext.store.sql`` (and ``as s``);
- ``from hermes_cron_ext.store import sql`` / ``from hermes_cron_ext import store``:
  a name that is a submodule or subpackage reaches it, any other name its module;
- relative forms: ``from . import x``, ``from .. import store``, ``from ..store import
  sql``, resolved against the importing module's package;
- a public name the root loads on first use (``from hermes_cron_ext import
  get_client`` reaches ``ops``), and ``from hermes_cron_ext import *``;
- ``importlib.import_module("hermes_cron_ext.store")`` and ``__import__`` of a
  literal name;
- a submodule reached as an attribute of an imported one (``import hermes_cron_ext``
  then ``hermes_cron_ext.store.open_store``).
"""

from __future__ import annotations

import ast
import pathlib
from dataclasses import dataclass

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "hermes_cron_ext"
ROOT = "hermes_cron_ext"
#: importable by every layer (the root: ``__version__``); they import only each other
ANYWHERE = {"", "errors", "processes"}
#: wire the layers together: not checked
EXEMPT_MODULES = {ROOT, f"{ROOT}.__main__"}
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
    """``hermes_cron_ext.store.sql`` -> ``store``; the root -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@dataclass(frozen=True)
class Package:
    """What a package holds: its modules (by dotted name, to their file) and the
    public names its root loads on first use (name -> the module that defines it)."""

    root: pathlib.Path
    modules: dict[str, pathlib.Path]
    lazy: dict[str, str]

    @classmethod
    def read(cls, root: pathlib.Path) -> Package:
        modules = {}
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
        init = root / "__init__.py"
        lazy = root_lazy_names(init.read_text()) if init.exists() else {}
        return cls(root, modules, lazy)

    def is_package(self, module: str) -> bool:
        return self.modules[module].name == "__init__.py"


def root_lazy_names(source: str) -> dict[str, str]:
    """The names the root's ``__getattr__`` loads: its ``_PUBLIC`` table (name ->
    module) and each ``if name == "x": return importlib.import_module("m")``."""
    lazy: dict[str, str] = {}
    tree = ast.parse(source)
    for node in tree.body:
        if (isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Dict)
                and any(isinstance(t, ast.Name) and t.id == "_PUBLIC"
                        for t in (node.targets if isinstance(node, ast.Assign)
                                  else [node.target]))):
            lazy.update(ast.literal_eval(node.value))
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            for test in ast.walk(node):
                if (isinstance(test, ast.If) and isinstance(test.test, ast.Compare)
                        and isinstance(test.test.comparators[0], ast.Constant)):
                    name = test.test.comparators[0].value
                    for call in ast.walk(ast.Module(body=test.body, type_ignores=[])):
                        target = _literal_import(call)
                        if target:
                            lazy[name] = target
    return lazy


def _literal_import(node: ast.AST) -> str | None:
    """``importlib.import_module("m")``, ``import_module("m")``, ``__import__("m")``."""
    if not (isinstance(node, ast.Call) and node.args
            and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return node.args[0].value if name in ("import_module", "__import__") else None


def _dotted(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None for anything but names and attributes."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def imports_of(source: str, module: str, pkg: Package) -> list[tuple[int, str]]:
    """``(line, module reached)`` for every import of *pkg*'s modules in *source*, the
    text of *module* (see the module docstring for the forms)."""
    tree = ast.parse(source, module)
    here = module.split(".") if pkg.is_package(module) else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    bound: dict[str, str] = {}  # a local name -> the module of ours it is

    def ours(name: str) -> bool:
        return name == ROOT or name.startswith(ROOT + ".")

    def reach(line: int, base: str, names: list[str]) -> None:
        """``base`` imported, then each of *names* taken from it."""
        found.append((line, base))
        for name in names:
            if name == "*":
                if base == ROOT:
                    found.extend((line, m) for m in sorted(set(pkg.lazy.values())))
            elif f"{base}.{name}" in pkg.modules:
                found.append((line, f"{base}.{name}"))
            elif base == ROOT and name in pkg.lazy:
                found.append((line, pkg.lazy[name]))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if ours(alias.name):
                    found.append((node.lineno, alias.name))
                    if alias.asname:
                        bound[alias.asname] = alias.name
                    else:
                        bound[alias.name.split(".")[0]] = ROOT
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 > len(here) - 1:
                    raise ValueError(f"{module}:{node.lineno}: relative import beyond {ROOT}")
                parts = here[:len(here) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if ours(base):
                reach(node.lineno, base, [a.name for a in node.names])
                for alias in node.names:
                    if f"{base}.{alias.name}" in pkg.modules:
                        bound[alias.asname or alias.name] = f"{base}.{alias.name}"
        else:
            target = _literal_import(node)
            if target and ours(target):
                found.append((node.lineno, target))
    # submodules reached as attributes of an imported module of ours (each chain once,
    # from its outermost attribute)
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        chain = (_dotted(node) if isinstance(node, ast.Attribute) and id(node) not in inner
                 else None)
        if chain and chain[0] in bound:
            name = bound[chain[0]]
            for attr in chain[1:]:
                if f"{name}.{attr}" in pkg.modules:
                    name = f"{name}.{attr}"
                else:
                    if name == ROOT and attr in pkg.lazy:
                        found.append((node.lineno, pkg.lazy[attr]))
                    break
            if name != bound[chain[0]]:
                found.append((node.lineno, name))
    return sorted({f for f in found if ours(f[1])})


def violations(root: pathlib.Path | None = None) -> list[str]:
    """``module:line imports target (from -> to)`` for every forbidden import."""
    pkg = Package.read(root or PACKAGE)
    bad = []
    for module, path in pkg.modules.items():
        if module in EXEMPT_MODULES:
            continue
        layer = layer_of(module)
        allowed = ANYWHERE if layer in ANYWHERE else ALLOWED.get(layer)
        assert allowed is not None, f"{module}: a module outside every layer (add it to one)"
        for line, target in imports_of(path.read_text(), module, pkg):
            to = layer_of(target)
            if to == layer or to in ANYWHERE or to in allowed:
                continue
            bad.append(f"{module}:{line} imports {target} ({layer or ROOT} -> {to or ROOT})")
    return sorted(set(bad))


def test_every_module_respects_the_layers():
    assert violations() == []


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_is_a_folder(layer):
    assert (PACKAGE / layer / "__init__.py").exists()


def test_the_rules_are_the_ones_architecture_draws():
    """Each layer may import those drawn below it (the fronts skip to ops and domain)."""
    order = ["domain", "store", "events", "runtime", "ops"]
    for i, layer in enumerate(order):
        assert ALLOWED[layer] == set(order[:i])
    assert ALLOWED["server"] == ALLOWED["frontends"] == {"ops", "domain"}


#: the fronts call operations and hold no store: an attribute named ``store``
#: (``ops.store``, ``host.store``, ``self.store``) in them is a way around ops
FRONTS = ("server", "frontends")


def store_reaches(source: str) -> list[int]:
    """Lines of *source* that read or set an attribute named ``store``."""
    return sorted({node.lineno for node in ast.walk(ast.parse(source))
                   if isinstance(node, ast.Attribute) and node.attr == "store"})


def test_the_fronts_reach_the_store_only_through_ops():
    pkg = Package.read(PACKAGE)
    assert [f"{module}:{line}" for module, path in pkg.modules.items()
            if layer_of(module) in FRONTS for line in store_reaches(path.read_text())] == []


def test_a_front_reaching_the_store_is_caught():
    assert store_reaches("url = ops.store.display_url\n"
                         "self.store = host.store\n"
                         "def f(store):\n    return store.x, self.stores\n") == [1, 2]


#: modules that do I/O (files, processes, sockets, the machine's settings); the domain
#: imports none: what it needs of them comes in as values or from ``processes``
IO_MODULES = {"os", "socket", "subprocess", "shutil", "pathlib", "io", "signal", "sqlite3",
              "threading", "multiprocessing", "urllib", "http", "psycopg", "tzlocal"}
#: what the domain still reads, and why (module -> the I/O modules it imports)
DOMAIN_IO_LEFT = {
    # local_zone(): the machine's zone, a job's default when none is given
    "hermes_cron_ext.domain.schedule": {"tzlocal"},
}


def top_level_imports(source: str) -> set[str]:
    """The first part of every module *source* imports (absolute imports only)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_domain_does_no_io():
    pkg = Package.read(PACKAGE)
    io = {module: top_level_imports(path.read_text()) & IO_MODULES
          for module, path in pkg.modules.items() if layer_of(module) == "domain"}
    assert {module: found for module, found in io.items() if found} == DOMAIN_IO_LEFT


#: calls that read the clock, this host or its processes: the domain is given the
#: instant and the zone (``now=``, ``start=``, ``tz=``) instead
READING_CALLS = {"time.time", "time.monotonic", "datetime.now", "datetime.utcnow",
                 "datetime.today", "date.today", "hostname", "process_alive",
                 "tzlocal.get_localzone_name", "tzlocal.get_localzone"}
#: what the domain still reads, and why (module -> the calls)
DOMAIN_READS_LEFT = {
    # now(): a running run's duration so far (Run.duration, in every Run.to_json) and a
    # ticker's liveness when no instant is given (Ticker.alive / to_json)
    "hermes_cron_ext.domain.models": {"time.time"},
    # local_zone(): the machine's zone, a job's default when none is given
    "hermes_cron_ext.domain.schedule": {"tzlocal.get_localzone_name"},
}


def reading_calls(source: str) -> set[str]:
    """The calls of *source* in READING_CALLS (``a.b(...)`` or ``b(...)``)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            f = node.func
            name = (f"{f.value.id}.{f.attr}" if isinstance(f, ast.Attribute)
                    and isinstance(f.value, ast.Name) else
                    f.id if isinstance(f, ast.Name) else None)
            if name in READING_CALLS:
                found.add(name)
    return found


def test_the_domain_reads_no_clock_nor_host():
    pkg = Package.read(PACKAGE)
    reads = {module: reading_calls(path.read_text())
             for module, path in pkg.modules.items() if layer_of(module) == "domain"}
    assert {module: found for module, found in reads.items() if found} == DOMAIN_READS_LEFT
    assert reading_calls("import time\ntime.time()\ndatetime.now(UTC)\nx.now()\n") == {
        "time.time", "datetime.now"}


# -- the checker itself: a planted import of each form is caught ------------------------

FAKE_ROOT = '''
__version__ = "0"
_PUBLIC = {"get_client": "hermes_cron_ext.ops"}
__all__ = ["__version__", "widgets", *_PUBLIC]

def __getattr__(name):
    import importlib
    if name == "widgets":
        return importlib.import_module("hermes_cron_ext.frontends.widgets")
    raise AttributeError(name)
'''


@pytest.fixture
def fake(tmp_path):
    """A package shaped like ours: every layer, ``store/sql.py``, ``domain/models.py``,
    ``frontends/widgets/``, ``ops/local.py``; ``plant(module, source)`` writes a module."""
    root = tmp_path / ROOT
    for folder in [*ALLOWED, "frontends/widgets"]:
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "__init__.py").write_text("")
    for name in ("errors", "processes", "store/sql", "domain/models", "domain/policy",
                 "ops/local", "runtime/ticker"):
        (root / f"{name}.py").write_text("")
    (root / "__init__.py").write_text(FAKE_ROOT)

    def plant(module: str, source: str) -> list[str]:
        path = root.joinpath(*module.split(".")[1:])
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        path.write_text(source)
        return violations(root)
    return plant


PLANTED = [  # (module, source, what must be reported)
    ("hermes_cron_ext.domain.models", "import hermes_cron_ext.store.sql\n",
     ["hermes_cron_ext.domain.models:1 imports hermes_cron_ext.store.sql (domain -> store)"]),
    ("hermes_cron_ext.domain.models", "import hermes_cron_ext.store.sql as s\n",
     ["hermes_cron_ext.domain.models:1 imports hermes_cron_ext.store.sql (domain -> store)"]),
    ("hermes_cron_ext.domain.models", "from hermes_cron_ext.store.sql import x\n",
     ["hermes_cron_ext.domain.models:1 imports hermes_cron_ext.store.sql (domain -> store)"]),
    ("hermes_cron_ext.domain.models", "from hermes_cron_ext.store import sql\n",
     ["hermes_cron_ext.domain.models:1 imports hermes_cron_ext.store (domain -> store)",
      "hermes_cron_ext.domain.models:1 imports hermes_cron_ext.store.sql (domain -> store)"]),
    # a subpackage imported as a name
    ("hermes_cron_ext.domain.models", "from hermes_cron_ext import store\n",
     ["hermes_cron_ext.domain.models:1 imports hermes_cron_ext.store (domain -> store)"]),
    ("hermes_cron_ext.domain.models", "from hermes_cron_ext import errors, store as st\n",
     ["hermes_cron_ext.domain.models:1 imports hermes_cron_ext.store (domain -> store)"]),
    # relative: up one, up two, a sibling package's module, inside a function
    ("hermes_cron_ext.domain.models", "from .. import store\n",
     ["hermes_cron_ext.domain.models:1 imports hermes_cron_ext.store (domain -> store)"]),
    ("hermes_cron_ext.domain.models", "from ..store import sql\n",
     ["hermes_cron_ext.domain.models:1 imports hermes_cron_ext.store (domain -> store)",
      "hermes_cron_ext.domain.models:1 imports hermes_cron_ext.store.sql (domain -> store)"]),
    ("hermes_cron_ext.domain.models", "def f():\n    from ..store.sql import x\n",
     ["hermes_cron_ext.domain.models:2 imports hermes_cron_ext.store.sql (domain -> store)"]),
    ("hermes_cron_ext.domain", "from .. import runtime\n",  # a package's __init__
     ["hermes_cron_ext.domain:1 imports hermes_cron_ext.runtime (domain -> runtime)"]),
    ("hermes_cron_ext.frontends.widgets", "from ... import runtime\n",
     ["hermes_cron_ext.frontends.widgets:1 imports hermes_cron_ext.runtime "
      "(frontends -> runtime)"]),
    ("hermes_cron_ext.frontends.widgets",
     "from . import x\nfrom .. import y\nfrom ... import store\n",
     ["hermes_cron_ext.frontends.widgets:3 imports hermes_cron_ext.store (frontends -> store)"]),
    # imports inside functions, methods, conditions
    ("hermes_cron_ext.server", "class A:\n    def f(self):\n        if 1:\n"
                               "            import hermes_cron_ext.store\n",
     ["hermes_cron_ext.server:4 imports hermes_cron_ext.store (server -> store)"]),
    # names the root loads on first use, and the root's *
    ("hermes_cron_ext.store.sql", "from hermes_cron_ext import get_client\n",
     ["hermes_cron_ext.store.sql:1 imports hermes_cron_ext.ops (store -> ops)"]),
    ("hermes_cron_ext.store.sql", "from .. import widgets\n",
     ["hermes_cron_ext.store.sql:1 imports hermes_cron_ext.frontends.widgets "
      "(store -> frontends)"]),
    ("hermes_cron_ext.runtime.ticker", "from hermes_cron_ext import *\n",
     ["hermes_cron_ext.runtime.ticker:1 imports hermes_cron_ext.frontends.widgets "
      "(runtime -> frontends)",
      "hermes_cron_ext.runtime.ticker:1 imports hermes_cron_ext.ops (runtime -> ops)"]),
    # import_module and __import__ of a literal name
    ("hermes_cron_ext.domain.policy",
     "import importlib\nm = importlib.import_module('hermes_cron_ext.store.sql')\n",
     ["hermes_cron_ext.domain.policy:2 imports hermes_cron_ext.store.sql (domain -> store)"]),
    ("hermes_cron_ext.domain.policy", "m = __import__('hermes_cron_ext.events')\n",
     ["hermes_cron_ext.domain.policy:1 imports hermes_cron_ext.events (domain -> events)"]),
    # a submodule reached as an attribute of an imported module
    ("hermes_cron_ext.server", "import hermes_cron_ext\nhermes_cron_ext.store.sql.x()\n",
     ["hermes_cron_ext.server:2 imports hermes_cron_ext.store.sql (server -> store)"]),
    ("hermes_cron_ext.server", "import hermes_cron_ext.ops as o\no.local.x\n", []),
    ("hermes_cron_ext.domain.models", "import hermes_cron_ext\nhermes_cron_ext.get_client()\n",
     ["hermes_cron_ext.domain.models:2 imports hermes_cron_ext.ops (domain -> ops)"]),
    # the leaves import nothing of ours but each other
    ("hermes_cron_ext.errors", "from hermes_cron_ext.domain import models\n",
     ["hermes_cron_ext.errors:1 imports hermes_cron_ext.domain (errors -> domain)",
      "hermes_cron_ext.errors:1 imports hermes_cron_ext.domain.models (errors -> domain)"]),
    ("hermes_cron_ext.processes", "def f():\n    from .store import sql\n",
     ["hermes_cron_ext.processes:2 imports hermes_cron_ext.store (processes -> store)",
      "hermes_cron_ext.processes:2 imports hermes_cron_ext.store.sql (processes -> store)"]),
    # allowed: none reported
    ("hermes_cron_ext.domain.models",
     "from . import policy\nfrom hermes_cron_ext import __version__, errors, processes\n"
     "from ..errors import X\nimport hermes_cron_ext.domain.policy\nimport os, json\n"
     "from .policy import *\n", []),
    ("hermes_cron_ext.ops.local", "from ..runtime import ticker\nfrom .. import store\n", []),
    ("hermes_cron_ext.server", "from hermes_cron_ext import get_client\n", []),
]


@pytest.mark.parametrize(("module", "source", "reported"), PLANTED,
                         ids=[f"{m.split('.', 1)[1]}: {s.strip()!r}" for m, s, _ in PLANTED])
def test_the_checker_catches_each_import_form(fake, module, source, reported):
    assert fake(module, source) == reported


def test_a_module_outside_every_layer_is_refused(fake):
    with pytest.raises(AssertionError, match="hermes_cron_ext.helpers: a module outside"):
        fake("hermes_cron_ext.helpers", "")


def test_a_relative_import_beyond_the_package_is_refused(fake):
    with pytest.raises(ValueError, match="relative import beyond"):
        fake("hermes_cron_ext.domain.models", "from .... import x\n")


def test_the_real_root_lazy_names_are_read():
    """The checker knows every public name the root loads on first use."""
    pkg = Package.read(PACKAGE)
    assert pkg.lazy["get_client"] == "hermes_cron_ext.ops"
    assert pkg.lazy["widgets"] == "hermes_cron_ext.frontends.widgets"
    assert pkg.lazy["LiveOutput"] == "hermes_cron_ext.frontends.widgets"
