"""`posttrain chat` in a real terminal (tmux): answers stream in, the history is kept and `/reset` clears it, `/exit`
and end of input end the session; a guard that blocks shows the refusal and says so. The same loop on plain text
streams shows the note of an answer the output guard halted."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from guards import a_guard, halting_guard

from posttrain.chat import BLOCKED_NOTE, chat_loop
from posttrain.models import load_policy
from posttrain.rollout import SamplingParams
from posttrain.safety.guarded import HALTED_NOTE, INPUT_REFUSAL, GuardedGenerator

MODEL = "tiny-random-llama"
ROOT = Path(__file__).resolve().parents[1]
GREEDY = SamplingParams(max_new_tokens=16, temperature=0.0)
CHAT = f"{sys.executable} -m posttrain chat {MODEL} --temperature 0 --max-new-tokens 16"


@pytest.fixture(scope="module")
def policy():
    model, tokenizer = load_policy(MODEL)
    return model.eval(), tokenizer


class Terminal:
    """A command in a detached tmux session on a private tmux server (its own socket), 200x50."""

    def __init__(self, command: str, rc_file: Path):
        if shutil.which("tmux") is None:
            pytest.skip("tmux is not installed (Debian/Ubuntu package `tmux`)")
        self.socket, self.rc_file = f"posttrain-test-{uuid.uuid4().hex[:8]}", rc_file
        shell = f"{command}; echo $? > {rc_file}"
        self.tmux("new-session", "-d", "-s", "chat", "-x", "200", "-y", "50", "-c", str(ROOT), shell)

    def tmux(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "chat").stdout

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "chat", "-l", text)
        self.tmux("send-keys", "-t", "chat", "Enter")

    def wait_for(self, text: str, count: int = 1, timeout: float = 60) -> str:
        """The screen once `text` shows on it `count` times."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (screen := self.screen()).count(text) >= count:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} (x{count}) never showed; the screen:\n{self.screen()}")

    def exit_code(self, timeout: float = 20) -> int:
        """The command's exit code, once its session has ended."""
        deadline = time.monotonic() + timeout
        while self.tmux("has-session", "-t", "chat").returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.tmux("has-session", "-t", "chat").returncode != 0, f"still running:\n{self.screen()}"
        return int(self.rc_file.read_text())

    def close(self) -> None:
        self.tmux("kill-server")


@pytest.fixture
def terminal(tmp_path):
    """`start(command) -> Terminal`; each one's tmux server is killed after the test."""
    started: list[Terminal] = []

    def start(command: str) -> Terminal:
        started.append(Terminal(command, tmp_path / f"rc{len(started)}"))
        return started[-1]

    yield start
    for term in started:
        term.close()


def test_chat_streams_answers_keeps_the_history_resets_and_exits(terminal, policy):
    generator = GuardedGenerator(*policy)
    kites, hi = {"role": "user", "content": "Tell me about kites."}, {"role": "user", "content": "Hi"}
    first = generator.complete([kites], GREEDY).text
    follow_up = generator.complete([kites, {"role": "assistant", "content": first}, hi], GREEDY).text
    fresh = generator.complete([hi], GREEDY).text
    assert follow_up != fresh and all(t.isascii() and "\n" not in t for t in (first, follow_up, fresh))
    term = terminal(CHAT)
    term.wait_for("you> ", timeout=90)
    term.type("Tell me about kites.")
    term.wait_for(f"assistant> {first}".rstrip())
    term.wait_for("you> ", count=2)
    term.type("Hi")
    term.wait_for(f"assistant> {follow_up}".rstrip())  # the answer saw the first exchange
    term.type("/reset")
    term.wait_for("[history cleared]")
    term.type("Hi")
    term.wait_for(f"assistant> {fresh}".rstrip())  # and after /reset it does not
    term.type("/exit")
    assert term.exit_code() == 0


def test_a_guard_that_blocks_shows_the_refusal_and_the_note(terminal, policy, tmp_path):
    a_guard(policy[0], threshold=-1.0).save(tmp_path / "guard")  # every score is above -1: everything is blocked
    term = terminal(f"{CHAT} --guard {tmp_path / 'guard'}")
    term.wait_for("you> ", timeout=90)
    term.type("Tell me about kites.")
    screen = term.wait_for(BLOCKED_NOTE)
    assert f"assistant> {INPUT_REFUSAL}\n{BLOCKED_NOTE}\nyou> " in screen
    term.tmux("send-keys", "-t", "chat", "C-d")  # end of input
    assert term.exit_code() == 0


def test_an_answer_the_output_guard_halts_ends_with_the_note(policy):
    model, tokenizer = policy
    kites = [{"role": "user", "content": "Tell me about kites."}]
    generator = GuardedGenerator(model, tokenizer, halting_guard(model, tokenizer, kites, GREEDY))
    halted = generator.complete(kites, GREEDY)
    assert halted.reason == "output_guard"
    stdout = io.StringIO()
    assert chat_loop(generator, GREEDY, io.StringIO("Tell me about kites.\n/help\n/exit\n"), stdout) == 0
    assert stdout.getvalue() == (
        f"you> assistant> {halted.text}\n{HALTED_NOTE}\n"
        "you> [unknown command /help: /reset clears the history, /exit quits]\nyou> "
    )
