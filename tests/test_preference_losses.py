"""Preference losses: closed-form values derived in each docstring, limit cases, and agreement with TRL 1.x.

TRL's losses live inside trainer methods. We call those methods unbound on a `SimpleNamespace` holding just the
attributes they read; where the method runs the model itself, a stub model returns the log-probs we chose
(`_TableModel`). Nothing of TRL's loss math is re-implemented here.
"""

from __future__ import annotations

import math
import types
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from posttrain.losses.kto import kto_loss, mismatched_indices
from posttrain.losses.preference import dpo_loss, ipo_loss, log1mexp, orpo_loss, simpo_loss

TOL = 1e-5


def t(*values: float, **kwargs) -> torch.Tensor:
    """A float64 1-D tensor."""
    return torch.tensor(values, dtype=torch.float64, **kwargs)


def log1pexp(x: float) -> float:
    """-log σ(-x) = log(1 + e^x), in plain math."""
    return math.log1p(math.exp(x))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ---------------------------------------------------------------------------------------------------- DPO / cDPO


def test_dpo_closed_form():
    """Log-ratios: chosen -5 - (-4.5) = -0.5, rejected -7 - (-5.5) = -1.5, so h = 1.

    β = 0.1: loss = -log σ(0.1) = log(1 + e^-0.1) = 0.644397; rewards β·log-ratio = -0.05 and -0.15, margin 0.1,
    accuracy 1.
    """
    loss, metrics = dpo_loss(t(-5.0), t(-7.0), t(-4.5), t(-5.5), beta=0.1)
    assert loss.item() == pytest.approx(log1pexp(-0.1), abs=1e-12)
    assert loss.item() == pytest.approx(0.644397, abs=1e-6)
    assert metrics == pytest.approx(
        {"reward_accuracy": 1.0, "chosen_reward": -0.05, "rejected_reward": -0.15, "reward_margin": 0.1}
    )
    assert all(type(v) is float for v in metrics.values())


def test_dpo_batch_mean_and_accuracy():
    """Two pairs, h = +1 and h = -1, β = 0.1: losses log(1 + e^-0.1) and log(1 + e^0.1).

    Since log(1 + e^x) - log(1 + e^-x) = x, the mean is log(1 + e^-0.1) + 0.05 = 0.694397; accuracy 1/2.
    """
    loss, metrics = dpo_loss(t(1.0, 0.0), t(0.0, 1.0), t(0.0, 0.0), t(0.0, 0.0), beta=0.1)
    assert loss.item() == pytest.approx((log1pexp(-0.1) + log1pexp(0.1)) / 2, abs=1e-12)
    assert loss.item() == pytest.approx(log1pexp(-0.1) + 0.05, abs=1e-12)
    assert metrics["reward_accuracy"] == 0.5
    assert metrics["reward_margin"] == pytest.approx(0.0)


def test_dpo_equal_logps_gives_log2():
    """Equal chosen and rejected log-probs: h = 0, loss = -log σ(0) = log 2 whatever β and the reference."""
    loss, metrics = dpo_loss(t(-3.0, -9.0), t(-3.0, -9.0), t(-1.0, -2.0), t(-1.0, -2.0), beta=0.7)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-12)
    assert metrics["reward_accuracy"] == 0.0  # a tie is not a win


def test_dpo_gradient_closed_form():
    """dL/d(policy_chosen_i) = -β σ(-βh_i) / N (negative: raising the chosen log-prob lowers the loss).

    From L = (1/N) Σ -log σ(βh_i) and d/dz[-log σ(z)] = -σ(-z); the rejected gradient is the opposite.
    With β = 0.1, h = (1, -1, 3), N = 3: -0.1 σ(-0.1)/3, -0.1 σ(0.1)/3, -0.1 σ(-0.3)/3.
    """
    h = (1.0, -1.0, 3.0)
    chosen = t(*h, requires_grad=True)
    rejected = t(0.0, 0.0, 0.0, requires_grad=True)
    loss, _ = dpo_loss(chosen, rejected, t(0.0, 0.0, 0.0), t(0.0, 0.0, 0.0), beta=0.1)
    loss.backward()
    expected = [-0.1 * sigmoid(-0.1 * hi) / 3 for hi in h]
    assert chosen.grad.tolist() == pytest.approx(expected, abs=1e-12)
    assert rejected.grad.tolist() == pytest.approx([-g for g in expected], abs=1e-12)
    assert all(g < 0 for g in chosen.grad.tolist())


