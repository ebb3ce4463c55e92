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

.PHONY: demo test setup check-prereqs typecheck lint docs clean pybamm-setup pybamm-cells hil-virtual hil-chip

demo: setup
	$(BIN)/cellguard demo --force

# The suite includes the PyBaMM plant's tests, so it installs PyBaMM too (~25 s).
# Two workers (pytest-xdist) beside the HIL suites that run in their own processes
# (tests/hil_background.py): both cores stay busy. The 25 slowest are listed at
# the end, so a CI log says where its time went.
test: setup pybamm-setup
	$(BIN)/python -m pytest -n 2 --durations=25

# The whole HIL suite on the virtual Pico and ESP32 (real MicroPython, the
# firmware on their flash, the plant on their pins; docs/hil.md). Slow: the SoC
# cycle is about 80 minutes of board time. `make test` runs a subset
# (tests/test_hil_virtual.py).
HIL_SPEED ?= 20
hil-virtual: setup
	$(BIN)/python -m pytest hil_tests -p no:cacheprovider -q --virtual --board pico-4s --sim-speed $(HIL_SPEED)
	$(BIN)/python -m pytest hil_tests -p no:cacheprovider -q --virtual --board esp32-4s --sim-speed $(HIL_SPEED)

# The whole HIL suite on the 16S chip board under MicroPython, locked, the SoC full
# cycle included (make test runs that cycle with the firmware under CPython).
hil-chip: setup
	$(BIN)/python -m pytest hil_tests -p no:cacheprovider -q --board sim-bq76952-16s --locked

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

# The command reference, generated from the parser (tests/test_cli_reference.py
# fails while it is stale), and docs/protection.md's tables from spec/safety.toml
# (tests/test_safety_spec.py fails while they are stale).
docs: setup
	$(BIN)/python tools/gen_cli_reference.py
	$(BIN)/python tools/gen_safety_docs.py

# PyBaMM (DFN reference traces, host/cellguard/pybamm_traces.py, the PyBaMM plant
# of `cellguard sim --plant pybamm`) into the same .venv: `make test` runs its
# tests; `make demo` does not need it.
pybamm-setup: $(VENV)/.pybamm-installed

$(VENV)/.pybamm-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[dev,pybamm]"
	touch $@

# The PyBaMM-fitted cells in cells/: pulse (HPPC) and low-rate (C/20; C/50 for
# the sodium-ion cell) traces of the DFN at each ambient (cached: a rerun takes
# seconds), then `cellguard characterize`.
PYBAMM_AMBIENTS := 0 10 25 45
PYBAMM_TRACES := build/pybamm
PYBAMM_FIT_PROFILES := hppc low_rate low_rate_charge
pybamm_inputs = $(foreach t,$(PYBAMM_AMBIENTS),$(foreach p,$(PYBAMM_FIT_PROFILES),\
	--input $(PYBAMM_TRACES)/$(1)-$(p)-$(t)C.csv))

pybamm-cells: pybamm-setup
	$(BIN)/python -m cellguard.estimation.pybamm_traces --cell chen2020 prada2013 chayambuka2022 \
		--profile $(PYBAMM_FIT_PROFILES) --ambient $(PYBAMM_AMBIENTS) \
		--out-dir $(PYBAMM_TRACES) --force
	$(BIN)/cellguard characterize --force --chemistry nmc --capacity-ah 5.0 \
		--name "LG M50 (PyBaMM Chen2020), fitted" $(call pybamm_inputs,chen2020) \
		--out cells/lg-m50-chen2020.json
	$(BIN)/cellguard characterize --force --chemistry lfp --capacity-ah 2.3 \
		--name "A123 ANR26650 (PyBaMM Prada2013), fitted" $(call pybamm_inputs,prada2013) \
		--out cells/a123-26650-prada2013.json
	$(BIN)/cellguard characterize --force --chemistry sodium_ion --capacity-ah 1.8 \
		--name "NVPF 26700 (PyBaMM Chayambuka2022, scaled), fitted" \
		$(call pybamm_inputs,chayambuka2022) --out cells/nvpf-26700-chayambuka2022.json

# The on-board SoC estimator (EKF and the coulomb baseline) against PyBaMM DFN
# ground truth through the board's sensor model: benchmarks/README.md. Runs
# PyBaMM on first use (cached), then about a minute.
.PHONY: bench-accuracy mutation
bench-accuracy: pybamm-setup
	$(BIN)/python benchmarks/estimator_accuracy.py

clean:
	rm -rf $(VENV) node_modules .stubs demo .pytest_cache .hypothesis

# Mutation testing of the safety path (docs/mutation.md): mutmut, pinned in the
# dev extras, runs in a temporary copy of the repository (the working tree is
# never mutated); one worker; prints mutants, killed, survived, timeout and
# equivalent per module. MUTATION_ARGS, e.g. "--module contactor".
mutation: setup
	$(BIN)/python tools/mutation.py $(MUTATION_ARGS)
