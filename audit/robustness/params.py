"""Settings of the robustness check, and how norms and epsilons are named in the report."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from audit.budget import Budget
from audit.errors import ConfigError
from audit.robustness.corruptions import CORRUPTIONS
from audit.robustness.ops import NORM_LABEL, NORMS, Norm
from audit.robustness.suite import EXTRA_ATTACKS
from audit.subject import Subject

__all__ = ["NORMS", "NORM_LABEL", "QUICK", "RobustnessParams", "default_eps", "eps_key",
           "eps_scale", "epsilons", "headline_eps", "range_width", "units"]


QUICK: dict[str, Any] = {
    "max_samples": 200, "minimal_steps": 20, "bounded_restarts_ce": 3,
    "bounded_restarts_dlr": 1, "suite_samples": 16, "suite_steps": 20,
    "square_queries": 150, "hsj_steps": 3, "cw_steps": 20, "severities": [1, 3, 5],
    "gallery": 4, "attack_evaluations": 5000, "attack_seconds": 60.0}
"""``--quick`` overrides."""


@dataclass
class RobustnessParams:
    """Settings of the robustness check (``[checks.robustness]`` in ``audit.toml``)."""

    quick: ClassVar[dict[str, Any]] = QUICK
    sample_caps: ClassVar[dict[str, str]] = {
        "max_samples": "samples attacked (robust accuracy curves) and corrupted",
        "suite_samples": "samples attacked by the full suite at the headline epsilon"}
    scaled: ClassVar[dict[str, int]] = {
        "max_samples": 64, "minimal_steps": 10, "bounded_steps": 5, "bounded_restarts_ce": 1,
        "suite_samples": 8, "suite_steps": 10, "square_queries": 50, "hsj_steps": 1,
        "cw_steps": 10}
    """Budget fields shrunk, down to these floors, for a model costlier than the defaults
    are sized for (:mod:`audit.cost`)."""

    linf_eps: list[float] | None = None  # L-inf budgets (default: the card's)
    l2_eps: list[float] | None = None  # L2 budgets (default: the card's)
    headline_linf: float | None = None  # eps of the suite and diagnostics
    headline_l2: float | None = None  # L2 eps of the suite and diagnostics
    max_samples: int = 1000  # seeded subset of the data above this
    batch_size: int = 256  # attack batch size (bounds memory)
    minimal_steps: int = 30  # FMN steps for minimal perturbations
    bounded_steps: int = 10  # APGD steps per restart
    bounded_restarts_ce: int = 8  # APGD-CE restarts
    bounded_restarts_dlr: int = 1  # APGD-DLR restarts
    suite_samples: int = 32  # samples attacked by the full suite
    suite_steps: int = 50  # steps of the suite's PGD/APGD
    square_queries: int = 400  # Square attack query budget
    hsj_steps: int = 4  # HopSkipJump iterations
    cw_steps: int = 30  # Carlini-Wagner steps
    attack_evaluations: int = 20000
    """Forward passes per sample one attack call may use; past it the attack stops and
    reports the best adversarials it saw (a budget finding says so)."""
    attack_seconds: float = 600.0
    """Wall time one attack may use over the whole check (all batches and epsilons)."""
    eps_units: Literal["card", "range"] = "card"
    """Units of linf_eps/l2_eps/headline_* and of the card's robustness epsilons: card (the
    card's input range, e.g. 0..255) or range (fractions of that range: 8/255 means 8 on a
    0..255 model)."""
    extra_attacks: list[str] = field(default_factory=list)
    """Attacks added to the suite after the default ones, by key (e.g. mifgsm; the keys of
    audit.robustness.suite.EXTRA_ATTACKS)."""
    protocol: Literal["suite", "autoattack"] = "suite"
    """suite: this tool's attacks only; autoattack: also AutoAttack's standard protocol
    (APGD-CE, APGD-T, FAB-T, Square 5000) on every sample, reported beside the suite's."""
    autoattack_every_eps: bool = False  # AutoAttack at every eps, not only the headline
    corruptions: list[str] = field(default_factory=lambda: list(CORRUPTIONS))
    """Common corruptions to apply."""
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    """Corruption severities (1-5)."""
    gallery: int = 6  # adversarial examples shown
    escalate: bool = True  # re-attack with DLR/black-box when unreliable
    fragile_low: float = 0.95  # robust/clean ratio below this at some eps: low finding
    fragile_medium: float = 0.75
    """Robust/clean ratio below this at some eps: medium, or high within the card's threat
    model."""
    card_gap: float = 0.02  # robust accuracy this far below the card's
    corruption_severity: int = 3  # severity judged for findings
    corruption_low: float = 0.05  # accuracy drop above this: low finding
    corruption_medium: float = 0.10  # accuracy drop above this: medium finding
    unreliable_severity: Literal["info", "low", "medium", "high", "critical"] = "high"
    """Severity of the unreliable finding."""
    single_step_margin: float = 0.02  # FGSM beating PGD by this: masking
    stall_share: float = 0.5  # share not helped by more steps
    unbounded_min: float = 0.98  # unbounded success rate expected
    blackbox_margin: float = 0.02  # black-box beating white-box by this
    flat_share: float = 0.2  # share with zero gradients: flat
    noisy_share: float = 0.5  # share with noisy loss surface

    def __post_init__(self) -> None:
        unknown = [a for a in self.extra_attacks if a not in EXTRA_ATTACKS]
        if unknown:
            raise ConfigError(f"[checks.robustness] extra_attacks: unknown attack "
                              f"{unknown[0]!r}; known: {', '.join(EXTRA_ATTACKS)}")
        if self.eps_units not in ("card", "range"):
            raise ConfigError(f"[checks.robustness] eps_units: {self.eps_units!r}; use card "
                              "or range")
        if self.attack_evaluations < 1 or not self.attack_seconds > 0:
            raise ConfigError("[checks.robustness] attack_evaluations and attack_seconds "
                              "must be positive")

    def budget(self) -> Budget:
        """A fresh budget for one attack (each attack spends its own time)."""
        return Budget(self.attack_evaluations, self.attack_seconds)

    def recorded(self) -> dict[str, Any]:
        """The settings as the section records them. ``extra_attacks`` is left out while
        empty, and the protocol settings while the protocol is the suite, so the reports of
        the default suite read as before the settings existed."""
        out = asdict(self)
        if not out["extra_attacks"]:
            del out["extra_attacks"]
        if out["protocol"] == "suite":  # the default reports read as before the setting
            del out["protocol"], out["autoattack_every_eps"]
        return out


