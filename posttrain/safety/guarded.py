"""Guarded generation: a policy answering one conversation, with the guard on its input and its streamed output.

The one generation path of `posttrain chat`, `posttrain serve` and the guarded end-to-end evaluation.

- Input guard: the rendered prompt is scored (`Guard.score_prompt`'s features, taken from the prefill's hidden
  states, so it costs nothing extra); above the threshold, the answer is the constitution-style refusal and nothing
  is generated.
- Output guard: the decode loop keeps a running sum of the probe's layers' hidden states, so the feature of every
  prefix is known without another forward pass. Tokens are held back until the next check (every `guard.every`
  tokens, and at the end): a check that passes releases them, a check that crosses the threshold halts the answer
  and the held-back tokens are never shown. So no unchecked text reaches the user.

`stream(...)` yields text pieces as they are released, then one `Finish`. Without a guard it streams token by token.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformers.modeling_outputs import CausalLMOutputWithPast

from posttrain.render import render_prompt
from posttrain.rollout import SamplingParams, end_token_ids
from posttrain.rollout.engine import sample_tokens
from posttrain.safety.guard import Guard
from posttrain.text import STOP_STRINGS

INPUT_REFUSAL = "I can't help with that request, because it asks for something that could cause serious harm."
HALTED_NOTE = "[stopped: the output guard judged this answer harmful]"
# newer transformers call the KV cache `cache` (older: `past_key_values`), as argument and as output field
CACHE = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


@dataclass(frozen=True)
class Finish:
    """How an answer ended: `stop` (end of turn), `length`, `input_guard` or `output_guard`."""

    reason: str
    text: str  # everything released to the user
    prompt_tokens: int
    completion_tokens: int  # tokens generated, the held-back ones of a halted answer included
    input_score: float | None = None
    halted_at: int | None = None  # index of the generated token at whose check the output guard halted
    seconds: dict[str, float] = field(default_factory=dict)  # time spent generating and guarding

    @property
    def blocked(self) -> bool:
        return self.reason in ("input_guard", "output_guard")


class GuardedGenerator:
    """One model, its tokenizer and an optional guard; `stream` answers one conversation at a time."""

    def __init__(self, model, tokenizer, guard: Guard | None = None, refusal: str = INPUT_REFUSAL):
        self.model, self.tokenizer, self.guard, self.refusal = model.eval(), tokenizer, guard, refusal
        self.device = next(model.parameters()).device
        self.stop_ids = {i for s in STOP_STRINGS if (i := tokenizer.convert_tokens_to_ids(s)) is not None}
        self.stop_ids -= {tokenizer.unk_token_id}
        self.stop_ids |= end_token_ids(model, tokenizer)

    def complete(self, messages: Sequence[dict], params: SamplingParams) -> Finish:
        """The whole answer at once."""
        return next(part for part in self.stream(messages, params) if isinstance(part, Finish))

    @torch.no_grad()
    def stream(self, messages: Sequence[dict], params: SamplingParams) -> Iterator[str | Finish]:
        """Text pieces as the guard releases them, then the `Finish`."""
        prompt = render_prompt(self.tokenizer, messages)
        generator = torch.Generator().manual_seed(params.seed)
        clock = {"generate": 0.0, "guard": 0.0}
        started = time.perf_counter()
        out = self.model(torch.tensor([prompt], device=self.device), use_cache=True, output_hidden_states=True)
        clock["generate"] += time.perf_counter() - started
        sums = self._layer_sums(out.hidden_states, every_position=True)
        input_score = None
        if self.guard is not None:
            started = time.perf_counter()
            input_score = float(self.guard.probe.scores((sums / len(prompt))[None])[0])
            clock["guard"] += time.perf_counter() - started
            if input_score > self.guard.threshold:
                yield self.refusal
                yield Finish("input_guard", self.refusal, len(prompt), 0, input_score, None, clock)
                return
        every = self.guard.every if self.guard is not None else 1
        generated: list[int] = []
        released_text, released_tokens = "", 0
        reason = "length"
        for _ in range(params.max_new_tokens):
            started = time.perf_counter()
            token = int(sample_tokens(out.logits[:, -1].float(), params, generator)[0][0])
            if token in self.stop_ids:
                reason = "stop"
                clock["generate"] += time.perf_counter() - started
                break
            generated.append(token)
            out = self.model(
                torch.tensor([[token]], device=self.device),
                **{CACHE: getattr(out, CACHE)},
                use_cache=True,
                output_hidden_states=self.guard is not None,
            )
            clock["generate"] += time.perf_counter() - started
            if self.guard is not None:
                started = time.perf_counter()
                sums += self._layer_sums(out.hidden_states, every_position=False)
                halted = len(generated) % every == 0 and self._crosses(sums, len(prompt) + len(generated))
                clock["guard"] += time.perf_counter() - started
                if halted:
                    yield self._halted(released_text, len(prompt), len(generated), input_score, clock)
                    return
            if len(generated) % every == 0:
                piece = self._text(generated)[len(released_text) :]
                released_text, released_tokens = released_text + piece, len(generated)
                if piece:
                    yield piece
        if self.guard is not None and released_tokens < len(generated):
            started = time.perf_counter()
            halted = self._crosses(sums, len(prompt) + len(generated))
            clock["guard"] += time.perf_counter() - started
            if halted:
                yield self._halted(released_text, len(prompt), len(generated), input_score, clock)
                return
        piece = self.tokenizer.decode(generated, skip_special_tokens=True)[len(released_text) :]
        if piece:
            yield piece
        yield Finish(reason, released_text + piece, len(prompt), len(generated), input_score, None, clock)

    @staticmethod
    def _halted(released: str, prompt_tokens: int, generated: int, input_score, clock: dict) -> Finish:
        """The output guard's halt at the check after the last generated token."""
        return Finish("output_guard", released, prompt_tokens, generated, input_score, generated - 1, clock)

    def _layer_sums(self, hidden_states, every_position: bool) -> torch.Tensor:
        """(L*H,) float32 sum over the given positions of the guard's layers' hidden states (empty without a guard)."""
        if self.guard is None:
            return torch.zeros(0)
        states = [hidden_states[layer][0].float() for layer in self.guard.layers]
        return torch.cat([s.sum(0) if every_position else s[-1] for s in states]).cpu()

    def _crosses(self, sums: torch.Tensor, count: int) -> bool:
        return float(self.guard.probe.scores((sums / count)[None])[0]) > self.guard.threshold

    def _text(self, ids: list[int]) -> str:
        """The decoded text, without a trailing partial character (a byte-level token may end mid-character)."""
        return self.tokenizer.decode(ids, skip_special_tokens=True).rstrip("\ufffd")


