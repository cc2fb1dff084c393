"""`posttrain serve` over real HTTP (urllib, http.client and raw sockets; the `openai` client is not a dependency).

The command runs in a subprocess on the tiny model and must stop cleanly on SIGTERM. Its answers are the ones
`GuardedGenerator` gives in this process, alone or with 4 clients at once; streaming and not agree; bad requests get
OpenAI-style errors naming the field; an oversized body is refused from its Content-Length; a client that drops a
stream stops its generation. The guarded servers run in a thread on port 0, from `make_server`.
"""

from __future__ import annotations

import http.client
import json
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from guards import a_guard, halting_guard

from posttrain.cli import main
from posttrain.models import load_policy
from posttrain.rollout import SamplingParams
from posttrain.safety.guarded import INPUT_REFUSAL, GuardedGenerator
from posttrain.serve import ChatService, make_server

MODEL = "tiny-random-llama"
ROOT = Path(__file__).resolve().parents[1]
KITES = [{"role": "user", "content": "Tell me about kites."}]
GREEDY = SamplingParams(max_new_tokens=16, temperature=0.0)


@pytest.fixture(scope="module")
def policy():
    model, tokenizer = load_policy(MODEL)
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def alone(policy):
    """`alone(messages, params) -> Finish`: the answer of the generator the server wraps, in this process."""
    generator = GuardedGenerator(*policy)
    return lambda messages, params=GREEDY: generator.complete(messages, params)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python -m posttrain serve tiny-random-llama --port 0`: (base URL, path of its log); it must exit 0 on SIGTERM."""
    log_path = tmp_path_factory.mktemp("serve") / "stderr.log"
    command = [sys.executable, "-m", "posttrain", "serve", MODEL, "--port", "0", "--max-new-tokens", "16"]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
    ready, _, _ = select.select([process.stdout], [], [], 120)
    line = process.stdout.readline() if ready else ""
    match = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
    if match is None:
        process.kill()
        pytest.fail(f"posttrain serve did not start: {line!r}\n{log_path.read_text()}")
    yield f"http://127.0.0.1:{match[1]}", log_path
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log_path.read_text()
    assert "posttrain serve: stopped" in process.stdout.read()


def post(url: str, body: dict | bytes, path: str = "/v1/chat/completions", method: str = "POST") -> tuple[int, dict]:
    """(status, JSON body) of one request."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def stream(url: str, body: dict) -> list:
    """The payloads of a streamed answer's `data:` lines, parsed (the last one is the string '[DONE]')."""
    request = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps({**body, "stream": True}).encode())
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        lines = [line.decode().strip() for line in response if line.startswith(b"data: ")]
    return [line[6:] if line == "data: [DONE]" else json.loads(line[6:]) for line in lines]


def streamed_text(events: list) -> str:
    return "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1] if e["choices"])


def test_a_completion_is_the_guarded_generators_answer_with_usage(server, alone):
    url, _ = server
    status, body = post(url, {"model": "kite-bot", "messages": KITES, "max_tokens": 16, "temperature": 0})
    expected = alone(KITES)
    assert status == 200 and body["object"] == "chat.completion" and body["model"] == "kite-bot"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": expected.text}
    assert body["choices"][0]["finish_reason"] == expected.reason == "length"
    usage = {
        "prompt_tokens": expected.prompt_tokens,
        "completion_tokens": 16,
        "total_tokens": expected.prompt_tokens + 16,
    }
    assert body["usage"] == usage
    sampled = {"messages": KITES, "max_tokens": 12, "temperature": 1.0, "top_p": 0.9, "seed": 7}
    params = SamplingParams(max_new_tokens=12, temperature=1.0, top_p=0.9, seed=7)
    assert post(url, sampled)[1]["choices"][0]["message"]["content"] == alone(KITES, params).text


def test_a_stream_is_the_same_answer_in_chunks_ending_with_done(server, alone):
    url, _ = server
    events = stream(url, {"messages": KITES, "temperature": 0, "stream_options": {"include_usage": True}})
    assert events[-1] == "[DONE]" and all(e["object"] == "chat.completion.chunk" for e in events[:-1])
    assert events[0]["choices"][0]["delta"]["role"] == "assistant" and events[0]["model"] == MODEL
    assert len(events) > 5  # token by token, not one piece
    assert streamed_text(events) == alone(KITES).text
    assert events[-3]["choices"][0]["finish_reason"] == "length"
    assert events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] == 16


def test_models_and_health(server):
    url, _ = server
    assert post(url, b"", "/health", "GET") == (200, {"status": "ok"})
    status, body = post(url, b"", "/v1/models", "GET")
    assert status == 200 and [m["id"] for m in body["data"]] == [MODEL]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"messages": [', None),
        (b"[1, 2]", None),
        ({"model": "x"}, "messages"),
        ({"messages": "hello"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": ["hello"]}, "messages[0]"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [*KITES, {"role": "user", "content": 3}]}, "messages[1].content"),
        ({"messages": KITES, "max_tokens": "16"}, "max_tokens"),
        ({"messages": KITES, "max_tokens": 0}, "max_tokens"),
        ({"messages": KITES, "temperature": True}, "temperature"),
        ({"messages": KITES, "temperature": 3}, "temperature"),
        ({"messages": KITES, "top_p": 0}, "top_p"),
        ({"messages": KITES, "seed": -1}, "seed"),
        ({"messages": KITES, "stream": "yes"}, "stream"),
        ({"messages": KITES, "stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
        ({"messages": KITES, "model": 5}, "model"),
        ({"messages": KITES, "n": 2}, "n"),
    ],
)
def test_a_malformed_request_gets_400_naming_the_field(server, body, param):
    status, answer = post(server[0], body)
    assert status == 400 and answer["error"]["type"] == "invalid_request_error"
    assert answer["error"]["param"] == param and answer["error"]["message"]


def test_unknown_paths_and_wrong_methods_get_404_and_405(server):
    url, _ = server
    status, body = post(url, {"messages": KITES}, "/v1/completions")
    assert status == 404 and body["error"]["code"] == "unknown_url"
    request = urllib.request.Request(url + "/v1/chat/completions")  # a GET
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 405 and err.value.headers["Allow"] == "POST"
    assert json.loads(err.value.read())["error"]["type"] == "invalid_request_error"


def test_an_oversized_body_gets_413_without_being_read(server):
    url, _ = server
    padding = "x" * (3 << 19)  # 1.5 MiB, over the default 1 MiB limit
    status, body = post(url, {"messages": [{"role": "user", "content": padding}]})
    assert status == 413 and body["error"]["code"] == "request_too_large"
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:  # claims 1 TB, sends none of it
        raw.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n")
        started, reply = time.monotonic(), raw.recv(4096)
    assert reply.startswith(b"HTTP/1.0 413") and time.monotonic() - started < 5


def test_a_client_that_drops_a_stream_stops_its_generation(server, alone):
    url, log_path = server
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    body = {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 2000, "stream": True}
    connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    while b'"content": "' not in (line := response.readline()) or b'"content": ""' in line:
        assert line, "the stream ended before its first piece"
    response.close()
    connection.close()  # 2000 tokens take the tiny model over a minute: only a stopped generation frees it in time
    started = time.monotonic()
    status, answer = post(url, {"messages": KITES, "temperature": 0})
    assert status == 200 and answer["choices"][0]["message"]["content"] == alone(KITES).text
    assert time.monotonic() - started < 20
    deadline = time.monotonic() + 10
    while "client disconnected after" not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert re.search(r"client disconnected after \d+ pieces; generation stopped", log_path.read_text())


def test_concurrent_clients_each_get_their_own_answer(server, alone):
    url, _ = server
    prompts = ["Tell me about kites.", "Hi", "What is 2+2?", "Name a colour."]
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    expected = [alone(c).text for c in conversations]
    assert len(set(expected)) == 4

    def ask(i: int) -> str:
        body = {"messages": conversations[i], "temperature": 0}
        return streamed_text(stream(url, body)) if i % 2 else post(url, body)[1]["choices"][0]["message"]["content"]

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(ask, range(4))) == expected


class ThreadServer:
    """`make_server` on 127.0.0.1, port 0, serving in a thread until `close`."""

    def __init__(self, generator: GuardedGenerator):
        self.httpd = make_server(ChatService(generator, MODEL, default_max_tokens=16))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_blocked_request_or_halted_answer_ends_with_content_filter(policy):
    model, tokenizer = policy
    blocking = ThreadServer(GuardedGenerator(model, tokenizer, a_guard(model, -1.0)))  # every score is above -1
    try:
        status, body = post(blocking.url, {"messages": KITES})
        assert status == 200 and body["choices"][0]["finish_reason"] == "content_filter"
        assert body["choices"][0]["message"]["content"] == INPUT_REFUSAL and body["usage"]["completion_tokens"] == 0
        events = stream(blocking.url, {"messages": KITES})
        assert streamed_text(events) == INPUT_REFUSAL and events[-2]["choices"][0]["finish_reason"] == "content_filter"
    finally:
        blocking.close()
    halting = GuardedGenerator(model, tokenizer, halting_guard(model, tokenizer, KITES, GREEDY))
    expected = halting.complete(KITES, GREEDY)
    assert expected.reason == "output_guard"
    server = ThreadServer(halting)
    try:
        events = stream(server.url, {"messages": KITES, "temperature": 0})
        assert streamed_text(events) == expected.text and events[-2]["choices"][0]["finish_reason"] == "content_filter"
        assert post(server.url, {"messages": KITES, "temperature": 0})[1]["choices"][0]["message"]["content"] == (
            expected.text
        )
    finally:
        server.close()


def test_a_bad_guard_directory_is_a_clear_error_before_the_model_loads(tmp_path, capsys):
    assert main(["serve", MODEL, "--guard", str(tmp_path / "missing")]) == 1
    assert "no such directory" in capsys.readouterr().err
    (tmp_path / "guard").mkdir()
    (tmp_path / "guard" / "guard.json").write_text("{}")
    assert main(["serve", MODEL, "--guard", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "not a guard directory" in err and f"did you mean {tmp_path / 'guard'}" in err
