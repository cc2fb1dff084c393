"""A fused forward with a KV cache, for sampling, over the decoder families of `posttrain.rollout.families`: Llama,
Qwen2, Qwen3, Mistral, Phi-3, Gemma 2 and Gemma 3.

Why: on a CPU, one decode step of a 135M model in transformers spends about as much time in Python, mask
building and a general-purpose attention kernel as in the matrix products that have to happen. This forward keeps
little besides them: per layer, one fused QKV product (the RMSNorm weight and, without q/k norms, the attention
scale folded in), RoPE from the model's own rotary module (so every rope scaling transformers supports is computed
there), one indexed copy of the new keys and one of the new values into the cache, attention of the new queries
over the cache (a buffer that grows with the tokens; grouped-query attention as a batched product with the causal
mask added in the same call, no expanded K/V), the output projection, one fused gate/up product and the down
projection. The products' weights are pre-packed for oneDNN (`Linear`).

What sets a family apart is data, not a branch per model: a `Family` row names its norms (Gemma's 1-centred
weights, its norms on the attention and MLP outputs), q/k norms (Qwen3, Gemma 3), fused projections (Phi-3) and
per-layer-type RoPE (Gemma 3's local and global bases); the attention scale, activation, biases, embedding scale,
sliding windows (`posttrain.architectures.layer_windows`: each layer gets its own additive mask) and soft-caps are
read from the model and its config. Prompts (`prefill`) and single decode steps (`step`) go through the same
`forward`; tests check its logits against the HF model's for a tiny model of every family and for SmolLM2.

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

from posttrain.architectures import layer_windows
from posttrain.rollout.families import FAMILIES, Family, fused_decode_supported

PACKED_DTYPES = (torch.bfloat16, torch.float32)  # dtypes oneDNN's pre-packed linear takes


def _onednn_packing() -> bool:
    """Whether this torch build has oneDNN's pre-packed linear (the ops torch.compile's CPU freezing uses)."""
    try:
        return torch.backends.mkldnn.is_available() and callable(torch.ops.mkldnn._linear_pointwise)
    except (AttributeError, RuntimeError):
        return False


class Linear:
    """`x @ weight.T (+ bias)`. In bf16 and fp32, where oneDNN is available, the weight is reordered once into
    oneDNN's blocked layout for about `batch_hint` rows, which plain `F.linear` redoes on every call; at decode batch
    sizes that is a large part of a product's time. Results equal `F.linear`'s bit for bit in bf16 (fp32 sums in
    another order). Other dtypes (float64 in tests) take `F.linear`."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, batch_hint: int = 0):
        self.bias = bias
        self.packed = bool(batch_hint) and weight.dtype in PACKED_DTYPES and _onednn_packing()
        self.weight = torch.ops.mkldnn._reorder_linear_weight(weight, batch_hint) if self.packed else weight

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed:
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


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

    qkv: Linear  # (q + k + v out features, hidden); input norm folded in; q rows scaled (without q/k norms)
    o: Linear
    gate_up: Linear  # (2 * intermediate, hidden); the MLP's input norm folded in
    down: Linear
    qk_norm: torch.Tensor | None  # (heads + kv_heads, head_dim): q/k norm weights, the q rows times the scale
    output_norms: tuple[torch.Tensor, torch.Tensor] | None  # (hidden,) weights of the attention and MLP output norms
    window: int | None  # sliding window (None: full attention)
    rope: str | None  # which rotary embedding the layer takes (its layer type where they differ)


@dataclass
class DecodeWeights:
    """Everything the fused step reads."""

    embed: torch.Tensor  # the embedding scale (Gemma) folded in
    layers: list[LayerWeights]
    lm_head: Linear  # final norm weight folded in
    eps: float
    heads: int
    kv_heads: int
    head_dim: int
    activation: torch.nn.Module  # the MLP's, taken from the model
    attention_softcap: float | None
    final_softcap: float | None


