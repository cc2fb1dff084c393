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

import contextlib
import copy
import dataclasses
import functools
import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from posttrain.advantages import group_normalized, leave_one_out
from posttrain.data import load_records
from posttrain.logprobs import per_sequence_tokens, token_logprobs, token_logprobs_and_entropy
from posttrain.losses import policy
from posttrain.losses.policy import k3_kl
from posttrain.losses.reduce import masked_token_mean, sequence_mean_of_token_means
from posttrain.models import LoraSpec, is_lora, save_model
from posttrain.packing import pack
from posttrain.render import RenderedSequence
from posttrain.rewards.math import FormatVerifier, soft_overlong_penalty
from posttrain.rewards.route import ByTaskVerifier
from posttrain.rollout import SamplingParams
from posttrain.rollout.engine import make_sampler
from posttrain.tasks.humaneval import assert_trainable
from posttrain.train.config import option, save_config
from posttrain.train.io import atomic_write_json
from posttrain.train.loop import LoopSettings, check_run_dir, run_loop
from posttrain.train.manifest import write_manifest
from posttrain.train.optim import autocast, resolve_precision
from posttrain.train.plots import plot_curves
from posttrain.train.setup import build_optimization, build_policy, clip_and_step, device_for_training
from posttrain.types import RLTask, Rollout, Score

log = logging.getLogger("posttrain.rlvr")
LOSSES = ("grpo", "dr_grpo", "dapo", "gspo")
CLIP_DEFAULTS = {"grpo": (0.2, 0.2), "dr_grpo": (0.2, 0.2), "dapo": (0.2, 0.28), "gspo": (3e-4, 4e-4)}
ADVANTAGES = ("auto", "group", "centered", "rloo")


@dataclass(frozen=True)
class RLVRConfig:
    model: str = option("smollm2-135m-instruct", "model spec: HF directory, smollm2-135m-instruct or tiny-random-*")
    tasks: str = option("", "training tasks (rl schema)")
    eval_tasks: str = option("", "held-out tasks (rl schema) for pass@k; empty: no evaluation")
    output: str = option("runs/rlvr", "run directory")
    loss: str = option("grpo", "grpo, dr_grpo, dapo or gspo")
    advantage: str = option("auto", "auto (centered for dr_grpo, else group), group, centered or rloo")
    steps: int = option(50, "RL steps (each samples, scores and updates)")
    prompts_per_step: int = option(8, "prompts (groups) per step")
    samples_per_prompt: int = option(8, "completions per prompt (the group size)")
    max_new_tokens: int = option(128, "completion length cap")
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
    eval_every: int = option(0, "evaluate every N steps; 0: at the end only")
    eval_samples: int = option(4, "samples per held-out prompt: pass@1 and pass@k with k = this")
    save_every: int = option(10, "checkpoint every N steps; 0: never")
    keep_last: int = option(1, "checkpoints to keep")
    resume: bool = option(False, "continue from the newest checkpoint in `output`")
    seed: int = option(0, "seed for prompt order, sampling and initialisation")
    trackers: tuple[str, ...] = option((), "extra trackers: tensorboard, wandb, trackio")
    progress: bool = option(True, "show progress bars")


@dataclass(frozen=True)
class PromptBatch:
    """The training tasks of one step, by index (the loop counts them as sequences seen)."""

    sequence_indices: tuple[int, ...]


@dataclass(frozen=True)
class Group:
    """A task, its sampled completions and their scores."""

    task: RLTask
    rollouts: list[Rollout]
    scores: list[Score]

    @property
    def rewards(self) -> list[float]:
        """One reward per completion."""
        return [s.reward for s in self.scores]


def clip_range(config: RLVRConfig) -> tuple[float, float]:
    """(eps_low, eps_high): the config's, or the loss variant's defaults."""
    low, high = CLIP_DEFAULTS[config.loss]
    return (config.eps_low or low, config.eps_high or high)


