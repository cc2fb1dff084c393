"""Side-by-side GRPO: posttrain's RLVR stage against TRL's GRPOTrainer (no vLLM), interleaved A, B, A, B.

Equal on both sides:
- the model, its chat template and the prompts: training arithmetic tasks (`posttrain.tasks.arithmetic`), written
  once to a JSONL file that both sides read, exactly `steps` x `prompts` of them, and fed to TRL unshuffled in the
  order posttrain's first epoch takes them (so every step has the same prompts on both sides; the rendered prompt
  ids are the same too). TRL 1.16 has no `max_prompt_length`, so nothing truncates a prompt on either side;
- one generation and one optimizer step per step: `prompts` x `samples` completions (TRL: per-device batch =
  generation batch = prompts x samples, `steps_per_generation=1`, `gradient_accumulation_steps=1`,
  `num_iterations=1`; posttrain: `mu=1`, all rows decoded in one wave), `max_new_tokens`, temperature 1,
  top-p 1, no top-k, the same end-of-turn token;
- the reward: `MathVerifier().score_batch` (its spawn process pool included) on the completion texts, no format
  reward, no overlong penalty;
- the loss: GRPO (per-sequence token mean, then the mean over sequences; clip 0.2 both ways), advantages z-scored
  per group ((r - mean) / (std + 1e-4), `scale_rewards="group"`), no KL term (`beta=0`, so no reference model),
  truncated completions kept (`mask_truncated_completions=False`);
- the optimizer: AdamW, betas (0.9, 0.95), no weight decay, constant learning rate, no warmup, gradient norm
  clipped to 1; bf16 autocast over fp32 weights for the update (or fp32 throughout with `--precision fp32`);
- no evaluation, no checkpoints, no trackers; TRL's `log_completions` stays off, and its activation (gradient)
  checkpointing, on by default in TRL's configs, is turned off (`activation_checkpointing=False`, the transformers 5
  name): posttrain does not checkpoint.

Not equal, by design of each side (this is what is being compared):
- generation: posttrain decodes from a bf16 snapshot of the weights with its fused forward and its
  KV cache, and takes the sampled tokens' log-probs as the old policy's; TRL runs `model.generate` on the training
  model (under the trainer's bf16 autocast) and, with one update per generation, uses the detached log-probs
  of the training forward instead. posttrain re-snapshots the weights each step (`sampler.sync`), which counts in
  its step time;
- the update: posttrain packs each group's prompt once with its completions attending to it (rows of 256 tokens,
  8 per micro-batch, a group longer than a row split with the prompt repeated); TRL runs one padded forward over
  all the batch's rows and scores the completion tokens with transformers' fused LM head (`fused_lm_head=True`:
  log-probs and entropy without a full logits tensor);
- the sampling streams: both are seeded, by different generators, so the completions (and so the rewards and
  lengths) differ; mean reward is a check that both do the same task, not a score to compare closely.

How it is measured (every run a fresh subprocess; means over repeats):
- step times: posttrain's `step_time_s` from `metrics.jsonl`; TRL's with `step_timer()` (step begin to step end,
  which spans generation, scoring and the update). The first step is left out as warm-up (the verifier's pool
  starts at the first completion with an answer to check: usually in step 1 for SmolLM2, never for a random model);
- generation: posttrain's `generation_s` (its sampler's `sample`: prompts in, sampled ids and texts out). TRL has
  no public hook for this span (its `profiling_context` timings go only to wandb, MLflow or Trackio), so the
  trainer instance's private `_generate`, the same span (chat template, `generate`, decoding), is wrapped with a
  timer on that instance only; nothing else about it changes;
- scoring: posttrain's `scoring_s`; for TRL, the time inside the reward function;
- training s/step = step time - generation - scoring, on both sides (the update, advantages, bookkeeping and,
  for posttrain, the weight snapshot); generation fraction = generation time / step time;
- peak RSS of the worker process (the verifier's pool processes not included); wall time of the whole worker,
  which for posttrain includes saving the final model and plotting its curves;
- mean reward over all steps.

    python bench/grpo_vs_trl.py --model tiny-random-llama --steps 3
    python bench/grpo_vs_trl.py --model smollm2-135m-instruct --steps 6 --repeats 1
    python bench/grpo_vs_trl.py --steps 10 --repeats 2 --out grpo.json
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

# Top-level imports stay light: MathVerifier's spawn workers import this module again.
from common import SIDES, print_ratio_table, run_interleaved, run_worker, step_timer


def posttrain_order(n: int, per_step: int, seed: int) -> list[int]:
    """Task indices in the order posttrain's RLVR stage trains on them in its first epoch (`batches_for` in
    `rlvr.run`); TRL reads its data in this order, unshuffled, so each step has the same prompts on both sides."""
    order = list(range(n))
    random.Random(f"{seed}:epoch:0").shuffle(order)
    return [i for s in range(0, n - per_step + 1, per_step) for i in sorted(order[s : s + per_step])]


def timed(times: list[float], fn):
    """`fn`, appending the wall time of each call to `times`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times.append(time.perf_counter() - started)

    return wrapper