def weights_from(model: PreTrainedModel, dtype: torch.dtype = torch.bfloat16, batch_hint: int = 0) -> DecodeWeights:
    """Effective weights of `model` (LoRA merged), fused and converted to `dtype`; with `batch_hint`, the matrices
    are pre-packed for products of about that many rows (see `Linear`)."""
    reason = fused_decode_supported(_base(model))
    if reason:
        raise NotImplementedError(f"fused decode does not support this model: {reason}")
    causal = _base(model)
    config, inner = causal.config, causal.model
    family = FAMILIES[config.model_type]
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    q_dim = config.num_attention_heads * head_dim
    fold = torch.promote_types(dtype, torch.float32)  # the dtype weights are combined in
    windows, types = layer_windows(config), getattr(config, "layer_types", None)

    def linear(weight: torch.Tensor, bias: torch.Tensor | None = None) -> Linear:
        bias = None if bias is None else bias.to(dtype, copy=True)
        return Linear(weight.to(dtype, copy=True).contiguous(), bias, batch_hint)

    def norm(module: torch.nn.Module) -> torch.Tensor:  # what an RMSNorm scales by: (offset + weight), fold dtype
        return family.norm_offset + module.weight.detach().to(fold)

    with torch.no_grad():
        layers = []
        for i, layer in enumerate(inner.layers):
            attn, mlp = layer.self_attn, layer.mlp
            (qkv_weight, qkv_bias), (gate_up_weight, gate_up_bias) = _projections(attn, mlp, family)
            scale = torch.ones(qkv_weight.shape[0], dtype=fold)
            qk_norm = None
            if family.qk_norm:  # the scale goes on the q norm's weight (RoPE is linear), applied after the product
                qk_norm = torch.cat(
                    [
                        norm(attn.q_norm).expand(config.num_attention_heads, head_dim) * attn.scaling,
                        norm(attn.k_norm).expand(config.num_key_value_heads, head_dim),
                    ]
                ).to(dtype)
            else:  # the attention scale scales the q rows (RoPE is linear)
                scale[:q_dim] = attn.scaling
            # Norm weights scale the next product's input columns. Folded in fp32 (float64 for a float64 decode),
            # rounded once to the decode dtype.
            qkv_weight = qkv_weight.to(fold) * scale[:, None] * norm(layer.input_layernorm)[None, :]
            qkv_bias = None if qkv_bias is None else qkv_bias.to(fold) * scale
            out_norms = None
            if family.output_norms is not None:
                out_norms = tuple(norm(getattr(layer, n)).to(dtype) for n in family.output_norms)
            o_weight, o_bias = effective_weight(attn.o_proj)
            down_weight, down_bias = effective_weight(mlp.down_proj)
            layers.append(LayerWeights(
                qkv=linear(qkv_weight, qkv_bias), o=linear(o_weight, o_bias),
                gate_up=linear(gate_up_weight.to(fold) * norm(getattr(layer, family.mlp_norm))[None, :], gate_up_bias),
                down=linear(down_weight, down_bias), qk_norm=qk_norm, output_norms=out_norms, window=windows[i],
                rope=types[i] if family.rope_per_layer_type else None,
            ))  # fmt: skip
        embed_scale = getattr(inner.embed_tokens, "embed_scale", None)
        embed = inner.embed_tokens.weight.detach().to(fold)
        return DecodeWeights(
            embed=(embed if embed_scale is None else embed * embed_scale.to(fold)).to(dtype), layers=layers,
            lm_head=linear(effective_weight(causal.lm_head)[0].to(fold) * norm(inner.norm)[None, :]),
            eps=float(config.rms_norm_eps), heads=config.num_attention_heads, kv_heads=config.num_key_value_heads,
            head_dim=head_dim, activation=getattr(inner.layers[0].mlp, family.activation),
            attention_softcap=getattr(config, "attn_logit_softcapping", None) if family.attention_softcap else None,
            final_softcap=getattr(config, "final_logit_softcapping", None),
        )  # fmt: skip


def _projections(attn: torch.nn.Module, mlp: torch.nn.Module, family: Family):
    """((qkv weight, bias), (gate/up weight, bias)) of a layer, LoRA merged, whether the model fuses them or not."""
    if family.fused_projections:
        return effective_weight(attn.qkv_proj), effective_weight(mlp.gate_up_proj)
    return _stacked([attn.q_proj, attn.k_proj, attn.v_proj]), _stacked([mlp.gate_proj, mlp.up_proj])


def _stacked(linears: list[torch.nn.Module]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The linears' effective weights stacked by rows, and their biases (zeros for those without; None if none)."""
    parts = [effective_weight(m) for m in linears]
    if all(b is None for _, b in parts):
        return torch.cat([w for w, _ in parts]), None
    biases = [b if b is not None else w.new_zeros(w.shape[0]) for w, b in parts]
    return torch.cat([w for w, _ in parts]), torch.cat(biases)


def _rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm without its weight (folded into the next product), one op in x's dtype (the kernel accumulates in
    fp32). transformers' LlamaRMSNorm rounds to the dtype and then scales by the weight."""
    return F.rms_norm(x, (x.shape[-1],), None, eps)


