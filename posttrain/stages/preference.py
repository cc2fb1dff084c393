"""Preference optimization: DPO (default), IPO, SimPO, KTO and ORPO, offline or in iterated on-policy rounds.

Offline (`rounds=0`): train on a preference file (or a binary-feedback file for KTO). Online (`rounds=N`): each
round samples `samples_per_prompt` completions per prompt from the current policy (token ids kept), scores them
with a judge, pairs the best against the worst when their rewards differ by at least `min_margin` (ties and
narrow pairs are dropped and counted), and trains on those pairs. A round's reference is the policy the round
started from, as in iterated DPO (Xu et al. 2023; Llama 3; Tulu 3).

Reference log-probs are computed once per round, before training, and stored in the round's directory, so no
reference model is held in memory. Under LoRA the adapters start at zero, so the policy at the start of a round
is the base with the adapter disabled. Chosen and rejected sequences are packed together (a pair never straddles
two batches). Beta can be annealed upward late in training (`beta_schedule`, `beta_end`, `beta_anneal_step`).

Departure from TRL: KTO's KL baseline pairs completion i with prompt i+1 in a fixed rotation of the data set,
computed once, rather than rotating within each batch; the estimator (mean mismatched log-ratio, clamped at 0,
detached) is the same.

Launch:
    posttrain preference --model runs/sft/final --data pairs.jsonl --output runs/dpo --method dpo
    posttrain preference --model runs/sft/final --prompts tasks.jsonl --rounds 2 --judge math --output runs/idpo
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from posttrain.data import load_records
from posttrain.data.pairs import GroupData, load_groups
from posttrain.distributed import single_process_only
from posttrain.eval.diversity import sample_diversity
from posttrain.gate import DecontaminationOptions
from posttrain.io import atomic_directory
from posttrain.logprobs import per_sequence_count, per_sequence_sum, token_logprobs
from posttrain.losses.kto import kto_loss
from posttrain.losses.preference import dpo_loss, ipo_loss, orpo_loss, simpo_loss
from posttrain.models import LoraSpec, load_tokenizer, save_model
from posttrain.packing import pack_groups
from posttrain.rewards.judge import JudgeSettings, build_judge
from posttrain.rewards.route import check_prerequisites
from posttrain.rollout import SamplingParams
from posttrain.rollout.engine import make_sampler
from posttrain.rollout.options import SamplerOptions
from posttrain.rounds import RoundSpec, best_against_worst, judge_scorer, run_rounds
from posttrain.train.config import option
from posttrain.train.loop import run_loop
from posttrain.train.preamble import ParallelOptions, Run, accumulate_and_step, open_run
from posttrain.train.reference import cached_reference, fingerprint, sequence_logps
from posttrain.train.schedules import annealed
from posttrain.train.tracking import DriftWatch

log = logging.getLogger("posttrain.preference")


@dataclass(frozen=True)
class PreferenceConfig(DecontaminationOptions, ParallelOptions, SamplerOptions):
    model: str = option("smollm2-135m-instruct", "policy to start from: HF directory or model spec")
    data: str = option("", "offline data: preference schema, or kto schema for method=kto")
    output: str = option("runs/preference", "run directory")
    method: str = option("dpo", "dpo, ipo, simpo, kto or orpo")
    beta: float = option(0.1, "beta at the start (DPO/IPO/KTO temperature, SimPO scale, ORPO weight)")
    beta_end: float = option(0.1, "beta at the end of training when annealing")
    beta_schedule: str = option("constant", "constant, linear or cosine annealing from beta to beta_end")
    beta_anneal_step: int = option(0, "step (within a round) where annealing starts")
    label_smoothing: float = option(0.0, "cDPO: assumed probability that a preference label is flipped")
    simpo_gamma: float = option(0.5, "SimPO target margin gamma")
    ipo_length_normalize: bool = option(True, "IPO on per-token average log-probs (TRL's convention)")
    desirable_weight: float = option(1.0, "KTO weight of desirable examples")
    undesirable_weight: float = option(1.0, "KTO weight of undesirable examples")
    max_length: int = option(1024, "longest sequence in tokens; also the packed row length")
    rows_per_batch: int = option(4, "packed rows per micro-batch")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    epochs: int = option(1, "passes over the pairs (per round)")
    max_steps: int = option(0, "optimizer steps per round; 0: as many as `epochs` needs")
    lr: float = option(5e-7, "peak learning rate")
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
    seed: int = option(0, "seed for data order and sampling")
    skip_invalid: bool = option(False, "skip (and count) invalid records instead of failing")
    trackers: tuple[str, ...] = option((), "extra trackers: tensorboard, wandb, trackio")
    progress: bool = option(True, "show progress bars")
    rounds: int = option(0, "iterated on-policy rounds; 0: train offline on `data`")
    prompts: str = option("", "prompts for the rounds (rl schema: prompt, verifier, answer)")
    samples_per_prompt: int = option(4, "completions sampled per prompt per round")
    temperature: float = option(1.0, "sampling temperature in the rounds")
    top_p: float = option(1.0, "nucleus sampling mass in the rounds")
    max_new_tokens: int = option(256, "completion length cap in the rounds")
    judge: str = option(
        "math", "round judge: math (the RL math reward), verifier (each task's own), lm-local, lm-openai or brevity"
    )
    judge_model: str = option("", "lm-local: model spec; lm-openai: served model name")
    judge_base_url: str = option("", "lm-openai: base URL such as http://127.0.0.1:8000/v1")
    judge_timeout_s: float = option(30.0, "lm-openai: request timeout")
    judge_retries: int = option(2, "lm-openai: retries after a failure")
    min_margin: float = option(0.5, "smallest best-minus-worst reward difference that makes a pair")
    diversity_prompts: int = option(8, "prompts used for the diversity metrics (0: skip)")
    diversity_samples: int = option(4, "samples per prompt for the diversity metrics")


def _dpo(c: PreferenceConfig, beta, p_G2, ref_G2, len_G2, labels_G):
    return dpo_loss(p_G2[:, 0], p_G2[:, 1], ref_G2[:, 0], ref_G2[:, 1], beta, c.label_smoothing)


def _ipo(c: PreferenceConfig, beta, p_G2, ref_G2, len_G2, labels_G):
    lengths = (len_G2[:, 0], len_G2[:, 1]) if c.ipo_length_normalize else (None, None)
    return ipo_loss(p_G2[:, 0], p_G2[:, 1], ref_G2[:, 0], ref_G2[:, 1], beta, *lengths)


def _simpo(c: PreferenceConfig, beta, p_G2, ref_G2, len_G2, labels_G):
    return simpo_loss(p_G2[:, 0], p_G2[:, 1], len_G2[:, 0], len_G2[:, 1], beta, c.simpo_gamma)


def _orpo(c: PreferenceConfig, beta, p_G2, ref_G2, len_G2, labels_G):
    nll_G = -p_G2[:, 0] / len_G2[:, 0].clamp(min=1)
    return orpo_loss(p_G2[:, 0], p_G2[:, 1], len_G2[:, 0], len_G2[:, 1], nll_G, beta)


def _kto(c: PreferenceConfig, beta, p_G2, ref_G2, len_G2, labels_G):
    return kto_loss(
        p_G2[:, 0], ref_G2[:, 0], labels_G, p_G2[:, 1], ref_G2[:, 1], beta, c.desirable_weight, c.undesirable_weight
    )


# method -> the pure loss on groups of two: column 0 chosen (or the KTO completion), column 1 rejected (or KL).
LOSSES = {"dpo": _dpo, "ipo": _ipo, "simpo": _simpo, "orpo": _orpo, "kto": _kto}
PAIRWISE = ("dpo", "ipo", "simpo", "orpo")  # the methods iterated rounds can train (they build pairs)
BINARY_FEEDBACK = ("kto",)  # the methods that read the kto schema (a completion and a label) instead of pairs
VERIFIER_JUDGES = {"math": ("math",), "verifier": ()}  # judges that run verifiers, and which (empty: each task's)


def _batches(config: PreferenceConfig, data: GroupData, pad_id: int, seed: int | None):
    groups = [(2 * g, 2 * g + 1) for g in range(len(data.sequences) // 2)]
    return pack_groups(data.sequences, groups, config.max_length, config.rows_per_batch, pad_id, seed)


def _epoch_seed(config: PreferenceConfig, epoch: int) -> int:
    return config.seed * 1000 + epoch


def preference_step(run: Run, model, optimizer, scheduler, micro, beta: float, ref, labels) -> dict:
    """One optimizer step over micro-batches of whole groups; the loss is the mean over the step's groups."""
    n_groups = sum(len(b.sequence_indices) for b in micro) // 2
    loss_fn = LOSSES[run.config.method]

    def micro_loss(batch):
        index = torch.tensor(batch.sequence_indices)
        policy_G2 = per_sequence_sum(token_logprobs(model, batch), batch).float().view(-1, 2)
        lengths_G2 = per_sequence_count(batch).to(policy_G2.device).view(-1, 2)
        ref_G2 = ref[index].float().to(policy_G2.device).view(-1, 2)
        group_ids = index.view(-1, 2)[:, 0] // 2
        group_labels = None if labels is None else labels[group_ids].to(policy_G2.device)
        loss, metrics = loss_fn(run.config, beta, policy_G2, ref_G2, lengths_G2, group_labels)
        logratio_G2 = (policy_G2 - ref_G2).detach()
        metrics |= {
            "loss": float(loss.detach()),
            "chosen_logratio": float(logratio_G2[:, 0].mean()),
            "rejected_logratio": float(logratio_G2[:, 1].mean()),
            "response_length": float(lengths_G2.float().mean()),
        }
        share = len(group_ids) / n_groups
        return loss * share, {key: share * value for key, value in metrics.items()}

    totals = accumulate_and_step(run, model, optimizer, scheduler, micro, micro_loss)
    totals["implicit_kl"] = 0.5 * (totals["chosen_logratio"] + totals["rejected_logratio"])
    return {
        **totals,
        "beta": beta,
        "tokens": sum(b.n_real_tokens for b in micro),
        "pairs": n_groups,
        "sequences": 2 * n_groups,
    }


