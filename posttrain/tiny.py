"""Tiny randomly initialised models for tests: a locally trained byte-level BPE and one preset per supported family
(Llama, Qwen2, Qwen3, Mistral, Gemma 3, Gemma 2, Phi-3).

Everything here is built from a seed and text this module generates itself, so the presets are the same on
every machine, need no network and build in a few seconds.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 1024

_WORDS = (
    "the a an of to and in is it that for on with as are be this was have not you can what how why when "
    "which who will would should could do does please help answer question step think first then so because "
    "number sum total add subtract multiply divide equals result final boxed each more less than twice half "
    "apples books coins cars days hours minutes people students tickets pages miles dollars eggs boxes "
    "sorry cannot help with that request harmful illegal dangerous safe instead here is a way to learn about "
    "write story poem email code function python list sort explain summarize translate recipe weather "
    "system user assistant tool call result error hello thanks good great sure"
).split()


def _corpus(seed: int = 0, n_lines: int = 4000) -> Iterator[str]:
    """Procedural text: word salad, arithmetic and chat-shaped lines, enough to give BPE real merges."""
    rng = random.Random(seed)
    for _ in range(n_lines):
        kind = rng.randrange(3)
        if kind == 0:
            yield " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 16))).capitalize() + "."
        elif kind == 1:
            a, b = rng.randint(0, 999), rng.randint(0, 999)
            yield f"What is {a} + {b}? {a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}."
        else:
            role = rng.choice(["system", "user", "assistant", "tool"])
            words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 10)))
            yield f"<|im_start|>{role}\n{words}<|im_end|>\n"


def build_tokenizer(vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE (any byte sequence encodes) with ChatML special tokens and template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
    )


def _config(preset: str, tokenizer: PreTrainedTokenizerFast):
    ids = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    shape = {
        "hidden_size": 128,
        "intermediate_size": 384,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
    }
    if preset not in PRESET_CONFIGS:
        raise ValueError(f"unknown tiny preset {preset!r}; choose one of {TINY_PRESETS}")
    config_class, family = PRESET_CONFIGS[preset]
    return config_class(**ids, **shape, **family)


WINDOW = 8  # the sliding window of the presets that have one: short, so that tests cross it
# Each preset: its config class and what sets the family apart (the parts posttrain must get right for it).
PRESET_CONFIGS = {
    "tiny-random-llama": (LlamaConfig, {"tie_word_embeddings": False}),
    "tiny-random-qwen2": (Qwen2Config, {"tie_word_embeddings": True}),
    # q/k norms; sliding windows on the layers from `max_window_layers` on
    "tiny-random-qwen3": (
        Qwen3Config,
        {
            "head_dim": 32,
            "sliding_window": WINDOW,
            "use_sliding_window": True,
            "max_window_layers": 2,
            "tie_word_embeddings": True,
        },
    ),
    "tiny-random-mistral": (MistralConfig, {"head_dim": 32, "sliding_window": WINDOW}),  # one window, every layer
    # (1 + w) norms before and after attention and MLP, scaled embeddings, q/k norms, its own attention scale,
    # sliding and global layers with their own RoPE bases, final logit soft-capping
    "tiny-random-gemma3": (
        Gemma3TextConfig,
        {
            "head_dim": 32,
            "query_pre_attn_scalar": 24,
            "sliding_window": WINDOW,
            "final_logit_softcapping": 2.0,
            "layer_types": ["sliding_attention", "full_attention"] * 2,
            "tie_word_embeddings": True,
        },
    ),
    # as Gemma 3 without q/k norms, and its attention scores soft-capped (eager attention only); the caps are
    # small so that they bite on a random model's small scores and logits
    "tiny-random-gemma2": (
        Gemma2Config,
        {
            "head_dim": 32,
            "query_pre_attn_scalar": 24,
            "sliding_window": WINDOW,
            "attn_logit_softcapping": 0.5,
            "final_logit_softcapping": 2.0,
        },
    ),
    # fused qkv_proj and gate_up_proj; one window on every layer
    "tiny-random-phi3": (Phi3Config, {"tie_word_embeddings": False, "sliding_window": WINDOW}),
}
TINY_PRESETS = tuple(PRESET_CONFIGS)


def build_tiny(preset: str, seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A freshly initialised tiny model (about 1.5M parameters) and its tokenizer, deterministic in `seed`."""
    tokenizer = build_tokenizer()
    config = _config(preset, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
