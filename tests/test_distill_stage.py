"""The distill stage: on-policy distillation on tiny models sharing a tokenizer, GKD's teacher-sample mix, and the
tokenizer check that stops before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from posttrain.logprobs import target_logits
from posttrain.losses.distill import reverse_kl
from posttrain.models import load_policy
from posttrain.packing import pack
from posttrain.registry import STAGES
from posttrain.render import render_messages

PROMPTS = ["Name a colour.", "Count to three.", "Say hello.", "What is 2 + 2?", "Name a fruit.", "Spell cat."]


def _prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    rows = [{"prompt": p, "verifier": "math", "answer": "4"} for p in PROMPTS]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(tmp_path: Path, **extra):
    values = dict(
        model="tiny-random-llama", teacher="tiny-random-qwen2", prompts=str(_prompts(tmp_path)),
        output=str(tmp_path / "run"), max_new_tokens=12, prompts_per_step=3, max_steps=6, lr=3e-3, row_tokens=128,
        save_every=0, precision="fp32", progress=False, decontaminate_against=("harmbench",),
    )  # fmt: skip
    return STAGES["distill"].config(**(values | extra))


def _divergence(student_spec, teacher, tokenizer) -> float:
    """Full-vocabulary reverse KL(student || teacher) on fixed conversations (teacher-independent text)."""
    student, _ = load_policy(student_spec)
    sequences = [
        render_messages(tokenizer, [{"role": "user", "content": p}, {"role": "assistant", "content": "It is blue."}])
        for p in PROMPTS
    ]
    batch = pack(sequences, 256, len(sequences))[0]
    with torch.no_grad():
        _, cols, s = target_logits(student, batch)
        _, _, t = target_logits(teacher, batch)
    mask = torch.ones(1, len(cols), dtype=torch.bool)
    return float(reverse_kl(s[None], t[None], mask)[0])


def test_on_policy_distillation_moves_the_student_to_the_teacher(tmp_path):
    teacher, tokenizer = load_policy("tiny-random-qwen2")
    before = _divergence("tiny-random-llama", teacher, tokenizer)
    final = STAGES["distill"].execute(_config(tmp_path))
    after = _divergence(final, teacher, tokenizer)
    assert after < 0.5 * before, (before, after)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["on_policy"] for r in rows if "on_policy" in r] == [1.0] * 6
    assert rows[-1]["sampled_reverse_kl"] < rows[0]["sampled_reverse_kl"]


def test_lmbda_zero_trains_on_teacher_samples_with_the_forward_kl(tmp_path):
    STAGES["distill"].execute(_config(tmp_path, lmbda=0.0, beta=0.0, max_steps=2))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["on_policy"] for r in rows if "on_policy" in r] == [0.0, 0.0]


def test_a_teacher_with_another_tokenizer_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="do not share a tokenizer"):
        STAGES["distill"].execute(_config(tmp_path, teacher="smollm2-135m-instruct"))
    assert not (tmp_path / "run" / "config.yaml").exists()
