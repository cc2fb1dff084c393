"""`report.html`: one self-contained page that tells the story of a recipe run.

`write_report(root)` reads the recipe root that `posttrain run` writes (`lineage.json`, `evals/<checkpoint>.json`,
and each stage's `metrics.jsonl`, or `round_N/metrics.jsonl` and `round_N/round.json` for iterated rounds) and
writes `<root>/report.html` with, in order:

1. **Stages**: kind, parent, status, wall time (with a bar), finish time, and the gates between stages.
2. **Training curves**: per stage, the metrics present (loss, reward, KL, ...) against the step; iterated rounds
   are laid end to end with dashed lines at the round starts, and their `round.json` stats are tabulated.
3. **Evaluation**: every suite metric per checkpoint, with its 95% (Wilson) interval and k/n.
4. **Capability and safety**: capability (arithmetic_rl accuracy, else arithmetic) against harmful compliance
   (mean over the refusal and harmbench suites present) and against over-refusal. Each checkpoint is a labelled
   point with its interval as error bars; the frontier of checkpoints that no other beats on both axes is drawn.
5. **Diversity**: distinct-n and self-BLEU per checkpoint.
6. **Samples**: the first prompts and replies of a few suites per checkpoint, truncated.
7. **Lineage**: the recipe, package version and git revision, the stage tree, and each stage's inputs (with
   hashes), fingerprint and resolved config.

A missing suite, eval or metrics file leaves its part out and the page says so. The page needs no network: the
figures are PNG data URIs (matplotlib, Agg) and the style is inline. Everything read from a run, model replies
above all, is untrusted text and goes through `html.escape`; only the `Html` strings this module builds pass
through as markup.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from posttrain.eval import page as h
from posttrain.eval.plots import Estimate, TradeoffPoint, curves_png, diversity_png, pareto_front, tradeoff_png
from posttrain.io import atomic_write_text

SUITES = ("arithmetic", "arithmetic_rl", "refusal", "harmbench", "over_refusal", "diversity")
SAFETY_SUITES = ("refusal", "harmbench", "contrast_unsafe")  # pooled into harmful compliance
OVER_REFUSAL_SUITES = ("over_refusal", "over_refusal_independent", "over_refusal_framed", "over_refusal_contrast")
# the capability/safety tax: a checkpoint is flagged when it moves this far from the base model
MAX_CAPABILITY_DROP = 0.05  # accuracy, absolute
MAX_NLL_RISE = 0.10  # nats per token on the held-out chat
MIN_DISTINCT_RATIO = 0.7  # distinct-2 as a share of the base's: below it, diversity collapsed
SAMPLE_SUITES = ("arithmetic_rl", "arithmetic", "refusal", "harmbench", "over_refusal")
CURVE_KEYS = (
    "loss",
    "eval_loss",
    "reward_mean",
    "eval/greedy_accuracy",
    "accuracy",
    "margin",
    "implicit_kl",
    "kl_sampler",
    "entropy",
    "response_length",
    "grad_norm",
    "lr",
)
ROUND_NESTED = ("eval.diversity",)  # nested round.json dicts worth a column; final_step repeats the curves' last row
SAMPLES_PER_SUITE, PROMPT_CHARS, REPLY_CHARS = 2, 240, 480


@dataclass(frozen=True)
class Checkpoint:
    """A model the recipe evaluated: "base" or a stage, with its eval.json ({} when not evaluated)."""

    name: str
    eval: Mapping


def write_report(root: Path) -> Path:
    """Write `<root>/report.html` for the recipe run at `root`; returns its path."""
    root = Path(root)
    lineage = _read_json(root / "lineage.json")
    checkpoints = load_checkpoints(root, lineage)
    sections = [
        ("stages", "Stages", stages_section(lineage)),
        ("curves", "Training curves", curves_section(root, lineage)),
        ("evaluation", "Evaluation", eval_section(checkpoints)),
        ("tradeoff", "Capability and safety", tradeoff_section(checkpoints)),
        ("diversity", "Diversity", diversity_section(checkpoints)),
        ("samples", "Samples", samples_section(checkpoints)),
        ("lineage", "Lineage", lineage_section(lineage)),
    ]
    out = root / "report.html"
    atomic_write_text(out, h.page(lineage, sections))
    return out


# ---------------------------------------------------------------- reading the run directory


def _read_json(path: Path):
    return json.loads(Path(path).read_text())


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSONL file; [] when it does not exist."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_checkpoints(root: Path, lineage: Mapping) -> list[Checkpoint]:
    """Base, then every stage that makes a model, in run order, each with its eval (an absent or missing eval file
    gives {})."""
    named = [("base", lineage.get("base", {}).get("eval"))]
    named += [(s["name"], s.get("eval")) for s in lineage.get("stages", []) if s.get("trains_model", True)]
    return [
        Checkpoint(name, _read_json(root / path) if path and (root / path).is_file() else {}) for name, path in named
    ]


def _round_number(path: Path) -> int:
    match = re.fullmatch(r"round_(\d+)", path.name)
    return int(match.group(1)) if match else -1


def stage_metrics(run_dir: Path) -> tuple[list[dict], list[tuple[float, str]], list[dict]]:
    """(metrics rows, round boundaries as (step, label), round.json stats) of one stage's run directory.

    A round whose steps restart is shifted to follow the previous one, so the rounds read as one curve.
    """
    rows = read_jsonl(run_dir / "metrics.jsonl")
    boundaries, rounds = [], []
    round_dirs = [d for d in run_dir.glob("round_*") if d.is_dir() and _round_number(d) >= 0]
    for round_dir in sorted(round_dirs, key=_round_number):
        last = max((r["step"] for r in rows if "step" in r), default=0)
        round_rows = read_jsonl(round_dir / "metrics.jsonl")
        restart = any(r.get("step", 0) <= last for r in round_rows)
        shift = last if restart else 0
        rows += [{**r, "step": r["step"] + shift} for r in round_rows if "step" in r]
        boundaries.append((last + 0.5, f"round {_round_number(round_dir)}"))
        if (round_dir / "round.json").is_file():
            rounds.append(_read_json(round_dir / "round.json"))
    return rows, boundaries, rounds


# ---------------------------------------------------------------- sections


def stages_section(lineage: Mapping) -> h.Html:
    """The stage table (with wall-time bars and gate counts) and the gate table."""
    stages = lineage.get("stages", [])
    if not stages:
        return h.note("The recipe has no stages.")
    longest = max((s.get("seconds") or 0 for s in stages), default=0) or 1
    rows = [_stage_row(s, longest) for s in stages]
    total = sum(s.get("seconds") or 0 for s in stages)
    rows.append([h.Html("<b>total</b>"), "", "", "", (h.seconds(total), "num"), "", "", ""])
    header = ["stage", "kind", "from", "status", "wall time", "finished", "gates", "eval"]
    return h.join([h.table(header, rows), gates_table(stages), decontamination_table(stages)])


def _stage_row(stage: Mapping, longest: float) -> list:
    seconds = stage.get("seconds")
    width = round(120 * (seconds or 0) / longest)
    time = h.join([h.seconds(seconds), h.Html(f'<span class="bar" style="width:{width}px"></span>')])
    gates = stage.get("gates") or []
    passed = sum(bool(g.get("passed")) for g in gates)
    return [
        h.Html(f"<b>{h.text(stage.get('name'))}</b>"),
        stage.get("kind"),
        stage.get("parent"),
        h.badge(stage.get("status")),
        (time, "num"),
        stage.get("finished_at") or "—",
        f"{passed}/{len(gates)} passed" if gates else "—",
        stage.get("eval") or "not evaluated",
    ]


def gates_table(stages: Sequence[Mapping]) -> h.Html:
    """Every gate rule with its verdict; empty when the recipe has none."""
    rows = [
        [s.get("name"), g.get("rule"), h.badge("pass" if g.get("passed") else "fail"), g.get("detail", "")]
        for s in stages
        for g in s.get("gates") or []
    ]
    return (
        h.join([h.tag("h3", "Gates"), h.table(["after stage", "rule", "verdict", "detail"], rows)])
        if rows
        else h.Html("")
    )


def decontamination_table(stages: Sequence[Mapping]) -> h.Html:
    """Per stage that trains on files, the decontamination gate's verdict (`posttrain.gate`): its mode, the
    benchmarks its data matched (items hit, rows), what was dropped and by which methods; empty when none ran."""
    rows = []
    for stage in stages:
        report = stage.get("decontamination")
        if not report:
            continue
        hits = report.get("per_benchmark") or {}
        found = "; ".join(f"{name}: {e['items_hit']} items, {e['rows']} rows" for name, e in hits.items())
        dropped = sum((report.get("dropped") or {}).values())
        checked = "not checked" if report["mode"] == "off" else found or "no overlap"
        methods = ", ".join(report.get("methods") or {}) or "—"
        rows.append([stage.get("name"), h.badge(report["mode"]), ", ".join(report.get("files") or {}), checked,
                     (dropped, "num"), methods])  # fmt: skip
    header = ["stage", "mode", "training files", "overlap with held-out benchmarks", "rows dropped", "methods"]
    return h.join([h.tag("h3", "Decontamination"), h.table(header, rows)]) if rows else h.Html("")


def curves_section(root: Path, lineage: Mapping) -> h.Html:
    """Per stage, its training curves (rounds end to end) and its round stats; stages without metrics are listed."""
    parts, skipped = [], []
    for stage in lineage.get("stages", []):
        rows, boundaries, rounds = stage_metrics(root / stage.get("output", stage["name"]))
        png = curves_png(rows, CURVE_KEYS, boundaries) if rows else None
        if png is None:
            skipped.append(stage["name"])
            continue
        parts += [h.tag("h3", f"{stage['name']} ({stage.get('kind', '?')})")]
        caption = f"{len(rows)} steps" + (
            f" over {len(boundaries)} rounds; dashed lines mark round starts" if boundaries else ""
        )
        parts += [h.image(png, f"training curves of {stage['name']}", caption), rounds_table(rounds)]
    if skipped:
        parts.append(h.note(f"No training metrics for: {', '.join(skipped)} (data-building, reused or failed stages)."))
    return h.join(parts)


def _scalars(d: Mapping, prefix: str = "") -> dict:
    return {f"{prefix}{k}": v for k, v in d.items() if isinstance(v, int | float | str | bool) or v is None}


def _nested(d: Mapping, dotted: str) -> Mapping:
    for key in dotted.split("."):
        d = d.get(key) or {}
    return d


def rounds_table(rounds: Sequence[Mapping]) -> h.Html:
    """The round.json stats of an iterated stage, one row per round."""
    if not rounds:
        return h.Html("")
    flat = [
        _scalars(r) | {k: v for n in ROUND_NESTED for k, v in _scalars(_nested(r, n), f"{n}.").items()} for r in rounds
    ]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    return h.table(keys, ([(h.fmt(f.get(k)), "num") for k in keys] for f in flat))


def _suite_order(checkpoints: Sequence[Checkpoint]) -> list[str]:
    present = {s for c in checkpoints for s in c.eval.get("suites", {})}
    return [s for s in SUITES if s in present] + sorted(present - set(SUITES))


def _metric_cell(metric) -> tuple:
    if not isinstance(metric, Mapping):
        return (h.fmt(metric) or "—", "num")
    parts = [h.fmt(metric.get("value"))]
    if "ci95_low" in metric:
        interval = f"[{h.fmt(metric['ci95_low'])}, {h.fmt(metric.get('ci95_high'))}]"
        parts += [" ", h.tag("span", interval, class_="ci")]
    if "n" in metric:
        parts += [" ", h.tag("span", f"{metric.get('k', '?')}/{metric['n']}", class_="ci")]
    return (h.join(parts), "num")


def eval_section(checkpoints: Sequence[Checkpoint]) -> h.Html:
    """One row per suite metric, one column per evaluated checkpoint: value [95% interval] k/n."""
    evaluated = [c for c in checkpoints if c.eval.get("suites")]
    if not evaluated:
        return h.note("No checkpoint was evaluated.")
    rows = []
    for suite in _suite_order(evaluated):
        metrics = list(
            dict.fromkeys(m for c in evaluated for m in c.eval.get("suites", {}).get(suite, {}).get("metrics", {}))
        )
        for metric in metrics:
            cells = [c.eval["suites"].get(suite, {}).get("metrics", {}).get(metric) for c in evaluated]
            rows.append([suite, metric, *[_metric_cell(m) if m is not None else ("—", "num") for m in cells]])
    rows.append(["", "eval time", *[(h.seconds(c.eval.get("seconds")), "num") for c in evaluated]])
    notes = [h.note("Rates with their 95% Wilson interval and k/n; — marks a suite the checkpoint was not run on.")]
    missing = [s for s in SUITES if s not in _suite_order(evaluated)]
    if missing:
        notes.append(h.note(f"Suites not in this recipe: {', '.join(missing)}."))
    unevaluated = [c.name for c in checkpoints if not c.eval.get("suites")]
    if unevaluated:
        notes.append(h.note(f"Not evaluated: {', '.join(unevaluated)}."))
    return h.join([h.table(["suite", "metric", *[c.name for c in evaluated]], rows), *notes])


def _estimate(metric) -> Estimate | None:
    """A metric entry ({"value", "ci95_low", "ci95_high"} or a bare number) as an Estimate; None when absent."""
    if _is_number(metric):
        return Estimate(float(metric), float(metric), float(metric))
    if not isinstance(metric, Mapping) or not _is_number(metric.get("value")):
        return None
    value = float(metric["value"])
    return Estimate(value, float(metric.get("ci95_low", value)), float(metric.get("ci95_high", value)))


def _value(metric) -> float | None:
    estimate = _estimate(metric)
    return estimate.value if estimate else None


def _is_number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and x == x  # NaN (a rate over 0 items) is absent


def _suite_metric(checkpoint: Checkpoint, suite: str, metric: str) -> Estimate | None:
    return _estimate(checkpoint.eval.get("suites", {}).get(suite, {}).get("metrics", {}).get(metric))


def _mean(estimates: Sequence[Estimate]) -> Estimate | None:
    if not estimates:
        return None
    n = len(estimates)
    return Estimate(*(sum(getattr(e, f) for e in estimates) / n for f in ("value", "low", "high")))


def tradeoff_point(checkpoint: Checkpoint) -> TradeoffPoint:
    """Capability (arithmetic_rl, else arithmetic), harmful compliance (mean over safety suites), over-refusal."""
    capability = _suite_metric(checkpoint, "arithmetic_rl", "accuracy") or _suite_metric(
        checkpoint, "arithmetic", "accuracy"
    )
    harmful = [e for s in SAFETY_SUITES if (e := _suite_metric(checkpoint, s, "harmful_compliance"))]
    over = [e for s in OVER_REFUSAL_SUITES if (e := _suite_metric(checkpoint, s, "over_refusal"))]
    return TradeoffPoint(checkpoint.name, capability, _mean(harmful), _mean(over))


def tax_flags(checkpoint: Checkpoint, base: Checkpoint | None) -> list[str]:
    """What the checkpoint paid against the base model: capability lost beyond `MAX_CAPABILITY_DROP`, held-out chat
    NLL up beyond `MAX_NLL_RISE`, distinct-2 below `MIN_DISTINCT_RATIO` of the base's."""
    if base is None or checkpoint is base:
        return []
    flags = []
    now, then = tradeoff_point(checkpoint).capability, tradeoff_point(base).capability
    if now and then and then.value - now.value > MAX_CAPABILITY_DROP:
        flags.append(f"capability -{100 * (then.value - now.value):.1f} points")
    nll_now, nll_then = (_suite_metric(c, "chat_nll", "nll") for c in (checkpoint, base))
    if nll_now and nll_then and nll_now.value - nll_then.value > MAX_NLL_RISE:
        flags.append(f"chat NLL +{nll_now.value - nll_then.value:.2f}")
    distinct_now, distinct_then = (_suite_metric(c, "diversity", "distinct_2") for c in (checkpoint, base))
    if distinct_now and distinct_then and distinct_now.value < MIN_DISTINCT_RATIO * distinct_then.value:
        flags.append(f"diversity collapse (distinct-2 {distinct_now.value:.2f} vs {distinct_then.value:.2f})")
    return flags


