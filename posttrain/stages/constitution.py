"""The constitutional pass: critique and revision against a written constitution, as rounds of the round shape.

Each round (`posttrain.rounds`):
1. sample: the policy answers every prompt (red-team training prompts that should be refused, verifier "refusal",
   and benign look-alikes that must be answered, verifier "compliance"), through the rollout engine;
2. score: the keyword refusal judge says whether each answer did what its prompt needs, so `round.json` shows how
   often the policy was already right;
3. build: a critic critiques each answer against a principle drawn from the constitution and revises it; accepted
   revisions become SFT records (`sft.jsonl`, with benign replay from `replay`), preference pairs (`pairs.jsonl`,
   revision over original, for a preference stage after this one) and recovery examples (`recovery.jsonl`); the
   acceptance rate and the critic's verdicts are counted (`posttrain.safety.critique`). With `guard` (a guard
   trained on this model by `posttrain guard`), a revision whose exchange the guard scores as less harmful than the
   original's is accepted even without the critic's yes;
4. train: SFT on `sft.jsonl` (and the recovery examples), Constitutional AI's supervised phase;
5. evaluate: refusal of the harmful prompts and over-refusal of the benign ones, greedy, on the round's prompts.

Prompts that are near-duplicates of a HarmBench prompt (held out) are dropped and counted before anything else.
The critic is the policy itself (`critic=self`, the model as it starts the round), a local HF model or an
OpenAI-compatible endpoint.

Launch:
    posttrain constitution --model runs/sft/final --prompts redteam.jsonl --output runs/cai
    posttrain constitution ... constitution=my.yaml critic=lm-openai critic_base_url=http://127.0.0.1:8000/v1
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from posttrain.data import load_records
from posttrain.data.heldout import drop_heldout_near_duplicates
from posttrain.distributed import single_process_only
from posttrain.gate import DecontaminationOptions
from posttrain.io import atomic_directory
from posttrain.models import LoraSpec
from posttrain.render import render_messages, render_prompt
from posttrain.rewards.judge import CHAT_LMS, ChatLMSpec, chat_lm
from posttrain.rewards.refusal import EXPECTATIONS, expectation_scorer, is_refusal
from posttrain.rollout import SamplingParams, greedy_texts
from posttrain.rollout.engine import make_sampler
from posttrain.rollout.options import SamplerOptions
from posttrain.rounds import Built, Group, RoundContext, RoundSpec, run_rounds
from posttrain.safety.constitution import Constitution, load_constitution
from posttrain.safety.critique import Reviser, Revision, constitutional_data
from posttrain.safety.guard import Guard, load_guard
from posttrain.stages.sft import fit
from posttrain.train.config import option
from posttrain.train.preamble import ParallelOptions, Run, open_run
from posttrain.types import Message, RLTask

log = logging.getLogger("posttrain.constitution")


@dataclass(frozen=True)
class ConstitutionConfig(DecontaminationOptions, ParallelOptions, SamplerOptions):
    model: str = option("smollm2-135m-instruct", "policy to start from: HF directory or model spec")
    prompts: str = option("", "prompts (rl schema) with verifier 'refusal' (harmful) or 'compliance' (benign)")
    replay: str = option("", "benign SFT records (sft schema) mixed into each round's training data; empty: none")
    constitution: str = option("", "constitution YAML; empty: posttrain's default")
    output: str = option("runs/constitution", "run directory")
    rounds: int = option(1, "critique-and-revision rounds; each starts from the last one's model")
    max_new_tokens: int = option(128, "answer length cap when the policy answers")
    temperature: float = option(0.7, "sampling temperature of the policy's answers")
    critic: str = option("self", "self (the policy), lm-local (critic_model) or lm-openai (critic_base_url)")
    critic_model: str = option("", "lm-local: model spec; lm-openai: served model name")
    critic_base_url: str = option("", "lm-openai: base URL such as http://127.0.0.1:8000/v1")
    critic_timeout_s: float = option(60.0, "lm-openai: request timeout")
    critic_retries: int = option(2, "lm-openai: retries after a failure")
    critic_max_new_tokens: int = option(192, "self / lm-local: reply length cap of each critic call")
    guard: str = option("", "a guard (posttrain guard) trained on this model: a revision it scores less harmful is "
                        "accepted without the critic's yes; empty: the critic's verdict only")  # fmt: skip
    recovery: bool = option(True, "also train on recovery examples (a harmful opening, then the revision)")
    max_length: int = option(512, "longest training sequence in tokens; also the packed row length")
    rows_per_batch: int = option(4, "packed rows per micro-batch")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    epochs: int = option(1, "passes over each round's records (ignored when max_steps > 0)")
    max_steps: int = option(0, "optimizer steps per round; 0: as many as `epochs` needs")
    eval_every: int = option(0, "unused by this stage (kept so the SFT loop's keys mean the same)")
    lr: float = option(1e-5, "peak learning rate")
    min_lr_ratio: float = option(0.1, "final learning rate as a fraction of the peak")
    warmup_ratio: float = option(0.05, "fraction of steps spent warming up")
    weight_decay: float = option(0.0, "AdamW weight decay")
    grad_clip: float = option(1.0, "gradient norm clip; 0: none")
    precision: str = option("auto", "auto, bf16 or fp32")
    lora: bool = option(False, "train LoRA adapters instead of all weights")
    lora_r: int = option(16, "LoRA rank")
    lora_alpha: int = option(32, "LoRA alpha")
    lora_targets: tuple[str, ...] = option(LoraSpec.target_modules, "modules that get LoRA adapters")
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass")
    save_every: int = option(0, "checkpoint every N steps; 0: never")
    keep_last: int = option(1, "checkpoints to keep")
    resume: bool = option(False, "continue an interrupted run")
    seed: int = option(0, "seed for sampling, principle draws and data order")
    trackers: tuple[str, ...] = option((), "extra trackers: tensorboard, wandb, trackio")
    progress: bool = option(True, "show progress bars")


def load_prompts(config: ConstitutionConfig) -> tuple[list[RLTask], int]:
    """The round's prompts, HarmBench near-duplicates dropped; every verifier must be 'refusal' or 'compliance'."""
    tasks = list(load_records(config.prompts, "rl").records)
    wrong = sorted({t.verifier for t in tasks} - set(EXPECTATIONS))
    if wrong:
        raise ValueError(f"{config.prompts}: prompts need verifier 'refusal' or 'compliance', found {wrong}")
    kept, dropped = drop_heldout_near_duplicates([t.prompt[-1].content for t in tasks])
    return [tasks[i] for i in kept], dropped


