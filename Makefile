# The one task runner. `make demo` and `make test` are the README's two commands: each first runs
# scripts/bootstrap.sh, which installs only what is missing (a second run installs nothing).
.DEFAULT_GOAL := help
VENV := .venv/bin

.PHONY: help setup demo test lint format bench

help:
	@echo "make demo   install what is missing, then run the whole system (doxa demo)"
	@echo "make test   install what is missing, then run the full test suite"
	@echo "make lint   ruff check, ruff format --check, mypy on protocols/ metering/ billing/"
	@echo "make bench  run the benchmarks and rewrite docs/benchmarks.md"

setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(VENV)/doxa demo $(DEMO_ARGS)

test: setup lint
	$(VENV)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

format: setup
	$(VENV)/ruff check --fix .
	$(VENV)/ruff format .

bench: setup
	$(VENV)/python -m bench $(BENCH_ARGS)
