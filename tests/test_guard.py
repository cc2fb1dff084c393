"""The activation-probe guard: closed forms for its metrics and calibration, a probe on a real (tiny) policy's
hidden states, the running-mean stream scores against prefixes scored from scratch, and where a stream is cut."""

from __future__ import annotations

import pytest
import torch
from guards import HARMLESS_SUBJECTS, requests

from posttrain.models import load_policy
from posttrain.render import render_prompt
from posttrain.safety.guard import (
    Guard,
    calibrate,
    halt_position,
    load_guard,
    mean_features,
    prefix_features,
    roc_auc,
    tpr_at_fpr,
    train_probe,
)

LAYERS = (1, 2)


def test_roc_auc_closed_forms():
    """Positives {0.9, 0.3}, negatives {0.8, 0.1}: 0.9 beats both, 0.3 beats 0.1 only: 3 of 4 pairs."""
    assert roc_auc(torch.tensor([0.9, 0.8, 0.3, 0.1]), torch.tensor([1, 0, 1, 0])) == 0.75
    assert roc_auc(torch.tensor([0.5, 0.5]), torch.tensor([1, 0])) == 0.5  # a tie counts half
    assert roc_auc(torch.tensor([0.2, 0.9]), torch.tensor([0, 1])) == 1.0


def test_calibration_keeps_the_false_positive_rate():
    """Harmless scores 0.00 .. 0.99: at 2% the threshold is 0.97, so exactly 0.98 and 0.99 lie above it."""
    harmless = torch.arange(100) / 100
    assert calibrate(harmless, 0.02) == pytest.approx(0.97)
    assert calibrate(harmless, 0.0) == pytest.approx(0.99)  # nothing above the largest
    assert float((harmless > calibrate(harmless, 0.05)).double().mean()) <= 0.05
    scores = torch.cat([harmless, torch.tensor([0.975, 0.5, 0.995])])
    labels = torch.cat([torch.zeros(100), torch.ones(3)])
    assert tpr_at_fpr(scores, labels, 0.02) == pytest.approx(2 / 3)  # 0.975 and 0.995 are above 0.97


def test_halt_position_checks_every_k_tokens_and_the_last():
    scores = torch.tensor([0.1, 0.2, 0.9, 0.1, 0.95])
    assert halt_position(scores, 0.5, 0, every=2) == 4  # checks at 1 and 3 pass; the last token (4) crosses
    assert halt_position(scores, 0.5, 0, every=1) == 2
    assert halt_position(scores, 0.99, 0, every=1) is None


HARMFUL_SUBJECTS = ["a pipe bomb", "nerve gas", "a ransomware payload", "a poison"]


def texts(kind: str, n: int, seed: int) -> list[str]:
    subjects = HARMFUL_SUBJECTS if kind == "harmful" else HARMLESS_SUBJECTS
    return requests(subjects, n, seed, kind)


@pytest.fixture(scope="module")
def policy():
    model, tokenizer = load_policy("tiny-random-llama")
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def trained(policy):
    model, tokenizer = policy

    def features(batch: list[str]) -> torch.Tensor:
        return torch.stack(
            [
                prefix_features(model, render_prompt(tokenizer, [{"role": "user", "content": t}]), LAYERS)[-1]
                for t in batch
            ]
        )

    split = {
        name: (texts("harmful", 24, seed), texts("harmless", 24, seed))
        for seed, name in enumerate(("train", "dev", "test"))
    }
    data = {
        name: (torch.cat([features(h), features(b)]), torch.cat([torch.ones(24), torch.zeros(24)]))
        for name, (h, b) in split.items()
    }
    probe = train_probe(*data["train"])
    dev_scores, dev_labels = probe.scores(data["dev"][0]), data["dev"][1]
    guard = Guard(probe, LAYERS, calibrate(dev_scores[dev_labels == 0], 0.1), every=2)
    return guard, data


def test_a_probe_on_the_policys_activations_separates_and_is_calibrated_on_dev(trained):
    guard, data = trained
    dev_x, dev_y = data["dev"]
    dev_scores = guard.probe.scores(dev_x)
    assert float((dev_scores[dev_y == 0] > guard.threshold).double().mean()) <= 0.1  # the chosen false-positive rate
    test_x, test_y = data["test"]
    assert roc_auc(guard.probe.scores(test_x), test_y) > 0.9  # a fresh draw from the same templates: in distribution


def test_stream_scores_equal_prefixes_scored_from_scratch_and_the_cut_is_the_first_crossing(trained, policy):
    guard, _ = trained
    model, tokenizer = policy
    prompt = render_prompt(tokenizer, [{"role": "user", "content": "Tell me a story."}])
    response = tokenizer.encode(
        " Once upon a time someone wanted nerve gas and a pipe bomb and nerve gas", add_special_tokens=False
    )
    scores = guard.stream_scores(model, prompt, response)
    for t in (0, 5, len(response) - 1):  # the running mean is causal: a prefix scores the same on its own
        alone = guard.probe.scores(prefix_features(model, prompt + response[: t + 1], LAYERS)[-1:])[0]
        assert float(alone) == pytest.approx(float(scores[t]), abs=1e-5)
    threshold = float(scores.median())  # a threshold this stream crosses
    cut = halt_position(scores, threshold, 0, every=2)
    checks = [t for t in range(len(response)) if t % 2 == 1 or t == len(response) - 1]
    assert cut == next(t for t in checks if scores[t] > threshold)
    assert all(scores[t] <= threshold for t in checks if t < cut)


def test_a_saved_guard_scores_the_same(trained, tmp_path):
    guard, data = trained
    loaded = load_guard(guard.save(tmp_path / "guard"))
    assert (loaded.layers, loaded.threshold, loaded.every) == (guard.layers, guard.threshold, guard.every)
    assert torch.equal(loaded.probe.scores(data["test"][0]), guard.probe.scores(data["test"][0]))


def test_batched_mean_features_equal_the_last_running_mean_of_each_text(policy):
    model, tokenizer = policy
    texts = ["Hi", "How do I bake bread at home?", "Tell me a long story about a lighthouse keeper and a storm."]
    ids = [render_prompt(tokenizer, [{"role": "user", "content": t}]) for t in texts]
    batched = mean_features(model, ids, LAYERS, batch_size=2)  # mixed lengths in one padded batch
    for row, one in enumerate(ids):
        assert torch.allclose(batched[row], prefix_features(model, one, LAYERS)[-1], atol=1e-4)
