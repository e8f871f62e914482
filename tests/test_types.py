"""domain/ and ops/ are checked as ``mypy --strict`` would (``make test`` runs mypy).

``strict = true`` in a per-module section of the config turns strict on for every
module, so pyproject.toml spells out the flags ``--strict`` sets. This test asks the
installed mypy which flags those are, so an upgrade that adds one fails here rather
than leaving domain/ and ops/ quietly less strict than ``--strict``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

mypy_main = pytest.importorskip("mypy.main")
mypy_options = pytest.importorskip("mypy.options")

ROOT = Path(__file__).resolve().parent.parent
STRICT_MODULES = ["hermes_cron_ext.domain.*", "hermes_cron_ext.ops.*"]


def _options(args: list[str]):
    return mypy_main.process_options([*args, "-c", "pass"])[1]


def test_domain_and_ops_get_every_flag_of_strict(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no config file: mypy's own defaults
    strict, default = _options(["--strict"]), _options([])
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    overrides = [o for o in config["overrides"] if o["module"] == STRICT_MODULES]
    assert len(overrides) == 1, f"one override section for {STRICT_MODULES}"
    override = overrides[0]
    assert "strict" not in override and "strict" not in config
    per_module = mypy_options.PER_MODULE_OPTIONS
    wanted = {name: getattr(strict, name) for name in per_module
              if getattr(strict, name) != getattr(default, name)}
    assert wanted, "mypy's --strict turned nothing on: has its API changed?"
    have = {name: override.get(name, config.get(name)) for name in wanted}
    assert have == wanted
    for name in ("warn_unused_configs", "warn_redundant_casts"):  # global-only flags
        assert config.get(name) is True, name
