"""The one bridge from a model and a packed batch to per-token log-probs; every loss starts from here.

Convention: `logprobs_B_T[b, t]` is log p(input_ids[b, t] | the tokens before it in the same sequence), read from
the logits at the slot `batch.prev_slot[b, t]` holds. In an ordinary packed row that is t - 1; for the first token
after a shared prefix (`posttrain.packing.pack_shared_prefix`) it is the prefix's last slot, further left in the
row. Slots with no predecessor in their sequence (its first token, padding) hold 0 and are never targets:
`target_mask` is the loss mask restricted to slots that have one. Shared prefix slots are never targets either, so
every target belongs to exactly one sequence and `per_sequence_sum`/`per_sequence_tokens` work on either layout.

Speed: for architectures whose logits are the output projection of the last hidden state (soft-capped, for Gemma),
the projection and the softmax run on the target positions only. Prompts and padding then cost no vocabulary-sized
work, which on SmolLM2 (49k vocabulary) cut an SFT step's forward and backward by about 30%, and matters more with
Gemma's 262k. Other architectures take the full forward and pick the predecessor slots' logits from it. A model
trained on several ranks (`posttrain.distributed`) goes through its engine's forward (DDP's wrapper, FSDP2's hooks)
with `logits_to_keep` set to the predecessor slots, so the head still runs on those alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from posttrain.architectures import mask_layout
from posttrain.distributed import forward_module
from posttrain.packing import PackedBatch, attention_mask_4d


def packed_attention_mask(model: torch.nn.Module, batch: PackedBatch) -> torch.Tensor | dict[str, torch.Tensor]:
    """The block-causal mask of a packed batch as `model` takes it, each layer's sliding window applied: one tensor,
    or one per layer type (`posttrain.architectures.mask_layout`)."""
    config = model.config
    layout = mask_layout(config)
    if isinstance(layout, dict):
        return {
            kind: attention_mask_4d(batch, config._attn_implementation, model.dtype, w) for kind, w in layout.items()
        }
    return attention_mask_4d(batch, config._attn_implementation, model.dtype, layout)


def forward_logits(model: torch.nn.Module, batch: PackedBatch) -> torch.Tensor:
    """(B, T, V) logits for a packed batch, with per-sequence positions and a block-causal mask."""
    mask = packed_attention_mask(model, batch)
    out = model(input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=mask, use_cache=False)
    return out.logits


def gather_logprobs(logits_B_T_V: torch.Tensor, input_ids_B_T: torch.Tensor) -> torch.Tensor:
    """(B, T): log-prob of each token from the previous slot's logits; slot 0 gets 0. The plain rule of one sequence
    per row or an ordinary packing; a shared prefix layout needs `token_logprobs`, which follows `prev_slot`."""
    logits = logits_B_T_V[:, :-1]
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 logits lose too much in softmax
    targets = input_ids_B_T[:, 1:]
    picked = logits.gather(-1, targets[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return torch.nn.functional.pad(picked, (1, 0))


def target_mask(batch: PackedBatch) -> torch.Tensor:
    """(B, T) bool: trained tokens that have a predecessor in their own sequence."""
    return batch.loss_mask & (batch.prev_slot >= 0) & (batch.seq_ids >= 0)


# Model types whose logits are `lm_head(last_hidden_state)`, soft-capped by `config.final_logit_softcapping` where
# the config sets one (Gemma 2 and 3), with no other scaling afterwards.
PLAIN_HEAD_MODEL_TYPES = frozenset(
    {"llama", "mistral", "qwen2", "qwen3", "smollm3", "olmo2", "phi3", "gemma2", "gemma3_text"}
)


def token_logprobs(model: torch.nn.Module, batch: PackedBatch, temperature: float = 1.0) -> torch.Tensor:
    """(B, T) per-token log-probs of a packed batch, zero outside `target_mask`, from logits / `temperature`."""
    return token_logprobs_and_entropy(model, batch, temperature, entropy=False)[0]


def token_logprobs_and_entropy(
    model: torch.nn.Module, batch: PackedBatch, temperature: float = 1.0, entropy: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`token_logprobs`, and (B, T) the entropy of each target's predicted distribution (detached; None if not asked)."""
    rows, cols, logits_N_V = target_logits(model, batch)
    logits_N_V = logits_N_V.to(torch.promote_types(logits_N_V.dtype, torch.float32)) / temperature
    log_z_N = torch.logsumexp(logits_N_V, dim=-1)
    picked_N = logits_N_V.gather(-1, batch.input_ids[rows, cols][:, None]).squeeze(-1)
    out = torch.zeros(batch.input_ids.shape, dtype=picked_N.dtype, device=picked_N.device)
    logprobs_B_T = out.index_put((rows, cols), picked_N - log_z_N)
    if not entropy:
        return logprobs_B_T, None
    with torch.no_grad():
        logp_N_V = logits_N_V.detach() - log_z_N.detach()[:, None]
        entropy_N = -(logp_N_V.exp() * logp_N_V).sum(-1)
    return logprobs_B_T, torch.zeros_like(out, requires_grad=False).index_put((rows, cols), entropy_N)