def test_cdpo_closed_form_and_minimum():
    """cDPO, ε = 0.2, β = 0.1, h = 1: loss = 0.8 log(1 + e^-0.1) + 0.2 log(1 + e^0.1) = 0.664397.

    d/dz[-(1-ε) log σ(z) - ε log σ(-z)] = -(1-ε)σ(-z) + εσ(z) = σ(z) - (1-ε), zero at z = log((1-ε)/ε):
    with ε = 0.2 the minimum is at βh = log 4, i.e. h = 10 log 4, where the gradient vanishes.
    ε = 0 is plain DPO.
    """
    loss, _ = dpo_loss(t(1.0), t(0.0), t(0.0), t(0.0), beta=0.1, label_smoothing=0.2)
    assert loss.item() == pytest.approx(0.8 * log1pexp(-0.1) + 0.2 * log1pexp(0.1), abs=1e-12)
    assert loss.item() == pytest.approx(0.664397, abs=1e-6)

    chosen = t(10 * math.log(4), requires_grad=True)
    loss, _ = dpo_loss(chosen, t(0.0), t(0.0), t(0.0), beta=0.1, label_smoothing=0.2)
    loss.backward()
    assert chosen.grad.item() == pytest.approx(0.0, abs=1e-12)

    plain, _ = dpo_loss(t(1.0), t(0.0), t(0.0), t(0.0), beta=0.1)
    smoothed_zero, _ = dpo_loss(t(1.0), t(0.0), t(0.0), t(0.0), beta=0.1, label_smoothing=0.0)
    assert smoothed_zero.item() == plain.item()


def test_cdpo_half_smoothing_pulls_margin_to_zero():
    """ε = 0.5 is NOT constant in h: loss = ½[log(1+e^-z) + log(1+e^z)] = log(2 cosh(z/2)), z = βh.

    (1+e^-z)(1+e^z) = (e^{z/2} + e^{-z/2})², hence the cosh. It is even in h, minimal (log 2, zero gradient) at h = 0,
    and its gradient β(σ(βh) - ½)/N = (β/2) tanh(βh/2)/N pushes any margin back to 0: labels that are coin flips.
    β = 0.5, h = ±4: loss = log(2 cosh 1) = log(e + 1/e) = 1.126928; gradient w.r.t. chosen at h = 4: 0.25 tanh(1).
    """
    expected = math.log(2 * math.cosh(1.0))
    for h in (4.0, -4.0):
        loss, _ = dpo_loss(t(h), t(0.0), t(0.0), t(0.0), beta=0.5, label_smoothing=0.5)
        assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(1.126928, abs=1e-6)

    chosen = t(4.0, requires_grad=True)
    dpo_loss(chosen, t(0.0), t(0.0), t(0.0), beta=0.5, label_smoothing=0.5)[0].backward()
    assert chosen.grad.item() == pytest.approx(0.25 * math.tanh(1.0), abs=1e-12)

    chosen = t(0.0, requires_grad=True)
    loss, _ = dpo_loss(chosen, t(0.0), t(0.0), t(0.0), beta=0.5, label_smoothing=0.5)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(2), abs=1e-12)
    assert chosen.grad.item() == 0.0


# ---------------------------------------------------------------------------------------------------------- IPO


def test_ipo_closed_form():
    """IPO, β = 0.1: the target is 1/(2β) = 5. With h = 1, loss = (1 - 5)² = 16.

    At h = 5 the loss is 0 and its gradient 2(h - 5)/N = 0.
    """
    loss, metrics = ipo_loss(t(-1.0), t(-2.0), t(0.0), t(0.0), beta=0.1)
    assert loss.item() == pytest.approx(16.0, abs=1e-12)
    assert metrics["logratio_delta"] == pytest.approx(1.0)

    chosen = t(5.0, requires_grad=True)
    loss, _ = ipo_loss(chosen, t(0.0), t(0.0), t(0.0), beta=0.1)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    assert chosen.grad.item() == pytest.approx(0.0, abs=1e-12)


