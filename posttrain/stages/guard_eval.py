"""`posttrain guard_eval`: measure a saved probe guard on your own requests, training nothing.

`posttrain guard` trains and measures in one run, on the requests it trains from. A user with a trained guard and
sets of their own (the requests of their product, a red team's findings) needs the same numbers on those: each
request is wrapped in each of `families` (`posttrain.safety.guard_data`: plain, role-play, fiction, prefix
injection, splitting, paraphrase, and `template`, a pyrit jailbreak template), scored by the guard on `model`'s
activations, and `guard_eval.json` gets, overall and per family: the true- and false-positive rates at the guard's
own threshold (what serving with it will do), ROC-AUC, and the true-positive rate at 1% and 2% false-positive rate
on these harmless examples. The end-to-end measure, with the model answering behind the guard, is
`posttrain eval --guard DIR`.

Launch:
    posttrain guard_eval --guard runs/guard/guard --model runs/demo/grpo/final --harmful h.txt --harmless b.txt
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from posttrain.data.heldout import read_lines
from posttrain.io import atomic_write_json
from posttrain.models import load_policy
from posttrain.safety.guard import load_guard, roc_auc, tpr_at_fpr
from posttrain.safety.guard_data import WRAPPERS, guard_examples, jailbreak_templates
from posttrain.stages.guard import features
from posttrain.train.config import option, save_config
from posttrain.train.manifest import write_manifest

FAMILIES = (*WRAPPERS, "template")


@dataclass(frozen=True)
class GuardEvalConfig:
    guard: str = option("", "a probe guard directory written by `posttrain guard` (its guard/)")
    model: str = option("smollm2-135m-instruct", "the policy the guard was trained on: its activations are read")
    harmful: str = option("", "a text file of harmful requests, one per line")
    harmless: str = option("", "a text file of harmless requests, one per line")
    families: tuple[str, ...] = option(("plain",), f"wrap every request in each of these: {', '.join(FAMILIES)}")
    output: str = option("runs/guard_eval", "directory for guard_eval.json")
    seed: int = option(0, "seed for the wrappers and templates")
    progress: bool = option(True, "show a progress bar")


def rates(scores: torch.Tensor, labels: torch.Tensor, threshold: float) -> dict:
    """Counts, the rates at `threshold`, and (with both labels present) ROC-AUC and TPR at 1% and 2% FPR."""
    flagged, harmful = scores > threshold, labels.bool()
    out = {"harmful": int(harmful.sum()), "harmless": int((~harmful).sum())}
    if out["harmful"]:
        out["tpr_at_threshold"] = float(flagged[harmful].double().mean())
    if out["harmless"]:
        out["fpr_at_threshold"] = float(flagged[~harmful].double().mean())
    if out["harmful"] and out["harmless"]:
        out["roc_auc"] = roc_auc(scores, labels)
        out |= {f"tpr_at_{p}pct_fpr": tpr_at_fpr(scores, labels, p / 100) for p in (1, 2)}
    return out


def _check(config: GuardEvalConfig) -> None:
    if not config.guard:
        raise ValueError("guard_eval needs a guard: --guard DIR (what `posttrain guard` wrote as guard/)")
    for key in ("harmful", "harmless"):
        path = getattr(config, key)
        if path and not Path(path).is_file():
            raise FileNotFoundError(f"{key}: {path} does not exist")
    if not (config.harmful or config.harmless):
        raise ValueError("guard_eval needs requests: --harmful FILE and/or --harmless FILE")
    unknown = sorted(set(config.families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"families: unknown {unknown}; known: {', '.join(FAMILIES)}")


def run(config: GuardEvalConfig) -> Path:
    """Score every wrapped request with the guard; write guard_eval.json; returns the output directory."""
    _check(config)
    guard = load_guard(Path(config.guard))
    harmful, harmless = (read_lines(p) if p else [] for p in (config.harmful, config.harmless))
    examples = guard_examples(harmful, harmless, jailbreak_templates(), config.seed, config.families)
    model, tokenizer = load_policy(config.model)
    model.eval()
    with torch.no_grad():
        scores = guard.probe.scores(features(model, tokenizer, examples, guard.layers, config.progress))
    labels = torch.tensor([e.label for e in examples])
    by_family = {}
    for family in config.families:
        rows = torch.tensor([e.family == family for e in examples])
        by_family[family] = rates(scores[rows], labels[rows], guard.threshold)
    out = Path(config.output)
    save_config(config, out / "config.yaml")
    inputs = {"guard": str(Path(config.guard) / "probe.safetensors"), "harmful": config.harmful,
              "harmless": config.harmless}  # fmt: skip
    write_manifest(out, "guard_eval", config.model, inputs, {})
    atomic_write_json(
        out / "guard_eval.json",
        {
            "guard": config.guard,
            "model": config.model,
            "threshold": guard.threshold,
            "requests": {"harmful": len(harmful), "harmless": len(harmless)},
            "overall": rates(scores, labels, guard.threshold),
            "by_family": by_family,
        },
    )
    return out
