"""Distillation losses (`posttrain.losses.distill`): closed forms on 2- and 3-token vocabularies derived in each
docstring, limit cases (identical logits, masked garbage, empty masks, β → 0 and 1), the top-k form against the full
one, and agreement with TRL 1.x's `GKDTrainer.generalized_jsd_loss` (a static method, called as it is).

Notation: S is the student's distribution, T the teacher's; KL(T ‖ S) is the forward KL (β = 0), KL(S ‖ T) the
reverse KL (β = 1). Logits are built as log-probabilities, so softmax gives back the distribution written.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from posttrain.losses.distill import (
    generalized_jsd,
    generalized_jsd_per_token,
    on_policy_distill_loss,
    reverse_kl,
    sampled_reverse_kl,
    topk_generalized_jsd,
    topk_generalized_jsd_per_token,
)

TOL = 1e-12
TRL_TOL = 1e-5


def logits(*rows: list[float], repeat: int = 1) -> torch.Tensor:
    """(1, len(rows) · repeat, V) float64 logits log p, one position per row of probabilities."""
    return torch.log(torch.tensor([list(rows) * repeat], dtype=torch.float64))


def full_mask(x: torch.Tensor) -> torch.Tensor:
    """A mask of every position of (B, T, V) logits."""
    return torch.ones(x.shape[:2], dtype=torch.bool)


def random_batch(B: int = 3, T: int = 5, V: int = 7, seed: int = 0, scale: float = 2.0):
    """Random float64 student and teacher logits (B, T, V) and a mask with gaps, a full row and an empty row."""
    g = torch.Generator().manual_seed(seed)
    student = scale * torch.randn(B, T, V, generator=g, dtype=torch.float64)
    teacher = scale * torch.randn(B, T, V, generator=g, dtype=torch.float64)
    mask_B_T = torch.rand(B, T, generator=g) < 0.6
    mask_B_T[0] = True
    mask_B_T[-1] = False
    return student, teacher, mask_B_T


# ------------------------------------------------------------------------------------------------- closed forms

S2, T2 = [0.5, 0.5], [0.75, 0.25]
FORWARD_2 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
REVERSE_2 = 0.5 * math.log(4 / 3)


@pytest.mark.parametrize(
    ("beta", "expected"),
    [
        (0.0, FORWARD_2),
        (1.0, REVERSE_2),
        (0.5, 0.5 * (0.75 * math.log(6 / 5) + 0.25 * math.log(2 / 3)) + 0.5 * (0.5 * math.log(4 / 5) + 0.5 * math.log(4 / 3))),
        (0.25, 0.25 * (0.75 * math.log(4 / 3) + 0.25 * math.log(4 / 7)) + 0.75 * (0.5 * math.log(8 / 9) + 0.5 * math.log(8 / 7))),
    ],
)  # fmt: skip
def test_two_token_closed_forms(beta, expected):
    """S = (½, ½), T = (¾, ¼), the same at 3 positions, so the token mean is the per-position value.

    - β = 0, KL(T ‖ S) = ¾ ln(¾/½) + ¼ ln(¼/½) = ¾ ln 1.5 - ¼ ln 2 = 0.130812.
    - β = 1, KL(S ‖ T) = ½ ln(½/¾) + ½ ln(½/¼) = ½ ln(4/3) = 0.143841.
    - β = ½: M = (⅝, ⅜); KL(T ‖ M) = ¾ ln(6/5) + ¼ ln(2/3), KL(S ‖ M) = ½ ln(4/5) + ½ ln(4/3); half each: 0.033822.
    - β = ¼: M = ¼T + ¾S = (9/16, 7/16); KL(T ‖ M) = ¾ ln(4/3) + ¼ ln(4/7), KL(S ‖ M) = ½ ln(8/9) + ½ ln(8/7);
      ¼ and ¾ of them: 0.024870. Putting β on the student instead (M = (11/16, 5/16)) would give another number.
    """
    student, teacher = logits(S2, repeat=3), logits(T2, repeat=3)
    loss, metrics = generalized_jsd(student, teacher, full_mask(student), beta)
    assert loss.item() == pytest.approx(expected, abs=TOL)
    assert metrics == {"jsd": pytest.approx(expected, abs=TOL), "n_tokens": 3}
    per_token = generalized_jsd_per_token(student, teacher, full_mask(student), beta)
    assert per_token.tolist() == [pytest.approx([expected] * 3, abs=TOL)]


def test_printed_decimals_of_the_closed_forms():
    """The decimals quoted in the docstrings above, so a slip in a derivation shows up as a mismatch."""
    assert abs(FORWARD_2 - 0.130812) < 1e-6
    assert abs(REVERSE_2 - 0.143841) < 1e-6
    student, teacher = logits(S2), logits(T2)
    assert generalized_jsd(student, teacher, full_mask(student), 0.5)[0].item() == pytest.approx(0.033822, abs=1e-6)
    assert generalized_jsd(student, teacher, full_mask(student), 0.25)[0].item() == pytest.approx(0.024870, abs=1e-6)


def test_reverse_kl_closed_form_and_equals_beta_one():
    """`reverse_kl` is KL(S ‖ T) = ½ ln(4/3) on S = (½, ½), T = (¾, ¼), and β = 1 of the JSD on random logits."""
    student, teacher = logits(S2, repeat=2), logits(T2, repeat=2)
    loss, metrics = reverse_kl(student, teacher, full_mask(student))
    assert loss.item() == pytest.approx(REVERSE_2, abs=TOL)
    assert metrics == {"reverse_kl": pytest.approx(REVERSE_2, abs=TOL), "n_tokens": 2}
    student, teacher, mask_B_T = random_batch()
    assert reverse_kl(student, teacher, mask_B_T, 1.5)[0].item() == pytest.approx(
        generalized_jsd(student, teacher, mask_B_T, 1.0, 1.5)[0].item(), abs=TOL
    )


def test_three_token_jsd_closed_form():
    """S = (½, ¼, ¼), T = (¼, ¼, ½), β = ½: M = (⅜, ¼, ⅜).

    KL(T ‖ M) = ¼ ln(⅔) + 0 + ½ ln(4/3) and KL(S ‖ M) = ½ ln(4/3) + 0 + ¼ ln(⅔), equal, so the JSD is
    ½ ln(4/3) + ¼ ln(2/3) = 0.143841 - 0.101366 = 0.042475. KL(T ‖ S) = ¼ ln ½ + 0 + ½ ln 2 = ¼ ln 2 = 0.173287,
    and KL(S ‖ T) = ½ ln 2 + 0 + ¼ ln ½ = ¼ ln 2 too (T is S with its first and last entries swapped).
    """
    student, teacher = logits([0.5, 0.25, 0.25]), logits([0.25, 0.25, 0.5])
    mask = full_mask(student)
    expected = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3)
    assert expected == pytest.approx(0.042475, abs=1e-6)
    assert generalized_jsd(student, teacher, mask, 0.5)[0].item() == pytest.approx(expected, abs=TOL)
    assert generalized_jsd(student, teacher, mask, 0.0)[0].item() == pytest.approx(0.25 * math.log(2), abs=TOL)
    assert generalized_jsd(student, teacher, mask, 1.0)[0].item() == pytest.approx(0.25 * math.log(2), abs=TOL)


def test_endpoints_are_the_rescaled_limits():
    """TRL's endpoints: JSD_β = β·KL(T ‖ S) + O(β²) and (1-β)·KL(S ‖ T) + O((1-β)²), so JSD_β/β → forward KL and
    JSD_{1-ε}/ε → reverse KL, while JSD_β itself → 0 (the loss's scale jumps at the endpoints)."""
    student, teacher = logits(S2), logits(T2)
    mask = full_mask(student)
    eps = 1e-6
    assert generalized_jsd(student, teacher, mask, eps)[0].item() / eps == pytest.approx(FORWARD_2, rel=1e-4)
    assert generalized_jsd(student, teacher, mask, 1 - eps)[0].item() / eps == pytest.approx(REVERSE_2, rel=1e-4)
    assert generalized_jsd(student, teacher, mask, eps)[0].item() < 1e-6


def test_temperature_closed_form():
    """Teacher logits (2 ln 3, 0) at τ = 2 are (ln 3, 0): T = (¾, ¼), so against S = (½, ½) the forward KL is
    0.130812 as above. At τ = 1, T = (9/10, 1/10): 0.9 ln 1.8 + 0.1 ln 0.2 = 0.368064. S = (½, ½) at any τ.
    In general, τ divides both logits: the loss at τ is the loss of logits / τ at τ = 1."""
    teacher = torch.tensor([[[2 * math.log(3), 0.0]]], dtype=torch.float64)
    student = torch.zeros(1, 1, 2, dtype=torch.float64)
    mask = full_mask(student)
    assert generalized_jsd(student, teacher, mask, 0.0, temperature=2.0)[0].item() == pytest.approx(FORWARD_2, abs=TOL)
    tau_one = 0.9 * math.log(1.8) + 0.1 * math.log(0.2)
    assert tau_one == pytest.approx(0.368064, abs=1e-6)
    assert generalized_jsd(student, teacher, mask, 0.0)[0].item() == pytest.approx(tau_one, abs=TOL)
    student, teacher, mask_B_T = random_batch()
    for beta in (0.0, 0.3, 1.0):
        tempered = generalized_jsd(student, teacher, mask_B_T, beta, temperature=0.6)[0]
        scaled = generalized_jsd(student / 0.6, teacher / 0.6, mask_B_T, beta)[0]
        assert tempered.item() == pytest.approx(scaled.item(), abs=TOL)


# ------------------------------------------------------------------------------------------------- limit cases


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 1.0])
def test_identical_logits_give_zero_loss_and_gradient(beta):
    """S = T: every KL is 0 (M = S = T too), and so is the gradient, at any τ."""
    student, _, mask_B_T = random_batch()
    student.requires_grad_(True)
    loss, _ = generalized_jsd(student, student.detach().clone(), mask_B_T, beta, temperature=0.8)
    loss.backward()
    assert abs(loss.item()) < TOL
    assert student.grad.abs().max().item() < TOL


