"""Decontamination speed: records scanned against benchmark items, posttrain's vectorised scan beside a plain one.

The data is synthetic but shaped like chat data: words drawn from a Zipf law over a 30,000-word vocabulary, records
of 40-300 words written as sft-schema JSON Lines (a user turn and an assistant turn), benchmark items of 8-60 words;
1% of the records carry a benchmark item inside them, so the matches are not empty.

Sides, each timed from the JSONL file to the list of matches (the detector's fit on the items timed apart):
- "posttrain": `posttrain.decontam.scan.Detector.scan_files` with the default methods (13- and 8-gram coverage and
  MinHash), and with 13-gram coverage alone;
- "plain": what a one-off script does for 13-gram coverage: a dict from each item n-gram (a tuple of words) to its
  items, each record's n-grams as a set of tuples, counted per item in Python (the same normalisation).
Both sides find the same (record, item) pairs for 13-gram coverage; the script checks that. Scaling runs vary the
record and item counts.

    python bench/decontam_speed.py --records 100000 --items 10000 --scaling
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from posttrain.decontam.benchmarks import benchmark
from posttrain.decontam.methods import DEFAULT_METHODS, MIN_ITEM_WORDS
from posttrain.decontam.ngrams import words
from posttrain.decontam.records import read_file_rows
from posttrain.decontam.scan import Detector


def make_data(n_records: int, n_items: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(items, record texts): Zipf-distributed words, 1% of records holding an item."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i:x}" for i in range(30_000)])
    ranks = rng.zipf(1.2, size=(n_records * 170 + n_items * 34) * 2) - 1
    pool = vocab[ranks[ranks < len(vocab)]]
    cursor = 0

    def take(n: int) -> str:
        nonlocal cursor
        cursor += n
        return " ".join(pool[cursor - n : cursor])

    items = [take(int(rng.integers(8, 61))) for _ in range(n_items)]
    records = [take(int(rng.integers(40, 301))) for _ in range(n_records)]
    for i in rng.choice(n_records, size=n_records // 100, replace=False):
        records[i] = f"{records[i][:200]} {items[int(rng.integers(n_items))]} {records[i][200:]}"
    return items, records


def write_records(records: list[str], path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i, text in enumerate(records):
            half = len(text) // 2
            messages = [{"role": "user", "content": text[:half]}, {"role": "assistant", "content": text[half:]}]
            f.write(json.dumps({"messages": messages, "id": i}) + "\n")


def plain_ngram13(items: list[str], path: Path, threshold: float = 0.5) -> set[tuple[int, int]]:
    """13-gram coverage the plain way (module docstring); (line, item) pairs."""
    n, index, sizes = 13, defaultdict(list), {}
    for i, item in enumerate(items):
        toks = words(item)
        if len(toks) < MIN_ITEM_WORDS:
            continue
        grams = {tuple(toks[j : j + n]) for j in range(len(toks) - n + 1)} if len(toks) >= n else {tuple(toks)}
        sizes[i] = len(grams)
        for gram in grams:
            index[gram].append(i)
    lengths = sorted({len(g) for g in index})
    found = set()
    for row in read_file_rows(path):
        for _, text in row.fields:
            toks, counts = words(text), defaultdict(int)
            grams = {tuple(toks[j : j + k]) for k in lengths for j in range(len(toks) - k + 1)}
            for gram in grams:
                for item in index.get(gram, ()):
                    counts[item] += 1
            found |= {(row.source.line, item) for item, c in counts.items() if c / sizes[item] >= threshold}
    return found


def timed(function, *args):
    started = time.perf_counter()
    out = function(*args)
    return out, time.perf_counter() - started


def one_size(n_records: int, n_items: int, plain: bool) -> dict:
    items, records = make_data(n_records, n_items)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.jsonl"
        write_records(records, path)
        bench = benchmark("synthetic", items, "bench")
        result = {"records": n_records, "items": n_items}
        for label, methods in (("default", DEFAULT_METHODS), ("ngram13", ("ngram13",))):
            detector, fit_s = timed(Detector, [bench], methods)
            scan, scan_s = timed(detector.scan_files, [str(path)])
            result[f"{label}_fit_s"], result[f"{label}_scan_s"] = round(fit_s, 2), round(scan_s, 2)
            result[f"{label}_rows_hit"] = len(scan.offending())
            if label == "ngram13":
                ours = {(m.line, m.item) for m in scan.matches}
        if plain:
            theirs, plain_s = timed(plain_ngram13, items, path)
            result["plain_ngram13_s"] = round(plain_s, 2)
            result["same_pairs"] = theirs == ours
            result["ngram13_speedup"] = round(plain_s / (result["ngram13_fit_s"] + result["ngram13_scan_s"]), 2)
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--scaling", action="store_true", help="also 25k/50k records and 2.5k/40k items")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    sizes = [(args.records, args.items)]
    if args.scaling:
        sizes += [(args.records // 4, args.items), (args.records // 2, args.items)]
        sizes += [(args.records, args.items // 4), (args.records, args.items * 4)]
    results = [one_size(r, i, plain=(r, i) == sizes[0]) for r, i in sizes]
    print("| records | items | fit s | scan s (default methods) | scan s (13-gram only) | rows hit |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['records']} | {r['items']} | {r['default_fit_s']} | {r['default_scan_s']} | "
              f"{r['ngram13_scan_s']} | {r['default_rows_hit']} |")  # fmt: skip
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    random.seed(0)
    main()