def compute_advantages(config: RLVRConfig, rewards_P_G: torch.Tensor) -> torch.Tensor:
    """Per-completion advantages, shape (P, G)."""
    kind = config.advantage if config.advantage != "auto" else ("centered" if config.loss == "dr_grpo" else "group")
    if kind == "rloo":
        return leave_one_out(rewards_P_G)
    return group_normalized(rewards_P_G, scale=kind == "group")


class RewardModel:
    """Task verifier + optional format reward + optional soft overlong penalty; records failures."""

    def __init__(self, config: RLVRConfig):
        self.config, self.verifier, self.format = config, ByTaskVerifier(), FormatVerifier()

    def score(self, tasks: list[RLTask], rollouts: list[Rollout]) -> list[Score]:
        """One score per rollout: the task verifier's reward plus the weighted extras; metrics keep each part."""
        base = self.verifier.score_batch(tasks, [r.text for r in rollouts])
        scores = []
        for task, rollout, score in zip(tasks, rollouts, base, strict=True):
            reward, metrics = score.reward, {"correct": float(score.reward >= 1.0)}
            metrics.update({k: v for k, v in score.metrics.items() if k.startswith("failure/")})
            if self.config.format_weight:
                fmt = self.format.score(task, rollout.text).reward
                reward, metrics["format"] = reward + self.config.format_weight * fmt, fmt
            if self.config.overlong_buffer:
                penalty = soft_overlong_penalty(len(rollout.token_ids), self.config.max_new_tokens,
                                                self.config.overlong_buffer)  # fmt: skip
                reward, metrics["overlong_penalty"] = reward + penalty, penalty
            scores.append(Score(reward, metrics, score.failure))
        return scores

    def close(self) -> None:
        """Release verifier workers."""
        self.verifier.close()


def sample_groups(sampler, rewards: RewardModel, tasks: list[RLTask], config: RLVRConfig, seed: int,
                  timings: dict[str, float]) -> list[Group]:  # fmt: skip
    """Sample and score one group per task; adds generation and scoring seconds to `timings`."""
    params = SamplingParams(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                            top_p=config.top_p, top_k=config.top_k, stop=config.stop, seed=seed)  # fmt: skip
    started = time.perf_counter()
    rollouts = sampler.sample([t.prompt for t in tasks], config.samples_per_prompt, params)
    timings["generation_s"] += time.perf_counter() - started
    started = time.perf_counter()
    flat_tasks = [t for t in tasks for _ in range(config.samples_per_prompt)]
    scores = rewards.score(flat_tasks, [r for group in rollouts for r in group])
    timings["scoring_s"] += time.perf_counter() - started
    G = config.samples_per_prompt
    return [Group(t, rollouts[i], scores[i * G : (i + 1) * G]) for i, t in enumerate(tasks)]


def collect(sampler, rewards: RewardModel, train: list[RLTask], batch: PromptBatch, config: RLVRConfig,
            step: int) -> tuple[list[Group], list[Group], dict[str, float]]:  # fmt: skip
    """(groups to train on, the first round's groups, timings): dynamic sampling refills from a seeded stream."""
    timings = {"generation_s": 0.0, "scoring_s": 0.0}
    first = sample_groups(sampler, rewards, [train[i] for i in batch.sequence_indices], config,
                          seed=config.seed * 1_000_003 + step * 17, timings=timings)  # fmt: skip
    if not config.dynamic_sampling:
        return first, first, timings | {"sampled_groups": len(first), "dropped_fraction": 0.0}
    kept, sampled = [g for g in first if len(set(g.rewards)) > 1], len(first)
    refill = random.Random(f"{config.seed}:refill:{step}")
    for round_ in range(1, config.max_refill_rounds + 1):
        if len(kept) >= config.prompts_per_step:
            break
        extra = [train[i] for i in refill.sample(range(len(train)), min(config.prompts_per_step, len(train)))]
        more = sample_groups(sampler, rewards, extra, config, seed=config.seed * 1_000_003 + step * 17 + round_,
                             timings=timings)  # fmt: skip
        sampled += len(more)
        kept += [g for g in more if len(set(g.rewards)) > 1]
    dropped = 1.0 - sum(len(set(g.rewards)) > 1 for g in first) / len(first)
    stats = {"sampled_groups": sampled, "dropped_fraction": dropped, "kept_groups": min(len(kept),
             config.prompts_per_step)}  # fmt: skip
    return kept[: config.prompts_per_step], first, timings | stats


