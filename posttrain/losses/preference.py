"""Pairwise preference losses on sequence log-probs: DPO (and cDPO), IPO, SimPO and ORPO.

Each function takes 1-D tensors with one entry per pair, shape (P,), holding the log-prob of a whole completion
summed over its tokens, and returns `(loss, metrics)`: the batch mean of the per-pair loss and a dict of floats.
Where a method works on per-token averages (SimPO, ORPO, length-normalised IPO) the caller passes the completion
lengths and the function divides; the log-probs going in are always sums, so one log-prob pass serves every loss.

The implicit reward logged as `chosen_reward` / `rejected_reward` is β·(policy − reference) log-ratio of the summed
log-probs for DPO and IPO, and β·(mean per-token log-prob) for the reference-free SimPO and ORPO, as TRL logs them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _check_pairs(*tensors: torch.Tensor) -> None:
    """Raise unless every tensor is 1-D with the same number of pairs."""
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"expected 1-D tensors of equal length (one entry per pair), got shapes {sorted(shapes)}")


def _pair_metrics(chosen_rewards_P: torch.Tensor, rejected_rewards_P: torch.Tensor) -> dict[str, float]:
    """Reward accuracy (chosen reward strictly above rejected), mean rewards and mean margin."""
    chosen_rewards_P, rejected_rewards_P = chosen_rewards_P.detach().float(), rejected_rewards_P.detach().float()
    margins_P = chosen_rewards_P - rejected_rewards_P
    return {
        "reward_accuracy": float((margins_P > 0).float().mean()),
        "chosen_reward": float(chosen_rewards_P.mean()),
        "rejected_reward": float(rejected_rewards_P.mean()),
        "reward_margin": float(margins_P.mean()),
    }


def _per_token(logps_P: torch.Tensor, lengths_P: torch.Tensor) -> torch.Tensor:
    """Summed log-probs divided by completion length (clamped to 1, as TRL does, so an empty completion gives 0)."""
    return logps_P / lengths_P.to(logps_P.dtype).clamp(min=1.0)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, stable at both ends (Mächler 2012: branch at x = -log 2)."""
    return torch.where(x < -math.log(2.0), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """DPO (Rafailov et al. eq. 7), or conservative DPO when `label_smoothing` ε > 0: -(1-ε)logσ(βh) - ε logσ(-βh).

    h = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected), on summed log-probs, shape (P,); the loss is
    the mean over pairs. ε is the assumed probability that a preference label is flipped: the minimum of the cDPO
    term sits at βh = log((1-ε)/ε), so ε = 0.5 pulls every margin to 0 (the loss becomes log(2cosh(βh/2))).

    TRL 1.x: `DPOTrainer` with `loss_type="sigmoid"` is the ε = 0 case; it no longer applies `label_smoothing` to
    "sigmoid" (only to "robust", "exo_pair" and "aot"). The cDPO form is the `"sigmoid"` loss of TRL's `CPOTrainer`
    and `TPOTrainer` applied to the log-ratios.
    """
    _check_pairs(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    chosen_logratios_P = policy_chosen_logps - ref_chosen_logps
    rejected_logratios_P = policy_rejected_logps - ref_rejected_logps
    logits_P = beta * (chosen_logratios_P - rejected_logratios_P)
    losses_P = -(1.0 - label_smoothing) * F.logsigmoid(logits_P) - label_smoothing * F.logsigmoid(-logits_P)
    metrics = _pair_metrics(beta * chosen_logratios_P, beta * rejected_logratios_P)
    return losses_P.mean(), metrics


def ipo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """IPO (Azar et al. eq. 17): mean over pairs of (h - 1/(2β))², β being the paper's τ.

    Convention: h is built from whatever log-probs are passed. Without lengths it is the log-ratio difference of the
    summed log-probs, as in the paper's equation. With `chosen_lengths` and `rejected_lengths` (completion token
    counts, shape (P,)) each log-ratio is divided by its length first, h = Δc/|c| - Δr/|r|: this is what TRL's
    `DPOTrainer(loss_type="ipo")` computes (per-token log-ratios; TRL notes the IPO authors' results use this form),
    and it keeps β comparable across completion lengths. Rewards in the metrics stay β·(summed log-ratio), as in TRL;
    `logratio_delta` is the mean h the loss actually saw.
    """
    _check_pairs(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    chosen_logratios_P = policy_chosen_logps - ref_chosen_logps
    rejected_logratios_P = policy_rejected_logps - ref_rejected_logps
    if (chosen_lengths is None) != (rejected_lengths is None):
        raise ValueError("pass both chosen_lengths and rejected_lengths, or neither")
    if chosen_lengths is None:
        delta_P = chosen_logratios_P - rejected_logratios_P
    else:
        _check_pairs(chosen_logratios_P, chosen_lengths, rejected_lengths)
        delta_P = _per_token(chosen_logratios_P, chosen_lengths) - _per_token(rejected_logratios_P, rejected_lengths)
    losses_P = (delta_P - 1.0 / (2.0 * beta)) ** 2
    metrics = _pair_metrics(beta * chosen_logratios_P, beta * rejected_logratios_P)
    metrics["logratio_delta"] = float(delta_P.detach().mean())
    return losses_P.mean(), metrics


def simpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
    beta: float,
    gamma: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """SimPO (Meng et al. eq. 6), reference-free: mean over pairs of -logσ(β(lc/|c| - lr/|r|) - γ).

    lc, lr are summed log-probs and |c|, |r| completion token counts, all shape (P,). `gamma` is the paper's target
    reward margin γ, on the reward scale. Mapping to other parametrisations: the SimPO authors' code takes
    `gamma_beta_ratio` = γ/β, so gamma = beta * gamma_beta_ratio; TRL's `CPOConfig(loss_type="simpo", simpo_gamma=γ)`
    takes γ itself (it subtracts simpo_gamma/beta from the log-prob gap, then multiplies by β), so gamma =
    simpo_gamma. Note TRL's CPO adds `cpo_alpha` * NLL (default 1.0, "CPO-SimPO"); plain SimPO is `cpo_alpha=0`.
    """
    _check_pairs(policy_chosen_logps, policy_rejected_logps, chosen_lengths, rejected_lengths)
    chosen_rewards_P = beta * _per_token(policy_chosen_logps, chosen_lengths)
    rejected_rewards_P = beta * _per_token(policy_rejected_logps, rejected_lengths)
    losses_P = -F.logsigmoid(chosen_rewards_P - rejected_rewards_P - gamma)
    return losses_P.mean(), _pair_metrics(chosen_rewards_P, rejected_rewards_P)


def orpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
    chosen_nll: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """ORPO (Hong et al. eq. 6-7): NLL(chosen) + β · mean over pairs of -logσ(log odds(c) - log odds(r)).

    odds(y) = p/(1-p) with log p the mean per-token log-prob (summed log-probs / lengths, shape (P,)); log(1-p) is
    computed as `log1mexp(log p)`, in fp32. β is the paper's λ.

    `chosen_nll` is the mean per-token NLL of the chosen completions, either a scalar (already reduced; TRL's
    convention: one cross-entropy averaged over every token of the chosen half of the batch) or shape (P,) (one value
    per pair, averaged here, so every pair weighs the same whatever its length). Pass the NLL of the completion
    tokens, as in the paper's L_SFT; TRL's `ORPOTrainer` takes its NLL over prompt and completion tokens alike.
    """
    _check_pairs(policy_chosen_logps, policy_rejected_logps, chosen_lengths, rejected_lengths)
    chosen_mean_logps_P = _per_token(policy_chosen_logps.float(), chosen_lengths)
    rejected_mean_logps_P = _per_token(policy_rejected_logps.float(), rejected_lengths)
    log_odds_P = (chosen_mean_logps_P - rejected_mean_logps_P) - (
        log1mexp(chosen_mean_logps_P) - log1mexp(rejected_mean_logps_P)
    )
    log_sigmoid_odds_P = F.logsigmoid(log_odds_P)
    nll = chosen_nll.float().mean()
    loss = nll - beta * log_sigmoid_odds_P.mean()
    metrics = _pair_metrics(beta * chosen_mean_logps_P, beta * rejected_mean_logps_P)
    # TRL logs the same two means as "log_odds_chosen" (the log odds ratio) and "log_odds_ratio" (its logσ).
    metrics |= {
        "nll": float(nll.detach()),
        "odds_ratio_loss": float(-log_sigmoid_odds_P.detach().mean()),
        "log_odds_ratio": float(log_odds_P.detach().mean()),
    }
    return loss, metrics
