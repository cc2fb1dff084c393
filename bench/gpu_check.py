"""GPU check: SFT tokens/s and MFU, one GRPO step per sampler, and the rollout engine's CUDA fallback, in one JSON.

The parts (`--parts`, default all; each writes its entry of the JSON as soon as it ends):
- `engine`: `make_sampler` on the model moved to the GPU must return the plain `HFSampler`, `RolloutEngine` built
  directly must refuse the CUDA model (NotImplementedError), and the chosen sampler must sample. On a CPU the part
  only records which sampler was chosen.
- `sft`: `posttrain.stages.sft.run` (precision auto: bf16 autocast on a GPU) on generated multi-turn arithmetic
  chats packed into rows of `seq_len` tokens, `rows` rows per optimizer step: `warmup` steps, then `steps` timed
  ones, read from the run's metrics.jsonl. tokens/s = real (unpadded) tokens of the timed steps / their summed
  step times. MFU = tokens/s x FLOPs per token / peak, FLOPs per token = 6 N + 12 L d T: N trainable parameters
  (tied embeddings once, so the output head's matmul is in), L layers, d hidden size, T the packed row length
  (PaLM's appendix B). The attention term counts whole rows, as the dense masked attention computes them; the
  block-diagonal mask makes part of that work useless. Peak: `--peak-tflops`, else the bf16 dense figure of
  PEAK_TFLOPS by GPU name; no MFU without a peak (on a CPU).
- `grpo-hf`, `grpo-vllm`: `posttrain.stages.rlvr.run` (loss grpo) for `grpo_steps` steps on arithmetic tasks with
  `sampler=hf` / `sampler=vllm`; the first step is a warm-up, the last is the one to quote. Per step: generation,
  scoring and training seconds and tokens/s from metrics.jsonl. The RLVR `sampler` key is new: where RLVRConfig
  lacks it, `grpo-hf` runs with the default sampler (plain generate on a GPU) and says so, and `grpo-vllm` records
  "sampler key missing". Without an importable vllm, `grpo-vllm` records why and is skipped.
Beside them: `environments` (torch, CUDA, GPU name, posttrain commit and a hash of its source, per venv) and
`sizes`; scripts/gpu_check.sh adds `notes` on its install phases.

A part that raises is recorded with its error and traceback, the others still run, and the exit status is 1.
`--update` merges into an existing JSON: scripts/gpu_check.sh runs `grpo-vllm` from a second venv that way.
`--random-weights` keeps the model's config and tokenizer but initialises its weights afresh: the speed is the
same, but a random model never ends a turn, so every completion runs to `max_new_tokens`.

    python bench/gpu_check.py --smoke --out /tmp/gpu_check_smoke.json     # CPU, tiny model, well under a minute
    python bench/gpu_check.py --out gpu_check.json                         # a GPU, SmolLM2-135M-Instruct
    bash scripts/gpu_check.sh                                              # installs, then runs this in two venvs
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from posttrain.io import atomic_write_json
from posttrain.models import SMOLLM2, load_policy, load_tokenizer, resolve_model_dir, save_model
from posttrain.rollout import SamplingParams
from posttrain.rollout.engine import RolloutEngine, make_sampler
from posttrain.rollout.hf import HFSampler
from posttrain.stages import rlvr, sft
from posttrain.tasks.arithmetic import arithmetic_tasks
from posttrain.tasks.jsonl import write_tasks
from posttrain.train.manifest import git_revision

REPO = Path(__file__).resolve().parents[1]
# bf16 dense tensor-core peaks (TFLOP/s) from NVIDIA's datasheets, by a piece of torch.cuda.get_device_name; the
# first match wins, so "H100 PCIe" comes before "H100" (the SXM part, named "NVIDIA H100 80GB HBM3").
PEAK_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0))
# the metrics.jsonl keys a GRPO part reports per step
GRPO_KEYS = (
    "step generation_s scoring_s training_s step_time_s generated_tokens generation_tokens_per_s tokens_per_s "
    "response_length reward_mean kl_sampler ratio_mean loss peak_memory_mb"
).split()


@dataclass(frozen=True)
class Sizes:
    """How big each part runs."""

    seq_len: int  # SFT packed row length, tokens
    rows: int  # SFT packed rows per optimizer step
    warmup: int  # SFT steps before timing
    steps: int  # SFT steps timed
    prompts: int  # GRPO prompts per step
    samples: int  # GRPO completions per prompt
    new_tokens: int  # GRPO completion length cap
    grpo_steps: int  # GRPO steps (the first is a warm-up)


FULL = Sizes(seq_len=2048, rows=16, warmup=3, steps=20, prompts=16, samples=8, new_tokens=256, grpo_steps=2)
SMOKE = Sizes(seq_len=128, rows=2, warmup=1, steps=3, prompts=2, samples=2, new_tokens=8, grpo_steps=2)


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def source_sha256() -> str:
    """SHA-256 over posttrain's .py files (paths and contents, sorted): names the code even without a .git."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "posttrain").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def environment() -> dict:
    """What this process runs on: versions, the GPU, posttrain's commit ($POSTTRAIN_COMMIT without a .git)."""
    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": _version("transformers"),
        "vllm": _version("vllm"),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
        "cpu_count": os.cpu_count(),
        "posttrain_commit": git_revision() or os.environ.get("POSTTRAIN_COMMIT"),
        "posttrain_source_sha256": source_sha256(),
        "venv": sys.prefix,
    }


