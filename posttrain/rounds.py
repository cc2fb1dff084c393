"""The round shape: sample -> judge -> build -> train -> evaluate, written once for every stage that iterates.

A round starts from a model, samples `samples_per_prompt` completions of each task through the one sampler factory
(`posttrain.rollout.engine.make_sampler`: the fused engine where it supports the model), scores them (`score`, one
call for the whole batch so a verifier's process pool or sandboxes are used once), builds a data set from the
scored groups (`build`: preference pairs, SFT records, rewards ...), trains on it (`train`) and evaluates the
result (`evaluate`). Iterated DPO is a round whose builder pairs the best sample against the worst; critique and
revision, red-teaming, deliberative data and distillation are rounds with other judges and builders.

Every round directory holds the same files:
- `samples.jsonl`: every sample with its reward and failure reason;
- `<data_name>.jsonl`: the built data set (`pairs.jsonl` for preference rounds), and any other files the builder
  made (the constitution round's `pairs.jsonl` and `recovery.jsonl` beside its `sft.jsonl`);
- `metrics.jsonl`: the training loop's rows;
- `round.json`: the round's stats, its last training metrics and its evaluation;
- `final/`: the trained model. A round that has it is skipped when rerun, so an interrupted run resumes by round.

The next round starts from this round's `final/`. A loop may stop early (`run_rounds`' `stop`: the red-team
loop's plateau rule), and a round's tasks may be made for it (the red-team round's attacks).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from posttrain.data.pairs import GroupData
from posttrain.distributed import rank, sharded_map
from posttrain.io import atomic_write_json, atomic_write_text
from posttrain.models import save_model
from posttrain.render import RenderedSequence
from posttrain.rewards import Judge
from posttrain.rollout import SamplingParams
from posttrain.rollout.engine import make_sampler
from posttrain.rollout.options import SamplerOptions
from posttrain.types import RLTask, Rollout, Score

log = logging.getLogger("posttrain.rounds")
Scorer = Callable[[list[RLTask], list[Rollout]], list[Score]]  # one score per (task, rollout), in order


@dataclass(frozen=True)
class Group:
    """A task, the completions sampled for it and their scores."""

    task: RLTask
    rollouts: list[Rollout]
    scores: list[Score]

    @property
    def rewards(self) -> list[float]:
        """One reward per completion."""
        return [s.reward for s in self.scores]


def rollout_sequence(rollout: Rollout) -> RenderedSequence:
    """Prompt + the rollout's ids with the loss on the sampled ids: what a trainer learns from (never re-encoded
    text). Tool results and template tokens between a trajectory's turns carry no loss."""
    ids = rollout.prompt_ids + rollout.token_ids
    return RenderedSequence(ids, (False,) * len(rollout.prompt_ids) + rollout.trained_mask)


def sample_groups(
    sampler,
    score: Scorer,
    tasks: Sequence[RLTask],
    n: int,
    params: SamplingParams,
    timings: dict[str, float] | None = None,
) -> list[Group]:
    """Sample `n` completions per task and score them all in one call; adds generation/scoring seconds to `timings`."""
    timings = {"generation_s": 0.0, "scoring_s": 0.0} if timings is None else timings
    started = time.perf_counter()
    rollouts = sampler.sample([t.prompt for t in tasks], n, params)
    timings["generation_s"] += time.perf_counter() - started
    started = time.perf_counter()
    scores = score([t for t in tasks for _ in range(n)], [r for group in rollouts for r in group])
    timings["scoring_s"] += time.perf_counter() - started
    return [Group(t, rollouts[i], scores[i * n : (i + 1) * n]) for i, t in enumerate(tasks)]


def informative(group: Group) -> bool:
    """Whether the group's rewards differ: a group of equal rewards has zero advantages and carries no gradient."""
    return len(set(group.rewards)) > 1


@dataclass(frozen=True)
class Refill:
    """Where dynamic sampling draws more tasks from, how many groups it wants, how many extra rounds it may draw."""

    pool: Sequence[RLTask]
    want: int
    max_rounds: int
    rng: random.Random


# Samples and scores groups: (tasks, samples per task, sampling parameters, timings) -> one group per task
# (`sample_groups` with a sampler and a scorer bound, or `posttrain.envs.episodes.run_groups` with an environment).
Draw = Callable[[Sequence[RLTask], int, SamplingParams, dict[str, float]], list[Group]]


def sharded_draw(draw: Draw) -> Draw:
    """`draw` on several ranks: each runs the episodes of its share of the tasks (tasks rank, rank + N, ...) with its
    own seed, and every rank gets every group in task order, so that the update's micro-batches are the same
    everywhere (`posttrain.distributed`). The samplers seed by position within a call, so on N ranks the rollouts
    differ from one process's, as with another seed. `timings["prompts_this_rank"]` counts this rank's tasks."""

    def on_my_share(tasks, n, params, timings):
        def mine(share):
            timings["prompts_this_rank"] = timings.get("prompts_this_rank", 0) + len(share)
            return draw(share, n, dataclasses.replace(params, seed=params.seed + rank() * 1_000_003), timings)

        return sharded_map(mine, tasks)

    return on_my_share


