"""Batched greedy or sampled generation with plain `transformers.generate`, for evaluation.

Prompts are rendered by `posttrain.render.render_prompt` (the template training used), sorted by length so that
each batch pads little, left-padded, and decoded up to the end-of-turn token. This is the simple baseline; the
RL rollout engine lives in `posttrain.rollout`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from posttrain.render import render_prompt
from posttrain.types import Messages


@torch.no_grad()
def generate_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Messages],
    max_new_tokens: int,
    batch_size: int = 16,
    desc: str = "generate",
    progress: bool = True,
) -> list[str]:
    """Greedy completions of each prompt, in input order, without special tokens."""
    token_prompts = [render_prompt(tokenizer, p) for p in prompts]
    order = sorted(range(len(token_prompts)), key=lambda i: len(token_prompts[i]))
    texts: list[str] = [""] * len(prompts)
    pad_id = tokenizer.pad_token_id
    was_training = model.training
    model.eval()
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, unit="batch"):
        chunk = order[start : start + batch_size]
        width = max(len(token_prompts[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            ids = token_prompts[i]
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
        out = model.generate(
            input_ids=input_ids.to(model.device),
            attention_mask=attention_mask.to(model.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        for row, i in enumerate(chunk):
            texts[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
    model.train(was_training)
    return texts
