"""`posttrain curate`: each curation rule on records built to trip it (or not), the pass-rate band on known rates, the
tiny random policy's sampled pass rates, k-means and the spread across clusters on real sentence embeddings, the
report's counts, bad input, and the command end to end in a subprocess.

The tiny random model never writes the answers used here (long decimals), so its pass rate is 0 on every task; the
band itself is tested on pass rates set by hand.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from posttrain.cli import main
from posttrain.curation.dedup import exact_duplicates, near_duplicates
from posttrain.curation.difficulty import PassBand, difficulty, select_by_pass_rate
from posttrain.curation.diversity import kmeans, spread, spread_across_clusters
from posttrain.curation.items import Item, PassRate, item_of, read_items
from posttrain.curation.quality import QUALITY_CHECKS, outside_length
from posttrain.data import DataError
from posttrain.rollout import SamplingParams
from posttrain.types import RLTask, SFTExample, Source

REPO = Path(__file__).resolve().parents[1]
COOKING = [
    "How many minutes should I boil an egg for a soft yolk?",
    "What oven temperature bakes sourdough bread best?",
    "How much salt goes into a pot of pasta water?",
    "How long should a steak rest after grilling?",
    "How many cups of flour make a dozen pancakes?",
    "At what heat do you caramelise onions?",
    "How many garlic cloves suit a tomato sauce for four people?",
    "How long do you knead pizza dough by hand?",
    "How much sugar goes into a jug of lemonade?",
    "How many eggs does a sponge cake recipe need?",
    "How long should rice simmer before it is fluffy?",
    "How many grams of butter go into shortbread biscuits?",
]
ASTRONOMY = [
    "How many moons does Mars have?",
    "How far is Jupiter from the Sun in astronomical units?",
    "How many planets orbit our Sun?",
]
STORY = (
    "A baker fills 14 trays with 23 rolls each in the morning, sells 180 rolls before noon, bakes 40 more in the "
    "afternoon and gives 12 to a neighbour at closing time. How many rolls are left in the shop"
)


def rl_row(question: str, answer: str = "98765.4321") -> dict:
    return {"prompt": [{"role": "user", "content": question}], "verifier": "math", "answer": answer}


def sft_row(question: str, response: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": response}]}


def write_jsonl(path: Path, rows: list) -> Path:
    """Rows as JSON Lines; a str row is written as it is (an invalid line, or a row with its own formatting)."""
    path.write_text(
        "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows), encoding="utf-8"
    )
    return path


def rl_items(questions: list[str]) -> list[Item]:
    return [item_of(RLTask(**rl_row(q), source=Source("pool.jsonl", i)), b"") for i, q in enumerate(questions, 1)]


def sft_item(question: str, response: str) -> Item:
    return item_of(SFTExample(sft_row(question, response)["messages"], source=Source("chats.jsonl", 1)), b"")


# --- duplicates ---------------------------------------------------------------------------------------------------


def test_exact_duplicates_are_the_same_question_up_to_case_and_spaces():
    items = rl_items(["What is 2+2?", "what  is 2+2?", "What is 2*2?", "WHAT IS 2+2?"])
    outcome = exact_duplicates(items)
    assert [i.prompt for i in outcome.kept] == ["What is 2+2?", "What is 2*2?"]  # operators count
    assert [d.reason for d in outcome.dropped] == ["exact duplicate of pool.jsonl:1"] * 2


def test_near_duplicates_drop_later_copies_and_keep_different_questions():
    unrelated = "A train leaves the station at nine and travels at 80 km per hour for three hours. How far does it go"
    two_numbers_changed = STORY.replace("14 trays", "41 trays").replace("40 more", "04 more") + "?"
    items = rl_items([f"{STORY}?", f"{STORY} now?", unrelated, two_numbers_changed])
    outcome = near_duplicates(items, threshold=0.8)
    # 36 word 5-grams each: one word added at the end leaves Jaccard 35/38 = 0.92 (the 128-permutation MinHash
    # estimates 0.95); two words changed in the middle touch 9 shingles, 27/45 = 0.6
    assert [i.source.line for i in outcome.kept] == [1, 3, 4]
    assert [(d.item.source.line, d.reason) for d in outcome.dropped] == [
        (2, "near-duplicate of pool.jsonl:1 (estimated Jaccard 0.95)")
    ]
    assert [i.source.line for i in near_duplicates(items, threshold=0.98).kept] == [1, 2, 3, 4]


# --- length and quality --------------------------------------------------------------------------------------------


def test_length_counts_the_words_of_question_and_response():
    assert outside_length(sft_item("Hi", "Hello"), 3, 100) == "2 words, fewer than min_words=3"
    assert outside_length(sft_item("Say five words", "one two"), 3, 4) == "5 words, more than max_words=4"
    assert outside_length(sft_item("Say five words", "one two"), 3, 0) is None  # 0: no upper limit


GOOD_RESPONSES = [
    "Add them: 2 + 2 = 4, so the answer is \\boxed{4}.",
    "```python\ndef f(x):\n    return {k: v for k, v in x.items() if v}\n```",
    "Paris.",
]


@pytest.mark.parametrize("response", GOOD_RESPONSES)
def test_ordinary_answers_pass_every_quality_check(response):
    item = sft_item("Show me how to solve this, please.", response)
    assert {name: check(item) for name, check in QUALITY_CHECKS.items()} == dict.fromkeys(QUALITY_CHECKS)


@pytest.mark.parametrize(
    ("check", "question", "response", "reason"),
    [
        ("empty", "What is the capital of France?", "  ", "empty response"),
        ("empty", " ", "Paris.", "empty question"),
        ("non_text", "Say something.", "!?#" * 30, "mostly non-text: 12% letters or digits"),
        ("non_latin", "Что такое фотосинтез?", "Это процесс в растениях.", "not English: 0% of the letters are Latin"),
        ("cut_off", "Write the code.", "Here it is:\n```python\nprint(1)", "cut off: an unclosed ``` code block"),
        ("cut_off", "Add 2 and 2.", "So the answer is \\boxed{4", "cut off: an unclosed \\boxed{"),
        ("cut_off", "Add 2 and 2.", "First, we add the numbers,", "cut off: ends with ','"),
        ("repetitive", "What do you think?", "I think " * 30, "repeats itself: 4% of the response's word 4-grams"),
    ],
)
def test_quality_checks_drop_what_they_name(check, question, response, reason):
    assert QUALITY_CHECKS[check](sft_item(question, response)).startswith(reason)


def test_non_latin_is_a_script_test_so_french_passes():
    assert QUALITY_CHECKS["non_latin"](sft_item("Qu'est-ce que la photosynthèse ?", "Un processus.")) is None


# --- difficulty ----------------------------------------------------------------------------------------------------


def test_pass_band_keeps_what_the_policy_sometimes_or_never_solves():
    solved = [0, 1, 2, 4, 5, 8]
    items = [replace(item, pass_rate=PassRate(k, 8)) for item, k in zip(rl_items(["q"] * 6), solved, strict=True)]
    outcome = select_by_pass_rate(items, PassBand(min_pass=0.0, max_pass=0.5))
    assert [i.pass_rate.solved for i in outcome.kept] == [0, 1, 2, 4]  # 4/8 = max_pass is kept
    assert [d.reason for d in outcome.dropped] == ["too easy: solved 5/8 = 0.62 > max_pass 0.5", "always solved (8/8)"]
    stricter = select_by_pass_rate(items, PassBand(min_pass=0.2, max_pass=0.5, drop_unsolved=True))
    assert [i.pass_rate.solved for i in stricter.kept] == [2, 4]
    assert [d.reason for d in stricter.dropped][:2] == [
        "never solved (0/8) and drop_unsolved is set",
        "too hard: solved 1/8 = 0.12 < min_pass 0.2",
    ]


def test_difficulty_samples_the_policy_and_scores_with_the_verifier(tiny):
    items = rl_items(["What is 12.5 times 7901.2?", "Divide 5 by 0.000081.", "What is 3 to the power 0.37?"])
    params = SamplingParams(max_new_tokens=8, seed=3)
    outcome = difficulty(items, tiny, 2, params, PassBand(), progress=False)
    assert [i.pass_rate for i in outcome.kept] == [PassRate(0, 2)] * 3  # a random model never writes 98765.4321
    dropped = difficulty(items, tiny, 2, params, PassBand(drop_unsolved=True), progress=False)
    assert dropped.kept == [] and len(dropped.dropped) == 3


# --- diversity -----------------------------------------------------------------------------------------------------


def test_kmeans_finds_separated_blobs_deterministically():
    generator = torch.Generator().manual_seed(0)
    big_N_D = torch.randn(30, 4, generator=generator) * 0.1 + torch.tensor([5.0, 0, 0, 0])
    small_N_D = torch.randn(6, 4, generator=generator) * 0.1 - torch.tensor([5.0, 0, 0, 0])
    ids = kmeans(torch.cat([big_N_D, small_N_D]), 2, seed=1)
    assert ids.tolist() == [0] * 30 + [1] * 6  # numbered by size
    assert torch.equal(ids, kmeans(torch.cat([big_N_D, small_N_D]), 2, seed=1))


def test_spread_gives_each_cluster_an_equal_share_then_the_rest_to_the_larger():
    big, small = list(range(90)), list(range(100, 103))
    taken = spread([big, small], 20, random.Random(0))
    assert sorted(t for t in taken if t >= 100) == small and len(taken) == 20
    assert sorted(spread([list(range(10)), list(range(10, 20))], 6, random.Random(0))) == [0, 1, 2, 10, 11, 12]


def test_diversity_takes_from_a_small_topic_as_well_as_a_large_one():
    items = rl_items(COOKING + ASTRONOMY)
    outcome = spread_across_clusters(items, n=6, clusters=2, seed=0)
    kept = [i.prompt for i in outcome.kept]
    # 3 of 15 are astronomy, so a draw in proportion would take about 1 of 6; the spread gives each cluster 3
    assert sum(q in ASTRONOMY for q in kept) >= 2 and sum(q in COOKING for q in kept) >= 3
    assert sorted({i.cluster for i in outcome.kept}) == [0, 1]
    assert [i.source.line for i in outcome.kept] == sorted(i.source.line for i in outcome.kept)  # input order


# --- the whole command ---------------------------------------------------------------------------------------------


def pool_rows() -> list:
    return [
        *(rl_row(q) for q in COOKING),  # lines 1-12
        *(rl_row(q) for q in ASTRONOMY),  # 13-15
        rl_row("HOW MANY minutes should I boil an egg for a soft yolk?"),  # 16: exact duplicate of line 1
        rl_row(f"{STORY}?"),  # 17
        rl_row(f"{STORY} now?"),  # 18: near-duplicate of 17
        rl_row("Sum?"),  # 19: too short
        rl_row("Сколько будет два плюс два?"),  # 20: not English
        rl_row("why " * 30),  # 21: repeats itself
        '{"prompt": [{"role": "user", "content": "broken"}',  # 22: invalid JSON
    ]


def test_report_counts_add_up_and_rows_come_back_unchanged(tmp_path, capsys):
    pool, out = write_jsonl(tmp_path / "pool.jsonl", pool_rows()), tmp_path / "hard.jsonl"
    args = [
        "curate",
        str(pool),
        "--output",
        str(out),
        "--model",
        "tiny-random-llama",
        "--samples",
        "2",
        "--max-new-tokens",
        "8",
        "--n",
        "6",
        "--clusters",
        "2",
        "--skip-invalid",
        "--no-progress",
    ]
    assert main(args) == 0
    report = json.loads(out.with_suffix(".report.json").read_text())
    dropped = {r["rule"]: r["dropped"] for r in report["rules"]}
    assert dropped == {
        "invalid": 1,
        "length": 1,
        "empty": 0,
        "non_text": 0,
        "non_latin": 1,
        "cut_off": 0,
        "repetitive": 1,
        "exact_duplicate": 1,
        "near_duplicate": 1,
        "difficulty": 0,
        "diversity": 10,
    }
    assert report["records"] == 22 == report["kept"] + sum(dropped.values())
    for before, after in zip(report["rules"], report["rules"][1:], strict=False):
        assert after["given"] == before["given"] - before["dropped"]
    by_rule = {r["rule"]: r["examples"] for r in report["rules"]}
    assert by_rule["exact_duplicate"] == [
        {"source": f"{pool}:16", "rule": "exact_duplicate", "reason": f"exact duplicate of {pool}:1"}
    ]
    assert by_rule["invalid"][0]["source"] == f"{pool}:22"
    assert report["pass_rates_kept"] == {"0/2": 6}
    assert [c["kept"] for c in report["clusters"]] == [3, 3] and sum(c["candidates"] for c in report["clusters"]) == 16
    lines = pool.read_text().splitlines(keepends=True)
    selected = out.read_text().splitlines(keepends=True)
    assert len(selected) == 6 and all(line in lines for line in selected)
    assert len(out.with_suffix(".dropped.jsonl").read_text().splitlines()) == 16
    assert "kept 6 of 22" in capsys.readouterr().out


def test_bad_input_names_the_file_and_line(tmp_path, capsys):
    out = str(tmp_path / "out.jsonl")
    assert main(["curate", str(tmp_path / "missing.jsonl"), "--output", out]) == 1
    assert "missing.jsonl" in capsys.readouterr().err
    pool = write_jsonl(tmp_path / "pool.jsonl", pool_rows())
    with pytest.raises(DataError, match=r"pool\.jsonl:22: field '<json>': invalid JSON"):
        read_items(pool, "rl")
    assert main(["curate", str(pool), "--output", out]) == 1
    assert f"{pool}:22: field '<json>'" in capsys.readouterr().err
    assert not Path(out).exists()


def test_difficulty_on_sft_records_is_refused_before_anything_is_read(tmp_path, capsys):
    chats = write_jsonl(tmp_path / "chats.jsonl", [sft_row("What is 2+2?", "4.")])
    out = tmp_path / "out.jsonl"
    assert main(["curate", str(chats), "--schema", "sft", "--model", "tiny-random-llama", "--output", str(out)]) == 2
    assert "only rl-schema tasks name" in capsys.readouterr().err and not out.exists()
    assert main(["curate", str(chats), "--output", str(out), "--skip", "lenght"]) == 2
    assert "unknown rule(s) ['lenght']" in capsys.readouterr().err


def test_cli_end_to_end_on_sft_conversations(tmp_path):
    odd = '{"messages": [ {"role": "user", "content": "Name a French pastry, please."},  {"role": "assistant", "content": "A café éclair."} ] }'
    rows = [
        sft_row("How do I boil an egg for a soft yolk?", "Boil it for six minutes, then cool it in cold water."),
        odd,
        sft_row("Write a loop that prints one to three.", "```python\nfor i in range(1, 4):\n    print(i)"),
        sft_row("how do I boil an egg for a soft yolk?", "About six minutes."),
    ]
    pool, out = write_jsonl(tmp_path / "chats.jsonl", rows), tmp_path / "picked.jsonl"
    command = [
        sys.executable,
        "-m",
        "posttrain",
        "curate",
        str(pool),
        "--schema",
        "sft",
        "--clusters",
        "1",
        "--n",
        "0",
        "--output",
        str(out),
        "--no-progress",
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"kept 2 of 4 (cut_off 1, exact_duplicate 1) -> {out}" in done.stdout
    assert out.read_bytes() == pool.read_bytes().splitlines(keepends=True)[0] + (odd + "\n").encode()
    drops = [json.loads(line) for line in out.with_suffix(".dropped.jsonl").read_text().splitlines()]
    assert [(d["source"], d["rule"]) for d in drops] == [(f"{pool}:3", "cut_off"), (f"{pool}:4", "exact_duplicate")]
