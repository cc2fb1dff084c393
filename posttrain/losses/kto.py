"""KTO (Ethayarajh et al. 2024): unpaired desirable/undesirable completions scored against a batch KL baseline.

The baseline z0 estimates KL(policy || reference) from MISMATCHED (prompt, completion) pairs of the same batch:
completion i is scored under prompt (i+1) % n (`mismatched_indices`), by the policy and by the reference. This is
the pairing TRL uses (its collator gives prompt j the completion j-1, the same set of pairs). z0 is clamped at 0 and
detached: it only sets where the sigmoid saturates, and TRL computes it under no_grad.
"""

from __future__ import annotations

import torch


def mismatched_indices(n: int) -> torch.Tensor:
    """Prompt index for each completion of the KL batch: row i scores completion i under prompt (i+1) % n."""
    if n < 2:
        raise ValueError(f"the KL baseline needs at least 2 examples per batch to mismatch, got {n}")
    return (torch.arange(n) + 1) % n


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    labels: torch.Tensor,
    kl_policy_logps: torch.Tensor,
    kl_ref_logps: torch.Tensor,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """KTO loss, the mean over all N examples of w_d(1 - σ(β(r - z0))) if desirable, else w_u(1 - σ(β(z0 - r))).

    policy_logps, ref_logps: summed completion log-probs, shape (N,); labels: bool (N,), True = desirable;
    kl_policy_logps, kl_ref_logps: summed log-probs of the mismatched pairs, shape (M,); r = policy - reference.
    Reduction, as TRL's `KTOTrainer`: one mean over the whole batch, so an imbalanced batch weighs each class by its
    count (the paper balances classes with w_d, w_u instead). TRL uses `nanmean`; we use `mean`, so a NaN shows up.
    Metrics `chosen_reward` / `rejected_reward` (mean β·r per class) are left out when the batch has no such example.
    """
    if not (policy_logps.shape == ref_logps.shape == labels.shape) or policy_logps.dim() != 1:
        raise ValueError("policy_logps, ref_logps and labels must be 1-D of equal length")
    labels_N = labels.to(torch.bool)
    kl = (kl_policy_logps - kl_ref_logps).mean().detach().clamp(min=0)
    logratios_N = policy_logps - ref_logps
    desirable_losses_N = desirable_weight * (1 - torch.sigmoid(beta * (logratios_N - kl)))
    undesirable_losses_N = undesirable_weight * (1 - torch.sigmoid(beta * (kl - logratios_N)))
    losses_N = torch.where(labels_N, desirable_losses_N, undesirable_losses_N)

    rewards_N = beta * logratios_N.detach().float()
    metrics = {"kl": float(kl), "n_desirable": float(labels_N.sum()), "n_undesirable": float((~labels_N).sum())}
    if labels_N.any():
        metrics["chosen_reward"] = float(rewards_N[labels_N].mean())
    if (~labels_N).any():
        metrics["rejected_reward"] = float(rewards_N[~labels_N].mean())
    if labels_N.any() and (~labels_N).any():
        metrics["reward_margin"] = metrics["chosen_reward"] - metrics["rejected_reward"]
    return losses_N.mean(), metrics
