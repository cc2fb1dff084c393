"""The safety stages' training requests, read and checked once: harmful requests to refuse (or attack with) and
benign requests with helpful answers.

Held-out sets stay held out: harmful requests that are near-duplicates of HarmBench or of the contrast pairs'
unsafe side, and benign requests that are near-duplicates of the independent benign set or of the contrast pairs'
safe side, are dropped. A benign record whose answer refuses is
skipped, as a refusal is never the helpful answer. Every drop is counted, for the stage's manifest.
"""

from __future__ import annotations

import hashlib

from posttrain.data import load_records
from posttrain.data.heldout import drop_heldout_near_duplicates, load_contrast_pairs, load_independent_benign
from posttrain.data.neardup import NearDuplicates
from posttrain.rewards.refusal import is_refusal


def harmful_requests(path: str) -> tuple[list[str], dict[str, int]]:
    """The distinct prompts of the rl file's 'refusal' rows, less HarmBench near-duplicates; and the counts."""
    tasks = load_records(path, "rl").records
    harmful = list(dict.fromkeys(t.prompt[-1].content for t in tasks if t.verifier == "refusal"))
    kept, dropped = drop_heldout_near_duplicates(harmful)
    contrast = NearDuplicates([unsafe for _, unsafe in load_contrast_pairs()])
    contrast_dropped = sum(contrast.matches(harmful[i]) for i in kept)
    kept = [i for i in kept if not contrast.matches(harmful[i])]
    counts = {
        "harmful_rows": len(tasks),
        "harmful_rows_not_refusal": sum(t.verifier != "refusal" for t in tasks),
        "harmful_harmbench_near_duplicates_dropped": dropped,
        "harmful_contrast_near_duplicates_dropped": contrast_dropped,
    }
    return [harmful[i] for i in kept], counts


def benign_answers(path: str) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """(request, answer) from the last user turn and the final assistant turn of each SFT record (empty path: none),
    less refusing answers and near-duplicates of the independent benign set; and the counts."""
    independent = NearDuplicates(load_independent_benign() + [safe for safe, _ in load_contrast_pairs()])
    out, dropped, refusing = [], 0, 0
    for record in load_records(path, "sft").records if path else []:
        users = [m for m in record.messages if m.role == "user"]
        if record.messages[-1].role != "assistant" or not users:
            continue
        if is_refusal(record.messages[-1].content):
            refusing += 1
        elif independent.matches(users[-1].content):
            dropped += 1
        else:
            out.append((users[-1].content, record.messages[-1].content))
    counts = {
        "benign_records": len(out),
        "benign_independent_near_duplicates_dropped": dropped,
        "benign_refusing_records_skipped": refusing,
    }
    return out, counts


def stable_order(items: list[str], salt: str) -> list[str]:
    """`items` in an order fixed by their text and `salt` (not by file order): the basis of a reproducible split."""
    return sorted(items, key=lambda s: hashlib.sha256(f"{salt}:{s}".encode()).hexdigest())


def split_apart(requests: list[str], n_eval: int, salt: str) -> tuple[list[str], list[str], int]:
    """(train, eval, dropped): `n_eval` requests in a stable order for evaluation, the rest for training less any
    near-duplicate of an evaluation request (a framed or reworded twin), which is dropped and counted."""
    order = stable_order(list(dict.fromkeys(requests)), salt)
    held = order[:n_eval]
    twins = NearDuplicates(held)
    train = [r for r in order[n_eval:] if not twins.matches(r)]
    return train, held, len(order) - n_eval - len(train)
