"""What every gradient stage does before and around its loop, written once.

`open_run` checks the output directory (a run with checkpoints is only continued with `resume=true`) and picks the
device and precision; `Run.note` writes `config.yaml` and `manifest.json` once the stage has read and checked its
data, so bad data leaves no run directory behind. `Run.policy` loads the model to train with
LoRA and gradient checkpointing as the config says, seeded; `Run.optimization` builds AdamW and its schedule from
the config's keys; `Run.settings` fills the shared loop's settings. `accumulate_and_step` is the one
backward-accumulate-clip-step of every stage.

The config keys read here (`model`, `output`, `resume`, `seed`, `precision`, `parallel`, `lora`, `lora_r`,
`lora_alpha`, `lora_targets`, `gradient_checkpointing`, `lr`, `weight_decay`, `warmup_ratio`, `min_lr_ratio`,
`grad_clip`, `save_every`, `keep_last`, `trackers`, `progress`) therefore mean the same thing in every stage.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from posttrain import distributed
from posttrain.models import LoraSpec
from posttrain.train.config import option, save_config
from posttrain.train.loop import LoopSettings, check_run_dir
from posttrain.train.manifest import write_manifest
from posttrain.train.optim import autocast, resolve_precision
from posttrain.train.setup import build_optimization, build_policy, clip_and_step, device_for_training


@dataclass(frozen=True)
class ParallelOptions:
    """The config key of every training stage that says how ranks share the work."""

    parallel: str = option(
        "none", "none (one process), ddp or fsdp2 (under torchrun: torchrun --nproc_per_node=N -m posttrain ...)"
    )


def lora_spec(config: Any) -> LoraSpec | None:
    """The LoRA adapters the config asks for, or None for full fine-tuning."""
    if not config.lora:
        return None
    return LoraSpec(config.lora_r, config.lora_alpha, 0.0, tuple(config.lora_targets))


@dataclass
class Run:
    """A stage's run: its directory, device and precision, and the config it was opened with."""

    config: Any
    stage: str
    dir: Path
    device: torch.device
    precision: str
    inputs: dict[str, str]
    notes: dict[str, Any] = field(default_factory=dict)

    def policy(self, spec: str | None = None, seed: int | None = None):
        """(model, tokenizer) to train: `spec` (default the config's model), seeded, LoRA and checkpointing as set,
        wrapped or sharded as `parallel` says (`posttrain.distributed.WRAPPERS`)."""
        seed = self.config.seed if seed is None else seed
        model, tokenizer = build_policy(
            spec or self.config.model, self.device, seed, lora_spec(self.config), self.config.gradient_checkpointing
        )
        return distributed.WRAPPERS[self.config.parallel](model, self.precision), tokenizer

    def optimization(self, model, total_steps: int, groups: list[dict] | None = None):
        """AdamW (over `groups` if given: parameters with their own lr) and its warmup-cosine schedule over
        `total_steps`, from the config's keys."""
        c = self.config
        return build_optimization(model, c.lr, c.weight_decay, c.warmup_ratio, total_steps, c.min_lr_ratio, groups)

    def settings(self, total_steps: int, desc: str, grad_accum: int = 1, eval_every: int = 0) -> LoopSettings:
        """The shared loop's settings for `total_steps` optimizer steps."""
        c = self.config
        return LoopSettings(
            total_steps, grad_accum, eval_every, c.save_every, c.keep_last, c.resume, c.trackers, c.progress, desc=desc
        )

    def note(self, **extra: Any) -> None:
        """Write config.yaml and manifest.json, with facts learnt while loading (counts of skipped records, ...); on
        the main rank only."""
        self.notes.update(extra, world_size=distributed.world_size())
        if not distributed.is_main():
            return
        save_config(self.config, self.dir / "config.yaml")
        write_manifest(
            self.dir, self.stage, self.config.model, self.inputs, {"precision": self.precision, **self.notes}
        )


def open_run(config: Any, stage: str, inputs: dict[str, str]) -> Run:
    """Join the torchrun job if `parallel` asks, check the output directory and pick device and precision; nothing
    is written until `Run.note`."""
    distributed.start(config.parallel)
    run_dir = Path(config.output)
    check_run_dir(run_dir, config.resume)
    device = device_for_training()
    return Run(config, stage, run_dir, device, resolve_precision(config.precision, device), inputs)


MicroLoss = Callable[[Any], tuple[torch.Tensor, dict[str, float]]]


def accumulate_and_step(
    run: Run,
    model,
    optimizer,
    scheduler,
    micro_batches: Sequence,
    micro_loss: MicroLoss,
    parts: dict[str, torch.nn.Module] | None = None,
) -> dict[str, float]:
    """Backward through each micro-batch's loss, then one clipped optimizer step (`parts` clipped apart, see
    `clip_and_step`).

    `micro_loss(batch)` runs under the run's autocast on a batch already on the device, and returns its loss,
    already scaled for the whole step (so the gradients add up to the step's loss), and metrics that are summed
    over the micro-batches (scale them by the micro-batch's share to get means). Returns the sums, lr and grad norm.

    On several ranks each runs its share of the micro-batches (`posttrain.distributed.share`), gradients are reduced
    with the last one, and the sums are summed over ranks.
    """
    totals: dict[str, float] = defaultdict(float)
    mine = distributed.share(micro_batches)
    for index, (batch, weight) in enumerate(mine):
        with distributed.gradient_sync(model, enabled=index == len(mine) - 1):
            with autocast(run.precision, run.device):
                loss, metrics = micro_loss(batch.to(run.device))
            (loss * (weight * distributed.loss_scale())).backward()
        for key, value in metrics.items():
            totals[key] += value * weight
    totals = distributed.all_reduce_sums(dict(totals))
    return totals | clip_and_step(model, optimizer, scheduler, run.config.grad_clip, parts)
