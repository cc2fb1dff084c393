"""The PPO-clip policy update over sampled rollouts, shared by every stage that trains on its own samples (RLVR now;
agent RL and on-policy distillation next).

`policy_update` takes the rollouts of one RL step (prompt ids, sampled ids and the sampler's log-probs, never
re-encoded text) and their advantages, and makes `mu` optimizer steps, each a pass over packed micro-batches. The
loss is the configured variant of `posttrain.losses.policy.POLICY_LOSSES` on log-probs of logits / temperature
(what the sampler used), its ratio taken against the sampler's log-probs, normalised for the whole step (a
micro-batch weighs its share of sequences for the per-sequence means, and the token- or constant-normalised
variants are given the step's totals). With a `reference` the k3 KL to it is added per token.

Packing: the rollouts of one prompt (the same `prompt_ids`: a GRPO group, or multi-turn trajectories from one
task) are packed with their shared prompt once and every completion attending to it
(`posttrain.packing.pack_shared_prefix`), so a group of 8 runs its prompt through the forward and backward once
rather than 8 times; the log-probs, losses and gradients are those of packing each rollout alone. A group longer
than a row is split over several segments of a row each, the prompt repeated in each. The reference model's
log-probs use the same batches.

Config keys read: loss, eps_low, eps_high, kl_beta, temperature, max_new_tokens, row_tokens, rows_per_batch, mu,
seed (and, through `accumulate_and_step`, grad_clip and the run's precision).
"""

from __future__ import annotations

import functools
from collections import defaultdict

import torch

from posttrain.logprobs import padded_rows, per_sequence_tokens, token_logprobs, token_logprobs_and_entropy
from posttrain.losses.policy import POLICY_LOSSES, k3_kl
from posttrain.losses.reduce import masked_token_mean
from posttrain.packing import PackedBatch, pack_shared_prefix
from posttrain.rounds import rollout_sequence
from posttrain.train.preamble import Run, accumulate_and_step
from posttrain.types import Rollout


def policy_micro_loss(
    model,
    reference,
    loss_fn,
    rollouts: list[Rollout],
    advantages: torch.Tensor,
    config,
    metric_share: float,
    batch,
):
    """(loss scaled for the step, metrics scaled by `metric_share`) of one packed micro-batch of rollouts.

    `advantages`: (N,) one per rollout, or (N, L) one per trained token (PPO), rows laid out as `per_sequence_tokens`
    lays them out.
    """
    idx = list(batch.sequence_indices)
    logprobs_B_T, entropy_B_T = token_logprobs_and_entropy(model, batch, config.temperature)
    logprobs_N_L, mask_N_L = per_sequence_tokens(logprobs_B_T, batch)
    entropy_N_L, _ = per_sequence_tokens(entropy_B_T, batch)
    old_N_L = padded_rows([rollouts[i].sampled_logprobs for i in idx], mask_N_L)
    ref_N_L = None
    if reference is not None:
        with torch.no_grad(), reference() as ref_model:
            ref_N_L, _ = per_sequence_tokens(token_logprobs(ref_model, batch, config.temperature), batch)
    advantages_N = advantages[idx].to(mask_N_L.device)
    if advantages_N.dim() == 2:  # per token: cut to this micro-batch's width
        advantages_N = advantages_N[:, : mask_N_L.shape[1]]
    loss, metrics = loss_fn(logprobs_N_L, old_N_L, advantages_N, mask_N_L, ref_logprobs_B_T=ref_N_L)
    metrics |= {
        "loss": float(loss.detach()),
        "entropy": float(masked_token_mean(entropy_N_L, mask_N_L)),
        "kl_sampler": float(masked_token_mean(k3_kl(logprobs_N_L.detach(), old_N_L, mask_N_L), mask_N_L)),
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
    totals: dict[str, float] = defaultdict(float)
    for epoch in range(config.mu):
        batches = rollout_batches(rollouts, row_tokens, config.rows_per_batch, seed=config.seed + step * 31 + epoch)
        micro_loss = functools.partial(
            policy_micro_loss, model, reference, loss_fn, rollouts, advantages, config, 1 / (len(batches) * config.mu)
        )
        stats = accumulate_and_step(run, model, optimizer, scheduler, batches, micro_loss)
        stepped = {"lr": stats.pop("lr"), "grad_norm": stats.pop("grad_norm")}
        for key, value in stats.items():
            totals[key] += value
    return dict(totals) | stepped | {"trained_tokens": n_tokens}
