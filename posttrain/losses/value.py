"""PPO's critic side: GAE advantages and returns, advantage whitening, the clipped value loss, explained variance.

Layout: every tensor is (B, T), one sequence per row, `mask_B_T` True on the tokens an episode is made of (the
tokens the policy sampled and is trained on). `values_B_T[b, t]` is the critic's V(s_t), the value of the state
just before token t was sampled (read at the slot whose logits predict token t, as TRL's `value[:, context - 1 :
-1]`), and `rewards_B_T[b, t]` is the reward for sampling it: in RLVR the verifier's outcome on a sequence's last
trained token plus, optionally, a per-token KL penalty (`posttrain.train.ppo_update`).

GAE (Schulman et al. 2016, eq. 16), run backwards over the masked tokens of each row:

    δ_t = r_t + γ·V(s_t') - V(s_t),    A_t = δ_t + γλ·A_t',    R_t = A_t + V(s_t)   (the value target)

where t' is the next masked token of the row; after the last one the episode has ended, V = 0 and A = 0. Masked-out
slots are skipped, not treated as steps: a multi-turn trajectory's tool-output tokens, which the policy did not
sample, sit between two of its turns' tokens and the recursion runs from the last sampled token of one turn to the
first of the next as if they were adjacent (values are taken at sampled tokens only). With a right-padded mask this is
TRL's loop (`PPOTrainer.train`, TRL 0.19) exactly, which relies on zeros in the padding instead of a mask. γ = λ = 1
gives Monte-Carlo advantages (reward-to-go minus V); λ = 0 gives one-step TD errors; γ = 0 gives r_t - V(s_t).

Whitening (`masked_whiten`) is TRL's `trl.core.masked_whiten`: (x - mean) / sqrt(var + 1e-8) over every masked token
of the batch, var with Bessel's correction. The clipped value loss is PPO2's (Dhariwal et al. 2017, openai/baselines
`ppo2`; TRL's `vf_loss`): 0.5 · max((V - R)², (V_old + clip(V - V_old, ±ε_v) - R)²), a token mean.
"""

from __future__ import annotations

import torch

from posttrain.losses.reduce import masked_token_mean


def token_rewards(
    rewards_B: torch.Tensor, mask_B_T: torch.Tensor, kl_B_T: torch.Tensor | None = None, kl_coef: float = 0.0
) -> torch.Tensor:
    """(B, T) per-token rewards: each sequence's outcome reward on its last masked token, minus `kl_coef` · kl on
    every masked token (InstructGPT eq. 2, TRL's `non_score_reward`); 0 off-mask. A row without masked tokens gets
    nothing."""
    mask_B_T = mask_B_T.bool()
    last_B = torch.where(mask_B_T, torch.arange(mask_B_T.shape[1], device=mask_B_T.device), -1).max(-1).values
    has_tokens_B = last_B >= 0
    rewards_B_T = torch.zeros(mask_B_T.shape, dtype=rewards_B.dtype, device=mask_B_T.device)
    rows_B = torch.arange(mask_B_T.shape[0], device=mask_B_T.device)
    rewards_B_T[rows_B[has_tokens_B], last_B[has_tokens_B]] = rewards_B[has_tokens_B]
    if kl_B_T is not None and kl_coef != 0.0:
        rewards_B_T = rewards_B_T - kl_coef * torch.where(mask_B_T, kl_B_T, 0.0)
    return rewards_B_T


