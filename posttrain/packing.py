"""Packing rendered sequences into fixed-shape batches without attention across sequence boundaries.

Sequences are placed into rows of `row_tokens` slots by best-fit decreasing (each sequence, longest first, goes to
the row whose free space it fills most tightly), and rows are grouped `rows_per_batch` at a time.

Each packed row restarts `position_ids` at 0 for every sequence. Resetting positions alone does not isolate
sequences under `sdpa` or `eager` attention (checked on transformers 5.24), so every batch also carries a
block-diagonal causal mask built by `attention_mask_4d`.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from posttrain.render import RenderedSequence


@dataclass(frozen=True)
class PackedBatch:
    """A (B, T) block of packed sequences. `seq_ids` maps each slot to its sequence's index in the input, -1 = pad."""

    input_ids: torch.Tensor  # (B, T) long
    position_ids: torch.Tensor  # (B, T) long, restarting at 0 for each sequence
    loss_mask: torch.Tensor  # (B, T) bool, True where the token is a training target
    seq_ids: torch.Tensor  # (B, T) long, index into the packed list, -1 for padding
    sequence_indices: tuple[int, ...]  # the original indices of the sequences in this batch, sorted

    def to(self, device: torch.device | str) -> PackedBatch:
        """The same batch with its tensors on `device`."""
        move = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        return PackedBatch(**move, sequence_indices=self.sequence_indices)

    @property
    def n_real_tokens(self) -> int:
        """Slots holding a real token."""
        return int((self.seq_ids >= 0).sum())

    @property
    def efficiency(self) -> float:
        """Real tokens over slots."""
        return self.n_real_tokens / self.seq_ids.numel()


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bins of sequence indices, each summing to at most `capacity`, by best-fit decreasing."""
    too_long = [i for i, n in enumerate(lengths) if n > capacity]
    if too_long:
        raise ValueError(f"sequence {too_long[0]} has {lengths[too_long[0]]} tokens, more than a row ({capacity})")
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (free slots, bin index), sorted
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        at = bisect.bisect_left(free, (lengths[i], -1))
        if at == len(free):
            bins.append([i])
            bisect.insort(free, (capacity - lengths[i], len(bins) - 1))
        else:
            space, b = free.pop(at)
            bins[b].append(i)
            bisect.insort(free, (space - lengths[i], b))
    return bins


def pack(
    sequences: Sequence[RenderedSequence],
    row_tokens: int,
    rows_per_batch: int = 1,
    pad_id: int = 0,
    seed: int | None = None,
) -> list[PackedBatch]:
    """Pack sequences into batches of `rows_per_batch` rows of `row_tokens` slots each.

    Best-fit decreasing orders rows longest-first; with a `seed` the rows are shuffled before being grouped into
    batches, so training does not see all long sequences first.
    """
    rows = best_fit_decreasing([len(s) for s in sequences], row_tokens)
    if seed is not None:
        random.Random(seed).shuffle(rows)
    return [
        _collate(sequences, rows[start : start + rows_per_batch], row_tokens, pad_id)
        for start in range(0, len(rows), rows_per_batch)
    ]


def pack_groups(
    sequences: Sequence[RenderedSequence],
    groups: Sequence[Sequence[int]],
    row_tokens: int,
    rows_per_batch: int,
    pad_id: int = 0,
    seed: int | None = None,
) -> list[PackedBatch]:
    """Pack so that each group of sequence indices (a pair's chosen and rejected, say) lands in one batch.

    Groups are taken in (seeded) shuffled order and added to the current batch while best-fit decreasing still
    fits its sequences into `rows_per_batch` rows; a group that does not fit starts the next batch.
    """
    order = list(range(len(groups)))
    if seed is not None:
        random.Random(seed).shuffle(order)
    lengths = [len(s) for s in sequences]
    batches, current = [], []
    for g in order:
        members = list(groups[g])
        if len(best_fit_decreasing([lengths[i] for i in members], row_tokens)) > rows_per_batch:
            raise ValueError(f"group {g} does not fit in {rows_per_batch} rows of {row_tokens} tokens")
        trial = current + members
        if current and len(best_fit_decreasing([lengths[i] for i in trial], row_tokens)) > rows_per_batch:
            batches.append(current)
            trial = members
        current = trial
    if current:
        batches.append(current)
    return [_collate(sequences, _rows_of(members, lengths, row_tokens), row_tokens, pad_id) for members in batches]


def _rows_of(members: list[int], lengths: Sequence[int], row_tokens: int) -> list[list[int]]:
    rows = best_fit_decreasing([lengths[i] for i in members], row_tokens)
    return [[members[k] for k in row] for row in rows]


def _collate(sequences: Sequence[RenderedSequence], rows: list[list[int]], row_tokens: int, pad_id: int) -> PackedBatch:
    shape = (len(rows), row_tokens)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    loss_mask = torch.zeros(shape, dtype=torch.bool)
    seq_ids = torch.full(shape, -1, dtype=torch.long)
    for b, row in enumerate(rows):
        cursor = 0
        for i in row:
            seq, n = sequences[i], len(sequences[i])
            input_ids[b, cursor : cursor + n] = torch.tensor(seq.token_ids)
            position_ids[b, cursor : cursor + n] = torch.arange(n)
            loss_mask[b, cursor : cursor + n] = torch.tensor(seq.loss_mask)
            seq_ids[b, cursor : cursor + n] = i
            cursor += n
    return PackedBatch(input_ids, position_ids, loss_mask, seq_ids, tuple(sorted(i for r in rows for i in r)))


def block_causal_mask(seq_ids: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) bool, True = attend: same sequence and not in the future. Padding attends to itself only."""
    T = seq_ids.shape[1]
    same = seq_ids[:, :, None] == seq_ids[:, None, :]  # (B, T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=seq_ids.device).tril()
    pad = (seq_ids < 0)[:, :, None] & torch.eye(T, dtype=torch.bool, device=seq_ids.device)
    return ((same & causal & (seq_ids >= 0)[:, :, None]) | pad)[:, None]


def attention_mask_4d(seq_ids: torch.Tensor, attn_implementation: str, dtype: torch.dtype) -> torch.Tensor:
    """The block-causal mask in the form the attention implementation wants: bool for sdpa, additive for eager."""
    allowed = block_causal_mask(seq_ids)
    if attn_implementation == "sdpa":
        return allowed
    if attn_implementation == "eager":
        additive = torch.zeros(allowed.shape, dtype=dtype, device=seq_ids.device)
        return additive.masked_fill(~allowed, torch.finfo(dtype).min)
    raise NotImplementedError(
        f"packed batches support attn_implementation 'sdpa' and 'eager', not {attn_implementation!r}"
    )
