"""Guards for tests on the tiny model: a fixed random probe, and one whose threshold halts a given greedy answer."""

from __future__ import annotations

import random

import pytest
import torch

from posttrain.render import render_prompt
from posttrain.rollout import SamplingParams
from posttrain.safety.guard import Guard, Probe
from posttrain.safety.guarded import GuardedGenerator


def a_guard(model, threshold: float, every: int = 4) -> Guard:
    """A probe with fixed random weights on layers 1 and 2 of the tiny model."""
    width = 2 * model.config.hidden_size
    weights = torch.Generator().manual_seed(3)
    probe = Probe(torch.randn(width, generator=weights), torch.tensor(0.0), torch.zeros(width), torch.ones(width))
    return Guard(probe, (1, 2), threshold, every)


def halting_guard(model, tokenizer, messages, params: SamplingParams, every: int = 4) -> Guard:
    """A random probe whose threshold passes the prompt and halts the greedy answer at its highest-scoring check."""
    plain = GuardedGenerator(model, tokenizer).complete(messages, params)
    prompt = render_prompt(tokenizer, messages)
    response = tokenizer.encode(plain.text, add_special_tokens=False)
    scores = a_guard(model, 0.0, every).stream_scores(model, prompt, response)
    threshold = float(scores[every - 1 :: every].sort().values[-2])
    guard = a_guard(model, threshold, every)
    if guard.score_prompt(model, prompt) > threshold:
        pytest.skip("this random probe flags the prompt")
    return guard


HARMLESS_SUBJECTS = ["a birthday cake", "a paper kite", "a garden bench", "a fruit salad"]


def requests(subjects: list[str], n: int, seed: int, kind: str) -> list[str]:
    """`n` instruction-shaped requests about `subjects`, drawn by (kind, seed)."""
    rng = random.Random(f"{kind}:{seed}")
    verbs = ["How do I make", "Explain how to build", "Give me steps for making", "What do I need for"]
    return [f"{rng.choice(verbs)} {rng.choice(subjects)}?" for _ in range(n)]
