"""PPO's critic side (`posttrain.losses.value`) and the per-token PPO-clip loss: closed forms derived in each
docstring, limit cases, and agreement with TRL 0.19's `PPOTrainer`.

TRL 1.x no longer ships `PPOTrainer`; 0.19 has GAE, the whitening of advantages, the clipped value loss and the
policy loss inline in `PPOTrainer.train()`. The oracle is TRL 0.19's own source, read from its wheel (fetched by
`make setup` into `.cache/wheels/`, else downloaded here; without it the test fails, it never skips): those statements
are cut out of `train()` with `ast` and executed on our tensors, with `masked_mean`/`masked_whiten` from the wheel's
`trl/core.py`. Nothing of TRL's math is re-implemented or copied here.
"""

from __future__ import annotations

import ast
import hashlib
import math
import types
import zipfile
from pathlib import Path

import pytest
import torch

from posttrain.losses.policy import dapo_loss, ppo_loss
from posttrain.losses.value import clipped_value_loss, explained_variance, gae, masked_whiten, token_rewards

TOL = 1e-6
REPO = Path(__file__).resolve().parents[1]
TRL_WHEEL = REPO / ".cache" / "wheels" / "trl-0.19.0-py3-none-any.whl"
TRL_SHA256 = "0dcd0723c736648e8367d1e8943b646b4c0596812eda7e697984641e54428ed0"


def t(*values) -> torch.Tensor:
    """A float64 tensor: `t(1.0, 2.0)` is 1-D, `t([[...]])` takes nested lists."""
    data = values[0] if len(values) == 1 and isinstance(values[0], list) else list(values)
    return torch.tensor(data, dtype=torch.float64)


def assert_close(actual: torch.Tensor, expected: list) -> None:
    """Equal to `expected` (nested lists) within 1e-12."""
    torch.testing.assert_close(actual.detach().double(), t(expected), atol=1e-12, rtol=0)


def mask(*rows: str) -> torch.Tensor:
    """A (B, T) bool mask from strings of 1s and 0s: `mask("110", "111")`."""
    return torch.tensor([[c == "1" for c in row] for row in rows])


# ------------------------------------------------------------------------------------------------------------- GAE

REWARDS, VALUES = t([[0.0, 0.0, 1.0]]), t([[0.5, 0.25, 0.75]])


@pytest.mark.parametrize(
    ("gamma", "lam", "advantages", "returns"),
    [
        (1.0, 1.0, [0.5, 0.75, 0.25], [1.0, 1.0, 1.0]),
        (1.0, 0.0, [-0.25, 0.5, 0.25], [0.25, 0.75, 1.0]),
        (0.0, 0.7, [-0.5, -0.25, 0.25], [0.0, 0.0, 1.0]),
        (1.0, 0.5, [0.0625, 0.625, 0.25], [0.5625, 0.875, 1.0]),
    ],
)
def test_gae_closed_forms(gamma, lam, advantages, returns):
    """Rewards (0, 0, 1), values (½, ¼, ¾), V = 0 after the last token.

    γ = λ = 1 (Monte Carlo): A_t = Σ_k r_k - V_t = 1 - V_t = (½, ¾, ¼), returns all 1.
    λ = 0 (TD(0)): A_t = δ_t = r_t + V_{t+1} - V_t = (0 + ¼ - ½, 0 + ¾ - ¼, 1 + 0 - ¾) = (-¼, ½, ¼); R = A + V.
    γ = 0 (any λ): A_t = r_t - V_t = (-½, -¼, ¼) and R_t = r_t.
    γ = 1, λ = ½: A_2 = ¼, A_1 = ½ + ½·¼ = ⅝, A_0 = -¼ + ½·⅝ = 1/16; R = (9/16, ⅞, 1).
    """
    got_advantages, got_returns = gae(REWARDS, VALUES, mask("111"), gamma, lam)
    assert got_advantages[0].tolist() == pytest.approx(advantages, abs=1e-12)
    assert got_returns[0].tolist() == pytest.approx(returns, abs=1e-12)


def test_gae_discounts_a_final_reward_with_zero_values():
    """V = 0, reward 1 on the last of 3 tokens, γ = 0.9, λ = 1: A_t = γ^(2-t) = (0.81, 0.9, 1) = R_t."""
    advantages, returns = gae(REWARDS, torch.zeros_like(VALUES), mask("111"), 0.9, 1.0)
    assert advantages[0].tolist() == pytest.approx([0.81, 0.9, 1.0], abs=1e-12)
    assert torch.equal(advantages, returns)


