"""Math answer verification with `math-verify`, run in a process pool with a hard per-job timeout.

`MathVerifier` takes the final answer from a completion, then asks `math_verify.parse` / `math_verify.verify`
whether it equals `task.answer` (so `\\boxed{42.0}` and `\\boxed{\\frac{84}{2}}` match "42").

What counts as the answer:
- only the text before the first stop string (`<|im_end|>`, ... configurable) is read;
- the `\\boxed{...}` contents (nested braces handled); the last one is the answer;
- with no box, the text after a final-answer phrase ("The answer is X", "The final answer is X",
  "Final answer: X") to the end of its line, a trailing "." and `$...$` removed. A bare "$42$" or a number in
  prose is not an answer ("no_answer"), so the right number hidden among many scores nothing;
- two or more *different* answers (by string, whitespace ignored, then by math-verify equivalence to the last)
  score 0 with "multiple_answers": `\\boxed{41} or \\boxed{42}` is a hedge, while `\\boxed{84/2} = \\boxed{42}`
  is not;
- digits outside ASCII (fullwidth "４２", Arabic-Indic "٤٢", mathematical bold "𝟒𝟐") are refused with
  "non_ascii_digits": nothing here NFKC-normalises them, and the model is taught to write plain digits.

Every zero from a check that did not happen has a `Score.failure` and a 1 in `metrics["failure/<name>"]`
(all names in `FAILURES`, so the mean over a batch is a rate); a checked wrong answer has failure None.

Why a process pool: sympy can run for minutes on a hostile answer (`\\boxed{9^{9^{9^{9}}}}` against 42).
math-verify's own timeout is `signal.alarm`, which fails off the main thread, and on expiry it quietly returns
"not equal". Here it is switched off (timeouts None); parsing and comparing run in worker processes, one job per
worker at a time, and a job still running `timeout_s` after it started is recorded as "timeout": its worker is
killed and replaced, and the other jobs go on. A worker that dies (the OOM killer) costs only the job it was
running ("worker_crash"). Workers are created lazily, warmed up (math-verify imported) before any clock starts,
and reused; one caller at a time.

Why not `multiprocessing`: a worker is a fresh interpreter started with `subprocess`, running `_serve` of this
module and talking over two pipes. multiprocessing's "spawn" and "forkserver" start methods re-run the caller's
`__main__` in each child: from its file when it has one, which fails when there is no file to read
(`python - < script`, where `__main__.__file__` is "<stdin>"; an editor's unsaved buffer) and re-runs every line
of a script without an `if __name__ == "__main__":` guard in every worker (loading its model, say, or starting
more workers). "fork" copies a process that may hold CUDA state and threads. A fresh interpreter imports only
this module and math-verify, whatever the caller is: a script, `python -c`, `python -`, a notebook, so no guard is
needed. The workers are shut down by `close()` (or `with`), else when the verifier is garbage-collected or the
interpreter exits (`weakref.finalize`): their pipes are closed, they return, and they are reaped.

The DAPO overlong penalty (`soft_overlong_penalty`) is a pure function to add to the reward; `max_chars`
gives a hard cut (no credit, "overlong").
"""

from __future__ import annotations

import logging
import multiprocessing
import re
import signal
import subprocess
import sys
import time
import weakref
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait

from posttrain.text import (
    STOP_STRINGS,
    before_stop,
    boxed_contents,
    boxed_spans,
    extract_answers,
    has_non_ascii_digit,
    unwrap_math,
)
from posttrain.types import RLTask, Score

FAILURES = (
    "overlong",  # the completion is longer than max_chars: no credit whatever it says
    "no_answer",  # no box, an empty box, and no final-answer line
    "non_ascii_digits",  # look-alike digits in the answer
    "multiple_answers",  # two answers that are not equivalent
    "parse_error",  # math-verify could not read the answer
    "compare_error",  # sympy raised while comparing
    "gold_parse_error",  # math-verify could not read task.answer: a data bug
    "timeout",  # parsing and comparing ran past timeout_s
    "worker_crash",  # the worker process died (out of memory, for instance)
)


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def soft_overlong_penalty(length: int, max_length: int, cache: int) -> float:
    """DAPO eq. 13: 0 up to max_length - cache, then linear down to -1 at max_length, -1 beyond."""
    if length <= max_length - cache:
        return 0.0
    if length <= max_length:
        return (max_length - cache - length) / cache
    return -1.0


