"""Integer arithmetic and word problems: hand-written templates and the generator that fills them.

Every answer, and every intermediate step, is a whole number >= 0 (`whole_value` rejects the rest). The demo mix
(`posttrain.demo.mix`) and the RL tasks (`posttrain.tasks.arithmetic`) both draw from here.
"""

from __future__ import annotations

import ast
import operator
import random
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

WORD_PROBLEM_SHARE = 0.4  # fraction of math problems that are word problems


@dataclass(frozen=True)
class MathTemplate:
    """A problem family: slots {a} {b} {c} are drawn from `ranges`; {name} {friend} are names, {s} {r} results."""

    expr: str  # the computation over the slots, e.g. "({a} + {b}) * {c}"
    reasoning: str  # one or two short sentences; may use {s} (the value of `inner`) and {r} (the final result)
    ranges: Mapping[str, tuple[int, int]]  # inclusive range of each numeric slot
    question: str | None = None  # a word problem; None: the expression inside one of ARITHMETIC_PHRASINGS
    inner: str | None = None  # the first step of a two-step problem, shown as {s}


# --- arithmetic and word problems ----------------------------------------------------------------------------------

ARITHMETIC_PHRASINGS = (
    "What is {q}?",
    "Compute {q}.",
    "Calculate {q}.",
    "What is the value of {q}?",
    "Work out {q}.",
    "Find {q}.",
    "Evaluate {q}.",
)

ARITHMETIC = (
    MathTemplate("{a} + {b}", "Adding {a} and {b} gives {a} + {b} = {r}.", {"a": (2, 99), "b": (2, 99)}),
    MathTemplate("{a} - {b}", "Taking {b} away from {a} leaves {a} - {b} = {r}.", {"a": (10, 99), "b": (2, 90)}),
    MathTemplate("{a} * {b}", "Multiplying {a} by {b} gives {a} * {b} = {r}.", {"a": (2, 12), "b": (2, 12)}),
    MathTemplate(
        "({a} + {b}) * {c}",
        "First, {a} + {b} = {s}. Then {s} * {c} = {r}.",
        {"a": (1, 20), "b": (1, 20), "c": (2, 9)},
        inner="{a} + {b}",
    ),
    MathTemplate(
        "{a} * {b} + {c}",
        "First, {a} * {b} = {s}. Then {s} + {c} = {r}.",
        {"a": (2, 12), "b": (2, 9), "c": (1, 50)},
        inner="{a} * {b}",
    ),
)

NAMES = ("Ana", "Ben", "Maya", "Omar", "Lena", "Sam", "Priya", "Tom", "Zoe", "Leo", "Nia", "Kai")

WORD_PROBLEMS = (
    MathTemplate(
        "{a} + {b}",
        "{name} starts with {a} apples and picks {b} more, so {a} + {b} = {r}.",
        {"a": (5, 40), "b": (2, 30)},
        question="{name} has {a} apples and picks {b} more. How many apples does {name} have now?",
    ),
    MathTemplate(
        "({a} + {b}) * {c}",
        "The school sold {a} + {b} = {s} tickets. At {c} dollars each, that is {s} * {c} = {r} dollars.",
        {"a": (5, 30), "b": (5, 30), "c": (2, 9)},
        question=(
            "A school sold {a} tickets on Monday and {b} tickets on Tuesday. Each ticket costs {c} dollars. "
            "How many dollars did the school collect?"
        ),
        inner="{a} + {b}",
    ),
    MathTemplate(
        "{a} * {b}",
        "{name} reads {a} pages on each of {b} days, so {a} * {b} = {r} pages.",
        {"a": (5, 25), "b": (2, 9)},
        question="{name} reads {a} pages a day for {b} days. How many pages does {name} read in total?",
    ),
    MathTemplate(
        "{a} - {b}",
        "{name} spent {b} of {a} coins, so {a} - {b} = {r} coins are left.",
        {"a": (20, 90), "b": (5, 40)},
        question="{name} had {a} coins and spent {b} of them at the fair. How many coins are left?",
    ),
    MathTemplate(
        "{a} / {b}",
        "Sharing {a} cookies equally among {b} friends gives {a} / {b} = {r} each.",
        {"a": (12, 96), "b": (2, 8)},
        question="{name} baked {a} cookies and shares them equally among {b} friends. How many cookies does each friend get?",
    ),
    MathTemplate(
        "{a} - {b} + {c}",
        "After {b} people get off, {a} - {b} = {s} remain. Then {c} get on, so {s} + {c} = {r}.",
        {"a": (10, 50), "b": (2, 20), "c": (2, 20)},
        question=(
            "A bus has {a} passengers. At the next stop {b} people get off and {c} get on. "
            "How many passengers are on the bus now?"
        ),
        inner="{a} - {b}",
    ),
    MathTemplate(
        "{a} * {b} - {c}",
        "There are {a} * {b} = {s} marbles. After giving away {c}, {s} - {c} = {r} are left.",
        {"a": (2, 9), "b": (3, 12), "c": (1, 20)},
        question=(
            "{name} has {a} boxes with {b} marbles in each box and gives away {c} marbles. "
            "How many marbles does {name} have left?"
        ),
        inner="{a} * {b}",
    ),
    MathTemplate(
        "{a} * {b}",
        "{a} rows of {b} plants make {a} * {b} = {r} plants.",
        {"a": (3, 12), "b": (4, 15)},
        question="A garden has {a} rows of tomato plants with {b} plants in each row. How many tomato plants are there?",
    ),
    MathTemplate(
        "{a} + {b} * {c}",
        "{name} earns {b} * {c} = {s} dollars, so {name} ends with {a} + {s} = {r} dollars.",
        {"a": (5, 50), "b": (3, 15), "c": (2, 8)},
        question=(
            "{name} has {a} dollars and earns {b} dollars each week for {c} weeks. "
            "How many dollars does {name} have at the end?"
        ),
        inner="{b} * {c}",
    ),
    MathTemplate(
        "{a} - {b}",
        "{name} ran {a} laps and then {b} laps, so the difference is {a} - {b} = {r} laps.",
        {"a": (8, 40), "b": (2, 30)},
        question=(
            "{name} ran {a} laps on Saturday and {b} laps on Sunday. "
            "How many more laps did {name} run on Saturday than on Sunday?"
        ),
    ),
    MathTemplate(
        "{a} + {b}",
        "Together they have {a} + {b} = {r} stickers.",
        {"a": (5, 60), "b": (5, 60)},
        question="{name} has {a} stickers and {friend} has {b} stickers. How many stickers do they have together?",
    ),
    MathTemplate(
        "{a} / {b}",
        "{a} eggs in cartons of {b} fill {a} / {b} = {r} cartons.",
        {"a": (12, 96), "b": (4, 12)},
        question="A farmer collects {a} eggs and packs them into cartons of {b}. How many cartons does the farmer fill?",
    ),
)


