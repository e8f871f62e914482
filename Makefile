# The two set-up commands (see README): `make demo` and `make test`.
PYTHON ?= python3

.PHONY: install test demo lint bench

install:
	$(PYTHON) -m pip install -q -e ".[test]"

test: install
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check .

demo:
	$(PYTHON) -m pip install -q -e ".[lab]"
	scripts/demo.sh

bench:
	$(PYTHON) bench/core.py