def reward_stats(groups: list[Group]) -> dict[str, float]:
    """Reward mean/std, accuracy, response length and failure rates over all completions of `groups`."""
    rewards = torch.tensor([r for g in groups for r in g.rewards])
    lengths = [len(r.token_ids) for g in groups for r in g.rollouts]
    stats = {"reward_mean": float(rewards.mean()), "reward_std": float(rewards.std()) if len(rewards) > 1 else 0.0,
             "response_length": sum(lengths) / len(lengths),
             "truncated_fraction": sum(r.finish_reason == "length" for g in groups for r in g.rollouts) / len(lengths)}  # fmt: skip
    per_key: dict[str, list[float]] = defaultdict(list)
    for g in groups:
        for s in g.scores:
            for key, value in s.metrics.items():
                per_key[key].append(value)
    stats.update({key: sum(v) / len(v) for key, v in per_key.items()})
    return stats


def training_sequences(groups: list[Group]) -> tuple[list[RenderedSequence], list[Rollout]]:
    """Prompt + sampled ids per rollout, the loss on the sampled ids."""
    rollouts = [r for g in groups for r in g.rollouts]
    sequences = [RenderedSequence(r.prompt_ids + r.token_ids, (False,) * len(r.prompt_ids) + (True,) * len(r.token_ids))
                 for r in rollouts]  # fmt: skip
    return sequences, rollouts


def loss_for(config: RLVRConfig, n_sequences: int, n_tokens: int):
    """The policy loss of `config.loss` as a function of per-sequence tensors, normalised for the whole step."""
    low, high = clip_range(config)
    common = {"eps_low": low, "eps_high": high, "kl_beta": config.kl_beta}
    if config.loss == "dapo":
        reduction = functools.partial(masked_token_mean, normalizer=n_tokens)
        return functools.partial(policy.policy_loss, reduction=reduction, **common), lambda n: 1.0
    if config.loss == "dr_grpo":
        reduction = functools.partial(masked_token_mean, normalizer=n_sequences * config.max_new_tokens)
        return functools.partial(policy.policy_loss, reduction=reduction, **common), lambda n: 1.0
    level = "sequence" if config.loss == "gspo" else "token"
    return (functools.partial(policy.policy_loss, reduction=sequence_mean_of_token_means, ratio_level=level,
                              **common), lambda n: n / n_sequences)  # fmt: skip


