# Every target runs through the project's own venv (dbt must be on PATH for dagster-dbt).
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
export ORDERWATCH_HOME ?= $(CURDIR)/.orderwatch
export DAGSTER_HOME ?= $(ORDERWATCH_HOME)/dagster
export PATH := $(BIN):$(PATH)

DEMO_ARGS ?= --days 14 --orders-per-day 200 --seed 7
MANIFEST := dbt_project/target/manifest.json
DBT_FILES := $(shell find dbt_project/models dbt_project/macros dbt_project/seeds dbt_project/tests -type f 2>/dev/null) \
	dbt_project/dbt_project.yml dbt_project/profiles.yml

.PHONY: install manifest demo replay test test-slow ui bench lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==24.3.1
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip check
	touch $(STAMP)

# dagster-dbt loads the manifest at import time; re-parse whenever the dbt project changes.
manifest: $(MANIFEST)
$(MANIFEST): $(STAMP) $(DBT_FILES)
	cd dbt_project && $(BIN)/dbt parse --profiles-dir . --quiet
	touch $(MANIFEST)

demo: $(STAMP) $(MANIFEST)
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/orderwatch simulate $(DEMO_ARGS)
	$(BIN)/orderwatch demo

# Re-read quarantined records after a parser fix: make replay REPLAY_ARGS="--feed carrier_trackers"
replay: $(STAMP) $(MANIFEST)
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/orderwatch replay-quarantine $(REPLAY_ARGS)

# Two workers; a shared world's tests share one (tests/conftest.py). PYTEST_WORKERS=0: one process.
# `make test` leaves out the tests marked slow (the 14-day reference world, the point-in-time and
# leakage proofs, each building worlds of its own); `make test-slow` runs those; .ci/run runs both.
PYTEST_WORKERS ?= 2
TEST_MARKS ?= not slow
test: $(STAMP) $(MANIFEST)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "$(TEST_MARKS)" $(PYTEST_ARGS)

test-slow: $(STAMP) $(MANIFEST)
	$(MAKE) test TEST_MARKS=slow

ui: $(STAMP) $(MANIFEST)
	mkdir -p $(DAGSTER_HOME)
	# --default-signal: a backgrounded `dagster dev` otherwise ignores SIGINT/SIGTERM.
	env --default-signal=INT,TERM $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: $(STAMP) $(MANIFEST)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(ORDERWATCH_HOME) dbt_project/target dbt_project/logs
