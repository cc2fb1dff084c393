"""The `posttrain` command: one subcommand per stage, plus `validate`.

Stages that are not built yet are listed (so `--help` shows the whole pipeline) and answer with a clear message
and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

Command = Callable[[argparse.Namespace], int]

STAGES = {
    "sft": "supervised fine-tuning on chat data",
    "preference": "preference optimization: DPO, IPO, SimPO, KTO, ORPO",
    "rlvr": "reinforcement learning from verifiable rewards: GRPO and variants",
    "run": "run a recipe: a YAML list of stages",
    "demo": "the end-to-end demo on SmolLM2-135M-Instruct",
    "eval": "evaluate a checkpoint: capability, safety, diversity",
    "decontaminate": "remove benchmark overlap from training data",
}


def _not_available(name: str) -> Command:
    def run(args: argparse.Namespace) -> int:
        print(f"posttrain {name}: not available yet in posttrain {_version()}.", file=sys.stderr)
        return 2

    return run


def _version() -> str:
    from posttrain import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="posttrain", description="Post-training for language models.")
    parser.add_argument("--version", action="version", version=f"posttrain {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in STAGES.items():
        stage = sub.add_parser(name, help=help_text, description=help_text)
        if name in BUILT:
            _add_stage(stage, name)
        else:
            stage.set_defaults(run=_not_available(name))
    validate = sub.add_parser("validate", help="check a data file against a schema", description="check a data file")
    _add_validate(validate)
    return parser


# Built stages: the module whose `run(config)` the command calls, and the name of its config dataclass.
BUILT = {
    "sft": ("posttrain.stages.sft", "SFTConfig"),
    "preference": ("posttrain.stages.preference", "PreferenceConfig"),
    "rlvr": ("posttrain.stages.rlvr", "RLVRConfig"),
    "demo": ("posttrain.demo.run", "DemoConfig"),
}


def _add_stage(parser: argparse.ArgumentParser, name: str) -> None:
    """Flags from the stage's config dataclass; running it prints what the stage returned (a directory)."""
    from posttrain.train.config import add_config_arguments, config_from_args

    module_name, config_name = BUILT[name]
    module = importlib.import_module(module_name)
    config_cls = getattr(module, config_name)
    add_config_arguments(parser, config_cls)

    def run(args: argparse.Namespace) -> int:
        print(f"posttrain {name}: {module.run(config_from_args(config_cls, args))}")
        return 0

    parser.set_defaults(run=run)


def _add_validate(parser: argparse.ArgumentParser) -> None:
    from posttrain.data import validate

    validate.add_arguments(parser)
    parser.set_defaults(run=validate.run)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the chosen subcommand; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as err:
        print(f"posttrain {args.command}: {err}", file=sys.stderr)
        return 1
