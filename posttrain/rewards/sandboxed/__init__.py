"""Programs that run inside the bubblewrap sandbox, never in posttrain's own process.

`posttrain.rewards.code` ships these files into its sandboxes as text (`source(name)`): `wire.py`, the tagged-JSON
codec both sides speak; `serve.py`, the candidate's side (runs the model's program, then answers calls); and
`check.py`, the tests' side (runs the task's hidden tests against proxies that call across the pipes). They use
the standard library alone, since the sandbox's interpreter runs with `-I -S` and sees no installed package.
Only `wire` is also imported on the host, by the unit tests of the codec.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def source(name: str) -> str:
    """The text of `name` (e.g. "wire.py") in this directory, to be run in a sandbox."""
    return (HERE / name).read_text(encoding="utf-8")
