"""Families of small Python functions over lists, strings and numbers, for the procedural code tasks.

Each `FunctionFamily` is one kind of problem with parameters (the divisor of "count the multiples of k", the
shift of a Caesar cipher): `params(rng)` draws a parameterisation, `args(rng, params)` one call's arguments, and
`reference` computes the expected result as `reference(*args, **params)`. The references are ours, run in this
process only to compute expected outputs (never model code); `posttrain.tasks.functions` turns a family and its
parameters into a task with hidden tests. Every argument and result is an int, str, bool, list or tuple, so the
tests can be written as Python literals and cross the code verifier's wire as data.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FunctionFamily:
    """A problem kind: the function's name and signature, a statement with {param} slots, and its samplers."""

    name: str  # the function the candidate must define, e.g. "count_multiples"
    signature: str  # e.g. "count_multiples(numbers: list[int]) -> int"
    statement: str  # what it must do, with the parameters as {slots}
    params: Callable[[random.Random], dict[str, Any]]
    args: Callable[[random.Random, Mapping[str, Any]], tuple]
    reference: Callable[..., Any]  # reference(*args, **params)


def _ints(rng: random.Random, lo: int = -20, hi: int = 20, longest: int = 8) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(rng.randint(0, longest))]


def _word(rng: random.Random, shortest: int = 1, longest: int = 8) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(shortest, longest)))


def _text(rng: random.Random) -> str:
    return " ".join(_word(rng) for _ in range(rng.randint(0, 5)))


# --- the references: pure, standard library only ------------------------------------------------------------------


def count_multiples(numbers, k):
    return sum(1 for x in numbers if x % k == 0)


def rotate(items, k, direction):
    if not items:
        return []
    shift = (k if direction == "left" else -k) % len(items)
    return items[shift:] + items[:shift]


def clip_values(numbers, lo, hi):
    return [min(max(x, lo), hi) for x in numbers]


def every_nth(items, n, r):
    return [x for i, x in enumerate(items) if i % n == r]


def caesar(text, k):
    shifted = string.ascii_lowercase[k:] + string.ascii_lowercase[:k]
    return text.translate(str.maketrans(string.ascii_lowercase, shifted))


def count_letter(text, letter):
    return text.count(letter)


def repeat_letters(text, k):
    return "".join(ch * k for ch in text)


def digit_sum_in_base(n, base):
    total = 0
    while n:
        n, digit = divmod(n, base)
        total += digit
    return total


def window_extremes(numbers, w, kind):
    pick = max if kind == "largest" else min
    return [pick(numbers[i : i + w]) for i in range(len(numbers) - w + 1)]


def polynomial(x, a, b, c):
    return a * x * x + b * x + c


def words_by_length(text, length, kind):
    words = text.split()
    return [w for w in words if (len(w) > length if kind == "longer" else len(w) < length)]


def pad_left(text, width, fill):
    return text.rjust(width, fill)


def _every_nth_params(rng: random.Random) -> dict[str, int]:
    n = rng.randint(2, 6)
    return {"n": n, "r": rng.randrange(n)}


FAMILIES = (
    FunctionFamily(
        "count_multiples",
        "count_multiples(numbers: list[int]) -> int",
        "Return how many integers in `numbers` are divisible by {k}.",
        lambda rng: {"k": rng.randint(2, 12)},
        lambda rng, p: (_ints(rng, -50, 50, 10),),
        count_multiples,
    ),
    FunctionFamily(
        "rotate_list",
        "rotate_list(items: list[int]) -> list[int]",
        "Return a new list: `items` rotated {direction} by {k} positions (an empty list stays empty).",
        lambda rng: {"k": rng.randint(1, 9), "direction": rng.choice(["left", "right"])},
        lambda rng, p: (_ints(rng),),
        rotate,
    ),
    FunctionFamily(
        "clip_values",
        "clip_values(numbers: list[int]) -> list[int]",
        "Return `numbers` with every value below {lo} replaced by {lo} and every value above {hi} by {hi}.",
        lambda rng: {"lo": rng.randint(-10, 0), "hi": rng.randint(1, 20)},
        lambda rng, p: (_ints(rng, -30, 30, 10),),
        clip_values,
    ),
    FunctionFamily(
        "every_nth",
        "every_nth(items: list[int]) -> list[int]",
        "Return the items of `items` whose index i (counting from 0) satisfies i % {n} == {r}, in order.",
        _every_nth_params,
        lambda rng, p: (_ints(rng, longest=12),),
        every_nth,
    ),
    FunctionFamily(
        "caesar_shift",
        "caesar_shift(text: str) -> str",
        "Shift every lowercase letter of `text` {k} places forward in the alphabet, wrapping from z to a; "
        "leave every other character as it is.",
        lambda rng: {"k": rng.randint(1, 25)},
        lambda rng, p: (_text(rng),),
        caesar,
    ),
    FunctionFamily(
        "count_letter",
        "count_letter(text: str) -> int",
        "Return how many times the letter '{letter}' occurs in `text`.",
        lambda rng: {"letter": rng.choice(string.ascii_lowercase)},
        lambda rng, p: (_text(rng),),
        count_letter,
    ),
    FunctionFamily(
        "repeat_letters",
        "repeat_letters(text: str) -> str",
        "Return `text` with every character repeated {k} times in place (so 'ab' becomes 'a' * {k} + 'b' * {k}).",
        lambda rng: {"k": rng.randint(2, 5)},
        lambda rng, p: (_word(rng, 0, 6),),
        repeat_letters,
    ),
    FunctionFamily(
        "digit_sum",
        "digit_sum(n: int) -> int",
        "Return the sum of the digits of the non-negative integer `n` written in base {base}.",
        lambda rng: {"base": rng.randint(2, 16)},
        lambda rng, p: (rng.choice([0, rng.randint(1, 50), rng.randint(50, 10**6)]),),
        digit_sum_in_base,
    ),
    FunctionFamily(
        "window_extremes",
        "window_extremes(numbers: list[int]) -> list[int]",
        "Return, for every run of {w} consecutive values of `numbers` from left to right, the {kind} value in it "
        "(an empty list when `numbers` has fewer than {w} values).",
        lambda rng: {"w": rng.randint(2, 5), "kind": rng.choice(["largest", "smallest"])},
        lambda rng, p: (_ints(rng, longest=10),),
        window_extremes,
    ),
    FunctionFamily(
        "polynomial",
        "polynomial(x: int) -> int",
        "Return the value of {a} * x**2 + ({b}) * x + ({c}).",
        lambda rng: {"a": rng.randint(-5, 5), "b": rng.randint(-9, 9), "c": rng.randint(-9, 9)},
        lambda rng, p: (rng.randint(-100, 100),),
        polynomial,
    ),
    FunctionFamily(
        "filter_words",
        "filter_words(text: str) -> list[str]",
        "Return the words of `text` (split on whitespace), in order, whose length is {kind} than {length}.",
        lambda rng: {"length": rng.randint(2, 6), "kind": rng.choice(["longer", "shorter"])},
        lambda rng, p: (_text(rng),),
        words_by_length,
    ),
    FunctionFamily(
        "pad_left",
        "pad_left(text: str) -> str",
        "Return `text` padded on the left with '{fill}' to a length of {width} (unchanged when it is longer).",
        lambda rng: {"width": rng.randint(4, 12), "fill": rng.choice("*.-0#")},
        lambda rng, p: (_word(rng, 0, 14),),
        pad_left,
    ),
)
FAMILY_BY_NAME = {family.name: family for family in FAMILIES}
