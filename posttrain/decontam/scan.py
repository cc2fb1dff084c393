"""The scan: every text field of every row of some files against every item of some benchmarks, by some methods.

`Detector` fits the chosen methods once on the benchmarks' items and then matches texts in chunks; `scan_files`
returns a `Scan`: every `Match` (where, which field, which benchmark item, by which method and how strongly), the
rows that could not be read, and per-benchmark totals for reports.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from posttrain.data.errors import DataError
from posttrain.decontam.benchmarks import Benchmark
from posttrain.decontam.methods import METHODS
from posttrain.decontam.ngrams import words
from posttrain.decontam.records import Row, read_file_rows, string_fields
from posttrain.types import Source

log = logging.getLogger("posttrain.decontam")
LITERAL = re.compile(  # numbers standing alone (not the digits of a word like "mp3"); short quoted strings
    r"(?<![^\W_])\d+(?:\.\d+)?(?![^\W_])|(?<![^\W\d_])(['\"`])([^'\"`\n]{1,20})\1(?![^\W\d_])"
)
CHUNK = 20_000  # fields matched at once
SAME_SIZE = 1.5  # a field up to this many times an item's words is a copy of it only with no literal of its own


@dataclass(frozen=True)
class Match:
    """One text field matching one benchmark item."""

    source: str  # file:line (or file row N)
    file: str
    line: int  # 1-based line, or 0-based row for tabular files
    field: str
    benchmark: str
    item: int  # the item's index within its benchmark
    item_text: str
    method: str
    score: float

    def describe(self) -> str:
        item = " ".join(self.item_text.split())
        item = item if len(item) <= 90 else item[:87] + "..."
        return (
            f"{self.source}: field '{self.field}' matches {self.benchmark} item {self.item} ({item!r}) by "
            f"{self.method} (score {self.score:.2f})"
        )


@dataclass
class Scan:
    """What a scan found in some files."""

    matches: list[Match] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # path -> rows read
    unreadable: list[DataError] = field(default_factory=list)

    def offending(self) -> dict[str, list[Match]]:
        """The matches grouped by row (file:line), in scan order."""
        out: dict[str, list[Match]] = defaultdict(list)
        for match in self.matches:
            out[match.source].append(match)
        return dict(out)

    def per_benchmark(self) -> dict[str, dict]:
        """For each benchmark with a match: items hit, rows matching and the methods that found them."""
        out: dict[str, dict] = {}
        for match in self.matches:
            entry = out.setdefault(match.benchmark, {"items": set(), "rows": set(), "methods": defaultdict(int)})
            entry["items"].add(match.item)
            entry["rows"].add(match.source)
            entry["methods"][match.method] += 1
        return {
            name: {"items_hit": len(e["items"]), "rows": len(e["rows"]), "matches_by_method": dict(e["methods"])}
            for name, e in sorted(out.items())
        }

    def report(self, first: int = 50) -> dict:
        """A JSON-ready summary, with the first `first` matches."""
        return {
            "rows": self.rows,
            "offending_rows": len(self.offending()),
            "per_benchmark": self.per_benchmark(),
            "unreadable_rows": [str(err) for err in self.unreadable],
            "matches": [asdict(m) for m in self.matches[:first]],
            "matches_total": len(self.matches),
        }


def literals(text: str) -> Counter:
    """The numbers and short quoted strings (`'#'`, `"abc"`, a backticked name) in `text`, counted: the values that
    make a templated problem the problem it is. A quote mark after a letter (an apostrophe) opens nothing."""
    return Counter(m.group(0) for m in LITERAL.finditer(text))


class Detector:
    """The chosen methods, fitted on the benchmarks' items."""

    def __init__(self, benchmarks: Sequence[Benchmark], methods: Sequence[str]):
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown decontamination method {unknown[0]!r}; known: {', '.join(METHODS)}")
        self.benchmarks = list(benchmarks)
        self.items = [(b.name, i, text) for b in self.benchmarks for i, text in enumerate(b.items)]
        texts = [text for _, _, text in self.items]
        tokens = [words(text) for text in texts]
        self.literals = [literals(text) for text in texts]
        self.lengths = [len(toks) for toks in tokens]
        self.methods = {name: METHODS[name]() for name in methods}
        for method in self.methods.values():
            method.fit(tokens, texts)

    def describe(self) -> dict[str, str]:
        """Each method's rule, in words."""
        return {name: method.describe for name, method in self.methods.items()}

    def match_fields(self, located: Sequence[tuple[Source, str, str]]) -> list[Match]:
        """Matches of (source, field, text) triples, every method, every item. A match stands only when every number
        and quoted literal in the item is in the field too, as often: a word problem or a function task from the same
        template as a held-out one, with other numbers or other literals, is another problem. A field about the item's
        size (at most `SAME_SIZE` times its words) must also hold no literal the item lacks, when the item has any:
        "What is 8 * 6 + 15?" is not a copy of "What is 8 * 6?", while "Task 3: <a HarmBench request>" is one."""
        out = []
        for start in range(0, len(located), CHUNK):
            chunk = located[start : start + CHUNK]
            texts = [text for _, _, text in chunk]
            tokens = [words(text) for text in texts]
            found_literals: dict[int, Counter] = {}  # only fields with a candidate match pay for the regex
            for name, method in self.methods.items():
                for at, found in enumerate(method.match(tokens, texts)):
                    source, field_path, _ = chunk[at]
                    for index, score in found:
                        if at not in found_literals:
                            found_literals[at] = literals(texts[at])
                        if not self.same_values(index, found_literals[at], len(tokens[at])):
                            continue
                        benchmark, item, item_text = self.items[index]
                        out.append(
                            Match(str(source), source.path, source.line, field_path, benchmark, item, item_text, name,
                                  round(score, 4))
                        )  # fmt: skip
        order = {str(source): i for i, (source, _, _) in enumerate(located)}
        return sorted(out, key=lambda m: (order[m.source], m.field, m.benchmark, m.item, m.method))

    def same_values(self, index: int, found: Counter, length: int) -> bool:
        """Whether a field with these literals and this many words holds item `index`'s values (`match_fields`)."""
        wanted = self.literals[index]
        if any(found[k] < n for k, n in wanted.items()):
            return False
        return not wanted or length > SAME_SIZE * self.lengths[index] or all(k in wanted for k in found)

    def matching_rows(self, rows: Sequence[Any], name: str) -> dict[int, list[Match]]:
        """The matches of in-memory rows (decoded JSON values), by row index; `name` stands for their file."""
        located = [(Source(name, i), path, text) for i, row in enumerate(rows) for path, text in string_fields(row)]
        out: dict[int, list[Match]] = defaultdict(list)
        for match in self.match_fields(located):
            out[match.line].append(match)
        return dict(out)

    def scan_files(self, paths: Iterable[str], progress: bool = False) -> Scan:
        """Scan every row of every file."""
        from tqdm.auto import tqdm

        scan = Scan()
        located: list[tuple[Source, str, str]] = []
        for path in paths:
            rows = 0
            for row in tqdm(read_file_rows(path), desc=f"decontaminate {path}", unit="row", disable=not progress):
                rows += 1
                located += _fields(row, scan)
            scan.rows[str(path)] = rows
        scan.matches = self.match_fields(located)
        return scan


def _fields(row: Row, scan: Scan) -> list[tuple[Source, str, str]]:
    if row.error is not None:
        scan.unreadable.append(row.error)
    return [(row.source, path, text) for path, text in row.fields]
