"""Stage configs: one flat, frozen dataclass per stage, filled from defaults, YAML, flags and `key=value` overrides.

Precedence, lowest first: the dataclass defaults, `--config file.yaml`, `--field value` flags, then `key=value`
arguments. Unknown keys and values of the wrong type are errors that name the key (and the file, for YAML).

A key that was renamed (a config class's `RENAMED = {"old": "new"}`, a ClassVar) is still read under its old name,
with a deprecation warning, so that the same key means the same thing in every stage without breaking old configs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import types
import typing
import warnings
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message names the key (and the file, for YAML)."""


def option(default: Any, help: str) -> Any:
    """A config field with its default and the one-line help that `--help` shows."""
    return dataclasses.field(default=default, metadata={"help": help})


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


BOOL_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _coerce(value: Any, kind: Any, key: str, where: str) -> Any:
    """Check (and gently convert) a YAML- or command-line value against the field's type."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        return None if value is None else _coerce(value, options[0], key, where)
    if kind is bool:
        value = BOOL_WORDS.get(value.lower(), value) if isinstance(value, str) else value
        if isinstance(value, bool):
            return value
    elif kind in (float, int):
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            with contextlib.suppress(ValueError):
                value = kind(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or value == int(value)):
            return kind(value)
    elif kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, (list, tuple)):
            return tuple(str(v).strip() for v in items if str(v).strip())
    else:
        return value
    raise ConfigError(f"{where}: {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` with the value read as YAML (so `lr=1e-4` is a float and `lora=true` a bool)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    value = yaml.safe_load(raw) if raw.strip() else ""
    if isinstance(value, bool) and raw.strip().lower() not in ("true", "false"):
        value = raw.strip()  # YAML 1.1's on/off/yes/no: a word for a str key (decontaminate=off), else a bool word
    return key.strip().replace("-", "_"), value


def build_config(
    cls: type[T], yaml_path: str | None = None, values: dict[str, Any] | None = None, where: str = "command line"
) -> T:
    """A `cls` from its defaults, then the YAML file, then `values` (flags and overrides; errors name `where`)."""
    kinds = _field_types(cls)
    merged: dict[str, Any] = {}
    layers = []
    if yaml_path:
        loaded = yaml.safe_load(Path(yaml_path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{yaml_path}: expected a mapping of config keys, got {type(loaded).__name__}")
        layers.append((loaded, yaml_path))
    layers.append((values or {}, where))
    renamed = getattr(cls, "RENAMED", {})
    for layer, where in layers:
        for key, value in layer.items():
            if key in renamed and renamed[key] in layer:
                raise ConfigError(f"{where}: {key!r} is the old name of {renamed[key]!r}; give one of them")
            if key in renamed:
                warnings.warn(
                    f"{where}: config key {key!r} is deprecated, use {renamed[key]!r}", FutureWarning, stacklevel=2
                )
                key = renamed[key]
            if key not in kinds:
                raise ConfigError(f"{where}: unknown config key {key!r} for {cls.__name__}; known: {', '.join(kinds)}")
            merged[key] = _coerce(value, kinds[key], key, where)
    return cls(**merged)


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """`--config`, one `--field` flag per config field (with its help), and trailing `key=value` overrides."""
    parser.add_argument("--config", help="a YAML file of config values")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, applied last")
    kinds = _field_types(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = kinds[f.name]
        help_text = f"{f.metadata.get('help', '')} (default: {f.default!r})"
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, default=None, type=str, metavar=f.name.upper(), help=help_text)
    for old in getattr(cls, "RENAMED", {}):
        parser.add_argument("--" + old.replace("_", "-"), dest=f"renamed:{old}", default=None, help=argparse.SUPPRESS)


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """Build the config from parsed arguments: YAML, then flags, then `key=value` overrides."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given if isinstance(given, bool) else parse_override(f"{f.name}={given}")[1]
    for old in getattr(cls, "RENAMED", {}):
        if getattr(args, f"renamed:{old}", None) is not None:
            values[old] = parse_override(f"{old}={getattr(args, f'renamed:{old}')}")[1]
    values.update(parse_override(o) for o in args.overrides)
    return build_config(cls, args.config, values)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain types only (tuples become lists), ready for YAML or JSON."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def save_config(config: Any, path: Path) -> None:
    """Write the resolved config as YAML."""
    from posttrain.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
