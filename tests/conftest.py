"""Shared fixtures: tiny random models (seconds to build) and the real SmolLM2 (converted once per machine)."""

from __future__ import annotations

import pytest

from posttrain.models import load_policy


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) of the tiny Llama-style preset, fp32, sdpa."""
    return load_policy("tiny-random-llama")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny):
    return tiny[1]


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) of SmolLM2-135M-Instruct, converted from the pip-installed GGUF on first use."""
    model, tokenizer = load_policy("smollm2-135m-instruct")
    model.eval()
    return model, tokenizer
