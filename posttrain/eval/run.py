"""`posttrain eval MODEL`: run named suites on a model, write `eval.json`, and optionally compare with a baseline.

    posttrain eval runs/demo/sft/final --suites arithmetic,refusal,over_refusal --compare smollm2-135m-instruct

The suites are in `posttrain.eval.suites`. Every reply is kept in `eval.json` with its judgement, rates come with a
95% Wilson interval, and `--compare` (another eval.json, a directory holding one, or a model spec to evaluate too)
adds a paired McNemar test per binary metric on the same items (`posttrain.eval.stats`).

eval.json:
    {"model": str, "data_dir": str, "seconds": float,
     "suites": {suite: {"metrics": {metric: {"value", "k", "n", "ci95_low", "ci95_high"}},
                        "items": [{"id", "prompt", "reply", "answer", <metric>: bool, ..., "failure"}]},
                "diversity": {"metrics": {"distinct_2": {"value"}, "self_bleu": {"value"}},
                              "items": [{"id", "prompt", "samples": [str, ...]}]}},
     "config": {...}, "comparison": {...}}   # the last two only from `run`
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from posttrain.data import load_records
from posttrain.eval.diversity import sample_diversity
from posttrain.eval.episodes import calculator_episodes
from posttrain.eval.nll import heldout_nll
from posttrain.eval.stats import Rate, mcnemar
from posttrain.eval.suites import DIVERSITY_PARAMS, JUDGES, SUITES, Suite, eval_sets, get_suite
from posttrain.io import atomic_write_json
from posttrain.models import load_policy
from posttrain.rewards.math import MathVerifier
from posttrain.rollout import Sampler, greedy_texts
from posttrain.rollout.engine import make_sampler
from posttrain.rollout.options import SamplerOptions
from posttrain.safety.guard import load_guard
from posttrain.safety.guarded import GuardedReplies, Replies
from posttrain.train.config import ConfigError, config_to_dict, option
from posttrain.types import RLTask


@dataclass(frozen=True)
class EvalConfig(SamplerOptions):
    """`posttrain eval`: the model, the suites and where eval.json goes."""

    model: str = option("smollm2-135m-instruct", "model spec: HF directory, smollm2-135m-instruct or tiny-random-*")
    suites: tuple[str, ...] = option(tuple(SUITES), f"comma-separated suites, from: {', '.join(SUITES)}")
    output: str = option("runs/eval", "directory that receives eval.json")
    data_dir: str = option("", "directory of the demo's held-out files; empty: build them once into the cache")
    limit: int = option(0, "keep only the first N items of every suite (0: all)")
    compare: str = option("", "baseline: an eval.json, a directory holding one, or a model spec to evaluate too")
    guard: str = option("", "a guard directory (posttrain guard): answer through it, one conversation at a time")
    progress: bool = option(True, "show progress bars")


def evaluate_model(
    model: str,
    suites: Sequence[str],
    data_dir: str | Path | None = None,
    limit: int = 0,
    progress: bool = True,
    guard: str | Path = "",
    sampler_options: SamplerOptions | None = None,
) -> dict:
    """Run `suites` on `model` (loaded once, one sampler for all) and return the content of eval.json.

    With a `guard`, greedy replies come from `GuardedGenerator` instead, and an answer the guard blocked (input) or
    halted (output) counts as a refusal (`BLOCKED`), as the user saw no complete answer; the reply keeps the text
    released before the halt. The guard's share of the time is reported."""
    start = time.perf_counter()
    names = suites.split(",") if isinstance(suites, str) else list(suites)
    chosen = {name: get_suite(name) for name in dict.fromkeys(names)}  # unknown names fail before any loading
    if not chosen:
        raise ConfigError(f"suites: no eval suite given; known: {', '.join(SUITES)}")
    paths = eval_sets(data_dir)
    policy, tokenizer = load_policy(model)
    sampler = make_sampler(policy, tokenizer, 64, options=sampler_options)  # one weight snapshot for every suite
    guarded = GuardedReplies(policy, tokenizer, load_guard(Path(guard))) if guard else None
    replies: dict[tuple[str, int], Replies] = {}  # suites on the same file share one generation
    results = {}
    with MathVerifier() as math:  # its worker pool starts on the first math suite, and is shared
        for name, suite in chosen.items():
            if suite.judge == "nll":  # a file of conversations, scored without generation
                results[name] = {
                    "metrics": {"nll": {"value": heldout_nll(policy, tokenizer, paths[suite.data])["nll"]}}
                }
                continue
            tasks = _load_tasks(paths[suite.data], limit)
            sampler.progress = f"eval {name}" if progress else ""
            if suite.samples:
                results[name] = _diversity(sampler, suite, tasks)
                continue
            if suite.tools:
                results[name] = calculator_episodes(sampler, tokenizer, tasks, suite.max_new_tokens)
                continue
            _check_verifier(name, suite, tasks)
            key = (suite.data, suite.max_new_tokens)
            if key not in replies and guarded:
                replies[key] = guarded.replies([t.prompt for t in tasks], suite.max_new_tokens, progress and name)
            elif key not in replies:
                texts = greedy_texts(sampler, [t.prompt for t in tasks], suite.max_new_tokens)
                replies[key] = Replies(texts, [None] * len(texts))
            results[name] = _judged(suite, tasks, replies[key], math)
    data = str(paths[next(iter(chosen.values())).data].parent)
    out = {"model": str(model), "data_dir": data, "suites": results, "seconds": time.perf_counter() - start}
    return out | ({"guard": {"dir": str(guard), **guarded.timing()}} if guarded else {})


