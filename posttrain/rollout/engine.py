"""The default rollout engine on HF models: the fused forward of `posttrain.rollout.fused`, in bf16, batched.

How `sample(prompts, n, params)` runs:
- prompts are rendered by `render_prompt` (the training template) and sorted by length; rows are filled group by
  group, up to `batch_size` rows per wave, so that one wave holds whole groups where it can;
- each distinct prompt of a wave is prefilled once, and its cache row is copied for each of its samples;
- each step samples one token per row (`sample_tokens`), then rows that stopped (end-of-turn token, a stop
  string, `max_new_tokens`) are recorded; once a quarter of the rows have stopped they are dropped from the
  cache, so the remaining rows stop paying for them;
- the sampled ids are kept exactly (training never re-encodes text) with their log-probs.

Log-probs are those of the distribution the trainer computes, log-softmax(logits / temperature) (greedy: of the
plain logits); top-k and top-p only narrow the tokens that can be drawn, as in TRL and veRL.

Determinism: one `torch.Generator` per wave, seeded from `params.seed` and the wave's index, so a call with the
same prompts, weights and parameters gives the same rollouts; a different `batch_size` gives different ones.

`timings` holds the last call's prefill and decode seconds.

After an optimizer step, `sync()` re-reads the policy's weights (LoRA merged) into the engine's bf16 copy.
Models the fused forward does not support, and models on a GPU, get the plain `HFSampler` from `make_sampler` (a
log line says why).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from posttrain.render import render_prompt
from posttrain.rollout import Sampler, SamplingParams
from posttrain.rollout.fused import FusedDecoder, fused_decode_supported, weights_from
from posttrain.rollout.hf import HFSampler
from posttrain.text import before_stop
from posttrain.types import Messages, Rollout

log = logging.getLogger(__name__)
COMPACT_FRACTION = 0.25  # drop stopped rows from the cache once this fraction of the rows has stopped


def sample_tokens(
    logits_B_V: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row and its log-prob under log-softmax(logits / temperature); see the module docstring."""
    if params.temperature <= 0:
        logprobs_B_V = logits_B_V.log_softmax(-1)
        tokens_B = logprobs_B_V.argmax(-1)
        return tokens_B, logprobs_B_V.gather(-1, tokens_B[:, None]).squeeze(1)
    probs_B_V = (logits_B_V / params.temperature).softmax(-1)
    drawable_B_V = probs_B_V
    if params.top_k and params.top_k < logits_B_V.shape[-1]:
        kth_B_1 = probs_B_V.topk(params.top_k, dim=-1).values[:, -1:]
        drawable_B_V = drawable_B_V.masked_fill(probs_B_V < kth_B_1, 0.0)
    if params.top_p < 1.0:  # the nucleus is taken on what top-k left, renormalised (as HF and vLLM)
        sorted_B_V, order_B_V = drawable_B_V.sort(dim=-1, descending=True)
        sorted_B_V = sorted_B_V / sorted_B_V.sum(-1, keepdim=True)
        mass_before_B_V = sorted_B_V.cumsum(-1) - sorted_B_V  # mass of the tokens ranked above
        drop_sorted = mass_before_B_V >= params.top_p  # the smallest set reaching top_p is kept
        drawable_B_V = drawable_B_V.masked_fill(drop_sorted.scatter(-1, order_B_V, drop_sorted), 0.0)
    tokens_B = draw(drawable_B_V, generator)
    # log of the softmax, not log_softmax: a drawn token's probability is a normal float, so this is as exact
    return tokens_B, probs_B_V.gather(-1, tokens_B[:, None]).squeeze(1).log()