def update(model, reference, optimizer, scheduler, groups: list[Group], advantages: torch.Tensor,
           config: RLVRConfig, device, precision: str, step: int) -> dict[str, float]:  # fmt: skip
    """`mu` optimizer steps over the rollouts; returns averaged loss metrics."""
    sequences, rollouts = training_sequences(groups)
    n_tokens = sum(len(r.token_ids) for r in rollouts)
    loss_fn, weight = loss_for(config, len(rollouts), n_tokens)
    totals: dict[str, float] = defaultdict(float)
    count = 0
    for epoch in range(config.mu):
        row_tokens = max(config.row_tokens, max(map(len, sequences)))
        batches = pack(sequences, row_tokens, config.rows_per_batch, 0, seed=config.seed + step * 31 + epoch)
        for batch in batches:
            idx = list(batch.sequence_indices)
            batch = batch.to(device)
            with autocast(precision, device):
                logprobs_B_T, entropy_B_T = token_logprobs_and_entropy(model, batch, config.temperature)
            logprobs_N_L, mask_N_L = per_sequence_tokens(logprobs_B_T, batch)
            entropy_N_L, _ = per_sequence_tokens(entropy_B_T, batch)
            old_N_L = _padded([rollouts[i].logprobs for i in idx], mask_N_L)
            ref_N_L = None
            if reference is not None:
                with torch.no_grad(), autocast(precision, device), reference() as ref_model:
                    ref_N_L, _ = per_sequence_tokens(token_logprobs(ref_model, batch, config.temperature), batch)
            loss, metrics = loss_fn(logprobs_N_L, old_N_L, advantages[idx].to(device), mask_N_L,
                                    ref_logprobs_B_T=ref_N_L)  # fmt: skip
            (loss * weight(len(idx))).backward()
            metrics |= {"loss": float(loss.detach()), "entropy": float(masked_token_mean(entropy_N_L, mask_N_L)),
                        "kl_sampler": float(masked_token_mean(k3_kl(logprobs_N_L.detach(), old_N_L, mask_N_L),
                                                              mask_N_L))}  # fmt: skip
            for key, value in metrics.items():
                totals[key] += value
            count += 1
        stepped = clip_and_step(model, optimizer, scheduler, config.grad_clip)
    return {k: v / count for k, v in totals.items()} | stepped | {"trained_tokens": n_tokens}


