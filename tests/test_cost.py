"""Budgets that shrink for costly models (audit.cost): FLOP counts, floors, user settings
kept, batch sizes bounded by activation memory, and the finding that says so."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from audit import cost as cost_mod
from audit.config import AuditConfig
from audit.cost import ModelCost, measure_cost, scale_params
from audit.loading import load_model
from audit.robustness.params import RobustnessParams
from audit.runner import run_audit
from audit.saliency.settings import SaliencyParams
from audit.zoo.resnet import ResNet


def test_flops_are_counted_not_timed() -> None:
    lin = nn.Linear(10, 5)
    assert measure_cost(lin, torch.rand(3, 10)).flops == 2 * 10 * 5
    conv = nn.Conv2d(3, 4, 3, padding=1)
    c = measure_cost(conv, torch.rand(1, 3, 8, 8))
    assert c.flops == 2 * 3 * 4 * 9 * 64 and c.activation_bytes == 4 * 64 * 4
    r18 = measure_cost(ResNet(4, 64).eval(), torch.rand(1, 3, 224, 224))
    assert r18.flops == pytest.approx(3.63e9, rel=0.01)  # torchvision's 1.8 GMACs
    assert r18.scale < 0.03 and "GFLOP per sample on cpu" in r18.describe()


@pytest.mark.parametrize("name", ["digits-cnn", "shapes-cnn", "adult-mlp", "shapes-vit"])
def test_bundled_models_keep_the_defaults(name: str) -> None:
    loaded = load_model(name)
    x = torch.rand(1, *loaded.card.input.shape) if loaded.card else torch.rand(1, 1)
    c = measure_cost(loaded.model, x)
    assert c.scale == 1.0 and c.batch(256) == 256
    assert scale_params(SaliencyParams(), c, set()) == (SaliencyParams(), {})


def test_scaling_respects_floors_and_user_settings() -> None:
    costly = ModelCost(flops=4e9, activation_bytes=60e6)
    params, changes = scale_params(SaliencyParams(), costly, {"ig_steps"})
    floors = SaliencyParams.scaled
    assert params.samples == floors["samples"] and changes["samples"] == (32, floors["samples"])
    assert params.ig_steps == 32 and "ig_steps" not in changes  # the user set it
    assert params.lime_samples == floors["lime_samples"]
    rob, rchanges = scale_params(RobustnessParams(), costly, set())
    assert rob.batch_size == costly.batch(256) < 256 and "batch_size" in rchanges
    assert rob.suite_samples == RobustnessParams.scaled["suite_samples"]
    mild = ModelCost(flops=2e8, activation_bytes=1e3)  # half the defaults fit
    half, _ = scale_params(SaliencyParams(), mild, set())
    assert half.samples == 16 and half.lime_samples == 200
    assert ModelCost(1e9, 1e9).batch(256) == 1  # a batch of one at the least
    quick, _ = scale_params(SaliencyParams(), costly, set(), quick=True)
    assert quick.samples == floors["samples"] // 2 < params.samples


def test_a_costly_model_says_what_was_shrunk(monkeypatch: pytest.MonkeyPatch) -> None:
    # digits-cnn made "costly" by lowering the reference: the same code path as a ResNet at
    # 224 px, at the cost of a small model
    monkeypatch.setitem(cost_mod.REFERENCE_FLOPS, "cpu", 1e5)
    result = run_audit("digits-cnn", checks=["saliency"], quick=True, seed=0)
    sec = result.sections[0]
    found = [f for f in sec.findings if f.id == "saliency.budget-scaled"]
    assert len(found) == 1 and found[0].severity.value == "info"
    changes = found[0].evidence["changes"]
    # --quick: 12 samples, shrunk to half the default's floor
    assert changes["samples"] == [12, (SaliencyParams.scaled["samples"] + 1) // 2]
    assert "scale_budgets = false" in found[0].recommendation
    plain = run_audit("digits-cnn", checks=["saliency"], quick=True, seed=0,
                      config=AuditConfig(scale_budgets=False))
    assert not any(f.id.endswith("budget-scaled") for f in plain.sections[0].findings)