def tradeoff_section(checkpoints: Sequence[Checkpoint]) -> h.Html:
    """The Pareto-style plot, a table of its numbers (frontier marked) and notes on what is missing."""
    points = [tradeoff_point(c) for c in checkpoints if c.eval.get("suites")]
    png = tradeoff_png(points)
    if png is None:
        return h.note(
            "No checkpoint has both a capability (arithmetic) and a safety (refusal, harmbench, "
            "over_refusal) measurement, so there is no trade-off to plot."
        )
    caption = (
        "Each point is a checkpoint; bars are 95% intervals. Filled points and the line form the frontier: "
        "no other checkpoint is at least as capable and at least as safe. Harmful compliance is the mean over "
        f"the suites present of {', '.join(SAFETY_SUITES)}, over-refusal the mean over "
        f"{', '.join(OVER_REFUSAL_SUITES)} (bars: the mean of their interval ends)."
    )
    base = next((c for c in checkpoints if c.name == "base" and c.eval.get("suites")), None)
    flags = {c.name: tax_flags(c, base) for c in checkpoints if c.eval.get("suites")}
    return h.join(
        [
            h.image(png, "capability against harmful compliance and over-refusal", caption),
            _tradeoff_table(points, flags),
            *_tradeoff_notes(points),
        ]
    )


