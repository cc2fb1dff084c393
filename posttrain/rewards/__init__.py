"""Rewards: the `Verifier` protocol (one completion, checked) and `Judge`s that score groups of completions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from posttrain.types import RLTask, Score


class Verifier(Protocol):
    """Deterministic, offline check of one completion against a task."""

    def score(self, task: RLTask, completion: str) -> Score:
        """The reward, with metrics and the failure reason when the completion could not be checked."""
        ...


def score_batch(verifier: Verifier, tasks: Sequence[RLTask], completions: Sequence[str]) -> list[Score]:
    """One score per (task, completion): the verifier's own `score_batch` (a pool, sandboxes) when it has one."""
    if hasattr(verifier, "score_batch"):
        return verifier.score_batch(tasks, completions)
    return [verifier.score(t, c) for t, c in zip(tasks, completions, strict=True)]


class Judge(Protocol):
    """Scores the completions sampled for one task (a group), as preference rounds and GRPO need."""

    def score_group(self, task: RLTask, completions: Sequence[str]) -> list[Score]:
        """One score per completion, in order."""
        ...
