"""RL with verifiable rewards: GRPO, Dr.GRPO, DAPO, GSPO and PPO on tasks whose answers a program checks.

One step, top to bottom (`rl_step`):
1. sample: `prompts_per_step` training prompts (the epoch's shuffled order), `samples_per_prompt` episodes
   each in the environment (`env`, `posttrain.envs`), from the rollout engine (`posttrain.rollout.engine`, synced
   to the policy's weights first). `env=verifier` is one completion per episode; `env=tools` lets the model call
   tools (`tools`: calculator, python) over up to `max_turns` turns, the tool results appended as ids and masked
   out of the loss;
2. score: every episode's answer by its task's verifier (`posttrain.rewards.route`), plus an optional format
   reward and the DAPO soft overlong penalty. Verifier failures are counted per reason (`failure/<reason>` rates),
   tool use per episode (`tool_calls`, `tool_errors`, `turns`, `called_tool`);
3. dynamic sampling (DAPO §3.2, `dynamic_sampling=true`): groups whose rewards are all equal carry no gradient
   and are dropped; the step draws more prompts (a stream seeded by the step) until it has `prompts_per_step`
   informative groups or `max_refill_rounds` is reached. The dropped fraction is logged;
4. advantages per group (`posttrain.advantages`): z-score (GRPO, DAPO, GSPO), centred (Dr.GRPO) or
   leave-one-out (RLOO); or, with `loss=ppo`, per token by GAE over a critic trained alongside the policy
   (`posttrain.train.ppo_update`: a separate value model, `critic_model`/`critic_lr`/`vf_coef`/`cliprange_value`/
   `gamma`/`lam`, its weights checkpointed with the run and saved to `final_critic/`);
5. update: `mu` optimizer steps over the step's rollouts, each a pass over packed micro-batches of prompt +
   completion (loss on the completion's sampled ids, never re-encoded text), the PPO ratio taken against the
   rollout's log-probs (`posttrain.losses.policy`), log-probs from logits / temperature as the sampler's. Which
   update runs is a table entry (`LEARNERS`: PPO's, or the group-advantage update of every other loss);
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
    posttrain rlvr ... loss=ppo critic_lr=1e-5 kl_beta=0.05     # PPO with a critic, k1 KL penalty in the reward
"""

from __future__ import annotations

import functools
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from posttrain import distributed
from posttrain.advantages import ADVANTAGES
from posttrain.data import load_records
from posttrain.data.length import check_prompt_lengths
from posttrain.envs.catalog import ENVS
from posttrain.envs.episodes import run_groups
from posttrain.eval.passk import pass_rates
from posttrain.gate import DecontaminationOptions
from posttrain.io import atomic_write_json
from posttrain.losses.policy import POLICY_LOSSES
from posttrain.models import LoraSpec, load_tokenizer, save_model
from posttrain.rewards.route import check_prerequisites
from posttrain.rewards.shaped import ShapedReward, Shaping
from posttrain.rollout import SamplingParams
from posttrain.rollout.engine import make_sampler
from posttrain.rollout.options import SamplerOptions
from posttrain.rounds import Draw, Group, Refill, group_stats, refill_informative, sharded_draw
from posttrain.tasks.humaneval import assert_trainable
from posttrain.train.config import option
from posttrain.train.learner import Learner
from posttrain.train.loop import run_loop
from posttrain.train.plots import plot_curves
from posttrain.train.policy_update import policy_update
from posttrain.train.ppo_update import ppo_learner
from posttrain.train.preamble import ParallelOptions, open_run
from posttrain.train.reference import reference_policy
from posttrain.types import RLTask

log = logging.getLogger("posttrain.rlvr")


