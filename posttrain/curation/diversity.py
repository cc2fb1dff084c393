"""Diversity: k-means on the questions' sentence embeddings, then a selection of `n` spread across the clusters.

s1 has an LM label each question with a Mathematics Subject Classification domain, then repeatedly picks a domain
uniformly at random and a question from it (favouring longer reasoning traces). Here the domains are k-means
clusters of all-MiniLM-L6-v2 embeddings (`posttrain.safety.embedding.embed`), so any data works without a labeller,
and the picking is deterministic: rounds over the clusters (in a seeded order each round) take one question from
every cluster that has one left, hardest first (lowest pass rate when the difficulty rule ran; ties in a seeded
order), until `n` are taken. Every cluster gets an equal share, and a small cluster's unused share goes to the others.

The number of clusters defaults to round(sqrt(N / 2)) for N candidates, a common rule of thumb. Clusters are
numbered by size, 0 the largest.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import replace

import torch

from posttrain.curation.items import Item
from posttrain.curation.rules import Dropped, Outcome


def auto_clusters(n_points: int) -> int:
    """round(sqrt(N / 2)), at least 1."""
    return max(1, round(math.sqrt(n_points / 2)))


def _kmeans_pp_init(points_N_D: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each next centre drawn with probability proportional to its squared distance to the
    nearest centre so far; fewer than k centres when the points run out of distinct ones."""
    centres = [points_N_D[torch.randint(len(points_N_D), (1,), generator=generator)[0]]]
    nearest_N = ((points_N_D - centres[0]) ** 2).sum(1)
    while len(centres) < k and nearest_N.sum() > 0:
        centres.append(points_N_D[torch.multinomial(nearest_N, 1, generator=generator)[0]])
        nearest_N = torch.minimum(nearest_N, ((points_N_D - centres[-1]) ** 2).sum(1))
    return torch.stack(centres)  # (K, D)


def _lloyd(points_N_D: torch.Tensor, centres_K_D: torch.Tensor, iterations: int) -> tuple[torch.Tensor, float]:
    """Lloyd's iterations from the given centres: (N,) cluster ids and the inertia (summed squared distances)."""
    assign_N = torch.cdist(points_N_D, centres_K_D).argmin(1)
    for _ in range(iterations):
        sums_K_D = torch.zeros_like(centres_K_D).index_add_(0, assign_N, points_N_D)
        counts_K = torch.bincount(assign_N, minlength=len(centres_K_D))
        filled = counts_K > 0  # an emptied cluster keeps its centre
        centres_K_D[filled] = sums_K_D[filled] / counts_K[filled, None]
        new_N = torch.cdist(points_N_D, centres_K_D).argmin(1)
        if torch.equal(new_N, assign_N):
            break
        assign_N = new_N
    return assign_N, float(((points_N_D - centres_K_D[assign_N]) ** 2).sum())


def kmeans(points_N_D: torch.Tensor, k: int, seed: int = 0, restarts: int = 10, iterations: int = 100) -> torch.Tensor:
    """(N,) cluster ids: the lowest-inertia of `restarts` runs of Lloyd's k-means from k-means++ seeds, renumbered
    by cluster size (0 the largest); deterministic for a seed. Restarts matter: one run on short questions often
    stops in a split that mixes topics."""
    points_N_D = points_N_D.float()
    generator = torch.Generator().manual_seed(seed)
    seeds = [_kmeans_pp_init(points_N_D, min(k, len(points_N_D)), generator) for _ in range(restarts)]
    runs = [_lloyd(points_N_D, centres_K_D, iterations) for centres_K_D in seeds]
    assign_N = min(runs, key=lambda run: run[1])[0]
    by_size = [c for c, _ in Counter(assign_N.tolist()).most_common()]  # ties: first seen first
    return torch.tensor([by_size.index(c) for c in assign_N.tolist()], dtype=torch.long)


def spread(queues: list[list[int]], n: int, rng: random.Random) -> list[int]:
    """Up to `n` entries taken round by round, one from the head of each non-empty queue per round, the queues
    visited in a fresh `rng` order every round."""
    heads, taken = [0] * len(queues), []
    while len(taken) < n:
        left = [q for q in range(len(queues)) if heads[q] < len(queues[q])]
        if not left:
            break
        rng.shuffle(left)
        for q in left[: n - len(taken)]:
            taken.append(queues[q][heads[q]])
            heads[q] += 1
    return taken


def cluster_ids(items: list[Item], clusters: int, seed: int) -> list[int]:
    """Each item's cluster: k-means on the questions' embeddings (`clusters` 0: `auto_clusters`; 1: no embedding)."""
    k = clusters or auto_clusters(len(items))
    if k <= 1 or len(items) <= 1:
        return [0] * len(items)
    from posttrain.safety.embedding import embed

    return kmeans(embed([item.prompt for item in items]), k, seed).tolist()


def spread_across_clusters(items: list[Item], n: int, clusters: int = 0, seed: int = 0) -> Outcome:
    """Cluster the items, then keep `n` of them (0: all) spread across the clusters, hardest first in each; kept
    items stay in input order and carry their cluster."""
    ids = cluster_ids(items, clusters, seed) if items else []
    items = [replace(item, cluster=c) for item, c in zip(items, ids, strict=True)]
    rng = random.Random(f"{seed}:diversity")
    tie_break = rng.sample(range(len(items)), len(items))
    queues: list[list[int]] = [[] for _ in range(max(ids, default=-1) + 1)]
    for i in sorted(range(len(items)), key=lambda i: (_rate(items[i]), tie_break[i])):
        queues[ids[i]].append(i)
    chosen = set(spread(queues, n or len(items), rng))
    taken = Counter(ids[i] for i in chosen)
    kept = [item for i, item in enumerate(items) if i in chosen]
    dropped = [
        Dropped(
            item,
            f"over the target n={n}: cluster {item.cluster} gave {taken[item.cluster]} of its {len(queues[item.cluster])}",
        )
        for i, item in enumerate(items)
        if i not in chosen
    ]
    return Outcome(kept, dropped)


def _rate(item: Item) -> float:
    return item.pass_rate.rate if item.pass_rate is not None else 0.0
