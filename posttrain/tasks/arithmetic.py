"""Integer arithmetic and word problems as `RLTask`s (verifier "math"), with fixed, disjoint train / held-out splits.

The problems come from `posttrain.tasks.problems` (the generator the demo mix uses too):
expressions with + - * and parentheses such as `(3 + 4) * 5`, phrased several ways ("What is ...?", "Compute ..."),
and about 40% short word problems; every answer, and every intermediate step, is a whole number >= 0.

Splits: a problem belongs to one split for good, fixed by its key alone (template and expression, not phrasing or
names: `MathProblem.key`). `split_of` hashes the key, and HELDOUT_PERCENT of all keys are held-out. So train and
held-out never share a problem, whatever `n` and `seed` each was drawn with; the seed only picks which problems of
the split are drawn (each split has its own RNG stream), and problems within one call are distinct.

The demo's own mix splits its math by draw order, not by this hash: a problem in its SFT train file or its
`heldout_arithmetic.jsonl` may be in either split here.
"""

from __future__ import annotations

import hashlib
import random

from posttrain.tasks import boxed_prompt
from posttrain.tasks.problems import MathProblem, draw_math
from posttrain.types import RLTask

SPLITS = ("train", "heldout")
HELDOUT_PERCENT = 20  # share of problem keys reserved for the held-out split


def split_of(key: str) -> str:
    """ "train" or "heldout" for a problem key: a stable hash (not Python's salted `hash`), HELDOUT_PERCENT held out."""
    bucket = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % 100
    return "heldout" if bucket < HELDOUT_PERCENT else "train"


def arithmetic_problems(n: int, split: str = "train", seed: int = 0) -> list[MathProblem]:
    """`n` distinct problems of `split`, the same for the same arguments."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of: {', '.join(SPLITS)}")
    rng = random.Random(f"posttrain.tasks.arithmetic:{seed}:{split}")
    seen: set[str] = set()  # every key drawn, either split, so none is drawn twice
    problems: list[MathProblem] = []
    while len(problems) < n:
        (problem,) = draw_math(rng, 1, seen)  # raises once the templates run out of new problems
        if split_of(problem.key) == split:
            problems.append(problem)
    return problems


def arithmetic_task(problem: MathProblem, split: str) -> RLTask:
    """The task for one problem: the boxed-answer prompt, verifier "math", the answer as a string."""
    metadata = {"source": problem.source, "expr": problem.expr, "split": split}
    return RLTask(prompt=boxed_prompt(problem.question), verifier="math", answer=str(problem.answer), metadata=metadata)


def arithmetic_tasks(n: int, split: str = "train", seed: int = 0) -> list[RLTask]:
    """`n` arithmetic and word-problem tasks of `split` ("train" or "heldout"); see the module docstring."""
    return [arithmetic_task(problem, split) for problem in arithmetic_problems(n, split, seed)]
