"""PPO with a critic (`loss=ppo`): the RLHF form of PPO (Ziegler et al. 2019; InstructGPT), as TRL's `PPOTrainer`.

One update (`ppo_update`) on the scored rollouts of one RL step:
1. score without gradients: the critic's V_old(s_t) at every trained token (`posttrain.train.critic`) and, with
   `kl_beta` > 0, the reference's log-probs;
2. per-token rewards (`posttrain.losses.value.token_rewards`): the verifier's reward on each sequence's last trained
   token, minus `kl_beta` · (log π_old - log π_ref) on every trained token (the k1 penalty, TRL's PPO default;
   π_old is the sampler's log-probs, or with `tis_cap` > 0 the trainer's recomputed ones, as veRL's
   `old_log_prob`). With PPO the KL lives in the reward, not in the loss;
3. GAE (`gamma`, `lam`) over each sequence's trained tokens gives advantages and returns (the value targets); the
   advantages are whitened over all the step's tokens, as TRL does;
4. `mu` passes over packed micro-batches of the rollouts (prompts shared, `policy_update.rollout_batches`), each one
   optimizer step of policy and critic together: the PPO-clip loss on per-token advantages
   (`posttrain.losses.policy.ppo_loss`, through `policy_update.policy_micro_loss`) plus `vf_coef` times the clipped
   value loss (`clipped_value_loss`, clip `cliprange_value` around V_old), both summed over tokens and divided by the
   step's trained-token count. The policy and the critic are clipped to `grad_clip` apart, and the critic has its
   own learning rate (`critic_lr`) on the same schedule; under AdamW `vf_coef` then matters only through the clip.
   With `tis_cap` > 0 the policy loss is corrected for the sampler's mismatch as in every other loss
   (`policy_update.sampler_correction`); the value loss is not weighted (as in veRL).

Multi-turn trajectories (`Rollout.sampled`): values, rewards and GAE run over the sampled tokens only, in order; tool
output and template tokens between turns are not steps of the episode (`posttrain.losses.value`).

Departures from TRL 0.19: TRL adds the score one slot past the last response token (its `padding_mask_p1`: the state
after the end-of-sequence token is a step of the episode); here it is on the last sampled token, where the episode
ends (V = 0 after it). TRL steps on minibatches of the rollout batch; here, as the GRPO family's update, each pass
over the step's rollouts is one optimizer step. TRL does not clip gradients in its PPO loop. `whiten_rewards` is not
offered.

Metrics: `value_loss`, `value_clip_fraction`, `critic_grad_norm` (means over the update); `explained_variance`
(of the returns by V_old), `value_mean`, `return_mean`, `advantage_mean` (before whitening) over the step's tokens;
`kl` (the mean per-token k1 penalised) with a reference; and the policy loss's own (`loss`, clip fractions, ...).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass

import torch

from posttrain.logprobs import padded_rows, per_sequence_tokens, token_logprobs
from posttrain.losses.reduce import masked_token_mean
from posttrain.losses.value import clipped_value_loss, explained_variance, gae, masked_whiten, token_rewards
from posttrain.train.critic import ValueModel, load_critic, save_critic, token_values
from posttrain.train.learner import Learner
from posttrain.train.optim import autocast, parameter_groups
from posttrain.train.policy_update import (
    SamplerCorrection,
    policy_micro_loss,
    rollout_batches,
    sampler_correction,
    step_loss_fn,
    trained_token_mask,
)
from posttrain.train.preamble import Run, accumulate_and_step, lora_spec
from posttrain.types import Rollout


class PolicyAndCritic(torch.nn.Module):
    """The policy and its critic as one module, so the shared loop checkpoints and restores both (`policy.*`,
    `critic.*`). Only the policy samples and is saved as `final/`."""

    def __init__(self, policy: torch.nn.Module, critic: ValueModel):
        super().__init__()
        self.policy = policy
        self.critic = critic


@dataclass(frozen=True)
class ValueTargets:
    """The constants of one update, (N, L) rows over all the step's rollouts, laid out as `per_sequence_tokens`."""

    advantages_N_L: torch.Tensor  # GAE, whitened
    old_values_N_L: torch.Tensor  # V_old: the critic's values when the rollouts were scored
    returns_N_L: torch.Tensor  # the value targets, advantages (before whitening) + V_old
    num_tokens: int  # trained tokens in the step: the loss normaliser


@torch.no_grad()
def score_tokens(run: Run, critic: ValueModel, reference, batches, mask_N_L: torch.Tensor):
    """(V_old, reference log-probs or None), each (N, L) over every rollout of the step, from packed `batches`."""
    values_N_L = torch.zeros(mask_N_L.shape, device=mask_N_L.device)
    ref_N_L = None if reference is None else torch.zeros_like(values_N_L)
    for batch in batches:
        batch = batch.to(run.device)
        idx = list(batch.sequence_indices)
        with autocast(run.precision, run.device):
            values_n_l, mask_n_l = per_sequence_tokens(token_values(critic, batch), batch)
            values_N_L[idx, : mask_n_l.shape[1]] = values_n_l.float()
            if reference is not None:
                with reference() as ref_model:
                    ref_n_l, _ = per_sequence_tokens(token_logprobs(ref_model, batch, run.config.temperature), batch)
                ref_N_L[idx, : mask_n_l.shape[1]] = ref_n_l.float()
    return values_N_L, ref_N_L


