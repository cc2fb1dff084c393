"""The RLVR stage on the tiny model: metrics, dynamic sampling, micro-batch invariance, SIGKILL-then-resume."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from posttrain.data import DataError, load_records
from posttrain.envs.episodes import run_groups
from posttrain.envs.verifier import VerifierEnv
from posttrain.rewards.route import MissingPrerequisite
from posttrain.rollout.engine import RolloutEngine
from posttrain.rounds import sample_groups
from posttrain.stages.rlvr import (
    PromptBatch,
    RLVRConfig,
    collect,
    compute_advantages,
    reward_model,
    run,
    sampling,
)
from posttrain.tasks.arithmetic import arithmetic_tasks
from posttrain.tasks.jsonl import write_tasks
from posttrain.train.policy_update import policy_update
from posttrain.train.preamble import Run
from posttrain.train.setup import build_optimization, build_policy

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("rl")
    return write_tasks(root / "train.jsonl", arithmetic_tasks(24, "train")), write_tasks(
        root / "heldout.jsonl", arithmetic_tasks(4, "heldout")
    )


def _config(tasks, out: Path, **overrides) -> RLVRConfig:
    # A random model never answers; with a common stop string its completions vary in length, and the soft
    # overlong penalty over the whole length turns that into rewards that differ within groups.
    base = {"model": "tiny-random-llama", "tasks": str(tasks[0]), "eval_tasks": str(tasks[1]), "output": str(out),
            "max_steps": 3, "prompts_per_step": 4, "samples_per_prompt": 4, "max_new_tokens": 12, "overlong_buffer": 12,
            "stop": ("e",), "lr": 1e-3, "progress": False, "save_every": 0}  # fmt: skip
    return RLVRConfig(**(base | overrides))


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_rlvr_run_logs_every_metric_evaluates_and_plots(tasks, tmp_path):
    final = run(_config(tasks, tmp_path / "run", eval_every=2, kl_beta=0.05))
    rows = _rows(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3]
    for key in ("reward_mean", "reward_std", "response_length", "entropy", "clip_fraction", "kl", "kl_sampler",
                "generation_s", "scoring_s", "training_s", "generation_fraction", "tokens_per_s",
                "generation_tokens_per_s", "failure/no_answer", "dropped_fraction"):  # fmt: skip
        assert all(key in r for r in rows), key
    assert "eval/pass@1" in rows[1] and "eval/pass@4" in rows[2] and "eval/greedy_accuracy" in rows[2]
    assert "eval/pass@1" not in rows[0]
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    assert (final / "config.json").is_file()
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # the first step's policy is the reference
    assert rows[0]["ratio_mean"] == pytest.approx(1.0, abs=1e-2)  # the sampler's bf16 log-probs vs fp32 training


def test_dynamic_sampling_drops_equal_reward_groups_and_refills(tasks, tmp_path):
    config = _config(tasks, tmp_path, dynamic_sampling=True, max_refill_rounds=3)
    model, tokenizer = build_policy(config.model, torch.device("cpu"), 0)
    sampler = RolloutEngine(model, tokenizer)
    train = list(load_records(config.tasks, "rl").records)
    env = VerifierEnv(reward_model(config))
    draw = functools.partial(run_groups, sampler, tokenizer, env)
    kept, first, stats = collect(draw, train, PromptBatch((0, 1, 2, 3)), config, step=0)
    env.close()
    assert kept and all(len(set(g.rewards)) > 1 for g in kept)  # only informative groups are trained on
    first_dropped = sum(len(set(g.rewards)) == 1 for g in first) / len(first)
    assert stats["dropped_fraction"] == pytest.approx(first_dropped)
    assert stats["sampled_groups"] >= len(first)
    assert len(kept) <= config.prompts_per_step


@pytest.mark.parametrize("loss", ["grpo", "dr_grpo", "dapo", "gspo"])
def test_update_gradient_does_not_depend_on_the_micro_batch_split(tasks, tmp_path, loss):
    config = _config(tasks, tmp_path, loss=loss, samples_per_prompt=4, row_tokens=64)
    model, tokenizer = build_policy(config.model, torch.device("cpu"), 0)
    model.double()
    sampler = RolloutEngine(model, tokenizer, dtype=torch.float64)
    train = list(load_records(config.tasks, "rl").records)[:2]
    rewards = reward_model(config)
    groups = sample_groups(sampler, rewards.score, train, config.samples_per_prompt, sampling(config, 0))
    rewards.close()
    advantages = compute_advantages(config, torch.tensor([g.rewards for g in groups], dtype=torch.float64)).flatten()
    advantages = advantages + torch.linspace(-1, 1, len(advantages), dtype=torch.float64)  # never all zero

    def gradient(rows_per_batch: int) -> torch.Tensor:
        snapshot = {k: v.clone() for k, v in model.state_dict().items()}
        optimizer, scheduler = build_optimization(model, 0.0, 0.0, 0.0, 1, 1.0)  # lr 0: the step changes nothing
        captured = []
        hook = optimizer.register_step_pre_hook(
            lambda opt, *_: captured.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        )
        split = dataclasses.replace(config, rows_per_batch=rows_per_batch, grad_clip=0.0)
        rollouts = [r for g in groups for r in g.rollouts]
        run_ = Run(split, "rlvr", tmp_path, torch.device("cpu"), "fp32", {})
        policy_update(run_, model, None, optimizer, scheduler, rollouts, advantages, step=0)
        hook.remove()
        model.load_state_dict(snapshot)
        return captured[0]

    one_batch, many = gradient(rows_per_batch=64), gradient(rows_per_batch=1)
    assert one_batch.abs().max() > 0
    assert torch.allclose(one_batch, many, rtol=1e-9, atol=1e-12)


def _cli(tasks, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "posttrain", "rlvr", "--model", "tiny-random-llama", "--tasks", str(tasks[0]),
            "--output", str(out), "--steps", "10", "--prompts-per-step", "4", "--samples-per-prompt", "4",
            "--max-new-tokens", "12", "--overlong-buffer", "12", "--lr", "1e-3", "--save-every", "4",
            "progress=false", "precision=fp32", "stop=[e]", *extra]  # fmt: skip


def test_sigkill_then_resume_reproduces_the_uninterrupted_run(tasks, tmp_path, posttrain_cli):
    def summary(run_dir):
        return [(r["step"], r["reward_mean"], r["loss"], r["response_length"], r["grad_norm"]) for r in _rows(run_dir)]

    reference = tmp_path / "reference"
    # the reference runs in this process, the killed and resumed runs in their own: all three must agree
    assert posttrain_cli(*_cli(tasks, reference)[3:]).returncode == 0
    expected = summary(reference)
    assert len(expected) == 10 and len({r[1] for r in expected}) > 1

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(tasks, killed), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = killed / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 5:  # past the step-4 checkpoint
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run finished before it could be killed"
    assert 5 <= len(metrics.read_text().splitlines()) < 10

    subprocess.run(_cli(tasks, killed, "resume=true"), check=True, capture_output=True, cwd=REPO, timeout=300)
    assert summary(killed) == expected  # exact: same rewards and losses, no step replayed or skipped


def test_prompt_lengths_and_verifier_prerequisites_are_checked_before_training(tasks, tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"train\.jsonl:1: field 'prompt': prompt is \d+ tokens"):
        run(_config(tasks, tmp_path / "long", max_prompt_length=4))
    assert not (tmp_path / "long" / "metrics.jsonl").exists()
    code = tmp_path / "code.jsonl"
    row = {"prompt": "Write f() returning 1.", "verifier": "code", "tests": "assert f() == 1", "entry_point": "f"}
    code.write_text("".join(json.dumps(row) + "\n" for _ in range(4)))
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap here
    with pytest.raises(MissingPrerequisite, match="verifier 'code' needs bubblewrap"):
        run(_config((code, tasks[1]), tmp_path / "code"))
    assert not (tmp_path / "code").exists()  # refused before the run directory or the model
