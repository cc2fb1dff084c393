"""Distillation losses: GKD's generalised JSD over the vocabulary, its top-k form for a teacher behind an endpoint,
and the sampled per-token reverse KL that on-policy distillation uses as a reward.

Notation: S is the student's next-token distribution at a position, T the teacher's, both softmax(logits / τ) over
the vocabulary (τ = `temperature`, applied to both, as in TRL). Logits are (B, T, V), one row per position that
predicts a token (the caller has already shifted them), and `mask_B_T` is True (or 1) on the positions whose token
carries loss. Positions off the mask are never read, so padding may hold anything (NaN, ±inf); only the masked
positions are gathered, in fp32 (fp64 stays fp64), which also keeps a bf16 model's log-softmax accurate.

**Generalised JSD** (GKD, Agarwal et al. 2024, eq. 1; TRL's `GKDTrainer.generalized_jsd_loss`), per position,

    JSD_β(T ‖ S) = β · KL(T ‖ M) + (1 - β) · KL(S ‖ M),    M = β·T + (1 - β)·S,

and at the endpoints, where the formula itself is 0, TRL's convention (kept here):
- β = 0: the forward KL, KL(T ‖ S) = Σ_v T_v (log T_v - log S_v): mean-seeking, the student covers the teacher;
- β = 1: the reverse KL, KL(S ‖ T) = Σ_v S_v (log S_v - log T_v): mode-seeking, what on-policy distillation minimises.
Near the ends JSD_β = β·KL(T ‖ S) + O(β²) and (1 - β)·KL(S ‖ T) + O((1 - β)²), so the endpoints are the limits of
JSD_β/β and JSD_β/(1 - β), not of JSD_β: the loss's scale jumps at β = 0 and β = 1 (0.5 is TRL's default).
A vocabulary entry with probability 0 (a logit of -inf) adds 0 where it is the left-hand distribution of a KL
(0 · log 0 = 0), and +inf where only the right-hand one is 0.

**Reduction**: the loss is the sum of the per-position divergences over masked positions divided by their number
(the mean over masked tokens), which is TRL's `reduction="batchmean"` when `labels` are given (sum / number of
labels != -100; an empty mask gives 0). Pass `num_tokens` (the masked-token count of the whole optimizer step) when a
step spans micro-batches or the vocabulary-sized tensors are chunked over tokens to bound memory: that is TRL's
`num_items_in_batch`. The `*_per_token` functions return the (B, T) values, 0 off the mask, for logging.

**Top-k teacher** (`topk_generalized_jsd`): an HTTP teacher returns only its K most likely tokens per position and
their log-probs. Both distributions are restricted to those K ids and renormalised over them, and the same JSD is
taken over the K entries. This is exact when K = V and an approximation otherwise: the teacher's tail (1 - Σ top-k)
is dropped, and the student's mass outside the teacher's top-k is invisible to the loss (the restricted reverse KL
does not punish it and the forward KL only shrinks it through renormalisation). TRL's `ServerDistillationTrainer`
can instead add a (K+1)-th "tail" bucket; that is not done here. Entries whose log-prob is -inf (an endpoint that
returned fewer than K) are left out of both distributions. The log-probs must be the teacher's at temperature 1
(vLLM's default raw log-probs): restricting softmax(z/τ) to a set and renormalising equals renormalising
exp(log T_v / τ) over it, so τ is then applied exactly as in the full version.

**On-policy distillation** (Thinking Machines, "On-Policy Distillation", 2025; tinker-cookbook): the student samples
x_t, the teacher scores it, and the sampled reverse KL k_t = log S(x_t) - log T(x_t) is a one-sample estimate of
KL(S ‖ T) at that position. Its negative is a per-token advantage, A_t = -k_t (tinker-cookbook's
`kl_discount_factor = 0`: no reward-to-go over later tokens), trained with the policy gradient -A_t · ∇log S(x_t).
In expectation over x_t ~ S that is ∇KL(S ‖ T) at the position, the prefix held fixed (E[∇log S] = 0). One
on-policy step needs no importance ratio; with several steps per batch, feed `-sampled_reverse_kl` as per-token
advantages to `posttrain.losses.policy.ppo_loss` instead.
"""

from __future__ import annotations

import math

import torch

from posttrain.losses.reduce import masked_token_mean

NEG_INF = float("-inf")


def _wide(x: torch.Tensor) -> torch.Tensor:
    """fp32 unless already fp64: a bf16 log-softmax over a large vocabulary is too coarse for a KL."""
    return x if x.dtype == torch.float64 else x.float()


