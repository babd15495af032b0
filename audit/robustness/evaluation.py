"""The typed result of measuring a model's robustness: everything the findings, the section
and the figures read, and nothing they would have to recompute (no model, no attack)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from audit.robustness.autoattack import AutoAttackResult
from audit.robustness.base import AttackResult
from audit.robustness.diagnostics import Diagnostic
from audit.robustness.evaluate import AttackStats, Curve
from audit.robustness.ops import Norm

__all__ = ["CertifiedBound", "Gallery", "Meter", "ProtocolAccuracy", "RobustnessEvaluation",
           "Stage"]


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
class ProtocolAccuracy:
    """Robust accuracy at one norm and eps under another attack protocol than our suite
    (e.g. ``key="autoattack"``, ``title="AutoAttack (standard)"``), on ``samples`` samples.
    ``correct``: per-sample robustness in the order of the evaluation's ``indices`` (None
    when not recorded). The section reports it as ``robust_accuracy_<key>_<norm>_<eps>``
    with its interval, and the trust box names it."""

    key: str
    title: str
    norm: Norm
    eps: float
    accuracy: float
    samples: int
    correct: np.ndarray | None = None


@dataclass
class CertifiedBound:
    """A certified lower bound: accuracy ``accuracy`` of certified-correct samples at L2
    ``radius`` (randomized smoothing with noise ``sigma``, each certificate holding with
    probability at least ``1 - alpha``), on ``samples`` samples. Shown in the trust box."""

    radius: float
    accuracy: float
    samples: int
    sigma: float
    alpha: float = 0.001


@dataclass(frozen=True)
class BudgetStop:
    """An attack its budget stopped: on ``unfinished`` of the ``samples`` it ran on it
    reports the best adversarials seen before the stop; ``reason``: evaluations or time."""

    attack: str
    norm: str
    unfinished: int
    samples: int
    reason: str


@dataclass
class RobustnessEvaluation:
    """What the robustness check measured on ``samples`` samples.

    Per norm (``"linf"``, ``"l2"``; only the norms with epsilons): the robust accuracy
    ``curves``, the ``headline`` eps of the suite and the diagnostics, the ``suites``' results
    (norms where the suite ran), and the ``escalated`` black-box results (norms where the
    escalation ran). ``escalation_stats`` are the escalation's APGD-DLR totals per norm.

    Per-sample outcomes (for paired comparisons, recorded when known): ``correct`` the
    clean correctness of each evaluated sample, ``indices`` their rows in the data (sorted),
    ``data_size`` and ``data_sha256`` the data's. Optional results of other protocols shown
    in the trust box when present: ``protocols`` (e.g. AutoAttack standard) and
    ``certified`` (certified lower bounds). ``autoattack``: the stages of AutoAttack's
    standard protocol per norm and eps, when ``protocol = "autoattack"`` ran it (its robust
    accuracies are also in ``protocols``).
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
    threat: dict[str, float] = field(default_factory=dict)
    """The card's threat model: the largest eps per norm it claims the model withstands."""
    stress_test: bool = False
    """Tabular inputs with one-hot columns: perturbed rows are not valid records."""
    eps_units: str = "card"
    """How the epsilons were given: card (input units) or range (fractions of the range)."""
    correct: np.ndarray | None = None
    indices: np.ndarray | None = None
    data_size: int = 0
    data_sha256: str = ""
    protocols: list[ProtocolAccuracy] = field(default_factory=list)
    certified: list[CertifiedBound] = field(default_factory=list)
    autoattack: list[AutoAttackResult] = field(default_factory=list)

    def stops(self) -> list[BudgetStop]:
        """The attacks their budget stopped, in run order."""
        out: list[BudgetStop] = []
        for nm, c in self.curves.items():
            out += [BudgetStop(st.name, nm, st.unfinished, st.samples, st.stopped)
                    for st in c.stats.values() if st.stopped]
        for nm, rs in [*self.suites.items(), *self.escalated.items()]:
            out += [BudgetStop(r.name, nm, int((~r.finished).sum()) if r.finished is not None
                               else len(r), len(r), r.stopped) for r in rs if r.stopped]
        out += [BudgetStop(st.name, nm, st.unfinished, st.samples, st.stopped)
                for nm, st in self.escalation_stats if st.stopped]
        out += [BudgetStop(f"{s.attack} (AutoAttack)", a.norm, s.unfinished, s.attacked,
                           s.stopped) for a in self.autoattack for s in a.stages if s.stopped]
        return out

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