def _garbage(x: torch.Tensor, mask_B_T: torch.Tensor) -> torch.Tensor:
    """`x` with NaN, ±inf and 1e30 at the positions off the mask."""
    junk = torch.tensor([float("nan"), float("inf"), float("-inf"), 1e30], dtype=x.dtype)
    filler = junk[torch.arange(x[..., 0].numel()).remainder(4)].view(x.shape[:-1])[..., None].expand_as(x)
    return torch.where(mask_B_T[..., None], x, filler)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_masked_positions_change_nothing(beta):
    """Garbage logits (NaN, ±inf, 1e30) off the mask: the loss is the loss of the masked positions alone (packed
    into one row), the per-token values are 0 there, and the gradient is finite and 0 there."""
    student, teacher, mask_B_T = random_batch()
    clean, _ = generalized_jsd(student[mask_B_T][None], teacher[mask_B_T][None], mask_B_T[mask_B_T][None], beta, 1.3)
    student_g = _garbage(student, mask_B_T).requires_grad_(True)
    teacher_g = _garbage(teacher, mask_B_T)
    loss, _ = generalized_jsd(student_g, teacher_g, mask_B_T, beta, 1.3)
    loss.backward()
    assert loss.item() == pytest.approx(clean.item(), abs=TOL)
    assert torch.isfinite(student_g.grad).all()
    assert student_g.grad[~mask_B_T].abs().max().item() == 0.0
    assert student_g.grad[mask_B_T].abs().max().item() > 0.0
    per_token = generalized_jsd_per_token(student_g, teacher_g, mask_B_T, beta, 1.3)
    assert per_token[~mask_B_T].abs().max().item() == 0.0


