"""Tests for posttrain.data: schemas, loaders and the `validate` subcommand, on real files in tmp_path."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from posttrain.data import SCHEMAS, DataError, LoadResult, load_records, parse_record
from posttrain.types import BinaryFeedback, Message, PreferencePair, RLTask, SFTExample, Source

REPO = Path(__file__).resolve().parents[1]

GOOD_SFT = {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}


def write_jsonl(path: Path, lines: list) -> Path:
    """Write `lines` (dicts are JSON-encoded, str and bytes written as is) one per line."""
    chunks = []
    for line in lines:
        if isinstance(line, bytes):
            chunks.append(line)
        elif isinstance(line, str):
            chunks.append(line.encode())
        else:
            chunks.append(json.dumps(line).encode())
    path.write_bytes(b"\n".join(chunks) + b"\n")
    return path


def load_error(path: Path, schema: str = "sft") -> DataError:
    """The DataError that loading `path` raises."""
    with pytest.raises(DataError) as info:
        load_records(path, schema)
    return info.value


# --- each malformed kind names file, line and field ---------------------------------------------------------------


def test_invalid_json_names_line_and_column(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [GOOD_SFT, GOOD_SFT, '{"messages": [}'])
    err = load_error(path)
    assert "bad.jsonl:3" in str(err)
    assert err.field == "<json>" and "'<json>'" in str(err)
    assert "invalid JSON" in err.problem and "column 15" in err.problem


def test_missing_field(tmp_path):
    bad = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]}
    path = write_jsonl(tmp_path / "bad.jsonl", [GOOD_SFT, GOOD_SFT, bad])
    err = load_error(path)
    assert "bad.jsonl:3" in str(err)
    assert "messages[1].content" in str(err)
    assert "missing" in err.problem


def test_missing_top_level_field(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "hi", "chosen": "a"}])
    err = load_error(path, "preference")
    assert "bad.jsonl:1" in str(err) and err.field == "rejected"


def test_unknown_role_lists_allowed_roles(tmp_path):
    bad = {"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]}
    path = write_jsonl(tmp_path / "bad.jsonl", [GOOD_SFT, GOOD_SFT, bad])
    err = load_error(path)
    assert "bad.jsonl:3" in str(err)
    assert "messages[1].role" in str(err)
    assert "'bot'" in err.problem and "system, user, assistant, tool" in err.problem


@pytest.mark.parametrize("content", ["", "  \n\t"])
def test_empty_content(tmp_path, content):
    bad = {"prompt": "q", "chosen": [{"role": "assistant", "content": content}], "rejected": "no"}
    path = write_jsonl(tmp_path / "bad.jsonl", [bad])
    err = load_error(path, "preference")
    assert "bad.jsonl:1" in str(err)
    assert "chosen[0].content" in str(err)
    assert "empty" in err.problem


def test_wrong_type_says_expected_and_got(tmp_path):
    good = {"prompt": "q", "chosen": "a", "rejected": "b"}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, {"prompt": 7, "chosen": "a", "rejected": "b"}])
    err = load_error(path, "preference")
    assert "bad.jsonl:2" in str(err)
    assert err.field == "prompt"
    assert "expected a list of messages or a string, got int" in err.problem


def test_wrong_type_of_content(tmp_path):
    bad = {"messages": [{"role": "user", "content": ["hi"]}, {"role": "assistant", "content": "a"}]}
    err = load_error(write_jsonl(tmp_path / "bad.jsonl", [bad]))
    assert "messages[0].content" in str(err) and "expected a string, got list" in err.problem


def test_invalid_utf8_names_the_field(tmp_path):
    bad = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "caf\xff"}]}'
    path = write_jsonl(tmp_path / "bad.jsonl", [GOOD_SFT, GOOD_SFT, bad])
    err = load_error(path)
    assert "bad.jsonl:3" in str(err)
    assert "messages[1].content" in str(err)
    assert "invalid UTF-8" in err.problem and "0xff" in err.problem
    str(err).encode("utf-8")  # the message itself must be printable


def test_invalid_utf8_in_a_key(tmp_path):
    bad = b'{"messages": [{"role": "user", "cont\xe9nt": "hi"}]}'
    err = load_error(write_jsonl(tmp_path / "bad.jsonl", [bad]))
    assert "bad.jsonl:1" in str(err) and "messages[0].cont\\xe9nt" in str(err)
    str(err).encode("utf-8")


def test_invalid_utf8_outside_a_string_names_the_line(tmp_path):
    err = load_error(write_jsonl(tmp_path / "bad.jsonl", [b'{"messages": \xff}']))
    assert "bad.jsonl:1" in str(err) and err.field == "<line>" and "invalid UTF-8" in err.problem


def test_lone_surrogate_escape_is_rejected(tmp_path):
    bad = '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "\\ud83d"}]}'
    err = load_error(write_jsonl(tmp_path / "bad.jsonl", [bad]))
    assert "messages[1].content" in str(err) and "surrogate" in err.problem


def test_record_not_an_object(tmp_path):
    err = load_error(write_jsonl(tmp_path / "bad.jsonl", [GOOD_SFT, "[1, 2]"]))
    assert "bad.jsonl:2" in str(err) and "expected a JSON object, got list" in err.problem


# --- schemas: happy paths and string shorthand --------------------------------------------------------------------


def src() -> Source:
    """A placeholder source for direct parse_record calls."""
    return Source("mem.jsonl", 1)


def test_sft_happy_path_ignores_extra_keys():
    obj = {
        "id": 3,
        "messages": [{"role": "system", "content": "be brief", "name": "x"}, *GOOD_SFT["messages"]],
    }
    record = parse_record(obj, "sft", src())
    assert isinstance(record, SFTExample)
    assert record.messages[0] == Message("system", "be brief") and record.messages[2].content == "4"
    assert record.source == src()


def test_sft_needs_an_assistant_message():
    with pytest.raises(DataError) as info:
        parse_record({"messages": [{"role": "user", "content": "hi"}]}, "sft", src())
    assert info.value.field == "messages" and "assistant" in info.value.problem


def test_sft_rejects_string_shorthand():
    with pytest.raises(DataError) as info:
        parse_record({"messages": "hi"}, "sft", src())
    assert "expected a list of messages, got string" in info.value.problem


def test_preference_lists_and_shorthand():
    listed = {
        "prompt": [{"role": "user", "content": "q"}],
        "chosen": [{"role": "assistant", "content": "good"}],
        "rejected": [{"role": "assistant", "content": "bad"}],
    }
    short = {"prompt": "q", "chosen": "good", "rejected": "bad", "id": "abc"}
    a, b = parse_record(listed, "preference", src()), parse_record(short, "preference", src())
    assert isinstance(a, PreferencePair) and a == b
    assert b.prompt == (Message("user", "q"),) and b.rejected == (Message("assistant", "bad"),)


def test_kto_happy_path_and_shorthand():
    record = parse_record({"prompt": "q", "completion": "a", "label": False}, "kto", src())
    assert isinstance(record, BinaryFeedback) and record.label is False
    assert record.completion == (Message("assistant", "a"),)
    listed = {
        "prompt": [{"role": "user", "content": "q"}],
        "completion": [{"role": "assistant", "content": "a"}],
    }
    assert parse_record({**listed, "label": True}, "kto", src()).label is True


@pytest.mark.parametrize("label", [1, 0, "true", None])
def test_kto_label_must_be_a_real_bool(label):
    with pytest.raises(DataError) as info:
        parse_record({"prompt": "q", "completion": "a", "label": label}, "kto", src())
    assert info.value.field == "label" and "expected true or false" in info.value.problem


def test_rl_happy_path_shorthand_and_metadata():
    obj = {"prompt": "2+2?", "verifier": "math", "answer": 4, "level": 1, "id": "t1"}
    record = parse_record(obj, "rl", src())
    assert isinstance(record, RLTask)
    assert record.prompt == (Message("user", "2+2?"),) and record.verifier == "math"
    assert record.answer == 4 and record.tests is None
    assert dict(record.metadata) == {"level": 1, "id": "t1"}
    listed = {
        "prompt": [{"role": "user", "content": "f?"}],
        "verifier": "code",
        "tests": ["assert f()"],
        "entry_point": "f",
    }
    assert parse_record(listed, "rl", src()).tests == ["assert f()"]


def test_rl_verifier_required():
    with pytest.raises(DataError) as info:
        parse_record({"prompt": "q"}, "rl", src())
    assert info.value.field == "verifier" and "missing" in info.value.problem


def test_unknown_schema_lists_schemas(tmp_path):
    with pytest.raises(ValueError, match="sft, preference, kto, rl"):
        parse_record({}, "dpo", src())
    with pytest.raises(ValueError, match="sft, preference, kto, rl"):
        load_records(write_jsonl(tmp_path / "x.jsonl", [GOOD_SFT]), "dpo")
    assert SCHEMAS == ("sft", "preference", "kto", "rl")


# --- loaders ------------------------------------------------------------------------------------------------------


def test_jsonl_sources_blank_lines_and_bom(tmp_path):
    path = tmp_path / "ok.jsonl"
    line = json.dumps(GOOD_SFT).encode()
    path.write_bytes(b"\xef\xbb\xbf" + line + b"\n\n   \r\n" + line + b"\r\n\n")
    result = load_records(path, "sft")
    assert [r.source for r in result.records] == [Source(str(path), 1), Source(str(path), 4)]
    assert result.skipped == () and result.path == str(path)
    assert result.summary() == f"loaded 2 records from {path}"


def test_json_suffix_is_read_as_lines(tmp_path):
    result = load_records(write_jsonl(tmp_path / "ok.json", [GOOD_SFT]), "sft")
    assert len(result.records) == 1


def test_skip_invalid_counts_and_warns(tmp_path, caplog):
    lines = [GOOD_SFT, "not json", GOOD_SFT, {"messages": []}, "", GOOD_SFT]
    path = write_jsonl(tmp_path / "mixed.jsonl", lines)
    with caplog.at_level(logging.WARNING, logger="posttrain.data"):
        result = load_records(path, "sft", skip_invalid=True)
    assert isinstance(result, LoadResult)
    assert [r.source.line for r in result.records] == [1, 3, 6]
    assert [(e.source.line, e.field) for e in result.skipped] == [(2, "<json>"), (4, "messages")]
    assert result.summary() == f"loaded 3 records from {path}, skipped 2 invalid (see errors)"
    assert any("skipped 2 invalid" in r.getMessage() for r in caplog.records)


def test_missing_and_unsupported_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl"):
        load_records(tmp_path / "nope.jsonl", "sft")
    csv = tmp_path / "data.csv"
    csv.write_text("a,b\n")
    with pytest.raises(ValueError, match=r"data\.csv: unsupported"):
        load_records(csv, "sft")
    with pytest.raises(ValueError, match="not one written by datasets"):
        load_records(tmp_path, "sft")


def test_parquet_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [
        {"prompt": "q0", "chosen": "a", "rejected": "b"},
        {"prompt": "q1", "chosen": "a", "rejected": "   "},
        {"prompt": "q2", "chosen": "a", "rejected": "b"},
    ]
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    err = load_error(path, "preference")
    assert f"{path} row 1" in str(err) and err.field == "rejected" and "empty" in err.problem
    result = load_records(path, "preference", skip_invalid=True)
    assert [r.source for r in result.records] == [Source(str(path), 0, "row"), Source(str(path), 2, "row")]


def test_datasets_directory(tmp_path):
    datasets = pytest.importorskip("datasets")
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    bad = {"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "yo"}]}
    path = tmp_path / "ds"
    datasets.Dataset.from_list([good, bad, good]).save_to_disk(str(path))
    err = load_error(path)
    assert f"{path} row 1" in str(err) and "messages[1].role" in str(err) and "'robot'" in err.problem
    result = load_records(path, "sft", skip_invalid=True)
    assert [r.source.line for r in result.records] == [0, 2] and result.records[0].messages[1].content == "yo"


# --- the `posttrain validate` subcommand --------------------------------------------------------------------------


def run_validate(path: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run `python -m posttrain validate PATH --schema sft ...` in a real subprocess."""
    cmd = [sys.executable, "-m", "posttrain", "validate", str(path), "--schema", "sft", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60)


