"""Packing rendered sequences into fixed-shape batches without attention across sequence boundaries, optionally
with a group's shared prefix packed once.

Sequences are placed into rows of `row_tokens` slots by best-fit decreasing (each sequence, longest first, goes to
the row whose free space it fills most tightly), and rows are grouped `rows_per_batch` at a time.

Each packed row restarts `position_ids` at 0 for every sequence. Resetting positions alone does not isolate
sequences under `sdpa` or `eager` attention (checked on transformers 5.24), so every batch also carries a
block-causal mask built by `attention_mask_4d`.

Prefix sharing (`pack_shared_prefix`): the sequences of a group that start with the same untrained tokens (the
samples of one prompt in GRPO, or multi-turn trajectories from one prompt) are laid out as one segment, the shared
prefix once and then each member's remaining tokens:

    row:      [ p0 p1 p2 | a3 a4 a5 | b3 b4 | c3 c4 c5 c6 ]   pad ...
    position:    0  1  2 |  3  4  5 |  3  4 |  3  4  5  6
    seq_ids:    -2 -2 -2 |  i  i  i |  j  j |  k  k  k  k     -1
    prev_slot:  -1  0  1 |  2  3  4 |  2  6 |  2  8  9 10     -1

A member's slots attend to the prefix and causally to their own slots, never to another member's, and their
positions continue from the prefix length, so each member sees exactly what it would see packed alone. Prefix slots
belong to every member, so their `seq_ids` hold the marker `SHARED` (-2) rather than one sequence's index; they
never carry loss (the shared prefix stops before any member's first trained token). `prev_slot` names the slot
holding each token's predecessor: for a member's first token that is the last prefix slot, not the slot before it
in the row. The ordinary packing is the special case of an empty prefix and one member per segment.

A group whose segment is longer than a row is split: best-fit decreasing spreads its members over segments that
each fit in `row_tokens`, each segment repeating the prefix. The results are the same (the prefix carries no loss,
and its gradient is the sum over the segments), only less of the prefix's compute is saved.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from posttrain.render import RenderedSequence

PAD = -1  # seq_ids and segment_ids of padding slots
SHARED = -2  # seq_ids of a shared prefix's slots, which belong to every member of their segment


@dataclass(frozen=True)
class PackedBatch:
    """A (B, T) block of packed sequences. `seq_ids` maps each slot to its sequence's index in the input (PAD for
    padding, SHARED for a shared prefix); `segment_ids` says which slots may attend to each other at all."""

    input_ids: torch.Tensor  # (B, T) long
    position_ids: torch.Tensor  # (B, T) long, each sequence's positions from 0 (a member's continue its prefix's)
    loss_mask: torch.Tensor  # (B, T) bool, True where the token is a training target
    seq_ids: torch.Tensor  # (B, T) long, index into the packed list; PAD for padding, SHARED for a shared prefix
    segment_ids: torch.Tensor  # (B, T) long, a sequence (or a prefix and its members) per id; PAD for padding
    prev_slot: torch.Tensor  # (B, T) long, column of the token before this one in its sequence; -1: none
    sequence_indices: tuple[int, ...]  # the original indices of the sequences in this batch, sorted

    def to(self, device: torch.device | str) -> PackedBatch:
        """The same batch with its tensors on `device`."""
        move = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        return PackedBatch(**move, sequence_indices=self.sequence_indices)

    @property
    def n_real_tokens(self) -> int:
        """Slots holding a real token (a shared prefix counted once)."""
        return int((self.segment_ids != PAD).sum())

    @property
    def efficiency(self) -> float:
        """Real tokens over slots."""
        return self.n_real_tokens / self.seq_ids.numel()


@dataclass(frozen=True)
class Segment:
    """What one stretch of a row holds: the first `prefix_length` tokens of `members[0]` (shared by every member),
    then each member's tokens after them."""

    members: tuple[int, ...]
    prefix_length: int = 0

    def length(self, lengths: Sequence[int]) -> int:
        """Slots the segment takes."""
        return self.prefix_length + sum(lengths[i] - self.prefix_length for i in self.members)


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
    return _pack_segments(
        sequences, [Segment((i,)) for i in range(len(sequences))], row_tokens, rows_per_batch, pad_id, seed
    )


