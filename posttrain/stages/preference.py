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

import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from posttrain.data import DataError, load_records
from posttrain.data.length import split_by_length
from posttrain.eval.diversity import diversity_metrics
from posttrain.logprobs import per_sequence_count, per_sequence_sum, token_logprobs
from posttrain.losses.kto import kto_loss
from posttrain.losses.preference import dpo_loss, ipo_loss, orpo_loss, simpo_loss
from posttrain.models import LoraSpec, save_model
from posttrain.packing import pack_groups
from posttrain.render import RenderedSequence, render_completion
from posttrain.rewards.answer import BoxedAnswerVerifier
from posttrain.rewards.judge import HFChatLM, LMJudge, OpenAICompatibleLM, VerifierJudge
from posttrain.rollout import SamplingParams
from posttrain.rollout.hf import HFSampler, bf16_copy
from posttrain.train.config import option, save_config
from posttrain.train.io import atomic_directory, atomic_write_json, atomic_write_text
from posttrain.train.loop import LoopSettings, check_run_dir, run_loop
from posttrain.train.manifest import write_manifest
from posttrain.train.optim import autocast, resolve_precision
from posttrain.train.schedules import annealed
from posttrain.train.setup import build_optimization, build_policy, clip_and_step, device_for_training

log = logging.getLogger("posttrain.preference")
METHODS = ("dpo", "ipo", "simpo", "kto", "orpo")
JUDGES = ("math", "lm-local", "lm-openai")


@dataclass(frozen=True)
class PreferenceConfig:
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
    judge: str = option("math", "math (boxed final answer), lm-local or lm-openai")
    judge_model: str = option("", "lm-local: model spec; lm-openai: served model name")
    judge_base_url: str = option("", "lm-openai: base URL such as http://127.0.0.1:8000/v1")
    judge_timeout_s: float = option(30.0, "lm-openai: request timeout")
    judge_retries: int = option(2, "lm-openai: retries after a failure")
    min_margin: float = option(0.5, "smallest best-minus-worst reward difference that makes a pair")
    diversity_prompts: int = option(8, "prompts used for the diversity metrics (0: skip)")
    diversity_samples: int = option(4, "samples per prompt for the diversity metrics")


@dataclass(frozen=True)
class GroupData:
    """Sequences in groups of two: (chosen, rejected) pairs, or (completion, mismatched completion) for KTO."""

    sequences: list[RenderedSequence]  # group g holds sequences 2g and 2g+1
    labels: torch.Tensor | None = None  # (G,) bool, KTO only


def load_offline(config: PreferenceConfig, tokenizer) -> GroupData:
    """Render the offline file into groups of two sequences."""
    schema = "kto" if config.method == "kto" else "preference"
    records = load_records(config.data, schema, skip_invalid=config.skip_invalid).records
    records, rejected = split_by_length(records, tokenizer, config.max_length)
    if rejected and not config.skip_invalid:
        raise rejected[0]
    if rejected:
        log.warning("skipped %d records that are too long or unrenderable; first: %s", len(rejected), rejected[0])
    sequences: list[RenderedSequence] = []
    if config.method != "kto":
        for pair in records:
            sequences += [render_completion(tokenizer, pair.prompt, pair.chosen),
                          render_completion(tokenizer, pair.prompt, pair.rejected)]  # fmt: skip
        return GroupData(sequences)
    if len(records) < 2:
        raise ValueError(f"{config.data}: KTO needs at least 2 records to estimate its KL baseline")
    for i, record in enumerate(records):
        mismatched_prompt = records[(i + 1) % len(records)].prompt
        sequences += [render_completion(tokenizer, record.prompt, record.completion),
                      render_completion(tokenizer, mismatched_prompt, record.completion)]  # fmt: skip
        if len(sequences[-1]) > config.max_length:
            raise DataError(record.source, "completion", f"with the next record's prompt (the KL term) it is "
                            f"{len(sequences[-1])} tokens, longer than max_length {config.max_length}")  # fmt: skip
    return GroupData(sequences, torch.tensor([r.label for r in records]))


