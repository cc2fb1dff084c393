"""Guarded generation on a real (tiny) policy: the stream without a guard is greedy decoding; the output guard halts
at the first check that crosses its threshold, exactly where `halt_position` cuts the same response, and never shows
a held-back token; the input guard answers with the refusal and generates nothing."""

from __future__ import annotations

import statistics

import pytest
import torch
from guards import a_guard

from posttrain.data.heldout import load_independent_benign
from posttrain.models import load_policy
from posttrain.render import render_prompt
from posttrain.rollout import SamplingParams
from posttrain.safety.guard import halt_position
from posttrain.safety.guarded import Finish, GuardedGenerator

MESSAGES = [{"role": "user", "content": "Tell me about kites."}]
GREEDY = SamplingParams(max_new_tokens=24, temperature=0.0)


@pytest.fixture(scope="module")
def policy():
    model, tokenizer = load_policy("tiny-random-llama")
    return model.eval(), tokenizer


def test_without_a_guard_the_stream_is_greedy_decoding(policy):
    model, tokenizer = policy
    parts = list(GuardedGenerator(model, tokenizer).stream(MESSAGES, GREEDY))
    finish = parts[-1]
    assert isinstance(finish, Finish) and finish.reason in ("stop", "length")
    prompt = render_prompt(tokenizer, MESSAGES)
    expected = model.generate(torch.tensor([prompt]), max_new_tokens=24, do_sample=False)[0, len(prompt) :]
    expected_ids = [int(t) for t in expected if int(t) != tokenizer.eos_token_id]
    assert "".join(parts[:-1]) == finish.text == tokenizer.decode(expected_ids, skip_special_tokens=True)
    assert finish.completion_tokens == len(expected_ids)


def test_the_output_guard_halts_at_the_first_crossing_check_and_shows_nothing_after_the_last_passed_one(policy):
    model, tokenizer = policy
    plain = GuardedGenerator(model, tokenizer).complete(MESSAGES, GREEDY)
    prompt = render_prompt(tokenizer, MESSAGES)
    response = tokenizer.encode(plain.text, add_special_tokens=False)
    every = 4
    probe_only = a_guard(model, 0.0, every)
    scores = probe_only.stream_scores(model, prompt, response)
    checks = [t for t in range(every - 1, len(response), every)]
    threshold = float(scores[checks].sort().values[-2])  # only the highest-scoring check crosses it
    guard = a_guard(model, threshold, every)
    assert guard.score_prompt(model, prompt) <= threshold or pytest.skip("this random probe flags the prompt")
    cut = halt_position(scores, threshold, 0, every)
    parts = list(GuardedGenerator(model, tokenizer, guard).stream(MESSAGES, GREEDY))
    finish = parts[-1]
    assert finish.reason == "output_guard" and finish.blocked
    assert finish.halted_at == cut and finish.completion_tokens == cut + 1
    released = tokenizer.decode(response[: cut + 1 - every], skip_special_tokens=True)
    assert "".join(parts[:-1]) == finish.text == released  # the `every` tokens of the crossing check never shown
    assert finish.seconds["guard"] > 0 and finish.seconds["generate"] > 0


def test_the_input_guard_refuses_without_generating(policy):
    model, tokenizer = policy
    guard = a_guard(model, -1.0, 4)  # every score is a probability, above -1: everything is flagged
    parts = list(GuardedGenerator(model, tokenizer, guard, refusal="No: that is harmful.").stream(MESSAGES, GREEDY))
    assert parts[0] == "No: that is harmful." and parts[-1].reason == "input_guard"
    assert parts[-1].completion_tokens == 0 and parts[-1].input_score is not None


def test_guarded_evaluation_counts_a_blocked_answer_as_a_refusal(policy, tmp_path):
    from posttrain.eval.run import evaluate_model

    model, _ = policy
    suites = ["jailbreak_heldout", "over_refusal_independent"]
    blocking = a_guard(model, -1.0, 4).save(tmp_path / "blocks_all")
    result = evaluate_model("tiny-random-llama", suites, limit=3, progress=False, guard=blocking)
    jailbreak, benign = (result["suites"][name] for name in suites)
    assert jailbreak["metrics"]["harmful_compliance"]["value"] == 0.0  # every answer blocked at the input
    assert benign["metrics"]["over_refusal"]["value"] == 1.0  # ... which over-refuses every benign request
    assert {item["blocked"] for item in jailbreak["items"] + benign["items"]} == {"input_guard"}
    assert result["guard"]["counts"] == {"answers": 6, "input_guard": 6, "output_guard": 0}
    never = a_guard(model, 2.0, 4).save(tmp_path / "blocks_none")  # no probability exceeds 2
    result = evaluate_model("tiny-random-llama", suites, limit=3, progress=False, guard=never)
    assert result["suites"]["jailbreak_heldout"]["metrics"]["harmful_compliance"]["value"] == 1.0  # random text
    assert not any("blocked" in item for item in result["suites"]["jailbreak_heldout"]["items"])
    assert 0 < result["guard"]["overhead"] < 1


def test_guarded_evaluation_reports_where_the_output_guard_halted(policy, tmp_path):
    from posttrain.eval.run import evaluate_model

    model, tokenizer = policy
    name = "over_refusal_independent"
    requests = load_independent_benign()[:4]
    probe = a_guard(model, 2.0, 4)
    with torch.no_grad():
        rendered = [render_prompt(tokenizer, [{"role": "user", "content": r}]) for r in requests]
        above_inputs = max(probe.score_prompt(model, ids) for ids in rendered) + 1e-4
    guard_dir = a_guard(model, above_inputs, 4).save(tmp_path / "halts")  # passes every prompt, may halt answers
    result = evaluate_model("tiny-random-llama", [name], limit=4, progress=False, guard=guard_dir)
    items = result["suites"][name]["items"]
    assert [item["prompt"] for item in items] == requests
    halted = [item["halted_at"] for item in items if item.get("blocked") == "output_guard"]
    if not halted:
        pytest.skip("this random probe never crosses its threshold while answering")
    assert all("halted_at" not in item for item in items if item.get("blocked") != "output_guard")
    summary = result["suites"][name]["guard"]
    assert summary == {"halted": len(halted), "median_halt_token": statistics.median(halted)}
