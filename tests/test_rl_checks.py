"""Checks that run before training: the fields each verifier reads, what it needs from the machine, RL prompt
lengths, and `make test`'s bubblewrap check. All against real files, real PATHs and real processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from posttrain.data import DataError, load_records, parse_record
from posttrain.data.length import check_prompt_lengths
from posttrain.render import render_prompt
from posttrain.rewards.route import REQUIRED_FIELDS, VERIFIER_CLASSES, MissingPrerequisite, check_prerequisites
from posttrain.types import Source

REPO = Path(__file__).resolve().parents[1]
GOOD = {"prompt": "What is 2 + 2?", "verifier": "math", "answer": "4"}


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


# --- the fields each verifier reads -------------------------------------------------------------------------------


def test_every_verifier_states_its_fields():
    assert set(REQUIRED_FIELDS) == set(VERIFIER_CLASSES)


def test_loader_refuses_a_math_task_without_answer(tmp_path):
    path = _write_jsonl(tmp_path / "tasks.jsonl", [GOOD, {"prompt": "What is 3 + 3?", "verifier": "math"}])
    with pytest.raises(DataError) as info:
        load_records(path, "rl")
    assert str(info.value) == f"{path}:2: field 'answer': required by verifier 'math'"


BAD_RL = [  # (record, field, problem)
    ({"prompt": "q", "verifier": "math", "answer": None}, "answer", "required by verifier 'math'"),
    ({"prompt": "q", "verifier": "math", "answer": "  "}, "answer", "empty, but verifier 'math' needs it"),
    ({"prompt": "q", "verifier": "code"}, "tests", "required by verifier 'code'"),
    ({"prompt": "q", "verifier": "code", "tests": []}, "tests", "empty, but verifier 'code' needs it"),
    ({"prompt": "q", "verifier": "reasoning_gym", "entry": {"answer": "4"}}, "dataset", "required by verifier"),
    ({"prompt": "q", "verifier": "reasoning_gym", "dataset": "d", "entry": {}}, "entry.answer", "required by"),
    ({"prompt": "q", "verifier": "maths", "answer": "4"}, "verifier", "unknown verifier 'maths'; known: math, "),
]


@pytest.mark.parametrize(("record", "field", "problem"), BAD_RL)
def test_rl_schema_checks_what_the_verifier_reads(record, field, problem):
    with pytest.raises(DataError) as info:
        parse_record(record, "rl", Source("t.jsonl", 7))
    assert info.value.field == field and info.value.problem.startswith(problem)
    assert str(info.value).startswith(f"t.jsonl:7: field '{field}': ")


def test_fields_that_are_there_pass_and_eval_judges_need_none():
    gym = {"prompt": "q", "verifier": "reasoning_gym", "dataset": "d", "entry": {"answer": 0}}
    assert parse_record(gym, "rl", Source("t.jsonl", 1)).metadata["entry"] == {"answer": 0}
    assert parse_record({**GOOD, "answer": 0}, "rl", Source("t.jsonl", 2)).answer == 0  # 0 is an answer
    assert parse_record({"prompt": "q", "verifier": "refusal"}, "rl", Source("t.jsonl", 3)).verifier == "refusal"


def test_cli_validate_names_each_missing_field(tmp_path, posttrain_cli):
    """In-process through the CLI's `main` (`validate` runs as a real command line in test_data.py)."""
    rows = [GOOD, *(record for record, _, _ in BAD_RL)]
    path = _write_jsonl(tmp_path / "tasks.jsonl", rows)
    run = posttrain_cli("validate", path, "--schema", "rl")
    assert run.returncode == 1
    assert f"1 valid rl records, {len(BAD_RL)} invalid" in run.stdout
    errors = [line for line in run.stderr.splitlines() if line.startswith(f"{path}:")]  # not the loader's warning
    assert len(errors) == len(BAD_RL)
    assert errors[0] == f"{path}:2: field 'answer': required by verifier 'math'"
    assert errors[2] == f"{path}:4: field 'tests': required by verifier 'code'"
    assert errors[-1].startswith(f"{path}:{len(rows)}: field 'verifier': unknown verifier 'maths'")


