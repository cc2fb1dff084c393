"""The rollout engine: its fused forward against the HF model, its samples against plain generate, its sampler."""

from __future__ import annotations

import pytest
import torch

from posttrain.models import LoraSpec, apply_lora, load_policy
from posttrain.rollout import SamplingParams
from posttrain.rollout.engine import RolloutEngine, draw, make_sampler, sample_tokens
from posttrain.rollout.fused import FusedDecoder, weights_from
from posttrain.rollout.hf import HFSampler

PROMPTS = [[{"role": "user", "content": c}] for c in ("hello there", "what is 2+2?", "a longer prompt about things")]


def _fused_vs_hf(model, new_tokens: int = 3) -> float:
    """Max |logit difference| between the fused prefill + decode steps and the HF forward on whole sequences."""
    decoder = FusedDecoder(model, weights_from(model, model.dtype))
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [20, 21, 22, 23, 24, 25, 26, 27]]
    continuations = [[30 + 3 * t + i for t in range(new_tokens)] for i in range(3)]
    cache, prefill_logits = decoder.prefill(prompts)
    steps = [decoder.step(torch.tensor([c[t] for c in continuations]), cache) for t in range(new_tokens)]
    worst = 0.0
    for i, prompt in enumerate(prompts):
        with torch.no_grad():
            reference = model(torch.tensor([prompt + continuations[i]])).logits[0].float()
        worst = max(worst, float((reference[len(prompt) - 1] - prefill_logits[i]).abs().max()))
        for t in range(new_tokens):
            worst = max(worst, float((reference[len(prompt) + t] - steps[t][i]).abs().max()))
    return worst


@pytest.mark.parametrize("preset", ["tiny-random-llama", "tiny-random-qwen2"])
def test_fused_forward_matches_hf_forward(preset):
    model, _ = load_policy(preset, dtype=torch.float64)
    assert _fused_vs_hf(model.eval()) < 1e-6


def test_fused_forward_stays_exact_as_the_cache_grows():
    model, _ = load_policy("tiny-random-llama", dtype=torch.float64)
    # prompts of 3 to 8 tokens plus 27 new ones grow past 16 and 32 slots: the buffer is reallocated mid-decode
    assert _fused_vs_hf(model.eval(), new_tokens=27) < 1e-6


@pytest.mark.smollm2
def test_fused_forward_matches_hf_on_smollm2(smollm2):
    assert _fused_vs_hf(smollm2[0]) < 2e-3  # fp32 logits of magnitude ~20, summed in another order


def test_fused_weights_merge_lora():
    model, _ = load_policy("tiny-random-llama", dtype=torch.float64)
    model = apply_lora(model, LoraSpec(r=4, alpha=8))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)  # adapters start at zero: make them count
    assert _fused_vs_hf(model.eval()) < 1e-6


def test_prepacked_weights_give_the_same_logits_in_bf16():
    model, _ = load_policy("tiny-random-qwen2", dtype=torch.bfloat16)  # qwen2: q/k/v biases too
    plain = FusedDecoder(model, weights_from(model, torch.bfloat16))
    packed_weights = weights_from(model, torch.bfloat16, batch_hint=4)
    packed = FusedDecoder(model, packed_weights)
    assert packed_weights.layers[0].qkv.packed == torch.backends.mkldnn.is_available()
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]
    (cache_a, logits_a), (cache_b, logits_b) = plain.prefill(prompts), packed.prefill(prompts)
    assert torch.equal(logits_a, logits_b)
    for token in (30, 31, 32):
        step = torch.tensor([token, token + 10])
        assert torch.equal(plain.step(step, cache_a), packed.step(step, cache_b))


def test_greedy_rollouts_equal_plain_generate(tiny):
    model, tokenizer = tiny
    params = SamplingParams(max_new_tokens=12, temperature=0)
    engine = RolloutEngine(model.eval(), tokenizer, batch_size=4, dtype=torch.float32)
    for stop in ((), ("e",)):  # a common stop string: rows stop at different steps and the cache is compacted
        ours = engine.sample(PROMPTS, 2, SamplingParams(max_new_tokens=12, temperature=0, stop=stop))
        plain = HFSampler(model, tokenizer).sample(PROMPTS, 2, SamplingParams(max_new_tokens=12, temperature=0,
                                                                                stop=stop))  # fmt: skip
        for group_a, group_b in zip(ours, plain, strict=True):
            for a, b in zip(group_a, group_b, strict=True):
                assert (a.token_ids, a.text, a.finish_reason) == (b.token_ids, b.text, b.finish_reason)
                assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-4
    assert any(r.finish_reason == "stop" for g in ours for r in g)
    assert params.max_new_tokens == 12


