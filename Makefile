# The two set-up commands (see README): `make demo` and `make test`.
# Both use a project-local virtual environment (.venv), made with $(PYTHON) (>= 3.11):
# nothing is installed into the system's or pyenv's Python.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8888
ARGS ?=

.PHONY: venv install test frontdoor browser delivery slow accounts demo lint bench clean-venv

$(PY):
	$(PYTHON) -c 'import sys; sys.exit("hermes-cron-ext needs Python >= 3.11, not " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

venv: $(PY)

install: $(PY)
	$(PY) -m pip install -q -e ".[test]"

# mypy first (configured in pyproject.toml: the package, domain/ and ops/ strict), so a
# type error fails `make test` (and CI's .ci/run) before the suite's minutes are spent;
# the 25 slowest tests are listed at the end (the suite must stay under 10 minutes)
test: install
	$(PY) -m mypy
	$(PY) -m pytest -q --durations=25

# clones the repo and runs `make demo` as a new user would (slow: a venv per clone)
frontdoor: install
	$(PY) -m pytest -q -m frontdoor tests/test_frontdoor.py

# the side panel and the widgets in a real browser (Chromium: apt-get install chromium)
browser: install
	$(PY) -m pytest -q -m browser tests/frontends/test_panel.py tests/frontends/test_widgets_browser.py

# notifications end to end: real daemons killed with -9, two daemons on one store, a real
# SMTP server, late slots found by hermes-cron tick (about 40 s)
delivery: install
	$(PY) -m pytest -q -m delivery tests/runtime/test_notify_delivery.py

# the slowest end-to-end tests (kill -9 of daemons, agents and supervisors; a full disk; a
# server handing its jobs to a daemon and back; pipelines across daemons on both stores; a
# stream nobody reads): about 2.5 min, kept out of `make test` for its 10 minutes
slow: install
	$(PY) -m pytest -q -m slow tests/server/test_app.py tests/frontends/test_cli.py \
		tests/runtime/test_policies.py tests/test_faults.py tests/runtime/test_agent.py \
		tests/store/test_postgres.py tests/runtime/test_pipelines.py tests/server/test_proxy.py

# runs as their owners: makes Unix accounts and a sudoers entry, runs jobs as them, and
# removes them after (root; the tests skip, saying why, when not root); and the other
# tests that run a real JupyterHub
accounts: install
	$(PY) -m pytest -q -m accounts tests/test_hub.py tests/runtime/test_runas.py \
		tests/runtime/test_runas_runtime.py tests/server/test_hub_service.py \
		tests/server/test_hub_users.py tests/server/test_hub_failover.py \
		tests/server/test_hub_browser.py

lint: install
	$(PY) -m ruff check .

demo: $(PY)
	@echo "make demo: installing hermes-cron-ext with JupyterLab into $(VENV) and building its side panel (the first time takes a few minutes)"
	@rm -f build/panel-build.outcome  # written by the panel's build (scripts/build_panel.py); demo.sh reads it
	$(PY) -m pip install -e ".[lab]" | { grep -v "^Requirement already satisfied" || true; }
	PY=$(PY) PORT=$(PORT) scripts/demo.sh $(ARGS)

bench: install
	$(PY) bench/core.py

clean-venv:
	rm -rf $(VENV)
