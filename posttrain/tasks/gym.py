"""Reasoning Gym datasets as `RLTask`s (verifier "reasoning_gym"), with fixed, disjoint train / held-out splits.

Reasoning Gym (the `reasoning-gym` package) generates problems procedurally: `create_dataset(name, seed=s, size=n)`
gives entries `{"question", "answer", "metadata"}`, item i of most datasets drawn from `Random(s + i)`, and each
dataset scores an answer with its own `score_answer(answer, entry)` (`posttrain.rewards.gym`).

Splits, per dataset:
- each (dataset, split, seed) has its own generator seed, a hash (`split_seed`). Seeds `s` and `s + 1` would not
  do: with `Random(s + i)` they give the same items, shifted by one;
- the held-out set is drawn first and depends on (dataset, n_heldout, seed) only;
- train skips every entry whose question, normalised (`normalise_question`: whitespace collapsed, case folded), is
  a held-out question, counts the skips in `GymSplits.removed`, and draws on until it has n_train entries. Entries
  are read in index order; in the three `DATASETS` entry i does not depend on the dataset's size (`Random(s + i)`,
  and gsm_symbolic picks templates with `Random(s).choices`, whose first k picks do not depend on how many follow),
  so a smaller n_train gives a prefix of a larger one.

Each task's prompt is the entry's question and `posttrain.tasks.ANSWER_INSTRUCTION`; `answer` is the entry's answer;
`metadata` is `{"dataset", "entry", "split", "seed"}`: what the verifier needs (the dataset name and the entry) and
where the entry came from (`create_dataset(dataset, seed=seed)`). The entry is made JSON-native first (tuples become
lists, `Fraction`s "p/q" strings), so a task written to JSONL reads back equal.

reasoning-gym's package `__init__` imports all of its ~100 generators, so every dependency it names must be
installed; `make setup` installs them with `--no-deps` (the Makefile says which and why). It is imported only when
tasks are built.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from posttrain.tasks import boxed_prompt
from posttrain.types import RLTask

DATASETS = ("basic_arithmetic", "gsm_symbolic", "simple_equations")
VERIFIER = "reasoning_gym"


@dataclass(frozen=True)
class GymSplits:
    """Train and held-out tasks, and per dataset how many train entries were skipped as held-out questions."""

    train: tuple[RLTask, ...]
    heldout: tuple[RLTask, ...]
    removed: Mapping[str, int]  # per dataset

    def report(self) -> dict[str, Any]:
        """Counts per split and dataset, and the held-out questions removed from train, for a manifest."""

        def counts(tasks: tuple[RLTask, ...]) -> dict[str, int]:
            datasets = [t.metadata["dataset"] for t in tasks]
            return {name: datasets.count(name) for name in dict.fromkeys(datasets)}

        return {"train": counts(self.train), "heldout": counts(self.heldout), "removed_from_train": dict(self.removed)}


def normalise_question(text: str) -> str:
    """Whitespace runs collapsed to one space, ends stripped, case folded: the key for train / held-out overlap."""
    return " ".join(text.split()).casefold()


def split_seed(dataset: str, split: str, seed: int) -> int:
    """The generator seed of one dataset's split: a stable 31-bit hash, unrelated to the other split's seed."""
    digest = hashlib.sha256(f"posttrain.tasks.gym:{dataset}:{split}:{seed}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


def _jsonable(value: Any) -> Any:
    if isinstance(value, Fraction):  # gsm_symbolic keeps some template variables as Fractions
        return f"{value.numerator}/{value.denominator}"
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable: {value!r}")


def json_native(entry: Mapping[str, Any]) -> dict[str, Any]:
    """`entry` as plain JSON values (tuples -> lists, Fraction -> "p/q"); anything else unknown raises TypeError."""
    return json.loads(json.dumps(entry, default=_jsonable, allow_nan=False))


def draw_entries(dataset: str, n: int, seed: int, exclude: frozenset[str] = frozenset()) -> tuple[list[dict], int]:
    """The first `n` entries whose normalised question is not in `exclude`, and how many were skipped."""
    import reasoning_gym  # imports every generator (about a second); only needed here

    size = 2 * n + 16  # room for skips; a function of n alone, so the same arguments give the same entries
    source = reasoning_gym.create_dataset(dataset, seed=seed, size=size)
    entries, skipped = [], 0
    for i in range(size):
        if len(entries) == n:
            break
        entry = source[i]
        if normalise_question(entry["question"]) in exclude:
            skipped += 1
        else:
            entries.append(json_native(entry))
    if len(entries) < n:
        raise ValueError(f"{dataset}: only {len(entries)} of {n} entries are left after skipping {skipped}")
    return entries, skipped


def gym_task(dataset: str, entry: Mapping[str, Any], split: str, seed: int) -> RLTask:
    """The task for one entry (already JSON-native): boxed-answer prompt, verifier "reasoning_gym"."""
    metadata = {"dataset": dataset, "entry": dict(entry), "split": split, "seed": seed}
    return RLTask(prompt=boxed_prompt(entry["question"]), verifier=VERIFIER, answer=entry["answer"], metadata=metadata)


def gym_splits(n_train: int, n_heldout: int, datasets: Sequence[str] = DATASETS, seed: int = 0) -> GymSplits:
    """`n_train` and `n_heldout` tasks per dataset, held-out questions kept out of train (module docstring)."""
    train: list[RLTask] = []
    heldout: list[RLTask] = []
    removed: dict[str, int] = {}
    for dataset in datasets:
        heldout_seed, train_seed = split_seed(dataset, "heldout", seed), split_seed(dataset, "train", seed)
        held, _ = draw_entries(dataset, n_heldout, heldout_seed)
        exclude = frozenset(normalise_question(e["question"]) for e in held)
        kept, removed[dataset] = draw_entries(dataset, n_train, train_seed, exclude)
        heldout += [gym_task(dataset, e, "heldout", heldout_seed) for e in held]
        train += [gym_task(dataset, e, "train", train_seed) for e in kept]
    return GymSplits(tuple(train), tuple(heldout), removed)
