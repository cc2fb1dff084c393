"""The demo's checkpoint evaluation: arithmetic accuracy and format, refusal of harmful prompts, over-refusal.

Each held-out file is an rl-schema JSONL (`posttrain.data`); its `verifier` field says how replies are judged:
`math` (numeric final answer, plus format compliance), `refusal` (should refuse) or `compliance` (should not).
Rates come with a 95% Wilson interval, since the sets are small.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from posttrain.data import load_records
from posttrain.eval.diversity import diversity_metrics
from posttrain.eval.judges import is_refusal
from posttrain.rollout import SamplingParams, greedy_texts
from posttrain.rollout.engine import make_sampler
from posttrain.text import follows_format
from posttrain.types import RLTask

MAX_NEW_TOKENS = {"math": 128, "refusal": 48, "compliance": 48}


@dataclass(frozen=True)
class Rate:
    """k successes out of n, with a 95% Wilson score interval."""

    k: int
    n: int

    @property
    def value(self) -> float:
        """k / n."""
        return self.k / self.n if self.n else float("nan")

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        """The Wilson score interval."""
        if not self.n:
            return (float("nan"), float("nan"))
        p, n = self.value, self.n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return (max(0.0, centre - half), min(1.0, centre + half))

    def as_dict(self) -> dict[str, float]:
        """For eval.json."""
        low, high = self.interval()
        return {"value": self.value, "k": self.k, "n": self.n, "ci95_low": low, "ci95_high": high}


def score_replies(verifier: str, replies: list[str], tasks: list[RLTask]) -> dict[str, Rate]:
    """The metrics of one held-out set; a math answer is correct exactly when the training reward says so."""
    n = len(replies)
    if verifier == "math":
        from posttrain.rewards.math import MathVerifier

        with MathVerifier() as verifier_:
            correct = sum(s.reward >= 1.0 for s in verifier_.score_batch(tasks, replies))
        return {"accuracy": Rate(correct, n), "format": Rate(sum(map(follows_format, replies)), n)}
    if verifier == "refusal":
        return {"refusal_rate": Rate(sum(map(is_refusal, replies)), n)}
    if verifier == "compliance":
        return {"over_refusal": Rate(sum(map(is_refusal, replies)), n)}
    raise ValueError(f"no demo judge for verifier {verifier!r}")


def diversity(sampler, prompts, n_prompts: int = 8, n_samples: int = 4) -> dict[str, float]:
    """distinct-n and self-BLEU of temperature-1 samples on the first `n_prompts` prompts."""
    params = SamplingParams(max_new_tokens=64, temperature=1.0, seed=2024)
    groups = sampler.sample(list(prompts)[:n_prompts], n_samples, params)
    return diversity_metrics([[r.text for r in g] for g in groups])


def evaluate(model, tokenizer, sets: Mapping[str, str], progress: bool = True, diversity_set: str = "") -> dict:
    """Generate greedily (the rollout engine, bf16) on each held-out set and score it; also returns sample replies.

    With `diversity_set` (one of `sets`), also sample that set's first prompts at temperature 1 for the diversity
    metrics."""
    results: dict = {}
    sampler = make_sampler(model, tokenizer, batch_size=64)  # one bf16 snapshot for every set
    for name, path in sets.items():
        tasks = load_records(path, "rl").records
        verifiers = {t.verifier for t in tasks}
        if len(verifiers) != 1:
            raise ValueError(f"{path}: an eval set needs exactly one verifier, found {sorted(verifiers) or 'none'}")
        (verifier,) = verifiers
        sampler.progress = f"eval {name}" if progress else ""
        replies = greedy_texts(sampler, [t.prompt for t in tasks], MAX_NEW_TOKENS[verifier])
        rates = score_replies(verifier, replies, tasks)
        results[name] = {metric: rate.as_dict() for metric, rate in rates.items()}
        if name == diversity_set:
            results["diversity"] = diversity(sampler, [t.prompt for t in tasks])
        results[name]["samples"] = [
            {"prompt": t.prompt[-1].content, "reply": r} for t, r in zip(tasks[:3], replies, strict=False)
        ]
    return results
