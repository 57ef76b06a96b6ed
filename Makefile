# Lotline's entry points. `make run` starts everything; `make test` runs every test.
SHELL := /bin/bash
UV ?= uv
RUN := $(UV) run --frozen
SERVICES := catalog stock serial-registry recall
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help sync demo infra-up infra-down infra-status infra-reset run stop test test-unit bench chaos lint format schemas schemas-check

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

sync: ## Install the workspace from the lockfile
	$(UV) sync --frozen

infra-up: sync ## Start Kafka (KRaft) and FerretDB locally, create topics (cached builds)
	$(RUN) python -m lotline.devstack up

infra-down: ## Stop the local Kafka and FerretDB started by infra-up
	$(RUN) python -m lotline.devstack down

infra-status: ## Show what the local stack runs
	$(RUN) python -m lotline.devstack status

infra-reset: ## Stop the local stack and delete its data
	$(RUN) python -m lotline.devstack reset

run: infra-up ## Start the infrastructure and the four services (logs in .run/)
	$(RUN) python -m lotline.devstack services up

demo: ## Play a store day against the running Lotline
	$(RUN) lotline demo

stop: ## Stop the four services started by `make run`
	$(RUN) python -m lotline.devstack services down

test: sync ## Run every test (unit, integration, end-to-end) against real Kafka and FerretDB
	$(RUN) ruff check .
	$(RUN) python -m lotline.events.schemas check
	$(RUN) python -m lotline.events.asyncapi check
	$(RUN) pytest $(PYTEST_ARGS)

test-unit: sync ## Run the tests that need no infrastructure
	$(RUN) pytest tests/unit $(PYTEST_ARGS)

bench: sync ## Measure Lotline against this machine's own ceilings (BENCH_ARGS=--quick; BENCHMARKS.md)
	$(RUN) python -m lotline.bench $(BENCH_ARGS)

chaos: sync ## The full chaos suite: kill -9 services, Kafka and FerretDB mid-stream; nothing lost or doubled
	CHAOS_SCALE=full $(RUN) pytest tests/chaos -s $(PYTEST_ARGS)

lint: ## ruff lint and format check, mypy --strict on the contract and the domains
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy -p lotline.events -p lotline.runtime -p lotline.devstack -p lotline.cli -p lotline.bench \
		-m lotline.stock.domain -m lotline.serials.domain -m lotline.recall.domain \
		-m lotline.catalog.domain -m lotline.recall.auth -m lotline.stock.ledger \
		-m lotline.stock.expiry -m lotline.recall.timeline -m lotline.recall.epcis \
		-m lotline.recall.fsma

format: ## Format the code
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

schemas: ## Export the events' JSON Schemas and the services' AsyncAPI documents (commit them)
	$(RUN) python -m lotline.events.schemas export
	$(RUN) python -m lotline.events.asyncapi export
