"""The reference policy: log-probs computed once and stored in the run directory, or the starting weights kept.

Preference losses (and later distillation) compare the policy with a fixed reference. Rather than hold a second
model in memory, the reference's summed completion log-probs are computed once with the starting weights and kept
in `reference_logps.pt`, keyed by a fingerprint of the starting model and the data, so a resumed run reads them
back instead of recomputing them with already-trained weights. RL with a per-token KL needs the reference's
log-probs of fresh samples instead, so `reference_policy` keeps the starting weights: the adapters switched off
under LoRA, else a frozen copy.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from posttrain.distributed import is_main, is_sharded
from posttrain.io import atomic_write_json
from posttrain.logprobs import per_sequence_sum, token_logprobs
from posttrain.models import is_lora
from posttrain.render import RenderedSequence
from posttrain.train.optim import autocast


def fingerprint(model: str, sequences: Sequence[RenderedSequence]) -> str:
    """What a stored reference was computed for: the starting model and every sequence's token ids."""
    digest = hashlib.sha256(model.encode())
    for sequence in sequences:
        digest.update(repr(sequence.token_ids).encode())
    return digest.hexdigest()


@torch.no_grad()
def sequence_logps(model, batches, n: int, device, precision: str) -> torch.Tensor:
    """(n,) summed completion log-probs of every sequence, in sequence order."""
    out = torch.zeros(n, dtype=torch.float64)
    was_training = model.training
    model.eval()
    for batch in batches:
        batch = batch.to(device)
        with autocast(precision, device):
            sums = per_sequence_sum(token_logprobs(model, batch), batch)
        out[list(batch.sequence_indices)] = sums.double().cpu()
    model.train(was_training)
    return out


def cached_reference(run_dir: Path, key: str, compute) -> torch.Tensor:
    """The stored reference log-probs when they were computed for `key`, else `compute()`, stored atomically."""
    ref_path, meta_path = run_dir / "reference_logps.pt", run_dir / "reference.json"
    if ref_path.exists() and meta_path.exists() and json.loads(meta_path.read_text())["fingerprint"] == key:
        return torch.load(ref_path, weights_only=True)
    started = time.perf_counter()
    ref = compute()
    if not is_main():  # every rank computed the same; the main rank keeps it
        return ref
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = ref_path.with_name(".reference_logps.pt.tmp")
    torch.save(ref, tmp)
    os.replace(tmp, ref_path)
    atomic_write_json(meta_path, {"sequences": len(ref), "seconds": time.perf_counter() - started, "fingerprint": key})
    return ref


def reference_policy(model, enabled: bool = True):
    """A function giving a context manager that yields the reference policy (the starting weights); None when
    not `enabled`. With LoRA the reference is the model with its adapters switched off; else a frozen copy."""
    if not enabled:
        return None
    if is_lora(model):

        @contextlib.contextmanager
        def base_weights():
            with model.disable_adapter():
                yield model

        return base_weights
    if is_sharded(model):
        raise NotImplementedError("a frozen reference (kl_beta > 0) is not kept under parallel=fsdp2 yet: use ddp")
    frozen = copy.deepcopy(model).eval().requires_grad_(False)
    return lambda: contextlib.nullcontext(frozen)
