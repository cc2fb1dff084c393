"""Token ids between assistant turns, without re-encoding anything the model sampled.

Retokenisation drift, the bug multi-turn RL frameworks' users report most: decode the sampled reply, re-render the
conversation with the chat template, re-encode it, and the ids differ from those sampled (BPE merges across the
reply's edges, a newline after the end-of-turn token lost or added, the next turn's generation prompt rendered
differently), so training runs on tokens the model never produced. Here the sampled ids are kept as they are, and
only what comes after them is rendered and tokenised:

    bridge = (template text after the assistant's end-of-turn marker)
             + (the template's text for the observation messages and the next generation prompt)

both taken from the tokenizer's own template by rendering the conversation before and after the observation
(`render_text`), so the generation prompt of every later turn is the template's. A turn that did not end on the
end-of-turn token (a stop string, a length cut) gets the marker's text prepended, closing it as the template would.

Documented boundaries, where our stream and a fresh render of the finished conversation may legitimately differ
(`stream_differences` reports any other difference as well):
- after the last turn: the template's text after the final end-of-turn marker (ChatML's newline) is not appended,
  since nothing follows it;
- inside sampled turns: where the model sampled a non-canonical tokenisation of its text, the fresh render
  re-encodes it canonically (the drift itself; our stream keeps what was sampled);
- where a generation prompt ends in whitespace and the reply begins (Llama 3's `<|end_header_id|>\n\n`): the
  sampler saw the prompt tokenised alone (`\n\n` as one token), a fresh render splits it otherwise before the
  reply's first word. Same text, other ids; ours are the ones the model was conditioned on. ChatML templates
  (SmolLM2, Qwen2.5) end the generation prompt with one newline and show no such difference;
- at the other piece edges (a turn's end-of-turn token and the template text after it) every template covered by
  the tests has a special token, so no merge can cross them.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from posttrain.render import TemplateError, render_text, tokenize
from posttrain.types import Message


def end_of_turn_text(tokenizer: PreTrainedTokenizerBase) -> str:
    """The text of the token that ends an assistant turn (the tokenizer's eos, which the sampler stops on)."""
    return tokenizer.decode([tokenizer.eos_token_id], skip_special_tokens=False)


def bridge_ids(
    tokenizer: PreTrainedTokenizerBase,
    history: Sequence[Message],
    observation: Sequence[Message],
    tools: Sequence[dict] = (),
    closed: bool = True,
) -> list[int]:
    """The ids to append after an assistant turn (the last message of `history`) so that the next turn continues
    after `observation`; `closed`: the turn ended on the end-of-turn token (else its text is prepended)."""
    before = render_text(tokenizer, history, False, tools)
    after = render_text(tokenizer, [*history, *observation], True, tools)
    if not after.startswith(before):
        raise TemplateError("the chat template rewrote earlier turns when an observation was added; multi-turn "
                            "episodes need a template whose renders extend each other")  # fmt: skip
    marker = end_of_turn_text(tokenizer)
    at = before.rfind(marker)
    if at < 0:
        raise TemplateError(f"the chat template does not end assistant turns with the eos token {marker!r}")
    tail = before[at + len(marker) :] if closed else before[at:]
    return tokenize(tokenizer, tail + after[len(before) :])


@dataclass(frozen=True)
class Difference:
    """One place where two id streams differ: the spans in each and their decoded text."""

    ours: tuple[int, int]
    rendered: tuple[int, int]
    ours_text: str
    rendered_text: str


def stream_differences(
    tokenizer: PreTrainedTokenizerBase, ours: Sequence[int], rendered: Sequence[int]
) -> list[Difference]:
    """Where the ids we trained on differ from a fresh tokenisation of the rendered conversation, in order."""
    matcher = difflib.SequenceMatcher(a=list(ours), b=list(rendered), autojunk=False)
    return [
        Difference((i1, i2), (j1, j2), tokenizer.decode(ours[i1:i2]), tokenizer.decode(rendered[j1:j2]))
        for op, i1, i2, j1, j2 in matcher.get_opcodes()
        if op != "equal"
    ]