def train_on(run: Run, model, tokenizer, data: GroupData, run_dir: Path) -> dict:
    """Reference log-probs (the weights `model` starts with), then the step loop over the groups; returns the last
    metrics row."""
    config, pad_id = run.config, tokenizer.pad_token_id
    ref = cached_reference(
        run_dir,
        fingerprint(config.model, data.sequences),
        lambda: sequence_logps(
            model,
            _batches(config, data, pad_id, _epoch_seed(config, 0)),
            len(data.sequences),
            run.device,
            run.precision,
        ),
    )
    epochs = [_batches(config, data, pad_id, _epoch_seed(config, e)) for e in range(config.epochs)]
    if not epochs[0]:
        raise ValueError(f"{run_dir}: no training pairs")
    # Greedy group packing gives each epoch's order its own batch count, so count every epoch.
    total = config.max_steps or sum(math.ceil(len(b) / config.grad_accum) for b in epochs)
    optimizer, scheduler = run.optimization(model, total)
    watch = DriftWatch()

    def step(index: int, micro) -> dict:
        beta = annealed(index, total - 1, config.beta, config.beta_end, config.beta_schedule, config.beta_anneal_step)
        row = preference_step(run, model, optimizer, scheduler, micro, beta, ref, data.labels)
        watch.update(row["chosen_logratio"])
        return row

    def batches_for(epoch: int):
        return epochs[epoch] if epoch < len(epochs) else _batches(config, data, pad_id, _epoch_seed(config, epoch))

    settings = run.settings(total, f"{config.method} {run_dir.name}", config.grad_accum)
    return run_loop(run_dir, settings, model, optimizer, scheduler, batches_for, step)


