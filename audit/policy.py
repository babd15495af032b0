"""The severity policy: what each severity means, and the kind of every finding.

A finding's severity says how much it matters for the model's fitness for the use its card
states. Every finding belongs to one :class:`FindingKind`, declared next to the code that
raises it (``KIND = kind("robustness.fragile.{norm}.{eps}", Category.EXPOSURE, "...")``);
its :class:`Category` bounds the severity it may take, so that a limit of an explanation
method can never fail a model, and a contradicted card claim can never pass as a footnote.
``audit config --policy`` and the README print the table
(:func:`audit.config.docs.policy_markdown`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from audit.result import SEVERITIES, Finding, Severity

MEANING: dict[Severity, str] = {
    Severity.CRITICAL: "The model must not be used: its output cannot be trusted at all for "
                       "the stated use.",
    Severity.HIGH: "A property a deployer must fix, or accept in writing, before the model is "
                   "used as its card states.",
    Severity.MEDIUM: "A weakness to know before deploying: outside the card's stated use or "
                     "threat model, or a gap with real but limited effect.",
    Severity.LOW: "Worth noting; does not change whether the model is fit for its stated use. "
                  "Limits of an explanation or test method are at most low.",
    Severity.INFO: "Context: what was measured, skipped or could not be assessed.",
}
"""What each severity means for the model's fitness (the policy's first table)."""


class Category(StrEnum):
    """What a finding is about; each category bounds the severities it may take."""

    DEFECT = "defect"
    CLAIM = "claim"
    EXPOSURE = "exposure"
    METHOD = "method"
    COVERAGE = "coverage"

    @property
    def severities(self) -> tuple[Severity, Severity]:
        """The lowest and highest severity a finding of this category may have."""
        return _BOUNDS[self]

    @property
    def meaning(self) -> str:
        """One sentence on what findings of this category are about."""
        return _CATEGORY_MEANING[self]


_BOUNDS: dict[Category, tuple[Severity, Severity]] = {
    Category.DEFECT: (Severity.LOW, Severity.CRITICAL),
    Category.CLAIM: (Severity.MEDIUM, Severity.HIGH),
    Category.EXPOSURE: (Severity.INFO, Severity.MEDIUM),
    Category.METHOD: (Severity.INFO, Severity.LOW),
    Category.COVERAGE: (Severity.INFO, Severity.HIGH),
}

_CATEGORY_MEANING: dict[Category, str] = {
    Category.DEFECT: "The model misbehaves within its stated use: a shortcut, a fairness gap "
                     "on a named group, a threat the card claims to withstand.",
    Category.CLAIM: "A number in the card (or a robustness claim) that this audit's "
                    "measurement contradicts beyond its interval.",
    Category.EXPOSURE: "A weakness outside the card's stated use or threat model (attacks it "
                       "does not claim to resist, corruptions, weak classes, calibration).",
    Category.METHOD: "A limit of an explanation or test method (unfaithful surrogate, "
                     "insensitive saliency); it says nothing about the model itself.",
    Category.COVERAGE: "What the audit could not assess: skipped or failed checks, too little "
                       "data, evaluations that may overstate robustness.",
}


@dataclass(frozen=True)
class FindingKind:
    """One family of findings: its id pattern, category and meaning.

    ``pattern`` is a finding id with ``{placeholders}`` for the parts that vary
    (``"fairness.four-fifths.{group}"``); calling the kind builds a :class:`Finding`
    whose severity is checked against the category's bounds.
    """

    pattern: str
    category: Category
    meaning: str
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = re.split(r"\{[a-z_]+\}", self.pattern)
        object.__setattr__(self, "_regex",
                           re.compile(".+".join(re.escape(p) for p in parts) + r"\Z"))

    def matches(self, finding_id: str) -> bool:
        """Whether ``finding_id`` is one of this kind's ids."""
        return self._regex.match(finding_id) is not None

    def __call__(self, severity: Severity, title: str, detail: str, *,
                 evidence: dict[str, Any] | None = None, recommendation: str = "",
                 **parts: object) -> Finding:
        """A finding of this kind; ``parts`` fill the pattern's placeholders."""
        lo, hi = self.category.severities
        if not lo.rank <= severity.rank <= hi.rank:
            raise ValueError(f"{self.pattern}: a {self.category} finding is {lo}..{hi}, "
                             f"not {severity}")
        fid = self.pattern.format(**parts)
        if not self.matches(fid):
            raise ValueError(f"{fid!r} does not match {self.pattern!r}")
        return Finding(id=fid, severity=severity, title=title, detail=detail,
                       evidence=dict(evidence or {}), recommendation=recommendation,
                       category=self.category.value)

    def clamp(self, severity: Severity) -> Severity:
        """``severity`` moved into this kind's bounds (for severities set by the user)."""
        lo, hi = self.category.severities
        return SEVERITIES[min(max(severity.rank, lo.rank), hi.rank)]


_KINDS: dict[str, FindingKind] = {}


def kind(pattern: str, category: Category, meaning: str) -> FindingKind:
    """Declare (once) and return the kind of findings with ids like ``pattern``."""
    known = _KINDS.get(pattern)
    new = FindingKind(pattern, category, meaning)
    if known is not None and known != new:
        raise ValueError(f"finding kind {pattern!r} declared twice, differently")
    return _KINDS.setdefault(pattern, new)


def kinds() -> list[FindingKind]:
    """Every declared kind, by id (import the checks first to see them all)."""
    return sorted(_KINDS.values(), key=lambda k: k.pattern)


def kind_of(finding_id: str) -> FindingKind | None:
    """The declared kind whose pattern matches ``finding_id`` (the most specific one)."""
    hits = [k for k in _KINDS.values() if k.matches(finding_id)]
    return max(hits, key=lambda k: len(k.pattern.split("{")[0]), default=None)


CHECK_ERROR = kind("{check}.error", Category.COVERAGE,
                   "A check raised an error; the audit is incomplete until it runs (high).")
CHECK_CRASHED = kind("{check}.crashed", Category.COVERAGE,
                     "A check crashed the process it ran in; its results are missing (high).")
CHECK_BUDGET = kind("{check}.budget", Category.COVERAGE,
                    "An attack or explainer stopped at its budget (evaluations per sample or "
                    "wall time): its numbers cover only what it finished (medium; high when "
                    "nothing of the check finished).")
CHECK_BUDGET_SCALED = kind(
    "{check}.budget-scaled", Category.COVERAGE,
    "The model costs more per sample than the check's defaults are sized for, so its budgets "
    "(samples, steps, restarts) were shrunk to fit, down to floors: the numbers have wider "
    "intervals and the attacks are weaker than the defaults' (info).")
CHECK_SKIPPED = kind("{check}.skipped", Category.COVERAGE,
                     "A check that was asked for does not apply to this model or data.")
