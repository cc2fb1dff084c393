"""Environments by name, for configs: `env=verifier` (one turn, the task's verifier) or `env=tools` (tool calls over
several turns, then the verifier), built from the RLVR stage's options."""

from __future__ import annotations

from posttrain.envs.tools import TOOLS, ToolBudget, ToolEnv
from posttrain.envs.verifier import VerifierEnv


def tool_env(config, reward, tokenizer) -> ToolEnv:
    """The tool environment with the configured tools (`tools`) and budgets (`max_turns`, `max_episode_tokens`)."""
    unknown = [t for t in config.tools if t not in TOOLS]
    if unknown:
        raise ValueError(f"tools: unknown {', '.join(unknown)}; known: {', '.join(TOOLS)}")
    budget = ToolBudget(config.max_turns, config.max_episode_tokens)
    return ToolEnv([TOOLS[t]() for t in config.tools], reward, tokenizer, budget)


ENVS = {
    "verifier": lambda config, reward, tokenizer: VerifierEnv(reward),
    "tools": tool_env,
}