def _check(beta: float, temperature: float) -> None:
    """Raise unless 0 ≤ β ≤ 1 and τ > 0."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if not temperature > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) over the last dim from log-probs; entries with p = 0 add 0 and give a zero (not NaN) gradient."""
    live = log_p > NEG_INF
    # The log-ratio is zeroed where p = exp(-inf) = 0, so no 0 · inf reaches the forward or the backward.
    log_ratio = torch.where(live, log_p, 0.0) - torch.where(live, log_q, 0.0)
    return (log_p.exp() * log_ratio).sum(-1)


def _divergence(log_s: torch.Tensor, log_t: torch.Tensor, beta: float) -> torch.Tensor:
    """JSD_β(T ‖ S) over the last dim, with TRL's endpoints: β = 0 is KL(T ‖ S), β = 1 is KL(S ‖ T)."""
    if beta == 0.0:
        return _kl(log_t, log_s)
    if beta == 1.0:
        return _kl(log_s, log_t)
    # Entries where both are 0 have M = 0 and add nothing; give logaddexp finite inputs there (no NaN gradient).
    dead = torch.isneginf(log_s) & torch.isneginf(log_t)
    log_m = torch.logaddexp(
        torch.where(dead, 0.0, log_s) + math.log1p(-beta), torch.where(dead, 0.0, log_t) + math.log(beta)
    )
    return beta * _kl(log_t, log_m) + (1.0 - beta) * _kl(log_s, log_m)


def _scatter(values_N: torch.Tensor, mask_B_T: torch.Tensor) -> torch.Tensor:
    """(B, T) tensor holding `values_N` at the masked positions (row-major order) and 0 elsewhere; differentiable."""
    return values_N.new_zeros(mask_B_T.shape).masked_scatter(mask_B_T, values_N)


def _check_logits(
    student_logits_B_T_V: torch.Tensor, teacher_logits_B_T_V: torch.Tensor, mask_B_T: torch.Tensor
) -> None:
    """Raise unless both logits are (B, T, V) of one shape and the mask is (B, T)."""
    if student_logits_B_T_V.dim() != 3 or student_logits_B_T_V.shape != teacher_logits_B_T_V.shape:
        raise ValueError(
            f"expected student and teacher logits of one shape (B, T, V), got {tuple(student_logits_B_T_V.shape)} "
            f"and {tuple(teacher_logits_B_T_V.shape)}"
        )
    if tuple(mask_B_T.shape) != tuple(student_logits_B_T_V.shape[:2]):
        raise ValueError(f"expected mask of shape {tuple(student_logits_B_T_V.shape[:2])}, got {tuple(mask_B_T.shape)}")


def generalized_jsd_per_token(
    student_logits_B_T_V: torch.Tensor,
    teacher_logits_B_T_V: torch.Tensor,
    mask_B_T: torch.Tensor,
    beta: float,
    temperature: float = 1.0,
) -> torch.Tensor:
    """(B, T) JSD_β(T ‖ S) of softmax(logits / τ) at each masked position (β = 0: KL(T ‖ S), β = 1: KL(S ‖ T)),
    0 off the mask; differentiable in both logits."""
    _check_logits(student_logits_B_T_V, teacher_logits_B_T_V, mask_B_T)
    _check(beta, temperature)
    mask_B_T = mask_B_T.bool()
    log_s_N_V = torch.log_softmax(_wide(student_logits_B_T_V[mask_B_T]) / temperature, dim=-1)
    log_t_N_V = torch.log_softmax(_wide(teacher_logits_B_T_V[mask_B_T]) / temperature, dim=-1)
    return _scatter(_divergence(log_s_N_V, log_t_N_V, beta), mask_B_T)


