"""The stage registry: every stage by name, with its config class and its run function.

The CLI (`posttrain <stage>`), the recipe runner (`posttrain run`) and the report read this table; nothing else
lists stages. A stage is a flat, frozen config dataclass and `run(config) -> Path`, the directory it produced (a
model's `final/`, or for a data stage its output directory). A new stage is one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class StageRun(Protocol):
    """What the registry calls: run the stage to completion (or resume it) and return what it produced."""

    def __call__(self, config: Any) -> Path: ...


@dataclass(frozen=True)
class Stage:
    """One registered stage."""

    name: str
    help: str  # one line for `posttrain --help`
    load: Callable[[], tuple[type, StageRun]]  # imports the stage module only when asked
    inputs: tuple[str, ...] = ()  # config keys that name input files: hashed into the lineage (a change refuses reuse)
    trains_on: tuple[str, ...] = ()  # config keys of training data: checked against benchmarks before the stage runs
    trains_model: bool = True  # takes a `model` and returns a final model directory
    reads_model: bool = False  # takes a `model` (in a recipe, its parent's) but makes data, not a model

    @property
    def takes_model(self) -> bool:
        """Whether the stage starts from a model: in a recipe, its parent stage's or the base."""
        return self.trains_model or self.reads_model

    @property
    def config(self) -> type:
        """The stage's config dataclass."""
        return self.load()[0]

    @property
    def run(self) -> StageRun:
        """The stage's run function."""
        return self.load()[1]

    def execute(self, config: Any) -> Path:
        """Run the stage, its training data first through the decontamination gate (`posttrain.gate`)."""
        if self.trains_on:
            from posttrain.gate import gate

            config = gate(self.trains_on, config)
        return self.run(config)


def _sft():
    from posttrain.stages import sft

    return sft.SFTConfig, sft.run


def _preference():
    from posttrain.stages import preference

    return preference.PreferenceConfig, preference.run


def _rlvr():
    from posttrain.stages import rlvr

    return rlvr.RLVRConfig, rlvr.run


def _distill():
    from posttrain.stages import distill

    return distill.DistillConfig, distill.run


def _constitution():
    from posttrain.stages import constitution

    return constitution.ConstitutionConfig, constitution.run


def _redteam():
    from posttrain.stages import redteam

    return redteam.RedteamConfig, redteam.run


def _deliberative():
    from posttrain.stages import deliberative

    return deliberative.DeliberativeConfig, deliberative.run


def _guard():
    from posttrain.stages import guard

    return guard.GuardConfig, guard.run


def _guard_eval():
    from posttrain.stages import guard_eval

    return guard_eval.GuardEvalConfig, guard_eval.run


def _answers():
    from posttrain.stages import answers

    return answers.AnswersConfig, answers.run


def _constitution_data():
    from posttrain.demo import constitution_data

    return constitution_data.ConstitutionDataConfig, constitution_data.run


def _demo_data():
    from posttrain.demo import stage

    return stage.DemoDataConfig, stage.run


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("sft", "supervised fine-tuning on chat data", _sft, ("data", "eval_data"), trains_on=("data",)),
        Stage(
            "preference",
            "preference optimization: DPO, IPO, SimPO, KTO, ORPO; iterated rounds",
            _preference,
            ("data", "prompts"),
            trains_on=("data", "prompts"),
        ),
        Stage(
            "rlvr",
            "reinforcement learning from verifiable rewards: GRPO and variants",
            _rlvr,
            ("tasks", "eval_tasks"),
            trains_on=("tasks",),
        ),
        Stage(
            "distill",
            "on-policy distillation (GKD): the student samples, the teacher scores every token, generalised JSD",
            _distill,
            ("prompts", "eval_tasks"),
            trains_on=("prompts",),
        ),
        Stage(
            "constitution",
            "critique and revision against a written constitution (Constitutional AI)",
            _constitution,
            ("prompts", "replay", "constitution"),
            trains_on=("prompts", "replay"),
        ),
        Stage(
            "redteam",
            "the red-team loop: attack families, an archive, DPO on successful attacks, until held-out success plateaus",
            _redteam,
            ("seeds", "benign", "capability", "constitution"),
            trains_on=("seeds", "benign"),
        ),
        Stage(
            "deliberative",
            "deliberative alignment's data: spec-citing reasoning traces, judged, as SFT records and rl tasks",
            _deliberative,
            ("harmful", "benign", "constitution"),
            trains_on=("harmful", "benign"),
            trains_model=False,
            reads_model=True,
        ),
        Stage(
            "guard",
            "train and compare guard classifiers: a probe on the policy's activations, sentence embeddings, a cascade",
            _guard,
            ("harmful", "harmless", "constitution"),
            trains_on=("harmful", "harmless"),
            trains_model=False,
            reads_model=True,
        ),
        Stage(
            "guard_eval",
            "measure a saved guard on your own harmful and harmless requests, in any augmentation family",
            _guard_eval,
            ("guard", "harmful", "harmless"),
            trains_model=False,
            reads_model=True,
        ),
        Stage(
            "answers",
            "a model answers prompts; its finished, non-refusing answers become SFT records (teacher traces, replay)",
            _answers,
            ("prompts", "include"),
            trains_on=("prompts", "include"),
            trains_model=False,
            reads_model=True,
        ),
        Stage("demo_data", "build the demo's data mix (a recipe's first stage)", _demo_data, trains_model=False),
        Stage(
            "constitution_data",
            "the demo's prompts and replay for the constitution stage, from its training file",
            _constitution_data,
            ("train",),
            trains_model=False,
        ),
    )
}


def get_stage(name: str) -> Stage:
    """The registered stage `name`; a clear error listing the known ones otherwise."""
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; known: {', '.join(STAGES)}")
    return STAGES[name]
