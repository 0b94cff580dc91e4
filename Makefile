# The two commands: `make run` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test bench lint clean

$(VENV)/.run-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(VENV)/bin/forumstats run $(ARGS)

test: $(VENV)/.test-installed
	@# Chromium for the dashboard's browser test: installed when running as root (CI);
	@# elsewhere the test says how to install it and skips, unless CI is set.
	-bash scripts/ensure-chromium
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.test-installed
	$(PY) bench/run_all.py

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests topologies bench

clean:
	rm -rf $(VENV) output
