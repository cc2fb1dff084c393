"""The round shape's parts that need no model: batch scoring through a group judge, the pair builder's rules, and
the rows every round writes."""

from __future__ import annotations

import pytest

from posttrain.rewards.judge import RewardFunctionJudge, VerifierJudge
from posttrain.rewards.math import MathVerifier
from posttrain.rounds import Group, best_against_worst, judge_scorer, rollout_sequence, sample_rows
from posttrain.types import Message, RLTask, Rollout, Score


def task(question: str, answer: str = "4") -> RLTask:
    return RLTask(prompt=(Message("user", question),), verifier="math", answer=answer)


def rollout(text: str, prompt: tuple[int, ...] = (1, 2), ids: tuple[int, ...] = (3, 4)) -> Rollout:
    return Rollout(prompt, ids, tuple(-0.5 for _ in ids), text, "stop")


def test_judge_scorer_judges_each_tasks_run_of_rollouts_together():
    seen = []
    judge = RewardFunctionJudge(lambda t, text: seen.append((t.prompt[0].content, text)) or float(len(text)))
    a, b = task("a"), task("b")
    scores = judge_scorer(judge)([a, a, b, b, b], [rollout(x) for x in ("x", "xx", "y", "yy", "yyy")])
    assert [s.reward for s in scores] == [1, 2, 1, 2, 3]
    assert seen == [("a", "x"), ("a", "xx"), ("b", "y"), ("b", "yy"), ("b", "yyy")]


def test_the_math_judge_is_the_rl_reward_on_a_batch():
    with MathVerifier() as verifier:
        scores = judge_scorer(VerifierJudge(verifier))([task("2+2")] * 3, [rollout(t) for t in
                                                                           ("\\boxed{4}", "4", "\\boxed{5}")])  # fmt: skip
    assert [s.reward for s in scores] == [1.0, 0.0, 0.0]
    assert [s.failure for s in scores] == [None, "no_answer", None]


def group(rewards: list[float], judged: list[bool] | None = None, lengths: list[int] | None = None) -> Group:
    judged = judged or [True] * len(rewards)
    lengths = lengths or [2] * len(rewards)
    rollouts = [rollout(f"r{i}", ids=tuple(range(n))) for i, n in enumerate(lengths)]
    scores = [Score(r, {} if j else {"judged": 0.0}, None if j else "judge_unavailable")
              for r, j in zip(rewards, judged, strict=True)]  # fmt: skip
    return Group(task("q"), rollouts, scores)


def test_best_against_worst_keeps_clear_pairs_and_counts_the_rest():
    groups = [
        group([0.0, 1.0, 0.5]),  # a pair: r1 over r0
        group([1.0, 1.0]),  # a tie
        group([0.2, 0.5]),  # margin 0.3 < 0.5
        group([1.0, 0.0, 0.0], judged=[True, False, False]),  # one judged sample: unjudged
        group([1.0, 0.0], lengths=[2, 20]),  # 2 + 20 tokens > max_length 10
        group([0.0, 0.0, 1.0], judged=[False, True, True]),  # the unjudged zero is ignored: r2 over r1
    ]
    built = best_against_worst(groups, min_margin=0.5, max_length=10)
    assert [(r["chosen"], r["rejected"]) for r in built.rows] == [("r1", "r0"), ("r2", "r1")]
    assert {k: built.stats[k] for k in ("pairs", "ties", "below_margin", "unjudged", "too_long", "failures")} == {
        "pairs": 2, "ties": 1, "below_margin": 1, "unjudged": 1, "too_long": 1, "failures": 3}  # fmt: skip
    assert built.data.sequences == [rollout_sequence(groups[0].rollouts[i]) for i in (1, 0)] + [
        rollout_sequence(groups[5].rollouts[i]) for i in (2, 1)]  # fmt: skip


def test_no_pair_at_all_is_an_error_naming_the_counts():
    with pytest.raises(ValueError, match=r"no pairs .*'ties': 1"):
        best_against_worst([group([1.0, 1.0])], min_margin=0.5, max_length=10)


def test_rollout_sequence_trains_on_the_sampled_ids_only():
    sequence = rollout_sequence(rollout("t", prompt=(5, 6, 7), ids=(8, 9)))
    assert sequence.token_ids == (5, 6, 7, 8, 9) and sequence.loss_mask == (False, False, False, True, True)


def test_sample_rows_keep_every_sample_with_its_verdict():
    rows = sample_rows([group([1.0, 0.0], judged=[True, False])])
    assert rows == [
        {"prompt": "q", "completion": "r0", "reward": 1.0, "failure": None, "finish_reason": "stop"},
        {"prompt": "q", "completion": "r1", "reward": 0.0, "failure": "judge_unavailable", "finish_reason": "stop"},
    ]