def _padded(rows: list[tuple[float, ...]], mask_N_L: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(mask_N_L.shape, dtype=torch.float32, device=mask_N_L.device)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


def evaluate_heldout(sampler, rewards: RewardModel, tasks: list[RLTask], config: RLVRConfig) -> dict[str, float]:
    """pass@1 and pass@k (k = eval_samples at the training temperature) and greedy accuracy on held-out tasks."""
    timings = {"generation_s": 0.0, "scoring_s": 0.0}
    k = config.eval_samples
    sampled_config = dataclasses.replace(config, samples_per_prompt=k)
    groups = sample_groups(sampler, rewards, tasks, sampled_config, seed=config.seed + 7, timings=timings)
    correct = [[s.metrics["correct"] for s in g.scores] for g in groups]
    greedy_config = dataclasses.replace(config, samples_per_prompt=1, temperature=0.0)
    greedy = sample_groups(sampler, rewards, tasks, greedy_config, seed=0, timings=timings)
    return {"eval/pass@1": sum(map(sum, correct)) / (k * len(correct)),
            f"eval/pass@{k}": sum(any(c) for c in correct) / len(correct),
            "eval/greedy_accuracy": sum(g.scores[0].metrics["correct"] for g in greedy) / len(greedy),
            "eval/n": len(tasks), "eval/time_s": sum(timings.values())}  # fmt: skip


def _check(config: RLVRConfig) -> None:
    if not config.tasks:
        raise ValueError("rlvr needs training tasks: --tasks FILE (rl schema)")
    if config.loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {config.loss!r}")
    if config.advantage not in ADVANTAGES:
        raise ValueError(f"advantage must be one of {ADVANTAGES}, got {config.advantage!r}")
    if config.temperature <= 0:
        raise ValueError("temperature must be > 0: RL samples, and the loss divides the logits by it")
    if config.samples_per_prompt < 2:
        raise ValueError("samples_per_prompt must be at least 2: a group of one has no baseline")


def _reference(model, config: RLVRConfig):
    """A function giving a context manager that yields the reference policy (the starting weights); None when
    kl_beta is 0. With LoRA the reference is the model with its adapters switched off; else a frozen copy."""
    if not config.kl_beta:
        return None
    if is_lora(model):

        @contextlib.contextmanager
        def base_weights():
            with model.disable_adapter():
                yield model

        return base_weights
    frozen = copy.deepcopy(model).eval().requires_grad_(False)
    return lambda: contextlib.nullcontext(frozen)


def run(config: RLVRConfig) -> Path:
    """Train with RL on verifiable rewards; returns the final model directory."""
    _check(config)
    run_dir = Path(config.output)
    check_run_dir(run_dir, config.resume)
    device = device_for_training()
    precision = resolve_precision(config.precision, device)
    lora = LoraSpec(config.lora_r, config.lora_alpha) if config.lora else None
    model, tokenizer = build_policy(config.model, device, config.seed, lora)
    train = list(load_records(config.tasks, "rl").records)
    assert_trainable(train)  # evaluation-only benchmarks (HumanEval) are refused
    heldout = list(load_records(config.eval_tasks, "rl").records) if config.eval_tasks else []
    if len(train) < config.prompts_per_step:
        raise ValueError(f"{config.tasks}: {len(train)} tasks, fewer than prompts_per_step={config.prompts_per_step}")
    optimizer, scheduler = build_optimization(model, config.lr, config.weight_decay, config.warmup_ratio,
                                              config.steps * config.mu, config.min_lr_ratio)  # fmt: skip
    save_config(config, run_dir / "config.yaml")
    write_manifest(run_dir, "rlvr", config.model, {"tasks": config.tasks, "eval_tasks": config.eval_tasks},
                   {"precision": precision, "train_tasks": len(train), "heldout_tasks": len(heldout)})  # fmt: skip
    sampler = make_sampler(model, tokenizer, batch_size=config.rollout_batch)
    rewards = RewardModel(config)
    reference = _reference(model, config)

    def batches_for(epoch: int) -> list[PromptBatch]:
        order = list(range(len(train)))
        random.Random(f"{config.seed}:epoch:{epoch}").shuffle(order)
        P = config.prompts_per_step
        return [PromptBatch(tuple(sorted(order[s : s + P]))) for s in range(0, len(order) - P + 1, P)]

    def step(index: int, micro: list[PromptBatch]) -> dict[str, float]:
        sampler.sync()
        groups, first, stats = collect(sampler, rewards, train, micro[0], config, index)
        stats |= reward_stats(first)
        generated = sum(len(r.token_ids) for g in first for r in g.rollouts)
        stats |= {"generated_tokens": generated, "generation_tokens_per_s": generated / stats["generation_s"]}
        started = time.perf_counter()
        if groups:
            rewards_P_G = torch.tensor([g.rewards for g in groups], dtype=torch.float32)
            advantages = compute_advantages(config, rewards_P_G).flatten()
            stats |= update(model, reference, optimizer, scheduler, groups, advantages, config, device, precision,
                            index)  # fmt: skip
        else:
            log.warning("step %d: every group had equal rewards; no update", index + 1)
        stats["training_s"] = time.perf_counter() - started
        total = stats["generation_s"] + stats["scoring_s"] + stats["training_s"]
        stats["generation_fraction"] = stats["generation_s"] / total
        stats["tokens"] = generated
        return stats

    def evaluate() -> dict[str, float]:
        sampler.sync()
        return evaluate_heldout(sampler, rewards, heldout, config)

    settings = LoopSettings(config.steps, 1, config.eval_every, config.save_every, config.keep_last, config.resume,
                            config.trackers, config.progress, desc="rlvr")  # fmt: skip
    try:
        last = run_loop(run_dir, settings, model, optimizer, scheduler, batches_for, step,
                        evaluate=evaluate if heldout else None)  # fmt: skip
    finally:
        rewards.close()
    atomic_write_json(run_dir / "eval.json", {k: v for k, v in last.items() if k.startswith("eval/")})
    plot_curves(run_dir / "metrics.jsonl", run_dir / "curves.png",
                ("reward_mean", "entropy", "response_length", "eval/greedy_accuracy"))  # fmt: skip
    return save_model(model, tokenizer, run_dir / "final")
