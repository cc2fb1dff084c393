"""What every curation rule returns: the items it kept, in order, and the ones it dropped, each with why."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from posttrain.curation.items import Item

Check = Callable[[Item], "str | None"]  # one record -> why it fails, or None when it passes


@dataclass(frozen=True)
class Dropped:
    """A record a rule dropped, and why (e.g. "near-duplicate of data.jsonl:12 (Jaccard 0.86)")."""

    item: Item
    reason: str


@dataclass(frozen=True)
class Outcome:
    """A rule's verdict on the items it was given: every one is either kept or dropped."""

    kept: list[Item]
    dropped: list[Dropped]


def by_check(items: list[Item], check: Check) -> Outcome:
    """Keep the items `check` passes; drop the others with its reason."""
    kept, dropped = [], []
    for item in items:
        reason = check(item)
        if reason is None:
            kept.append(item)
        else:
            dropped.append(Dropped(item, reason))
    return Outcome(kept, dropped)
