"""`manifest.json`: what a stage was run on (inputs with hashes, model, parent stage), by which code."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

from posttrain import __version__
from posttrain.io import atomic_write_json


def file_sha256(path: str | Path) -> str | None:
    """SHA-256 of a file (None for a directory or a missing path)."""
    path = Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_revision() -> str | None:
    """The git commit of the posttrain source tree, if it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def write_manifest(run_dir: Path, stage: str, model: str, inputs: dict[str, str], extra: dict[str, Any]) -> None:
    """Record the stage's lineage; a model that is an earlier stage's `final/` is named as the parent."""
    parent = Path(model).parent if (Path(model) / "config.json").is_file() else None
    atomic_write_json(
        Path(run_dir) / "manifest.json",
        {
            "stage": stage,
            "model": model,
            "parent_stage": str(parent) if parent and (parent / "manifest.json").is_file() else None,
            "inputs": {name: {"path": path, "sha256": file_sha256(path)} for name, path in inputs.items() if path},
            "posttrain_version": __version__,
            "git_revision": git_revision(),
            **extra,
        },
    )
