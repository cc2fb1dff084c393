"""The tool environment: the model may call tools over several turns, then gives an answer a verifier checks.

Tools are Python callables with a JSON schema for their arguments (`Tool`). They reach the prompt through the chat
template's own tool support (`apply_chat_template(tools=...)`) where the template has one (Qwen2.5, Llama 3.1);
otherwise a system message lists their schemas and the call format (`tool_instructions`).

A call is `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (the Hermes/Qwen format; Llama 3.1's bare
`{"name": ..., "parameters": {...}}` reply is read too); a call whose closing tag a `</tool_call>` stop string
cut off counts when its JSON is complete. Each turn, in order:
- a turn cut by the length limit ends the episode (reward 0, failure "truncated"); every ending sets its
  `failure/<reason>` metric (truncated, turn_budget, token_budget) so the rates are over all episodes;
- a turn holding calls runs them; each result comes back as a `tool` message. A malformed call (bad JSON, an
  unknown tool, missing or mistyped arguments, an unclosed tag) or a tool that raises becomes an error message the
  model reads, never a crash, and counts in `tool_errors`;
- a turn without a call is the final answer: the verifier scores it (the whole batch in one call);
- budgets: after `max_turns` assistant turns or `max_episode_tokens` ids, an episode still calling tools ends
  with reward 0 (failure "turn_budget" or "token_budget"). A turn may overshoot the token budget by at most one
  reply and its observation.

Metrics per episode: `turns`, `tool_calls`, `tool_errors`, `called_tool` (0/1), plus the verifier's (`correct`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from posttrain.envs import Episode, Step
from posttrain.rewards.shaped import ShapedReward
from posttrain.rollout import Turn
from posttrain.types import Message, RLTask, Rollout

JSON_TYPES = {"string": str, "number": (int, float), "integer": int, "boolean": bool, "object": dict, "array": list}
CALL = re.compile(r"<tool_call>(.*?)(</tool_call>|$)", re.DOTALL)


@dataclass(frozen=True)
class Tool:
    """A callable the model may use: its name, what it does, the JSON schema of its arguments, the function."""

    name: str
    description: str
    parameters: Mapping  # JSON schema of the arguments object ("properties", "required")
    fn: Callable[..., str]  # called with the arguments as keywords; returns the text the model reads

    def schema(self) -> dict:
        """The OpenAI-style function schema that chat templates render."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": dict(self.parameters)}}  # fmt: skip


@dataclass(frozen=True)
class Call:
    """A parsed tool call, or why it could not be parsed (`error`)."""

    name: str = ""
    arguments: Mapping = field(default_factory=dict)
    error: str | None = None


def parse_calls(text: str) -> list[Call]:
    """Every tool call in a reply, in order; [] for a final answer. Malformed calls come back with an error."""
    tagged = CALL.findall(text)
    if tagged:
        return [
            _call(body) if end or _is_json(body) else Call(error="unclosed <tool_call> tag") for body, end in tagged
        ]
    bare = text.strip()
    if bare.startswith("{") and bare.endswith("}") and '"name"' in bare:  # Llama 3.1's bare JSON call
        return [_call(bare)]
    return []


def _is_json(body: str) -> bool:
    """Whether an unclosed call's body is already complete JSON (a turn that stopped on the `</tool_call>` stop
    string loses the closing tag from its text)."""
    try:
        json.loads(body)
    except json.JSONDecodeError:
        return False
    return True


def _call(body: str) -> Call:
    try:
        data = json.loads(body)
    except json.JSONDecodeError as e:
        return Call(error=f"tool call is not valid JSON: {e.msg}")
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return Call(error='tool call needs {"name": ..., "arguments": {...}}')
    arguments = data.get("arguments", data.get("parameters", {}))
    if not isinstance(arguments, dict):
        return Call(error="tool call arguments must be a JSON object")
    return Call(data["name"], arguments)


def argument_error(tool: Tool, arguments: Mapping) -> str | None:
    """Why `arguments` do not fit the tool's schema (required keys, declared types, no unknown keys), or None."""
    properties = tool.parameters.get("properties", {})
    missing = [k for k in tool.parameters.get("required", ()) if k not in arguments]
    if missing:
        return f"{tool.name}: missing argument(s) {', '.join(missing)}"
    for key, value in arguments.items():
        if key not in properties:
            return f"{tool.name}: unknown argument {key!r}"
        kind = JSON_TYPES.get(properties[key].get("type", ""), object)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            return f"{tool.name}: argument {key!r} must be of type {properties[key].get('type')}"
    return None


def tool_instructions(tools: Sequence[Tool]) -> str:
    """The system text that describes the tools to a model whose template cannot render them."""
    schemas = "\n".join(json.dumps(t.schema()) for t in tools)
    return (
        f"You can call these tools:\n{schemas}\n"
        'To call a tool, reply with <tool_call>{"name": NAME, "arguments": {...}}</tool_call> and nothing else. '
        "Its result comes back in a tool message. When you know the answer, reply with it and no tool call."
    )


def with_tool_instructions(messages: Sequence[Message], tools: Sequence[Tool]) -> list[Message]:
    """`messages` with the tools described in the system message (added, or appended to the one there)."""
    messages = list(messages)
    if messages and messages[0].role == "system":
        return [Message("system", f"{messages[0].content}\n\n{tool_instructions(tools)}"), *messages[1:]]
    return [Message("system", tool_instructions(tools)), *messages]


