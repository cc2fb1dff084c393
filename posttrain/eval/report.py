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

import base64
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from posttrain.eval.plots import Estimate, TradeoffPoint, curves_png, diversity_png, pareto_front, tradeoff_png
from posttrain.io import atomic_write_text

SUITES = ("arithmetic", "arithmetic_rl", "refusal", "harmbench", "over_refusal", "diversity")
SAFETY_SUITES = ("refusal", "harmbench")
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
ROUND_NESTED = ("diversity",)  # nested round.json dicts worth a column; final_step repeats the curves' last row
SAMPLES_PER_SUITE, PROMPT_CHARS, REPLY_CHARS = 2, 240, 480

CSS = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; color: #222;
       max-width: 1240px; margin: 0 auto; padding: 16px 28px 48px; background: #fff; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 2px solid #e3e6ea; }
h3 { font-size: 15px; margin: 18px 0 6px; }
nav a { margin-right: 14px; color: #1f5fa8; text-decoration: none; }
.meta, .note, figcaption { color: #5a6270; font-size: 13px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }
th, td { border: 1px solid #dde1e6; padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: #f1f3f6; font-weight: 600; }
tr:nth-child(even) td { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.text { white-space: pre-wrap; word-break: break-word; max-width: 460px; font-family: ui-monospace, Menlo,
          "DejaVu Sans Mono", monospace; font-size: 12px; }
.ci { color: #6b7380; font-size: 12px; }
.bar { display: inline-block; height: 9px; background: #7aa6d8; border-radius: 2px; margin-left: 8px; }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; color: #fff; }
.done, .pass { background: #2e8b57; } .reused { background: #4a78b5; }
.failed, .fail { background: #c0392b; } .gated { background: #d68910; } .unknown { background: #888; }
img { max-width: 100%; border: 1px solid #eef0f3; }
figure { margin: 8px 0 16px; }
details { margin: 6px 0; } summary { cursor: pointer; font-weight: 600; }
pre { background: #f6f8fa; padding: 8px; font-size: 12px; overflow-x: auto; }
ul.tree { list-style: none; padding-left: 18px; } ul.tree li::before { content: "└ "; color: #999; }
"""


class Html(str):
    """Markup built by this module; every other string is escaped on output."""


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
    atomic_write_text(out, page(lineage, sections))
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
    """Base, then every stage in run order, each with its eval (an absent or missing eval file gives {})."""
    named = [("base", lineage.get("base", {}).get("eval"))]
    named += [(s["name"], s.get("eval")) for s in lineage.get("stages", [])]
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


# ---------------------------------------------------------------- small HTML helpers


def _text(x) -> str:
    return x if isinstance(x, Html) else html.escape("" if x is None else str(x))


def _join(parts: Iterable) -> Html:
    return Html("".join(_text(p) for p in parts))


def _tag(name: str, content, **attrs) -> Html:
    attributes = "".join(f' {k.rstrip("_")}="{html.escape(str(v))}"' for k, v in attrs.items())
    return Html(f"<{name}{attributes}>{_text(content)}</{name}>")


def _table(header: Sequence | None, rows: Iterable[Sequence]) -> Html:
    """A table (without a header row when `header` is None); a cell is text, Html, or a (content, class) pair."""
    head = [_tag("tr", _join(_tag("th", h) for h in header))] if header is not None else []
    body = (_tag("tr", _join(_cell(c) for c in row)) for row in rows)
    return _tag("table", _join([*head, *body]))


def _facts(pairs: Iterable[tuple[str, object]]) -> Html:
    """A two-column key/value table, keys as row headers."""
    rows = (_tag("tr", _join([_tag("th", key), _tag("td", value)])) for key, value in pairs)
    return _tag("table", _join(rows))


def _cell(cell) -> Html:
    if isinstance(cell, tuple):
        return _tag("td", cell[0], class_=cell[1])
    return _tag("td", cell)


def _note(text) -> Html:
    return _tag("p", text, class_="note")


def _image(png: bytes, alt: str, caption: str = "") -> Html:
    data = base64.b64encode(png).decode("ascii")
    img = Html(f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">')
    return _tag("figure", _join([img, _tag("figcaption", caption) if caption else ""]))


def _badge(status) -> Html:
    known = status in ("done", "reused", "failed", "gated", "pass", "fail")
    return _tag("span", status or "unknown", class_=f"badge {status if known else 'unknown'}")


def _fmt(x, digits: int = 3) -> str:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return "" if x is None else str(x)
    return str(x) if isinstance(x, int) else f"{x:.{digits}f}"


def _seconds(s) -> str:
    if not isinstance(s, int | float):
        return "—"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


# ---------------------------------------------------------------- sections


def page(lineage: Mapping, sections: Sequence[tuple[str, str, Html]]) -> str:
    """The whole document: head with inline style, title block, navigation, then the sections."""
    title = f"posttrain report: {lineage.get('recipe') or lineage.get('output') or 'run'}"
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = f"output {lineage.get('output', '?')} · posttrain {lineage.get('posttrain_version', '?')} · generated {generated}"
    nav = _tag("nav", _join(_tag("a", label, href=f"#{anchor}") for anchor, label, _ in sections))
    body = [_tag("h1", title), _tag("p", meta, class_="meta"), nav]
    body += [_tag("section", _join([_tag("h2", label), content]), id=anchor) for anchor, label, content in sections]
    head = Html('<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">')
    head = _join([head, _tag("title", title), _tag("style", Html(CSS))])
    return "<!DOCTYPE html>\n" + _tag("html", _join([_tag("head", head), _tag("body", _join(body))]), lang="en") + "\n"


def stages_section(lineage: Mapping) -> Html:
    """The stage table (with wall-time bars and gate counts) and the gate table."""
    stages = lineage.get("stages", [])
    if not stages:
        return _note("The recipe has no stages.")
    longest = max((s.get("seconds") or 0 for s in stages), default=0) or 1
    rows = [_stage_row(s, longest) for s in stages]
    total = sum(s.get("seconds") or 0 for s in stages)
    rows.append([Html("<b>total</b>"), "", "", "", (_seconds(total), "num"), "", "", ""])
    header = ["stage", "kind", "from", "status", "wall time", "finished", "gates", "eval"]
    return _join([_table(header, rows), gates_table(stages)])


def _stage_row(stage: Mapping, longest: float) -> list:
    seconds = stage.get("seconds")
    width = round(120 * (seconds or 0) / longest)
    time = _join([_seconds(seconds), Html(f'<span class="bar" style="width:{width}px"></span>')])
    gates = stage.get("gates") or []
    passed = sum(bool(g.get("passed")) for g in gates)
    return [
        Html(f"<b>{_text(stage.get('name'))}</b>"),
        stage.get("kind"),
        stage.get("parent"),
        _badge(stage.get("status")),
        (time, "num"),
        stage.get("finished_at") or "—",
        f"{passed}/{len(gates)} passed" if gates else "—",
        stage.get("eval") or "not evaluated",
    ]


def gates_table(stages: Sequence[Mapping]) -> Html:
    """Every gate rule with its verdict; empty when the recipe has none."""
    rows = [
        [s.get("name"), g.get("rule"), _badge("pass" if g.get("passed") else "fail"), g.get("detail", "")]
        for s in stages
        for g in s.get("gates") or []
    ]
    return (
        _join([_tag("h3", "Gates"), _table(["after stage", "rule", "verdict", "detail"], rows)]) if rows else Html("")
    )


def curves_section(root: Path, lineage: Mapping) -> Html:
    """Per stage, its training curves (rounds end to end) and its round stats; stages without metrics are listed."""
    parts, skipped = [], []
    for stage in lineage.get("stages", []):
        rows, boundaries, rounds = stage_metrics(root / stage.get("output", stage["name"]))
        png = curves_png(rows, CURVE_KEYS, boundaries) if rows else None
        if png is None:
            skipped.append(stage["name"])
            continue
        parts += [_tag("h3", f"{stage['name']} ({stage.get('kind', '?')})")]
        caption = f"{len(rows)} steps" + (
            f" over {len(boundaries)} rounds; dashed lines mark round starts" if boundaries else ""
        )
        parts += [_image(png, f"training curves of {stage['name']}", caption), rounds_table(rounds)]
    if skipped:
        parts.append(_note(f"No training metrics for: {', '.join(skipped)} (data-building, reused or failed stages)."))
    return _join(parts)


def _scalars(d: Mapping, prefix: str = "") -> dict:
    return {f"{prefix}{k}": v for k, v in d.items() if isinstance(v, int | float | str | bool) or v is None}


def rounds_table(rounds: Sequence[Mapping]) -> Html:
    """The round.json stats of an iterated stage, one row per round."""
    if not rounds:
        return Html("")
    flat = [
        _scalars(r) | {k: v for n in ROUND_NESTED for k, v in _scalars(r.get(n) or {}, f"{n}.").items()} for r in rounds
    ]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    return _table(keys, ([(_fmt(f.get(k)), "num") for k in keys] for f in flat))


def _suite_order(checkpoints: Sequence[Checkpoint]) -> list[str]:
    present = {s for c in checkpoints for s in c.eval.get("suites", {})}
    return [s for s in SUITES if s in present] + sorted(present - set(SUITES))


def _metric_cell(metric) -> tuple:
    if not isinstance(metric, Mapping):
        return (_fmt(metric) or "—", "num")
    parts = [_fmt(metric.get("value"))]
    if "ci95_low" in metric:
        interval = f"[{_fmt(metric['ci95_low'])}, {_fmt(metric.get('ci95_high'))}]"
        parts += [" ", _tag("span", interval, class_="ci")]
    if "n" in metric:
        parts += [" ", _tag("span", f"{metric.get('k', '?')}/{metric['n']}", class_="ci")]
    return (_join(parts), "num")


def eval_section(checkpoints: Sequence[Checkpoint]) -> Html:
    """One row per suite metric, one column per evaluated checkpoint: value [95% interval] k/n."""
    evaluated = [c for c in checkpoints if c.eval.get("suites")]
    if not evaluated:
        return _note("No checkpoint was evaluated.")
    rows = []
    for suite in _suite_order(evaluated):
        metrics = list(
            dict.fromkeys(m for c in evaluated for m in c.eval.get("suites", {}).get(suite, {}).get("metrics", {}))
        )
        for metric in metrics:
            cells = [c.eval["suites"].get(suite, {}).get("metrics", {}).get(metric) for c in evaluated]
            rows.append([suite, metric, *[_metric_cell(m) if m is not None else ("—", "num") for m in cells]])
    rows.append(["", "eval time", *[(_seconds(c.eval.get("seconds")), "num") for c in evaluated]])
    notes = [_note("Rates with their 95% Wilson interval and k/n; — marks a suite the checkpoint was not run on.")]
    missing = [s for s in SUITES if s not in _suite_order(evaluated)]
    if missing:
        notes.append(_note(f"Suites not in this recipe: {', '.join(missing)}."))
    unevaluated = [c.name for c in checkpoints if not c.eval.get("suites")]
    if unevaluated:
        notes.append(_note(f"Not evaluated: {', '.join(unevaluated)}."))
    return _join([_table(["suite", "metric", *[c.name for c in evaluated]], rows), *notes])


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
    over = _suite_metric(checkpoint, "over_refusal", "over_refusal")
    return TradeoffPoint(checkpoint.name, capability, _mean(harmful), over)


def tradeoff_section(checkpoints: Sequence[Checkpoint]) -> Html:
    """The Pareto-style plot, a table of its numbers (frontier marked) and notes on what is missing."""
    points = [tradeoff_point(c) for c in checkpoints if c.eval.get("suites")]
    png = tradeoff_png(points)
    if png is None:
        return _note(
            "No checkpoint has both a capability (arithmetic) and a safety (refusal, harmbench, "
            "over_refusal) measurement, so there is no trade-off to plot."
        )
    caption = (
        "Each point is a checkpoint; bars are 95% intervals. Filled points and the line form the frontier: "
        "no other checkpoint is at least as capable and at least as safe. Harmful compliance is the mean over "
        "the refusal and harmbench suites present (its bars the mean of their interval ends)."
    )
    return _join(
        [
            _image(png, "capability against harmful compliance and over-refusal", caption),
            _tradeoff_table(points),
            *_tradeoff_notes(points),
        ]
    )


def _frontier_names(points: Sequence[TradeoffPoint], attr: str) -> set[str]:
    drawn = [p for p in points if p.capability and getattr(p, attr)]
    front = pareto_front([(getattr(p, attr).value, p.capability.value) for p in drawn])
    return {drawn[i].label for i in front}


def _tradeoff_table(points: Sequence[TradeoffPoint]) -> Html:
    fronts = {attr: _frontier_names(points, attr) for attr in ("harmful", "over_refusal")}
    rows = []
    for p in points:
        on = [
            label for attr, label in (("harmful", "harm"), ("over_refusal", "over-refusal")) if p.label in fronts[attr]
        ]
        cells = [(_fmt(e.value) if e else "—", "num") for e in (p.capability, p.harmful, p.over_refusal)]
        rows.append([p.label, *cells, ", ".join(on) or "—"])
    return _table(["checkpoint", "capability ↑", "harmful compliance ↓", "over-refusal ↓", "on frontier"], rows)


def _tradeoff_notes(points: Sequence[TradeoffPoint]) -> list[Html]:
    notes = []
    for attr, what in (
        ("capability", "capability"),
        ("harmful", "harmful compliance"),
        ("over_refusal", "over-refusal"),
    ):
        missing = [p.label for p in points if getattr(p, attr) is None]
        if missing:
            notes.append(_note(f"No {what} measurement for: {', '.join(missing)}."))
    return notes


def diversity_section(checkpoints: Sequence[Checkpoint]) -> Html:
    """The diversity suite per checkpoint: a table and grouped bars."""
    have = [c for c in checkpoints if "diversity" in c.eval.get("suites", {})]
    if not have:
        return _note("No diversity suite was run.")
    metrics = {c.name: c.eval["suites"]["diversity"].get("metrics", {}) for c in have}
    names = list(dict.fromkeys(m for ms in metrics.values() for m in ms))
    values = {m: [_value(metrics[c.name].get(m)) for c in have] for m in names}
    rows = [[c.name, *[(_fmt(values[m][i]) or "—", "num") for m in names]] for i, c in enumerate(have)]
    parts = [_table(["checkpoint", *names], rows)]
    png = diversity_png([c.name for c in have], values)
    if png:
        parts.append(
            _image(png, "diversity per checkpoint", "distinct-n: higher is more diverse; self-BLEU: lower is.")
        )
    return _join(parts)


def _clip(text, limit: int) -> str:
    text = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def _verdict(item: Mapping) -> str:
    marks = [f"{k} {'✓' if v else '✗'}" for k, v in item.items() if isinstance(v, bool)]
    return " · ".join(marks + ([f"failure: {item['failure']}"] if item.get("failure") else []))


def samples_section(checkpoints: Sequence[Checkpoint]) -> Html:
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
            table = _table(["suite", "id", "prompt", "reply", "verdict"], rows)
            parts.append(Html(f"<details open><summary>{_text(c.name)}</summary>{table}</details>"))
    return _join(parts) if parts else _note("No evaluated items to show.")


def _tree(stages: Sequence[Mapping], parent: str) -> Html:
    children = [s for s in stages if s.get("parent", "base") == parent]
    if not children:
        return Html("")
    items = (
        _tag(
            "li",
            _join(
                [
                    Html(f"<b>{_text(s['name'])}</b> "),
                    f"({s.get('kind', '?')}) ",
                    _badge(s.get("status")),
                    _tree(stages, s["name"]),
                ]
            ),
        )
        for s in children
    )
    return _tag("ul", _join(items), class_="tree")


def lineage_section(lineage: Mapping) -> Html:
    """The run's provenance, the stage tree from the base model, and each stage's inputs, fingerprint and config."""
    base = lineage.get("base", {})
    facts = _facts(
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
    tree = _tag("div", _join([Html("<b>base</b> "), f"({base.get('model', '?')})", _tree(stages, "base")]))
    header = ["stage", "from", "started from", "inputs (sha256 prefix)", "fingerprint", "final"]
    table = _table(header, (_lineage_row(s) for s in stages))
    configs = [_config_details(s) for s in stages]
    return _join([facts, _tag("h3", "Stage tree"), tree, _tag("h3", "Stages"), table, *configs])


def _inputs(stage: Mapping) -> Html:
    lines = []
    for name, spec in (stage.get("inputs") or {}).items():
        spec = spec if isinstance(spec, Mapping) else {"path": spec}
        digest = f" ({spec['sha256'][:12]})" if spec.get("sha256") else ""
        lines.append(_text(f"{name}: {spec.get('path')}{digest}"))
    return Html("<br>".join(lines) or "—")


def _lineage_row(stage: Mapping) -> list:
    fingerprint = (stage.get("fingerprint") or "—")[:16]
    return [
        Html(f"<b>{_text(stage.get('name'))}</b>"),
        stage.get("parent", "base"),
        stage.get("model"),
        _inputs(stage),
        (fingerprint, "text"),
        stage.get("final"),
    ]


def _config_details(stage: Mapping) -> Html:
    config = json.dumps(stage.get("config") or {}, indent=2, sort_keys=True, ensure_ascii=False)
    summary = _tag("summary", f"resolved config of {stage.get('name')}")
    return _tag("details", _join([summary, _tag("pre", config)]))