def generalized_jsd(
    student_logits_B_T_V: torch.Tensor,
    teacher_logits_B_T_V: torch.Tensor,
    mask_B_T: torch.Tensor,
    beta: float,
    temperature: float = 1.0,
    *,
    num_tokens: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GKD's generalised JSD (module docstring), the mean over masked tokens (or the sum / `num_tokens`).

    TRL's `GKDTrainer.generalized_jsd_loss(..., labels, beta, temperature)` with `reduction="batchmean"`.
    Metrics: `jsd`, the mean over this call's masked tokens; `n_tokens`.
    """
    jsd_B_T = generalized_jsd_per_token(student_logits_B_T_V, teacher_logits_B_T_V, mask_B_T, beta, temperature)
    metrics = {"jsd": float(masked_token_mean(jsd_B_T.detach(), mask_B_T)), "n_tokens": int(mask_B_T.sum())}
    return masked_token_mean(jsd_B_T, mask_B_T, num_tokens), metrics


def reverse_kl(
    student_logits_B_T_V: torch.Tensor,
    teacher_logits_B_T_V: torch.Tensor,
    mask_B_T: torch.Tensor,
    temperature: float = 1.0,
    *,
    num_tokens: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Full-vocabulary KL(S ‖ T) = Σ_v S_v (log S_v - log T_v), the mean over masked tokens (or sum / `num_tokens`).

    The same as `generalized_jsd` at β = 1. Metrics: `reverse_kl` (mean over this call's masked tokens), `n_tokens`.
    """
    kl_B_T = generalized_jsd_per_token(student_logits_B_T_V, teacher_logits_B_T_V, mask_B_T, 1.0, temperature)
    metrics = {"reverse_kl": float(masked_token_mean(kl_B_T.detach(), mask_B_T)), "n_tokens": int(mask_B_T.sum())}
    return masked_token_mean(kl_B_T, mask_B_T, num_tokens), metrics


def _topk_log_probs(
    student_logits_B_T_V: torch.Tensor,
    teacher_topk_ids_B_T_K: torch.Tensor,
    teacher_topk_logprobs_B_T_K: torch.Tensor,
    mask_B_T: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log S, log T) restricted to the teacher's top-k at the masked positions and renormalised, each (N, K) with
    -inf at left-out entries, plus the student's log-mass on those ids before renormalising, (N,)."""
    if teacher_topk_ids_B_T_K.shape != teacher_topk_logprobs_B_T_K.shape or teacher_topk_ids_B_T_K.dim() != 3:
        raise ValueError(
            f"expected teacher top-k ids and log-probs of one shape (B, T, K), got "
            f"{tuple(teacher_topk_ids_B_T_K.shape)} and {tuple(teacher_topk_logprobs_B_T_K.shape)}"
        )
    if student_logits_B_T_V.dim() != 3 or student_logits_B_T_V.shape[:2] != teacher_topk_ids_B_T_K.shape[:2]:
        raise ValueError(
            f"expected student logits (B, T, V) matching top-k (B, T, K), got {tuple(student_logits_B_T_V.shape)} "
            f"and {tuple(teacher_topk_ids_B_T_K.shape)}"
        )
    if tuple(mask_B_T.shape) != tuple(student_logits_B_T_V.shape[:2]):
        raise ValueError(f"expected mask of shape {tuple(student_logits_B_T_V.shape[:2])}, got {tuple(mask_B_T.shape)}")
    mask_B_T = mask_B_T.bool()
    teacher_N_K = _wide(teacher_topk_logprobs_B_T_K[mask_B_T])
    kept_N_K = teacher_N_K > NEG_INF
    if not bool(kept_N_K.any(-1).all()):
        raise ValueError("a masked position has no finite teacher top-k log-prob")
    ids_N_K = torch.where(kept_N_K, teacher_topk_ids_B_T_K[mask_B_T], 0)  # padded entries may hold any id
    student_N_V = _wide(student_logits_B_T_V[mask_B_T]) / temperature
    # Gathering logits and renormalising over the K ids equals restricting softmax(logits/τ) and renormalising.
    student_N_K = torch.where(kept_N_K, student_N_V.gather(-1, ids_N_K), NEG_INF)
    student_log_mass_N = torch.logsumexp(student_N_K, -1) - torch.logsumexp(student_N_V, -1)
    log_s_N_K = torch.log_softmax(student_N_K, dim=-1)
    log_t_N_K = torch.log_softmax(teacher_N_K / temperature, dim=-1)
    return log_s_N_K, log_t_N_K, student_log_mass_N


def topk_generalized_jsd_per_token(
    student_logits_B_T_V: torch.Tensor,
    teacher_topk_ids_B_T_K: torch.Tensor,
    teacher_topk_logprobs_B_T_K: torch.Tensor,
    mask_B_T: torch.Tensor,
    beta: float,
    temperature: float = 1.0,
) -> torch.Tensor:
    """(B, T) JSD_β of S and T restricted to the teacher's top-k ids and renormalised (module docstring), 0 off the
    mask; differentiable in the student's logits."""
    _check(beta, temperature)
    log_s_N_K, log_t_N_K, _ = _topk_log_probs(
        student_logits_B_T_V, teacher_topk_ids_B_T_K, teacher_topk_logprobs_B_T_K, mask_B_T, temperature
    )
    return _scatter(_divergence(log_s_N_K, log_t_N_K, beta), mask_B_T.bool())


def topk_generalized_jsd(
    student_logits_B_T_V: torch.Tensor,
    teacher_topk_ids_B_T_K: torch.Tensor,
    teacher_topk_logprobs_B_T_K: torch.Tensor,
    mask_B_T: torch.Tensor,
    beta: float,
    temperature: float = 1.0,
    *,
    num_tokens: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Generalised JSD against a top-k teacher, the mean over masked tokens (or the sum / `num_tokens`).

    `teacher_topk_ids_B_T_K` (int) and `teacher_topk_logprobs_B_T_K` are what the endpoint returned per position
    (log-probs at temperature 1, -inf for missing entries; the ids distinct). Equal to `generalized_jsd` when K = V.
    Metrics (means over this call's masked tokens): `jsd`; `teacher_topk_mass`, Σ of the returned probabilities
    (how much of the teacher the approximation sees); `student_topk_mass`, the student's probability at τ on those ids.
    """
    _check(beta, temperature)
    log_s_N_K, log_t_N_K, student_log_mass_N = _topk_log_probs(
        student_logits_B_T_V, teacher_topk_ids_B_T_K, teacher_topk_logprobs_B_T_K, mask_B_T, temperature
    )
    mask_B_T = mask_B_T.bool()
    jsd_B_T = _scatter(_divergence(log_s_N_K, log_t_N_K, beta), mask_B_T)
    teacher_mass_N = _wide(teacher_topk_logprobs_B_T_K[mask_B_T]).logsumexp(-1).exp()
    n = max(int(mask_B_T.sum()), 1)
    metrics = {
        "jsd": float(masked_token_mean(jsd_B_T.detach(), mask_B_T)),
        "teacher_topk_mass": float(teacher_mass_N.sum()) / n,
        "student_topk_mass": float(student_log_mass_N.detach().exp().sum()) / n,
        "n_tokens": int(mask_B_T.sum()),
    }
    return masked_token_mean(jsd_B_T, mask_B_T, num_tokens), metrics


def sampled_reverse_kl(
    student_logprobs_B_T: torch.Tensor, teacher_logprobs_B_T: torch.Tensor, mask_B_T: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, T) log S(x_t) - log T(x_t) on the student's sampled tokens: a one-sample estimate of KL(S ‖ T) per
    position, whose negative is on-policy distillation's per-token advantage; 0 off `mask_B_T` (when given).

    Differentiable in both inputs; detach it before using it as an advantage."""
    if student_logprobs_B_T.shape != teacher_logprobs_B_T.shape or student_logprobs_B_T.dim() != 2:
        raise ValueError(
            f"expected student and teacher log-probs of one shape (B, T), got {tuple(student_logprobs_B_T.shape)} "
            f"and {tuple(teacher_logprobs_B_T.shape)}"
        )
    if mask_B_T is None:
        return _wide(student_logprobs_B_T) - _wide(teacher_logprobs_B_T)
    mask_B_T = mask_B_T.bool()  # padding may hold -inf: keep it out of the subtraction
    return torch.where(mask_B_T, _wide(student_logprobs_B_T), 0.0) - torch.where(
        mask_B_T, _wide(teacher_logprobs_B_T), 0.0
    )


def on_policy_distill_loss(
    logprobs_B_T: torch.Tensor,
    teacher_logprobs_B_T: torch.Tensor,
    mask_B_T: torch.Tensor,
    *,
    kl_coef: float = 1.0,
    num_tokens: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Policy gradient with advantage A_t = -kl_coef · (log S(x_t) - log T(x_t)) (detached), one on-policy step.

    `logprobs_B_T` are the student's log-probs of its sampled tokens, differentiable (at the sampling temperature);
    `teacher_logprobs_B_T` the teacher's of the same tokens. The per-token term is -A_t · r_t with r_t =
    exp(log S - sg(log S)) = 1, so the loss's value is kl_coef × the mean sampled reverse KL and its gradient is
    -A_t · ∇log S(x_t), reduced as the mean over masked tokens (or the sum / `num_tokens`).
    Metrics: `reverse_kl`, the mean sampled estimate over this call's masked tokens (without `kl_coef`); `n_tokens`.
    """
    mask_B_T = mask_B_T.bool()
    kl_B_T = sampled_reverse_kl(logprobs_B_T.detach(), teacher_logprobs_B_T.detach(), mask_B_T)
    advantages_B_T = -kl_coef * kl_B_T
    log_s_B_T = torch.where(mask_B_T, _wide(logprobs_B_T), 0.0)
    ratio_B_T = torch.exp(log_s_B_T - log_s_B_T.detach())  # 1, with gradient ∇log S
    loss = masked_token_mean(-advantages_B_T * ratio_B_T, mask_B_T, num_tokens)
    return loss, {"reverse_kl": float(masked_token_mean(kl_B_T, mask_B_T)), "n_tokens": int(mask_B_T.sum())}
