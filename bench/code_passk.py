"""pass@1 and pass@k of a model on code tasks, scored by the sandboxed code verifier: the code demo's measurement.

For every task, `k` samples at temperature `--temperature` and one greedy reply (`posttrain.eval.passk.pass_rates`,
the same numbers the RLVR stage logs as `eval/`); a sample passes only when the hidden tests all pass
(`posttrain.rewards.code`). Task sets: an rl-schema file (the procedural function tasks written by
`posttrain tasks functions --split heldout`), or `humaneval` (164 problems, evaluation only).

    python bench/code_passk.py --model smollm2-135m-instruct --tasks runs/code/heldout.jsonl --k 8 --out before.json
    python bench/code_passk.py --model runs/code/rl/final --tasks humaneval --k 1
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import time

from posttrain.data import load_records
from posttrain.eval.passk import pass_rates
from posttrain.models import load_policy
from posttrain.rewards.shaped import ShapedReward, Shaping
from posttrain.rollout import SamplingParams
from posttrain.rollout.engine import make_sampler
from posttrain.rounds import sample_groups
from posttrain.tasks.humaneval import humaneval_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--tasks", required=True, help="an rl-schema JSONL file, or 'humaneval'")
    parser.add_argument("--k", type=int, default=8, help="samples per task (pass@1 from them, and pass@k)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    tasks = humaneval_tasks() if args.tasks == "humaneval" else list(load_records(args.tasks, "rl").records)
    model, tokenizer = load_policy(args.model)
    sampler = make_sampler(model.eval(), tokenizer, batch_size=64)
    reward = ShapedReward(Shaping())
    started = time.perf_counter()
    try:
        draw = functools.partial(sample_groups, sampler, reward.score)
        sampled = SamplingParams(args.max_new_tokens, args.temperature, seed=7)
        greedy = SamplingParams(args.max_new_tokens, 0.0)
        rates = pass_rates(draw, tasks, args.k, sampled, greedy)
    finally:
        reward.close()
    result = {"model": args.model, "tasks": args.tasks, "n": len(tasks), "k": args.k, **rates,
              "seconds": time.perf_counter() - started, "machine": platform.processor() or platform.machine()}  # fmt: skip
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
