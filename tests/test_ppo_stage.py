"""`loss=ppo` in the RLVR stage on the tiny model: policy and critic trained together, the critic learns a fixed reward
signal, the critic is checkpointed so a resumed run repeats the uninterrupted one, and `final_critic/` loads back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from posttrain.data import load_records
from posttrain.models import load_policy
from posttrain.rollout.engine import RolloutEngine
from posttrain.rounds import sample_groups
from posttrain.stages.rlvr import RLVRConfig, reward_model, run, sampling
from posttrain.tasks.arithmetic import arithmetic_tasks
from posttrain.tasks.jsonl import write_tasks
from posttrain.train.critic import load_critic
from posttrain.train.ppo_update import ppo_learner
from posttrain.train.preamble import Run
from posttrain.train.setup import build_policy

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ppo")
    return write_tasks(root / "train.jsonl", arithmetic_tasks(24, "train")), write_tasks(
        root / "heldout.jsonl", arithmetic_tasks(4, "heldout")
    )


def _config(tasks, out: Path, **overrides) -> RLVRConfig:
    # As in test_rlvr_stage: a random model never answers, and the soft overlong penalty over the whole length turns
    # its varying completion lengths (a common stop string) into rewards that differ.
    base = {"model": "tiny-random-llama", "tasks": str(tasks[0]), "eval_tasks": "", "output": str(out), "loss": "ppo",
            "max_steps": 3, "prompts_per_step": 4, "samples_per_prompt": 4, "max_new_tokens": 12, "overlong_buffer": 12,
            "stop": ("e",), "lr": 1e-3, "critic_lr": 1e-3, "precision": "fp32", "progress": False, "save_every": 0}  # fmt: skip
    return RLVRConfig(**(base | overrides))


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_ppo_run_trains_policy_and_critic_and_saves_the_critic(tasks, tmp_path):
    final = run(_config(tasks, tmp_path / "run", eval_tasks=str(tasks[1]), kl_beta=0.05))
    rows = _rows(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3]
    for key in ("value_loss", "value_clip_fraction", "explained_variance", "value_mean", "return_mean",
                "advantage_mean", "critic_grad_norm", "grad_norm", "kl", "loss", "clip_fraction", "entropy",
                "reward_mean", "eval/pass@1"):  # fmt: skip
        assert all(key in r for r in rows[:2] if not key.startswith("eval")), key
        assert key in rows[-1], key
    # The zero-initialised head predicts 0 everywhere before the first update: nothing explained yet.
    assert rows[0]["value_mean"] == 0.0 and rows[0]["explained_variance"] == pytest.approx(0.0, abs=1e-12)
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-3)  # the sampler's log-probs are the reference's at step 1
    assert rows[1]["value_mean"] != 0.0  # the critic moved
    assert all(torch.isfinite(torch.tensor(r["value_loss"])) for r in rows)

    start, _ = load_policy("tiny-random-llama")
    trained, _ = load_policy(final)
    assert any(not torch.equal(a, b) for a, b in zip(start.parameters(), trained.parameters(), strict=True))
    critic_dir = tmp_path / "run" / "final_critic"
    assert load_file(critic_dir / "value_head.safetensors")["weight"].abs().sum() > 0
    critic, _ = load_critic(str(critic_dir), CPU, 0)  # the saved head comes back with its backbone
    assert torch.equal(critic.head.weight.detach(), load_file(critic_dir / "value_head.safetensors")["weight"])


def test_critic_learns_a_fixed_reward_signal(tasks, tmp_path):
    """The same rollouts and rewards, updated on again and again with the policy frozen (lr 0): with γ = λ = 1 the
    returns are the rewards-to-go, fixed targets, so the value loss must fall and the mean value reach the mean return.

    The tiny random model's hidden states say little about a completion's eventual length (what the reward here
    depends on), so the critic learns mostly the mean: its explained variance stays small, and is not asserted
    beyond being exactly 0 for the zero-initialised head."""
    config = _config(tasks, tmp_path, lr=0.0, critic_lr=3e-3, lam=1.0, max_steps=12)
    model, tokenizer = build_policy(config.model, CPU, 0)
    learner = ppo_learner(Run(config, "rlvr", tmp_path, CPU, "fp32", {}), model, tokenizer, None)
    rewards = reward_model(config)
    train = list(load_records(config.tasks, "rl").records)[:4]
    groups = sample_groups(RolloutEngine(model, tokenizer), rewards.score, train, 4, sampling(config, 0))
    rewards.close()
    rollouts, rewards_P_G = [r for g in groups for r in g.rollouts], torch.tensor([g.rewards for g in groups])
    assert rewards_P_G.std() > 0
    rows = [learner.update(rollouts, rewards_P_G, step) for step in range(12)]
    losses = [r["value_loss"] for r in rows]
    assert losses[-1] < 0.25 * losses[0], losses
    assert rows[0]["explained_variance"] == pytest.approx(0.0, abs=1e-12)
    assert rows[-1]["return_mean"] == pytest.approx(rows[0]["return_mean"])  # the targets did not move
    gaps = [abs(r["value_mean"] - r["return_mean"]) for r in rows]  # value_mean: V_old as the update starts
    assert gaps[0] > 0.3 and gaps[-1] < 0.25 * gaps[0], gaps


def test_resume_restores_the_critic_and_reproduces_the_run(tasks, tmp_path):
    """An uninterrupted 6-step run against one stopped after its step-3 checkpoint (its directory as a kill between
    steps 3 and 4 leaves it) and resumed: every row, value metrics included, and both final models are identical."""
    config = _config(tasks, tmp_path / "full", max_steps=6, save_every=3, kl_beta=0.05)
    run(config)
    interrupted = tmp_path / "interrupted"
    shutil.copytree(tmp_path / "full", interrupted)
    for done in ("final", "final_critic", "eval.json", "curves.png"):
        path = interrupted / done
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    metrics = interrupted / "metrics.jsonl"
    metrics.write_text("".join(metrics.read_text().splitlines(keepends=True)[:3]))
    assert [p.name for p in (interrupted / "checkpoints").iterdir()] == ["step_3"]
    run(_config(tasks, interrupted, max_steps=6, save_every=3, kl_beta=0.05, resume=True))

    keys = ("step", "reward_mean", "loss", "grad_norm", "value_loss", "value_clip_fraction", "explained_variance",
            "value_mean", "return_mean", "advantage_mean", "critic_grad_norm", "kl")  # fmt: skip
    expected = [tuple(r[k] for k in keys) for r in _rows(tmp_path / "full")]
    assert [tuple(r[k] for k in keys) for r in _rows(interrupted)] == expected
    assert len({row[4] for row in expected}) == 6  # the value loss changes every step: the comparison has teeth
    for part in ("final", "final_critic"):
        for name in ("model.safetensors",) + (("value_head.safetensors",) if part == "final_critic" else ()):
            a, b = load_file(tmp_path / "full" / part / name), load_file(interrupted / part / name)
            assert all(torch.equal(a[k], b[k]) for k in a), (part, name)
