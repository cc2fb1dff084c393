"""The stages under torchrun with 2 ranks on the gloo backend: DDP and FSDP2 give the single-process losses for the
same global batch; a run with a rank killed resumes from its sharded checkpoint on 2 ranks, and a DDP checkpoint in
one process, both reproducing the uninterrupted run; offline preference and RLVR train under both. Each torchrun launch runs
several stages in one start-up (`tests/torchrun_commands.py`): a start costs about 10 s of this suite's budget."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_preference_stage import _pairs_file
from test_sft_stage import _arithmetic_sft
from torch.distributed.checkpoint import FileSystemReader
from transformers import AutoModelForCausalLM

from posttrain.tasks.arithmetic import arithmetic_tasks
from posttrain.tasks.jsonl import write_tasks

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("distributed")
    return {
        "sft": _arithmetic_sft(root / "sft.jsonl", 48),
        "eval": _arithmetic_sft(root / "eval.jsonl", 8, seed=1),
        "pairs": _pairs_file(root / "pairs.jsonl", 16),
        "tasks": write_tasks(root / "tasks.jsonl", arithmetic_tasks(8, "train")),
    }


STEPS = ("max_steps=10", "save_every=3")  # the SFT runs: checkpoints at steps 3, 6 and 9


@pytest.fixture(scope="module")
def one(files, tmp_path_factory) -> Path:
    """The single-process runs every parallel run is compared with, run in-process through the CLI's `main`."""
    from posttrain.cli import main

    root = tmp_path_factory.mktemp("one-process")
    assert main(_sft(files, root / "sft", *STEPS)) == 0
    assert main(_preference(files, root / "dpo")) == 0
    assert main(_sft(files, root / "lora", "max_steps=2", "lora=true", "eval_every=0")) == 0
    return root


def _sft(files, out: Path, *extra: str) -> list[str]:
    # 4 micro-batches a step: 2 per rank, or all 4 in one process; fp32 so that only summation order differs
    return ["sft", "--model", "tiny-random-llama", "--data", str(files["sft"]), "--eval-data", str(files["eval"]),
            "max_length=128", "rows_per_batch=1", "grad_accum=4", "lr=1e-3", "eval_every=2", "precision=fp32",
            "progress=false", *extra, "--decontaminate", "off", "--output", str(out)]  # fmt: skip


def _preference(files, out: Path, *extra: str) -> list[str]:
    return ["preference", "--model", "tiny-random-llama", "--data", str(files["pairs"]), "max_length=128",
            "rows_per_batch=2", "grad_accum=2", "lr=5e-3", "warmup_ratio=0", "max_steps=2", "precision=fp32",
            "progress=false", "decontaminate=off", "diversity_prompts=0", *extra, "--output", str(out)]  # fmt: skip


def _rlvr(files, out: Path, *extra: str) -> list[str]:
    return ["rlvr", "--model", "tiny-random-llama", "--tasks", str(files["tasks"]), "max_steps=2",
            "prompts_per_step=4", "samples_per_prompt=4", "max_new_tokens=12", "overlong_buffer=12", "stop=[e]",
            "lr=1e-3", "progress=false", "save_every=0", *extra, "--decontaminate", "off", "--output", str(out)]  # fmt: skip


def _torchrun(commands: list[list[str]], tmp: Path) -> subprocess.Popen:
    path = tmp / f"commands-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(commands))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([*TORCHRUN, str(REPO / "tests" / "torchrun_commands.py"), str(path)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def _finish(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-4000:]


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _curve(run_dir: Path, *keys: str) -> list[tuple]:
    return [tuple(row.get(k) for k in keys) for row in _rows(run_dir)]


def _assert_close(expected: list[tuple], got: list[tuple], what: str, rel: float = 1e-5) -> None:
    """Same rows, same keys logged, every number within `rel` (float32: only the order of sums differs)."""
    assert len(got) == len(expected) >= 2, what
    for want, have in zip(expected, got, strict=True):
        assert [w is None for w in want] == [h is None for h in have], what
        assert [h for h in have if h is not None] == pytest.approx([w for w in want if w is not None], rel=rel,
                                                                   abs=1e-5), what  # fmt: skip


def _check_preference_and_rlvr(ranks: Path, one: Path, parallel: str) -> None:
    _assert_close(_curve(one / "dpo", "loss", "chosen_logratio"), _curve(ranks / "dpo", "loss", "chosen_logratio"),
                  f"{parallel} dpo")  # fmt: skip
    rl = _rows(ranks / "rlvr")
    assert [r["step"] for r in rl] == [1, 2] and all(r["trained_tokens"] > 0 for r in rl)
    assert [r["sampled_groups"] for r in rl] == [4, 4] and [r["prompts_this_rank"] for r in rl] == [2, 2]
    for stage in ("dpo", "rlvr"):  # plain HF directories, whatever the engine
        model = AutoModelForCausalLM.from_pretrained(ranks / stage / "final")
        assert not any(hasattr(p, "device_mesh") for p in model.parameters())
    assert json.loads((ranks / "dpo" / "manifest.json").read_text())["world_size"] == 2


