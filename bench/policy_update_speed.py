"""The RLVR update on one GRPO step's rollouts, with each group's prompt packed once (prefix sharing) and with every
sample carrying its own copy of the prompt (the ordinary packing), interleaved A, B, A, B in one process.

The rollouts are real: `prompts` x `samples` completions of training arithmetic tasks sampled once from the model
(up to `max_new_tokens` each, temperature 1), with random advantages (the update's cost does not depend on their
values). Both sides run the same code, `policy_micro_loss` over micro-batches through `accumulate_and_step` with the
RLVR stage's defaults (GRPO, bf16 autocast over fp32 weights, AdamW at lr 1e-6, rows of 256 tokens, 8 rows per
micro-batch), and differ only in the batches: `posttrain.packing.pack` or `rollout_batches`. Optional wider-row
variants of the shared side (`--shared-rows 1024x2`) keep the slots per micro-batch and fit a whole group in a row.

Reported per side: wall and CPU seconds per update (means over repeats, the first round left out as warm-up), the
fastest round's wall seconds (the least disturbed by other jobs), real tokens (shared prompts counted once),
micro-batches, and the ratios to the ordinary side. On a machine shared with other jobs single rounds swing by 2x
or more, in CPU time as in wall time: compare the sides over several interleaved rounds.

    python bench/policy_update_speed.py --model tiny-random-llama --repeats 2
    python bench/policy_update_speed.py --model smollm2-135m-instruct --repeats 4 --shared-rows 1024x2 \
        --rollouts /tmp/smollm2_rollouts.json  # sampled once, then reused
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from posttrain.models import load_policy
from posttrain.packing import pack
from posttrain.rollout import SamplingParams
from posttrain.rollout.engine import make_sampler
from posttrain.rounds import rollout_sequence
from posttrain.stages.rlvr import RLVRConfig
from posttrain.tasks.arithmetic import arithmetic_tasks
from posttrain.train.policy_update import policy_micro_loss, rollout_batches, step_loss_fn
from posttrain.train.preamble import Run, accumulate_and_step
from posttrain.train.setup import build_optimization
from posttrain.types import Rollout


def sides(rollouts, config: RLVRConfig, shared_rows: list[str]) -> dict:
    """Each side's name and its micro-batches."""
    sequences = [rollout_sequence(r) for r in rollouts]
    row_tokens = max(config.row_tokens, max(map(len, sequences)))
    out = {
        "ordinary": pack(sequences, row_tokens, config.rows_per_batch, 0, seed=0),
        "shared": rollout_batches(rollouts, row_tokens, config.rows_per_batch, seed=0),
    }
    for shape in shared_rows:
        tokens, rows = map(int, shape.split("x"))
        out[f"shared {shape}"] = rollout_batches(rollouts, max(tokens, row_tokens), rows, seed=0)
    return out


def step_rollouts(model, tokenizer, args) -> list[Rollout]:
    """One step's rollouts, sampled (and written to `--rollouts`), or read back from there."""
    cache = Path(args.rollouts) if args.rollouts else None
    if cache is not None and cache.is_file():
        return [
            Rollout(**{k: tuple(v) if isinstance(v, list) else v for k, v in r.items()})
            for r in json.loads(cache.read_text())
        ]
    tasks = arithmetic_tasks(args.prompts, "train", seed=0)
    params = SamplingParams(args.max_new_tokens, 1.0, 1.0, 0, seed=0)
    groups = make_sampler(model, tokenizer).sample([t.prompt for t in tasks], args.samples, params)
    rollouts = [r for group in groups for r in group]
    if cache is not None:
        cache.write_text(json.dumps([dataclasses.asdict(r) for r in rollouts]))
    return rollouts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of all sides, the first left out")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--shared-rows", nargs="*", default=[], help="extra shared sides, ROW_TOKENSxROWS")
    parser.add_argument("--rollouts", default="", help="a JSON file: read the rollouts from it, or sample and write")
    args = parser.parse_args()

    model, tokenizer = load_policy(args.model)
    rollouts = step_rollouts(model, tokenizer, args)
    advantages = torch.randn(len(rollouts), generator=torch.Generator().manual_seed(0))
    config = RLVRConfig(model=args.model, max_new_tokens=args.max_new_tokens, lr=1e-6, precision=args.precision)
    run = Run(config, "rlvr", Path(tempfile.mkdtemp(prefix="bench-update-")), torch.device("cpu"), args.precision, {})
    optimizer, scheduler = build_optimization(model, config.lr, 0.0, 0.0, 10_000, 1.0)
    model.train()
    batches = sides(rollouts, config, args.shared_rows)
    times: dict[str, list[float]] = {name: [] for name in batches}
    cpu: dict[str, list[float]] = {name: [] for name in batches}
    for round_ in range(args.repeats):
        for name, micro in batches.items():
            loss = functools.partial(
                policy_micro_loss, model, None, step_loss_fn(config, rollouts), rollouts, advantages, config,
                1 / len(micro),
            )  # fmt: skip
            started, started_cpu = time.perf_counter(), time.process_time()
            accumulate_and_step(run, model, optimizer, scheduler, micro, loss)
            times[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - started_cpu)
            print(f"round {round_} {name}: {times[name][-1]:.2f} s, {cpu[name][-1]:.2f} CPU s", flush=True)

    lengths = [len(r.token_ids) for r in rollouts]
    print(f"\n{args.model}, {args.precision}, {args.prompts} prompts x {args.samples} samples, completions "
          f"{min(lengths)}-{max(lengths)} tokens (mean {sum(lengths) / len(lengths):.1f}), prompts "
          f"{len(rollouts[0].prompt_ids)} tokens; {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads; means of rounds 2-{args.repeats}")  # fmt: skip
    print("| side | wall s/update | CPU s/update | fastest wall s | real tokens | micro-batches | wall, CPU, fastest "
          "vs ordinary |\n|---|---|---|---|---|---|---|")  # fmt: skip
    wall, busy = ({k: sum(v[1:]) / (args.repeats - 1) for k, v in d.items()} for d in (times, cpu))
    fastest = {k: min(v[1:]) for k, v in times.items()}
    for name, micro in batches.items():
        tokens = sum(b.n_real_tokens for b in micro)
        ratios = (wall[name] / wall["ordinary"], busy[name] / busy["ordinary"], fastest[name] / fastest["ordinary"])
        print(f"| {name} | {wall[name]:.2f} | {busy[name]:.2f} | {fastest[name]:.2f} | {tokens} | {len(micro)} | "
              + ", ".join(f"{r:.2f}x" for r in ratios) + " |")  # fmt: skip


if __name__ == "__main__":
    main()