def test_ipo_length_normalised():
    """β = 0.25 (target 2). Chosen log-ratio -2 over 4 tokens, rejected -6 over 3 tokens.

    Length-normalised (TRL's convention): h = -2/4 - (-6/3) = 1.5, loss (1.5 - 2)² = 0.25.
    Summed (the lengths left out): h = -2 - (-6) = 4, loss (4 - 2)² = 4. Rewards stay β·(summed log-ratio):
    -0.5 and -1.5. With rejected -7.5 instead, the normalised h = -0.5 + 2.5 = 2 hits the target: loss 0, gradient 0.
    """
    lengths = {"chosen_lengths": torch.tensor([4]), "rejected_lengths": torch.tensor([3])}
    loss, metrics = ipo_loss(t(-2.0), t(-6.0), t(0.0), t(0.0), beta=0.25, **lengths)
    assert loss.item() == pytest.approx(0.25, abs=1e-12)
    assert metrics["logratio_delta"] == pytest.approx(1.5)
    assert metrics["chosen_reward"] == pytest.approx(-0.5)
    assert metrics["rejected_reward"] == pytest.approx(-1.5)
    assert ipo_loss(t(-2.0), t(-6.0), t(0.0), t(0.0), beta=0.25)[0].item() == pytest.approx(4.0, abs=1e-12)

    chosen = t(-2.0, requires_grad=True)
    loss, _ = ipo_loss(chosen, t(-7.5), t(0.0), t(0.0), beta=0.25, **lengths)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    assert chosen.grad.item() == pytest.approx(0.0, abs=1e-12)

    with pytest.raises(ValueError, match="both"):
        ipo_loss(t(-2.0), t(-6.0), t(0.0), t(0.0), chosen_lengths=torch.tensor([4]))


# -------------------------------------------------------------------------------------------------------- SimPO


def test_simpo_closed_form():
    """β = 2, γ = 0.5. Chosen -3 over 3 tokens (mean -1), rejected -8 over 4 tokens (mean -2).

    loss = -log σ(2·(-1 - (-2)) - 0.5) = -log σ(1.5) = log(1 + e^-1.5) = 0.201413.
    Rewards β·mean log-prob: -2 and -4, margin 2, accuracy 1.
    """
    loss, metrics = simpo_loss(t(-3.0), t(-8.0), torch.tensor([3]), torch.tensor([4]), beta=2.0, gamma=0.5)
    assert loss.item() == pytest.approx(log1pexp(-1.5), abs=1e-12)
    assert loss.item() == pytest.approx(0.201413, abs=1e-6)
    assert metrics == pytest.approx(
        {"reward_accuracy": 1.0, "chosen_reward": -2.0, "rejected_reward": -4.0, "reward_margin": 2.0}
    )


def test_simpo_limits():
    """γ = 0 and equal mean log-probs (-6/3 = -10/5 = -2): -log σ(0) = log 2.

    A margin exactly met, β·Δ = γ (β = 2, Δ = 1, γ = 2), also gives log 2: the sigmoid is centred on the margin.
    """
    lengths = torch.tensor([3]), torch.tensor([5])
    loss, _ = simpo_loss(t(-6.0), t(-10.0), *lengths, beta=2.0, gamma=0.0)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-12)
    loss, _ = simpo_loss(t(-3.0), t(-8.0), torch.tensor([3]), torch.tensor([4]), beta=2.0, gamma=2.0)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-12)


def test_simpo_gamma_beta_ratio_mapping():
    """The SimPO code's gamma_beta_ratio r = γ/β: loss = -log σ(β(Δ - r)), so pass gamma = β·r.

    β = 2.5, r = 0.4 (γ = 1), Δ = -1 - (-2) = 1: loss = log(1 + e^{-2.5·0.6}) = log(1 + e^-1.5), as above.
    """
    beta, ratio = 2.5, 0.4
    loss, _ = simpo_loss(t(-3.0), t(-8.0), torch.tensor([3]), torch.tensor([4]), beta=beta, gamma=beta * ratio)
    assert loss.item() == pytest.approx(log1pexp(-beta * (1.0 - ratio)), abs=1e-12)
    assert loss.item() == pytest.approx(log1pexp(-1.5), abs=1e-12)


# --------------------------------------------------------------------------------------------------------- ORPO


