"""The attack suite as data, and the attack contract every attack shares (final ``__call__``:
eps validation, counting, success = misclassified and within eps)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from torch import Tensor, nn

from audit.checks import make_params
from audit.errors import ConfigError
from audit.robustness.attacks import (
    APGD,
    PGD,
    ROLES,
    Attack,
    Found,
    Norm,
    Square,
    run_batched,
)
from audit.robustness.check import RobustnessCheck
from audit.robustness.foolbox_attacks import DeepFool
from audit.robustness.params import RobustnessParams
from audit.robustness.suite import EXTRA_ATTACKS, SUITE, escalation_attacks, suite_attacks

B = (0.0, 1.0)


def names(norm: Norm, classes: int = 10, **settings: object) -> list[str]:
    attacks, _ = suite_attacks(norm, RobustnessParams(**settings), B, None, classes)  # type: ignore[arg-type]
    return [a.name for a in attacks]


def test_default_suite_per_norm() -> None:
    assert names("linf") == ["FGSM-L-inf", "PGD-L-inf", "APGD-CE-L-inf", "APGD-DLR-L-inf",
                             "DeepFool-L-inf", "Square-L-inf", "HopSkipJump-L-inf"]
    assert names("l2") == ["FGM-L2", "PGD-L2", "APGD-CE-L2", "APGD-DLR-L2", "DeepFool-L2",
                           "CW-L2", "HopSkipJump-L2"]
    _, skipped = suite_attacks("l2", RobustnessParams(), B, None, 10)
    assert [s[0] for s in skipped] == ["Square-L2"]  # CW-L-inf is left out silently


def test_binary_models_skip_dlr_under_its_family_name() -> None:
    attacks, skipped = suite_attacks("linf", RobustnessParams(), B, None, 2)
    assert "APGD-DLR-L-inf" not in [a.name for a in attacks]
    assert skipped == [("APGD-DLR", "the DLR loss needs at least 3 classes")]


def test_budgets_and_generator_come_from_the_settings() -> None:
    gen = torch.Generator()
    p = RobustnessParams(suite_steps=7, square_queries=11, hsj_steps=2, cw_steps=3)
    attacks = {a.name: a for a in suite_attacks("linf", p, (-1.0, 1.0), gen, 10)[0]}
    pgd, square = attacks["PGD-L-inf"], attacks["Square-L-inf"]
    assert isinstance(pgd, PGD) and pgd.steps == 7 and pgd.generator is gen
    assert isinstance(square, Square) and square.queries == 11 and square.generator is gen
    assert all(a.bounds == (-1.0, 1.0) for a in attacks.values())
    assert suite_attacks("l2", p, B, gen, 10)[0][5].steps == 3  # type: ignore[attr-defined]


def test_extra_attacks_are_appended_and_validated() -> None:
    assert names("linf", extra_attacks=["mifgsm"])[-1] == "MI-FGSM-L-inf"
    assert names("l2", extra_attacks=["mifgsm"])[-1] == "MI-FGSM-L2"
    with pytest.raises(ConfigError, match="extra_attacks.*'nope'.*mifgsm"):
        make_params(RobustnessCheck, {"extra_attacks": ["nope"]}, quick=False)
    assert make_params(RobustnessCheck, {"extra_attacks": ["mifgsm"]},
                       quick=True).extra_attacks == ["mifgsm"]


def test_escalation_picks_the_black_box_attack_by_role() -> None:
    p = RobustnessParams()
    dlr, free = escalation_attacks("linf", p, B, None, 10)
    assert dlr is not None and dlr.name == "APGD-DLR-L-inf (escalation)"
    assert free is not None and free.role == "black-box"
    assert free.name == "Square-L-inf (escalation)"
    dlr, free = escalation_attacks("l2", p, B, None, 2)
    assert dlr is None and free is not None and free.name == "HopSkipJump-L2 (escalation)"


def test_every_attack_declares_kind_role_and_norms() -> None:
    for spec in [*SUITE, *EXTRA_ATTACKS.values()]:
        assert spec.cls.role in ROLES and spec.cls.kind and spec.cls.norms


# ------------------------------------------------------------------------ the contract


@dataclass
class Offset(Attack, title="Offset", kind="white-box", role="iterative"):
    """Moves every input by ``scale`` times eps along +1 and says it is adversarial; forwards
    ``passes`` times with gradients."""

    scale: float = 0.5
    passes: int = 2
    norm: Norm = "linf"
    bounds: tuple[float, float] = field(default=(-10.0, 10.0), kw_only=True)

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: Tensor | None,
            x_init: Tensor | None) -> Found:
        assert eps is not None and eps.shape == (x.shape[0],)
        for _ in range(self.passes):
            xg = x.clone().requires_grad_(True)
            torch.autograd.grad(model(xg).sum(), xg)
        return Found(x + self.scale * eps[:, None], torch.ones(len(x), dtype=torch.bool))


def test_success_needs_the_point_within_eps() -> None:
    model, x, y = nn.Linear(3, 2), torch.zeros(5, 3), torch.zeros(5, dtype=torch.long)
    inside = Offset(scale=1.0)(model, x, y, eps=0.2)
    assert inside.success.all() and torch.allclose(inside.norms, torch.full((5,), 0.2))
    outside = Offset(scale=2.0)(model, x, y, eps=torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5]))
    assert not outside.success.any() and outside.eps is None  # per-sample eps: no scalar
    assert inside.eps == 0.2 and (inside.kind, inside.role) == ("white-box", "iterative")


def test_calls_are_counted_and_timed_by_the_base() -> None:
    model, x, y = nn.Linear(3, 2), torch.zeros(6, 3), torch.zeros(6, dtype=torch.long)
    r = Offset(passes=3)(model, x, y, eps=0.1)
    assert (r.evaluations, r.gradients) == (18, 18) and r.time >= 0
    joined = run_batched(Offset(passes=1), model, x, y, eps=0.1, batch_size=4)
    assert joined.evaluations == 6 and joined.role == "iterative" and len(joined) == 6


@pytest.mark.parametrize("eps", [None, -0.1, float("nan"), torch.full((4,), 0.1)])
def test_eps_is_validated(eps: object) -> None:
    with pytest.raises(ValueError):
        Offset()(nn.Linear(3, 2), torch.zeros(5, 3), torch.zeros(5, dtype=torch.long),
                 eps=eps)  # type: ignore[arg-type]


def test_warm_start_only_where_declared_and_projected() -> None:
    model, x, y = nn.Linear(3, 2), torch.zeros(5, 3), torch.zeros(5, dtype=torch.long)
    with pytest.raises(ValueError, match="x_init"):
        Offset()(model, x, y, eps=0.1, x_init=x)
    far = torch.full((5, 3), 5.0)
    r = PGD(steps=0, bounds=(-10.0, 10.0))(model, x, y, eps=0.1, x_init=far)
    assert torch.allclose(r.x_adv, torch.full((5, 3), 0.1))  # the start, projected


def test_the_contract_cannot_be_overridden() -> None:
    with pytest.raises(TypeError, match="run"):
        type("Bad", (Offset,), {"__call__": lambda self, *a, **k: None})
    with pytest.raises(TypeError, match="role"):
        type("Odd", (Offset,), {"role": "sneaky"})
    with pytest.raises(ValueError, match="linf"):
        Square(norm="l2")
    with pytest.raises(TypeError, match="role"):
        class Odder(Offset, role="sneaky"):  # type: ignore[call-arg]
            pass


def test_class_line_declarations_and_shared_keyword_fields() -> None:
    """``kind``, ``role``, ``title`` ... given in the class line become the class attributes;
    ``bounds``, ``generator`` and ``name`` are keyword fields of every attack."""

    @dataclass
    class Nudge(Offset, title="Nudge", norms=("linf",), warm_start=True):
        pass

    assert (Nudge.title, Nudge.norms, Nudge.warm_start, Nudge.kind) == (
        "Nudge", ("linf",), True, "white-box")
    assert Nudge().name == "Nudge" and Nudge(name="n").name == "n"
    assert Offset().bounds == (-10.0, 10.0) and Nudge(bounds=(0, 1)).bounds == (0, 1)
    with pytest.raises(TypeError):
        PGD("linf", 10, None, 1, True, "ce", True, True, (0.0, 1.0))  # type: ignore[misc]
    assert PGD().name == "PGD" and APGD(loss="dlr").name == "APGD-DLR"
    assert DeepFool().name == "DeepFool-L2" and DeepFool().options() == {
        "steps": 50, "candidates": 10, "overshoot": 0.02}
