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

.PHONY: install install-test system-deps run test lint typecheck pytest bench clean

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
	@test -f $(DATA)/node.toml || { \
	  $(BIN)/examnode init --data $(DATA) --center $(CENTER) --name "$$(hostname)" && \
	  $(BIN)/examnode createsuperuser --data $(DATA) --username admin --generate; }
	$(BIN)/examnode run --data $(DATA)

# The cluster tests need `ip` (network namespaces) and `unshare`; install them when
# missing and we are root (as in CI); otherwise say what is missing.
system-deps:
	@missing=""; for c in ip unshare; do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 util-linux; \
	  else echo "missing:$$missing (install iproute2 and util-linux as root)"; exit 1; fi; \
	fi

lint: install-test
	$(BIN)/ruff check node tests bench
	$(BIN)/mypy

pytest: install-test system-deps
	$(BIN)/python -m pytest

test: lint pytest

bench: install-test
	PYTHONPATH=. $(BIN)/python bench/store.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
