"""The SFT stage on a tiny model: smoke, LoRA, config layering, gradient accumulation, and SIGKILL-then-resume."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from posttrain.models import load_policy
from posttrain.stages.sft import SFTConfig, run, train_step
from posttrain.train.batches import epoch_batches
from posttrain.train.config import build_config, parse_override
from posttrain.train.optim import build_optimizer, build_scheduler
from posttrain.train.preamble import Run

REPO = Path(__file__).resolve().parents[1]


def _arithmetic_sft(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        answer = f"{a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}."
        rows.append(
            {"messages": [{"role": "user", "content": f"What is {a} + {b}?"}, {"role": "assistant", "content": answer}]}
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft-data")
    return _arithmetic_sft(root / "train.jsonl", 120), _arithmetic_sft(root / "eval.jsonl", 16, seed=1)


def _config(data, out: Path, **overrides) -> SFTConfig:
    train, held_out = data
    base = SFTConfig(model="tiny-random-llama", data=str(train), eval_data=str(held_out), output=str(out),
                     max_length=128, rows_per_batch=2, lr=1e-3, max_steps=6, eval_every=3, save_every=0,
                     precision="fp32", progress=False)  # fmt: skip
    return dataclasses.replace(base, **overrides)


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_sft_smoke_trains_logs_and_saves_a_reloadable_model(data, tmp_path):
    config = _config(data, tmp_path / "run")
    before, _ = load_policy("tiny-random-llama")
    final = run(config)
    rows = _rows(tmp_path / "run")
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"]
    for key in ("lr", "grad_norm", "tokens_per_s", "packing_efficiency", "peak_memory_mb"):
        assert key in rows[0]
    assert "eval_loss" in rows[2] and "eval_loss" in rows[5]
    after = AutoModelForCausalLM.from_pretrained(final)
    AutoTokenizer.from_pretrained(final)
    changed = [not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters(), strict=True)]
    assert all(changed)
    assert (tmp_path / "run" / "config.yaml").is_file() and (tmp_path / "run" / "manifest.json").is_file()
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["eval_loss"] == rows[-1]["eval_loss"]


def test_sft_lora_saves_a_merged_model(data, tmp_path):
    final = run(_config(data, tmp_path / "lora", lora=True, lora_r=4, max_steps=3, lr=1e-2))
    merged = AutoModelForCausalLM.from_pretrained(final)
    base, _ = load_policy("tiny-random-llama")
    assert not any("lora" in name for name, _ in merged.named_parameters())
    q_changed = not torch.equal(
        merged.model.layers[0].self_attn.q_proj.weight, base.model.layers[0].self_attn.q_proj.weight
    )
    norm_kept = torch.equal(merged.model.norm.weight, base.model.norm.weight)
    assert q_changed and norm_kept


def test_existing_run_needs_resume_flag(data, tmp_path):
    run(_config(data, tmp_path / "run", max_steps=2, save_every=1))
    with pytest.raises(FileExistsError, match="resume=true"):
        run(_config(data, tmp_path / "run", max_steps=4, save_every=1))


def test_accumulated_micro_batches_equal_one_big_batch(data):
    """Normalising by the step's token count makes 2 micro-batches of 1 row equal 1 batch of 2 rows."""
    config = _config(data, Path("unused"))
    results = []
    for rows, accum in ((2, 1), (1, 2)):
        model, tokenizer = load_policy("tiny-random-llama")
        from posttrain.stages.sft import load_sequences

        sequences, _ = load_sequences(config.data, tokenizer, config)
        batches = epoch_batches(sequences, config.max_length, rows, tokenizer.pad_token_id, seed=0, epoch=0)
        optimizer = build_optimizer(model, 1e-3, 0.0)
        scheduler = build_scheduler(optimizer, 0, 10, 1.0)
        run = Run(config, "sft", Path("unused"), torch.device("cpu"), "fp32", {})
        stats = train_step(run, model, optimizer, scheduler, batches[:accum])
        results.append((stats["loss"], [p.detach().clone() for p in model.parameters()]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_config_layers_yaml_then_overrides(tmp_path):
    path = tmp_path / "sft.yaml"
    path.write_text("lr: 0.001\nlora: true\nlora_targets: [q_proj, v_proj]\nmax_steps: 5\n")
    config = build_config(SFTConfig, str(path), {"lr": "3e-4", "max_steps": 7})
    assert (config.lr, config.lora, config.lora_targets, config.max_steps) == (3e-4, True, ("q_proj", "v_proj"), 7)
    path.write_text("learning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"sft.yaml: unknown config key 'learning_rate'"):
        build_config(SFTConfig, str(path))
    with pytest.raises(ValueError, match="'max_steps' must be int"):
        build_config(SFTConfig, None, {"max_steps": "many"})


def test_yaml_1_1_words_on_the_command_line_mean_what_the_key_wants():
    # `decontaminate=off`, as the gate's own message tells users to write: YAML 1.1 reads `off` as False
    values = dict(parse_override(o) for o in ("decontaminate=off", "lora=yes", "progress=off", "resume=true"))
    config = build_config(SFTConfig, None, values)
    assert (config.decontaminate, config.lora, config.progress, config.resume) == ("off", True, False, True)


def test_cli_help_shows_every_field_with_its_help(posttrain_cli):
    """In-process through the CLI's `main` (`posttrain sft` runs as a real command line in the SIGKILL test)."""
    out = posttrain_cli("sft", "--help")
    assert out.returncode == 0
    for field in dataclasses.fields(SFTConfig):
        assert "--" + field.name.replace("_", "-") in out.stdout
    assert "peak learning rate" in out.stdout


def _cli(data, out: Path, *extra: str) -> list[str]:
    train, held_out = data
    return [sys.executable, "-m", "posttrain", "sft", "--model", "tiny-random-llama", "--data", str(train),
            "--eval-data", str(held_out), "--output", str(out), "max_length=256", "rows_per_batch=1", "lr=1e-3",
            "max_steps=24", "save_every=4", "eval_every=5", "precision=fp32", "progress=false", *extra]  # fmt: skip


def test_sigkill_then_resume_reproduces_the_uninterrupted_run(data, tmp_path, posttrain_cli):
    reference = tmp_path / "reference"
    # the reference runs in this process, the killed and resumed runs in their own: all three must agree
    assert posttrain_cli(*_cli(data, reference)[3:]).returncode == 0
    expected = [(r["step"], r["loss"], r["sequences_seen"], r.get("eval_loss")) for r in _rows(reference)]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(data, killed), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = killed / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 11:  # past the step-8 checkpoint
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run finished before it could be killed"
    logged_before_kill = len(metrics.read_text().splitlines())
    assert 11 <= logged_before_kill < 24

    subprocess.run(_cli(data, killed, "resume=true"), check=True, capture_output=True, cwd=REPO, timeout=300)
    resumed = [(r["step"], r["loss"], r["sequences_seen"], r.get("eval_loss")) for r in _rows(killed)]
    assert resumed == expected  # exact: same losses, no step replayed or skipped


def test_gradient_checkpointing_gives_the_same_step(data, tmp_path):
    plain = run(_config(data, tmp_path / "plain", max_steps=2, eval_every=0))
    checkpointed = run(_config(data, tmp_path / "gc", max_steps=2, eval_every=0, gradient_checkpointing=True))
    a, b = _rows(tmp_path / "plain"), _rows(tmp_path / "gc")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-5)
    assert plain.is_dir() and checkpointed.is_dir()


def test_requested_tracker_that_is_not_installed_is_a_clear_error(data, tmp_path):
    try:
        import wandb  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="tracker 'wandb' was requested"):
            run(_config(data, tmp_path / "run", max_steps=1, trackers=("wandb",)))
    else:
        pytest.skip("wandb is installed here")
    with pytest.raises(ValueError, match="unknown tracker 'mlflow'"):
        run(_config(data, tmp_path / "run2", max_steps=1, trackers=("mlflow",)))


def test_rerun_without_checkpoints_rewrites_metrics_instead_of_appending(data, tmp_path):
    run(_config(data, tmp_path / "run", max_steps=3, eval_every=0))
    run(_config(data, tmp_path / "run", max_steps=3, eval_every=0))
    assert [r["step"] for r in _rows(tmp_path / "run")] == [1, 2, 3]


def test_no_usable_data_is_an_error_not_a_hang(data, tmp_path):
    with pytest.raises(ValueError, match="no training batches"):
        run(_config(data, tmp_path / "run", max_length=8, skip_invalid=True, eval_data=""))
