"""Every supported family as a user brings it (a plain HF directory of a small random model): packed training
forward, LoRA targets, the fused rollout engine, end-of-turn ids, the attention implementation, and SFT, preference
and RLVR runs whose saved models plain transformers reloads."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, MistralForCausalLM, Phi3Config

from posttrain.logprobs import forward_logits, gather_logprobs, per_sequence_sum, target_mask, token_logprobs
from posttrain.models import LoraSpec, apply_lora, load_policy, save_model
from posttrain.packing import pack, pack_shared_prefix
from posttrain.rollout import SamplingParams
from posttrain.rollout.engine import RolloutEngine, make_sampler
from posttrain.rollout.hf import HFSampler
from posttrain.stages import preference, rlvr, sft
from posttrain.tasks.arithmetic import arithmetic_tasks
from posttrain.tasks.jsonl import write_tasks
from posttrain.tiny import PRESET_CONFIGS, WINDOW, build_tiny, build_tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from test_packing import _conversations
from test_preference_stage import _pairs_file
from test_rollout import PROMPTS, _fused_vs_hf
from test_sft_stage import _arithmetic_sft

PRESETS = list(PRESET_CONFIGS)


def _save_family(model, tokenizer, path: Path) -> Path:
    """Save `model` as a plain HF directory, its norm weights moved off their init (zeros for Gemma's 1-centred
    norms, ones for the others), so that a norm applied wrongly shows in the logits."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn(p.shape, generator=generator))
    return save_model(model, tokenizer, path)


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {preset: _save_family(*build_tiny(preset), root / preset) for preset in PRESETS}


def _check_packing(model, tokenizer) -> None:
    """Packed rows (plain and with a shared prefix) against HF's own forward of each sequence alone, in float64,
    sequences several times longer than the sliding window; and the fast path (the head on target slots only,
    soft-capped where the model caps) against the full forward."""
    sequences = _conversations(tokenizer, 8)
    assert max(map(len, sequences)) > 4 * WINDOW
    alone = []
    with torch.no_grad():
        for s in sequences:
            ids = torch.tensor([s.token_ids])
            logprobs = gather_logprobs(model(input_ids=ids).logits, ids)[0]
            alone.append(float(logprobs[1:][torch.tensor(s.loss_mask[1:])].sum()))
        plain = pack(sequences, row_tokens=256, rows_per_batch=2, pad_id=tokenizer.pad_token_id)
        groups = [[0, 1, 2, 3], [4, 5, 6, 7]]  # same-prefix groups only share their common untrained start
        shared = pack_shared_prefix(sequences, groups, row_tokens=256, pad_id=tokenizer.pad_token_id)
        for batches in (plain, shared):
            packed = {}
            for b in batches:
                sums = per_sequence_sum(token_logprobs(model, b), b)
                packed |= dict(zip(b.sequence_indices, sums.tolist(), strict=True))
            worst = max(abs(packed[i] - alone[i]) for i in range(len(sequences)))
            assert worst < 1e-5, (model.config.model_type, worst)
        full = gather_logprobs(forward_logits(model, plain[0]), plain[0].input_ids) * target_mask(plain[0])
        torch.testing.assert_close(token_logprobs(model, plain[0]), full)


@pytest.mark.parametrize("preset", PRESETS)
def test_packed_forward_equals_each_sequence_alone(preset, family_dirs):
    _check_packing(*load_policy(family_dirs[preset], dtype=torch.float64))


def test_layer_types_that_mistral_ignores_change_nothing(tmp_path):
    """Mistral keeps its one window on every layer whatever `layer_types` its config carries, and so do the packed
    mask and the engine (they once took it for a per-layer-type model); saved and reloaded, the same config becomes a
    Ministral model, which honours them."""
    tokenizer = build_tokenizer()
    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        sliding_window=WINDOW,
        layer_types=["full_attention", "sliding_attention"],
    )
    mistral = MistralForCausalLM(config).to(torch.float64).eval()
    path = save_model(mistral, tokenizer, tmp_path / "mistral")
    ministral, _ = load_policy(path, dtype=torch.float64)
    assert ministral.config.model_type == "ministral"
    for model in (mistral, ministral.eval()):
        _check_packing(model, tokenizer)
        assert _fused_vs_hf(model, new_tokens=2 * WINDOW) < 1e-6