def template_renders_tools(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer's chat template uses the `tools` it is given."""
    return "tools" in (tokenizer.chat_template or "")


ENDINGS = ("truncated", "turn_budget", "token_budget")  # episodes the environment ends before any answer


def _ended(why: str) -> Step:
    """The step that ends an episode without an answer: reward 0, and `failure/<why>` set among the ENDINGS."""
    return Step((), 0.0, True, {"correct": 0.0, **{f"failure/{f}": float(f == why) for f in ENDINGS}}, why)


@dataclass(frozen=True)
class ToolBudget:
    """How long an episode may run."""

    max_turns: int = 4  # assistant turns
    max_episode_tokens: int = 1024  # ids after the prompt: sampled and appended


class ToolEnv:
    """Tool calls over several turns, the final answer scored by the task's verifier; see the module docstring."""

    def __init__(self, tools: Sequence[Tool], reward: ShapedReward, tokenizer: PreTrainedTokenizerBase,
                 budget: ToolBudget = ToolBudget()):  # fmt: skip
        self.tools = {t.name: t for t in tools}
        self.reward, self.budget, self.max_turns = reward, budget, budget.max_turns
        self.native = template_renders_tools(tokenizer)

    def start(self, task: RLTask) -> Episode:
        """The task's prompt, with the tools rendered by the template or described in a system message."""
        tools, counters = list(self.tools.values()), {"tool_calls": 0.0, "tool_errors": 0.0}
        if self.native:
            return Episode(task, list(task.prompt), tuple(t.schema() for t in tools), metrics=counters)
        return Episode(task, with_tool_instructions(task.prompt, tools), metrics=counters)

    def step(self, episodes: Sequence[Episode], turns: Sequence[Turn]) -> list[Step]:
        """Run each turn's calls, or score its final answer (all final answers in one call); see the module
        docstring for the order of the rules."""
        steps: list[Step | None] = [None] * len(turns)
        finals = []
        for i, (episode, turn) in enumerate(zip(episodes, turns, strict=True)):
            calls = parse_calls(turn.text)
            if turn.finish_reason == "length":
                steps[i] = _ended("truncated")
            elif not calls:
                finals.append(i)
            elif self._over_budget(episode, turn):
                steps[i] = _ended("turn_budget" if episode.turns + 1 >= self.budget.max_turns else "token_budget")
            else:
                steps[i] = self._run_calls(episode, calls)
        if finals:
            rollouts = [Rollout((), turns[i].token_ids, turns[i].logprobs, turns[i].text, "stop") for i in finals]
            scores = self.reward.score([episodes[i].task for i in finals], rollouts)
            for i, s in zip(finals, scores, strict=True):
                steps[i] = Step((), s.reward, True, {**s.metrics, **{f"failure/{f}": 0.0 for f in ENDINGS}}, s.failure)
        return steps  # type: ignore[return-value]

    def _over_budget(self, episode: Episode, turn: Turn) -> bool:
        """Whether this turn is the last the budget allows (the episode's counters do not include it yet)."""
        used = episode.tokens + len(turn.token_ids)
        return episode.turns + 1 >= self.budget.max_turns or used >= self.budget.max_episode_tokens

    def _run_calls(self, episode: Episode, calls: list[Call]) -> Step:
        replies = [self._run(call) for call in calls]
        episode.metrics["tool_calls"] += len(calls)
        episode.metrics["tool_errors"] += sum(failed for _, failed in replies)
        return Step(tuple(Message("tool", reply) for reply, _ in replies), 0.0, False)

    def _run(self, call: Call) -> tuple[str, bool]:
        """The tool's reply and whether the call failed (a malformed call, an unknown tool, bad arguments, a raise)."""
        tool = self.tools.get(call.name)
        problem = call.error or (
            f"unknown tool {call.name!r}; tools: {', '.join(self.tools)}"
            if tool is None
            else argument_error(tool, call.arguments)
        )
        if problem:
            return f"error: {problem}", True
        try:
            return str(tool.fn(**call.arguments)), False
        except Exception as e:  # a tool's failure is the model's observation, not the run's crash
            return f"error: {type(e).__name__}: {e}", True

    def close(self) -> None:
        """Release the verifiers' workers."""
        self.reward.close()


def calculator_tool() -> Tool:
    """The calculator (`posttrain.envs.calculator`)."""
    from posttrain.envs.calculator import calculator

    parameters = {"type": "object", "required": ["expression"],
                  "properties": {"expression": {"type": "string", "description": "e.g. (12 + 7) * 3"}}}  # fmt: skip
    return Tool("calculator", "Evaluate an arithmetic expression: numbers, + - * / // % ** and parentheses.",
                parameters, calculator)  # fmt: skip


def python_tool() -> Tool:
    """Python run in the bubblewrap sandbox (`posttrain.envs.python_tool`)."""
    from posttrain.envs.python_tool import PythonTool

    parameters = {"type": "object", "required": ["code"],
                  "properties": {"code": {"type": "string", "description": "a Python program; print what you need"}}}  # fmt: skip
    return Tool("python", "Run a Python program in a sandbox and return what it prints.", parameters, PythonTool())


TOOLS = {"calculator": calculator_tool, "python": python_tool}  # name -> factory