@dataclass(frozen=True)
class Replies:
    """Replies to a list of prompts, in order, and for each why the guard blocked it (None: it did not) and the
    generated token at which the output guard halted it (None: it did not; empty: no guard)."""

    texts: list[str]
    blocked: list[str | None]
    halted_at: list[int | None] = field(default_factory=list)


class GuardedReplies:
    """Greedy replies through a `GuardedGenerator`, one conversation at a time, keeping the time it took."""

    def __init__(self, model, tokenizer, guard: Guard):
        self.generator = GuardedGenerator(model, tokenizer, guard)
        self.seconds = {"generate": 0.0, "guard": 0.0}
        self.counts = {"answers": 0, "input_guard": 0, "output_guard": 0}

    def replies(self, prompts: Sequence[Sequence], max_new_tokens: int, progress: str | bool = "") -> Replies:
        """Each prompt (a list of messages) answered greedily; the released text, and the guard's verdict."""
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
        texts, blocked, halted_at = [], [], []
        for messages in tqdm(prompts, desc=f"guarded {progress}", disable=not progress, unit="prompt"):
            finish = self.generator.complete([{"role": m.role, "content": m.content} for m in messages], params)
            for part, seconds in finish.seconds.items():
                self.seconds[part] += seconds
            self.counts["answers"] += 1
            self.counts[finish.reason] = self.counts.get(finish.reason, 0) + 1
            texts.append(finish.text)
            blocked.append(finish.reason if finish.blocked else None)
            halted_at.append(finish.halted_at)
        return Replies(texts, blocked, halted_at)

    def timing(self) -> dict:
        """Seconds spent generating and guarding, the guard's share of generation time, and the counts by outcome."""
        overhead = self.seconds["guard"] / self.seconds["generate"] if self.seconds["generate"] else 0.0
        return {"seconds": dict(self.seconds), "overhead": overhead, "counts": dict(self.counts)}