def value_targets(
    run: Run, critic, reference, rollouts, rewards_N, batches, old_logprobs_N_L: torch.Tensor | None = None
) -> tuple[ValueTargets, dict[str, float]]:
    """GAE advantages (whitened) and returns for the step's rollouts, and the step's critic metrics; the k1 penalty
    is taken against `old_logprobs_N_L` (default: the sampler's log-probs)."""
    config = run.config
    mask_N_L = trained_token_mask(rollouts).to(run.device)
    old_values_N_L, ref_N_L = score_tokens(run, critic, reference, batches, mask_N_L)
    kl_N_L = None
    if ref_N_L is not None:
        if old_logprobs_N_L is None:
            old_logprobs_N_L = padded_rows([r.sampled_logprobs for r in rollouts], mask_N_L)
        kl_N_L = torch.where(mask_N_L, old_logprobs_N_L - ref_N_L, 0.0)
    rewards_N_L = token_rewards(rewards_N.to(run.device), mask_N_L, kl_N_L, config.kl_beta)
    advantages_N_L, returns_N_L = gae(rewards_N_L, old_values_N_L, mask_N_L, config.gamma, config.lam)
    stats = {
        "explained_variance": explained_variance(old_values_N_L, returns_N_L, mask_N_L),
        "value_mean": float(masked_token_mean(old_values_N_L, mask_N_L)),
        "return_mean": float(masked_token_mean(returns_N_L, mask_N_L)),
        "advantage_mean": float(masked_token_mean(advantages_N_L, mask_N_L)),
    }
    if kl_N_L is not None:
        stats["kl"] = float(masked_token_mean(kl_N_L, mask_N_L))
    whitened_N_L = masked_whiten(advantages_N_L, mask_N_L)
    return ValueTargets(whitened_N_L, old_values_N_L, returns_N_L, int(mask_N_L.sum())), stats


def ppo_micro_loss(
    pair: PolicyAndCritic,
    loss_fn,
    rollouts,
    targets: ValueTargets,
    config,
    metric_share,
    batch,
    correction: SamplerCorrection | None = None,
):
    """(policy loss + vf_coef · value loss, metrics scaled by `metric_share`) of one packed micro-batch."""
    loss, metrics = policy_micro_loss(
        pair.policy, None, loss_fn, rollouts, targets.advantages_N_L, config, metric_share, batch, correction
    )
    idx = list(batch.sequence_indices)
    values_n_l, mask_n_l = per_sequence_tokens(token_values(pair.critic, batch), batch)
    width = mask_n_l.shape[1]
    value_loss, value_metrics = clipped_value_loss(
        values_n_l,
        targets.old_values_N_L[idx, :width],
        targets.returns_N_L[idx, :width],
        mask_n_l,
        clip_range=config.cliprange_value,
        num_tokens=targets.num_tokens,
    )
    return loss + config.vf_coef * value_loss, metrics | {k: v * metric_share for k, v in value_metrics.items()}


def ppo_update(
    run: Run, pair: PolicyAndCritic, reference, optimizer, scheduler, rollouts: list[Rollout], rewards_N, step: int
) -> dict[str, float]:
    """Score, GAE, then `mu` optimizer steps of policy and critic over the rollouts (module docstring)."""
    config = run.config
    row_tokens = max(config.row_tokens, max(len(r.prompt_ids) + len(r.token_ids) for r in rollouts))

    def batches(epoch: int):
        return rollout_batches(rollouts, row_tokens, config.rows_per_batch, seed=config.seed + step * 31 + epoch)

    correction, tis_stats = sampler_correction(run, pair.policy, rollouts, batches(0))  # before any update
    old_N_L = None if correction is None else correction.old_logprobs_N_L
    targets, stats = value_targets(run, pair.critic, reference, rollouts, rewards_N, batches(0), old_N_L)
    loss_fn = functools.partial(step_loss_fn(config, rollouts), kl_beta=0.0, num_tokens=targets.num_tokens)
    parts = {"": pair.policy, "critic_": pair.critic}
    totals: dict[str, float] = defaultdict(float)
    for epoch in range(config.mu):
        epoch_batches = batches(epoch)
        share = 1 / (len(epoch_batches) * config.mu)
        micro_loss = functools.partial(
            ppo_micro_loss, pair, loss_fn, rollouts, targets, config, share, correction=correction
        )
        result = accumulate_and_step(run, pair, optimizer, scheduler, epoch_batches, micro_loss, parts)
        stepped = {key: result.pop(key) for key in ("lr", "grad_norm", "critic_grad_norm")}
        for key, value in result.items():
            totals[key] += value
    return stats | tis_stats | dict(totals) | stepped | {"trained_tokens": targets.num_tokens}


def ppo_learner(run: Run, policy, tokenizer, reference) -> Learner:
    """The policy and a critic (`critic_model`, default the policy's starting model), one optimizer over both with
    the critic at `critic_lr`, the PPO update, and `final_critic/` saved beside `final/`."""
    config = run.config
    if config.advantage != "auto":
        raise ValueError(
            f"loss=ppo takes its advantages from GAE over its critic: advantage must be auto, got {config.advantage!r}"
        )
    spec = config.critic_model or config.model
    critic, critic_tokenizer = load_critic(
        spec, run.device, config.seed, lora_spec(config), config.gradient_checkpointing
    )
    if critic_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"critic_model {spec!r} has another vocabulary than the policy; it must read the same ids")
    pair = PolicyAndCritic(policy, critic)
    groups = parameter_groups(policy, config.weight_decay) + parameter_groups(
        critic, config.weight_decay, lr=config.critic_lr
    )
    optimizer, scheduler = run.optimization(pair, config.max_steps * config.mu, groups)

    def update(rollouts: list[Rollout], rewards_P_G: torch.Tensor, step: int) -> dict[str, float]:
        return ppo_update(run, pair, reference, optimizer, scheduler, rollouts, rewards_P_G.flatten(), step)

    return Learner(
        pair,
        optimizer,
        scheduler,
        update,
        lambda run_dir: save_critic(critic, critic_tokenizer, run_dir / "final_critic"),
    )