def draw(weights_B_V: torch.Tensor, generator: torch.Generator | None = None, block: int = 256) -> torch.Tensor:
    """One index per row, drawn with probability proportional to its (non-negative) weight.

    An inverse-CDF draw in two levels: a uniform picks a block of `block` tokens from the blocks' total weights,
    then a token inside the block. The running sums are in float64, so the tail keeps its mass, yet only one pass
    over the vocabulary is needed (sampling with a float64 cumulative sum over all of it took 15 ms a step at
    batch 64 on SmolLM2, with this about 2 ms).
    Zero-weight tokens are never drawn."""
    B, V = weights_B_V.shape
    blocks_B_N_K = (F.pad(weights_B_V, (0, -V % block)) if V % block else weights_B_V).view(B, -1, block)
    mass_B_N = blocks_B_N_K.sum(-1).double()  # a float32 sum over one block loses nothing that matters
    cdf_B_N = mass_B_N.cumsum(-1)
    u_B_1 = torch.rand((B, 1), generator=generator, dtype=torch.float64) * cdf_B_N[:, -1:]
    block_B_1 = torch.searchsorted(cdf_B_N, u_B_1, right=True).clamp_(max=cdf_B_N.shape[1] - 1)
    inside_B_K = blocks_B_N_K[torch.arange(B), block_B_1.squeeze(1)].cumsum(-1, dtype=torch.float64)
    rest_B_1 = u_B_1 - (cdf_B_N.gather(1, block_B_1) - mass_B_N.gather(1, block_B_1))
    # Rounding can leave the remainder a hair outside [0, block mass): clamp it inside, onto a weighted token.
    rest_B_1 = torch.minimum(rest_B_1.clamp_(min=0.0), inside_B_K[:, -1:] * (1 - 2**-40))
    index_B_1 = torch.searchsorted(inside_B_K, rest_B_1, right=True)
    return (block_B_1 * block + index_B_1).squeeze(1)