def target_logits(model: torch.nn.Module, batch: PackedBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, cols, logits) of every target slot: the (N, V) logits predicting it, from its predecessor's slot (what
    distillation compares between a student and a teacher)."""
    rows, cols = target_mask(batch).nonzero(as_tuple=True)  # (N,) each
    prev = batch.prev_slot[rows, cols]  # (N,)
    engine = forward_module(model)
    if engine is not None:  # trained on several ranks: the engine's own forward, the head on predecessor slots only
        keep = torch.unique(prev)  # sorted
        out = engine(
            input_ids=batch.input_ids,
            position_ids=batch.position_ids,
            attention_mask=packed_attention_mask(model, batch),
            use_cache=False,
            logits_to_keep=keep,
        )
        return rows, cols, out.logits[rows, torch.searchsorted(keep, prev)]
    if model.config.model_type not in PLAIN_HEAD_MODEL_TYPES:
        return rows, cols, forward_logits(model, batch)[rows, prev]
    mask = packed_attention_mask(model, batch)
    hidden_B_T_H = model.get_decoder()(
        input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=mask, use_cache=False
    ).last_hidden_state
    logits_N_V = model.get_output_embeddings()(hidden_B_T_H[rows, prev])
    cap = getattr(model.config, "final_logit_softcapping", None)
    return rows, cols, logits_N_V if cap is None else torch.tanh(logits_N_V / cap) * cap


def per_sequence_sum(values_B_T: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
    """(N,) sums of a per-token quantity over each sequence's targets, in `batch.sequence_indices` order."""
    mask = target_mask(batch)
    order = torch.tensor(batch.sequence_indices, device=batch.seq_ids.device)  # sorted
    slot_to_seq = torch.searchsorted(order, batch.seq_ids.clamp(min=0))  # (B, T); padding, prefixes masked out below
    sums = torch.zeros(len(order), dtype=values_B_T.dtype, device=values_B_T.device)
    return sums.index_add(0, slot_to_seq[mask], values_B_T[mask])


def per_sequence_tokens(values_B_T: torch.Tensor, batch: PackedBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sequence's target values as a right-padded row: ((N, L) values, (N, L) bool mask), in
    `batch.sequence_indices` order, L the most targets of any sequence. Differentiable in `values_B_T`."""
    mask = target_mask(batch)
    order = torch.tensor(batch.sequence_indices, device=batch.seq_ids.device)
    seq_K = torch.searchsorted(order, batch.seq_ids[mask])  # row-major: a sequence's targets are in one row, in order
    seq_K, by_seq = seq_K.sort(stable=True)
    counts_N = torch.bincount(seq_K, minlength=len(order))
    offset_K = torch.arange(len(seq_K), device=seq_K.device) - (counts_N.cumsum(0) - counts_N)[seq_K]
    width = int(counts_N.max()) if len(seq_K) else 0
    values_N_L = values_B_T.new_zeros((len(order), width)).index_put((seq_K, offset_K), values_B_T[mask][by_seq])
    mask_N_L = torch.zeros((len(order), width), dtype=torch.bool, device=seq_K.device).index_put(
        (seq_K, offset_K), torch.ones_like(seq_K, dtype=torch.bool)
    )
    return values_N_L, mask_N_L


def per_sequence_count(batch: PackedBatch) -> torch.Tensor:
    """(N,) number of target tokens in each sequence, in `batch.sequence_indices` order."""
    return per_sequence_sum(torch.ones(batch.seq_ids.shape, device=batch.seq_ids.device), batch)


def padded_rows(rows: Sequence[Sequence[float]], mask_N_L: torch.Tensor) -> torch.Tensor:
    """(N, L) float32 tensor holding row i's values at its first len(row) positions, zeros after (the sampler's
    per-token log-probs laid out like `per_sequence_tokens`' output)."""
    out = torch.zeros(mask_N_L.shape, dtype=torch.float32, device=mask_N_L.device)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out
