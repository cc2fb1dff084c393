"""Scoring a mixed batch of tasks: each task goes to the verifier its `verifier` field names.

`build_verifier("math")` and friends make verifiers by name, importing their modules only when asked (the code
verifier needs bubblewrap, the reasoning-gym one its package). `ByTaskVerifier` routes each task to its own and
calls a verifier's `score_batch` (a process pool, a set of sandboxes) once for all of its tasks in the batch.

What a verifier needs is stated here, next to its name, so that it is checked before anything expensive happens:
- `REQUIRED_FIELDS`: the task fields it reads. `posttrain.data.schema` checks them when rl data is loaded, so a
  `math` task without an `answer` is a `path:line: field 'answer'` error instead of a reward of 0 on every sample.
- `check_prerequisites(names)`: what it needs from the machine (bubblewrap, the reasoning-gym package), checked
  before any model is loaded, so that a run does not fail (or score nothing) an hour in.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
from collections.abc import Iterable, Mapping, Sequence

from posttrain.rewards import Verifier, score_batch
from posttrain.types import RLTask, Score

VERIFIER_CLASSES = {
    "math": "posttrain.rewards.math:MathVerifier",
    "reasoning_gym": "posttrain.rewards.gym:ReasoningGymVerifier",
    "code": "posttrain.rewards.code:CodeVerifier",
    "code_io": "posttrain.rewards.code_io:CodeIOVerifier",
    "spec": "posttrain.rewards.spec:SpecVerifier",
    "refusal": "posttrain.rewards.refusal:ExpectationVerifier",  # the keyword judge: should refuse
    "compliance": "posttrain.rewards.refusal:ExpectationVerifier",  # ... should answer
}
# The rl-record fields each verifier reads ("a.b": key b of the object under a; metadata keys sit at the top level
# of a record). A missing, null or empty one is a data error at load time (posttrain.data.schema).
REQUIRED_FIELDS = {
    "math": ("answer",),  # MathVerifier compares with task.answer
    "reasoning_gym": ("dataset", "entry.answer"),  # ReasoningGymVerifier._scorer: metadata dataset and entry
    "code": ("tests", "entry_point"),  # CodeVerifier: the hidden tests, and the function name(s) they call
    "code_io": ("tests",),  # CodeIOVerifier: the (input, expected output) cases
    "spec": ("answer", "section"),  # SpecVerifier: "refuse" or "answer", and the spec section the request falls under
    "refusal": (),  # ExpectationVerifier reads the completion alone
    "compliance": (),
}
KNOWN_VERIFIERS = tuple(VERIFIER_CLASSES)


_SANDBOX_HELP = "see the posttrain.sandbox docstring for what bwrap needs (user namespaces, or root)"


class MissingPrerequisite(RuntimeError):
    """A verifier needs something this machine lacks; the message says what, and how to install it."""


def build_verifier(name: str) -> Verifier:
    """A verifier with default settings, by the name tasks carry in their `verifier` field."""
    if name not in VERIFIER_CLASSES:
        raise ValueError(f"unknown verifier {name!r}; known: {', '.join(VERIFIER_CLASSES)}")
    module, cls = VERIFIER_CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def check_prerequisites(verifier_names: Iterable[str]) -> None:
    """Raise MissingPrerequisite (one line: what is missing, how to install it) unless every named verifier can run."""
    problems = []
    for name in dict.fromkeys(verifier_names):  # each name once, in order
        if name not in KNOWN_VERIFIERS:
            raise ValueError(f"unknown verifier {name!r}; known: {', '.join(KNOWN_VERIFIERS)}")
        check = _PREREQUISITES.get(name)  # the others need nothing
        problem = check() if check else None
        if problem:
            problems.append(f"verifier {name!r} needs {problem}")
    if problems:
        raise MissingPrerequisite("; ".join(problems))


def _math_missing() -> str | None:
    """math-verify is a dependency of posttrain, but a hand-made environment may lack it."""
    if importlib.util.find_spec("math_verify") is None:
        return "math-verify: pip install 'math-verify>=0.7'"
    return None


def _code_missing() -> str | None:
    """bwrap on PATH, and able to start a sandbox here (user namespaces may be off, or we may be in a container)."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap is not on PATH): apt-get install bubblewrap"
    from posttrain.sandbox import Sandbox, SandboxError, SandboxLimits

    try:
        result = Sandbox(SandboxLimits(timeout_s=10.0)).run("print('ok')")
    except (SandboxError, OSError) as err:
        return f"a working bubblewrap (a trial sandbox did not start: {_first_line(str(err))}); {_SANDBOX_HELP}"
    if not result.ok or result.stdout.strip() != "ok":
        detail = _first_line(result.stderr) or f"exit code {result.exit_code}"
        return f"a working bubblewrap (a trial sandbox failed: {detail}); {_SANDBOX_HELP}"
    return None


def _reasoning_gym_missing() -> str | None:
    """`import reasoning_gym` imports every generator, so each of its dependencies must be there too."""
    try:
        import reasoning_gym  # noqa: F401
    except ImportError as err:
        why = _first_line(str(err))
        return f"the reasoning-gym package (import failed: {why}): make setup, or pip install 'posttrain[gym]'"
    return None


def _first_line(text: str) -> str:
    """The first non-blank line of `text`, so an error message stays one line."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


_PREREQUISITES = {
    "math": _math_missing,
    "code": _code_missing,
    "code_io": _code_missing,
    "reasoning_gym": _reasoning_gym_missing,
}


class ByTaskVerifier:
    """Scores each task with the verifier named by `task.verifier`; verifiers are built on first use."""

    def __init__(self, verifiers: Mapping[str, Verifier] | None = None):
        self.verifiers: dict[str, Verifier] = dict(verifiers or {})

    def _for(self, task: RLTask) -> Verifier:
        if task.verifier not in self.verifiers:
            self.verifiers[task.verifier] = build_verifier(task.verifier)
        return self.verifiers[task.verifier]

    def score(self, task: RLTask, completion: str) -> Score:
        """The score from the task's own verifier."""
        return self._for(task).score(task, completion)

    def score_batch(self, tasks: Sequence[RLTask], completions: Sequence[str]) -> list[Score]:
        """One score per (task, completion), each verifier called once for all of its tasks."""
        by_name: dict[str, list[int]] = {}
        for i, task in enumerate(tasks):
            by_name.setdefault(task.verifier, []).append(i)
        scores: list[Score | None] = [None] * len(tasks)
        for indices in by_name.values():
            verifier = self._for(tasks[indices[0]])
            results = score_batch(verifier, [tasks[i] for i in indices], [completions[i] for i in indices])
            for i, score in zip(indices, results, strict=True):
                scores[i] = score
        return scores  # type: ignore[return-value]

    def close(self) -> None:
        """Close every verifier that holds workers."""
        for verifier in self.verifiers.values():
            if hasattr(verifier, "close"):
                verifier.close()