def measure_diversity(config: PreferenceConfig, model, tokenizer, prompts) -> dict[str, float]:
    """distinct-n and self-BLEU of samples on a fixed prompt set (temperature 1)."""
    if not config.diversity_prompts or not prompts:
        return {}
    params = SamplingParams(min(config.max_new_tokens, 96), 1.0, 1.0, 0, seed=12345)
    sampler = make_sampler(model, tokenizer, options=config)
    return sample_diversity(sampler, prompts[: config.diversity_prompts], config.diversity_samples, params)[0]


def round_spec(run: Run, tasks) -> RoundSpec:
    """Iterated DPO as a round: sample, judge, pair best against worst, train with the round's start as reference."""
    c = run.config
    judge = build_judge(JudgeSettings(c.judge, c.judge_model, c.judge_base_url, c.judge_timeout_s, c.judge_retries))
    prompts = [t.prompt for t in tasks]
    return RoundSpec(
        data_name="pairs",
        samples_per_prompt=c.samples_per_prompt,
        sampling=lambda index: SamplingParams(c.max_new_tokens, c.temperature, c.top_p, 0, seed=c.seed * 7919 + index),
        sampler_options=c,
        score=judge_scorer(judge),
        build=lambda groups, ctx: best_against_worst(groups, c.min_margin, c.max_length),
        train=lambda built, ctx: train_on(run, ctx.model, ctx.tokenizer, built.data, ctx.dir),
        evaluate=lambda ctx: {"diversity": measure_diversity(c, ctx.model, ctx.tokenizer, prompts)},
    )


