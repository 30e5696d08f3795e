# The two commands a newcomer needs: `make run` (the whole system) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/

.PHONY: help venv run test test-setup lint screenshots docs check mutate bench bench-builtins bench-parse soak clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed ## create the virtual environment and install the project

run: venv ## run the whole system (ingress on :8080, router, worker with the log consumer)
	CALLBACK_FANOUT_AMQP_URL=$${CALLBACK_FANOUT_AMQP_URL:-$(AMQP_URL)} \
	  $(VENV)/bin/callback-fanout run --consumer $${CONSUMER:-log}

test: venv test-setup ## run the test suite against the broker at AMQP_URL (after test-setup)
	$(PY) -m pytest

test-setup: ## find or install what the tests need: RabbitMQ, PostgreSQL, Redis, prometheus, chromium
	bash .ci/setup

lint: venv ## ruff and mypy (strict)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

screenshots: venv test-setup ## the console's screenshots in docs/console/, taken by its tests
	CALLBACK_FANOUT_SCREENSHOTS=docs/console $(PY) -m pytest tests/console -q

docs: venv ## build the documentation into site/ (strict: a broken link or include fails)
	$(VENV)/bin/mkdocs build --strict --quiet

check: lint docs test ## what CI runs

mutate: venv ## mutation testing of the five core modules on the fast tests, ~5 min (not CI); MUTATE_CHILDREN=2
	$(PY) -m tests.unit.mutate $(ARGS)

bench: venv ## ingress, router, worker against baselines, ~10 min; ARGS=--quick ~3 min, ARGS="--section e2e" one part
	$(PY) bench/ingress_bench.py $(ARGS)

bench-builtins: venv ## built-in consumers: archive (PostgreSQL) and forward events/s, ~2 min
	$(PY) bench/builtins_bench.py $(ARGS)

bench-parse: venv ## parser throughput on one core
	$(PY) bench/parse_bench.py

soak: venv ## soak run with faults injected (DURATION seconds, default 600)
	$(PY) bench/soak.py --duration $${DURATION:-600}

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache site mutants
