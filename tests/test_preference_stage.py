"""The preference stage on tiny models: every method offline, the beta schedule, and iterated rounds."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from posttrain.packing import pack_groups
from posttrain.render import render_messages
from posttrain.stages import sft
from posttrain.stages.preference import PreferenceConfig, run
from posttrain.train.schedules import annealed


def _pairs_file(path: Path, n: int = 24) -> Path:
    rng = random.Random(0)
    rows = []
    for _ in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        good = f"{a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}."
        bad = f"{a} + {b} = {a + b + 3}. The answer is \\boxed{{{a + b + 3}}}."
        rows.append({"prompt": f"What is {a} + {b}?", "chosen": good, "rejected": bad})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _kto_file(path: Path) -> Path:
    rows = []
    for line in _pairs_file(path.with_suffix(".pairs.jsonl")).read_text().splitlines():
        pair = json.loads(line)
        rows.append({"prompt": pair["prompt"], "completion": pair["chosen"], "label": True})
        rows.append({"prompt": pair["prompt"], "completion": pair["rejected"], "label": False})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(out: Path, **overrides) -> PreferenceConfig:
    base = PreferenceConfig(model="tiny-random-llama", output=str(out), max_length=128, rows_per_batch=2,
                            lr=5e-3, warmup_ratio=0.0, max_steps=4, precision="fp32", progress=False,
                            diversity_prompts=2, diversity_samples=2, max_new_tokens=16)  # fmt: skip
    return dataclasses.replace(base, **overrides)


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", ["dpo", "ipo", "simpo", "orpo", "kto"])
def test_every_method_trains_offline_and_saves(method, tmp_path):
    data = _kto_file(tmp_path / "fb.jsonl") if method == "kto" else _pairs_file(tmp_path / "pairs.jsonl")
    final = run(_config(tmp_path / "run", method=method, data=str(data), beta=0.5 if method != "simpo" else 2.0))
    rows = _rows(tmp_path / "run")
    assert len(rows) == 4 and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    for key in ("chosen_reward", "rejected_reward", "implicit_kl", "response_length", "grad_norm"):
        assert key in rows[-1], key
    assert (tmp_path / "run" / "reference_logps.pt").is_file()
    AutoModelForCausalLM.from_pretrained(final)


def test_dpo_offline_learns_the_preference(tmp_path):
    run(_config(tmp_path / "run", data=str(_pairs_file(tmp_path / "p.jsonl")), max_steps=12, beta=0.5))
    rows = _rows(tmp_path / "run")
    assert rows[0]["loss"] == pytest.approx(0.6931, abs=1e-3), "policy == reference at step 1: loss is log 2"
    assert rows[-1]["loss"] < rows[0]["loss"] and rows[-1]["reward_accuracy"] > rows[0]["reward_accuracy"]
    assert rows[-1]["reward_margin"] > 0


def test_beta_schedule_reaches_beta_end(tmp_path):
    run(_config(tmp_path / "run", data=str(_pairs_file(tmp_path / "p.jsonl")), max_steps=6, beta=0.1,
                beta_end=0.5, beta_schedule="linear", beta_anneal_step=2))  # fmt: skip
    betas = [r["beta"] for r in _rows(tmp_path / "run")]
    assert betas[:3] == pytest.approx([0.1, 0.1, 0.1]) and betas[-1] == pytest.approx(0.5)
    assert all(b <= a for a, b in zip(betas[1:], betas, strict=False))


def test_annealing_shapes():
    assert annealed(0, 10, 0.1, 0.3, "cosine", 0) == pytest.approx(0.1)
    assert annealed(5, 10, 0.1, 0.3, "cosine", 0) == pytest.approx(0.2)
    assert annealed(10, 10, 0.1, 0.3, "linear", 0) == pytest.approx(0.3)
    assert annealed(7, 10, 0.1, 0.3, "constant", 0) == 0.1


def test_pack_groups_never_splits_a_pair(tiny_tokenizer):
    rng = random.Random(0)
    seqs = [
        render_messages(
            tiny_tokenizer,
            [
                {"role": "user", "content": "hi " * rng.randint(1, 20)},
                {"role": "assistant", "content": "ok " * rng.randint(1, 20)},
            ],
        )
        for _ in range(20)
    ]
    batches = pack_groups(seqs, [(2 * g, 2 * g + 1) for g in range(10)], 160, 2, seed=3)
    seen = [i for b in batches for i in b.sequence_indices]
    assert sorted(seen) == list(range(20))
    for b in batches:
        assert all(i ^ 1 in b.sequence_indices for i in b.sequence_indices)


@pytest.fixture(scope="module")
def arithmetic_sft_model(tmp_path_factory):
    """A tiny model SFT'd briefly on one-digit sums, so it writes boxed answers that are sometimes right."""
    root = tmp_path_factory.mktemp("idpo")
    rng = random.Random(1)
    rows = []
    for _ in range(200):
        a, b = rng.randint(1, 4), rng.randint(1, 4)
        rows.append({"messages": [{"role": "user", "content": f"What is {a} + {b}?"},
                                  {"role": "assistant", "content": f"The answer is \\boxed{{{a + b}}}."}]})  # fmt: skip
    (root / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = sft.SFTConfig(model="tiny-random-llama", data=str(root / "sft.jsonl"), output=str(root / "sft"),
                           max_length=256, rows_per_batch=2, lr=3e-3, max_steps=40, precision="fp32",
                           progress=False, save_every=0, eval_every=0)  # fmt: skip
    final = sft.run(config)
    prompts = [{"prompt": f"What is {a} + {b}?", "verifier": "math", "answer": str(a + b)}
               for a in range(1, 5) for b in range(1, 5)]  # fmt: skip
    (root / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    return final, root / "prompts.jsonl"


def test_two_rounds_of_iterated_dpo_with_a_verifier_judge(arithmetic_sft_model, tmp_path):
    model, prompts = arithmetic_sft_model
    out = tmp_path / "idpo"
    final = run(_config(out, model=str(model), prompts=str(prompts), rounds=2, samples_per_prompt=4,
                        temperature=1.0, judge="math", min_margin=0.5, max_steps=6, lr=2e-3, beta=0.5))  # fmt: skip
    for r in (1, 2):
        round_dir = out / f"round_{r}"
        pairs = [json.loads(x) for x in (round_dir / "pairs.jsonl").read_text().splitlines()]
        samples = (round_dir / "samples.jsonl").read_text().splitlines()
        assert pairs and len(samples) == 16 * 4
        assert all(p["chosen_reward"] > p["rejected_reward"] for p in pairs)
        rows = _rows(round_dir)
        assert rows[0]["reward_accuracy"] == 0.0, "the round's reference is the policy it starts from"
        assert rows[-1]["reward_accuracy"] > rows[0]["reward_accuracy"]
        summary = json.loads((round_dir / "round.json").read_text())
        assert summary["pairs"] == len(pairs) and "distinct_2" in summary["eval"]["diversity"]
    AutoModelForCausalLM.from_pretrained(final)


def test_rounds_refuse_kto_and_offline_needs_data(tmp_path):
    with pytest.raises(NotImplementedError, match="pairwise"):
        run(_config(tmp_path / "a", method="kto", rounds=1, prompts="x"))
    with pytest.raises(ValueError, match="--data"):
        run(_config(tmp_path / "b"))


def test_lora_dpo_reference_is_the_base_with_the_adapter_disabled(tmp_path):
    """LoRA's B starts at zero, so the precomputed reference equals the adapter-disabled base: step 1 gives log 2."""
    final = run(_config(tmp_path / "run", data=str(_pairs_file(tmp_path / "p.jsonl")), lora=True, lora_r=4,
                        max_steps=3, lr=2e-2))  # fmt: skip
    rows = _rows(tmp_path / "run")
    assert rows[0]["loss"] == pytest.approx(0.6931, abs=1e-4) and rows[0]["implicit_kl"] == pytest.approx(0, abs=1e-4)
    assert rows[-1]["loss"] != pytest.approx(0.6931, abs=1e-4)
    merged = AutoModelForCausalLM.from_pretrained(final)
    assert not any("lora" in name for name, _ in merged.named_parameters())


def test_stored_reference_is_recomputed_for_other_data(tmp_path):
    """A rerun into the same output with other pairs must not train against the old reference."""
    first = tmp_path / "a.jsonl"
    _pairs_file(first, n=24)
    run(_config(tmp_path / "run", data=str(first), max_steps=2))
    fingerprint = json.loads((tmp_path / "run" / "reference.json").read_text())["fingerprint"]
    second = tmp_path / "b.jsonl"
    second.write_text("".join(line.replace("+", "plus") + "\n" for line in first.read_text().splitlines()[:20]))
    run(_config(tmp_path / "run", data=str(second), max_steps=2, resume=True))
    assert json.loads((tmp_path / "run" / "reference.json").read_text())["fingerprint"] != fingerprint
    rows = _rows(tmp_path / "run")
    assert len(rows) == 2 and rows[0]["loss"] == pytest.approx(0.6931, abs=1e-4)


def test_rounds_are_not_silently_reused_without_resume(arithmetic_sft_model, tmp_path):
    (tmp_path / "idpo" / "round_1").mkdir(parents=True)
    model, prompts = arithmetic_sft_model
    with pytest.raises(FileExistsError, match="rounds"):
        run(_config(tmp_path / "idpo", model=str(model), prompts=str(prompts), rounds=1))
