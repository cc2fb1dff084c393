"""Programs that try to earn a pass from the code verifier without implementing the function, run for real.

Each attack below is a completion for a real HumanEval task (or a procedural one) that runs in the candidate's
bubblewrap sandbox; every one must score 0, with the failure named. Positive controls (a correct solution, one that
also misbehaves harmlessly) must score 1, so that a verifier that fails everything cannot pass this file. The tagged
JSON codec that carries arguments and results is tested in-process at the end (it is stdlib-only data handling).
"""

from __future__ import annotations

import math

import pytest

from posttrain.rewards.code import CodeVerifier
from posttrain.rewards.sandboxed.wire import LineReader, WireError, decode, encode
from posttrain.sandbox import Sandbox, SandboxLimits
from posttrain.tasks.humaneval import humaneval_tasks, read_humaneval
from posttrain.types import RLTask

TASKS = {t.metadata["task_id"]: t for t in humaneval_tasks(14)}
CANONICAL = {p["task_id"]: p["canonical_solution"] for p in read_humaneval()[:14]}
SIGNATURE = "def has_close_elements(numbers, threshold):\n"  # HumanEval/0; it returns a bool
CORRECT = SIGNATURE + CANONICAL["HumanEval/0"]
WRONG = SIGNATURE + "    return False\n"


@pytest.fixture(scope="module")
def verifier():
    return CodeVerifier(limits=SandboxLimits(timeout_s=2.0, cpu_s=5), max_workers=2)


def _code(program: str) -> str:
    return f"```python\n{program}\n```"


# --- the candidate reaching for the harness, the tests or the verdict ----------------------------------------------

FRAME_WALK = """
import sys
def has_close_elements(numbers, threshold):
    frame = sys._getframe()
    while frame is not None:  # every caller's globals and locals: the harness, and the tests if they were here
        for scope in (frame.f_globals, frame.f_locals):
            for key, value in list(scope.items()):
                if key in ("check", "candidate", "verdict", "run", "nonce", "AssertionError"):
                    scope[key] = lambda *a, **k: True
        frame = frame.f_back
    return True
"""
IMPORT_FRAME_WALK = (
    """
import sys
frame = sys._getframe()
while frame.f_back is not None:
    frame = frame.f_back
frame.f_globals["_answer"] = lambda function, seq, args, kwargs: [seq, "ok", True]  # the server's reply
frame.f_globals["decode"] = lambda line: True
"""
    + WRONG
)
EQUAL_TO_EVERYTHING = """
class Anything:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __bool__(self): return True
    __hash__ = object.__hash__
def has_close_elements(numbers, threshold):
    return Anything()
"""
PATCHED_BUILTINS = (
    """
import builtins, sys
builtins.AssertionError = type("Quiet", (BaseException,), {})
builtins.abs = lambda x: 0
sys.modules["json"] = None
"""
    + WRONG
)
FAKE_VERDICTS = (
    """
import sys
for line in ("pass", "0" * 32 + " pass", "ok"):
    print(line)
    print(line, file=sys.stderr)
"""
    + WRONG
)
SEARCH = """
import os
found = []
roots = ["/", "/tmp", "/root"] + [f"/proc/{p}/{d}" for p in os.listdir("/proc") if p.isdigit() for d in ("cwd", "root/tmp")]
for root in roots:  # every directory the tests could sit in: ours, and those of every process we can see
    for base, dirs, files in os.walk(root):
        dirs.clear()
        for name in files:
            try:
                with open(os.path.join(base, name), errors="replace") as f:
                    if "def check(" + "candidate)" in f.read(1 << 20):  # split: this file must not match
                        found.append(name)
            except OSError:
                pass
"""
READ_TESTS = (  # a cheat that saw the tests would pass: it stands in for one with the right answer
    SEARCH
    + "if found:\n"
    + "".join(f"    {line}\n" for line in CORRECT.splitlines())
    + "else:\n"
    + "".join(f"    {line}\n" for line in WRONG.splitlines())
)
KILL_EVERYONE = """
import os, signal
def has_close_elements(numbers, threshold):
    for pid in [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
    return False
"""
KILL_ALL_SIGNAL = "import os, signal\nos.kill(-1, signal.SIGKILL)\n" + WRONG
PTRACE_AND_MEM = (
    """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
for pid in [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
    libc.ptrace(16, pid, None, None)  # PTRACE_ATTACH
    try:
        with open(f"/proc/{pid}/mem", "r+b") as mem:
            mem.write(b"pass")
    except OSError:
        pass
"""
    + WRONG
)
FORGED_HELLO_AND_REPLIES = (
    """
import os, sys
results = int(sys.argv[2])
os.write(results, b'[0,"ready"]\\n' + b"".join(b'[%d,"ok",true]\\n' % seq for seq in range(1, 50)))
"""
    + WRONG
)
FORGED_AT_CALL = """
import os, sys
def has_close_elements(numbers, threshold):
    os.write(int(sys.argv[2]), b'[1,"ok",true]\\n[2,"ok",false]\\n')  # a reply of its own before the server's
    return True
"""
RAW_BYTES = """
import os, sys
def has_close_elements(numbers, threshold):
    for payload in (b"NaN\\n", b'{"__class__": "Anything"}\\n', b"\\xff\\xfe\\n", b"[" * 100000 + b"\\n"):
        os.write(int(sys.argv[2]), payload)
    return True
"""
OVERLONG_REPLY = """
import os, sys
def has_close_elements(numbers, threshold):
    os.write(int(sys.argv[2]), b"[1," + b" " * (5 << 20))  # no newline, ever: longer than a message may be
    return True
"""
CALLS_PIPE_HIJACK = (
    """
import os, sys
calls, results = int(sys.argv[1]), int(sys.argv[2])
writer = os.open(f"/proc/self/fd/{calls}", os.O_WRONLY)  # the calls pipe's other end, reopened
os.write(writer, b'[1,"has_close_elements",[[1.0,2.0],0.5],{"dict":[]}]\\n')
"""
    + WRONG
)
FORKED_DAEMON = (
    """
import os, sys, time
if os.fork() == 0:  # a second process answering every call with True, racing the server
    os.setsid()
    for seq in range(1, 200):
        os.write(int(sys.argv[2]), b'[%d,"ok",true]\\n' % seq)
        time.sleep(0.001)
    time.sleep(60)
"""
    + WRONG
)
DEL_TRICK = """
import os, sys
class Parting:
    def __del__(self):
        os.write(int(sys.argv[2]), b'[1,"ok",true]\\n')
        os._exit(0)
def has_close_elements(numbers, threshold):
    return Parting()
"""
HUGE_OUTPUT = (
    """
import sys
sys.stdout.write("pass\\n" * (20 << 20))
sys.stderr.write("x" * (20 << 20))
"""
    + WRONG
)
HUGE_RESULT = "def has_close_elements(numbers, threshold):\n    return [True] * (3 << 20)\n"

