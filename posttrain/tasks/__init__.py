"""RL task sources: generators of `RLTask`s with fixed train / held-out splits, and evaluation-only benchmarks.

- `arithmetic`: integer arithmetic and word problems from the demo's generators, verifier "math";
- `gym`: Reasoning Gym datasets (`basic_arithmetic`, `gsm_symbolic`, `simple_equations`, ...), verifier
  "reasoning_gym" (`posttrain.rewards.gym.ReasoningGymVerifier`);
- `jsonl`: tasks written to JSON Lines in the `rl` schema, which `posttrain.data.load_records(path, "rl")` reads back.

Every generated prompt is one user turn: the question, a blank line, then `ANSWER_INSTRUCTION`, because the
verifiers read the final answer from `\\boxed{}`.
"""

from __future__ import annotations

from posttrain.types import Message, Messages

ANSWER_INSTRUCTION = "Put your final answer in \\boxed{}."


def boxed_prompt(question: str) -> Messages:
    """One user turn asking `question` and for the final answer in `\\boxed{}`."""
    return (Message("user", f"{question.strip()}\n\n{ANSWER_INSTRUCTION}"),)
