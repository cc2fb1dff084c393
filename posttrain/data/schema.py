"""Schema validation: one decoded JSON object -> one typed record (see DESIGN.md, "Data schemas").

`parse_record` checks everything a stage will rely on and raises `DataError` naming the exact field
(`messages[2].role`, `chosen[0].content`, `label`), so a bad line in a large file can be fixed without hunting.

Schemas:
- `sft`: `{"messages": [...]}` with at least one assistant message -> `SFTExample`.
- `preference`: `{"prompt", "chosen", "rejected"}` -> `PreferencePair`.
- `kto`: `{"prompt", "completion", "label": bool}` -> `BinaryFeedback`.
- `rl`: `{"prompt", "verifier", "answer"?, "tests"?, ...}` -> `RLTask`; other keys go into `metadata`. The verifier
  must be a known name, and the fields it reads (`posttrain.rewards.route.REQUIRED_FIELDS`: `answer` for `math`,
  `tests` for `code`, ...) must be there and non-empty, or every completion would score 0 without a word.

A plain string is accepted for a prompt (one user message) and for chosen/rejected/completion (one assistant
message). Unknown extra keys are ignored, except in `rl`, where they are kept as metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from posttrain.data.errors import DataError
from posttrain.rewards.route import KNOWN_VERIFIERS, REQUIRED_FIELDS
from posttrain.types import ROLES, BinaryFeedback, Message, PreferencePair, RLTask, SFTExample, Source

SCHEMAS = ("sft", "preference", "kto", "rl")

_RL_KEYS = ("prompt", "verifier", "answer", "tests")

_TYPE_NAMES = {
    type(None): "null",
    bool: "bool",
    int: "int",
    float: "float",
    str: "string",
    list: "list",
    dict: "object",
}


def parse_record(obj: Any, schema: str, source: Source) -> SFTExample | PreferencePair | BinaryFeedback | RLTask:
    """Validate one decoded JSON object against `schema` and build its typed record, or raise DataError."""
    parser = _PARSERS.get(schema)
    if parser is None:
        raise ValueError(f"unknown schema {schema!r}; expected one of: {', '.join(SCHEMAS)}")
    if not isinstance(obj, dict):
        raise DataError(source, "<record>", f"expected a JSON object, got {type_name(obj)}")
    return parser(obj, source)


def type_name(value: Any) -> str:
    """The JSON-flavoured name of a value's type, for "expected X, got Y" messages."""
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _short(value: Any, limit: int = 40) -> str:
    """`repr(value)`, cut to `limit` characters so one huge field cannot flood an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _require(obj: dict, key: str, field: str, source: Source) -> Any:
    """`obj[key]`, or a DataError saying the field is missing."""
    if key not in obj:
        raise DataError(source, field, "missing required field")
    return obj[key]


def _text(value: Any, field: str, source: Source) -> str:
    """A string with visible content, else a DataError (wrong type or empty)."""
    if not isinstance(value, str):
        raise DataError(source, field, f"expected a string, got {type_name(value)}")
    if not value.strip():
        raise DataError(source, field, "empty content (empty or whitespace-only string)")
    return value


def _message(value: Any, field: str, source: Source) -> Message:
    """One `{"role", "content"}` object; other keys (e.g. `name`) are ignored."""
    if not isinstance(value, dict):
        raise DataError(source, field, f"expected a message object with 'role' and 'content', got {type_name(value)}")
    role = _require(value, "role", f"{field}.role", source)
    if not isinstance(role, str):
        raise DataError(source, f"{field}.role", f"expected a string, got {type_name(role)}")
    if role not in ROLES:
        raise DataError(source, f"{field}.role", f"unknown role {_short(role)}; allowed roles: {', '.join(ROLES)}")
    content = _text(_require(value, "content", f"{field}.content", source), f"{field}.content", source)
    return Message(role, content)


def _messages(obj: dict, key: str, source: Source, shorthand_role: str | None = None) -> tuple[Message, ...]:
    """A non-empty list of messages under `key`; a plain string becomes one `shorthand_role` message."""
    value = _require(obj, key, key, source)
    if isinstance(value, str) and shorthand_role is not None:
        return (Message(shorthand_role, _text(value, key, source)),)
    if not isinstance(value, list):
        expected = "a list of messages or a string" if shorthand_role else "a list of messages"
        raise DataError(source, key, f"expected {expected}, got {type_name(value)}")
    if not value:
        raise DataError(source, key, "empty list: expected at least one message")
    return tuple(_message(m, f"{key}[{i}]", source) for i, m in enumerate(value))


def _with_assistant(messages: tuple[Message, ...], key: str, source: Source) -> tuple[Message, ...]:
    """`messages`, checked to hold an assistant turn, since only assistant tokens carry the loss."""
    if not any(m.role == "assistant" for m in messages):
        raise DataError(source, key, "no assistant message: at least one is needed to train on")
    return messages


def _parse_sft(obj: dict, source: Source) -> SFTExample:
    """`{"messages": [...]}` -> SFTExample."""
    messages = _with_assistant(_messages(obj, "messages", source), "messages", source)
    return SFTExample(messages=messages, source=source)


def _parse_preference(obj: dict, source: Source) -> PreferencePair:
    """`{"prompt", "chosen", "rejected"}` -> PreferencePair."""
    prompt = _messages(obj, "prompt", source, "user")
    chosen = _with_assistant(_messages(obj, "chosen", source, "assistant"), "chosen", source)
    rejected = _with_assistant(_messages(obj, "rejected", source, "assistant"), "rejected", source)
    return PreferencePair(prompt=prompt, chosen=chosen, rejected=rejected, source=source)


def _parse_kto(obj: dict, source: Source) -> BinaryFeedback:
    """`{"prompt", "completion", "label"}` -> BinaryFeedback; the label must be a JSON boolean, not 0/1."""
    prompt = _messages(obj, "prompt", source, "user")
    completion = _with_assistant(_messages(obj, "completion", source, "assistant"), "completion", source)
    label = _require(obj, "label", "label", source)
    if not isinstance(label, bool):
        raise DataError(source, "label", f"expected true or false, got {type_name(label)} {_short(label)}")
    return BinaryFeedback(prompt=prompt, completion=completion, label=label, source=source)


def _parse_rl(obj: dict, source: Source) -> RLTask:
    """`{"prompt", "verifier", "answer"?, "tests"?, ...}` -> RLTask; unknown keys become metadata."""
    prompt = _messages(obj, "prompt", source, "user")
    verifier = _require(obj, "verifier", "verifier", source)
    if not isinstance(verifier, str) or not verifier.strip():
        got = type_name(verifier) if not isinstance(verifier, str) else "an empty string"
        raise DataError(source, "verifier", f"expected a verifier name such as 'math' or 'code', got {got}")
    _check_verifier_fields(obj, verifier, source)
    metadata = {k: v for k, v in obj.items() if k not in _RL_KEYS}
    return RLTask(
        prompt=prompt,
        verifier=verifier,
        answer=obj.get("answer"),
        tests=obj.get("tests"),
        metadata=metadata,
        source=source,
    )


def _check_verifier_fields(obj: dict, verifier: str, source: Source) -> None:
    """A DataError for an unknown verifier, or for a field it reads that is missing, null or empty."""
    if verifier not in KNOWN_VERIFIERS:
        raise DataError(source, "verifier", f"unknown verifier {_short(verifier)}; known: {', '.join(KNOWN_VERIFIERS)}")
    for field in REQUIRED_FIELDS.get(verifier, ()):
        value = _field(obj, field)
        if value is None:
            raise DataError(source, field, f"required by verifier '{verifier}'")
        if _is_empty(value):
            raise DataError(source, field, f"empty, but verifier '{verifier}' needs it")


def _is_empty(value: Any) -> bool:
    """A blank string, or an empty list or object (0 and false are values)."""
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, list | dict) and not value


def _field(obj: dict, dotted: str) -> Any:
    """The value at a dotted path ("entry.answer"), or None when any step is missing or not an object."""
    value: Any = obj
    for key in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


_PARSERS: dict[str, Callable[[dict, Source], Any]] = {
    "sft": _parse_sft,
    "preference": _parse_preference,
    "kto": _parse_kto,
    "rl": _parse_rl,
}
