"""The distillation demo: the demo recipe's final model (the teacher) distilled on-policy into the base
SmolLM2-135M-Instruct (the student); how much of the teacher's gain the student recovers, and at what compute.

Prompts (rl schema, built from the demo run's own training data, so nothing held out is used): 96 arithmetic
problems (`rl_train_arithmetic.jsonl`), 64 harmful requests (the refusal rows of `train.jsonl`, verifier "refusal")
and 64 benign and everyday requests (verifier "compliance"), shuffled. `posttrain distill` with the reverse KL
(beta=1, lmbda=1), `prompts_per_step` 8, `--epochs` passes. The student, the base and the teacher are then evaluated on the
demo's held-out suites with the same code; recovery = (student - base) / (teacher - base), per metric.

    python bench/distill_demo.py --teacher runs/demo/constitution/final --demo runs/demo --output /tmp/distill
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

SUITES = ("arithmetic", "refusal", "harmbench", "over_refusal_independent")
METRICS = {"arithmetic": "accuracy", "refusal": "refusal_rate", "harmbench": "refusal_rate",
           "over_refusal_independent": "over_refusal"}  # fmt: skip


def build_prompts(demo: Path, out: Path, seed: int = 0) -> Path:
    rng = random.Random(seed)
    train = [json.loads(line) for line in (demo / "data" / "train.jsonl").read_text().splitlines()]
    math = [json.loads(line) for line in (demo / "data" / "rl_train_arithmetic.jsonl").read_text().splitlines()]
    refuse = [{"prompt": r["messages"][0]["content"], "verifier": "refusal"}
              for r in train if r["source"].startswith("refusal")]  # fmt: skip
    comply = [{"prompt": r["messages"][0]["content"], "verifier": "compliance"}
              for r in train if r["source"] in ("benign", "everyday", "chat")]  # fmt: skip
    for rows in (math, refuse, comply):
        rng.shuffle(rows)
    rows = math[:96] + refuse[:64] + comply[:64]
    rng.shuffle(rows)
    path = out / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="runs/demo/constitution/final")
    parser.add_argument("--demo", default="runs/demo", help="the demo recipe's output (its data/ and lineage.json)")
    parser.add_argument("--student", default="smollm2-135m-instruct")
    parser.add_argument("--output", default="/tmp/distill")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=1, help="passes over the prompts")
    parser.add_argument("--skip-train", action="store_true", help="evaluate an existing run")
    args = parser.parse_args()
    from posttrain.eval.run import evaluate_model
    from posttrain.registry import STAGES

    out, demo = Path(args.output), Path(args.demo)
    out.mkdir(parents=True, exist_ok=True)
    prompts = build_prompts(demo, out)
    n = len(prompts.read_text().splitlines())
    config = STAGES["distill"].config(
        model=args.student, teacher=args.teacher, prompts=str(prompts), output=str(out / "run"), beta=1.0,
        lmbda=1.0, temperature=1.0, max_new_tokens=args.max_new_tokens, prompts_per_step=8, max_steps=args.epochs * n // 8,
        lr=args.lr, warmup_ratio=0.1, row_tokens=512, rows_per_batch=4, save_every=0, decontaminate="drop",
    )  # fmt: skip
    started = time.perf_counter()
    final = out / "run" / "final" if args.skip_train else STAGES["distill"].execute(config)
    seconds = time.perf_counter() - started
    results = {}
    for name, model in (("base", args.student), ("teacher", args.teacher), ("student", str(final))):
        path = out / f"eval_{name}.json"
        if not path.exists():
            path.write_text(json.dumps(evaluate_model(model, SUITES, demo / "data", 0, True)))
        results[name] = json.loads(path.read_text())
    lineage = json.loads((demo / "lineage.json").read_text())
    recipe_s = {s["name"]: s.get("seconds") or 0 for s in lineage["stages"]}
    print(
        f"distill: {args.epochs * n // 8} steps, {seconds:.0f} s (0 if --skip-train); the demo recipe's stages: {recipe_s}"
    )
    print("| metric | base | teacher | student | recovered |\n|---|---|---|---|---|")
    for suite, metric in METRICS.items():
        b, t, s = (results[k]["suites"][suite]["metrics"][metric]["value"] for k in ("base", "teacher", "student"))
        share = (s - b) / (t - b) if t != b else float("nan")
        print(f"| {suite}.{metric} | {100 * b:.1f}% | {100 * t:.1f}% | {100 * s:.1f}% | {100 * share:.0f}% |")
    (out / "summary.json").write_text(
        json.dumps({"distill_s": seconds, "recipe_s": recipe_s, "steps": args.epochs * n // 8})
    )


if __name__ == "__main__":
    main()
