"""Cross-checks: rules that read several sections of one audit, and the card, together.

Each check measures one area; a cross-check asks whether the areas and the card agree: does a
number the card claims lie within the interval this audit measured, do the surrogate's rules
rest on the region saliency flags as a shortcut. A cross-check is one class: it declares
``name`` and ``title`` and implements :meth:`CrossCheck.run`, which reads the result model
only (sections, card, data description), so it also runs on a saved result.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from audit.plugins import import_plugins
from audit.result import Cell, Finding, Section, Table

_MODULES = ["audit.crosscheck.claims", "audit.crosscheck.regions"]
CROSSCHECK = "crosscheck"
"""The section's name; ``--checks a,b,crosscheck`` asks for it with an explicit selection."""


@dataclass
class Audited:
    """What a cross-check reads: the sections, the card and the data description."""

    sections: Sequence[Section]
    card: dict[str, Any]
    data: dict[str, Any]
    model: dict[str, Any] = field(default_factory=dict)

    def section(self, check: str) -> Section | None:
        """The section of ``check`` when it ran (not skipped, not errored)."""
        return next((s for s in self.sections
                     if s.check == check and s.status not in ("skipped", "error")), None)


@dataclass
class CrossResult:
    """What one cross-check found: findings, and rows of its table (``None``: no table)."""

    findings: list[Finding] = field(default_factory=list)
    table: Table | None = None
    summary: str = ""


class CrossCheck(ABC):
    """One rule across sections; subclasses set ``name``, ``title`` and implement ``run``."""

    name: ClassVar[str]
    title: ClassVar[str]

    @abstractmethod
    def run(self, audited: Audited) -> CrossResult | None:
        """The result, or ``None`` when the sections it needs did not run."""


_REGISTRY: dict[str, type[CrossCheck]] = {}


def register(cls: type[CrossCheck]) -> type[CrossCheck]:
    """Class decorator adding a cross-check to the registry under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def all_cross_checks() -> dict[str, type[CrossCheck]]:
    """Registered cross-checks by name."""
    import_plugins(_MODULES)
    return dict(_REGISTRY)


def cross_check_section(audited: Audited) -> Section | None:
    """The ``crosscheck`` section: every cross-check that applies; ``None`` when none does."""
    results = [(cls, r) for cls in all_cross_checks().values()
               if (r := cls().run(audited)) is not None]
    if not results:
        return None
    findings = [f for _, r in results for f in r.findings]
    tables = [r.table for _, r in results if r.table is not None]
    summary = " ".join(r.summary for _, r in results if r.summary)
    return Section(
        check=CROSSCHECK, title="Cross-checks: the card and the sections against each other",
        summary=summary, findings=findings, tables=tables,
        metrics={f"{cls.name}.findings": float(len(r.findings)) for cls, r in results},
        reading=("Each check above measures one property; these rules compare them. Card "
                 "claims: every number the card states is compared with the interval this "
                 "audit measured on the same data (a claim outside it in the unfavourable "
                 "direction is a finding). Surrogate against saliency: whether the global "
                 "surrogate's rules rest on the region where saliency found a shortcut."))


def row(*cells: Cell) -> list[Cell]:
    """A table row (typed helper)."""
    return list(cells)
