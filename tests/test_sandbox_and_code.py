"""The bubblewrap sandbox, the code verifier and HumanEval, against real bwrap runs (no mocks).

Each sandboxed run takes tens of milliseconds; the three timeout tests take about a second each. Every escape
below is tried for real inside the sandbox and must fail: the network (even the host's own localhost), writes
outside /tmp, reads of the host's files, a fork bomb, a memory hog, a process left running. The verifier's
adversarial cases are programs that try to earn a pass without passing the tests; each must score 0 with its
failure named (tests/test_code_attacks.py has many more).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from posttrain.rewards.code import FAILURES, CodeVerifier, extract_program, python_blocks
from posttrain.sandbox import Sandbox, SandboxError, SandboxLimits, SandboxUnavailable, base_interpreter
from posttrain.tasks.humaneval import (
    BENCHMARK,
    EVAL_ONLY,
    EvalOnlyTaskError,
    assert_trainable,
    humaneval_tasks,
    read_humaneval,
)
from posttrain.types import RLTask

REPO = Path(__file__).resolve().parents[1]
PROBLEMS = {p["task_id"]: p for p in read_humaneval()}
TASKS = {t.metadata["task_id"]: t for t in humaneval_tasks()}
CANONICAL_IDS = ("HumanEval/0", "HumanEval/10", "HumanEval/32")  # 10: a helper in the prompt; 32: imports math


@pytest.fixture(scope="module")
def sandbox():
    return Sandbox(SandboxLimits(timeout_s=5.0))


@pytest.fixture(scope="module")
def quick_sandbox():
    """A 1-second wall clock, for the runs that must be cut off."""
    return Sandbox(SandboxLimits(timeout_s=1.0))


@pytest.fixture(scope="module")
def verifier():
    return CodeVerifier(max_workers=2)


def _processes_with(token: str) -> list[int]:
    """Host pids whose command line contains `token` (the sandboxed programs get it as an argument)."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if token.encode() in Path(f"/proc/{name}/cmdline").read_bytes():
                    pids.append(int(name))
            except OSError:  # the process ended while we looked
                pass
    return pids


# --- the sandbox -----------------------------------------------------------------------------------------


def test_runs_the_base_interpreter_isolated_with_files_stdin_and_args(sandbox):
    program = """
import sys
print(sys.argv[1:], sys.stdin.read(), open("data.txt").read(), sys.flags.isolated, sys.flags.no_site)
print(all("site-packages" not in p for p in sys.path), sys.executable)
for name in ("posttrain", "torch", "pip"):
    try:
        __import__(name)
        print("IMPORTED", name)
    except ImportError:
        pass
"""
    result = sandbox.run(program, files={"data.txt": "DATA"}, stdin="IN", args=["a", "b"])
    assert result.ok and not result.output_truncated, result
    assert result.stdout.splitlines() == ["['a', 'b'] IN DATA 1 1", f"True {base_interpreter()}"]


def test_an_infinite_loop_is_killed_at_the_timeout(quick_sandbox):
    start = time.monotonic()
    result = quick_sandbox.run("while True:\n    pass\n")
    elapsed = time.monotonic() - start
    assert result.timed_out and not result.ok and result.exit_code == -9
    assert 1.0 <= result.duration_s < 1.5 and elapsed < 3.0, (result, elapsed)


def test_no_network_not_even_the_hosts_localhost(sandbox):
    server = socket.create_server(("127.0.0.1", 0))  # listening on the host: reachable from the host only
    port = server.getsockname()[1]
    program = f"""
import socket
print(socket.if_nameindex())
for address in (("127.0.0.1", {port}), ("192.0.2.1", 80)):
    try:
        socket.create_connection(address, timeout=2)
        print("CONNECTED", address)
    except OSError as error:
        print(error.errno)
try:
    socket.getaddrinfo("pypi.org", 443)
    print("RESOLVED")
except OSError:
    print("no dns")
"""
    with server:
        result = sandbox.run(program)
    # only loopback; the host's listener refuses (ECONNREFUSED 111: a loopback of the sandbox's own);
    # anything else is unreachable (ENETUNREACH 101)
    assert result.stdout.splitlines() == ["[(1, 'lo')]", "111", "101", "no dns"], result


