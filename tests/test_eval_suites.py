"""`posttrain eval`: named suites on tiny models, eval.json, the correctness rule, McNemar and compare()."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from posttrain.data import load_records
from posttrain.demo.mix import build_demo_data
from posttrain.eval.run import EvalConfig, compare, evaluate_model, format_table, run
from posttrain.eval.stats import Rate, mcnemar
from posttrain.eval.suites import SUITES, eval_sets, get_suite, judge_math
from posttrain.rewards.math import MathVerifier
from posttrain.train.config import add_config_arguments, config_from_args
from posttrain.types import Message, RLTask

LIMIT = 3
RATE_KEYS = {"value", "k", "n", "ci95_low", "ci95_high"}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sets")
    build_demo_data(out)
    return out


@pytest.fixture(scope="module")
def llama_eval(demo_dir):
    """Every suite on tiny-random-llama, the first LIMIT items of each."""
    return evaluate_model("tiny-random-llama", tuple(SUITES), data_dir=demo_dir, limit=LIMIT, progress=False)


@pytest.fixture(scope="module")
def qwen_run(demo_dir, llama_eval, tmp_path_factory):
    """`run` from command-line flags: tiny-random-qwen2 on two suites, compared with llama's eval.json."""
    base = tmp_path_factory.mktemp("base")
    (base / "eval.json").write_text(json.dumps(llama_eval))
    out = tmp_path_factory.mktemp("out")
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, EvalConfig)
    flags = ["--model", "tiny-random-qwen2", "--suites", "arithmetic,refusal", "--limit", str(LIMIT),
             "--data-dir", str(demo_dir), "--output", str(out), "--compare", str(base), "--no-progress"]  # fmt: skip
    config = config_from_args(EvalConfig, parser.parse_args(flags))
    assert config.suites == ("arithmetic", "refusal") and config.limit == LIMIT and not config.progress
    path = run(config)
    assert path == out / "eval.json"
    return json.loads(path.read_text())


def test_eval_json_has_every_suite_with_intervals_and_items(llama_eval, demo_dir):
    json.dumps(llama_eval)  # plain JSON types only
    assert llama_eval["model"] == "tiny-random-llama" and llama_eval["seconds"] > 0
    assert list(llama_eval["suites"]) == list(SUITES)
    paths = eval_sets(demo_dir)
    for name, suite in SUITES.items():
        block = llama_eval["suites"][name]
        assert list(block["metrics"]) == list(suite.metrics)
        if suite.judge == "nll":  # a file of conversations, no items: the random model's NLL is near log(vocab)
            assert 5.0 < block["metrics"]["nll"]["value"] < 9.0
            continue
        rows = load_records(paths[suite.data], "rl").records
        if suite.samples:
            continue
        items = block["items"]
        assert [row["id"] for row in items] == list(range(LIMIT))
        assert [row["prompt"] for row in items] == [t.prompt[-1].content for t in rows[:LIMIT]]
        assert [row["answer"] for row in items] == [t.answer for t in rows[:LIMIT]]
        assert all(isinstance(row["reply"], str) and "failure" in row for row in items)
        for metric, rate in block["metrics"].items():
            if set(rate) == {"value"}:  # a mean per episode (the calculator suite's turns and tool errors)
                assert rate["value"] == pytest.approx(sum(row[metric] for row in items) / LIMIT)
                continue
            assert set(rate) == RATE_KEYS and rate["n"] == LIMIT
            assert all(isinstance(row[metric], bool) for row in items)
            assert rate["k"] == sum(row[metric] for row in items)
            assert 0 <= rate["ci95_low"] <= rate["value"] <= rate["ci95_high"] <= 1
    refusal = llama_eval["suites"]["refusal"]["metrics"]
    assert refusal["refusal_rate"]["k"] + refusal["harmful_compliance"]["k"] == LIMIT


def test_diversity_samples_the_first_prompts_four_times(llama_eval):
    block = llama_eval["suites"]["diversity"]
    assert set(block["metrics"]) == {"distinct_2", "self_bleu"}
    assert all(0 <= m["value"] <= 1 for m in block["metrics"].values())
    assert len(block["items"]) == min(LIMIT, 8) and all(len(row["samples"]) == 4 for row in block["items"])


def test_unknown_suite_is_a_clear_error_before_any_loading():
    with pytest.raises(
        ValueError, match=r"unknown eval suite 'nope'; known: arithmetic, arithmetic_rl, arithmetic_tools, refusal"
    ):
        evaluate_model("not-a-model", ["arithmetic", "nope"])
    with pytest.raises(ValueError, match="no eval suite"):
        evaluate_model("not-a-model", [])
    assert get_suite("over_refusal").data == "benign_eval"


