# ROP Hub. From a fresh clone with Python 3.11+, make and a C compiler:
#   make run          creates .venv, installs the hub and its plugins, migrates, seeds a demo, serves
#   make test         creates .venv if needed, installs the locked dependencies, runs the whole suite
#   make lock         re-resolves requirements.lock from setup.cfg's ranges (newest allowed versions)
#   make test-latest  the suite in .venv-latest, with the newest versions setup.cfg allows (drift check)
#   make fuzz         schemathesis over the whole OpenAPI against a running hub (bench/fuzz_api.py)
#   make chaos        the fault suite (bench/chaos.py): a running hub under purchases, one fault after another
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LATEST ?= .venv-latest
TOOLS  ?= .venv-tools
PLUGINS := $(wildcard plugins/*/setup.cfg)
LOCAL  := -e . $(foreach p,$(PLUGINS),-e $(patsubst %/,%,$(dir $(p))))
STAMP  := $(VENV)/.installed
PORT   ?= 5000
PYTEST_ARGS ?=
# The suite in parallel processes (pytest-xdist), each with its own database and Redis; 0: one.
TEST_WORKERS ?= 4
FUZZ_ARGS ?=
CHAOS_ARGS ?=
# uv resolves the universal lock (every Python >= 3.11, every platform) with hashes.
UV_VERSION := 0.13.9

.PHONY: install run test fuzz chaos lint lock test-latest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The locked third-party packages, each checked against its hash, then the hub and its plugins
# themselves (editable, no dependencies, built with the locked setuptools: nothing unpinned).
$(STAMP): $(BIN)/python requirements.lock setup.cfg setup.py pyproject.toml $(PLUGINS)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation $(LOCAL)
	touch $@

install: $(STAMP)

run: install
	$(BIN)/rop db upgrade
	$(BIN)/rop demo
	$(BIN)/rop up --port $(PORT)

test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

fuzz: install
	$(BIN)/python bench/fuzz_api.py $(FUZZ_ARGS)

chaos: install
	$(BIN)/python bench/chaos.py $(CHAOS_ARGS)

lint: install
	$(BIN)/ruff check hub admin migrations plugins tests bench

$(TOOLS)/bin/uv:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

lock: $(TOOLS)/bin/uv
	$(TOOLS)/bin/uv pip compile requirements.in --universal --python-version 3.11 --generate-hashes \
	  --upgrade --quiet --no-emit-package rop-hub $(foreach p,$(PLUGINS),--no-emit-package $(shell \
	  sed -n 's/^name *= *//p' $(p))) --output-file requirements.lock
	@echo "requirements.lock written; run 'make test' before committing it"

# Not part of CI (an upstream release must not block every submission): run it before resolving.
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade --upgrade-strategy eager \
	  -e ".[test,postgres]" $(foreach p,$(PLUGINS),-e $(patsubst %/,%,$(dir $(p))))
	$(LATEST)/bin/python -m pip list --format=freeze --disable-pip-version-check > $(LATEST)/versions.txt
	@echo "newest allowed versions: $(LATEST)/versions.txt"
	$(LATEST)/bin/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(LATEST) $(TOOLS) .pytest_cache build *.egg-info
