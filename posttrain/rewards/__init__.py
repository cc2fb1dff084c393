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


class Judge(Protocol):
    """Scores the completions sampled for one task (a group), as preference rounds and GRPO need."""

    def score_group(self, task: RLTask, completions: Sequence[str]) -> list[Score]:
        """One score per completion, in order."""
        ...
