# Dialtone. `make` alone lists the targets.
# The Makefile makes its own virtual environment in .venv and installs the pinned
# requirements into it; stamps make a second run instant.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP     := $(VENV)/.installed-dev
BENCH_STAMP   := $(VENV)/.installed-bench

.DEFAULT_GOAL := help
.PHONY: help install install-dev serve dev sandbox phone restore webhooks history migrate test fuzz lint format bench clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Dialtone needs Python 3.11 or newer; this is " + sys.version.split()[0] + ". Run make PYTHON=python3.12 (or another 3.11+ interpreter).")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip

# The pinned requirements first (the lock file), then Dialtone itself, editable and without
# dependencies: .venv/bin/dialtone runs this checkout's code. (-qq: setuptools warns about every
# editable install; errors still show.)
$(RUNTIME_STAMP): requirements.txt pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -qq --disable-pip-version-check --no-deps -e .
	@touch $@

$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

$(BENCH_STAMP): $(RUNTIME_STAMP) requirements-bench.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	@touch $@

install: $(RUNTIME_STAMP) ## create .venv, install the runtime requirements and the dialtone command

install-dev: $(DEV_STAMP) ## also install the test and lint requirements

serve: $(RUNTIME_STAMP) ## serve the app on waitress (HOST, PORT from .env or the environment)
	$(BIN)/dialtone serve $(ARGS)

dev: $(RUNTIME_STAMP) ## the dev loop: serve with reload, tunnel, point the number, restore on exit
	$(BIN)/dialtone dev $(ARGS)

sandbox: $(RUNTIME_STAMP) ## run the local sandbox alone (ARGS="--app http://127.0.0.1:5000" points its number)
	$(BIN)/dialtone sandbox $(ARGS)

phone: $(RUNTIME_STAMP) ## the terminal phone: text and call the sandbox number (ARGS="--sandbox URL")
	$(BIN)/dialtone phone $(ARGS)

restore: $(RUNTIME_STAMP) ## put the number back from make dev's backup (or FILE=backup.json)
	$(BIN)/dialtone restore $(if $(FILE),--file "$(FILE)") $(ARGS)

webhooks: $(RUNTIME_STAMP) ## point the number at a deployed Dialtone: make webhooks URL=https://... [ARGS=--dry-run]
	@test -n "$(URL)" || { echo "Usage: make webhooks URL=https://bot.example.com [ARGS=--dry-run]"; exit 2; }
	$(BIN)/dialtone webhooks "$(URL)" $(ARGS)

history: $(RUNTIME_STAMP) ## recent conversations from the record (ARGS="--number +1555... --limit 5")
	$(BIN)/dialtone history $(ARGS)

migrate: $(RUNTIME_STAMP) ## create or migrate the record (DATABASE_URL or DATABASE_PATH), then exit
	$(BIN)/dialtone migrate $(ARGS)

test: $(DEV_STAMP) ## run the test suite (no network, no account needed)
	$(PY) -m pytest $(PYTEST_ARGS)

fuzz: $(DEV_STAMP) ## fuzz the webhook and API routes longer than make test does (FUZZ_EXAMPLES=2000)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-2000} $(PY) -m pytest tests/app/test_fuzz.py --timeout=900 $(PYTEST_ARGS)

lint: $(DEV_STAMP) ## ruff (lint and format check), mypy and the import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache --no-logo

format: $(DEV_STAMP) ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(BENCH_STAMP) ## throughput, latency, memory vs Flask/gunicorn, on loopback (ARGS=--quick)
	$(PY) -m bench.run $(ARGS)

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache *.egg-info build