def test_orpo_closed_form():
    """Chosen: 3 tokens, sum 3 log ½ (mean log p = log ½, odds 1). Rejected: 2 tokens, sum 2 log 0.2 (odds ¼).

    log odds ratio = log 1 - log ¼ = log 4; -log σ(log 4) = log(1 + ¼) = log 1.25 = 0.223144.
    β = 0.1, chosen NLL 2: loss = 2 + 0.1 log 1.25 = 2.022314. Rewards β·mean log p: 0.1 log ½, 0.1 log 0.2.
    """
    loss, metrics = orpo_loss(
        t(3 * math.log(0.5)), t(2 * math.log(0.2)), torch.tensor([3]), torch.tensor([2]), torch.tensor(2.0), beta=0.1
    )
    assert loss.item() == pytest.approx(2.0 + 0.1 * math.log(1.25), abs=1e-6)
    assert loss.item() == pytest.approx(2.022314, abs=1e-6)
    assert metrics["log_odds_ratio"] == pytest.approx(math.log(4), abs=1e-6)
    assert metrics["odds_ratio_loss"] == pytest.approx(math.log(1.25), abs=1e-6)
    assert metrics["nll"] == pytest.approx(2.0)
    assert metrics["chosen_reward"] == pytest.approx(0.1 * math.log(0.5), abs=1e-6)
    assert metrics["rejected_reward"] == pytest.approx(0.1 * math.log(0.2), abs=1e-6)
    assert metrics["reward_accuracy"] == 1.0


def test_orpo_reduces_to_nll():
    """β = 0 drops the odds-ratio term: the loss is the NLL; a per-pair NLL (1, 3) averages to 2."""
    args = (t(-2.0, -1.0), t(-5.0, -4.0), torch.tensor([2, 2]), torch.tensor([3, 3]))
    assert orpo_loss(*args, torch.tensor(1.7), beta=0.0)[0].item() == pytest.approx(1.7, abs=1e-6)
    assert orpo_loss(*args, torch.tensor([1.0, 3.0]), beta=0.0)[0].item() == pytest.approx(2.0, abs=1e-6)


def test_orpo_stable_near_certainty():
    """Mean log p → 0⁻ (p → 1, odds → ∞) and → -∞ stay finite, with finite gradients.

    log1mexp against math's log(-expm1(x)): it keeps relative precision at x = -1e-7, where
    log1p(-exp(x)) in fp32 loses it (exp(x) rounds near 1).
    """
    for x in (-1e-7, -0.3, -0.7, -1.0, -30.0):
        assert log1mexp(torch.tensor(x)).item() == pytest.approx(math.log(-math.expm1(x)), rel=1e-5)
    chosen = torch.tensor([-1e-6, -40.0], requires_grad=True)
    loss, _ = orpo_loss(
        chosen, torch.tensor([-80.0, -1e-6]), torch.tensor([1, 1]), torch.tensor([1, 1]), torch.tensor(1.0), 0.1
    )
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(chosen.grad).all()


# ---------------------------------------------------------------------------------------------------------- KTO


def test_mismatched_indices():
    """n = 4: rotation (1, 2, 3, 0); row i pairs completion i with prompt i+1, i.e. the pairs (x2,y1) (x3,y2) (x4,y3)
    (x1,y4): the same set as TRL's (x1,yn), (x2,y1), ..., (xn,y(n-1)). One example cannot be mismatched."""
    assert mismatched_indices(4).tolist() == [1, 2, 3, 0]
    assert mismatched_indices(4).dtype == torch.long
    assert mismatched_indices(2).tolist() == [1, 0]
    with pytest.raises(ValueError):
        mismatched_indices(1)


def test_kto_closed_form():
    """β = 0.5, KL pairs give policy - ref = (0.5, 1.5), so z0 = clamp(mean, 0) = 1.

    Desirable, r = 3: 1 - σ(0.5(3 - 1)) = 1 - σ(1) = 0.268941.
    Undesirable, r = 2: 1 - σ(0.5(1 - 2)) = σ(0.5) = 0.622459, weighted by w_u = 2.
    Mean over the 2 examples: (0.268941 + 2·0.622459)/2 = 0.756930. Rewards β·r: 1.5 and 1.0, margin 0.5.
    """
    loss, metrics = kto_loss(
        t(-1.0, -5.0), t(-4.0, -7.0), torch.tensor([True, False]), t(-2.0, -3.0), t(-2.5, -4.5),
        beta=0.5, desirable_weight=1.0, undesirable_weight=2.0,
    )  # fmt: skip
    expected = ((1 - sigmoid(1.0)) + 2 * sigmoid(0.5)) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert loss.item() == pytest.approx(0.756930, abs=1e-6)
    assert metrics == pytest.approx(
        {"kl": 1.0, "n_desirable": 1.0, "n_undesirable": 1.0, "chosen_reward": 1.5, "rejected_reward": 1.0,
         "reward_margin": 0.5}
    )  # fmt: skip


