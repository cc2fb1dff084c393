"""Side-by-side DPO: posttrain's preference stage against TRL's DPOTrainer (sigmoid loss), interleaved A, B, A, B.

Same model, same pairs (one epoch's worth: every pair is trained on once, so both sides compute the same
reference log-probs), same precision (bf16 autocast or fp32), same learning rate, same number of optimizer
steps and the same pairs per step on average: posttrain packs chosen and rejected sequences into
`rows` x `max_length` slots, and TRL's batch size is set to the mean number of pairs in posttrain's packed
steps. TRL runs with its defaults otherwise: a reference model held in memory and run every step, padding.

Reported per side (means over repeats, each a fresh subprocess): training time (posttrain: reference pass plus
steps; TRL: its steps, which include the reference forward), pairs per second, wall time of the process,
peak RSS, and the loss curve (first and last loss printed; the full curves go to --out).

    python bench/dpo_vs_trl.py --model tiny-random-llama --steps 20
    python bench/dpo_vs_trl.py --model smollm2-135m-instruct --steps 10 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import re
import sys
import tempfile
from pathlib import Path

import torch
from common import print_ratio_table, run_interleaved, run_worker, step_timer


def make_pairs(path: Path, n: int, seed: int = 0) -> Path:
    """Arithmetic pairs: the worked answer against the same answer with a wrong result."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b, c = rng.randint(2, 60), rng.randint(2, 60), rng.randint(2, 9)
        good = (
            f"First, {a} + {b} = {a + b}. Then {a + b} * {c} = {(a + b) * c}. The answer is \\boxed{{{(a + b) * c}}}."
        )
        wrong = (a + b) * c + rng.choice([-3, -1, 1, 2, 5])
        bad = re.sub(r"= \d+\. The answer is \\boxed\{\d+\}", f"= {wrong}. The answer is \\\\boxed{{{wrong}}}", good)
        rows.append({"prompt": f"Compute ({a} + {b}) * {c}.", "chosen": good, "rejected": bad})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_posttrain(args) -> dict:
    from posttrain.stages import preference

    out = Path(tempfile.mkdtemp(prefix="bench-dpo-"))
    config = preference.PreferenceConfig(
        model=args.model, data=args.data, output=str(out), method="dpo", beta=0.1, lr=args.lr, warmup_ratio=0.0,
        max_steps=args.steps, max_length=args.max_length, rows_per_batch=args.rows, precision=args.precision,
        progress=False, diversity_prompts=0,
    )  # fmt: skip
    preference.run(config)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timing = json.loads((out / "reference.json").read_text())
    return {"losses": [r["loss"] for r in rows], "step_times": [r["step_time_s"] for r in rows],
            "reference_s": timing["seconds"], "pairs": sum(r["pairs"] for r in rows)}  # fmt: skip


def run_trl(args) -> dict:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from posttrain.models import load_policy

    model, tokenizer = load_policy(args.model)
    rows = []
    for line in Path(args.data).read_text().splitlines():
        pair = json.loads(line)
        rows.append({"prompt": [{"role": "user", "content": pair["prompt"]}],
                     "chosen": [{"role": "assistant", "content": pair["chosen"]}],
                     "rejected": [{"role": "assistant", "content": pair["rejected"]}]})  # fmt: skip
    timer = step_timer()
    config = DPOConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-trl-dpo-"), beta=0.1, loss_type=["sigmoid"],
        max_length=args.max_length, per_device_train_batch_size=args.trl_batch, max_steps=args.steps,
        learning_rate=args.lr, warmup_steps=0, lr_scheduler_type="cosine", bf16=args.precision == "bf16",
        use_cpu=not torch.cuda.is_available(), logging_steps=1, save_strategy="no", report_to="none", seed=0,
        dataloader_num_workers=0,
    )  # fmt: skip
    trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         callbacks=[timer])  # fmt: skip
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    return {"losses": [h["loss"] for h in logs], "step_times": timer.times, "reference_s": 0.0,
            "pairs": args.steps * args.trl_batch}  # fmt: skip


def _summary(result: dict) -> dict:
    train_s = result["reference_s"] + sum(result["step_times"])
    return {"train_s": train_s, "pairs_per_s": result["pairs"] / train_s, "wall_s": result["wall_s"],
            "peak_rss_mb": result["peak_rss_mb"], "first_loss": result["losses"][0],
            "mean_loss_after_first": sum(result["losses"][1:]) / max(1, len(result["losses"]) - 1),
            "last_loss": result["losses"][-1]}  # fmt: skip


def mean_pairs_per_step(args) -> float:
    """Pairs per optimizer step when posttrain packs this data: TRL's batch size is set to match it."""
    from posttrain.data.pairs import load_groups
    from posttrain.models import load_policy
    from posttrain.stages.preference import PreferenceConfig, _batches

    config = PreferenceConfig(model=args.model, data=args.data, max_length=args.max_length, rows_per_batch=args.rows)
    tokenizer = load_policy(args.model)[1]
    data = load_groups(config.data, False, tokenizer, config.max_length)
    batches = _batches(config, data, tokenizer.pad_token_id, 0)
    return sum(len(b.sequence_indices) for b in batches) / 2 / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-random-llama")
    parser.add_argument("--data", default="", help="preference JSONL; default: generated arithmetic pairs")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rows", type=int, default=2, help="posttrain: packed rows per step")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="")
    parser.add_argument("--trl-batch", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=["posttrain", "trl"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(lambda: run_posttrain(args) if args.worker == "posttrain" else run_trl(args))
    args.data = args.data or str(make_pairs(Path(tempfile.mkdtemp(prefix="bench-pairs-")) / "pairs.jsonl", args.pairs))
    # Keep one epoch's worth of pairs: posttrain computes reference log-probs for the whole data set up front,
    # TRL for the batches it trains on, so the two do the same reference work only when every pair is used.
    per_step = mean_pairs_per_step(args)
    kept = Path(args.data).read_text().splitlines()[: round(per_step * args.steps)]
    args.data = str(Path(tempfile.mkdtemp(prefix="bench-epoch-")) / "pairs.jsonl")
    Path(args.data).write_text("".join(line + "\n" for line in kept))
    per_step = mean_pairs_per_step(args)
    trl_batch = max(1, math.floor(per_step + 0.5))
    base = [sys.executable, __file__, "--model", args.model, "--data", args.data, "--steps", str(args.steps),
            "--rows", str(args.rows), "--max-length", str(args.max_length), "--lr", str(args.lr),
            "--precision", args.precision, "--trl-batch", str(trl_batch)]  # fmt: skip
    runs, raw = run_interleaved(base, args.repeats, _summary)
    print(f"\n{args.model}, {args.precision}, {args.steps} steps; posttrain {args.rows} rows x {args.max_length} "
          f"tokens ({per_step:.1f} pairs/step), TRL batch {trl_batch}; {platform.machine()}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print_ratio_table(
        runs, ("train_s", "pairs_per_s", "wall_s", "peak_rss_mb", "first_loss", "mean_loss_after_first", "last_loss")
    )
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "runs": runs, "raw": raw}, indent=2))


if __name__ == "__main__":
    main()