def refill_informative(
    draw: Draw, first: list[Group], refill: Refill, params: Callable[[int], SamplingParams], timings
) -> tuple[list[Group], dict[str, float]]:
    """DAPO's dynamic sampling (§3.2): keep the informative groups of `first`, then draw groups for tasks drawn from
    the pool, round r with `params(r)`, until `refill.want` are kept or `refill.max_rounds` rounds were drawn."""
    kept, sampled, n = [g for g in first if informative(g)], len(first), len(first[0].rollouts)
    for round_ in range(1, refill.max_rounds + 1):
        if len(kept) >= refill.want:
            break
        indices = refill.rng.sample(range(len(refill.pool)), min(refill.want, len(refill.pool)))
        more = draw([refill.pool[i] for i in indices], n, params(round_), timings)
        sampled += len(more)
        kept += [g for g in more if informative(g)]
    dropped = 1.0 - sum(map(informative, first)) / len(first)
    return kept[: refill.want], {
        "sampled_groups": sampled,
        "dropped_fraction": dropped,
        "kept_groups": min(len(kept), refill.want),
    }


def group_stats(groups: list[Group]) -> dict[str, float]:
    """Reward mean/std, accuracy, response length and failure rates over all completions of `groups`."""
    rewards = torch.tensor([r for g in groups for r in g.rewards])
    lengths = [sum(r.trained_mask) for g in groups for r in g.rollouts]  # sampled ids (a trajectory's tool ids not)
    stats = {
        "reward_mean": float(rewards.mean()),
        "reward_std": float(rewards.std()) if len(rewards) > 1 else 0.0,
        "response_length": sum(lengths) / len(lengths),
        "truncated_fraction": sum(r.finish_reason == "length" for g in groups for r in g.rollouts) / len(lengths),
    }
    per_key: dict[str, list[float]] = defaultdict(list)
    for g in groups:
        for s in g.scores:
            for key, value in s.metrics.items():
                per_key[key].append(value)
    # A failure rate is over every sample: an episode that ended before its verifier ran (a tool budget) has no
    # verifier failure keys, and counts as 0 for them. Other metrics are means over the samples that report them.
    stats.update({key: sum(v) / (len(lengths) if key.startswith("failure/") else len(v)) for key, v in per_key.items()})
    return stats


def judge_scorer(judge: Judge) -> Scorer:
    """A `Scorer` from a group judge: each task's consecutive rollouts are judged together."""

    def score(tasks: list[RLTask], rollouts: list[Rollout]) -> list[Score]:
        scores: list[Score] = []
        for _, run in itertools.groupby(zip(tasks, rollouts, strict=True), key=lambda pair: id(pair[0])):
            pairs = list(run)
            scores += judge.score_group(pairs[0][0], [rollout.text for _, rollout in pairs])
        return scores

    return score


def sample_rows(groups: Sequence[Group]) -> list[dict]:
    """`samples.jsonl` rows: prompt, completion, reward, failure and finish reason of every sample."""
    return [
        {
            "prompt": g.task.prompt[-1].content,
            "completion": r.text,
            "reward": s.reward,
            "failure": s.failure,
            "finish_reason": r.finish_reason,
        }
        for g in groups
        for r, s in zip(g.rollouts, g.scores, strict=True)
    ]


@dataclass(frozen=True)
class Built:
    """What a round's builder made: rows for `<data_name>.jsonl`, the data `train` takes, and counts."""

    rows: list[dict]
    data: Any
    stats: dict[str, Any]
    extra: dict[str, list[dict]] = field(default_factory=dict)  # more built files: stem -> rows (`<stem>.jsonl`)


