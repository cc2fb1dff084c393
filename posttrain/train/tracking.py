"""Metrics: `metrics.jsonl` in the run directory always; TensorBoard, W&B or trackio when asked for and installed."""

from __future__ import annotations

import itertools
import json
import logging
import resource
import sys
from pathlib import Path
from typing import Any

import torch

from posttrain.io import atomic_write_text

log = logging.getLogger("posttrain.train")
TRACKERS = ("tensorboard", "wandb", "trackio")


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: allocated GPU memory on CUDA, else the resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def truncate_metrics(path: Path, last_step: int) -> None:
    """Keep only rows up to `last_step` (and drop a torn final line): a resumed run rewrites what came after."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a kill mid-write; the resumed run writes that step again
        if row.get("step", 0) <= last_step:
            kept.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))


class MetricsLogger:
    """Append one JSON row per call to metrics.jsonl and forward it to any enabled trackers."""

    def __init__(self, run_dir: Path, trackers: tuple[str, ...] = (), config: dict[str, Any] | None = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a")
        self._sinks = [_open_tracker(name, run_dir, config or {}) for name in trackers]

    def log(self, row: dict[str, Any]) -> None:
        """Write one row (it must hold `step`) and flush it to disk."""
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        for sink in self._sinks:
            sink(row)

    def close(self) -> None:
        """Flush and close the file and every tracker."""
        self._file.close()
        for sink in self._sinks:
            sink.close()


class _Sink:
    """One tracker: `log(row)` forwards a metrics row, `close()` flushes it."""

    def __init__(self, log, close):
        self.log, self.close = log, close

    def __call__(self, row: dict[str, Any]) -> None:
        self.log(row)


def _open_tracker(name: str, run_dir: Path, config: dict[str, Any]) -> _Sink:
    """A sink that forwards metrics rows to one tracker; a clear error if the package is missing."""
    if name not in TRACKERS:
        raise ValueError(f"unknown tracker {name!r}; choose from {', '.join(TRACKERS)}")
    try:
        if name == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            return _Sink(lambda row: [writer.add_scalar(k, v, row["step"]) for k, v in _scalars(row).items()],
                         writer.close)  # fmt: skip
        if name == "wandb":
            import wandb

            run = wandb.init(dir=str(run_dir), config=config)
            return _Sink(lambda row: run.log(_scalars(row), step=row["step"]), run.finish)
        import trackio

        trackio.init(project="posttrain", config=config)
        return _Sink(lambda row: trackio.log(_scalars(row)), trackio.finish)
    except ImportError as err:
        raise ImportError(f"tracker {name!r} was requested but its package is not installed: {err}") from err


def _scalars(row: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and k != "step"}


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
            log.warning(
                "chosen log-probs keep falling below the reference (%.3f): the policy is pushing down both "
                "answers; consider a lower lr, a larger beta, or an NLL term (ORPO/RPO)",
                last[-1],
            )
            self.warned = True