def test_kto_policy_equals_ref():
    """policy == ref and z0 = 0: every term is w·(1 - σ(0)) = w/2.

    Balanced batch (2 + 2), w_d = 1, w_u = 1.5: mean = (2·0.5 + 2·0.75)/4 = (w_d + w_u)/2 · 0.5 = 0.625.
    Imbalanced (3 desirable, 1 undesirable), w_u = 3: one mean over all 4, (3·0.5 + 1.5)/4 = 0.75, as TRL reduces,
    not the mean of per-class means (0.5 + 1.5)/2 = 1.
    Gradient of a desirable term w.r.t. its policy log-prob: -w_d β σ(0)σ(0)/N = -0.1·0.25/4.
    """
    logps = t(-3.0, -4.0, -5.0, -6.0, requires_grad=True)
    balanced = torch.tensor([True, False, True, False])
    loss, metrics = kto_loss(logps, logps.detach(), balanced, t(-1.0, -2.0), t(-1.0, -2.0), 0.1, 1.0, 1.5)
    assert loss.item() == pytest.approx((1.0 + 1.5) / 2 * 0.5, abs=1e-12)
    assert metrics["kl"] == 0.0
    loss.backward()
    assert logps.grad[0].item() == pytest.approx(-0.1 * 0.25 / 4, abs=1e-12)

    imbalanced = torch.tensor([True, True, True, False])
    loss, _ = kto_loss(logps, logps.detach(), imbalanced, t(-1.0, -2.0), t(-1.0, -2.0), 0.1, 1.0, 3.0)
    assert loss.item() == pytest.approx(0.75, abs=1e-12)


def test_kto_baseline_clamped_and_detached():
    """KL pairs with policy - ref = (-1, -3): mean -2 clamps to z0 = 0, so with r = 0 the loss is 1 - σ(0) = 0.5.
    z0 is detached: no gradient reaches the KL log-probs. An all-desirable batch has no rejected metrics."""
    kl_policy = t(-2.0, -4.0, requires_grad=True)
    loss, metrics = kto_loss(t(-1.0, -2.0), t(-1.0, -2.0), torch.tensor([True, True]), kl_policy, t(-1.0, -1.0))
    assert metrics["kl"] == 0.0
    assert loss.item() == pytest.approx(0.5, abs=1e-12)
    assert not loss.requires_grad and kl_policy.grad is None
    assert "rejected_reward" not in metrics and "reward_margin" not in metrics


# ------------------------------------------------------------------------------------------------ TRL agreement


def _close(ours, theirs) -> None:
    ours, theirs = float(torch.as_tensor(ours).detach()), float(torch.as_tensor(theirs).detach())
    assert abs(ours - theirs) <= TOL, (ours, theirs)


def _trl_self(**attrs) -> SimpleNamespace:
    """The attributes a TRL trainer's loss method reads besides its hyper-parameters (one process, no logging)."""
    accelerator = SimpleNamespace(device=torch.device("cpu"), gather=lambda x: x, gather_for_metrics=lambda x: x)
    return SimpleNamespace(
        accelerator=accelerator,
        _metrics=defaultdict(lambda: defaultdict(list)),
        aux_loss_enabled=False,
        _total_train_tokens=0,
        _tp_size=1,
        **attrs,
    )


class _TableModel:
    """Stub policy for TRL's `_compute_loss`: row i's per-token log-probs sum to table[input_ids[i, 0]].

    TRL sums the model's per-token `log_probs` over the sequence, so the value sits at the first position and the
    rest are 0. The other outputs are only logged.
    """

    training = False

    def __init__(self, table_R: torch.Tensor):
        self.table_R = table_R

    def __call__(self, input_ids, **kwargs):
        B, T = input_ids.shape
        first_B_1 = self.table_R[input_ids[:, 0]].unsqueeze(1)
        log_probs_B_T1 = torch.cat([first_B_1, first_B_1.new_zeros(B, T - 2)], dim=1)
        zeros_B_T1 = torch.zeros(B, T - 1)
        return SimpleNamespace(
            log_probs=log_probs_B_T1, entropy=zeros_B_T1, mean_logits=zeros_B_T1, is_top1=zeros_B_T1.bool()
        )


