"""On-policy distillation (GKD): the student samples, the teacher scores every sampled position over its whole
vocabulary, and the student moves toward the teacher on the student's own samples.

One step, top to bottom:
1. sample: `prompts_per_step` prompts (the epoch's shuffled order), `samples_per_prompt` completions each, from the
   student through the rollout engine (synced to its weights first); with probability 1 - `lmbda` (a coin seeded by
   the step) the teacher writes them instead: GKD's mix of on-policy and teacher samples (`lmbda=1`, the default, is
   pure on-policy distillation);
2. score: the teacher's logits at every sampled position, from the same packed batch of token ids (never re-encoded
   text), so the two models must share a tokenizer: checked before anything is loaded
   (`check_shared_tokenizer`; a cross-tokenizer method is a later step);
3. update: the generalised JSD between the student's and the teacher's next-token distributions at those positions
   (`posttrain.losses.distill.generalized_jsd`, `beta`: 1 the reverse KL of on-policy distillation, 0 the forward
   KL, between them GKD's JSD), both at `temperature`, the mean over the step's sampled tokens; one optimizer step
   over packed micro-batches, a prompt shared by its samples (`posttrain.train.policy_update.rollout_batches`).
Each step also logs the task verifier's reward of the samples, their length, and the sampled reverse KL (log S - log
T of the sampled tokens, the on-policy signal). Every `eval_every` steps and at the end: held-out pass@1, pass@k and
greedy accuracy, as the rlvr stage measures them. Checkpoints and resume come from the shared loop.

The teacher here is a local model; the loss for a teacher behind an endpoint that returns only its top-k log-probs
(`topk_generalized_jsd`) is written and tested, but no endpoint client scores prompts yet.

Launch:
    posttrain distill --model smollm2-135m-instruct --teacher runs/demo/dpo/final --prompts prompts.jsonl
"""

from __future__ import annotations

import functools
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from posttrain.data import load_records
from posttrain.distributed import single_process_only
from posttrain.envs.episodes import run_groups
from posttrain.envs.verifier import VerifierEnv
from posttrain.gate import DecontaminationOptions
from posttrain.io import atomic_write_json
from posttrain.logprobs import target_logits
from posttrain.losses.distill import generalized_jsd
from posttrain.models import LoraSpec, load_policy, load_tokenizer, save_model
from posttrain.rewards.route import check_prerequisites
from posttrain.rewards.shaped import ShapedReward, Shaping
from posttrain.rollout.engine import make_sampler
from posttrain.rollout.options import SamplerOptions
from posttrain.rounds import group_stats
from posttrain.stages.rlvr import evaluate_heldout, prompt_batches, sampling
from posttrain.tasks.humaneval import assert_trainable
from posttrain.train.config import option
from posttrain.train.loop import run_loop
from posttrain.train.plots import plot_curves
from posttrain.train.policy_update import rollout_batches
from posttrain.train.preamble import ParallelOptions, accumulate_and_step, open_run

log = logging.getLogger("posttrain.distill")