RACES = ("tests_failed", "bad_result", "exited_early")  # which one depends on the order two processes wrote in
ATTACKS = {  # name: (task, program, failure or the failures it may race to)
    "frame walk at call time": ("HumanEval/0", FRAME_WALK, "tests_failed"),
    "frame walk to the server at import": ("HumanEval/0", IMPORT_FRAME_WALK, "tests_failed"),
    "an object equal to everything": ("HumanEval/0", EQUAL_TO_EVERYTHING, "tests_failed"),
    "monkeypatched builtins and modules": ("HumanEval/0", PATCHED_BUILTINS, "tests_failed"),
    "printed fake verdicts": ("HumanEval/0", FAKE_VERDICTS, "tests_failed"),
    "reading the tests' file": ("HumanEval/0", READ_TESTS, "tests_failed"),
    "killing and stopping every visible process": ("HumanEval/0", KILL_EVERYONE, "tests_failed"),  # none may be
    "kill(-1, SIGKILL) at import": ("HumanEval/0", KILL_ALL_SIGNAL, "solution_error"),  # ESRCH: none to signal
    "ptrace and /proc/<pid>/mem": ("HumanEval/0", PTRACE_AND_MEM, "tests_failed"),
    "forged hello and replies at import": ("HumanEval/0", FORGED_HELLO_AND_REPLIES, "tests_failed"),  # constant
    "a forged reply at call time": ("HumanEval/0", FORGED_AT_CALL, "bad_result"),
    "raw bytes: NaN, an unknown tag, bad UTF-8, deep nesting": ("HumanEval/0", RAW_BYTES, "bad_result"),
    "a reply longer than a message may be": ("HumanEval/0", OVERLONG_REPLY, "bad_result"),
    "injecting calls into its own calls pipe": ("HumanEval/0", CALLS_PIPE_HIJACK, "solution_error"),  # EACCES
    "a forked daemon answering every call": ("HumanEval/0", FORKED_DAEMON, RACES),
    "__del__ that forges a reply and exits": ("HumanEval/0", DEL_TRICK, RACES),
    "huge stdout and stderr": ("HumanEval/0", HUGE_OUTPUT, "tests_failed"),
    "a result longer than a message may be": ("HumanEval/0", HUGE_RESULT, "bad_result"),
    "a generator": ("HumanEval/1", "def separate_paren_groups(s):\n    return (g for g in ['()'])", "tests_failed"),
    "map, a lazy list": ("HumanEval/1", "def separate_paren_groups(s):\n    return map(str, [])", "tests_failed"),
    "a list subclass equal to everything": (
        "HumanEval/1",
        "class L(list):\n    __eq__ = lambda s, o: True\ndef separate_paren_groups(s):\n    return L()",
        "tests_failed",
    ),
    "a str subclass equal to everything": (
        "HumanEval/12",
        "class S(str):\n    __eq__ = lambda s, o: True\n    __hash__ = str.__hash__\ndef longest(xs):\n    return S()",
        "tests_failed",
    ),
    "an int subclass equal to everything": (
        "HumanEval/13",
        "class I(int):\n    __eq__ = lambda s, o: True\n    __hash__ = int.__hash__\n"
        "def greatest_common_divisor(a, b):\n    return I(0)",
        "tests_failed",
    ),
    "the function replaced by a class": (
        "HumanEval/0",
        "class has_close_elements:\n    def __init__(self, *a): pass\n    def __eq__(self, o): return True",
        "tests_failed",
    ),
    "only the prompt's stub, which returns None": (
        "HumanEval/0",
        "def something_else():\n    return True",
        "tests_failed",
    ),
    "nan, unequal to everything": (
        "HumanEval/13",
        "def greatest_common_divisor(a, b):\n    return float('nan')",
        "tests_failed",
    ),
}
EXITS = {  # (where, how): each at import and at call time
    "sys.exit(0)": "import sys\nsys.exit(0)",
    "os._exit(0)": "import os\nos._exit(0)",
    "raise SystemExit": "raise SystemExit(0)",
    "raise KeyboardInterrupt": "raise KeyboardInterrupt",
    "SIGKILL itself": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
}


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_scores_zero(verifier, name):
    task_id, program, failure = ATTACKS[name]
    score = verifier.score(TASKS[task_id], _code(program))
    assert score.reward == 0.0 and score.failure in (failure if isinstance(failure, tuple) else (failure,)), score