def run_posttrain(args) -> dict:
    from posttrain.stages import rlvr

    out = Path(tempfile.mkdtemp(prefix="bench-rlvr-"))
    config = rlvr.RLVRConfig(
        model=args.model, tasks=args.tasks, output=str(out), loss="grpo", advantage="group", max_steps=args.steps,
        prompts_per_step=args.prompts, samples_per_prompt=args.samples, max_new_tokens=args.max_new_tokens,
        temperature=1.0, top_p=1.0, top_k=0, mu=1, kl_beta=0.0, lr=args.lr, min_lr_ratio=1.0, warmup_ratio=0.0,
        weight_decay=0.0, grad_clip=1.0, rollout_batch=args.prompts * args.samples, precision=args.precision,
        eval_every=0, save_every=0, progress=False, seed=0,
    )  # fmt: skip
    rlvr.run(config)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {key: [r[key] for r in rows] for key in ("step_time_s", "generation_s", "scoring_s", "reward_mean")}


def run_trl(args) -> dict:
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from posttrain.data import load_records
    from posttrain.models import load_policy
    from posttrain.rewards.math import MathVerifier
    from posttrain.types import RLTask, as_dicts

    tasks = list(load_records(args.tasks, "rl").records)
    order = posttrain_order(len(tasks), args.prompts, seed=0)
    dataset = Dataset.from_list([{"prompt": as_dicts(tasks[i].prompt), "answer": tasks[i].answer} for i in order])
    verifier, rewards, scoring_s, generation_s = MathVerifier(), [], [], []

    def math_reward(prompts, completions, answer, **kwargs) -> list[float]:
        batch = [RLTask(prompt=p, verifier="math", answer=a) for p, a in zip(prompts, answer, strict=True)]
        scores = verifier.score_batch(batch, [c[0]["content"] for c in completions])
        rewards.append(sum(s.reward for s in scores) / len(scores))
        return [s.reward for s in scores]

    model, tokenizer = load_policy(args.model)
    timer, rows = step_timer(), args.prompts * args.samples
    cuda = torch.cuda.is_available()
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-trl-grpo-"), num_generations=args.samples,
        per_device_train_batch_size=rows, steps_per_generation=1, gradient_accumulation_steps=1, num_iterations=1,
        max_completion_length=args.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0, loss_type="grpo",
        beta=0.0, epsilon=0.2, scale_rewards="group", mask_truncated_completions=False, log_completions=False,
        shuffle_dataset=False, activation_checkpointing=False, max_steps=args.steps, learning_rate=args.lr,
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, adam_beta2=0.95, max_grad_norm=1.0,
        optim="adamw_torch_fused" if cuda else "adamw_torch", bf16=args.precision == "bf16", use_cpu=not cuda,
        logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none", dataloader_num_workers=0, seed=0,
    )  # fmt: skip
    if config.generation_batch_size != rows:
        raise RuntimeError(f"TRL generation batch {config.generation_batch_size} != {rows}: one generation per step")
    trainer = GRPOTrainer(model=model, reward_funcs=timed(scoring_s, math_reward), args=config,
                          train_dataset=dataset, processing_class=tokenizer, callbacks=[timer])  # fmt: skip
    trainer._generate = timed(generation_s, trainer._generate)  # private: see the module docstring
    try:
        trainer.train()
    finally:
        verifier.close()
    return {"step_time_s": timer.times, "generation_s": generation_s, "scoring_s": scoring_s, "reward_mean": rewards}


