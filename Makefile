# examnode: two commands set everything up on a fresh machine.
#   make run   - install (once), initialise ./data as centre DEMO (once), serve on 127.0.0.1:8700
#   make test  - install with test tools (once), lint, type-check and run the whole suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= data
CENTER ?= DEMO
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: install install-test run test lint typecheck pytest bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "examnode needs Python 3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

install-test: $(TSTAMP)

$(TSTAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

run: install
	@test -f $(DATA)/node.toml || $(BIN)/examnode init --data $(DATA) --center $(CENTER) --name "$$(hostname)"
	$(BIN)/examnode run --data $(DATA)

lint: install-test
	$(BIN)/ruff check node tests bench
	$(BIN)/mypy

pytest: install-test
	$(BIN)/python -m pytest

test: lint pytest

bench: install-test
	$(BIN)/python bench/store.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
