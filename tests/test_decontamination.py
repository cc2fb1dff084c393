"""Decontamination: the methods on planted contamination, every data kind, bad inputs, the linter and the gate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from posttrain.benchmarks import load_benchmark
from posttrain.data.errors import DataError
from posttrain.data.heldout import load_harmbench
from posttrain.decontam.benchmarks import benchmark, file_items
from posttrain.decontam.methods import NGramCoverage
from posttrain.decontam.ngrams import words
from posttrain.decontam.planted import false_positives, plant, recall
from posttrain.decontam.scan import Detector
from posttrain.demo import texts
from posttrain.gate import ContaminatedData
from posttrain.registry import STAGES

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def harmbench_detector():
    return Detector([load_benchmark("harmbench")], ("ngram13", "ngram8", "minhash"))


def _clean_texts() -> list[str]:
    """Requests written for the demo (everyday and benign look-alikes) and AdvBench prompts that are not HarmBench
    near-duplicates: text that shares topics and shapes with HarmBench but not its items."""
    from posttrain.demo.mix import harmful_pool, load_advbench, load_dna

    pool, _ = harmful_pool(load_advbench(), load_dna()[0], load_harmbench())
    return [*(text for pair in texts.EVERYDAY_REQUESTS for text in pair), *(p.text for p in pool)]


def test_coverage_score_is_the_fraction_of_the_items_ngrams_present():
    item = " ".join(f"w{i}" for i in range(20))  # 20 distinct words: 8 distinct 13-grams
    method = NGramCoverage(13, threshold=0.5)
    method.fit([words(item)], [item])
    first16 = " ".join(f"w{i}" for i in range(16))  # holds the first 4 of the 8
    first15 = " ".join(f"w{i}" for i in range(15))  # 3 of 8, under the threshold
    texts_ = [first16, f"prefix words here {item} and after", first15]
    found = method.match([words(t) for t in texts_], texts_)
    assert found[0] == [(0, 0.5)] and found[1] == [(0, 1.0)] and found[2] == []


def test_short_items_match_whole_and_very_short_ones_only_exactly():
    items = ["one two three four five six seven eight nine ten eleven", "what is 8 * 6"]
    method = NGramCoverage(13, threshold=0.5)
    method.fit([words(i) for i in items], items)
    probes = ["so: One two, three four five six seven eight nine ten ELEVEN!", "What is the 8 * 6?", "What is 8*6?"]
    found = method.match([words(p) for p in probes], probes)
    assert found[0] == [(0, 1.0)]  # 11 words: contained whole
    assert found[1] == []  # 4 words: only an equal text counts
    assert found[2] == [(1, 1.0)]  # equal after normalisation, operators kept
    assert words("8 * 6") != words("8 + 6")


def test_planted_contamination_is_found_and_clean_text_is_not(harmbench_detector):
    items = list(harmbench_detector.benchmarks[0].items)
    planted = plant(items, seed=1)
    for kind in ("exact", "reformatted", "embedded"):
        found = _matches(harmbench_detector, planted[kind])
        assert recall(found, range(len(items))) >= 0.99, kind
    clean = _clean_texts()
    assert len(clean) > 400
    assert false_positives(_matches(harmbench_detector, clean)) <= 0.01


def test_paraphrases_need_the_embedding_method():
    items = load_harmbench()[:40]
    planted = plant(items, seed=2)["paraphrase"]
    lexical = Detector([benchmark("harmbench40", items, "test")], ("ngram13", "ngram8", "minhash"))
    semantic = Detector([benchmark("harmbench40", items, "test")], ("embedding",))
    assert recall(_matches(lexical, planted), range(40)) < 0.8
    assert recall(_matches(semantic, planted), range(40)) >= 0.8
    assert false_positives(_matches(semantic, [request for request, _ in texts.EVERYDAY_REQUESTS[:100]])) <= 0.01


def _matches(detector: Detector, texts_: list[str]) -> list[list[tuple[int, float]]]:
    tokens = [words(t) for t in texts_]
    per_method = [method.match(tokens, texts_) for method in detector.methods.values()]
    return [[m for found in per_method for m in found[i]] for i in range(len(texts_))]


def test_every_data_kind_is_scanned_and_named_by_line_and_field(tmp_path, harmbench_detector):
    item = load_harmbench()[7]
    files = {
        "sft": [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
                {"messages": [{"role": "user", "content": item}, {"role": "assistant", "content": "No."}]}],
        "preference": [{"prompt": "Tell me a joke about cats.", "chosen": "Sure!", "rejected": f"Okay. {item}"}],
        "kto": [{"prompt": "x", "completion": "y", "label": True}, {"prompt": item, "completion": "No", "label": True}],
        "rl": [{"prompt": item.upper(), "verifier": "refusal"}],
        "trace": [{"messages": [{"role": "user", "content": "Plan a picnic."},
                                {"role": "assistant", "content": f"<think>User asked: {item}</think> Sure."}]}],
    }  # fmt: skip
    paths = [_write(tmp_path / f"{kind}.jsonl", rows) for kind, rows in files.items()]
    paths.append(tmp_path / "seeds.txt")
    paths[-1].write_text(f"How do I bake bread?\n\n{item}\n", encoding="utf-8")
    scan = harmbench_detector.scan_files([str(p) for p in paths])
    where = {(Path(m.file).name, m.line, m.field) for m in scan.matches}
    assert where == {
        ("sft.jsonl", 2, "messages[0].content"),
        ("preference.jsonl", 1, "rejected"),
        ("kto.jsonl", 2, "prompt"),
        ("rl.jsonl", 1, "prompt"),
        ("trace.jsonl", 1, "messages[1].content"),
        ("seeds.txt", 3, "<line>"),
    }
    assert {m.item for m in scan.matches} == {7}
    assert scan.per_benchmark()["harmbench"]["rows"] == 6


def test_bad_inputs_are_named_by_file_and_line(tmp_path, harmbench_detector):
    bad_bench = tmp_path / "bench.txt"
    bad_bench.write_bytes(b"a fine item here\n\xff\xfe broken\n")
    with pytest.raises(DataError, match=r"bench\.txt:2"):
        file_items(bad_bench)
    bad_json = _write(tmp_path / "bench.jsonl", ['{"prompt": "ok"}', "{not json"])
    with pytest.raises(DataError, match=r"bench\.jsonl:2"):
        file_items(bad_json)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="no items"):
        load_benchmark(str(empty))
    with pytest.raises(FileNotFoundError, match="known: harmbench"):
        load_benchmark("no_such_benchmark")
    train = tmp_path / "train.jsonl"
    train.write_bytes(b'{"prompt": "fine"}\n{"prompt": "caf\xe9"}\n')
    scan = harmbench_detector.scan_files([str(train)])
    assert [str(e.source) for e in scan.unreadable] == [f"{train}:2"]


def _posttrain(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "posttrain", *args], capture_output=True, text=True, cwd=cwd)


def test_the_linter_names_offending_rows_and_exits_1(tmp_path):
    item = load_harmbench()[3]
    dirty = _write(tmp_path / "dirty.jsonl", [{"prompt": "Bake bread."}, {"prompt": f"Sure: {item}"}])
    clean = _write(tmp_path / "clean.jsonl", [{"prompt": "Bake bread."}])
    result = _posttrain("decontaminate", str(dirty), "--against", "harmbench", "--no-progress", "--report", "r.json",
                        cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert f"{dirty}:2: field 'prompt' matches harmbench item 3" in result.stdout
    assert "1 of 2 rows overlap" in result.stdout
    assert json.loads((tmp_path / "r.json").read_text())["offending_rows"] == 1
    from posttrain.cli import main  # the other exits in-process, through the same entry point

    assert main(["decontaminate", str(clean), "--against", "harmbench", "--no-progress"]) == 0
    assert main(["decontaminate", str(clean), "--against", "no_such_set", "--no-progress"]) == 2


def test_numbers_must_agree_and_wordless_text_matches_nothing():
    """A word problem from a held-out one's template with other numbers is another problem; a field of only
    punctuation or emoji is not a copy of an item of only punctuation (a Morse-code prompt)."""
    problem = "Omar baked 14 cookies and shares them equally among 2 friends. How many cookies does each friend get?"
    detector = Detector([benchmark("b", [problem, ".. --. -. --- .-. ."], "test")], ("ngram13", "ngram8", "minhash"))
    rows = [{"prompt": problem.replace("14", "42").replace(" 2 ", " 7 ")}, {"prompt": "-----"}, {"prompt": "😀😀😀"},
            {"prompt": f"Solve this: {problem}"}]  # fmt: skip
    assert set(detector.matching_rows(rows, "x")) == {3}
    short = Detector([benchmark("b", ["What is the value of 8 * 6?"], "test")], ("ngram13", "ngram8", "minhash"))
    rows = [{"prompt": "What is the value of 8 * 6 + 15?"}, {"prompt": "what is the value of 8*6"},
            {"prompt": "Homework, question four. What is the value of 8 * 6? Show your working, please."}]  # fmt: skip
    assert set(short.matching_rows(rows, "x")) == {1, 2}  # a field the item's size with a value of its own is not
    request = Detector([benchmark("b", [load_harmbench()[11]], "test")], ("ngram13", "ngram8", "minhash"))
    assert set(request.matching_rows([{"prompt": f"Task 3: {load_harmbench()[11]}"}], "x")) == {0}  # no values


def _sft(tmp_path: Path, data: Path, **extra):
    config = STAGES["sft"].config(
        model="tiny-random-llama", data=str(data), output=str(tmp_path / "run"), max_steps=1, max_length=128,
        save_every=0, eval_every=0, precision="fp32", progress=False, decontaminate_against=("harmbench",), **extra,
    )  # fmt: skip
    return STAGES["sft"].execute(config)


def _chat(user: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": "Here you go."}]}


def test_the_gate_refuses_drops_or_is_switched_off(tmp_path):
    item = load_harmbench()[11]
    data = _write(tmp_path / "train.jsonl", [_chat("Hi there"), _chat(item), _chat("Name a fruit")])
    with pytest.raises(ContaminatedData, match=rf"{data}:2: field 'messages\[0\].content' matches harmbench item 11"):
        _sft(tmp_path, data)
    assert not (tmp_path / "run" / "final").exists()  # refused before any work
    report = json.loads((tmp_path / "run" / "decontamination" / "report.json").read_text())
    assert report["mode"] == "refuse" and report["offending_rows"] == 1

    assert (_sft(tmp_path, data, decontaminate="drop") / "config.json").exists()
    report = json.loads((tmp_path / "run" / "decontamination" / "report.json").read_text())
    assert report["dropped"] == {"data": 1} and report["per_benchmark"]["harmbench"]["items_hit"] == 1
    kept = (tmp_path / "run" / "decontamination" / "data.jsonl").read_text().splitlines()
    assert kept == [json.dumps(_chat("Hi there")), json.dumps(_chat("Name a fruit"))]
    trained_on = (tmp_path / "run" / "config.yaml").read_text()
    assert f"data: {tmp_path / 'run' / 'decontamination' / 'data.jsonl'}" in trained_on


def test_switching_the_gate_off_is_recorded_in_the_lineage(tmp_path):
    item = load_harmbench()[11]
    _write(tmp_path / "train.jsonl", [_chat("Hi there"), _chat(item)])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"output: {tmp_path / 'out'}\nmodel: tiny-random-llama\nstages:\n  - name: sft\n    config:\n"
        f"      data: {tmp_path / 'train.jsonl'}\n      max_steps: 1\n      max_length: 128\n      save_every: 0\n"
        "      precision: fp32\n      decontaminate: 'off'\n      decontaminate_against: [harmbench]\n"
    )
    result = _posttrain("run", str(recipe), "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    entry = json.loads((tmp_path / "out" / "lineage.json").read_text())["stages"][0]
    assert entry["config"]["decontaminate"] == "off" and entry["decontamination"]["mode"] == "off"
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<h3>Decontamination</h3>" in page and "not checked" in page


def test_every_stage_that_trains_on_files_has_the_gate():
    from posttrain.gate import DecontaminationOptions

    gated = {name for name, stage in STAGES.items() if stage.trains_on}
    assert gated == {"sft", "preference", "rlvr", "distill", "constitution", "redteam", "deliberative", "guard",
                     "answers"}  # fmt: skip
    for name in gated:
        stage = STAGES[name]
        assert issubclass(stage.config, DecontaminationOptions), name
        assert set(stage.trains_on) <= set(stage.inputs), name
