"""`posttrain serve MODEL [--guard DIR] [--port N]`: an OpenAI-compatible chat endpoint on localhost, guarded.

Standard library only (`http.server.ThreadingHTTPServer`), one model, one generation at a time:
- `POST /v1/chat/completions`: `messages` (required; roles system/user/assistant, string content), `model`
  (optional, echoed), `max_tokens` (or `max_completion_tokens`), `temperature`, `top_p`, `seed`, `stream`,
  `stream_options.include_usage`. Without `stream` the answer is one `chat.completion` with token usage; with it,
  Server-Sent Events: `data: {chat.completion.chunk}` lines, then `data: [DONE]`.
- `GET /v1/models` (the one model) and `GET /health`.

Every answer comes from `GuardedGenerator`, the one generation path of `chat`, `serve` and the guarded evaluation.
When the input guard blocks the request, or the output guard halts the answer, `finish_reason` is OpenAI's
`content_filter` and the content is what the guard released: the refusal, or the text before the halting check.

Where it departs from OpenAI's API:
- without `seed`, each request draws a fresh one (as OpenAI's sampling is not reproducible without one);
- `max_tokens` is clipped to the model's context (the answer then ends with `length`) instead of refused;
- `n` above 1, `stop` and `tools` are refused with 400 rather than ignored; other unknown fields are ignored.

Robustness, each covered by a test:
- a malformed request gets 400 (404 unknown path, 405 wrong method) with an OpenAI-style error naming the field;
- a body over `--max-request-bytes` gets 413 from its Content-Length, before the body is read;
- requests wait on a lock for the model, so concurrent clients queue and each gets its own answer;
- a client that disconnects mid-stream stops its generation at the next write, and the lock is released;
- SIGTERM (or Ctrl-C) stops the server cleanly, with exit code 0.

It has no authentication and no batching: it is for one user on localhost, not for production traffic.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import secrets
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from safetensors import SafetensorError

from posttrain.models import load_policy
from posttrain.render import render_prompt
from posttrain.rollout import SamplingParams
from posttrain.safety.guard import Guard, load_guard
from posttrain.safety.guarded import Finish, GuardedGenerator

log = logging.getLogger("posttrain.serve")
ROLES = ("system", "user", "assistant")
FINISH_REASONS = {"stop": "stop", "length": "length", "input_guard": "content_filter", "output_guard": "content_filter"}
ROUTES = {"/v1/chat/completions": "POST", "/v1/models": "GET", "/health": "GET"}
ONLY = {"n": (None, 1), "stop": (None,), "tools": (None,)}  # other values are refused, since they would be ignored
LINGER_SECONDS = 2.0  # after a 413, how long the unread body is drained so the client can read the response


class RequestError(Exception):
    """A request the server refuses: the HTTP status and the OpenAI-style error (message, the field at fault)."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class ChatRequest:
    """A checked `/v1/chat/completions` request."""

    messages: tuple[dict, ...]
    params: SamplingParams
    model: str | None = None
    stream: bool = False
    include_usage: bool = False


def parse_chat_request(body: bytes, default_max_tokens: int) -> ChatRequest:
    """The request in `body`, or a `RequestError` (400) naming the first field at fault."""
    try:
        fields = json.loads(body)
    except ValueError as err:  # bad JSON or bad UTF-8
        raise RequestError(400, f"the request body is not valid JSON: {err}", code="invalid_json") from None
    if not isinstance(fields, dict):
        raise RequestError(400, "the request body must be a JSON object")
    for name, allowed in ONLY.items():
        if fields.get(name) not in allowed:
            message = f"'{name}' other than {json.dumps(allowed[-1])} is not supported by posttrain serve"
            raise RequestError(400, message, name, "unsupported_parameter")
    messages = _messages(fields)
    max_tokens_key = "max_completion_tokens" if "max_completion_tokens" in fields else "max_tokens"
    max_tokens = _field(fields, max_tokens_key, int, "an integer of at least 1", default_max_tokens, lambda v: v >= 1)
    temperature = _field(fields, "temperature", float, "a number from 0 to 2", 1.0, lambda v: 0 <= v <= 2)
    top_p = _field(fields, "top_p", float, "a number above 0 and at most 1", 1.0, lambda v: 0 < v <= 1)
    seed = _field(fields, "seed", int, "an integer from 0 to 2**63 - 1", None, lambda v: 0 <= v < 2**63)
    if seed is None:
        seed = secrets.randbits(31)
    stream_options = _field(fields, "stream_options", dict, "an object", {})
    return ChatRequest(
        messages=messages,
        params=SamplingParams(max_new_tokens=max_tokens, temperature=float(temperature), top_p=float(top_p), seed=seed),
        model=_field(fields, "model", str, "a string", None),
        stream=_field(fields, "stream", bool, "true or false", False),
        include_usage=_field(stream_options, "include_usage", bool, "true or false", False, prefix="stream_options."),
    )