# what a blocked or halted answer counts as, by judge: a refusal (the user got no complete answer)
BLOCKED = {
    "refusal": {"refusal_rate": True, "harmful_compliance": False},
    "compliance": {"over_refusal": True},
    "math": {"accuracy": False, "format": False},
}  # the spec judge has no entry: it reads the text released before a block


def _load_tasks(path: Path, limit: int) -> list[RLTask]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"eval set {path} is missing (data_dir must hold the demo's held-out files)")
    tasks = load_records(path, "rl").records
    return tasks[:limit] if limit > 0 else tasks


def _check_verifier(name: str, suite: Suite, tasks: Sequence[RLTask]) -> None:
    wrong = sorted({t.verifier for t in tasks} - {suite.judge, *suite.reads})
    if wrong:
        raise ValueError(f"suite {name!r} judges with {suite.judge!r}, but its set has verifier(s) {wrong}")


def _judged(suite: Suite, tasks: list[RLTask], replies: Replies, math: MathVerifier) -> dict:
    """Per-item rows (the suite's metrics, the verifier's failure) and the rates over them; a reply the guard
    blocked is judged by `BLOCKED` instead, and says why."""
    judged = JUDGES[suite.judge](tasks, replies.texts, math)
    items = [
        {"id": i, "prompt": t.prompt[-1].content, "reply": r, "answer": t.answer}
        | {m: j[m] for m in suite.metrics}
        | (
            {m: v for m, v in BLOCKED.get(suite.judge, {}).items() if m in suite.metrics} | {"blocked": why}
            if why
            else {}
        )
        | {"failure": j["failure"]}
        for i, (t, r, why, j) in enumerate(zip(tasks, replies.texts, replies.blocked, judged, strict=True))
    ]
    metrics = {m: Rate(sum(row[m] for row in items), len(items)).as_dict() for m in suite.metrics}
    halts = {i: h for i, h in enumerate(replies.halted_at) if h is not None}  # empty without a guard
    for i, halt in halts.items():
        items[i]["halted_at"] = halt
    if not halts:
        return {"metrics": metrics, "items": items}
    guard = {"halted": len(halts), "median_halt_token": statistics.median(halts.values())}
    return {"metrics": metrics, "items": items, "guard": guard}


def _diversity(sampler: Sampler, suite: Suite, tasks: list[RLTask]) -> dict:
    """distinct-2 and self-BLEU of `suite.samples` temperature-1 samples on each of the first prompts."""
    tasks = tasks[: suite.prompts]
    values, groups = sample_diversity(sampler, [t.prompt for t in tasks], suite.samples, DIVERSITY_PARAMS)
    items = [
        {"id": i, "prompt": t.prompt[-1].content, "samples": g}
        for i, (t, g) in enumerate(zip(tasks, groups, strict=True))
    ]
    return {"metrics": {m: {"value": values[m]} for m in suite.metrics}, "items": items}


