"""Shared fixtures: tiny random models (seconds to build), the real SmolLM2 (converted once per machine), and a
headless Chromium that renders a page to a PNG."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

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


@pytest.fixture
def screenshot():
    """`render(html, png, width, height)`: the page in headless Chromium, as a PNG; skips without a chromium."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("no chromium binary on PATH (Debian package `chromium`; .ci/run installs it)")

    def render(html: Path, png: Path, width: int = 1280, height: int = 2400) -> Path:
        command = [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={png.parent / 'profile'}",
            f"--screenshot={png}",
            f"--window-size={width},{height}",
            html.resolve().as_uri(),
        ]
        subprocess.run(command, check=True, timeout=120, capture_output=True)
        return png

    return render
