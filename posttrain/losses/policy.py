"""PPO-clip policy losses for RL with verifiable rewards: GRPO, Dr.GRPO, DAPO, GSPO and PPO with a critic.

All five minimise one clipped surrogate (PPO, Schulman et al. 2017, eq. 7), per completion token,

    ℓ = -min(r·A, clip(r, 1 - ε_low, 1 + ε_high)·A),

with A the completion's advantage (`posttrain.advantages`) or, for PPO, each token's own GAE advantage
(`posttrain.losses.value.gae`), and differ on two axes, both explicit in `policy_loss`:
- `ratio_level`: the importance ratio is per token, r_t = π(y_t)/π_old(y_t), or per sequence (GSPO eq. 7),
  s = exp(mean over the sequence's tokens of log r_t), clipped once and broadcast to every token of the sequence;
- `reduction` (from `posttrain.losses.reduce`) turns the (B, T) per-token terms into one number: GRPO eq. 3 averages
  tokens within each sequence, then sequences; DAPO eq. 8 averages over all tokens of the batch; Dr.GRPO divides the
  sum by a constant, B · max_completion_length.

Inputs are per-token, shape (B, T): `logprobs_B_T` of the policy being trained, `old_logprobs_B_T` of the policy
that sampled the rollout (held fixed across the caller's μ inner epochs), `mask_B_T` on completion tokens; and
`advantages_B`, one per sequence, or per token, shape (B, T) (PPO). Padded positions may hold anything, even -inf:
they are masked before any exp.

Optional KL to a reference (GRPO eq. 4, the k3 estimator) is added per token before the reduction, as in TRL:
kl_t = exp(ref_t - π_t) - (ref_t - π_t) - 1 ≥ 0, zero when the two agree. β defaults to 0, as in Dr.GRPO, DAPO and
TRL. Departure from TRL: TRL 1.x multiplies kl_t by the (differentiable) ratio by default
(`use_bias_correction_kl=True`, after DeepSeek-V3.2); here kl_t is plain k3, TRL's `use_bias_correction_kl=False`.

Metrics, as TRL logs them: `clip_low_fraction` / `clip_high_fraction` are the fractions of completion tokens (of
sequences, at sequence level) where the clip binds, i.e. r < 1 - ε_low with A < 0, or r > 1 + ε_high with A > 0 (the
tokens whose gradient is zeroed); `clip_fraction` is their sum; `ratio_mean` the mean ratio over the same units; `kl`
the mean k3 per completion token, whenever `ref_logprobs_B_T` is passed.

Truncated importance sampling against the sampler's mismatch (Yao et al. 2025, "Your efficient RL framework secretly
brings you off-policy RL training"; TRL's `vllm_importance_sampling_mode="token_truncate"`, veRL's
`tis_imp_ratio_cap`): when the rollouts come from another engine (vLLM, a bf16 copy of the weights) its log-probs
π_sampler differ from the trainer's π_trainer on the same tokens. The caller then takes π_old = the trainer's own
log-probs of the rollout, recomputed before the update, and passes `is_weights_B_T`, the detached per-token weights
w_t = min(π_trainer(y_t) / π_sampler(y_t), C) from `truncated_importance_weights`: each clipped term is multiplied by
w_t before the reduction, ℓ_t = -w_t · min(r_t·A, clip(r_t)·A), which corrects the expectation over the sampler's
tokens to one over the trainer's, the cap C bounding the variance. As in TRL the KL term is added after the weighting,
unweighted. Without `is_weights_B_T` nothing changes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from posttrain.losses.reduce import masked_token_mean, sequence_mean_of_token_means

Reduction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (values_B_T, mask_B_T) -> scalar


def _check_shapes(logprobs_B_T, old_logprobs_B_T, advantages_B, mask_B_T, optional_B_T, per_token_advantages) -> None:
    """Raise unless the per-token tensors (and those of `optional_B_T` that are not None) share one (B, T) shape and
    there is one advantage per sequence (per token with `per_token_advantages`)."""
    per_token = [logprobs_B_T, old_logprobs_B_T, mask_B_T] + [x for x in optional_B_T if x is not None]
    shapes = {tuple(x.shape) for x in per_token}
    if len(shapes) != 1 or logprobs_B_T.dim() != 2:
        raise ValueError(f"expected per-token tensors of one shape (B, T), got shapes {sorted(shapes)}")
    if per_token_advantages and tuple(advantages_B.shape) != tuple(logprobs_B_T.shape):
        raise ValueError(
            f"expected one advantage per token, shape {tuple(logprobs_B_T.shape)}, got {advantages_B.shape}"
        )
    if not per_token_advantages and tuple(advantages_B.shape) != (logprobs_B_T.shape[0],):
        raise ValueError(
            f"expected one advantage per sequence, shape ({logprobs_B_T.shape[0]},), got {advantages_B.shape}"
        )


def _wide(x: torch.Tensor) -> torch.Tensor:
    """fp32 unless already wider: exp of a bf16 log-ratio is too coarse for a clip at 1 ± 3e-4."""
    return x if x.dtype == torch.float64 else x.float()


def _masked_difference(a_B_T: torch.Tensor, b_B_T: torch.Tensor, mask_B_T: torch.Tensor) -> torch.Tensor:
    """a - b on completion tokens, 0 elsewhere (so padding holding -inf or NaN never reaches an exp)."""
    return torch.where(mask_B_T.bool(), _wide(a_B_T) - _wide(b_B_T), 0.0)


def clipped_surrogate(
    logprobs_B_T: torch.Tensor,
    old_logprobs_B_T: torch.Tensor,
    advantages_B: torch.Tensor,
    mask_B_T: torch.Tensor,
    *,
    eps_low: float,
    eps_high: float,
    ratio_level: Literal["token", "sequence"] = "token",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token PPO-clip terms -min(rA, clip(r)A), shape (B, T), plus the ratio and the advantage used.

    The ratio is (B, T) at token level and (B, 1) at sequence level (GSPO eq. 7: exp of the mean token log-ratio),
    where one clipped term per sequence is broadcast to its tokens. The advantage comes back as (B, 1), or as
    (B, T) when one was given per token.
    """
    log_ratio_B_T = _masked_difference(logprobs_B_T, old_logprobs_B_T, mask_B_T)
    if ratio_level == "token":
        log_ratio = log_ratio_B_T
    elif ratio_level == "sequence":
        log_ratio = log_ratio_B_T.sum(-1, keepdim=True) / mask_B_T.sum(-1, keepdim=True).clamp(min=1)  # (B, 1)
    else:
        raise ValueError(f"ratio_level must be 'token' or 'sequence', got {ratio_level!r}")
    ratio = torch.exp(log_ratio)
    advantages_B_1 = _wide(advantages_B) if advantages_B.dim() == 2 else _wide(advantages_B).unsqueeze(1)
    clipped_ratio = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    terms = -torch.min(ratio * advantages_B_1, clipped_ratio * advantages_B_1)
    return terms.expand_as(log_ratio_B_T), ratio, advantages_B_1


