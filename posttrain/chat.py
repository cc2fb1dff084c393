"""`posttrain chat MODEL [--guard DIR]`: talk to a model in the terminal, with the guard on its input and output.

Each line typed after `you> ` is a user turn; the answer streams after `assistant> ` as `GuardedGenerator` releases
it (token by token without a guard, `guard.every` tokens at a time with one). The conversation is kept, so each
answer sees the turns before it. `/reset` clears the history (a `--system` message stays), `/exit` or the end of
input (Ctrl-D) quits, Ctrl-C stops an answer (and quits at the prompt).

When the output guard halts an answer, the text it released stays on screen and `HALTED_NOTE` follows; when the
input guard blocks a request, the refusal is shown and `BLOCKED_NOTE` follows. A blocked exchange is left out of
the history, so later answers never continue from it.

`chat_loop` takes its input and output streams, so the loop runs on any pair of text streams; the command runs it
on the terminal, where `input()` gives line editing.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import replace
from typing import TextIO

from posttrain.rollout import SamplingParams
from posttrain.safety.guarded import HALTED_NOTE, Finish, GuardedGenerator
from posttrain.serve import load_generator

PROMPT = "you> "
ANSWER = "assistant> "
BLOCKED_NOTE = "[blocked: the input guard judged this request harmful]"
NOTES = {"input_guard": BLOCKED_NOTE, "output_guard": HALTED_NOTE}  # printed after an answer that ended this way
HELP = "/reset clears the history, /exit quits"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `chat` subcommand's arguments to `parser`."""
    parser.add_argument("model", help="an HF model directory, smollm2-135m-instruct, or a tiny-* preset")
    parser.add_argument("--guard", metavar="DIR", help="a guard directory written by `posttrain guard` (OUTPUT/guard)")
    parser.add_argument("--system", metavar="TEXT", help="a system message at the start of the conversation")
    parser.add_argument(
        "--max-new-tokens", type=int, default=256, metavar="N", help="tokens per answer at most (default: 256)"
    )
    parser.add_argument(
        "--temperature", type=float, default=0.7, metavar="T", help="0 is greedy (default: %(default)s)"
    )
    parser.add_argument(
        "--top-p", type=float, default=0.95, metavar="P", help="nucleus sampling mass (default: %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="N", help="turn t samples with seed + t (default: %(default)s)"
    )


def run(args: argparse.Namespace) -> int:
    """Load the model (and guard) and chat on the terminal; returns the exit code."""
    if args.max_new_tokens < 1 or args.temperature < 0 or not 0 < args.top_p <= 1:
        limits = "--max-new-tokens must be at least 1, --temperature at least 0 and --top-p in (0, 1]"
        print(f"posttrain chat: {limits}", file=sys.stderr)
        return 2
    generator = load_generator(args.model, args.guard)
    params = SamplingParams(args.max_new_tokens, args.temperature, args.top_p, seed=args.seed)
    guard = f"guard {args.guard}" if args.guard else "no guard"
    print(f"posttrain chat: {args.model} ({guard}); {HELP}", flush=True)
    if sys.stdin.isatty():
        with contextlib.suppress(ImportError):  # line editing and history for input(), where the platform has it
            import readline  # noqa: F401
    return chat_loop(generator, params, sys.stdin, sys.stdout, args.system)


def chat_loop(
    generator: GuardedGenerator, params: SamplingParams, stdin: TextIO, stdout: TextIO, system: str | None = None
) -> int:
    """Answer each line of `stdin` on `stdout` until `/exit` or the end of input; returns 0."""
    start = [{"role": "system", "content": system}] if system else []
    history, turn = list(start), 0
    while True:
        line = _read_line(stdin, stdout)
        if not line:  # end of input
            stdout.write("\n")
            return 0
        text = line.strip()
        if text == "/exit":
            return 0
        if text == "/reset":
            history = list(start)
            print("[history cleared]", file=stdout, flush=True)
        elif text.startswith("/"):
            print(f"[unknown command {text.split()[0]}: {HELP}]", file=stdout, flush=True)
        elif text:
            messages = [*history, {"role": "user", "content": text}]
            finish = answer(generator, messages, replace(params, seed=params.seed + turn), stdout)
            turn += 1
            if finish is not None and not finish.blocked:
                history = [*messages, {"role": "assistant", "content": finish.text}]


def answer(generator: GuardedGenerator, messages: list[dict], params: SamplingParams, stdout: TextIO) -> Finish | None:
    """Stream one answer to `stdout`, then the guard's note if it blocked; None when Ctrl-C stopped it."""
    stdout.write(ANSWER)
    stdout.flush()
    with contextlib.closing(generator.stream(messages, params)) as parts:
        try:
            for part in parts:
                if isinstance(part, Finish):
                    break
                stdout.write(part)
                stdout.flush()
        except KeyboardInterrupt:
            print("\n[interrupted]", file=stdout, flush=True)
            return None
    stdout.write("\n" + (NOTES[part.reason] + "\n" if part.reason in NOTES else ""))
    stdout.flush()
    return part


def _read_line(stdin: TextIO, stdout: TextIO) -> str:
    """The next line after the prompt, '' at the end of input (or Ctrl-C at the prompt)."""
    try:
        if stdin is sys.stdin and stdout is sys.stdout and stdin.isatty():
            return input(PROMPT) + "\n"
        stdout.write(PROMPT)
        stdout.flush()
        return stdin.readline()
    except (EOFError, KeyboardInterrupt):
        return ""
