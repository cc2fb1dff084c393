"""`posttrain run recipe.yaml`: run a recipe's stages in order, evaluate each checkpoint, keep the lineage.

For every stage, top to bottom:
1. fingerprint it: its kind, its resolved config and its parent's fingerprint, so a change upstream reaches every
   stage below it; the input files' SHA-256 are recorded beside it;
2. decide: a stage that finished with the same fingerprint, the same inputs and from the same run of its parent
   (every execution gets a run id) is reused; one whose settings, inputs or parent changed is refused with a
   message naming what changed (`--force NAME` reruns it and every stage after it); a stage interrupted with the
   same settings resumes (`resume=true`); otherwise it runs;
3. run it through the registry (`posttrain.registry`), with `model` set to its parent's `final/`;
4. evaluate its model on the recipe's suites (`posttrain.eval.run.evaluate_model`) into `evals/NAME.json`;
5. check its gates against earlier evaluations: a tripped gate stops the recipe (`GateTripped`), keeping what was
   written;
6. write `lineage.json` (after every stage, atomically) and, at the end or on a gate, `report.html`.

`lineage.json` is also the runner's memory between invocations: the fingerprints it compares against are there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from posttrain import __version__
from posttrain.io import atomic_write_json, atomic_write_text
from posttrain.recipe import Gate, PlannedStage, Recipe, RecipeError
from posttrain.train.config import config_to_dict
from posttrain.train.manifest import file_sha256, git_revision

log = logging.getLogger("posttrain.pipeline")
VOLATILE = ("progress", "resume", "trackers", "save_every", "keep_last", "eval_every")  # do not change the model


class GateTripped(RuntimeError):
    """A stage's evaluation broke one of its gates; the recipe stopped after writing everything so far."""


LORA_SETTINGS = ("lora_r", "lora_alpha", "lora_targets")  # change nothing when `lora` is off


def portable(config: dict[str, Any], root: Path) -> dict[str, Any]:
    """The config less display keys (and LoRA settings when LoRA is off), with paths inside the recipe root written
    relative to it (a moved or copied run directory is the same run)."""
    prefix = f"{root}/"
    unused = VOLATILE + (() if config.get("lora") else LORA_SETTINGS)
    return {k: v.replace(prefix, "${root}/") if isinstance(v, str) else v for k, v in config.items() if k not in unused}


