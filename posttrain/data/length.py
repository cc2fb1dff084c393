"""Token-length checks: a record longer than `max_length` after rendering is an error naming its file and line."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from posttrain.data.errors import DataError
from posttrain.render import TemplateError, render_completion, render_messages, render_prompt
from posttrain.types import BinaryFeedback, PreferencePair, RLTask, SFTExample, Source

_UNKNOWN = Source("<memory>", 0)


def rendered_lengths(record, tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """Token count of each sequence a record renders to, keyed by the field it comes from."""
    if isinstance(record, SFTExample):
        return {"messages": len(render_messages(tokenizer, record.messages))}
    if isinstance(record, PreferencePair):
        return {
            "chosen": len(render_completion(tokenizer, record.prompt, record.chosen)),
            "rejected": len(render_completion(tokenizer, record.prompt, record.rejected)),
        }
    if isinstance(record, BinaryFeedback):
        return {"completion": len(render_completion(tokenizer, record.prompt, record.completion))}
    if isinstance(record, RLTask):
        return {"prompt": len(render_prompt(tokenizer, record.prompt))}
    raise TypeError(f"not a posttrain record: {type(record).__name__}")


def check_length(record, tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
    """Raise DataError if any rendered sequence of `record` exceeds `max_length` tokens or cannot be rendered."""
    source = record.source or _UNKNOWN
    try:
        lengths = rendered_lengths(record, tokenizer)
    except TemplateError as err:
        raise DataError(source, "<template>", str(err)) from err
    for field, n_tokens in lengths.items():
        if n_tokens > max_length:
            raise DataError(source, field, f"sample is {n_tokens} tokens, longer than max_length {max_length}")


def split_by_length(
    records: Sequence, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> tuple[list, list[DataError]]:
    """Records that fit, and one DataError for each that does not."""
    kept, errors = [], []
    for record in records:
        try:
            check_length(record, tokenizer, max_length)
        except DataError as err:
            errors.append(err)
        else:
            kept.append(record)
    return kept, errors
