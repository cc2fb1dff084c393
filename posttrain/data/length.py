"""Token-length checks: a record longer than `max_length` after rendering is an error naming its file and line.

`check_prompt_lengths` is the RL stages' check: a prompt is measured exactly as the sampler will feed it
(`render_prompt`: the chat template with the generation prompt appended), before any model is loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from posttrain.data.errors import DataError
from posttrain.render import TemplateError, render_completion, render_messages, render_prompt
from posttrain.types import BinaryFeedback, PreferencePair, RLTask, SFTExample, Source

_UNKNOWN = Source("<memory>", 0)
logger = logging.getLogger("posttrain.data")


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


def check_prompt_lengths(
    tasks: Sequence[RLTask], tokenizer: PreTrainedTokenizerBase, max_prompt_length: int, *, skip_invalid: bool = False
) -> tuple[list[RLTask], int]:
    """The tasks whose rendered prompt fits in `max_prompt_length`, and how many were skipped.

    Without `skip_invalid` the first prompt that does not fit raises DataError (`path:line: field 'prompt': ...`,
    with its length); with it, such tasks are dropped, counted, and the first is logged."""
    kept, skipped = [], []
    for task in tasks:
        try:
            _check_prompt(task, tokenizer, max_prompt_length)
        except DataError as err:
            if not skip_invalid:
                raise
            skipped.append(err)
        else:
            kept.append(task)
    if skipped:
        logger.warning("skipped %d RL task(s) whose prompt is too long; first: %s", len(skipped), skipped[0])
    return kept, len(skipped)


def _check_prompt(task: RLTask, tokenizer: PreTrainedTokenizerBase, max_prompt_length: int) -> None:
    """Raise DataError if the task's prompt, rendered for sampling, is longer than `max_prompt_length`."""
    source = task.source or _UNKNOWN
    try:
        n_tokens = len(render_prompt(tokenizer, task.prompt))
    except TemplateError as err:
        raise DataError(source, "<template>", str(err)) from err
    if n_tokens > max_prompt_length:
        raise DataError(
            source,
            "prompt",
            f"prompt is {n_tokens} tokens once rendered for sampling, longer than max_prompt_length {max_prompt_length}",
        )