def run(config: PreferenceConfig) -> Path:
    """Offline training or iterated rounds; returns the final model directory."""
    _check(config)
    if config.rounds:
        return run_iterated(config)
    tokenizer = load_tokenizer(config.model)
    data = load_groups(config.data, config.method in BINARY_FEEDBACK, tokenizer, config.max_length, config.skip_invalid)
    run = open_run(config, "preference", {"data": config.data})
    run.note(method=config.method, groups=len(data.sequences) // 2)
    model, tokenizer = run.policy()
    train_on(run, model, tokenizer, data, run.dir)
    return save_model(model, tokenizer, run.dir / "final")


def run_iterated(config: PreferenceConfig) -> Path:
    """Iterated rounds from `config.model`; the last round's model is copied to `final/`."""
    single_process_only(config, "iterated preference rounds")
    tasks = load_records(config.prompts, "rl", skip_invalid=config.skip_invalid).records
    if config.judge in VERIFIER_JUDGES:
        check_prerequisites(VERIFIER_JUDGES[config.judge] or {t.verifier for t in tasks})
    run = open_run(config, "preference", {"prompts": config.prompts})
    run.note(method=config.method, judge=config.judge, prompts=len(tasks))

    def load(start: str, index: int):
        return run.policy(start, seed=config.seed + index)

    final_round = run_rounds(round_spec(run, tasks), config.rounds, run.dir, config.model, load, tasks)
    with atomic_directory(run.dir / "final") as tmp:
        shutil.copytree(final_round, tmp, dirs_exist_ok=True)
    return run.dir / "final"


def _check(config: PreferenceConfig) -> None:
    if config.method not in LOSSES:
        raise ValueError(f"unknown method {config.method!r}; choose one of {', '.join(LOSSES)}")
    if config.rounds and config.method not in PAIRWISE:
        raise NotImplementedError(f"iterated rounds build pairs; use a pairwise method ({', '.join(PAIRWISE)})")
    if not config.rounds and not config.data:
        raise ValueError("preference needs --data (offline) or --rounds N with --prompts")
    if any(Path(config.output).glob("round_*")) and not config.resume:
        raise FileExistsError(
            f"{config.output} already holds preference rounds: pass resume=true, or choose another output"
        )
