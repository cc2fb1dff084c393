"""Reasoning Gym answers, checked by each dataset's own `score_answer(answer, entry)`.

The task (built by `posttrain.tasks.gym`) carries `metadata["dataset"]` and `metadata["entry"]`. The final answer
is taken from the completion as `posttrain.rewards.math.MathVerifier` takes it (its helpers are reused):
- only the text before the first stop string is read;
- the last `\\boxed{...}`, or with no box the last final-answer line ("The answer is X", "Final answer: X");
- nothing found, or only empty boxes: 0 with "no_answer";
- two answers that differ (whitespace ignored): 0 with "multiple_answers". Unlike MathVerifier there is no
  math-equivalence between them, so `\\boxed{84/2} = \\boxed{42}` is a hedge here;
- digits outside ASCII (fullwidth "４２", ...): 0 with "non_ascii_digits", since Python's `float` and `\\d` read
  them and a scorer would pass them;
- with `max_chars`, a longer completion: 0 with "overlong".

The answer is then passed to the dataset's `score_answer`. An exception there, or a result that is not a number in
[0, 1], is 0 with "score_error": counted (the exception logged), never a crash and never a silent zero. A checked
wrong answer has failure None.

Binary by default: reasoning-gym's scores give credit to wrong answers. The default `score_answer` gives
len(gold) / len(answer) when the gold answer is a substring ("-12" earns 2/3 against "12"), and gsm_symbolic gives
0.01 for any wrong number. So the reward is 1 only when the dataset's score is 1; `partial_credit=True` passes the
dataset's score through. `metrics["dataset_score"]` always holds it.
Known scorer quirk kept as is: gsm_symbolic reads the first number in the answer, and its `\\b-?\\d` skips a leading
minus, so "-288" scores as 288.

Which datasets: only those in REVIEWED_DATASETS unless the caller names others. Some reasoning-gym scorers
`eval()` the answer in-process (string_insertion, spiral_matrix, binary_matrix, n_queens) or run sympy on it without
a timeout; model output must never be eval'd here (STYLE rule 8), so a scorer is read before it is listed.
Scoring runs in-process with no timeout, which is safe for the reviewed scorers (a string compare, a regex).

Every failure has `Score.failure` and a 1 in `metrics["failure/<name>"]` (names in `FAILURES`), so a batch mean is
a rate.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Sequence
from typing import Any

from posttrain.text import STOP_STRINGS, before_stop, extract_answers, has_non_ascii_digit
from posttrain.types import RLTask, Score

FAILURES = (
    "overlong",  # the completion is longer than max_chars
    "no_answer",  # no box, only empty boxes, and no final-answer line
    "non_ascii_digits",  # look-alike digits in an answer
    "multiple_answers",  # two answers that differ
    "score_error",  # the dataset's score_answer raised or returned something that is not a score
)
logger = logging.getLogger("posttrain.rewards.gym")
REVIEWED_DATASETS = frozenset({"basic_arithmetic", "gsm_symbolic", "simple_equations"})  # scorers read: no eval


def final_answer(completion: str, stop_strings: Sequence[str] = STOP_STRINGS) -> tuple[str | None, str | None]:
    """(answer, None) for the completion's one final answer, or (None, failure); see the module docstring."""
    answers = extract_answers(before_stop(completion, stop_strings))
    if not any(answers):
        return None, "no_answer"
    if any(has_non_ascii_digit(a) for a in answers):
        return None, "non_ascii_digits"
    if len({re.sub(r"\s+", "", a) for a in answers}) > 1:
        return None, "multiple_answers"
    return answers[-1], None


def _score(reward: float, dataset_score: float, failure: str | None) -> Score:
    metrics = {"correct": float(dataset_score == 1.0), "dataset_score": dataset_score}
    return Score(reward, metrics | {f"failure/{f}": float(f == failure) for f in FAILURES}, failure)


class ReasoningGymVerifier:
    """Reward 1 when the dataset's `score_answer` gives the final answer a full score, else 0 (module docstring)."""

    def __init__(
        self,
        datasets: Collection[str] = REVIEWED_DATASETS,
        partial_credit: bool = False,
        max_chars: int | None = None,
        stop_strings: Sequence[str] = STOP_STRINGS,
    ):
        self.datasets, self.partial_credit, self.max_chars = frozenset(datasets), partial_credit, max_chars
        self.stop_strings = tuple(stop_strings)
        self._scorers: dict[str, Callable[[str, dict], Any]] = {}

    def score(self, task: RLTask, completion: str) -> Score:
        """Check one completion against the task's Reasoning Gym entry."""
        scorer, entry = self._scorer(task), task.metadata["entry"]
        if self.max_chars is not None and len(completion) > self.max_chars:
            return _score(0.0, 0.0, "overlong")
        answer, failure = final_answer(completion, self.stop_strings)
        if answer is None:
            return _score(0.0, 0.0, failure)
        try:  # third-party scorers raise assorted exception types; each one is recorded, not hidden
            result = scorer(answer, entry)
        except Exception as err:
            logger.warning("%s score_answer raised %r on the answer %r", task.metadata["dataset"], err, answer[:80])
            return _score(0.0, 0.0, "score_error")
        if isinstance(result, bool) or not isinstance(result, int | float) or not 0.0 <= result <= 1.0:
            return _score(0.0, 0.0, "score_error")  # NaN fails the range check too
        dataset_score = float(result)
        reward = dataset_score if self.partial_credit else float(dataset_score == 1.0)
        return _score(reward, dataset_score, None)

    def score_group(self, task: RLTask, completions: Sequence[str]) -> list[Score]:
        """The GRPO group hook: every completion for one task."""
        return [self.score(task, c) for c in completions]

    def _scorer(self, task: RLTask) -> Callable[[str, dict], Any]:
        """The dataset's `score_answer`, built once per dataset; a task without a usable entry is a data bug."""
        dataset, entry = task.metadata.get("dataset"), task.metadata.get("entry")
        if not isinstance(dataset, str) or not isinstance(entry, dict) or "answer" not in entry:
            raise ValueError(f"a reasoning_gym task needs metadata 'dataset' and 'entry'; the task from {task.source}")
        if dataset not in self.datasets:
            raise ValueError(f"{dataset!r}'s score_answer is not among the reviewed ones: {sorted(self.datasets)}")
        if dataset not in self._scorers:
            import reasoning_gym  # imports every generator (about a second); only needed here

            self._scorers[dataset] = reasoning_gym.get_score_answer_fn(dataset)
        return self._scorers[dataset]