@pytest.mark.parametrize("preset", PRESETS)
def test_lora_adapts_every_linear_layer_of_the_block_by_default(preset, family_dirs):
    model, _ = load_policy(family_dirs[preset])
    linears = {n for n, m in model.model.layers[0].named_modules() if isinstance(m, torch.nn.Linear)}
    wrapped = apply_lora(model, LoraSpec())
    block = wrapped.get_base_model().model.layers[0]
    adapted = {n for n, m in block.named_modules() if hasattr(m, "lora_A")}
    assert adapted == linears and len(linears) >= 4, (preset, sorted(linears - adapted))
    assert any("proj" in n and "mlp" in n for n in adapted) and any("self_attn" in n for n in adapted)
    assert not hasattr(wrapped.get_base_model().lm_head, "lora_A")


@pytest.mark.parametrize("preset", PRESETS)
def test_fused_engine_equals_hf_greedy_decoding_and_logprobs(preset, family_dirs):
    """The engine's logits against HF's in float64 past the sliding window, then its greedy rollouts and their
    log-probs against plain `generate`."""
    model, tokenizer = load_policy(family_dirs[preset], dtype=torch.float64)
    model.eval()
    assert _fused_vs_hf(model, new_tokens=3 * WINDOW) < 1e-6
    adapted = apply_lora(load_policy(family_dirs[preset], dtype=torch.float64)[0], LoraSpec(r=4, alpha=8))
    for name, p in adapted.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)  # adapters start at zero: make them count
    assert _fused_vs_hf(adapted.eval()) < 1e-6  # LoRA merged into every projection, fused ones included
    engine = make_sampler(model, tokenizer, batch_size=4)
    assert isinstance(engine, RolloutEngine)
    engine = RolloutEngine(model, tokenizer, batch_size=4, dtype=torch.float64)
    params = SamplingParams(max_new_tokens=2 * WINDOW, temperature=0)
    # HF one prompt at a time: left padding makes transformers' float64 eager attention (Gemma 2) give NaNs
    ours, plain = (
        engine.sample(PROMPTS, 1, params),
        HFSampler(model, tokenizer, batch_size=1).sample(PROMPTS, 1, params),
    )
    for (a,), (b,) in zip(ours, plain, strict=True):
        assert (a.token_ids, a.finish_reason) == (b.token_ids, b.finish_reason)
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-6


LONGROPE = {
    "rope_type": "longrope",
    "short_factor": [1.0] * 16,
    "long_factor": [4.0] * 16,
    "factor": 4.0,
    "original_max_position_embeddings": 16,
}


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"partial_rotary_factor": 0.5}, "partial rotary embeddings"),
        (
            {"rope_parameters": LONGROPE, "max_position_embeddings": 64},
            "rope_type 'longrope', whose frequencies depend on the sequence's length",
        ),
    ],
)
def test_a_model_the_engine_cannot_run_falls_back_with_one_log_line(settings, reason, caplog, tmp_path):
    tokenizer = build_tokenizer()
    config = Phi3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **settings,
    )
    model, _ = load_policy(save_model(AutoModelForCausalLM.from_config(config), tokenizer, tmp_path / "phi"))
    with caplog.at_level(logging.INFO, logger="posttrain.rollout.engine"):
        sampler = make_sampler(model, tokenizer)
    assert isinstance(sampler, HFSampler)
    assert [r.getMessage() for r in caplog.records if r.name == "posttrain.rollout.engine"] == [
        f"rollouts use plain generate: {reason}"
    ]
    (rollout,) = sampler.sample(PROMPTS[:1], 1, SamplingParams(max_new_tokens=4, temperature=0))[0]
    assert len(rollout.token_ids) == 4


def test_biases_on_every_projection_run_in_the_engine(tmp_path):
    """A Llama config with `attention_bias` and `mlp_bias` once passed the support check and then failed inside."""
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        attention_bias=True,
        mlp_bias=True,
    )
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(std=0.5)
    model, _ = load_policy(save_model(model, tokenizer, tmp_path / "biased"), dtype=torch.float64)
    assert isinstance(make_sampler(model, tokenizer), RolloutEngine)
    assert _fused_vs_hf(model.eval()) < 1e-6


