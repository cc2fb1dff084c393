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
