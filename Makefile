# The commands the README shows. Everything installs itself into .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test faults check bench bench-scale clean

$(BIN)/.installed: pyproject.toml sdk/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e sdk/python
	touch $@

# `make run` needs Tollway alone: no dev tools, no SDK (test, check and bench install those).
$(BIN)/.installed-run: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

## run: embedded gateway (SQLite) + fake upstream + seeded demo platform; prints keys and examples.
## The port is TOLLWAY_PORT (default 8080): `TOLLWAY_PORT=8081 make run`, or `make run ARGS="--port 8081"`
## (`tollway demo --help` lists --port, --upstream-port and --data-dir).
run: $(BIN)/.installed-run
	$(BIN)/tollway demo $(ARGS)

## test: the whole suite (unit, integration on SQLite and PostgreSQL, end-to-end with the openai SDK, and the SDK's
## tests in sdk/python/tests against a live Tollway), with branch
## coverage of src/tollway (in-process and the `tollway` processes the tests start; see [tool.coverage.run]).
## The floor is the measured total minus one point: raise it when coverage rises.
COVERAGE_FLOOR := 92  # measured 93.2 % (statements and branches, whole suite with PostgreSQL, Redis, Node and the browser) on 2026-12-07
NODE_CLIENTS := tests/clients/node
test: $(BIN)/.installed $(NODE_CLIENTS)/node_modules/.installed
	$(BIN)/pytest --cov=tollway --cov-report=term-missing:skip-covered --cov-fail-under=$(COVERAGE_FLOOR)

## faults: the fault suite (tests/faults, issue 21) three passes in a row on PostgreSQL + Redis, printing its
## figures as it runs (`make test` runs one pass)
faults: $(BIN)/.installed
	TOLLWAY_FAULT_RUNS=3 TOLLWAY_REQUIRE_POSTGRES=1 TOLLWAY_REQUIRE_REDIS=1 $(BIN)/pytest tests/faults -p no:cacheprovider

# The Node clients of the client matrix, when npm is there (without it their tests are skipped loudly).
$(NODE_CLIENTS)/node_modules/.installed: $(NODE_CLIENTS)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(NODE_CLIENTS) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: the Node client tests will be skipped (apt-get install -y nodejs npm)"; fi

## check: lint, format check, strict typing and the layering contracts of pyproject.toml (import-linter); then the
## same for the SDK (sdk/python, its own pyproject.toml)
check: $(BIN)/.installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	cd sdk/python && ../../$(BIN)/ruff check src tests scripts && ../../$(BIN)/ruff format --check src tests scripts && ../../$(BIN)/mypy

## bench: added latency and throughput of Tollway against direct-to-upstream; writes docs/performance.md
bench: $(BIN)/.installed
	$(BIN)/python bench/run.py

## bench-scale: Redis against in-process rate limits; one platform with 1,000 end users, wrk over 50 of their keys
## beside one, on embedded SQLite and on PostgreSQL + Redis with 1, 2 and 4 instances, and the wallet row's lock hold
## time (about 6 minutes; writes bench/results/scale.json and docs/performance.md; without the PostgreSQL or Redis
## binaries it says so and measures SQLite only)
bench-scale: $(BIN)/.installed
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* htmlcov
