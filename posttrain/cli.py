"""The `posttrain` command: one subcommand per registered stage (`posttrain.registry`), plus the commands that
work on stages: `run` (a recipe), `demo` (the shipped demo recipe), `eval`, `report` and `validate`; and the
two that serve a model, guarded: `chat` (in the terminal) and `serve` (an OpenAI-compatible HTTP endpoint).

Exit codes: 0 done; 1 a stage failed on its data or files (training data overlapping a held-out benchmark
included), or `decontaminate` found overlap; 2 bad input (a recipe, a config key or a flag value: refused before
anything is written), or a recipe stage whose settings or inputs changed since it ran; 3 a recipe gate tripped
(everything so far kept).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from posttrain.registry import STAGES

RECIPES = Path(__file__).parent / "recipes"  # the shipped recipes (also `recipes/` in a source checkout)
MODULE_COMMANDS = {  # posttrain.<name> has add_arguments(parser) and run(args) -> int
    "chat": "chat with a model in the terminal, guarded",
    "curate": "select a small, hard, diverse training set from a pool (LIMO/s1-style), with a report of the drops",
    "serve": "an OpenAI-compatible chat server on localhost, guarded",
    "tasks": "write a generated RL task set (arithmetic, functions) to rl-schema JSONL",
    "decontaminate": "find training rows that overlap held-out benchmarks (exits 1 if any)",
}


def _version() -> str:
    from posttrain import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="posttrain", description="Post-training for language models.")
    parser.add_argument("--version", action="version", version=f"posttrain {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, stage in STAGES.items():
        _add_config_command(
            sub.add_parser(name, help=stage.help, description=stage.help),
            stage.config,
            lambda config, stage=stage: stage.execute(config),
        )
    _add_run(sub.add_parser("run", help="run a recipe: a YAML list of stages", description=_doc("posttrain.pipeline")))
    _add_demo(sub.add_parser("demo", help="the end-to-end demo recipe on SmolLM2-135M-Instruct"))
    _add_eval(sub.add_parser("eval", help="evaluate a model on named suites; compare two with McNemar's test"))
    _add_report(sub.add_parser("report", help="write report.html for a recipe run directory"))
    _add_validate(
        sub.add_parser("validate", help="check a data file against a schema", description="check a data file")
    )
    for name, help_text in MODULE_COMMANDS.items():
        _add_module(sub.add_parser(name, help=help_text, description=_doc(f"posttrain.{name}")), name)
    return parser


def _doc(module: str) -> str:
    import importlib

    return (importlib.import_module(module).__doc__ or "").split("\n\n")[0]


def _add_config_command(parser: argparse.ArgumentParser, config_cls: type, run: Callable) -> None:
    """Flags from a config dataclass; running it prints what the command returned (a path)."""
    from posttrain.train.config import add_config_arguments, config_from_args

    add_config_arguments(parser, config_cls)
    parser.set_defaults(run=lambda args: print(f"posttrain {args.command}: {run(config_from_args(config_cls, args))}"))


def _add_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="the recipe YAML file")
    parser.add_argument("--output", help="the recipe root (overrides the recipe's own 'output')")
    parser.add_argument("--model", help="the base model (overrides the recipe's own 'model')")
    parser.add_argument("--from", dest="start", metavar="NAME", help="start at stage NAME (earlier ones must be done)")
    parser.add_argument("--until", metavar="NAME", help="stop after stage NAME")
    parser.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="NAME",
        help="rerun stage NAME (and every stage after it) even if it ran with other settings",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the resolved plan and exit; writes nothing")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    parser.set_defaults(run=_run_recipe)


def _run_recipe(args: argparse.Namespace) -> int:
    from posttrain.pipeline import Runner
    from posttrain.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.output, args.model)
    root = Runner(recipe, progress=args.progress).run(args.start, args.until, args.force, args.dry_run)
    print(f"posttrain run: {root}")
    return 0


def _add_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="runs/demo", help="the demo's run directory")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    parser.add_argument("--dry-run", action="store_true", help="print the demo's plan and exit; writes nothing")
    parser.set_defaults(
        run=_run_recipe, recipe=str(RECIPES / "demo.yaml"), model=None, start=None, until=None, force=[]
    )


def _add_eval(parser: argparse.ArgumentParser) -> None:
    from posttrain.eval.run import EvalConfig, run

    _add_config_command(parser, EvalConfig, run)


def _add_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a recipe's output directory (it holds lineage.json)")

    def report(args: argparse.Namespace) -> int:
        from posttrain.eval.report import write_report

        if not (Path(args.run_dir) / "lineage.json").is_file():
            raise FileNotFoundError(f"{args.run_dir}: no lineage.json; is this a recipe's output directory?")
        print(f"posttrain report: {write_report(Path(args.run_dir))}")
        return 0

    parser.set_defaults(run=report)


def _add_validate(parser: argparse.ArgumentParser) -> None:
    from posttrain.data import validate

    validate.add_arguments(parser)
    parser.set_defaults(run=validate.run)


def _add_module(parser: argparse.ArgumentParser, module: str) -> None:
    """A command whose module has `add_arguments(parser)` and `run(args) -> int`."""
    import importlib

    command = importlib.import_module(f"posttrain.{module}")
    command.add_arguments(parser)
    parser.set_defaults(run=command.run)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the chosen subcommand; returns the exit code."""
    from posttrain.pipeline import GateTripped
    from posttrain.train.config import ConfigError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except ConfigError as err:  # a recipe, a config key or a flag value: nothing was written
        print(f"posttrain {args.command}: {err}", file=sys.stderr)
        return 2
    except GateTripped as err:
        print(f"posttrain {args.command}: {err}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError, FileExistsError, ImportError, RuntimeError) as err:
        print(f"posttrain {args.command}: {err}", file=sys.stderr)
        return 1
