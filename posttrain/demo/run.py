"""`posttrain demo`: SFT of SmolLM2-135M-Instruct on the demo mix, with a before/after evaluation table.

Phases, each skipped when its output already exists (so an interrupted demo continues where it stopped):
1. build the data mix (`posttrain.demo.mix`): arithmetic with a boxed answer, refusals of AdvBench and
   Do-Not-Answer prompts, benign look-alikes answered helpfully, general chat; HarmBench held out;
2. evaluate the base model on the held-out sets;
3. SFT (`posttrain.stages.sft`), resuming from a checkpoint if one is there;
4. evaluate the SFT model, then write `report.md` and `results.json` and print the table.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from posttrain.demo.mix import build_demo_data
from posttrain.eval.judges import __doc__ as JUDGE_NOTE
from posttrain.eval.suite import evaluate
from posttrain.models import load_policy
from posttrain.stages import sft
from posttrain.train.config import option, save_config
from posttrain.train.io import atomic_write_json, atomic_write_text

log = logging.getLogger("posttrain.demo")
EVAL_SETS = ("arithmetic_eval", "harmful_eval", "harmbench_eval", "benign_eval")
ROWS = (  # (label, set, metric, higher is better)
    ("arithmetic accuracy", "arithmetic_eval", "accuracy"),
    ("answer-format compliance (\\boxed{})", "arithmetic_eval", "format"),
    ("refusal, held-out AdvBench + Do-Not-Answer", "harmful_eval", "refusal_rate"),
    ("refusal, HarmBench (never trained on)", "harmbench_eval", "refusal_rate"),
    ("over-refusal, held-out benign look-alikes", "benign_eval", "over_refusal"),
)


@dataclass(frozen=True)
class DemoConfig:
    output: str = option("runs/demo", "demo run directory")
    model: str = option("smollm2-135m-instruct", "the model to post-train")
    seed: int = option(0, "seed for the data mix and training")
    sft_epochs: int = option(2, "SFT passes over the mix")
    sft_lr: float = option(1e-4, "SFT peak learning rate")
    sft_rows_per_batch: int = option(4, "packed rows per SFT step")
    sft_max_length: int = option(384, "SFT packed row length in tokens")
    precision: str = option("auto", "auto (bf16 autocast where supported), bf16 or fp32")
    progress: bool = option(True, "show progress bars")


def _evaluate(spec: str, sets: dict[str, Path], out: Path, progress: bool) -> dict:
    if out.exists():
        return json.loads(out.read_text())
    model, tokenizer = load_policy(spec)
    results = evaluate(model, tokenizer, {name: str(sets[name]) for name in EVAL_SETS}, progress=progress)
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
    return header + body


def run(config: DemoConfig) -> Path:
    """Run every phase; returns the report path."""
    out = Path(config.output)
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
    timings["total"] = time.perf_counter() - started

    table = render_table({"base": base, "SFT": after_sft})
    report = _report(config, table, timings, base, after_sft)
    atomic_write_text(out / "report.md", report)
    atomic_write_json(out / "results.json", {"base": base, "sft": after_sft, "timings_s": timings,
                                             "config": dataclasses.asdict(config)})  # fmt: skip
    print(table)
    print(f"phase timings (s): {', '.join(f'{k} {v:.0f}' for k, v in timings.items())}")
    print(f"report: {out / 'report.md'}")
    return out / "report.md"


def _report(config: DemoConfig, table: str, timings: dict, base: dict, after_sft: dict) -> str:
    samples = "\n".join(
        f"- **{name}**: _{s['prompt'][:100]}_ → base: {base[name]['samples'][i]['reply'][:160]!r} → "
        f"SFT: {s['reply'][:160]!r}"
        for name in EVAL_SETS
        for i, s in enumerate(after_sft[name]["samples"][:1])
    )
    return (
        f"# posttrain demo: {config.model}\n\n{table}\n"
        "Greedy decoding with bf16 weights; rates with 95% Wilson intervals.\n\n"
        f"## The refusal judge\n{JUDGE_NOTE.strip()}\n\n"
        f"## Timings (seconds)\n{json.dumps({k: round(v, 1) for k, v in timings.items()})}\n\n"
        f"## Samples\n{samples}\n"
    )
