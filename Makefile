# NovaPick course: one command per job. `make test` and `make reference` build the
# virtualenv themselves on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# This repository's machines pin the torch/torchvision pair that imports here; the
# package itself only asks for torch>=2.4 so Colab keeps its preinstalled build.
TORCH_PIN := torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup test test-fast selftest reference expert-bars clean help

help:
	@echo "make test       - create $(VENV), install, run the whole test suite (what CI runs)"
	@echo "make reference  - create $(VENV), install, run the reference pipeline (quick CPU profile)"
	@echo "make test-fast  - the suite without the slow end-to-end tests"
	@echo "make selftest   - grade every notebook's reference (full marks) and stub (0) in the sandbox"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# Also part of `make test` (tests/test_autograder_selftest.py).
selftest: setup
	$(BIN)/python -m autograder selftest

reference: setup
	$(BIN)/python -m novapick.pipeline --profile quick --components solutions

clean:
	rm -rf $(VENV) artifacts .pytest_cache
