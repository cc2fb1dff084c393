"""Group advantages and PPO-clip policy losses: closed forms derived in each docstring, limit cases, and TRL 1.x.

TRL's GRPO losses live in `GRPOTrainer._compute_loss`, which runs the model. We call it unbound on a
`SimpleNamespace` holding the attributes it reads, with a stub model that returns the per-token log-probs we chose
(`_LogprobModel`), in eval mode so no gradient-accumulation factor applies. TRL's advantages are inline in
`_generate_and_score_completions` (generation included), so only the std they use, `trl.trainer.utils.nanstd`, is
called. Nothing of TRL's math is re-implemented here.
"""

from __future__ import annotations

import contextlib
import functools
import math
import types
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from posttrain.advantages import group_normalized, leave_one_out
from posttrain.losses.policy import dapo_loss, dr_grpo_loss, grpo_loss, gspo_loss, policy_loss
from posttrain.losses.reduce import masked_token_mean, sequence_mean_of_token_means

TOL = 1e-6


def t(*values, **kwargs) -> torch.Tensor:
    """A float64 tensor: `t(1.0, 2.0)` is 1-D, `t([[...]])` takes nested lists."""
    data = values[0] if len(values) == 1 and isinstance(values[0], list) else list(values)
    return torch.tensor(data, dtype=torch.float64, **kwargs)


# ---------------------------------------------------------------------------------------------------- advantages


def test_group_normalized_closed_form():
    """Group (0, 0, 1, 1): mean ½, unbiased variance 4·¼/3 = ⅓, std 1/√3, so A = ±½·√3 = ±0.866025 (eps = 0).

    Group (1, 2, 3, 6): mean 3, deviations (-2, -1, 0, 3), Σ² = 14, variance 14/3, std 2.160247, so
    A = (-0.925820, -0.462910, 0, 1.388730). The biased std (½ for the first group) would give ±1 instead.
    With the default eps = 1e-4 the std is 1/√3 + 1e-4: A = ±0.5/0.577450 = ±0.865875.
    `scale=False` (Dr.GRPO) leaves the deviations: (-½, -½, ½, ½) and (-2, -1, 0, 3).
    """
    rewards_P_G = t([[0.0, 0.0, 1.0, 1.0], [1.0, 2.0, 3.0, 6.0]])
    s = math.sqrt(3.0) / 2
    expected = [[-s, -s, s, s], [-2 / math.sqrt(14 / 3), -1 / math.sqrt(14 / 3), 0.0, 3 / math.sqrt(14 / 3)]]
    assert group_normalized(rewards_P_G, eps=0.0).tolist()[0] == pytest.approx(expected[0], abs=1e-12)
    assert group_normalized(rewards_P_G, eps=0.0).tolist()[1] == pytest.approx(expected[1], abs=1e-12)
    assert group_normalized(rewards_P_G, eps=0.0)[1].tolist() == pytest.approx(
        [-0.925820, -0.462910, 0, 1.388730], abs=1e-6
    )
    assert group_normalized(rewards_P_G)[0].tolist() == pytest.approx(
        [-0.865875, -0.865875, 0.865875, 0.865875], abs=1e-6
    )
    centred = group_normalized(rewards_P_G, scale=False)
    assert centred.tolist() == [[-0.5, -0.5, 0.5, 0.5], [-2.0, -1.0, 0.0, 3.0]]


