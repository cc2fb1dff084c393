"""The RL reward: each task's own verifier, plus an optional format reward and the DAPO soft overlong penalty.

`ShapedReward.score` scores a whole batch of rollouts in one call (each verifier's process pool or sandboxes used
once). Every part is kept in the score's metrics (`correct`, `format`, `overlong_penalty`, and the verifier's own,
such as `failure/<reason>` or the spec verifier's `citation_accuracy`), so the logs show what the reward was made of
and how often a verifier could not check a completion.
"""

from __future__ import annotations

from dataclasses import dataclass

from posttrain.rewards.math import FormatVerifier, soft_overlong_penalty
from posttrain.rewards.route import ByTaskVerifier
from posttrain.types import RLTask, Rollout, Score


@dataclass(frozen=True)
class Shaping:
    """What is added to the verifier's reward."""

    format_weight: float = 0.0  # weight of the format reward (one final \boxed{} answer)
    overlong_buffer: int = 0  # DAPO soft overlong penalty over the last N tokens of max_new_tokens; 0: off
    max_new_tokens: int = 0  # the completion length cap the penalty counts back from


class ShapedReward:
    """Task verifier + optional format reward + optional soft overlong penalty; records failures."""

    def __init__(self, shaping: Shaping):
        self.shaping, self.verifier, self.format = shaping, ByTaskVerifier(), FormatVerifier()

    def score(self, tasks: list[RLTask], rollouts: list[Rollout]) -> list[Score]:
        """One score per rollout: the task verifier's reward plus the weighted extras; metrics keep each part."""
        base = self.verifier.score_batch(tasks, [r.text for r in rollouts])
        return [self._shape(task, rollout, score) for task, rollout, score in zip(tasks, rollouts, base, strict=True)]

    def _shape(self, task: RLTask, rollout: Rollout, score: Score) -> Score:
        s = self.shaping
        reward, metrics = score.reward, {"correct": float(score.reward >= 1.0)}
        metrics.update({k: v for k, v in score.metrics.items() if k != "correct"})  # the verifier's own metrics
        if s.format_weight:
            fmt = self.format.score(task, rollout.text).reward
            reward, metrics["format"] = reward + s.format_weight * fmt, fmt
        if s.overlong_buffer:
            penalty = soft_overlong_penalty(len(rollout.token_ids), s.max_new_tokens, s.overlong_buffer)
            reward, metrics["overlong_penalty"] = reward + penalty, penalty
        return Score(reward, metrics, score.failure)

    def close(self) -> None:
        """Release verifier workers."""
        self.verifier.close()
