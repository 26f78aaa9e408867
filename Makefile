# Two commands for a fresh machine with Python 3.11 and make:
#   make demo   create .venv, install, start the simulated bench, run a procedure, sign and verify a report
#   make test   the full test suite, then the branch-coverage check of the safety-critical modules
#   make test-stress  the suite 3 times under two CPU hogs (docs/testing.md)
#   make serve  the bench service and operator panel on the station in ./rig.toml (open the printed URL)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-stress serve coverage bench bench-full clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m rig.cli.demo

serve: $(STAMP)
	$(BIN)/rig serve

# the suite, once, under coverage.py (only the safety-critical modules are measured, every Python
# child counted), then the branch coverage of those modules against their enforced levels, naming
# every branch never taken (tests/coverage_check.py, docs/testing.md); fails if either fails.
# --dist loadfile: a module's tests on one worker, so a module-scoped fixture (one finished run
# shared by its asserts) is built once, not once per worker (docs/testing.md)
test: $(STAMP)
	rm -f .coverage .coverage.*
	RIG_COVERAGE_DATA=$(CURDIR)/.coverage $(BIN)/python -m pytest -n 2 --dist loadfile -q --cov --cov-report=
	$(BIN)/python tests/coverage_check.py

# kept for habit: the same as `make test`
coverage: test

# the whole suite 3 times in a row while two `python -c 'while 1: pass'` keep both cores busy (docs/testing.md)
test-stress: $(STAMP)
	$(BIN)/python tests/stress.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

bench-full: $(STAMP)
	$(BIN)/python -m benchmarks.run_all --full

clean:
	rm -rf $(VENV) runs demo-out .pytest_cache .coverage .coverage.*
