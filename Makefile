# The commands the README shows. Everything installs itself into .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test check bench bench-scale clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## run: embedded gateway (SQLite) + fake upstream + seeded demo platform; prints keys and examples
run: $(BIN)/.installed
	$(BIN)/tollway demo

## test: the whole suite (unit, integration on SQLite and PostgreSQL, end-to-end with the openai SDK)
test: $(BIN)/.installed
	$(BIN)/pytest

## check: lint, format check, strict typing and the layering contracts of pyproject.toml (import-linter)
check: $(BIN)/.installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

## bench: added latency and throughput of Tollway against direct-to-upstream; writes docs/performance.md
bench: $(BIN)/.installed
	$(BIN)/python bench/run.py

## bench-scale: Redis against in-process rate limits, and 1 against 2 workers (PostgreSQL + Redis)
bench-scale: $(BIN)/.installed
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
