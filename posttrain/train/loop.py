"""The step loop that every gradient stage shares: data position, logging, evaluation, checkpoints, resume.

A stage supplies `batches_for(epoch)` (deterministic in the epoch) and `step(micro_batches) -> metrics`, whose
`sequences` entry (if any) says how many examples the step consumed; this
module walks epochs and micro-batches, times each step, logs one metrics row per step, evaluates every
`eval_every` steps and at the end, and checkpoints every `save_every` steps. The data position saved with each
checkpoint is (epoch, index of the next micro-batch), so a resumed run neither replays nor skips data. On several
ranks every rank walks the same micro-batches (each trains on its share, see `posttrain.distributed`), and only
the main rank logs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from posttrain.distributed import is_main
from posttrain.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from posttrain.train.tracking import MetricsLogger, peak_memory_mb, truncate_metrics

log = logging.getLogger("posttrain.train")


@dataclass(frozen=True)
class LoopSettings:
    """How the loop runs; stages fill it from their config."""

    total_steps: int
    grad_accum: int
    eval_every: int = 0  # 0: evaluate at the end only
    save_every: int = 0  # 0: never checkpoint
    keep_last: int = 2
    resume: bool = False
    trackers: tuple[str, ...] = ()
    progress: bool = True
    desc: str = "train"


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuse to overwrite a run that has checkpoints unless resuming: call before writing anything into it."""
    if latest_checkpoint(run_dir) is not None and not resume:
        raise FileExistsError(f"{run_dir} already holds checkpoints: pass resume=true, or choose another output")


def resume_state(run_dir: Path, settings: LoopSettings, model, optimizer, scheduler) -> dict[str, Any]:
    """Fresh loop state, or the newest checkpoint's when resuming (an existing run without `resume` is an error)."""
    checkpoint = latest_checkpoint(run_dir)
    check_run_dir(run_dir, settings.resume)
    state = {"step": 0, "epoch": 0, "cursor": 0, "sequences_seen": 0}
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, optimizer, scheduler)
        log.info("resumed from %s (step %d, epoch %d, batch %d)", checkpoint, state["step"], state["epoch"],
                 state["cursor"])  # fmt: skip
    if is_main():  # rows of the attempt that was cut short, after its checkpoint (or all, without one)
        truncate_metrics(Path(run_dir) / "metrics.jsonl", state["step"])
    return state


def run_loop(
    run_dir: Path,
    settings: LoopSettings,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    batches_for: Callable[[int], Sequence],
    step: Callable[[int, list], dict[str, float]],
    evaluate: Callable[[], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Run until `settings.total_steps`; `step(step_index, micro_batches)` does one optimizer step. Returns the last row."""
    run_dir = Path(run_dir)
    state = resume_state(run_dir, settings, model, optimizer, scheduler)
    metrics_log = MetricsLogger(run_dir, settings.trackers) if is_main() else None
    device = next(model.parameters()).device
    done, epoch, cursor, seen = state["step"], state["epoch"], state["cursor"], state["sequences_seen"]
    shown = settings.progress and is_main()
    bar = tqdm(total=settings.total_steps, initial=done, desc=settings.desc, disable=not shown, unit="step")
    batches, row = batches_for(epoch), {}
    if not batches:
        raise ValueError(f"{run_dir}: no training batches (every record skipped, or an empty data set)")
    while done < settings.total_steps:
        if cursor >= len(batches):
            epoch, cursor = epoch + 1, 0
            batches = batches_for(epoch)
        micro = list(batches[cursor : cursor + settings.grad_accum])
        started = time.perf_counter()
        stats = step(done, micro)
        elapsed = time.perf_counter() - started
        done, cursor = done + 1, cursor + len(micro)
        seen += int(stats.pop("sequences", 0))
        row = {"step": done, "epoch": epoch, "sequences_seen": seen, **stats, "step_time_s": elapsed,
               "tokens_per_s": stats.get("tokens", 0) / elapsed, "peak_memory_mb": peak_memory_mb(device)}  # fmt: skip
        if evaluate and ((settings.eval_every and done % settings.eval_every == 0) or done == settings.total_steps):
            row.update(evaluate())
        if metrics_log:
            metrics_log.log(row)
        bar.update(1)
        bar.set_postfix(loss=f"{row.get('loss', float('nan')):.4f}", tok_s=f"{row['tokens_per_s']:.0f}")
        if settings.save_every and done % settings.save_every == 0 and done < settings.total_steps:
            position = {"epoch": epoch, "cursor": cursor, "sequences_seen": seen}
            save_checkpoint(run_dir, done, model, optimizer, scheduler, position, settings.keep_last)
    bar.close()
    if metrics_log:
        metrics_log.close()
    return row