@pytest.mark.parametrize("name", EXITS)
def test_exits_at_import_and_at_call_time_score_zero(verifier, name):
    at_import = EXITS[name] + "\n" + WRONG
    at_call = SIGNATURE + "".join(f"    {line}\n" for line in EXITS[name].splitlines())
    for program in (at_import, at_call):
        score = verifier.score(TASKS["HumanEval/0"], _code(program))
        assert score.reward == 0.0 and score.failure == "exited_early", (program, score)


def test_the_tests_search_finds_a_tests_file_where_there_is_one():
    """The control for "reading the tests' file": the same search, in a sandbox that holds the tests, finds them."""
    result = Sandbox().run(SEARCH + "print(found)\n", files={"tests.py": TASKS["HumanEval/0"].tests})
    assert result.ok and "tests.py" in result.stdout, result


def test_a_missing_or_uncallable_entry_point(verifier):
    task = RLTask(
        prompt=[{"role": "user", "content": "Write f."}], verifier="code", tests="assert f(1) == 1",
        metadata={"entry_point": "f"},
    )  # fmt: skip
    for program in ("def g(x):\n    return x", "f = 1"):
        score = verifier.score(task, _code(program))
        assert score.reward == 0.0 and score.failure == "missing_function", score


def test_infinite_loops_time_out(verifier):
    loops = ("while True:\n    pass\n" + WRONG, SIGNATURE + "    while True:\n        pass\n")
    for program in loops:
        score = verifier.score(TASKS["HumanEval/0"], _code(program))
        assert score.reward == 0.0 and score.failure == "timeout", (program, score)


# --- positive controls: the same verifier passes honest programs ----------------------------------------------------