def peak_tflops(given: float | None) -> tuple[float | None, str]:
    """(bf16 dense peak in TFLOP/s, where it came from): the argument, else the table by GPU name, else none."""
    if given:
        return given, "--peak-tflops"
    if not torch.cuda.is_available():
        return None, "no GPU: no peak, no MFU"
    name = torch.cuda.get_device_name(0)
    for piece, tflops in PEAK_TFLOPS:
        if piece in name:
            return tflops, f"table: {piece} (bf16 dense, datasheet)"
    return None, f"{name!r} is not in the table; pass --peak-tflops"


def flops_per_token(model_spec: str, seq_len: int) -> dict:
    """Training FLOPs per token, 6 N + 12 L d T (see the module docstring), the model built on the meta device."""
    config = AutoConfig.from_pretrained(resolve_model_dir(model_spec))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    attention = 12 * config.num_hidden_layers * config.hidden_size * seq_len
    return {
        "formula": "6 * trainable_params + 12 * n_layers * hidden_size * seq_len (seq_len: packed row length)",
        "trainable_params": n,
        "n_layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "seq_len": seq_len,
        "attention_per_token": attention,
        "per_token": 6 * n + attention,
    }


def arithmetic_chats(n: int, max_turns: int, seed: int = 0) -> list[dict]:
    """`n` SFT records of 1 to `max_turns` turns of "What is a + b?" and a boxed answer."""
    rng = random.Random(seed)
    chats = []
    for _ in range(n):
        messages = []
        for _ in range(rng.randint(1, max_turns)):
            a, b = rng.randint(0, 999), rng.randint(0, 999)
            messages += [
                {"role": "user", "content": f"What is {a} + {b}?"},
                {"role": "assistant", "content": f"{a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}."},
            ]
        chats.append({"messages": messages})
    return chats


