"""Judges (verifier, reward function, LM over HTTP and local) and the diversity metrics."""

from __future__ import annotations

import time

import pytest

from posttrain.eval.diversity import bleu, distinct_n, diversity_metrics, self_bleu
from posttrain.rewards.judge import (
    HFChatLM,
    LMJudge,
    LMUnavailable,
    OpenAICompatibleLM,
    RewardFunctionJudge,
    VerifierJudge,
)
from posttrain.rewards.math import MathVerifier
from posttrain.types import Message, RLTask

TASK = RLTask(prompt=[{"role": "user", "content": "What is 2 + 3?"}], verifier="math", answer="5")


def test_verifier_judge_uses_the_math_reward_and_records_failures():
    """The round judge is the RL reward (MathVerifier): a hedge and a missing answer are named failures."""
    scores = VerifierJudge(MathVerifier()).score_group(
        TASK, ["so \\boxed{5}", "\\boxed{5} no wait \\boxed{6}", "five", "\\boxed{x}"]
    )
    assert [s.reward for s in scores] == [1.0, 0.0, 0.0, 0.0]
    assert [s.failure for s in scores] == [None, "multiple_answers", "no_answer", None]


def test_reward_function_judge():
    judge = RewardFunctionJudge(lambda task, text: -len(text))
    assert [s.reward for s in judge.score_group(TASK, ["ab", "abcd"])] == [-2.0, -4.0]


def _scripted(script: list[str]):
    """A responder playing `script`: "500"/"429" an HTTP error, "slow" a 1 s delay, "bad" a malformed body,
    "ok:TEXT" the reply TEXT; "Score: 7" once the script is spent."""
    script = list(script)

    def respond(body: dict):
        action = script.pop(0) if script else "ok:Score: 7"
        if action in ("500", "429"):
            return int(action)
        if action == "slow":
            time.sleep(1.0)
        if action == "bad":
            return b'{"oops": 1}'
        return action.split(":", 1)[1] if ":" in action else "Score: 7"

    return respond


@pytest.fixture
def server(request, chat_server):
    return chat_server(_scripted(request.param))


@pytest.mark.parametrize("server", [["500", "ok:Looks right. Score: 9"]], indirect=True)
def test_openai_compatible_judge_retries_a_server_error(server):
    lm = OpenAICompatibleLM(server.url, "judge", retries=2, backoff_s=0.01)
    (score,) = LMJudge(lm).score_group(TASK, ["\\boxed{5}"])
    assert score.reward == pytest.approx((9 - 1) / 9) and score.failure is None
    assert len(server.requests) == 2 and server.requests[1]["model"] == "judge"
    assert "<reply>\n\\boxed{5}\n</reply>" in server.requests[1]["messages"][0]["content"]


@pytest.mark.parametrize("server", [["slow", "slow", "slow"]], indirect=True)
def test_openai_compatible_judge_times_out_and_records_the_failure(server):
    lm = OpenAICompatibleLM(server.url, "judge", timeout_s=0.2, retries=1, backoff_s=0.01)
    with pytest.raises(LMUnavailable, match="2 attempt"):
        lm.complete([Message("user", "hi")])
    (score,) = LMJudge(OpenAICompatibleLM(server.url, "judge", timeout_s=0.2, retries=0)).score_group(TASK, ["x"])
    assert score.reward == 0.0 and score.failure.startswith("judge_unavailable")


@pytest.mark.parametrize("server", [["ok:I refuse to grade.", "ok:Score: 10/10"]], indirect=True)
def test_lm_judge_unparseable_is_a_failure_not_a_silent_zero(server):
    judge = LMJudge(OpenAICompatibleLM(server.url, "judge"))
    first, second = judge.score_group(TASK, ["a", "b"])
    assert first.failure == "unparseable_judgement" and second.reward == 1.0


def test_local_hf_judge_runs(tiny):
    model, tokenizer = tiny
    (score,) = LMJudge(HFChatLM(model, tokenizer, max_new_tokens=8)).score_group(TASK, ["\\boxed{5}"])
    assert score.failure in (None, "unparseable_judgement")  # a random tiny model rarely writes "Score: N"


def test_distinct_n_closed_form():
    """'a b a b' has unigrams a,b,a,b (2 unique of 4) and bigrams ab,ba,ab (2 unique of 3)."""
    assert distinct_n(["a b a b"], 1) == pytest.approx(0.5)
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n([""], 1) == 0.0


def test_self_bleu_limits():
    same = ["the cat sat on the mat today"] * 3
    assert self_bleu([same]) == pytest.approx(1.0)
    assert self_bleu([["a b c d e", "f g h i j"]]) == 0.0
    assert bleu("the cat sat on the mat".split(), ["the cat sat on the mat".split()]) == pytest.approx(1.0)
    metrics = diversity_metrics([same, ["x y z", "p q r"]])
    assert set(metrics) == {"distinct_1", "distinct_2", "self_bleu"} and 0 < metrics["self_bleu"] < 1


@pytest.mark.parametrize("server", [["bad", "429", "ok:Score: 4"]], indirect=True)
def test_malformed_answer_is_unavailable_and_rate_limits_are_retried(server):
    lm = OpenAICompatibleLM(server.url, "judge", retries=2, backoff_s=0.01)
    with pytest.raises(LMUnavailable, match="malformed"):
        lm.complete([Message("user", "hi")])
    assert lm.complete([Message("user", "hi")]) == "Score: 4"