def test_empty_mask_gives_zero_and_no_nan():
    """No masked token: loss 0 (TRL's clamp of the count at 1), zero gradient, no NaN, for every loss here."""
    student, teacher, _ = random_batch()
    student.requires_grad_(True)
    none_B_T = torch.zeros(student.shape[:2], dtype=torch.bool)
    ids, lps = _topk_teacher(teacher, 3)
    losses = [
        generalized_jsd(student, teacher, none_B_T, 0.5)[0],
        reverse_kl(student, teacher, none_B_T)[0],
        topk_generalized_jsd(student, ids, lps, none_B_T, 0.5)[0],
    ]
    for loss in losses:
        (grad,) = torch.autograd.grad(loss, student)
        assert loss.item() == 0.0
        assert grad.abs().max().item() == 0.0


def test_zero_probability_entries_follow_0_log_0():
    """A vocabulary entry with logit -inf in both: it adds 0 to every divergence, with a finite gradient (the
    3-token S = (½, ½, 0), T = (¾, ¼, 0) gives the 2-token numbers). Only in T: KL(S ‖ T) = +inf."""
    student = logits([0.5, 0.5, 0.0]).requires_grad_(True)
    teacher = logits([0.75, 0.25, 0.0])
    for beta, expected in [(0.0, FORWARD_2), (0.5, 0.033822075568605205), (1.0, REVERSE_2)]:
        loss, _ = generalized_jsd(student, teacher, full_mask(student), beta)
        (grad,) = torch.autograd.grad(loss, student)
        assert loss.item() == pytest.approx(expected, abs=TOL)
        assert torch.isfinite(grad).all()
    student = logits([0.5, 0.25, 0.25])
    assert reverse_kl(student, teacher, full_mask(student))[0].item() == float("inf")


