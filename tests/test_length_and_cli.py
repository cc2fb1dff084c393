"""Over-long samples (file, line, field named) and the `posttrain` command's surface."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain.data import DataError, load_records
from posttrain.data.length import check_length, split_by_length


def _write_pairs(path: Path, long_line: int) -> Path:
    rows = []
    for line in range(1, 4):
        reply = "word " * (300 if line == long_line else 3)
        rows.append({"prompt": "Say words.", "chosen": reply, "rejected": "No."})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_too_long_sample_names_file_line_and_field(tmp_path, tiny_tokenizer):
    path = _write_pairs(tmp_path / "pairs.jsonl", long_line=2)
    records = load_records(path, "preference").records
    check_length(records[0], tiny_tokenizer, max_length=64)
    with pytest.raises(DataError) as err:
        check_length(records[1], tiny_tokenizer, max_length=64)
    assert f"{path}:2" in str(err.value) and "field 'chosen'" in str(err.value)
    assert "longer than max_length 64" in str(err.value)
    kept, errors = split_by_length(records, tiny_tokenizer, max_length=64)
    assert len(kept) == 2 and [e.source.line for e in errors] == [2]


def test_cli_validate_reports_too_long_samples(tmp_path, tiny, posttrain_cli):
    """In-process through the CLI's `main` (`validate` runs as a real command line in test_data.py)."""
    path = _write_pairs(tmp_path / "pairs.jsonl", long_line=3)
    result = posttrain_cli(
        "validate", str(path), "--schema", "preference", "--model", "tiny-random-llama", "--max-length", "64"
    )
    assert result.returncode == 1
    assert f"{path}:3: field 'chosen': sample is" in result.stderr
    assert "2 valid preference records, 1 invalid" in result.stdout


def test_help_lists_every_stage_and_validate(posttrain_cli):
    result = posttrain_cli("--help")
    assert result.returncode == 0
    for command in ("sft", "preference", "rlvr", "run", "demo", "eval", "decontaminate", "validate"):
        assert command in result.stdout
