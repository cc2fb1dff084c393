"""Difficulty from the current policy's pass rate: `samples` completions per task, each scored by the task's own
verifier (`posttrain.rewards.shaped.ShapedReward` with no shaping: `correct` is the verifier's reward reaching 1, as
in `posttrain.eval.passk`), then the tasks whose pass rate lies in a band are kept.

s1 and LIMO keep what the model cannot already do: s1 drops every question either of two Qwen models solves, LIMO
keeps problems that a strong model solves in only a few of 32 tries. Here the band is [min_pass, max_pass] of one
policy's pass rate; a task it never solves is kept unless `drop_unsolved` (it may be too hard for this policy to learn
from, or its answer may be wrong). Only rl-schema tasks name a verifier, so only they can be rated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from posttrain.curation.items import Item, PassRate
from posttrain.curation.rules import Dropped, Outcome
from posttrain.rewards.route import check_prerequisites
from posttrain.rewards.shaped import ShapedReward, Shaping
from posttrain.rollout import SamplingParams
from posttrain.types import RLTask


@dataclass(frozen=True)
class PassBand:
    """The pass rates kept: from `min_pass` to `max_pass`, both included; 0 only without `drop_unsolved`."""

    min_pass: float = 0.0
    max_pass: float = 0.5
    drop_unsolved: bool = False


def outside_band(rate: PassRate, band: PassBand) -> str | None:
    """Why a task with this pass rate is dropped, or None when it is kept."""
    if rate.solved == 0 and band.drop_unsolved:
        return f"never solved ({rate}) and drop_unsolved is set"
    if rate.solved == rate.samples and rate.rate > band.max_pass:
        return f"always solved ({rate})"
    if rate.rate > band.max_pass:
        return f"too easy: solved {rate} = {rate.rate:.2f} > max_pass {band.max_pass}"
    if rate.rate < band.min_pass:
        return f"too hard: solved {rate} = {rate.rate:.2f} < min_pass {band.min_pass}"
    return None


def select_by_pass_rate(items: list[Item], band: PassBand) -> Outcome:
    """Keep the items (pass rates already measured) whose pass rate lies in the band."""
    kept, dropped = [], []
    for item in items:
        reason = outside_band(item.pass_rate, band)  # type: ignore[arg-type]
        if reason is None:
            kept.append(item)
        else:
            dropped.append(Dropped(item, reason))
    return Outcome(kept, dropped)


def check_rateable(tasks: Sequence[RLTask]) -> None:
    """The machine can run every task's verifier (each known verifier gives a reward; the loader refused unknown
    ones)."""
    check_prerequisites(t.verifier for t in tasks)


def measure_pass_rates(
    policy, tasks: Sequence[RLTask], samples: int, params: SamplingParams, batch_size: int = 64, progress: bool = True
) -> list[PassRate]:
    """Each task's pass rate under `policy` (model, tokenizer): `samples` completions each, sampled and scored as a
    training round does (`posttrain.rounds.sample_groups`)."""
    from posttrain.rollout.engine import make_sampler
    from posttrain.rounds import sample_groups

    model, tokenizer = policy
    sampler = make_sampler(model, tokenizer, batch_size, "pass rates" if progress else "")
    reward = ShapedReward(Shaping())
    try:
        groups = sample_groups(sampler, reward.score, tasks, samples, params)
    finally:
        reward.close()
    return [PassRate(int(sum(s.metrics["correct"] for s in g.scores)), samples) for g in groups]


def difficulty(
    items: list[Item],
    policy,
    samples: int,
    params: SamplingParams,
    band: PassBand,
    batch_size: int = 64,
    progress: bool = True,
) -> Outcome:
    """Measure every item's pass rate under `policy` (model, tokenizer), then keep those in the band."""
    if not items:
        return Outcome([], [])
    tasks = [item.record for item in items]
    if not all(isinstance(t, RLTask) for t in tasks):
        raise ValueError("difficulty needs rl-schema tasks: only they name a verifier to score samples with")
    rates = measure_pass_rates(policy, tasks, samples, params, batch_size, progress)  # type: ignore[arg-type]
    return select_by_pass_rate([replace(i, pass_rate=r) for i, r in zip(items, rates, strict=True)], band)
