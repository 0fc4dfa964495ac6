# Every target with a '##' comment is listed by `make help` (the default).
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.DEFAULT_GOAL := help
.PHONY: help setup run test test-unit lint typecheck format kafka-jars model benchmarks clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}'

$(BIN)/sentiment-monitor: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip uv
	VIRTUAL_ENV=$(VENV) $(BIN)/uv pip install -q -e '.[dev]'
	@touch $@

setup: $(BIN)/sentiment-monitor ## Create .venv and install the project with its dev tools

run: setup ## Set up, then run the embedded default (replay 20,000 synthetic reviews)
	$(BIN)/sentiment-monitor run

kafka-jars: ## Fetch the Apache Kafka broker jars from Maven Central (cached)
	bash deploy/kafka/fetch-jars.sh

test: setup kafka-jars lint typecheck ## Set up, then lint, type-check and run every test
	$(BIN)/pytest

test-unit: setup ## Only the fast pure unit tests
	$(BIN)/pytest tests/unit

lint: setup ## ruff lint and format check, import layering contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: setup ## mypy --strict over every package and the tests
	$(BIN)/mypy

format: setup ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

model: setup ## Rebuild the shipped model from ../shared/data/reviews.csv (or DATA=path)
	$(BIN)/sentiment-monitor model train --data $${DATA:-../shared/data/reviews.csv}

benchmarks: setup kafka-jars ## Run every benchmark (prints ratios measured in one run)
	for b in benchmarks/*.py; do echo "== $$b"; PYTHONPATH=$(CURDIR) $(BIN)/python $$b || exit 1; done

clean: ## Remove the local lake, alert log and caches
	rm -rf lake alerts.jsonl .pytest_cache .mypy_cache .ruff_cache
