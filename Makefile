# ROP Hub. From a fresh clone with Python 3.11+, make and a C compiler:
#   make run    creates .venv, installs the hub and its plugins, migrates, seeds a demo, serves
#   make test   creates .venv if needed, installs the test extras, runs the whole suite
#   make fuzz   schemathesis over the whole OpenAPI against a running hub (bench/fuzz_api.py)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PLUGINS := $(wildcard plugins/*/setup.cfg)
STAMP  := $(VENV)/.installed
PORT   ?= 5000
PYTEST_ARGS ?=
FUZZ_ARGS ?=

.PHONY: install run test fuzz lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24" "setuptools>=68" wheel

$(STAMP): $(BIN)/python setup.cfg setup.py pyproject.toml $(PLUGINS)
	$(BIN)/python -m pip install --quiet -e ".[test,postgres]" $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $@

install: $(STAMP)

run: install
	$(BIN)/rop db upgrade
	$(BIN)/rop demo
	$(BIN)/rop up --port $(PORT)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

fuzz: install
	$(BIN)/python bench/fuzz_api.py $(FUZZ_ARGS)

lint: install
	$(BIN)/ruff check hub admin migrations plugins tests bench

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
