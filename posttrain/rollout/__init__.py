"""Sampling completions: the `Sampler` protocol and its backends."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from posttrain.rollout.options import SamplerOptions
from posttrain.types import Messages, Rollout

__all__ = ["SamplerOptions"]  # re-exported: the config keys beside the sampling parameters


@dataclass(frozen=True)
class SamplingParams:
    """How to sample."""

    max_new_tokens: int = 256  # tokens generated at most per completion
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0  # nucleus sampling mass
    top_k: int = 0  # 0: no top-k cut
    seed: int = 0  # seeds the sampler's generator
    stop: tuple[str, ...] = ()  # stop strings: a completion ends with the token that completes one


@dataclass(frozen=True)
class Turn:
    """One assistant turn as sampled: its ids (the end-of-turn token included when it stopped on it), their
    log-probs, the decoded text and why it ended ("stop" or "length")."""

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    text: str
    finish_reason: str


@dataclass(frozen=True)
class Transcript:
    """A row's ids after its prompt: sampled turns and the ids given between them, and which ids were sampled."""

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]  # the sampler's for sampled ids, 0.0 for given ones
    sampled: tuple[bool, ...]
    last: Turn  # the last turn sampled


Piece = tuple[tuple[int, ...], tuple[float, ...], bool]  # ids, their log-probs, whether they were sampled


def transcript_of(pieces: Sequence[Piece], last: Turn) -> Transcript:
    """A row's pieces (sampled turns and appended ids, in order) as one transcript."""
    ids = tuple(i for p, _, _ in pieces for i in p)
    logprobs = tuple(lp for _, lps, _ in pieces for lp in lps)
    sampled = tuple(flag for p, _, flag in pieces for _ in p)
    return Transcript(ids, logprobs, sampled, last)


# Called after every turn with the rows (indices into the prompts) that just finished one and their turns; returns,
# per row, the ids to append before the row's next turn (tool results, template tokens), or None to end the row.
ContinueWith = Callable[[list[int], list[Turn]], list[Sequence[int] | None]]


def regenerated_turns(
    prompt_ids: Sequence[Sequence[int]], next_turns: Callable[[list[int], list[list[int]], int], list[Turn]],
    continue_with: ContinueWith | None,
) -> list[Transcript]:  # fmt: skip
    """`Sampler.run_turns` for samplers that keep no cache between turns: `next_turns(rows, histories, turn)` gives
    the next turn of the active rows (indices into the prompts) from their whole id sequences (prompt, turns so far,
    appended ids), in order. Ids are never decoded and re-encoded between turns."""
    pieces: list[list[Piece]] = [[] for _ in prompt_ids]
    history = [list(ids) for ids in prompt_ids]
    last: dict[int, Turn] = {}
    active, turn = list(range(len(prompt_ids))), 0
    while active:
        turns = next_turns(active, [history[i] for i in active], turn)
        follow = continue_with(active, turns) if continue_with else [None] * len(turns)
        for i, t, ids in zip(active, turns, follow, strict=True):
            pieces[i].append((t.token_ids, t.logprobs, True))
            history[i] += t.token_ids
            if ids is not None:
                pieces[i].append((tuple(ids), (0.0,) * len(ids), False))
                history[i] += ids
        last.update(zip(active, turns, strict=True))
        active, turn = [i for i, ids in zip(active, follow, strict=True) if ids is not None], turn + 1
    return [transcript_of(p, last[i]) for i, p in enumerate(pieces)]


class Sampler(Protocol):
    """Anything that turns prompts into rollouts; training never depends on how."""

    def sample(self, prompts: Sequence[Messages], n: int, params: SamplingParams) -> list[list[Rollout]]:
        """`n` rollouts for each prompt, grouped per prompt, in prompt order."""
        ...

    def run_turns(
        self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams, continue_with: ContinueWith | None
    ) -> list[Transcript]:
        """Multi-turn sampling from token ids: one transcript per prompt; `continue_with` decides what follows each
        turn (None: one turn each). The ids are never decoded and re-encoded between turns."""
        ...

    def sync(self) -> None:
        """Take up the policy's current weights (called after each optimizer step)."""
        ...


def end_token_ids(model, tokenizer) -> frozenset[int]:
    """The ids that end a turn: the tokenizer's end token and those of the model's generation config (an instruct
    model's end-of-turn ids, such as Llama 3's `<|eot_id|>` beside `<|end_of_text|>`, or Gemma's `<end_of_turn>`)."""
    config = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [tokenizer.eos_token_id, *(config if isinstance(config, list | tuple) else [config])]
    return frozenset(int(i) for i in ids if i is not None)


def greedy_texts(sampler: Sampler, prompts: Sequence[Messages], max_new_tokens: int) -> list[str]:
    """Greedy completion of each prompt by `sampler`, in input order, without special tokens."""
    groups = sampler.sample(prompts, 1, SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0))
    return [group[0].text for group in groups]
