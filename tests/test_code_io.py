"""The stdin/stdout code verifier ("code_io") against real sandboxed runs, and its checkers by hand."""

from __future__ import annotations

import dataclasses

import pytest

from posttrain.data import DataError, parse_record
from posttrain.rewards.code_io import CHECKERS, FAILURES, CodeIOVerifier
from posttrain.rewards.route import build_verifier
from posttrain.sandbox import SandboxLimits
from posttrain.types import RLTask, Source

CASES = [{"input": "2 3\n", "output": "5\n"}, {"input": "10 -4\n", "output": "6"}, ["0 0", "0"]]
TASK = RLTask(prompt=[{"role": "user", "content": "Add two integers."}], verifier="code_io", tests=CASES)
SUM = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"


@pytest.fixture(scope="module")
def verifier():
    return CodeIOVerifier(limits=SandboxLimits(timeout_s=1.0, cpu_s=5), max_workers=2)


def test_a_correct_program_passes_every_case(verifier):
    score = verifier.score(TASK, SUM)
    assert score.reward == 1.0 and score.failure is None and score.metrics["cases_passed"] == 1.0, score
    assert set(score.metrics) == {"correct", "cases_passed", "sandbox_s"} | {f"failure/{f}" for f in FAILURES}


CASES_AND_FAILURES = [
    ("print(5)", "wrong_answer"),  # right on the first case only
    ("import sys\nprint('5')\nprint('PASS', file=sys.stderr)\nsys.exit(0)", "wrong_answer"),
    ("a, b = map(int, input().split())\nprint(a + b)\nraise SystemExit(1)", "runtime_error"),
    ("raise ValueError('no')", "runtime_error"),
    ("while True:\n    pass", "timeout"),
    ("print('ALL TESTS PASSED')", "wrong_answer"),
    ("", "no_code"),
]


@pytest.mark.parametrize(("program", "failure"), CASES_AND_FAILURES)
def test_failures_are_named_and_score_zero(verifier, program, failure):
    score = verifier.score(TASK, f"```python\n{program}\n```" if program else "")
    assert score.reward == 0.0 and score.failure == failure and score.metrics[f"failure/{failure}"] == 1.0, score


def test_zero_cases_is_a_failure_never_a_pass(verifier):
    empty = RLTask(prompt=TASK.prompt, verifier="code_io", tests=[])
    score = verifier.score(empty, SUM)
    assert score.reward == 0.0 and score.failure == "no_tests", score
    with pytest.raises(DataError, match="tests"):  # and rl data without cases does not load
        parse_record({"prompt": "Add.", "verifier": "code_io", "tests": []}, "rl", Source("t.jsonl", 1))


def test_partial_credit_is_the_fraction_of_cases_passed():
    partial = CodeIOVerifier(limits=SandboxLimits(timeout_s=1.0, cpu_s=5), partial_credit=True)
    score = partial.score(TASK, "```python\nprint(5)\n```")  # right on 1 of 3
    assert score.reward == pytest.approx(1 / 3) and score.failure == "wrong_answer", score
    assert partial.score(TASK, SUM).reward == 1.0


def test_checkers():
    assert CHECKERS["tokens"]("1 2\n3\n", "1  2 3") and not CHECKERS["tokens"]("1 2", "1 2 3")
    assert CHECKERS["lines"]("a b\nc\n", "a b  \nc\n\n") and not CHECKERS["lines"]("a b\nc", "a\nb c")
    assert CHECKERS["float"]("0.3333333 x", "0.33333331 x") and not CHECKERS["float"]("0.33", "0.34")
    assert not CHECKERS["float"]("1.0", "1.0 2.0") and not CHECKERS["float"]("x", "y")
    # integers, nan and inf get no tolerance: 1000001 is not 1000000, however close relatively
    assert not CHECKERS["float"]("1000000", "1000001") and not CHECKERS["float"]("nan", "nan0")
    assert CHECKERS["float"]("1e6", "1000000.0000001") and not CHECKERS["float"]("7", "7.0000001")


def test_the_float_checker_is_chosen_per_task(verifier):
    task = RLTask(
        prompt=[{"role": "user", "content": "Print 1/3."}],
        verifier="code_io",
        tests=[{"input": "", "output": "0.333333333"}],
        metadata={"checker": "float"},
    )
    assert verifier.score(task, "```python\nprint(1 / 3)\n```").reward == 1.0
    assert verifier.score(task, "```python\nprint(0.33)\n```").failure == "wrong_answer"


def test_code_io_is_routed_by_name():
    assert isinstance(build_verifier("code_io"), CodeIOVerifier)


def test_a_task_can_ask_for_partial_credit():
    verifier = CodeIOVerifier(limits=SandboxLimits(timeout_s=1.0, cpu_s=5))
    task = dataclasses.replace(TASK, metadata={**TASK.metadata, "partial_credit": True})
    assert verifier.score(TASK, "```python\nprint(5)\n```").reward == 0.0
    assert 0.0 < verifier.score(task, "```python\nprint(5)\n```").reward < 1.0