def test_num_tokens_splits_a_step_into_chunks():
    """Two chunks of one batch, each divided by the batch's masked-token count, sum to the batch's token mean."""
    student, teacher, mask_B_T = random_batch(B=4)
    whole, _ = generalized_jsd(student, teacher, mask_B_T, 0.5)
    n = int(mask_B_T.sum())
    halves = [
        generalized_jsd(student[i : i + 2], teacher[i : i + 2], mask_B_T[i : i + 2], 0.5, num_tokens=n)[0]
        for i in (0, 2)
    ]
    assert (halves[0] + halves[1]).item() == pytest.approx(whole.item(), abs=TOL)


def test_bad_arguments_raise():
    """β outside [0, 1], τ ≤ 0, and mismatched shapes are errors, not silent broadcasts."""
    student, teacher, mask_B_T = random_batch()
    with pytest.raises(ValueError, match="beta"):
        generalized_jsd(student, teacher, mask_B_T, 1.5)
    with pytest.raises(ValueError, match="temperature"):
        generalized_jsd(student, teacher, mask_B_T, 0.5, temperature=0.0)
    with pytest.raises(ValueError, match="one shape"):
        generalized_jsd(student, teacher[..., :-1], mask_B_T, 0.5)
    with pytest.raises(ValueError, match="mask"):
        reverse_kl(student, teacher, mask_B_T[:, :-1])
    with pytest.raises(ValueError, match="one shape"):
        sampled_reverse_kl(student[..., 0], teacher[:, :-1, 0])


# --------------------------------------------------------------------------------------------------- gradients


