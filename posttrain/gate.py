"""The gate: before a stage trains, its training files are scanned against the benchmarks, and then

- `decontaminate=refuse` (the default) stops the stage before any work, naming every offending row (file:line), the
  field and the benchmark item it matches;
- `decontaminate=drop` writes the files less those rows into `<output>/decontamination/` and trains on them;
- `decontaminate=off` skips the scan; it has to be said, and the recipe's lineage records it.

Either way `<output>/decontamination/report.json` says what was checked, by which methods, against which benchmarks,
what matched and what was dropped; the recipe runner copies its summary into `lineage.json` and the HTML report.
A stage opts in by listing its training-data config keys in the registry (`Stage.trains_on`) and by deriving its
config from `DecontaminationOptions`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.benchmarks import BENCHMARKS, load_benchmark
from posttrain.decontam.benchmarks import NEEDS, available
from posttrain.decontam.methods import DEFAULT_METHODS
from posttrain.decontam.records import read_file_rows
from posttrain.decontam.scan import Detector, Scan
from posttrain.io import atomic_write_bytes, atomic_write_json
from posttrain.train.config import ConfigError, option

log = logging.getLogger("posttrain.decontam")
MODES = ("refuse", "drop", "off")
REPORT_DIR = "decontamination"
SHOWN = 10  # offending rows named in the refusal


class ContaminatedData(ValueError):
    """Training data overlaps a held-out benchmark (decontaminate=refuse)."""


@dataclass(frozen=True)
class DecontaminationOptions:
    """The gate's config keys, shared by every stage that trains on data."""

    decontaminate: str = option(
        "refuse", "training rows overlapping a held-out benchmark: refuse (name them), drop (remove and count them) "
        "or off (no check; recorded in the lineage)"
    )  # fmt: skip
    decontaminate_against: tuple[str, ...] = option(
        ("default",), "benchmarks to check against: registered names, files, or 'default' (every registered one)"
    )
    decontaminate_methods: tuple[str, ...] = option(DEFAULT_METHODS, "ngram13, ngram8, minhash, embedding")


def benchmark_names(against: Sequence[str]) -> list[str]:
    """`against` with "default" expanded to every registered benchmark whose package is installed (the others are
    logged as skipped: `posttrain.decontam.benchmarks.NEEDS`)."""
    missing = [n for n in BENCHMARKS if not available(n)]
    if missing and "default" in against:
        log.warning("decontamination: skipping %s (%s not installed)", ", ".join(missing),
                    ", ".join(sorted({NEEDS[n] for n in missing})))  # fmt: skip
    default = [n for n in BENCHMARKS if available(n)]
    return list(dict.fromkeys(n for name in against for n in (default if name == "default" else [name])))


def detector(against: Sequence[str], methods: Sequence[str]) -> Detector:
    """A detector for these benchmarks and methods, built once per process (files keyed by size and time)."""
    names = benchmark_names(against)
    stamps = tuple((n, *_stamp(n)) for n in names)
    return _detector(stamps, tuple(methods))


def _stamp(name: str) -> tuple[int, int]:
    if name in BENCHMARKS or not os.path.exists(name):
        return (0, 0)
    stat = os.stat(name)
    return (stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _detector(stamps: tuple, methods: tuple[str, ...]) -> Detector:
    """The fitted detector, from `<cache>/decontam/` when one was fitted on the same items with the same methods and
    code (fitting MinHash on a few thousand items takes seconds; loading it, a fraction of one)."""
    import pickle

    from posttrain.io import cache_dir

    benchmarks = [load_benchmark(name) for name, *_ in stamps]
    digest = hashlib.sha256(json.dumps([[b.name, b.items] for b in benchmarks] + [list(methods)]).encode())
    for path in sorted((Path(__file__).parent / "decontam").glob("*.py")):
        digest.update(path.read_bytes())
    cached = cache_dir() / "decontam" / f"detector-{digest.hexdigest()[:16]}.pkl"
    if cached.is_file():
        return pickle.loads(cached.read_bytes())
    fitted = Detector(benchmarks, methods)
    atomic_write_bytes(cached, pickle.dumps(fitted))
    return fitted


def gate(trains_on: Sequence[str], config: Any) -> Any:
    """`config` after the gate (module docstring): unchanged, refused, or with its training files replaced by
    decontaminated copies."""
    mode = config.decontaminate
    if mode not in MODES:
        raise ConfigError(f"decontaminate: {mode!r} is not one of {', '.join(MODES)}")
    files = {key: getattr(config, key) for key in trains_on if getattr(config, key)}
    missing = [key for key, path in files.items() if not os.path.exists(path)]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: {files[missing[0]]} does not exist")
    out = Path(config.output) / REPORT_DIR
    if mode == "off":
        log.warning("decontamination is off: %s not checked against held-out benchmarks", ", ".join(files) or "no file")
        atomic_write_json(out / "report.json", {"mode": "off", "files": files})
        return config
    found = detector(config.decontaminate_against, config.decontaminate_methods)
    scan = found.scan_files(files.values(), progress=getattr(config, "progress", False))
    report = {
        "mode": mode,
        "files": files,
        "benchmarks": {b.name: len(b.items) for b in found.benchmarks},
        "methods": found.describe(),
    } | scan.report(first=len(scan.matches))
    offending = scan.offending()
    if offending and mode == "refuse":
        atomic_write_json(out / "report.json", report)
        raise ContaminatedData(_refusal(offending, out / "report.json"))
    dirty = {m.file for m in scan.matches}
    replaced = {
        key: _without(path, scan, out / f"{key}{_suffix(path)}") for key, path in files.items() if path in dirty
    }
    report["dropped"] = {
        key: scan.rows[path] - replaced[key][1] if key in replaced else 0 for key, path in files.items()
    }
    atomic_write_json(out / "report.json", report)
    if offending:
        log.warning("decontamination dropped %d row(s) matching held-out benchmarks; see %s", len(offending), out)
    return dataclasses.replace(config, **{key: str(path) for key, (path, _) in replaced.items()})


def _refusal(offending: dict[str, list], report: Path) -> str:
    lines = [matches[0].describe() for matches in list(offending.values())[:SHOWN]]
    more = f"\n  ... and {len(offending) - SHOWN} more rows" if len(offending) > SHOWN else ""
    return (
        f"{len(offending)} training row(s) overlap held-out benchmarks:\n  " + "\n  ".join(lines) + more + "\n"
        "remove them from the data, or set decontaminate=drop to train without them (counted in the report), or "
        f"decontaminate=off to train on them anyway (recorded in the lineage); full report: {report}"
    )


def _suffix(path: str) -> str:
    return ".txt" if Path(path).suffix.lower() == ".txt" else ".jsonl"


def _without(path: str, scan: Scan, target: Path) -> tuple[Path, int]:
    """`path` less its offending rows, written to `target`; returns (target, rows kept). JSON Lines and text files
    keep their other lines byte for byte; Parquet and `datasets` rows become JSON Lines."""
    bad = {m.line for m in scan.matches if m.file == path}
    if Path(path).suffix.lower() in (".jsonl", ".json", ".txt"):
        lines = Path(path).read_bytes().split(b"\n")
        kept = [line for number, line in enumerate(lines, start=1) if number not in bad]
        atomic_write_bytes(target, b"\n".join(kept))
        return target, sum(1 for line in kept if line.strip())
    rows = [json.dumps(row.value) for row in read_file_rows(path) if row.source.line not in bad]
    atomic_write_bytes(target, ("\n".join(rows) + "\n").encode())
    return target, len(rows)