def _score(reward: float, failure: str | None) -> Score:
    metrics = {"correct": reward} | {f"failure/{f}": float(f == failure) for f in FAILURES}
    return Score(reward, metrics, failure)


# --- in the worker process -------------------------------------------------------------------------------


def _parse(answer: str) -> list:
    from math_verify import LatexExtractionConfig, parse

    if not _balanced(answer):  # "41} \\boxed{42" must not close the box it is wrapped in
        return []
    return parse(f"$\\boxed{{{answer}}}$", [LatexExtractionConfig()], fallback_mode="no_fallback", parsing_timeout=None)


def _equal(gold: list, target: list) -> bool:
    from math_verify import verify

    return verify(gold, target, timeout_seconds=None, raise_on_error=True)


def _check(gold: str, answers: tuple[str, ...]) -> tuple[bool, str | None]:
    """(correct, failure) for the distinct answers, the final one last; runs in a worker."""
    want = _parse(gold)
    if not want:
        return False, "gold_parse_error"
    got = [_parse(a) for a in answers]
    if not got[-1]:
        return False, "parse_error" if len(got) == 1 else "multiple_answers"
    try:  # sympy raises assorted exception types on malformed math; the call is narrow, the failure recorded
        if any(not g or not _equal(got[-1], g) for g in got[:-1]):
            return False, "multiple_answers"
        return _equal(want, got[-1]), None
    except Exception:
        return False, "compare_error"


def _init_worker() -> None:
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its "timeout is disabled" notice is on purpose
    _parse("1")


_READY = "ready"  # a worker's first message: math-verify is imported


def _serve(inbox_fd: int, outbox_fd: int) -> None:
    """A worker's loop: `(gold, answers)` in, `_check`'s verdict out, until the caller closes its end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the caller handles it
    inbox, outbox = Connection(inbox_fd, writable=False), Connection(outbox_fd, readable=False)
    _init_worker()
    outbox.send(_READY)
    while True:
        try:
            job = inbox.recv()
        except EOFError:  # the caller closed the pool, or exited
            return
        outbox.send(_check(*job))


# --- in the caller -------------------------------------------------------------------------------------------

STARTUP_TIMEOUT_S = 120.0  # a worker imports math-verify (sympy) in about a second; a loaded machine takes longer
# argv: the two pipe ends, then the caller's sys.path (as multiprocessing passes it), so this module imports the same.
_WORKER_MAIN = (
    "import sys; sys.path[:] = sys.argv[3:]; "
    "from posttrain.rewards.math import _serve; _serve(int(sys.argv[1]), int(sys.argv[2]))"
)


class _Worker:
    """One worker process and its two pipes; it runs one job at a time (`job` is that job's key, or None)."""

    def __init__(self) -> None:
        inbox_read, self.inbox = multiprocessing.Pipe(duplex=False)
        self.outbox, outbox_write = multiprocessing.Pipe(duplex=False)
        child_fds = (inbox_read.fileno(), outbox_write.fileno())
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WORKER_MAIN, *map(str, child_fds), *sys.path],
            pass_fds=child_fds,
            stdin=subprocess.DEVNULL,
        )
        inbox_read.close()  # the worker's ends: with our copies open, its death would never read as EOF
        outbox_write.close()
        self.job: int | None = None
        self.deadline = 0.0

    def wait_ready(self) -> None:
        """Block until the worker has imported math-verify; RuntimeError if it died or hangs while starting."""
        try:
            if self.outbox.poll(STARTUP_TIMEOUT_S) and self.outbox.recv() == _READY:
                return
            problem = f"did not start within {STARTUP_TIMEOUT_S:.0f} s"
        except EOFError:
            problem = "died while starting (its traceback is on stderr)"
        self.kill()
        raise RuntimeError(f"a math-verify worker process {problem}")

    def start(self, key: int, job: tuple[str, tuple[str, ...]], timeout_s: float) -> None:
        """Send a job; OSError (a broken pipe) if the worker has died."""
        self.inbox.send(job)
        self.job, self.deadline = key, time.monotonic() + timeout_s

    def kill(self) -> None:
        """SIGKILL the worker and reap it."""
        self.process.kill()
        self._reap()

    def close(self) -> None:
        """Close its inbox, so that its loop returns; kill it if it is still busy a second later."""
        self.inbox.close()
        try:
            self.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            self.kill()
        self._reap()

    def _reap(self) -> None:
        self.process.wait()
        self.inbox.close()
        self.outbox.close()


