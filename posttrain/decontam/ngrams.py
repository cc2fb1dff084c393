"""Word n-gram hashes for many texts at once, vectorised with numpy (the scan never compares texts pairwise).

A text becomes its words (`words`: casefolded runs of letters and digits, and arithmetic symbols, so case, other
punctuation and whitespace do not matter). Each word gets a pseudo-random 64-bit value (its CRC-32, mixed) and an
n-gram the polynomial hash of its words' values, all computed as whole-array operations over a batch of texts laid
end to end (`Batch`); the n-grams that would cross from one text into the next are masked out.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

WORD = re.compile(r"[^\W_]+|[+*/=<>^%]|-(?=\s*\d)")  # letters and digits, and arithmetic symbols (a dash before a
# number is a minus sign; any other is punctuation)
MULTIPLIER = np.uint64(0x100000001B3)  # the polynomial base of the n-gram hash (odd, so no value is lost)
_MIX = np.uint64(0x9E3779B97F4A7C15)


def words(text: str) -> list[str]:
    """The normalised words of `text`: casefolded runs of letters and digits, and arithmetic symbols (so that
    `8 * 6` and `8 + 6` differ)."""
    return WORD.findall(text.casefold())


def normalised(text: str) -> str:
    """`text` as its normalised words joined by single spaces."""
    return " ".join(words(text))


def word_ids(tokens: Sequence[str]) -> list[int]:
    """Each word's CRC-32: the same in every process (Python's own `hash` of a string is not), with no vocabulary
    to keep; two words sharing one among tens of thousands is rare enough to ignore."""
    return list(map(zlib.crc32, map(str.encode, tokens)))


def _mixed(ids: np.ndarray) -> np.ndarray:
    """Spread word ids over 64 bits (a multiply and xor-shift), so that n-gram hashes of small ids do not collide."""
    x = (ids.astype(np.uint64) + np.uint64(1)) * _MIX
    return x ^ (x >> np.uint64(29))


@dataclass
class Batch:
    """Texts' word ids laid end to end: `values` (one mixed 64-bit value per word), `doc` (which text each word
    belongs to) and `end` (the index just past each word's text)."""

    values: np.ndarray
    doc: np.ndarray
    end: np.ndarray
    lengths: np.ndarray

    @classmethod
    def of(cls, id_lists: Sequence[Sequence[int]]) -> Batch:
        """A batch of texts given as word-id lists."""
        lengths = np.fromiter((len(ids) for ids in id_lists), dtype=np.int64, count=len(id_lists))
        flat = np.fromiter(itertools.chain.from_iterable(id_lists), dtype=np.int64, count=int(lengths.sum()))
        doc = np.repeat(np.arange(len(id_lists)), lengths)
        ends = np.cumsum(lengths)
        return cls(_mixed(flat), doc, ends[doc] if len(doc) else doc, lengths)

    def grams(self, sizes: Sequence[int]) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """For each n in `sizes` (ascending): (n, hashes, docs) of every n-gram that stays inside its text."""
        wanted = sorted(set(sizes))
        count = len(self.values)
        positions = np.arange(count)
        hashes = self.values.copy()
        padded = np.concatenate([self.values, np.zeros(max(wanted, default=1), dtype=np.uint64)])
        with np.errstate(over="ignore"):
            for n in range(1, (wanted[-1] if wanted else 0) + 1):
                if n > 1:
                    hashes = hashes * MULTIPLIER + padded[n - 1 : n - 1 + count]
                if n in wanted:
                    inside = positions + n <= self.end
                    yield n, hashes[inside], self.doc[inside]


class HashSet:
    """Membership of 64-bit hashes in a fixed set, for whole arrays at once: a bitmap of their low bits screens out
    nearly every stranger, and a binary search in the sorted set confirms the rest."""

    BITS = 20  # a 1 MB screen: with 100,000 hashes about one stranger in ten reaches the binary search

    def __init__(self, hashes: Sequence[int]):
        self.sorted = np.unique(np.asarray(hashes, dtype=np.uint64))
        self.screen = np.zeros(1 << self.BITS, dtype=bool)
        self.screen[(self.sorted & np.uint64((1 << self.BITS) - 1)).astype(np.int64)] = True

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """A boolean mask: which of `hashes` are in the set."""
        out = self.screen[(hashes & np.uint64((1 << self.BITS) - 1)).astype(np.int64)]
        if len(self.sorted):
            candidates = np.flatnonzero(out)
            at = np.minimum(np.searchsorted(self.sorted, hashes[candidates]), len(self.sorted) - 1)
            out[candidates] = self.sorted[at] == hashes[candidates]
        return out


def gram_sets(batch: Batch, n: int) -> list[np.ndarray]:
    """Each text's distinct n-gram hashes; a text shorter than n words gives the hash of its whole self."""
    sizes = sorted({n, *(int(length) for length in batch.lengths if 0 < length < n)})
    out: list[np.ndarray] = [np.empty(0, dtype=np.uint64)] * len(batch.lengths)
    for size, hashes, docs in batch.grams(sizes):
        wanted = batch.lengths[docs] >= n if size == n else batch.lengths[docs] == size
        hashes, docs = hashes[wanted], docs[wanted]
        if size < n:
            first = np.unique(docs, return_index=True)[1]
            hashes, docs = hashes[first], docs[first]
        bounds = np.searchsorted(docs, np.arange(len(batch.lengths) + 1))
        for i in np.unique(docs):
            out[i] = np.unique(hashes[bounds[i] : bounds[i + 1]])
    return out
