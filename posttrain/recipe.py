"""Recipes: a YAML list of stages, each starting from the model of the stage before it. This module reads and checks
one and resolves it into a plan; `posttrain.pipeline` runs the plan.

    output: runs/demo                 # the recipe root: stage NAME writes <output>/NAME/
    model: smollm2-135m-instruct      # what the first model stage starts from ("base")
    eval:                             # optional: suites run on the base and after every model stage
      suites: [arithmetic, refusal, over_refusal, diversity]
      limit: 0                        # first N items of each suite; 0: all
    stages:
      - name: sft                     # unique; also the stage's directory
        stage: sft                    # a registered stage (posttrain.registry); default: the name
        from: base                    # "base" or an earlier stage; default: the last model stage before it
        config: {data: "${data}/train.jsonl", lr: 1.0e-4}   # the stage's config keys, as on its command line;
                                                            # ${NAME} is stage NAME's directory
        eval: false                   # no evaluation after this stage, or a list of suites
        gates:                        # stop the recipe if this stage's evaluation trips one (percentage points)
          - {suite: arithmetic, metric: accuracy, against: sft, max_drop: 5}
          - {suite: refusal, metric: harmful_compliance, against: base, max_rise: 0}

The recipe sets each stage's `output` and `resume`, and `model` (its parent's `final/`) where the stage takes one; a
stage block may not. Every problem is a `RecipeError` naming the file and the key, raised before anything is
written.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from posttrain.registry import STAGES, Stage
from posttrain.train.config import ConfigError, build_config

TOP_KEYS = {"output", "model", "eval", "stages"}
STAGE_KEYS = {"name", "stage", "from", "config", "eval", "gates"}
GATE_KEYS = {"suite", "metric", "against", "max_drop", "max_rise"}
SET_BY_RECIPE = ("model", "output", "resume")
_REFERENCE = re.compile(r"\$\{([A-Za-z0-9_-]+)\}")


class RecipeError(ConfigError):
    """A recipe that cannot run; the message names the file and the key."""


@dataclass(frozen=True)
class Gate:
    """Stop when `suite.metric` falls more than `max_drop` points, or rises more than `max_rise`, against a stage."""

    suite: str
    metric: str
    against: str  # "base" or an earlier stage
    max_drop: float | None = None
    max_rise: float | None = None

    def describe(self) -> str:
        """The rule in words."""
        if self.max_drop is not None:
            return f"{self.suite}.{self.metric} must not fall more than {self.max_drop:g} points below {self.against}"
        return f"{self.suite}.{self.metric} must not rise more than {self.max_rise:g} points above {self.against}"


@dataclass(frozen=True)
class PlannedStage:
    """A stage of the plan: what runs, from which model, with which resolved config."""

    name: str
    kind: Stage
    parent: str | None  # "base", an earlier stage, or None for a stage without a model
    config: Any  # the stage's resolved config dataclass
    suites: tuple[str, ...]  # evaluated after the stage
    gates: tuple[Gate, ...]


@dataclass(frozen=True)
class Recipe:
    """A checked recipe: where it writes, the base model, the evaluation and the stages in order."""

    path: Path
    output: Path
    model: str
    suites: tuple[str, ...]
    limit: int
    eval_data: str | None  # a directory of the suites' set files (`eval.data_dir`); None: the cached demo sets
    stages: tuple[PlannedStage, ...]

    def stage(self, name: str) -> PlannedStage:
        """The planned stage `name`."""
        return next(s for s in self.stages if s.name == name)


def load_recipe(path: str | Path, output: str | None = None, model: str | None = None) -> Recipe:
    """Read, check and resolve a recipe file; `output` and `model` (the base model) override the recipe's own."""
    path = Path(path)
    doc = _read(path)
    _known(doc, TOP_KEYS, f"{path}")
    if not isinstance(doc.get("stages"), list) or not doc["stages"]:
        raise RecipeError(f"{path}: 'stages' must be a non-empty list of stage blocks")
    root = Path(output or doc.get("output") or f"runs/{path.stem}")
    suites, limit = _eval_block(doc.get("eval"), path)
    base = str(model or doc.get("model") or "smollm2-135m-instruct")
    names = [_name(block, i, path) for i, block in enumerate(doc["stages"])]
    eval_data = (doc.get("eval") or {}).get("data_dir")
    if eval_data is not None:
        eval_data = _interpolate(str(eval_data), f"{path}: eval.data_dir", names, root)
    planned: list[PlannedStage] = []
    for i, block in enumerate(doc["stages"]):
        planned.append(_plan(block, f"{path}: stages[{i}] ({names[i]})", names, planned, root, base, suites))
    return Recipe(path, root, base, suites, limit, eval_data, tuple(planned))