def k3_kl(logprobs_B_T: torch.Tensor, ref_logprobs_B_T: torch.Tensor, mask_B_T: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(π || ref) (Schulman 2020; GRPO eq. 4): e^d - d - 1 with d = ref - π, 0 off-mask."""
    d_B_T = _masked_difference(ref_logprobs_B_T, logprobs_B_T, mask_B_T)
    return torch.exp(d_B_T) - d_B_T - 1.0


def truncated_importance_weights(
    trainer_logprobs_B_T: torch.Tensor, sampler_logprobs_B_T: torch.Tensor, mask_B_T: torch.Tensor, cap: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """Detached per-token weights min(π_trainer / π_sampler, cap), 0 off-mask (Yao et al. 2025; module docstring),
    and their metrics.

    `tis/weight_mean`: the mean weight per completion token (near 1 when the engines agree: E_sampler[π_t/π_s] = 1
    before truncation); `tis/truncated_fraction`: the fraction of tokens whose weight the cap bounds;
    `tis/kl_sampler_trainer`: the mismatch, k3 of KL(π_sampler || π_trainer) per token, e^d - d - 1 with
    d = log π_trainer - log π_sampler (unbiased on the sampler's tokens; 0 when the engines agree).
    """
    if cap <= 0:
        raise ValueError(f"the importance weight cap must be > 0, got {cap}")
    log_ratio_B_T = _masked_difference(trainer_logprobs_B_T.detach(), sampler_logprobs_B_T.detach(), mask_B_T)
    ratio_B_T = torch.exp(log_ratio_B_T)
    weights_B_T = torch.where(mask_B_T.bool(), ratio_B_T.clamp(max=cap), 0.0)
    d_B_T = log_ratio_B_T.double()  # k3 ≈ d²/2 of a 1e-3 nat mismatch is below fp32's resolution of e^d - 1 near 0
    metrics = {
        "tis/weight_mean": float(masked_token_mean(weights_B_T, mask_B_T)),
        "tis/truncated_fraction": float(masked_token_mean((ratio_B_T > cap).float(), mask_B_T)),
        "tis/kl_sampler_trainer": float(masked_token_mean(torch.expm1(d_B_T) - d_B_T, mask_B_T)),
    }
    return weights_B_T, metrics


def _unit_mean(values: torch.Tensor, mask_B_T: torch.Tensor) -> float:
    """Mean over completion tokens of a (B, T) tensor, or over sequences of a (B, 1) one."""
    values = _wide(values.detach())
    return float(values.mean()) if values.shape[-1] == 1 else float(masked_token_mean(values, mask_B_T))


def policy_loss(
    logprobs_B_T: torch.Tensor,
    old_logprobs_B_T: torch.Tensor,
    advantages_B: torch.Tensor,
    mask_B_T: torch.Tensor,
    *,
    reduction: Reduction,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    ratio_level: Literal["token", "sequence"] = "token",
    ref_logprobs_B_T: torch.Tensor | None = None,
    kl_beta: float = 0.0,
    per_token_advantages: bool = False,
    is_weights_B_T: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO-clip surrogate (times `is_weights_B_T` when given) plus kl_beta · k3 KL per token, reduced by `reduction`;
    see the module docstring.

    `advantages_B` is (B,), one per sequence, or with `per_token_advantages` (B, T), one per token (PPO).
    `is_weights_B_T`: truncated importance weights against the sampler's mismatch (`truncated_importance_weights`),
    treated as constants."""
    optional_B_T = (ref_logprobs_B_T, is_weights_B_T)
    _check_shapes(logprobs_B_T, old_logprobs_B_T, advantages_B, mask_B_T, optional_B_T, per_token_advantages)
    if kl_beta != 0.0 and ref_logprobs_B_T is None:
        raise ValueError("kl_beta != 0 needs ref_logprobs_B_T")
    terms_B_T, ratio, advantages_B_1 = clipped_surrogate(
        logprobs_B_T,
        old_logprobs_B_T,
        advantages_B,
        mask_B_T,
        eps_low=eps_low,
        eps_high=eps_high,
        ratio_level=ratio_level,
    )
    clip_low = (ratio < 1.0 - eps_low) & (advantages_B_1 < 0)
    clip_high = (ratio > 1.0 + eps_high) & (advantages_B_1 > 0)
    metrics = {
        "clip_low_fraction": _unit_mean(clip_low, mask_B_T),
        "clip_high_fraction": _unit_mean(clip_high, mask_B_T),
        "clip_fraction": _unit_mean(clip_low | clip_high, mask_B_T),
        "ratio_mean": _unit_mean(ratio, mask_B_T),
    }
    if is_weights_B_T is not None:  # Yao et al. 2025: the sampler's tokens reweighted to the trainer's; KL left out
        terms_B_T = terms_B_T * torch.where(mask_B_T.bool(), _wide(is_weights_B_T.detach()), 0.0)
    if ref_logprobs_B_T is not None:
        kl_B_T = k3_kl(logprobs_B_T, ref_logprobs_B_T, mask_B_T)
        metrics["kl"] = _unit_mean(kl_B_T, mask_B_T)
        if kl_beta != 0.0:
            terms_B_T = terms_B_T + kl_beta * kl_B_T
    return reduction(terms_B_T, mask_B_T), metrics


def grpo_loss(
    logprobs_B_T: torch.Tensor,
    old_logprobs_B_T: torch.Tensor,
    advantages_B: torch.Tensor,
    mask_B_T: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    ref_logprobs_B_T: torch.Tensor | None = None,
    kl_beta: float = 0.0,
    is_weights_B_T: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO (Shao et al. 2024, eq. 3): token ratios, token mean within each sequence, then mean over sequences.

    TRL: `loss_type="grpo"` (not TRL's default, which is "dapo"). The paper clips symmetrically (ε = 0.2).
    """
    return policy_loss(
        logprobs_B_T,
        old_logprobs_B_T,
        advantages_B,
        mask_B_T,
        reduction=sequence_mean_of_token_means,
        eps_low=eps_low,
        eps_high=eps_high,
        ref_logprobs_B_T=ref_logprobs_B_T,
        kl_beta=kl_beta,
        is_weights_B_T=is_weights_B_T,
    )


def dr_grpo_loss(
    logprobs_B_T: torch.Tensor,
    old_logprobs_B_T: torch.Tensor,
    advantages_B: torch.Tensor,
    mask_B_T: torch.Tensor,
    *,
    max_completion_length: int,
    num_sequences: int | None = None,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    ref_logprobs_B_T: torch.Tensor | None = None,
    kl_beta: float = 0.0,
    is_weights_B_T: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Dr.GRPO (Liu et al. 2025, eq. 3): token ratios, sum over all tokens / (B · max_completion_length).

    The constant removes GRPO's length bias (long wrong answers are penalised less per token under a per-sequence
    mean). B is `num_sequences`, by default this call's batch; pass the sequence count of the whole optimizer step
    when it spans micro-batches (TRL's `loss_type="dr_grpo"` divides each micro-batch's loss by their number
    instead). Pair it with `group_normalized(scale=False)`.
    """
    normalizer = (num_sequences or logprobs_B_T.shape[0]) * max_completion_length
    return policy_loss(
        logprobs_B_T,
        old_logprobs_B_T,
        advantages_B,
        mask_B_T,
        reduction=functools.partial(masked_token_mean, normalizer=normalizer),
        eps_low=eps_low,
        eps_high=eps_high,
        ref_logprobs_B_T=ref_logprobs_B_T,
        kl_beta=kl_beta,
        is_weights_B_T=is_weights_B_T,
    )


def dapo_loss(
    logprobs_B_T: torch.Tensor,
    old_logprobs_B_T: torch.Tensor,
    advantages_B: torch.Tensor,
    mask_B_T: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    num_tokens: float | None = None,
    ref_logprobs_B_T: torch.Tensor | None = None,
    kl_beta: float = 0.0,
    is_weights_B_T: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """DAPO (Yu et al. 2025): token ratios with clip-higher (ε_high > ε_low, §3.1) and token-level normalisation (eq. 8).

    The sum over tokens is divided by `num_tokens`, by default this batch's completion tokens; pass the token count
    of the whole optimizer step when it spans micro-batches (TRL's `loss_type="dapo"` uses `num_items_in_batch`).
    Dynamic sampling and the overlong penalty of DAPO are the rollout's business, not the loss's.
    """
    return policy_loss(
        logprobs_B_T,
        old_logprobs_B_T,
        advantages_B,
        mask_B_T,
        reduction=functools.partial(masked_token_mean, normalizer=num_tokens),
        eps_low=eps_low,
        eps_high=eps_high,
        ref_logprobs_B_T=ref_logprobs_B_T,
        kl_beta=kl_beta,
        is_weights_B_T=is_weights_B_T,
    )


def gspo_loss(
    logprobs_B_T: torch.Tensor,
    old_logprobs_B_T: torch.Tensor,
    advantages_B: torch.Tensor,
    mask_B_T: torch.Tensor,
    *,
    eps_low: float = 3e-4,
    eps_high: float = 4e-4,
    ref_logprobs_B_T: torch.Tensor | None = None,
    kl_beta: float = 0.0,
    is_weights_B_T: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GSPO (Zheng et al. 2025, eq. 5-7): one length-normalised ratio per sequence, clipped, mean over sequences.

    The paper's clip range is (3e-4, 4e-4), hence the defaults: a sequence ratio is a geometric mean of token ratios,
    so it stays much closer to 1 than they do. TRL: `loss_type="grpo", importance_sampling_level="sequence"`.
    """
    return policy_loss(
        logprobs_B_T,
        old_logprobs_B_T,
        advantages_B,
        mask_B_T,
        reduction=sequence_mean_of_token_means,
        eps_low=eps_low,
        eps_high=eps_high,
        ratio_level="sequence",
        ref_logprobs_B_T=ref_logprobs_B_T,
        kl_beta=kl_beta,
        is_weights_B_T=is_weights_B_T,
    )


def ppo_loss(
    logprobs_B_T: torch.Tensor,
    old_logprobs_B_T: torch.Tensor,
    advantages_B_T: torch.Tensor,
    mask_B_T: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    num_tokens: float | None = None,
    ref_logprobs_B_T: torch.Tensor | None = None,
    kl_beta: float = 0.0,
    is_weights_B_T: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO (Schulman et al. 2017, eq. 7) as TRL's `PPOTrainer`: per-token advantages (GAE from a critic, whitened),
    token ratios, symmetric clip 0.2, sum over tokens / `num_tokens` (TRL: `masked_mean` over a micro-batch's tokens).

    The critic's value loss is separate (`posttrain.losses.value.clipped_value_loss`); a KL to the reference goes
    into PPO's per-token reward rather than here, so `kl_beta` is normally 0 (kept for the common signature).
    """
    return policy_loss(
        logprobs_B_T,
        old_logprobs_B_T,
        advantages_B_T,
        mask_B_T,
        reduction=functools.partial(masked_token_mean, normalizer=num_tokens),
        eps_low=eps_low,
        eps_high=eps_high,
        ref_logprobs_B_T=ref_logprobs_B_T,
        kl_beta=kl_beta,
        is_weights_B_T=is_weights_B_T,
        per_token_advantages=True,
    )


@dataclass(frozen=True)
class PolicyLoss:
    """A policy-loss variant: the tested pure loss, its clip range, its default advantage, how a step is split."""

    fn: Callable[..., tuple[torch.Tensor, dict[str, float]]]  # one of the losses above
    clip: tuple[float, float]  # (eps_low, eps_high) defaults from the paper
    advantage: str  # the ADVANTAGES entry "auto" means
    step_kwargs: Callable[[int, int, int], dict]  # (sequences, tokens, max_new_tokens) of a step -> normaliser kwargs
    per_sequence_mean: bool  # the loss is a mean over this call's sequences: weight a micro-batch by its share


POLICY_LOSSES = {
    "grpo": PolicyLoss(grpo_loss, (0.2, 0.2), "group", lambda n, t, m: {}, True),
    "dr_grpo": PolicyLoss(
        dr_grpo_loss, (0.2, 0.2), "centered", lambda n, t, m: {"num_sequences": n, "max_completion_length": m}, False
    ),
    "dapo": PolicyLoss(dapo_loss, (0.2, 0.28), "group", lambda n, t, m: {"num_tokens": t}, False),
    "gspo": PolicyLoss(gspo_loss, (3e-4, 4e-4), "group", lambda n, t, m: {}, True),
    # PPO's advantages come per token from its critic (`posttrain.train.ppo_update`), never from ADVANTAGES.
    "ppo": PolicyLoss(ppo_loss, (0.2, 0.2), "gae", lambda n, t, m: {"num_tokens": t}, False),
}