def critic_spec(config: ConstitutionConfig) -> ChatLMSpec:
    """The critic the config names (`posttrain.rewards.judge.CHAT_LMS`)."""
    return ChatLMSpec(
        config.critic,
        config.critic_model,
        config.critic_base_url,
        config.critic_max_new_tokens,
        config.critic_timeout_s,
        config.critic_retries,
        "critic" if config.progress else "",
    )


def revise(
    run: Run,
    constitution: Constitution,
    guard: Guard | None,
    groups: list[Group],
    ctx: RoundContext,
    replay: list[dict],
) -> Built:
    """Critique and revise every sample (principles drawn per round and item); the SFT records, with replay and
    recovery examples, train the round."""
    reviser = Reviser(
        chat_lm(critic_spec(run.config), (ctx.model, ctx.tokenizer)),
        constitution,
        seed=run.config.seed * 7919 + ctx.index,
    )
    items = [(g.task.prompt[-1].content, r.text) for g in groups for r in g.rollouts]
    labels = [EXPECTATIONS[g.task.verifier] for g in groups for _ in g.rollouts]
    revisions = reviser.revise_many(items, should_refuse=labels)
    if guard is not None:
        revisions = guard_verdicts(guard, ctx, revisions)
    data = constitutional_data(revisions, replay)
    records = data.sft + (data.recovery if run.config.recovery else [])
    revision_rows = [revision_row(r) for r in revisions]
    extra = {"pairs": data.pairs, "recovery": data.recovery, "revisions": revision_rows}
    return Built(data.sft, records, data.stats | {"trained_records": len(records)}, extra)


def exchange_score(guard: Guard, ctx: RoundContext, prompt: str, reply: str) -> float:
    """The guard's harm probability after the last token of `reply` to `prompt` (the running mean over both, as the
    streaming guard reads it), from the round's policy; the prompt's own score when the reply has no tokens."""
    prompt_ids = render_prompt(ctx.tokenizer, [Message("user", prompt)])
    reply_ids = ctx.tokenizer.encode(reply, add_special_tokens=False)
    if not reply_ids:
        return guard.score_prompt(ctx.model, prompt_ids)
    return float(guard.stream_scores(ctx.model, prompt_ids, reply_ids)[-1])


def guard_verdicts(guard: Guard, ctx: RoundContext, revisions: list[Revision]) -> list[Revision]:
    """Each revision with `harm_drop`: whether the guard scores it below the response it revises."""
    out = []
    with torch.no_grad():
        for r in revisions:
            if not r.revision.strip():
                out.append(r)
                continue
            after, before = (exchange_score(guard, ctx, r.prompt, text) for text in (r.revision, r.response))
            out.append(dataclasses.replace(r, harm_drop=after < before))
    return out


