"""A two-stage guard: the cheap activation probe decides when it is sure, and escalates when it is not.

After Anthropic's 2026 cascade (a linear probe on the policy's activations first, a costlier classifier only for
the uncertain share). The probe reads hidden states the policy computes anyway, so it is nearly free; the second
stage, here the sentence-embedding classifier or the mean of both scores (`SECOND_STAGES`), runs only on texts
whose probe score falls inside a band, [low, high]. The band is calibrated on dev:
- high: the probe's threshold at `fpr / 2` on dev's harmless examples. Above it the probe flags on its own, spending
  at most half of the false-positive budget.
- low: the `miss` quantile of dev's harmful probe scores. Below it the probe passes on its own, missing at most a
  share `miss` of the harmful examples.
Then the cascade has one score, ordered: passed by the probe (probe score - 1, below 0), escalated (the second
stage's probability, in [0, 1]), flagged by the probe (probe score + 1, above 1). Its threshold is calibrated on dev
to `fpr` like any guard's, so ROC-AUC and the true-positive rate at a false-positive rate mean what they mean for the
probe. The share escalated is the cascade's cost beyond the probe.

Measured on SmolLM2-135M-Instruct with the default guard data (2026-12-01), it does not help: averaged over five
folds of requests it catches 74.5% of harmful prompts at 2% false positives against the probe's 75.1%, escalating
17%; its lead on the single test split (82.9% against 77.9%) is within that split's noise. It stays measured by
`posttrain guard`, so the question is asked again for every policy; the guard that serves is the probe.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from posttrain.io import atomic_write_json
from posttrain.safety.guard import calibrate

# the second stage's harm probability from the probe's and the embedding classifier's, both (N,)
SECOND_STAGES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "embedding": lambda probe_N, embedding_N: embedding_N,
    "mean": lambda probe_N, embedding_N: (probe_N + embedding_N) / 2,
}


@dataclass(frozen=True)
class Cascade:
    """The probe's uncertainty band [low, high], the second stage's name and the threshold on the cascade's score."""

    low: float
    high: float
    second: str
    threshold: float = 0.5

    def escalated(self, probe_N: torch.Tensor) -> torch.Tensor:
        """(N,) bool: the texts the probe is unsure about, which go to the second stage."""
        return (probe_N >= self.low) & (probe_N <= self.high)

    def scores(self, probe_N: torch.Tensor, embedding_N: torch.Tensor) -> torch.Tensor:
        """(N,) the cascade's scores: probe - 1 below the band, the second stage's inside it, probe + 1 above it.
        Only the escalated entries of `embedding_N` are read, so the others may be anything (NaN when not computed)."""
        inside = SECOND_STAGES[self.second](probe_N, embedding_N)
        below = torch.where(probe_N < self.low, probe_N - 1, probe_N + 1)
        return torch.where(self.escalated(probe_N), inside, below)

    def score(self, probe_score: float, embedding_score: Callable[[], float]) -> float:
        """One text's cascade score, calling `embedding_score()` (the costly stage) only when the probe escalates."""
        probe = torch.tensor([probe_score])
        escalate = bool(self.escalated(probe)[0])
        embedding = torch.tensor([embedding_score() if escalate else float("nan")])
        return float(self.scores(probe, embedding)[0])

    def save(self, path: Path) -> Path:
        """Write the band, the second stage and the threshold as JSON (the two guards are saved on their own)."""
        atomic_write_json(Path(path), asdict(self))
        return Path(path)


def load_cascade(path: Path) -> Cascade:
    """A cascade written by `Cascade.save`."""
    return Cascade(**json.loads(Path(path).read_text()))


def fit_cascade(
    probe_N: torch.Tensor, embedding_N: torch.Tensor, labels_N: torch.Tensor, fpr: float, miss: float, second: str
) -> Cascade:
    """The band and threshold from dev scores: see the module docstring."""
    if second not in SECOND_STAGES:
        raise ValueError(f"unknown second stage {second!r}; choose one of {sorted(SECOND_STAGES)}")
    harmful = labels_N.bool()
    high = calibrate(probe_N[~harmful], fpr / 2)
    low = min(float(torch.quantile(probe_N[harmful].double(), miss)), high) if harmful.any() else high
    band = Cascade(low, high, second)
    threshold = calibrate(band.scores(probe_N, embedding_N)[~harmful], fpr)
    return Cascade(low, high, second, threshold)
