"""Held-out negative log-likelihood: the mean NLL per assistant token of a fixed chat text, a cheap capability probe
that rises when training damages the model's language (capability tax), without any generation.

`CHAT_HELDOUT` holds general chat exchanges written by hand for evaluation, apart from every training generator.
"""

from __future__ import annotations

from pathlib import Path

import torch

from posttrain.data import load_records
from posttrain.logprobs import target_mask, token_logprobs
from posttrain.losses.sft import sft_loss
from posttrain.packing import PackedBatch, pack
from posttrain.render import render_messages
from posttrain.train.optim import autocast

CHAT_HELDOUT = Path(__file__).resolve().parents[1] / "data" / "sets" / "chat_heldout.jsonl"


@torch.no_grad()
def eval_loss(model, batches: list[PackedBatch], device, precision) -> float:
    """Mean NLL per trained token over the held-out batches; the model's train/eval mode is left as it was."""
    was_training = model.training
    model.eval()
    nll, count = 0.0, 0
    for batch in batches:
        batch = batch.to(device)
        with autocast(precision, device):
            logprobs = token_logprobs(model, batch)
        _, metrics = sft_loss(logprobs, target_mask(batch))
        nll, count = nll + metrics["nll_sum"], count + metrics["n_tokens"]
    model.train(was_training)
    return nll / max(count, 1)


def heldout_nll(model, tokenizer, path: str | Path = CHAT_HELDOUT, max_length: int = 512) -> dict[str, float]:
    """Mean NLL per assistant token of the SFT records in `path` (no autocast: the model's own dtype, on its device),
    and the token count."""
    sequences = [render_messages(tokenizer, r.messages) for r in load_records(path, "sft").records]
    batches = pack(sequences, max_length, 4, tokenizer.pad_token_id)
    device = next(model.parameters()).device
    return {"nll": eval_loss(model, batches, device, "fp32"), "tokens": sum(s.n_trained for s in sequences)}
