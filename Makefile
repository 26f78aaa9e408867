# Two commands for a fresh machine with Python 3.11 and make:
#   make demo   create .venv, install, start the simulated bench, run a procedure, sign and verify a report
#   make test   the full test suite
#   make test-stress  the suite 3 times under two CPU hogs (docs/testing.md)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-stress bench bench-full clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m rig.cli.demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

# the whole suite 3 times in a row while two `python -c 'while 1: pass'` keep both cores busy (docs/testing.md)
test-stress: $(STAMP)
	$(BIN)/python tests/stress.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

bench-full: $(STAMP)
	$(BIN)/python -m benchmarks.run_all --full

clean:
	rm -rf $(VENV) runs demo-out .pytest_cache
