"""What training must know about a decoder's attention, read from its Hugging Face config.

- `attention_implementation(config)`: `eager` for models that soft-cap their attention scores (Gemma 2), which only
  `eager` computes in transformers (its `sdpa` path raises on a soft-cap); otherwise None, transformers' default
  (`sdpa` where the model has it).
- `layer_windows(config)`: each layer's sliding window (None: full attention), by the model type's rule in
  `WINDOW_RULES`: Qwen2/3 and Gemma 2/3 give each layer a type in `config.layer_types`, and `sliding_attention`
  layers use `config.sliding_window`; Mistral and Phi-3 apply `config.sliding_window`, where it is set, to every
  layer, whatever `layer_types` a config carries (transformers ignores it for them); Llama has no window.
- `mask_layout(config)`: how the model takes a custom mask: one per layer type, as a dict (what transformers' Qwen2/3
  and Gemma 2/3 accept in place of the masks they would build), or one tensor for all layers.

A window `w` lets a token see the `w` tokens ending at itself: key position `k` is visible from query position `q`
when `q - w < k <= q`, as transformers' `sliding_window_overlay` has it. Anything these rules do not describe (a
model type not in the table with a window or layer types, a layer kind other than full or sliding attention,
bidirectional attention) is an error: a packed mask that silently attends differently from the model would train on
the wrong context.
"""

from __future__ import annotations

from transformers import PretrainedConfig

FULL, SLIDING = "full_attention", "sliding_attention"


def _no_window(config: PretrainedConfig) -> tuple[int | None, ...]:
    return (None,) * config.num_hidden_layers


def _every_layer(config: PretrainedConfig) -> tuple[int | None, ...]:
    return (getattr(config, "sliding_window", None),) * config.num_hidden_layers


def _by_layer_type(config: PretrainedConfig) -> tuple[int | None, ...]:
    unknown = sorted(set(config.layer_types) - {FULL, SLIDING})
    if unknown:
        raise NotImplementedError(f"layer types {unknown}: posttrain's packed mask knows {FULL} and {SLIDING}")
    return tuple(config.sliding_window if kind == SLIDING else None for kind in config.layer_types)


WINDOW_RULES = {
    "llama": _no_window,
    "granite": _no_window,
    "olmo2": _no_window,
    "mistral": _every_layer,
    "ministral": _by_layer_type,  # what a Mistral config with layer types loads as from a directory
    "phi3": _every_layer,
    "qwen2": _by_layer_type,
    "qwen3": _by_layer_type,
    "smollm3": _by_layer_type,
    "gemma2": _by_layer_type,
    "gemma3_text": _by_layer_type,
}


def attention_implementation(config: PretrainedConfig) -> str | None:
    """`eager` for models that soft-cap attention scores, else None (transformers' default)."""
    return "eager" if getattr(config, "attn_logit_softcapping", None) else None


def _window_rule(config: PretrainedConfig):
    """The model type's rule in `WINDOW_RULES`; a type not there is taken as windowless if its config shows neither a
    window nor layer types, else refused."""
    if getattr(config, "use_bidirectional_attention", False):
        raise NotImplementedError("bidirectional attention: posttrain's packed mask is causal")
    rule = WINDOW_RULES.get(config.model_type)
    if rule is None and getattr(config, "sliding_window", None) is None and not getattr(config, "layer_types", None):
        return _no_window
    if rule is None:
        raise NotImplementedError(
            f"model_type {config.model_type!r} has sliding windows or layer types that posttrain's packed mask does "
            f"not know how to apply; supported: {sorted(WINDOW_RULES)}"
        )
    return rule


def layer_windows(config: PretrainedConfig) -> tuple[int | None, ...]:
    """Each layer's sliding window, None for full attention."""
    return _window_rule(config)(config)


def mask_layout(config: PretrainedConfig) -> dict[str, int | None] | int | None:
    """The window of each mask the model takes: {layer type: window} for models that take one mask per layer type,
    else the one window (None: plain causal) of the single mask all layers share."""
    rule = _window_rule(config)
    windows = rule(config)
    return dict(zip(config.layer_types, windows, strict=True)) if rule is _by_layer_type else windows[0]