def summarize(result: dict) -> dict:
    """Per-step means with the first step (warm-up) left out; mean reward over all steps."""
    steps, generation, scoring = (result[k][1:] for k in ("step_time_s", "generation_s", "scoring_s"))
    n = len(steps)
    training = sum(steps) - sum(generation) - sum(scoring)
    return {"steps_per_s": n / sum(steps), "generation_s_per_step": sum(generation) / n,
            "scoring_s_per_step": sum(scoring) / n, "training_s_per_step": training / n,
            "generation_fraction": sum(generation) / sum(steps), "peak_rss_mb": result["peak_rss_mb"],
            "wall_s": result["wall_s"], "mean_reward": sum(result["reward_mean"]) / len(result["reward_mean"])}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tasks", default="", help="rl-schema JSONL; default: training arithmetic tasks")
    parser.add_argument("--steps", type=int, default=6, help="RL steps (the first is warm-up, left out)")
    parser.add_argument("--prompts", type=int, default=8, help="prompts (groups) per step")
    parser.add_argument("--samples", type=int, default=8, help="completions per prompt (the group size)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--repeats", type=int, default=1, help="A, B pairs")
    parser.add_argument("--out", default="", help="write the summary JSON here")
    parser.add_argument("--worker", choices=["posttrain", "trl"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(lambda: run_posttrain(args) if args.worker == "posttrain" else run_trl(args))
    if args.steps < 2:
        parser.error("--steps must be at least 2: the first step is warm-up")

    import torch

    from posttrain.data import load_records
    from posttrain.tasks.arithmetic import arithmetic_tasks
    from posttrain.tasks.jsonl import write_tasks

    # Exactly one epoch of tasks: both sides then see each prompt once, in the same steps.
    n = args.steps * args.prompts
    tasks = list(load_records(args.tasks, "rl").records)[:n] if args.tasks else arithmetic_tasks(n, "train", seed=0)
    if len(tasks) < n:
        sys.exit(f"{args.tasks}: {len(tasks)} tasks, fewer than steps x prompts = {n}")
    args.tasks = str(write_tasks(Path(tempfile.mkdtemp(prefix="bench-tasks-")) / "tasks.jsonl", tasks))
    base = [sys.executable, __file__, "--model", args.model, "--tasks", args.tasks, "--steps", str(args.steps),
            "--prompts", str(args.prompts), "--samples", str(args.samples), "--max-new-tokens",
            str(args.max_new_tokens), "--lr", str(args.lr), "--precision", args.precision]  # fmt: skip
    runs, raw = run_interleaved(base, args.repeats, summarize)
    print(f"\n{args.model}, {args.precision}, {args.steps} steps x {args.prompts} prompts x {args.samples} samples x "
          f"{args.max_new_tokens} tokens; {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    means = print_ratio_table(runs, ("steps_per_s", "generation_s_per_step", "scoring_s_per_step",
                                     "training_s_per_step", "generation_fraction", "peak_rss_mb", "wall_s"))  # fmt: skip
    a, b = (means[side]["mean_reward"] for side in SIDES)  # a random model may score 0: no ratio then
    print(f"| mean_reward | {a:.4g} | {b:.4g} | {f'{a / b:.2f}x' if b else 'n/a'} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "runs": runs, "raw": raw}, indent=2))


if __name__ == "__main__":
    main()
