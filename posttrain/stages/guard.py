"""`posttrain guard`: train the guard of a policy from two feature sources and their cascade, and compare them.

1. requests: harmful ones (the constitution's `must_not_help` examples and the demo mix's AdvBench / Do-Not-Answer
   training prompts) and harmless ones (its `harmless_neighbours` and the mix's benign look-alikes and everyday
   requests), or the user's files; HarmBench near-duplicates dropped;
2. examples: every request in every augmentation family (`posttrain.safety.guard_data`), split by request into
   train / dev / test, with whole families held out;
3. features, from the same examples: the policy's hidden states at `layers`, averaged over the prompt's tokens
   (`posttrain.safety.guard`), and the text's sentence embedding (`posttrain.safety.embedding`);
4. a logistic probe on each (`probe`, `embedding`), trained on train and calibrated on dev's harmless examples to
   `fpr`, and the `cascade`: the probe decides, escalating the texts in its dev-calibrated uncertainty band to the
   second stage (`posttrain.safety.cascade`);
5. `guard_eval.json`, by source: ROC-AUC and the true-positive rate at 1% and 2% false-positive rate on test (in
   distribution) and on the held-out families, with the true- and false-positive rates at the dev threshold; the same
   averaged over `cv_folds` folds of requests (one test split holds too few requests to choose between sources,
   `posttrain.safety.compare`); the share the cascade escalates; each source's measured cost per example. The probe
   guard in `guard/` (what `posttrain chat`, `serve` and `eval --guard` load), the embedding guard in
   `embedding_guard/`, the cascade's band in `cascade.json`.

A saved guard is measured on other requests by `posttrain guard_eval`, and end to end, with the model answering
behind it, by `posttrain eval --guard DIR`.

Launch:
    posttrain guard --model runs/demo/grpo/final --output runs/guard
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from posttrain.data.heldout import drop_heldout_near_duplicates, read_lines
from posttrain.gate import DecontaminationOptions
from posttrain.io import atomic_write_json
from posttrain.models import load_policy
from posttrain.render import render_prompt
from posttrain.safety.cascade import SECOND_STAGES
from posttrain.safety.compare import (
    SOURCES,
    Features,
    Fitted,
    concat,
    cross_validate,
    fit_sources,
    measure_sources,
)
from posttrain.safety.constitution import load_constitution
from posttrain.safety.embedding import EmbeddingGuard, embed, load_encoder
from posttrain.safety.guard import Guard, mean_features
from posttrain.safety.guard_data import GuardExample, guard_examples, jailbreak_templates, split_examples
from posttrain.train.config import option

HARMFUL_SOURCES = ("refusal_advbench", "refusal_dna")  # demo-mix training rows whose prompts must be refused
HARMLESS_SOURCES = ("benign", "everyday")  # demo-mix training rows whose prompts must be answered


@dataclass(frozen=True)
class GuardConfig(DecontaminationOptions):
    model: str = option("smollm2-135m-instruct", "the policy whose activations the probe reads")
    output: str = option("runs/guard", "run directory: guard/, embedding_guard/, cascade.json, guard_eval.json")
    constitution: str = option("", "constitution YAML whose categories give examples; empty: posttrain's default")
    harmful: str = option("", "a text file of harmful requests, one per line; empty: the constitution and demo mix")
    harmless: str = option("", "a text file of harmless requests, one per line; empty: the constitution and demo mix")
    max_requests: int = option(0, "use at most this many requests of each label; 0: all")
    layers: tuple[str, ...] = option(("auto",), "hidden-state layers the probe reads; auto: the middle and 3/4 depth")
    fpr: float = option(0.02, "false-positive rate the threshold is calibrated to on the dev split")
    probe_l2: float = option(1e-2, "L2 strength of the probe on hidden states")
    embedding_l2: float = option(3e-2, "L2 strength of the classifier on sentence embeddings")
    cascade_miss: float = option(0.05, "share of dev's harmful texts the probe may pass without escalating")
    cascade_second: str = option("mean", f"what escalated texts are scored by: {', '.join(SECOND_STAGES)}")
    cv_folds: int = option(5, "folds of requests over train+dev+test for the cross-validated comparison; 0: none")
    every: int = option(8, "the streaming output guard's check interval in tokens")
    heldout_families: tuple[str, ...] = option(("prefix_injection", "splitting"), "families never trained on")
    seed: int = option(0, "seed for wrappers, templates and splits")
    progress: bool = option(True, "show a progress bar")


def requests(config: GuardConfig) -> tuple[list[str], list[str]]:
    """(harmful, harmless) requests: the user's files, else the constitution's examples and the demo mix's prompts."""
    if config.harmful and config.harmless:
        harmful, harmless = (read_lines(config.harmful), read_lines(config.harmless))
    else:
        constitution = load_constitution(config.constitution or None)
        harmful = [e for c in constitution.categories for e in c.must_not_help] + _mix_prompts(HARMFUL_SOURCES)
        harmless = [e for c in constitution.categories for e in c.harmless_neighbours] + _mix_prompts(HARMLESS_SOURCES)
    harmful, harmless = (_clean(r, config.max_requests) for r in (harmful, harmless))
    return harmful, harmless


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


