"""Code executions per second: the sandboxed code verifier against a plain `python -I` subprocess, side by side.

Both sides run the same programs and tests: the first `--tasks` HumanEval problems, each the prompt plus its
canonical solution, then the problem's tests and `check(entry_point)`.
- "sandboxed": `CodeVerifier.score_batch`, two bubblewrap sandboxes per execution (the candidate's and the tests'),
  talking over pipes (`posttrain.rewards.code`);
- "plain": one `python -I -c` subprocess per execution running program and tests together, no sandbox, no
  isolation between them: what the simplest subprocess-based verifier pays;
- "plain -S": the same with `-I -S`, so without `site` (as the sandbox's interpreter runs): the floor.

Each side uses `--workers` threads. Sides alternate within each repeat (sandboxed, plain, sandboxed, ...), so that
both share the machine's noise; the ratio of the means is the figure to read on a shared machine.

    python bench/verifier_throughput.py --tasks 40 --workers 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from posttrain.rewards.code import CodeVerifier
from posttrain.sandbox import base_interpreter
from posttrain.tasks.humaneval import humaneval_tasks, read_humaneval


def plain_pass(command: list[str], program: str, tests: str, timeout_s: float) -> bool:
    """Run program + tests in one unsandboxed `command` (python -I) subprocess; True when it exits 0."""
    try:
        done = subprocess.run([*command, program + "\n" + tests], capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def run_plain(flags: list[str], jobs: list[tuple[str, str]], workers: int, timeout_s: float) -> int:
    """How many of `jobs` (program, tests) pass, run unsandboxed with the base interpreter and `flags`."""
    command = [base_interpreter(), *flags, "-c"]
    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(lambda job: plain_pass(command, *job, timeout_s), jobs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40, help="HumanEval problems per pass (from HumanEval/0)")
    parser.add_argument("--workers", type=int, default=2, help="executions in flight at once, on each side")
    parser.add_argument("--repeats", type=int, default=3, help="alternating passes of each side")
    args = parser.parse_args()

    problems, tasks = read_humaneval()[: args.tasks], humaneval_tasks(args.tasks)
    completions = [p["canonical_solution"] for p in problems]
    jobs = [(p["prompt"] + p["canonical_solution"], t.tests) for p, t in zip(problems, tasks, strict=True)]
    verifier = CodeVerifier(max_workers=args.workers)
    timeout_s = verifier.sandbox.limits.timeout_s
    sides = {
        "sandboxed": lambda: sum(s.reward == 1.0 for s in verifier.score_batch(tasks, completions)),
        "plain": lambda: run_plain(["-I"], jobs, args.workers, timeout_s),
        "plain -S": lambda: run_plain(["-I", "-S"], jobs, args.workers, timeout_s),
    }
    rates: dict[str, list[float]] = {side: [] for side in sides}
    for repeat in range(args.repeats):
        for side, run in sides.items():
            started = time.perf_counter()
            passed = run()
            seconds = time.perf_counter() - started
            rates[side].append(len(tasks) / seconds)
            rate = f"{seconds:6.2f} s, {rates[side][-1]:6.1f} executions/s, {passed}/{len(tasks)} passed"
            print(f"repeat {repeat}: {side:9s} {rate}", flush=True)
    means = {side: statistics.mean(values) for side, values in rates.items()}
    print("| side | executions/s (mean) | min | max | vs plain |")
    print("|---|---|---|---|---|")
    for side, values in rates.items():
        ratio = means[side] / means["plain"]
        print(f"| {side} | {means[side]:.1f} | {min(values):.1f} | {max(values):.1f} | {ratio:.2f}x |")
    print("RESULT " + json.dumps({"rates": rates, "ratios": {side: means[side] / means["plain"] for side in means}}))


if __name__ == "__main__":
    main()
