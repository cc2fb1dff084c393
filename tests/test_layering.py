"""The package's shape: no import cycle between its parts, and stages stay small and dispatch through tables."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "posttrain"


def part_imports() -> dict[str, set[str]]:
    """{part: parts it imports}, a part being a top-level module or subpackage; lazy imports count too."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        part = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("posttrain."):
                target = node.module.split(".")[1]
                if target != part:
                    graph[part].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of parts, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return [*path, node, target]
            if target not in state and (cycle := visit(target, [*path, node])):
                return cycle
        state[node] = "done"
        return None

    return next((c for node in sorted(graph) if node not in state and (c := visit(node, []))), None)


def test_no_import_cycles_between_parts():
    graph = part_imports()
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    assert "demo" not in graph["tasks"] and "eval" not in graph["rewards"] and "train" not in graph["models"]


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_stages_are_small_and_dispatch_through_tables():
    for path in (PACKAGE / "stages").glob("*.py"):
        text = path.read_text()
        assert text.count("\n") <= 300, path
        assert not re.search(r"if (self\.)?(config|c)\.(method|loss|judge|advantage) ==", text), path