def test_forward_kl_gradient_closed_form():
    """∂KL(T ‖ S)/∂z = (S - T)/τ per position, / N for the mean: S = (½, ½), T = (¾, ¼), N = 2 gives (-⅛, ⅛);
    at τ = 2 (logits ×2, so the same S and T) it is (-1/16, 1/16). The student's first logit goes up: toward T.

    ∂KL(S ‖ T)/∂z = S ⊙ (log S - log T - KL(S ‖ T)) = ½ (ln ⅔ - ½ ln 4/3, ln 2 - ½ ln 4/3) = (-¼ ln 3, ¼ ln 3), / N.
    """
    student = logits(S2, repeat=2).requires_grad_(True)
    teacher = logits(T2, repeat=2)
    (grad,) = torch.autograd.grad(generalized_jsd(student, teacher, full_mask(student), 0.0)[0], student)
    assert grad.tolist() == [[pytest.approx([-0.125, 0.125], abs=TOL)] * 2]
    student2 = (2 * student.detach()).requires_grad_(True)
    loss = generalized_jsd(student2, 2 * teacher, full_mask(student), 0.0, temperature=2.0)[0]
    (grad,) = torch.autograd.grad(loss, student2)
    assert grad.tolist() == [[pytest.approx([-1 / 16, 1 / 16], abs=TOL)] * 2]
    (grad,) = torch.autograd.grad(reverse_kl(student, teacher, full_mask(student))[0], student)
    q = math.log(3) / 4 / 2
    assert grad.tolist() == [[pytest.approx([-q, q], abs=TOL)] * 2]


def _topk_teacher(teacher: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, log-probs) of the teacher's k most likely tokens, as an endpoint returns them."""
    lps, ids = torch.log_softmax(teacher, -1).topk(k, dim=-1)
    return ids, lps


