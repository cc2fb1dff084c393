"""Training files as the text fields a decontamination scan compares: any data kind, one row at a time.

A row of a JSON Lines, Parquet or `datasets` file is read before any schema (`posttrain.data.loaders.read_rows`),
so SFT conversations, preference pairs, KTO records, RL prompts, red-team seeds and distillation traces are all
covered the same way: every string inside the row is a field, named by its path (`messages[1].content`,
`chosen[0].content`, `prompt`; a message's `role` is not text). A `.txt` file (the guard's request lists) has one field per non-blank line.
Rows that cannot be decoded are kept as errors, so a scan reports them and a stage's own loader judges them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.data.errors import DataError
from posttrain.data.loaders import read_rows
from posttrain.types import Source

MIN_FIELD_CHARS = 3  # shorter strings (labels, flags) are not text
NOT_TEXT = ("role",)  # keys whose strings are names, not text


@dataclass(frozen=True)
class Row:
    """One row: where it is, its raw value (a decoded JSON value or a text line) and its text fields."""

    source: Source
    value: Any
    fields: tuple[tuple[str, str], ...]  # (field path, text)
    error: DataError | None = None


def string_fields(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string inside a decoded JSON value with its path; dict keys are not text."""
    if isinstance(value, str):
        if len(value.strip()) >= MIN_FIELD_CHARS:
            yield path or "<value>", value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from string_fields(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in NOT_TEXT:
                yield from string_fields(item, f"{path}.{key}" if path else str(key))


def read_file_rows(path: str | Path) -> Iterator[Row]:
    """The rows of a training file (see the module docstring)."""
    path = str(path)
    if Path(path).suffix.lower() == ".txt":
        yield from _text_rows(path)
        return
    for source, value in read_rows(path):
        if isinstance(value, DataError):
            yield Row(source, None, (), value)
        else:
            yield Row(source, value, tuple(string_fields(value)))


def _text_rows(path: str) -> Iterator[Row]:
    """A text file: one row per non-blank line, undecodable lines as errors naming the line."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such file: {path}")
    for lineno, raw in enumerate(Path(path).read_bytes().split(b"\n"), start=1):
        source = Source(path, lineno)
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as err:
            yield Row(source, None, (), DataError(source, "<line>", f"invalid UTF-8 (byte at column {err.start + 1})"))
            continue
        if line:
            yield Row(source, line, (("<line>", line),))
