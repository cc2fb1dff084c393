"""Decontamination quality: recall on planted contamination, per kind, and false positives on clean data.

Benchmarks: HarmBench (200 behaviours), HumanEval (164 prompts) and the hand-written evaluation requests (independent
benign requests and contrast pairs). Every item is planted four ways (`posttrain.decontam.planted`: exact,
reformatted, embedded in a longer record, light paraphrase) and matched by two method sets: the default (13- and
8-gram coverage, MinHash) and the default plus sentence embeddings. Clean data: AdvBench prompts left after the
HarmBench near-duplicate filter, the demo's everyday requests and answers, and its general chat; text that shares
topics and request shapes with the benchmarks but not their items.

    python bench/decontam_quality.py --output /tmp/decontam_quality.json
"""

from __future__ import annotations

import argparse
import json
import time

from posttrain.benchmarks import load_benchmark
from posttrain.data.heldout import load_harmbench
from posttrain.decontam.methods import DEFAULT_METHODS
from posttrain.decontam.ngrams import words
from posttrain.decontam.planted import KINDS, false_positives, plant, recall
from posttrain.decontam.scan import Detector
from posttrain.demo import texts
from posttrain.demo.mix import harmful_pool, load_advbench, load_dna

BENCHMARKS = ("harmbench", "humaneval", "hand_written")
METHOD_SETS = {"default": DEFAULT_METHODS, "default+embedding": (*DEFAULT_METHODS, "embedding")}


def clean_texts() -> list[str]:
    pool, _ = harmful_pool(load_advbench(), load_dna()[0], load_harmbench())
    everyday = [text for pair in texts.EVERYDAY_REQUESTS for text in pair]
    chat = [text for pair in texts.CHAT_PAIRS for text in pair]
    return [p.text for p in pool] + everyday + chat


def matches(detector: Detector, texts_: list[str]) -> list[list[tuple[int, float]]]:
    tokens = [words(t) for t in texts_]
    per_method = [method.match(tokens, texts_) for method in detector.methods.values()]
    return [[m for found in per_method for m in found[i]] for i in range(len(texts_))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output")
    args = parser.parse_args()
    benchmarks = [load_benchmark(name) for name in BENCHMARKS]
    items = [item for b in benchmarks for item in b.items]
    planted, clean = plant(items, seed=0), clean_texts()
    results = {"items": {b.name: len(b.items) for b in benchmarks}, "clean_texts": len(clean)}
    for label, methods in METHOD_SETS.items():
        started = time.perf_counter()
        detector = Detector(benchmarks, methods)
        row = {kind: round(recall(matches(detector, planted[kind]), range(len(items))), 4) for kind in KINDS}
        row["false_positives"] = round(false_positives(matches(detector, clean)), 4)
        row["seconds"] = round(time.perf_counter() - started, 1)
        results[label] = row
        print(label, json.dumps(row), flush=True)
    print("| methods | " + " | ".join(KINDS) + " | false positives (clean) |")
    print("|---|" + "---|" * (len(KINDS) + 1))
    for label in METHOD_SETS:
        row = results[label]
        print(f"| {label} | " + " | ".join(f"{100 * row[k]:.1f}%" for k in KINDS)
              + f" | {100 * row['false_positives']:.2f}% |")  # fmt: skip
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