@dataclass(frozen=True)
class RLVRConfig(DecontaminationOptions, ParallelOptions, SamplerOptions):
    model: str = option("smollm2-135m-instruct", "model spec: HF directory, smollm2-135m-instruct or tiny-random-*")
    tasks: str = option("", "training tasks (rl schema)")
    eval_tasks: str = option("", "held-out tasks (rl schema) for pass@k; empty: no evaluation")
    output: str = option("runs/rlvr", "run directory")
    loss: str = option("grpo", "grpo, dr_grpo, dapo, gspo or ppo (with a critic)")
    advantage: str = option("auto", "auto (centered for dr_grpo, GAE for ppo, else group), group, centered or rloo")
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
    tis_cap: float = option(0.0, "truncated importance weights, min(p_trainer / p_sampler, tis_cap) per token; 0: off")
    eps_low: float = option(0.0, "lower clip range; 0: the loss's default (0.2; GSPO 3e-4)")
    eps_high: float = option(0.0, "upper clip range; 0: the loss's default (0.2; DAPO 0.28; GSPO 4e-4)")
    kl_beta: float = option(0.0, "KL to the starting policy: k3 in the loss (ppo: k1 in the reward); 0: no reference")
    dynamic_sampling: bool = option(False, "drop groups with equal rewards and refill (DAPO)")
    max_refill_rounds: int = option(2, "extra sampling rounds at most per step for dynamic sampling")
    format_weight: float = option(0.0, "weight of the format reward (one final \\boxed{} answer)")
    overlong_buffer: int = option(0, "DAPO soft overlong penalty over the last N tokens of max_new_tokens; 0: off")
    env: str = option("verifier", "verifier (one turn, the task's verifier) or tools (tool calls, then the verifier)")
    tools: tuple[str, ...] = option(("calculator",), "env=tools: the tools offered (calculator, python)")
    max_turns: int = option(4, "env=tools: assistant turns per episode at most")
    max_episode_tokens: int = option(1024, "env=tools: ids after the prompt per episode at most (sampled and tool)")
    critic_model: str = option("", "ppo: the critic's starting model (a final_critic/ keeps its head); empty: model")
    critic_lr: float = option(1e-5, "ppo: the critic's peak learning rate (the policy's schedule)")
    vf_coef: float = option(0.1, "ppo: weight of the clipped value loss")
    cliprange_value: float = option(0.2, "ppo: how far a value may move from the rollout's before its loss is clipped")
    gamma: float = option(1.0, "ppo: GAE discount")
    lam: float = option(0.95, "ppo: GAE lambda (1: Monte-Carlo returns, 0: one-step TD)")
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


def prompt_batches(n_tasks: int, per_step: int, seed: int, epoch: int) -> list[PromptBatch]:
    """One epoch's steps: the tasks shuffled by (seed, epoch), `per_step` to a step, an incomplete last step left out."""
    order = list(range(n_tasks))
    random.Random(f"{seed}:epoch:{epoch}").shuffle(order)
    return [PromptBatch(tuple(sorted(order[s : s + per_step]))) for s in range(0, n_tasks - per_step + 1, per_step)]


def compute_advantages(config: RLVRConfig, rewards_P_G: torch.Tensor) -> torch.Tensor:
    """Per-completion advantages, shape (P, G)."""
    kind = {"auto": POLICY_LOSSES[config.loss].advantage}.get(config.advantage, config.advantage)
    return ADVANTAGES[kind](rewards_P_G)


def group_learner(run, model, tokenizer, reference) -> Learner:
    """The policy alone, learning from group advantages with the configured clipped loss."""
    optimizer, scheduler = run.optimization(model, run.config.max_steps * run.config.mu)

    def update(rollouts, rewards_P_G: torch.Tensor, step: int) -> dict[str, float]:
        advantages = compute_advantages(run.config, rewards_P_G).flatten()
        return policy_update(run, model, reference, optimizer, scheduler, rollouts, advantages, step)

    return Learner(model, optimizer, scheduler, update)


LEARNERS = {"ppo": ppo_learner}  # loss -> how its learner is built; every other loss is a `group_learner`


def reward_model(config: RLVRConfig) -> ShapedReward:
    """The task verifiers plus the configured format reward and overlong penalty."""
    return ShapedReward(Shaping(config.format_weight, config.overlong_buffer, config.max_new_tokens))


def sampling(config: RLVRConfig, seed: int, temperature: float | None = None) -> SamplingParams:
    """The configured sampling parameters with `seed` (and another temperature for greedy evaluation)."""
    t = config.temperature if temperature is None else temperature
    return SamplingParams(config.max_new_tokens, t, config.top_p, config.top_k, seed, config.stop)


def collect(
    draw: Draw, train: list[RLTask], batch: PromptBatch, config: RLVRConfig, step: int
) -> tuple[list[Group], list[Group], dict[str, float]]:
    """(groups to train on, the first round's groups, timings and counts); `draw` runs the environment's episodes.
    Dynamic sampling refills from a stream seeded by the step."""
    timings = {"generation_s": 0.0, "scoring_s": 0.0}
    seed, tasks = config.seed * 1_000_003 + step * 17, [train[i] for i in batch.sequence_indices]
    first = draw(tasks, config.samples_per_prompt, sampling(config, seed), timings)
    if not config.dynamic_sampling:
        return first, first, timings | {"sampled_groups": len(first), "dropped_fraction": 0.0}
    refill = Refill(
        train, config.prompts_per_step, config.max_refill_rounds, random.Random(f"{config.seed}:refill:{step}")
    )
    kept, stats = refill_informative(draw, first, refill, lambda r: sampling(config, seed + r), timings)
    return kept, first, timings | stats