def pack_shared_prefix(
    sequences: Sequence[RenderedSequence],
    groups: Sequence[Sequence[int]],
    row_tokens: int,
    rows_per_batch: int = 1,
    pad_id: int = 0,
    seed: int | None = None,
) -> list[PackedBatch]:
    """Pack each group of sequence indices with its shared prefix once (`shared_prefix_length`), as `pack` does
    otherwise: segments by best-fit decreasing into rows, rows shuffled with a `seed`, then grouped into batches.

    A group too long for one row is split over several segments, each repeating the prefix (module docstring).
    Every sequence must be in exactly one group; a group of one is packed as `pack` would, up to `seq_ids`.
    """
    lengths = [len(s) for s in sequences]
    if sorted(i for g in groups for i in g) != list(range(len(sequences))):
        raise ValueError("groups must hold every sequence index exactly once")
    too_long = [i for i, n in enumerate(lengths) if n > row_tokens]
    if too_long:
        raise ValueError(f"sequence {too_long[0]} has {lengths[too_long[0]]} tokens, more than a row ({row_tokens})")
    segments = [s for g in groups for s in _group_segments(sequences, list(g), row_tokens)]
    return _pack_segments(sequences, segments, row_tokens, rows_per_batch, pad_id, seed)


def shared_prefix_length(sequences: Sequence[RenderedSequence], members: Sequence[int]) -> int:
    """Length of the longest token prefix common to the members that holds none of their trained tokens."""
    first = sequences[members[0]]
    limit = min(_first_trained(sequences[i]) for i in members)
    for i in members[1:]:
        ids = sequences[i].token_ids
        limit = next((t for t in range(limit) if ids[t] != first.token_ids[t]), limit)
    return limit


def _first_trained(sequence: RenderedSequence) -> int:
    return next((t for t, trained in enumerate(sequence.loss_mask) if trained), len(sequence))


def _group_segments(sequences: Sequence[RenderedSequence], members: list[int], row_tokens: int) -> list[Segment]:
    """One segment for the group, or, if it is longer than a row, as few as best-fit decreasing makes."""
    prefix = shared_prefix_length(sequences, members)
    own = [len(sequences[i]) - prefix for i in members]
    if prefix + sum(own) <= row_tokens:
        return [Segment(tuple(members), prefix)]
    chunks = best_fit_decreasing(own, row_tokens - prefix)
    return [Segment(tuple(members[k] for k in chunk), prefix) for chunk in chunks]


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


def _rows_of(members: list[int], lengths: Sequence[int], row_tokens: int) -> list[list[Segment]]:
    rows = best_fit_decreasing([lengths[i] for i in members], row_tokens)
    return [[Segment((members[k],)) for k in row] for row in rows]


def _pack_segments(
    sequences: Sequence[RenderedSequence],
    segments: list[Segment],
    row_tokens: int,
    rows_per_batch: int,
    pad_id: int,
    seed: int | None,
) -> list[PackedBatch]:
    lengths = [len(s) for s in sequences]
    bins = best_fit_decreasing([s.length(lengths) for s in segments], row_tokens)
    rows = [[segments[k] for k in b] for b in bins]
    if seed is not None:
        random.Random(seed).shuffle(rows)
    return [
        _collate(sequences, rows[start : start + rows_per_batch], row_tokens, pad_id)
        for start in range(0, len(rows), rows_per_batch)
    ]


