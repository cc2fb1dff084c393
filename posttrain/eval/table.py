"""The checkpoint table of a recipe run: one row per evaluated metric, one column per checkpoint, 95% intervals."""

from __future__ import annotations

import json
from pathlib import Path

from posttrain.eval.report import load_checkpoints

LABELS = {  # (suite, metric) -> row label, in display order
    ("arithmetic", "accuracy"): "arithmetic accuracy",
    ("arithmetic_rl", "accuracy"): "arithmetic accuracy, RL held-out set",
    ("arithmetic", "format"): "answer-format compliance (\\boxed{})",
    ("refusal", "refusal_rate"): "refusal, held-out AdvBench + Do-Not-Answer",
    ("harmbench", "refusal_rate"): "refusal, HarmBench (never trained on)",
    ("over_refusal", "over_refusal"): "over-refusal, held-out benign look-alikes",
    ("over_refusal_independent", "over_refusal"): "over-refusal, benign requests written apart from training",
    ("over_refusal_framed", "over_refusal"): "over-refusal, the same inside held-out jailbreak frames",
    ("jailbreak_heldout", "harmful_compliance"): "jailbreak success, HarmBench in held-out jailbreak frames",
    ("diversity", "distinct_2"): "distinct-2 (higher: more diverse)",
    ("diversity", "self_bleu"): "self-BLEU (lower: more diverse)",
}


def _cell(rate: dict) -> str:
    if "n" not in rate:
        return f"{rate['value']:.3f}"
    return f"{100 * rate['value']:.1f}% [{100 * rate['ci95_low']:.0f}, {100 * rate['ci95_high']:.0f}]"


def checkpoint_table(root: Path) -> str:
    """A Markdown table of every checkpoint's evaluation; empty when nothing was evaluated."""
    lineage = json.loads((Path(root) / "lineage.json").read_text())
    columns = {c.name: c.eval for c in load_checkpoints(Path(root), lineage) if c.eval}
    if not columns:
        return ""
    rows = []
    for (suite, metric), label in LABELS.items():
        rates = [result["suites"].get(suite, {}).get("metrics", {}).get(metric) for result in columns.values()]
        if any(rates):
            n = next((r["n"] for r in rates if r and "n" in r), None)
            cells = [_cell(r) if r else "-" for r in rates]
            rows.append(f"| {label}{f' (n={n})' if n else ''} | " + " | ".join(cells) + " |")
    header = "| metric | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns)
    return header + "\n" + "\n".join(rows) + "\n"