def features(model, tokenizer, examples: list[GuardExample], layers, progress: bool, chunk: int = 64) -> torch.Tensor:
    """(N, L*H) prompt features of the examples, each rendered as one user turn (in padded batches)."""
    ids = [render_prompt(tokenizer, [{"role": "user", "content": e.text}]) for e in examples]
    starts = tqdm(range(0, len(ids), chunk), desc="guard features", disable=not progress, unit="chunk")
    parts = [mean_features(model, ids[i : i + chunk], layers) for i in starts]
    return torch.cat(parts) if parts else torch.zeros(0, len(layers) * model.config.hidden_size)


def timed(fn, *args) -> tuple[object, float]:
    """fn(*args) and the seconds it took."""
    start = time.perf_counter()
    return fn(*args), time.perf_counter() - start


def both_sources(config: GuardConfig, model, tokenizer, splits: dict, layers) -> tuple[dict[str, Features], dict]:
    """Every split's features from both sources, and the seconds per example each source took to compute them."""
    out, seconds = {}, {"probe": 0.0, "embedding": 0.0}
    load_encoder()  # loaded before the clock starts, as a served guard would be
    for name, rows in splits.items():
        if rows:
            probe, probe_s = timed(features, model, tokenizer, rows, layers, config.progress)
            embedding, embedding_s = timed(embed, [e.text for e in rows])
            out[name] = Features(probe, embedding, torch.tensor([e.label for e in rows]))
            seconds["probe"] += probe_s
            seconds["embedding"] += embedding_s
    examples = sum(len(rows) for rows in splits.values())
    return out, {source: s / examples for source, s in seconds.items()}


def costs(fitted: Fitted, data: Features, feature_seconds: dict[str, float]) -> dict:
    """Seconds per example of each source: its features (a forward pass of the policy, or of the sentence encoder in
    batches of 32) and its classifier; `served` for the probe when the policy's own prefill gives the features, as in
    guarded generation; for the cascade, the probe plus the escalated share of the embedding classifier."""
    n = len(data.labels)
    probe_N, probe_s = timed(fitted.probe.scores, data.probe)
    _, embedding_s = timed(fitted.embedding.scores, data.embedding)
    escalated = float(fitted.cascade.escalated(probe_N).double().mean())
    probe_served = probe_s / n
    probe = feature_seconds["probe"] + probe_served
    embedding = feature_seconds["embedding"] + embedding_s / n
    return {
        "probe": {"seconds_per_example": probe, "served_seconds_per_example": probe_served},
        "embedding": {"seconds_per_example": embedding},
        "cascade": {
            "seconds_per_example": probe + escalated * embedding,
            "served_seconds_per_example": probe_served + escalated * embedding,
            "escalated": escalated,
        },
    }


def fit_options(config: GuardConfig) -> dict:
    """The keyword arguments of `fit_sources` from the config."""
    return {
        "fpr": config.fpr,
        "miss": config.cascade_miss,
        "second": config.cascade_second,
        "probe_l2": config.probe_l2,
        "embedding_l2": config.embedding_l2,
    }


def compare(config: GuardConfig, fitted: Fitted, splits: dict, feats: dict[str, Features]) -> dict:
    """Every source's metrics on test and on the held-out families, and cross-validated over the requests."""
    by_split = {name: measure_sources(fitted, feats[name]) for name in ("test", "heldout_families") if name in feats}
    metrics = {source: {name: m[source] for name, m in by_split.items() if m[source]} for source in SOURCES}
    if not config.cv_folds:
        return {"metrics": metrics}
    names = ("train", "dev", "test")
    pooled = concat([feats[name] for name in names])
    request_N = [e.request for name in names for e in splits[name]]
    return {
        "metrics": metrics,
        "cross_validated": cross_validate(pooled, request_N, config.cv_folds, config.seed, **fit_options(config)),
    }


def run(config: GuardConfig) -> Path:
    """Train, calibrate, measure and save the guards; returns the probe guard's directory."""
    harmful, harmless = requests(config)
    examples = guard_examples(harmful, harmless, jailbreak_templates(), config.seed)
    splits = split_examples(examples, config.heldout_families, config.seed)
    model, tokenizer = load_policy(config.model)
    model.eval()
    layers = resolve_layers(config.layers, model)
    feats, feature_seconds = both_sources(config, model, tokenizer, splits, layers)
    fitted = fit_sources(feats["train"], feats["dev"], **fit_options(config))
    out = Path(config.output)
    Guard(fitted.probe, layers, fitted.thresholds["probe"], config.every).save(out / "guard")
    EmbeddingGuard(fitted.embedding, fitted.thresholds["embedding"]).save(out / "embedding_guard")
    fitted.cascade.save(out / "cascade.json")
    counts = {name: {"examples": len(rows), "harmful": sum(e.label for e in rows)} for name, rows in splits.items()}
    atomic_write_json(
        out / "guard_eval.json",
        {
            "model": config.model,
            "layers": list(layers),
            "fpr": config.fpr,
            "thresholds": fitted.thresholds,
            "cascade": asdict(fitted.cascade),
            "heldout_families": list(config.heldout_families),
            "requests": {"harmful": len(harmful), "harmless": len(harmless)},
            "splits": counts,
            **compare(config, fitted, splits, feats),
            "cost": costs(fitted, feats["test"], feature_seconds),
        },
    )
    return out / "guard"
