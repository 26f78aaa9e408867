# Two commands for a fresh machine with Python 3.11 and make:
#   make demo   create .venv, install, start the simulated bench, run a procedure, sign and verify a report
#   make test   the full test suite
#   make test-stress  the suite 3 times under two CPU hogs (docs/testing.md)
#   make serve  the bench service and operator panel on the station in ./rig.toml (open the printed URL)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-stress coverage serve bench bench-full clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m rig.cli.demo

serve: $(STAMP)
	$(BIN)/rig serve

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

# the suite under coverage.py (child processes counted), then the branch coverage of the
# safety-critical modules against their enforced levels, naming every branch never taken (docs/testing.md)
coverage: $(STAMP)
	rm -f .coverage .coverage.*
	RIG_COVERAGE_DATA=$(CURDIR)/.coverage $(BIN)/python -m pytest -n 2 -q --cov --cov-report=
	$(BIN)/python tests/coverage_check.py

# the whole suite 3 times in a row while two `python -c 'while 1: pass'` keep both cores busy (docs/testing.md)
test-stress: $(STAMP)
	$(BIN)/python tests/stress.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

bench-full: $(STAMP)
	$(BIN)/python -m benchmarks.run_all --full

clean:
	rm -rf $(VENV) runs demo-out .pytest_cache .coverage .coverage.*
