"""`constitution_data`: the demo's constitution-stage prompts and replay, built from the mix's training file."""

from __future__ import annotations

import json

import pytest

from posttrain.data.heldout import load_heldout_jailbreaks, load_independent_benign
from posttrain.data.neardup import NearDuplicates
from posttrain.demo.constitution_data import ConstitutionDataConfig, run
from posttrain.demo.mix import build_demo_data


def read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("cai")
    train = build_demo_data(root / "data")["train"]
    out = run(ConstitutionDataConfig(train=str(train), output=str(root / "out"), per_label=10, seed=0))
    return read(train), read(out / "prompts.jsonl"), read(out / "replay.jsonl"), out


def test_prompts_are_harmful_and_benign_training_prompts_and_topic_questions_some_in_our_frames(built):
    train, prompts, _, out = built
    mix = [p for p in prompts if p["source"] != "topic"]
    topics = [p for p in prompts if p["source"] == "topic"]
    assert [p["verifier"] for p in mix] == ["refusal"] * 10 + ["compliance"] * 10
    assert {p["verifier"] for p in topics} == {"compliance"} and len(topics) > 100
    requests = {row["messages"][0]["content"] for row in train}
    plain = [p for p in mix if p["prompt"] in requests]
    assert 0 < len(plain) < len(mix)  # some as written, the rest framed
    assert all(any(r in p["prompt"] or r[1:] in p["prompt"] for r in requests) for p in mix)
    heldout = NearDuplicates(load_heldout_jailbreaks())
    assert not any(heldout.matches(p["prompt"]) for p in prompts)  # never the held-out jailbreak frames
    independent = NearDuplicates(load_independent_benign())
    assert not any(independent.matches(p["prompt"]) for p in topics)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["prompts"]["topic"] == len(topics) and manifest["topic_questions_dropped"] >= 0


def test_replay_keeps_every_answer_and_adds_a_framed_copy_of_the_benign_ones(built):
    train, _, replay, _ = built
    kept = [r for r in train if r["source"] not in ("arithmetic", "word_problem")]
    plain, framed = replay[: len(kept)], replay[len(kept) :]
    assert [r["messages"] for r in plain] == [r["messages"] for r in kept]
    originals = [r for r in kept if r["source"] in ("benign", "everyday")]  # refusals are not framed
    assert len(framed) == len(originals)
    for original, copy in zip(originals, framed, strict=True):
        assert copy["messages"][1] == original["messages"][1] and copy["source"] == f"{original['source']}_framed"
        assert copy["messages"][0]["content"] != original["messages"][0]["content"]


def test_the_same_seed_writes_the_same_files(built, tmp_path):
    _, prompts, replay, out = built
    train = out.parent / "data" / "train.jsonl"
    again = run(ConstitutionDataConfig(train=str(train), output=str(tmp_path), per_label=10, seed=0))
    assert read(again / "prompts.jsonl") == prompts and read(again / "replay.jsonl") == replay


def test_a_missing_training_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl"):
        run(ConstitutionDataConfig(train=str(tmp_path / "nope.jsonl"), output=str(tmp_path / "o")))
