"""Truncated importance sampling against the sampler's mismatch (`tis_cap`): the weights and the weighted loss in
closed form, the update's wiring (π_old recomputed by the trainer, the weights applied, PPO's k1 penalty), a short
RLVR run that logs the metrics, and the size of the mismatch between the samplers and an fp32 trainer."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from test_rlvr_stage import _config, _rows

from posttrain.data import load_records
from posttrain.losses.policy import POLICY_LOSSES, grpo_loss, truncated_importance_weights
from posttrain.rollout.engine import RolloutEngine
from posttrain.rollout.hf import HFSampler
from posttrain.rounds import sample_groups
from posttrain.stages.rlvr import compute_advantages, reward_model, run, sampling
from posttrain.tasks.arithmetic import arithmetic_tasks
from posttrain.tasks.jsonl import write_tasks
from posttrain.train.policy_update import policy_update, rollout_batches, sampler_correction
from posttrain.train.ppo_update import ppo_learner
from posttrain.train.preamble import Run
from posttrain.train.reference import reference_policy
from posttrain.train.setup import build_optimization, build_policy

CPU = torch.device("cpu")
INF = float("inf")


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tis")
    return write_tasks(root / "train.jsonl", arithmetic_tasks(8, "train")), write_tasks(
        root / "heldout.jsonl", arithmetic_tasks(2, "heldout")
    )


def _log(*probs: float) -> list[float]:
    return [math.log(p) for p in probs]


def test_truncated_weights_closed_form():
    """Trainer probabilities (0.5, 0.2, 0.9) against the sampler's (0.25, 0.4, 0.3): ratios 2, 0.5 and 3, a padded slot
    holding -inf in both. With cap 2.5: weights (2, 0.5, 2.5) and 0 on the pad, mean 5/3; one token of three capped;
    k3 = mean of r - 1 - ln r = ((1 - ln 2) + (-0.5 + ln 2) + (2 - ln 3)) / 3 = (2.5 - ln 3) / 3 ≈ 0.467129."""
    trainer = torch.tensor([[*_log(0.5, 0.2, 0.9), -INF]])
    sampler = torch.tensor([[*_log(0.25, 0.4, 0.3), -INF]])
    mask = torch.tensor([[True, True, True, False]])
    weights, metrics = truncated_importance_weights(trainer, sampler, mask, cap=2.5)
    assert torch.allclose(weights, torch.tensor([[2.0, 0.5, 2.5, 0.0]]), atol=1e-6)
    assert metrics["tis/weight_mean"] == pytest.approx(5 / 3, abs=1e-6)
    assert metrics["tis/truncated_fraction"] == pytest.approx(1 / 3)
    assert metrics["tis/kl_sampler_trainer"] == pytest.approx((2.5 - math.log(3)) / 3, abs=1e-6)
    assert not weights.requires_grad
    _, uncapped = truncated_importance_weights(trainer, sampler, mask, cap=10.0)
    assert uncapped["tis/weight_mean"] == pytest.approx(5.5 / 3, abs=1e-6) and uncapped["tis/truncated_fraction"] == 0
    with pytest.raises(ValueError, match="cap must be > 0"):
        truncated_importance_weights(trainer, sampler, mask, cap=0.0)


def test_weighted_grpo_loss_and_gradient_closed_form():
    """GRPO, ε = 0.2, two sequences.
    - Sequence 0 (A = +1), 3 tokens with ratios (1, 1, 1.5) and weights (2, 0.5, 2.5): terms -1, -1, -min(1.5, 1.2) =
      -1.2, weighted -2, -0.5, -3, mean -5.5/3.
    - Sequence 1 (A = -2), 1 token (then 2 pads holding -inf, their weights NaN), ratio 1 and weight 0.8: term
      -(1 · -2) = 2, weighted 1.6.

    Loss (-5.5/3 + 1.6) / 2 = -7/60 (unweighted: (-3.2/3 + 2) / 2 = 7/15). Gradient in each log-prob: -w·A·r / (n_i · B)
    where the clip does not bind: -2/6 = -1/3 and -0.5/6 = -1/12 for sequence 0's first two tokens, 0 for the clipped
    third, +0.8·2/2 = 0.8 for sequence 1's token. A k3 KL of 1 - ln 2 on that token (ref - π = ln 2), β = 0.1, is added
    after the weighting, unweighted: the loss becomes (-5.5/3 + 1.6 + 0.1·(1 - ln 2)) / 2."""
    old = torch.tensor([_log(0.5, 0.4, 0.2), [math.log(0.3), -INF, -INF]], dtype=torch.float64)
    logprobs = (old + torch.tensor([[0.0, 0.0, math.log(1.5)], [0.0, 0.0, 0.0]], dtype=torch.float64)).requires_grad_()
    mask = torch.tensor([[True, True, True], [True, False, False]])
    advantages = torch.tensor([1.0, -2.0], dtype=torch.float64)
    weights = torch.tensor([[2.0, 0.5, 2.5], [0.8, math.nan, math.nan]], dtype=torch.float64)

    loss, metrics = grpo_loss(logprobs, old, advantages, mask, is_weights_B_T=weights)
    assert loss.item() == pytest.approx(-7 / 60, abs=1e-12)
    assert metrics["clip_high_fraction"] == pytest.approx(1 / 4)  # the weights leave the clip's metrics alone
    (grad,) = torch.autograd.grad(loss, logprobs)
    expected = torch.tensor([[-1 / 3, -1 / 12, 0.0], [0.8, 0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(grad, expected, atol=1e-12)
    assert grpo_loss(logprobs, old, advantages, mask)[0].item() == pytest.approx(7 / 15, abs=1e-12)

    ref = logprobs.detach() + torch.tensor([[0.0, 0.0, 0.0], [math.log(2), 0.0, 0.0]], dtype=torch.float64)
    with_kl, _ = grpo_loss(logprobs, old, advantages, mask, is_weights_B_T=weights, ref_logprobs_B_T=ref, kl_beta=0.1)
    assert with_kl.item() == pytest.approx((-5.5 / 3 + 1.6 + 0.1 * (1 - math.log(2))) / 2, abs=1e-12)
    with pytest.raises(ValueError, match="one shape"):
        grpo_loss(logprobs, old, advantages, mask, is_weights_B_T=weights[:, :2])


@pytest.mark.parametrize("name", list(POLICY_LOSSES))
def test_unit_weights_leave_every_loss_and_gradient_bit_identical(name):
    """Every variant threads the weights through, and weights of 1 change nothing to the bit (off: no weights)."""
    generator = torch.Generator().manual_seed(0)
    old = -torch.rand((3, 5), generator=generator) * 4
    logprobs = (old + 0.3 * torch.randn((3, 5), generator=generator)).requires_grad_()
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    advantages = torch.randn((3, 5) if name == "ppo" else (3,), generator=generator)
    fn = POLICY_LOSSES[name].fn
    kwargs = POLICY_LOSSES[name].step_kwargs(3, int(mask.sum()), 5)
    plain, plain_metrics = fn(logprobs, old, advantages, mask, **kwargs)
    weighted, weighted_metrics = fn(logprobs, old, advantages, mask, is_weights_B_T=torch.ones(3, 5), **kwargs)
    assert torch.equal(plain, weighted) and plain_metrics == weighted_metrics
    assert torch.equal(*(torch.autograd.grad(x, logprobs)[0] for x in (plain, weighted)))


def _fp64_rollouts(config, model, tokenizer):
    """A step's rollouts from an fp64 sampler (its log-probs equal the fp64 trainer's to ~1e-15) and advantages."""
    sampler = RolloutEngine(model, tokenizer, dtype=torch.float64)
    rewards = reward_model(config)
    train = list(load_records(config.tasks, "rl").records)[:2]
    groups = sample_groups(sampler, rewards.score, train, config.samples_per_prompt, sampling(config, 0))
    rewards.close()
    advantages = compute_advantages(config, torch.tensor([g.rewards for g in groups], dtype=torch.float64)).flatten()
    advantages = advantages + torch.linspace(-1, 1, len(advantages), dtype=torch.float64)  # never all zero
    return [r for g in groups for r in g.rollouts], advantages


def _shifted(rollouts, nats: float):
    """The rollouts as a sampler `nats` less likely than the trainer on every token would have logged them."""
    return [dataclasses.replace(r, logprobs=tuple(lp - nats for lp in r.logprobs)) for r in rollouts]


@pytest.mark.parametrize("loss", ["grpo", "dr_grpo", "dapo", "gspo"])
def test_update_takes_the_trainers_logprobs_as_old_and_weights_every_token(tasks, tmp_path, loss):
    """A sampler whose log-probs sit δ below the trainer's on every token has weights e^δ. The corrected update's ratio
    is 1 (π_old is the trainer's), so its gradient is e^δ times the uncorrected update's on the exact rollouts
    (ratio 1 too): 1.5x for δ = ln 1.5, and 2x, the cap, for δ = ln 3. Uncorrected (`tis_cap=0`, the previous
    behaviour) the ratio is taken against the shifted log-probs: 1.5, and the clip binds.

    Tolerances: the sampler's log-probs reach the loss as float32 (`padded_rows`), so each weight, and each ratio of
    the uncorrected reference update, carries a relative rounding of about 5e-7 (log-probs near -10.8); the
    gradients then agree to about 1e-7 relative (measured 6e-8 to 8e-8), where a missing weight would be off by 33%."""
    config = _config(tasks, tmp_path, loss=loss, row_tokens=64, grad_clip=0.0)
    model, tokenizer = build_policy(config.model, CPU, 0)
    model.double()
    rollouts, advantages = _fp64_rollouts(config, model, tokenizer)

    def update(rollouts, tis_cap: float) -> tuple[torch.Tensor, dict[str, float]]:
        optimizer, scheduler = build_optimization(model, 0.0, 0.0, 0.0, 1, 1.0)  # lr 0: the step changes nothing
        captured = []
        hook = optimizer.register_step_pre_hook(
            lambda *_: captured.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        )
        run_ = Run(dataclasses.replace(config, tis_cap=tis_cap), "rlvr", tmp_path, CPU, "fp32", {})
        stats = policy_update(run_, model, None, optimizer, scheduler, rollouts, advantages, step=0)
        hook.remove()
        model.zero_grad()
        return captured[0], stats

    exact, exact_stats = update(rollouts, tis_cap=0.0)
    assert exact.abs().max() > 0 and not any(k.startswith("tis/") for k in exact_stats)
    for nats, cap, weight, truncated in [(math.log(1.5), 2.0, 1.5, 0.0), (math.log(3), 2.0, 2.0, 1.0)]:
        gradient, stats = update(_shifted(rollouts, nats), tis_cap=cap)
        assert (gradient - weight * exact).norm() <= 1e-6 * (weight * exact).norm(), nats  # measured 8e-8
        assert stats["ratio_mean"] == 1.0 and stats["clip_fraction"] == 0.0
        assert stats["tis/weight_mean"] == pytest.approx(weight, abs=1e-5)
        assert stats["tis/truncated_fraction"] == truncated
        assert stats["tis/kl_sampler_trainer"] == pytest.approx(math.exp(nats) - 1 - nats, abs=1e-5)
    _, off = update(_shifted(rollouts, math.log(1.5)), tis_cap=0.0)
    assert off["ratio_mean"] == pytest.approx(1.5, abs=1e-5) and off["clip_fraction"] > 0


def test_ppo_takes_the_trainers_logprobs_in_its_ratio_and_its_k1_penalty(tasks, tmp_path):
    """PPO with the reference at the starting weights and a sampler ln 1.5 nats below the trainer: corrected, π_old is
    the trainer's, so the k1 penalty log π_old - log π_ref is 0 and the ratio 1; uncorrected, the penalty is the
    sampler's -ln 1.5 and the ratio 1.5."""
    config = _config(tasks, tmp_path, loss="ppo", lr=0.0, critic_lr=0.0, kl_beta=0.05, precision="fp32")
    model, tokenizer = build_policy(config.model, CPU, 0)
    rewards = reward_model(config)
    train = list(load_records(config.tasks, "rl").records)[:2]
    sampler = RolloutEngine(model, tokenizer, dtype=torch.float32)
    groups = sample_groups(sampler, rewards.score, train, 4, sampling(config, 0))
    rewards.close()
    rollouts = _shifted([r for g in groups for r in g.rollouts], math.log(1.5))
    rewards_P_G = torch.tensor([g.rewards for g in groups])
    stats = {}
    for cap in (0.0, 2.0):
        run_ = Run(dataclasses.replace(config, tis_cap=cap), "rlvr", tmp_path, CPU, "fp32", {})
        learner = ppo_learner(run_, model, tokenizer, reference_policy(model, enabled=True))
        stats[cap] = learner.update(rollouts, rewards_P_G, 0)
    assert stats[2.0]["kl"] == pytest.approx(0.0, abs=1e-5) and stats[2.0]["ratio_mean"] == pytest.approx(1.0, abs=1e-6)
    assert stats[2.0]["tis/weight_mean"] == pytest.approx(1.5, abs=1e-5)
    assert stats[0.0]["kl"] == pytest.approx(-math.log(1.5), abs=1e-5)
    assert stats[0.0]["ratio_mean"] == pytest.approx(1.5, abs=1e-5) and "tis/weight_mean" not in stats[0.0]


def test_rlvr_run_with_tis_logs_the_correction(tasks, tmp_path):
    """Two steps with `tis_cap=2`: the fused engine samples from a bf16 copy of the weights, the trainer runs in bf16
    autocast (fp32 on a CPU without bf16), so the mismatch is a few 1e-3 nats per token (measured: mean |d| ≈ 1.2e-3,
    max 5e-3; k3 ≈ 1-2e-6). Then each weight is e^d ≈ 1 ± 0.005: the mean is within 0.01 of 1, and no token comes
    near the cap (it needs d > ln 2). With mu = 1 every micro-batch sees the weights π_old was computed with, so the
    ratio is exactly 1 and nothing is clipped."""
    run(_config(tasks, tmp_path / "run", max_steps=2, eval_tasks="", tis_cap=2.0))
    rows = _rows(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert abs(row["tis/weight_mean"] - 1.0) < 0.01
        assert row["tis/truncated_fraction"] == 0.0
        assert 1e-8 < row["tis/kl_sampler_trainer"] < 1e-4
        assert row["ratio_mean"] == 1.0 and row["clip_fraction"] == 0.0


def test_mismatch_of_fp32_samplers_is_rounding_and_of_the_bf16_engine_is_not(tasks, tmp_path):
    """An fp32 policy scored by an fp32 trainer. The HF sampler and the fused engine in fp32 compute the same function,
    so their log-probs (about -10.8 for this near-uniform random model) agree to a few fp32 ulps (2^-20 ≈ 9.5e-7 at
    that size; measured: at most one), and k3 ≈ d²/2 ≤ (4 ulp)²/2 ≈ 7e-12 per token: asserted below 1e-10 (measured
    5e-14). The engine's bf16 copy of the weights is not rounding (measured 1.8e-6): the metric sees it."""
    config = _config(tasks, tmp_path, tis_cap=2.0)
    model, tokenizer = build_policy(config.model, CPU, 0)
    train = list(load_records(config.tasks, "rl").records)[:4]
    rewards = reward_model(config)
    run_ = Run(config, "rlvr", tmp_path, CPU, "fp32", {})
    kl = {}
    samplers = {
        "hf": HFSampler(model, tokenizer),
        "engine_fp32": RolloutEngine(model, tokenizer, dtype=torch.float32),
        "engine_bf16": RolloutEngine(model, tokenizer),
    }
    for name, sampler in samplers.items():
        groups = sample_groups(sampler, rewards.score, train, 4, sampling(config, 0))
        rollouts = [r for g in groups for r in g.rollouts]
        _, metrics = sampler_correction(run_, model, rollouts, rollout_batches(rollouts, 256, 8, seed=0))
        kl[name] = metrics["tis/kl_sampler_trainer"]
        assert metrics["tis/weight_mean"] == pytest.approx(1.0, abs=0.01)
    rewards.close()
    assert kl["hf"] < 1e-10 and kl["engine_fp32"] < 1e-10, kl
    assert 1e-8 < kl["engine_bf16"] < 1e-4, kl
