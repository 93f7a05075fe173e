# InstaShop DWH — the two commands are `make demo` and `make test`; the rest operate the stack.
SHELL := /bin/bash
.DEFAULT_GOAL := help

INSTASHOP := .venv/bin/instashop
PYTEST := .venv/bin/pytest
RUFF := .venv/bin/ruff
MYPY := .venv/bin/mypy

.PHONY: help setup up down status logs clean demo test unit bench chaos lint lock

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: ## Install packages, venvs and jars (idempotent, cached outside the clone); write .env once
	@bash setup/setup.sh

# Both PostgreSQL clusters (shop, warehouse) and their migrations first: the supervisor (Airflow)
# may register the connector, whose publication the migrations create. Then every Kafka topic,
# before any reader subscribes.
up: setup ## Start every service, wait until healthy, apply schema migrations, create topics (safe to run twice)
	@$(INSTASHOP) stack up postgres-shop postgres-dwh
	@$(INSTASHOP) db migrate
	@$(INSTASHOP) partitions ensure
	@$(INSTASHOP) stack up
	@$(INSTASHOP) topics ensure

down: ## Stop the pipeline jobs and every service; data is kept
	@if [ -x $(INSTASHOP) ] && [ -f .env ]; then $(INSTASHOP) jobs stop; fi
	@$(INSTASHOP) stack down

status: ## Tables of services (port, pid, health) and pipeline jobs
	@$(INSTASHOP) jobs status
	@$(INSTASHOP) stack status

logs: ## Last lines of every service log (make logs SERVICE=kafka FOLLOW=1)
	@$(INSTASHOP) stack logs $(SERVICE) $(if $(FOLLOW),--follow)

clean: ## Stop and delete all data and logs (asks first unless FORCE=1)
	@if [ -x $(INSTASHOP) ] && [ -f .env ]; then $(INSTASHOP) jobs stop; fi
	@$(INSTASHOP) stack clean

demo: up ## Everything up: connector, consumer, Spark app, generator; then print URLs and logins
	@$(INSTASHOP) connector register
	@$(INSTASHOP) jobs start
	@$(INSTASHOP) stack urls

test: up ## The whole test suite against the real services: lint, unit, then integration, then browser
	@$(MAKE) --no-print-directory lint
	@$(PYTEST) tests/unit tests/integration tests/e2e

unit: setup ## The fast lane (~1 min, no services): lint and the unit tests
	@$(MAKE) --no-print-directory lint
	@$(PYTEST) tests/unit

bench: up ## Benchmarks (12-16 min): tables printed, JSON + PNG charts saved under var/bench/
	@$(INSTASHOP) connector register
	@$(INSTASHOP) jobs stop generator
	@$(INSTASHOP) jobs start consumer spark
	@.venv/bin/python -m benchmarks.generator_rate
	@.venv/bin/python -m benchmarks.consumer_throughput
	@.venv/bin/python -m benchmarks.e2e_latency
	@.venv/bin/python -m benchmarks.warehouse_queries
	@.venv/bin/python -m benchmarks.setup_timing  # last: it restarts the whole stack
	@.venv/bin/python -m benchmarks.summary

chaos: demo ## Fault-injection soak (~10 min): kill and restart each piece under load, then diff; var/bench/chaos.json
	@$(INSTASHOP) chaos

lint: setup ## ruff (lint and format) and mypy (plugins/, dags/)
	@$(RUFF) check .
	@$(RUFF) format --check .
	@$(MYPY)

lock: ## Re-resolve requirements.txt and superset/requirements.txt from their .in files
	@uv=$$(ls -d $${INSTASHOP_CACHE:-$$HOME/.cache/instashop}/tools/uv-*/bin/uv | tail -1); \
	$$uv pip compile -q --native-tls --python-version 3.11 --python-platform x86_64-unknown-linux-gnu requirements.in -o requirements.txt && \
	$$uv pip compile -q --native-tls --python-version 3.11 --python-platform x86_64-unknown-linux-gnu superset/requirements.in -o superset/requirements.txt
