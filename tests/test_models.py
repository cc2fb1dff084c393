"""Model loading: tiny presets, LoRA, atomic saves that plain transformers reloads, and the real SmolLM2."""

from __future__ import annotations

import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from posttrain.models import (
    GEMMA3,
    PACKAGED,
    LoraSpec,
    apply_lora,
    load_policy,
    packaged_files,
    resolve_model_dir,
    save_model,
)
from posttrain.render import render_prompt
from posttrain.rollout import SamplingParams
from posttrain.rollout.engine import RolloutEngine, make_sampler
from posttrain.tiny import TINY_PRESETS, build_tiny


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_tiny_presets_are_deterministic_and_small(preset):
    model_a, tok_a = build_tiny(preset)
    model_b, tok_b = build_tiny(preset)
    assert tok_a.get_vocab() == tok_b.get_vocab()
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    n_params = sum(p.numel() for p in model_a.parameters())
    assert 500_000 <= n_params <= 10_000_000
    assert tok_a.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == (
        "<|im_start|>user\nhi<|im_end|>\n"
    )


def test_byte_level_tokenizer_round_trips_any_text(tiny_tokenizer):
    text = "naïve café — 数学 \\boxed{42} 🙂\ttabs\n"
    assert tiny_tokenizer.decode(tiny_tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_save_model_reloads_with_plain_transformers(tiny, tmp_path):
    model, tokenizer = tiny
    out = save_model(model, tokenizer, tmp_path / "final")
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    reloaded_tok = AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([render_prompt(reloaded_tok, [{"role": "user", "content": "What is 3 + 4?"}])])
    torch.testing.assert_close(reloaded(ids).logits, model(ids).logits)
    assert reloaded_tok.chat_template == tokenizer.chat_template
    assert not list(tmp_path.glob(".final-*")), "no temporary directory is left behind"


def test_lora_trains_adapters_only_and_merges_on_save(tmp_path):
    model, tokenizer = load_policy("tiny-random-llama", lora=LoraSpec(r=4, alpha=8, target_modules=("q_proj",)))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.fill_(0.05)  # B starts at zero; make the adapter matter
    ids = torch.tensor([render_prompt(tokenizer, [{"role": "user", "content": "hello"}])])
    expected = model(ids).logits
    base_logits = model.get_base_model()
    with model.disable_adapter():
        assert not torch.allclose(base_logits(ids).logits, expected)
    reloaded = AutoModelForCausalLM.from_pretrained(save_model(model, tokenizer, tmp_path / "merged"))
    assert not any("lora" in n for n, _ in reloaded.named_parameters())
    torch.testing.assert_close(reloaded(ids).logits, expected, atol=1e-5, rtol=1e-5)
    assert any("lora_" in n for n, _ in model.named_parameters()), "saving must not unwrap the live model"


def test_apply_lora_targets_configurable_modules(tiny):
    model, _ = build_tiny("tiny-random-qwen2")
    wrapped = apply_lora(model, LoraSpec(r=2, target_modules=("up_proj", "down_proj")))
    names = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert any("up_proj.lora_A" in n for n in names) and not any("q_proj" in n for n in names)


def test_unknown_spec_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match="smollm2-135m-instruct"):
        resolve_model_dir(tmp_path / "nope")


@pytest.mark.smollm2
def test_smollm2_loads_fast_after_conversion_and_answers_coherently(smollm2, tmp_path):
    start = time.perf_counter()
    model, tokenizer = load_policy("smollm2-135m-instruct")
    assert time.perf_counter() - start < 10.0
    prompt = render_prompt(tokenizer, [{"role": "user", "content": "What is the capital of France?"}])
    out = model.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False)
    answer = tokenizer.decode(out[0, len(prompt) :], skip_special_tokens=True)
    assert "Paris" in answer, answer


@pytest.mark.smollm2
def test_smollm2_saved_directory_reloads_with_plain_transformers(smollm2, tmp_path):
    model, tokenizer = smollm2
    out = save_model(model, tokenizer, tmp_path / "smol")
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    reloaded_tok = AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([render_prompt(reloaded_tok, [{"role": "user", "content": "Hi"}])])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, model(ids).logits)


def _installed(name: str) -> bool:
    try:
        packaged_files(PACKAGED[name])
    except FileNotFoundError:
        return False
    return True


@pytest.mark.gemma3
@pytest.mark.skipif(not _installed(GEMMA3), reason="the optional gemma3-270m weights are not installed (make gemma3)")
def test_gemma3_preset_continues_text_in_the_engine_and_renders_gemma_turns():
    """The second real model: a base Gemma 3 270M, so plain continuation; its added template and end ids."""
    model, tokenizer = load_policy(GEMMA3)
    assert model.config.model_type == "gemma3_text"
    engine = make_sampler(model.eval(), tokenizer, batch_size=2)
    assert isinstance(engine, RolloutEngine)  # bf16, fused
    prompts = [
        tokenizer(p)["input_ids"] for p in ("Question: What is the capital of France?\nAnswer:", "def add(a, b):")
    ]
    capital, code = engine.run_turns(prompts, SamplingParams(max_new_tokens=8, temperature=0), None)
    assert tokenizer.decode(capital.token_ids).startswith(" Paris"), tokenizer.decode(capital.token_ids)
    assert "return a + b" in tokenizer.decode(code.token_ids), tokenizer.decode(code.token_ids)
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ]
    assert tokenizer.apply_chat_template(chat, tokenize=False) == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n"
    )
    ends = {tokenizer.convert_tokens_to_ids(t) for t in ("<end_of_turn>", "<eos>")}
    assert tokenizer.eos_token == "<end_of_turn>" and set(model.generation_config.eos_token_id) == ends