def gae(
    rewards_B_T: torch.Tensor, values_B_T: torch.Tensor, mask_B_T: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages_B_T, returns_B_T) by generalised advantage estimation over each row's masked tokens; 0 off-mask.

    The inputs are read only where `mask_B_T` is True, so padding may hold anything. Not differentiable on purpose:
    PPO's advantages and value targets are constants of the update (the values passed are the rollout's, V_old).
    """
    if not rewards_B_T.shape == values_B_T.shape == mask_B_T.shape or rewards_B_T.dim() != 2:
        raise ValueError(
            f"expected (B, T) rewards, values and mask, got {[tuple(x.shape) for x in (rewards_B_T, values_B_T, mask_B_T)]}"
        )
    mask_B_T = mask_B_T.bool()
    rewards_B_T, values_B_T = rewards_B_T.detach(), values_B_T.detach()
    next_value_B = rewards_B_T.new_zeros(rewards_B_T.shape[0])  # V after the last masked token: the episode is over
    next_advantage_B = torch.zeros_like(next_value_B)
    advantages = []
    for t in reversed(range(rewards_B_T.shape[1])):
        here_B = mask_B_T[:, t]
        delta_B = rewards_B_T[:, t] + gamma * next_value_B - values_B_T[:, t]
        advantage_B = torch.where(here_B, delta_B + gamma * lam * next_advantage_B, 0.0)
        next_value_B = torch.where(here_B, values_B_T[:, t], next_value_B)  # a skipped slot passes its successor on
        next_advantage_B = torch.where(here_B, advantage_B, next_advantage_B)
        advantages.append(advantage_B)
    advantages_B_T = torch.stack(advantages[::-1], dim=1)
    returns_B_T = torch.where(mask_B_T, advantages_B_T + values_B_T, 0.0)
    return advantages_B_T, returns_B_T


def masked_whiten(values_B_T: torch.Tensor, mask_B_T: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) over the masked entries (unbiased var, TRL's `masked_whiten`); 0 off-mask."""
    mask_B_T = mask_B_T.bool()
    n = int(mask_B_T.sum())
    if n < 2:
        raise ValueError(f"whitening needs at least 2 masked values (Bessel's correction), got {n}")
    picked = values_B_T[mask_B_T]
    mean = picked.mean()
    var = ((picked - mean) ** 2).sum() / (n - 1)
    return torch.where(mask_B_T, (values_B_T - mean) * torch.rsqrt(var + eps), 0.0)


def clipped_value_loss(
    values_B_T: torch.Tensor,
    old_values_B_T: torch.Tensor,
    returns_B_T: torch.Tensor,
    mask_B_T: torch.Tensor,
    *,
    clip_range: float,
    num_tokens: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO2's clipped value loss, 0.5 · max((V - R)², (V_old + clip(V - V_old, ±clip_range) - R)²), summed over
    masked tokens and divided by `num_tokens` (default: this call's masked tokens; pass the step's token count when
    the step spans micro-batches, so the loss does not depend on the split).

    The max keeps the larger error: once V has moved more than `clip_range` from the rollout's value in the
    direction of R, the clipped branch is the larger and its gradient is 0, so one batch cannot drag the critic far.

    Metrics (token means over this call): `value_loss` (equal to the loss when `num_tokens` is None) and
    `value_clip_fraction` (tokens where the clipped branch is strictly larger, TRL's `vf_clipfrac`).
    """
    if not values_B_T.shape == old_values_B_T.shape == returns_B_T.shape == mask_B_T.shape:
        raise ValueError("values, old values, returns and mask must share one (B, T) shape")
    mask_B_T = mask_B_T.bool()
    clipped_B_T = torch.clamp(values_B_T, old_values_B_T - clip_range, old_values_B_T + clip_range)
    unclipped_error_B_T = torch.where(mask_B_T, values_B_T - returns_B_T, 0.0) ** 2
    clipped_error_B_T = torch.where(mask_B_T, clipped_B_T - returns_B_T, 0.0) ** 2
    terms_B_T = 0.5 * torch.max(unclipped_error_B_T, clipped_error_B_T)
    metrics = {
        "value_loss": float(masked_token_mean(terms_B_T.detach(), mask_B_T)),
        "value_clip_fraction": float(masked_token_mean((clipped_error_B_T > unclipped_error_B_T).float(), mask_B_T)),
    }
    return masked_token_mean(terms_B_T, mask_B_T, normalizer=num_tokens), metrics


def explained_variance(predicted_B_T: torch.Tensor, targets_B_T: torch.Tensor, mask_B_T: torch.Tensor) -> float:
    """1 - Var(targets - predicted) / Var(targets) over the masked entries: 1 for a perfect critic, 0 for one that
    predicts a constant (the mean) or nothing, negative for one worse than that; NaN when the targets are constant.

    Population variances (the ratio does not depend on the correction), as cleanRL and Stable-Baselines3 log it.
    """
    mask_B_T = mask_B_T.bool()
    targets, predicted = targets_B_T[mask_B_T].double(), predicted_B_T[mask_B_T].double()
    target_var = targets.var(correction=0)
    if target_var == 0:
        return float("nan")
    return float(1.0 - (targets - predicted).var(correction=0) / target_var)
