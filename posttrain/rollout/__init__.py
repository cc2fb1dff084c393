"""Sampling completions: the `Sampler` protocol and its backends."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from posttrain.types import Messages, Rollout


@dataclass(frozen=True)
class SamplingParams:
    """How to sample."""

    max_new_tokens: int = 256  # tokens generated at most per completion
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0  # nucleus sampling mass
    top_k: int = 0  # 0: no top-k cut
    seed: int = 0  # seeds the sampler's generator
    stop: tuple[str, ...] = ()  # stop strings: a completion ends with the token that completes one


class Sampler(Protocol):
    """Anything that turns prompts into rollouts; training never depends on how."""

    def sample(self, prompts: Sequence[Messages], n: int, params: SamplingParams) -> list[list[Rollout]]:
        """`n` rollouts for each prompt, grouped per prompt, in prompt order."""
        ...

    def sync(self) -> None:
        """Take up the policy's current weights (called after each optimizer step)."""
        ...


def greedy_texts(sampler: Sampler, prompts: Sequence[Messages], max_new_tokens: int) -> list[str]:
    """Greedy completion of each prompt by `sampler`, in input order, without special tokens."""
    groups = sampler.sample(prompts, 1, SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0))
    return [group[0].text for group in groups]