@dataclass(frozen=True)
class DistillConfig(DecontaminationOptions, ParallelOptions, SamplerOptions):
    model: str = option("smollm2-135m-instruct", "the student: HF directory, smollm2-135m-instruct or tiny-random-*")
    teacher: str = option("", "the teacher: a model spec sharing the student's tokenizer")
    prompts: str = option("", "prompts (rl schema); their verifiers score the samples for the logs")
    eval_tasks: str = option("", "held-out tasks (rl schema) for pass@k and greedy accuracy; empty: none")
    output: str = option("runs/distill", "run directory")
    beta: float = option(1.0, "generalised JSD interpolation: 1 reverse KL (on-policy distillation), 0 forward KL")
    lmbda: float = option(1.0, "fraction of steps sampled by the student; the others by the teacher (GKD)")
    temperature: float = option(1.0, "sampling temperature, also applied to both models' logits in the loss")
    top_p: float = option(1.0, "nucleus sampling")
    top_k: int = option(0, "top-k sampling; 0: off")
    stop: tuple[str, ...] = option((), "stop strings")
    max_new_tokens: int = option(128, "longest sample")
    prompts_per_step: int = option(8, "prompts per optimizer step")
    samples_per_prompt: int = option(1, "samples per prompt")
    max_steps: int = option(50, "optimizer steps")
    lr: float = option(1e-5, "peak learning rate")
    min_lr_ratio: float = option(0.1, "final learning rate as a fraction of the peak (cosine decay)")
    warmup_ratio: float = option(0.0, "fraction of steps spent warming up linearly")
    weight_decay: float = option(0.0, "AdamW weight decay")
    grad_clip: float = option(1.0, "clip the gradient norm to this; 0: no clipping")
    row_tokens: int = option(1024, "packed row length (at least the longest prompt + sample)")
    rows_per_batch: int = option(4, "packed rows per micro-batch")
    rollout_batch: int = option(64, "rows decoded together by the rollout engine")
    precision: str = option("auto", "auto (bf16 autocast where supported), bf16 or fp32")
    lora: bool = option(False, "train LoRA adapters instead of all weights")
    lora_r: int = option(16, "LoRA rank")
    lora_alpha: int = option(32, "LoRA alpha")
    lora_targets: tuple[str, ...] = option(LoraSpec.target_modules, "modules that get LoRA adapters")
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass to save memory")
    eval_every: int = option(0, "evaluate every N steps; 0: at the end only")
    eval_samples: int = option(4, "samples per held-out prompt: pass@1 and pass@k with k = this")
    save_every: int = option(10, "checkpoint every N steps; 0: never")
    keep_last: int = option(1, "checkpoints to keep")
    resume: bool = option(False, "continue from the newest checkpoint in `output`")
    seed: int = option(0, "seed for prompt order, sampling and initialisation")
    trackers: tuple[str, ...] = option((), "extra trackers: tensorboard, wandb, trackio")
    progress: bool = option(True, "show progress bars")


def check_shared_tokenizer(student, teacher, student_spec: str, teacher_spec: str) -> None:
    """Raise when the two tokenizers would map some text to different ids: the teacher scores the student's ids."""
    a, b = student.get_vocab(), teacher.get_vocab()
    differ = sorted(set(a.items()) ^ set(b.items()), key=lambda kv: kv[1])
    if differ or student.eos_token_id != teacher.eos_token_id:
        example = f"; e.g. {differ[0][0]!r} -> {differ[0][1]}" if differ else ""
        raise ValueError(
            f"the student ({student_spec}, {len(a)} tokens) and the teacher ({teacher_spec}, {len(b)} tokens) do not "
            f"share a tokenizer: {len(differ)} token ids differ{example}, end token {student.eos_token_id} vs "
            f"{teacher.eos_token_id}. On-policy distillation scores the student's token ids with the teacher, so "
            "both must use one tokenizer (cross-tokenizer distillation is not supported yet)"
        )


def _check(config: DistillConfig) -> None:
    if not config.prompts or not config.teacher:
        raise ValueError("distill needs --prompts FILE (rl schema) and --teacher MODEL")
    if not 0 <= config.beta <= 1 or not 0 <= config.lmbda <= 1:
        raise ValueError(f"beta and lmbda must be in [0, 1], got beta={config.beta}, lmbda={config.lmbda}")
    if config.temperature <= 0:
        raise ValueError("temperature must be > 0: the loss divides the logits by it")


def micro_loss(
    model, teacher, config: DistillConfig, vocab: int, n_tokens: int, batch
) -> tuple[torch.Tensor, dict[str, float]]:
    """One packed micro-batch's generalised JSD summed over its sampled positions and divided by the step's
    `n_tokens` (so the micro-batches add up to the step's mean), and the sampled reverse KL on the same scale. Both
    models' logits are cut to the tokenizer's `vocab` (output layers are often padded past it, by different
    amounts)."""
    rows, cols, student_N_V = target_logits(model, batch)
    student_N_V = student_N_V[:, :vocab]
    with torch.no_grad():
        teacher_N_V = target_logits(teacher, batch)[2][:, :vocab]
    mask = torch.ones(1, len(cols), dtype=torch.bool, device=cols.device)
    loss, _ = generalized_jsd(
        student_N_V[None], teacher_N_V[None], mask, config.beta, config.temperature, num_tokens=n_tokens
    )
    with torch.no_grad():  # log p(sampled id) = its logit - logsumexp: no second vocabulary-sized tensor
        ids = batch.input_ids[rows, cols][:, None]
        s, t = student_N_V.float() / config.temperature, teacher_N_V.float() / config.temperature
        sampled_kl = (s.gather(-1, ids) - s.logsumexp(-1, keepdim=True)) - (
            t.gather(-1, ids) - t.logsumexp(-1, keepdim=True)
        )
    return loss, {"loss": float(loss.detach()), "sampled_reverse_kl": float(sampled_kl.sum()) / n_tokens}


