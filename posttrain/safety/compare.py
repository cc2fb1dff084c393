"""Both guard feature sources and their cascade, fitted on the same split and measured side by side.

`fit_sources` trains the probe on the policy's hidden states and the classifier on sentence embeddings from one train
split, calibrates each on the same dev split to a false-positive rate, and fits the cascade's band on dev
(`posttrain.safety.cascade`). `measure` gives the metrics a guard is judged by, for any score.

One split is a noisy judge. The default test split holds about 30 distinct harmful requests, each in five wrappings,
so one request moves a true-positive rate by about 3.5 points, and the tail that sets the rate at 2% false positives
is the five highest-scoring harmless texts: one or two requests. `cross_validate` therefore repeats the whole fit over
folds of requests (train on the rest, calibrate on the next fold, measure on this one) and averages the metrics; a
choice between the sources should rest on that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from posttrain.safety.cascade import Cascade, fit_cascade
from posttrain.safety.guard import Probe, calibrate, roc_auc, tpr_at_fpr, train_probe

SOURCES = ("probe", "embedding", "cascade")


@dataclass(frozen=True)
class Features:
    """The examples of one split as both sources see them, with their labels (1: harmful)."""

    probe: torch.Tensor  # (N, L*H) the policy's hidden states
    embedding: torch.Tensor  # (N, E) sentence embeddings
    labels: torch.Tensor  # (N,)

    def subset(self, index_M: torch.Tensor) -> Features:
        """The rows `index_M`."""
        return Features(self.probe[index_M], self.embedding[index_M], self.labels[index_M])


def concat(parts: Sequence[Features]) -> Features:
    """The rows of all `parts`, in order."""
    return Features(*(torch.cat([getattr(part, f) for part in parts]) for f in ("probe", "embedding", "labels")))


@dataclass(frozen=True)
class Fitted:
    """The two classifiers, the cascade over them, and each one's threshold calibrated on dev."""

    probe: Probe
    embedding: Probe
    cascade: Cascade
    thresholds: dict[str, float]  # by source

    def scores(self, data: Features) -> dict[str, torch.Tensor]:
        """(N,) scores of every source."""
        probe_N, embedding_N = self.probe.scores(data.probe), self.embedding.scores(data.embedding)
        return {"probe": probe_N, "embedding": embedding_N, "cascade": self.cascade.scores(probe_N, embedding_N)}


def fit_sources(
    train: Features, dev: Features, fpr: float, miss: float, second: str, probe_l2: float, embedding_l2: float
) -> Fitted:
    """Train both classifiers on `train`; calibrate them and fit the cascade on `dev`."""
    probe = train_probe(train.probe, train.labels.float(), l2=probe_l2)
    embedding = train_probe(train.embedding, train.labels.float(), l2=embedding_l2)
    probe_N, embedding_N = probe.scores(dev.probe), embedding.scores(dev.embedding)
    harmless = dev.labels == 0
    cascade = fit_cascade(probe_N, embedding_N, dev.labels, fpr, miss, second)
    thresholds = {
        "probe": calibrate(probe_N[harmless], fpr),
        "embedding": calibrate(embedding_N[harmless], fpr),
        "cascade": cascade.threshold,
    }
    return Fitted(probe, embedding, cascade, thresholds)


def measure(scores_N: torch.Tensor, labels_N: torch.Tensor, threshold: float) -> dict | None:
    """ROC-AUC, the true-positive rate at 1% and 2% false positives (calibrated on these harmless examples), and the
    true- and false-positive rates at the dev threshold; None when the examples do not hold both labels."""
    if not len(labels_N) or labels_N.min() == labels_N.max():
        return None
    flagged = scores_N > threshold
    return {
        "n": len(labels_N),
        "roc_auc": roc_auc(scores_N, labels_N),
        "tpr_at_1pct_fpr": tpr_at_fpr(scores_N, labels_N, 0.01),
        "tpr_at_2pct_fpr": tpr_at_fpr(scores_N, labels_N, 0.02),
        "tpr_at_threshold": float(flagged[labels_N == 1].double().mean()),
        "fpr_at_threshold": float(flagged[labels_N == 0].double().mean()),
    }


def measure_sources(fitted: Fitted, data: Features) -> dict[str, dict | None]:
    """`measure` for every source, and for the cascade the share of examples it escalated."""
    scores = fitted.scores(data)
    out = {source: measure(scores[source], data.labels, fitted.thresholds[source]) for source in SOURCES}
    if out["cascade"] is not None:
        probe_N = fitted.probe.scores(data.probe)
        out["cascade"]["escalated"] = float(fitted.cascade.escalated(probe_N).double().mean())
    return out


def cross_validate(data: Features, requests: Sequence[str], folds: int, seed: int, **fit: float | str) -> dict:
    """Every source's metrics averaged over folds of requests: fold k tests, fold k+1 calibrates, the rest train."""
    fold_N = torch.tensor(
        [int(hashlib.sha256(f"{seed}:cv:{r}".encode()).hexdigest()[:8], 16) % folds for r in requests]
    )
    runs: dict[str, list[dict]] = {source: [] for source in SOURCES}
    for k in range(folds):
        test, dev = fold_N == k, fold_N == (k + 1) % folds
        parts = [data.subset(torch.nonzero(mask).flatten()) for mask in (~(test | dev), dev, test)]
        if any(len(part.labels.unique()) < 2 for part in parts):
            continue  # a fold without both labels can neither train, calibrate nor measure
        fitted = fit_sources(parts[0], parts[1], **fit)
        for source, metrics in measure_sources(fitted, parts[2]).items():
            runs[source].append(metrics)
    return {source: _mean(rows) for source, rows in runs.items() if rows}


def _mean(rows: list[dict]) -> dict:
    return {"folds": len(rows), **{key: sum(row[key] for row in rows) / len(rows) for key in rows[0] if key != "n"}}
