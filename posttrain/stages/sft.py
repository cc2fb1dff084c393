"""Supervised fine-tuning: next-token NLL on assistant tokens of packed chat conversations.

The loop: render and pack the data (best-fit decreasing, block-diagonal attention), then per optimizer step
accumulate `grad_accum` packed micro-batches, normalising by the step's total trained tokens so that every token
weighs the same however the step was split; clip, step AdamW and the warmup-cosine schedule; log; evaluate on
the held-out set every `eval_every` steps; checkpoint every `save_every` steps.

A killed run resumes with `resume=true` from its newest checkpoint and, on CPU, reproduces the uninterrupted
run's per-step losses exactly: the data order is a function of (seed, epoch) and the checkpoint holds the data
position, the optimizer, the scheduler and every RNG.

Launch:
    posttrain sft --model smollm2-135m-instruct --data train.jsonl --output runs/sft
    posttrain sft --config sft.yaml lr=1e-4 lora=true
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from posttrain.data import load_records
from posttrain.distributed import is_main
from posttrain.eval.nll import eval_loss
from posttrain.gate import DecontaminationOptions
from posttrain.io import atomic_write_json
from posttrain.logprobs import target_mask, token_logprobs
from posttrain.losses.sft import sft_loss
from posttrain.models import LoraSpec, save_model
from posttrain.packing import PackedBatch
from posttrain.render import render_messages
from posttrain.train.batches import epoch_batches, render_all
from posttrain.train.config import option
from posttrain.train.loop import run_loop
from posttrain.train.preamble import ParallelOptions, Run, accumulate_and_step, open_run

log = logging.getLogger("posttrain.sft")


@dataclass(frozen=True)
class SFTConfig(DecontaminationOptions, ParallelOptions):
    model: str = option("smollm2-135m-instruct", "model spec: HF directory, smollm2-135m-instruct or tiny-random-*")
    data: str = option("", "training data (sft schema): .jsonl, .parquet or a datasets directory")
    eval_data: str = option("", "held-out data for the eval loss (sft schema); empty: no eval")
    output: str = option("runs/sft", "run directory")
    max_length: int = option(1024, "longest sample in tokens; also the packed row length")
    rows_per_batch: int = option(4, "packed rows per micro-batch")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    epochs: int = option(1, "passes over the data (ignored when max_steps > 0)")
    max_steps: int = option(0, "optimizer steps to run; 0: as many as `epochs` needs")
    lr: float = option(2e-5, "peak learning rate")
    min_lr_ratio: float = option(0.1, "final learning rate as a fraction of the peak (cosine decay)")
    warmup_ratio: float = option(0.05, "fraction of steps spent warming up linearly")
    weight_decay: float = option(0.0, "AdamW weight decay (not applied to biases and norms)")
    grad_clip: float = option(1.0, "clip the gradient norm to this; 0: no clipping")
    precision: str = option("auto", "auto (bf16 where supported), bf16 (autocast) or fp32")
    lora: bool = option(False, "train LoRA adapters instead of all weights")
    lora_r: int = option(16, "LoRA rank")
    lora_alpha: int = option(32, "LoRA alpha")
    lora_targets: tuple[str, ...] = option(LoraSpec.target_modules, "modules that get LoRA adapters")
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass to save memory")
    eval_every: int = option(50, "evaluate every N steps; 0: only at the end")
    save_every: int = option(100, "checkpoint every N steps; 0: never")
    keep_last: int = option(2, "checkpoints to keep")
    resume: bool = option(False, "continue from the newest checkpoint in `output`")
    seed: int = option(0, "seed for data order and initialisation")
    skip_invalid: bool = option(False, "skip (and count) invalid or too-long records instead of failing")
    trackers: tuple[str, ...] = option((), "extra trackers: tensorboard, wandb, trackio")
    progress: bool = option(True, "show a progress bar")


def load_sequences(path: str, tokenizer, config: SFTConfig):
    """Load, validate and render an SFT file; returns the rendered sequences and what was skipped."""
    loaded = load_records(path, "sft", skip_invalid=config.skip_invalid)
    sequences, report = render_all(
        loaded.records, lambda r: render_messages(tokenizer, r.messages), config.max_length, config.skip_invalid
    )
    log.info("%s; %s", loaded.summary(), report.summary(path))
    return sequences, len(loaded.skipped) + len(report.skipped)


def train_step(run: Run, model, optimizer, scheduler, micro_batches: list[PackedBatch]) -> dict[str, float]:
    """One optimizer step over `micro_batches`, normalised by the step's trained-token count; returns metrics."""
    n_tokens = sum(int(target_mask(b).sum()) for b in micro_batches)

    def micro_loss(batch: PackedBatch):
        loss, metrics = sft_loss(token_logprobs(model, batch), target_mask(batch), normalizer=n_tokens)
        return loss, {"nll_sum": metrics["nll_sum"]}

    stats = accumulate_and_step(run, model, optimizer, scheduler, micro_batches, micro_loss)
    real = sum(b.n_real_tokens for b in micro_batches)
    slots = sum(b.seq_ids.numel() for b in micro_batches)
    return {
        "loss": stats.pop("nll_sum") / max(n_tokens, 1),
        **stats,
        "tokens": real,
        "trained_tokens": n_tokens,
        "packing_efficiency": real / slots,
        "sequences": sum(len(b.sequence_indices) for b in micro_batches),
    }


