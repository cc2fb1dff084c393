"""Select a small, hard, diverse training set from a larger pool, LIMO- and s1-style, and report what was dropped.

The rules (`RULES`) run in order, each on what the ones before it kept; every record is either kept by all of them
or dropped by exactly one, with a reason:
1. `length`: question + response outside [min_words, max_words] words;
2. quality (`posttrain.curation.quality`): `empty`, `non_text` (mostly symbols), `non_latin` (mostly non-Latin
   letters: not English), `cut_off` (a response that stops mid-way), `repetitive` (a question or response that loops);
3. `exact_duplicate`, `near_duplicate` (`posttrain.curation.dedup`): the same question up to case and whitespace, or
   MinHash Jaccard >= dedup_threshold on word 5-grams; the first in file order is kept;
4. `difficulty` (`posttrain.curation.difficulty`, rl schema with --model): `samples` completions per task from the
   policy, scored by the task's verifier; pass rates outside [min_pass, max_pass] are dropped (the defaults drop
   what the policy solves more than half the time, and keep what it never solves unless --drop-unsolved);
5. `diversity` (`posttrain.curation.diversity`): k-means clusters of the questions' sentence embeddings, and `n`
   records taken round-robin across the clusters, hardest first in each.

Where it departs from the papers: one policy's sampled pass rate stands for s1's "solved by either of two models"
and LIMO's multi-model filter; clusters of embeddings stand for s1's subject domains; within a cluster the hardest
come first instead of s1's preference for long reasoning traces. The quality checks are cheap heuristics, each
listed with its thresholds in `posttrain.curation.quality`; `--skip RULE,...` turns any rule off.

Writes, atomically: OUTPUT (the selected JSONL rows, byte for byte as read, in input order), OUTPUT.report.json
(counts per rule that add up to the lines read, the first few drops per rule as file:line and reason, the kept
records per cluster and the pass-rate histogram of what was kept) and OUTPUT.dropped.jsonl (every drop).

Launch:
    posttrain curate pool.jsonl --schema rl --model runs/sft/final --samples 8 --n 1000 --output hard.jsonl
    posttrain curate chats.jsonl --schema sft --n 500 --skip non_latin --output picked.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from posttrain.curation.dedup import exact_duplicates, near_duplicates
from posttrain.curation.difficulty import PassBand, check_rateable, difficulty
from posttrain.curation.diversity import spread_across_clusters
from posttrain.curation.items import Item, read_items
from posttrain.curation.quality import QUALITY_CHECKS, outside_length
from posttrain.curation.rules import Outcome, by_check
from posttrain.data import DataError
from posttrain.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from posttrain.rollout import SamplingParams
from posttrain.train.config import ConfigError, add_config_arguments, config_from_args, config_to_dict, option

EXAMPLES = 5  # dropped records shown per rule in the report
MAX_DEDUP_THRESHOLD = 0.98  # MinHash LSH over 128 permutations needs at least two bands, which caps the threshold


@dataclass(frozen=True)
class CurateConfig:
    schema: str = option("rl", "rl (tasks: every rule) or sft (conversations: every rule but difficulty)")
    output: str = option("", "the selected rows (JSONL); OUTPUT.report.json and OUTPUT.dropped.jsonl beside it")
    n: int = option(1000, "target size, spread across clusters; 0: every record that passes the other rules")
    clusters: int = option(0, "k-means clusters for diversity; 0: round(sqrt(N/2)); 1: one (no embeddings)")
    min_words: int = option(3, "fewest words in question + response")
    max_words: int = option(4000, "most words in question + response; 0: no limit")
    dedup_threshold: float = option(0.8, "near-duplicate at this estimated Jaccard similarity (word 5-grams)")
    model: str = option("", "policy whose pass rate measures difficulty (rl schema); empty: no difficulty rule")
    samples: int = option(8, "completions sampled per task for its pass rate")
    min_pass: float = option(0.0, "lowest pass rate kept")
    max_pass: float = option(0.5, "highest pass rate kept (what the policy always solves is dropped)")
    drop_unsolved: bool = option(False, "also drop tasks the policy never solved (pass rate 0)")
    max_new_tokens: int = option(512, "completion length cap when sampling")
    temperature: float = option(1.0, "sampling temperature")
    batch_size: int = option(64, "rows decoded together when sampling")
    skip: tuple[str, ...] = option((), "rules not to apply, comma-separated")
    skip_invalid: bool = option(False, "skip invalid lines (counted in the report) instead of stopping at the first")
    seed: int = option(0, "seed for sampling, k-means and the selection order")
    progress: bool = option(True, "show progress bars")


Rule = Callable[[list[Item], CurateConfig], Outcome]


def _check_rule(name: str) -> Rule:
    return lambda items, config: by_check(items, QUALITY_CHECKS[name])


def _difficulty(items: list[Item], config: CurateConfig) -> Outcome:
    from posttrain.models import load_policy
    from posttrain.train.setup import device_for_training

    model, tokenizer = load_policy(config.model)
    model.to(device_for_training()).eval()
    params = SamplingParams(config.max_new_tokens, config.temperature, seed=config.seed)
    band = PassBand(config.min_pass, config.max_pass, config.drop_unsolved)
    return difficulty(items, (model, tokenizer), config.samples, params, band, config.batch_size, config.progress)


RULES: dict[str, Rule] = {  # applied in this order: cheap checks first, so only what survives them is sampled
    "length": lambda items, c: by_check(items, lambda item: outside_length(item, c.min_words, c.max_words)),
    **{name: _check_rule(name) for name in QUALITY_CHECKS},
    "exact_duplicate": lambda items, c: exact_duplicates(items),
    "near_duplicate": lambda items, c: near_duplicates(items, c.dedup_threshold, c.progress),
    "difficulty": _difficulty,
    "diversity": lambda items, c: spread_across_clusters(items, c.n, c.clusters, c.seed),
}


def skipped_because(name: str, config: CurateConfig) -> str | None:
    """Why rule `name` does not run, or None when it does."""
    if name in config.skip:
        return "skipped (--skip)"
    if name == "difficulty" and not config.model:
        return "skipped: no --model to measure pass rates with"
    return None


def check_config(config: CurateConfig, input_path: str) -> None:
    """Refuse bad settings before anything is read or written."""
    problems = [
        (not config.output, "curate needs --output FILE.jsonl"),
        (bool(config.output) and Path(config.output).resolve() == Path(input_path).resolve(), "--output is the input"),
        (config.schema not in ("rl", "sft"), f"schema must be rl or sft, got {config.schema!r}"),
        (bool(set(config.skip) - set(RULES)), f"skip: unknown rule(s) {sorted(set(config.skip) - set(RULES))}"),
        (
            config.schema == "sft" and bool(config.model),
            "--model rates difficulty with each task's verifier, which only rl-schema tasks name; sft records have "
            "none: drop --model (the other rules still apply) or curate rl tasks",
        ),
        (not 0 <= config.min_pass <= config.max_pass <= 1, "need 0 <= min_pass <= max_pass <= 1"),
        (config.samples < 1 or config.n < 0 or config.clusters < 0, "samples must be >= 1, n and clusters >= 0"),
        (
            not 0 < config.dedup_threshold <= MAX_DEDUP_THRESHOLD,
            f"dedup_threshold must be in (0, {MAX_DEDUP_THRESHOLD}]",
        ),
    ]
    bad = [message for is_bad, message in problems if is_bad]
    if bad:
        raise ConfigError("; ".join(bad))


@dataclass(frozen=True)
class Step:
    """One rule as it ran: its name, whether it ran, how many records it was given, and its verdict."""

    rule: str
    status: str
    given: int
    outcome: Outcome


def apply_rules(items: list[Item], config: CurateConfig) -> list[Step]:
    """Every rule in `RULES` order on what the rules before it kept."""
    steps = []
    for name, rule in RULES.items():
        why = skipped_because(name, config)
        outcome = Outcome(items, []) if why else rule(items, config)
        steps.append(Step(name, why or "applied", len(items), outcome))
        items = outcome.kept
    return steps


def _drop_row(source, rule: str, reason: str) -> dict:
    return {"source": str(source), "rule": rule, "reason": reason}


def drop_rows(invalid: tuple[DataError, ...], steps: list[Step]) -> list[dict]:
    """Every dropped record: its file:line, the rule that dropped it and why; invalid lines first."""
    rows = [_drop_row(e.source, "invalid", f"field '{e.field}': {e.problem}") for e in invalid]
    return rows + [_drop_row(d.item.source, s.rule, d.reason) for s in steps for d in s.outcome.dropped]


def kept_summary(steps: list[Step]) -> dict:
    """What was kept, per cluster (with the candidates each had) and per pass rate, where those rules ran."""
    diversity, summary = steps[-1], {}
    kept = diversity.outcome.kept
    if diversity.status == "applied":
        pool = Counter(item.cluster for item in [*kept, *(d.item for d in diversity.outcome.dropped)])
        taken = Counter(item.cluster for item in kept)
        summary["clusters"] = [{"cluster": c, "candidates": pool[c], "kept": taken[c]} for c in sorted(pool)]
    rates = Counter(item.pass_rate for item in kept if item.pass_rate is not None)
    if rates:
        summary["pass_rates_kept"] = {str(r): rates[r] for r in sorted(rates, key=lambda r: r.rate)}
    return summary


def build_report(input_path: str, config: CurateConfig, invalid: tuple[DataError, ...], steps: list[Step]) -> dict:
    """Counts per rule (they add up to the records read), the first drops of each, and what was kept."""
    drops = drop_rows(invalid, steps)
    rules = [{"rule": "invalid", "status": "applied", "given": steps[0].given + len(invalid), "dropped": len(invalid)}]
    rules += [{"rule": s.rule, "status": s.status, "given": s.given, "dropped": len(s.outcome.dropped)} for s in steps]
    for row in rules:
        row["examples"] = [d for d in drops if d["rule"] == row["rule"]][:EXAMPLES]
    return {
        "input": input_path,
        "output": config.output,
        "records": rules[0]["given"],
        "kept": len(steps[-1].outcome.kept),
        "rules": rules,
        **kept_summary(steps),
        "settings": config_to_dict(config),
    }


def report_paths(output: str) -> tuple[Path, Path]:
    """OUTPUT.report.json and OUTPUT.dropped.jsonl for an output file."""
    out = Path(output)
    return out.with_suffix(".report.json"), out.with_suffix(".dropped.jsonl")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `posttrain curate` arguments: the input file, then one flag per `CurateConfig` field."""
    parser.add_argument("input", help="the pool to select from: JSON Lines in the rl or sft schema")
    add_config_arguments(parser, CurateConfig)
    parser.epilog = f"rules, in order: {', '.join(RULES)}"


def run(args: argparse.Namespace) -> int:
    """Curate `args.input` into the output file and its report; 0 when done."""
    config = config_from_args(CurateConfig, args)
    check_config(config, args.input)
    items, invalid = read_items(args.input, config.schema, config.skip_invalid)
    if skipped_because("difficulty", config) is None:
        check_rateable([item.record for item in items])  # before any model is loaded
    steps = apply_rules(items, config)
    kept = steps[-1].outcome.kept
    report = build_report(args.input, config, invalid, steps)
    report_path, dropped_path = report_paths(config.output)
    atomic_write_bytes(Path(config.output), b"".join(item.row + b"\n" for item in kept))
    atomic_write_json(report_path, report)
    atomic_write_text(dropped_path, "".join(json.dumps(row) + "\n" for row in drop_rows(invalid, steps)))
    drops = ", ".join(f"{r['rule']} {r['dropped']}" for r in report["rules"] if r["dropped"])
    print(f"posttrain curate: kept {len(kept)} of {report['records']} ({drops or 'none dropped'}) -> {config.output}")
    print(f"posttrain curate: report {report_path}")
    return 0
