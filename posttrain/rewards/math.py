"""Math answer verification with `math-verify`, run in a process pool with a hard per-call timeout.

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
"not equal". Here it is switched off (timeouts None); parsing and comparing run in worker processes, and a job
still running `timeout_s` after the last job finished is recorded as "timeout": the workers are killed, jobs
not yet started are rerun in a fresh pool, so `score` returns within about `timeout_s` of its last progress
(`MathVerifier._run` has the argument). Workers are started with "spawn" (safe after CUDA and threads),
created lazily, warmed up before any clock starts, and reused; one caller at a time. As with any spawn pool,
a script that scores must keep its top-level code under `if __name__ == "__main__":`.

The DAPO overlong penalty (`soft_overlong_penalty`) is a pure function to add to the reward; `max_chars`
gives a hard cut (no credit, "overlong").
"""

from __future__ import annotations

import logging
import multiprocessing
import re
import time
import unicodedata
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from posttrain.types import RLTask, Score

STOP_STRINGS = ("<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>")
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

_BRACE = re.compile(r"\\boxed\s*\{|\{|\}")
_FINAL_LINE = re.compile(
    r"(?:\bthe\s+final\s+answer\s+is|\bthe\s+answer\s+is|\bfinal\s+answer\s*:)[ \t]*(?::[ \t]*)?([^\n]*)",
    re.IGNORECASE,
)
_MATH_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def before_stop(text: str, stop_strings: Sequence[str] = STOP_STRINGS) -> str:
    """The text before the first stop string (all of it when none occurs)."""
    cut = min((i for i in (text.find(s) for s in stop_strings) if i >= 0), default=len(text))
    return text[:cut]


def boxed_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each outermost closed `\\boxed{...}`, braces balanced, in one pass over the text."""
    spans, stack, open_boxes = [], [], 0  # stack: where the box a "{" opened starts, or -1 for a plain brace
    for match in _BRACE.finditer(text):
        if match.group() != "}":
            is_box = match.group() != "{"
            stack.append(match.start() if is_box else -1)
            open_boxes += is_box
        elif stack and (start := stack.pop()) >= 0:
            open_boxes -= 1
            if open_boxes == 0:
                spans.append((start, match.end()))
    return spans


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def boxed_contents(text: str) -> list[str]:
    """The stripped contents of every closed `\\boxed{...}`, in order."""
    return [text[text.index("{", start) + 1 : end - 1].strip() for start, end in boxed_spans(text)]


def _unwrap(answer: str) -> str:
    answer = answer.strip().rstrip(".").strip()
    for left, right in _MATH_DELIMITERS:
        if answer.startswith(left) and answer.endswith(right) and len(answer) >= len(left) + len(right):
            return answer[len(left) : len(answer) - len(right)].strip()
    return answer


def final_answer_lines(text: str) -> list[str]:
    """What follows each final-answer phrase ("The answer is X", "Final answer: X") to the end of its line."""
    return [_unwrap(m.group(1)) for m in _FINAL_LINE.finditer(text)]


def extract_answers(text: str) -> list[str]:
    """The candidate answers, in order: every box when there is one, else every final-answer line."""
    return boxed_contents(text) or final_answer_lines(text)


def has_non_ascii_digit(text: str) -> bool:
    """True for any decimal digit outside ASCII (fullwidth, Arabic-Indic, mathematical bold, ...)."""
    return any(not ch.isascii() and unicodedata.category(ch) == "Nd" for ch in text)


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


# --- in the caller -------------------------------------------------------------------------------------------


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """Kill a pool's workers: `kill_workers` from Python 3.14, the executor's process table before it."""
    if hasattr(pool, "kill_workers"):
        pool.kill_workers()
        return
    for process in list(pool._processes.values()):
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


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
        self._pool: ProcessPoolExecutor | None = None

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
        """Shut the worker pool down (a later call starts a new one)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

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
        return _unwrap(str(task.answer)), distinct

    def _run(self, jobs: dict[int, tuple[str, tuple[str, ...]]]) -> dict[int, Score]:
        """Run the jobs in the pool; a job still running `timeout_s` after the last one finished is "timeout".

        Workers take jobs in submission order, so when `timeout_s` passes with no job finishing, the first
        `max_workers` unfinished jobs are the ones stuck (each has run at least `timeout_s`) and the rest have not
        started: the workers are killed, and those are run again in a fresh pool.
        """
        pool = self._pool or self._start_pool()
        try:
            futures = {i: pool.submit(_check, *job) for i, job in jobs.items()}
        except BrokenProcessPool:  # a worker died while the pool was idle (the OOM killer, say): start afresh
            self._discard_pool()
            return self._run(jobs)
        pending = list(futures.values())
        while pending:
            done, _ = wait(pending, timeout=self.timeout_s, return_when=FIRST_COMPLETED)
            if not done:
                break
            pending = [f for f in pending if f not in done]
        stuck, unstarted = set(pending[: self.max_workers]), set(pending[self.max_workers :])
        scores = {
            i: _score(0.0, "timeout") if f in stuck else _result(f) for i, f in futures.items() if f not in unstarted
        }
        if pending or any(s.failure == "worker_crash" for s in scores.values()):
            self._discard_pool()
        retry = {i: jobs[i] for i, f in futures.items() if f in unstarted}
        return scores | (self._run(retry) if retry else {})

    def _discard_pool(self) -> None:
        if self._pool is not None:
            _kill_workers(self._pool)
            self._pool = None

    def _start_pool(self) -> ProcessPoolExecutor:
        """A spawn pool whose workers have imported math-verify, so start-up is not charged to any timeout."""
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(self.max_workers, mp_context=context, initializer=_init_worker)
        for future in [pool.submit(time.sleep, 0.1) for _ in range(self.max_workers)]:  # one per worker, mostly
            future.result(timeout=120)
        self._pool = pool
        return pool


def _result(future: Future) -> Score:
    """The worker's verdict; a dead worker breaks the pool, and every job still in it fails "worker_crash"."""
    if isinstance(future.exception(), BrokenProcessPool):
        return _score(0.0, "worker_crash")
    correct, failure = future.result()
    return _score(float(correct), failure)


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
