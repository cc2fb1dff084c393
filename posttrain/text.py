"""Text conventions shared by sampling, rewards and evaluation: stop strings and final-answer extraction.

One module, so that what the sampler cuts, what a verifier reads as the answer and what evaluation scores are the
same thing (see `posttrain.rewards.math` for the rules a final answer must follow).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

STOP_STRINGS = ("<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>")
_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")

_BRACE = re.compile(r"\\boxed\s*\{|\{|\}")
_FINAL_LINE = re.compile(
    r"(?:\bthe\s+final\s+answer\s+is|\bthe\s+answer\s+is|\bfinal\s+answer\s*:)[ \t]*(?::[ \t]*)?([^\n]*)",
    re.IGNORECASE,
)
_MATH_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def before_stop(text: str, stop_strings: Sequence[str] = STOP_STRINGS) -> str:
    """The text before the first stop string (all of it when none occurs)."""
    cut = min((i for i in (text.find(s) for s in stop_strings) if i >= 0), default=len(text))
    return text[:cut]


def boxed_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each outermost closed `\\boxed{...}`, braces balanced, in one pass over the text."""
    spans, stack, open_boxes = [], [], 0  # stack: where the box a "{" opened starts, or -1 for a plain brace
    for match in _BRACE.finditer(text):
        if match.group() != "}":
            is_box = match.group() != "{"
            stack.append(match.start() if is_box else -1)
            open_boxes += is_box
        elif stack and (start := stack.pop()) >= 0:
            open_boxes -= 1
            if open_boxes == 0:
                spans.append((start, match.end()))
    return spans


def boxed_contents(text: str) -> list[str]:
    """The stripped contents of every closed `\\boxed{...}`, in order."""
    return [text[text.index("{", start) + 1 : end - 1].strip() for start, end in boxed_spans(text)]


def unwrap_math(answer: str) -> str:
    """`answer` without surrounding space, a trailing "." and one pair of math delimiters ($...$, \\(...\\), ...)."""
    answer = answer.strip().rstrip(".").strip()
    for left, right in _MATH_DELIMITERS:
        if answer.startswith(left) and answer.endswith(right) and len(answer) >= len(left) + len(right):
            return answer[len(left) : len(answer) - len(right)].strip()
    return answer


def final_answer_lines(text: str) -> list[str]:
    """What follows each final-answer phrase ("The answer is X", "Final answer: X") to the end of its line."""
    return [unwrap_math(m.group(1)) for m in _FINAL_LINE.finditer(text)]


def extract_answers(text: str) -> list[str]:
    """The candidate answers, in order: every box when there is one, else every final-answer line."""
    return boxed_contents(text) or final_answer_lines(text)


def has_non_ascii_digit(text: str) -> bool:
    """True for any decimal digit outside ASCII (fullwidth, Arabic-Indic, mathematical bold, ...)."""
    return any(not ch.isascii() and unicodedata.category(ch) == "Nd" for ch in text)


def follows_format(text: str) -> bool:
    """Exactly one `\\boxed{N}` with a plain number inside: the answer format the demo data teaches."""
    boxed = boxed_contents(text)
    return len(boxed) == 1 and _PLAIN_NUMBER.fullmatch(boxed[0]) is not None
