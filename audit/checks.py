"""The Check protocol and the registry of checks, by name, for ``--checks``.

A check is one class: it declares ``name``, ``title``, a ``Params`` dataclass of its settings
(every field has a default; ``audit.toml``'s ``[checks.NAME]`` table overrides them), optional
``quick`` overrides for ``--quick``, and implements ``run(subject) -> Section``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from audit.errors import ConfigError, UsageError
from audit.plugins import import_plugins
from audit.result import Section
from audit.subject import Subject

# Modules that register checks when imported, in report order. A new area adds its module here.
_CHECK_MODULES = [
    "audit.performance",
    "audit.saliency.check",
    "audit.surrogate.check",
    "audit.robustness.check",
    "audit.fairness.check",
]


@dataclasses.dataclass
class NoParams:
    """A check without settings."""


class Check(ABC):
    """One audit check. Subclasses set the class variables and implement :meth:`run`."""

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str] = ""
    Params: ClassVar[type[Any]] = NoParams
    quick: ClassVar[dict[str, Any]] = {}

    def __init__(self, params: Any | None = None) -> None:
        self.params = params if params is not None else self.Params()

    def applies(self, subject: Subject) -> str | None:
        """``None`` when the check can run on ``subject``, else the reason it is skipped."""
        return None

    @abstractmethod
    def run(self, subject: Subject) -> Section:
        """Run the check and return its section (status is set by the runner)."""

    def section(self, **kwargs: Any) -> Section:
        """A Section pre-filled with this check's name, title and parameters."""
        kwargs.setdefault("params", dataclasses.asdict(self.params))
        return Section(check=self.name, title=self.title, **kwargs)


_REGISTRY: dict[str, type[Check]] = {}


def register(cls: type[Check]) -> type[Check]:
    """Class decorator adding a check to the registry under ``cls.name``."""
    if not dataclasses.is_dataclass(cls.Params):
        raise TypeError(f"{cls.__name__}.Params must be a dataclass")
    _REGISTRY[cls.name] = cls
    return cls


def all_checks() -> dict[str, type[Check]]:
    """Registered checks by name, in report order."""
    import_plugins(_CHECK_MODULES)
    order = {name: i for i, name in enumerate(_REGISTRY)}
    return dict(sorted(_REGISTRY.items(), key=lambda kv: order[kv[0]]))


def get_check(name: str) -> type[Check]:
    """The check called ``name``; :class:`UsageError` lists the known names otherwise."""
    checks = all_checks()
    if name not in checks:
        raise UsageError(f"unknown check {name!r}; available checks: {', '.join(checks)}")
    return checks[name]


def make_params(cls: type[Check], overrides: Mapping[str, Any] | None, quick: bool,
                where: str = "audit.toml") -> Any:
    """Build ``cls.Params`` from defaults, ``--quick`` overrides and user overrides.

    Unknown keys and values of the wrong type raise :class:`ConfigError` naming the key.
    """
    fields = {f.name: f for f in dataclasses.fields(cls.Params)}
    hints = typing.get_type_hints(cls.Params)
    values: dict[str, Any] = {}
    if quick:
        values.update(cls.quick)
    for key, value in (overrides or {}).items():
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise ConfigError(f"{where}: unknown key {key!r} in [checks.{cls.name}]; known keys: "
                              f"{known}")
        values[key] = _coerce(value, hints[key], f"{where}: [checks.{cls.name}] {key}")
    return cls.Params(**values)


def _coerce(value: Any, hint: Any, where: str) -> Any:
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
                return _coerce(value, arg, where)
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
        return [_coerce(v, inner, where) for v in value]
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
