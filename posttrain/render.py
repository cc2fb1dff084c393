"""Conversations to token ids and an assistant-only loss mask, for any chat template.

The mask is derived by rendering prefixes of the conversation with the tokenizer's own template, so it needs no
`{% generation %}` markers. For assistant message i, the trained span is the text between the render of
`messages[:i]` with the generation prompt and the render of `messages[:i+1]`: the reply and its end-of-turn tokens.

This only works if each prefix render is a prefix of the next one. Templates that rewrite earlier turns (Qwen3
dropping the reasoning of past turns, for example) break that, and `TemplateError` says so instead of training on
a mask that does not match the text.

The text is cut at span boundaries and each piece is tokenized on its own, so the prompt part of a training
sequence is token for token what `render_prompt` gives the sampler: training and generation see the same ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from posttrain.types import Message, as_dicts, as_messages

Tools = Sequence[dict] | None  # JSON schemas of callable tools, as `apply_chat_template(tools=...)` takes them


class TemplateError(ValueError):
    """The chat template cannot give a reliable loss mask for this conversation."""


@dataclass(frozen=True)
class RenderedSequence:
    """Token ids and, per token, whether the loss is taken on it."""

    token_ids: tuple[int, ...]
    loss_mask: tuple[bool, ...]

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def n_trained(self) -> int:
        """How many tokens carry loss."""
        return sum(self.loss_mask)


def _template(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message], generation_prompt: bool, tools: Tools = None
) -> str:
    if not messages:
        return ""
    extra = {"tools": list(tools)} if tools else {}
    return tokenizer.apply_chat_template(
        as_dicts(messages), tokenize=False, add_generation_prompt=generation_prompt, **extra
    )


def render_text(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message | dict], generation_prompt: bool, tools: Tools = None
) -> str:
    """The chat template's text for a conversation (and the tools' JSON schemas, for templates that render them)."""
    return _template(tokenizer, as_messages(messages), generation_prompt, tools)


def _require_prefix(before: str, after: str, what: str) -> None:
    if not after.startswith(before):
        at = next(
            (i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b), min(len(before), len(after))
        )
        raise TemplateError(
            f"the chat template breaks the prefix property at {what}: rendering more messages rewrote earlier "
            f"text (first difference at character {at}: {before[at : at + 40]!r} became {after[at : at + 40]!r}). "
            "The assistant mask cannot be derived from prefix renders for this template and conversation."
        )


def _trained_spans(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message], train_from: int, tools: Tools = None
) -> tuple[list[tuple[int, int]], str]:
    """Character spans of trained assistant replies, and the render of the whole conversation."""
    spans = []
    previous = ""
    for i, message in enumerate(messages):
        current = _template(tokenizer, messages[: i + 1], False, tools)
        _require_prefix(previous, current, f"message {i} ({message.role})")
        if message.role == "assistant" and i >= train_from:
            if i == 0:
                raise TemplateError(
                    "the conversation opens with an assistant message: there is no prompt to render before it, so "
                    "the template's own text (a default system prompt, the role header) cannot be told apart from "
                    "the reply. Put a user (or system) message first."
                )
            prompt = _template(tokenizer, messages[:i], True, tools)
            _require_prefix(prompt, current, f"the generation prompt before message {i}")
            _require_prefix(previous, prompt, f"the generation prompt before message {i}")
            spans.append((len(prompt), len(current)))
        previous = current
    return spans, previous


def tokenize(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """The ids of a piece of template text, no special tokens added."""
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def render_messages(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Message | dict],
    *,
    train_from: int = 0,
    add_generation_prompt: bool = False,
    tools: Tools = None,
) -> RenderedSequence:
    """Render a conversation; assistant messages at index >= `train_from` carry loss, nothing else does. `tools`
    (JSON schemas) go to the template, for those that render them."""
    messages = as_messages(messages)
    spans, text = _trained_spans(tokenizer, messages, train_from, tools)
    if add_generation_prompt:
        full = _template(tokenizer, messages, True, tools)
        _require_prefix(text, full, "the final generation prompt")
        text = full
    ids: list[int] = []
    mask: list[bool] = []
    cursor = 0
    for start, end in spans:
        for piece, trained in ((text[cursor:start], False), (text[start:end], True)):
            piece_ids = tokenize(tokenizer, piece)
            ids += piece_ids
            mask += [trained] * len(piece_ids)
        cursor = end
    tail = tokenize(tokenizer, text[cursor:])
    return RenderedSequence(tuple(ids + tail), tuple(mask + [False] * len(tail)))


def render_prompt(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message | dict], tools: Tools = None
) -> list[int]:
    """The token ids a sampler continues from: the conversation plus the generation prompt."""
    return list(render_messages(tokenizer, messages, add_generation_prompt=True, tools=tools).token_ids)


def render_completion(
    tokenizer: PreTrainedTokenizerBase,
    prompt: Sequence[Message | dict],
    completion: Sequence[Message | dict],
) -> RenderedSequence:
    """Prompt then completion, with loss on the completion's assistant turns only (preference and KTO data)."""
    prompt = as_messages(prompt)
    return render_messages(tokenizer, (*prompt, *as_messages(completion)), train_from=len(prompt))


def show_mask(tokenizer: PreTrainedTokenizerBase, rendered: RenderedSequence, open: str = "[", close: str = "]") -> str:
    """Decoded text with trained spans bracketed: a readable check of what the loss sees."""
    out, run, run_trained = [], [], False
    for token, trained in (*zip(rendered.token_ids, rendered.loss_mask, strict=True), (None, None)):
        if trained != run_trained or token is None:
            text = tokenizer.decode(run)
            out.append(f"{open}{text}{close}" if run_trained and text else text)
            run, run_trained = [], bool(trained)
        if token is not None:
            run.append(token)
    return "".join(out)
