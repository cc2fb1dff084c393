"""`posttrain decontaminate FILE... --against BENCH...`: a linter for benchmark overlap in training data.

Every row of every FILE (JSON Lines, Parquet, a `datasets` directory, or a text file with one row per line; any data
kind) is checked against the benchmarks (`posttrain.decontam.benchmarks`: registered names or files; `default` is
every registered one) by the chosen methods (`posttrain.decontam.methods`). Each match is printed as
`file:line: field 'F' matches BENCH item I ('...') by METHOD (score S)`, followed by a summary per benchmark.

Exit codes: 0 clean; 1 matches found, or rows that could not be read (each named by file and line); 2 bad input (an
unknown benchmark or method, a missing or unreadable benchmark file, an empty benchmark). `--report` also writes
everything as JSON.
"""

from __future__ import annotations

import argparse
import sys

from posttrain.decontam.methods import DEFAULT_METHODS, METHODS
from posttrain.gate import detector
from posttrain.io import atomic_write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    parser.add_argument("files", nargs="+", metavar="FILE", help="training data to check")
    parser.add_argument(
        "--against",
        nargs="+",
        default=["default"],
        metavar="BENCH",
        help="benchmarks: registered names, files, or 'default' (every registered one)",
    )
    parser.add_argument(
        "--methods", nargs="+", default=list(DEFAULT_METHODS), choices=sorted(METHODS), help="detection methods"
    )
    parser.add_argument("--report", help="also write the full report as JSON here")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    """Scan, print every match and a summary; 1 when anything matched or could not be read."""
    try:
        found = detector(args.against, args.methods)
    except (ValueError, FileNotFoundError) as err:
        print(f"posttrain decontaminate: {err}", file=sys.stderr)
        return 2
    scan = found.scan_files(args.files, progress=args.progress)
    for match in scan.matches:
        print(match.describe())
    for error in scan.unreadable:
        print(f"unreadable: {error}")
    offending = scan.offending()
    rows = sum(scan.rows.values())
    print(
        f"{len(offending)} of {rows} rows overlap {len(found.benchmarks)} benchmarks "
        f"({', '.join(b.name for b in found.benchmarks)}) by {', '.join(found.describe())}"
    )
    for name, entry in scan.per_benchmark().items():
        print(f"  {name}: {entry['items_hit']} items hit by {entry['rows']} rows; {entry['matches_by_method']}")
    if args.report:
        atomic_write_json(args.report, {"methods": found.describe()} | scan.report(first=len(scan.matches)))
    return 1 if offending or scan.unreadable else 0
