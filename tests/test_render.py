"""Rendering: golden masks for three real templates, prefix-property violations, prompt/train agreement."""

from __future__ import annotations

from pathlib import Path

import pytest
import trl

from posttrain.render import TemplateError, render_completion, render_messages, render_prompt, show_mask
from posttrain.tiny import build_tokenizer

TRL_TEMPLATES = Path(trl.__file__).parent / "chat_templates"

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "Let me check."},
    {"role": "tool", "content": "sunny, 21C"},
    {"role": "assistant", "content": "Sunny and 21C."},
]


@pytest.fixture(scope="module")
def llama3_tokenizer():
    """The tiny BPE with Llama 3's special tokens and the Llama 3 template shipped in TRL."""
    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens(
        {
            "bos_token": "<|begin_of_text|>",
            "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        }
    )
    tokenizer.chat_template = (TRL_TEMPLATES / "llama3.jinja").read_text()
    return tokenizer


def test_golden_chatml_multi_turn_with_system_and_tool(tiny_tokenizer):
    rendered = render_messages(tiny_tokenizer, CONVERSATION)
    assert show_mask(tiny_tokenizer, rendered) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n[4<|im_end|>\n]"
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n[Let me check.<|im_end|>\n]"
        "<|im_start|>tool\nsunny, 21C<|im_end|>\n"
        "<|im_start|>assistant\n[Sunny and 21C.<|im_end|>\n]"
    )


def test_golden_smollm2_inserts_its_default_system_prompt(smollm2):
    _, tokenizer = smollm2
    rendered = render_messages(tokenizer, CONVERSATION[1:3])
    assert show_mask(tokenizer, rendered) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n[4<|im_end|>\n]"
    )


def test_golden_smollm2_multi_turn(smollm2):
    _, tokenizer = smollm2
    rendered = render_messages(tokenizer, CONVERSATION[:5])
    assert show_mask(tokenizer, rendered) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n[4<|im_end|>\n]"
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n[Let me check.<|im_end|>\n]"
    )


def test_golden_llama3(llama3_tokenizer):
    rendered = render_messages(llama3_tokenizer, CONVERSATION[:3])
    assert show_mask(llama3_tokenizer, rendered) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n[4<|eot_id|>]"
    )
    special = llama3_tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert rendered.token_ids[-1] == special and rendered.loss_mask[-1]


def test_mask_covers_exactly_the_reply_tokens(tiny_tokenizer):
    rendered = render_messages(tiny_tokenizer, CONVERSATION[1:3])
    trained = [t for t, m in zip(rendered.token_ids, rendered.loss_mask, strict=True) if m]
    assert tiny_tokenizer.decode(trained) == "4<|im_end|>\n"
    assert rendered.n_trained == len(trained)


def test_prompt_is_a_token_prefix_of_the_training_render(tiny_tokenizer, llama3_tokenizer):
    for tokenizer in (tiny_tokenizer, llama3_tokenizer):
        prompt = render_prompt(tokenizer, CONVERSATION[:4])
        full = render_messages(tokenizer, CONVERSATION[:5])
        assert list(full.token_ids[: len(prompt)]) == prompt
        assert not any(full.loss_mask[len(prompt) - 1 : len(prompt)])
        assert full.loss_mask[len(prompt)]


def test_render_completion_trains_on_the_completion_only(tiny_tokenizer):
    rendered = render_completion(tiny_tokenizer, CONVERSATION[:4], [{"role": "assistant", "content": "Rainy."}])
    shown = show_mask(tiny_tokenizer, rendered)
    assert shown.endswith("<|im_start|>assistant\n[Rainy.<|im_end|>\n]")
    assert "[4<|im_end|>" not in shown and shown.count("[") == 1


def test_template_that_rewrites_earlier_turns_is_detected(tiny_tokenizer):
    """Numbering turns from the end changes every earlier turn's text when one is added."""
    tokenizer = build_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}{{ (messages|length - loop.index0)|string + m['role'] + ': ' + m['content'] }}\n"
        "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    )
    with pytest.raises(TemplateError, match="prefix property"):
        render_messages(tokenizer, CONVERSATION[1:3])


def test_real_qwen25_template_breaks_prefix_on_consecutive_tool_results():
    """Qwen2.5 closes a tool turn only when the next message is not a tool: adding one rewrites the last."""
    tokenizer = build_tokenizer()
    tokenizer.chat_template = (TRL_TEMPLATES / "qwen2_5.jinja").read_text()
    ok = render_messages(tokenizer, CONVERSATION[1:3])
    assert ok.n_trained > 0
    two_tools = [*CONVERSATION[1:6], {"role": "tool", "content": "humid"}, {"role": "assistant", "content": "ok"}]
    with pytest.raises(TemplateError, match="message 5 \\(tool\\)"):
        render_messages(tokenizer, two_tools)


def test_conversation_opening_with_an_assistant_message_is_refused(tiny_tokenizer):
    with pytest.raises(TemplateError, match="opens with an assistant message"):
        render_messages(tiny_tokenizer, [{"role": "assistant", "content": "Hi! How can I help?"}])