class RolloutEngine:
    """Sampler over a Llama-family HF model; see the module docstring."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 64,
                 dtype: torch.dtype = torch.bfloat16, progress: str = ""):  # fmt: skip
        if next(model.parameters()).device.type != "cpu":
            raise NotImplementedError("RolloutEngine runs on CPU; for a model on a GPU use make_sampler (plain "
                                      "generate; a vLLM backend is a later issue)")  # fmt: skip
        self.model, self.tokenizer, self.batch_size, self.dtype = model, tokenizer, batch_size, dtype
        self.progress = progress  # a progress-bar label; empty: no bar
        eos = tokenizer.eos_token_id
        self.eos_ids = {eos} if isinstance(eos, int) else set(eos)
        self.timings = {"prefill_s": 0.0, "decode_s": 0.0}  # of the last `sample` call
        self.sync()

    def sync(self) -> None:
        """Re-read the policy's weights (after an optimizer step)."""
        self.decoder = FusedDecoder(self.model, weights_from(self.model, self.dtype, self.batch_size))

    def sample(self, prompts: Sequence[Messages], n: int, params: SamplingParams) -> list[list[Rollout]]:
        """`n` rollouts per prompt, grouped per prompt, in prompt order."""
        prompt_ids = [render_prompt(self.tokenizer, p) for p in prompts]
        jobs = sorted(((i, j) for i in range(len(prompts)) for j in range(n)), key=lambda ij: len(prompt_ids[ij[0]]))
        out: list[list[Rollout | None]] = [[None] * n for _ in prompts]
        waves = [jobs[s : s + self.batch_size] for s in range(0, len(jobs), self.batch_size)]
        self.timings = {"prefill_s": 0.0, "decode_s": 0.0}
        for index, wave in enumerate(tqdm(waves, desc=self.progress, disable=not self.progress, unit="batch")):
            generator = torch.Generator().manual_seed(params.seed * 100_003 + index)
            rollouts = self._run_wave([i for i, _ in wave], prompt_ids, params, generator)
            for (i, j), rollout in zip(wave, rollouts, strict=True):
                out[i][j] = rollout
        return [list(group) for group in out]  # type: ignore[arg-type]

    @torch.no_grad()
    def _run_wave(self, rows_prompt: list[int], prompt_ids: list[list[int]], params: SamplingParams,
                  generator: torch.Generator) -> list[Rollout]:  # fmt: skip
        """Sample one completion per row; row r continues prompt `rows_prompt[r]` (rows of a prompt adjacent)."""
        start = time.perf_counter()
        distinct = list(dict.fromkeys(rows_prompt))
        cache, logits_B_V = self.decoder.prefill([prompt_ids[i] for i in distinct])
        repeat = torch.tensor([distinct.index(i) for i in rows_prompt])
        cache.keep_rows(repeat)
        logits_B_V = logits_B_V.index_select(0, repeat)
        live = torch.arange(len(rows_prompt))  # original row of each cache row
        tokens: list[list[int]] = [[] for _ in rows_prompt]
        logprobs: list[list[float]] = [[] for _ in rows_prompt]
        finish = ["length"] * len(rows_prompt)
        stopped_rows: list[int] = []  # cache rows stopped since the last compaction
        decode_start = time.perf_counter()
        self.timings["prefill_s"] += decode_start - start
        for step in range(params.max_new_tokens):
            tokens_B, logprobs_B = sample_tokens(logits_B_V, params, generator)
            for r, (row, token, logprob) in enumerate(zip(live.tolist(), tokens_B.tolist(), logprobs_B.tolist(),
                                                          strict=True)):  # fmt: skip
                if finish[row] == "stop":
                    continue
                tokens[row].append(token)
                logprobs[row].append(logprob)
                if token in self.eos_ids or self._hit_stop_string(tokens[row], params.stop):
                    finish[row] = "stop"
                    stopped_rows.append(r)
            if len(stopped_rows) == len(live) or step == params.max_new_tokens - 1:
                break
            if len(stopped_rows) >= COMPACT_FRACTION * len(live):
                keep = torch.tensor(sorted(set(range(len(live))) - set(stopped_rows)), dtype=torch.long)
                cache.keep_rows(keep)
                live, tokens_B, stopped_rows = live[keep], tokens_B[keep], []
            logits_B_V = self.decoder.step(tokens_B, cache)
        self.timings["decode_s"] += time.perf_counter() - decode_start
        return [self._rollout(prompt_ids[i], tokens[r], logprobs[r], finish[r], params)
                for r, i in enumerate(rows_prompt)]  # fmt: skip

    def _hit_stop_string(self, ids: list[int], stops: Sequence[str]) -> bool:
        """Whether the newest token completed a stop string (only the tail is decoded)."""
        if not stops:
            return False
        tail = self.tokenizer.decode(ids[-(max(map(len, stops)) + 4) :], skip_special_tokens=False)
        return any(s in tail for s in stops)

    def _rollout(self, prompt: list[int], ids: list[int], logprobs: list[float], finish: str,
                 params: SamplingParams) -> Rollout:  # fmt: skip
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if params.stop and finish == "stop" and ids[-1] not in self.eos_ids:
            raw = self.tokenizer.decode(ids, skip_special_tokens=False)
            text = before_stop(raw, params.stop)
        return Rollout(prompt_ids=tuple(prompt), token_ids=tuple(ids), logprobs=tuple(logprobs), text=text.strip(),
                       finish_reason=finish)  # fmt: skip


def make_sampler(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 64,
                 progress: str = "") -> Sampler:  # fmt: skip
    """The `RolloutEngine` where the fused forward supports the model, else the plain `HFSampler` on the model."""
    reason = fused_decode_supported(model.get_base_model() if hasattr(model, "get_base_model") else model)
    if reason is None and next(model.parameters()).device.type != "cpu":
        reason = "the fused engine runs on CPU"
    if reason is None:
        return RolloutEngine(model, tokenizer, batch_size=batch_size, progress=progress)
    log.info("rollouts use plain generate: %s", reason)
    return HFSampler(model, tokenizer, batch_size=batch_size, progress=progress)
