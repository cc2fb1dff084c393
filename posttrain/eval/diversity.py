"""Output diversity: distinct-n over all completions, and self-BLEU among the completions of each prompt.

distinct-n is the number of unique n-grams over the total number of n-grams (Li et al., 2016). Self-BLEU (Zhu et
al., 2018) scores each completion with BLEU-4 against the other completions of the same prompt as references
and averages; higher means more alike, so diversity falling shows as self-BLEU rising. Tokens are lowercased
whitespace words.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def _words(text: str) -> list[str]:
    return text.lower().split()


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams over all n-grams, across every text (0 when there are none)."""
    grams = [g for t in texts for g in _ngrams(_words(t), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def bleu(hypothesis: list[str], references: list[list[str]], max_n: int = 4) -> float:
    """Sentence BLEU with clipped counts, add-one smoothing for n > 1, and the brevity penalty."""
    if not hypothesis or not references:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_n + 1):
        hyp = Counter(_ngrams(hypothesis, n))
        most = Counter()
        for ref in references:
            most |= Counter(_ngrams(ref, n))
        clipped = sum(min(c, most[g]) for g, c in hyp.items())
        total = sum(hyp.values())
        if n == 1 and clipped == 0:
            return 0.0
        log_precision += math.log((clipped + (n > 1)) / (total + (n > 1))) if total else math.log(1e-9)
    closest = min((abs(len(r) - len(hypothesis)), len(r)) for r in references)[1]
    brevity = 1.0 if len(hypothesis) > closest else math.exp(1 - closest / len(hypothesis))
    return brevity * math.exp(log_precision / max_n)


def self_bleu(groups: Sequence[Sequence[str]]) -> float:
    """Mean BLEU of each completion against the others of its group (groups of one are skipped)."""
    scores = []
    for group in groups:
        words = [_words(t) for t in group]
        for i, hyp in enumerate(words):
            others = words[:i] + words[i + 1 :]
            if others:
                scores.append(bleu(hyp, others))
    return sum(scores) / len(scores) if scores else 0.0


def diversity_metrics(groups: Sequence[Sequence[str]]) -> dict[str, float]:
    """distinct-1, distinct-2 and self-BLEU of sampled completions grouped per prompt."""
    flat = [t for g in groups for t in g]
    return {"distinct_1": distinct_n(flat, 1), "distinct_2": distinct_n(flat, 2), "self_bleu": self_bleu(groups)}


def sample_diversity(sampler, prompts: Sequence, n_samples: int, params) -> tuple[dict[str, float], list[list[str]]]:
    """distinct-n and self-BLEU of `n_samples` samples of each prompt (drawn by `sampler` with `params`), and the
    samples themselves."""
    groups = [[r.text for r in group] for group in sampler.sample(list(prompts), n_samples, params)]
    return diversity_metrics(groups), groups
