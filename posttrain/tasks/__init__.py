"""RL task sources: generators of `RLTask`s with fixed train / held-out splits, and evaluation-only benchmarks.

- `arithmetic`: integer arithmetic and word problems from the demo's generators, verifier "math";
- `gym`: Reasoning Gym datasets (`basic_arithmetic`, `gsm_symbolic`, `simple_equations`, ...), verifier
  "reasoning_gym" (`posttrain.rewards.gym.ReasoningGymVerifier`);
- `functions`: small Python functions over lists, strings and numbers (`function_problems` has the families), with
  hidden tests, verifier "code"; train and held-out never share a parameterisation;
- `humaneval`: HumanEval, verifier "code", for evaluation only (`assert_trainable` refuses it in training);
- `jsonl`: tasks written to JSON Lines in the `rl` schema, which `posttrain.data.load_records(path, "rl")` reads back.

Every generated math prompt is one user turn: the question, a blank line, then `ANSWER_INSTRUCTION`, because the
verifiers read the final answer from `\\boxed{}`; a code prompt asks for one python code block instead.
"""

from __future__ import annotations

from posttrain.types import Message, Messages

ANSWER_INSTRUCTION = "Put your final answer in \\boxed{}."


def boxed_prompt(question: str) -> Messages:
    """One user turn asking `question` and for the final answer in `\\boxed{}`."""
    return (Message("user", f"{question.strip()}\n\n{ANSWER_INSTRUCTION}"),)


# `posttrain tasks NAME --split S --n N --seed K --output FILE`: a generated task set written as rl-schema JSONL.
TASK_SETS = {  # name -> "module:function", each (n, split, seed) -> list[RLTask]
    "arithmetic": "posttrain.tasks.arithmetic:arithmetic_tasks",
    "functions": "posttrain.tasks.functions:function_tasks",
}


def add_arguments(parser) -> None:
    """The `posttrain tasks` flags."""
    parser.add_argument("name", choices=sorted(TASK_SETS), help="the task set")
    parser.add_argument("--split", default="train", choices=("train", "heldout"), help="which split")
    parser.add_argument("--n", type=int, default=100, help="how many tasks")
    parser.add_argument("--seed", type=int, default=0, help="picks which tasks of the split")
    parser.add_argument("--output", required=True, help="the JSONL file to write (rl schema)")


def run(args) -> int:
    """Write the chosen task set's split to `args.output`; 0 when done."""
    import importlib

    from posttrain.tasks.jsonl import write_tasks

    module, function = TASK_SETS[args.name].split(":")
    tasks = getattr(importlib.import_module(module), function)(args.n, args.split, args.seed)
    print(f"wrote {len(tasks)} {args.name} {args.split} tasks to {write_tasks(args.output, tasks)}")
    return 0
