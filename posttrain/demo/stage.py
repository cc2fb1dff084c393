"""`demo_data`: the demo's data mix as a recipe stage (no model; later stages read its files).

It writes `posttrain.demo.mix.build_demo_data`'s files into the stage's output directory, plus `dpo_prompts.jsonl`:
`dpo_prompts` training arithmetic prompts in the rl schema for the iterated DPO rounds, their answers read from
the boxed answer of the SFT record; and `questions.jsonl`: the general questions of `benign_questions.txt` in the
rl schema (verifier `compliance`), for the `answers` stage to answer; and `redteam_seeds.jsonl`: the harmful
requests of the training mix (AdvBench and Do-Not-Answer, verifier `refusal`), the red-team loop's seeds; and
`tool_traces.jsonl`: for each RL training arithmetic task, the conversation of a model that calls the calculator
and answers with its result (`posttrain.tasks.tool_traces`), the SFT warm-up of the tool-use agent. A recipe names
the files as `${data}/train.jsonl` and so on.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from posttrain.data import load_records
from posttrain.data.heldout import read_lines
from posttrain.demo.mix import build_demo_data
from posttrain.io import atomic_write_text
from posttrain.tasks.tool_traces import calculator_traces
from posttrain.text import boxed_contents
from posttrain.train.config import option

QUESTIONS = Path(__file__).parent / "benign_questions.txt"


@dataclass(frozen=True)
class DemoDataConfig:
    output: str = option("runs/demo/data", "directory the data files are written to")
    seed: int = option(0, "seed for the mix and the DPO prompt draw")
    dpo_prompts: int = option(64, "training arithmetic prompts for the iterated DPO rounds")


def arithmetic_prompts(train: Path, out: Path, n: int, seed: int) -> Path:
    """An rl-schema file of `n` training arithmetic prompts (answer read from the boxed training answer)."""
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    math_rows = [r for r in rows if r.get("source") in ("arithmetic", "word_problem")]
    random.Random(seed).shuffle(math_rows)
    tasks = []
    for row in math_rows[:n]:
        answer = boxed_contents(row["messages"][-1]["content"])[-1]
        tasks.append({"prompt": row["messages"][0]["content"], "verifier": "math", "answer": answer})
    atomic_write_text(out, "".join(json.dumps(t) + "\n" for t in tasks))
    return out


def general_questions(out: Path) -> Path:
    """An rl-schema file of the general questions (verifier `compliance`: they are answered, not refused)."""
    tasks = [{"prompt": q, "verifier": "compliance", "source": "question"} for q in read_lines(QUESTIONS)]
    atomic_write_text(out, "".join(json.dumps(t) + "\n" for t in tasks))
    return out


def redteam_seeds(train: Path, out: Path) -> Path:
    """An rl-schema file of the training mix's harmful requests (verifier `refusal`): seeds for `posttrain redteam`."""
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    tasks = [
        {"prompt": r["messages"][0]["content"], "verifier": "refusal", "source": r["source"]}
        for r in rows
        if r.get("source", "").startswith("refusal_")
    ]
    atomic_write_text(out, "".join(json.dumps(t) + "\n" for t in tasks))
    return out


def tool_traces(rl_train: Path, out: Path) -> Path:
    """An sft-schema file of calculator conversations for the RL training arithmetic tasks."""
    traces, skipped = calculator_traces(load_records(rl_train, "rl").records)
    if skipped:
        raise ValueError(f"{rl_train}: {skipped} arithmetic tasks have no expression the calculator agrees with")
    rows = [{"messages": [m.as_dict() for m in t.messages], "source": "tool_trace"} for t in traces]
    atomic_write_text(out, "".join(json.dumps(r) + "\n" for r in rows))
    return out


def run(config: DemoDataConfig) -> Path:
    """Build the mix and the DPO prompts; returns the output directory."""
    out = Path(config.output)
    paths = build_demo_data(out, seed=config.seed)
    arithmetic_prompts(paths["train"], out / "dpo_prompts.jsonl", config.dpo_prompts, config.seed)
    general_questions(out / "questions.jsonl")
    redteam_seeds(paths["train"], out / "redteam_seeds.jsonl")
    tool_traces(paths["rl_train"], out / "tool_traces.jsonl")
    return out