def test_only_tmp_is_writable_and_file_and_disk_sizes_are_capped(sandbox):
    stdlib = os.path.dirname(os.__file__)
    program = f"""
import os
for path in ("/x", "/usr/lib/x", "/root/x", "/etc/x", "/proc/sys/kernel/hostname", {stdlib + "/x"!r}, "main.py"):
    try:
        open(path, "a").write("x")
        print("WROTE", path)
    except OSError as error:
        print(error.errno)
open("/tmp/ok", "w").write("ok")
print(open("/tmp/ok").read())
try:
    open("big", "wb").write(b"x" * (17 << 20))  # over file_bytes (16 MiB)
except OSError as error:
    print(error.errno)
try:
    for i in range(6):  # 6 * 15 MiB > disk_bytes (64 MiB)
        open(f"part{{i}}", "wb").write(b"x" * (15 << 20))
except OSError as error:
    print(error.errno)
"""
    result = sandbox.run(program)
    errors = result.stdout.split()
    assert "WROTE" not in result.stdout, result
    assert set(errors[:7]) <= {"2", "13", "30"}, result  # ENOENT, EACCES, EROFS
    assert errors[7:] == ["ok", "27", "28"], result  # EFBIG, ENOSPC


def test_host_files_are_invisible(sandbox, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    paths = [str(secret), str(REPO / "README.md"), str(REPO / ".venv"), "/etc/passwd", "/root/.bashrc", "/home"]
    program = f"""
import os
for path in {paths!r}:
    print(os.path.exists(path))
print(" ".join(os.listdir("/")))
"""
    result = sandbox.run(program)
    lines = result.stdout.splitlines()
    assert lines[:-1] == ["False"] * len(paths), result
    assert set(lines[-1].split()) <= {"dev", "lib", "lib32", "lib64", "libx32", "proc", "root", "tmp", "usr"}, result


def test_a_fork_bomb_is_contained_and_nothing_outlives_the_sandbox(quick_sandbox):
    bounded = """
import os, time
for n in range(100):
    try:
        if os.fork() == 0:
            time.sleep(3)
            os._exit(0)
    except OSError:
        break
print(n)
"""
    result = quick_sandbox.run(bounded)
    assert result.ok and int(result.stdout) < 16, result  # RLIMIT_NPROC: processes=16, the program included
    token = f"bomb-{os.getpid()}-{time.monotonic_ns()}"
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    start = time.monotonic()
    result = quick_sandbox.run(bomb, args=[token])
    assert result.timed_out and time.monotonic() - start < 4.0, result
    assert _processes_with(token) == []


def test_a_daemon_left_behind_dies_with_the_sandbox(sandbox):
    token = f"daemon-{os.getpid()}-{time.monotonic_ns()}"
    program = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for fd in (0, 1, 2):
            os.close(fd)
        time.sleep(60)
    os._exit(0)
print("parent done")
"""
    start = time.monotonic()
    result = sandbox.run(program, args=[token])
    assert result.ok and result.stdout == "parent done\n" and time.monotonic() - start < 3.0, result
    assert _processes_with(token) == []


def test_a_memory_hog_gets_a_memory_error():
    small = Sandbox(SandboxLimits(memory_bytes=128 << 20))  # a smaller cap than the default: less to fill
    result = small.run("hog = []\nwhile True:\n    hog.append(bytearray(16 << 20))\n")
    assert not result.timed_out and result.exit_code == 1 and "MemoryError" in result.stderr, result
    assert result.duration_s < 3.0


def test_output_is_capped_keeping_head_and_tail():
    capped = Sandbox(SandboxLimits(output_bytes=1000))
    result = capped.run("print('HEAD'); print('x' * 10**6); print('TAIL')")
    assert result.ok and result.output_truncated, result
    assert result.stdout.startswith("HEAD") and result.stdout.endswith("TAIL\n") and len(result.stdout) < 1100
    assert "bytes dropped" in result.stdout


def test_passed_fds_are_the_programs_channel_and_are_closed_in_the_host(sandbox):
    read_end, write_end = os.pipe()
    result = sandbox.run("import os, sys\nos.write(int(sys.argv[1]), b'over the pipe')\n", args=[str(write_end)],
                         pass_fds=[write_end])  # fmt: skip
    assert result.ok, result
    with pytest.raises(OSError):  # handed over: the host's copy is closed
        os.fstat(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        assert pipe.read() == b"over the pipe"  # EOF: the sandbox's copy died with it


def test_the_stop_fd_ends_a_run_early_and_not_as_a_timeout(sandbox):
    """Stopped while running (1 s in), with its output open and with it closed (then the run waits on bwrap)."""
    programs = ("import time\ntime.sleep(30)\n", "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(30)\n")
    for program in programs:
        stop_read, stop_write = os.pipe()
        timer = threading.Timer(1.0, os.write, (stop_write, b"x"))
        timer.start()
        try:
            start = time.monotonic()
            result = sandbox.run(program, stop_fd=stop_read)
            elapsed = time.monotonic() - start
        finally:
            timer.join()
            os.close(stop_read)
            os.close(stop_write)
        assert not result.timed_out and result.exit_code == -9 and 0.9 < elapsed < 3.0, (program, result)


def test_without_bwrap_nothing_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no bwrap on the PATH
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        Sandbox()


def test_a_sandbox_that_cannot_start_raises_instead_of_failing_the_program():
    with pytest.raises(SandboxError, match="did not start"):
        Sandbox(python="/nonexistent/bin/python3").run("print(1)")


# --- the code verifier -----------------------------------------------------------------------------------


@pytest.mark.parametrize("task_id", CANONICAL_IDS)
def test_canonical_humaneval_solutions_pass(verifier, task_id):
    task, problem = TASKS[task_id], PROBLEMS[task_id]
    body_only = problem["canonical_solution"]
    whole = f"Here it is:\n```python\n{problem['prompt']}{body_only}```\nDone.<|im_end|>```python\nbroken(\n```"
    for completion in (body_only, whole):
        score = verifier.score(task, completion)
        assert score.reward == 1.0 and score.failure is None, (task_id, score)
        assert score.metrics["correct"] == 1.0 and not any(score.metrics[f"failure/{f}"] for f in FAILURES)


def test_a_sample_of_canonical_humaneval_solutions_pass(verifier):
    """Every 8th of the 164 problems (all 164 pass too, in about 12 s on 2 cores: see docs/benchmarks.md)."""
    ids = sorted(TASKS, key=lambda task_id: int(task_id.split("/")[1]))[::8]
    scores = verifier.score_batch([TASKS[i] for i in ids], [PROBLEMS[i]["canonical_solution"] for i in ids])
    assert len(ids) == 21 and [score.failure for score in scores] == [None] * len(ids), list(
        zip(ids, scores, strict=True)
    )


def test_a_wrong_solution_fails_its_tests(verifier):
    score = verifier.score(
        TASKS["HumanEval/0"], "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```"
    )
    assert score.reward == 0.0 and score.failure == "tests_failed" and score.metrics["failure/tests_failed"] == 1.0


WRONG = "def has_close_elements(numbers, threshold):\n    return False\n"
PEEK = """
for path in ("/proc/1/fd/0", "/proc/self/fd/0", "main.py"):  # where the nonce came from, and the harness
    try:
        print(open(path).read().strip() + " pass")
    except OSError:
        pass
"""
FAKES = [  # (program, failure): each tries to pass HumanEval/0 without a correct solution
    ("import sys\nsys.exit(0)\n" + WRONG, "exited_early"),
    ("import os\nos._exit(0)\n" + WRONG, "exited_early"),
    ("raise SystemExit(0)\n", "exited_early"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", "exited_early"),
    ("import sys\ndef has_close_elements(numbers, threshold):\n    sys.exit(0)\n", "exited_early"),
    ("import os\ndef has_close_elements(numbers, threshold):\n    os._exit(0)\n", "exited_early"),
    ("import os\nos.close(1)\n" + WRONG, "tests_failed"),  # stdout is not the protocol: closing it changes nothing
    ("import atexit, os\natexit.register(os._exit, 0)\n" + WRONG, "tests_failed"),
    ("import builtins\nbuiltins.exec = lambda *a, **k: None\n" + WRONG, "tests_failed"),
    ("import os\nos._exit = lambda code: None\nos.write = lambda fd, b: len(b)\n" + WRONG, "tests_failed"),
    ("import sys\nsys.stdin.seek(0)\nprint(sys.stdin.read() + ' pass')\n" + WRONG, "solution_error"),
    ("print('pass')\nprint('0' * 32 + ' pass')\n" + WRONG, "tests_failed"),
    (PEEK + WRONG, "tests_failed"),
]


@pytest.mark.parametrize(("program", "failure"), FAKES)
def test_a_pass_cannot_be_faked(verifier, program, failure):
    score = verifier.score(TASKS["HumanEval/0"], f"```python\n{program}```")
    assert score.reward == 0.0 and score.failure == failure, score


def test_failures_are_named_never_silent_zeros():
    verifier = CodeVerifier(limits=SandboxLimits(timeout_s=1.0, cpu_s=5))
    task = RLTask(
        prompt=[{"role": "user", "content": "Write f."}],
        verifier="code",
        tests="assert f(2) == 4",
        metadata={"entry_point": "f"},
    )
    cases = [
        ("", "no_code"),
        ("Sure!\n```python\n```", "no_code"),
        ("def f(x) return x * 2", "syntax_error"),
        ("```python\nimport numpy\ndef f(x):\n    return x * 2\n```", "solution_error"),  # no site-packages
        ("```python\ndef f(x):\n    return x + 3\n```", "tests_failed"),
        ("```python\ndef f(x):\n    return x['key']\n```", "tests_failed"),
        ("```python\ndef f(x):\n    while True:\n        pass\n```", "timeout"),
        ("```python\ndef f(x):\n    return x * 2\n```", None),
    ]
    broken = RLTask(prompt=task.prompt, verifier="code", tests="assert f(2) ==", metadata=task.metadata)
    tasks = [task] * len(cases) + [broken]
    cases.append(("```python\ndef f(x):\n    return x * 2\n```", "test_error"))
    scores = verifier.score_batch(tasks, [completion for completion, _ in cases])
    for (completion, failure), score in zip(cases, scores, strict=True):
        assert score.failure == failure and score.reward == float(failure is None), (completion, score)
        assert set(score.metrics) == {"correct", "sandbox_s"} | {f"failure/{f}" for f in FAILURES}
        assert sum(score.metrics[f"failure/{f}"] for f in FAILURES) == float(failure is not None)


def test_the_program_is_the_last_python_block_before_the_stop_string():
    text = "```bash\nls\n```\n```python\nA = 1\n```\n```\nB = 2\n```\n```text\nnot code\n```"
    assert python_blocks(text) == ["A = 1", "B = 2"]
    assert extract_program(text) == "B = 2"
    assert extract_program("```py\nC = 3\n```<|im_end|>```python\nD = 4\n```") == "C = 3"
    assert extract_program("```python\ndef f():\n    return 1") == "def f():\n    return 1"  # unclosed
    assert extract_program("x = 1\n") == "x = 1\n"


# --- HumanEval -------------------------------------------------------------------------------------------


def test_humaneval_tasks_are_code_tasks_for_evaluation_only():
    assert len(TASKS) == 164
    task = TASKS["HumanEval/0"]
    assert task.verifier == "code" and task.tests.rstrip().endswith("check(has_close_elements)")
    assert task.metadata["entry_point"] == "has_close_elements"
    assert task.metadata["prompt"] == PROBLEMS["HumanEval/0"]["prompt"]
    assert task.metadata["split"] == EVAL_ONLY and task.metadata["benchmark"] == BENCHMARK
    assert PROBLEMS["HumanEval/0"]["prompt"].strip() in task.prompt[0].content
    train = RLTask(
        prompt=[{"role": "user", "content": "2+2?"}], verifier="math", answer="4", metadata={"split": "train"}
    )
    assert_trainable([train])
    with pytest.raises(EvalOnlyTaskError, match=r"HumanEval.*HumanEval/3"):
        assert_trainable([train, TASKS["HumanEval/3"]])
