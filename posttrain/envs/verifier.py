"""The single-turn environment: one assistant turn, scored by the task's verifier (and the configured shaping).

This is RLVR as it always was, expressed as an environment: `max_turns` is 1, so the driver samples every
completion in one pass exactly as before and the whole batch is scored in one call.
"""

from __future__ import annotations

from collections.abc import Sequence

from posttrain.envs import Episode, Step
from posttrain.rewards.shaped import ShapedReward
from posttrain.rollout import Turn
from posttrain.types import RLTask, Rollout


class VerifierEnv:
    """One turn; the reward is the task verifier's (plus shaping), its metrics kept."""

    max_turns = 1

    def __init__(self, reward: ShapedReward):
        self.reward = reward

    def start(self, task: RLTask) -> Episode:
        """The task's prompt, nothing added."""
        return Episode(task, list(task.prompt))

    def step(self, episodes: Sequence[Episode], turns: Sequence[Turn]) -> list[Step]:
        """Score every turn in one call; every episode is done."""
        rollouts = [Rollout((), t.token_ids, t.logprobs, t.text, t.finish_reason) for t in turns]
        scores = self.reward.score([e.task for e in episodes], rollouts)
        return [Step((), s.reward, True, s.metrics, s.failure) for s in scores]

    def close(self) -> None:
        """Release the verifiers' workers."""
        self.reward.close()
