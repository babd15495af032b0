"""The typed result of measuring a model's robustness: everything the findings, the section
and the figures read, and nothing they would have to recompute (no model, no attack)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from audit.robustness.base import AttackResult
from audit.robustness.diagnostics import Diagnostic
from audit.robustness.evaluate import AttackStats, Curve
from audit.robustness.ops import Norm

__all__ = ["Gallery", "Meter", "RobustnessEvaluation", "Stage"]


@dataclass
class Stage:
    """Model evaluations and seconds spent by one stage of the check."""

    name: str
    evaluations: int
    seconds: float


@dataclass
class Gallery:
    """Adversarial examples to show: clean and adversarial inputs (K, ...) with the model's
    probabilities, the attack that found each, and what is needed to label them."""

    norm: Norm
    eps: float
    clean: Tensor
    adv: Tensor
    proba_clean: Tensor
    proba_adv: Tensor
    attacks: list[str]
    classes: list[str]
    features: list[str]
    image: bool

    def __len__(self) -> int:
        return int(self.clean.shape[0])

    def label(self, proba: Tensor) -> tuple[str, float]:
        """The predicted class of ``proba`` (shortened to 10 characters) and its probability."""
        k = int(proba.argmax())
        name = self.classes[k]
        return (name if len(name) <= 10 else name[:9] + "…"), float(proba[k])


@dataclass
class RobustnessEvaluation:
    """What the robustness check measured on ``samples`` samples.

    Per norm (``"linf"``, ``"l2"``; only the norms with epsilons): the robust accuracy
    ``curves``, the ``headline`` eps of the suite and the diagnostics, the ``suites``' results
    (norms where the suite ran), and the ``escalated`` black-box results (norms where the
    escalation ran). ``escalation_stats`` are the escalation's APGD-DLR totals per norm.
    """

    clean_accuracy: float
    samples: int
    curves: dict[Norm, Curve] = field(default_factory=dict)
    headline: dict[Norm, float] = field(default_factory=dict)
    suites: dict[Norm, list[AttackResult]] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    escalated: dict[Norm, list[AttackResult]] = field(default_factory=dict)
    escalation_stats: list[tuple[Norm, AttackStats]] = field(default_factory=list)
    corruptions: dict[str, list[float]] = field(default_factory=dict)
    severities: list[int] = field(default_factory=list)
    gallery: Gallery | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    evaluations: int = 0
    bounds: tuple[float, float] = (0.0, 1.0)
    kind: str = "image"
    card_metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def triggered(self) -> list[Diagnostic]:
        """The diagnostics that triggered, in report order."""
        return [d for d in self.diagnostics if d.triggered]


class Meter:
    """Counts model evaluations, marks stages and collects what was skipped, into an
    evaluation being measured."""

    def __init__(self, ev: RobustnessEvaluation) -> None:
        self.ev = ev
        self._mark = (0, time.perf_counter())

    def count(self, evaluations: int) -> None:
        self.ev.evaluations += evaluations

    def stage(self, name: str) -> None:
        """Record the evaluations and time spent since the previous stage."""
        ev, t = self._mark
        now = time.perf_counter()
        self.ev.stages.append(Stage(name, self.ev.evaluations - ev, now - t))
        self._mark = (self.ev.evaluations, now)

    def skip(self, items: list[tuple[str, str]]) -> None:
        """Record attacks or corruptions not run, each (what, reason) once."""
        for item in items:
            if item not in self.ev.skipped:
                self.ev.skipped.append(item)
