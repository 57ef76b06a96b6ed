# Lotline's entry points. `make run` starts everything; `make test` runs every test.
SHELL := /bin/bash
# uv installs the workspace from the lockfile. On a machine without it, the first target
# that needs it installs it into ~/.local/bin, as CI does (`.ci/run`).
LOCAL_UV := $(HOME)/.local/bin/uv
UV ?= $(or $(shell command -v uv 2>/dev/null),$(LOCAL_UV))
RUN := $(UV) run --frozen
SERVICES := catalog stock serial-registry recall
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help sync demo infra-up infra-down infra-status infra-reset run stop test test-unit bench chaos lint format schemas schemas-check

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(LOCAL_UV):
	@echo "uv is not on PATH: installing it into $(HOME)/.local/bin (add that to PATH to use it yourself)"
	python3 -m pip install --user --quiet --disable-pip-version-check uv \
		|| python3 -m pip install --user --quiet --disable-pip-version-check --break-system-packages uv

sync: | $(UV) ## Install the workspace from the lockfile
	$(UV) sync --frozen

infra-up: sync ## Start Kafka (KRaft) and FerretDB locally, create topics (cached builds)
	$(RUN) python -m lotline.devstack up

infra-down: | $(UV) ## Stop the local Kafka and FerretDB started by infra-up
	$(RUN) python -m lotline.devstack down

infra-status: | $(UV) ## Show what the local stack runs
	$(RUN) python -m lotline.devstack status

infra-reset: | $(UV) ## Stop the local stack and delete its data
	$(RUN) python -m lotline.devstack reset

run: infra-up ## Start the infrastructure and the four services (logs in .run/)
	$(RUN) python -m lotline.devstack services up

demo: | $(UV) ## Play a store day against the running Lotline
	$(RUN) lotline demo

stop: | $(UV) ## Stop the four services started by `make run`
	$(RUN) python -m lotline.devstack services down

test: sync schemas-check ## Run every test (unit, integration, end-to-end) against real Kafka and FerretDB
	$(RUN) ruff check .
	$(RUN) pytest $(PYTEST_ARGS)

test-unit: sync ## Run the tests that need no infrastructure
	$(RUN) pytest tests/unit $(PYTEST_ARGS)

bench: sync ## Measure Lotline against this machine's own ceilings (BENCH_ARGS=--quick; BENCHMARKS.md)
	$(RUN) python -m lotline.bench $(BENCH_ARGS)

chaos: sync ## The full chaos suite: kill -9 services, Kafka and FerretDB mid-stream; nothing lost or doubled
	CHAOS_SCALE=full $(RUN) pytest tests/chaos -s $(PYTEST_ARGS)

lint: | $(UV) ## ruff lint and format check, mypy --strict on the contract and the domains
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy -p lotline.events -p lotline.runtime -p lotline.devstack -p lotline.cli -p lotline.bench \
		-m lotline.stock.domain -m lotline.serials.domain -m lotline.recall.domain \
		-m lotline.catalog.domain -m lotline.recall.auth -m lotline.stock.ledger \
		-m lotline.stock.expiry -m lotline.recall.timeline -m lotline.recall.epcis \
		-m lotline.recall.fsma -m lotline.recall.gs1

format: | $(UV) ## Format the code
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

schemas: | $(UV) ## Export the events' JSON Schemas and the services' AsyncAPI documents (commit them)
	$(RUN) python -m lotline.events.schemas export
	$(RUN) python -m lotline.events.asyncapi export

schemas-check: sync ## Fail if the committed JSON Schemas or AsyncAPI documents differ from the models
	$(RUN) python -m lotline.events.schemas check
	$(RUN) python -m lotline.events.asyncapi check
