"""`RLTask`s to JSON Lines in the `rl` schema, so that `posttrain.data.load_records(path, "rl")` reads them back equal.

One task, one line: `{"prompt": [messages], "verifier": ..., "answer": ..., "tests": ..., <metadata keys>}`.
The loader turns every key other than prompt / verifier / answer / tests into metadata, so metadata is written at
the top level, and a metadata key with one of those four names is refused rather than silently lost. `answer` and
`tests` are left out when None (the loader reads a missing key as None). `task.source` (where a task was read
from) is not written: the new file is the source now.

The file is written atomically (`posttrain.io.atomic_write_text`): a reader never sees half of it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from posttrain.io import atomic_write_text
from posttrain.types import RLTask, as_dicts

RL_KEYS = ("prompt", "verifier", "answer", "tests")  # what `posttrain.data.schema` reads as fields, not metadata


def task_record(task: RLTask) -> dict[str, Any]:
    """The `rl` schema object for one task; metadata keys go at the top level."""
    clashes = sorted(set(task.metadata) & set(RL_KEYS))
    if clashes:
        raise ValueError(f"metadata keys {clashes} would be read back as rl fields (task from {task.source})")
    record: dict[str, Any] = {"prompt": as_dicts(task.prompt), "verifier": task.verifier}
    if task.answer is not None:
        record["answer"] = task.answer
    if task.tests is not None:
        record["tests"] = task.tests
    return record | dict(task.metadata)


def write_tasks(path: str | os.PathLike, tasks: Iterable[RLTask]) -> Path:
    """Write `tasks` as JSON Lines to `path`, atomically; return the path."""
    lines = []
    for i, task in enumerate(tasks):
        try:  # allow_nan=False: NaN and Infinity are not JSON, and other readers reject them
            lines.append(json.dumps(task_record(task), ensure_ascii=False, allow_nan=False) + "\n")
        except (TypeError, ValueError) as err:
            raise ValueError(f"task {i} (from {task.source}) cannot be written: {err}") from err
    path = Path(path)
    atomic_write_text(path, "".join(lines))
    return path
