# Apiary: the two commands of the README, and the checks CI runs.
#   make up     start Apiary on its embedded defaults (installs into .venv first)
#   make test   lint (ruff, the import contract), type-check and run every test (installs
#               into .venv first)
#   make compile / make uncompile   build (or delete) the mypyc-compiled ingest hot path;
#               up, test and bench-ingest build it when it is missing or stale
#   make proto  generate the federation stream's gRPC code (proto/ -> apiary/_generated,
#               never committed); the install step and every target below run it when stale
#   make ui     build the web UI (ui/: npm ci, OpenAPI types, tsc, vite build) into
#               apiary/control/webui/, which the control plane serves; up and test run it
#               when a source changed (up without Node: the API starts, the UI is skipped)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

export LITELLM_LOCAL_MODEL_COST_MAP := True

.PHONY: up test lint typecheck pytest system-deps bench-ingest clean compile uncompile ui ui-optional ui-test proto

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python scripts/build_proto.py --if-stale
	rm -f $(VENV)/.installed-* && touch $(STAMP)

proto: $(STAMP)
	$(BIN)/python scripts/build_proto.py --if-stale

compile: $(STAMP)
	$(BIN)/python scripts/compile.py --if-stale

uncompile:
	$(BIN)/python scripts/compile.py --clean

# The web UI's build is stale when its sources, its lock file or either plane's API (the
# OpenAPI specs its types are generated from) changed.
UI_INPUTS := $(shell find ui/src ui/public -type f -not -name '*.d.ts' 2>/dev/null) \
	ui/index.html ui/package.json ui/package-lock.json ui/tsconfig.json ui/vite.config.ts \
	scripts/build_ui.sh scripts/dump_openapi.py apiary/dataplane/app.py \
	$(shell find apiary/control/api apiary/web -name '*.py' 2>/dev/null) \
	$(shell find apiary/dataplane -name 'routes*.py' -o -name 'schemas*.py' 2>/dev/null)
UI_BUILT := apiary/control/webui/index.html

$(UI_BUILT): $(UI_INPUTS) | $(STAMP)
	scripts/build_ui.sh $(UI_FLAGS)

ui: $(UI_BUILT)

ui-optional: $(STAMP)
	@$(MAKE) --no-print-directory $(UI_BUILT) UI_FLAGS=--optional

# vitest: the UI's client logic (filters, the span tree, the waterfall, messages).
ui-test: $(UI_BUILT)
	cd ui && npx vitest run

up: $(STAMP) proto compile ui-optional
	$(BIN)/apiary up $(ARGS)

test: system-deps lint typecheck ui-test pytest

# The tests start real servers: redis-server comes from Debian; PostgreSQL 15's binaries
# (initdb, postgres) are part of this machine's image (/usr/local/bin).
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (apt-get)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@command -v initdb >/dev/null 2>&1 || test -x /usr/local/bin/initdb || { \
	  echo "PostgreSQL 15 binaries (initdb, postgres) are needed by the tests"; exit 1; }
	@test -x /usr/bin/chromium || { \
	  echo "installing chromium for the web UI's browser tests (apt-get)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@command -v node >/dev/null 2>&1 || { \
	  echo "Node.js 20 and npm are needed to build and test the web UI"; exit 1; }

# ruff, then the import contract ([tool.importlinter] in pyproject.toml: layers, private
# modules, no cycles) and its counterpart for private names.
lint: $(STAMP) proto
	$(BIN)/ruff check apiary tests bench scripts
	$(BIN)/lint-imports --no-logo
	$(BIN)/python scripts/check_private_names.py

typecheck: $(STAMP) proto
	$(BIN)/mypy

# Every test runs the compiled hot path; its unit tests run from source too (the form
# without a C compiler), so both stay correct.
FROM_SOURCE_TESTS := tests/dataplane/ingest/otlp tests/dataplane/enrich tests/store/test_rows.py tests/test_compiled.py \
	tests/dataplane/writer/test_poison_isolation.py

pytest: $(STAMP) proto compile $(UI_BUILT)
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	APIARY_FROM_SOURCE=1 $(BIN)/python -m pytest -q $(FROM_SOURCE_TESTS)

bench-ingest: $(STAMP) compile
	bench/ingest $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache build
	rm -rf ui/node_modules ui/generated apiary/control/webui test-artifacts
	find apiary -name '*.so' -delete; rm -f apiary/_compiled.json; rm -rf apiary/_generated