def test_eval_sets_are_built_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POSTTRAIN_CACHE", str(tmp_path))
    first = eval_sets()
    demo, independent = first["benign_eval"].parent, first["benign_independent"].parent
    assert {p.parent for name, p in first.items() if name != "chat_heldout"} == {demo, independent}
    assert demo.parent == tmp_path / "eval_sets" and demo.name.startswith("demo-seed0-")
    assert independent.parent == tmp_path / "eval_sets" and independent.name.startswith("independent-")
    stamps = {name: p.stat().st_mtime_ns for name, p in first.items()}
    again = eval_sets()
    assert again == first and {name: p.stat().st_mtime_ns for name, p in again.items()} == stamps
    built = sorted(p.name for p in (tmp_path / "eval_sets").iterdir())
    assert built == sorted([demo.name, independent.name])  # no temp directory left behind
    mine = eval_sets(tmp_path / "mine")
    assert mine["benign_eval"].parent == tmp_path / "mine" and mine["benign_independent"] == first["benign_independent"]


def test_math_accuracy_is_exactly_the_rl_reward():
    """Evaluation uses the reward's check, nothing more lenient: the right number only in prose is wrong."""
    replies = [
        "40 plus 95 is 135.",  # the number in prose, no box, no "The answer is": reward 0, so not correct
        "135",  # a bare number: no answer either
        "The answer is \\boxed{135}.",
        "The answer is 135.",  # a final-answer line: correct, but not the taught format
        "\\boxed{134}",
        "\\boxed{135} or \\boxed{136}",  # a hedge
    ]
    tasks = [RLTask(prompt=(Message("user", "Calculate 40 + 95."),), verifier="math", answer="135")] * len(replies)
    with MathVerifier() as verifier:
        rows = judge_math(tasks, replies, verifier)
        rewards = [verifier.score(t, r).reward for t, r in zip(tasks, replies, strict=True)]
    assert [row["accuracy"] for row in rows] == [r == 1.0 for r in rewards]
    assert [row["accuracy"] for row in rows] == [False, False, True, True, False, False]
    assert [row["format"] for row in rows] == [False, False, True, False, True, False]
    assert [row["failure"] for row in rows] == ["no_answer", "no_answer", None, None, None, "multiple_answers"]


def test_mcnemar_closed_forms():
    """n = b01 + b10 discordant pairs; p = min(1, 2 * sum_{i <= min(b01, b10)} C(n, i) / 2^n).

    b01 = 0, b10 = 6: p = 2 * 0.5^6 = 0.03125; chi2 = (|0 - 6| - 1)^2 / 6 = 25/6.
    b01 = 1, b10 = 5 (concordant pairs add nothing): p = 2 * (C(6,0) + C(6,1)) / 64 = 14/64 = 0.21875;
    chi2 = (4 - 1)^2 / 6 = 1.5.
    b01 = b10 = 3: 2 * (1 + 6 + 15 + 20) / 64 = 84/64 > 1, so p = 1; chi2 = 0 (the correction is clipped).
    """
    six = mcnemar([True] * 6, [False] * 6)
    assert (six["n"], six["b01"], six["b10"]) == (6, 0, 6)
    assert six["p_value"] == pytest.approx(0.03125, abs=1e-15)
    assert six["chi2"] == pytest.approx(25 / 6) and six["chi2_p_value"] == pytest.approx(math.erfc(math.sqrt(25 / 12)))
    a = [False] + [True] * 5 + [True, True, False, False]
    b = [True] + [False] * 5 + [True, True, False, False]
    one_five = mcnemar(a, b)
    assert (one_five["n"], one_five["b01"], one_five["b10"]) == (10, 1, 5)
    assert one_five["p_value"] == pytest.approx(0.21875, abs=1e-15) and one_five["chi2"] == pytest.approx(1.5)
    swapped = mcnemar(b, a)
    assert (swapped["b01"], swapped["b10"], swapped["p_value"]) == (5, 1, one_five["p_value"])
    even = mcnemar([True] * 3 + [False] * 3, [False] * 3 + [True] * 3)
    assert (even["p_value"], even["chi2"], even["chi2_p_value"]) == (1.0, 0.0, 1.0)
    same = mcnemar([True, False], [True, False])
    assert (same["b01"], same["b10"], same["p_value"], same["chi2"]) == (0, 0, 1.0, 0.0)
    assert mcnemar([], [])["p_value"] == 1.0
    with pytest.raises(ValueError, match="paired"):
        mcnemar([True], [True, False])


