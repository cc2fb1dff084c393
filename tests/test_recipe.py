"""`posttrain run` on the shipped quick recipe (tiny model), through the real CLI in subprocesses: lineage, reuse,
refusal of changed settings, --force/--until/--from/--dry-run, gates, resume after SIGKILL, bad recipes, the
HTML report in headless Chromium."""

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
import yaml

from posttrain.cli import build_parser
from posttrain.registry import STAGES, get_stage
from posttrain.train.manifest import file_sha256

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "recipes" / "quick.yaml"


def posttrain(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "posttrain", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def recipe_variant(tmp_path: Path, edit) -> Path:
    doc = yaml.safe_load(QUICK.read_text())
    edit(doc)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def lineage(root: Path) -> dict:
    return json.loads((root / "lineage.json").read_text())


def statuses(root: Path) -> dict[str, str]:
    return {s["name"]: s["status"] for s in lineage(root)["stages"]}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("quick") / "run"
    started = time.perf_counter()
    done = posttrain("run", str(QUICK), "--output", str(root), "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    assert time.perf_counter() - started < 180  # the acceptance bound for recipes/quick.yaml on 2 cores
    return root


def test_registry_is_the_one_list_of_stages():
    commands = build_parser()._subparsers._group_actions[0].choices
    for name, stage in STAGES.items():
        assert name in commands
        assert callable(stage.run) and "output" in {f for f in stage.config.__dataclass_fields__}
    with pytest.raises(KeyError, match="unknown stage 'nope'; known: sft"):
        get_stage("nope")


def test_lineage_records_every_stage(quick_run):
    record = lineage(quick_run)
    assert [s["name"] for s in record["stages"]] == ["data", "sft", "dpo", "grpo"]
    assert [s["parent"] for s in record["stages"]] == [None, "base", "sft", "dpo"]
    assert record["base"] == {"model": "tiny-random-llama", "eval": "evals/base.json"}
    assert record["posttrain_version"] and record["git_revision"]
    for stage in record["stages"]:
        assert stage["status"] == "done" and stage["seconds"] > 0 and len(stage["fingerprint"]) == 64
        for spec in stage["inputs"].values():
            assert spec["sha256"] == file_sha256(spec["path"])
    sft, dpo, grpo = record["stages"][1:]
    assert sft["config"]["lr"] == 1e-3 and sft["model"] == "tiny-random-llama"
    assert dpo["model"] == str(quick_run / "sft" / "final") and dpo["parent_fingerprint"] == sft["fingerprint"]
    assert (quick_run / grpo["final"] / "config.json").is_file()
    for stage in ("base", "sft", "dpo", "grpo"):
        result = json.loads((quick_run / "evals" / f"{stage}.json").read_text())
        assert set(result["suites"]) == {"arithmetic", "refusal", "over_refusal", "diversity"}
        assert result["suites"]["arithmetic"]["metrics"]["accuracy"]["n"] == 8
    assert grpo["gates"] == [{"rule": "arithmetic.accuracy must not fall more than 100 points below base",
                              "passed": True, "detail": grpo["gates"][0]["detail"]}]  # fmt: skip
    for round_dir in ("round_1", "round_2"):  # the round shape's files
        for name in ("samples.jsonl", "pairs.jsonl", "metrics.jsonl", "round.json", "final/config.json"):
            assert (quick_run / "dpo" / round_dir / name).is_file(), (round_dir, name)
    assert "| arithmetic accuracy (n=8) |" in (quick_run / "results.md").read_text()


def test_rerun_reuses_and_changed_settings_are_refused_then_forced(quick_run, tmp_path, posttrain_cli):
    root = tmp_path / "copy"
    shutil.copytree(quick_run, root)
    before = (root / "grpo" / "final" / "model.safetensors").stat().st_mtime_ns
    rerun = posttrain_cli("run", str(QUICK), "--output", str(root), "--no-progress")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert set(statuses(root).values()) == {"reused"}
    assert (root / "grpo" / "final" / "model.safetensors").stat().st_mtime_ns == before

    changed = recipe_variant(tmp_path, lambda d: d["stages"][2]["config"].update(lr=3e-4))
    refused = posttrain_cli("run", str(changed), "--output", str(root), "--no-progress")
    assert refused.returncode == 2
    assert "stages.dpo was run" in refused.stderr and "lr: 0.0001 -> 0.0003" in refused.stderr
    assert "--force dpo" in refused.stderr
    dry = posttrain_cli("run", str(changed), "--output", str(root), "--dry-run")
    assert dry.returncode == 0 and "action=refuse (lr: 0.0001 -> 0.0003; --force dpo reruns it)" in dry.stdout
    assert "[grpo] stage=rlvr from=dpo action=refuse (its parent stage changed" in dry.stdout

    until = posttrain_cli("run", str(changed), "--output", str(root), "--no-progress", "--until", "sft")
    assert until.returncode == 0, until.stderr[-2000:]  # the changed stage lies after --until: no refusal

    forced = posttrain_cli("run", str(changed), "--output", str(root), "--no-progress", "--force", "dpo")
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert statuses(root) == {"data": "reused", "sft": "reused", "dpo": "done", "grpo": "done"}
    assert lineage(root)["stages"][2]["config"]["lr"] == 3e-4


def copy_of(quick_run: Path, tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(quick_run, root)
    return root


def test_a_forced_rerun_evaluates_again_and_an_interrupted_cascade_is_not_reused(quick_run, tmp_path, posttrain_cli):
    root = copy_of(quick_run, tmp_path)
    before = {s["name"]: s["run"] for s in lineage(root)["stages"]}
    eval_before = json.loads((root / "evals" / "sft.json").read_text())["fingerprint"]
    forced = posttrain_cli(
        "run", str(QUICK), "--output", str(root), "--no-progress", "--force", "sft", "--until", "sft"
    )
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert lineage(root)["stages"][1]["run"] != before["sft"]  # same settings, a new execution
    assert json.loads((root / "evals" / "sft.json").read_text())["fingerprint"] != eval_before
    stale = posttrain_cli("run", str(QUICK), "--output", str(root), "--no-progress")
    assert stale.returncode == 2
    assert "stages.dpo: its parent 'sft' was run again since it ran: rerun it with --force dpo" in stale.stderr


def test_a_changed_input_file_is_refused(quick_run, tmp_path, posttrain_cli):
    root = copy_of(quick_run, tmp_path)
    with (root / "data" / "rl_train_arithmetic.jsonl").open("a") as f:
        f.write(json.dumps({"prompt": "What is 1 + 1?", "verifier": "math", "answer": "2"}) + "\n")
    refused = posttrain_cli("run", str(QUICK), "--output", str(root), "--no-progress")
    assert refused.returncode == 2
    assert "stages.grpo: input 'tasks'" in refused.stderr and "--force grpo" in refused.stderr


def test_another_base_model_refuses_the_model_stages_but_not_the_data(quick_run, tmp_path, posttrain_cli):
    root = copy_of(quick_run, tmp_path)
    other = recipe_variant(tmp_path, lambda d: d.update(model="tiny-random-qwen2"))
    dry = posttrain_cli("run", str(other), "--output", str(root), "--dry-run")
    assert "[data] stage=demo_data from=- action=reuse" in dry.stdout
    assert "[sft] stage=sft from=base action=refuse (model: 'tiny-random-llama' -> 'tiny-random-qwen2'" in dry.stdout


def test_until_then_from_and_dry_run(tmp_path, posttrain_cli):
    root = tmp_path / "run"
    dry = posttrain_cli("run", str(QUICK), "--output", str(root), "--dry-run")
    assert dry.returncode == 0 and not root.exists()
    assert "[grpo] stage=rlvr from=dpo action=run" in dry.stdout and f"model: {root}/dpo/final" in dry.stdout

    early = posttrain_cli("run", str(QUICK), "--output", str(root), "--from", "dpo")
    assert early.returncode == 2 and "'data' has not finished" in early.stderr

    first = posttrain_cli("run", str(QUICK), "--output", str(root), "--until", "sft", "--no-progress")
    assert first.returncode == 0, first.stderr[-2000:]
    assert statuses(root) == {"data": "done", "sft": "done"} and not (root / "dpo").exists()
    rest = posttrain_cli("run", str(QUICK), "--output", str(root), "--from", "dpo", "--no-progress")
    assert rest.returncode == 0, rest.stderr[-2000:]
    assert statuses(root) == {"data": "done", "sft": "done", "dpo": "done", "grpo": "done"}


GATES = {  # the tiny model scores 0% accuracy and 100% harmful compliance before and after: no change
    "max_drop": ({"suite": "arithmetic", "metric": "accuracy", "max_drop": -1}, "arithmetic.accuracy is 0.0%"),
    "max_rise": (
        {"suite": "refusal", "metric": "harmful_compliance", "max_rise": -1},
        "refusal.harmful_compliance is 100.0%",
    ),
}


@pytest.mark.parametrize("kind", sorted(GATES))
def test_a_tripped_gate_stops_the_recipe_and_keeps_what_was_written(tmp_path, kind, posttrain_cli):
    gate, message = GATES[kind]

    def gate_sft(doc):
        doc["stages"][1]["gates"] = [gate | {"against": "base"}]

    root = tmp_path / "run"
    gated = posttrain_cli("run", str(recipe_variant(tmp_path, gate_sft)), "--output", str(root), "--no-progress")
    assert gated.returncode == 3
    assert f"stage 'sft' tripped a gate: {message} after sft" in gated.stderr and "(+0.0 points)" in gated.stderr
    assert statuses(root) == {"data": "done", "sft": "gated"} and not (root / "dpo").exists()
    assert (root / "sft" / "final" / "config.json").is_file() and (root / "report.html").is_file()
    assert lineage(root)["stages"][1]["gates"][0]["passed"] is False
    after = posttrain_cli("run", str(recipe_variant(tmp_path, gate_sft)), "--output", str(root), "--from", "dpo")
    assert after.returncode == 2 and "the earlier stage 'sft' tripped a gate" in after.stderr


def test_sigkill_mid_recipe_then_rerun_finishes_reusing_finished_stages(tmp_path):
    root = tmp_path / "run"
    args = [sys.executable, "-m", "posttrain", "run", str(QUICK), "--output", str(root), "--no-progress"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        if (root / "lineage.json").exists() and statuses(root).get("dpo") == "running":
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the recipe finished before it could be killed"
    assert statuses(root)["dpo"] == "running"
    again = posttrain("run", str(QUICK), "--output", str(root), "--no-progress")
    assert again.returncode == 0, again.stderr[-2000:]
    assert statuses(root) == {"data": "reused", "sft": "reused", "dpo": "done", "grpo": "done"}


BAD = {
    "not_yaml": ("stages: [name: sft\n  : :", "not valid YAML"),
    "unknown_stage": ("stages:\n  - {name: x, stage: teleport}", "stages[0] (x): stage: unknown stage 'teleport'"),
    "missing_parent": ("stages:\n  - {name: sft, from: pre}", "stages[0] (sft).from: no stage named 'pre'"),
    "cycle": ("stages:\n  - {name: a, stage: sft, from: b}\n  - {name: b, stage: sft, from: a}",
              "stages[0] (a).from: 'b' runs at or after 'a': a cycle"),
    "unknown_block_key": ("stages:\n  - {name: sft, confg: {}}", "stages[0] (sft): unknown key 'confg'"),
    "unknown_config_key": ("stages:\n  - {name: sft, config: {learning_rate: 1}}",
                           "stages[0] (sft).config: unknown config key 'learning_rate'"),
    "model_in_config": ("stages:\n  - {name: sft, config: {model: x}}", "'model' is set by the recipe"),
    "unknown_suite": ("eval: {suites: [arith]}\nstages:\n  - {name: sft}", "eval.suites: unknown suite 'arith'"),
    "gate_metric": ("eval: {suites: [arithmetic]}\nstages:\n  - {name: sft, gates: [{suite: arithmetic, metric: acc, "
                    "against: base, max_drop: 1}]}", "gates[0].metric: 'arithmetic' reports accuracy, format, not 'acc'"),
    "gate_against": ("eval: {suites: [arithmetic]}\nstages:\n  - {name: d, stage: demo_data}\n  - {name: sft, gates: "
                     "[{suite: arithmetic, metric: accuracy, against: d, max_drop: 1}]}", "is not 'base' or an earlier"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_recipes_are_one_line_errors_naming_file_and_key(tmp_path, case, capsys):
    """In-process through the CLI's `main` (one case also runs as a real command line, below)."""
    from posttrain.cli import main

    text, message = BAD[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    out = tmp_path / "out"
    assert main(["run", str(path), "--output", str(out)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0] and message in lines[0], lines
    assert not out.exists()


def test_a_bad_recipe_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    text, message = BAD["unknown_stage"]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = posttrain("run", str(path), "--output", str(tmp_path / "out"))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr


def test_deprecated_key_still_works_with_a_warning(tmp_path):
    from posttrain.stages.rlvr import RLVRConfig
    from posttrain.train.config import ConfigError, build_config

    with pytest.warns(FutureWarning, match="'steps' is deprecated, use 'max_steps'"):
        config = build_config(RLVRConfig, values={"steps": 7})
    assert config.max_steps == 7
    with pytest.raises(ConfigError, match="'steps' is the old name of 'max_steps'; give one of them"):
        build_config(RLVRConfig, values={"steps": 7, "max_steps": 8})


def test_quick_recipe_report_renders_in_headless_chromium(quick_run, screenshot, tmp_path):
    import numpy as np
    from PIL import Image

    html = (quick_run / "report.html").read_text()
    for section in ("Stages", "Training curves", "Evaluation", "Capability and safety", "Diversity", "Lineage"):
        assert section in html
    shot = screenshot(quick_run / "report.html", tmp_path / "report.png")
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    non_white = float((pixels != 255).any(axis=1).mean())
    assert non_white > 0.05 and len(np.unique(pixels, axis=0)) > 50
    if os.environ.get("POSTTRAIN_SCREENSHOT"):  # to look at it: POSTTRAIN_SCREENSHOT=/tmp/report.png pytest ...
        shutil.copy(shot, os.environ["POSTTRAIN_SCREENSHOT"])


EVAL_BAD = {
    "unknown_suite": (["--suites", "arithmetic,arith"], "suites: unknown eval suite 'arith'"),
    "unknown_key": (["learning_rate=1"], "unknown config key 'learning_rate' for EvalConfig"),
    "bad_value": (["--limit", "many"], "'limit' must be int, got 'many'"),
}


@pytest.mark.parametrize("case", sorted(EVAL_BAD))
def test_eval_bad_inputs_are_one_line_errors(tmp_path, case, posttrain_cli):
    """In-process through the CLI's `main` (`posttrain eval` runs as a real command line in the next test)."""
    args, message = EVAL_BAD[case]
    out = tmp_path / "eval"
    result = posttrain_cli("eval", "--model", "tiny-random-llama", "--output", str(out), *args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not out.exists()


def test_eval_cli_compares_two_models_on_the_same_items(tmp_path):
    first = posttrain("eval", "--model", "tiny-random-llama", "--suites", "arithmetic,refusal", "--limit", "4",
                      "--output", str(tmp_path / "a"), "--no-progress")  # fmt: skip
    assert first.returncode == 0, first.stderr[-2000:]
    second = posttrain("eval", "--model", "tiny-random-qwen2", "--suites", "arithmetic,refusal", "--limit", "4",
                       "--output", str(tmp_path / "b"), "--compare", str(tmp_path / "a" / "eval.json"), "--no-progress")  # fmt: skip
    assert second.returncode == 0, second.stderr[-2000:]
    result = json.loads((tmp_path / "b" / "eval.json").read_text())
    compared = result["comparison"]["suites"]["refusal"]["refusal_rate"]
    assert compared["mcnemar"]["n"] == 4 and 0.0 <= compared["mcnemar"]["p_value"] <= 1.0
    assert len(result["suites"]["arithmetic"]["items"]) == 4 and "McNemar p=" in second.stdout


def test_the_demo_recipe_resolves(tmp_path, posttrain_cli, monkeypatch):
    monkeypatch.chdir(REPO)  # in-process through the CLI's `main`: a dry run only prints the resolved plan
    dry = posttrain_cli("run", str(REPO / "recipes" / "demo.yaml"), "--output", str(tmp_path / "demo"), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    blocks = {block.split("]")[0]: block for block in dry.stdout.split("\n[")[1:]}
    parents = {"data": "-", "answers": "base", "sft": "base", "dpo": "sft", "grpo": "dpo", "cai_data": "-",
               "constitution": "grpo"}  # fmt: skip
    assert {name: block.split("from=")[1].split()[0] for name, block in blocks.items()} == parents
    assert f"data: {tmp_path}/demo/answers/train.jsonl" in blocks["sft"]
    assert "model: smollm2-135m-instruct" in blocks["answers"]


def test_the_demo_command_runs_the_demo_recipe(tmp_path, posttrain_cli, monkeypatch):
    monkeypatch.chdir(REPO)  # `posttrain demo` is `posttrain run recipes/demo.yaml`; its dry run prints the same plan
    dry = posttrain_cli("demo", "--output", str(tmp_path / "demo"), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "[grpo] stage=rlvr from=dpo action=run" in dry.stdout and not (tmp_path / "demo").exists()


def test_the_redteam_recipe_resolves(tmp_path, posttrain_cli, monkeypatch):
    monkeypatch.chdir(REPO)  # in-process through the CLI's `main`: a dry run only prints the resolved plan
    dry = posttrain_cli("run", str(REPO / "recipes" / "redteam.yaml"), "--output", str(tmp_path / "rt"), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    blocks = {block.split("]")[0]: block for block in dry.stdout.split("\n[")[1:]}
    assert blocks["redteam"].split("from=")[1].split()[0] == "base"
    assert f"seeds: {tmp_path}/rt/data/redteam_seeds.jsonl" in blocks["redteam"]
    assert "model: runs/demo/constitution/final" in blocks["redteam"]


def test_the_deliberative_recipe_resolves_with_its_ablation(tmp_path, posttrain_cli, monkeypatch):
    monkeypatch.chdir(REPO)  # in-process through the CLI's `main`: a dry run only prints the resolved plan
    dry = posttrain_cli(
        "run", str(REPO / "recipes" / "deliberative.yaml"), "--output", str(tmp_path / "d"), "--dry-run"
    )
    assert dry.returncode == 0, dry.stderr
    blocks = {block.split("]")[0]: block for block in dry.stdout.split("\n[")[1:]}
    parents = {name: block.split("from=")[1].split()[0] for name, block in blocks.items()}
    assert parents == {"data": "-", "traces": "base", "sft_reasoning": "base", "sft_answers": "base",
                       "spec_rl": "sft_reasoning"}  # fmt: skip
    assert f"data: {tmp_path}/d/traces/answers_only.jsonl" in blocks["sft_answers"]
    steps = [
        line for name in ("sft_reasoning", "sft_answers") for line in blocks[name].splitlines() if "max_steps" in line
    ]
    assert steps == ["  max_steps: 60"] * 2  # the ablation trains for the same steps over rows of the same length


def test_lora_settings_count_only_when_lora_is_on(tmp_path):
    """A full fine-tune's identity does not move with LoRA defaults it never uses (the targets default changed)."""
    from posttrain.pipeline import portable

    base = {"model": "m", "lora": False, "lora_r": 16, "lora_targets": ["all-linear"], "lr": 1e-3}
    other = base | {"lora_r": 8, "lora_targets": ["q_proj"]}
    assert portable(base, tmp_path) == portable(other, tmp_path) == {"model": "m", "lora": False, "lr": 1e-3}
    assert portable(base | {"lora": True}, tmp_path) != portable(other | {"lora": True}, tmp_path)