def _read(path: Path) -> dict:
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError as err:
        raise RecipeError(f"{path}: no such recipe file") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise RecipeError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from err
    if not isinstance(doc, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping with 'stages', got {type(doc).__name__}")
    return doc


def _known(block: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(block) - allowed)
    if unknown:
        raise RecipeError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")


def _eval_block(block: Any, path: Path) -> tuple[tuple[str, ...], int]:
    if block is None:
        return (), 0
    if not isinstance(block, dict):
        raise RecipeError(f"{path}: 'eval' must be a mapping with 'suites' (and 'limit', 'data_dir')")
    _known(block, {"suites", "limit", "data_dir"}, f"{path}: eval")
    return _suites(block.get("suites", []), f"{path}: eval.suites"), int(block.get("limit", 0))


def _suites(value: Any, where: str) -> tuple[str, ...]:
    from posttrain.eval.suites import SUITES

    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise RecipeError(f"{where}: a list of suite names")
    unknown = [s for s in items if s not in SUITES]
    if unknown:
        raise RecipeError(f"{where}: unknown suite {unknown[0]!r}; known: {', '.join(SUITES)}")
    return tuple(items)


def _name(block: Any, i: int, path: Path) -> str:
    if not isinstance(block, dict) or not isinstance(block.get("name", block.get("stage")), str):
        raise RecipeError(f"{path}: stages[{i}]: a stage block is a mapping with 'name' (and 'stage')")
    return block.get("name", block.get("stage"))


def _plan(
    block: dict,
    where: str,
    names: list[str],
    earlier: list[PlannedStage],
    root: Path,
    base: str,
    suites: tuple[str, ...],
) -> PlannedStage:
    _known(block, STAGE_KEYS, where)
    name = names[len(earlier)]
    if name in names[: len(earlier)] or name == "base":
        raise RecipeError(f"{where}: name: {name!r} is used twice (or is 'base')")
    kind_name = block.get("stage", name)
    if kind_name not in STAGES:
        raise RecipeError(f"{where}: stage: unknown stage {kind_name!r}; known: {', '.join(STAGES)}")
    kind = STAGES[kind_name]
    parent = _parent(block, where, name, names, earlier) if kind.takes_model else None
    values = _config_values(block.get("config") or {}, where, names[: len(earlier)], root)
    values["output"] = str(root / name)
    if "resume" in {f.name for f in dataclasses.fields(kind.config)}:
        values["resume"] = True  # an interrupted stage continues from its checkpoints
    if parent is not None:
        values["model"] = base if parent == "base" else str(root / parent / "final")
    try:
        config = build_config(kind.config, values=values, where=f"{where}.config")
    except ValueError as err:
        raise RecipeError(str(err)) from err
    stage_suites = suites if block.get("eval", True) is True else _suites(block.get("eval") or [], f"{where}.eval")
    for key in ("gates", "eval"):
        if block.get(key) and not kind.trains_model:
            raise RecipeError(f"{where}.{key}: a stage that trains no model has no evaluation")
    evaluated = {"base": suites, name: stage_suites} | {s.name: s.suites for s in earlier if s.kind.trains_model}
    gates = tuple(_gate(g, f"{where}.gates[{j}]", name, evaluated) for j, g in enumerate(block.get("gates") or []))
    return PlannedStage(name, kind, parent, config, stage_suites if kind.trains_model else (), gates)


def _parent(block: dict, where: str, name: str, names: list[str], earlier: list[PlannedStage]) -> str:
    models = [s.name for s in earlier if s.kind.trains_model]
    parent = block.get("from", models[-1] if models else "base")
    if parent == "base" or parent in models:
        return parent
    if parent == name or parent in names[len(earlier) :]:
        raise RecipeError(
            f"{where}.from: {parent!r} runs at or after {name!r}: a cycle; 'from' must name an earlier stage or 'base'"
        )
    if parent in names:
        raise RecipeError(f"{where}.from: {parent!r} makes no model")
    raise RecipeError(f"{where}.from: no stage named {parent!r}; stages: {', '.join(names)}")


def _config_values(config: Any, where: str, earlier: list[str], root: Path) -> dict:
    if not isinstance(config, dict):
        raise RecipeError(f"{where}.config: a mapping of the stage's config keys")
    for key in SET_BY_RECIPE:
        if key in config:
            raise RecipeError(f"{where}.config: {key!r} is set by the recipe (use 'from' for the model)")
    return {key: _interpolate(value, f"{where}.config.{key}", earlier, root) for key, value in config.items()}


def _interpolate(value: Any, where: str, earlier: list[str], root: Path) -> Any:
    if not isinstance(value, str):
        return value

    def directory(match: re.Match) -> str:
        if match.group(1) not in earlier:
            raise RecipeError(f"{where}: ${{{match.group(1)}}} names no earlier stage")
        return str(root / match.group(1))

    return _REFERENCE.sub(directory, value)


def _gate(block: Any, where: str, stage: str, evaluated: dict[str, tuple[str, ...]]) -> Gate:
    """A checked gate: its suite is evaluated after `stage` and after the one it compares against ("base" or an
    earlier model stage: the keys of `evaluated`, each with its suites), its metric is one that suite reports."""
    from posttrain.eval.suites import SUITES

    if not isinstance(block, dict):
        raise RecipeError(f"{where}: a gate is a mapping with suite, metric, against and max_drop or max_rise")
    _known(block, GATE_KEYS, where)
    missing = [k for k in ("suite", "metric", "against") if k not in block]
    if missing or ("max_drop" in block) == ("max_rise" in block):
        raise RecipeError(f"{where}: needs suite, metric, against and exactly one of max_drop, max_rise")
    suite, metric, against = str(block["suite"]), str(block["metric"]), str(block["against"])
    if against not in evaluated or against == stage:
        raise RecipeError(f"{where}.against: {against!r} is not 'base' or an earlier stage with a model")
    for name in (stage, against):
        if suite not in evaluated[name]:
            raise RecipeError(f"{where}.suite: {suite!r} is not evaluated after {name!r}")
    if metric not in SUITES[suite].metrics:
        raise RecipeError(f"{where}.metric: {suite!r} reports {', '.join(SUITES[suite].metrics)}, not {metric!r}")
    limit = block.get("max_drop", block.get("max_rise"))
    if isinstance(limit, bool) or not isinstance(limit, int | float):
        raise RecipeError(f"{where}: max_drop / max_rise must be a number of percentage points, got {limit!r}")
    return Gate(suite, metric, against, block.get("max_drop"), block.get("max_rise"))