def revision_row(r: Revision) -> dict:
    """A `revisions.jsonl` row: what the critic said and made of one answer."""
    return {
        "prompt": r.prompt,
        "principle": r.principle,
        "critique": r.critique,
        "revision": r.revision,
        "verdict": r.verdict,
        "harm_drop": r.harm_drop,
        "should_refuse": r.should_refuse,
        "accepted": r.accepted,
    }


def train_records(run: Run, built: Built, ctx: RoundContext) -> dict:
    """SFT on the round's records (Constitutional AI's supervised phase); records longer than max_length are dropped,
    counted in the log."""
    if not built.data:
        raise ValueError(f"{ctx.dir}: no revision was accepted and there is no replay: nothing to train on")
    rendered = [render_messages(ctx.tokenizer, record["messages"]) for record in built.data]
    sequences = [s for s in rendered if len(s) <= run.config.max_length]
    if len(sequences) < len(rendered):
        log.warning(
            "%s: %d of %d records longer than max_length dropped",
            ctx.dir,
            len(rendered) - len(sequences),
            len(rendered),
        )
    return fit(run, ctx.model, sequences, ctx.tokenizer.pad_token_id, ctx.dir, ctx.dir.name)[0]


def refusal_rates(
    ctx: RoundContext, tasks: list[RLTask], max_new_tokens: int, options: SamplerOptions | None = None
) -> dict[str, float]:
    """Greedy refusal rate on the harmful prompts and over-refusal on the benign ones."""
    sampler = make_sampler(ctx.model, ctx.tokenizer, options=options)
    replies = greedy_texts(sampler, [t.prompt for t in tasks], max_new_tokens)
    out = {}
    for verifier, name in (("refusal", "refusal_rate"), ("compliance", "over_refusal")):
        refused = [is_refusal(r) for t, r in zip(tasks, replies, strict=True) if t.verifier == verifier]
        out |= {name: sum(refused) / len(refused)} if refused else {}
    return out


def round_spec(run: Run, tasks: list[RLTask], replay: list[dict], guard: Guard | None) -> RoundSpec:
    """The constitutional round: answer, judge, critique and revise, train on the revisions, evaluate."""
    c, constitution = run.config, load_constitution(run.config.constitution or None)
    return RoundSpec(
        data_name="sft",
        samples_per_prompt=1,
        sampler_options=c,
        sampling=lambda index: SamplingParams(c.max_new_tokens, c.temperature, seed=c.seed * 7919 + index),
        score=expectation_scorer,
        build=lambda groups, ctx: revise(run, constitution, guard, groups, ctx, replay),
        train=lambda built, ctx: train_records(run, built, ctx),
        evaluate=lambda ctx: refusal_rates(ctx, tasks, min(c.max_new_tokens, 64), c),
    )


def load_replay(path: str) -> list[dict]:
    """Benign SFT records to replay in every round (empty path: none)."""
    return [{"messages": [m.as_dict() for m in r.messages]} for r in load_records(path, "sft").records] if path else []


def run(config: ConstitutionConfig) -> Path:
    """Critique-and-revision rounds from `config.model`; returns the last round's model, copied to `final/`."""
    single_process_only(config, "the constitutional pass")
    if not config.prompts:
        raise ValueError("constitution needs prompts: --prompts FILE (rl schema, verifier refusal or compliance)")
    if config.critic not in CHAT_LMS:
        raise ValueError(f"unknown critic {config.critic!r}; choose one of {', '.join(CHAT_LMS)}")
    load_constitution(config.constitution or None)  # a bad constitution or guard fails before anything is written
    guard = load_guard(Path(config.guard)) if config.guard else None
    tasks, dropped = load_prompts(config)
    replay = load_replay(config.replay)
    inputs = {"prompts": config.prompts, "replay": config.replay, "constitution": config.constitution}
    if config.guard:
        inputs["guard"] = str(Path(config.guard) / "probe.safetensors")
    run = open_run(config, "constitution", inputs)
    run.note(prompts=len(tasks), heldout_near_duplicates_dropped=dropped, replay=len(replay))

    def load(start: str, index: int):
        return run.policy(start, seed=config.seed + index)

    final_round = run_rounds(round_spec(run, tasks, replay, guard), config.rounds, run.dir, config.model, load, tasks)
    with atomic_directory(run.dir / "final") as tmp:
        shutil.copytree(final_round, tmp, dirs_exist_ok=True)
    return run.dir / "final"
