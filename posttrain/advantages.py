"""Group-relative advantages for RL with verifiable rewards: GRPO's z-score, Dr.GRPO's centring, RLOO's baseline.

Rewards come in as `rewards_P_G`: P prompts, G sampled completions each. Every function returns one advantage per
completion, the same shape, to be broadcast over that completion's tokens by the policy loss.

Conventions (all as TRL 1.x's `GRPOTrainer` / `RLOOTrainer`, whose advantage code is inline in
`_generate_and_score_completions`):
- the group std is the unbiased one (Bessel's correction, `torch.std`'s default; TRL's `nanstd` is the same), and
  `eps` is added to the std, not under the square root: (r - mean) / (std + eps), eps = 1e-4;
- a constant group has std 0 and gets advantages of exactly 0 from both functions, never NaN;
- rewards must be finite: TRL masks NaN rewards (unscorable completions) out of the group statistics and zeroes their
  advantage; here a scorer records its failure and gives a reward, so a NaN reaching this point is a bug and raises.
"""

from __future__ import annotations

import functools

import torch


def _check_groups(rewards_P_G: torch.Tensor) -> None:
    """Raise unless rewards are finite, shaped (P, G) with G >= 2 (a group of one has no baseline)."""
    if rewards_P_G.dim() != 2 or rewards_P_G.shape[1] < 2:
        raise ValueError(
            f"expected rewards shaped (P, G) with G >= 2 samples per prompt, got {tuple(rewards_P_G.shape)}"
        )
    if not torch.isfinite(rewards_P_G).all():
        raise ValueError("rewards must be finite; record a scorer failure as a reward plus a failure, not NaN")


def group_normalized(rewards_P_G: torch.Tensor, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """GRPO (Shao et al. 2024, §4.1.2): (r - group mean) / (group std + eps); with `scale=False`, r - group mean.

    `scale=False` is Dr.GRPO (Liu et al. 2025, §3.1): dividing by the std up-weights prompts that are nearly always or
    nearly never solved (a question-level difficulty bias). TRL: `scale_rewards="group"` or `"none"`.
    """
    _check_groups(rewards_P_G)
    centred_P_G = rewards_P_G - rewards_P_G.mean(dim=1, keepdim=True)
    if not scale:
        return centred_P_G
    return centred_P_G / (rewards_P_G.std(dim=1, keepdim=True) + eps)


def leave_one_out(rewards_P_G: torch.Tensor) -> torch.Tensor:
    """RLOO (Ahmadian et al. 2024, eq. 6): r_i minus the mean reward of the other G - 1 samples of its prompt.

    Equal to G/(G-1) · (r_i - group mean), so it is Dr.GRPO's centred advantage scaled by G/(G-1).
    TRL's `RLOOTrainer` with `normalize_advantages=False` (its default).
    """
    _check_groups(rewards_P_G)
    G = rewards_P_G.shape[1]
    baselines_P_G = (rewards_P_G.sum(dim=1, keepdim=True) - rewards_P_G) / (G - 1)
    return rewards_P_G - baselines_P_G


ADVANTAGES = {
    "group": functools.partial(group_normalized, scale=True),  # GRPO: (r - mean) / std per group
    "centered": functools.partial(group_normalized, scale=False),  # Dr.GRPO: r - mean
    "rloo": leave_one_out,  # RLOO: r - mean of the others
}