def test_gae_ignores_padding_and_skips_holes():
    """Row 0 is right-padded after 2 tokens; row 1 has a hole (a tool output's tokens) between two sampled tokens.

    Padding and holes may hold anything (99 here): both rows equal GAE over their 2 masked tokens alone. With
    rewards (0, 1), values (½, ¼), γ = 1, λ = ½: A_1 = 1 - ¼ = ¾, A_0 = 0 + ¼ - ½ + ½·¾ = ⅛; R = (⅝, 1).
    Off-mask entries come back 0.
    """
    rewards = t([[0.0, 1.0, 99.0], [0.0, 99.0, 1.0]])
    values = t([[0.5, 0.25, 99.0], [0.5, 99.0, 0.25]])
    advantages, returns = gae(rewards, values, mask("110", "101"), 1.0, 0.5)
    assert_close(advantages, [[0.125, 0.75, 0.0], [0.125, 0.0, 0.75]])
    assert_close(returns, [[0.625, 1.0, 0.0], [0.625, 0.0, 1.0]])


def test_gae_is_a_constant_of_the_update():
    """Advantages and returns carry no gradient back into the values (they are V_old's targets)."""
    values = VALUES.clone().requires_grad_(True)
    advantages, returns = gae(REWARDS, values, mask("111"), 1.0, 0.95)
    assert not advantages.requires_grad and not returns.requires_grad


def test_token_rewards_put_the_outcome_on_the_last_trained_token():
    """Rewards (1, -1); KL 0.1 on every token, coefficient ½: -0.05 per token, the outcome added on the last masked
    token: row 0 (3 tokens) (-0.05, -0.05, 0.95), row 1 (2 tokens, then padding) (-0.05, -1.05, 0); a row with no
    masked token gets nothing."""
    kl = torch.full((3, 3), 0.1, dtype=torch.float64)
    rewards = token_rewards(t(1.0, -1.0, 5.0), mask("111", "110", "000"), kl, 0.5)
    assert_close(rewards, [[-0.05, -0.05, 0.95], [-0.05, -1.05, 0.0], [0.0, 0.0, 0.0]])
    assert token_rewards(t(1.0), mask("101")).tolist() == [[0.0, 0.0, 1.0]]


# ------------------------------------------------------------------------------------------- whitening, EV


def test_masked_whiten_closed_form():
    """Masked values (1, 2, 3): mean 2, unbiased variance (1 + 0 + 1)/2 = 1, so (-1, 0, 1)/√(1 + 1e-8); 0 off-mask."""
    whitened = masked_whiten(t([[1.0, 2.0], [3.0, 50.0]]), mask("11", "10"))
    scale = (1 + 1e-8) ** -0.5
    assert_close(whitened, [[-scale, 0.0], [scale, 0.0]])
    with pytest.raises(ValueError, match="at least 2"):
        masked_whiten(t([[1.0, 2.0]]), mask("10"))


def test_explained_variance_limits():
    """Targets (1, 2, 3): a perfect critic explains 1; V = 0 or V = the mean explains 0; V = (3, 2, 1) leaves
    residuals (-2, 0, 2), variance 8/3 against 2/3: 1 - 4 = -3. Constant targets: NaN (nothing to explain)."""
    targets, m = t([[1.0, 2.0, 3.0]]), mask("111")
    assert explained_variance(targets, targets, m) == pytest.approx(1.0)
    assert explained_variance(torch.zeros_like(targets), targets, m) == pytest.approx(0.0)
    assert explained_variance(torch.full_like(targets, 2.0), targets, m) == pytest.approx(0.0)
    assert explained_variance(t([[3.0, 2.0, 1.0]]), targets, m) == pytest.approx(-3.0)
    assert math.isnan(explained_variance(targets, torch.ones_like(targets), m))


# -------------------------------------------------------------------------------------------- clipped value loss


