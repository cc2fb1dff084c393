"""Procedural Python function tasks with hidden tests (verifier "code"), in fixed, disjoint train / held-out splits.

A problem is a family of `posttrain.tasks.function_problems` with drawn parameters ("count the multiples of 7",
"rotate right by 3"); its key is the family and the parameters, e.g. `count_multiples|k=7`. The prompt states the
function's name, signature and job with one worked example; the hidden tests (`task.tests`) are HIDDEN_CASES
calls with arguments drawn from the problem's own RNG stream and expected results computed by the family's
reference, written as Python literals:

    CASES = [((args...), expected), ...]
    for ARGS, EXPECTED in CASES:
        assert count_multiples(*ARGS) == EXPECTED, ARGS

`metadata`: `entry_point` (the function's name, which the code verifier proxies), `family`, `params`, `key`,
`split`, `seed`, `source` "functions". The tests reach only the candidate's sandbox's replies, never its code
(`posttrain.rewards.code`).

Splits: as in `posttrain.tasks.arithmetic`, a key belongs to one split for good (`split_of`: a stable hash,
HELDOUT_PERCENT held out), so the held-out split holds parameterisations that train never has: train and held-out
never share a problem, whatever `n` and `seed` each was drawn with. Within one call the problems are distinct; the
seed picks which. Asking for more problems than a split has raises ValueError.
"""

from __future__ import annotations

import inspect
import random
from dataclasses import dataclass
from typing import Any

from posttrain.tasks.arithmetic import SPLITS, split_of
from posttrain.tasks.function_problems import FAMILIES, FAMILY_BY_NAME, FunctionFamily
from posttrain.types import Message, RLTask

HIDDEN_CASES = 8  # calls per problem in its hidden tests
INSTRUCTION = "Reply with the whole function in one ```python code block."


@dataclass(frozen=True)
class FunctionProblem:
    """A parameterised family with its hidden cases: (arguments, expected result) pairs, and an example call."""

    family: str
    params: dict[str, Any]
    cases: tuple[tuple[tuple, Any], ...]
    example: tuple[tuple, Any]

    @property
    def key(self) -> str:
        """The family and the parameters: what identifies the problem across splits."""
        return self.family + "|" + ",".join(f"{name}={value!r}" for name, value in sorted(self.params.items()))

    @property
    def statement(self) -> str:
        """The user turn: the signature, the job, an example call, and the answer format."""
        family = FAMILY_BY_NAME[self.family]
        args, result = self.example
        call = f"{family.name}({', '.join(map(repr, args))})"
        job = family.statement.format(**self.params)
        return f"Write a Python function `{family.signature}`. {job}\n\nExample: `{call}` returns `{result!r}`.\n\n{INSTRUCTION}"

    def tests(self) -> str:
        """The hidden tests: the cases as Python literals and a loop of asserts."""
        name = FAMILY_BY_NAME[self.family].name
        cases = ",\n".join(f"    ({args!r}, {expected!r})" for args, expected in self.cases)
        return f"CASES = [\n{cases},\n]\nfor ARGS, EXPECTED in CASES:\n    assert {name}(*ARGS) == EXPECTED, ARGS\n"


def _call(family: FunctionFamily, rng: random.Random, params: dict[str, Any]) -> tuple[tuple, Any]:
    args = family.args(rng, params)
    return args, family.reference(*args, **params)


def draw_problem(family: FunctionFamily, rng: random.Random) -> FunctionProblem:
    """One problem of `family`: parameters, then the example and the hidden cases, all from `rng`."""
    params = family.params(rng)
    example = _call(family, rng, params)
    cases = tuple(_call(family, rng, params) for _ in range(HIDDEN_CASES))
    return FunctionProblem(family.name, params, cases, example)


def function_problems(n: int, split: str = "train", seed: int = 0) -> list[FunctionProblem]:
    """`n` distinct problems of `split`, the same for the same arguments."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of: {', '.join(SPLITS)}")
    rng = random.Random(f"posttrain.tasks.functions:{seed}:{split}")
    seen: set[str] = set()
    problems: list[FunctionProblem] = []
    attempts = 0
    while len(problems) < n:
        attempts += 1
        if attempts > 200 * n + 1000:
            raise ValueError(f"could not draw {n} distinct {split} function problems: the families have too few")
        problem = draw_problem(rng.choice(FAMILIES), rng)
        if problem.key not in seen and split_of(problem.key) == split:
            seen.add(problem.key)
            problems.append(problem)
    return problems


def function_task(problem: FunctionProblem, split: str, seed: int) -> RLTask:
    """The rl task for one problem: the statement as the prompt, the hidden tests, the entry point."""
    metadata = {
        "entry_point": FAMILY_BY_NAME[problem.family].name,
        "family": problem.family,
        "params": dict(problem.params),
        "key": problem.key,
        "split": split,
        "seed": seed,
        "source": "functions",
    }
    return RLTask(
        prompt=(Message("user", problem.statement),), verifier="code", tests=problem.tests(), metadata=metadata
    )


def function_tasks(n: int, split: str = "train", seed: int = 0) -> list[RLTask]:
    """`n` procedural function tasks of `split` ("train" or "heldout"); see the module docstring."""
    return [function_task(problem, split, seed) for problem in function_problems(n, split, seed)]


def reference_solution(problem: FunctionProblem) -> str:
    """A correct completion for `problem`: the family's reference and a wrapper binding the parameters (for tests)."""
    family = FAMILY_BY_NAME[problem.family]
    own = [name for name in inspect.signature(family.reference).parameters if name not in problem.params]
    bound = ", ".join([*own, *(f"{name}={value!r}" for name, value in problem.params.items())])
    return (
        f"```python\nimport string\n\n{inspect.getsource(family.reference)}\n_reference = {family.reference.__name__}\n\n\n"
        f"def {family.name}({', '.join(own)}):\n    return _reference({bound})\n```"
    )
