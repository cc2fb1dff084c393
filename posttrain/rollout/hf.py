"""The plain Hugging Face sampler: batched `generate` with a KV cache, keeping the sampled token ids.

Prompts are rendered by `render_prompt` (the training template), sorted by length and left-padded. The
sampled ids are kept exactly as generated, so training on a rollout never decodes and re-encodes text. The
per-token log-probs are those of log-softmax(logits / temperature), as `posttrain.rollout.engine` documents.
It generates from the model it is given, so `sync` has nothing to do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from posttrain.render import render_prompt
from posttrain.rollout import ContinueWith, SamplingParams, Transcript, Turn, end_token_ids, regenerated_turns
from posttrain.text import before_stop
from posttrain.types import Messages, Rollout


class HFSampler:
    """Sampler over a transformers model (the policy being trained, or a copy of it)."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 32,
                 progress: str = ""):  # fmt: skip
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.eos_ids = end_token_ids(model, tokenizer)
        self.progress = progress  # a progress-bar label; empty: no bar

    def sync(self) -> None:
        """Nothing to do: generation reads the model's current weights."""

    @torch.no_grad()
    def sample(self, prompts: Sequence[Messages], n: int, params: SamplingParams) -> list[list[Rollout]]:
        """`n` completions per prompt, grouped per prompt."""
        prompt_ids = [render_prompt(self.tokenizer, p) for p in prompts]
        rollouts = self._sample_rows(
            [prompt_ids[i] for i in range(len(prompts)) for _ in range(n)], params, params.seed
        )
        return [rollouts[i * n : (i + 1) * n] for i in range(len(prompts))]

    @torch.no_grad()
    def run_turns(
        self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams, continue_with: ContinueWith | None
    ) -> list[Transcript]:
        """Multi-turn sampling (see `Sampler.run_turns`). Each turn regenerates from the row's whole id sequence: no
        cache is kept between turns, but ids are never re-encoded either. The first turn is `sample`'s draw."""

        def next_turns(rows: list[int], histories: list[list[int]], turn: int) -> list[Turn]:
            rollouts = self._sample_rows(histories, params, params.seed + 7919 * turn)
            return [Turn(r.token_ids, r.logprobs, r.text, r.finish_reason) for r in rollouts]

        return regenerated_turns(prompt_ids, next_turns, continue_with)

    def _sample_rows(self, rows: list[list[int]], params: SamplingParams, seed: int) -> list[Rollout]:
        """One completion per id sequence, in input order: rows sorted by length into batches, batch b seeded by
        `seed` + its first sorted index."""
        jobs = sorted(range(len(rows)), key=lambda r: len(rows[r]))
        out: list[Rollout | None] = [None] * len(rows)
        was_training = self.model.training
        self.model.eval()
        starts = range(0, len(jobs), self.batch_size)
        for start in tqdm(starts, desc=self.progress, disable=not self.progress, unit="batch"):
            chunk = jobs[start : start + self.batch_size]
            torch.manual_seed(seed + start)
            for r, rollout in zip(chunk, self._generate([rows[r] for r in chunk], params), strict=True):
                out[r] = rollout
        self.model.train(was_training)
        return out  # type: ignore[return-value]

    def _generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Rollout]:
        tok = self.tokenizer
        width = max(map(len, prompts))
        input_ids = torch.full((len(prompts), width), tok.pad_token_id, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
        greedy = params.temperature <= 0
        out = self.model.generate(
            input_ids=input_ids.to(self.model.device), attention_mask=attention.to(self.model.device),
            max_new_tokens=params.max_new_tokens, do_sample=not greedy,
            temperature=None if greedy else params.temperature, top_p=None if greedy else params.top_p,
            top_k=None if greedy or not params.top_k else params.top_k, pad_token_id=tok.pad_token_id,
            eos_token_id=sorted(self.eos_ids), output_logits=True, return_dict_in_generate=True,
            stop_strings=list(params.stop) or None, tokenizer=tok if params.stop else None,
        )  # fmt: skip
        new_B_N = out.sequences[:, width:]
        # One (B, V) row of logits at a time: stacking all of them first would hold B x N x V floats.
        scale = 1.0 if greedy else 1.0 / params.temperature
        picked = [
            (s.float() * scale).log_softmax(-1).gather(-1, new_B_N[:, n, None]).squeeze(-1)
            for n, s in enumerate(out.logits)
        ]
        logprobs_B_N, new_B_N = torch.stack(picked, dim=1).cpu(), new_B_N.cpu()
        return [self._rollout(prompts[b], new_B_N[b], logprobs_B_N[b], params) for b in range(len(prompts))]

    def _rollout(self, prompt: list[int], new: torch.Tensor, logprobs: torch.Tensor, params: SamplingParams
                 ) -> Rollout:  # fmt: skip
        ids = new.tolist()
        end = next((k + 1 for k, i in enumerate(ids) if i in self.eos_ids), None)  # just after the first end id
        length = end or len(ids)
        text = self.tokenizer.decode(ids[:length], skip_special_tokens=True)
        stop_at = _stop_string_end(self.tokenizer, ids[:length], params.stop)
        if stop_at is not None:
            length = stop_at
            raw = self.tokenizer.decode(ids[:length], skip_special_tokens=False)
            text = before_stop(raw, params.stop)
        return Rollout(
            prompt_ids=tuple(prompt),
            token_ids=tuple(ids[:length]),
            logprobs=tuple(logprobs[:length].tolist()),
            text=text.strip(),
            finish_reason="stop" if end is not None or stop_at is not None else "length",
        )


def _stop_string_end(tokenizer: PreTrainedTokenizerBase, ids: list[int], stops: tuple[str, ...]) -> int | None:
    """The number of tokens up to the one completing the first stop string, or None when none occurs."""
    if not stops or not any(s in tokenizer.decode(ids, skip_special_tokens=False) for s in stops):
        return None
    return next(k for k in range(1, len(ids) + 1)
                if any(s in tokenizer.decode(ids[:k], skip_special_tokens=False) for s in stops))  # fmt: skip
