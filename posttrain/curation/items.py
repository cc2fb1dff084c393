"""Records as curation items: the validated record, its JSONL row as read (written back unchanged if selected), and
the two texts the rules read.

- `prompt`, the question: an RL task's prompt turns, or an SFT conversation's turns before its last assistant turn.
  System turns are left out, so that a long shared system prompt does not make every record look alike.
- `response`: an SFT conversation's last assistant turn; None for an RL task, which has no response yet.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from posttrain.data import DataError, load_records
from posttrain.types import Message, RLTask, SFTExample, Source

JSONL_SUFFIXES = (".jsonl", ".json")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class PassRate:
    """How many of a task's sampled completions the verifier passed."""

    solved: int
    samples: int

    @property
    def rate(self) -> float:
        """The fraction passed."""
        return self.solved / self.samples

    def __str__(self) -> str:
        return f"{self.solved}/{self.samples}"


@dataclass(frozen=True)
class Item:
    """One record being curated, with what the rules found out about it so far."""

    record: RLTask | SFTExample
    row: bytes  # the record's line as read, without its newline
    prompt: str
    response: str | None
    pass_rate: PassRate | None = None  # set by the difficulty rule
    cluster: int | None = None  # set by the diversity rule

    @property
    def source(self) -> Source:
        """Where the record was read (file:line)."""
        return self.record.source  # type: ignore[return-value]

    @property
    def text(self) -> str:
        """The question and the response together."""
        return self.prompt if self.response is None else f"{self.prompt}\n{self.response}"


def _joined(messages: tuple[Message, ...]) -> str:
    return "\n".join(m.content for m in messages if m.role != "system")


def item_of(record: RLTask | SFTExample, row: bytes) -> Item:
    """The item for a validated record (an SFT record always holds an assistant turn: the schema checks it)."""
    if isinstance(record, RLTask):
        return Item(record, row, _joined(record.prompt), None)
    last = max(i for i, m in enumerate(record.messages) if m.role == "assistant")
    return Item(record, row, _joined(record.messages[:last]), record.messages[last].content)


def jsonl_rows(path: str | os.PathLike) -> dict[int, bytes]:
    """Every line of a JSON Lines file by its 1-based number, as `load_records` numbers them."""
    data = Path(path).read_bytes()
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    return dict(enumerate(data.split(b"\n"), start=1))


def read_items(
    path: str | os.PathLike, schema: str, skip_invalid: bool = False
) -> tuple[list[Item], tuple[DataError, ...]]:
    """The valid records of a JSON Lines file as items, and the invalid lines skipped (with `skip_invalid`; without
    it the first invalid line raises a DataError naming file, line and field)."""
    if schema not in ("rl", "sft"):
        raise ValueError(f"curate reads the rl or sft schema, got {schema!r}")
    if Path(path).suffix.lower() not in JSONL_SUFFIXES:
        raise ValueError(f"{path}: curate reads JSON Lines (.jsonl), since it writes the selected rows back unchanged")
    loaded = load_records(path, schema, skip_invalid=skip_invalid)
    rows = jsonl_rows(path)
    return [item_of(r, rows[r.source.line]) for r in loaded.records], loaded.skipped
