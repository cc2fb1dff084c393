"""The config keys that choose how a stage samples: the rollout backend and its settings.

A stage's config inherits `SamplerOptions` and passes itself to `posttrain.rollout.engine.make_sampler`, which
picks the backend from its table `SAMPLER_BACKENDS`. Nothing here imports a backend: vLLM is imported only when a
vLLM sampler is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def option(default: Any, help: str) -> Any:
    """`posttrain.train.config.option`, which the rollout package sits below: a field with its `--help` line."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class SamplerOptions:
    """The sampler config keys, shared by every stage that samples."""

    sampler: str = option(
        "auto", "auto: the fused CPU engine where it applies, else HF generate; hf; vllm; vllm-server"
    )
    vllm_url: str = option("http://localhost:8000", "the running `vllm serve` that sampler=vllm-server talks to")
    vllm_sync_dir: str = option(
        "",
        "sampler=vllm-server: a directory the server can read at the same path; sync() saves the policy there and "
        "has the server reload it (start it with VLLM_SERVER_DEV_MODE=1); empty: sync() refuses",
    )
    vllm_gpu_memory: float = option(
        0.3, "sampler=vllm: the fraction of GPU memory vLLM takes for weights and KV cache (on CPU, of the RAM)"
    )