def fingerprint(stage: PlannedStage, parent_fingerprint: str, root: Path) -> str:
    """A stage's identity: kind, resolved config (less display keys, root-relative) and its parent's fingerprint."""
    config = portable(config_to_dict(stage.config), root)
    blob = json.dumps({"kind": stage.kind.name, "config": config, "parent": parent_fingerprint}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def input_hashes(stage: PlannedStage) -> dict[str, dict[str, str | None]]:
    """{config key: {path, sha256}} of the stage's input files (sha256 None while an earlier stage has yet to make
    the file)."""
    paths = {key: getattr(stage.config, key) for key in stage.kind.inputs if getattr(stage.config, key)}
    return {key: {"path": path, "sha256": file_sha256(path)} for key, path in paths.items()}


def fingerprints(recipe: Recipe) -> dict[str, str]:
    """Every stage's fingerprint; the base's is its model spec's."""
    out = {"base": hashlib.sha256(recipe.model.encode()).hexdigest()}
    for stage in recipe.stages:
        out[stage.name] = fingerprint(stage, out[stage.parent] if stage.parent else "", recipe.output)
    return out


def changes(before: dict, stage: PlannedStage, parent_changed: bool, root: Path, old_root: Path) -> list[str]:
    """What differs between an earlier run of a stage (its lineage entry) and the plan, in words."""
    now, then = portable(config_to_dict(stage.config), root), portable(before.get("config", {}), old_root)
    out = [f"{k}: {then.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(now) | set(then)) if then.get(k) != now.get(k)]
    return out + (["its parent stage changed"] if parent_changed else [])


def decide(
    recipe: Recipe, previous: dict[str, dict], forced: set[str], old_root: Path, strict: set[str]
) -> dict[str, str]:
    """For each stage: "run", "force", "resume" or "reuse". A changed stage that is not forced raises RecipeError
    when it is in `strict` (the stages about to run), else gets the action "refuse" with what changed."""
    prints, actions = fingerprints(recipe), {}
    for stage in recipe.stages:
        before = previous.get(stage.name)
        if stage.name in forced:
            actions[stage.name] = "force"
        elif before is None:
            actions[stage.name] = "run"
        elif before["fingerprint"] != prints[stage.name]:
            parent_changed = stage.parent is not None and before.get("parent_fingerprint") != prints[stage.parent]
            what = "; ".join(changes(before, stage, parent_changed, recipe.output, old_root)) or "its settings changed"
            if stage.name not in strict:
                actions[stage.name] = f"refuse ({what}; --force {stage.name} reruns it)"
                continue
            raise RecipeError(
                f"{recipe.path}: stages.{stage.name} was run in {recipe.output} with other settings "
                f"({what}): rerun it with --force {stage.name}, or choose another output"
            )
        else:
            actions[stage.name] = "reuse" if before.get("status") in ("done", "reused", "gated") else "resume"
    return actions


def select(recipe: Recipe, start: str | None, until: str | None) -> list[PlannedStage]:
    """The stages from `start` to `until` (inclusive), each a stage name of the recipe."""
    names = [s.name for s in recipe.stages]
    for flag, name in (("--from", start), ("--until", until)):
        if name is not None and name not in names:
            raise RecipeError(f"{recipe.path}: {flag} {name!r}: no such stage; stages: {', '.join(names)}")
    first = names.index(start) if start else 0
    last = names.index(until) if until else len(names) - 1
    if first > last:
        raise RecipeError(f"{recipe.path}: --from {start!r} comes after --until {until!r}")
    return list(recipe.stages[first : last + 1])


def plan_text(recipe: Recipe, actions: dict[str, str], selected: Sequence[PlannedStage]) -> str:
    """The resolved plan, for `--dry-run`: each stage's action, parent and config."""
    lines = [
        f"recipe {recipe.path} -> {recipe.output}",
        f"base model: {recipe.model}",
        f"evaluation: {', '.join(recipe.suites) or 'none'}" + (f" (limit {recipe.limit})" if recipe.limit else ""),
    ]
    chosen = {s.name for s in selected}
    for stage in recipe.stages:
        action = actions[stage.name] if stage.name in chosen else "skip (outside --from/--until)"
        lines.append(f"\n[{stage.name}] stage={stage.kind.name} from={stage.parent or '-'} action={action}")
        lines += [f"  gate: {g.describe()}" for g in stage.gates]
        lines += ["  " + line for line in yaml.safe_dump(config_to_dict(stage.config), sort_keys=False).splitlines()]
    return "\n".join(lines)


def read_lineage(root: Path) -> dict:
    """The lineage written by an earlier invocation, or an empty one."""
    path = root / "lineage.json"
    return json.loads(path.read_text()) if path.exists() else {"stages": []}


class Runner:
    """Runs a checked recipe; see the module docstring."""

    def __init__(self, recipe: Recipe, progress: bool = True):
        self.recipe, self.root, self.progress = recipe, recipe.output, progress
        self.prints = fingerprints(recipe)
        previous = read_lineage(self.root)
        self.entries = {e["name"]: e for e in previous["stages"]}
        self.old_root = Path(previous.get("output", self.root))  # where an earlier run was written (it may have moved)

    def run(
        self, start: str | None = None, until: str | None = None, force: Sequence[str] = (), dry_run: bool = False
    ) -> Path:
        """Run the selected stages; returns the recipe root. `--force NAME` also reruns every stage after NAME."""
        names = [s.name for s in self.recipe.stages]
        unknown = [f for f in force if f not in names]
        if unknown:
            raise RecipeError(f"{self.recipe.path}: --force {unknown[0]!r}: no such stage")
        forced = set().union(*(names[names.index(f) :] for f in force)) if force else set()
        selected = select(self.recipe, start, until)
        strict = set() if dry_run else {s.name for s in selected}
        actions = decide(self.recipe, self.entries, forced, self.old_root, strict)
        if dry_run:
            print(plan_text(self.recipe, actions, selected))
            return self.root
        self.check_earlier(names[: names.index(selected[0].name)], actions, selected[0].name)
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.root / "recipe.yaml", self.recipe.path.read_text())
        try:
            for stage in selected:
                self.stage(stage, actions[stage.name])
        except GateTripped:
            self.finish()
            raise
        self.finish()
        return self.root

    def check_earlier(self, earlier: Sequence[str], actions: dict[str, str], start: str) -> None:
        """With --from: every earlier stage finished with these settings and passed its gates."""
        for name in earlier:
            if actions[name] != "reuse":
                raise RecipeError(
                    f"{self.recipe.path}: --from {start!r}: the earlier stage {name!r} has not finished with these "
                    "settings; run it first"
                )
            if self.entries[name]["status"] == "gated":
                raise RecipeError(f"{self.recipe.path}: --from {start!r}: the earlier stage {name!r} tripped a gate")

    def stage(self, stage: PlannedStage, action: str) -> None:
        """Run (or reuse) one stage, evaluate it and check its gates."""
        entry = self.entry(stage)
        if action == "reuse" and not (self.root / entry["final"]).exists():
            action = "resume"  # it finished once, but its output was removed since
        entry |= self.reuse(stage) if action == "reuse" else self.execute(stage, action, entry)
        self.record(entry)  # done: a crash during evaluation does not train it again
        if stage.suites:
            entry["eval"] = self.evaluate(stage.name, str(self.root / stage.name / "final"), stage.suites, entry)
        entry["gates"] = [self.check(gate, stage.name) for gate in stage.gates]
        tripped = [g for g in entry["gates"] if not g["passed"]]
        self.record(entry | ({"status": "gated"} if tripped else {}))
        if tripped:
            raise GateTripped(
                f"stage {stage.name!r} tripped a gate: {tripped[0]['detail']}; the recipe stopped, and "
                f"everything so far is kept in {self.root}"
            )

    def reuse(self, stage: PlannedStage) -> dict[str, Any]:
        """The lineage facts of a stage that finished earlier with the same settings, inputs and parent run."""
        before = self.entries[stage.name]
        self.same_inputs(stage)
        if stage.parent and before.get("parent_run") != self.run_of(stage.parent):
            raise RecipeError(
                f"{self.recipe.path}: stages.{stage.name}: its parent {stage.parent!r} was run again since it "
                f"ran: rerun it with --force {stage.name}"
            )
        log.info("stage %s: reused (same settings, inputs and parent)", stage.name)
        kept = ("run", "seconds", "finished_at", "inputs", "posttrain_version", "git_revision", "parent_run",
                "decontamination")  # fmt: skip
        return {key: before[key] for key in kept if key in before} | {"status": "reused"}

    def execute(self, stage: PlannedStage, action: str, entry: dict[str, Any]) -> dict[str, Any]:
        """Run the stage through the registry ("resume" continues from its checkpoints); returns its lineage facts."""
        out = self.root / stage.name
        if action == "run" and out.exists():
            raise RecipeError(
                f"{out} holds files that {self.root / 'lineage.json'} does not know: choose another "
                f"output, or replace them with --force {stage.name}"
            )
        if action == "force" and out.exists():
            shutil.rmtree(out)
        log.info("stage %s: %s", stage.name, action)
        facts = {"run": uuid.uuid4().hex[:12], "parent_run": self.run_of(stage.parent) if stage.parent else None,
                 "posttrain_version": __version__, "git_revision": git_revision()}  # fmt: skip
        self.record(entry | facts | {"status": "running"})
        config = stage.config
        if "progress" in {f.name for f in dataclasses.fields(config)}:
            config = dataclasses.replace(config, progress=self.progress)
        started = time.perf_counter()
        try:
            final = stage.kind.execute(config)
        except Exception:  # the stage failed (its data refused, say): say so, with the gate's report, then stop
            self.record(entry | facts | {"status": "failed"} | decontamination(out))
            from posttrain.eval.report import write_report

            write_report(self.root)
            raise
        return (
            facts
            | {
                "status": "done",
                "seconds": time.perf_counter() - started,
                "final": _relative(final, self.root),
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "inputs": input_hashes(stage),
            }
            | decontamination(self.root / stage.name)
        )

    def run_of(self, name: str) -> str:
        """The id of the execution whose model `name` holds now ("base" for the base model)."""
        return "base" if name == "base" else self.entries[name].get("run")

    def same_inputs(self, stage: PlannedStage) -> None:
        """Refuse to reuse a stage whose input files changed since it ran."""
        before = self.entries[stage.name].get("inputs", {})
        changed = [k for k, v in input_hashes(stage).items() if before.get(k, {}).get("sha256") != v["sha256"]]
        if changed:
            raise RecipeError(
                f"{self.recipe.path}: stages.{stage.name}: input {changed[0]!r} "
                f"({getattr(stage.config, changed[0])}) changed since the stage ran: rerun it with "
                f"--force {stage.name}"
            )

    def entry(self, stage: PlannedStage) -> dict[str, Any]:
        """The stage's lineage entry, before it runs."""
        parent = stage.parent
        return {
            "name": stage.name,
            "kind": stage.kind.name,
            "parent": parent,
            "model": getattr(stage.config, "model", None),
            "output": stage.name,
            "final": _relative(self.root / stage.name / "final", self.root) if stage.kind.trains_model else stage.name,
            "trains_model": stage.kind.trains_model,
            "config": config_to_dict(stage.config),
            "fingerprint": self.prints[stage.name],
            "parent_fingerprint": self.prints[parent] if parent else None,
            "eval": None,
            "gates": [],
        }

    def evaluate(self, name: str, model: str, suites: Sequence[str], entry: dict[str, Any]) -> str:
        """`evals/NAME.json` for `model`: reused only when written for the same execution, suites, limit and data."""
        from posttrain.eval.run import evaluate_model

        path = self.root / "evals" / f"{name}.json"
        key = f"{entry['run']}|{entry['fingerprint']}|{','.join(suites)}|{self.recipe.limit}|{self.eval_data_key()}"
        key = hashlib.sha256(key.encode()).hexdigest()
        if not (path.exists() and json.loads(path.read_text()).get("fingerprint") == key):
            result = evaluate_model(model, suites, self.recipe.eval_data, self.recipe.limit, self.progress)
            atomic_write_json(path, result | {"fingerprint": key})
        return _relative(path, self.root)

    def eval_data_key(self) -> str:
        """A hash of the evaluation's set files (the recipe's `eval.data_dir`, else the cached demo sets)."""
        from posttrain.eval.suites import SUITES, eval_sets

        paths = eval_sets(self.recipe.eval_data)
        files = sorted({SUITES[s].data for s in self.recipe.suites})
        return hashlib.sha256("".join(str(file_sha256(paths[f])) for f in files).encode()).hexdigest()

    def check(self, gate: Gate, name: str) -> dict[str, Any]:
        """Whether `name`'s evaluation keeps `gate`, with the numbers."""
        if gate.against == "base":
            self.evaluate_base()
        now, then = self.metric(name, gate), self.metric(gate.against, gate)
        change = 100 * (now - then)
        passed = -change <= gate.max_drop if gate.max_drop is not None else change <= gate.max_rise
        detail = (
            f"{gate.suite}.{gate.metric} is {100 * now:.1f}% after {name}, {100 * then:.1f}% after "
            f"{gate.against} ({change:+.1f} points); rule: {gate.describe()}"
        )
        return {"rule": gate.describe(), "passed": passed, "detail": detail}

    def metric(self, name: str, gate: Gate) -> float:
        """The value of `gate`'s metric in evaluation `name`."""
        result = json.loads((self.root / "evals" / f"{name}.json").read_text())
        return result["suites"][gate.suite]["metrics"][gate.metric]["value"]

    def evaluate_base(self) -> None:
        """The starting model's evaluation (after the stages that build the evaluation data, if any)."""
        self.evaluate(
            "base", self.recipe.model, self.recipe.suites, {"run": "base", "fingerprint": self.prints["base"]}
        )

    def record(self, entry: dict[str, Any]) -> None:
        """Put `entry` into lineage.json."""
        self.entries[entry["name"]] = entry
        self.write_lineage()

    def write_lineage(self) -> None:
        """lineage.json (atomically), the stages in the recipe's order."""
        stages = [self.entries[s.name] for s in self.recipe.stages if s.name in self.entries]
        base_eval = self.root / "evals" / "base.json"
        atomic_write_json(
            self.root / "lineage.json",
            {
                "recipe": str(self.recipe.path),
                "output": str(self.root),
                "posttrain_version": __version__,
                "git_revision": git_revision(),
                "base": {"model": self.recipe.model, "eval": "evals/base.json" if base_eval.exists() else None},
                "stages": stages,
            },
        )

    def finish(self) -> None:
        """The base model's evaluation if the recipe has one, the HTML report and the checkpoint table."""
        if self.recipe.suites:
            self.evaluate_base()
            self.write_lineage()
        from posttrain.eval.report import write_report
        from posttrain.eval.table import checkpoint_table

        write_report(self.root)
        table = checkpoint_table(self.root)
        if table:
            atomic_write_text(self.root / "results.md", table)
            print(table)
        print(f"report: {self.root / 'report.html'}")


def decontamination(out: Path) -> dict[str, Any]:
    """The stage's decontamination report in brief (`posttrain.gate`), for the lineage; {} if it has none."""
    path = out / "decontamination" / "report.json"
    if not path.exists():
        return {}
    report = json.loads(path.read_text())
    keys = ("mode", "files", "methods", "offending_rows", "per_benchmark", "dropped", "unreadable_rows")
    return {"decontamination": {k: report[k] for k in keys if k in report} | {"report": str(path.relative_to(out))}}


def _relative(path: Path | str, root: Path) -> str:
    path = Path(path)
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