def _frontier_names(points: Sequence[TradeoffPoint], attr: str) -> set[str]:
    drawn = [p for p in points if p.capability and getattr(p, attr)]
    front = pareto_front([(getattr(p, attr).value, p.capability.value) for p in drawn])
    return {drawn[i].label for i in front}


def _tradeoff_table(points: Sequence[TradeoffPoint], flags: Mapping[str, list[str]]) -> h.Html:
    fronts = {attr: _frontier_names(points, attr) for attr in ("harmful", "over_refusal")}
    rows = []
    for p in points:
        on = [
            label for attr, label in (("harmful", "harm"), ("over_refusal", "over-refusal")) if p.label in fronts[attr]
        ]
        cells = [(h.fmt(e.value) if e else "—", "num") for e in (p.capability, p.harmful, p.over_refusal)]
        rows.append([p.label, *cells, ", ".join(on) or "—", "; ".join(flags.get(p.label, [])) or "—"])
    headers = ["checkpoint", "capability ↑", "harmful compliance ↓", "over-refusal ↓", "on frontier", "tax flags"]
    return h.table(headers, rows)


def _tradeoff_notes(points: Sequence[TradeoffPoint]) -> list[h.Html]:
    notes = []
    for attr, what in (
        ("capability", "capability"),
        ("harmful", "harmful compliance"),
        ("over_refusal", "over-refusal"),
    ):
        missing = [p.label for p in points if getattr(p, attr) is None]
        if missing:
            notes.append(h.note(f"No {what} measurement for: {', '.join(missing)}."))
    return notes


