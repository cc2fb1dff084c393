"""The candidate's sandbox: run the model's program, then answer the tests' calls on two inherited pipes.

Run as `main.py CALLS_FD RESULTS_FD NAME...` with `wire.py` and `solution.py` beside it. It compiles and runs
`solution.py` (the task's prompt code, then the completion's), then sends one hello message on RESULTS_FD:
`[0, "ready"]`, or `[0, "syntax_error" | "solution_error" | "missing_function", detail]`. Then, for each request
`[seq, name, args, kwargs]` read from CALLS_FD, it calls the program's function `name` (one of NAME...) and answers
`[seq, "ok", result]`, `[seq, "raised", exception type name, message]` or `[seq, "unsupported", type name]` (a
result outside wire's types: a generator, an object of the program's own class). It exits at the end of CALLS_FD.

Nothing here is trusted: the program runs in this process and may rewrite any of it. The tests' side treats every
byte from RESULTS_FD as untrusted data, so this file only makes an honest program easy to serve; it guarantees
nothing. An exception that is not an `Exception` (SystemExit, KeyboardInterrupt) ends the process, which the tests'
side sees as the pipe's end. Stdout and stderr are the program's own; the protocol never uses them.
"""

import os
import sys
import traceback

sys.path.insert(0, os.getcwd())  # isolated mode (-I) leaves the script's directory off sys.path
import wire

del sys.path[0]
HELLO = 0  # the sequence number of the hello message


def _describe(error: BaseException) -> str:
    """A short message for `error`, even when its `__str__` (the program's own code) raises."""
    try:
        return str(error)[:200]
    except Exception:
        return "<unprintable>"


def _answer(function, seq: int, args: list, kwargs: dict) -> list:
    """The reply to one call: the result, or the exception the program raised."""
    try:
        return [seq, "ok", function(*args, **kwargs)]
    except Exception as error:
        return [seq, "raised", type(error).__name__, _describe(error)]


def _load(names: list, send) -> dict | None:
    """Run solution.py and return its functions `names`; on failure, send the hello that says why and None."""
    try:
        with open("solution.py", encoding="utf-8") as f:
            code = compile(f.read(), "solution.py", "exec")
    except (SyntaxError, ValueError) as error:  # ValueError: a NUL byte in the source
        send([HELLO, "syntax_error", _describe(error)])
        return None
    namespace = {"__name__": "solution", "__builtins__": __builtins__}
    try:
        exec(code, namespace)
    except Exception as error:
        traceback.print_exc()
        send([HELLO, "solution_error", f"{type(error).__name__}: {_describe(error)}"])
        return None
    missing = [name for name in names if not callable(namespace.get(name))]
    if missing:
        send([HELLO, "missing_function", ", ".join(missing)])
        return None
    return {name: namespace[name] for name in names}


def main(argv=tuple(sys.argv), exit=os._exit, send=wire.send, LineReader=wire.LineReader, decode=wire.decode):
    calls_fd, results_fd, names = int(argv[1]), int(argv[2]), list(argv[3:])

    def reply(message: list) -> None:
        send(results_fd, message)

    functions = _load(names, reply)
    if functions is None:
        exit(1)
    reply([HELLO, "ready"])
    calls = LineReader(calls_fd)
    while True:
        try:
            seq, name, args, kwargs = decode(calls.next())
        except EOFError:
            exit(0)
        answer = _answer(functions[name], seq, args, kwargs)
        try:
            reply(answer)
        except wire.WireError:  # a result the wire cannot carry: not an error of ours
            reply([seq, "unsupported", type(answer[2]).__name__])


main()
