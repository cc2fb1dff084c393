"""What training must know about a decoder's attention, read from its Hugging Face config.

- `attention_implementation(config)`: `sdpa`, except where the model soft-caps its attention scores (Gemma 2), which
  only `eager` computes in transformers (its `sdpa` path raises on a soft-cap).
- `layer_windows(config)`: each layer's sliding window (None: full attention). Models with `layer_types` (Qwen2/3,
  Gemma 2/3) give each layer its type, and `sliding_attention` layers use `config.sliding_window`; models without
  them (Mistral, Phi-3) apply `config.sliding_window` to every layer, where it is set.
- `mask_layout(config)`: how a model takes a custom mask: one tensor for all layers, or a dict keyed by layer type
  (what transformers' Qwen2/3 and Gemma 2/3 accept in place of the masks they would build).

A window `w` lets a token see the `w` tokens ending at itself: key position `k` is visible from query position `q`
when `q - w < k <= q`, as transformers' `sliding_window_overlay` has it.
"""

from __future__ import annotations

from transformers import PretrainedConfig

SLIDING = "sliding_attention"


def attention_implementation(config: PretrainedConfig) -> str:
    """`eager` for models that soft-cap attention scores, else `sdpa`."""
    return "eager" if getattr(config, "attn_logit_softcapping", None) else "sdpa"


def layer_windows(config: PretrainedConfig) -> tuple[int | None, ...]:
    """Each layer's sliding window, None for full attention."""
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if types is None:
        return (window,) * config.num_hidden_layers
    return tuple(window if kind == SLIDING else None for kind in types)


def mask_layout(config: PretrainedConfig) -> dict[str, int | None] | int | None:
    """The window of each mask the model takes: {layer type: window} for models that take one mask per layer type,
    else the one window (None: plain causal) of the single mask all layers share."""
    types = getattr(config, "layer_types", None)
    if types is None:
        return layer_windows(config)[0]
    return {kind: window for kind, window in zip(types, layer_windows(config), strict=True)}
