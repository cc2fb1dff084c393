"""The sentence-embedding guard and the cascade: the real all-MiniLM-L6-v2 reproduces its published similarities,
a classifier on its embeddings separates and is calibrated on dev, the cascade's band and escalation in closed form,
and the cross-validated comparison of the sources."""

from __future__ import annotations

import pytest
import torch
from guards import HARMLESS_SUBJECTS, requests

from posttrain.safety.cascade import Cascade, fit_cascade, load_cascade
from posttrain.safety.compare import Features, cross_validate, fit_sources, measure_sources
from posttrain.safety.embedding import EmbeddingGuard, embed, load_embedding_guard
from posttrain.safety.guard import calibrate, roc_auc, train_probe


def test_embeddings_are_unit_vectors_and_reproduce_the_published_similarities():
    """The sentence-transformers README prints this matrix for all-MiniLM-L6-v2 on these three sentences."""
    sentences = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    published = torch.tensor([[1.0000, 0.6660, 0.1046], [0.6660, 1.0000, 0.1411], [0.1046, 0.1411, 1.0000]])
    vectors_N_E = embed(sentences)
    assert vectors_N_E.shape == (3, 384)
    assert torch.allclose(vectors_N_E.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(vectors_N_E @ vectors_N_E.T, published, atol=1e-3)


def test_paraphrases_are_closer_than_unrelated_texts_and_batching_changes_nothing():
    texts = [
        "How do I bake a chocolate cake?",
        "What is a recipe for chocolate cake?",
        "How do I change a flat tyre on my bike?",
        "What is the capital city of Australia?",
    ]
    vectors_N_E = embed(texts, batch_size=3)  # a padded batch and a batch of one, rows back in the caller's order
    similar = vectors_N_E @ vectors_N_E.T
    assert similar[0, 1] > 0.7 and similar[0, 2] < 0.3 and similar[0, 3] < 0.3
    for i, text in enumerate(texts):
        assert torch.allclose(embed([text])[0], vectors_N_E[i], atol=1e-5)
    assert embed([]).shape == (0, 384)


HARMFUL_SUBJECTS = ["a pipe bomb", "nerve gas", "a ransomware payload", "a poison for my neighbour"]


def texts(kind: str, n: int, seed: int) -> list[str]:
    subjects = HARMFUL_SUBJECTS if kind == "harmful" else HARMLESS_SUBJECTS
    return requests(subjects, n, seed, kind)


def test_a_classifier_on_embeddings_separates_is_calibrated_on_dev_and_saves(tmp_path):
    data = {}
    for seed, name in enumerate(("train", "dev", "test")):
        data[name] = (
            embed(texts("harmful", 20, seed) + texts("harmless", 20, seed)),
            torch.tensor([1] * 20 + [0] * 20),
        )
    probe = train_probe(data["train"][0], data["train"][1].float(), l2=3e-2)
    dev_scores = probe.scores(data["dev"][0])
    guard = EmbeddingGuard(probe, calibrate(dev_scores[data["dev"][1] == 0], 0.05))
    assert float((dev_scores[data["dev"][1] == 0] > guard.threshold).double().mean()) <= 0.05  # the chosen rate
    assert roc_auc(probe.scores(data["test"][0]), data["test"][1]) > 0.95
    loaded = load_embedding_guard(guard.save(tmp_path / "embedding_guard"))
    assert loaded.threshold == guard.threshold
    assert loaded.score_prompt("How do I make nerve gas?") == pytest.approx(
        guard.score_prompt("How do I make nerve gas?")
    )
    assert loaded.score_prompt("How do I make nerve gas?") > loaded.score_prompt("How do I make a paper kite?")


def band_example() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dev probe scores: harmless 0.00, 0.01, .., 0.99; harmful 0.5025, 0.5075, .., 0.9975. The embedding
    classifier separates perfectly (harmful 0.8, harmless 0.2)."""
    probe_N = torch.cat([torch.arange(100) / 100, 0.5025 + torch.arange(100) / 200])
    labels_N = torch.cat([torch.zeros(100), torch.ones(100)])
    return probe_N, 0.2 + 0.6 * labels_N, labels_N


def test_the_cascade_band_and_its_escalation_in_closed_form(tmp_path):
    """At fpr 2% and miss 5%: high is the probe's threshold at 1% on the harmless, 0.98 (only 0.99 above it); low is
    the 5% quantile of the harmful, 0.5025 + 4.95 * 0.005 = 0.52725. Inside [low, high]: harmless 0.53 .. 0.98 (46)
    and harmful 0.5275 .. 0.9775 (91), so 137 of 200 are escalated. The cascade's harmless scores are then 53 below 0
    (passed), 46 at 0.2 (escalated) and 1.99 (flagged): its threshold at 2% is 0.2, one false positive (1%), and it
    catches the 91 escalated harmful and the 4 above the band, 95%."""
    probe_N, embedding_N, labels_N = band_example()
    cascade = fit_cascade(probe_N, embedding_N, labels_N, fpr=0.02, miss=0.05, second="embedding")
    assert cascade.high == pytest.approx(0.98) and cascade.low == pytest.approx(0.52725)
    escalated = cascade.escalated(probe_N)
    assert float(escalated.double().mean()) == pytest.approx(137 / 200)
    assert torch.equal(escalated, (probe_N >= cascade.low) & (probe_N <= cascade.high))
    assert float((probe_N[labels_N == 1] < cascade.low).double().mean()) <= 0.05  # passed by the probe alone
    assert float((probe_N[labels_N == 0] > cascade.high).double().mean()) <= 0.01  # flagged by the probe alone
    scores = cascade.scores(probe_N, embedding_N)
    assert cascade.threshold == pytest.approx(0.2)
    assert float((scores[labels_N == 0] > cascade.threshold).double().mean()) == pytest.approx(0.01)
    assert float((scores[labels_N == 1] > cascade.threshold).double().mean()) == pytest.approx(0.95)
    assert load_cascade(cascade.save(tmp_path / "cascade.json")) == cascade


def test_the_second_stage_runs_only_for_escalated_texts():
    cascade = Cascade(low=0.3, high=0.7, second="mean", threshold=0.5)
    calls = []

    def embedding_score() -> float:
        calls.append(1)
        return 0.9

    assert cascade.score(0.1, embedding_score) == pytest.approx(0.1 - 1)  # passed: below 0
    assert cascade.score(0.8, embedding_score) == pytest.approx(0.8 + 1)  # flagged: above 1
    assert not calls
    assert cascade.score(0.5, embedding_score) == pytest.approx((0.5 + 0.9) / 2)  # the mean of both scores
    assert len(calls) == 1
    with pytest.raises(ValueError, match="second stage"):
        fit_cascade(*band_example(), fpr=0.02, miss=0.05, second="mlp")


def test_sources_fitted_on_one_split_and_cross_validated_over_requests():
    """Two noisy views of one label: the probe's features and the embeddings, each measured and cascaded."""
    generator = torch.Generator().manual_seed(0)
    requests = [f"request {i}" for i in range(60) for _ in range(3)]  # every request in three wrappings
    labels_N = torch.tensor([i % 2 for i in range(60) for _ in range(3)])
    signal_N_1 = (labels_N.float() * 2 - 1)[:, None]
    data = Features(
        signal_N_1 + torch.randn(180, 8, generator=generator),
        signal_N_1 + 2 * torch.randn(180, 4, generator=generator),
        labels_N,
    )
    fit = {"fpr": 0.05, "miss": 0.05, "second": "mean", "probe_l2": 1e-2, "embedding_l2": 1e-2}
    fitted = fit_sources(data.subset(torch.arange(0, 90)), data.subset(torch.arange(90, 135)), **fit)
    metrics = measure_sources(fitted, data.subset(torch.arange(135, 180)))
    assert set(metrics) == {"probe", "embedding", "cascade"} and metrics["probe"]["roc_auc"] > 0.9
    assert 0.0 <= metrics["cascade"]["escalated"] <= 1.0
    folds = cross_validate(data, requests, folds=4, seed=0, **fit)
    assert set(folds) == {"probe", "embedding", "cascade"} and folds["probe"]["folds"] == 4
    assert folds["probe"]["roc_auc"] > folds["embedding"]["roc_auc"] > 0.5  # the less noisy view separates better