def test_ddp_gives_the_single_process_losses_and_resumes_in_one_process(files, tmp_path, one, posttrain_cli):
    ranks = tmp_path / "ddp"
    _finish(
        _torchrun(
            [
                _sft(files, ranks / "sft", *STEPS, "parallel=ddp"),
                _preference(files, ranks / "dpo", "parallel=ddp"),
                _rlvr(files, ranks / "rlvr", "parallel=ddp"),
                _sft(files, ranks / "lora", "max_steps=2", "lora=true", "eval_every=0", "save_every=1", "parallel=ddp"),
            ],
            tmp_path,
        )
    )
    keys = ("step", "loss", "eval_loss", "sequences_seen")
    _assert_close(_curve(one / "sft", *keys), _curve(ranks / "sft", *keys), "ddp sft")
    _assert_close(_curve(one / "sft", "grad_norm"), _curve(ranks / "sft", "grad_norm"), "ddp grad norms", rel=1e-4)
    _check_preference_and_rlvr(ranks, one, "ddp")
    _assert_close(_curve(one / "lora", "loss", "grad_norm"), _curve(ranks / "lora", "loss", "grad_norm"), "ddp lora")
    assert not any("lora" in k for k in AutoModelForCausalLM.from_pretrained(ranks / "lora" / "final").state_dict())
    saved = FileSystemReader(ranks / "lora" / "checkpoints" / "step_1" / "sharded").read_metadata().state_dict_metadata
    weights = [k for k in saved if k.startswith("model.")]
    assert weights and all("lora_" in k for k in weights)  # the adapters alone, never the frozen base
    trained = AutoModelForCausalLM.from_pretrained(ranks / "sft" / "final").state_dict()
    alone = AutoModelForCausalLM.from_pretrained(one / "sft" / "final").state_dict()
    assert max(float((trained[k] - alone[k]).abs().max()) for k in alone) < 1e-4

    # the 2 ranks' step-6 checkpoint (torch.distributed.checkpoint) resumes in this one process: the same steps 7-10
    assert (ranks / "sft" / "checkpoints" / "step_6" / "sharded" / ".metadata").is_file()
    shutil.rmtree(ranks / "sft" / "checkpoints" / "step_9")
    assert posttrain_cli(*_sft(files, ranks / "sft", *STEPS, "resume=true")).returncode == 0
    _assert_close(_curve(one / "sft", *keys), _curve(ranks / "sft", *keys), "ddp sft, resumed in one process")


def _rank_pid(torchrun: int, rank: int) -> int | None:
    """The pid of the torchrun worker with RANK=`rank` (a child of the elastic agent)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == torchrun and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def test_fsdp2_gives_the_single_process_losses_and_a_killed_rank_resumes(files, tmp_path, one):
    ranks = tmp_path / "fsdp2"
    proc = _torchrun(
        [
            _preference(files, ranks / "dpo", "parallel=fsdp2"),
            _rlvr(files, ranks / "rlvr", "parallel=fsdp2"),
            _sft(files, ranks / "sft", *STEPS, "parallel=fsdp2"),  # a rank of this one is killed
        ],
        tmp_path,
    )
    metrics, deadline, victim = ranks / "sft" / "metrics.jsonl", time.monotonic() + 400, None
    while proc.poll() is None and time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 4:  # past the step-3 checkpoint
            victim = _rank_pid(proc.pid, 1)
            os.kill(victim, signal.SIGKILL)
            break
        time.sleep(0.01)
    out, _ = proc.communicate(timeout=120)
    assert victim is not None and proc.returncode != 0, "the run finished before a rank could be killed"
    assert 4 <= len(metrics.read_text().splitlines()) < 10, out[-2000:]
    assert (ranks / "sft" / "checkpoints" / "step_3" / "sharded" / ".metadata").is_file()

    _check_preference_and_rlvr(ranks, one, "fsdp2")
    _finish(_torchrun([_sft(files, ranks / "sft", *STEPS, "parallel=fsdp2", "resume=true")], tmp_path))
    keys = ("step", "loss", "eval_loss", "sequences_seen")
    _assert_close(_curve(one / "sft", *keys), _curve(ranks / "sft", *keys), "fsdp2 sft, killed and resumed")
    # gradient norms after 8 steps of differently ordered sums: 1.1e-5 apart in one run
    _assert_close(_curve(one / "sft", "grad_norm"), _curve(ranks / "sft", "grad_norm"), "fsdp2 grad norms", rel=1e-4)
