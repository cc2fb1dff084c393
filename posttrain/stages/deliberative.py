"""`posttrain deliberative`: deliberative alignment's data. A teacher with the safety spec in its context writes, for
each harmful and benign request, reasoning that names the category and cites the spec section, then the answer; the
spec-aware judge keeps the traces that cite the right section, decide rightly and answer as they decided.

Written (`posttrain.safety.deliberative` for the spec and teachers, `posttrain.rewards.spec` for the format and judge):
- `traces.jsonl`: every trace the teacher wrote, with the judge's verdict;
- `train.jsonl`: the kept traces as SFT records, the spec NOT in the context (no system message), so that SFT
  teaches the model to recall the spec rather than read it;
- `answers_only.jsonl`: the same requests with the final answer alone (the ablation: reasoning against none);
- `rl_train.jsonl`, `rl_eval.jsonl`: the requests as rl tasks (verifier `spec`, answer "refuse" or "answer", and
  the expected section) for the RLVR stage, whose reward reads the final answer only; `rl_eval` holds the share of
  requests (`eval_share`) kept out of every training file, with their near-duplicates (framed or reworded twins),
  for citation accuracy and consistency after training.

The manifest counts what was dropped (HarmBench and independent-set near-duplicates, refusing benign records) and
the teacher's citation accuracy, consistency and acceptance. A rerun rewrites every file from the same inputs.

Launch:
    posttrain deliberative --harmful runs/demo/data/redteam_seeds.jsonl --benign runs/demo/answers/train.jsonl \\
        --output runs/deliberative                                # the templated teacher
    posttrain deliberative ... teacher=lm-openai teacher_base_url=http://127.0.0.1:8000/v1 teacher_model=big
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from posttrain.gate import DecontaminationOptions
from posttrain.io import atomic_write_text
from posttrain.rewards.judge import CHAT_LMS, ChatLM, ChatLMSpec, chat_lm
from posttrain.rewards.spec import judge_trace, parse_trace
from posttrain.safety.constitution import load_constitution
from posttrain.safety.deliberative import expected_section, teacher_system, templated_trace
from posttrain.safety.requests import benign_answers, harmful_requests, split_apart, stable_order
from posttrain.train.config import option, save_config
from posttrain.train.manifest import write_manifest
from posttrain.types import Message


@dataclass(frozen=True)
class DeliberativeConfig(DecontaminationOptions):
    model: str = option("smollm2-135m-instruct", "the teacher when teacher=self")
    harmful: str = option("", "harmful requests (rl schema, verifier 'refusal' rows)")
    benign: str = option("", "benign SFT records: requests with helpful answers (the templated teacher's answers)")
    constitution: str = option("", "constitution YAML, the spec; empty: posttrain's default")
    teacher: str = option("template", "template (no model), self (model), lm-local (teacher_model) or lm-openai")
    teacher_model: str = option("", "lm-local: model spec; lm-openai: served model name")
    teacher_base_url: str = option("", "lm-openai: base URL such as http://127.0.0.1:8000/v1")
    teacher_max_new_tokens: int = option(256, "self / lm-local: trace length cap")
    benign_per_harmful: float = option(0.0, "most benign records per harmful request (a stable draw); 0: all")
    eval_share: float = option(0.2, "share of requests kept out of training, for evaluation (rl_eval.jsonl)")
    output: str = option("runs/deliberative", "directory the files are written to")
    seed: int = option(0, "seed of the train / eval split")
    progress: bool = option(True, "show progress bars")


@dataclass(frozen=True)
class Item:
    """A request, whether it should be refused, and the helpful answer a benign record gives (else empty)."""

    request: str
    should_refuse: bool
    answer: str = ""


TEACHERS = ("template", *CHAT_LMS)  # template: no model (templated_trace); self: `model`, loaded


def teacher_lm(config: DeliberativeConfig) -> ChatLM:
    """The model teacher the config names; "self" is `model`."""
    kind, model = ("lm-local", config.model) if config.teacher == "self" else (config.teacher, config.teacher_model)
    progress = "teacher" if config.progress else ""
    return chat_lm(ChatLMSpec(kind, model, config.teacher_base_url, config.teacher_max_new_tokens, progress=progress))


def write_traces(config: DeliberativeConfig, constitution, items: list[Item]) -> list[str]:
    """The teacher's trace for every item."""
    if config.teacher == "template":
        return [templated_trace(constitution, i.request, i.should_refuse, i.answer) for i in items]
    teacher = teacher_lm(config)
    system = Message("system", teacher_system(constitution))
    asks = [[system, Message("user", i.request)] for i in items]
    complete_many = getattr(teacher, "complete_many", None)
    return complete_many(asks) if complete_many else [teacher.complete(ask) for ask in asks]


