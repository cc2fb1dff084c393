"""The decoder families the fused rollout forward (`posttrain.rollout.fused`) runs, as data, and the check that
decides, model by model, whether it reproduces the model's own forward or sampling falls back to `generate`."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedModel

from posttrain.architectures import layer_windows


@dataclass(frozen=True)
class Family:
    """How a decoder family's layer departs from Llama's, as far as the fused forward is concerned (the rest is
    read from the model: attention scale, activation, windows, biases, embedding scale, soft-caps)."""

    norm_offset: float = 0.0  # RMSNorms scale by (offset + weight): Gemma's are 1-centred
    mlp_norm: str = "post_attention_layernorm"  # the norm feeding the MLP
    output_norms: tuple[str, str] | None = None  # norms on the attention and the MLP outputs (Gemma's sandwich)
    qk_norm: bool = False  # an RMSNorm over each head's queries and keys before RoPE (Qwen3, Gemma 3)
    fused_projections: bool = False  # one qkv_proj and one gate_up_proj (Phi-3) instead of q/k/v, gate/up
    activation: str = "act_fn"  # the MLP's activation module
    rope_per_layer_type: bool = False  # the rotary module takes the layer type (Gemma 3: local and global bases)
    attention_softcap: bool = False  # attention scores soft-capped by `attn_logit_softcapping` (Gemma 2)


_GEMMA_NORMS = {
    "norm_offset": 1.0,
    "mlp_norm": "pre_feedforward_layernorm",
    "output_norms": ("post_attention_layernorm", "post_feedforward_layernorm"),
}
FAMILIES = {
    "llama": Family(),
    "qwen2": Family(),
    "mistral": Family(),
    "ministral": Family(),
    "qwen3": Family(qk_norm=True),
    "phi3": Family(fused_projections=True, activation="activation_fn"),
    "gemma2": Family(**_GEMMA_NORMS, attention_softcap=True),
    "gemma3_text": Family(**_GEMMA_NORMS, qk_norm=True, rope_per_layer_type=True),
}


# RoPE types whose frequencies transformers picks per call from the longest position (and, for Phi-3's longrope, by
# recomputing the cache past `original_max_position_embeddings`): a cache of keys rotated earlier would not match.
POSITION_DEPENDENT_ROPE = ("dynamic", "longrope")


def fused_decode_supported(model: PreTrainedModel) -> str | None:
    """None when the fused step reproduces this model's forward; otherwise why not (the caller falls back)."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        return f"model_type {model_type!r} is not one of {tuple(FAMILIES)}"
    try:
        layer_windows(config)
    except NotImplementedError as err:
        return str(err)
    ropes = _rope_parameters(config)
    if any(r.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", 1.0)) != 1.0 for r in ropes):
        return "partial rotary embeddings"
    changing = sorted({r.get("rope_type") for r in ropes} & set(POSITION_DEPENDENT_ROPE))
    if changing:
        return f"rope_type {changing[0]!r}, whose frequencies depend on the sequence's length"
    if getattr(config, "pretraining_tp", 1) != 1:
        return "pretraining_tp != 1"
    return None


def _rope_parameters(config) -> list[dict]:
    """The config's RoPE parameter sets: one, or one per layer type (Gemma 3)."""
    rope = getattr(config, "rope_parameters", None) or {}
    per_type = rope and all(isinstance(v, dict) for v in rope.values())
    return list(rope.values()) if per_type else [rope]