def _close_workers(workers: list[_Worker]) -> None:
    """Close every worker (EOF first to all, so they exit together) and empty the list."""
    for worker in workers:
        worker.inbox.close()
    for worker in workers:
        worker.close()
    workers.clear()


class MathVerifier:
    """Reward 1 when the completion's final answer is math-equivalent to `task.answer`, else 0."""

    def __init__(
        self,
        timeout_s: float = 5.0,
        max_workers: int = 4,
        max_chars: int | None = None,
        stop_strings: Sequence[str] = STOP_STRINGS,
    ):
        self.timeout_s, self.max_workers, self.max_chars = timeout_s, max_workers, max_chars
        self.stop_strings = tuple(stop_strings)
        self._workers: list[_Worker] = []  # started on first use; the same list for the verifier's life
        weakref.finalize(self, _close_workers, self._workers)  # at garbage collection or interpreter exit

    def score(self, task: RLTask, completion: str) -> Score:
        """Check one completion (blocks at most about `timeout_s`)."""
        return self.score_batch([task], [completion])[0]

    def score_group(self, task: RLTask, completions: Sequence[str]) -> list[Score]:
        """The GRPO group hook: every completion for one task, checked in parallel."""
        return self.score_batch([task] * len(completions), completions)

    def score_batch(self, tasks: Sequence[RLTask], completions: Sequence[str]) -> list[Score]:
        """Check many completions at once (all go to the pool together); see `_run` for the timeout."""
        scores: list[Score | None] = []
        jobs: dict[int, tuple[str, tuple[str, ...]]] = {}
        for i, (task, completion) in enumerate(zip(tasks, completions, strict=True)):
            job = self._prepare(task, completion)
            scores.append(job if isinstance(job, Score) else None)
            if not isinstance(job, Score):
                jobs[i] = job
        if jobs:
            for i, score in self._run(jobs).items():
                scores[i] = score
        return scores  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the worker processes (a later call starts new ones)."""
        _close_workers(self._workers)

    def __enter__(self) -> MathVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _prepare(self, task: RLTask, completion: str) -> Score | tuple[str, tuple[str, ...]]:
        """The checks that need no sympy; a Score when they settle it, else the worker's arguments."""
        if task.answer is None:
            raise ValueError(f"MathVerifier needs task.answer; the task from {task.source} has none")
        if self.max_chars is not None and len(completion) > self.max_chars:
            return _score(0.0, "overlong")
        answers = extract_answers(before_stop(completion, self.stop_strings))
        if not answers or not any(answers):
            return _score(0.0, "no_answer")
        by_key = {re.sub(r"\s+", "", a): a for a in answers}  # equal up to whitespace counts once
        final = by_key.pop(re.sub(r"\s+", "", answers[-1]))
        distinct = (*by_key.values(), final)
        if any(has_non_ascii_digit(a) for a in distinct):
            return _score(0.0, "non_ascii_digits")
        return unwrap_math(str(task.answer)), distinct

    def _run(self, jobs: dict[int, tuple[str, tuple[str, ...]]]) -> dict[int, Score]:
        """Run the jobs on the workers in order; a job still running `timeout_s` after it started is "timeout"."""
        queue, scores = list(jobs.items()), {}
        try:
            while queue or any(w.job is not None for w in self._workers):
                self._dispatch(queue)
                self._collect(scores)
        finally:  # after an exception (Ctrl-C, say) a busy worker's late verdict must not answer a later job
            for worker in [w for w in self._workers if w.job is not None]:
                self._drop(worker)
        return scores

    def _dispatch(self, queue: list[tuple[int, tuple[str, tuple[str, ...]]]]) -> None:
        """Give each idle worker the next queued job, starting workers first (no clock runs while they start)."""
        if queue and len(self._workers) < self.max_workers:
            self._top_up()
        for worker in [w for w in self._workers if w.job is None]:
            if not queue:
                return
            key, job = queue.pop(0)
            try:
                worker.start(key, job, self.timeout_s)
            except OSError:  # it died while idle (the OOM killer, say): the job goes back, a new worker comes
                queue.insert(0, (key, job))
                self._drop(worker)

    def _collect(self, scores: dict[int, Score]) -> None:
        """Wait until a job finishes or the earliest deadline passes; record finished, crashed and timed-out jobs."""
        busy = [w for w in self._workers if w.job is not None]
        if not busy:
            return
        wait([w.outbox for w in busy], timeout=max(0.0, min(w.deadline for w in busy) - time.monotonic()))
        for worker in busy:
            if worker.outbox.poll():
                self._finish(worker, scores)
            elif time.monotonic() >= worker.deadline:
                scores[worker.job] = _score(0.0, "timeout")
                self._drop(worker)

    def _finish(self, worker: _Worker, scores: dict[int, Score]) -> None:
        """Record the worker's verdict; EOF instead means it died, and only its own job is lost."""
        try:
            correct, failure = worker.outbox.recv()
        except EOFError:
            scores[worker.job] = _score(0.0, "worker_crash")
            self._drop(worker)
            return
        scores[worker.job], worker.job = _score(float(correct), failure), None

    def _top_up(self) -> None:
        """Start workers up to `max_workers`, all at once, and wait until each has imported math-verify."""
        new = [_Worker() for _ in range(self.max_workers - len(self._workers))]
        self._workers.extend(new)  # listed first, so that close() reaps them even if one fails to start
        for worker in new:
            try:
                worker.wait_ready()
            except RuntimeError:
                self._workers.remove(worker)
                raise

    def _drop(self, worker: _Worker) -> None:
        """Kill a worker (stuck or dead) and forget it; `_dispatch` starts a new one when there is work."""
        worker.kill()
        self._workers.remove(worker)


class FormatVerifier:
    """Reward 1 when exactly one non-empty `\\boxed{...}` ends the completion, else 0 with the reason.

    After the box only whitespace, "." and closing math delimiters ("$", "\\]", "\\)") may follow; text after
    the first stop string is ignored. Failures: "no_answer" (no box or an empty one), "multiple_answers" (more
    than one box, even if equal), "not_at_end".
    """

    failures = ("no_answer", "multiple_answers", "not_at_end")

    def __init__(self, stop_strings: Sequence[str] = STOP_STRINGS):
        self.stop_strings = tuple(stop_strings)

    def score(self, task: RLTask, completion: str) -> Score:
        """Check the answer format (the answer itself is not checked)."""
        text = before_stop(completion, self.stop_strings)
        spans = boxed_spans(text)
        failure = None
        if len(spans) > 1:
            failure = "multiple_answers"
        elif not spans or not boxed_contents(text)[0]:
            failure = "no_answer"
        elif re.fullmatch(r"[\s.$]*(?:\\[\])][\s.]*)?", text[spans[0][1] :]) is None:
            failure = "not_at_end"
        reward = float(failure is None)
        return Score(reward, {"format": reward} | {f"failure/{f}": float(f == failure) for f in self.failures}, failure)
