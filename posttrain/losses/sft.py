"""Supervised fine-tuning loss: token-level negative log-likelihood on the trained (assistant) tokens."""

from __future__ import annotations

import torch

from posttrain.losses.reduce import masked_sum, masked_token_mean


def sft_loss(
    logprobs_B_T: torch.Tensor, mask_B_T: torch.Tensor, normalizer: float | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean NLL per trained token; `normalizer` is the step's token count when a step spans micro-batches."""
    nll_B_T = -logprobs_B_T
    loss = masked_token_mean(nll_B_T, mask_B_T, normalizer)
    metrics = {"nll_sum": float(masked_sum(nll_B_T.detach(), mask_B_T)), "n_tokens": int(mask_B_T.sum())}
    return loss, metrics
