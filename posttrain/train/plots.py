"""Training curves as PNG: one panel per metric, read from a run's `metrics.jsonl`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from posttrain.io import atomic_write_bytes


def plot_curves(metrics_path: Path, out: Path, keys: Sequence[str]) -> Path | None:
    """Draw each of `keys` against the step (rows without the key are skipped); None when nothing to draw."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    present = [k for k in keys if any(k in r for r in rows)]
    if not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3.2), squeeze=False)
    for ax, key in zip(axes[0], present, strict=True):
        points = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot(*zip(*points, strict=True), marker="o" if len(points) < 30 else None, markersize=3)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(out, buffer.getvalue())
    return out
