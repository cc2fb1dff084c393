"""Suites evaluated as episodes in an environment: the arithmetic problems with the calculator at hand.

Every item is one greedy episode in `ToolEnv` (the calculator, at most `MAX_TURNS` turns, each reply capped at the
suite's `max_new_tokens`). `accuracy` is the task verifier's reward on the final answer, exactly what the agent is
trained on; `called_tool` is whether the episode called the calculator; `turns` and `tool_errors` are means per
episode. The per-item rows keep the whole final reply and the failure, so a wrong answer can be read.
"""

from __future__ import annotations

from collections.abc import Sequence

from posttrain.envs.episodes import run_groups
from posttrain.envs.tools import ToolBudget, ToolEnv, calculator_tool
from posttrain.eval.stats import Rate
from posttrain.rewards.shaped import ShapedReward, Shaping
from posttrain.rollout import Sampler, SamplingParams
from posttrain.types import RLTask

MAX_TURNS = 3
BINARY = ("accuracy", "called_tool")
MEANS = ("turns", "tool_errors")


def calculator_episodes(sampler: Sampler, tokenizer, tasks: Sequence[RLTask], max_new_tokens: int) -> dict:
    """Per-item rows and rates of one greedy calculator episode per task (see the module docstring)."""
    env = ToolEnv([calculator_tool()], ShapedReward(Shaping()), tokenizer, ToolBudget(MAX_TURNS, 4 * max_new_tokens))
    try:
        groups = run_groups(sampler, tokenizer, env, tasks, 1, SamplingParams(max_new_tokens, temperature=0.0))
    finally:
        env.close()
    items = []
    for i, (task, group) in enumerate(zip(tasks, groups, strict=True)):
        (rollout,), (score,) = group.rollouts, group.scores
        m = score.metrics
        items.append({"id": i, "prompt": task.prompt[-1].content, "reply": rollout.text, "answer": task.answer,
                      "accuracy": m["correct"] >= 1.0, "called_tool": m["called_tool"] > 0, "turns": m["turns"],
                      "tool_errors": m["tool_errors"], "failure": score.failure})  # fmt: skip
    metrics = {k: Rate(sum(row[k] for row in items), len(items)).as_dict() for k in BINARY}
    metrics |= {k: {"value": sum(row[k] for row in items) / max(len(items), 1)} for k in MEANS}
    return {"metrics": metrics, "items": items}
