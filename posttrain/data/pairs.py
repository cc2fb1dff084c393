"""Preference and binary-feedback files rendered into groups of two sequences, the unit preference losses train on.

A pair is (chosen, rejected). For KTO a group is (completion, the same completion after the next record's prompt):
the second sequence feeds KTO's KL baseline, which pairs completion i with prompt i+1 in a fixed rotation of the
data set (TRL rotates within each batch instead; the estimator is the same).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from posttrain.data.errors import DataError
from posttrain.data.length import split_by_length
from posttrain.data.loaders import load_records
from posttrain.render import RenderedSequence, render_completion

log = logging.getLogger("posttrain.data")


@dataclass(frozen=True)
class GroupData:
    """Sequences in groups of two: (chosen, rejected) pairs, or (completion, mismatched completion) for KTO."""

    sequences: list[RenderedSequence]  # group g holds sequences 2g and 2g+1
    labels: torch.Tensor | None = None  # (G,) bool, KTO only


def load_groups(path: str, kto: bool, tokenizer, max_length: int, skip_invalid: bool = False) -> GroupData:
    """Render a preference file (or a binary-feedback file, `kto`) into groups of two sequences."""
    records = load_records(path, "kto" if kto else "preference", skip_invalid=skip_invalid).records
    records, rejected = split_by_length(records, tokenizer, max_length)
    if rejected and not skip_invalid:
        raise rejected[0]
    if rejected:
        log.warning("skipped %d records that are too long or unrenderable; first: %s", len(rejected), rejected[0])
    sequences: list[RenderedSequence] = []
    if not kto:
        for pair in records:
            sequences += [
                render_completion(tokenizer, pair.prompt, pair.chosen),
                render_completion(tokenizer, pair.prompt, pair.rejected),
            ]
        return GroupData(sequences)
    if len(records) < 2:
        raise ValueError(f"{path}: KTO needs at least 2 records to estimate its KL baseline")
    for i, record in enumerate(records):
        mismatched_prompt = records[(i + 1) % len(records)].prompt
        sequences += [
            render_completion(tokenizer, record.prompt, record.completion),
            render_completion(tokenizer, mismatched_prompt, record.completion),
        ]
        if len(sequences[-1]) > max_length:
            raise DataError(
                record.source,
                "completion",
                f"with the next record's prompt (the KL term) it is "
                f"{len(sequences[-1])} tokens, longer than max_length {max_length}",
            )
    return GroupData(sequences, torch.tensor([r.label for r in records]))