def _rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """RoPE as transformers' apply_rotary_pos_emb: x cos + rotate_half(x) sin, where rotate_half(x) = (-x2, x1) is
    written as roll(x) = (x2, x1) times the sine with its first half negated."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, -1), signed_sin)


class KVCache:
    """Per-layer keys, (B, kv_heads, head_dim, capacity) (stored transposed, so that q @ K^T reads them in place),
    and values, (B, kv_heads, capacity, head_dim); rows left-aligned.

    The capacity grows in steps of `GROW` slots as tokens come, and attention reads every slot of the buffer (the
    causal mask hides the unwritten ones): a tight, contiguous buffer costs a few masked slots, where slicing a
    buffer sized for the longest completion would copy keys and values in every layer at every step."""

    GROW = 16

    def __init__(self, layers: int, batch: int, kv_heads: int, capacity: int, head_dim: int, dtype: torch.dtype):
        capacity = self._rounded(capacity)
        self.keys = [torch.zeros((batch, kv_heads, head_dim, capacity), dtype=dtype) for _ in range(layers)]
        self.values = [torch.zeros((batch, kv_heads, capacity, head_dim), dtype=dtype) for _ in range(layers)]
        self.lengths_B = torch.zeros(batch, dtype=torch.long)
        self.capacity = capacity

    def reserve(self, slots: int) -> None:
        """Make room for `slots` slots per row."""
        if slots <= self.capacity:
            return
        extra = self._rounded(slots) - self.capacity
        self.keys = [F.pad(k, (0, extra)) for k in self.keys]
        self.values = [F.pad(v, (0, 0, 0, extra)) for v in self.values]
        self.capacity += extra

    def _rounded(self, slots: int) -> int:
        """`slots` rounded up to a multiple of GROW."""
        return -(-slots // self.GROW) * self.GROW

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep the rows listed, in that order (a row listed twice is copied)."""
        self.keys = [k.index_select(0, rows) for k in self.keys]
        self.values = [v.index_select(0, rows) for v in self.values]
        self.lengths_B = self.lengths_B.index_select(0, rows)

    def row(self, index: int, length: int) -> KVCache:
        """A one-row copy of row `index`, keeping its first `length` slots (a conversation parked between turns)."""
        out = KVCache.__new__(KVCache)
        out.keys = [k[index : index + 1, ..., :length].clone() for k in self.keys]
        out.values = [v[index : index + 1, :, :length].clone() for v in self.values]
        out.lengths_B, out.capacity = torch.tensor([length]), length
        out.reserve(length + 1)  # room for the next token, the capacity rounded up to a multiple of GROW
        return out

    @staticmethod
    def stack(rows: list[KVCache]) -> KVCache:
        """One cache holding the given one-row caches as its rows, in order (capacities padded to the largest)."""
        capacity = max(r.capacity for r in rows)
        for r in rows:
            r.reserve(capacity)
        out = KVCache.__new__(KVCache)
        out.keys = [torch.cat(layer) for layer in zip(*(r.keys for r in rows), strict=True)]
        out.values = [torch.cat(layer) for layer in zip(*(r.values for r in rows), strict=True)]
        out.lengths_B, out.capacity = torch.cat([r.lengths_B for r in rows]), capacity
        return out


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
    def prefill(self, prompts: list[list[int]]) -> tuple[KVCache, torch.Tensor]:
        """A cache holding each prompt in its own row (it grows as tokens come), and the logits (fp32) after each
        prompt's last token."""
        width = max(map(len, prompts))
        cache = self.new_cache(len(prompts), width)
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

        Query t of row b sits at slot `lengths_B[b] + t` and sees every slot up to its own (causal; in a sliding
        window layer, only the last `window` of them); slots past a row's real tokens hold padding, which no real
        query can see and the next write overwrites.
        """
        w = self.w
        B, T = tokens_B_T.shape
        kv, D, group = w.kv_heads, w.head_dim, w.heads // w.kv_heads
        starts_B = cache.lengths_B
        slots_B_T = starts_B[:, None] + torch.arange(T)
        cache.reserve(int(slots_B_T.max()) + 1)
        L = cache.capacity  # attention reads the whole buffer
        x = w.embed[tokens_B_T]  # (B, T, hidden)
        masks = {window: self._mask(slots_B_T, L, window, x.dtype) for window in {lw.window for lw in w.layers}}
        # Flat cache positions written by this call: values as (B * kv * capacity) rows of D, keys as single
        # elements of (B, kv, D, capacity); each in the order the new values come in.
        value_rows = ((torch.arange(B)[:, None, None] * kv + torch.arange(kv)[:, None]) * cache.capacity
                      + slots_B_T[:, None]).reshape(-1)  # (B * kv * T,), (row, head, t) order  # fmt: skip
        key_elements = (torch.arange(B * kv * D).view(B, kv, D, 1) * cache.capacity + slots_B_T[:, None, None]).view(-1)
        q_dim, kv_dim = w.heads * D, kv * D
        ropes = {key: self._rope(x, slots_B_T, key) for key in {lw.rope for lw in w.layers}}
        for i, lw in enumerate(w.layers):
            qkv = lw.qkv(_rms_norm(x, w.eps))  # (B, T, q + 2 kv)
            qk = qkv[..., : q_dim + kv_dim].view(B, T, w.heads + kv, D)
            if lw.qk_norm is not None:
                qk = _rms_norm(qk, w.eps) * lw.qk_norm
            qk = _rotate(qk, *ropes[lw.rope])
            keys, values = cache.keys[i], cache.values[i]
            keys.view(-1).index_copy_(0, key_elements, qk[:, :, w.heads :].permute(0, 2, 3, 1).reshape(-1))
            v = qkv[..., q_dim + kv_dim :].view(B, T, kv, D).transpose(1, 2)  # (B, kv, T, D)
            values.view(-1, D).index_copy_(0, value_rows, v.reshape(-1, D))
            # Query heads grouped under their K/V head, (B * kv, group * T, D): one product per K/V head, K/V unexpanded.
            q = qk[:, :, : w.heads].transpose(1, 2).reshape(B * kv, group * T, D)
            if w.attention_softcap is None:
                scores = torch.baddbmm(masks[lw.window], q, keys.view(B * kv, D, L))  # (B * kv, group * T, L)
            else:
                cap = w.attention_softcap
                scores = torch.bmm(q, keys.view(B * kv, D, L)).div_(cap).tanh_().mul_(cap) + masks[lw.window]
            probs = scores.softmax(-1)  # in bf16, computed in fp32 inside and rounded once
            attn = torch.bmm(probs, values.view(B * kv, L, D)).view(B, kv, group, T, D)
            out = lw.o(attn.permute(0, 3, 1, 2, 4).reshape(B, T, q_dim))
            x = x + (out if lw.output_norms is None else _rms_norm(out, w.eps) * lw.output_norms[0])
            gate, up = lw.gate_up(_rms_norm(x, w.eps)).chunk(2, dim=-1)
            out = lw.down(w.activation(gate) * up)
            x = x + (out if lw.output_norms is None else _rms_norm(out, w.eps) * lw.output_norms[1])
        cache.lengths_B = starts_B + counts_B
        last_B_H = x[torch.arange(B), counts_B - 1]
        logits = w.lm_head(_rms_norm(last_B_H, w.eps)).float()
        return logits if w.final_softcap is None else logits.div_(w.final_softcap).tanh_().mul_(w.final_softcap)

    def _mask(self, slots_B_T: torch.Tensor, capacity: int, window: int | None, dtype: torch.dtype) -> torch.Tensor:
        """(B * kv, group * T, L) additive mask, laid out as the grouped query products read it: 0 where query t may
        see slot l (up to its own slot, and within the last `window` slots in a sliding-window layer), -inf
        elsewhere."""
        (B, T), w = slots_B_T.shape, self.w
        group = w.heads // w.kv_heads
        slot_L = torch.arange(capacity)
        visible = slot_L <= slots_B_T[..., None]  # (B, T, L)
        if window is not None:
            visible &= slot_L > slots_B_T[..., None] - window
        mask = torch.full(visible.shape, float("-inf"), dtype=dtype).masked_fill_(visible, 0.0)
        return (
            mask[:, None, None].expand(B, w.kv_heads, group, T, capacity).reshape(B * w.kv_heads, group * T, capacity)
        )

    def _rope(self, x: torch.Tensor, slots_B_T: torch.Tensor, layer_type: str | None):
        """(cos, signed sin) over the heads, for `_rotate`, from the model's rotary module (of one layer type)."""
        cos, sin = self.rotary(x, slots_B_T) if layer_type is None else self.rotary(x, slots_B_T, layer_type)
        half = self.w.head_dim // 2
        return cos[:, :, None], torch.cat((-sin[..., :half], sin[..., half:]), -1)[:, :, None]
