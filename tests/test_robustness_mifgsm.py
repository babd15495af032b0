"""MI-FGSM: within the ball and the range, stronger than FGSM, and enabled in the check through
the ``extra_attacks`` setting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from audit.datasets import load_dataset
from audit.loading import LoadedModel
from audit.robustness.attacks import FGSM, MIFGSM, Norm, perturbation_norms
from audit.runner import run_audit


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    d = load_dataset("digits", "test")
    return d.x[:96], d.y[:96]


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 1.0)])
def test_stays_in_ball_and_range_and_success_is_exact(
        digits_loaded: LoadedModel, digits: tuple[torch.Tensor, torch.Tensor], norm: Norm,
        eps: float) -> None:
    model = digits_loaded.model.eval()
    x, y = digits
    r = MIFGSM(norm=norm, steps=10)(model, x, y, eps=eps)
    assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    assert (perturbation_norms(r.x_adv - x, norm) <= eps * (1 + 1e-5)).all()
    with torch.no_grad():
        assert torch.equal(r.success, model(r.x_adv).argmax(1) != y)
    # an early-stopped sample costs fewer than steps + 1 passes
    assert 0 < r.gradients <= 10 * len(x) and r.evaluations <= 11 * len(x)
    assert r.success_rate > FGSM(norm=norm)(model, x, y, eps=eps).success_rate


def test_leaves_the_model_alone() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4)).train()
    x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 4, (8,))
    MIFGSM(steps=3)(model, x, y, eps=0.1)
    assert model.training and all(p.grad is None for p in model.parameters())


def test_enabled_through_the_check_settings(digits_loaded: LoadedModel) -> None:
    small = {"max_samples": 40, "suite_samples": 8, "linf_eps": [0.1], "l2_eps": [],
             "corruptions": [], "hsj_steps": 1, "cw_steps": 5, "square_queries": 20,
             "gallery": 0, "minimal_steps": 5, "bounded_restarts_ce": 1, "suite_steps": 5,
             "extra_attacks": ["mifgsm"]}
    res = run_audit(digits_loaded, checks=["robustness"], seed=0, quick=True,
                    params={"robustness": small})
    sec = res.sections[0]
    assert sec.error is None, sec.error
    rows = {r[0]: r for t in sec.tables if t.id == "robustness-attacks" for r in t.rows}
    assert rows["MI-FGSM-L-inf"][1] == "white-box" and rows["MI-FGSM-L-inf"][4] == 8
    assert sec.params["extra_attacks"] == ["mifgsm"]
