"""The records that flow between posttrain's stages: frozen dataclasses, schema as in DESIGN.md.

Messages are stored as tuples of `Message`; constructors also accept plain dicts
(`{"role": "user", "content": "..."}`), so `RLTask(prompt=[{"role": "user", "content": "2+2?"}], ...)` works.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class Source:
    """Where a record came from: a file and a 1-based line (JSONL) or 0-based row (Parquet, datasets)."""

    path: str
    line: int
    unit: str = "line"  # "line" for text files, "row" for tabular sources

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.unit == "line" else f"{self.path} row {self.line}"


@dataclass(frozen=True)
class Message:
    """One chat turn."""

    role: str
    content: str

    def as_dict(self) -> dict[str, str]:
        """The dict form chat templates expect."""
        return {"role": self.role, "content": self.content}


Messages = tuple[Message, ...]


def as_messages(value: Sequence[Message | Mapping[str, Any]]) -> Messages:
    """Normalise a sequence of `Message` or dicts into a tuple of `Message`."""
    return tuple(m if isinstance(m, Message) else Message(str(m["role"]), str(m["content"])) for m in value)


def as_dicts(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Messages as the list of dicts that `apply_chat_template` takes."""
    return [m.as_dict() for m in messages]


def _freeze_messages(record: Any, *names: str) -> None:
    for name in names:
        object.__setattr__(record, name, as_messages(getattr(record, name)))


@dataclass(frozen=True)
class SFTExample:
    """A conversation to imitate; the loss falls on assistant turns only."""

    messages: Messages
    source: Source | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _freeze_messages(self, "messages")


@dataclass(frozen=True)
class PreferencePair:
    """A prompt with a preferred and a dispreferred continuation."""

    prompt: Messages
    chosen: Messages
    rejected: Messages
    source: Source | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _freeze_messages(self, "prompt", "chosen", "rejected")


@dataclass(frozen=True)
class BinaryFeedback:
    """A prompt and one completion labelled desirable (True) or undesirable (False), for KTO."""

    prompt: Messages
    completion: Messages
    label: bool
    source: Source | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _freeze_messages(self, "prompt", "completion")


@dataclass(frozen=True)
class RLTask:
    """A prompt with what a verifier needs to check a completion (`answer` and/or `tests`)."""

    prompt: Messages
    verifier: str
    answer: Any = None
    tests: Any = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    source: Source | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _freeze_messages(self, "prompt")


@dataclass(frozen=True)
class Rollout:
    """One sampled completion, or a multi-turn trajectory: token ids as the sampler produced them (never re-encoded),
    their log-probs and the text.

    A single-turn completion holds only sampled ids. A trajectory (`posttrain.envs`) also holds the tokens that came
    between its assistant turns (tool results, user turns, template tokens); `sampled` marks which ids the model
    drew, and only those are trained on. Their log-probs are the sampler's; the others' are 0.0.
    """

    prompt_ids: tuple[int, ...]
    token_ids: tuple[int, ...]  # ids after the prompt, the end-of-turn token included when the sampler stopped on it
    logprobs: tuple[float, ...]  # the sampler's log-prob of each sampled id (0.0 for ids it did not sample)
    text: str  # decoded completion (a trajectory: its last assistant turn), special tokens removed
    finish_reason: str  # "stop" (end-of-turn or stop string) or "length"
    sampled: tuple[bool, ...] | None = None  # per id of token_ids: drawn by the model; None: every id was

    @property
    def trained_mask(self) -> tuple[bool, ...]:
        """Per id of `token_ids`: whether the loss falls on it (the ids the model sampled)."""
        return (True,) * len(self.token_ids) if self.sampled is None else self.sampled

    @property
    def sampled_logprobs(self) -> tuple[float, ...]:
        """The sampler's log-probs of the trained ids, in order."""
        return tuple(lp for lp, keep in zip(self.logprobs, self.trained_mask, strict=True) if keep)


@dataclass(frozen=True)
class Score:
    """A verifier's or judge's verdict: a reward, metrics, and why scoring failed (None when it did not)."""

    reward: float
    metrics: Mapping[str, float] = field(default_factory=dict)
    failure: str | None = None
