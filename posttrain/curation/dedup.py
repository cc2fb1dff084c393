"""Duplicates inside the set, judged on the question (LIMO and s1 deduplicate questions: two answers to one question
are one question). The first record in file order is kept; each later copy is dropped naming the one it copies.

- exact: the same question up to case and whitespace (punctuation and operators count, so "2+2" and "2*2" differ);
- near: MinHash over word 5-gram shingles of the normalised words (`posttrain.decontam.ngrams.words`: case and
  punctuation ignored, numbers and arithmetic symbols kept) with decontamination's signatures
  (`posttrain.decontam.methods.minhash_signatures`, 128 permutations), candidates from an LSH index and kept apart
  when their estimated Jaccard similarity is below the threshold (0.8 by default). The estimate's standard error is about 0.035 at 0.8, so pairs
  right at the threshold may go either way. A question under five words is one shingle: only its exact copies match.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from posttrain.curation.items import Item
from posttrain.curation.rules import Dropped, Outcome
from posttrain.decontam.methods import minhash_signatures
from posttrain.decontam.ngrams import words

SHINGLE_WORDS = 5
NUM_PERM = 128


def exact_key(text: str) -> str:
    """The text casefolded, every run of whitespace one space."""
    return " ".join(text.casefold().split())


def exact_duplicates(items: list[Item]) -> Outcome:
    """Drop every record whose question is an exact copy (up to case and whitespace) of an earlier one."""
    first: dict[str, Item] = {}
    kept, dropped = [], []
    for item in items:
        key = exact_key(item.prompt)
        if key in first:
            dropped.append(Dropped(item, f"exact duplicate of {first[key].source}"))
        else:
            first[key] = item
            kept.append(item)
    return Outcome(kept, dropped)


def near_duplicates(items: list[Item], threshold: float = 0.8, progress: bool = False) -> Outcome:
    """Drop every record whose question has an estimated Jaccard similarity >= `threshold` (word 5-gram shingles,
    MinHash) with an earlier kept record's."""
    from datasketch import MinHashLSH

    if not items:
        return Outcome([], [])
    hashes = minhash_signatures(
        [words(item.prompt) for item in items], NUM_PERM, SHINGLE_WORDS, sizes=(0, float("inf"))
    )
    index = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    kept, dropped = [], []
    for i in tqdm(range(len(items)), desc="near-duplicates", disable=not progress, unit="record"):
        item, minhash = items[i], hashes[i]
        similar = [(minhash.jaccard(hashes[j]), j) for j in index.query(minhash)]
        best = max(similar, default=(0.0, -1))
        if best[0] >= threshold:
            dropped.append(
                Dropped(item, f"near-duplicate of {items[best[1]].source} (estimated Jaccard {best[0]:.2f})")
            )
        else:
            index.insert(i, minhash)
            kept.append(item)
    return Outcome(kept, dropped)