def test_value_loss_clip_inactive_is_half_the_squared_error():
    """V = V_old: the clipped value is V itself, loss = ½ mean (V - R)² = ½ (¼ + 1)/2 = 0.3125, no clipping.

    Gradient: d/dV_t = (V_t - R_t)/n = (-½/2, 1/2) = (-¼, ½); padding gets none.
    """
    values = t([[0.5, 1.0, 7.0]]).requires_grad_(True)
    loss, metrics = clipped_value_loss(values, t([[0.5, 1.0, 0.0]]), t([[1.0, 0.0, 0.0]]), mask("110"), clip_range=0.2)
    assert loss.item() == pytest.approx(0.3125, abs=1e-12)
    assert metrics == {"value_loss": pytest.approx(0.3125), "value_clip_fraction": 0.0}
    loss.backward()
    assert_close(values.grad, [[-0.25, 0.5, 0.0]])


def test_value_loss_clip_active_stops_the_gradient():
    """V_old = 0, R = 1, ε = 0.2.

    Token 0, V = ½ (moved toward R past the clip): unclipped (½ - 1)² = ¼, clipped (0.2 - 1)² = 0.64; the max is the
    clipped branch, constant in V: loss term 0.32, gradient 0, counted as clipped.
    Token 1, V = -½ (moved away from R): unclipped (-1.5)² = 2.25 beats clipped (-1.2)² = 1.44: term 1.125 and
    gradient (V - R) = -1.5 (the clip never protects a move away from the target). Mean over 2 tokens: 0.7225,
    gradient (0, -0.75); clip fraction ½. With num_tokens = 4 the loss halves (0.36125), the metric does not.
    """
    values = t([[0.5, -0.5]]).requires_grad_(True)
    old, returns = torch.zeros(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    loss, metrics = clipped_value_loss(values, old, returns, mask("11"), clip_range=0.2)
    assert loss.item() == pytest.approx(0.7225, abs=1e-12)
    assert metrics["value_clip_fraction"] == 0.5
    loss.backward()
    assert_close(values.grad, [[0.0, -0.75]])
    halved, same = clipped_value_loss(values, old, returns, mask("11"), clip_range=0.2, num_tokens=4)
    assert halved.item() == pytest.approx(0.36125, abs=1e-12) and same["value_loss"] == pytest.approx(0.7225)


# ------------------------------------------------------------------------------------------ per-token PPO-clip


def test_ppo_loss_with_per_token_advantages_closed_form():
    """Token ratios (1, e^0.5, e^-0.5) with advantages (1, 1, -1), ε = 0.2: token 0 unclipped, -1·1 = -1; token 1
    r = 1.6487 > 1.2 with A > 0: clipped, -1.2; token 2 r = 0.6065 < 0.8 with A < 0: clipped, -(0.8·-1) = 0.8.
    Token mean: (-1 - 1.2 + 0.8)/3 = -0.466667; clip fraction ⅔ (one high, one low). Gradient flows through token 0
    only: d/dlogπ_0 = -A_0·r_0/3 = -⅓."""
    logprobs = t([[0.0, 0.5, -0.5]]).requires_grad_(True)
    loss, metrics = ppo_loss(logprobs, torch.zeros(1, 3, dtype=torch.float64), t([[1.0, 1.0, -1.0]]), mask("111"))
    assert loss.item() == pytest.approx(-1.4 / 3, abs=1e-12)
    assert metrics["clip_fraction"] == pytest.approx(2 / 3)
    loss.backward()
    assert_close(logprobs.grad, [[-1 / 3, 0.0, 0.0]])


def test_ppo_loss_with_constant_per_token_advantages_is_dapo():
    """Broadcasting each sequence's advantage over its tokens gives DAPO's loss with the same clip and normaliser."""
    g = torch.Generator().manual_seed(0)
    logprobs, old = torch.randn(3, 5, generator=g, dtype=torch.float64) * 0.3, torch.zeros(3, 5, dtype=torch.float64)
    advantages_B, m = torch.randn(3, generator=g, dtype=torch.float64), mask("11111", "11100", "10000")
    per_token, _ = ppo_loss(logprobs, old, advantages_B[:, None].expand(3, 5), m, eps_high=0.28, num_tokens=20)
    per_sequence, _ = dapo_loss(logprobs, old, advantages_B, m, num_tokens=20)
    assert float(per_token) == pytest.approx(float(per_sequence), abs=1e-12)


def test_zero_advantages_give_zero_policy_gradient():
    logprobs, zeros = t([[0.1, -0.2]]).requires_grad_(True), torch.zeros(1, 2, dtype=torch.float64)
    loss, _ = ppo_loss(logprobs, zeros, zeros, mask("11"))
    loss.backward()
    assert logprobs.grad.abs().sum() == 0


# --------------------------------------------------------------------------------------------------- TRL 0.19


@pytest.fixture(scope="module")
def trl019() -> zipfile.ZipFile:
    """TRL 0.19's wheel, checked against its pinned hash: `make setup` puts it in .cache/wheels/ (no test touches the
    network, so a missing wheel is a failure that says how to get it)."""
    if not TRL_WHEEL.is_file():
        pytest.fail(f"the TRL 0.19 oracle {TRL_WHEEL} is missing: run `make setup`, which downloads {TRL_WHEEL.name}")
    digest = hashlib.sha256(TRL_WHEEL.read_bytes()).hexdigest()
    assert digest == TRL_SHA256, f"{TRL_WHEEL} is not TRL 0.19.0's wheel (sha256 {digest})"
    return zipfile.ZipFile(TRL_WHEEL)


@pytest.fixture(scope="module")
def trl_core(trl019) -> types.ModuleType:
    """The wheel's `trl/core.py` (masked_mean, masked_var, masked_whiten), loaded under a name of its own."""
    module = types.ModuleType("trl019_core")
    exec(compile(trl019.read("trl/core.py").decode(), "trl-0.19.0/trl/core.py", "exec"), module.__dict__)
    return module


@pytest.fixture(scope="module")
def trl_train_body(trl019) -> list[ast.stmt]:
    """Every statement list inside `PPOTrainer.train`, flattened into one list of the lists."""
    tree = ast.parse(trl019.read("trl/trainer/ppo_trainer.py").decode())
    trainer = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PPOTrainer")
    train = next(n for n in trainer.body if isinstance(n, ast.FunctionDef) and n.name == "train")
    return [body for node in ast.walk(train) for body in _statement_lists(node)]


def _statement_lists(node: ast.AST) -> list[list[ast.stmt]]:
    return [getattr(node, f) for f in ("body", "orelse") if isinstance(getattr(node, f, None), list)]


def _assigns(statement: ast.stmt, name: str) -> bool:
    return isinstance(statement, ast.Assign) and any(
        isinstance(x, ast.Name) and x.id == name for x in statement.targets
    )


def run_trl_lines(bodies, first: str, last: str, namespace: dict) -> dict:
    """Execute TRL's statements from the assignment to `first` through the last assignment to `last` (one block)."""
    body = next(b for b in bodies if any(_assigns(s, first) for s in b))
    start = next(i for i, s in enumerate(body) if _assigns(s, first))
    end = max(i for i, s in enumerate(body) if _assigns(s, last))
    code = compile(ast.Module(body=body[start : end + 1], type_ignores=[]), "trl-0.19.0/ppo_trainer.py", "exec")
    exec(code, namespace)
    return namespace


def _random_batch(seed: int, B: int = 6, T: int = 9):
    """Right-padded (B, T) rewards, values and mask, zero in the padding as TRL keeps them; lengths 1 to T."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    m = torch.arange(T)[None, :] < lengths[:, None]
    rewards = torch.where(m, torch.randn(B, T, generator=g, dtype=torch.float64) * 0.1, 0.0)
    rewards[torch.arange(B), lengths - 1] += torch.randn(B, generator=g, dtype=torch.float64)
    values = torch.where(m, torch.randn(B, T, generator=g, dtype=torch.float64), 0.0)
    return rewards, values, m


@pytest.mark.parametrize(("gamma", "lam"), [(1.0, 0.95), (0.99, 0.9), (1.0, 1.0), (1.0, 0.0), (0.0, 0.5)])
@pytest.mark.parametrize("seed", [0, 1])
def test_gae_and_whitening_agree_with_trl(trl_core, trl_train_body, gamma, lam, seed):
    """TRL's loop (`lastgaelam = 0` ... `advantages = torch.masked_fill(advantages, padding_mask, 0)`) on the same
    right-padded rewards and values: whitened advantages and returns agree to 1e-6."""
    rewards, values, m = _random_batch(seed)
    namespace = {"torch": torch, "masked_whiten": trl_core.masked_whiten, "rewards": rewards, "values": values,
                 "responses": torch.zeros(m.shape, dtype=torch.long), "padding_mask": ~m,
                 "args": types.SimpleNamespace(gamma=gamma, lam=lam)}  # fmt: skip
    trl = run_trl_lines(trl_train_body, "lastgaelam", "advantages", namespace)
    advantages, returns = gae(rewards, values, m, gamma, lam)
    assert torch.allclose(masked_whiten(advantages, m), trl["advantages"], atol=TOL, rtol=0)
    assert torch.allclose(returns, torch.where(m, trl["returns"], 0.0), atol=TOL, rtol=0)
    assert torch.allclose(masked_whiten(advantages, m), trl_core.masked_whiten(advantages, m) * m, atol=TOL, rtol=0)


@pytest.mark.parametrize("clip_range", [0.2, 0.05, 10.0])
def test_value_loss_agrees_with_trl(trl_core, trl_train_body, clip_range):
    """TRL's `vpredclipped = ...` through `vf_clipfrac = ...` on the same values, old values, returns and mask: the
    loss, its gradient and the clip fraction agree to 1e-6 (ε = 0.05 clips many tokens, 10 none)."""
    _, old, m = _random_batch(3)
    g = torch.Generator().manual_seed(4)
    returns = torch.where(m, torch.randn(m.shape, generator=g, dtype=torch.float64), 0.0)
    start = torch.where(m, old + torch.randn(m.shape, generator=g, dtype=torch.float64) * 0.2, 0.0)
    trl_values, ours_values = start.clone().requires_grad_(True), start.clone().requires_grad_(True)
    namespace = {"torch": torch, "masked_mean": trl_core.masked_mean, "vpred": trl_values, "mb_values": old,
                 "mb_return": returns, "padding_mask_p1": ~m, "micro_batch_inds": torch.arange(m.shape[0]),
                 "args": types.SimpleNamespace(cliprange_value=clip_range)}  # fmt: skip
    trl = run_trl_lines(trl_train_body, "vpredclipped", "vf_clipfrac", namespace)
    loss, metrics = clipped_value_loss(ours_values, old, returns, m, clip_range=clip_range)
    assert loss.item() == pytest.approx(trl["vf_loss"].item(), abs=TOL)
    assert metrics["value_clip_fraction"] == pytest.approx(trl["vf_clipfrac"].item(), abs=TOL)
    trl["vf_loss"].backward()
    loss.backward()
    assert torch.allclose(ours_values.grad, trl_values.grad, atol=TOL, rtol=0)
    if clip_range == 10.0:
        assert metrics["value_clip_fraction"] == 0.0
    if clip_range == 0.05:
        assert metrics["value_clip_fraction"] > 0.2


def test_ppo_policy_loss_agrees_with_trl(trl_core, trl_train_body):
    """TRL's `logprobs_diff = ...` through `pg_loss = ...` (per-token advantages, token mean over the micro-batch,
    padding log-probs set to TRL's INVALID_LOGPROB): the loss and its gradient agree to 1e-6."""
    _, advantages, m = _random_batch(5)
    g = torch.Generator().manual_seed(6)
    old = torch.where(m, -torch.rand(m.shape, generator=g, dtype=torch.float64) * 3, 1.0)
    start = torch.where(m, old + torch.randn(m.shape, generator=g, dtype=torch.float64) * 0.3, 1.0)
    trl_logprobs, ours_logprobs = start.clone().requires_grad_(True), start.clone().requires_grad_(True)
    namespace = {"torch": torch, "masked_mean": trl_core.masked_mean, "new_logprobs": trl_logprobs,
                 "mb_logprobs": old, "mb_advantage": advantages, "padding_mask": ~m,
                 "micro_batch_inds": torch.arange(m.shape[0]), "args": types.SimpleNamespace(cliprange=0.2)}  # fmt: skip
    trl = run_trl_lines(trl_train_body, "logprobs_diff", "pg_loss", namespace)
    loss, _ = ppo_loss(ours_logprobs, old, advantages, m)
    assert loss.item() == pytest.approx(trl["pg_loss"].item(), abs=TOL)
    trl["pg_loss"].backward()
    loss.backward()
    assert torch.allclose(ours_logprobs.grad, trl_logprobs.grad, atol=TOL, rtol=0)


def test_ppo_loss_wants_one_advantage_per_token():
    logprobs = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="one advantage per token"):
        ppo_loss(logprobs, logprobs, torch.zeros(2, dtype=torch.float64), mask("111", "110"))