def _sft(request: str, reply: str) -> dict:
    return {"messages": [{"role": "user", "content": request}, {"role": "assistant", "content": reply}]}


def _task(constitution, item: Item) -> dict:
    section = expected_section(constitution, item.request, item.should_refuse)
    decision = "refuse" if item.should_refuse else "answer"
    return {"prompt": item.request, "verifier": "spec", "answer": decision, "section": section.id}


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def run(config: DeliberativeConfig) -> Path:
    """Write the traces, the SFT files and the rl tasks; returns the output directory."""
    if not config.harmful:
        raise ValueError("deliberative needs harmful requests: --harmful FILE (rl schema, verifier 'refusal')")
    if config.teacher not in TEACHERS:
        raise ValueError(f"teacher: unknown {config.teacher!r}; choose one of {', '.join(TEACHERS)}")
    if config.teacher == "template" and not config.benign:
        raise ValueError("teacher=template writes the benign records' answers: give --benign FILE (sft schema)")
    constitution = load_constitution(config.constitution or None)
    harmful, counts = harmful_requests(config.harmful)
    benign, benign_counts = benign_answers(config.benign)
    if config.benign_per_harmful > 0:
        cap = round(config.benign_per_harmful * len(harmful))
        drawn = set(stable_order([r for r, _ in benign], f"{config.seed}:benign")[:cap])
        benign_counts["benign_not_drawn"] = len(benign) - len(drawn)
        benign = [(r, a) for r, a in benign if r in drawn]
    items = [Item(r, True) for r in harmful] + [Item(r, False, a) for r, a in benign]
    requests = list(dict.fromkeys(i.request for i in items))
    trained, held_out, twins = split_apart(requests, round(len(requests) * config.eval_share), f"{config.seed}:delib")
    n_eval, held, keep = len(held_out), set(held_out), set(trained)
    train = [i for i in items if i.request in keep]
    traces = write_traces(config, constitution, train)
    rows, kept = [], []
    for item, text in zip(train, traces, strict=True):
        section = expected_section(constitution, item.request, item.should_refuse)
        verdict = judge_trace(parse_trace(text), section.id, item.should_refuse)
        row = {"request": item.request, "should_refuse": item.should_refuse, "section": section.id, "trace": text}
        rows.append(row | vars(verdict) | {"accepted": verdict.accepted})
        if verdict.accepted:
            kept.append((item.request, text))
    out = Path(config.output)
    files = {
        "traces.jsonl": rows,
        "train.jsonl": [_sft(request, text) for request, text in kept],
        "answers_only.jsonl": [_sft(request, parse_trace(text).answer) for request, text in kept],
        "rl_train.jsonl": [_task(constitution, i) for i in train],
        "rl_eval.jsonl": [_task(constitution, i) for i in items if i.request in held],
    }
    for name, file_rows in files.items():
        atomic_write_text(out / name, _jsonl(file_rows))
    share = {k: sum(r[k] for r in rows) / max(len(rows), 1) for k in ("cites_expected", "consistent", "accepted")}
    counts |= benign_counts | {"traces": len(rows), "kept": len(kept), "eval_requests": n_eval}
    counts |= {"train_near_eval_dropped": twins}
    counts |= {f"teacher_{k}": v for k, v in share.items()}
    inputs = {"harmful": config.harmful, "benign": config.benign, "constitution": config.constitution}
    save_config(config, out / "config.yaml")
    write_manifest(out, "deliberative", config.model, inputs, counts)
    return out
