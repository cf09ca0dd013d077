# Build and test entry points for mizaic_processor. `make check` runs everything CI runs.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := check
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
PYTEST_ARGS ?= -q
LINT_PATHS := $(wildcard src tests examples bench)

.PHONY: venv node_modules test lint check demo bench clean distclean

## venv: the Python virtual environment with the package (editable) and the dev tools
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@if [ ! -x "$(VPY)" ]; then \
	  if ! command -v "$(PYTHON)" >/dev/null 2>&1; then \
	    echo "error: $(PYTHON) not found; install Python >= 3.11 (or run make PYTHON=/path/to/python3.11)" >&2; \
	    exit 1; \
	  fi; \
	  if ! "$(PYTHON)" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
	    echo "error: $(PYTHON) is Python $$("$(PYTHON)" -c 'import platform; print(platform.python_version())'); mizaic_processor needs >= 3.11 (run make PYTHON=/path/to/python3.11)" >&2; \
	    exit 1; \
	  fi; \
	  "$(PYTHON)" -m venv "$(VENV)"; \
	fi
	@if ! "$(VPY)" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
	  echo "error: $(VENV) uses Python < 3.11; remove it (make distclean) and run make PYTHON=/path/to/python3.11" >&2; \
	  exit 1; \
	fi
	$(VPY) -m pip install --disable-pip-version-check --quiet --upgrade pip
	$(VPY) -m pip install --disable-pip-version-check --quiet -e '.[dev]'
	@touch "$@"

## node_modules: Azurite (the local Azure Storage emulator) from package-lock.json
node_modules: node_modules/.installed

node_modules/.installed: package-lock.json package.json
	@if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Node.js/npm not found; installing them with apt-get" >&2; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm; \
	  else \
	    echo "error: Node.js and npm are needed for Azurite (Debian/Ubuntu: sudo apt-get install -y nodejs npm)" >&2; \
	    exit 1; \
	  fi; \
	fi
	npm ci --no-audit --no-fund
	@touch "$@"

## test: the whole pytest suite (unit and Azurite-backed integration tests)
test: venv node_modules
	$(VPY) -m pytest $(PYTEST_ARGS)

## lint: ruff and mypy (strict)
lint: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy

## check: lint and test
check: lint test

## demo: run examples/quickstart.py against a throw-away Azurite
demo: venv node_modules
	$(VPY) -m mizaic_processor.testing run -- $(VPY) examples/quickstart.py

## bench: the benchmarks in bench/ (not part of make test); BENCH_ARGS="--quick" for a smoke run
BENCH_ARGS ?=
bench: venv node_modules
	$(VPY) -m pip install --disable-pip-version-check --quiet -e '.[bench]'
	$(VPY) -m bench $(BENCH_ARGS)

## clean: caches and build output (keeps .venv and node_modules)
clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis .azurite
	find . -path ./.venv -prune -o -path ./node_modules -prune -o \
	  \( -name __pycache__ -o -name '*.egg-info' \) -type d -print0 | xargs -0 rm -rf

## distclean: clean, and remove .venv and node_modules too
distclean: clean
	rm -rf $(VENV) node_modules