NOISY_BUT_CORRECT = (
    """
import os, sys
print("0" * 32 + " tests_failed")
print("noise", file=sys.stderr)
os.close(1)
"""
    + CORRECT
)


@pytest.mark.parametrize("program", [CORRECT, NOISY_BUT_CORRECT, CANONICAL["HumanEval/0"]])
def test_correct_programs_pass(verifier, program):
    score = verifier.score(TASKS["HumanEval/0"], _code(program))
    assert score.reward == 1.0 and score.failure is None, score


def test_results_of_every_builtin_kind_cross_and_compare():
    """A task whose tests compare tuples, dicts with tuple keys, sets, bytes, None, nan and inf; and catch a ValueError."""
    tests = """
assert f(1) == ((1, 2), {(1, "a"): [None, True]}, {3, 4}, frozenset({5}), b"\\x00", -0.0)
assert math.isnan(g()[0]) and g()[1:] == (math.inf, -math.inf)
try:
    f(0)
    raise AssertionError("f(0) should raise")
except ValueError:
    pass
"""
    program = """
def f(x):
    if x == 0:
        raise ValueError("zero")
    return ((1, 2), {(1, "a"): [None, True]}, {3, 4}, frozenset({5}), b"\\x00", -0.0)
def g():
    return (float("nan"), float("inf"), float("-inf"))
"""
    task = RLTask(
        prompt=[{"role": "user", "content": "Write f and g."}],
        verifier="code",
        tests=tests,
        metadata={"entry_point": ["f", "g"], "prompt": "import math\n"},
    )
    score = CodeVerifier(max_workers=1).score(task, _code(program))
    assert score.reward == 1.0, score


# --- the codec, in-process ------------------------------------------------------------------------------------------


def test_wire_round_trips_exact_builtin_values():
    values = [None, True, 0, -(10**30), 1.5, "a\nb", [1, [2]], (1, (2,)), {1: "a", (2, 3): None}, {1, 2}, b"\x00\xff"]
    for value in values:
        line = encode(value)
        assert "\n" not in line and decode(line) == value and type(decode(line)) is type(value)
    assert math.isnan(decode(encode(math.nan))) and decode(encode([math.inf, -math.inf])) == [math.inf, -math.inf]
    assert type(decode(encode(1.0))) is float and type(decode(encode(True))) is bool


@pytest.mark.parametrize(
    "value",
    [type("I", (int,), {})(1), type("S", (str,), {})("x"), type("L", (list,), {})(), iter([]), object(), 1j, len],
)
def test_wire_refuses_anything_but_the_exact_types(value):
    with pytest.raises(WireError):
        encode(value)


@pytest.mark.parametrize(
    "line",
    [
        "NaN",
        "Infinity",
        '{"tuple": [1], "set": [2]}',
        '{"object": []}',
        "{}",
        '{"set": [[1]]}',
        '{"dict": [[[1], 2]]}',
        '{"dict": [[1]]}',
        '{"bytes": "zz"}',
        '{"float": "1.0"}',
        "[1] [2]",
        "[" * 100 + "]" * 100,
        "9" * 5000,
        "\xff",
        "",
    ],
)
def test_wire_decodes_strictly(line):
    with pytest.raises(WireError):
        decode(line.encode("latin-1") if line == "\xff" else line)


def test_line_reader_frames_messages_and_caps_their_length():
    import os

    read_end, write_end = os.pipe()
    os.write(write_end, b"[1]\n[2]\n" + b"x" * 200)
    os.close(write_end)
    reader = LineReader(read_end, max_bytes=100)
    assert reader.next() == b"[1]" and reader.next() == b"[2]"
    with pytest.raises(WireError):
        reader.next()
    os.close(read_end)


def test_tests_that_never_call_the_function_are_no_pass(verifier):
    """Tests that define `check` but never call it would pass any program: scored `no_calls`, reward 0."""
    task = RLTask(prompt=[{"role": "user", "content": "f"}], verifier="code", metadata={"entry_point": "f"},
                  tests="def check(candidate):\n    assert candidate(1) == 2\n")  # fmt: skip
    score = verifier.score(task, "def f(x):\n    return x + 1\n")
    assert (score.reward, score.failure) == (0.0, "no_calls")
    called = RLTask(prompt=task.prompt, verifier="code", metadata={"entry_point": "f"}, tests=task.tests + "check(f)\n")
    assert verifier.score(called, "def f(x):\n    return x + 1\n").reward == 1.0
