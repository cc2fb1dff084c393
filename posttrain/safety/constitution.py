"""The written constitution: what the model must not help with, what it must still answer, and how it refuses.

One YAML file (ours ships as `posttrain/constitutions/default.yaml`; a user file with the same schema replaces it)
feeds three consumers:
- critique-and-revision samples a `Principle` per example: a critique request and a revision request for the critic;
- the guard classifier's training data is generated from the `Category`s, from both sides: `must_not_help`
  examples and the `harmless_neighbours` that look similar but must be answered (against over-refusal);
- refusals are written, and judged, against `refusal_style`, and a refusal in a category gives that category's
  `reason` and `alternative`, so the stated reason fits the request rather than being a canned one
  (`Constitution.refusal`, the safe answer the red-team loop prefers over a successful attack's).

A category may carry `keywords`, a regular expression over the lowercased request: `Constitution.categorise` names
the first category, in file order, whose keywords match. It sorts red-team attacks into the archive's cells and
gives the deliberative teacher its category; it is a cheap rule, and a request in no category gets None.

Loading checks the whole schema up front; a bad file raises `ConstitutionError` with one line naming the file and key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from posttrain.train.config import ConfigError

GENERIC_REFUSAL = (
    "I can't help with that, because it could cause real harm to people. "
    "I'm glad to help with a safe version of what you are trying to do."
)
DEFAULT_CONSTITUTION = Path(__file__).resolve().parents[1] / "constitutions" / "default.yaml"


class ConstitutionError(ConfigError):
    """A constitution file that cannot be used; the one-line message names the file and the key."""


@dataclass(frozen=True)
class Principle:
    """One principle for critique-and-revision: what the critic looks for and how the answer is rewritten."""

    id: str
    critique: str  # asks the critic to find where the response breaks this principle
    revision: str  # asks to rewrite the response so that it keeps it


@dataclass(frozen=True)
class Category:
    """One harm category: what must not be helped with, its harmless look-alikes, and how a refusal reads."""

    id: str
    description: str
    reason: str  # the short, specific reason a refusal in this category states
    alternative: str  # the safe alternative such a refusal offers
    must_not_help: tuple[str, ...]  # example requests that must be declined
    harmless_neighbours: tuple[str, ...]  # similar-looking requests that must be answered helpfully
    keywords: str = ""  # a regex over the lowercased request; empty: never matched by `Constitution.categorise`


@dataclass(frozen=True)
class Constitution:
    """A loaded, checked constitution."""

    name: str
    version: int
    principles: tuple[Principle, ...]
    categories: tuple[Category, ...]
    refusal_style: tuple[str, ...]
    source: str  # the file it was loaded from

    def principle(self, id: str) -> Principle:
        """The principle with this id; KeyError naming the known ids otherwise."""
        return _by_id(self.principles, id, "principle")

    def category(self, id: str) -> Category:
        """The category with this id; KeyError naming the known ids otherwise."""
        return _by_id(self.categories, id, "category")

    def categorise(self, request: str) -> Category | None:
        """The first category whose `keywords` match the lowercased request; None when none does."""
        lowered = request.lower()
        return next((c for c in self.categories if c.keywords and re.search(c.keywords, lowered)), None)

    def refusal(self, category: Category | None) -> str:
        """A refusal written to `refusal_style`: one sentence naming the category's risk, then its alternative."""
        if category is None:
            return GENERIC_REFUSAL
        return f"I can't help with that, because {category.reason}. {category.alternative}"


def _by_id(items: tuple[Any, ...], id: str, kind: str) -> Any:
    """The item whose `.id` is `id`, or a KeyError that lists the known ids."""
    for item in items:
        if item.id == id:
            return item
    raise KeyError(f"unknown {kind} {id!r}; known: {', '.join(item.id for item in items)}")


