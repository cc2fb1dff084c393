"""Building the trainable policy and its optimizer, the same way in every gradient stage."""

from __future__ import annotations

import torch

from posttrain.distributed import local_device
from posttrain.models import LoraSpec, load_policy
from posttrain.train.optim import build_optimizer, build_scheduler


def device_for_training() -> torch.device:
    """The GPU when there is one (this rank's, under torchrun), else the CPU."""
    return local_device()


def build_policy(
    spec: str,
    device: torch.device,
    seed: int,
    lora: LoraSpec | None = None,
    gradient_checkpointing: bool = False,
):
    """(model, tokenizer) in train mode on `device`, with LoRA and gradient checkpointing as asked."""
    torch.manual_seed(seed)
    model, tokenizer = load_policy(spec, lora=lora)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if lora is not None:
            model.enable_input_require_grads()
    return model.to(device).train(), tokenizer


def build_optimization(
    model,
    lr: float,
    weight_decay: float,
    warmup_ratio: float,
    total_steps: int,
    min_lr_ratio: float,
    groups: list[dict] | None = None,
):
    """AdamW (over `groups` if given, see `build_optimizer`) and its warmup-cosine schedule over `total_steps`."""
    optimizer = build_optimizer(model, lr, weight_decay, groups=groups)
    scheduler = build_scheduler(optimizer, round(warmup_ratio * total_steps), total_steps, min_lr_ratio)
    return optimizer, scheduler


def clip_and_step(
    model, optimizer, scheduler, grad_clip: float, parts: dict[str, torch.nn.Module] | None = None
) -> dict[str, float]:
    """Clip the gradient norm, step the optimizer and the schedule, clear gradients; returns lr and grad norm.

    `parts` (metric prefix -> module, default the whole model as one) are clipped apart, each logging
    `<prefix>grad_norm`: a policy and its critic, so that the critic's large early gradients never shrink the
    policy's step.
    """
    norms = {}
    for prefix, part in (parts or {"": model}).items():
        params = [p for p in part.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
        norms[f"{prefix}grad_norm"] = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # FSDP2
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {"lr": lr, **norms}
