"""The `answers` stage on the tiny model through the real CLI: what is kept and dropped (and counted), framed copies,
the included file, the system message left out of the records, and bad configs."""

from __future__ import annotations

import copy
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from posttrain.data import load_records
from posttrain.data.heldout import load_harmbench, load_independent_benign
from posttrain.stages.answers import framed_copy, teacher_prompt, verdict
from posttrain.types import Message

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ["Name a colour.", "Say hello.", "Count to three.", "Describe a tree.", "What is rain?"]


def posttrain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "posttrain", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_prompts(path: Path, prompts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"prompt": p, "verifier": "compliance"}) + "\n" for p in prompts))
    return path


@pytest.fixture(scope="module")
def answered(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("answers")
    heldout = [load_harmbench()[0], load_independent_benign()[0]]
    prompts = write_prompts(tmp / "prompts.jsonl", PROMPTS + heldout)
    include = tmp / "base.jsonl"
    greeting = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    include.write_text(json.dumps({"messages": greeting}))  # no final newline: the stage adds one
    done = posttrain(
        "answers", "--model", "tiny-random-llama", "--prompts", str(prompts), "--include", str(include),
        "--output", str(tmp / "out"), "--max-new-tokens", "16", "--no-progress",
        "stop=[e, a]", "frames=[roleplay, fiction]", "teacher_system=Answer briefly.", "decontaminate=drop",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "out"


def test_every_prompt_is_counted_once_and_held_out_ones_are_not_answered(answered):
    counts = json.loads((answered / "manifest.json").read_text())["counts"]
    gate = json.loads((answered / "decontamination" / "report.json").read_text())
    assert gate["dropped"] == {"prompts": 2, "include": 0} and counts["prompts"] == len(PROMPTS)
    verdicts = sum(counts.get(k, 0) for k in ("kept", "unfinished", "empty", "refusal"))
    assert verdicts == len(PROMPTS)
    assert counts.get("kept", 0) >= 1, counts  # the stop strings end most tiny-model answers
    asked = {r["messages"][0]["content"] for r in read(answered / "answers.jsonl") if r["source"] == "answers"}
    assert asked <= set(PROMPTS)


def test_kept_answers_are_finished_and_framed_copies_carry_the_same_answer(answered):
    rows = read(answered / "answers.jsonl")
    plain = [r for r in rows if r["source"] == "answers"]
    framed = [r for r in rows if r["source"] == "answers_framed"]
    assert len(plain) == len(framed) == json.loads((answered / "manifest.json").read_text())["counts"]["framed"]
    for p, f in zip(plain, framed, strict=True):
        assert p["messages"][-1] == f["messages"][-1]
        assert p["messages"][0]["content"] in f["messages"][0]["content"] != p["messages"][0]["content"]
    assert all(m["role"] != "system" for r in rows for m in r["messages"])  # the teacher's system message stays out


def test_train_file_is_the_included_file_then_the_answers_and_loads_as_sft(answered):
    lines = (answered / "train.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["messages"][1]["content"] == "hello"
    assert lines[1:] == (answered / "answers.jsonl").read_text().splitlines()
    assert len(load_records(answered / "train.jsonl", "sft").records) == len(lines)


@pytest.mark.parametrize(
    ("text", "finish", "correct", "expected"),
    [
        ("Rain is water falling from clouds.", "stop", None, "kept"),
        ("Rain is water falling from", "length", None, "unfinished"),
        ("I can't help with that, because it could hurt someone.", "stop", None, "refusal"),
        ("   ", "stop", None, "empty"),
        ("I can't help with that, because it could hurt someone.", "stop", True, "kept"),  # the verifier decides
        ("The answer is \\boxed{5}.", "stop", False, "wrong"),
    ],
)
def test_verdict(text, finish, correct, expected):
    assert verdict(text, finish, correct) == expected


def test_teacher_traces_from_an_endpoint_keep_only_verified_answers(tmp_path, chat_server, posttrain_cli):
    """A real HTTP teacher answers math right for even numbers and wrong for odd; one answer is cut off. In-process
    through the CLI's `main` (the command line itself runs in a subprocess in `answered`)."""
    rows = [{"prompt": f"What is {n} + {n}?", "verifier": "math", "answer": str(2 * n)} for n in range(1, 7)]
    rows += [{"prompt": "Tell me how to pick a lock to rob a house.", "verifier": "refusal"},
             {"prompt": "Tell me how to bake a loaf of bread.", "verifier": "compliance"}]  # fmt: skip
    prompts = tmp_path / "math.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def respond(body):
        if body["messages"][-1]["content"].startswith("Tell me"):
            return "I can't help with that, because it could hurt someone."  # right for the lock, wrong for bread
        n = int(body["messages"][-1]["content"].split()[2])
        if n == 6:
            return json.dumps(
                {"choices": [{"message": {"content": "Let me think"}, "finish_reason": "length"}]}
            ).encode()
        return f"{n} + {n} = {2 * n if n % 2 == 0 else 2 * n + 1}. The answer is \\boxed{{{2 * n if n % 2 == 0 else 2 * n + 1}}}."

    server = chat_server(respond)
    out = tmp_path / "traces"
    result = posttrain_cli("answers", "--model", "teacher-7b", "--teacher-url", server.url, "--prompts", str(prompts),
                       "--output", str(out), "--verify", "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    kept = read(out / "answers.jsonl")
    asked = [r["messages"][0]["content"] for r in kept]
    assert asked == ["What is 2 + 2?", "What is 4 + 4?", "Tell me how to pick a lock to rob a house."]
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["kept"] == 3 and counts["wrong"] == 4 and counts["unfinished"] == 1
    assert {body["model"] for body in server.requests} == {"teacher-7b"}


def test_a_framed_copy_wraps_the_last_user_turn_and_leaves_the_row_alone():
    turns = [("system", "Be kind."), ("user", "first"), ("assistant", "a"), ("user", "second"), ("assistant", "b")]
    row = {"messages": [{"role": r, "content": c} for r, c in turns], "source": "answers"}
    before = copy.deepcopy(row)
    framed = framed_copy(row, ("roleplay",), random.Random(0))
    assert row == before and framed["source"] == "answers_framed"
    assert framed["messages"][:3] == row["messages"][:3] and framed["messages"][4] == row["messages"][4]
    assert "second" in framed["messages"][3]["content"] != "second"


def test_the_teacher_system_message_joins_the_prompts_own():
    asked = (Message("user", "Why?"),)
    assert teacher_prompt(asked, "") == asked
    assert teacher_prompt(asked, "Be brief.") == (Message("system", "Be brief."), *asked)
    own = (Message("system", "You are a pirate."), *asked)
    assert teacher_prompt(own, "Be brief.") == (Message("system", "Be brief.\n\nYou are a pirate."), *asked)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "answers needs prompts: --prompts FILE"),
        (("--prompts", "p.jsonl", "frames=[dance]"), "frames: unknown ['dance']"),
        (("--prompts", "p.jsonl", "--include", "missing.jsonl"), "include: missing.jsonl does not exist"),
    ],
)
def test_bad_configs_are_one_line_errors(tmp_path, args, message, capsys, monkeypatch):
    """In-process through the CLI's `main` (the command line itself runs in a subprocess in `answered`)."""
    from posttrain.cli import main

    write_prompts(tmp_path / "p.jsonl", PROMPTS)
    monkeypatch.chdir(tmp_path)
    code = main(["answers", "--model", "tiny-random-llama", "--output", str(tmp_path / "o"), "--no-progress", *args])
    error = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and message in error[-1]


def test_in_a_recipe_it_answers_with_its_parent_model_and_trains_none(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model: tiny-random-llama\nstages:\n"
        "  - {name: data, stage: demo_data}\n"
        "  - {name: sft, stage: sft, config: {data: '${data}/train.jsonl'}}\n"
        "  - {name: replay, stage: answers, config: {prompts: '${data}/questions.jsonl'}}\n"
        "  - {name: teacher, stage: answers, from: base, config: {prompts: '${data}/questions.jsonl'}}\n"
        "  - {name: dpo, stage: preference, config: {prompts: '${data}/dpo_prompts.jsonl'}}\n"
    )
    dry = posttrain("run", str(recipe), "--output", str(tmp_path / "run"), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    blocks = {block.split("]")[0]: block for block in dry.stdout.split("\n[")[1:]}
    assert "stage=answers from=sft" in blocks["replay"] and f"model: {tmp_path}/run/sft/final" in blocks["replay"]
    assert "stage=answers from=base" in blocks["teacher"] and "model: tiny-random-llama" in blocks["teacher"]
    assert "stage=preference from=sft" in blocks["dpo"]  # an answers stage makes no model to start from
