"""A fused forward for Llama-family models (Llama, Qwen2) with a preallocated KV cache, for sampling.

Why: on a CPU, one decode step of a 135M model in transformers spends about as much time in Python, mask
building and a general-purpose attention kernel as in the matrix products that have to happen. This forward keeps
little besides them: per layer, one fused QKV matmul, RoPE from the model's own rotary module (so every rope
scaling transformers supports is computed there), a write into the cache, attention of the new queries over the
slots written so far (grouped-query attention as a batched matmul, no expanded K/V), the output projection, one
fused gate/up matmul and the down projection. Prompts (`prefill`) and single decode steps (`step`) go through the
same `forward`; tests check its logits against the HF model's for the tiny Llama and Qwen2 presets and SmolLM2.

Cache layout: per layer, values of shape (B, kv_heads, capacity, head_dim) and keys stored transposed. Each row keeps its tokens
left-aligned from slot 0 (no padding inside a row), `lengths_B` counts the slots written per row, and a row's
RoPE position is its slot index. `KVCache.keep_rows` selects rows: it drops finished rows, and repeats a
prompt's row for each sample drawn from it, so a prompt is prefilled once per group.

`weights_from(model)` copies the effective weights (LoRA deltas merged) in the decode dtype, so the model can train
on while rollouts read a fixed snapshot; call it again after each optimizer step to refresh the sampler.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

SUPPORTED_MODEL_TYPES = ("llama", "qwen2")


def fused_decode_supported(model: PreTrainedModel) -> str | None:
    """None when the fused step reproduces this model's forward; otherwise why not (the caller falls back)."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        return f"model_type {model_type!r} is not one of {SUPPORTED_MODEL_TYPES}"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"hidden_act {config.hidden_act!r} is not silu"
    if "sliding_attention" in (getattr(config, "layer_types", None) or ()):
        return "sliding-window attention layers"
    if getattr(config, "pretraining_tp", 1) != 1:
        return "pretraining_tp != 1"
    return None


