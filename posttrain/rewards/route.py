"""Scoring a mixed batch of tasks: each task goes to the verifier its `verifier` field names.

`build_verifier("math")` and friends make verifiers by name, importing their modules only when asked (the code
verifier needs bubblewrap, the reasoning-gym one its package). `ByTaskVerifier` routes each task to its own and
calls a verifier's `score_batch` (a process pool, a set of sandboxes) once for all of its tasks in the batch.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence

from posttrain.rewards import Verifier, score_batch
from posttrain.types import RLTask, Score

VERIFIER_CLASSES = {
    "math": "posttrain.rewards.math:MathVerifier",
    "reasoning_gym": "posttrain.rewards.gym:ReasoningGymVerifier",
    "code": "posttrain.rewards.code:CodeVerifier",
}


def build_verifier(name: str) -> Verifier:
    """A verifier with default settings, by the name tasks carry in their `verifier` field."""
    if name not in VERIFIER_CLASSES:
        raise ValueError(f"unknown verifier {name!r}; known: {', '.join(VERIFIER_CLASSES)}")
    module, cls = VERIFIER_CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)()


class ByTaskVerifier:
    """Scores each task with the verifier named by `task.verifier`; verifiers are built on first use."""

    def __init__(self, verifiers: Mapping[str, Verifier] | None = None):
        self.verifiers: dict[str, Verifier] = dict(verifiers or {})

    def _for(self, task: RLTask) -> Verifier:
        if task.verifier not in self.verifiers:
            self.verifiers[task.verifier] = build_verifier(task.verifier)
        return self.verifiers[task.verifier]

    def score(self, task: RLTask, completion: str) -> Score:
        """The score from the task's own verifier."""
        return self._for(task).score(task, completion)

    def score_batch(self, tasks: Sequence[RLTask], completions: Sequence[str]) -> list[Score]:
        """One score per (task, completion), each verifier called once for all of its tasks."""
        by_name: dict[str, list[int]] = {}
        for i, task in enumerate(tasks):
            by_name.setdefault(task.verifier, []).append(i)
        scores: list[Score | None] = [None] * len(tasks)
        for indices in by_name.values():
            verifier = self._for(tasks[indices[0]])
            results = score_batch(verifier, [tasks[i] for i in indices], [completions[i] for i in indices])
            for i, score in zip(indices, results, strict=True):
                scores[i] = score
        return scores  # type: ignore[return-value]

    def close(self) -> None:
        """Close every verifier that holds workers."""
        for verifier in self.verifiers.values():
            if hasattr(verifier, "close"):
                verifier.close()