def _batches(config: PreferenceConfig, data: GroupData, pad_id: int, seed: int | None):
    groups = [(2 * g, 2 * g + 1) for g in range(len(data.sequences) // 2)]
    return pack_groups(data.sequences, groups, config.max_length, config.rows_per_batch, pad_id, seed)


def _fingerprint(config: PreferenceConfig, data: GroupData) -> str:
    """What a stored reference was computed for: the starting model and every sequence's token ids."""
    digest = hashlib.sha256(config.model.encode())
    for sequence in data.sequences:
        digest.update(repr(sequence.token_ids).encode())
    return digest.hexdigest()


def reference_logps(config: PreferenceConfig, model, data: GroupData, run_dir: Path, pad_id: int, device, precision):
    """(2G,) reference log-probs: read from the run directory when computed for the same model and data, else
    computed on the first epoch's own batches (under bf16 the same layout gives the same numbers, so step 1 sits
    at log 2) and stored atomically."""
    ref_path, meta_path = run_dir / "reference_logps.pt", run_dir / "reference.json"
    fingerprint = _fingerprint(config, data)
    if ref_path.exists() and meta_path.exists() and json.loads(meta_path.read_text())["fingerprint"] == fingerprint:
        return torch.load(ref_path, weights_only=True)
    started = time.perf_counter()
    first_epoch = _batches(config, data, pad_id, _epoch_seed(config, 0))
    ref = sequence_logps(model, first_epoch, len(data.sequences), device, precision)
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = ref_path.with_name(".reference_logps.pt.tmp")
    torch.save(ref, tmp)
    os.replace(tmp, ref_path)
    atomic_write_json(meta_path, {"sequences": len(data.sequences), "seconds": time.perf_counter() - started,
                                  "fingerprint": fingerprint})  # fmt: skip
    return ref


def _epoch_seed(config: PreferenceConfig, epoch: int) -> int:
    return config.seed * 1000 + epoch


@torch.no_grad()
def sequence_logps(model, batches, n: int, device, precision) -> torch.Tensor:
    """(n,) summed completion log-probs of every sequence, in sequence order."""
    out = torch.zeros(n, dtype=torch.float64)
    was_training = model.training
    model.eval()
    for batch in batches:
        with autocast(precision, device):
            sums = per_sequence_sum(token_logprobs(model, batch.to(device)), batch.to(device))
        out[list(batch.sequence_indices)] = sums.double().cpu()
    model.train(was_training)
    return out


def group_loss(config: PreferenceConfig, beta: float, policy_G2, ref_G2, lengths_G2, labels_G):
    """The configured method's loss on groups of two: column 0 chosen (or completion), column 1 rejected (or KL)."""
    pc, pr = policy_G2[:, 0], policy_G2[:, 1]
    lc, lr = lengths_G2[:, 0], lengths_G2[:, 1]
    if config.method == "dpo":
        return dpo_loss(pc, pr, ref_G2[:, 0], ref_G2[:, 1], beta, config.label_smoothing)
    if config.method == "ipo":
        lengths = (lc, lr) if config.ipo_length_normalize else (None, None)
        return ipo_loss(pc, pr, ref_G2[:, 0], ref_G2[:, 1], beta, *lengths)
    if config.method == "simpo":
        return simpo_loss(pc, pr, lc, lr, beta, config.simpo_gamma)
    if config.method == "orpo":
        return orpo_loss(pc, pr, lc, lr, -pc / lc.clamp(min=1), beta)
    if config.method == "kto":
        return kto_loss(pc, ref_G2[:, 0], labels_G, pr, ref_G2[:, 1], beta,
                        config.desirable_weight, config.undesirable_weight)  # fmt: skip
    raise ValueError(f"unknown method {config.method!r}; choose one of {', '.join(METHODS)}")


def preference_step(model, micro, optimizer, scheduler, config, beta, ref, labels, device, precision) -> dict:
    """One optimizer step over micro-batches of whole groups; the loss is the mean over the step's groups."""
    n_groups = sum(len(b.sequence_indices) for b in micro) // 2
    totals: dict[str, float] = {}
    for batch in micro:
        batch = batch.to(device)
        index = torch.tensor(batch.sequence_indices)
        with autocast(precision, device):
            logprobs = token_logprobs(model, batch)
        policy_G2 = per_sequence_sum(logprobs, batch).float().view(-1, 2)
        lengths_G2 = per_sequence_count(batch).to(policy_G2.device).view(-1, 2)
        ref_G2 = ref[index].float().to(device).view(-1, 2)
        group_ids = index.view(-1, 2)[:, 0] // 2
        loss, metrics = group_loss(config, beta, policy_G2, ref_G2, lengths_G2,
                                   None if labels is None else labels[group_ids].to(device))  # fmt: skip
        share = len(group_ids) / n_groups
        (loss * share).backward()
        logratio_G2 = (policy_G2 - ref_G2).detach()
        metrics |= {"loss": float(loss.detach()), "chosen_logratio": float(logratio_G2[:, 0].mean()),
                    "rejected_logratio": float(logratio_G2[:, 1].mean()),
                    "response_length": float(lengths_G2.float().mean())}  # fmt: skip
        for key, value in metrics.items():
            totals[key] = totals.get(key, 0.0) + share * value
    totals["implicit_kl"] = 0.5 * (totals["chosen_logratio"] + totals["rejected_logratio"])
    tokens = sum(b.n_real_tokens for b in micro)
    step_stats = clip_and_step(model, optimizer, scheduler, config.grad_clip)
    return {**totals, "beta": beta, **step_stats, "tokens": tokens, "pairs": n_groups}


class DriftWatch:
    """Warns once when the chosen log-ratio falls three logged steps in a row while below zero (a DPO failure)."""

    def __init__(self):
        self.history: list[float] = []
        self.warned = False

    def update(self, chosen_logratio: float) -> None:
        """Record a step's mean chosen log-ratio and warn if it keeps falling."""
        self.history.append(chosen_logratio)
        last = self.history[-4:]
        falling = len(last) == 4 and all(b < a for a, b in itertools.pairwise(last)) and last[-1] < 0
        if falling and not self.warned:
            log.warning("chosen log-probs keep falling below the reference (%.3f): the policy is pushing down both "
                        "answers; consider a lower lr, a larger beta, or an NLL term (ORPO/RPO)", last[-1])  # fmt: skip
            self.warned = True


def train_on(config: PreferenceConfig, model, tokenizer, data: GroupData, run_dir: Path, device, precision) -> dict:
    """Reference log-probs, then the step loop over the groups; returns the last metrics row."""
    pad_id = tokenizer.pad_token_id
    ref = reference_logps(config, model, data, run_dir, pad_id, device, precision)
    epochs = [_batches(config, data, pad_id, _epoch_seed(config, e)) for e in range(config.epochs)]
    if not epochs[0]:
        raise ValueError(f"{run_dir}: no training pairs")
    # Greedy group packing gives each epoch's order its own batch count, so count every epoch.
    total = config.max_steps or sum(math.ceil(len(b) / config.grad_accum) for b in epochs)
    optimizer, scheduler = build_optimization(model, config.lr, config.weight_decay, config.warmup_ratio, total,
                                              config.min_lr_ratio)  # fmt: skip
    watch = DriftWatch()

    def step(index: int, micro) -> dict:
        beta = annealed(index, total - 1, config.beta, config.beta_end, config.beta_schedule, config.beta_anneal_step)
        row = preference_step(model, micro, optimizer, scheduler, config, beta, ref, data.labels, device, precision)
        watch.update(row["chosen_logratio"])
        return row

    settings = LoopSettings(total, config.grad_accum, 0, config.save_every, config.keep_last, config.resume,
                            config.trackers, config.progress, desc=f"{config.method} {run_dir.name}")  # fmt: skip
    return run_loop(run_dir, settings, model, optimizer, scheduler,
                    lambda e: epochs[e] if e < len(epochs) else _batches(config, data, pad_id, _epoch_seed(config, e)),
                    step)  # fmt: skip


def build_judge(config: PreferenceConfig):
    """The judge named by the config."""
    if config.judge == "math":
        return VerifierJudge(BoxedAnswerVerifier())
    if config.judge == "lm-local":
        from posttrain.models import load_policy

        return LMJudge(HFChatLM(*load_policy(config.judge_model)))
    if config.judge == "lm-openai":
        return LMJudge(OpenAICompatibleLM(config.judge_base_url, config.judge_model,
                                          timeout_s=config.judge_timeout_s, retries=config.judge_retries))  # fmt: skip
    raise ValueError(f"unknown judge {config.judge!r}; choose one of {', '.join(JUDGES)}")


def _sampling(config: PreferenceConfig, seed: int) -> SamplingParams:
    return SamplingParams(config.max_new_tokens, config.temperature, config.top_p, 0, seed)


def sampling_copy(model, precision: str):
    """The model to sample from: a bf16 copy when training in bf16, else the model itself."""
    return bf16_copy(model) if precision == "bf16" else model


def make_pairs(config: PreferenceConfig, model, tokenizer, tasks, judge, round_dir: Path, seed: int, precision: str):
    """Sample, judge and pair one round; saves samples.jsonl and pairs.jsonl. Returns (GroupData, stats)."""
    sampler = HFSampler(sampling_copy(model, precision), tokenizer)
    groups = sampler.sample([t.prompt for t in tasks], config.samples_per_prompt, _sampling(config, seed))
    sequences, sample_rows, pair_rows = [], [], []
    stats = {"prompts": len(tasks), "samples": 0, "reward_sum": 0.0, "ties": 0, "below_margin": 0, "failures": 0,
             "unjudged": 0, "too_long": 0}  # fmt: skip
    for task, rollouts in zip(tasks, groups, strict=True):
        scores = judge.score_group(task, [r.text for r in rollouts])
        stats["samples"] += len(rollouts)
        stats["reward_sum"] += sum(s.reward for s in scores)
        stats["failures"] += sum(s.failure is not None for s in scores)
        sample_rows += [{"prompt": task.prompt[-1].content, "completion": r.text, "reward": s.reward,
                         "failure": s.failure, "finish_reason": r.finish_reason} for r, s in zip(rollouts, scores, strict=True)]  # fmt: skip
        judged = [i for i, score in enumerate(scores) if score.failure is None or isinstance(judge, VerifierJudge)]
        if len(judged) < 2:  # a judge that could not answer says nothing about which sample is better
            stats["unjudged"] += 1
            continue
        best = max(judged, key=lambda i: scores[i].reward)
        worst = min(judged, key=lambda i: scores[i].reward)
        margin = scores[best].reward - scores[worst].reward
        if margin == 0:
            stats["ties"] += 1
            continue
        if margin < config.min_margin:
            stats["below_margin"] += 1
            continue
        if max(len(rollouts[i].prompt_ids) + len(rollouts[i].token_ids) for i in (best, worst)) > config.max_length:
            stats["too_long"] += 1
            continue
        for r in (rollouts[best], rollouts[worst]):
            ids = r.prompt_ids + r.token_ids
            sequences.append(RenderedSequence(ids, (False,) * len(r.prompt_ids) + (True,) * len(r.token_ids)))
        pair_rows.append({"prompt": task.prompt[-1].content, "chosen": rollouts[best].text,
                          "rejected": rollouts[worst].text, "chosen_reward": scores[best].reward,
                          "rejected_reward": scores[worst].reward})  # fmt: skip
    atomic_write_text(round_dir / "samples.jsonl", "".join(json.dumps(r) + "\n" for r in sample_rows))
    atomic_write_text(round_dir / "pairs.jsonl", "".join(json.dumps(r) + "\n" for r in pair_rows))
    stats["pairs"] = len(pair_rows)
    stats["reward_mean"] = stats.pop("reward_sum") / max(stats["samples"], 1)
    return GroupData(sequences), stats


def measure_diversity(config: PreferenceConfig, model, tokenizer, prompts, precision: str) -> dict[str, float]:
    """distinct-n and self-BLEU of samples on a fixed prompt set (temperature 1)."""
    if not config.diversity_prompts or not prompts:
        return {}
    params = SamplingParams(min(config.max_new_tokens, 96), 1.0, 1.0, 0, seed=12345)
    sampler = HFSampler(sampling_copy(model, precision), tokenizer)
    groups = sampler.sample(prompts[: config.diversity_prompts], config.diversity_samples, params)
    return diversity_metrics([[r.text for r in g] for g in groups])


def _lora(config: PreferenceConfig) -> LoraSpec | None:
    return LoraSpec(config.lora_r, config.lora_alpha) if config.lora else None


def run_rounds(config: PreferenceConfig, run_dir: Path, device, precision) -> Path:
    """Iterated rounds; each starts from the previous round's final model, which is also its reference."""
    tasks = load_records(config.prompts, "rl", skip_invalid=config.skip_invalid).records
    judge = build_judge(config)
    start = config.model
    for r in range(1, config.rounds + 1):
        round_dir = run_dir / f"round_{r}"
        if not (round_dir / "final" / "config.json").is_file():
            model, tokenizer = build_policy(
                start, device, config.seed + r, _lora(config), config.gradient_checkpointing
            )
            round_dir.mkdir(parents=True, exist_ok=True)
            data, stats = make_pairs(
                config, model, tokenizer, tasks, judge, round_dir, config.seed * 7919 + r, precision
            )
            log.info("round %d: %s", r, stats)
            if stats["pairs"] == 0:
                raise ValueError(f"round {r}: no pairs (every group tied or below min_margin): {stats}")
            last = train_on(config, model, tokenizer, data, round_dir, device, precision)
            summary = {"round": r, **stats, "final_step": {k: v for k, v in last.items() if isinstance(v, float)}}
            summary |= {"diversity": measure_diversity(config, model, tokenizer, [t.prompt for t in tasks], precision)}
            atomic_write_json(round_dir / "round.json", summary)
            save_model(model, tokenizer, round_dir / "final")
        start = str(round_dir / "final")
    return Path(start)


def run(config: PreferenceConfig) -> Path:
    """Offline training or iterated rounds; returns the final model directory."""
    if config.method not in METHODS:
        raise ValueError(f"unknown method {config.method!r}; choose one of {', '.join(METHODS)}")
    if config.rounds and config.method == "kto":
        raise NotImplementedError("iterated rounds build pairs; use a pairwise method (dpo, ipo, simpo, orpo)")
    if not config.rounds and not config.data:
        raise ValueError("preference needs --data (offline) or --rounds N with --prompts")
    run_dir = Path(config.output)
    check_run_dir(run_dir, config.resume)
    if any(run_dir.glob("round_*")) and not config.resume:
        raise FileExistsError(f"{run_dir} already holds preference rounds: pass resume=true, or choose another output")
    device = device_for_training()
    precision = resolve_precision(config.precision, device)
    save_config(config, run_dir / "config.yaml")
    write_manifest(run_dir, "preference", config.model, {"data": config.data, "prompts": config.prompts},
                   {"method": config.method, "precision": precision, "config": dataclasses.asdict(config)})  # fmt: skip
    if config.rounds:
        final_round = run_rounds(config, run_dir, device, precision)
        with atomic_directory(run_dir / "final") as tmp:
            shutil.copytree(final_round, tmp, dirs_exist_ok=True)
        return run_dir / "final"
    model, tokenizer = build_policy(config.model, device, config.seed, _lora(config), config.gradient_checkpointing)
    train_on(config, model, tokenizer, load_offline(config, tokenizer), run_dir, device, precision)
    return save_model(model, tokenizer, run_dir / "final")
