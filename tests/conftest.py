"""Shared fixtures: tiny random models (seconds to build), the real SmolLM2 (converted once per machine), a
headless Chromium that renders a page to a PNG, and a real OpenAI-compatible chat server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from posttrain.models import load_policy


@pytest.fixture
def posttrain_cli(capsys):
    """`posttrain_cli(*argv)` runs `posttrain ARGV` in-process through `posttrain.cli.main` (no 6 s interpreter start),
    showing what a fresh process would: INFO logs and warnings on stderr, argparse's exits as exit codes. Returns an
    object with `returncode`, `stdout` and `stderr`, like `subprocess.run(..., capture_output=True, text=True)`."""
    from types import SimpleNamespace

    from posttrain.cli import main

    def show(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    def run(*argv: str) -> SimpleNamespace:
        capsys.readouterr()
        root, handler = logging.getLogger(), logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))  # the CLI's basicConfig
        level = root.level
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        with warnings.catch_warnings():
            warnings.resetwarnings()  # Python's default filters, as in a fresh interpreter
            warnings.filterwarnings("default", category=DeprecationWarning, module="__main__", append=True)
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.filterwarnings("ignore", category=category, append=True)
            warnings.showwarning = show
            try:
                code = main([str(arg) for arg in argv])
            except SystemExit as exit_:  # argparse: --help, a bad flag
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            finally:
                root.removeHandler(handler)
                root.setLevel(level)
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return run


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) of the tiny Llama-style preset, fp32, sdpa."""
    return load_policy("tiny-random-llama")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny):
    return tiny[1]


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) of SmolLM2-135M-Instruct, converted from the pip-installed GGUF on first use."""
    model, tokenizer = load_policy("smollm2-135m-instruct")
    model.eval()
    return model, tokenizer


@pytest.fixture
def screenshot():
    """`render(html, png, width, height)`: the page in headless Chromium, as a PNG; skips without a chromium."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("no chromium binary on PATH (Debian package `chromium`; .ci/run installs it)")

    def render(html: Path, png: Path, width: int = 1280, height: int = 2400) -> Path:
        command = [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={png.parent / 'profile'}",
            f"--screenshot={png}",
            f"--window-size={width},{height}",
            html.resolve().as_uri(),
        ]
        subprocess.run(command, check=True, timeout=120, capture_output=True)
        return png

    return render


class ChatServer:
    """A real HTTP server on 127.0.0.1 speaking the chat-completions shape. `respond(body)` gives the reply text, an
    HTTP error status (int) or a raw response body (bytes); every request body is kept in `requests`."""

    def __init__(self, respond):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                answer = respond(body)
                if isinstance(answer, int):
                    self.send_response(answer)
                    self.end_headers()
                    return
                choices = {"choices": [{"message": {"content": answer}}]}
                payload = answer if isinstance(answer, bytes) else json.dumps(choices).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat_server():
    """`start(respond) -> ChatServer`; every server started is shut down after the test."""
    servers: list[ChatServer] = []

    def start(respond) -> ChatServer:
        servers.append(ChatServer(respond))
        return servers[-1]

    yield start
    for server in servers:
        server.close()
