# The two entry points a newcomer needs; each sets itself up on first use.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,ray,flow]"
	touch $(STAMP)

install: $(STAMP)

## The main job on embedded defaults: a synthetic world, decoded once into shards.
demo: $(STAMP)
	$(BIN)/avlearn demo --out runs/demo

## The whole test suite, slow tests included, two at a time (3.8 min measured on 2 cores, 2026-12-06; `make test-fast` skips the slow ones).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q -n 2 --dist loadgroup

## Lint, format check, types and the layering contracts (CI runs it before the tests).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf runs .pytest_cache