def write_sft_data(path: Path, model_spec: str, sizes: Sizes) -> int:
    """Write enough chats for every step's rows to fill from one epoch (a quarter more); returns their number."""
    tokenizer = load_tokenizer(model_spec)
    max_turns = max(1, sizes.seq_len // 256)  # a chat fits in a row
    sample = arithmetic_chats(32, max_turns, seed=1)
    mean_tokens = statistics.mean(
        len(tokenizer(tokenizer.apply_chat_template(c["messages"], tokenize=False), add_special_tokens=False).input_ids)
        for c in sample
    )
    needed = sizes.seq_len * sizes.rows * (sizes.warmup + sizes.steps)
    chats = arithmetic_chats(math.ceil(1.25 * needed / mean_tokens), max_turns)
    path.write_text("".join(json.dumps(c) + "\n" for c in chats))
    return len(chats)


def read_rows(run_dir: Path) -> list[dict]:
    """The run's metrics.jsonl rows."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@contextlib.contextmanager
def captured_logs(name: str) -> Iterator[list[str]]:
    """The messages logged under `name` (INFO and up) while the block runs: which sampler a stage chose, and why."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger, handler = logging.getLogger(name), Collect(logging.INFO)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def engine_part(model_spec: str, sizes: Sizes, workdir: Path, peak: float | None) -> dict:
    """Which sampler `make_sampler` gives the model on this process's device, and whether it samples there."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_policy(model_spec)
    model.to(device)
    with captured_logs("posttrain.rollout") as messages:
        sampler = make_sampler(model, tokenizer)
    out: dict = {"device": device.type, "chosen": type(sampler).__name__, "log": messages}
    out["checked"] = device.type == "cuda"  # on a CPU the fused engine is the right choice: nothing to check
    if out["checked"]:
        try:
            RolloutEngine(model, tokenizer)
            out["rollout_engine_on_cuda"] = "built: it should have refused a CUDA model"
        except NotImplementedError as err:
            out["rollout_engine_on_cuda"] = f"declined: {err}"
        out["ok"] = isinstance(sampler, HFSampler) and out["rollout_engine_on_cuda"].startswith("declined")
    prompt = [{"role": "user", "content": "What is 2 + 3?"}]
    started = time.perf_counter()
    (group,) = sampler.sample([prompt], 2, SamplingParams(max_new_tokens=16, seed=0))
    out["sample"] = {
        "seconds": time.perf_counter() - started,
        "tokens": [len(r.token_ids) for r in group],
        "finite_logprobs": all(math.isfinite(lp) for r in group for lp in r.logprobs),
    }
    return out


def sft_part(model_spec: str, sizes: Sizes, workdir: Path, peak: float | None) -> dict:
    """SFT tokens/s and MFU over the timed steps of one run."""
    data, run_dir = workdir / "sft.jsonl", workdir / "sft"
    n_chats = write_sft_data(data, model_spec, sizes)
    config = sft.SFTConfig(
        model=model_spec,
        data=str(data),
        output=str(run_dir),
        max_length=sizes.seq_len,
        rows_per_batch=sizes.rows,
        max_steps=sizes.warmup + sizes.steps,
        lr=1e-5,
        eval_every=0,
        save_every=0,
        precision="auto",
        skip_invalid=True,
        progress=False,
    )
    started = time.perf_counter()
    sft.run(config)
    wall = time.perf_counter() - started
    rows, manifest = read_rows(run_dir), json.loads((run_dir / "manifest.json").read_text())
    timed = rows[sizes.warmup :]
    tokens_per_s = sum(r["tokens"] for r in timed) / sum(r["step_time_s"] for r in timed)
    flops = flops_per_token(model_spec, sizes.seq_len)
    achieved = tokens_per_s * flops["per_token"] / 1e12
    return {
        "precision": manifest.get("precision"),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "train_chats": n_chats,
        "skipped_records": manifest.get("skipped_records"),
        "timed_steps": len(timed),
        "tokens_per_s": tokens_per_s,
        "step_time_s_median": statistics.median(r["step_time_s"] for r in timed),
        "tokens_per_step_mean": statistics.mean(r["tokens"] for r in timed),
        "packing_efficiency_mean": statistics.mean(r["packing_efficiency"] for r in timed),
        "epochs_touched": sorted({r["epoch"] for r in rows}),
        "loss_first": rows[0]["loss"],
        "loss_last": rows[-1]["loss"],
        "loss_finite": all(math.isfinite(r["loss"]) for r in rows),
        "peak_memory_mb": max(r["peak_memory_mb"] for r in rows),
        "flops_per_token": flops,
        "achieved_tflops": achieved,
        "peak_tflops": peak,
        "mfu": achieved / peak if peak else None,
        "run_wall_s": wall,
    }


def grpo_part(sampler: str) -> Callable[[str, Sizes, Path, float | None], dict]:
    """The part that runs GRPO steps with `sampler` ("hf" or "vllm")."""

    def part(model_spec: str, sizes: Sizes, workdir: Path, peak: float | None) -> dict:
        has_key = "sampler" in {f.name for f in dataclasses.fields(rlvr.RLVRConfig)}
        note = "" if has_key else "sampler key missing: RLVRConfig has no `sampler` field yet"
        if sampler == "vllm":
            if not has_key:
                return {"skipped": note}
            try:
                import vllm  # noqa: F401
            except (ImportError, OSError, RuntimeError) as err:  # not installed, or its CUDA libraries do not load
                return {"skipped": f"vllm does not import: {type(err).__name__}: {err}"}
        tasks = write_tasks(workdir / f"tasks-{sampler}.jsonl", arithmetic_tasks(sizes.prompts * sizes.grpo_steps))
        config = rlvr.RLVRConfig(
            model=model_spec,
            tasks=str(tasks),
            output=str(workdir / f"grpo-{sampler}"),
            loss="grpo",
            max_steps=sizes.grpo_steps,
            prompts_per_step=sizes.prompts,
            samples_per_prompt=sizes.samples,
            max_new_tokens=sizes.new_tokens,
            rollout_batch=sizes.prompts * sizes.samples,
            rows_per_batch=16,
            lr=1e-6,
            save_every=0,
            progress=False,
            **({"sampler": sampler} if has_key else {}),
        )
        started = time.perf_counter()
        with captured_logs("posttrain.rollout") as messages:
            rlvr.run(config)
        steps = [{k: r[k] for k in GRPO_KEYS if k in r} for r in read_rows(Path(config.output))]
        out = {
            "sampler": sampler if has_key else "default (auto)",
            "sampler_log": messages,
            "steps": steps,
            "warm_step": steps[-1],
            "run_wall_s": time.perf_counter() - started,
        }
        return out | ({"note": note} if note else {})

    return part


PARTS = {"engine": engine_part, "sft": sft_part, "grpo-hf": grpo_part("hf"), "grpo-vllm": grpo_part("vllm")}


def run_part(name: str, part: Callable[[], dict]) -> dict:
    """One part's result, or its error: a part that fails is part of the report, and the other parts still run."""
    print(f"[{time.strftime('%H:%M:%S')}] {name}: start", flush=True)
    started = time.perf_counter()
    try:
        result = part()
    except Exception as err:  # any failure of the stage under test is what this check exists to record
        traceback.print_exc()
        result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-4000:]}
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    result["part_wall_s"] = time.perf_counter() - started
    result["venv"] = sys.prefix
    print(
        f"[{time.strftime('%H:%M:%S')}] {name}: {'error' if 'error' in result else 'done'} "
        f"in {result['part_wall_s']:.1f} s",
        flush=True,
    )
    return result


