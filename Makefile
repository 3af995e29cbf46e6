# Two commands do all set-up: `make demo` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-unit bench lint lab-up lab-down clean

setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(VENV)/bin/draas demo

test: setup
	$(VENV)/bin/pytest

test-unit: setup
	$(VENV)/bin/pytest -m unit

bench: setup
	rm -f bench/results.json
	$(PY) -m benchmarks.lab_bench
	$(PY) -m benchmarks.core_bench
	$(PY) -m benchmarks.recovery_bench
	$(PY) -m benchmarks.gateway_bench
	@echo "figures: bench/results.json"

lint: setup
	$(VENV)/bin/ruff check .

lab-up: setup
	$(VENV)/bin/draas lab up

lab-down:
	$(VENV)/bin/draas lab down

clean:
	rm -rf build .lab $(VENV)
