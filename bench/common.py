"""What the side-by-side benchmarks share: interleaved worker subprocesses and the ratio table."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

SIDES = ("posttrain", "trl")


def run_interleaved(base_cmd: list[str], repeats: int, summarize: Callable[[dict], dict]) -> tuple[dict, dict]:
    """Run `base_cmd --worker posttrain`, then `--worker trl`, `repeats` times; each prints `RESULT {json}`.

    Returns (summaries, raw results), each a list per side."""
    summaries: dict[str, list[dict]] = {side: [] for side in SIDES}
    raw: dict[str, list[dict]] = {side: [] for side in SIDES}
    for _ in range(repeats):
        for side in SIDES:
            proc = subprocess.run([*base_cmd, "--worker", side], capture_output=True, text=True, check=False)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{side} run failed:\n{proc.stderr[-3000:]}")
            raw[side].append(json.loads(line[len("RESULT ") :]))
            summaries[side].append(summarize(raw[side][-1]))
            print(side, json.dumps({k: round(v, 3) for k, v in summaries[side][-1].items()}), flush=True)
    return summaries, raw


def run_worker(run: Callable[[], dict]) -> None:
    """A worker's whole job: run one side, add its wall time and peak RSS, print `RESULT {json}`."""
    import resource
    import time

    started = time.perf_counter()
    result = run()
    result["wall_s"] = time.perf_counter() - started
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def print_ratio_table(summaries: dict[str, list[dict]], keys: tuple[str, ...]) -> dict[str, dict]:
    """Print means per side and posttrain / TRL ratios as a Markdown table; returns the means."""
    mean = {side: {k: sum(r[k] for r in rs) / len(rs) for k in rs[0]} for side, rs in summaries.items()}
    print("| metric | posttrain | TRL | posttrain / TRL |\n|---|---|---|---|")
    for key in keys:
        a, b = mean["posttrain"][key], mean["trl"][key]
        print(f"| {key} | {a:.4g} | {b:.4g} | {a / b:.2f}x |")
    return mean


def step_timer():
    """A transformers `TrainerCallback` that records each optimizer step's wall time in its `times` list."""
    import time

    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_begin(self, *args, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            self.times.append(time.perf_counter() - self.started)

    return StepTimer()


def matmul_peak_gflops(dtype, n: int = 2048, reps: int = 10) -> float:
    """Measured dense matmul rate of this machine in `dtype` (a torch dtype), GFLOP/s: the faster of `a @ b` and
    oneDNN's product with a pre-packed weight (the one the rollout engine uses; in fp32 it is twice `a @ b` here)."""
    import time

    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    products = {"matmul": lambda: a @ b}
    if torch.backends.mkldnn.is_available():
        packed = torch.ops.mkldnn._reorder_linear_weight(b, n)
        products["onednn"] = lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], "")
    rates = []
    for product in products.values():
        for _ in range(3):
            product()
        start = time.perf_counter()
        for _ in range(reps):
            product()
        rates.append(2 * n**3 * reps / (time.perf_counter() - start) / 1e9)
    return max(rates)