def eps_key(e: float) -> str:
    """How an epsilon appears in metric names: ``robust_accuracy_linf_0.1``."""
    return f"{e:g}"


def _scaled(e: float, scale: float) -> float:
    """``e`` in input units; rounded to 9 digits so 8/255 of 255 reads 8, not 7.999999."""
    return float(e) if scale == 1.0 else round(float(e) * scale, 9)


def range_width(subject: Subject) -> float:
    """Width of the card's input range (1 when it is empty)."""
    lo, hi = subject.card.input.range
    return float(hi - lo) or 1.0


def units(p: RobustnessParams, subject: Subject) -> str:
    """Which units the card and settings give epsilons in (``robustness.eps_units`` in the
    card, else the setting)."""
    card = subject.card.robustness or {}
    unit = card.get("eps_units", p.eps_units)
    if unit not in ("card", "range"):
        raise ConfigError(f"card robustness.eps_units: {unit!r}; use card or range")
    return str(unit)


def eps_scale(p: RobustnessParams, subject: Subject) -> float:
    """What a given epsilon is multiplied by to be in the model's input units."""
    return range_width(subject) if units(p, subject) == "range" else 1.0


def default_eps(norm: Norm, subject: Subject, scale: float = 1.0) -> list[float]:
    """Epsilons from the card's ``robustness`` field (times ``scale``), else a scale-aware
    default (fractions of the input range)."""
    key = f"{norm}_eps"
    card = subject.card.robustness or {}
    if isinstance(card.get(key), list) and card[key]:
        return [_scaled(e, scale) for e in card[key]]
    width = range_width(subject)
    if norm == "linf":
        rel = [1 / 255, 2 / 255, 4 / 255, 8 / 255] if subject.data.kind == "image" else \
            [0.01, 0.02, 0.05, 0.1]
        return [round(width * r, 6) for r in rel]
    d = math.sqrt(max(int(subject.data.x[0].numel()), 1))
    return [round(width * d * r, 6) for r in (0.005, 0.01, 0.02, 0.05)]


def epsilons(p: RobustnessParams, subject: Subject) -> dict[Norm, list[float]]:
    """The positive epsilons of each norm, sorted: the settings', else the defaults."""
    k = eps_scale(p, subject)
    given: dict[Norm, list[float] | None] = {"linf": p.linf_eps, "l2": p.l2_eps}
    eps: dict[Norm, list[float]] = {}
    for nm in NORMS:
        values = given[nm]
        eps[nm] = [_scaled(e, k) for e in values] if values is not None \
            else default_eps(nm, subject, k)
    return {nm: sorted(float(e) for e in eps[nm] if e > 0) for nm in NORMS}


def headline_eps(p: RobustnessParams, norm: Norm, eps: list[float], scale: float = 1.0
                 ) -> float:
    """The epsilon of the suite and diagnostics: the setting (times ``scale``), else the
    middle reported one."""
    h = p.headline_linf if norm == "linf" else p.headline_l2
    return _scaled(h, scale) if h is not None else eps[len(eps) // 2]