def evaluate_heldout(draw: Draw, tasks: list[RLTask], config: RLVRConfig) -> dict[str, float]:
    """pass@1 and pass@k (k = eval_samples at the training temperature) and greedy accuracy on held-out tasks, each
    episode run in the training environment."""
    sampled, greedy = sampling(config, config.seed + 7), sampling(config, 0, temperature=0.0)
    return pass_rates(draw, tasks, config.eval_samples, sampled, greedy)


def _check(config: RLVRConfig) -> None:
    if not config.tasks:
        raise ValueError("rlvr needs training tasks: --tasks FILE (rl schema)")
    if config.loss not in POLICY_LOSSES:
        raise ValueError(f"loss must be one of {', '.join(POLICY_LOSSES)}, got {config.loss!r}")
    if config.advantage != "auto" and config.advantage not in ADVANTAGES:
        raise ValueError(f"advantage must be auto or one of {', '.join(ADVANTAGES)}, got {config.advantage!r}")
    if config.temperature <= 0 or config.tis_cap < 0:
        raise ValueError("temperature must be > 0 (RL samples; the loss divides the logits by it), tis_cap >= 0")
    if config.samples_per_prompt < 2:
        raise ValueError("samples_per_prompt must be at least 2: a group of one has no baseline")
    if config.env not in ENVS:
        raise ValueError(f"env must be one of {', '.join(ENVS)}, got {config.env!r}")
    if config.loss in LEARNERS:
        distributed.single_process_only(config, f"loss={config.loss}")


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
    tokenizer = load_tokenizer(config.model)
    for tasks in (train, heldout):
        check_prompt_lengths(tasks, tokenizer, config.max_prompt_length)
    run = open_run(config, "rlvr", {"tasks": config.tasks, "eval_tasks": config.eval_tasks})
    model, tokenizer = run.policy()
    run.note(train_tasks=len(train), heldout_tasks=len(heldout))
    sampler = make_sampler(distributed.generation_copy(model), tokenizer, config.rollout_batch, options=config)
    env = ENVS[config.env](config, reward_model(config), tokenizer)
    draw = sharded_draw(functools.partial(run_groups, sampler, tokenizer, env))
    reference = reference_policy(model, enabled=config.kl_beta > 0)
    learner = LEARNERS.get(config.loss, group_learner)(run, model, tokenizer, reference)
    batches_for = functools.partial(prompt_batches, len(train), config.prompts_per_step, config.seed)

    def sync() -> None:
        distributed.refresh_generation_copy(model)
        sampler.sync()

    def step(index: int, micro: list[PromptBatch]) -> dict[str, float]:
        sync()
        groups, first, stats = collect(draw, train, micro[0], config, index)
        stats |= group_stats(first)
        generated = sum(sum(r.trained_mask) for g in first for r in g.rollouts)  # sampled ids, tool results not
        stats |= {"generated_tokens": generated, "generation_tokens_per_s": generated / stats["generation_s"]}
        started = time.perf_counter()
        if groups:
            rewards_P_G = torch.tensor([g.rewards for g in groups], dtype=torch.float32)
            stats |= learner.update([r for g in groups for r in g.rollouts], rewards_P_G, index)
        else:
            log.warning("step %d: every group had equal rewards; no update", index + 1)
        stats["training_s"] = time.perf_counter() - started
        total = stats["generation_s"] + stats["scoring_s"] + stats["training_s"]
        stats["generation_fraction"] = stats["generation_s"] / total
        return stats | {"tokens": generated, "sequences": len(micro[0].sequence_indices)}

    def evaluate() -> dict[str, float]:
        sync()
        return evaluate_heldout(draw, heldout, config)

    try:
        last = run_loop(
            run.dir,
            run.settings(config.max_steps, "rlvr", eval_every=config.eval_every),
            learner.module,
            learner.optimizer,
            learner.scheduler,
            batches_for,
            step,
            evaluate=evaluate if heldout else None,
        )
    finally:
        env.close()
    if distributed.is_main():
        atomic_write_json(run.dir / "eval.json", {k: v for k, v in last.items() if k.startswith("eval/")})
        curves = ("reward_mean", "entropy", "response_length", "eval/greedy_accuracy")
        plot_curves(run.dir / "metrics.jsonl", run.dir / "curves.png", curves)
        learner.save(run.dir)
    return save_model(model, tokenizer, run.dir / "final")
