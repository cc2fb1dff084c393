"""Token reductions: the one place where "mean over what" is decided (GRPO, DAPO and Dr.GRPO differ exactly here)."""

from __future__ import annotations

import torch


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of `values` where `mask` is True."""
    return (values * mask).sum()


def masked_token_mean(values: torch.Tensor, mask: torch.Tensor, normalizer: float | None = None) -> torch.Tensor:
    """Sum over masked tokens divided by `normalizer` (default: the number of masked tokens in `mask`).

    Pass the token count of the whole optimizer step as `normalizer` when a step spans several micro-batches, so
    that every token weighs the same however the step was split.
    """
    denominator = mask.sum() if normalizer is None else normalizer
    return masked_sum(values, mask) / max(float(denominator), 1.0)


def sequence_mean_of_token_means(values_B_T: torch.Tensor, mask_B_T: torch.Tensor) -> torch.Tensor:
    """Mean over the B sequences of each one's mean over its masked tokens (GRPO eq. 3: 1/G Σ_i 1/|o_i| Σ_t).

    Every sequence weighs the same whatever its length, so a token of a short sequence weighs more than one of a
    long sequence. A sequence with no masked token contributes 0 and still counts in B (TRL's convention).
    """
    tokens_B = mask_B_T.sum(-1).clamp(min=1)
    return ((values_B_T * mask_B_T).sum(-1) / tokens_B).mean()