def _collate(
    sequences: Sequence[RenderedSequence], rows: list[list[Segment]], row_tokens: int, pad_id: int
) -> PackedBatch:
    shape = (len(rows), row_tokens)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    loss_mask = torch.zeros(shape, dtype=torch.bool)
    seq_ids = torch.full(shape, PAD, dtype=torch.long)
    segment_ids = torch.full(shape, PAD, dtype=torch.long)
    prev_slot = torch.full(shape, -1, dtype=torch.long)
    segment_id = 0
    for b, row in enumerate(rows):
        cursor = 0
        for segment in row:
            p = segment.prefix_length
            if p:
                prefix = sequences[segment.members[0]]
                input_ids[b, cursor : cursor + p] = torch.tensor(prefix.token_ids[:p])
                position_ids[b, cursor : cursor + p] = torch.arange(p)
                seq_ids[b, cursor : cursor + p] = SHARED
                prev_slot[b, cursor + 1 : cursor + p] = torch.arange(cursor, cursor + p - 1)
            last_prefix_slot, start = cursor + p - 1, cursor
            cursor += p
            for i in segment.members:
                seq, n = sequences[i], len(sequences[i]) - p
                input_ids[b, cursor : cursor + n] = torch.tensor(seq.token_ids[p:])
                position_ids[b, cursor : cursor + n] = torch.arange(p, p + n)
                loss_mask[b, cursor : cursor + n] = torch.tensor(seq.loss_mask[p:])
                seq_ids[b, cursor : cursor + n] = i
                prev_slot[b, cursor : cursor + n] = torch.arange(cursor - 1, cursor + n - 1)
                if n:
                    prev_slot[b, cursor] = last_prefix_slot if p else -1
                cursor += n
            segment_ids[b, start:cursor] = segment_id
            segment_id += 1
    indices = tuple(sorted(i for row in rows for segment in row for i in segment.members))
    return PackedBatch(input_ids, position_ids, loss_mask, seq_ids, segment_ids, prev_slot, indices)


def block_causal_mask(
    seq_ids: torch.Tensor,
    segment_ids: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    window: int | None = None,
) -> torch.Tensor:
    """(B, 1, T, T) bool, True = attend: same segment, not in the future, and the same sequence or a shared
    prefix. `segment_ids` default to `seq_ids` (no shared prefixes). Padding attends to itself only.

    With a sliding `window`, a query also sees only keys fewer than `window` positions behind it (`position_ids`,
    so a member after a shared prefix counts the prefix's positions, as it would unpacked)."""
    segment_ids = seq_ids if segment_ids is None else segment_ids
    T = seq_ids.shape[1]
    same_segment = segment_ids[:, :, None] == segment_ids[:, None, :]  # (B, T, T)
    visible = (seq_ids[:, :, None] == seq_ids[:, None, :]) | (seq_ids == SHARED)[:, None, :]  # (B, T, T)
    if window is not None:
        if position_ids is None:
            raise ValueError("a sliding window needs the slots' position_ids")
        visible &= position_ids[:, :, None] - position_ids[:, None, :] < window
    causal = torch.ones(T, T, dtype=torch.bool, device=seq_ids.device).tril()
    real = (segment_ids != PAD)[:, :, None]
    pad = ~real & torch.eye(T, dtype=torch.bool, device=seq_ids.device)
    return ((same_segment & visible & causal & real) | pad)[:, None]


def attention_mask_4d(
    batch: PackedBatch, attn_implementation: str, dtype: torch.dtype, window: int | None = None
) -> torch.Tensor:
    """The batch's block-causal mask (with a sliding `window`, if given) in the form the attention implementation
    wants: bool for sdpa, additive for eager."""
    allowed = block_causal_mask(batch.seq_ids, batch.segment_ids, batch.position_ids, window)
    if attn_implementation == "sdpa":
        return allowed
    if attn_implementation == "eager":
        additive = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
        return additive.masked_fill(~allowed, torch.finfo(dtype).min)
    raise NotImplementedError(
        f"packed batches support attn_implementation 'sdpa' and 'eager', not {attn_implementation!r}"
    )
