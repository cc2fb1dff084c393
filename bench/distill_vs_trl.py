"""Side-by-side on-policy distillation: posttrain's distill stage against TRL's GKDTrainer, interleaved A, B, A, B.

Equal on both sides:
- the student and the teacher (by default both SmolLM2-135M-Instruct, two copies: the speed does not depend on
  what the teacher knows), the chat template and the prompts (training arithmetic tasks, one JSONL both read);
- one generation and one optimizer step per step: `prompts` prompts, one completion each, sampled by the student
  (`lmbda=1`, fully on-policy), `max_new_tokens`, temperature 1;
- the loss: the generalised JSD with `beta` (0.5, TRL's default) over the full vocabulary at every generated token,
  the mean over tokens; the teacher's logits at temperature 1 (the two losses agree to 1e-16 on the same logits:
  tests/test_distill_losses.py);
- AdamW, constant learning rate, no warmup, no weight decay, gradient norm clipped to 1, fp32 (no autocast);
- no evaluation, no checkpoints, no trackers; posttrain's decontamination gate is off (its scan is not a step).

Not equal, by design (what is compared): posttrain samples with its rollout engine (bf16 weight snapshot, fused
KV-cache decoding) and packs each prompt with its completion into rows, running the LM head only at the generated
positions for both models; TRL calls `model.generate` on the training model and runs both models over the padded
batch.

Measured: seconds per optimizer step (posttrain's `step_time_s`; TRL's by a step-begin/step-end callback), the
first step left out as warm-up; wall time and peak RSS of each worker process.

    python bench/distill_vs_trl.py --steps 5 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import print_ratio_table, run_interleaved, run_worker, step_timer


def run_posttrain(args) -> dict:
    from posttrain.stages import distill

    out = Path(tempfile.mkdtemp(prefix="bench-distill-"))
    config = distill.DistillConfig(
        model=args.model, teacher=args.teacher, prompts=args.prompts, output=str(out), beta=args.beta, lmbda=1.0,
        temperature=1.0, max_new_tokens=args.max_new_tokens, prompts_per_step=args.batch, samples_per_prompt=1,
        max_steps=args.steps, lr=args.lr, min_lr_ratio=1.0, warmup_ratio=0.0, weight_decay=0.0, grad_clip=1.0,
        rollout_batch=args.batch, precision="fp32", save_every=0, progress=False, decontaminate="off",
    )  # fmt: skip
    distill.run(config)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"step_time_s": [r["step_time_s"] for r in rows], "loss": [r["loss"] for r in rows]}


def run_trl(args) -> dict:
    from datasets import Dataset
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    from posttrain.data import load_records
    from posttrain.models import load_policy

    tasks = list(load_records(args.prompts, "rl").records)
    rows = [{"messages": [m.as_dict() for m in t.prompt] + [{"role": "assistant", "content": "..."}]} for t in tasks]
    student, tokenizer = load_policy(args.model)
    teacher, _ = load_policy(args.teacher)
    timer = step_timer()
    config = GKDConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-trl-gkd-"), per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1, max_new_tokens=args.max_new_tokens, lmbda=1.0, beta=args.beta,
        temperature=1.0, max_steps=args.steps, learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=0.0, max_grad_norm=1.0, bf16=False, use_cpu=True, logging_steps=1, save_strategy="no",
        eval_strategy="no", report_to="none", dataloader_num_workers=0, seed=0, max_length=1024,
    )  # fmt: skip
    trainer = GKDTrainer(model=student, teacher_model=teacher, args=config, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, callbacks=[timer])  # fmt: skip
    trainer.train()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    return {"step_time_s": timer.times, "loss": losses}


def summarize(result: dict) -> dict:
    steps = result["step_time_s"][1:]
    return {"steps_per_s": len(steps) / sum(steps), "s_per_step": sum(steps) / len(steps),
            "peak_rss_mb": result["peak_rss_mb"], "wall_s": result["wall_s"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--teacher", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", default="", help="rl-schema JSONL; default: training arithmetic tasks")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8, help="prompts per step")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--beta", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--worker", choices=("posttrain", "trl"))
    parser.add_argument("--out", help="write the summaries as JSON here")
    args = parser.parse_args()
    if not args.prompts:
        from posttrain.tasks.arithmetic import arithmetic_tasks
        from posttrain.tasks.jsonl import write_tasks

        args.prompts = str(write_tasks(Path(tempfile.mkdtemp()) / "prompts.jsonl",
                                       arithmetic_tasks(args.steps * args.batch, "train", 0)))  # fmt: skip
    if args.worker:
        run_worker(lambda: {"posttrain": run_posttrain, "trl": run_trl}[args.worker](args))
        return
    base = [__import__("sys").executable, __file__, "--model", args.model, "--teacher", args.teacher,
            "--prompts", args.prompts, "--steps", str(args.steps), "--batch", str(args.batch),
            "--max-new-tokens", str(args.max_new_tokens), "--beta", str(args.beta), "--lr", str(args.lr)]  # fmt: skip
    summaries, raw = run_interleaved(base, args.repeats, summarize)
    means = print_ratio_table(summaries, ("steps_per_s", "s_per_step", "peak_rss_mb", "wall_s"))
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "means": means, "raw": raw}, indent=2))


if __name__ == "__main__":
    main()