def diversity_section(checkpoints: Sequence[Checkpoint]) -> h.Html:
    """The diversity suite per checkpoint: a table and grouped bars."""
    have = [c for c in checkpoints if "diversity" in c.eval.get("suites", {})]
    if not have:
        return h.note("No diversity suite was run.")
    metrics = {c.name: c.eval["suites"]["diversity"].get("metrics", {}) for c in have}
    names = list(dict.fromkeys(m for ms in metrics.values() for m in ms))
    values = {m: [_value(metrics[c.name].get(m)) for c in have] for m in names}
    rows = [[c.name, *[(h.fmt(values[m][i]) or "—", "num") for m in names]] for i, c in enumerate(have)]
    parts = [h.table(["checkpoint", *names], rows)]
    png = diversity_png([c.name for c in have], values)
    if png:
        parts.append(
            h.image(png, "diversity per checkpoint", "distinct-n: higher is more diverse; self-BLEU: lower is.")
        )
    return h.join(parts)


def _clip(text, limit: int) -> str:
    text = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def _verdict(item: Mapping) -> str:
    marks = [f"{k} {'✓' if v else '✗'}" for k, v in item.items() if isinstance(v, bool)]
    return " · ".join(marks + ([f"failure: {item['failure']}"] if item.get("failure") else []))