def _field(fields: dict, name: str, kind: type, expected: str, default, check=lambda v: True, prefix: str = ""):
    """`fields[name]` if it is a `kind` (an int counts as a float, a bool as neither) that passes `check`; `default`
    if it is absent or null."""
    value = fields.get(name)
    if value is None:
        return default
    kinds = (int, float) if kind is float else kind
    if not isinstance(value, kinds) or (isinstance(value, bool) and kind is not bool) or not check(value):
        raise RequestError(400, f"'{prefix}{name}' must be {expected}, got {json.dumps(value)[:80]}", prefix + name)
    return value


def _messages(fields: dict) -> tuple[dict, ...]:
    """The conversation: a non-empty list of {role, content} with a known role and string content."""
    messages = fields.get("messages")
    if "messages" not in fields:
        raise RequestError(400, "'messages' is required", "messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty list of {role, content} objects", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RequestError(400, f"'messages[{i}]' must be an object with role and content", f"messages[{i}]")
        if message.get("role") not in ROLES:
            got = json.dumps(message.get("role"))[:40]
            raise RequestError(400, f"'messages[{i}].role' must be one of {ROLES}, got {got}", f"messages[{i}].role")
        if not isinstance(message.get("content"), str):
            raise RequestError(400, f"'messages[{i}].content' must be a string", f"messages[{i}].content")
    return tuple({"role": m["role"], "content": m["content"]} for m in messages)


def load_generator(model_spec: str, guard_dir: str | None) -> GuardedGenerator:
    """The model (and guard) behind `chat` and `serve`; a bad guard directory is an error before the model loads."""
    guard = _load_guard(Path(guard_dir)) if guard_dir else None
    model, tokenizer = load_policy(model_spec)
    if guard is not None:
        width, expected = guard.probe.weight.numel(), len(guard.layers) * model.config.hidden_size
        if max(guard.layers) > model.config.num_hidden_layers or width != expected:
            raise ValueError(
                f"--guard {guard_dir}: this guard reads layers {list(guard.layers)} ({width} features), "
                f"which {model_spec} does not have: was it trained on another model?"
            )
    return GuardedGenerator(model, tokenizer, guard)


def _load_guard(path: Path) -> Guard:
    """`load_guard(path)` with errors that say what a guard directory is."""
    needed = ("probe.safetensors", "guard.json")
    if not path.is_dir():
        raise FileNotFoundError(f"--guard {path}: no such directory")
    if not all((path / name).is_file() for name in needed):
        hint = f" (did you mean {path / 'guard'}?)" if (path / "guard" / "guard.json").is_file() else ""
        needs = " and ".join(needed)
        raise FileNotFoundError(
            f"--guard {path}: not a guard directory: it needs {needs}, as `posttrain guard` writes them{hint}"
        )
    try:
        return load_guard(path)
    except (ValueError, KeyError, TypeError, SafetensorError) as err:
        raise ValueError(f"--guard {path}: unreadable guard: {err!r}") from None


class ChatService:
    """The model behind the endpoint. `stream` holds the lock from its first item until it is exhausted or closed,
    so one generation runs at a time and an abandoned stream frees the model as soon as it is closed."""

    def __init__(self, generator: GuardedGenerator, name: str, default_max_tokens: int):
        self.generator, self.name, self.default_max_tokens = generator, name, default_max_tokens
        self.context = getattr(generator.model.config, "max_position_embeddings", None)
        self.lock = threading.Lock()

    def stream(self, request: ChatRequest) -> Iterator[str | Finish]:
        """Text pieces, then the `Finish`; a conversation longer than the model's context is a `RequestError`."""
        with self.lock:
            params = request.params
            if self.context is not None:
                length = len(render_prompt(self.generator.tokenizer, request.messages))
                if length >= self.context:
                    message = f"the conversation is {length} tokens; the model's context is {self.context}"
                    raise RequestError(400, message, "messages", "context_length_exceeded")
                params = replace(params, max_new_tokens=min(params.max_new_tokens, self.context - length))
            yield from self.generator.stream(request.messages, params)


def make_server(service: ChatService, host: str = "127.0.0.1", port: int = 0, max_request_bytes: int = 1 << 20):
    """A `ThreadingHTTPServer` answering for `service` (not yet serving: call `serve_forever`)."""
    server = ThreadingHTTPServer((host, port), _Handler)
    server.service, server.max_request_bytes = service, max_request_bytes
    return server


class _Handler(BaseHTTPRequestHandler):
    """One request: route it, answer it, log one line for it. The service and the size limit are the server's."""

    server_version = "posttrain-serve"
    timeout = 60  # seconds a socket read or write may block: a client that stops sending its body is dropped

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        started, self.status, self.note, self.streaming = time.perf_counter(), 0, "", False
        path = urlsplit(self.path).path
        try:
            if path not in ROUTES:
                raise RequestError(404, f"unknown path {method} {path}", code="unknown_url")
            if ROUTES[path] != method:
                raise RequestError(405, f"{path} takes {ROUTES[path]}, not {method}", code="method_not_allowed")
            {"/v1/chat/completions": self._chat, "/v1/models": self._models, "/health": self._health}[path]()
        except RequestError as err:
            self._send_error(err)
        except (BrokenPipeError, ConnectionResetError):
            self.note = "client disconnected before the answer was sent "
        except Exception as err:  # a bug or a model failure: answered 500 (an error event mid-stream) and logged
            log.exception("%s %s failed", method, path)
            error = RequestError(500, f"internal error: {err!r}")
            if not self.streaming:
                self._send_error(error)
            else:  # the status line is long gone: the error becomes the stream's last event
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._event(error.body())
        seconds = time.perf_counter() - started
        log.info('%s "%s %s" %s %s%.2fs', self.client_address[0], method, path, self.status, self.note, seconds)

    def _chat(self) -> None:
        request = parse_chat_request(self._read_body(), self.server.service.default_max_tokens)
        with contextlib.closing(self.server.service.stream(request)) as parts:
            first = next(parts)  # waits for the model; a too-long conversation is still a plain 400 here
            if request.stream:
                self._send_stream(request, itertools.chain([first], parts))
            else:
                *_, finish = itertools.chain([first], parts)
                self.note = _summary(finish)
                self._send_json(200, _completion(self._id(), self._model(request), finish))

    def _send_stream(self, request: ChatRequest, parts: Iterator[str | Finish]) -> None:
        """Server-Sent Events; a client gone mid-stream ends the generation (the caller closes `parts`)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.streaming = True
        chunk_id, model, sent = self._id(), self._model(request), 0
        try:
            self._event(_chunk(chunk_id, model, {"role": "assistant", "content": ""}))
            for part in parts:
                if isinstance(part, Finish):
                    self._event(_chunk(chunk_id, model, {}, FINISH_REASONS[part.reason]))
                    if request.include_usage:
                        self._event({**_chunk(chunk_id, model, None), "choices": [], "usage": _usage(part)})
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.note = _summary(part)
                    return
                self._event(_chunk(chunk_id, model, {"content": part}))
                sent += 1
        except (BrokenPipeError, ConnectionResetError):
            self.note = f"client disconnected after {sent} pieces; generation stopped "

    def _models(self) -> None:
        model = {"id": self.server.service.name, "object": "model", "created": 0, "owned_by": "posttrain"}
        self._send_json(200, {"object": "list", "data": [model]})

    def _health(self) -> None:
        self._send_json(200, {"status": "ok"})

    def _read_body(self) -> bytes:
        """The request body, refused (413) from its Content-Length alone when it is over the limit."""
        if self.headers.get("Content-Length") is None:
            raise RequestError(411, "a Content-Length header is required", code="length_required")
        try:
            length = int(self.headers["Content-Length"])
        except ValueError:
            length = -1
        if length < 0:
            raise RequestError(400, "the Content-Length header is not a byte count", code="invalid_content_length")
        if length > self.server.max_request_bytes:
            limit = f"this server takes at most {self.server.max_request_bytes} (--max-request-bytes)"
            raise RequestError(413, f"the request body is {length} bytes; {limit}", code="request_too_large")
        try:
            return self.rfile.read(length)
        except TimeoutError:
            raise RequestError(408, f"the request body did not arrive within {self.timeout} s") from None

    def _send_error(self, err: RequestError) -> None:
        headers = {"Allow": ROUTES[urlsplit(self.path).path]} if err.status == 405 else {}
        self.note = f"{err.message} "
        try:
            self._send_json(err.status, err.body(), headers)
        except (BrokenPipeError, ConnectionResetError):
            return
        if err.status == 413:  # the body was never read
            self._linger()

    def _linger(self) -> None:
        """Drain (and drop) the unread body for a moment: closing a socket with unread data sends a reset, which
        can destroy the 413 before the client has read it."""
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_WR)
        self.connection.settimeout(LINGER_SECONDS)
        deadline = time.monotonic() + LINGER_SECONDS
        try:
            while time.monotonic() < deadline and self.connection.recv(1 << 16):
                pass
        except OSError:  # the timeout, or the client's reset
            pass

    def _send_json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _event(self, payload: dict) -> None:
        self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _id(self) -> str:
        return f"chatcmpl-{uuid.uuid4().hex[:24]}"

    def _model(self, request: ChatRequest) -> str:
        return request.model or self.server.service.name

    def log_request(self, code="-", size="-"):  # the status is logged once, with the request's summary
        self.status = code

    def log_message(self, format, *args):  # http.server's own errors (a bad request line)
        log.warning("%s %s", self.client_address[0], format % args)


def _chunk(chunk_id: str, model: str, delta: dict | None, finish_reason: str | None = None) -> dict:
    """One `chat.completion.chunk`."""
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    head = {"id": chunk_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    return {**head, "choices": [choice]}


def _completion(completion_id: str, model: str, finish: Finish) -> dict:
    """The non-streaming `chat.completion`."""
    message = {"role": "assistant", "content": finish.text}
    choice = {"index": 0, "message": message, "finish_reason": FINISH_REASONS[finish.reason]}
    head = {"id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model}
    return {**head, "choices": [choice], "usage": _usage(finish)}


def _usage(finish: Finish) -> dict:
    total = finish.prompt_tokens + finish.completion_tokens
    return {"prompt_tokens": finish.prompt_tokens, "completion_tokens": finish.completion_tokens, "total_tokens": total}


def _summary(finish: Finish) -> str:
    return f"{finish.reason} {finish.prompt_tokens}+{finish.completion_tokens} tokens "


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `serve` subcommand's arguments to `parser`."""
    parser.add_argument("model", help="an HF model directory, smollm2-135m-instruct, or a tiny-* preset")
    parser.add_argument("--guard", metavar="DIR", help="a guard directory written by `posttrain guard` (OUTPUT/guard)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=_int_in(0, 65535), default=8000, metavar="N", help="0: any free port (default: 8000)"
    )
    parser.add_argument(
        "--max-request-bytes",
        type=_int_in(1, 1 << 30),
        default=1 << 20,
        metavar="N",
        help="larger bodies get 413 (default: 1 MiB)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=_int_in(1, 1 << 20),
        default=256,
        metavar="N",
        help="max_tokens when a request gives none (default: 256)",
    )


def _int_in(low: int, high: int):
    def parse(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {text!r}")
        return int(text)

    return parse


def run(args: argparse.Namespace) -> int:
    """Load the model (and guard), serve until Ctrl-C or SIGTERM; return the exit code."""
    service = ChatService(load_generator(args.model, args.guard), args.model, args.max_new_tokens)
    server = make_server(service, args.host, args.port, args.max_request_bytes)
    host, port = server.server_address[:2]
    if host not in ("127.0.0.1", "localhost"):
        log.warning("listening on %s: posttrain serve has no authentication", host)
    guard = f"guard {args.guard}" if args.guard else "no guard"
    print(f"posttrain serve: http://{host}:{port}/v1 ({args.model}, {guard}); Ctrl-C stops it", flush=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
    print("posttrain serve: stopped", flush=True)
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt
