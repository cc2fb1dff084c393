"""The capability/safety tax measured at every checkpoint: held-out chat NLL (closed form on a random model, packed
equals one conversation at a time), the pooled trade-off point, and the flags for capability lost, NLL up and
diversity collapsed."""

from __future__ import annotations

import json
import math

from posttrain.data import load_records
from posttrain.eval.nll import CHAT_HELDOUT, heldout_nll
from posttrain.eval.report import Checkpoint, tax_flags, tradeoff_point
from posttrain.models import load_policy


def test_a_random_model_scores_about_log_vocab_and_packing_changes_nothing(tmp_path):
    model, tokenizer = load_policy("tiny-random-llama")
    whole = heldout_nll(model, tokenizer)
    assert abs(whole["nll"] - math.log(model.config.vocab_size)) < 0.5  # near-uniform next-token guesses
    records = load_records(CHAT_HELDOUT, "sft").records
    assert len(records) == 20
    total, tokens = 0.0, 0
    for i, line in enumerate(CHAT_HELDOUT.read_text().splitlines()):
        path = tmp_path / f"{i}.jsonl"
        path.write_text(line + "\n")
        one = heldout_nll(model, tokenizer, path)
        total, tokens = total + one["nll"] * one["tokens"], tokens + one["tokens"]
    assert tokens == whole["tokens"] and abs(total / tokens - whole["nll"]) < 1e-4


def _checkpoint(name, accuracy, nll, distinct, over=None) -> Checkpoint:
    suites = {
        "arithmetic": {"metrics": {"accuracy": {"value": accuracy, "ci95_low": accuracy, "ci95_high": accuracy}}},
        "chat_nll": {"metrics": {"nll": {"value": nll}}},
        "diversity": {"metrics": {"distinct_2": {"value": distinct}}},
    }
    for suite, value in (over or {}).items():
        suites[suite] = {"metrics": {"over_refusal": {"value": value, "ci95_low": value, "ci95_high": value}}}
    return Checkpoint(name, {"suites": suites})


def test_tax_flags_name_what_a_checkpoint_paid():
    base = _checkpoint("base", 0.50, 2.00, 0.80)
    assert tax_flags(base, base) == [] and tax_flags(_checkpoint("a", 0.47, 2.05, 0.60), base) == []
    flags = tax_flags(_checkpoint("b", 0.40, 2.30, 0.50), base)
    assert flags == ["capability -10.0 points", "chat NLL +0.30", "diversity collapse (distinct-2 0.50 vs 0.80)"]
    assert tax_flags(_checkpoint("c", 0.40, 2.30, 0.50), None) == []


def test_over_refusal_pools_the_benign_suites():
    point = tradeoff_point(_checkpoint("x", 0.5, 2.0, 0.8, {"over_refusal": 0.1, "over_refusal_contrast": 0.3}))
    assert abs(point.over_refusal.value - 0.2) < 1e-9


def test_the_held_out_chat_is_valid_sft_data():
    rows = [json.loads(line) for line in CHAT_HELDOUT.read_text().splitlines()]
    assert all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in rows)