def _random_pairs(P: int = 8, seed: int = 0):
    """Summed log-probs for P pairs (policy near the reference) and completion lengths in [1, 6]."""
    g = torch.Generator().manual_seed(seed)
    chosen_lengths_P = torch.randint(1, 7, (P,), generator=g)
    rejected_lengths_P = torch.randint(1, 7, (P,), generator=g)
    ref_chosen_P = -chosen_lengths_P * (0.5 + 2 * torch.rand(P, generator=g, dtype=torch.float64))
    ref_rejected_P = -rejected_lengths_P * (0.5 + 2 * torch.rand(P, generator=g, dtype=torch.float64))
    policy_chosen_P = ref_chosen_P + torch.randn(P, generator=g, dtype=torch.float64)
    policy_rejected_P = ref_rejected_P + torch.randn(P, generator=g, dtype=torch.float64)
    return policy_chosen_P, policy_rejected_P, ref_chosen_P, ref_rejected_P, chosen_lengths_P, rejected_lengths_P


def _dpo_batch(policy_chosen_P, policy_rejected_P, ref_chosen_P, ref_rejected_P, chosen_lengths_P, rejected_lengths_P):
    """TRL's DPO batch, rows [chosen; rejected]: one prompt token, then the completion (`completion_mask` ones)."""
    lengths_R = torch.cat([chosen_lengths_P, rejected_lengths_P])
    R, T = len(lengths_R), int(lengths_R.max()) + 1
    positions_T = torch.arange(T)
    completion_mask_R_T = ((positions_T >= 1) & (positions_T <= lengths_R[:, None])).long()
    input_ids_R_T = torch.zeros(R, T, dtype=torch.long)
    input_ids_R_T[:, 0] = torch.arange(R)  # row -> index into the stub model's table
    inputs = {
        "input_ids": input_ids_R_T,
        "attention_mask": torch.ones(R, T, dtype=torch.long),
        "completion_mask": completion_mask_R_T,
        "ref_chosen_logps": ref_chosen_P,
        "ref_rejected_logps": ref_rejected_P,
    }
    return _TableModel(torch.cat([policy_chosen_P, policy_rejected_P])), inputs


def _trl_dpo(loss_type: str, beta: float, pairs) -> tuple[torch.Tensor, dict[str, float]]:
    """`trl.trainer.dpo_trainer.DPOTrainer._compute_loss`, unbound, on a stub model; returns (loss, logged metrics)."""
    dpo_trainer = pytest.importorskip("trl.trainer.dpo_trainer")
    model, inputs = _dpo_batch(*pairs)
    trainer = _trl_self(
        model=model, beta=beta, loss_types=[loss_type], loss_weights=[1.0], label_smoothing=0.0, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type="reverse_kl", use_weighting=False,
    )  # fmt: skip
    loss = dpo_trainer.DPOTrainer._compute_loss(trainer, model, inputs, return_outputs=False)
    return loss, {k: v[-1] for k, v in trainer._metrics["eval"].items()}


def _assert_pair_metrics_match(ours: dict[str, float], trl: dict[str, float], prefix: str = "") -> None:
    _close(ours["chosen_reward"], trl[f"{prefix}rewards/chosen"])
    _close(ours["rejected_reward"], trl[f"{prefix}rewards/rejected"])
    _close(ours["reward_margin"], trl[f"{prefix}rewards/margins"])
    _close(ours["reward_accuracy"], trl[f"{prefix}rewards/accuracies"])


def test_dpo_matches_trl():
    """DPOTrainer(loss_type="sigmoid"): loss, its gradient and the reward metrics."""
    pairs = _random_pairs()
    policy_chosen_P = pairs[0].clone().requires_grad_(True)
    trl_loss, trl_metrics = _trl_dpo("sigmoid", 0.1, (policy_chosen_P, *pairs[1:]))
    (trl_grad_P,) = torch.autograd.grad(trl_loss, policy_chosen_P)
    loss, metrics = dpo_loss(policy_chosen_P, *pairs[1:4], beta=0.1)
    (grad_P,) = torch.autograd.grad(loss, policy_chosen_P)
    _close(loss, trl_loss)
    assert torch.allclose(grad_P, trl_grad_P, atol=TOL)
    _assert_pair_metrics_match(metrics, trl_metrics)


