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

Multi-turn (`run_turns`, used by `posttrain.envs.episodes`): the same waves, but after each turn the caller's
`continue_with` gives every row the ids to append (an environment's observation in template form) or ends it. A
row's cache is kept between turns: when its turn ends, its cache row is set aside holding everything before the
turn's last token (which may or may not have been fed yet); the continuing rows' kept caches are stacked and only
that last token plus the appended ids are prefilled. Sampled ids are never decoded and re-encoded.

Determinism: one `torch.Generator` per wave, seeded from `params.seed` and the wave's index, so a call with the
same prompts, weights and parameters gives the same rollouts; a different `batch_size` gives different ones.

`timings` holds the last call's prefill and decode seconds.

After an optimizer step, `sync()` re-reads the policy's weights (LoRA merged) into the engine's bf16 copy.
Models the fused forward does not support, and models on a GPU, get the plain `HFSampler` from `make_sampler` (a
log line says why). `make_sampler` also builds the other backends by name (`SamplerOptions.sampler`): `hf`, `vllm`
(`posttrain.rollout.vllm`) and `vllm-server` (`posttrain.rollout.vllm_server`).
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
from posttrain.rollout import (
    ContinueWith,
    Piece,
    Sampler,
    SamplingParams,
    Transcript,
    Turn,
    end_token_ids,
    transcript_of,
)
from posttrain.rollout.families import fused_decode_supported
from posttrain.rollout.fused import FusedDecoder, KVCache, weights_from
from posttrain.rollout.hf import HFSampler
from posttrain.rollout.options import SamplerOptions
from posttrain.rollout.vllm import VLLMSampler
from posttrain.rollout.vllm_server import VLLMServerSampler
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
    """Sampler over an HF model of a family the fused forward supports (`posttrain.rollout.families.FAMILIES`)."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 64,
                 dtype: torch.dtype = torch.bfloat16, progress: str = ""):  # fmt: skip
        if next(model.parameters()).device.type != "cpu":
            raise NotImplementedError("RolloutEngine runs on CPU; for a model on a GPU use make_sampler (plain "
                                      "generate, or sampler=vllm)")  # fmt: skip
        self.model, self.tokenizer, self.batch_size, self.dtype = model, tokenizer, batch_size, dtype
        self.progress = progress  # a progress-bar label; empty: no bar
        self.eos_ids = end_token_ids(model, tokenizer)
        self.timings = {"prefill_s": 0.0, "decode_s": 0.0}  # of the last `sample` call
        self.sync()

    def sync(self) -> None:
        """Re-read the policy's weights (after an optimizer step)."""
        self.decoder = FusedDecoder(self.model, weights_from(self.model, self.dtype, self.batch_size))

    def sample(self, prompts: Sequence[Messages], n: int, params: SamplingParams) -> list[list[Rollout]]:
        """`n` rollouts per prompt, grouped per prompt, in prompt order."""
        prompt_ids = [render_prompt(self.tokenizer, p) for p in prompts]
        rows = [prompt_ids[i] for i in range(len(prompts)) for _ in range(n)]
        transcripts = self.run_turns(rows, params, None)
        rollouts = [Rollout(tuple(ids), t.token_ids, t.logprobs, t.last.text, t.last.finish_reason)
                    for ids, t in zip(rows, transcripts, strict=True)]  # fmt: skip
        return [rollouts[i * n : (i + 1) * n] for i in range(len(prompts))]

    def run_turns(
        self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams, continue_with: ContinueWith | None
    ) -> list[Transcript]:
        """One transcript per prompt; after each turn `continue_with` gives the ids to append or ends the row (None:
        one turn each). Rows are sorted by prompt length into waves of `batch_size`; a wave runs all its turns
        before the next starts. Between turns a row's cache is kept, so only the appended ids are prefilled."""
        order = sorted(range(len(prompt_ids)), key=lambda r: len(prompt_ids[r]))
        waves = [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        out: list[Transcript | None] = [None] * len(prompt_ids)
        self.timings = {"prefill_s": 0.0, "decode_s": 0.0}
        for index, wave in enumerate(tqdm(waves, desc=self.progress, disable=not self.progress, unit="batch")):
            generator = torch.Generator().manual_seed(params.seed * 100_003 + index)
            for row, transcript in zip(wave, self._run_wave(wave, prompt_ids, params, generator, continue_with),
                                       strict=True):  # fmt: skip
                out[row] = transcript
        return out  # type: ignore[return-value]

    def _run_wave(self, rows: list[int], prompt_ids: Sequence[Sequence[int]], params: SamplingParams,
                  generator: torch.Generator, continue_with: ContinueWith | None) -> list[Transcript]:  # fmt: skip
        """Every turn of the rows of one wave (rows of one prompt adjacent: each distinct prompt is prefilled once)."""
        start = time.perf_counter()
        distinct = list(dict.fromkeys(tuple(prompt_ids[r]) for r in rows))
        cache, logits_B_V = self.decoder.prefill([list(ids) for ids in distinct])
        repeat = torch.tensor([distinct.index(tuple(prompt_ids[r])) for r in rows])
        cache.keep_rows(repeat)
        logits_B_V = logits_B_V.index_select(0, repeat)
        self.timings["prefill_s"] += time.perf_counter() - start
        pieces: list[list[Piece]] = [[] for _ in rows]
        last: list[Turn | None] = [None] * len(rows)
        active = list(range(len(rows)))  # wave positions of the cache's rows
        while True:
            turns, parked = self._decode(cache, logits_B_V, params, generator, park=continue_with is not None)
            for k, turn in zip(active, turns, strict=True):
                pieces[k].append((turn.token_ids, turn.logprobs, True))
                last[k] = turn
            if continue_with is None:
                break
            follow = continue_with([rows[k] for k in active], turns)
            going = [(i, tuple(ids)) for i, ids in enumerate(follow) if ids is not None]
            if not going:
                break
            start = time.perf_counter()
            for i, ids in going:
                pieces[active[i]].append((ids, (0.0,) * len(ids), False))
            cache = KVCache.stack([parked[i] for i, _ in going])
            # each parked row stops before its turn's last token (see _decode): feed it, then the appended ids
            feeds = [(turns[i].token_ids[-1], *ids) for i, ids in going]
            block = torch.zeros((len(feeds), max(map(len, feeds))), dtype=torch.long)
            for b, feed in enumerate(feeds):
                block[b, : len(feed)] = torch.tensor(feed)
            logits_B_V = self.decoder.forward(block, torch.tensor([len(f) for f in feeds]), cache)
            active = [active[i] for i, _ in going]
            self.timings["prefill_s"] += time.perf_counter() - start
        return [transcript_of(p, t) for p, t in zip(pieces, last, strict=True)]  # type: ignore[arg-type]

    @torch.no_grad()
    def _decode(self, cache: KVCache, logits_B_V: torch.Tensor, params: SamplingParams, generator: torch.Generator,
                park: bool) -> tuple[list[Turn], list[KVCache | None]]:  # fmt: skip
        """Sample one turn for each row of `cache`. Rows that stopped are dropped from the cache once a quarter
        have; with `park`, each row's cache is first kept aside, holding everything before the turn's last token."""
        decode_start = time.perf_counter()
        B = len(cache.lengths_B)
        start_B = cache.lengths_B.clone()
        live = torch.arange(B)  # original row of each cache row
        tokens: list[list[int]] = [[] for _ in range(B)]
        logprobs: list[list[float]] = [[] for _ in range(B)]
        finish = ["length"] * B
        parked: list[KVCache | None] = [None] * B
        stopped_rows: list[int] = []  # cache rows stopped since the last compaction

        def park_rows(cache_rows) -> None:
            for r in cache_rows:
                row = int(live[r])
                parked[row] = cache.row(r, int(start_B[row]) + len(tokens[row]) - 1)

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
                if park:
                    park_rows(stopped_rows)
                keep = torch.tensor(sorted(set(range(len(live))) - set(stopped_rows)), dtype=torch.long)
                cache.keep_rows(keep)
                live, tokens_B, stopped_rows = live[keep], tokens_B[keep], []
            logits_B_V = self.decoder.step(tokens_B, cache)
        if park:
            park_rows(r for r in range(len(live)) if parked[int(live[r])] is None)
        self.timings["decode_s"] += time.perf_counter() - decode_start
        turns = [Turn(tuple(tokens[b]), tuple(logprobs[b]), self._text(tokens[b], finish[b], params), finish[b])
                 for b in range(B)]  # fmt: skip
        return turns, parked

    def _hit_stop_string(self, ids: list[int], stops: Sequence[str]) -> bool:
        """Whether the newest token completed a stop string (only the tail is decoded)."""
        if not stops:
            return False
        tail = self.tokenizer.decode(ids[-(max(map(len, stops)) + 4) :], skip_special_tokens=False)
        return any(s in tail for s in stops)

    def _text(self, ids: list[int], finish: str, params: SamplingParams) -> str:
        """A turn's text: special tokens removed, cut before the stop string it ended on."""
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if params.stop and finish == "stop" and ids[-1] not in self.eos_ids:
            text = before_stop(self.tokenizer.decode(ids, skip_special_tokens=False), params.stop)
        return text.strip()


def _auto_sampler(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int, progress: str,
                  options: SamplerOptions) -> Sampler:  # fmt: skip
    """The `RolloutEngine` where the fused forward supports the model, else the plain `HFSampler` on the model."""
    reason = fused_decode_supported(model.get_base_model() if hasattr(model, "get_base_model") else model)
    if reason is None and next(model.parameters()).device.type != "cpu":
        reason = "the fused engine runs on CPU"
    if reason is None:
        return RolloutEngine(model, tokenizer, batch_size=batch_size, progress=progress)
    log.info("rollouts use plain generate: %s", reason)
    return HFSampler(model, tokenizer, batch_size=batch_size, progress=progress)


# Each backend's factory: (model, tokenizer, batch_size, progress, options) -> Sampler. vLLM schedules its own
# batches, so its samplers take no batch size; the server sampler keeps `batch_size` requests in flight.
SAMPLER_BACKENDS = {
    "auto": _auto_sampler,
    "hf": lambda model, tokenizer, batch_size, progress, options: HFSampler(model, tokenizer, batch_size, progress),
    "vllm": lambda model, tokenizer, batch_size, progress, options: VLLMSampler(
        model, tokenizer, gpu_memory=options.vllm_gpu_memory, progress=progress
    ),
    "vllm-server": lambda model, tokenizer, batch_size, progress, options: VLLMServerSampler(
        options.vllm_url, model, tokenizer, concurrency=batch_size, sync_dir=options.vllm_sync_dir
    ),
}


def make_sampler(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 64,
                 progress: str = "", options: SamplerOptions | None = None) -> Sampler:  # fmt: skip
    """The sampler `options.sampler` names (`SAMPLER_BACKENDS`); by default "auto": the `RolloutEngine` where the
    fused forward supports the model, else the plain `HFSampler`."""
    options = options or SamplerOptions()
    if options.sampler not in SAMPLER_BACKENDS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLER_BACKENDS)}, got {options.sampler!r}")
    return SAMPLER_BACKENDS[options.sampler](model, tokenizer, batch_size, progress, options)