LOSSES = {
    "forward": lambda s, t, m: generalized_jsd(s, t, m, 0.0)[0],
    "jsd": lambda s, t, m: generalized_jsd(s, t, m, 0.5)[0],
    "reverse": lambda s, t, m: reverse_kl(s, t, m)[0],
    "jsd_tau": lambda s, t, m: generalized_jsd(s, t, m, 0.5, temperature=2.0)[0],
    "topk_forward": lambda s, t, m: topk_generalized_jsd(s, *_topk_teacher(t, 3), m, 0.0)[0],
    "topk_jsd": lambda s, t, m: topk_generalized_jsd(s, *_topk_teacher(t, 3), m, 0.5)[0],
    "topk_reverse": lambda s, t, m: topk_generalized_jsd(s, *_topk_teacher(t, 3), m, 1.0)[0],
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_one_sgd_step_lowers_the_loss(name):
    """From random logits, one SGD step on the student's logits (lr 0.5) gives a finite gradient and a lower loss."""
    student, teacher, mask_B_T = random_batch(seed=1)
    student.requires_grad_(True)
    loss = LOSSES[name](student, teacher, mask_B_T)
    (grad,) = torch.autograd.grad(loss, student)
    assert torch.isfinite(grad).all() and grad.abs().max().item() > 0.0
    after = LOSSES[name](student.detach() - 0.5 * grad, teacher, mask_B_T)
    assert after.item() < loss.item()


# --------------------------------------------------------------------------------------------------------- top-k


@pytest.mark.parametrize(
    ("beta", "temperature"), [(0.0, 1.0), (0.5, 1.0), (1.0, 1.0), (0.0, 1.7), (0.3, 0.6), (1.0, 1.7)]
)
def test_topk_with_k_equal_v_is_the_full_loss(beta, temperature):
    """K = V (the ids in the teacher's order, not the vocabulary's): nothing is dropped and the renormalisation is a
    no-op, so loss, per-token values and gradient equal the full-vocabulary ones, at any τ (τ applied to log T)."""
    student, teacher, mask_B_T = random_batch()
    ids, lps = _topk_teacher(teacher, teacher.shape[-1])
    a, b = student.clone().requires_grad_(True), student.clone().requires_grad_(True)
    full, _ = generalized_jsd(a, teacher, mask_B_T, beta, temperature)
    topk, metrics = topk_generalized_jsd(b, ids, lps, mask_B_T, beta, temperature)
    full.backward()
    topk.backward()
    assert topk.item() == pytest.approx(full.item(), abs=TOL)
    assert torch.allclose(a.grad, b.grad, atol=TOL)
    assert metrics["teacher_topk_mass"] == pytest.approx(1.0, abs=TOL)
    assert metrics["student_topk_mass"] == pytest.approx(1.0, abs=TOL)
    per_token = topk_generalized_jsd_per_token(student, ids, lps, mask_B_T, beta, temperature)
    assert torch.allclose(per_token, generalized_jsd_per_token(student, teacher, mask_B_T, beta, temperature), atol=TOL)


def test_topk_closed_form():
    """V = 3, T = (0.6, 0.3, 0.1), K = 2: the endpoint returns ids (0, 1) with log-probs (ln 0.6, ln 0.3), 90% of T.
    Renormalised: T' = (⅔, ⅓); the student S = (¼, ¼, ½) restricted and renormalised: S' = (½, ½), 50% of S.

    KL(T' ‖ S') = ⅔ ln(4/3) + ⅓ ln(⅔) = 0.056633; KL(S' ‖ T') = ½ ln(¾) + ½ ln(3/2) = ½ ln(9/8) = 0.058892.
    (The full forward KL is 0.6 ln 2.4 + 0.3 ln 1.2 + 0.1 ln 0.2 = 0.419: the approximation drops the tail.)
    """
    student = logits([0.25, 0.25, 0.5])
    ids = torch.tensor([[[0, 1]]])
    lps = torch.log(torch.tensor([[[0.6, 0.3]]], dtype=torch.float64))
    mask = full_mask(student)
    forward, metrics = topk_generalized_jsd(student, ids, lps, mask, 0.0)
    assert forward.item() == pytest.approx(2 / 3 * math.log(4 / 3) + 1 / 3 * math.log(2 / 3), abs=TOL)
    assert forward.item() == pytest.approx(0.056633, abs=1e-6)
    assert metrics["teacher_topk_mass"] == pytest.approx(0.9, abs=TOL)
    assert metrics["student_topk_mass"] == pytest.approx(0.5, abs=TOL)
    reverse, _ = topk_generalized_jsd(student, ids, lps, mask, 1.0)
    assert reverse.item() == pytest.approx(0.5 * math.log(9 / 8), abs=TOL)
    assert reverse.item() == pytest.approx(0.058892, abs=1e-6)


def test_topk_padded_entries_are_left_out():
    """An endpoint that returned fewer than K: entries with log-prob -inf (whatever their id, even out of range)
    drop out of both distributions, so K = 3 with one padded entry equals K = 2; a position with none raises."""
    student, teacher, mask_B_T = random_batch()
    ids, lps = _topk_teacher(teacher, 2)
    padded_ids = torch.cat([ids, torch.full_like(ids[..., :1], 10_000)], -1)
    padded_lps = torch.cat([lps, torch.full_like(lps[..., :1], float("-inf"))], -1)
    a, b = student.clone().requires_grad_(True), student.clone().requires_grad_(True)
    for beta in (0.0, 0.5, 1.0):
        two, _ = topk_generalized_jsd(a, ids, lps, mask_B_T, beta)
        three, _ = topk_generalized_jsd(b, padded_ids, padded_lps, mask_B_T, beta)
        (ga,) = torch.autograd.grad(two, a)
        (gb,) = torch.autograd.grad(three, b)
        assert three.item() == pytest.approx(two.item(), abs=TOL)
        assert torch.allclose(ga, gb, atol=TOL)
    padded_lps[0, 0] = float("-inf")
    with pytest.raises(ValueError, match="no finite teacher"):
        topk_generalized_jsd(student, padded_ids, padded_lps, mask_B_T, 0.5)


def test_topk_masked_positions_change_nothing():
    """Garbage student logits and out-of-range ids off the mask are never read: the same loss, a finite gradient."""
    student, teacher, mask_B_T = random_batch()
    ids, lps = _topk_teacher(teacher, 3)
    clean, _ = topk_generalized_jsd(student, ids, lps, mask_B_T, 0.5)
    student_g = _garbage(student, mask_B_T).requires_grad_(True)
    ids_g = torch.where(mask_B_T[..., None], ids, -12345)
    lps_g = torch.where(mask_B_T[..., None], lps, float("nan"))
    loss, _ = topk_generalized_jsd(student_g, ids_g, lps_g, mask_B_T, 0.5)
    loss.backward()
    assert loss.item() == pytest.approx(clean.item(), abs=TOL)
    assert torch.isfinite(student_g.grad).all()
    assert student_g.grad[~mask_B_T].abs().max().item() == 0.0


# ------------------------------------------------------------------------------------------- on-policy (sampled)


def test_sampled_reverse_kl_and_on_policy_loss_closed_form():
    """Sampled tokens with log S = (-1, -2 | pad) and log T = (-1.5, -1 | pad): k = log S - log T = (0.5, -1), the
    advantages -k = (-0.5, 1). The loss's value is the mean of k, -0.25 (the ratio is 1), and its gradient -A/N =
    (0.25, -0.5, 0): the token the teacher likes more (k < 0) is pushed up. kl_coef = 2 doubles both.
    Padding holds -inf: it never reaches the subtraction."""
    logprobs_B_T = torch.tensor([[-1.0, -2.0, float("-inf")]], dtype=torch.float64, requires_grad=True)
    teacher_B_T = torch.tensor([[-1.5, -1.0, float("-inf")]], dtype=torch.float64)
    mask_B_T = torch.tensor([[True, True, False]])
    assert sampled_reverse_kl(logprobs_B_T, teacher_B_T, mask_B_T).tolist() == [[0.5, -1.0, 0.0]]
    loss, metrics = on_policy_distill_loss(logprobs_B_T, teacher_B_T, mask_B_T)
    (grad,) = torch.autograd.grad(loss, logprobs_B_T)
    assert loss.item() == pytest.approx(-0.25, abs=TOL)
    assert grad.tolist() == [[0.25, -0.5, 0.0]]
    assert metrics == {"reverse_kl": -0.25, "n_tokens": 2}
    loss, metrics = on_policy_distill_loss(logprobs_B_T, teacher_B_T, mask_B_T, kl_coef=2.0)
    (grad,) = torch.autograd.grad(loss, logprobs_B_T)
    assert loss.item() == pytest.approx(-0.5, abs=TOL)
    assert grad.tolist() == [[0.5, -1.0, 0.0]]
    assert metrics["reverse_kl"] == -0.25  # the KL estimate itself, without kl_coef
    loss, _ = on_policy_distill_loss(logprobs_B_T, teacher_B_T, mask_B_T, num_tokens=4)
    assert loss.item() == pytest.approx(-0.125, abs=TOL)  # (0.5 - 1) / 4


def test_on_policy_gradient_is_unbiased_for_the_reverse_kl():
    """Averaging the one-token gradient over every token x the student could sample, weighted by S(x), gives the
    full-vocabulary ∇_z KL(S ‖ T) exactly: E_S[(log S - log T) ∇log S] = ∇ KL(S ‖ T), since E_S[∇log S] = 0."""
    g = torch.Generator().manual_seed(3)
    student = torch.randn(1, 1, 5, generator=g, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(1, 1, 5, generator=g, dtype=torch.float64)
    (exact,) = torch.autograd.grad(reverse_kl(student, teacher, full_mask(student))[0], student)
    log_s, log_t = torch.log_softmax(student, -1), torch.log_softmax(teacher, -1)
    expected_grad = torch.zeros_like(student)
    for x in range(5):
        loss, _ = on_policy_distill_loss(log_s[..., x], log_t[..., x], torch.ones(1, 1, dtype=torch.bool))
        (grad,) = torch.autograd.grad(loss, student, retain_graph=True)
        expected_grad += log_s[..., x].exp().detach() * grad
    assert torch.allclose(expected_grad, exact, atol=TOL)
    assert exact.abs().max().item() > 0.01


# ---------------------------------------------------------------------------------------------------------- TRL


@pytest.fixture(scope="module")
def trl_jsd():
    """TRL's `GKDTrainer.generalized_jsd_loss` (a static method: no trainer is built)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*trl.experimental")  # TRL warns that experimental APIs may change
        gkd_trainer = pytest.importorskip(
            "trl.experimental.gkd.gkd_trainer", reason="TRL with trl.experimental.gkd is not installed"
        )
    return gkd_trainer.GKDTrainer.generalized_jsd_loss


def _trl_batch(seed: int = 0, dtype: torch.dtype = torch.float64):
    """Random (B, T, V) logits and labels with -100 at about 40% of positions and one row entirely -100."""
    g = torch.Generator().manual_seed(seed)
    B, T, V = 3, 6, 13
    student = (3 * torch.randn(B, T, V, generator=g, dtype=torch.float64)).to(dtype)
    teacher = (3 * torch.randn(B, T, V, generator=g, dtype=torch.float64)).to(dtype)
    labels_B_T = torch.randint(0, V, (B, T), generator=g)
    labels_B_T[torch.rand(B, T, generator=g) < 0.4] = -100
    labels_B_T[2] = -100
    return student, teacher, labels_B_T


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.7])
@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_generalized_jsd_matches_trl(trl_jsd, beta, temperature):
    """Loss ("batchmean" with labels: Σ over masked tokens and the vocabulary / number of masked tokens), gradient,
    and per-token values (TRL's reduction="none" gives the masked (N, V) terms; their row sums) to 1e-5 in float64."""
    student, teacher, labels_B_T = _trl_batch()
    mask_B_T = labels_B_T != -100
    a, b = student.clone().requires_grad_(True), student.clone().requires_grad_(True)
    trl_loss = trl_jsd(a, teacher, labels=labels_B_T, beta=beta, temperature=temperature)
    loss, _ = generalized_jsd(b, teacher, mask_B_T, beta, temperature)
    trl_loss.backward()
    loss.backward()
    assert abs(loss.item() - trl_loss.item()) < TRL_TOL
    assert (a.grad - b.grad).abs().max().item() < TRL_TOL
    trl_terms_N_V = trl_jsd(student, teacher, labels=labels_B_T, beta=beta, temperature=temperature, reduction="none")
    per_token_B_T = generalized_jsd_per_token(student, teacher, mask_B_T, beta, temperature)
    assert (per_token_B_T[mask_B_T] - trl_terms_N_V.sum(-1)).abs().max().item() < TRL_TOL


def test_num_tokens_matches_trl_num_items_in_batch(trl_jsd):
    """TRL's `num_items_in_batch` (Σ / a step's token count) is our `num_tokens`."""
    student, teacher, labels_B_T = _trl_batch(seed=1)
    trl_loss = trl_jsd(student, teacher, labels=labels_B_T, beta=0.5, temperature=1.5, num_items_in_batch=37)
    loss, _ = generalized_jsd(student, teacher, labels_B_T != -100, 0.5, 1.5, num_tokens=37)
    assert abs(loss.item() - trl_loss.item()) < TRL_TOL


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_generalized_jsd_matches_trl_in_float32(trl_jsd, beta):
    """The same in float32 (ours computes in fp32 too): loss and gradient within 1e-5."""
    student, teacher, labels_B_T = _trl_batch(seed=2, dtype=torch.float32)
    a, b = student.clone().requires_grad_(True), student.clone().requires_grad_(True)
    trl_loss = trl_jsd(a, teacher, labels=labels_B_T, beta=beta, temperature=2.0)
    loss, _ = generalized_jsd(b, teacher, labels_B_T != -100, beta, 2.0)
    trl_loss.backward()
    loss.backward()
    assert abs(loss.item() - trl_loss.item()) < TRL_TOL
    assert (a.grad - b.grad).abs().max().item() < TRL_TOL
