"""Held-out pass rates of a sampler on verifiable tasks: pass@1 and pass@k from k samples, and greedy accuracy.

A sample passes when its score's `correct` metric is 1 (the task verifier's reward, before any shaping), so the
rates never count more leniently than the reward that trained the policy.
"""

from __future__ import annotations

from collections.abc import Sequence

from posttrain.rollout import SamplingParams
from posttrain.rounds import Draw
from posttrain.types import RLTask


def pass_rates(
    draw: Draw, tasks: Sequence[RLTask], k: int, sampled: SamplingParams, greedy: SamplingParams
) -> dict[str, float]:
    """`eval/pass@1` and `eval/pass@k` over k samples per task (`sampled`), `eval/greedy_accuracy` (`greedy`);
    `draw` samples and scores (a sampler and verifier, or an environment's episodes)."""
    timings = {"generation_s": 0.0, "scoring_s": 0.0}
    groups = draw(tasks, k, sampled, timings)
    correct = [[s.metrics["correct"] for s in g.scores] for g in groups]
    greedy_groups = draw(tasks, 1, greedy, timings)
    return {
        "eval/pass@1": sum(map(sum, correct)) / (k * len(correct)),
        f"eval/pass@{k}": sum(any(c) for c in correct) / len(correct),
        "eval/greedy_accuracy": sum(g.scores[0].metrics["correct"] for g in greedy_groups) / len(greedy_groups),
        "eval/n": len(tasks),
        "eval/time_s": sum(timings.values()),
    }
