"""Running episodes: the driver between the rollout engine and an environment.

`run_groups(sampler, tokenizer, env, tasks, n, params)` opens `n` episodes per task, renders each opening
conversation once (`render_prompt`, with the tools' schemas for templates that render them), and samples every
turn through `sampler.run_turns` from token ids. After each turn the environment says what follows; the driver
appends the observation's template ids (`posttrain.envs.tokens.bridge_ids`) to the ids sampled so far and the
engine continues the conversation from its kept cache. Nothing sampled is ever decoded and re-encoded.

A finished episode becomes a `Group` member: a `Rollout` (prompt ids, every id after them, the sampler's
log-probs, and the `sampled` mask: tool results and template ids are not trained on) and a `Score` (the summed
rewards, the last step's metrics, the episode's counters such as `turns` and `tool_calls`, and its failure).

A single-turn environment (`max_turns == 1`) samples all completions in one pass and scores them in one call,
exactly as RLVR did before environments existed: the same ids, log-probs and rewards.

`timings` gets `generation_s` (sampling, the environment's time taken out) and `scoring_s` (the environment).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from posttrain.envs import Env, Episode, Step
from posttrain.envs.tokens import bridge_ids
from posttrain.render import render_prompt
from posttrain.rollout import Sampler, SamplingParams, Transcript, Turn
from posttrain.rounds import Group
from posttrain.types import Message, RLTask, Rollout, Score


def run_groups(
    sampler: Sampler,
    tokenizer: PreTrainedTokenizerBase,
    env: Env,
    tasks: Sequence[RLTask],
    n: int,
    params: SamplingParams,
    timings: dict[str, float] | None = None,
) -> list[Group]:
    """`n` episodes per task, grouped per task in task order; see the module docstring."""
    timings = {"generation_s": 0.0, "scoring_s": 0.0} if timings is None else timings
    episodes = [env.start(t) for t in tasks for _ in range(n)]
    prompt_ids = [render_prompt(tokenizer, e.messages, e.tools or None) for e in episodes]
    last: list[Step | None] = [None] * len(episodes)
    env_s = 0.0

    def continue_with(rows: list[int], turns: list[Turn]) -> list[Sequence[int] | None]:
        nonlocal env_s
        started = time.perf_counter()
        steps = env.step([episodes[r] for r in rows], turns)
        follow = [
            _advance(tokenizer, episodes[r], turn, step) for r, turn, step in zip(rows, turns, steps, strict=True)
        ]
        for r, step in zip(rows, steps, strict=True):
            last[r] = step
        env_s += time.perf_counter() - started
        return follow

    started = time.perf_counter()
    if env.max_turns == 1:
        transcripts = sampler.run_turns(prompt_ids, params, None)
        timings["generation_s"] += time.perf_counter() - started
        started = time.perf_counter()
        continue_with(list(range(len(episodes))), [t.last for t in transcripts])
        timings["scoring_s"] += time.perf_counter() - started
    else:
        transcripts = sampler.run_turns(prompt_ids, params, continue_with)
        timings["generation_s"] += time.perf_counter() - started - env_s
        timings["scoring_s"] += env_s
    multi_turn = env.max_turns > 1
    results = [_result(p, t, e, s, multi_turn)
               for p, t, e, s in zip(prompt_ids, transcripts, episodes, last, strict=True)]  # fmt: skip
    return [Group(task, [r for r, _ in results[i * n : (i + 1) * n]], [s for _, s in results[i * n : (i + 1) * n]])
            for i, task in enumerate(tasks)]  # fmt: skip


def _advance(tokenizer: PreTrainedTokenizerBase, episode: Episode, turn: Turn, step: Step) -> list[int] | None:
    """Record the turn and the step in the episode; the ids to append before its next turn, or None when done."""
    episode.turns += 1
    episode.tokens += len(turn.token_ids)
    episode.reward += step.reward
    if step.done:
        return None
    history = [*episode.messages, Message("assistant", turn.text)]
    closed = bool(turn.token_ids) and turn.token_ids[-1] == tokenizer.eos_token_id
    ids = bridge_ids(tokenizer, history, step.observation, episode.tools, closed=closed)
    episode.messages = [*history, *step.observation]
    episode.tokens += len(ids)
    return ids


def _result(prompt_ids: list[int], transcript: Transcript, episode: Episode, step: Step | None,
            multi_turn: bool) -> tuple[Rollout, Score]:  # fmt: skip
    """The episode as a trainable rollout and its score (with `turns` and `called_tool` when `multi_turn`)."""
    assert step is not None and step.done, "the sampler ended an episode the environment had not finished"
    last = transcript.last
    sampled = None if all(transcript.sampled) else transcript.sampled
    rollout = Rollout(tuple(prompt_ids), transcript.token_ids, transcript.logprobs, last.text, last.finish_reason,
                      sampled)  # fmt: skip
    counters = dict(episode.metrics)
    if multi_turn:
        counters |= {"turns": float(episode.turns), "called_tool": float(counters.get("tool_calls", 0.0) > 0)}
    return rollout, Score(episode.reward, {**step.info, **counters}, step.failure)
