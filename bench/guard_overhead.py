"""The guard's cost: the same greedy answers generated with and without the streaming probe guard, side by side.

Both sides run `GuardedGenerator` on the same prompts, one conversation at a time as `posttrain chat` and `serve`
do; the guarded side also reads the probe's layers' hidden states at every token, checks every `--every` tokens
and holds tokens back until each check. Its threshold is above every possible score, so it never halts and both
sides generate exactly the same tokens (checked). Sides alternate within each repeat, to share the machine's noise.

    python bench/guard_overhead.py --model smollm2-135m-instruct --prompts 16 --repeats 3

The overhead is (guarded - plain) / plain wall time; the guard's own share (probe scoring) is reported too.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from posttrain.data.heldout import load_independent_benign
from posttrain.models import load_policy
from posttrain.rollout import SamplingParams
from posttrain.safety.guard import Guard, Probe
from posttrain.safety.guarded import GuardedGenerator


def never_halting_guard(model, layers: tuple[int, ...], every: int) -> Guard:
    """A probe of the real size on `layers`, with a threshold no probability exceeds (its weights do not matter)."""
    width = len(layers) * model.config.hidden_size
    weights = torch.randn(width, generator=torch.Generator().manual_seed(0))
    return Guard(Probe(weights, torch.tensor(0.0), torch.zeros(width), torch.ones(width)), layers, 2.0, every)


def timed(generator: GuardedGenerator, prompts: list[str], params: SamplingParams) -> tuple[float, list, dict]:
    seconds = {"generate": 0.0, "guard": 0.0}
    started, texts = time.perf_counter(), []
    for prompt in prompts:
        finish = generator.complete([{"role": "user", "content": prompt}], params)
        texts.append(finish.text)
        for part, s in finish.seconds.items():
            seconds[part] += s
    return time.perf_counter() - started, texts, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--layers", default="15,22", help="the probe's layers (the guard stage's default for SmolLM2)")
    parser.add_argument("--every", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model, tokenizer = load_policy(args.model)
    layers = tuple(int(x) for x in args.layers.split(","))
    sides = {
        "plain": GuardedGenerator(model, tokenizer),
        "probe": GuardedGenerator(model, tokenizer, never_halting_guard(model, layers, args.every)),
    }
    prompts = load_independent_benign()[: args.prompts]
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0)
    timed(sides["plain"], prompts[:2], params)  # warm-up
    wall = {side: [] for side in sides}
    texts, parts = {}, {}
    for _ in range(args.repeats):
        for side, generator in sides.items():
            seconds, texts[side], parts[side] = timed(generator, prompts, params)
            wall[side].append(seconds)
    assert texts["plain"] == texts["probe"], "the guarded side generated other tokens"
    plain, probe = (sum(wall[s]) / len(wall[s]) for s in ("plain", "probe"))
    tokens = sum(len(tokenizer.encode(t, add_special_tokens=False)) for t in texts["plain"])
    result = {
        "prompts": len(prompts),
        "tokens_per_repeat": tokens,
        "plain_s": plain,
        "probe_s": probe,
        "overhead": probe / plain - 1,
        "probe_scoring_share": parts["probe"]["guard"] / parts["probe"]["generate"],
        "walls": wall,
    }
    print(json.dumps(result, indent=2))
    print(f"\n| side | wall s (mean of {args.repeats}) | tokens/s | vs plain |\n|---|---|---|---|")
    for side, seconds in (("plain", plain), ("probe guard", probe)):
        print(f"| {side} | {seconds:.2f} | {tokens / seconds:.1f} | {seconds / plain:.3f}x |")


if __name__ == "__main__":
    main()