def test_cdpo_matches_trl():
    """TRL 1.x DPOTrainer no longer smooths "sigmoid"; cDPO is CPOTrainer.cpo_loss("sigmoid", label_smoothing=ε),
    which is -(1-ε) log σ(β(a - b)) - ε log σ(-β(a - b)), fed the log-ratios a = πc - refc, b = πr - refr."""
    cpo_trainer = pytest.importorskip("trl.experimental.cpo.cpo_trainer")
    policy_chosen_P, policy_rejected_P, ref_chosen_P, ref_rejected_P, _, _ = _random_pairs(seed=1)
    trainer = _trl_self(beta=0.1, label_smoothing=0.2, loss_type="sigmoid", alpha=0.0)
    trl_losses_P, _, _ = cpo_trainer.CPOTrainer.cpo_loss(
        trainer, policy_chosen_P - ref_chosen_P, policy_rejected_P - ref_rejected_P
    )
    loss, _ = dpo_loss(policy_chosen_P, policy_rejected_P, ref_chosen_P, ref_rejected_P, beta=0.1, label_smoothing=0.2)
    _close(loss, trl_losses_P.mean())


def test_ipo_matches_trl():
    """DPOTrainer(loss_type="ipo") divides each log-ratio by its completion length: pass the lengths to match."""
    pairs = _random_pairs(seed=2)
    trl_loss, trl_metrics = _trl_dpo("ipo", 0.1, pairs)
    loss, metrics = ipo_loss(*pairs[:4], beta=0.1, chosen_lengths=pairs[4], rejected_lengths=pairs[5])
    _close(loss, trl_loss)
    _assert_pair_metrics_match(metrics, trl_metrics)
    unnormalised, _ = ipo_loss(*pairs[:4], beta=0.1)
    assert abs(unnormalised.item() - trl_loss.item()) > 1e-2  # the convention matters on these inputs


def _logits_and_labels(P: int, seed: int):
    """Random logits (2P, T, V) and labels with a 2-token prompt and right padding (-100), rows [chosen; rejected]."""
    g = torch.Generator().manual_seed(seed)
    R, T, V = 2 * P, 9, 11
    logits_R_T_V = torch.randn(R, T, V, generator=g, dtype=torch.float64)
    labels_R_T = torch.randint(0, V, (R, T), generator=g)
    ends_R = torch.randint(3, T + 1, (R,), generator=g)  # completion = positions 2 .. end-1, at least 1 token
    positions_T = torch.arange(T)
    labels_R_T[(positions_T < 2) | (positions_T >= ends_R[:, None])] = -100
    return logits_R_T_V, labels_R_T


def _trl_sequence_logps(get_batch_logps, P: int, seed: int):
    """TRL's own per-sequence log-probs: (summed, mean per token, lengths), each split into (chosen, rejected)."""
    logits_R_T_V, labels_R_T = _logits_and_labels(P, seed)
    summed_R = get_batch_logps(logits_R_T_V, labels_R_T, average_log_prob=False)
    mean_R = get_batch_logps(logits_R_T_V, labels_R_T, average_log_prob=True)
    lengths_R = (labels_R_T[:, 1:] != -100).sum(-1)
    return summed_R.chunk(2), mean_R.chunk(2), lengths_R.chunk(2)


def test_simpo_matches_trl():
    """CPOTrainer(loss_type="simpo", simpo_gamma=γ, cpo_alpha=0) takes mean per-token log-probs (its
    `get_batch_logps(average_log_prob=True)`); ours takes the sums and the lengths. gamma = simpo_gamma."""
    cpo_trainer = pytest.importorskip("trl.experimental.cpo.cpo_trainer")
    CPOTrainer = cpo_trainer.CPOTrainer
    (summed_c, summed_r), (mean_c, mean_r), (len_c, len_r) = _trl_sequence_logps(CPOTrainer.get_batch_logps, 6, 3)
    beta, gamma = 2.0, 0.8
    trainer = _trl_self(beta=beta, label_smoothing=0.0, loss_type="simpo", simpo_gamma=gamma, alpha=0.0, cpo_alpha=0.0)
    trainer.cpo_loss = types.MethodType(CPOTrainer.cpo_loss, trainer)
    trainer.concatenated_forward = lambda model, batch: (
        mean_c,
        mean_r,
        torch.zeros(1),
        torch.zeros(1),
        torch.tensor(0.0),
    )
    trl_loss, trl_metrics = CPOTrainer.get_batch_loss_metrics(trainer, None, {}, train_eval="train")
    loss, metrics = simpo_loss(summed_c, summed_r, len_c, len_r, beta=beta, gamma=gamma)
    _close(loss, trl_loss)
    _assert_pair_metrics_match(metrics, trl_metrics)


