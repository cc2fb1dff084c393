"""Worked tool-use conversations for arithmetic tasks: SFT data that teaches the calculator's call format.

For a task whose metadata holds the expression behind it (`expr`: every arithmetic and word problem of
`posttrain.tasks.problems` has one), the trace is the conversation `ToolEnv` would hold for a model that calls the
calculator once and answers with its result:

    system: the tools and the call format (`with_tool_instructions`, as the environment renders them)
    user: the task's question
    assistant: <tool_call>{"name": "calculator", "arguments": {"expression": "(24 + 28) * 9"}}</tool_call>
    tool: 468
    assistant: The answer is \\boxed{468}.

Tasks without an expression, or whose expression the calculator evaluates to something other than the task's
answer, are skipped and counted, never written with a wrong answer. The traces are for templates without native
tool rendering (SmolLM2's ChatML); for the others the tools would have to travel with the SFT records.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from posttrain.envs.calculator import calculator
from posttrain.envs.tools import calculator_tool, with_tool_instructions
from posttrain.types import Message, RLTask, SFTExample


def calculator_trace(task: RLTask) -> SFTExample | None:
    """The worked conversation for one task, or None when it has no expression or the result is not its answer."""
    expression = task.metadata.get("expr")
    if not expression or calculator(expression) != str(task.answer):
        return None
    call = json.dumps({"name": "calculator", "arguments": {"expression": expression}})
    messages = [
        *with_tool_instructions(task.prompt, [calculator_tool()]),
        Message("assistant", f"<tool_call>{call}</tool_call>"),
        Message("tool", calculator(expression)),
        Message("assistant", f"The answer is \\boxed{{{task.answer}}}."),
    ]
    return SFTExample(messages)


def calculator_traces(tasks: Sequence[RLTask]) -> tuple[list[SFTExample], int]:
    """The traces of every task that has one, and how many tasks were skipped."""
    traces = [calculator_trace(t) for t in tasks]
    return [t for t in traces if t is not None], sum(t is None for t in traces)
