"""Schedules for loss coefficients, such as DPO's beta annealed upward late in training."""

from __future__ import annotations

import math

BETA_SCHEDULES = ("constant", "linear", "cosine")


def annealed(step: int, total_steps: int, start: float, end: float, kind: str, from_step: int) -> float:
    """`start` until `from_step`, then `kind` ("linear" or "cosine") interpolation to `end` at `total_steps`."""
    if kind not in BETA_SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; choose one of {', '.join(BETA_SCHEDULES)}")
    if kind == "constant" or step <= from_step:
        return start
    progress = min(1.0, (step - from_step) / max(1, total_steps - from_step))
    if kind == "cosine":
        progress = 0.5 * (1 - math.cos(math.pi * progress))
    return start + (end - start) * progress