def random_weights_copy(model_spec: str, out: Path) -> str:
    """An HF directory with the spec's config and tokenizer and weights initialised afresh (seed 0)."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(resolve_model_dir(model_spec)))
    return str(save_model(model, load_tokenizer(model_spec), out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_check.json", help="the JSON to write")
    parser.add_argument("--model", default=None, help=f"model spec (default {SMOLLM2}; --smoke: tiny-random-llama)")
    parser.add_argument("--smoke", action="store_true", help="tiny model and sizes: a CPU check of this script")
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS), help="what to run")
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 dense peak; default: by GPU name")
    parser.add_argument("--random-weights", action="store_true", help="the model's shape, weights initialised afresh")
    parser.add_argument("--update", action="store_true", help="merge into the JSON at --out if it exists")
    parser.add_argument("--workdir", default=None, help="where the runs go (default: a new temp directory)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")

    sizes = SMOKE if args.smoke else FULL
    model_spec = args.model or ("tiny-random-llama" if args.smoke else SMOLLM2)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gpu_check-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out_path = Path(args.out)
    report = json.loads(out_path.read_text()) if args.update and out_path.is_file() else {}
    peak, peak_source = peak_tflops(args.peak_tflops)
    report |= {
        "model": model_spec,
        "random_weights": args.random_weights,
        "smoke": args.smoke,
        "sizes": dataclasses.asdict(sizes),
        "peak_tflops": peak,
        "peak_source": peak_source,
    }
    report.setdefault("environments", {})[Path(sys.prefix).name] = environment()
    if args.random_weights:
        model_spec = random_weights_copy(model_spec, workdir / "random-weights")
    failed = []
    for name in args.parts:
        result = run_part(name, functools.partial(PARTS[name], model_spec, sizes, workdir, peak))
        report[name.replace("-", "_")] = result
        atomic_write_json(out_path, report)
        if "error" in result:
            failed.append(name)
    print(json.dumps(report, indent=2, default=str))
    if failed:
        sys.exit(f"failed parts: {', '.join(failed)}")


if __name__ == "__main__":
    main()
