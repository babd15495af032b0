"""Which attacks the robustness check runs, as data.

:data:`SUITE` lists the default attack suite of every norm, in run order; an entry whose
class lacks a norm is left out of that norm's suite. :data:`EXTRA_ATTACKS` holds attacks a user
can add with the check's ``extra_attacks`` setting. The escalation (when the diagnostics
suspect gradient masking) takes the suite's first black-box attack of the norm.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from audit.robustness.apgd import APGD
from audit.robustness.base import Attack
from audit.robustness.evaluate import CurveConfig
from audit.robustness.foolbox_attacks import CarliniWagner, DeepFool, HopSkipJump
from audit.robustness.mifgsm import MIFGSM
from audit.robustness.ops import NORM_LABEL, Norm
from audit.robustness.pgd import FGSM, PGD
from audit.robustness.square import Square

if TYPE_CHECKING:
    from audit.robustness.params import RobustnessParams

__all__ = ["EXTRA_ATTACKS", "SUITE", "AttackSpec", "curve_config", "escalation_attacks",
           "suite_attacks"]

Skipped = list[tuple[str, str]]


@dataclass(frozen=True)
class AttackSpec:
    """One attack of the suite: its class, its name (``{norm}`` becomes the norm's label;
    ``labels`` overrides it per norm), fixed constructor ``options``, ``budget`` options read
    from the check's settings (constructor argument -> settings field), whether it draws from
    the suite's random generator, and the reason listed when its class lacks a norm (none:
    left out silently)."""

    cls: type[Attack]
    label: str
    options: Mapping[str, Any] = field(default_factory=dict)
    budget: Mapping[str, str] = field(default_factory=dict)
    seeded: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    missing: str = ""

    def name(self, norm: Norm) -> str:
        return self.labels.get(norm, self.label).format(norm=NORM_LABEL[norm])

    def build(self, norm: Norm, settings: RobustnessParams, bounds: tuple[float, float],
              generator: torch.Generator | None, suffix: str = "") -> Attack:
        """The attack for ``norm`` with the settings' budgets."""
        kwargs = {**self.options, **{k: getattr(settings, v) for k, v in self.budget.items()}}
        if self.seeded:
            kwargs["generator"] = generator
        return self.cls(norm=norm, bounds=bounds, name=self.name(norm) + suffix,
                        budget=settings.budget(), **kwargs)


SUITE: tuple[AttackSpec, ...] = (
    AttackSpec(FGSM, "FGSM-{norm}", labels={"l2": "FGM-{norm}"}),
    AttackSpec(PGD, "PGD-{norm}", budget={"steps": "suite_steps"}, seeded=True),
    AttackSpec(APGD, "APGD-CE-{norm}", {"loss": "ce"}, {"steps": "suite_steps"}, seeded=True),
    AttackSpec(APGD, "APGD-DLR-{norm}", {"loss": "dlr"}, {"steps": "suite_steps"}, seeded=True),
    AttackSpec(DeepFool, "DeepFool-{norm}"),
    AttackSpec(CarliniWagner, "CW-{norm}", budget={"steps": "cw_steps"}),
    AttackSpec(Square, "Square-{norm}", budget={"queries": "square_queries"}, seeded=True,
               missing="our Square attack implements L-inf only; HopSkipJump covers L2 "
                       "without gradients"),
    AttackSpec(HopSkipJump, "HopSkipJump-{norm}", budget={"steps": "hsj_steps"}),
)
"""The default suite, in run order."""

EXTRA_ATTACKS: dict[str, AttackSpec] = {
    "mifgsm": AttackSpec(MIFGSM, "MI-FGSM-{norm}", budget={"steps": "suite_steps"}),
}
"""Attacks the ``extra_attacks`` setting can add to the suite, by key."""


def suite_attacks(norm: Norm, settings: RobustnessParams, bounds: tuple[float, float],
                  generator: torch.Generator | None, num_classes: int
                  ) -> tuple[list[Attack], Skipped]:
    """The suite of ``norm`` (default attacks, then the settings' extra ones) and the attacks
    left out with their reasons; every seeded attack shares ``generator``, in order."""
    specs = [*SUITE, *(EXTRA_ATTACKS[k] for k in settings.extra_attacks)]
    attacks: list[Attack] = []
    skipped: Skipped = []
    for spec in specs:
        if norm not in spec.cls.norms:
            if spec.missing:
                skipped.append((spec.name(norm), spec.missing))
            continue
        attack = spec.build(norm, settings, bounds, generator)
        why = attack.applies(num_classes)
        if why:
            skipped.append((attack.default_name(), why))
        else:
            attacks.append(attack)
    return attacks, skipped


def curve_config(settings: RobustnessParams, num_classes: int) -> tuple[CurveConfig, Skipped]:
    """The curve's budget: FMN steps and the confirming APGD losses with their restarts."""
    bounded: list[tuple[str, int]] = [("ce", settings.bounded_restarts_ce)]
    skipped: Skipped = []
    dlr = APGD(loss="dlr")
    why = dlr.applies(num_classes)
    if why:
        skipped.append((dlr.name, why))
    else:
        bounded.append(("dlr", settings.bounded_restarts_dlr))
    return CurveConfig(minimal_steps=settings.minimal_steps, bounded_steps=settings.bounded_steps,
                       bounded=tuple(bounded), batch_size=settings.batch_size,
                       budget=(settings.attack_evaluations, settings.attack_seconds)), skipped


def escalation_attacks(norm: Norm, settings: RobustnessParams, bounds: tuple[float, float],
                       generator: torch.Generator | None, num_classes: int
                       ) -> tuple[Attack | None, Attack | None]:
    """The attacks that do not trust the cross-entropy gradient: APGD-DLR with every curve
    restart (None when DLR does not apply) and the suite's first black-box attack of the norm
    (None when it has none)."""
    dlr: Attack | None = APGD(
        norm=norm, loss="dlr", steps=settings.bounded_steps,
        restarts=settings.bounded_restarts_ce + settings.bounded_restarts_dlr, bounds=bounds,
        generator=generator, name=f"APGD-DLR-{NORM_LABEL[norm]} (escalation)",
        budget=settings.budget())
    if dlr is not None and dlr.applies(num_classes):
        dlr = None
    free = next((s for s in SUITE if s.cls.role == "black-box" and norm in s.cls.norms), None)
    return dlr, (free.build(norm, settings, bounds, generator, " (escalation)")
                 if free is not None else None)
