"""Task sources and the Reasoning Gym verifier: fixed, disjoint splits; honest scores; a JSONL round trip.

The gym tests use the installed reasoning-gym (real generators, real `score_answer`s): 20 train and 10 held-out
entries per dataset, built once. tower_of_hanoi is used only for its small question space (18 repeats in 60 draws),
which makes the train / held-out removal happen.
"""

from __future__ import annotations

import json

import pytest

from posttrain.data import load_records
from posttrain.rewards.gym import FAILURES, ReasoningGymVerifier, final_answer
from posttrain.tasks import ANSWER_INSTRUCTION
from posttrain.tasks.arithmetic import arithmetic_problems, arithmetic_tasks, split_of
from posttrain.tasks.gym import DATASETS, draw_entries, gym_splits, normalise_question, split_seed
from posttrain.tasks.jsonl import write_tasks
from posttrain.tasks.problems import whole_value
from posttrain.types import RLTask


@pytest.fixture(scope="module")
def splits():
    return gym_splits(n_train=20, n_heldout=10)


@pytest.fixture(scope="module")
def verifier():
    return ReasoningGymVerifier()


def one_task_per_dataset(splits) -> dict[str, RLTask]:
    return {t.metadata["dataset"]: t for t in splits.heldout}


# --- our arithmetic ------------------------------------------------------------------------------------------------


def test_arithmetic_splits_are_deterministic_and_disjoint_across_seeds_and_sizes():
    assert arithmetic_tasks(30, "train", seed=3) == arithmetic_tasks(30, "train", seed=3)
    assert arithmetic_tasks(30, "train", seed=3) != arithmetic_tasks(30, "train", seed=4)
    train = {p.key for seed in (0, 1) for p in arithmetic_problems(300, "train", seed)}
    heldout = {p.key for seed in (0, 2) for p in arithmetic_problems(100, "heldout", seed)}
    assert len(heldout) > 100 and not train & heldout
    assert {split_of(k) for k in train} == {"train"} and {split_of(k) for k in heldout} == {"heldout"}


def test_arithmetic_tasks_ask_for_a_box_and_carry_the_right_answer():
    tasks = arithmetic_tasks(40, "heldout", seed=0)
    assert len({t.prompt for t in tasks}) == 40
    assert {t.metadata["source"] for t in tasks} == {"arithmetic", "word_problem"}
    assert any("(" in t.metadata["expr"] for t in arithmetic_tasks(100, "train"))
    for task in tasks:
        assert task.verifier == "math" and task.prompt[0].content.endswith(ANSWER_INSTRUCTION)
        assert task.answer == str(whole_value(task.metadata["expr"]))
    with pytest.raises(ValueError, match="unknown split"):
        arithmetic_tasks(1, "test")


# --- reasoning-gym tasks -------------------------------------------------------------------------------------------


def test_gym_splits_are_deterministic_disjoint_and_counted(splits):
    assert gym_splits(n_train=20, n_heldout=10) == splits
    assert splits.report() == {
        "train": dict.fromkeys(DATASETS, 20),
        "heldout": dict.fromkeys(DATASETS, 10),
        "removed_from_train": dict.fromkeys(DATASETS, 0),
    }
    train = {normalise_question(t.metadata["entry"]["question"]) for t in splits.train}
    heldout = {normalise_question(t.metadata["entry"]["question"]) for t in splits.heldout}
    assert len(train) == 60 and len(heldout) == 30 and not train & heldout
    assert all(split_seed(d, "train", 0) != split_seed(d, "heldout", 0) for d in DATASETS)
    assert gym_splits(n_train=8, n_heldout=10, datasets=["gsm_symbolic"]).train == splits.train[20:28]


def test_held_out_questions_are_removed_from_train_and_counted():
    splits = gym_splits(n_train=30, n_heldout=30, datasets=["tower_of_hanoi"])
    train = {normalise_question(t.metadata["entry"]["question"]) for t in splits.train}
    heldout = {normalise_question(t.metadata["entry"]["question"]) for t in splits.heldout}
    assert len(splits.train) == 30 and not train & heldout
    assert splits.removed["tower_of_hanoi"] > 0
    first, _ = draw_entries("basic_arithmetic", 6, seed=7)
    skip = frozenset(normalise_question(e["question"]) for e in first[:2])
    kept, skipped = draw_entries("basic_arithmetic", 4, seed=7, exclude=skip)
    assert skipped == 2 and kept == first[2:]


def test_gym_tasks_keep_what_scoring_needs_as_json(splits):
    for task in splits.train + splits.heldout:
        entry = task.metadata["entry"]
        assert task.verifier == "reasoning_gym" and task.answer == entry["answer"]
        assert task.prompt[0].content == f"{entry['question'].strip()}\n\n{ANSWER_INSTRUCTION}"
        assert json.loads(json.dumps(dict(task.metadata))) == task.metadata