# --- what the verifiers need from the machine ---------------------------------------------------------------------


def test_prerequisites_without_bwrap_on_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a real, empty PATH
    with pytest.raises(MissingPrerequisite) as info:
        check_prerequisites(["math", "code"])
    assert str(info.value) == "verifier 'code' needs bubblewrap (bwrap is not on PATH): apt-get install bubblewrap"


def test_prerequisites_of_this_machine_are_met():
    """`make test` installs bubblewrap and reasoning-gym, so every verifier can run here (a trial sandbox runs)."""
    check_prerequisites([*VERIFIER_CLASSES, "refusal"])


def test_prerequisites_in_an_interpreter_without_site_packages():
    """`python -S` leaves site-packages out: math-verify and reasoning-gym are really missing there."""
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "from posttrain.rewards.route import check_prerequisites\n"
        "check_prerequisites(['math', 'reasoning_gym'])\n"
    )
    run = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60)
    message = run.stderr.strip().splitlines()[-1]
    assert message.startswith("posttrain.rewards.route.MissingPrerequisite: verifier 'math' needs math-verify: pip")
    assert "; verifier 'reasoning_gym' needs the reasoning-gym package (import failed: No module named" in message
    assert message.endswith("make setup, or pip install 'posttrain[gym]'")


def test_prerequisites_of_an_unknown_verifier():
    with pytest.raises(ValueError, match="unknown verifier 'maths'"):
        check_prerequisites(["maths"])


# --- RL prompt lengths --------------------------------------------------------------------------------------------


def test_prompt_lengths_name_file_line_and_length(tmp_path, tiny_tokenizer):
    long_prompt = "Add these numbers: " + " + ".join(["1"] * 100)
    rows = [GOOD, {**GOOD, "prompt": long_prompt}, {**GOOD, "prompt": long_prompt}, GOOD]
    tasks = load_records(_write_jsonl(tmp_path / "tasks.jsonl", rows), "rl").records
    short, long = (len(render_prompt(tiny_tokenizer, tasks[i].prompt)) for i in (0, 1))  # as the sampler renders
    assert short < 64 < long
    with pytest.raises(DataError) as info:
        check_prompt_lengths(tasks, tiny_tokenizer, max_prompt_length=64)
    assert str(info.value) == (
        f"{tmp_path / 'tasks.jsonl'}:2: field 'prompt': prompt is {long} tokens once rendered for sampling, "
        "longer than max_prompt_length 64"
    )
    kept, n_skipped = check_prompt_lengths(tasks, tiny_tokenizer, max_prompt_length=64, skip_invalid=True)
    assert kept == [tasks[0], tasks[3]] and n_skipped == 2
    assert check_prompt_lengths(tasks, tiny_tokenizer, max_prompt_length=long) == (list(tasks), 0)


# --- make test's bubblewrap check ---------------------------------------------------------------------------------


def test_make_stops_with_one_line_when_bwrap_is_missing():
    """As a user who cannot install it (nobody, when we are root), with a PATH that lacks bwrap."""
    setpriv = shutil.which("setpriv")  # looked up here: the command runs with the bare PATH
    if os.geteuid() == 0 and setpriv is None:
        pytest.skip("running as root, and setpriv (util-linux) is not there to drop to another user")
    drop = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    with tempfile.TemporaryDirectory() as bin_dir:  # in /tmp, which nobody can enter (pytest's tmp_path is 0700)
        os.chmod(bin_dir, 0o755)
        os.symlink(shutil.which("id"), os.path.join(bin_dir, "id"))
        run = subprocess.run(
            [*drop, shutil.which("make"), "-s", "bubblewrap"],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={"PATH": bin_dir},
            timeout=60,
        )
    assert run.returncode != 0 and run.stdout == ""
    assert run.stderr.splitlines()[0] == (
        "make test needs bubblewrap (bwrap is not on PATH): install it, e.g. sudo apt-get install bubblewrap"
    )


def test_make_check_passes_when_bwrap_is_there():
    run = subprocess.run(["make", "-s", "bubblewrap"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
