"""`posttrain guard`: train the activation-probe guard of a policy and measure it.

1. requests: harmful ones (the constitution's `must_not_help` examples and the demo mix's AdvBench / Do-Not-Answer
   training prompts) and harmless ones (its `harmless_neighbours` and the mix's benign look-alikes and everyday
   requests), or the user's files; HarmBench near-duplicates dropped;
2. examples: every request in every augmentation family (`posttrain.safety.guard_data`), split by request into
   train / dev / test, with whole families held out;
3. features: the policy's hidden states at `layers`, averaged over the prompt's tokens (`posttrain.safety.guard`);
4. a logistic probe on train, its threshold calibrated on dev's harmless examples to `fpr`;
5. `guard_eval.json`: ROC-AUC and the true-positive rate at 1% and 2% false-positive rate on test (in distribution),
   and at the calibrated threshold on the held-out families, with the false-positive rates there; the guard in
   `guard/`.

Not yet: the sentence-embedding classifier to compare with, the cascade, the end-to-end over-refusal and the
held-out jailbreak family through a guarded model, the guard's overhead (issue #11).

Launch:
    posttrain guard --model runs/demo/grpo/final --output runs/guard
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from posttrain.data.heldout import drop_heldout_near_duplicates
from posttrain.io import atomic_write_json
from posttrain.models import load_policy
from posttrain.render import render_prompt
from posttrain.safety.constitution import load_constitution
from posttrain.safety.guard import Guard, calibrate, prefix_features, roc_auc, tpr_at_fpr, train_probe
from posttrain.safety.guard_data import GuardExample, guard_examples, jailbreak_templates, split_examples
from posttrain.train.config import option

HARMFUL_SOURCES = ("refusal_advbench", "refusal_dna")  # demo-mix training rows whose prompts must be refused
HARMLESS_SOURCES = ("benign", "everyday")  # demo-mix training rows whose prompts must be answered


@dataclass(frozen=True)
class GuardConfig:
    model: str = option("smollm2-135m-instruct", "the policy whose activations the probe reads")
    output: str = option("runs/guard", "run directory: guard/ and guard_eval.json")
    constitution: str = option("", "constitution YAML whose categories give examples; empty: posttrain's default")
    harmful: str = option("", "a text file of harmful requests, one per line; empty: the constitution and demo mix")
    harmless: str = option("", "a text file of harmless requests, one per line; empty: the constitution and demo mix")
    max_requests: int = option(0, "use at most this many requests of each label; 0: all")
    layers: tuple[str, ...] = option(("auto",), "hidden-state layers the probe reads; auto: the middle and 3/4 depth")
    fpr: float = option(0.02, "false-positive rate the threshold is calibrated to on the dev split")
    every: int = option(8, "the streaming output guard's check interval in tokens")
    heldout_families: tuple[str, ...] = option(("prefix_injection", "splitting"), "families never trained on")
    seed: int = option(0, "seed for wrappers, templates and splits")
    progress: bool = option(True, "show a progress bar")


def requests(config: GuardConfig) -> tuple[list[str], list[str]]:
    """(harmful, harmless) requests: the user's files, else the constitution's examples and the demo mix's prompts."""
    if config.harmful and config.harmless:
        harmful, harmless = (_lines(config.harmful), _lines(config.harmless))
    else:
        constitution = load_constitution(config.constitution or None)
        harmful = [e for c in constitution.categories for e in c.must_not_help] + _mix_prompts(HARMFUL_SOURCES)
        harmless = [e for c in constitution.categories for e in c.harmless_neighbours] + _mix_prompts(HARMLESS_SOURCES)
    harmful, harmless = (_clean(r, config.max_requests) for r in (harmful, harmless))
    return harmful, harmless


def _lines(path: str) -> list[str]:
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def _mix_prompts(sources: tuple[str, ...]) -> list[str]:
    from posttrain.demo.mix import build_demo_data

    with tempfile.TemporaryDirectory() as tmp:
        rows = [json.loads(line) for line in build_demo_data(Path(tmp))["train"].read_text().splitlines()]
    return [row["messages"][0]["content"] for row in rows if row.get("source") in sources]


def _clean(texts: list[str], limit: int) -> list[str]:
    unique = list(dict.fromkeys(texts))
    kept, _ = drop_heldout_near_duplicates(unique)
    kept_texts = [unique[i] for i in kept]
    return kept_texts[:limit] if limit else kept_texts


def resolve_layers(layers: tuple[str, ...], model) -> tuple[int, ...]:
    """The layer indices: given, or the middle and three-quarter depth of the model."""
    if tuple(layers) != ("auto",):
        return tuple(int(layer) for layer in layers)
    depth = model.config.num_hidden_layers
    return tuple(sorted({max(1, depth // 2), max(1, 3 * depth // 4)}))


def features(model, tokenizer, examples: list[GuardExample], layers, progress: bool) -> torch.Tensor:
    """(N, L*H) prompt features of the examples, each rendered as one user turn."""
    rows = []
    for example in tqdm(examples, desc="guard features", disable=not progress, unit="text"):
        ids = render_prompt(tokenizer, [{"role": "user", "content": example.text}])
        rows.append(prefix_features(model, ids, layers)[-1])
    return torch.stack(rows)


def measure(guard: Guard, splits: dict, scores: dict[str, torch.Tensor]) -> dict:
    """The guard's metrics on test (in distribution) and on the held-out families, by family too."""
    out = {}
    for name in ("test", "heldout_families"):
        labels = torch.tensor([e.label for e in splits[name]])
        if not len(labels) or labels.min() == labels.max():
            continue
        flagged = scores[name] > guard.threshold
        out[name] = {
            "n": len(labels),
            "roc_auc": roc_auc(scores[name], labels),
            "tpr_at_1pct_fpr": tpr_at_fpr(scores[name], labels, 0.01),
            "tpr_at_2pct_fpr": tpr_at_fpr(scores[name], labels, 0.02),
            "tpr_at_threshold": float(flagged[labels == 1].double().mean()),
            "fpr_at_threshold": float(flagged[labels == 0].double().mean()),
        }
    return out


def run(config: GuardConfig) -> Path:
    """Train, calibrate, measure and save the guard; returns its directory."""
    harmful, harmless = requests(config)
    examples = guard_examples(harmful, harmless, jailbreak_templates(), config.seed)
    splits = split_examples(examples, config.heldout_families, config.seed)
    model, tokenizer = load_policy(config.model)
    model.eval()
    layers = resolve_layers(config.layers, model)
    feats = {name: features(model, tokenizer, rows, layers, config.progress) for name, rows in splits.items() if rows}
    train_labels = torch.tensor([e.label for e in splits["train"]], dtype=torch.float32)
    probe = train_probe(feats["train"], train_labels)
    scores = {name: probe.scores(x) for name, x in feats.items()}
    dev_harmless = scores["dev"][torch.tensor([e.label == 0 for e in splits["dev"]])]
    guard = Guard(probe, layers, calibrate(dev_harmless, config.fpr), config.every)
    out = Path(config.output)
    guard.save(out / "guard")
    counts = {name: {"examples": len(rows), "harmful": sum(e.label for e in rows)} for name, rows in splits.items()}
    atomic_write_json(
        out / "guard_eval.json",
        {
            "model": config.model,
            "layers": list(layers),
            "fpr": config.fpr,
            "threshold": guard.threshold,
            "heldout_families": list(config.heldout_families),
            "requests": {"harmful": len(harmful), "harmless": len(harmless)},
            "splits": counts,
            "metrics": measure(guard, splits, scores),
        },
    )
    return out / "guard"
