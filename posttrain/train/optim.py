"""AdamW with linear warmup then cosine decay, and the precision context for forward passes."""

from __future__ import annotations

import contextlib
import math

import torch


def parameter_groups(model: torch.nn.Module, weight_decay: float, **options) -> list[dict]:
    """AdamW groups of the trainable parameters: matrices decayed, biases and norm weights (1-D tensors) not;
    `options` (an own `lr`, say) go into both groups."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return [
        {"params": decay, "weight_decay": weight_decay, **options},
        {"params": no_decay, "weight_decay": 0.0, **options},
    ]


def build_optimizer(
    model: torch.nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.95),
    groups: list[dict] | None = None,
) -> torch.optim.AdamW:
    """AdamW over `groups` (default: `parameter_groups(model, weight_decay)`); groups without an own lr get `lr`."""
    groups = parameter_groups(model, weight_decay) if groups is None else groups
    fused = next(p for g in groups for p in g["params"]).device.type == "cuda"
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """LR multiplier: linear 0 -> 1 over `warmup_steps`, then cosine 1 -> `min_ratio` at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """The warmup-cosine schedule as a LambdaLR (its state is the step count, so it checkpoints cleanly)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup_steps, total_steps, min_ratio)
    )


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 matmuls are native here: a CUDA GPU that supports them, or a CPU with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' becomes 'bf16' where the hardware has it, else 'fp32'."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, not {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast (fp32 master weights) or nothing."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
