"""The Check protocol and the registry of checks, by name, for ``--checks``.

A check is one class: ``class MyCheck(Check[MyParams])`` names the dataclass of its settings
(every field has a default; ``audit.toml``'s ``[checks.NAME]`` table overrides them, and its
optional ``quick`` class attribute holds the ``--quick`` overrides); the class declares
``name`` and ``title``, its docstring is the description the reference and ``audit checks``
show, and it implements ``run(subject) -> Section``.
"""

from __future__ import annotations

import dataclasses
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar, cast

from audit.errors import UsageError
from audit.params import parse_dataclass
from audit.plugins import import_plugins
from audit.result import Section
from audit.subject import Subject

# Modules that register checks when imported, in report order. A new area adds its module here.
_CHECK_MODULES = [
    "audit.performance",
    "audit.saliency.check",
    "audit.surrogate.check",
    "audit.robustness.check",
    "audit.certified.check",
    "audit.fairness.check",
    "audit.slices.check",
    "audit.drift.check",
]


@dataclasses.dataclass
class NoParams:
    """A check without settings."""


P = TypeVar("P")


class Check(ABC, Generic[P]):
    """One audit check, generic in its settings dataclass ``P`` (``Check[MyParams]``).

    Subclasses set ``name`` and ``title`` and implement :meth:`run`; ``Params`` (the settings
    class), ``quick`` (its ``--quick`` overrides) and ``description`` (the docstring's first
    paragraph) follow from the class line and the docstring unless set.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str] = ""
    Params: ClassVar[type[Any]] = NoParams
    quick: ClassVar[dict[str, Any]] = {}
    needs_labels: ClassVar[bool] = True
    """Whether the check needs the data's labels; data without labels skips it (and is the
    run's error when the check is named in ``--checks``)."""
    isolate: ClassVar[bool] = False
    """Run in a fresh process by default (:mod:`audit.isolation`): for checks whose native
    libraries could crash the audit; ``AUDIT_ISOLATE`` overrides."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Params" not in cls.__dict__:
            for base in getattr(cls, "__orig_bases__", ()):
                args = typing.get_args(base)
                if typing.get_origin(base) is Check and args and isinstance(args[0], type):
                    cls.Params = args[0]
        if "quick" not in cls.__dict__:
            cls.quick = dict(getattr(cls.Params, "quick", {}))
        if "description" not in cls.__dict__:
            doc = (cls.__doc__ or "").strip().split("\n\n")[0]
            cls.description = " ".join(doc.split())

    def __init__(self, params: P | None = None) -> None:
        self.params: P = params if params is not None else cast(P, self.Params())

    def applies(self, subject: Subject) -> str | None:
        """``None`` when the check can run on ``subject``, else the reason it is skipped. Raise
        :class:`~audit.errors.DataError` when an input only the user can give is missing: a
        check named in ``--checks`` then stops the run (exit 2); in the default selection the
        message is the skip reason."""
        return None

    @abstractmethod
    def run(self, subject: Subject) -> Section:
        """Run the check and return its section (status is set by the runner)."""

    def section(self, **kwargs: Any) -> Section:
        """A Section pre-filled with this check's name, title and parameters."""
        kwargs.setdefault("params", dataclasses.asdict(cast(Any, self.params)))
        return Section(check=self.name, title=self.title, **kwargs)


def classifier_with_data(subject: Subject) -> str | None:
    """The shared precondition of the attack-based checks: ``None`` for a classifier with at
    least 2 classes and some data, else the reason to skip."""
    if subject.card.num_classes < 2:
        return "needs a classifier with at least 2 classes"
    if len(subject.data) == 0:
        return "no data"
    return None


_REGISTRY: dict[str, type[Check[Any]]] = {}


def register(cls: type[Check[Any]]) -> type[Check[Any]]:
    """Class decorator adding a check to the registry under ``cls.name``."""
    if not dataclasses.is_dataclass(cls.Params):
        raise TypeError(f"{cls.__name__}.Params must be a dataclass")
    _REGISTRY[cls.name] = cls
    return cls


def all_checks() -> dict[str, type[Check[Any]]]:
    """Registered checks by name, in report order."""
    import_plugins(_CHECK_MODULES)
    # Report order is the order of _CHECK_MODULES, whatever imported a check module first;
    # checks registered from elsewhere (user plugins) follow in registration order.
    module_rank = {m: i for i, m in enumerate(_CHECK_MODULES)}
    arrival = {name: i for i, name in enumerate(_REGISTRY)}

    def key(item: tuple[str, type[Check[Any]]]) -> tuple[int, int]:
        name, cls = item
        return module_rank.get(cls.__module__, len(module_rank)), arrival[name]

    return dict(sorted(_REGISTRY.items(), key=key))


def get_check(name: str) -> type[Check[Any]]:
    """The check called ``name``; :class:`UsageError` lists the known names otherwise."""
    checks = all_checks()
    if name not in checks:
        raise UsageError(f"unknown check {name!r}; available checks: {', '.join(checks)}")
    return checks[name]


def make_params(cls: type[Check[Any]], overrides: Mapping[str, Any] | None, quick: bool,
                where: str = "audit.toml") -> Any:
    """Build ``cls.Params`` from defaults, ``--quick`` overrides and user overrides.

    Unknown keys and values of the wrong type raise :class:`ConfigError` naming the key.
    """
    return parse_dataclass(cls.Params, overrides or {}, where, f"[checks.{cls.name}]",
                           base=cls.quick if quick else None)
