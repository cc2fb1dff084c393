"""`answers`: a model answers prompts, and its finished, non-refusing answers become SFT records.

Two uses, one stage:
- teacher traces: a stronger model answers (a local model, or `teacher_url`: any OpenAI-compatible endpoint serving
  `model`), and a student is fine-tuned on its answers; with `verify=true` an answer is kept only when its task's
  verifier scores it correct (a math answer right, a code answer passing its tests, a harmful request refused), so
  the student learns only what the teacher got right;
- helpful replay: the model answers plain questions before it is fine-tuned, and the answers go into its own SFT
  mix, so that a mix with many refusals does not teach it that any question is refused (the demo does this).

An answer is kept only when the sampler stopped on its own (not at `max_new_tokens`: a cut-off answer teaches the
model to trail off) and, without `verify`, the keyword judge does not call it a refusal. Prompts that overlap a held-out
benchmark never get here: the decontamination gate (`posttrain.gate`) refuses them, or with `decontaminate=drop`
removes and counts them. Each drop is counted in `manifest.json`, beside the inputs' hashes; `config.yaml` holds the
resolved config.

`teacher_system` is a system message the model answers under and the records leave out (context distillation:
"Answer in a short paragraph." gives short answers that the fine-tuned model then gives unprompted).

`frames` adds, for every kept answer, one copy of its prompt inside one of our own frames (role-play, fiction,
paraphrase: `posttrain.safety.guard_data.WRAPPERS`) with the same answer: a frame around a harmless request is
answered. `include` copies an existing SFT file in front, so the stage's `train.jsonl` is one training file.

Launch:
    posttrain answers --model smollm2-135m-instruct --prompts questions.jsonl --include train.jsonl
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from posttrain.data import load_records
from posttrain.gate import DecontaminationOptions
from posttrain.io import atomic_write_text
from posttrain.models import load_policy
from posttrain.rewards.judge import OpenAICompatibleLM
from posttrain.rewards.refusal import is_refusal
from posttrain.rewards.route import ByTaskVerifier, check_prerequisites
from posttrain.rollout import SamplingParams
from posttrain.rollout.engine import make_sampler
from posttrain.rollout.options import SamplerOptions
from posttrain.safety.guard_data import WRAPPERS, framed_copy
from posttrain.train.config import option, save_config
from posttrain.train.manifest import write_manifest
from posttrain.types import Message, Messages

log = logging.getLogger("posttrain.answers")


@dataclass(frozen=True)
class AnswersConfig(DecontaminationOptions, SamplerOptions):
    model: str = option("smollm2-135m-instruct", "the model that answers (teacher, or the model itself)")
    teacher_url: str = option("", "an OpenAI-compatible endpoint (http://host:port/v1) serving `model`; empty: local")
    verify: bool = option(False, "keep only answers the task's verifier scores correct (teacher traces)")
    prompts: str = option("", "prompts to answer (rl schema; only the prompt is used)")
    include: str = option("", "an SFT file copied in front of the answers in train.jsonl; empty: none")
    output: str = option("runs/answers", "directory for answers.jsonl, train.jsonl and manifest.json")
    teacher_system: str = option("", "a system message for answering, left out of the records; empty: none")
    max_new_tokens: int = option(256, "longest answer; an answer cut off here is dropped")
    temperature: float = option(0.0, "sampling temperature; 0: greedy")
    stop: tuple[str, ...] = option((), "stop strings: an answer that reaches one is finished")
    frames: tuple[str, ...] = option((), f"add a framed copy of each answer, frame drawn from these: {list(WRAPPERS)}")
    batch_size: int = option(32, "prompts decoded together")
    seed: int = option(0, "seed for sampling and the frames")
    progress: bool = option(True, "show a progress bar")


def verdict(text: str, finish_reason: str, correct: bool | None) -> str:
    """Why an answer is dropped ("unfinished", "empty", "wrong" by the verifier, "refusal" without one), or "kept"."""
    if finish_reason != "stop":
        return "unfinished"
    if not text.strip():
        return "empty"
    if correct is not None:
        return "kept" if correct else "wrong"
    return "refusal" if is_refusal(text) else "kept"


def local_answers(config: AnswersConfig, asked: list[Messages]) -> list[tuple[str, str]]:
    """(text, finish reason) of each prompt's answer by the local model, batched through the rollout engine."""
    model, tokenizer = load_policy(config.model)
    model.eval()
    sampler = make_sampler(model, tokenizer, config.batch_size, "answers" if config.progress else "", config)
    params = SamplingParams(config.max_new_tokens, config.temperature, seed=config.seed, stop=config.stop)
    return [(group[0].text, group[0].finish_reason) for group in sampler.sample(asked, 1, params)]


