# node-lab developer commands. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
# hydra-core 1.3 needs Python < 3.14: take the first suitable interpreter on PATH.
PYTHON ?= $(shell for p in python3.11 python3.12 python3.10 python3.13 python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(not (3,10) <= sys.version_info[:2] < (3,14))' \
	&& { echo $$p; break; }; done)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The team's shared data folder, when it sits beside the repo; users set NODE_LAB_DATA themselves.
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)),)
export NODE_LAB_DATA ?= $(SHARED_DATA)
endif
ARGS ?=

PROFILE ?= quick
STUDY ?=

.PHONY: help install train test test-fast lint reproduce clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install node-lab with its dev extra (editable)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "node-lab needs Python 3.10-3.13 on PATH (hydra-core 1.3 fails on 3.14)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

train: $(STAMP) ## run the default training job (add overrides with ARGS="model=sonode ...")
	$(BIN)/node-lab train $(ARGS)

test: $(STAMP) ## run the whole test suite (what CI runs)
	$(BIN)/python -m pytest -q $(ARGS)

test-fast: $(STAMP) ## the suite without tests marked slow (subprocess CLI runs, sweeps)
	$(BIN)/python -m pytest -q -m "not slow" $(ARGS)

reproduce: $(STAMP) ## run every study and write outputs/reproduce/<stamp>/REPORT.md (PROFILE=quick|full, STUDY=<name>, JOBS=<studies at once>)
	$(BIN)/node-lab reproduce --profile $(PROFILE) $(if $(STUDY),--study $(STUDY),) $(if $(JOBS),--jobs $(JOBS),)

lint: $(STAMP) ## ruff over the package and the tests
	$(BIN)/ruff check node_lab tests benchmarks

clean: ## remove run outputs, caches and build files (keeps .venv)
	find outputs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
	rm -rf multirun build dist *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path "./$(VENV)/*" -exec rm -rf {} +