def test_constant_group_gives_zeros():
    """A constant group has deviations 0 and std 0: 0/(0 + eps) = 0 for both functions, no NaN."""
    rewards_P_G = t([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    for advantages_P_G in (
        group_normalized(rewards_P_G),
        group_normalized(rewards_P_G, scale=False),
        leave_one_out(rewards_P_G),
    ):
        assert torch.isfinite(advantages_P_G).all()
        assert advantages_P_G[:2].abs().sum().item() == 0.0
        assert advantages_P_G[2].abs().sum().item() > 0.0


def test_leave_one_out_closed_form():
    """Rewards (1, 0, 0, 3), sum 4, G - 1 = 3: baselines (3/3, 4/3, 4/3, 1/3), advantages (0, -4/3, -4/3, 8/3).

    Same as G/(G-1) · (r - mean) = 4/3 · (0, -1, -1, 2): the centred Dr.GRPO advantage scaled by 4/3.
    """
    rewards_P_G = t([[1.0, 0.0, 0.0, 3.0], [2.0, 4.0, 6.0, 8.0]])
    assert leave_one_out(rewards_P_G)[0].tolist() == pytest.approx([0.0, -4 / 3, -4 / 3, 8 / 3], abs=1e-12)
    expected = 4 / 3 * group_normalized(rewards_P_G, scale=False)
    assert torch.allclose(leave_one_out(rewards_P_G), expected, atol=1e-12)


def test_advantages_reject_bad_groups():
    """A group of one has no baseline and a NaN reward is a scorer bug: both raise instead of giving silent zeros."""
    for fn in (group_normalized, leave_one_out):
        with pytest.raises(ValueError, match="G >= 2"):
            fn(t([[1.0], [0.0]]))
        with pytest.raises(ValueError, match="finite"):
            fn(t([[1.0, float("nan")]]))


def test_group_std_matches_trl():
    """TRL's group std is `trl.trainer.utils.nanstd(rewards.view(-1, G), dim=1)` (Bessel-corrected), added to 1e-4.

    Recovered from ours: centred / scaled - eps = std, on groups that are not constant.
    """
    trl_utils = pytest.importorskip("trl.trainer.utils")
    g = torch.Generator().manual_seed(0)
    rewards_P_G = torch.rand(5, 8, generator=g, dtype=torch.float64)
    ours_std_P_G = group_normalized(rewards_P_G, scale=False) / group_normalized(rewards_P_G) - 1e-4
    trl_std_P = trl_utils.nanstd(rewards_P_G, dim=1)
    assert torch.allclose(ours_std_P_G, trl_std_P[:, None].expand(5, 8), atol=1e-9)


def test_leave_one_out_matches_trl():
    pytest.skip(
        "no TRL function holds the RLOO baseline: it is inline in RLOOTrainer._generate_and_score_completions, "
        "which generates completions; checked against the closed form and the G/(G-1) identity instead"
    )


# ----------------------------------------------------------------------------------------------------- reduction


def test_sequence_mean_of_token_means():
    """Rows (1, 3 | ·), (5 | ·, ·), (empty): token means 2, 5, 0 (an empty sequence counts as 0), mean 7/3.

    The token mean over the same mask is (1 + 3 + 5)/3 = 3: GRPO and DAPO differ exactly here.
    """
    values_B_T = t([[1.0, 3.0, 99.0], [5.0, 99.0, 99.0], [99.0, 99.0, 99.0]])
    mask_B_T = torch.tensor([[True, True, False], [True, False, False], [False, False, False]])
    assert sequence_mean_of_token_means(values_B_T, mask_B_T).item() == pytest.approx(7 / 3, abs=1e-12)
    assert masked_token_mean(values_B_T, mask_B_T).item() == pytest.approx(3.0, abs=1e-12)


# -------------------------------------------------------------------------------------------- policy, ratio of 1

VARIANTS = {
    "grpo": grpo_loss,
    "dr_grpo": functools.partial(dr_grpo_loss, max_completion_length=5),
    "dapo": dapo_loss,
    "gspo": gspo_loss,
}


def _on_policy_batch():
    """Two sequences of 2 and 4 tokens (T = 4), advantages (1, -2), logprobs == old (ratio 1 everywhere)."""
    logprobs_B_T = t([[-1.0, -2.0, 0.0, 0.0], [-0.5, -1.0, -1.5, -2.0]], requires_grad=True)
    mask_B_T = torch.tensor([[True, True, False, False], [True, True, True, True]])
    return logprobs_B_T, logprobs_B_T.detach().clone(), t(1.0, -2.0), mask_B_T


@pytest.mark.parametrize(
    ("name", "expected_loss", "expected_grad"),
    [
        ("grpo", 0.5, [[-0.25, -0.25, 0, 0], [0.25] * 4]),
        ("gspo", 0.5, [[-0.25, -0.25, 0, 0], [0.25] * 4]),
        ("dr_grpo", 0.6, [[-0.1, -0.1, 0, 0], [0.2] * 4]),
        ("dapo", 1.0, [[-1 / 6, -1 / 6, 0, 0], [1 / 3] * 4]),
    ],
)
def test_ratio_one_loss_is_minus_mean_advantage(name, expected_loss, expected_grad):
    """Ratio 1: the clip is inactive, every completion token's term is -A, and the loss is -A under the reduction.

    Lengths (2, 4), A = (1, -2), B = 2; per-token terms -1 (2 tokens) and 2 (4 tokens).
    - GRPO: sequence means (-1, 2), mean over sequences ½. Gradient -A_i/(|o_i|·B): -¼ and 2/8 = ¼.
    - GSPO: s_i = 1, terms -A_i, mean ½. ∂(-s_i A_i)/∂logπ_t = -A_i s_i/|o_i|, over B: the same as GRPO on-policy.
    - Dr.GRPO, max_completion_length 5: sum (-2 + 8) / (2·5) = 0.6. Gradient -A_i/10: -0.1 and 0.2, whatever the
      length: unlike GRPO, a token of the short sequence weighs the same as one of the long sequence.
    - DAPO: sum 6 over 6 tokens = 1. Gradient -A_i/6.
    """
    logprobs_B_T, old_logprobs_B_T, advantages_B, mask_B_T = _on_policy_batch()
    loss, metrics = VARIANTS[name](logprobs_B_T, old_logprobs_B_T, advantages_B, mask_B_T)
    loss.backward()
    assert loss.item() == pytest.approx(expected_loss, abs=1e-12)
    assert logprobs_B_T.grad.tolist()[0] == pytest.approx(expected_grad[0], abs=1e-12)
    assert logprobs_B_T.grad.tolist()[1] == pytest.approx(expected_grad[1], abs=1e-12)
    assert metrics == {"clip_low_fraction": 0.0, "clip_high_fraction": 0.0, "clip_fraction": 0.0, "ratio_mean": 1.0}
    assert all(type(v) is float for v in metrics.values())


def _off_policy_batch(B: int = 16, T: int = 7, seed: int = 0, spread: float = 0.3):
    """Random (B, T) log-probs, old = policy + noise, a reference, unequal lengths, advantages from 0/1 rewards."""
    g = torch.Generator().manual_seed(seed)
    lengths_B = torch.randint(1, T + 1, (B,), generator=g)
    lengths_B[0] = T
    mask_B_T = torch.arange(T) < lengths_B[:, None]
    logprobs_B_T = -3 * torch.rand(B, T, generator=g, dtype=torch.float64)
    old_logprobs_B_T = logprobs_B_T + spread * torch.randn(B, T, generator=g, dtype=torch.float64)
    ref_logprobs_B_T = logprobs_B_T + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)
    rewards_P_G = torch.randint(0, 2, (B // 4, 4), generator=g).double()
    advantages_B = group_normalized(rewards_P_G).flatten()
    return logprobs_B_T.requires_grad_(True), old_logprobs_B_T, advantages_B, mask_B_T, ref_logprobs_B_T


@pytest.mark.parametrize("name", list(VARIANTS))
def test_zero_advantages_give_zero_gradient(name):
    """A = 0: every term -min(r·0, clip(r)·0) = 0, so loss 0 and gradient 0, even off-policy; nothing is clipped."""
    logprobs_B_T, old_logprobs_B_T, _, mask_B_T, _ = _off_policy_batch()
    loss, metrics = VARIANTS[name](logprobs_B_T, old_logprobs_B_T, torch.zeros(16, dtype=torch.float64), mask_B_T)
    loss.backward()
    assert loss.item() == 0.0
    assert logprobs_B_T.grad.abs().max().item() == 0.0
    assert metrics["clip_fraction"] == 0.0


# ------------------------------------------------------------------------------------------------------- clipping


def test_clip_binds_zero_gradient():
    """ε = 0.2, one token per (sequence, log-ratio) case, token mean over 4 tokens.

    log-ratios (+½, -½) in both sequences: r = e^½ = 1.648721, e^-½ = 0.606531.
    - A = +1, r = 1.6487 > 1.2: min(1.6487, 1.2) = 1.2 binds (high clip): term -1.2, gradient 0.
    - A = +1, r = 0.6065: min(0.6065, 0.8) = 0.6065, not clipped: term -0.6065, gradient -A·r/4 = -0.151633.
    - A = -1, r = 1.6487: min(-1.6487, -1.2) = -1.6487, not clipped: term 1.6487, gradient -A·r/4 = 0.412180.
    - A = -1, r = 0.6065 < 0.8: min(-0.6065, -0.8) = -0.8 binds (low clip): term 0.8, gradient 0.
    loss = (-1.2 - 0.606531 + 1.648721 + 0.8)/4 = 0.160548; clip low ¼, high ¼, both ½;
    mean ratio (2e^½ + 2e^-½)/4 = cosh ½ = 1.127626.
    """
    old_logprobs_B_T = t([[-1.0, -1.0], [-2.0, -2.0]])
    logprobs_B_T = (old_logprobs_B_T + t([[0.5, -0.5], [0.5, -0.5]])).requires_grad_(True)
    mask_B_T = torch.ones(2, 2, dtype=torch.bool)
    loss, metrics = policy_loss(logprobs_B_T, old_logprobs_B_T, t(1.0, -1.0), mask_B_T, reduction=masked_token_mean)
    loss.backward()
    r_hi, r_lo = math.exp(0.5), math.exp(-0.5)
    assert loss.item() == pytest.approx((-1.2 - r_lo + r_hi + 0.8) / 4, abs=1e-12)
    assert loss.item() == pytest.approx(0.160548, abs=1e-6)
    assert logprobs_B_T.grad.tolist()[0] == pytest.approx([0.0, -r_lo / 4], abs=1e-12)
    assert logprobs_B_T.grad.tolist()[1] == pytest.approx([r_hi / 4, 0.0], abs=1e-12)
    assert metrics == pytest.approx(
        {"clip_low_fraction": 0.25, "clip_high_fraction": 0.25, "clip_fraction": 0.5, "ratio_mean": math.cosh(0.5)}
    )


def test_dapo_clip_higher():
    """DAPO §3.1: raising ε_high lets a low-probability token with A > 0 grow further before its gradient stops.

    Sequence 0: log-ratio 0.2 (r = 1.221403), A = +1. Sequence 1: log-ratio -0.25 (r = 0.778801), A = -1. N = 2.
    - ε_high = 0.28: 1.2214 < 1.28 so not clipped: term -1.221403, gradient -A·r/2 = -0.610701.
      Sequence 1: 0.7788 < 0.8, A < 0: low clip binds, term 0.8, gradient 0. loss (-1.221403 + 0.8)/2 = -0.210701.
    - ε_high = ε_low = 0.2: 1.2214 > 1.2 now binds: term -1.2, gradient 0; loss (-1.2 + 0.8)/2 = -0.2.
    """
    old_logprobs_B_T = t([[-1.0], [-1.0]])
    logprobs_B_T = (old_logprobs_B_T + t([[0.2], [-0.25]])).requires_grad_(True)
    args = (old_logprobs_B_T, t(1.0, -1.0), torch.ones(2, 1, dtype=torch.bool))

    loss, metrics = dapo_loss(logprobs_B_T, *args)  # ε_low 0.2, ε_high 0.28
    (grad,) = torch.autograd.grad(loss, logprobs_B_T)
    assert loss.item() == pytest.approx((-math.exp(0.2) + 0.8) / 2, abs=1e-12)
    assert loss.item() == pytest.approx(-0.210701, abs=1e-6)
    assert grad.flatten().tolist() == pytest.approx([-math.exp(0.2) / 2, 0.0], abs=1e-12)
    assert (metrics["clip_low_fraction"], metrics["clip_high_fraction"]) == (0.5, 0.0)

    loss, metrics = dapo_loss(logprobs_B_T, *args, eps_high=0.2)
    (grad,) = torch.autograd.grad(loss, logprobs_B_T)
    assert loss.item() == pytest.approx(-0.2, abs=1e-12)
    assert grad.abs().max().item() == 0.0
    assert (metrics["clip_low_fraction"], metrics["clip_high_fraction"], metrics["clip_fraction"]) == (0.5, 0.5, 1.0)


def test_gspo_sequence_ratio():
    """GSPO eq. 7, ε = 0.2, A = (1, 1). Sequence 0: token log-ratios (0.3, -0.1, 0.1), mean 0.1, s = e^0.1 = 1.105171,
    inside [0.8, 1.2]. Sequence 1: one token (then padding), log-ratio ½, s = e^½ = 1.648721 > 1.2: clipped.

    loss = mean(-1.105171, -1.2) = -1.152585. ∂(-s A)/∂logπ_t = -A s/|o| for every token of the sequence, over B = 2:
    -1.105171/6 = -0.184195 on each of sequence 0's tokens, 0 for sequence 1. Clip fractions count sequences: high ½.
    Mean ratio over sequences (1.105171 + 1.648721)/2 = 1.376946.
    At token level (GRPO) the same inputs clip sequence 0's first token instead (e^0.3 = 1.35 > 1.2): gradient 0 there.
    """
    old_logprobs_B_T = t([[-1.0, -2.0, -3.0], [-1.0, 7.0, 7.0]])
    logprobs_B_T = (old_logprobs_B_T + t([[0.3, -0.1, 0.1], [0.5, 0.0, 0.0]])).requires_grad_(True)
    mask_B_T = torch.tensor([[True, True, True], [True, False, False]])
    args = (old_logprobs_B_T, t(1.0, 1.0), mask_B_T)

    loss, metrics = gspo_loss(logprobs_B_T, *args, eps_low=0.2, eps_high=0.2)
    (grad,) = torch.autograd.grad(loss, logprobs_B_T)
    s = math.exp(0.1)
    assert loss.item() == pytest.approx((-s - 1.2) / 2, abs=1e-12)
    assert loss.item() == pytest.approx(-1.152585, abs=1e-6)
    assert grad.tolist()[0] == pytest.approx([-s / 6] * 3, abs=1e-12)
    assert grad.tolist()[1] == [0.0, 0.0, 0.0]
    assert metrics == pytest.approx(
        {
            "clip_low_fraction": 0.0,
            "clip_high_fraction": 0.5,
            "clip_fraction": 0.5,
            "ratio_mean": (s + math.exp(0.5)) / 2,
        }
    )

    (token_grad,) = torch.autograd.grad(grpo_loss(logprobs_B_T, *args, eps_low=0.2, eps_high=0.2)[0], logprobs_B_T)
    assert token_grad[0, 0].item() == 0.0
    assert token_grad[0, 1].item() == pytest.approx(-math.exp(-0.1) / 6, abs=1e-12)


# ------------------------------------------------------------------------------------------------------------ KL


def test_k3_kl():
    """k3 per token: e^d - d - 1, d = ref - π. One sequence, d = (½, -½), old = π and A = 0, β = 0.1, GRPO reduction.

    kl = (e^½ - 1.5, e^-½ - 0.5) = (0.148721, 0.106531), mean 0.127626 (the `kl` metric); loss β·0.127626 = 0.0127626.
    ∂/∂π_t of β·kl_t/2 = β(1 - e^{d_t})/2 = (-0.0324361, 0.0196735).
    ref == π: kl 0 and zero KL gradient, so the loss and its gradient are those without KL.
    """
    logprobs_B_T = t([[-1.0, -2.0]], requires_grad=True)
    ref_logprobs_B_T = t([[-0.5, -2.5]])
    loss, metrics = grpo_loss(
        logprobs_B_T, logprobs_B_T.detach(), t(0.0), torch.ones(1, 2, dtype=torch.bool),
        ref_logprobs_B_T=ref_logprobs_B_T, kl_beta=0.1,
    )  # fmt: skip
    loss.backward()
    kl = ((math.exp(0.5) - 1.5) + (math.exp(-0.5) - 0.5)) / 2
    assert metrics["kl"] == pytest.approx(kl, abs=1e-12)
    assert metrics["kl"] == pytest.approx(0.127626, abs=1e-6)
    assert loss.item() == pytest.approx(0.1 * kl, abs=1e-12)
    expected_grad = [0.1 * (1 - math.exp(0.5)) / 2, 0.1 * (1 - math.exp(-0.5)) / 2]
    assert logprobs_B_T.grad.flatten().tolist() == pytest.approx(expected_grad, abs=1e-12)

    logprobs_B_T, old_logprobs_B_T, advantages_B, mask_B_T, ref_logprobs_B_T = _off_policy_batch()
    plain, _ = grpo_loss(logprobs_B_T, old_logprobs_B_T, advantages_B, mask_B_T)
    (plain_grad,) = torch.autograd.grad(plain, logprobs_B_T)
    same, metrics = grpo_loss(
        logprobs_B_T, old_logprobs_B_T, advantages_B, mask_B_T, ref_logprobs_B_T=logprobs_B_T.detach(), kl_beta=0.1
    )
    (same_grad,) = torch.autograd.grad(same, logprobs_B_T)
    assert metrics["kl"] == 0.0
    assert same.item() == pytest.approx(plain.item(), abs=1e-12)
    assert torch.allclose(same_grad, plain_grad, atol=1e-12)
    _, metrics = grpo_loss(logprobs_B_T, old_logprobs_B_T, advantages_B, mask_B_T, ref_logprobs_B_T=ref_logprobs_B_T)
    assert metrics["kl"] > 0.0
    with pytest.raises(ValueError, match="ref_logprobs"):
        grpo_loss(logprobs_B_T, old_logprobs_B_T, advantages_B, mask_B_T, kl_beta=0.1)


# ------------------------------------------------------------------------------------------------ input handling


@pytest.mark.parametrize("name", list(VARIANTS))
def test_padding_is_ignored(name):
    """Padding holding -inf (policy) and NaN (old, reference) changes nothing: same loss, zero gradient there."""
    logprobs_B_T, old_logprobs_B_T, advantages_B, mask_B_T, ref_logprobs_B_T = _off_policy_batch()
    fn = functools.partial(VARIANTS[name], ref_logprobs_B_T=ref_logprobs_B_T, kl_beta=0.05)
    clean, clean_metrics = fn(logprobs_B_T, old_logprobs_B_T, advantages_B, mask_B_T)
    dirty_logprobs_B_T = logprobs_B_T.detach().masked_fill(~mask_B_T, -math.inf).requires_grad_(True)
    nan = float("nan")
    dirty, dirty_metrics = fn(
        dirty_logprobs_B_T, old_logprobs_B_T.masked_fill(~mask_B_T, nan), advantages_B, mask_B_T,
        ref_logprobs_B_T=ref_logprobs_B_T.masked_fill(~mask_B_T, nan),
    )  # fmt: skip
    dirty.backward()
    assert dirty.item() == pytest.approx(clean.item(), abs=1e-12)
    assert dirty_metrics == pytest.approx(clean_metrics)
    assert torch.isfinite(dirty_logprobs_B_T.grad).all()
    assert dirty_logprobs_B_T.grad[~mask_B_T].abs().max().item() == 0.0


def test_shape_and_option_checks():
    logprobs_B_T, old_logprobs_B_T, advantages_B, mask_B_T, _ = _off_policy_batch()
    with pytest.raises(ValueError, match="one advantage per sequence"):
        grpo_loss(logprobs_B_T, old_logprobs_B_T, advantages_B[:, None].expand(16, 7), mask_B_T)
    with pytest.raises(ValueError, match="one shape"):
        grpo_loss(logprobs_B_T, old_logprobs_B_T[:, :3], advantages_B, mask_B_T)
    with pytest.raises(ValueError, match="ratio_level"):
        policy_loss(
            logprobs_B_T, old_logprobs_B_T, advantages_B, mask_B_T, reduction=masked_token_mean, ratio_level="seq"
        )


# ------------------------------------------------------------------------------------------------ TRL agreement


class _LogprobModel:
    """Stub policy for TRL's GRPO `_compute_loss`: per-token log-probs we chose, after the prompt's positions.

    TRL keeps the last `logits_to_keep` (= completion length) positions of `outputs.log_probs`; entropy is only logged.
    """

    training = False  # eval mode: TRL applies no gradient-accumulation factor

    def __init__(self, logprobs_B_T: torch.Tensor, prompt_length: int):
        self.logprobs_B_T, self.prompt_length = logprobs_B_T, prompt_length

    def __call__(self, input_ids, attention_mask, **kwargs):
        prompt_B_P = self.logprobs_B_T.new_zeros(input_ids.shape[0], self.prompt_length)
        log_probs_B_L = torch.cat([prompt_B_P, self.logprobs_B_T], dim=1)
        return SimpleNamespace(log_probs=log_probs_B_L, entropy=torch.zeros_like(log_probs_B_L))


def _trl_grpo(batch, *, loss_type, eps_low, eps_high, level="token", beta=0.0, max_completion_length=None):
    """`trl.trainer.grpo_trainer.GRPOTrainer._compute_loss`, unbound, on a stub model; returns (loss, logged metrics)."""
    grpo_trainer = pytest.importorskip("trl.trainer.grpo_trainer")
    GRPOTrainer = grpo_trainer.GRPOTrainer
    logprobs_B_T, old_logprobs_B_T, advantages_B, mask_B_T, ref_logprobs_B_T = batch
    (B, T), P = logprobs_B_T.shape, 2
    model = _LogprobModel(logprobs_B_T, P)
    accelerator = SimpleNamespace(
        device=torch.device("cpu"), is_main_process=True, num_processes=1, autocast=contextlib.nullcontext,
        gather=lambda x: x, reduce=lambda x, reduction: x,
    )  # fmt: skip
    trainer = SimpleNamespace(
        model=model, accelerator=accelerator, args=SimpleNamespace(delta=None, use_bias_correction_kl=False),
        loss_type=loss_type, importance_sampling_level=level, epsilon_low=eps_low, epsilon_high=eps_high, beta=beta,
        max_completion_length=max_completion_length, top_entropy_quantile=1.0, off_policy_mask_threshold=None,
        use_vllm=False, vllm_importance_sampling_correction=False, aux_loss_enabled=False,
        _entropy_bonus_enabled=False, current_gradient_accumulation_steps=1,
        _metrics=defaultdict(lambda: defaultdict(list)),
    )  # fmt: skip
    trainer._get_per_token_logps_and_entropies = types.MethodType(
        GRPOTrainer._get_per_token_logps_and_entropies, trainer
    )
    inputs = {
        "prompt_ids": torch.zeros(B, P, dtype=torch.long), "prompt_mask": torch.ones(B, P, dtype=torch.long),
        "completion_ids": torch.zeros(B, T, dtype=torch.long), "completion_mask": mask_B_T.long(),
        "advantages": advantages_B, "old_per_token_logps": old_logprobs_B_T, "ref_per_token_logps": ref_logprobs_B_T,
        "num_items_in_batch": mask_B_T.sum(),
    }  # fmt: skip
    loss = GRPOTrainer._compute_loss(trainer, model, inputs)
    return loss, {k: v[-1] for k, v in trainer._metrics["eval"].items()}


TRL_CASES = {
    # name: (our loss, TRL's settings)
    "grpo": (
        functools.partial(grpo_loss, eps_low=0.2, eps_high=0.2),
        {"loss_type": "grpo", "eps_low": 0.2, "eps_high": 0.2},
    ),
    "grpo_kl": (
        functools.partial(grpo_loss, eps_low=0.2, eps_high=0.2, kl_beta=0.04),
        {"loss_type": "grpo", "eps_low": 0.2, "eps_high": 0.2, "beta": 0.04},
    ),
    "dr_grpo": (
        functools.partial(dr_grpo_loss, max_completion_length=16),
        {"loss_type": "dr_grpo", "eps_low": 0.2, "eps_high": 0.2, "max_completion_length": 16},
    ),
    "dapo_kl": (
        functools.partial(dapo_loss, eps_low=0.2, eps_high=0.28, kl_beta=0.04),
        {"loss_type": "dapo", "eps_low": 0.2, "eps_high": 0.28, "beta": 0.04},
    ),
    "gspo_kl": (
        functools.partial(gspo_loss, eps_low=0.03, eps_high=0.04, kl_beta=0.04),
        {"loss_type": "grpo", "level": "sequence", "eps_low": 0.03, "eps_high": 0.04, "beta": 0.04},
    ),
}


@pytest.mark.parametrize("name", list(TRL_CASES))
def test_matches_trl(name):
    """Loss, its gradient w.r.t. the policy log-probs, clip fractions and KL, on the same random off-policy batch.

    TRL's settings: `use_bias_correction_kl=False` (its default True multiplies the KL by the ratio), GSPO as
    `loss_type="grpo", importance_sampling_level="sequence"`, DAPO's token count as `num_items_in_batch`.
    """
    ours_fn, trl_settings = TRL_CASES[name]
    batch = _off_policy_batch(seed=1)
    trl_loss, trl_metrics = _trl_grpo(batch, **trl_settings)
    (trl_grad_B_T,) = torch.autograd.grad(trl_loss, batch[0])
    loss, metrics = ours_fn(*batch[:4], ref_logprobs_B_T=batch[4])
    (grad_B_T,) = torch.autograd.grad(loss, batch[0])

    assert abs(loss.item() - trl_loss.item()) <= TOL, (loss.item(), trl_loss.item())
    assert torch.allclose(grad_B_T, trl_grad_B_T, atol=TOL)
    assert 0.0 < metrics["clip_fraction"] < 1.0  # the batch exercises both branches of the clip
    assert metrics["clip_low_fraction"] == pytest.approx(trl_metrics["clip_ratio/low_mean"], abs=TOL)
    assert metrics["clip_high_fraction"] == pytest.approx(trl_metrics["clip_ratio/high_mean"], abs=TOL)
    assert metrics["clip_fraction"] == pytest.approx(trl_metrics["clip_ratio/region_mean"], abs=TOL)
    if "beta" in trl_settings:
        assert metrics["kl"] == pytest.approx(trl_metrics["kl"], abs=TOL)


def test_trl_default_loss_type_is_dapo():
    """TRL's default loss_type is "dapo", not "grpo": on unequal lengths the two reductions give different losses,
    and ours agree with TRL's loss of the same name, not with its default."""
    batch = _off_policy_batch(seed=2)
    trl_dapo, _ = _trl_grpo(batch, loss_type="dapo", eps_low=0.2, eps_high=0.2)
    grpo, _ = grpo_loss(*batch[:4])
    dapo, _ = dapo_loss(*batch[:4], eps_high=0.2)
    assert abs(grpo.item() - trl_dapo.item()) > 1e-3
    assert abs(dapo.item() - trl_dapo.item()) <= TOL
