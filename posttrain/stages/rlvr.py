"""RL with verifiable rewards: GRPO, Dr.GRPO, DAPO and GSPO on tasks whose answers a program checks.

One step, top to bottom (`rl_step`):
1. sample: `prompts_per_step` training prompts (the epoch's shuffled order), `samples_per_prompt` completions
   each, from the rollout engine (`posttrain.rollout.engine`, synced to the policy's weights first);
2. score: every completion by its task's verifier (`posttrain.rewards.route`), plus an optional format reward and
   the DAPO soft overlong penalty. Verifier failures are counted per reason (`failure/<reason>` rates);
3. dynamic sampling (DAPO §3.2, `dynamic_sampling=true`): groups whose rewards are all equal carry no gradient
   and are dropped; the step draws more prompts (a stream seeded by the step) until it has `prompts_per_step`
   informative groups or `max_refill_rounds` is reached. The dropped fraction is logged;
4. advantages per group (`posttrain.advantages`): z-score (GRPO, DAPO, GSPO), centred (Dr.GRPO) or
   leave-one-out (RLOO);
5. update: `mu` optimizer steps over the step's rollouts, each a pass over packed micro-batches of prompt +
   completion (loss on the completion's sampled ids, never re-encoded text), the PPO ratio taken against the
   rollout's log-probs (`posttrain.losses.policy`), log-probs from logits / temperature as the sampler's;
6. log: reward mean/std over the first round's samples, response length, entropy, clip fractions, the KL between
   the trained policy and the sampler (and to the reference when `kl_beta` > 0), time in generation, scoring
   and training, tokens/s. Every `eval_every` steps and at the end: held-out pass@1 and pass@k (k samples at
   the training temperature) and greedy accuracy.

Checkpoints and resume come from the shared loop (`posttrain.train.loop`); every random choice of a step (refill
prompts, sampling) is seeded by (seed, step), so a resumed run repeats the uninterrupted one on CPU. At the end,
reward, entropy and length curves are drawn to `curves.png`.

Launch:
    posttrain rlvr --model runs/sft/final --tasks train.jsonl --eval-tasks heldout.jsonl --output runs/rlvr
    posttrain rlvr --config rlvr.yaml loss=dapo lora=true
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from posttrain.advantages import ADVANTAGES
from posttrain.data import load_records
from posttrain.data.length import check_prompt_lengths
from posttrain.eval.passk import pass_rates
from posttrain.io import atomic_write_json
from posttrain.logprobs import padded_rows, per_sequence_tokens, token_logprobs, token_logprobs_and_entropy
from posttrain.losses.policy import POLICY_LOSSES, k3_kl
from posttrain.losses.reduce import masked_token_mean
from posttrain.models import LoraSpec, save_model
from posttrain.packing import pack
from posttrain.rewards.route import check_prerequisites
from posttrain.rewards.shaped import ShapedReward, Shaping
from posttrain.rollout import SamplingParams
from posttrain.rollout.engine import make_sampler
from posttrain.rounds import Group, group_stats, rollout_sequence, sample_groups
from posttrain.tasks.humaneval import assert_trainable
from posttrain.train.config import option
from posttrain.train.loop import run_loop
from posttrain.train.plots import plot_curves
from posttrain.train.preamble import Run, accumulate_and_step, open_run
from posttrain.train.reference import reference_policy
from posttrain.types import RLTask, Rollout

log = logging.getLogger("posttrain.rlvr")


@dataclass(frozen=True)
class RLVRConfig:
    model: str = option("smollm2-135m-instruct", "model spec: HF directory, smollm2-135m-instruct or tiny-random-*")
    tasks: str = option("", "training tasks (rl schema)")
    eval_tasks: str = option("", "held-out tasks (rl schema) for pass@k; empty: no evaluation")
    output: str = option("runs/rlvr", "run directory")
    loss: str = option("grpo", "grpo, dr_grpo, dapo or gspo")
    advantage: str = option("auto", "auto (centered for dr_grpo, else group), group, centered or rloo")
    max_steps: int = option(50, "RL steps (each samples, scores and updates)")
    prompts_per_step: int = option(8, "prompts (groups) per step")
    samples_per_prompt: int = option(8, "completions per prompt (the group size)")
    max_new_tokens: int = option(128, "completion length cap")
    max_prompt_length: int = option(512, "longest prompt in tokens, as rendered for sampling; longer is an error")
    temperature: float = option(1.0, "sampling temperature (also divides the logits in the loss)")
    top_p: float = option(1.0, "nucleus sampling mass")
    top_k: int = option(0, "top-k cut; 0: none")
    stop: tuple[str, ...] = option((), "stop strings: a completion ends with the token completing one")
    mu: int = option(1, "optimizer steps per batch of rollouts (PPO epochs)")
    eps_low: float = option(0.0, "lower clip range; 0: the loss's default (0.2; GSPO 3e-4)")
    eps_high: float = option(0.0, "upper clip range; 0: the loss's default (0.2; DAPO 0.28; GSPO 4e-4)")
    kl_beta: float = option(0.0, "weight of the k3 KL to the starting policy; 0: no reference model")
    dynamic_sampling: bool = option(False, "drop groups with equal rewards and refill (DAPO)")
    max_refill_rounds: int = option(2, "extra sampling rounds at most per step for dynamic sampling")
    format_weight: float = option(0.0, "weight of the format reward (one final \\boxed{} answer)")
    overlong_buffer: int = option(0, "DAPO soft overlong penalty over the last N tokens of max_new_tokens; 0: off")
    lr: float = option(1e-6, "peak learning rate")
    min_lr_ratio: float = option(1.0, "final learning rate as a fraction of the peak (cosine); 1: constant")
    warmup_ratio: float = option(0.0, "fraction of optimizer steps spent warming up")
    weight_decay: float = option(0.0, "AdamW weight decay")
    grad_clip: float = option(1.0, "clip the gradient norm to this; 0: no clipping")
    row_tokens: int = option(256, "packed row length for the update (raised to the step's longest sequence)")
    rows_per_batch: int = option(8, "packed rows per micro-batch")
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

    RENAMED: ClassVar[dict[str, str]] = {"steps": "max_steps"}  # old key -> new key (still read, with a warning)


@dataclass(frozen=True)
class PromptBatch:
    """The training tasks of one step, by index."""

    sequence_indices: tuple[int, ...]


def compute_advantages(config: RLVRConfig, rewards_P_G: torch.Tensor) -> torch.Tensor:
    """Per-completion advantages, shape (P, G)."""
    kind = {"auto": POLICY_LOSSES[config.loss].advantage}.get(config.advantage, config.advantage)
    return ADVANTAGES[kind](rewards_P_G)


def reward_model(config: RLVRConfig) -> ShapedReward:
    """The task verifiers plus the configured format reward and overlong penalty."""
    return ShapedReward(Shaping(config.format_weight, config.overlong_buffer, config.max_new_tokens))


def sampling(config: RLVRConfig, seed: int, temperature: float | None = None) -> SamplingParams:
    """The configured sampling parameters with `seed` (and another temperature for greedy evaluation)."""
    t = config.temperature if temperature is None else temperature
    return SamplingParams(config.max_new_tokens, t, config.top_p, config.top_k, seed, config.stop)


def collect(sampler, rewards: ShapedReward, train: list[RLTask], batch: PromptBatch, config: RLVRConfig,
            step: int) -> tuple[list[Group], list[Group], dict[str, float]]:  # fmt: skip
    """(groups to train on, the first round's groups, timings): dynamic sampling refills from a seeded stream."""
    timings = {"generation_s": 0.0, "scoring_s": 0.0}
    G, seed = config.samples_per_prompt, config.seed * 1_000_003 + step * 17
    first = sample_groups(sampler, rewards.score, [train[i] for i in batch.sequence_indices], G,
                          sampling(config, seed), timings)  # fmt: skip
    if not config.dynamic_sampling:
        return first, first, timings | {"sampled_groups": len(first), "dropped_fraction": 0.0}
    kept, sampled = [g for g in first if len(set(g.rewards)) > 1], len(first)
    refill = random.Random(f"{config.seed}:refill:{step}")
    for round_ in range(1, config.max_refill_rounds + 1):
        if len(kept) >= config.prompts_per_step:
            break
        extra = [train[i] for i in refill.sample(range(len(train)), min(config.prompts_per_step, len(train)))]
        more = sample_groups(sampler, rewards.score, extra, G, sampling(config, seed + round_), timings)
        sampled += len(more)
        kept += [g for g in more if len(set(g.rewards)) > 1]
    dropped = 1.0 - sum(len(set(g.rewards)) > 1 for g in first) / len(first)
    stats = {"sampled_groups": sampled, "dropped_fraction": dropped, "kept_groups": min(len(kept),
             config.prompts_per_step)}  # fmt: skip
    return kept[: config.prompts_per_step], first, timings | stats


def policy_micro_loss(model, reference, loss_fn, rollouts: list[Rollout], advantages: torch.Tensor,
                      config: RLVRConfig, metric_share: float, batch):  # fmt: skip
    """(loss scaled for the step, metrics scaled by `metric_share`) of one packed micro-batch of rollouts."""
    idx = list(batch.sequence_indices)
    logprobs_B_T, entropy_B_T = token_logprobs_and_entropy(model, batch, config.temperature)
    logprobs_N_L, mask_N_L = per_sequence_tokens(logprobs_B_T, batch)
    entropy_N_L, _ = per_sequence_tokens(entropy_B_T, batch)
    old_N_L = padded_rows([rollouts[i].logprobs for i in idx], mask_N_L)
    ref_N_L = None
    if reference is not None:
        with torch.no_grad(), reference() as ref_model:
            ref_N_L, _ = per_sequence_tokens(token_logprobs(ref_model, batch, config.temperature), batch)
    loss, metrics = loss_fn(logprobs_N_L, old_N_L, advantages[idx].to(mask_N_L.device), mask_N_L,
                            ref_logprobs_B_T=ref_N_L)  # fmt: skip
    metrics |= {
        "loss": float(loss.detach()),
        "entropy": float(masked_token_mean(entropy_N_L, mask_N_L)),
        "kl_sampler": float(masked_token_mean(k3_kl(logprobs_N_L.detach(), old_N_L, mask_N_L), mask_N_L)),
    }
    weight = len(idx) / len(rollouts) if POLICY_LOSSES[config.loss].per_sequence_mean else 1.0
    return loss * weight, {k: v * metric_share for k, v in metrics.items()}


def update(run: Run, model, reference, optimizer, scheduler, groups: list[Group], advantages: torch.Tensor,
           step: int) -> dict[str, float]:  # fmt: skip
    """`mu` optimizer steps over the rollouts; returns the loss metrics averaged over micro-batches and passes."""
    config = run.config
    rollouts = [r for g in groups for r in g.rollouts]
    sequences = [rollout_sequence(r) for r in rollouts]
    n_tokens = sum(len(r.token_ids) for r in rollouts)
    variant = POLICY_LOSSES[config.loss]
    low, high = config.eps_low or variant.clip[0], config.eps_high or variant.clip[1]  # 0: the paper's default
    loss_fn = functools.partial(variant.fn, eps_low=low, eps_high=high, kl_beta=config.kl_beta,
                                **variant.step_kwargs(len(rollouts), n_tokens, config.max_new_tokens))  # fmt: skip
    row_tokens = max(config.row_tokens, max(map(len, sequences)))
    totals: dict[str, float] = defaultdict(float)
    for epoch in range(config.mu):
        batches = pack(sequences, row_tokens, config.rows_per_batch, 0, seed=config.seed + step * 31 + epoch)
        micro_loss = functools.partial(policy_micro_loss, model, reference, loss_fn, rollouts, advantages, config,
                                       1 / (len(batches) * config.mu))  # fmt: skip
        stats = accumulate_and_step(run, model, optimizer, scheduler, batches, micro_loss)
        stepped = {"lr": stats.pop("lr"), "grad_norm": stats.pop("grad_norm")}
        for key, value in stats.items():
            totals[key] += value
    return dict(totals) | stepped | {"trained_tokens": n_tokens}


def evaluate_heldout(sampler, rewards: ShapedReward, tasks: list[RLTask], config: RLVRConfig) -> dict[str, float]:
    """pass@1 and pass@k (k = eval_samples at the training temperature) and greedy accuracy on held-out tasks."""
    sampled, greedy = sampling(config, config.seed + 7), sampling(config, 0, temperature=0.0)
    return pass_rates(sampler, rewards.score, tasks, config.eval_samples, sampled, greedy)


def _check(config: RLVRConfig) -> None:
    if not config.tasks:
        raise ValueError("rlvr needs training tasks: --tasks FILE (rl schema)")
    if config.loss not in POLICY_LOSSES:
        raise ValueError(f"loss must be one of {', '.join(POLICY_LOSSES)}, got {config.loss!r}")
    if config.advantage != "auto" and config.advantage not in ADVANTAGES:
        raise ValueError(f"advantage must be auto or one of {', '.join(ADVANTAGES)}, got {config.advantage!r}")
    if config.temperature <= 0:
        raise ValueError("temperature must be > 0: RL samples, and the loss divides the logits by it")
    if config.samples_per_prompt < 2:
        raise ValueError("samples_per_prompt must be at least 2: a group of one has no baseline")


def load_tasks(config: RLVRConfig) -> tuple[list[RLTask], list[RLTask]]:
    """The training and held-out tasks, checked before any model is loaded."""
    train = list(load_records(config.tasks, "rl").records)
    assert_trainable(train)  # evaluation-only benchmarks (HumanEval) are refused
    heldout = list(load_records(config.eval_tasks, "rl").records) if config.eval_tasks else []
    if len(train) < config.prompts_per_step:
        raise ValueError(f"{config.tasks}: {len(train)} tasks, fewer than prompts_per_step={config.prompts_per_step}")
    check_prerequisites(t.verifier for t in train + heldout)
    return train, heldout


def run(config: RLVRConfig) -> Path:
    """Train with RL on verifiable rewards; returns the final model directory."""
    _check(config)
    train, heldout = load_tasks(config)
    run = open_run(config, "rlvr", {"tasks": config.tasks, "eval_tasks": config.eval_tasks})
    model, tokenizer = run.policy()
    for tasks in (train, heldout):
        check_prompt_lengths(tasks, tokenizer, config.max_prompt_length)
    run.note(train_tasks=len(train), heldout_tasks=len(heldout))
    optimizer, scheduler = run.optimization(model, config.max_steps * config.mu)
    sampler = make_sampler(model, tokenizer, batch_size=config.rollout_batch)
    rewards = reward_model(config)
    reference = reference_policy(model, enabled=config.kl_beta > 0)

    def batches_for(epoch: int) -> list[PromptBatch]:
        order = list(range(len(train)))
        random.Random(f"{config.seed}:epoch:{epoch}").shuffle(order)
        P = config.prompts_per_step
        return [PromptBatch(tuple(sorted(order[s : s + P]))) for s in range(0, len(order) - P + 1, P)]

    def step(index: int, micro: list[PromptBatch]) -> dict[str, float]:
        sampler.sync()
        groups, first, stats = collect(sampler, rewards, train, micro[0], config, index)
        stats |= group_stats(first)
        generated = sum(len(r.token_ids) for g in first for r in g.rollouts)
        stats |= {"generated_tokens": generated, "generation_tokens_per_s": generated / stats["generation_s"]}
        started = time.perf_counter()
        if groups:
            rewards_P_G = torch.tensor([g.rewards for g in groups], dtype=torch.float32)
            advantages = compute_advantages(config, rewards_P_G).flatten()
            stats |= update(run, model, reference, optimizer, scheduler, groups, advantages, index)
        else:
            log.warning("step %d: every group had equal rewards; no update", index + 1)
        stats["training_s"] = time.perf_counter() - started
        total = stats["generation_s"] + stats["scoring_s"] + stats["training_s"]
        stats["generation_fraction"] = stats["generation_s"] / total
        return stats | {"tokens": generated, "sequences": len(micro[0].sequence_indices)}

    def evaluate() -> dict[str, float]:
        sampler.sync()
        return evaluate_heldout(sampler, rewards, heldout, config)

    try:
        last = run_loop(run.dir, run.settings(config.max_steps, "rlvr", eval_every=config.eval_every), model,
                        optimizer, scheduler, batches_for, step, evaluate=evaluate if heldout else None)  # fmt: skip
    finally:
        rewards.close()
    atomic_write_json(run.dir / "eval.json", {k: v for k, v in last.items() if k.startswith("eval/")})
    plot_curves(run.dir / "metrics.jsonl", run.dir / "curves.png",
                ("reward_mean", "entropy", "response_length", "eval/greedy_accuracy"))  # fmt: skip
    return save_model(model, tokenizer, run.dir / "final")
