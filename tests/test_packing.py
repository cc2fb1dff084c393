"""Packing: best-fit decreasing, and packed log-probs equal to unpacked ones for every supported attention."""

from __future__ import annotations

import random

import pytest
import torch

from posttrain.logprobs import (
    forward_logits,
    gather_logprobs,
    per_sequence_count,
    per_sequence_sum,
    target_mask,
    token_logprobs,
)
from posttrain.models import load_policy
from posttrain.packing import best_fit_decreasing, block_causal_mask, pack
from posttrain.render import render_messages


def _conversations(tokenizer, n: int, seed: int = 0):
    rng = random.Random(seed)
    words = "the cat sat on a mat what is two plus three answer five".split()
    return [
        render_messages(
            tokenizer,
            [
                {"role": "user", "content": " ".join(rng.choice(words) for _ in range(rng.randint(1, 25)))},
                {"role": "assistant", "content": " ".join(rng.choice(words) for _ in range(rng.randint(1, 25)))},
            ],
        )
        for _ in range(n)
    ]


def _naive_logprobs(model, sequence) -> torch.Tensor:
    """Per-token log-probs of one sequence run alone, with the plain causal mask; 0 where not a target."""
    ids = torch.tensor([sequence.token_ids])
    with torch.no_grad():
        logprobs = gather_logprobs(model(input_ids=ids).logits, ids)[0]
    mask = torch.tensor(sequence.loss_mask)
    mask[0] = False
    return logprobs * mask


def test_best_fit_decreasing_fills_tightest_bin():
    """Lengths 6,5,4,3,2 into capacity 10: 6 opens A; 5 opens B; 4 fits A (free 0); 3 fits B (free 2); 2 fills B."""
    assert best_fit_decreasing([3, 6, 2, 5, 4], 10) == [[1, 4], [3, 0, 2]]


def test_best_fit_decreasing_respects_capacity_and_keeps_everything():
    rng = random.Random(1)
    lengths = [rng.randint(1, 50) for _ in range(200)]
    bins = best_fit_decreasing(lengths, 64)
    assert sorted(i for b in bins for i in b) == list(range(200))
    assert all(sum(lengths[i] for i in b) <= 64 for b in bins)
    assert sum(lengths) / (64 * len(bins)) > 0.9


def test_too_long_sequence_is_an_error():
    with pytest.raises(ValueError, match="sequence 1 has 70 tokens"):
        best_fit_decreasing([3, 70], 64)


def test_block_causal_mask_isolates_sequences():
    mask = block_causal_mask(torch.tensor([[0, 0, 1, 1, -1]]))[0, 0]
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [0, 0, 1, 0, 0],
            [0, 0, 1, 1, 0],
            [0, 0, 0, 0, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)


@pytest.mark.parametrize("preset", ["tiny-random-llama", "tiny-random-qwen2"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_loss_equals_sum_of_unpacked_losses(preset, attn):
    model, tokenizer = load_policy(preset, dtype=torch.float64, attn_implementation=attn)
    sequences = _conversations(tokenizer, 12)
    batches = pack(sequences, row_tokens=128, rows_per_batch=2, pad_id=tokenizer.pad_token_id)
    assert sorted(i for b in batches for i in b.sequence_indices) == list(range(12))
    assert len(batches) < 12 and all(0 < b.efficiency <= 1 for b in batches)

    with torch.no_grad():
        packed_nll = -sum(float(token_logprobs(model, b).sum()) for b in batches)
        unpacked_nll = -sum(float(_naive_logprobs(model, s).sum()) for s in sequences)
    assert packed_nll == pytest.approx(unpacked_nll, abs=1e-5)


def test_logprobs_bridge_matches_naive_per_token_and_per_sequence(tiny):
    model, tokenizer = tiny
    sequences = _conversations(tokenizer, 6, seed=3)
    (batch,) = pack(sequences, row_tokens=512, rows_per_batch=1, pad_id=tokenizer.pad_token_id)
    with torch.no_grad():
        packed = token_logprobs(model, batch)
    sums = per_sequence_sum(packed, batch)
    counts = per_sequence_count(batch)
    for n, i in enumerate(batch.sequence_indices):
        naive = _naive_logprobs(model, sequences[i])
        slots = batch.seq_ids[0] == i
        torch.testing.assert_close(packed[0, slots], naive, atol=1e-5, rtol=1e-5)
        assert float(sums[n]) == pytest.approx(float(naive.sum()), abs=1e-4)
        assert int(counts[n]) == sum(sequences[i].loss_mask)


@pytest.mark.smollm2
def test_position_ids_alone_leak_across_sequences_when_a_cache_is_in_play(smollm2):
    """The trap in DESIGN.md, refined: transformers 5.24 infers packing from position_ids only when no cache is
    passed (use_cache=False); with the default use_cache=True the second sequence attends to the first. The
    explicit block mask isolates sequences either way."""
    model, tokenizer = smollm2
    sequences = _conversations(tokenizer, 2, seed=5)
    (batch,) = pack(sequences, row_tokens=256, pad_id=tokenizer.pad_token_id)
    targets = batch.loss_mask & (batch.position_ids > 0)
    with torch.no_grad():
        isolated = token_logprobs(model, batch)
        for use_cache, leaks in ((True, True), (False, False)):
            logits = model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=use_cache).logits
            gap = (gather_logprobs(logits, batch.input_ids) - isolated)[targets].abs().max()
            assert bool(gap > 1e-2) is leaks, (use_cache, float(gap))


@pytest.mark.parametrize("preset", ["tiny-random-llama", "tiny-random-qwen2"])
def test_target_only_head_equals_the_full_forward(preset):
    """The fast path (projection on target positions only) must give the full forward's numbers and gradients."""
    model, tokenizer = load_policy(preset, dtype=torch.float64)
    (batch,) = pack(_conversations(tokenizer, 5, seed=7), row_tokens=512, pad_id=tokenizer.pad_token_id)
    fast = token_logprobs(model, batch)
    fast.sum().backward()
    fast_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    full = gather_logprobs(forward_logits(model, batch), batch.input_ids) * target_mask(batch)
    full.sum().backward()
    torch.testing.assert_close(fast, full)
    for a, p in zip(fast_grads, model.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad)
