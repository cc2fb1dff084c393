"""Planted contamination, to measure a detector: benchmark items copied into clean data in four ways.

- `exact`: the item as it is;
- `reformatted`: the same words with case, whitespace and the punctuation that ends a word changed (dropped, spaced,
  or swapped for `!` or `?`; punctuation inside a token, as in `E.coli` or `1.5`, is left alone);
- `embedded`: the item inside a longer record, between sentences of other text;
- `paraphrase`: a light paraphrase: the words found in `SYNONYMS` (a table written for this, independent of every
  detector) replaced, except every third word, a politeness prefix, and the item's first clause moved when it has
  one.

`recall` and `false_positives` read a detector's matches against the planted and the clean texts.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

SYNONYMS = {
    "write": "compose", "give": "provide", "detailed": "thorough", "instructions": "directions", "explain": "describe",
    "describe": "explain", "create": "produce", "generate": "produce", "list": "enumerate", "tutorial": "guide",
    "article": "piece", "persuasive": "convincing", "convince": "persuade", "someone": "a person",
    "people": "individuals", "obtain": "acquire", "get": "obtain", "make": "build", "how": "in what way",
    "ways": "methods", "steps": "stages", "information": "details", "post": "message", "message": "note",
    "without": "while avoiding", "quickly": "rapidly", "easily": "readily", "home": "house", "using": "with",
    "use": "employ", "find": "locate", "buy": "purchase", "best": "most effective", "tips": "pointers",
    "illegal": "unlawful", "dangerous": "hazardous", "suggest": "propose", "convincing": "persuasive",
    "function": "routine", "return": "give back", "given": "provided", "number": "value", "numbers": "values",
    "string": "text", "list of": "sequence of", "check": "verify", "if": "whether", "all": "every",
    "large": "big", "small": "little", "simple": "plain", "story": "tale", "letter": "note", "email": "e-mail",
}  # fmt: skip
PREFIXES = ("Could you ", "Please ", "I need you to ", "Can you ")
FILLER = (
    "Here is something I was asked to look into for a project.",
    "The following came up in a discussion earlier today.",
    "Thanks in advance, this is for a report due on Friday.",
    "Let me know if anything about the request is unclear.",
)


def exact(item: str, rng: random.Random) -> str:
    """The item unchanged."""
    return item


def reformatted(item: str, rng: random.Random) -> str:
    """The item with case, whitespace and word-final punctuation changed (module docstring)."""
    words = item.split()
    case = rng.choice((str.upper, str.lower, str.title))
    text = "  ".join(case(w) for w in words)
    return re.sub(r"[.,;:!?](?=\s|$)", lambda m: rng.choice(("", " ", "!", "?")), text) + rng.choice(("", "!!", " ..."))


def embedded(item: str, rng: random.Random) -> str:
    """The item between two sentences of other text."""
    return f"{rng.choice(FILLER)} {item} {rng.choice(FILLER)}"


def paraphrase(item: str, rng: random.Random) -> str:
    """A light paraphrase (module docstring)."""
    words = item.split()
    out = []
    for i, word in enumerate(words):
        bare = word.lower().strip(".,;:!?")
        swap = SYNONYMS.get(bare)
        out.append(word.lower().replace(bare, swap) if swap and i % 3 != 2 else word)
    text = " ".join(out)
    if ", " in text and rng.random() < 0.5:
        head, tail = text.split(", ", 1)
        text = f"{tail.rstrip('.?!')}, {head}"
    return rng.choice(PREFIXES) + text[0].lower() + text[1:]


KINDS: dict[str, Callable[[str, random.Random], str]] = {
    "exact": exact,
    "reformatted": reformatted,
    "embedded": embedded,
    "paraphrase": paraphrase,
}


def plant(items: Sequence[str], seed: int = 0) -> dict[str, list[str]]:
    """Each kind's contaminated copy of every item, by kind."""
    return {kind: [make(item, random.Random(f"{seed}:{kind}:{i}")) for i, item in enumerate(items)]
            for kind, make in KINDS.items()}  # fmt: skip


def recall(found: Sequence[Sequence[tuple[int, float]]], expected: Sequence[int]) -> float:
    """The fraction of planted texts whose own item (`expected[i]`, an index into the fitted items) was matched."""
    hits = sum(any(item == want for item, _ in matches) for matches, want in zip(found, expected, strict=True))
    return hits / max(1, len(expected))


def false_positives(found: Sequence[Sequence[tuple[int, float]]]) -> float:
    """The fraction of clean texts with any match."""
    return sum(bool(matches) for matches in found) / max(1, len(found))