def test_orpo_matches_trl():
    """ORPOTrainer.get_batch_loss_metrics: NLL - mean(β log σ(log odds)), on mean per-token log-probs.
    TRL's NLL is a scalar cross-entropy it computes itself; the same scalar goes to both."""
    orpo_trainer = pytest.importorskip("trl.experimental.orpo.orpo_trainer")
    ORPOTrainer = orpo_trainer.ORPOTrainer
    (summed_c, summed_r), (mean_c, mean_r), (len_c, len_r) = _trl_sequence_logps(ORPOTrainer.get_batch_logps, 6, 4)
    nll = torch.tensor(1.37)
    trainer = _trl_self(beta=0.25)
    trainer.odds_ratio_loss = types.MethodType(ORPOTrainer.odds_ratio_loss, trainer)
    trainer.concatenated_forward = lambda model, batch: (mean_c, mean_r, torch.zeros(1), torch.zeros(1), nll)
    trl_loss, trl_metrics = ORPOTrainer.get_batch_loss_metrics(trainer, None, {}, train_eval="train")
    loss, metrics = orpo_loss(summed_c, summed_r, len_c, len_r, nll, beta=0.25)
    _close(loss, trl_loss)
    _assert_pair_metrics_match(metrics, trl_metrics)
    _close(metrics["log_odds_ratio"], trl_metrics["log_odds_chosen"])
    _close(-metrics["odds_ratio_loss"], trl_metrics["log_odds_ratio"])
    _close(metrics["nll"], trl_metrics["nll_loss"])


def test_kto_matches_trl():
    """KTOTrainer._compute_loss (loss_type="kto", precomputed reference log-probs), imbalanced batch, both weights."""
    kto_trainer = pytest.importorskip("trl.trainer.kto_trainer")
    KTOTrainer = kto_trainer.KTOTrainer
    g = torch.Generator().manual_seed(5)
    N, T = 8, 4
    labels_N = torch.tensor([True, True, False, True, True, False, True, True])
    ref_N = -10 * torch.rand(N, generator=g, dtype=torch.float64)
    policy_N = ref_N + torch.randn(N, generator=g, dtype=torch.float64)
    kl_ref_N = -10 * torch.rand(N, generator=g, dtype=torch.float64)
    kl_policy_N = kl_ref_N + 0.5 + torch.randn(N, generator=g, dtype=torch.float64)  # a positive z0, not clamped

    input_ids_N_T = torch.zeros(N, T, dtype=torch.long)
    input_ids_N_T[:, 0] = torch.arange(N)  # matched rows -> table[0:N], KL rows -> table[N:2N]
    completion_mask_N_T = (torch.arange(T) >= 1).long().expand(N, T)
    inputs = {
        "input_ids": input_ids_N_T, "attention_mask": torch.ones(N, T, dtype=torch.long),
        "completion_mask": completion_mask_N_T, "KL_input_ids": input_ids_N_T + N,
        "KL_attention_mask": torch.ones(N, T, dtype=torch.long), "KL_completion_mask": completion_mask_N_T,
        "label": labels_N, "ref_logps": ref_N, "ref_KL_logps": kl_ref_N,
    }  # fmt: skip
    model = _TableModel(torch.cat([policy_N, kl_policy_N]))
    hparams = {"beta": 0.3, "desirable_weight": 1.0, "undesirable_weight": 1.7}
    trainer = _trl_self(model=model, loss_type="kto", calculate_KL=True, precompute_ref_logps=True, **hparams)
    trainer._compute_kl_logps = types.MethodType(KTOTrainer._compute_kl_logps, trainer)
    trl_loss = KTOTrainer._compute_loss(trainer, model, inputs, return_outputs=False)
    trl_metrics = {k: v[-1] for k, v in trainer._metrics["eval"].items()}

    loss, metrics = kto_loss(policy_N, ref_N, labels_N, kl_policy_N, kl_ref_N, **hparams)
    assert metrics["kl"] > 0
    _close(loss, trl_loss)
    _close(metrics["kl"], trl_metrics["kl"])
    _close(metrics["chosen_reward"], trl_metrics["rewards/chosen"])
    _close(metrics["rejected_reward"], trl_metrics["rewards/rejected"])
    _close(metrics["reward_margin"], trl_metrics["rewards/margins"])
