"""The PPO-clip policy update over sampled rollouts, shared by every stage that trains on its own samples (RLVR now;
agent RL and on-policy distillation next).

`policy_update` takes the rollouts of one RL step (prompt ids, sampled ids and the sampler's log-probs, never
re-encoded text) and their advantages, and makes `mu` optimizer steps, each a pass over packed micro-batches. The
loss is the configured variant of `posttrain.losses.policy.POLICY_LOSSES` on log-probs of logits / temperature
(what the sampler used), its ratio taken against the sampler's log-probs, normalised for the whole step (a
micro-batch weighs its share of sequences for the per-sequence means, and the token- or constant-normalised
variants are given the step's totals). With a `reference` the k3 KL to it is added per token.

The sampler's mismatch (`tis_cap` > 0; Yao et al. 2025, TRL's `vllm_importance_sampling_correction`, veRL's
`tis_imp_ratio_cap`): a sampler that is another engine (vLLM, the fused engine's bf16 weights) gives the same tokens
other log-probs than the trainer, so "on-policy" rollouts are slightly off-policy. Before the step's first update the
trainer's log-probs of every rollout are recomputed once, without gradients, on the same packed batches, temperature
and autocast as the update (`sampler_correction`); they become π_old for the PPO ratio (so at the first pass the ratio
is 1 and the clip measures the trainer's own drift only), and every token's loss is multiplied by the detached weight
min(π_trainer / π_sampler, tis_cap) (`posttrain.losses.policy.truncated_importance_weights`). The cost is one forward
of the policy over the step's rollouts. Logged once per step: `tis/weight_mean`, `tis/truncated_fraction` and
`tis/kl_sampler_trainer` (k3 of KL(sampler || trainer) per token). `kl_sampler` stays the KL between the policy being
trained and the sampler.

Packing: the rollouts of one prompt (the same `prompt_ids`: a GRPO group, or multi-turn trajectories from one
task) are packed with their shared prompt once and every completion attending to it
(`posttrain.packing.pack_shared_prefix`), so a group of 8 runs its prompt through the forward and backward once
rather than 8 times; the log-probs, losses and gradients are those of packing each rollout alone. A group longer
than a row is split over several segments of a row each, the prompt repeated in each. The reference model's
log-probs use the same batches.

Config keys read: loss, eps_low, eps_high, kl_beta, tis_cap, temperature, max_new_tokens, row_tokens,
rows_per_batch, mu, seed (and, through `accumulate_and_step`, grad_clip and the run's precision).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass

import torch

from posttrain.logprobs import padded_rows, per_sequence_tokens, token_logprobs, token_logprobs_and_entropy
from posttrain.losses.policy import POLICY_LOSSES, k3_kl, truncated_importance_weights
from posttrain.losses.reduce import masked_token_mean
from posttrain.packing import PackedBatch, pack_shared_prefix
from posttrain.rounds import rollout_sequence
from posttrain.train.optim import autocast
from posttrain.train.preamble import Run, accumulate_and_step
from posttrain.types import Rollout


@dataclass(frozen=True)
class SamplerCorrection:
    """Truncated importance sampling for one step (module docstring): (N, L) rows over all the step's rollouts, laid
    out as `per_sequence_tokens` lays them out."""

    old_logprobs_N_L: torch.Tensor  # the trainer's log-probs before the step's first update: the ratio's π_old
    weights_N_L: torch.Tensor  # min(π_trainer / π_sampler, tis_cap), 0 off the trained tokens


def trained_token_mask(rollouts: list[Rollout]) -> torch.Tensor:
    """(N, L) bool: row i True on its first (number of trained tokens of rollout i) positions."""
    counts_N = torch.tensor([sum(r.trained_mask) for r in rollouts])
    return torch.arange(int(counts_N.max()))[None, :] < counts_N[:, None]


@torch.no_grad()
def trainer_logprobs(run: Run, model, batches: list[PackedBatch], mask_N_L: torch.Tensor) -> torch.Tensor:
    """(N, L) the model's log-probs of every rollout's trained tokens, from packed `batches` covering them all, as
    the update computes them (the run's autocast, logits / temperature) but without gradients."""
    rows: list[tuple[list[int], torch.Tensor]] = []
    for batch in batches:
        batch = batch.to(run.device)
        with autocast(run.precision, run.device):
            logprobs_n_l, _ = per_sequence_tokens(token_logprobs(model, batch, run.config.temperature), batch)
        rows.append((list(batch.sequence_indices), logprobs_n_l))
    out_N_L = torch.zeros(mask_N_L.shape, dtype=rows[0][1].dtype, device=mask_N_L.device)
    for idx, logprobs_n_l in rows:
        out_N_L[idx, : logprobs_n_l.shape[1]] = logprobs_n_l
    return out_N_L


def sampler_correction(
    run: Run, model, rollouts: list[Rollout], batches: list[PackedBatch]
) -> tuple[SamplerCorrection | None, dict[str, float]]:
    """The step's correction for the sampler's mismatch and its metrics, or (None, {}) when `tis_cap` is 0.

    Every rank recomputes all the step's rollouts (the same forwards everywhere, so FSDP's gathers pair up), and so
    holds the whole step's weights and the same metrics."""
    cap = getattr(run.config, "tis_cap", 0.0)  # a config without the key: off
    if cap <= 0:
        return None, {}
    mask_N_L = trained_token_mask(rollouts).to(run.device)
    old_N_L = trainer_logprobs(run, model, batches, mask_N_L)
    sampler_N_L = padded_rows([r.sampled_logprobs for r in rollouts], mask_N_L)
    weights_N_L, metrics = truncated_importance_weights(old_N_L, sampler_N_L, mask_N_L, cap)
    return SamplerCorrection(old_N_L, weights_N_L), metrics


def policy_micro_loss(
    model,
    reference,
    loss_fn,
    rollouts: list[Rollout],
    advantages: torch.Tensor,
    config,
    metric_share: float,
    batch,
    correction: SamplerCorrection | None = None,
):
    """(loss scaled for the step, metrics scaled by `metric_share`) of one packed micro-batch of rollouts.

    `advantages`: (N,) one per rollout, or (N, L) one per trained token (PPO), rows laid out as `per_sequence_tokens`
    lays them out. With a `correction` the ratio is taken against its π_old and each token weighted by its weight.
    """
    idx = list(batch.sequence_indices)
    logprobs_B_T, entropy_B_T = token_logprobs_and_entropy(model, batch, config.temperature)
    logprobs_N_L, mask_N_L = per_sequence_tokens(logprobs_B_T, batch)
    entropy_N_L, _ = per_sequence_tokens(entropy_B_T, batch)
    sampler_N_L = padded_rows([rollouts[i].sampled_logprobs for i in idx], mask_N_L)
    old_N_L, weights_N_L = sampler_N_L, None
    if correction is not None:
        width = mask_N_L.shape[1]
        old_N_L, weights_N_L = correction.old_logprobs_N_L[idx, :width], correction.weights_N_L[idx, :width]
    ref_N_L = None
    if reference is not None:
        with torch.no_grad(), reference() as ref_model:
            ref_N_L, _ = per_sequence_tokens(token_logprobs(ref_model, batch, config.temperature), batch)
    advantages_N = advantages[idx].to(mask_N_L.device)
    if advantages_N.dim() == 2:  # per token: cut to this micro-batch's width
        advantages_N = advantages_N[:, : mask_N_L.shape[1]]
    loss, metrics = loss_fn(
        logprobs_N_L, old_N_L, advantages_N, mask_N_L, ref_logprobs_B_T=ref_N_L, is_weights_B_T=weights_N_L
    )
    metrics |= {
        "loss": float(loss.detach()),
        "entropy": float(masked_token_mean(entropy_N_L, mask_N_L)),
        "kl_sampler": float(masked_token_mean(k3_kl(logprobs_N_L.detach(), sampler_N_L, mask_N_L), mask_N_L)),
    }
    weight = len(idx) / len(rollouts) if POLICY_LOSSES[config.loss].per_sequence_mean else 1.0
    return loss * weight, {k: v * metric_share for k, v in metrics.items()}


def prompt_groups(rollouts: list[Rollout]) -> list[list[int]]:
    """Indices of the rollouts grouped by identical `prompt_ids`, in order of first appearance."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, rollout in enumerate(rollouts):
        groups[rollout.prompt_ids].append(i)
    return list(groups.values())


def rollout_batches(rollouts: list[Rollout], row_tokens: int, rows_per_batch: int, seed: int) -> list[PackedBatch]:
    """The rollouts as packed micro-batches, each prompt's rollouts sharing one copy of it (module docstring)."""
    sequences = [rollout_sequence(r) for r in rollouts]
    return pack_shared_prefix(sequences, prompt_groups(rollouts), row_tokens, rows_per_batch, 0, seed=seed)


def step_loss_fn(config, rollouts: list[Rollout]):
    """The configured loss variant with its clip range, KL weight and this step's normalisers bound."""
    n_tokens = sum(sum(r.trained_mask) for r in rollouts)  # sampled ids only: a trajectory's tool ids are not trained
    variant = POLICY_LOSSES[config.loss]
    low, high = config.eps_low or variant.clip[0], config.eps_high or variant.clip[1]  # 0: the paper's default
    return functools.partial(
        variant.fn,
        eps_low=low,
        eps_high=high,
        kl_beta=config.kl_beta,
        **variant.step_kwargs(len(rollouts), n_tokens, config.max_new_tokens),
    )


def policy_update(
    run: Run, model, reference, optimizer, scheduler, rollouts: list[Rollout], advantages: torch.Tensor, step: int
) -> dict[str, float]:
    """`mu` optimizer steps over the rollouts; returns the loss metrics averaged over micro-batches and passes."""
    config = run.config
    n_tokens = sum(sum(r.trained_mask) for r in rollouts)  # sampled ids only: a trajectory's tool ids are not trained
    loss_fn = step_loss_fn(config, rollouts)
    row_tokens = max(config.row_tokens, max(len(r.prompt_ids) + len(r.token_ids) for r in rollouts))

    def batches(epoch: int) -> list[PackedBatch]:
        return rollout_batches(rollouts, row_tokens, config.rows_per_batch, seed=config.seed + step * 31 + epoch)

    correction, tis_stats = sampler_correction(run, model, rollouts, batches(0))  # before any update
    totals: dict[str, float] = defaultdict(float)
    for epoch in range(config.mu):
        epoch_batches = batches(epoch)
        micro_loss = functools.partial(
            policy_micro_loss,
            model,
            reference,
            loss_fn,
            rollouts,
            advantages,
            config,
            1 / (len(epoch_batches) * config.mu),
            correction=correction,
        )
        stats = accumulate_and_step(run, model, optimizer, scheduler, epoch_batches, micro_loss)
        stepped = {"lr": stats.pop("lr"), "grad_norm": stats.pop("grad_norm")}
        for key, value in stats.items():
            totals[key] += value
    return tis_stats | dict(totals) | stepped | {"trained_tokens": n_tokens}
