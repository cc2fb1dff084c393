"""`posttrain validate FILE --schema sft|preference|kto|rl`: check a data file before training on it.

Counts go to stdout, one `path:line: field 'x': problem` per invalid record to stderr, and the exit code is 1
if anything was invalid (or the file could not be read, or held no records), else 0.
"""

from __future__ import annotations

import argparse
import sys

from posttrain.data.errors import DataError
from posttrain.data.length import split_by_length
from posttrain.data.loaders import load_records
from posttrain.data.schema import SCHEMAS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `validate` subcommand's arguments to `parser`."""
    parser.add_argument(
        "path", help="a .jsonl/.json (JSON Lines) file, a .parquet file, or a datasets.save_to_disk directory"
    )
    parser.add_argument("--schema", required=True, choices=SCHEMAS, help="the record schema to check against")
    parser.add_argument(
        "--max-errors", type=int, default=50, help="print at most this many errors (default: %(default)s)"
    )
    parser.add_argument("--model", help="render with this model's chat template (needed for --max-length)")
    parser.add_argument("--max-length", type=int, help="flag records longer than this many tokens once rendered")


def run(args: argparse.Namespace) -> int:
    """Validate `args.path` against `args.schema`; return the process exit code."""
    if args.max_length is not None and not args.model:
        print(
            "posttrain validate: --max-length needs --model (lengths are counted in that model's tokens)",
            file=sys.stderr,
        )
        return 2
    try:
        result = load_records(args.path, args.schema, skip_invalid=True)
    except (OSError, ValueError, ImportError) as err:  # unreadable, unsupported, or needs an extra
        print(f"posttrain validate: {err}", file=sys.stderr)
        return 1

    records, errors = list(result.records), list(result.skipped)
    if args.max_length is not None:
        records, too_long = split_by_length(records, _tokenizer(args.model), args.max_length)
        errors = sorted(errors + too_long, key=lambda e: e.source.line)
    n_valid, n_invalid = len(records), len(errors)
    print(f"{result.path}: {n_valid} valid {args.schema} records, {n_invalid} invalid")
    _print_errors(tuple(errors), args.max_errors)
    if n_valid == 0 and n_invalid == 0:
        print(f"posttrain validate: {result.path}: no records found", file=sys.stderr)
        return 1
    return 1 if n_invalid else 0


def _tokenizer(model_spec: str):
    """The tokenizer (and chat template) of a model spec, without loading the weights."""
    from posttrain.models import load_tokenizer

    return load_tokenizer(model_spec)


def _print_errors(errors: tuple[DataError, ...], max_errors: int) -> None:
    """Print up to `max_errors` errors to stderr, one per line, then how many were left out."""
    shown = errors[: max(max_errors, 0)]
    for err in shown:
        print(err, file=sys.stderr)
    if len(errors) > len(shown):
        print(f"... and {len(errors) - len(shown)} more", file=sys.stderr)
