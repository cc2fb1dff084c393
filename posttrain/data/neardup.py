"""Near-duplicate detection between texts: normalised equality, a shared word 8-gram, or word-set Jaccard >= 0.6.

The demo mix uses it to keep held-out and benchmark prompts (HarmBench) out of training data, and decontamination
builds on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

NGRAM = 8  # a shared run of this many words makes two texts near-duplicates
JACCARD = 0.6  # ... as does a word-set Jaccard similarity at least this high


def normalise(text: str) -> str:
    """Lowercase, with every run of non-alphanumerics collapsed to one space."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


@dataclass(frozen=True)
class _Fingerprint:
    norm: str
    words: frozenset[str]
    ngrams: frozenset[tuple[str, ...]]


def _fingerprint(text: str) -> _Fingerprint:
    norm = normalise(text)
    words = norm.split()
    ngrams = {tuple(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)}
    return _Fingerprint(norm, frozenset(words), frozenset(ngrams))


def _similar(a: _Fingerprint, b: _Fingerprint) -> bool:
    if a.norm == b.norm or a.ngrams & b.ngrams:
        return True
    union = len(a.words | b.words)
    return union > 0 and len(a.words & b.words) / union >= JACCARD


def is_near_duplicate(a: str, b: str) -> bool:
    """Same normalised text, a shared 8-word n-gram, or word-set Jaccard >= 0.6."""
    return _similar(_fingerprint(a), _fingerprint(b))


class NearDuplicates:
    """A set of texts that answers "is this a near-duplicate of any of them?" (see `is_near_duplicate`)."""

    def __init__(self, texts_: Iterable[str] = ()) -> None:
        self._prints: list[_Fingerprint] = []
        for text in texts_:
            self.add(text)

    def add(self, text: str) -> None:
        """Remember `text`."""
        self._prints.append(_fingerprint(text))

    def matches(self, text: str) -> bool:
        """Whether `text` is a near-duplicate of any remembered text."""
        probe = _fingerprint(text)
        return any(_similar(probe, other) for other in self._prints)