def run(config: DistillConfig) -> Path:
    """Distil the teacher into the student on the student's samples; returns the final model directory."""
    single_process_only(config, "distillation")
    _check(config)
    prompts = list(load_records(config.prompts, "rl").records)
    assert_trainable(prompts)
    heldout = list(load_records(config.eval_tasks, "rl").records) if config.eval_tasks else []
    if len(prompts) < config.prompts_per_step:
        raise ValueError(f"{config.prompts}: {len(prompts)} prompts, fewer than prompts_per_step")
    check_prerequisites(t.verifier for t in prompts + heldout)
    tokenizer = load_tokenizer(config.model)
    check_shared_tokenizer(tokenizer, load_tokenizer(config.teacher), config.model, config.teacher)
    run = open_run(config, "distill", {"prompts": config.prompts, "eval_tasks": config.eval_tasks})
    model, tokenizer = run.policy()
    teacher, _ = load_policy(config.teacher)
    teacher.to(run.device).eval().requires_grad_(False)
    run.note(prompts=len(prompts), heldout_tasks=len(heldout), teacher=config.teacher)
    optimizer, scheduler = run.optimization(model, config.max_steps)
    env = VerifierEnv(ShapedReward(Shaping()))
    student = make_sampler(model, tokenizer, batch_size=config.rollout_batch, options=config)
    teacher_sampler = make_sampler(teacher, tokenizer, batch_size=config.rollout_batch, options=config)
    draws = {sampler: functools.partial(run_groups, sampler, tokenizer, env) for sampler in (student, teacher_sampler)}

    def step(index: int, micro: list) -> dict[str, float]:
        student.sync()
        on_policy = random.Random(f"{config.seed}:lmbda:{index}").random() < config.lmbda
        timings = {"generation_s": 0.0, "scoring_s": 0.0}
        tasks = [prompts[i] for i in micro[0].sequence_indices]
        params = sampling(config, config.seed * 1_000_003 + index * 17)
        groups = draws[student if on_policy else teacher_sampler](tasks, config.samples_per_prompt, params, timings)
        rollouts = [r for g in groups for r in g.rollouts]
        n_tokens = sum(sum(r.trained_mask) for r in rollouts)
        row_tokens = max(config.row_tokens, max(len(r.prompt_ids) + len(r.token_ids) for r in rollouts))
        batches = rollout_batches(rollouts, row_tokens, config.rows_per_batch, seed=config.seed + index)
        started = time.perf_counter()
        loss = functools.partial(micro_loss, model, teacher, config, len(tokenizer), n_tokens)
        stats = accumulate_and_step(run, model, optimizer, scheduler, batches, loss)
        stats |= group_stats(groups) | timings | {"training_s": time.perf_counter() - started}
        return stats | {"on_policy": float(on_policy), "tokens": n_tokens, "sequences": len(tasks)}

    def evaluate() -> dict[str, float]:
        student.sync()
        return evaluate_heldout(draws[student], heldout, config)

    last = run_loop(
        run.dir,
        run.settings(config.max_steps, "distill", eval_every=config.eval_every),
        model,
        optimizer,
        scheduler,
        functools.partial(prompt_batches, len(prompts), config.prompts_per_step, config.seed),
        step,
        evaluate=evaluate if heldout else None,
    )
    atomic_write_json(run.dir / "eval.json", {k: v for k, v in last.items() if k.startswith("eval/")})
    plot_curves(run.dir / "metrics.jsonl", run.dir / "curves.png", ("loss", "sampled_reverse_kl", "reward_mean"))
    return save_model(model, tokenizer, run.dir / "final")