def _base(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a PEFT wrapper, or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def effective_weight(linear: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) of a linear layer, with the deltas of its active LoRA adapters added."""
    base = getattr(linear, "base_layer", linear)
    weight = base.weight.detach()
    for adapter in getattr(linear, "active_adapters", ()) if hasattr(linear, "lora_A") else ():
        if adapter in linear.lora_A and not getattr(linear, "merged", False):
            weight = weight + linear.get_delta_weight(adapter).detach().to(weight.dtype)
    bias = None if base.bias is None else base.bias.detach()
    return weight, bias


@dataclass
class LayerWeights:
    """One decoder layer's weights, fused and in the decode dtype."""

    input_norm: torch.Tensor
    qkv: torch.Tensor  # (q + k + v out features, hidden)
    qkv_bias: torch.Tensor | None
    o: torch.Tensor
    post_norm: torch.Tensor
    gate_up: torch.Tensor  # (2 * intermediate, hidden)
    down: torch.Tensor


@dataclass
class DecodeWeights:
    """Everything the fused step reads."""

    embed: torch.Tensor
    layers: list[LayerWeights]
    norm: torch.Tensor
    lm_head: torch.Tensor
    eps: float
    heads: int
    kv_heads: int
    head_dim: int


def weights_from(model: PreTrainedModel, dtype: torch.dtype = torch.bfloat16) -> DecodeWeights:
    """Effective weights of `model` (LoRA merged), fused and converted to `dtype`."""
    reason = fused_decode_supported(_base(model))
    if reason:
        raise NotImplementedError(f"fused decode does not support this model: {reason}")
    causal = _base(model)
    config, inner = causal.config, causal.model
    with torch.no_grad():
        layers = []
        for layer in inner.layers:
            attn, mlp = layer.self_attn, layer.mlp
            q, k, v = (effective_weight(p) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
            biases = [b for _, b in (q, k, v)]
            qkv_bias = None if all(b is None for b in biases) else torch.cat(
                [b if b is not None else torch.zeros(w.shape[0]) for (w, _), b in zip((q, k, v), biases, strict=True)]
            ).to(dtype, copy=True)  # fmt: skip
            for name, module in (("o_proj", attn.o_proj), ("down_proj", mlp.down_proj)):
                if effective_weight(module)[1] is not None:
                    raise NotImplementedError(f"fused decode does not support a bias on {name}")
            layers.append(LayerWeights(
                input_norm=layer.input_layernorm.weight.detach().to(torch.float32, copy=True),
                qkv=torch.cat([q[0], k[0], v[0]]).to(dtype, copy=True).contiguous(), qkv_bias=qkv_bias,
                o=effective_weight(attn.o_proj)[0].to(dtype, copy=True).contiguous(),
                post_norm=layer.post_attention_layernorm.weight.detach().to(torch.float32, copy=True),
                gate_up=torch.cat([effective_weight(mlp.gate_proj)[0], effective_weight(mlp.up_proj)[0]]).to(dtype, copy=True),
                down=effective_weight(mlp.down_proj)[0].to(dtype, copy=True).contiguous(),
            ))  # fmt: skip
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return DecodeWeights(
            embed=inner.embed_tokens.weight.detach().to(dtype, copy=True), layers=layers, norm=inner.norm.weight.detach().to(torch.float32, copy=True),
            lm_head=effective_weight(causal.lm_head)[0].to(dtype, copy=True), eps=float(config.rms_norm_eps),
            heads=config.num_attention_heads, kv_heads=config.num_key_value_heads, head_dim=head_dim,
        )  # fmt: skip


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm in fp32 (one fused op), cast back to x's dtype. transformers' LlamaRMSNorm casts before scaling by
    the weight; scaling in fp32 first differs by at most one bf16 rounding."""
    return F.rms_norm(x.float(), (x.shape[-1],), weight, eps).to(x.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE as transformers' apply_rotary_pos_emb (halves rotated)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class KVCache:
    """Preallocated per-layer keys, (B, kv_heads, head_dim, capacity) (stored transposed, so that q @ K^T reads them
    in place), and values, (B, kv_heads, capacity, head_dim); rows left-aligned."""

    def __init__(self, layers: int, batch: int, kv_heads: int, capacity: int, head_dim: int, dtype: torch.dtype):
        self.keys = [torch.zeros((batch, kv_heads, head_dim, capacity), dtype=dtype) for _ in range(layers)]
        self.values = [torch.zeros((batch, kv_heads, capacity, head_dim), dtype=dtype) for _ in range(layers)]
        self.lengths_B = torch.zeros(batch, dtype=torch.long)
        self.capacity = capacity

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep the rows listed, in that order (a row listed twice is copied)."""
        self.keys = [k.index_select(0, rows) for k in self.keys]
        self.values = [v.index_select(0, rows) for v in self.values]
        self.lengths_B = self.lengths_B.index_select(0, rows)


class FusedDecoder:
    """Runs new tokens through the fused layers, appending their keys and values to a `KVCache`."""

    def __init__(self, model: PreTrainedModel, weights: DecodeWeights):
        self.w = weights
        self.rotary = _base(model).model.rotary_emb  # the model's own RoPE (all rope scalings it supports)

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        """An empty cache of `capacity` slots per row."""
        w = self.w
        return KVCache(len(w.layers), batch, w.kv_heads, capacity, w.head_dim, w.embed.dtype)

    @torch.no_grad()
    def prefill(self, prompts: list[list[int]], capacity: int) -> tuple[KVCache, torch.Tensor]:
        """A cache holding each prompt in its own row, and the logits (fp32) after each prompt's last token."""
        cache = self.new_cache(len(prompts), capacity)
        width = max(map(len, prompts))
        ids = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):  # right padding: the padded slots are masked and later overwritten
            ids[i, : len(p)] = torch.tensor(p)
        return cache, self.forward(ids, torch.tensor([len(p) for p in prompts]), cache)

    @torch.no_grad()
    def step(self, tokens_B: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Append one token per row and return the next-token logits, fp32 (B, V)."""
        return self.forward(tokens_B[:, None], torch.ones_like(tokens_B), cache)

    @torch.no_grad()
    def forward(self, tokens_B_T: torch.Tensor, counts_B: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Append the first `counts_B[b]` of row b's tokens at its next free slots; logits after the last of them.

        Query t of row b sits at slot `lengths_B[b] + t` and sees every slot up to its own (causal); slots past a
        row's real tokens hold padding, which no real query can see and the next write overwrites.
        """
        w = self.w
        B, T = tokens_B_T.shape
        starts_B = cache.lengths_B
        slots_B_T = starts_B[:, None] + torch.arange(T)
        if int(slots_B_T.max()) >= cache.capacity:
            raise RuntimeError(f"KV cache full: {cache.capacity} slots per row")
        L = int(slots_B_T.max()) + 1  # slots any query can see
        group, scale = w.heads // w.kv_heads, w.head_dim**-0.5
        visible = (torch.arange(L) <= slots_B_T[..., None])[:, None, None]  # (B, 1, 1, T, L)
        hidden = ~visible.expand(B, 1, group, T, L).reshape(B, 1, group * T, L)
        rows_B_1 = torch.arange(B)[:, None]
        q_dim, kv_dim = w.heads * w.head_dim, w.kv_heads * w.head_dim
        x = w.embed[tokens_B_T]  # (B, T, hidden)
        cos, sin = self.rotary(x, slots_B_T)  # (B, T, head_dim)
        cos, sin = cos[:, :, None], sin[:, :, None]  # broadcast over heads in (B, T, heads, D)
        for i, lw in enumerate(w.layers):
            h = _rms_norm(x, lw.input_norm, w.eps)
            qkv = F.linear(h, lw.qkv, lw.qkv_bias)  # (B, T, q + 2 kv)
            qk = _rotate(qkv[..., : q_dim + kv_dim].view(B, T, w.heads + w.kv_heads, w.head_dim), cos, sin)
            q, k = qk[:, :, : w.heads].transpose(1, 2), qk[:, :, w.heads :]  # (B, H, T, D), (B, T, kv, D)
            v = qkv[..., q_dim + kv_dim :].view(B, T, w.kv_heads, w.head_dim)
            keys, values = cache.keys[i], cache.values[i]
            keys.transpose(2, 3)[rows_B_1, :, slots_B_T] = k  # (B, T, kv, D) into (B, kv, slot, D)
            values[rows_B_1, :, slots_B_T] = v
            # Query heads grouped under their K/V head, (B, kv, group * T, D): one matmul per K/V head, no copies.
            q = q.reshape(B, w.kv_heads, group * T, w.head_dim)
            scores = torch.matmul(q, keys[..., :L]).float().mul_(scale)  # (B, kv, group * T, L)
            probs = scores.masked_fill_(hidden, float("-inf")).softmax(-1).to(values.dtype)
            attn = torch.matmul(probs, values[:, :, :L]).view(B, w.kv_heads, group, T, w.head_dim)
            x = x + F.linear(attn.permute(0, 3, 1, 2, 4).reshape(B, T, q_dim), lw.o)
            h = _rms_norm(x, lw.post_norm, w.eps)
            gate, up = F.linear(h, lw.gate_up).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, lw.down)
        cache.lengths_B = starts_B + counts_B
        last_B_H = x[torch.arange(B), counts_B - 1]
        return F.linear(_rms_norm(last_B_H, w.norm, w.eps), w.lm_head).float()