def test_cli_validate_good_file(tmp_path, posttrain_cli):
    """In-process through the CLI's `main` (the bad file below runs as a real command line)."""
    path = write_jsonl(tmp_path / "good.jsonl", [GOOD_SFT, GOOD_SFT])
    proc = posttrain_cli("validate", path, "--schema", "sft")
    assert proc.returncode == 0, proc.stderr
    assert f"{path}: 2 valid sft records, 0 invalid" in proc.stdout


def test_cli_validate_bad_file(tmp_path):
    bad = {"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]}
    path = write_jsonl(tmp_path / "bad.jsonl", [GOOD_SFT, GOOD_SFT, bad, "{oops", bad])
    proc = run_validate(path, "--max-errors", "2")
    assert proc.returncode == 1
    assert f"{path}: 2 valid sft records, 3 invalid" in proc.stdout
    assert f"{path}:3: field 'messages[1].role'" in proc.stderr
    assert f"{path}:4: field '<json>'" in proc.stderr
    assert "... and 1 more" in proc.stderr and f"{path}:5:" not in proc.stderr


def test_cli_validate_missing_file(tmp_path, posttrain_cli):
    proc = posttrain_cli("validate", tmp_path / "nope.jsonl", "--schema", "sft")
    assert proc.returncode == 1 and "nope.jsonl" in proc.stderr
