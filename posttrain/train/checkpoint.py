"""Checkpoints that make a resumed run reproduce an uninterrupted one.

`checkpoints/step_N/` holds the trainable weights (the adapters alone under LoRA), the optimizer, the scheduler,
every RNG state and the stage's own state (its data position included). It is written to a hidden temp
directory and renamed into place, so a kill at any moment leaves either the whole checkpoint or none of it.

A run on several ranks (`posttrain.distributed`) writes the model and optimizer through
`torch.distributed.checkpoint` instead, into `step_N/sharded/`, every rank its own shards; loading reshards them,
so the run resumes on the same or another number of ranks, or in one process. The RNG states are the main rank's.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from posttrain.distributed import barrier, is_initialized, is_main, is_sharded
from posttrain.io import atomic_directory

_STEP_DIR = re.compile(r"^step_(\d+)$")
TRAINABLE = StateDictOptions(ignore_frozen_params=True, strict=False)  # under LoRA, the adapters alone


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train, by name (tied weights appear once)."""
    return {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict[str, Any]:
    """Every RNG that training touches."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():  # the devices both runs see (a rank sees one under torchrun)
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write checkpoints/step_<step> atomically, then delete all but the newest `keep_last` (every rank calls this)."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step}"
    if is_initialized():
        _save_sharded(root, final, model, optimizer, scheduler, {**state, "step": step})
    else:
        with atomic_directory(final) as tmp:
            save_file(trainable_state(model), tmp / "trainable.safetensors")
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            _save_rest(tmp, scheduler, {**state, "step": step})
    if is_main():
        _prune(root, keep_last)
    barrier()
    return final


def _save_rest(directory: Path, scheduler: Any, state: dict[str, Any]) -> None:
    torch.save(scheduler.state_dict(), directory / "scheduler.pt")
    torch.save(rng_state(), directory / "rng.pt")
    (directory / "state.json").write_text(json.dumps(state, indent=2))


def _save_sharded(root: Path, final: Path, model, optimizer, scheduler, state: dict[str, Any]) -> None:
    """Every rank writes its shards into one temp directory (a fixed name, known to all); the main rank adds the rest
    and renames it into place once all have finished."""
    tmp = root / f".{final.name}.partial"
    if is_main():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    barrier()
    model_state, optimizer_state = get_state_dict(model, optimizer, options=TRAINABLE)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=tmp / "sharded")
    if is_main():
        _save_rest(tmp, scheduler, state)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNGs from `path`; returns the stage state it saved."""
    if (path / "sharded").is_dir():
        model_state, optimizer_state = get_state_dict(model, optimizer, options=TRAINABLE)
        saved = {"model": model_state, "optimizer": optimizer_state}
        dcp.load(saved, checkpoint_id=path / "sharded", no_dist=not is_initialized())  # resharded for this run's ranks
        set_state_dict(model, optimizer, model_state_dict=saved["model"], optim_state_dict=saved["optimizer"],
                       options=TRAINABLE)  # fmt: skip
    elif is_sharded(model):
        raise ValueError(f"{path}: a one-process checkpoint cannot be loaded into FSDP2's shards; resume it with "
                         "parallel=none or parallel=ddp")  # fmt: skip
    else:
        _load_trainable(path, model, optimizer)
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    set_rng_state(torch.load(path / "rng.pt", weights_only=False))
    return json.loads((path / "state.json").read_text())


def _load_trainable(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    weights = load_file(path / "trainable.safetensors")
    expected = set(trainable_state(model))
    if set(weights) != expected:
        missing, extra = sorted(expected - set(weights)), sorted(set(weights) - expected)
        raise ValueError(f"{path}: checkpoint does not match the model (missing {missing[:3]}, unexpected {extra[:3]})")
    model.load_state_dict(weights, strict=False)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))


def _prune(root: Path, keep_last: int) -> None:
    for stale in list_checkpoints(root.parent)[: -max(keep_last, 1)]:
        shutil.rmtree(stale)
    for leftover in root.glob(".step_*"):  # temp dirs of a run killed mid-save
        shutil.rmtree(leftover, ignore_errors=True)
