"""Agent RL end to end on the tiny model: SFT on calculator conversations teaches it the call format, then GRPO in
the tool environment trains on multi-turn episodes; SIGKILL mid-run and resume give the uninterrupted run's
metrics exactly. Also the `arithmetic_tools` evaluation suite on the same model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from posttrain.eval.run import evaluate_model
from posttrain.stages.sft import SFTConfig
from posttrain.stages.sft import run as sft
from posttrain.tasks.arithmetic import arithmetic_tasks
from posttrain.tasks.jsonl import write_tasks
from posttrain.tasks.tool_traces import calculator_traces

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> tuple[Path, Path]:
    """(a tiny model that has seen 24 calculator conversations, a file of training tasks)."""
    root = tmp_path_factory.mktemp("agent")
    traces, skipped = calculator_traces(arithmetic_tasks(24, "train"))
    assert skipped == 0
    data = root / "traces.jsonl"
    data.write_text("".join(json.dumps({"messages": [m.as_dict() for m in t.messages]}) + "\n" for t in traces))
    config = SFTConfig(model="tiny-random-llama", data=str(data), output=str(root / "sft"), max_length=512,
                       rows_per_batch=4, max_steps=40, lr=3e-3, eval_every=0, save_every=0, precision="fp32",
                       progress=False)  # fmt: skip
    return sft(config), write_tasks(root / "train.jsonl", arithmetic_tasks(16, "train", seed=3))


def _cli(model: Path, tasks: Path, out: Path, *extra: str) -> list[str]:
    # the soft overlong penalty over the whole reply makes final answers of different lengths differ in reward
    return [sys.executable, "-m", "posttrain", "rlvr", "--model", str(model), "--tasks", str(tasks),
            "--output", str(out), "--steps", "4", "--prompts-per-step", "4", "--samples-per-prompt", "4",
            "--max-new-tokens", "40", "--overlong-buffer", "40", "--lr", "1e-3", "--save-every", "2", "env=tools",
            "max_turns=3", "max_episode_tokens=200", "progress=false", "precision=fp32", *extra]  # fmt: skip


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_multi_turn_grpo_resumes_after_sigkill_with_identical_metrics(agent, tmp_path):
    model, tasks = agent

    def summary(run_dir):
        keys = ("step", "reward_mean", "loss", "tool_calls", "turns", "tool_errors", "response_length", "grad_norm")
        return [tuple(r.get(k) for k in keys) for r in _rows(run_dir)]

    reference = tmp_path / "reference"
    subprocess.run(_cli(model, tasks, reference), check=True, capture_output=True, cwd=REPO, timeout=600)
    expected = summary(reference)
    assert len(expected) == 4
    assert max(r[4] for r in expected) > 1.0 and max(r[3] for r in expected) > 0  # episodes did call tools
    assert all(r[2] is not None for r in expected)  # every step trained

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(model, tasks, killed), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = killed / "metrics.jsonl"
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:  # past the step-2 checkpoint
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run finished before it could be killed"
    assert 3 <= len(metrics.read_text().splitlines()) < 4
    subprocess.run(_cli(model, tasks, killed, "resume=true"), check=True, capture_output=True, cwd=REPO, timeout=600)
    assert summary(killed) == expected


def test_arithmetic_tools_suite_runs_calculator_episodes(agent, tmp_path):
    model, _ = agent
    result = evaluate_model(str(model), "arithmetic_tools,arithmetic_rl", limit=6, progress=False)
    tools = result["suites"]["arithmetic_tools"]
    assert set(tools["metrics"]) == {"accuracy", "called_tool", "turns", "tool_errors"}
    assert len(tools["items"]) == 6 and tools["metrics"]["turns"]["value"] >= 1.0
    assert [r["prompt"] for r in tools["items"]] == [r["prompt"] for r in result["suites"]["arithmetic_rl"]["items"]]
