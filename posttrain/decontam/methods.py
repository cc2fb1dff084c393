"""The decontamination methods: each fits on benchmark items and scores texts against them, with its own threshold.

A method sees the items and the texts as word lists (`posttrain.decontam.ngrams.words`) and the raw texts, and
returns, per text, the items it matches at or above its threshold with their scores. `METHODS` names them; the
scan (`posttrain.decontam.scan`) runs the chosen ones and keeps every match.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from posttrain.decontam.ngrams import Batch, HashSet, gram_sets, word_ids

MIN_ITEM_WORDS = 5  # an item shorter than this only matches a text equal to it (a short phrase is no evidence)
Matches = list[list[tuple[int, float]]]  # per text: (item index, score) at or above the threshold


@dataclass
class NGramCoverage:
    """The fraction of an item's distinct word n-grams that a text contains (open-instruct's token coverage,
    lm-eval's 13-gram rule), at least `threshold`; or the text equals the item after normalisation (score 1)."""

    n: int
    threshold: float = 0.5

    @property
    def describe(self) -> str:
        return f"{self.n}-gram coverage of the item >= {self.threshold}"

    def fit(self, items: Sequence[list[str]], texts: Sequence[str]) -> None:
        ids = [word_ids(tokens) for tokens in items]
        self.exact: dict[str, list[int]] = defaultdict(list)
        for i, tokens in enumerate(items):
            if tokens:  # an item with no words (Morse code, emoji) is not comparable this way
                self.exact[" ".join(tokens)].append(i)
        usable = [i for i, tokens in enumerate(items) if len(tokens) >= MIN_ITEM_WORDS]
        self.sizes = sorted({self.n, *(len(items[i]) for i in usable if len(items[i]) < self.n)})
        self.index: dict[int, list[int]] = defaultdict(list)
        self.counts = np.zeros(len(items), dtype=np.int64)
        for i, hashes in zip(usable, gram_sets(Batch.of([ids[i] for i in usable]), self.n), strict=True):
            self.counts[i] = len(hashes)
            for h in hashes.tolist():
                self.index[h].append(i)
        self.keys = HashSet(list(self.index))

    def match(self, tokens: Sequence[list[str]], texts: Sequence[str]) -> Matches:
        out: Matches = [[] for _ in tokens]
        for t, toks in enumerate(tokens):
            out[t] += [(i, 1.0) for i in self.exact.get(" ".join(toks), ())]
        batch = Batch.of([word_ids(toks) for toks in tokens])
        found_docs, found_hashes = [], []
        for _, hashes, docs in batch.grams(self.sizes):
            hit = self.keys.contains(hashes)
            found_docs.append(docs[hit])
            found_hashes.append(hashes[hit])
        pairs = set(zip(np.concatenate(found_docs).tolist(), np.concatenate(found_hashes).tolist(), strict=True))
        covered: dict[tuple[int, int], int] = defaultdict(int)
        for doc, h in pairs:
            for item in self.index[h]:
                covered[doc, item] += 1
        for (doc, item), count in covered.items():
            score = count / self.counts[item]
            if score >= self.threshold and all(i != item for i, _ in out[doc]):
                out[doc].append((item, float(score)))
        return out


def minhash_signatures(
    tokens: Sequence[list[str]], num_perm: int = 128, shingle: int = 5, sizes: tuple[float, float] = (1, float("inf"))
) -> list:
    """Each word list's datasketch MinHash over its distinct word `shingle`-grams (a list shorter than that is one
    shingle), or None when its shingle count is outside `sizes`; every signature uses the same permutations."""
    from datasketch import MinHash

    template = MinHash(num_perm=num_perm, seed=1)
    out = []
    for hashes in gram_sets(Batch.of([word_ids(toks) for toks in tokens]), shingle):
        if not sizes[0] <= len(hashes) <= sizes[1]:
            out.append(None)
            continue
        sig = MinHash(num_perm, 1, hashfunc=int, permutations=template.permutations, scheme=template.scheme)
        sig.update_batch((hashes & np.uint64(0xFFFFFFFF)).tolist())
        out.append(sig)
    return out


@dataclass
class MinHashSimilarity:
    """Near-duplicates: the Jaccard similarity of word 5-gram sets at least `threshold`, estimated with datasketch's
    MinHash (`num_perm` permutations) and looked up in its LSH index; a text under 5 words is one shingle. Since
    Jaccard is at most the ratio of the two sets' sizes, a text whose set is far smaller or larger than every
    item's is not hashed at all."""

    threshold: float = 0.7
    num_perm: int = 128
    shingle: int = 5

    @property
    def describe(self) -> str:
        return f"MinHash Jaccard of word {self.shingle}-grams >= {self.threshold} ({self.num_perm} permutations)"

    def _signatures(self, tokens: Sequence[list[str]], sizes: tuple[float, float] = (1, float("inf"))) -> list:
        return minhash_signatures(tokens, self.num_perm, self.shingle, sizes)

    def fit(self, items: Sequence[list[str]], texts: Sequence[str]) -> None:
        from datasketch import MinHashLSH

        self.items = self._signatures(items)
        counts = [len(h) for h in gram_sets(Batch.of([word_ids(toks) for toks in items]), self.shingle)]
        self.sizes = (max(1.0, self.threshold * min(counts, default=0)), max(counts, default=0) / self.threshold)
        self.lsh = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm)
        with self.lsh.insertion_session() as session:
            for i, sig in enumerate(self.items):
                if sig is not None:
                    session.insert(i, sig, check_duplication=False)

    def match(self, tokens: Sequence[list[str]], texts: Sequence[str]) -> Matches:
        out: Matches = []
        for sig in self._signatures(tokens, self.sizes):
            found = [] if sig is None else [(i, float(sig.jaccard(self.items[i]))) for i in self.lsh.query(sig)]
            out.append(sorted((i, s) for i, s in found if s >= self.threshold))
        return out


@dataclass
class EmbeddingSimilarity:
    """Paraphrases: the cosine similarity of all-MiniLM-L6-v2 sentence embeddings at least `threshold` (texts are cut
    at the encoder's 256 word pieces, so this is for prompt-sized fields)."""

    threshold: float = 0.85
    batch_size: int = 64

    @property
    def describe(self) -> str:
        return f"all-MiniLM-L6-v2 cosine similarity >= {self.threshold}"

    def fit(self, items: Sequence[list[str]], texts: Sequence[str]) -> None:
        from posttrain.safety.embedding import embed

        self.items = embed(list(texts), batch_size=self.batch_size)

    def match(self, tokens: Sequence[list[str]], texts: Sequence[str]) -> Matches:
        from posttrain.safety.embedding import embed

        if not texts:
            return []
        similarity = embed(list(texts), batch_size=self.batch_size) @ self.items.T
        rows, cols = (similarity >= self.threshold).nonzero(as_tuple=True)
        out: Matches = [[] for _ in texts]
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            out[r].append((c, float(similarity[r, c])))
        return out


METHODS: dict[str, Callable[[], NGramCoverage | MinHashSimilarity | EmbeddingSimilarity]] = {
    "ngram13": lambda: NGramCoverage(13, 0.5),
    "ngram8": lambda: NGramCoverage(8, 0.8),
    "minhash": MinHashSimilarity,
    "embedding": EmbeddingSimilarity,
}
DEFAULT_METHODS = ("ngram13", "ngram8", "minhash")  # the embedding method is opt-in: it needs the encoder and time