def endpoint_answers(config: AnswersConfig, asked: list[Messages]) -> list[tuple[str, str]]:
    """(text, finish reason) of each prompt's answer by the endpoint at `teacher_url`, one request each."""
    from tqdm.auto import tqdm

    lm = OpenAICompatibleLM(config.teacher_url, config.model, max_tokens=config.max_new_tokens,
                            temperature=config.temperature)  # fmt: skip
    return [lm.reply(list(prompt)) for prompt in tqdm(asked, desc="answers", disable=not config.progress)]


def teacher_prompt(prompt: Messages, system: str) -> Messages:
    """`prompt` as the teacher sees it: `system` before its own system message, or as a new one."""
    if not system:
        return prompt
    if prompt and prompt[0].role == "system":
        return (Message("system", f"{system}\n\n{prompt[0].content}"), *prompt[1:])
    return (Message("system", system), *prompt)


def _check(config: AnswersConfig) -> None:
    if not config.prompts:
        raise ValueError("answers needs prompts: --prompts FILE (rl schema)")
    unknown = sorted(set(config.frames) - set(WRAPPERS))
    if unknown:
        raise ValueError(f"frames: unknown {unknown}; known: {', '.join(WRAPPERS)}")
    if config.include and not Path(config.include).is_file():
        raise FileNotFoundError(f"include: {config.include} does not exist")


def run(config: AnswersConfig) -> Path:
    """Answer the prompts, keep the good answers, write the files; returns the output directory."""
    _check(config)
    tasks = list(load_records(config.prompts, "rl").records)
    clear = tasks
    if config.verify:
        check_prerequisites(t.verifier for t in clear)
    asked = [teacher_prompt(t.prompt, config.teacher_system) for t in clear]
    answers = (endpoint_answers if config.teacher_url else local_answers)(config, asked)
    correct = [None] * len(clear)
    if config.verify:
        scores = ByTaskVerifier().score_batch(clear, [text for text, _ in answers])
        correct = [score.reward >= 1.0 for score in scores]
    counts = {"prompts": len(tasks)}
    rows = []
    for task, (text, finish), right in zip(clear, answers, correct, strict=True):
        why = verdict(text, finish, right)
        counts[why] = counts.get(why, 0) + 1
        if why == "kept":
            messages = [*(m.as_dict() for m in task.prompt), {"role": "assistant", "content": text.strip()}]
            rows.append({"messages": messages, "source": "answers"})
    rng = random.Random(f"{config.seed}:frames")
    framed = [framed_copy(r, config.frames, rng) for r in rows] if config.frames else []
    rows += framed
    counts["framed"] = len(framed)
    out = Path(config.output)
    answers = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    included = Path(config.include).read_text(encoding="utf-8") if config.include else ""
    if included and not included.endswith("\n"):
        included += "\n"
    atomic_write_text(out / "answers.jsonl", answers)
    atomic_write_text(out / "train.jsonl", included + answers)
    save_config(config, out / "config.yaml")
    inputs = {"prompts": config.prompts, "include": config.include}
    write_manifest(out, "answers", config.model, inputs, {"counts": counts})
    log.info("answers: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
    return out
