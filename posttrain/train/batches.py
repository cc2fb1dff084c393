"""From records to packed training batches, deterministically in (seed, epoch), so a resumed run sees the same data."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from posttrain.data.errors import DataError
from posttrain.packing import PackedBatch, pack
from posttrain.render import RenderedSequence, TemplateError

log = logging.getLogger("posttrain.train")


@dataclass(frozen=True)
class RenderReport:
    """What rendering kept and what it skipped, with the reasons."""

    kept: int
    skipped: tuple[DataError, ...]

    def summary(self, what: str) -> str:
        """One line for the console and the run log."""
        return f"{what}: {self.kept} sequences rendered, {len(self.skipped)} skipped (too long or unrenderable)"


def render_all(
    records: Sequence,
    render: Callable[[object], RenderedSequence],
    max_length: int,
    skip_invalid: bool,
) -> tuple[list[RenderedSequence], RenderReport]:
    """Render every record; one that is too long or breaks the template raises, or is counted when skipping."""
    sequences, skipped = [], []
    for record in records:
        try:
            sequence = render(record)
            if len(sequence) > max_length:
                raise DataError(
                    record.source, "messages", f"sample is {len(sequence)} tokens, longer than max_length {max_length}"
                )
            if sequence.n_trained == 0:
                raise DataError(record.source, "messages", "no trained (assistant) tokens after rendering")
        except TemplateError as err:
            error = DataError(record.source, "<template>", str(err))
            if not skip_invalid:
                raise error from err
            skipped.append(error)
        except DataError as err:
            if not skip_invalid:
                raise
            skipped.append(err)
        else:
            sequences.append(sequence)
    if skipped:
        log.warning("skipped %d of %d records while rendering; first: %s", len(skipped), len(records), skipped[0])
    return sequences, RenderReport(len(sequences), tuple(skipped))


def epoch_batches(
    sequences: Sequence[RenderedSequence],
    row_tokens: int,
    rows_per_batch: int,
    pad_id: int,
    seed: int,
    epoch: int,
) -> list[PackedBatch]:
    """The packed batches of one epoch, shuffled by a seed derived from (seed, epoch)."""
    return pack(sequences, row_tokens, rows_per_batch, pad_id, seed=seed * 100_003 + epoch)