def fit(run: Run, model, sequences: list, pad_id: int, run_dir: Path, desc: str, evaluate=None) -> tuple[dict, int]:
    """The SFT loop over `sequences` with the run's config (max_length, rows_per_batch, grad_accum, epochs,
    max_steps, eval_every and the preamble's keys); returns the last metrics row and the number of steps."""
    config = run.config

    def batches_for(epoch: int) -> list[PackedBatch]:
        return epoch_batches(sequences, config.max_length, config.rows_per_batch, pad_id, config.seed, epoch)

    steps_per_epoch = math.ceil(len(batches_for(0)) / config.grad_accum)
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    optimizer, scheduler = run.optimization(model, total_steps)
    last = run_loop(
        run_dir,
        run.settings(total_steps, desc, config.grad_accum, config.eval_every),
        model,
        optimizer,
        scheduler,
        batches_for,
        step=lambda _, micro: train_step(run, model, optimizer, scheduler, micro),
        evaluate=evaluate,
    )
    return last, total_steps


def run(config: SFTConfig) -> Path:
    """Train, evaluate and save; returns the final model directory."""
    if not config.data:
        raise ValueError("sft needs training data: --data FILE")
    run = open_run(config, "sft", {"data": config.data, "eval_data": config.eval_data})
    model, tokenizer = run.policy()
    train_seqs, n_skipped = load_sequences(config.data, tokenizer, config)
    eval_batches = []
    if config.eval_data:
        eval_seqs, _ = load_sequences(config.eval_data, tokenizer, config)
        eval_batches = epoch_batches(eval_seqs, config.max_length, config.rows_per_batch, tokenizer.pad_token_id, 0, 0)
    run.note(skipped_records=n_skipped, train_sequences=len(train_seqs))

    def evaluate() -> dict[str, float]:
        return {"eval_loss": eval_loss(model, eval_batches, run.device, run.precision)}

    evaluator = evaluate if eval_batches else None
    last, total_steps = fit(run, model, train_seqs, tokenizer.pad_token_id, run.dir, "sft", evaluator)
    final_eval = last.get("eval_loss")
    if final_eval is None and eval_batches:
        final_eval = evaluate()["eval_loss"]
    if is_main():
        atomic_write_json(run.dir / "eval.json", {"eval_loss": final_eval, "steps": total_steps})
    return save_model(model, tokenizer, run.dir / "final")