def test_rollout_logprobs_are_those_the_trainer_computes(tiny):
    model, tokenizer = tiny
    engine = RolloutEngine(model.eval(), tokenizer, batch_size=8, dtype=torch.float32)
    groups = engine.sample(PROMPTS, 3, SamplingParams(max_new_tokens=10, temperature=0.7, seed=3))
    for rollout in (r for g in groups for r in g):
        ids = torch.tensor([rollout.prompt_ids + rollout.token_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(rollout.prompt_ids) - 1 : -1].float() / 0.7
        expected = logits.log_softmax(-1).gather(-1, torch.tensor(rollout.token_ids)[:, None]).squeeze(1)
        assert torch.allclose(torch.tensor(rollout.logprobs), expected, atol=1e-4)


def test_sampling_is_seeded_and_groups_share_a_prefill(tiny):
    model, tokenizer = tiny
    engine = RolloutEngine(model.eval(), tokenizer, batch_size=6)
    params = SamplingParams(max_new_tokens=8, temperature=1.0, seed=11)
    first, again = engine.sample(PROMPTS, 4, params), engine.sample(PROMPTS, 4, params)
    assert [[r.token_ids for r in g] for g in first] == [[r.token_ids for r in g] for g in again]
    other = engine.sample(PROMPTS, 4, SamplingParams(max_new_tokens=8, temperature=1.0, seed=12))
    assert [[r.token_ids for r in g] for g in first] != [[r.token_ids for r in g] for g in other]
    assert all(len(set(r.token_ids for r in g)) > 1 for g in first)  # samples of one prompt differ
    assert engine.timings["prefill_s"] > 0 and engine.timings["decode_s"] > 0  # of the last call


def test_sample_tokens_distribution_top_k_and_top_p():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(20000, 1)
    generator = torch.Generator().manual_seed(0)
    tokens, logprobs = sample_tokens(logits, SamplingParams(temperature=1.0), generator)
    frequencies = torch.bincount(tokens, minlength=4).float() / len(tokens)
    assert torch.allclose(frequencies, logits[0].softmax(-1), atol=0.01)
    assert torch.allclose(logprobs, logits[0].log_softmax(-1)[tokens])
    top2, _ = sample_tokens(logits, SamplingParams(temperature=1.0, top_k=2), generator)
    assert set(top2.tolist()) == {0, 1}
    # softmax = [.644, .237, .087, .032]: top_p 0.85 keeps the two tokens reaching it, 0.5 only the first
    assert set(sample_tokens(logits, SamplingParams(temperature=1.0, top_p=0.85), generator)[0].tolist()) == {0, 1}
    assert set(sample_tokens(logits, SamplingParams(temperature=1.0, top_p=0.5), generator)[0].tolist()) == {0}
    # top-k first, then the nucleus of the renormalised rest: [.731, .269] after top-2, so top_p 0.7 keeps one
    both = sample_tokens(logits, SamplingParams(temperature=1.0, top_k=2, top_p=0.7), generator)
    assert set(both[0].tolist()) == {0} and torch.allclose(both[1], logits[0].log_softmax(-1)[0].expand(len(both[1])))
    greedy, greedy_logprobs = sample_tokens(logits[:2], SamplingParams(temperature=0))
    assert greedy.tolist() == [0, 0] and torch.allclose(greedy_logprobs, logits[0].log_softmax(-1)[0].expand(2))


def test_draw_follows_the_weights_across_blocks_and_never_draws_zero_weight():
    # 10 tokens in blocks of 4 (the last block padded); zero weights at block edges and a whole zero block
    weights = torch.tensor([[0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.5]]).repeat(40000, 1)
    tokens = draw(weights, torch.Generator().manual_seed(1), block=4)
    frequencies = torch.bincount(tokens, minlength=10).float() / len(tokens)
    assert torch.allclose(frequencies, weights[0] / weights[0].sum(), atol=0.01)
    assert set(tokens.tolist()) == {1, 2, 8, 9}
    one_hot = torch.zeros(3, 1000)
    one_hot[torch.arange(3), torch.tensor([0, 255, 999])] = 1e-30  # a single, tiny weight per row
    assert draw(one_hot, torch.Generator().manual_seed(0)).tolist() == [0, 255, 999]


def test_sync_takes_up_new_weights():
    model, tokenizer = load_policy("tiny-random-llama")
    engine = RolloutEngine(model.eval(), tokenizer, batch_size=4, dtype=torch.float32)
    params = SamplingParams(max_new_tokens=6, temperature=0)
    before = engine.sample(PROMPTS[:1], 1, params)[0][0]
    with torch.no_grad():
        model.model.norm.weight.neg_()  # every logit changes sign: the greedy token becomes the least likely
    assert engine.sample(PROMPTS[:1], 1, params)[0][0].token_ids == before.token_ids  # not synced yet
    engine.sync()
    assert engine.sample(PROMPTS[:1], 1, params)[0][0].token_ids[0] != before.token_ids[0]


def test_make_sampler_falls_back_for_other_architectures(tiny):
    model, tokenizer = tiny
    assert isinstance(make_sampler(model, tokenizer), RolloutEngine)
    model.config.model_type = "gpt2-like"
    try:
        assert isinstance(make_sampler(model, tokenizer), HFSampler)
    finally:
        model.config.model_type = "llama"


def test_vllm_row_seeds_stay_below_int64_for_any_run_seed():
    """vLLM takes int64 seeds (its server validates them; its torch generators overflow above): RLVR's step seeds
    (seed * 1_000_003 + step * 17) reach 1e17 for a run seed of 1e11, and rows of one call must still differ."""
    from posttrain.rollout.vllm import row_seed

    for run_seed in (0, 93, 185, 10**11):
        step_seed = run_seed * 1_000_003 + 50 * 17
        seeds = {row_seed(step_seed, turn) + row for turn in range(3) for row in range(64)}
        assert len(seeds) == 3 * 64 and max(seeds) < 2**63 - 2**20
        torch.Generator().manual_seed(max(seeds))
