"""Per-record length and quality checks: each takes one item and says why it fails, or None when it passes.

The checks are deliberately modest heuristics, each cheap and easy to predict:
- `length`: the question and response together have fewer than `min_words` or more than `max_words` words
  (whitespace-separated);
- `empty`: an empty question, or an empty response;
- `non_text`: fewer than 30% of the non-space characters are letters or digits (markup debris, symbol runs); math
  and code sit around 55-75%, JSON near 35%;
- `non_latin`: fewer than half the letters are Latin: a script test, standing in for "not English" without a
  language-ID model (French passes it; Greek letters in a formula are too few to matter);
- `cut_off`: the response stops inside something: an unclosed ``` code block, an unclosed `\\boxed{`, or a last
  character that opens or continues (`,` `;` `:` `(` `[` `{`);
- `repetitive`: a question or response of at least 20 word 4-grams of which fewer than half are distinct
  (a loop such as "I think I think I think ...").
"""

from __future__ import annotations

import unicodedata

from posttrain.curation.items import Item
from posttrain.text import boxed_spans

MIN_ALNUM_FRACTION = 0.3  # non_text: letters and digits among non-space characters, at least
MIN_LATIN_FRACTION = 0.5  # non_latin: Latin letters among letters, at least
OPEN_ENDINGS = ",;:([{"  # cut_off: a response whose last character is one of these stopped mid-way
REPEAT_NGRAM = 4  # repetitive: word n-grams counted
REPEAT_MIN_NGRAMS = 20  # repetitive: texts with fewer n-grams are too short to judge
MIN_DISTINCT_FRACTION = 0.5  # repetitive: distinct n-grams among all, at least


def word_count(text: str) -> int:
    """Whitespace-separated words."""
    return len(text.split())


def outside_length(item: Item, min_words: int, max_words: int) -> str | None:
    """Why the record's question and response are too short or too long, in words; None when within bounds."""
    words = word_count(item.text)
    if words < min_words:
        return f"{words} words, fewer than min_words={min_words}"
    if max_words and words > max_words:
        return f"{words} words, more than max_words={max_words}"
    return None


def empty(item: Item) -> str | None:
    """An empty question or response."""
    if not item.prompt.strip():
        return "empty question"
    if item.response is not None and not item.response.strip():
        return "empty response"
    return None


def non_text(item: Item) -> str | None:
    """Mostly symbols: too few letters and digits among the non-space characters."""
    chars = [c for c in item.text if not c.isspace()]
    fraction = sum(c.isalnum() for c in chars) / max(len(chars), 1)
    if chars and fraction < MIN_ALNUM_FRACTION:
        return f"mostly non-text: {fraction:.0%} letters or digits (at least {MIN_ALNUM_FRACTION:.0%} wanted)"
    return None


def non_latin(item: Item) -> str | None:
    """Mostly non-Latin letters, so not English."""
    letters = [c for c in item.text if c.isalpha()]
    fraction = sum(unicodedata.name(c, "").startswith("LATIN") for c in letters) / max(len(letters), 1)
    if letters and fraction < MIN_LATIN_FRACTION:
        return f"not English: {fraction:.0%} of the letters are Latin (at least {MIN_LATIN_FRACTION:.0%} wanted)"
    return None


def cut_off(item: Item) -> str | None:
    """A response that stops inside a code block, a `\\boxed{` or a sentence."""
    text = (item.response or "").rstrip()
    if not text:
        return None
    if text.count("```") % 2:
        return "cut off: an unclosed ``` code block"
    if text.count("\\boxed{") > len(boxed_spans(text)):
        return "cut off: an unclosed \\boxed{"
    if text[-1] in OPEN_ENDINGS:
        return f"cut off: ends with {text[-1]!r}"
    return None


def repetitive(item: Item) -> str | None:
    """A question or response that loops: few distinct word 4-grams."""
    for part, text in (("question", item.prompt), ("response", item.response or "")):
        words = text.lower().split()
        ngrams = [tuple(words[i : i + REPEAT_NGRAM]) for i in range(len(words) - REPEAT_NGRAM + 1)]
        if len(ngrams) < REPEAT_MIN_NGRAMS:
            continue
        distinct = len(set(ngrams)) / len(ngrams)
        if distinct < MIN_DISTINCT_FRACTION:
            return f"repeats itself: {distinct:.0%} of the {part}'s word {REPEAT_NGRAM}-grams are distinct"
    return None


QUALITY_CHECKS = {  # rule name -> check, applied in this order
    "empty": empty,
    "non_text": non_text,
    "non_latin": non_latin,
    "cut_off": cut_off,
    "repetitive": repetitive,
}