@pytest.mark.parametrize("sampler_class", [RolloutEngine, HFSampler])
def test_generation_config_end_ids_end_a_turn(sampler_class, family_dirs):
    """An instruct model's end-of-turn id lives in its generation config, not always in the tokenizer."""
    model, tokenizer = load_policy(family_dirs["tiny-random-llama"])
    params = SamplingParams(max_new_tokens=6, temperature=0)
    (first,) = sampler_class(model, tokenizer).sample(PROMPTS[:1], 1, params)[0]
    assert first.finish_reason == "length" and len(first.token_ids) == 6
    k = next((i for i, t in enumerate(first.token_ids) if i and t not in first.token_ids[:i]), 0)  # its first time
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, first.token_ids[k]]
    (ended,) = sampler_class(model, tokenizer).sample(PROMPTS[:1], 1, params)[0]
    assert ended.token_ids == first.token_ids[: k + 1] and ended.finish_reason == "stop"


def test_attention_follows_what_the_model_needs(family_dirs):
    """Gemma 2 soft-caps its attention scores, which transformers computes in `eager` only."""
    model, _ = load_policy(family_dirs["tiny-random-gemma2"])
    assert model.config._attn_implementation == "eager"
    assert load_policy(family_dirs["tiny-random-gemma3"])[0].config._attn_implementation == "sdpa"
    ids = torch.tensor([list(range(5, 5 + 3 * WINDOW))])
    uncapped, _ = load_policy(family_dirs["tiny-random-gemma2"])
    uncapped.config.attn_logit_softcapping = None
    for layer in uncapped.model.layers:
        layer.self_attn.attn_logit_softcapping = None
    with torch.no_grad():
        assert (model(ids).logits - uncapped(ids).logits).abs().max() > 1e-3  # the cap is applied


@pytest.fixture(scope="module")
def stage_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage-data")
    tasks = write_tasks(root / "tasks.jsonl", arithmetic_tasks(8, "train"))
    return _arithmetic_sft(root / "sft.jsonl", 16), _pairs_file(root / "pairs.jsonl", 8), tasks


@pytest.mark.parametrize("preset", PRESETS)
def test_sft_preference_and_rlvr_run_and_save_what_transformers_reloads(preset, family_dirs, stage_data, tmp_path):
    """Two steps of each stage, chained (SFT with LoRA, merged on save), each saved model reloaded by plain
    transformers with the logits of posttrain's loader."""
    sft_data, pairs, tasks = stage_data
    common = {"lr": 1e-3, "max_steps": 2, "progress": False, "decontaminate": "off"}
    first = sft.run(
        sft.SFTConfig(
            model=str(family_dirs[preset]),
            data=str(sft_data),
            output=str(tmp_path / "sft"),
            max_length=128,
            rows_per_batch=2,
            save_every=0,
            precision="fp32",
            lora=True,
            **common,
        )
    )
    second = preference.run(
        preference.PreferenceConfig(
            model=str(first),
            data=str(pairs),
            output=str(tmp_path / "dpo"),
            max_length=128,
            rows_per_batch=2,
            precision="fp32",
            diversity_prompts=0,
            **common,
        )
    )
    third = rlvr.run(
        rlvr.RLVRConfig(
            model=str(second),
            tasks=str(tasks),
            output=str(tmp_path / "rl"),
            prompts_per_step=2,
            samples_per_prompt=4,
            max_new_tokens=8,
            overlong_buffer=8,
            stop=("e",),
            save_every=0,
            **common,
        )
    )
    ids = torch.tensor([list(range(5, 5 + 3 * WINDOW))])
    start, _ = load_policy(family_dirs[preset])
    with torch.no_grad():
        previous = start(ids).logits
        for saved in (first, second, third):
            ours, _ = load_policy(saved)
            plain = AutoModelForCausalLM.from_pretrained(saved)
            logits = ours(ids).logits
            torch.testing.assert_close(plain(ids).logits, logits, atol=1e-5, rtol=1e-5)
            assert (logits - previous).abs().max() > 1e-6  # each stage changed the weights
            previous = logits