def test_mcnemar_limits():
    """A huge one-sided difference underflows to p = 0 without error; with many pairs the exact p nears chi2's."""
    assert mcnemar([True] * 1100, [False] * 1100)["p_value"] == 0.0
    big = mcnemar([False] * 40 + [True] * 60, [True] * 40 + [False] * 60)  # b01 = 40, b10 = 60
    assert big["p_value"] == pytest.approx(big["chi2_p_value"], abs=0.01) and 0.05 < big["p_value"] < 0.07


def _eval(model: str, prompts: list[str], **outcomes: list[bool]) -> dict:
    items = [{"id": i, "prompt": p} | {m: v[i] for m, v in outcomes.items()} for i, p in enumerate(prompts)]
    metrics = {m: Rate(sum(v), len(v)).as_dict() for m, v in outcomes.items()}
    diversity = {"metrics": {"self_bleu": {"value": 0.5}}, "items": []}
    return {"model": model, "suites": {"arithmetic": {"metrics": metrics, "items": items}, "diversity": diversity}}


def test_compare_on_hand_written_evals():
    """accuracy: a = 2/6, b = 6/6, b01 = 4, b10 = 0, so p = 2 / 2^4 = 0.125; format is the same on every item: p = 1."""
    prompts = [f"q{i}" for i in range(6)]
    a = _eval("a", prompts, accuracy=[True, True, False, False, False, False], format=[True] * 3 + [False] * 3)
    b = _eval("b", prompts, accuracy=[True] * 6, format=[True] * 3 + [False] * 3)
    b["suites"]["only_b"] = b["suites"]["arithmetic"]
    result = compare(a, b)
    assert (result["a"], result["b"], result["skipped"]) == ("a", "b", ["diversity", "only_b"])
    accuracy = result["suites"]["arithmetic"]["accuracy"]
    assert accuracy["a"]["k"] == 2 and accuracy["b"]["k"] == 6
    assert accuracy["difference"] == pytest.approx(4 / 6)
    assert (accuracy["mcnemar"]["b01"], accuracy["mcnemar"]["b10"]) == (4, 0)
    assert accuracy["mcnemar"]["p_value"] == pytest.approx(0.125, abs=1e-15)
    fmt = result["suites"]["arithmetic"]["format"]
    assert fmt["difference"] == 0 and fmt["mcnemar"]["p_value"] == 1.0


def test_compare_refuses_different_items():
    a = _eval("a", ["q0", "q1"], accuracy=[True, False])
    with pytest.raises(ValueError, match=r"suite 'arithmetic'.*same items"):
        compare(a, _eval("b", ["q0", "other"], accuracy=[True, False]))
    with pytest.raises(ValueError, match="suite 'arithmetic'"):
        compare(a, _eval("b", ["q0"], accuracy=[True]))


def test_run_writes_eval_json_with_a_paired_comparison_of_two_tiny_models(qwen_run, llama_eval):
    assert qwen_run["model"] == "tiny-random-qwen2" and list(qwen_run["suites"]) == ["arithmetic", "refusal"]
    assert qwen_run["config"]["suites"] == ["arithmetic", "refusal"]
    comparison = qwen_run["comparison"]
    assert (comparison["a"], comparison["b"]) == ("tiny-random-llama", "tiny-random-qwen2")
    assert set(comparison["suites"]) == {"arithmetic", "refusal"}
    assert comparison["skipped"] == sorted(set(SUITES) - {"arithmetic", "refusal"})
    for suite, metrics in comparison["suites"].items():
        assert set(metrics) == set(SUITES[suite].metrics)  # eval.json is written with sorted keys
        for metric, c in metrics.items():
            a = [row[metric] for row in llama_eval["suites"][suite]["items"]]
            b = [row[metric] for row in qwen_run["suites"][suite]["items"]]
            assert c["a"] == llama_eval["suites"][suite]["metrics"][metric]
            assert c["b"] == qwen_run["suites"][suite]["metrics"][metric]
            assert c["difference"] == pytest.approx((sum(b) - sum(a)) / LIMIT)
            assert c["mcnemar"] == mcnemar(a, b)
    table = format_table(qwen_run)
    assert "arithmetic     accuracy" in table and "McNemar p=" in table
