"""Decode throughput of posttrain's rollout engine against plain `model.generate`, and against this machine's ceiling.

For each batch size, every contender samples `--new-tokens` tokens per row (temperature 1, end-of-turn ignored,
so each row decodes the same number of tokens) after distinct chat prompts of about 40 tokens, one sample per
prompt (no prefix sharing, which would favour the engine). Reported: new tokens per second of wall time, prefill
included, best of `--repeats`, all contenders interleaved in one process; for the engine also its decode rate,
the tokens of its decode steps over their time (sampling and bookkeeping included, prefill not), which is what
the ceiling below describes:
- `generate <dtype>`: `model.generate(do_sample=True, min_new_tokens=max_new_tokens=N)` on the model in that dtype;
- `engine <dtype>`: `RolloutEngine` (fused forward, pre-packed weights, KV cache) in that dtype.

The ceiling for a decode step at batch B: every weight matrix is read once per step (bytes / measured memory
bandwidth) and each row costs 2 x matmul params FLOPs (over the measured bf16 or fp32 matmul peak); the step can
go no faster than the slower of the two, so the ceiling is B / max(bytes / bandwidth, B x FLOPs / peak) tokens/s.
Attention over the cache is left out of the ceiling, which makes it generous. Prefill is not decode: at batch 64
with 40-token prompts it is about a fifth of the engine's wall time, so the decode rate is the one to compare.

With `--shape qwen3|mistral|gemma3` the model is a randomly initialised one of that family in SmolLM2-135M's shape
(its hidden size, layers, heads and vocabulary, with SmolLM2's tokenizer; the family's own parts on top: Qwen3's q/k
norms, Mistral's sliding window, Gemma 3's sandwich norms, scaled embeddings, q/k norms and 5:1 local:global
layers). Random weights change nothing in the work per token, since every row decodes the same number of tokens.

    python bench/rollout_speed.py --batches 1 16 64 --new-tokens 64
    python bench/rollout_speed.py --shape gemma3 --batches 16 --dtypes bf16 fp32
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time

import torch
from common import matmul_peak_gflops
from transformers import AutoConfig, AutoModelForCausalLM, Gemma3TextConfig, MistralConfig, Qwen3Config

from posttrain.models import SMOLLM2, load_policy, load_tokenizer, resolve_model_dir
from posttrain.rollout import SamplingParams
from posttrain.rollout.engine import RolloutEngine

QUESTIONS = [f"What is {a} + {b}? Explain the steps, then give the answer." for a in range(11, 99, 3) for b in (7, 13)]


def memory_bandwidth_gbs(mb: int = 1024, reps: int = 5) -> float:
    """Measured read bandwidth: summing a tensor larger than any cache."""
    x = torch.ones(mb * 2**20 // 4, dtype=torch.float32)
    x.sum()
    start = time.perf_counter()
    for _ in range(reps):
        x.sum()
    return reps * x.numel() * 4 / (time.perf_counter() - start) / 1e9


def _gemma3_layers(n: int) -> dict:
    return {
        "layer_types": ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(n)],
        "sliding_window": 512,
        "query_pre_attn_scalar": 64,
    }


# The family's config class and what sets it apart, on top of SmolLM2's shape.
SHAPES = {
    "qwen3": (Qwen3Config, lambda n: {}),
    "mistral": (MistralConfig, lambda n: {"sliding_window": 4096}),
    "gemma3": (Gemma3TextConfig, _gemma3_layers),
}


def shaped_model(shape: str) -> torch.nn.Module:
    """A random model of family `shape` in SmolLM2-135M's shape, fp32."""
    smol = AutoConfig.from_pretrained(resolve_model_dir(SMOLLM2))
    keys = (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "max_position_embeddings",
        "rms_norm_eps",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
        "tie_word_embeddings",
    )
    config_class, extra = SHAPES[shape]
    config = config_class(
        **{k: getattr(smol, k) for k in keys},
        head_dim=smol.hidden_size // smol.num_attention_heads,
        **extra(smol.num_hidden_layers),
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="sdpa")


