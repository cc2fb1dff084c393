"""The procedural function tasks: deterministic, disjoint splits, rl records that load back, and hidden tests that
the references pass and wrong programs fail, scored by the real sandboxed code verifier."""

from __future__ import annotations

import dataclasses

import pytest

from posttrain.data import load_records
from posttrain.rewards.code import CodeVerifier
from posttrain.tasks.function_problems import FAMILIES
from posttrain.tasks.functions import function_problems, function_tasks, reference_solution
from posttrain.tasks.humaneval import assert_trainable
from posttrain.tasks.jsonl import write_tasks


@pytest.fixture(scope="module")
def verifier():
    return CodeVerifier(max_workers=2)


def test_the_same_seed_gives_the_same_tasks_and_another_seed_others():
    assert function_tasks(20, "train", seed=3) == function_tasks(20, "train", seed=3)
    assert function_tasks(20, "train", seed=3) != function_tasks(20, "train", seed=4)
    assert function_tasks(5, "train", seed=3) == function_tasks(20, "train", seed=3)[:5]


def test_train_and_heldout_never_share_a_parameterisation():
    train = {p.key for seed in (0, 1) for p in function_problems(300, "train", seed)}
    heldout = {p.key for seed in (0, 1) for p in function_problems(80, "heldout", seed)}
    assert not train & heldout
    assert {key.split("|")[0] for key in heldout} >= {"count_multiples", "polynomial", "clip_values"}
    assert len({p.key for p in function_problems(300, "train", 0)}) == 300  # distinct within a call
    with pytest.raises(ValueError, match="unknown split"):
        function_problems(1, "test")


def test_tasks_are_trainable_rl_records_that_load_back(tmp_path):
    tasks = function_tasks(6, "heldout", seed=1)
    assert_trainable(tasks)
    loaded = list(load_records(write_tasks(tmp_path / "functions.jsonl", tasks), "rl").records)
    assert [dataclasses.replace(t, source=None) for t in loaded] == tasks
    task = tasks[0]
    assert task.verifier == "code" and task.metadata["entry_point"] in task.tests
    assert task.metadata["entry_point"] in task.prompt[0].content and "EXPECTED" not in task.prompt[0].content


def test_references_pass_and_wrong_programs_fail(verifier):
    problems = function_problems(len(FAMILIES), "train", seed=7) + function_problems(6, "heldout", seed=7)
    tasks = [task for split, n in (("train", len(FAMILIES)), ("heldout", 6)) for task in function_tasks(n, split, 7)]
    right = [reference_solution(problem) for problem in problems]
    constant = [f"```python\ndef {t.metadata['entry_point']}(*args):\n    return None\n```" for t in tasks]
    scores = verifier.score_batch(tasks * 2, right + constant)
    assert [s.failure for s in scores[: len(tasks)]] == [None] * len(tasks), scores
    assert [s.failure for s in scores[len(tasks) :]] == ["tests_failed"] * len(tasks)


def test_a_neighbouring_parameterisation_fails(verifier):
    """The reference of the same family with other parameters is a plausible wrong answer: it must fail."""
    problem = next(p for p in function_problems(40, "train", seed=2) if p.family == "count_multiples")
    other = dataclasses.replace(problem, params={"k": problem.params["k"] % 12 + 2 if problem.params["k"] != 12 else 5})
    task = next(t for t in function_tasks(40, "train", seed=2) if t.metadata["key"] == problem.key)
    assert verifier.score(task, reference_solution(problem)).reward == 1.0
    assert verifier.score(task, reference_solution(other)).failure == "tests_failed"


def test_the_cli_writes_a_task_set(tmp_path):
    from posttrain.cli import main

    output = tmp_path / "functions.jsonl"
    assert main(["tasks", "functions", "--split", "heldout", "--n", "4", "--seed", "2", "--output", str(output)]) == 0
    loaded = [dataclasses.replace(t, source=None) for t in load_records(output, "rl").records]
    assert loaded == function_tasks(4, "heldout", seed=2)
