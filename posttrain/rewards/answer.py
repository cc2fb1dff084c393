"""Final-answer verification for integer and decimal answers written as `\\boxed{N}`.

Only the final answer counts: the last `\\boxed{}` in the completion. A completion without one scores 0 with
the failure "no_boxed_answer", and a boxed value that is not a number scores 0 with "not_a_number"; both are
counted, never silent. Symbolic equivalence (fractions, expressions) is `posttrain.rewards.math`'s job.
"""

from __future__ import annotations

from posttrain.eval.judges import boxed_answers, parse_number
from posttrain.types import RLTask, Score


class BoxedAnswerVerifier:
    """Reward 1 when the last boxed answer equals `task.answer` numerically, else 0."""

    def score(self, task: RLTask, completion: str) -> Score:
        """Check the final boxed answer."""
        boxed = boxed_answers(completion)
        if not boxed:
            return Score(0.0, {"correct": 0.0}, failure="no_boxed_answer")
        got, want = parse_number(boxed[-1]), parse_number(str(task.answer))
        if got is None:
            return Score(0.0, {"correct": 0.0}, failure="not_a_number")
        correct = float(want is not None and got == want)
        return Score(correct, {"correct": correct})
