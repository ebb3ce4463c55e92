# cellguard: two commands on a fresh machine (Python 3.11+, Node 18+).
#   make demo   simulated board -> logged data -> summary and plot
#   make test   the whole test suite (what CI runs)
# Each sets itself up: .venv (pip install -e .[dev]), node_modules (npm ci),
# firmware type-check stubs (.stubs). Re-running is cheap: stamps skip done work.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STUBS_VERSION := 1.29.0.post1
STDLIB_STUBS_VERSION := 1.29.0.post2

.PHONY: demo test setup check-prereqs typecheck lint clean

demo: setup
	$(BIN)/cellguard demo

test: setup
	$(BIN)/python -m pytest

setup: check-prereqs $(VENV)/.installed node_modules/.installed .stubs/.installed

check-prereqs:
	@$(PYTHON) tools/check_prereqs.py

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# MicroPython stubs for type-checking the firmware, one folder per port
# (both define `machine`, so they cannot share one environment).
.stubs/.installed: Makefile $(VENV)/.installed
	rm -rf .stubs
	$(BIN)/python -m pip install --quiet --no-compile --target .stubs/rp2 \
		micropython-rp2-stubs==$(STUBS_VERSION) micropython-stdlib-stubs==$(STDLIB_STUBS_VERSION)
	$(BIN)/python -m pip install --quiet --no-compile --target .stubs/esp32 \
		micropython-esp32-stubs==$(STUBS_VERSION) micropython-stdlib-stubs==$(STDLIB_STUBS_VERSION)
	mkdir -p .stubs/novenv/lib/site-packages
	touch $@

typecheck: setup
	node_modules/.bin/pyright -p tools/pyright/rp2.json
	node_modules/.bin/pyright -p tools/pyright/esp32.json

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) node_modules .stubs demo .pytest_cache .hypothesis
