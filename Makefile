# Apiary: the two commands of the README, and the checks CI runs.
#   make up     start Apiary on its embedded defaults (installs into .venv first)
#   make test   lint, type-check and run every test (installs into .venv first)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

export LITELLM_LOCAL_MODEL_COST_MAP := True

.PHONY: up test lint typecheck pytest bench-ingest clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

up: $(STAMP)
	$(BIN)/apiary up $(ARGS)

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check apiary tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench-ingest: $(STAMP)
	bench/ingest $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
