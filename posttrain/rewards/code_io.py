"""Code verification by stdin/stdout cases (verifier "code_io"): competitive-programming style tasks.

`task.tests` is a list of cases, each `{"input": str, "output": str}` (or a two-item list). The completion's program
(extracted as in `posttrain.rewards.code`: the last python block before the stop string, after
`metadata["prompt"]` when that holds code) runs in a fresh bubblewrap sandbox once per case, with the case's input
on stdin. Its stdout is compared on the host with the expected output by the task's checker,
`metadata["checker"]` (default "tokens"), from `CHECKERS`:
- "tokens": equal after whitespace normalisation (split on any whitespace);
- "lines": equal line by line after trailing whitespace and trailing blank lines are dropped;
- "float": token by token; where the expected token is a decimal number (a point or an exponent: 0.5, 1e-3) the
  output's token is equal within FLOAT_TOLERANCE (relative or absolute), every other token (integers too) exactly.

Why this cannot be faked: the expected outputs never enter the sandbox (each run sees one case's input alone), and
the comparison happens in posttrain's process on the captured stdout. Exit status, stderr and anything the program
does besides printing are ignored except that a non-zero exit status or a timeout fails the case. What it does not
guarantee: a program that prints the right answers passes, however it computes them.

Reward: 1.0 when every case passes, else 0.0 (the run stops at the first failing case); with
`partial_credit=True` (or a task whose record has `"partial_credit": true`), every case runs and the reward is
the fraction that passed. A task with no cases is the
failure "no_tests", never a pass. `Score.failure` is the first failing case's failure; `metrics` has "correct" (all
passed), "cases_passed" (the fraction), "sandbox_s" and `failure/<name>` for every name in FAILURES.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

from posttrain.rewards.code import DEFAULT_LIMITS, SandboxedVerifier, assemble_program
from posttrain.sandbox import Sandbox, SandboxLimits, SandboxResult
from posttrain.text import STOP_STRINGS
from posttrain.types import RLTask, Score

FAILURES = (
    "no_code",  # the completion holds no program
    "no_tests",  # the task has no cases: nothing was checked, so nothing passed
    "wrong_answer",  # the output differs from the expected one under the task's checker
    "runtime_error",  # the program exited with a non-zero status (an exception, sys.exit(1), a signal)
    "timeout",  # still running after the sandbox's wall-clock limit
)
FLOAT_TOLERANCE = 1e-6


def _tokens_equal(expected: str, actual: str) -> bool:
    return expected.split() == actual.split()


def _lines_equal(expected: str, actual: str) -> bool:
    def lines(text: str) -> list[str]:
        return [line.rstrip() for line in text.rstrip().splitlines()]

    return lines(expected) == lines(actual)


def _float_or_none(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        return None


def _is_decimal(token: str) -> bool:
    """Whether an expected token is a finite decimal number written with a point or an exponent (1.5, 2e-3): the
    only tokens the float checker compares with tolerance. Integers, nan, inf and `1_000` must match exactly."""
    return bool(re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+)", token))


def _floats_close(expected: str, actual: str) -> bool:
    wanted, got_tokens = expected.split(), actual.split()
    if len(wanted) != len(got_tokens):
        return False
    for want, got in zip(wanted, got_tokens, strict=True):
        want_f, got_f = _float_or_none(want), _float_or_none(got)
        if want_f is None or got_f is None or not _is_decimal(want):  # integers and words compare exactly
            if want != got:
                return False
        elif not math.isclose(want_f, got_f, rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE):
            return False
    return True


CHECKERS: dict[str, Callable[[str, str], bool]] = {
    "tokens": _tokens_equal,
    "lines": _lines_equal,
    "float": _floats_close,
}


def io_cases(task: RLTask) -> list[tuple[str, str]]:
    """`task.tests` as (input, expected output) pairs; ValueError when a case is not two strings."""
    tests = task.tests if task.tests is not None else []
    if not isinstance(tests, Sequence) or isinstance(tests, str):
        raise ValueError(f"code_io needs task.tests as a list of cases; the task from {task.source} has {tests!r}")
    cases = []
    for i, case in enumerate(tests):
        pair = (case.get("input"), case.get("output")) if isinstance(case, dict) else tuple(case)
        if len(pair) != 2 or not all(isinstance(part, str) for part in pair):
            raise ValueError(f"case {i} of the task from {task.source} is not {{'input': str, 'output': str}}")
        cases.append(pair)
    return cases


def checker_of(task: RLTask) -> Callable[[str, str], bool]:
    """The task's output checker, by name (`metadata["checker"]`, default "tokens")."""
    name = task.metadata.get("checker", "tokens")
    if name not in CHECKERS:
        raise ValueError(f"unknown checker {name!r} (task from {task.source}); known: {', '.join(CHECKERS)}")
    return CHECKERS[name]


def case_failure(result: SandboxResult, expected: str, checker: Callable[[str, str], bool]) -> str | None:
    """None when one run passed its case, else the failure's name."""
    if result.timed_out:
        return "timeout"
    if result.exit_code != 0:
        return "runtime_error"
    return None if checker(expected, result.stdout) else "wrong_answer"


def _score(failure: str | None, passed: int, total: int, partial: bool, duration_s: float) -> Score:
    fraction = passed / total if total else 0.0
    reward = fraction if partial else float(failure is None)
    metrics = {"correct": float(failure is None), "cases_passed": fraction, "sandbox_s": duration_s}
    return Score(reward, metrics | {f"failure/{f}": float(f == failure) for f in FAILURES}, failure)


class CodeIOVerifier(SandboxedVerifier):
    """Reward from running the completion's program on each stdin case and checking its stdout on the host."""

    def __init__(
        self,
        limits: SandboxLimits = DEFAULT_LIMITS,
        max_workers: int = 4,
        partial_credit: bool = False,
        stop_strings: Sequence[str] = STOP_STRINGS,
        python: str | None = None,
    ):
        self.sandbox = Sandbox(limits, python)  # raises SandboxUnavailable now, not at the first score
        self.max_workers, self.partial_credit, self.stop_strings = max_workers, partial_credit, tuple(stop_strings)

    def score(self, task: RLTask, completion: str) -> Score:
        """Run the program once per case (stopping at the first failure unless partial credit is on)."""
        cases, checker = io_cases(task), checker_of(task)
        partial = self.partial_credit or bool(task.metadata.get("partial_credit"))
        program = assemble_program(task, completion, self.stop_strings)
        if program is None:
            return _score("no_code", 0, len(cases), partial, 0.0)
        if not cases:
            return _score("no_tests", 0, 0, partial, 0.0)
        first_failure, passed, duration_s = None, 0, 0.0
        for stdin, expected in cases:
            result = self.sandbox.run(program, stdin=stdin)
            duration_s += result.duration_s
            failure = case_failure(result, expected, checker)
            passed += failure is None
            first_failure = first_failure or failure
            if failure and not partial:
                break
        return _score(first_failure, passed, len(cases), partial, duration_s)
