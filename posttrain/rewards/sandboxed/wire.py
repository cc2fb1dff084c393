"""Tagged JSON: the only values that cross between the candidate's sandbox and the tests' sandbox.

`encode(value)` gives one line of JSON (no newline inside); `decode(line)` gives the value back, or raises
`WireError`. Only these exact types cross (a subclass is refused, so no rigged `__eq__` or `__hash__` can ride
along, and decoding never runs code the sender chose):

| value | on the wire |
|---|---|
| None, bool, int, str | JSON's own |
| float | a JSON number with a `.` or an exponent; nan, inf, -inf as `{"float": "nan"}` and so on |
| list | a JSON array |
| tuple, set, frozenset | `{"tuple": [...]}`, `{"set": [...]}`, `{"frozenset": [...]}` |
| dict | `{"dict": [[key, value], ...]}` (keys of any type above that is hashable) |
| bytes | `{"bytes": "<hex>"}` |

Every JSON object is a tag: exactly one key from the table. Anything else (an unknown tag, a bare NaN literal, a
duplicate key, nesting deeper than MAX_DEPTH, an int of more than Python's 4300 digits, an unhashable set
element) is a `WireError`. `LineReader` reads newline-framed messages from a pipe, at most MAX_LINE_BYTES each.
The standard library only: this file runs inside the sandbox (`-I -S`), and os/json are bound at import, so a
program that later rebinds `os.write` or `json.dumps` does not change what this module does.
"""

from __future__ import annotations

import math
from json import JSONDecoder, dumps
from os import read as _read
from os import write as _write

MAX_DEPTH = 64  # nesting of lists, tuples, dicts and sets
MAX_LINE_BYTES = 4 << 20  # one message; a longer one is refused, not buffered
_CHUNK = 1 << 16


class WireError(ValueError):
    """A value that may not cross, or a message that is not well-formed tagged JSON."""


def _reject_constant(name: str) -> None:
    raise WireError(f"bare {name} is not allowed; non-finite floats are tagged")


def _pairs(pairs: list) -> dict:
    keys = [key for key, _ in pairs]
    if len(keys) != 1:
        raise WireError(f"a tag object has exactly one key, got {len(keys)}")
    return {keys[0]: pairs[0][1]}


_DECODER = JSONDecoder(object_pairs_hook=_pairs, parse_constant=_reject_constant)
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _encode_float(value: float, depth: int) -> object:
    if math.isfinite(value):
        return value
    return {"float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


def _items(values, depth: int) -> list:
    return [_to_json(item, depth + 1) for item in values]


_ENCODERS = {  # exact type -> its JSON form; looked up by type(value), so a subclass is not found
    type(None): lambda value, depth: None,
    bool: lambda value, depth: value,
    int: lambda value, depth: value,
    str: lambda value, depth: value,
    float: _encode_float,
    list: _items,
    tuple: lambda value, depth: {"tuple": _items(value, depth)},
    set: lambda value, depth: {"set": _items(value, depth)},
    frozenset: lambda value, depth: {"frozenset": _items(value, depth)},
    dict: lambda value, depth: {"dict": [_items(pair, depth) for pair in value.items()]},
    bytes: lambda value, depth: {"bytes": value.hex()},
}


def _to_json(value: object, depth: int = 0) -> object:
    if depth > MAX_DEPTH:
        raise WireError(f"nested deeper than {MAX_DEPTH}")
    encoder = _ENCODERS.get(type(value))
    if encoder is None:
        raise WireError(f"a {type(value).__name__} cannot cross; allowed: {', '.join(t.__name__ for t in _ENCODERS)}")
    return encoder(value, depth)


def encode(value: object) -> str:
    """One line of tagged JSON for `value`, or WireError when a type outside the table occurs in it."""
    try:
        return dumps(_to_json(value), ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except (ValueError, RecursionError) as err:  # ValueError: an int of more than 4300 digits
        raise WireError(f"cannot encode: {err}") from None


def _hashable(values: list, what: str) -> list:
    for value in values:
        try:
            hash(value)
        except TypeError:
            raise WireError(f"a {type(value).__name__} cannot be a {what}") from None
    return values


def _from_tag(tag: str, body: object, depth: int) -> object:
    if tag == "float" and body in _NON_FINITE:
        return _NON_FINITE[body]
    if tag == "bytes" and type(body) is str:
        try:
            return bytes.fromhex(body)
        except ValueError:
            raise WireError("bad hex in bytes") from None
    if type(body) is not list:
        raise WireError(f"bad body for tag {tag!r}")
    items = [_from_json(item, depth + 1) for item in body]
    if tag == "tuple":
        return tuple(items)
    if tag in ("set", "frozenset"):
        return (set if tag == "set" else frozenset)(_hashable(items, "set element"))
    if tag == "dict" and all(type(pair) is list and len(pair) == 2 for pair in items):
        return dict(zip(_hashable([key for key, _ in items], "dict key"), [value for _, value in items], strict=True))
    raise WireError(f"bad body for tag {tag!r}")


def _from_json(value: object, depth: int) -> object:
    if depth > MAX_DEPTH:
        raise WireError(f"nested deeper than {MAX_DEPTH}")
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is list:
        return [_from_json(item, depth + 1) for item in value]
    (tag, body) = next(iter(value.items()))  # a dict: _pairs made sure it has one key
    if tag not in ("float", "bytes", "tuple", "set", "frozenset", "dict"):
        raise WireError(f"unknown tag {tag[:40]!r}")
    return _from_tag(tag, body, depth)


def decode(line: str | bytes) -> object:
    """The value of one line of tagged JSON; WireError for anything but the table's forms."""
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
        value, end = _DECODER.raw_decode(text.strip())
        if end != len(text.strip()):
            raise WireError("trailing data after the value")
        return _from_json(value, 0)
    except WireError:
        raise
    except (ValueError, RecursionError, MemoryError) as err:  # bad JSON or UTF-8, too deep, too many digits
        raise WireError(f"malformed message: {str(err)[:200]}") from None


def send(fd: int, value: object) -> None:
    """Write `value` as one line to `fd` (blocking until all of it is written)."""
    data = memoryview((encode(value) + "\n").encode("ascii"))
    while data:
        data = data[_write(fd, data) :]


class LineReader:
    """Newline-framed messages from a pipe: `next()` gives one line's bytes, EOFError at the end of the stream."""

    def __init__(self, fd: int, max_bytes: int = MAX_LINE_BYTES):
        self.fd, self.max_bytes, self.buffer = fd, max_bytes, bytearray()

    def next(self) -> bytes:
        """The next line without its newline; WireError when it would exceed `max_bytes`."""
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 1]
                return line
            if len(self.buffer) > self.max_bytes:
                raise WireError(f"a message longer than {self.max_bytes} bytes")
            chunk = _read(self.fd, _CHUNK)
            if not chunk:
                raise EOFError("the other side closed the pipe")
            self.buffer += chunk