@dataclass(frozen=True)
class MathProblem:
    """A generated problem with its integer answer and a short worked solution."""

    question: str
    expr: str  # the computation, e.g. "(3 + 4) * 5"
    answer: int
    reasoning: str
    source: str  # "arithmetic" or "word_problem"
    key: str  # identifies the problem regardless of phrasing or names, for train/eval dedup


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def whole_value(expr: str) -> int | None:
    """The value of an integer `+ - * /` expression, or None if any step is negative or not a whole number."""

    def value(node: ast.AST) -> int | None:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = value(node.left), value(node.right)
            if left is None or right is None:
                return None
            result = _OPS[type(node.op)](Fraction(left), right)
            return int(result) if result >= 0 and result.denominator == 1 else None
        raise ValueError(f"unsupported expression {expr!r}")

    return value(ast.parse(expr, mode="eval").body)


def _fill(template: MathTemplate, rng: random.Random) -> MathProblem | None:
    """One problem from `template`, or None if the drawn numbers give a negative or fractional step."""
    slots = {name: rng.randint(lo, hi) for name, (lo, hi) in template.ranges.items()}
    name, friend = rng.sample(NAMES, 2)
    expr = template.expr.format(**slots)
    answer = whole_value(expr)
    inner = whole_value(template.inner.format(**slots)) if template.inner else None
    if answer is None or (template.inner and inner is None):
        return None
    values = {**slots, "name": name, "friend": friend, "s": inner, "r": answer}
    if template.question is None:
        question, source = rng.choice(ARITHMETIC_PHRASINGS).format(q=expr), "arithmetic"
    else:
        question, source = template.question.format(**values), "word_problem"
    reasoning = template.reasoning.format(**values)
    return MathProblem(question, expr, answer, reasoning, source, key=f"{template.question}|{expr}")


def draw_math(rng: random.Random, n: int, seen: set[str]) -> list[MathProblem]:
    """`n` problems whose keys are not in `seen` (which is updated), about WORD_PROBLEM_SHARE of them word problems."""
    out: list[MathProblem] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 200 * n + 1000:  # far beyond what rejection and dedup need at these sizes
            raise ValueError(f"could not draw {n} distinct math problems")
        family = WORD_PROBLEMS if rng.random() < WORD_PROBLEM_SHARE else ARITHMETIC
        problem = _fill(rng.choice(family), rng)
        if problem is not None and problem.key not in seen:
            seen.add(problem.key)
            out.append(problem)
    return out


def math_solution(problem: MathProblem) -> str:
    """The assistant turn: the short reasoning, then the one fixed answer format."""
    return f"{problem.reasoning} The answer is \\boxed{{{problem.answer}}}."