# The schema: key -> kind ("str", "int" or "strs", a non-empty list of strings).
TOP_KEYS = {"name": "str", "version": "int", "principles": "list", "categories": "list", "refusal_style": "strs"}
PRINCIPLE_KEYS = {"id": "str", "critique": "str", "revision": "str"}
CATEGORY_KEYS = {
    "id": "str",
    "description": "str",
    "reason": "str",
    "alternative": "str",
    "must_not_help": "strs",
    "harmless_neighbours": "strs",
}
OPTIONAL_CATEGORY_KEYS = {"keywords": "regex"}
KIND_MESSAGES = {
    "str": "must be a non-empty string",
    "int": "must be an integer",
    "strs": "must be a non-empty list of strings",
    "list": "must be a non-empty list of mappings",
    "regex": "must be a valid regular expression",
}


def load_constitution(path: str | Path | None = None) -> Constitution:
    """Load and check a constitution file; None loads the shipped default."""
    path = DEFAULT_CONSTITUTION if path is None else Path(path)
    data = _read_yaml(path)
    _check_mapping(data, TOP_KEYS, path, "")
    principles = _entries(data["principles"], PRINCIPLE_KEYS, path, "principles")
    categories = _entries(data["categories"], CATEGORY_KEYS, path, "categories", OPTIONAL_CATEGORY_KEYS)
    return Constitution(
        name=data["name"],
        version=data["version"],
        principles=tuple(Principle(**entry) for entry in principles),
        categories=tuple(Category(**_tuples(entry)) for entry in categories),
        refusal_style=tuple(data["refusal_style"]),
        source=str(path),
    )


def _read_yaml(path: Path) -> Any:
    """The parsed file, or a ConstitutionError for a missing file or bad YAML (with its line)."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ConstitutionError(f"{path}: cannot read: {e.strerror}") from e
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConstitutionError(f"{path}: not valid YAML{line}: {problem}") from e


def _fail(path: Path, where: str, message: str) -> ConstitutionError:
    """The one-line error `file: key: message` (or `file: message` at the top level)."""
    return ConstitutionError(f"{path}: {where}: {message}" if where else f"{path}: {message}")


def _check_mapping(
    data: Any, schema: dict[str, str], path: Path, where: str, optional: dict[str, str] | None = None
) -> None:
    """Check that `data` is a mapping with the schema's keys (and any of the `optional` ones), each of the right
    kind."""
    if not isinstance(data, dict):
        raise _fail(path, where, f"must be a mapping with keys {', '.join(schema)}; got {type(data).__name__}")
    allowed = schema | (optional or {})
    unknown = sorted(str(key) for key in data if key not in allowed)
    if unknown:
        raise _fail(path, where, f"unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
    for key, kind in allowed.items():
        key_where = f"{where}.{key}" if where else key
        if key not in data:
            if key in schema:
                raise _fail(path, key_where, "missing key")
            continue
        if not _is_kind(data[key], kind):
            raise _fail(path, key_where, f"{KIND_MESSAGES[kind]}, got {data[key]!r:.60}")


def _is_kind(value: Any, kind: str) -> bool:
    """Whether `value` is of the schema kind ("str", "int", "strs", "list" or "regex")."""
    if kind == "regex":
        try:
            return isinstance(value, str) and bool(re.compile(value).pattern)
        except re.error:
            return False
    if kind == "str":
        return isinstance(value, str) and bool(value.strip())
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "strs":
        return isinstance(value, list) and bool(value) and all(_is_kind(item, "str") for item in value)
    return isinstance(value, list) and bool(value)


def _entries(
    items: list[Any], schema: dict[str, str], path: Path, key: str, optional: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Check each entry of a list section against its schema and that the ids are unique."""
    seen: set[str] = set()
    for i, entry in enumerate(items):
        _check_mapping(entry, schema, path, f"{key}[{i}]", optional)
        if entry["id"] in seen:
            raise _fail(path, f"{key}[{i}].id", f"duplicate id {entry['id']!r}")
        seen.add(entry["id"])
    return items


def _tuples(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry with its lists turned into tuples, so the frozen dataclass is hashable and immutable."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in entry.items()}
