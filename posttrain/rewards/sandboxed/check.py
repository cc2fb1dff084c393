"""The tests' sandbox: run the task's hidden tests against proxies of the candidate's functions.

Run as `main.py CALLS_FD RESULTS_FD NAME...` with `wire.py`, `prompt.py` (the task's own code: HumanEval's
signature, docstring and helper functions) and `tests.py` beside it, and a nonce on stdin. No model code runs in
this process: it runs prompt.py, binds each NAME to a proxy that sends `[seq, NAME, args, kwargs]` on CALLS_FD and
waits for the reply on RESULTS_FD, then runs tests.py. The reply is decoded strictly (`wire.decode`: builtin types
only, nothing of the sender's); a raised exception comes back as the builtin of that name when it is one of
`EXCEPTIONS` (so a test may expect a ValueError), else as `CandidateError`.

The channel breaks when the other side ends (EOF: "exited_early") or sends anything malformed, out of order or too
long ("bad_result"). The proxy then raises `ChannelBroken`, a BaseException that the tests' `except Exception`
does not catch, and the verdict is the break's reason even if the tests swallowed it. The last line of stdout is
`<nonce> <verdict>`; the host believes nothing else.
"""

import os
import sys
import traceback

sys.path.insert(0, os.getcwd())  # isolated mode (-I) leaves the script's directory off sys.path
import wire

del sys.path[0]
HELLO_FAILURES = ("syntax_error", "solution_error", "missing_function")  # what the candidate may report at start
EXCEPTIONS = {  # exception types a candidate's call may raise in the tests, by name; others are CandidateError
    error.__name__: error
    for error in (
        *(ArithmeticError, AssertionError, AttributeError, IndexError, KeyError, LookupError, NameError),
        *(NotImplementedError, OverflowError, RecursionError, RuntimeError, TypeError, ValueError, ZeroDivisionError),
    )
}


class CandidateError(Exception):
    """The candidate's function raised an exception of a type not in EXCEPTIONS."""


class ChannelBroken(BaseException):
    """The candidate's side ended or broke the protocol: no later call can be answered."""


class Channel:
    """Calls to the candidate's functions across the pipes, one at a time, with replies checked strictly."""

    def __init__(self, calls_fd: int, results_fd: int):
        self.calls_fd, self.results = calls_fd, wire.LineReader(results_fd)
        self.seq, self.broken = 0, None  # broken: the verdict once the channel is unusable

    def hello(self) -> str:
        """ "ready", or why the candidate cannot serve (a failure name)."""
        message = self._receive()
        if message == [0, "ready"]:
            return "ready"
        if type(message) is list and len(message) == 3 and message[:1] == [0] and message[1] in HELLO_FAILURES:
            return message[1]
        return self._break("bad_result")

    def call(self, name: str, args: tuple, kwargs: dict) -> object:
        """The candidate's `name(*args, **kwargs)`: its result, or its exception raised here."""
        if self.broken:
            raise ChannelBroken(self.broken)
        self.seq += 1
        try:
            wire.send(self.calls_fd, [self.seq, name, list(args), kwargs])
        except wire.WireError as error:  # the tests passed something that cannot cross: the task's bug
            self._break("test_error")
            raise ChannelBroken(f"test_error: {error}") from None
        except BrokenPipeError:
            self._break("exited_early")
        reply = self._receive()
        if type(reply) is not list or not reply or reply[0] != self.seq:
            self._break("bad_result")
        kind = reply[1] if len(reply) > 1 else None
        if kind == "ok" and len(reply) == 3:
            return reply[2]
        if kind == "raised" and len(reply) == 4 and type(reply[2]) is str and type(reply[3]) is str:
            raise EXCEPTIONS.get(reply[2], CandidateError)(f"{reply[2]}: {reply[3]}")
        if kind == "unsupported" and len(reply) == 3 and type(reply[2]) is str:
            raise CandidateError(f"{name} returned a {reply[2]}, which cannot be compared as data")
        return self._break("bad_result")

    def _receive(self) -> object:
        try:
            return wire.decode(self.results.next())
        except EOFError:
            return self._break("exited_early")
        except wire.WireError:
            return self._break("bad_result")

    def _break(self, reason: str):
        self.broken = self.broken or reason
        raise ChannelBroken(self.broken)


def proxy(channel: Channel, name: str):
    """A function that stands for the candidate's `name` in the tests."""

    def call(*args, **kwargs):
        return channel.call(name, args, kwargs)

    call.__name__ = call.__qualname__ = name
    return call


def run(channel: Channel, names: list) -> str:
    """The verdict: "pass", or the failure's name."""
    compiled = {}
    for name in ("tests", "prompt"):
        try:
            with open(name + ".py", encoding="utf-8") as f:
                compiled[name] = compile(f.read(), name + ".py", "exec")
        except (SyntaxError, ValueError):
            traceback.print_exc()
            return "test_error"
    try:
        status = channel.hello()
    except ChannelBroken:
        return channel.broken
    if status != "ready":
        return status
    namespace = {"__name__": "tests", "__builtins__": __builtins__}
    try:
        exec(compiled["prompt"], namespace)
    except BaseException:
        traceback.print_exc()
        return "test_error"
    namespace.update({name: proxy(channel, name) for name in names})
    try:
        exec(compiled["tests"], namespace)
    except BaseException:
        traceback.print_exc()
        return channel.broken or "tests_failed"
    return channel.broken or ("pass" if channel.seq else "no_calls")  # tests that never called the function: no pass


def main():
    nonce = sys.stdin.readline().strip()
    verdict = run(Channel(int(sys.argv[1]), int(sys.argv[2])), sys.argv[3:])
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(1, ("\n" + nonce + " " + verdict + "\n").encode())
    os._exit(0 if verdict == "pass" else 1)


main()
