PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.installed

.PHONY: run test lint bench sim clean

# `make run` needs the runtime dependencies only; tests, lint and benchmarks add the dev tools.
$(RUNTIME): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(RUNTIME)
	$(BIN)/zhongshu up

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/zhongshu bench --nodes 1 --suite sm --txs 20000
	$(BIN)/zhongshu bench --nodes 1 --suite intl --txs 30000
	# Four nodes share the two cores: 4 requests in flight (8 overload them; docs/performance.md).
	$(BIN)/zhongshu bench --nodes 4 --suite sm --txs 8000 --concurrency 4
	$(BIN)/zhongshu bench --nodes 4 --suite intl --txs 12000 --concurrency 4
	# The hub: chain creation time, access overhead, five chains at once (docs/performance.md).
	$(BIN)/zhongshu bench --hub --suite sm --txs 6000 --concurrency 4
	# The state map's cost (issue 9): one node, the same load with the map on and off in turn.
	$(BIN)/zhongshu bench --nodes 1 --suite sm --txs 20000 --state-map-compare

sim: $(STAMP)
	SIM_SEEDS=$(or $(SEEDS),10000) $(BIN)/pytest tests/test_simulation.py -q -s

clean:
	rm -rf $(VENV) build *.egg-info