def compare(eval_a: dict, eval_b: dict) -> dict:
    """Rates, difference (b - a) and McNemar test for every binary metric of every suite both evaluations ran."""
    suites_a, suites_b = eval_a["suites"], eval_b["suites"]
    out: dict = {}
    for suite in suites_a.keys() & suites_b.keys():
        items_a, items_b = suites_a[suite].get("items", []), suites_b[suite].get("items", [])
        if [row["prompt"] for row in items_a] != [row["prompt"] for row in items_b]:
            raise ValueError(f"suite {suite!r}: the two evaluations are not on the same items (same data and limit?)")
        shared = suites_a[suite]["metrics"].keys() & suites_b[suite]["metrics"].keys()
        binary = [
            m for m in suites_a[suite]["metrics"] if m in shared and _is_binary(items_a, m) and _is_binary(items_b, m)
        ]
        for metric in binary:
            rate_a, rate_b = suites_a[suite]["metrics"][metric], suites_b[suite]["metrics"][metric]
            test = mcnemar([row[metric] for row in items_a], [row[metric] for row in items_b])
            difference = rate_b["value"] - rate_a["value"]
            out.setdefault(suite, {})[metric] = {"a": rate_a, "b": rate_b, "difference": difference, "mcnemar": test}
    skipped = sorted((suites_a.keys() | suites_b.keys()) - out.keys())  # in one only, or with no binary metric
    return {"a": eval_a["model"], "b": eval_b["model"], "suites": dict(sorted(out.items())), "skipped": skipped}


def _is_binary(items: list[dict], metric: str) -> bool:
    return bool(items) and all(isinstance(row.get(metric), bool) for row in items)


def run(config: EvalConfig) -> Path:
    """Evaluate `config.model` (and the baseline), write `<output>/eval.json` atomically, print a table."""
    result = evaluate_model(
        config.model, config.suites, config.data_dir or None, config.limit, config.progress, config.guard, config
    )
    result["config"] = config_to_dict(config)
    output = Path(config.output)
    if config.compare:
        baseline = _baseline(config, output)
        result["comparison"] = compare(baseline, result)
    path = output / "eval.json"
    atomic_write_json(path, result)
    print(format_table(result))
    print(f"wrote {path}")
    return path


def _baseline(config: EvalConfig, output: Path) -> dict:
    """The --compare evaluation: read from an eval.json, or run now (and kept as eval_baseline.json)."""
    given = Path(config.compare)
    if given.is_dir() and (given / "eval.json").is_file() and not (given / "config.json").is_file():
        given = given / "eval.json"
    if given.is_file():
        return json.loads(given.read_text())
    baseline = evaluate_model(
        config.compare, config.suites, config.data_dir or None, config.limit, config.progress, sampler_options=config
    )
    atomic_write_json(output / "eval_baseline.json", baseline)
    return baseline


def format_table(result: dict) -> str:
    """suite, metric, value [95% interval]; then, with a comparison, baseline -> model and the McNemar p-value."""
    lines = [f"{'suite':<14} {'metric':<20} value"]
    for suite, block in result["suites"].items():
        for metric, rate in block["metrics"].items():
            ci = f" [{rate['ci95_low']:.3f}, {rate['ci95_high']:.3f}] n={rate['n']}" if "n" in rate else ""
            lines.append(f"{suite:<14} {metric:<20} {rate['value']:.3f}{ci}")
    comparison = result.get("comparison")
    if comparison:
        lines += ["", f"a = {comparison['a']}, b = {comparison['b']}", f"{'suite':<14} {'metric':<20} a -> b (p)"]
        for suite, metrics in comparison["suites"].items():
            for metric, c in metrics.items():
                line = f"{c['a']['value']:.3f} -> {c['b']['value']:.3f} (McNemar p={c['mcnemar']['p_value']:.3g})"
                lines.append(f"{suite:<14} {metric:<20} {line}")
    return "\n".join(lines)