# --- the verifier --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", DATASETS)
def test_gym_verifier_scores_each_dataset(splits, verifier, dataset):
    task = one_task_per_dataset(splits)[dataset]
    gold = task.answer
    cases = {  # completion -> (reward, failure)
        f"Working... so the result is \\boxed{{{gold}}}.": (1.0, None),
        f"The final answer is {gold}.": (1.0, None),
        f"\\boxed{{{gold}}} and again \\boxed{{ {gold} }}": (1.0, None),
        f"\\boxed{{{gold}}}<|im_end|>\\boxed{{99999}}": (1.0, None),
        "\\boxed{99999}": (0.0, None),
        f"I think it is {gold}, but I will not box it.": (0.0, "no_answer"),
        "\\boxed{}": (0.0, "no_answer"),
        f"\\boxed{{99999}} or \\boxed{{{gold}}}": (0.0, "multiple_answers"),
        f"Let me think.<|im_end|>\\boxed{{{gold}}}": (0.0, "no_answer"),
        "\\boxed{４２}": (0.0, "non_ascii_digits"),
    }
    for completion, (reward, failure) in cases.items():
        score = verifier.score(task, completion)
        assert (score.reward, score.failure) == (reward, failure), completion
        assert score.metrics["correct"] == reward
        assert {f for f in FAILURES if score.metrics[f"failure/{f}"]} == ({failure} if failure else set())


def test_gym_verifier_is_binary_unless_asked_for_partial_credit(splits, verifier):
    tasks = one_task_per_dataset(splits)
    gsm_wrong = verifier.score(tasks["gsm_symbolic"], "\\boxed{99999}")
    assert gsm_wrong.reward == 0.0 and gsm_wrong.metrics["dataset_score"] == 0.01  # gsm_symbolic's own score
    task = tasks["basic_arithmetic"]
    padded = f"\\boxed{{{task.answer}0}}"  # the gold answer as a substring: the default scorer's partial credit
    expected = len(task.answer) / (len(task.answer) + 1)
    assert verifier.score(task, padded).reward == 0.0
    assert ReasoningGymVerifier(partial_credit=True).score(task, padded).reward == pytest.approx(expected)


def test_gym_verifier_records_scorer_errors_and_refuses_bad_tasks(splits, verifier):
    task = one_task_per_dataset(splits)["basic_arithmetic"]
    entry = dict(task.metadata["entry"], answer=7)  # an int: the default scorer's `7 in answer` raises TypeError
    broken = RLTask(prompt=task.prompt, verifier=task.verifier, metadata={**task.metadata, "entry": entry})
    score = verifier.score(broken, "\\boxed{8}")
    assert (score.reward, score.failure, score.metrics["failure/score_error"]) == (0.0, "score_error", 1.0)
    with pytest.raises(ValueError, match="needs metadata"):
        verifier.score(RLTask(prompt=task.prompt, verifier="reasoning_gym", answer="1"), "\\boxed{1}")
    unreviewed = RLTask(prompt=task.prompt, verifier="reasoning_gym", metadata={**task.metadata, "dataset": "n_queens"})
    with pytest.raises(ValueError, match="not among the reviewed"):
        verifier.score(unreviewed, "\\boxed{1}")
    assert ReasoningGymVerifier(max_chars=10).score(task, "x" * 11 + "\\boxed{1}").failure == "overlong"


def test_final_answer_golden_extractions():
    assert final_answer("so \\boxed{\\frac{1}{2}} is it") == ("\\frac{1}{2}", None)
    assert final_answer("Final answer: $-3$.") == ("-3", None)
    assert final_answer("\\boxed{3} = \\boxed{3}") == ("3", None)
    assert final_answer("\\boxed{84/2} = \\boxed{42}") == (None, "multiple_answers")
    assert final_answer("no answer here, 42") == (None, "no_answer")
    assert final_answer("\\boxed{1}</s>\\boxed{2}", stop_strings=("</s>",)) == ("1", None)


# --- JSONL ---------------------------------------------------------------------------------------------------------


def test_tasks_round_trip_through_jsonl(tmp_path, splits, verifier):
    tasks = [*splits.train, *splits.heldout, *arithmetic_tasks(5, "heldout")]
    path = write_tasks(tmp_path / "tasks.jsonl", tasks)
    loaded = load_records(path, "rl")
    assert loaded.skipped == () and list(loaded.records) == tasks
    assert [p.name for p in tmp_path.iterdir()] == ["tasks.jsonl"]  # the temp file was renamed over
    task = next(t for t in loaded.records if t.verifier == "reasoning_gym")
    assert verifier.score(task, f"\\boxed{{{task.answer}}}").reward == 1.0
    clash = RLTask(prompt=task.prompt, verifier="math", metadata={"answer": "shadowed"})
    with pytest.raises(ValueError, match="read back as rl fields"):
        write_tasks(tmp_path / "bad.jsonl", [clash])
    assert not (tmp_path / "bad.jsonl").exists()
