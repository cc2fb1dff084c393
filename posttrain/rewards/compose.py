"""Reward composition: a weighted sum of verifiers, itself a verifier.

`WeightedSum([(MathVerifier(), 1.0), (FormatVerifier(), 0.1)])` gives reward = 1.0 * correct + 0.1 * format.

- Metrics: each component's metrics under its name, `"<name>/<metric>"`, plus `"<name>/reward"`. The name is
  the component's class name, with `#2`, `#3`, ... added when a class appears more than once.
- Failure: the first failing component's failure, in the order given (so put the main verifier first). The
  other components' failures stay visible in their prefixed metrics.
- Batches: a component with `score_batch` (a `MathVerifier`'s process pool) is called once for the batch;
  the others are called per completion.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from posttrain.rewards import Verifier, score_batch
from posttrain.types import RLTask, Score


def _names(verifiers: Sequence[Verifier]) -> list[str]:
    seen: Counter[str] = Counter()
    names = []
    for verifier in verifiers:
        name = type(verifier).__name__
        seen[name] += 1
        names.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return names


def _combine(names: Sequence[str], weights: Sequence[float], scores: Sequence[Score]) -> Score:
    """One weighted score from one score per component."""
    metrics: dict[str, float] = {}
    for name, score in zip(names, scores, strict=True):
        metrics[f"{name}/reward"] = score.reward
        metrics.update({f"{name}/{key}": value for key, value in score.metrics.items()})
    reward = sum(w * s.reward for w, s in zip(weights, scores, strict=True))
    failure = next((s.failure for s in scores if s.failure is not None), None)
    return Score(reward, metrics, failure)


class WeightedSum:
    """Reward = sum of weight * component reward; see the module docstring for metrics and failure."""

    def __init__(self, components: Sequence[tuple[Verifier, float]]):
        if not components:
            raise ValueError("WeightedSum needs at least one (verifier, weight)")
        self.verifiers = [v for v, _ in components]
        self.weights = [float(w) for _, w in components]
        self.names = _names(self.verifiers)

    def score(self, task: RLTask, completion: str) -> Score:
        """The weighted sum of every component's score."""
        return _combine(self.names, self.weights, [v.score(task, completion) for v in self.verifiers])

    def score_batch(self, tasks: Sequence[RLTask], completions: Sequence[str]) -> list[Score]:
        """Score many completions, each component over the whole batch (its own `score_batch` when it has one)."""
        per_component = [score_batch(v, tasks, completions) for v in self.verifiers]  # (V, N)
        return [_combine(self.names, self.weights, column) for column in zip(*per_component, strict=True)]
