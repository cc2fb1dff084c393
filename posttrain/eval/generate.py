"""Greedy generation for evaluation: the rollout sampler at temperature 0, texts only."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from posttrain.rollout import Sampler, SamplingParams
from posttrain.rollout.hf import HFSampler
from posttrain.types import Messages


def greedy_texts(sampler: Sampler, prompts: Sequence[Messages], max_new_tokens: int) -> list[str]:
    """Greedy completion of each prompt by `sampler`, in input order, without special tokens."""
    groups = sampler.sample(prompts, 1, SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0))
    return [group[0].text for group in groups]


def generate_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Messages],
    max_new_tokens: int,
    batch_size: int = 16,
    desc: str = "generate",
    progress: bool = True,
) -> list[str]:
    """Greedy completion of each prompt, in input order, without special tokens."""
    return greedy_texts(HFSampler(model, tokenizer, batch_size, progress=desc if progress else ""), prompts,
                        max_new_tokens)  # fmt: skip