def samples_section(checkpoints: Sequence[Checkpoint]) -> h.Html:
    """Per checkpoint, the first items of a few suites: prompt, reply (both escaped and truncated) and verdict."""
    parts = []
    for c in checkpoints:
        suites = c.eval.get("suites", {})
        rows = [
            [
                suite,
                item.get("id", i),
                (_clip(item.get("prompt", ""), PROMPT_CHARS), "text"),
                (_clip(item.get("reply", ""), REPLY_CHARS), "text"),
                _verdict(item),
            ]
            for suite in SAMPLE_SUITES
            for i, item in enumerate(suites.get(suite, {}).get("items", [])[:SAMPLES_PER_SUITE])
        ]
        if rows:
            table = h.table(["suite", "id", "prompt", "reply", "verdict"], rows)
            parts.append(h.Html(f"<details open><summary>{h.text(c.name)}</summary>{table}</details>"))
    return h.join(parts) if parts else h.note("No evaluated items to show.")


def _tree(stages: Sequence[Mapping], parent: str) -> h.Html:
    children = [s for s in stages if (s.get("parent") or "base") == parent]
    if not children:
        return h.Html("")
    items = (
        h.tag(
            "li",
            h.join(
                [
                    h.Html(f"<b>{h.text(s['name'])}</b> "),
                    f"({s.get('kind', '?')}) ",
                    h.badge(s.get("status")),
                    _tree(stages, s["name"]),
                ]
            ),
        )
        for s in children
    )
    return h.tag("ul", h.join(items), class_="tree")


