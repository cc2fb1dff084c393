"""The one error type for bad input: it always names the file, the line (or row) and the field."""

from __future__ import annotations

from posttrain.types import Source


class DataError(ValueError):
    """A record that cannot be used, located precisely: `path:line: field 'x': problem`."""

    def __init__(self, source: Source | None, field: str, problem: str):
        source = source or Source("<in-memory record>", 0)
        self.source = source
        self.field = field
        self.problem = problem
        super().__init__(f"{source}: field '{field}': {problem}")
