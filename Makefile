# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080
CONFIG ?=
BENCH_ARGS ?=

.PHONY: run test check install install-dev bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-dev: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'

run: install
	$(BIN)/interlock serve --host $(HOST) --port $(PORT) $(if $(CONFIG),--config $(CONFIG),)

check: install-dev
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: check
	$(BIN)/pytest

# Micro-benchmark (~2.5 min): gateway overhead over a mock upstream; see bench/README.md.
bench: install-dev
	$(BIN)/python bench/micro.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
