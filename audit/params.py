"""Typed settings from plain mappings: one parser for every settings dataclass (check ``Params``,
training configs), so ``audit.toml``, the command line and JSON all fail the same way, with a
:class:`ConfigError` naming the key."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from audit.errors import ConfigError

T = TypeVar("T")


def parse_dataclass(cls: type[T], values: Mapping[str, Any], where: str, table: str,
                    base: Mapping[str, Any] | None = None) -> T:
    """``cls(**base, **values)`` with every value of ``values`` checked against its type hint.

    Unknown keys and values of the wrong type raise :class:`ConfigError` naming ``where`` (the
    file or "command line"), the ``table`` (``[checks.saliency]``) and the key; ``base``
    (already trusted values, e.g. ``--quick`` overrides) is not re-checked.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = dict(base or {})
    for key, value in values.items():
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise ConfigError(f"{where}: unknown key {key!r} in {table}; known keys: {known}")
        out[key] = coerce(value, hints[key], f"{where}: {table} {key}")
    return cls(**out)


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a simple type hint (int, float, bool, str, list[...], unions)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in args:
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {', '.join(map(repr, args))}, got "
                              f"{value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {type(value).__name__}")
        inner = args[0] if args else Any
        return [coerce(v, inner, where) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {type(value).__name__}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value
