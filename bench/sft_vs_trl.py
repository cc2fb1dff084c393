"""Side-by-side SFT throughput: posttrain's SFT stage against TRL's SFTTrainer, interleaved A, B, A, B.

Both sides get the same model, the same conversations, bf16 autocast (or fp32), the same packed row length and
rows per step, the same learning rate and the same number of steps:
- posttrain: best-fit-decreasing packing, block-diagonal attention, loss on assistant tokens;
- TRL: `packing=True` (its best-fit-decreasing, padding-free), prompt-completion data so that the loss falls on
  the completion only (SmolLM2's template has no `{% generation %}` markers for `assistant_only_loss`).

Every run is a fresh subprocess, so peak RSS is per run. Throughput counts real (non-padding) tokens over the
summed step times, the first step (warm-up) excluded; achieved FLOP/s uses 6 x params x tokens / time against
this machine's measured matmul peak in the same dtype. posttrain projects only the trained positions onto the
vocabulary, so 6 x params x tokens overstates the FLOPs it actually does: read that column as "model FLOP/s".

    python bench/sft_vs_trl.py --model tiny-random-llama --steps 30
    python bench/sft_vs_trl.py --model smollm2-135m-instruct --steps 12 --repeats 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch
from common import matmul_peak_gflops, print_ratio_table, run_interleaved, run_worker, step_timer


def _conversations(data: Path) -> list[list[dict]]:
    return [json.loads(line)["messages"] for line in data.read_text().splitlines() if line.strip()]


def run_posttrain(args) -> dict:
    from posttrain.stages import sft

    out = Path(tempfile.mkdtemp(prefix="bench-posttrain-"))
    config = sft.SFTConfig(
        model=args.model, data=args.data, output=str(out), max_length=args.max_length, rows_per_batch=args.rows,
        max_steps=args.steps, lr=args.lr, warmup_ratio=0.0, precision=args.precision, eval_every=0, save_every=0,
        progress=False,
    )  # fmt: skip
    sft.run(config)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"losses": [r["loss"] for r in rows], "step_times": [r["step_time_s"] for r in rows],
            "tokens": [r["tokens"] for r in rows]}  # fmt: skip


def run_trl(args) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from posttrain.models import load_policy

    model, tokenizer = load_policy(args.model)
    rows = []
    for messages in _conversations(Path(args.data)):
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        rows.append({"prompt": messages[:last], "completion": messages[last:]})
    timer = step_timer()
    config = SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-trl-"), max_length=args.max_length, packing=True,
        per_device_train_batch_size=args.rows, max_steps=args.steps, learning_rate=args.lr, warmup_steps=0,
        lr_scheduler_type="cosine", bf16=args.precision == "bf16", use_cpu=not torch.cuda.is_available(),
        logging_steps=1, save_strategy="no", report_to="none", dataloader_num_workers=0, seed=0,
    )  # fmt: skip
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         callbacks=[timer])  # fmt: skip
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    cumulative = [0] + [int(h["num_tokens"]) for h in logs]
    return {"losses": [h["loss"] for h in logs], "step_times": timer.times,
            "tokens": [b - a for a, b in itertools.pairwise(cumulative)]}  # fmt: skip


def _summary(result: dict, n_params: int, peak: float) -> dict:
    times, tokens = result["step_times"][1:], result["tokens"][1 : len(result["step_times"])]
    tokens_per_s = sum(tokens) / sum(times)
    return {"tokens_per_s": tokens_per_s, "wall_s": result["wall_s"], "peak_rss_mb": result["peak_rss_mb"],
            "final_loss": result["losses"][-1], "model_gflops": 6 * n_params * tokens_per_s / 1e9,
            "mfu": 6 * n_params * tokens_per_s / 1e9 / peak}  # fmt: skip


def _data(args) -> str:
    if args.data:
        return args.data
    from posttrain.demo.mix import build_demo_data

    return str(build_demo_data(Path(tempfile.mkdtemp(prefix="bench-data-")))["train"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-random-llama")
    parser.add_argument("--data", default="", help="SFT JSONL; default: the demo mix")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rows", type=int, default=4, help="packed rows per step")
    parser.add_argument("--max-length", type=int, default=512, help="packed row length")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--repeats", type=int, default=2, help="A, B pairs")
    parser.add_argument("--out", default="", help="write the summary JSON here")
    parser.add_argument("--worker", choices=["posttrain", "trl"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(lambda: run_posttrain(args) if args.worker == "posttrain" else run_trl(args))

    from posttrain.models import load_policy

    args.data = _data(args)
    n_params = sum(p.numel() for p in load_policy(args.model)[0].parameters())
    peak = matmul_peak_gflops(torch.bfloat16 if args.precision == "bf16" else torch.float32)
    base = [sys.executable, __file__, "--model", args.model, "--data", args.data, "--steps", str(args.steps),
            "--rows", str(args.rows), "--max-length", str(args.max_length), "--lr", str(args.lr),
            "--precision", args.precision]  # fmt: skip
    runs, raw = run_interleaved(base, args.repeats, lambda r: _summary(r, n_params, peak))
    print(f"\n{args.model}, {args.precision}, {args.steps} steps x {args.rows} rows x {args.max_length} tokens; "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"matmul peak {peak:.0f} GFLOP/s")  # fmt: skip
    print_ratio_table(runs, ("tokens_per_s", "wall_s", "peak_rss_mb", "final_loss", "model_gflops", "mfu"))
    if args.out:
        Path(args.out).write_text(
            json.dumps({"args": vars(args), "peak_gflops": peak, "runs": runs, "raw": raw}, indent=2)
        )


if __name__ == "__main__":
    main()
