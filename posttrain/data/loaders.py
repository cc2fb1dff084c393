"""Load typed records from JSON Lines, Parquet, or a `datasets.Dataset.save_to_disk` directory.

Every record carries its `Source` (path and 1-based line, or 0-based row), and every bad record becomes a
`DataError` naming the file, the line and the field. With `skip_invalid=True` bad records are collected in
`LoadResult.skipped` and counted in a warning; nothing is dropped silently.

JSON Lines are read as bytes and split on b"\\n", so line numbers match what an editor shows even when a line holds
invalid UTF-8; such a line is decoded with `surrogateescape` and the string holding the bad bytes is named.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.data.errors import DataError
from posttrain.data.schema import SCHEMAS, parse_record
from posttrain.types import Source

logger = logging.getLogger("posttrain.data")

_JSONL_SUFFIXES = (".jsonl", ".json")
_DATASETS_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_BOM = b"\xef\xbb\xbf"
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # a JSON escape that may decode to a lone surrogate


@dataclass(frozen=True)
class LoadResult:
    """The records loaded from one path, and the invalid ones that were skipped."""

    records: tuple
    skipped: tuple[DataError, ...]
    path: str

    def summary(self) -> str:
        """One line for logs, e.g. "loaded 98 records from x.jsonl, skipped 2 invalid (see errors)"."""
        text = f"loaded {_plural(len(self.records), 'record')} from {self.path}"
        if self.skipped:
            text += f", skipped {len(self.skipped)} invalid (see errors)"
        return text


def load_records(path: str | os.PathLike, schema: str, *, skip_invalid: bool = False) -> LoadResult:
    """Load and validate every record in `path` against `schema` ("sft", "preference", "kto" or "rl")."""
    if schema not in SCHEMAS:
        raise ValueError(f"unknown schema {schema!r}; expected one of: {', '.join(SCHEMAS)}")
    path = os.fspath(path)
    rows, decode = _open_rows(path)
    records, skipped = _parse_rows(rows, decode, schema, skip_invalid)
    if skipped:
        logger.warning("%s: skipped %d invalid %s record(s); first: %s", path, len(skipped), schema, skipped[0])
    return LoadResult(records=tuple(records), skipped=tuple(skipped), path=path)


def read_rows(path: str | os.PathLike) -> Iterator[tuple[Source, Any]]:
    """Every row of a data file as (source, decoded JSON value), in order, before any schema: a row that cannot be
    decoded (invalid JSON or UTF-8) is yielded as its `DataError` instead of a value."""
    rows, decode = _open_rows(os.fspath(path))
    for source, raw in rows:
        try:
            yield source, decode(raw, source)
        except DataError as err:
            yield source, err


def _plural(n: int, word: str) -> str:
    """ "1 record", "2 records"."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _open_rows(path: str) -> tuple[Iterable[tuple[Source, Any]], Callable[[Any, Source], Any]]:
    """Pick a reader by path: the (source, raw row) pairs and the function that decodes a raw row."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    if p.is_dir():
        return _datasets_rows(path), _as_is
    if p.suffix.lower() in _JSONL_SUFFIXES:
        return _jsonl_lines(path), decode_json_line
    if p.suffix.lower() == ".parquet":
        return _parquet_rows(path), _as_is
    raise ValueError(
        f"{path}: unsupported data file; expected .jsonl or .json (JSON Lines), .parquet, "
        "or a directory written by datasets.Dataset.save_to_disk"
    )


def _parse_rows(
    rows: Iterable[tuple[Source, Any]], decode: Callable[[Any, Source], Any], schema: str, skip_invalid: bool
) -> tuple[list, list[DataError]]:
    """Decode and validate each row; raise the first DataError, or collect them all if `skip_invalid`."""
    records: list = []
    skipped: list[DataError] = []
    for source, raw in rows:
        try:
            records.append(parse_record(decode(raw, source), schema, source))
        except DataError as err:
            if not skip_invalid:
                raise
            skipped.append(err)
    return records, skipped


def _as_is(row: Any, source: Source) -> Any:
    """Tabular rows arrive already decoded."""
    return row


# --- JSON Lines ---------------------------------------------------------------------------------------------------


def _jsonl_lines(path: str) -> Iterator[tuple[Source, bytes]]:
    """Non-blank lines as raw bytes with their 1-based line numbers; blank lines are skipped, not errors."""
    data = Path(path).read_bytes()
    if data.startswith(_BOM):  # editors on Windows add one; json.loads rejects it
        data = data[len(_BOM) :]
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            yield Source(path, lineno), raw


def decode_json_line(raw: bytes, source: Source) -> Any:
    """Parse one JSON line; invalid JSON or invalid UTF-8 becomes a DataError naming the field."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        bad = f"invalid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})"
    else:
        bad = None
    try:
        obj = json.loads(raw.decode("utf-8", errors="surrogateescape"))
    except json.JSONDecodeError as err:
        if bad is not None:  # the bad bytes may be what broke the JSON; say the more basic thing
            raise DataError(source, "<line>", bad) from None
        raise DataError(source, "<json>", f"invalid JSON: {err.msg} (column {err.colno})") from None
    field = _find_surrogate(obj, "") if bad or _SURROGATE_ESCAPE.search(raw) else None
    if field is not None:
        raise DataError(source, field or "<line>", bad or "lone surrogate escape (\\udXXX): not encodable as UTF-8")
    if bad is not None:
        raise DataError(source, "<line>", bad)
    return obj


def _find_surrogate(value: Any, path: str) -> str | None:
    """The path of the first string or key holding a surrogate (from bad bytes or a `\\ud800` escape), or None."""
    if isinstance(value, str):
        return path if _has_surrogate(value) else None
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _find_surrogate(item, f"{path}[{i}]")
            if found is not None:
                return found
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{_printable(key)}" if path else _printable(key)
            if _has_surrogate(key):
                return child
            found = _find_surrogate(item, child)
            if found is not None:
                return found
    return None


def _has_surrogate(text: str) -> bool:
    """Whether `text` holds a code point in U+D800..U+DFFF, which UTF-8 cannot encode."""
    return _SURROGATE.search(text) is not None


def _printable(key: str) -> str:
    """A key safe to print: undecodable bytes shown as \\xNN."""
    return key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") if _has_surrogate(key) else key


# --- tabular sources ----------------------------------------------------------------------------------------------


def _parquet_rows(path: str) -> Iterator[tuple[Source, dict]]:
    """Rows of a Parquet file with 0-based row numbers."""
    import pyarrow.parquet as pq  # heavy; only needed for Parquet

    for row, obj in enumerate(pq.read_table(path).to_pylist()):
        yield Source(path, row, unit="row"), obj


def _datasets_rows(path: str) -> Iterator[tuple[Source, dict]]:
    """Rows of a directory written by `datasets.Dataset.save_to_disk`, with 0-based row numbers."""
    if not any((Path(path) / name).exists() for name in _DATASETS_MARKERS):
        raise ValueError(f"{path}: a directory, but not one written by datasets.Dataset.save_to_disk")
    try:
        import datasets
    except ImportError as err:
        raise ImportError(
            f"{path} is a `datasets` directory; loading it needs the datasets package: pip install posttrain[datasets]"
        ) from err
    dataset = datasets.load_from_disk(path)
    if isinstance(dataset, datasets.DatasetDict):
        splits = ", ".join(dataset)
        raise ValueError(f"{path}: a DatasetDict with splits ({splits}); pass one split's directory")
    for row, obj in enumerate(dataset):
        yield Source(path, row, unit="row"), obj
