"""Environments for RL: an episode starts from a task's first messages, and each assistant turn gets back
observation messages, a reward, whether the episode is done, and metrics.

The protocol is small on purpose:
- `Env.start(task)` opens an `Episode`: the conversation so far (the task's prompt, perhaps with a system message
  describing tools) and the tools' JSON schemas for templates that render them;
- `Env.step(episodes, turns)` takes the assistant turn just sampled for each episode (one call for a batch, so a
  verifier's process pool or sandboxes are used once) and returns one `Step` per episode;
- `Env.max_turns`: 1 for single-turn environments (the driver then samples exactly as plain RLVR does);
- `Env.close()` releases workers.

The driver (`posttrain.envs.episodes.run_groups`) samples turns through the rollout engine from token ids, asks the
environment what follows, and appends the observation's template tokens (`posttrain.envs.tokens.bridge_ids`) to
the sampled ids without ever re-encoding sampled text. A finished episode becomes a `Rollout` whose `sampled` mask
marks the model's tokens (the only ones trained on) and a `Score` holding the summed reward and the step metrics.

Environments: `VerifierEnv` (single turn, a task's verifier: what RLVR always did) and `ToolEnv` (tool calls,
`posttrain.envs.tools`), with the calculator and the sandboxed Python tool. `ENVS` names them for configs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from posttrain.rollout import Turn
from posttrain.types import Message, Messages, RLTask


@dataclass
class Episode:
    """One episode's state: the conversation so far and counters the environment keeps."""

    task: RLTask
    messages: list[Message]  # the task's first messages, then every turn and observation so far
    tools: tuple[dict, ...] = ()  # JSON schemas passed to templates that render tools; () otherwise
    turns: int = 0  # assistant turns taken
    tokens: int = 0  # ids after the prompt so far: sampled and appended
    reward: float = 0.0  # the steps' rewards so far
    metrics: dict[str, float] = field(default_factory=dict)  # counters summed over the episode (tool calls ...)


@dataclass(frozen=True)
class Step:
    """What an environment returns for one assistant turn."""

    observation: Messages  # messages that follow the turn (tool results); empty when done
    reward: float
    done: bool
    info: Mapping[str, float] = field(default_factory=dict)  # metrics of this step (a verifier's, ...)
    failure: str | None = None  # why the episode failed, when it did


class Env(Protocol):
    """An environment: see the module docstring."""

    max_turns: int

    def start(self, task: RLTask) -> Episode:
        """A new episode for `task`."""
        ...

    def step(self, episodes: Sequence[Episode], turns: Sequence[Turn]) -> list[Step]:
        """One step per episode, for the turn just sampled in it."""
        ...

    def close(self) -> None:
        """Release workers (process pools, sandboxes)."""
        ...