def lineage_section(lineage: Mapping) -> h.Html:
    """The run's provenance, the stage tree from the base model, and each stage's inputs, fingerprint and config."""
    base = lineage.get("base", {})
    facts = h.facts(
        [
            ("recipe", lineage.get("recipe")),
            ("output", lineage.get("output")),
            ("posttrain version", lineage.get("posttrain_version")),
            ("git revision", lineage.get("git_revision") or "unknown"),
            ("base model", base.get("model")),
            ("base eval", base.get("eval") or "not evaluated"),
        ]
    )
    stages = lineage.get("stages", [])
    tree = h.tag("div", h.join([h.Html("<b>base</b> "), f"({base.get('model', '?')})", _tree(stages, "base")]))
    header = ["stage", "from", "started from", "inputs (sha256 prefix)", "fingerprint", "final"]
    table = h.table(header, (_lineage_row(s) for s in stages))
    configs = [_config_details(s) for s in stages]
    return h.join([facts, h.tag("h3", "Stage tree"), tree, h.tag("h3", "Stages"), table, *configs])


def _inputs(stage: Mapping) -> h.Html:
    lines = []
    for name, spec in (stage.get("inputs") or {}).items():
        spec = spec if isinstance(spec, Mapping) else {"path": spec}
        digest = f" ({spec['sha256'][:12]})" if spec.get("sha256") else ""
        lines.append(h.text(f"{name}: {spec.get('path')}{digest}"))
    return h.Html("<br>".join(lines) or "—")


def _lineage_row(stage: Mapping) -> list:
    fingerprint = (stage.get("fingerprint") or "—")[:16]
    return [
        h.Html(f"<b>{h.text(stage.get('name'))}</b>"),
        stage.get("parent") or "—",
        stage.get("model"),
        _inputs(stage),
        (fingerprint, "text"),
        stage.get("final"),
    ]


def _config_details(stage: Mapping) -> h.Html:
    config = json.dumps(stage.get("config") or {}, indent=2, sort_keys=True, ensure_ascii=False)
    summary = h.tag("summary", f"resolved config of {stage.get('name')}")
    return h.tag("details", h.join([summary, h.tag("pre", config)]))