def matmul_params(model: torch.nn.Module) -> int:
    """Parameters read by a decode step's matrix products (linear layers and the LM head; not the embedding gather)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def time_generate(model, tokenizer, prompts_ids: list[list[int]], new_tokens: int) -> float:
    """Seconds for one left-padded batched `generate` call."""
    width = max(map(len, prompts_ids))
    ids = torch.full((len(prompts_ids), width), tokenizer.pad_token_id)
    mask = torch.zeros_like(ids)
    for row, p in enumerate(prompts_ids):
        ids[row, width - len(p) :], mask[row, width - len(p) :] = torch.tensor(p), 1
    start = time.perf_counter()
    with torch.no_grad():
        model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                       max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    return time.perf_counter() - start


def time_engine(engine: RolloutEngine, prompts, new_tokens: int) -> tuple[float, float]:
    """Seconds for one engine call, end-of-turn ignored, and the seconds of its decode steps (prefill excluded)."""
    engine.eos_ids = set()
    start = time.perf_counter()
    engine.sample(prompts, 1, SamplingParams(max_new_tokens=new_tokens, temperature=1.0))
    return time.perf_counter() - start, engine.timings["decode_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"])
    parser.add_argument("--shape", choices=sorted(SHAPES), help="a random model of this family in --model's shape")
    args = parser.parse_args()

    model, tokenizer = (shaped_model(args.shape), load_tokenizer(args.model)) if args.shape else load_policy(args.model)
    model.eval()
    dtypes = {"bf16": torch.bfloat16, "fp32": torch.float32}
    models = {name: copy.deepcopy(model).to(dtypes[name]) for name in args.dtypes}
    engines = {name: RolloutEngine(models[name], tokenizer, batch_size=max(args.batches), dtype=dtypes[name])
               for name in args.dtypes}  # fmt: skip
    bandwidth = memory_bandwidth_gbs()
    peaks = {name: matmul_peak_gflops(dtypes[name]) for name in args.dtypes}
    params = matmul_params(model)
    print(f"{model.config.model_type} ({args.shape or args.model}); "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads; bandwidth {bandwidth:.1f} GB/s; matmul peak "
          + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()) + f"; {params / 1e6:.1f}M matmul params")  # fmt: skip

    rows = []
    for batch in args.batches:
        prompts = [[{"role": "user", "content": q}] for q in QUESTIONS[:batch]]
        prompt_ids = [tokenizer.apply_chat_template(p, add_generation_prompt=True) for p in prompts]
        prompt_ids = [list(p["input_ids"] if hasattr(p, "keys") else p) for p in prompt_ids]
        best: dict[str, float] = {}
        for round_ in range(args.repeats + 1):  # round 0 warms up
            for name in args.dtypes:
                generate_s = time_generate(models[name], tokenizer, prompt_ids, args.new_tokens)
                engine_s, decode_s = time_engine(engines[name], prompts, args.new_tokens)
                rates = {f"generate {name}": batch * args.new_tokens / generate_s,
                         f"engine {name}": batch * args.new_tokens / engine_s,
                         f"decode {name}": batch * (args.new_tokens - 1) / decode_s}  # the first token is prefill's  # fmt: skip
                for label, rate in rates.items():
                    best[label] = max(best.get(label, 0.0), rate) if round_ else 0.0
        for name in args.dtypes:
            width = 2 if name == "bf16" else 4
            step_s = max(params * width / (bandwidth * 1e9), batch * 2 * params / (peaks[name] * 1e9))
            ceiling = batch / step_s
            rows.append({"batch": batch, "dtype": name, "generate": best[f"generate {name}"],
                         "engine": best[f"engine {name}"], "decode": best[f"decode {name}"], "ceiling": ceiling})  # fmt: skip
    print("| batch | dtype | generate tok/s | engine tok/s | engine / generate | engine decode tok/s | ceiling tok/s "
          "| decode / ceiling | engine / ceiling |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['dtype']} | {r['generate']:.0f} | {r['engine']:.0f} | "
              f"{r['engine'] / r['generate']:.2f}x | {r['decode']:.0f} | {r['ceiling']:.0f} | "
              f"{100 * r['decode'] / r['ceiling']:.0f}% | {100 * r['engine'] / r['ceiling']:.0f}% |")  # fmt: skip
    print(
        "RESULT "
        + json.dumps({"model_type": model.config.model_type, "rows": rows, "bandwidth_gbs": bandwidth, "peaks": peaks})
    )


if __name__ == "__main__":
    main()