def best_against_worst(groups: list[Group], min_margin: float, max_length: int) -> Built:
    """Preference pairs: the best-judged sample of each group against the worst; ties, narrow margins, groups with fewer than
    two judged samples (an LM judge that could not answer) and pairs longer than max_length are dropped and counted. The
    built data is a `GroupData` of (chosen, rejected) sequences on the sampled token ids."""
    sequences, rows = [], []
    stats = {
        "prompts": len(groups),
        "samples": sum(len(g.rollouts) for g in groups),
        "ties": 0,
        "below_margin": 0,
        "unjudged": 0,
        "too_long": 0,
        "failures": sum(s.failure is not None for g in groups for s in g.scores),
        "reward_mean": sum(sum(g.rewards) for g in groups) / max(sum(len(g.rollouts) for g in groups), 1),
    }
    for g in groups:
        judged = [i for i, s in enumerate(g.scores) if s.metrics.get("judged", 1.0)]
        if len(judged) < 2:
            stats["unjudged"] += 1
            continue
        best, worst = max(judged, key=lambda i: g.rewards[i]), min(judged, key=lambda i: g.rewards[i])
        margin = g.rewards[best] - g.rewards[worst]
        problem = "ties" if margin == 0 else "below_margin" if margin < min_margin else None
        if (
            problem is None
            and max(len(g.rollouts[i].prompt_ids) + len(g.rollouts[i].token_ids) for i in (best, worst)) > max_length
        ):
            problem = "too_long"
        if problem:
            stats[problem] += 1
            continue
        sequences += [rollout_sequence(g.rollouts[best]), rollout_sequence(g.rollouts[worst])]
        rows.append(
            {
                "prompt": g.task.prompt[-1].content,
                "chosen": g.rollouts[best].text,
                "rejected": g.rollouts[worst].text,
                "chosen_reward": g.rewards[best],
                "rejected_reward": g.rewards[worst],
            }
        )
    if not rows:
        raise ValueError(f"no pairs (every group tied, below min_margin or unjudged): {stats}")
    return Built(rows, GroupData(sequences), stats | {"pairs": len(rows)})


@dataclass(frozen=True)
class RoundContext:
    """The round being run: its index (from 1), its directory, and the policy as it starts the round."""

    index: int
    dir: Path
    model: Any
    tokenizer: Any


@dataclass(frozen=True)
class RoundSpec:
    """Where one kind of round differs from another: its sampling, scoring, building, training and evaluation."""

    data_name: str  # the built data's file stem: "pairs", "sft", ...
    samples_per_prompt: int
    sampling: Callable[[int], SamplingParams]  # round index -> sampling parameters (seeded per round)
    score: Scorer
    build: Callable[[list[Group], RoundContext], Built]  # may use the policy (a critic that is the policy itself)
    train: Callable[[Built, RoundContext], dict]  # trains ctx.model in place; returns the last metrics row
    evaluate: Callable[[RoundContext], dict] = lambda ctx: {}
    rollout_batch: int = 64  # rows decoded together by the sampler
    sampler_options: SamplerOptions | None = None  # the backend (`make_sampler`); None: auto


RoundTasks = Sequence[RLTask] | Callable[[RoundContext], Sequence[RLTask]]  # the same every round, or made per round


def run_round(spec: RoundSpec, index: int, round_dir: Path, model, tokenizer, tasks: RoundTasks) -> Path:
    """One round on `model` (trained in place); returns its `final/` directory. `tasks` may be a function of the
    round (a red-team round's attacks are made against the policy as it starts the round)."""
    round_dir.mkdir(parents=True, exist_ok=True)
    ctx = RoundContext(index, round_dir, model, tokenizer)
    tasks = tasks(ctx) if callable(tasks) else tasks
    timings = {"generation_s": 0.0, "scoring_s": 0.0}
    sampler = make_sampler(model, tokenizer, batch_size=spec.rollout_batch, options=spec.sampler_options)
    groups = sample_groups(sampler, spec.score, tasks, spec.samples_per_prompt, spec.sampling(index), timings)
    del sampler  # its weight snapshot is stale once training starts
    atomic_write_text(round_dir / "samples.jsonl", _jsonl(sample_rows(groups)))
    built = spec.build(groups, ctx)
    for stem, rows in {spec.data_name: built.rows, **built.extra}.items():
        atomic_write_text(round_dir / f"{stem}.jsonl", _jsonl(rows))
    log.info("round %d: %s", index, built.stats)
    started = time.perf_counter()
    last = spec.train(built, ctx)
    timings["training_s"] = time.perf_counter() - started
    summary = {
        "round": index,
        **built.stats,
        "timings_s": timings,
        "final_step": {k: v for k, v in last.items() if isinstance(v, float)},
        "eval": spec.evaluate(ctx),
    }
    atomic_write_json(round_dir / "round.json", summary)
    return save_model(model, tokenizer, round_dir / "final")


def run_rounds(
    spec: RoundSpec,
    n_rounds: int,
    run_dir: Path,
    start: str,
    load: Callable[[str, int], tuple[Any, Any]],
    tasks: RoundTasks,
    stop: Callable[[int], bool] = lambda index: False,
) -> Path:
    """Up to `n_rounds` rounds, each from the last one's `final/` (`load(model_dir, round_index)` builds the
    policy); finished rounds are skipped, and `stop(index)`, asked after every round (finished ones included, so a
    resumed run stops where the first one did), ends the loop early. Returns the last round's `final/`."""
    for index in range(1, n_rounds + 1):
        round_dir = run_dir / f"round_{index}"
        if not (round_dir / "final" / "config.json").is_file():
            model, tokenizer = load(start, index)
            run_round(spec, index, round_dir, model, tokenizer, tasks)
        start = str(round_dir / "final")
        if stop(index):
            break
    return Path(start)


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)
