"""The registry of held-out benchmarks that training data is checked against (`posttrain decontaminate`, the gate).

`BENCHMARKS` is `posttrain.decontam.benchmarks.OFFLINE` (HarmBench, the held-out jailbreaks, HumanEval, the
hand-written evaluation requests, the Reasoning Gym, function and arithmetic held-out splits) and two that come from
the evaluation code:
- `demo_heldout`: the demo's held-out sets (`posttrain.demo.mix.HELDOUT`, seed 0: arithmetic, harmful, HarmBench,
  benign, RL arithmetic);
- `independent_sets`: every set `posttrain.eval.independent` builds (benign, framed, contrast, held-out jailbreak
  families) and the hand-written held-out chat.

The generated ones are built once into `<cache>/benchmarks/` (`posttrain.io.cache_dir`) under a key that hashes
the source files they are built from and the versions of the packages they read, so a change to either builds them
again, and a process that only scans does not import the evaluation code or Reasoning Gym.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

from posttrain.decontam.benchmarks import OFFLINE, Benchmark, benchmark, file_items
from posttrain.io import atomic_write_json


def _demo_heldout() -> list[str]:
    from posttrain.demo.mix import HELDOUT
    from posttrain.eval.suites import eval_sets

    paths = eval_sets()
    return [text for name in HELDOUT for text in file_items(paths[name])]


def _independent_sets() -> list[str]:
    from posttrain.eval.nll import CHAT_HELDOUT
    from posttrain.eval.suites import independent_sets

    sets = independent_sets() | {"chat_heldout": CHAT_HELDOUT}
    return [text for name in sorted(sets) for text in file_items(sets[name])]


BENCHMARKS: dict[str, Callable[[], list[str]]] = OFFLINE | {
    "demo_heldout": _demo_heldout,
    "independent_sets": _independent_sets,
}


SETS = Path(__file__).parent / "data" / "sets"
BUILT_FROM: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # name -> (modules, packages) of a cached set
    "demo_heldout": (
        ("posttrain.demo.mix", "posttrain.demo.texts", "posttrain.tasks.problems", "posttrain.data.heldout",
         "posttrain.data.neardup", "posttrain.decontam.scan", "posttrain.decontam.methods"),
        ("pyrit", "garak"),
    ),
    "independent_sets": (("posttrain.eval.independent", "posttrain.data.heldout", "posttrain.safety.attacks"), ("garak",)),
    "gym_heldout": (("posttrain.tasks.gym",), ("reasoning_gym",)),
    "functions_heldout": (("posttrain.tasks.functions", "posttrain.tasks.function_problems"), ()),
}  # fmt: skip


def built_key(name: str) -> str:
    """The cache key of a generated set: a hash of its source files, the hand-written sets and package versions."""
    from posttrain import __version__

    modules, packages = BUILT_FROM[name]
    digest = hashlib.sha256(f"{name}:{__version__}".encode())
    for path in sorted([*(Path(importlib.util.find_spec(m).origin) for m in modules), *SETS.iterdir()]):
        digest.update(path.read_bytes())
    for package in packages:
        digest.update(f"{package}=={importlib.metadata.version(package)}".encode())
    return digest.hexdigest()[:16]


def _items(name: str) -> list[str]:
    """A registered benchmark's items: generated sets from the cache (built there once), the others read."""
    if name not in BUILT_FROM:
        return BENCHMARKS[name]()
    from posttrain.io import cache_dir

    path = cache_dir() / "benchmarks" / f"{name}-{built_key(name)}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    items = BENCHMARKS[name]()
    atomic_write_json(path, items)
    return items


def load_benchmark(name_or_path: str) -> Benchmark:
    """A registered benchmark by name (read once per process), or the items of a file as it is now (`file_items`);
    errors name the file and line."""
    if name_or_path in BENCHMARKS:
        return _registered(name_or_path)
    if Path(name_or_path).exists():
        return benchmark(name_or_path, file_items(name_or_path), name_or_path)
    raise FileNotFoundError(
        f"benchmark {name_or_path!r} is neither a file nor a known benchmark; known: {', '.join(BENCHMARKS)}"
    )


@functools.cache
def _registered(name: str) -> Benchmark:
    return benchmark(name, _items(name), f"posttrain benchmark {name!r}")
