"""`posttrain demo`: SFT, iterated DPO, then GRPO of SmolLM2-135M-Instruct, with a before/after evaluation table.

Phases, each skipped when its output already exists (so an interrupted demo continues where it stopped):
1. build the data mix (`posttrain.demo.mix`): arithmetic with a boxed answer, refusals of AdvBench and
   Do-Not-Answer prompts, benign look-alikes and everyday requests answered helpfully, general chat;
   HarmBench held out;
2. evaluate the base model on the held-out sets;
3. SFT (`posttrain.stages.sft`), resuming from a checkpoint if one is there; evaluate;
4. `dpo_rounds` rounds of iterated DPO (`posttrain.stages.preference`) on training arithmetic prompts, judged by
   the boxed-answer verifier; evaluate;
5. GRPO (`posttrain.stages.rlvr`) on the mix's RL arithmetic prompts, rewarded by `MathVerifier`, for
   `grpo_steps` steps; evaluate; reward, entropy and length curves go to `grpo/curves.png`;
6. write `report.md` and `results.json` and print the table.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from posttrain.demo.mix import build_demo_data
from posttrain.eval.judges import __doc__ as JUDGE_NOTE
from posttrain.eval.suite import evaluate
from posttrain.io import atomic_write_json, atomic_write_text
from posttrain.models import load_policy
from posttrain.stages import preference, rlvr, sft
from posttrain.text import boxed_contents
from posttrain.train.config import config_to_dict, option, save_config

log = logging.getLogger("posttrain.demo")
EVAL_SETS = ("arithmetic_eval", "rl_eval", "harmful_eval", "harmbench_eval", "benign_eval")
ROWS = (  # (label, set, metric)
    ("arithmetic accuracy", "arithmetic_eval", "accuracy"),
    ("arithmetic accuracy, RL held-out set", "rl_eval", "accuracy"),
    ("answer-format compliance (\\boxed{})", "arithmetic_eval", "format"),
    ("refusal, held-out AdvBench + Do-Not-Answer", "harmful_eval", "refusal_rate"),
    ("refusal, HarmBench (never trained on)", "harmbench_eval", "refusal_rate"),
    ("over-refusal, held-out benign look-alikes", "benign_eval", "over_refusal"),
)
DIVERSITY_ROWS = (("distinct-2 (higher: more diverse)", "distinct_2"), ("self-BLEU (lower: more diverse)", "self_bleu"))


@dataclass(frozen=True)
class DemoConfig:
    output: str = option("runs/demo", "demo run directory")
    model: str = option("smollm2-135m-instruct", "the model to post-train")
    seed: int = option(0, "seed for the data mix and training")
    sft_epochs: int = option(2, "SFT passes over the mix")
    sft_lr: float = option(1e-4, "SFT peak learning rate")
    sft_rows_per_batch: int = option(4, "packed rows per SFT step")
    sft_max_length: int = option(384, "SFT packed row length in tokens")
    dpo_rounds: int = option(2, "iterated DPO rounds after SFT (0: skip)")
    dpo_prompts: int = option(64, "training arithmetic prompts sampled per round")
    dpo_samples: int = option(4, "completions per prompt per round")
    dpo_lr: float = option(1e-6, "DPO peak learning rate")
    dpo_beta: float = option(0.1, "DPO beta")
    dpo_epochs: int = option(2, "passes over each round's pairs")
    grpo_steps: int = option(40, "GRPO steps after DPO (0: skip)")
    grpo_prompts: int = option(8, "prompts per GRPO step")
    grpo_samples: int = option(8, "completions per prompt (the group size)")
    grpo_lr: float = option(5e-6, "GRPO learning rate")
    grpo_temperature: float = option(1.3, "GRPO sampling temperature")
    grpo_max_new_tokens: int = option(96, "GRPO completion length cap")
    precision: str = option("auto", "auto (bf16 autocast where supported), bf16 or fp32")
    progress: bool = option(True, "show progress bars")


def _evaluate(spec: str, sets: dict[str, Path], out: Path, progress: bool) -> dict:
    """The held-out results of one checkpoint, cached in `out`; sets added since the cache was written are run."""
    results = json.loads(out.read_text()) if out.exists() else {}
    missing = {name: str(sets[name]) for name in EVAL_SETS if name not in results}
    if not missing:
        return results
    model, tokenizer = load_policy(spec)
    diversity_set = "benign_eval" if "benign_eval" in missing else ""
    results |= evaluate(model, tokenizer, missing, progress=progress, diversity_set=diversity_set)
    atomic_write_json(out, results)
    return results


def _cell(result: dict) -> str:
    return f"{100 * result['value']:.1f}% [{100 * result['ci95_low']:.0f}, {100 * result['ci95_high']:.0f}]"


def render_table(columns: dict[str, dict]) -> str:
    """A Markdown table: one row per metric, one column per checkpoint, with 95% intervals."""
    header = "| metric | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns) + "\n"
    body = ""
    for label, set_name, metric in ROWS:
        cells = [_cell(results[set_name][metric]) for results in columns.values()]
        n = next(iter(columns.values()))[set_name][metric]["n"]
        body += f"| {label} (n={n}) | " + " | ".join(cells) + " |\n"
    for label, metric in DIVERSITY_ROWS:
        cells = [f"{results['diversity'][metric]:.3f}" for results in columns.values()]
        body += f"| {label} | " + " | ".join(cells) + " |\n"
    return header + body


def arithmetic_prompts(train: Path, out: Path, n: int, seed: int) -> Path:
    """An rl-schema file of `n` training arithmetic prompts (answer read from the boxed training answer)."""
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    math_rows = [r for r in rows if r.get("source") in ("arithmetic", "word_problem")]
    random.Random(seed).shuffle(math_rows)
    tasks = []
    for row in math_rows[:n]:
        answer = boxed_contents(row["messages"][-1]["content"])[-1]
        tasks.append({"prompt": row["messages"][0]["content"], "verifier": "math", "answer": answer})
    atomic_write_text(out, "".join(json.dumps(t) + "\n" for t in tasks))
    return out


def _check_same_config(config: DemoConfig, path: Path) -> None:
    """Phases are reused from an earlier run in the same output, so that run must have had the same config."""
    if not path.exists():
        return
    before = yaml.safe_load(path.read_text()) or {}
    now = config_to_dict(config)
    # A key the earlier run did not have belongs to a phase added since, which that run never reached.
    changed = sorted(k for k in now if k != "progress" and k in before and before[k] != now[k])
    if changed:
        raise FileExistsError(f"{path.parent} holds a demo run with other settings ({', '.join(changed)}): its "
                              "finished phases would be reused; choose another --output")  # fmt: skip


def run(config: DemoConfig) -> Path:
    """Run every phase; returns the report path."""
    out = Path(config.output)
    _check_same_config(config, out / "demo_config.yaml")
    save_config(config, out / "demo_config.yaml")
    timings = {}
    started = time.perf_counter()
    sets = build_demo_data(out / "data", seed=config.seed)
    timings["data"] = time.perf_counter() - started

    phase = time.perf_counter()
    base = _evaluate(config.model, sets, out / "eval_base.json", config.progress)
    timings["eval_base"] = time.perf_counter() - phase

    phase = time.perf_counter()
    sft_dir = out / "sft"
    final = sft_dir / "final"
    if not (final / "config.json").is_file():
        sft_config = sft.SFTConfig(
            model=config.model, data=str(sets["train"]), eval_data=str(sets["sft_eval"]), output=str(sft_dir),
            max_length=config.sft_max_length, rows_per_batch=config.sft_rows_per_batch, epochs=config.sft_epochs,
            lr=config.sft_lr, eval_every=0, save_every=10, keep_last=1, resume=True, seed=config.seed,
            precision=config.precision, progress=config.progress,
        )  # fmt: skip
        sft.run(sft_config)
    timings["sft"] = time.perf_counter() - phase

    phase = time.perf_counter()
    after_sft = _evaluate(str(final), sets, out / "eval_sft.json", config.progress)
    timings["eval_sft"] = time.perf_counter() - phase
    columns = {"base": base, "SFT": after_sft}

    if config.dpo_rounds:
        phase = time.perf_counter()
        dpo_final = _iterated_dpo(config, sets, final, out)
        timings["dpo"] = time.perf_counter() - phase
        phase = time.perf_counter()
        columns[f"SFT + DPO x{config.dpo_rounds}"] = _evaluate(str(dpo_final), sets, out / "eval_dpo.json",
                                                               config.progress)  # fmt: skip
        timings["eval_dpo"] = time.perf_counter() - phase
    if config.grpo_steps:
        start = dpo_final if config.dpo_rounds else final
        phase = time.perf_counter()
        grpo_final = _grpo(config, sets, start, out)
        timings["grpo"] = time.perf_counter() - phase
        phase = time.perf_counter()
        columns["+ GRPO"] = _evaluate(str(grpo_final), sets, out / "eval_grpo.json", config.progress)
        timings["eval_grpo"] = time.perf_counter() - phase
    timings["total"] = time.perf_counter() - started

    table = render_table(columns)
    report = _report(config, table, timings, columns)
    atomic_write_text(out / "report.md", report)
    atomic_write_json(out / "results.json", {"columns": columns, "timings_s": timings,
                                             "config": dataclasses.asdict(config)})  # fmt: skip
    print(table)
    print(f"phase timings (s): {', '.join(f'{k} {v:.0f}' for k, v in timings.items())}")
    print(f"report: {out / 'report.md'}")
    return out / "report.md"


def _iterated_dpo(config: DemoConfig, sets: dict[str, Path], sft_final: Path, out: Path) -> Path:
    dpo_dir = out / "dpo"
    if (dpo_dir / "final" / "config.json").is_file():
        return dpo_dir / "final"
    prompts = arithmetic_prompts(sets["train"], out / "data" / "dpo_prompts.jsonl", config.dpo_prompts, config.seed)
    dpo_config = preference.PreferenceConfig(
        model=str(sft_final), output=str(dpo_dir), method="dpo", beta=config.dpo_beta, lr=config.dpo_lr,
        epochs=config.dpo_epochs, max_length=config.sft_max_length, rows_per_batch=config.sft_rows_per_batch,
        rounds=config.dpo_rounds, prompts=str(prompts), samples_per_prompt=config.dpo_samples, temperature=1.0,
        max_new_tokens=128, judge="math", min_margin=0.5, resume=True, seed=config.seed,
        precision=config.precision, progress=config.progress,
    )  # fmt: skip
    return preference.run(dpo_config)


def _grpo(config: DemoConfig, sets: dict[str, Path], start: Path, out: Path) -> Path:
    grpo_dir = out / "grpo"
    if (grpo_dir / "final" / "config.json").is_file():
        return grpo_dir / "final"
    grpo_config = rlvr.RLVRConfig(
        model=str(start), tasks=str(sets["rl_train"]), output=str(grpo_dir), loss="grpo", max_steps=config.grpo_steps,
        prompts_per_step=config.grpo_prompts, samples_per_prompt=config.grpo_samples,
        max_new_tokens=config.grpo_max_new_tokens, lr=config.grpo_lr, temperature=config.grpo_temperature,
        dynamic_sampling=True, save_every=5, keep_last=1, resume=True,
        seed=config.seed, precision=config.precision, progress=config.progress,
    )  # fmt: skip
    return rlvr.run(grpo_config)


def _grpo_summary(grpo_dir: Path) -> str:
    """Steps, time split and first/last reward of the GRPO run, and its curves."""
    rows = [json.loads(line) for line in (grpo_dir / "metrics.jsonl").read_text().splitlines()]

    def mean(key: str, part: list[dict]) -> float:
        return sum(r[key] for r in part) / len(part)

    return (
        f"{len(rows)} steps in {sum(r['step_time_s'] for r in rows):.0f} s (generation "
        f"{100 * mean('generation_fraction', rows):.0f}% of the step time; dynamic sampling dropped "
        f"{100 * mean('dropped_fraction', rows):.0f}% of the first-round groups); mean training reward "
        f"{mean('reward_mean', rows[:5]):.2f} over the first 5 steps, {mean('reward_mean', rows[-5:]):.2f} over the "
        f"last 5; entropy {mean('entropy', rows[:5]):.3f} -> {mean('entropy', rows[-5:]):.3f}.\n\n"
        "![GRPO reward, entropy and response length](grpo/curves.png)"
    )


def _report(config: DemoConfig, table: str, timings: dict, columns: dict) -> str:
    samples = "\n".join(
        f"- **{name}**: _{columns['base'][name]['samples'][0]['prompt'][:100]}_ → "
        + " → ".join(f"{label}: {result[name]['samples'][0]['reply'][:160]!r}" for label, result in columns.items())
        for name in EVAL_SETS
    )
    return (
        f"# posttrain demo: {config.model}\n\n{table}\n"
        "Greedy decoding with bf16 weights; rates with 95% Wilson intervals.\n\n"
        f"## The refusal judge\n{JUDGE_NOTE.strip()}\n\n"
        f"## Timings (seconds)\n{json.dumps({k: round(v, 1) for k, v in timings.items()})}\n\n"
        + (f"## GRPO\n{_grpo_summary(Path(config.output) / 'grpo')}\n\n" if config.grpo_steps else "")
        + f"## Samples\n{samples}\n"
    )
