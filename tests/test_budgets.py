"""Every attack and explainer terminates within its budget, whatever the input range.

The watchdog runs every attack of the suite, the curve and AutoAttack's standard protocol on
a user's CNN in three input conventions (0..255, mean/std normalised, [-1, 1]) with a small
budget and asserts each returns within it, with only valid adversarials. Attacks that would
never stop are stopped; the same model in [0, 1] and in [0, 255] gets the same attack
outcomes at corresponding epsilons; stopped attacks and explainers are reported, and the
audit goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from user_models import write_image_project, write_tabular_project

from audit.budget import Budget
from audit.loading import LoadedModel, load_model
from audit.robustness.apgd import APGD
from audit.robustness.autoattack import standard_attacks
from audit.robustness.base import Attack, Found
from audit.robustness.foolbox_attacks import FMN, HopSkipJump
from audit.robustness.ops import Norm, perturbation_norms
from audit.robustness.params import RobustnessParams
from audit.robustness.suite import EXTRA_ATTACKS, SUITE
from audit.runner import run_audit

SECONDS = 4.0  # the time budget of the watchdog
EVALS = 150  # forward passes per sample
SLACK = 3.0  # one forward/backward pass beyond the deadline, on a slow CI machine


@dataclass
class Case:
    loaded: LoadedModel
    x: Tensor
    y: Tensor
    bounds: tuple[float, float]
    eps: dict[str, float]


def _case(root: Path, convention: str) -> Case:
    project = write_image_project(root / convention, convention, n_train=300, epochs=2)
    import sys

    sys.path.insert(0, str(project.root))
    try:
        loaded = load_model(project.weights, arch="mynets:Net", card=project.card)
    finally:
        sys.path.remove(str(project.root))
    data = np.load(project.test)
    x, y = torch.from_numpy(data["x"][:8]).float(), torch.from_numpy(data["y"][:8])
    lo, hi = loaded.card.input.range  # type: ignore[union-attr]
    w = hi - lo
    return Case(loaded, x, y, (lo, hi), {"linf": 8 / 255 * w, "l2": 0.5 * w})


@pytest.fixture(scope="module", params=["byte", "normalized", "signed"])
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Case:
    return _case(tmp_path_factory.mktemp("watchdog"), request.param)


def every_attack(norm: Norm, bounds: tuple[float, float]) -> list[Attack]:
    """The suite, the extra attacks, the curve's and AutoAttack's, each with a small budget."""
    settings = RobustnessParams(attack_evaluations=EVALS, attack_seconds=SECONDS)
    gen = torch.Generator().manual_seed(0)
    out = [s.build(norm, settings, bounds, gen) for s in (*SUITE, *EXTRA_ATTACKS.values())
           if norm in s.cls.norms]
    out += [FMN(norm=norm, steps=30, bounds=bounds, budget=settings.budget()),
            APGD(norm=norm, steps=10, restarts=8, bounds=bounds, generator=gen,
                 budget=settings.budget())]
    aa, _ = standard_attacks(norm, num_classes=5, sample_shape=(3, 32, 32), bounds=bounds,
                             generator=gen, budget=settings.budget)
    return out + aa


def _valid(attack: Attack, model: nn.Module, x: Tensor, y: Tensor, r: Any, eps: float | None,
           bounds: tuple[float, float]) -> None:
    """Every reported success is misclassified, within eps and within the value range."""
    ok = r.success
    if not bool(ok.any()):
        return
    xa = r.x_adv[ok]
    assert float(xa.min()) >= bounds[0] - 1e-4 and float(xa.max()) <= bounds[1] + 1e-4
    if eps is not None:
        d = perturbation_norms(xa - x[ok], attack.norm)
        assert bool((d <= eps * (1 + 1e-4) + 1e-4).all()), (attack.name, d.max(), eps)
    with torch.no_grad():
        assert bool((model(xa).argmax(1) != y[ok]).all()), attack.name


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_every_attack_returns_within_its_budget(case: Case, norm: Norm) -> None:
    model = case.loaded.model
    for attack in every_attack(norm, case.bounds):
        if attack.applies(5):
            continue
        eps = case.eps[norm]
        t0 = time.perf_counter()
        r = attack(model, case.x, case.y, eps=eps)
        took = time.perf_counter() - t0
        assert took <= SECONDS + SLACK, (attack.name, took)
        assert r.evaluations <= EVALS * len(case.x) + len(case.x), (attack.name, r.evaluations)
        assert r.finished is not None and len(r.finished) == len(case.x)
        assert (r.stopped == "") == bool(r.finished.all())
        _valid(attack, model, case.x, case.y, r, eps, case.bounds)


def test_hopskipjump_on_0_255_inputs_returns(tmp_path: Path) -> None:
    """The hang of issue 23: foolbox's HopSkipJump clips to [0, 1] whatever its bounds, so on
    0..255 inputs its step search never ended. Attacks now run in [0, 1]."""
    c = _case(tmp_path, "byte")
    for norm in ("l2", "linf"):
        attack = HopSkipJump(norm=norm, steps=2, bounds=c.bounds)  # no budget at all
        t0 = time.perf_counter()
        r = attack(c.loaded.model, c.x, c.y, eps=None)
        assert time.perf_counter() - t0 < 60
        assert r.success.float().mean() >= 0.5  # decision-based, but it finds adversarials
        _valid(attack, c.loaded.model, c.x, c.y, r, None, c.bounds)


@dataclass(kw_only=True)
class Forever(Attack, kind="white-box", role="iterative", title="Forever"):
    """Never stops on its own: random points in the ball, evaluated one after another."""

    norm: Norm = "linf"
    pause: float = 0.0

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: Tensor | None,
            x_init: Tensor | None) -> Found:
        assert eps is not None
        g = torch.Generator().manual_seed(0)
        while True:
            delta = (torch.rand(x.shape, generator=g) * 2 - 1) * eps.view(-1, 1, 1, 1)
            with torch.no_grad():
                model((x + delta).clamp(*self.bounds))
            time.sleep(self.pause)


def test_an_attack_that_never_ends_is_stopped(case: Case) -> None:
    by_evals = Forever(bounds=case.bounds, budget=Budget(evaluations=50))
    r = by_evals(case.loaded.model, case.x, case.y, eps=case.eps["linf"] * 4)
    assert r.stopped == "evaluations" and not bool(r.finished.any())  # type: ignore[union-attr]
    assert r.evaluations <= 50 * len(case.x) + len(case.x)
    _valid(by_evals, case.loaded.model, case.x, case.y, r, case.eps["linf"] * 4, case.bounds)
    budget = Budget(seconds=0.5)
    by_time = Forever(bounds=case.bounds, budget=budget, pause=0.01)
    t0 = time.perf_counter()
    r = by_time(case.loaded.model, case.x, case.y, eps=case.eps["linf"])
    assert r.stopped == "time" and time.perf_counter() - t0 < 0.5 + SLACK
    # the time budget covers every call: the next batch does not start the attack again
    r2 = by_time(case.loaded.model, case.x, case.y, eps=case.eps["linf"])
    assert r2.stopped == "time" and r2.evaluations == len(case.x)  # only the clean check


class Rescaled(nn.Module):
    """The [0, 1] model seen from 0..255 (what a user gets by moving the /255 into it)."""

    def __init__(self, inner: nn.Module, lo: float, width: float) -> None:
        super().__init__()
        self.inner, self.lo, self.width = inner, lo, width

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.inner((x - self.lo) / self.width)
        return out


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("lo,hi", [(0.0, 255.0), (-1.0, 1.0)])
def test_same_model_in_another_range_gets_the_same_outcomes(
        tmp_path_factory: pytest.TempPathFactory, norm: Norm, lo: float, hi: float) -> None:
    """Every attack at eps on the [0, 1] model and at eps * width on the same model taking
    ``lo..hi`` inputs breaks the same samples (one sample may flip on float rounding)."""
    unit = _case(tmp_path_factory.mktemp("unit"), "unit")
    w = hi - lo
    other = Rescaled(unit.loaded.model, lo, w).eval()
    x2 = lo + unit.x * w
    gen_a, gen_b = torch.Generator(), torch.Generator()
    settings = RobustnessParams()
    a_list = [s.build(norm, settings, (0.0, 1.0), gen_a) for s in SUITE if norm in s.cls.norms]
    b_list = [s.build(norm, settings, (lo, hi), gen_b) for s in SUITE if norm in s.cls.norms]
    eps = unit.eps[norm]
    for a, b in zip(a_list, b_list, strict=True):
        gen_a.manual_seed(1)
        gen_b.manual_seed(1)
        ra = a(unit.loaded.model, unit.x, unit.y, eps=eps)
        rb = b(other, x2, unit.y, eps=eps * w)
        assert int((ra.success != rb.success).sum()) <= 1, a.name
        both = ra.success & rb.success
        if bool(both.any()):  # the same perturbations, in the other units
            torch.testing.assert_close(rb.norms[both], ra.norms[both] * w, rtol=2e-2,
                                       atol=1e-3 * w)


def _section(result: Any, check: str) -> Any:
    return next(s for s in result.sections if s.check == check)


def test_stopped_attacks_are_reported_and_the_audit_goes_on(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    project = write_tabular_project(tmp_path / "tab", 2)
    monkeypatch.chdir(project.root)
    res = run_audit(str(project.weights), arch=project.arch, card=str(project.card),
                    data=str(project.test), checks=["robustness", "performance"], quick=True,
                    params={"robustness": {"attack_evaluations": 12, "max_samples": 80}})
    rob = _section(res, "robustness")
    assert rob.error is None and rob.status != "error"
    budget = [f for f in rob.findings if f.id == "robustness.budget"]
    assert len(budget) == 1 and budget[0].severity.value == "medium"
    stops = budget[0].evidence["stops"]
    assert stops and all(s["reason"] == "evaluations" for s in stops)
    names = {s["attack"] for s in stops}
    assert any("Square" in n or "HopSkipJump" in n or "APGD" in n for n in names), names
    table = next(t for t in rob.tables if "stopped" in str(t.rows))
    assert any("(stopped: evaluations budget)" in str(row[0]) for row in table.rows)
    assert "forward passes per sample" in rob.reading
    assert _section(res, "performance").status != "error"
    # with the default budget nothing stops
    res = run_audit(str(project.weights), arch=project.arch, card=str(project.card),
                    data=str(project.test), checks=["robustness"], quick=True,
                    params={"robustness": {"max_samples": 80}})
    assert not [f for f in _section(res, "robustness").findings if f.id == "robustness.budget"]


def test_stopped_explainers_are_left_out_and_reported(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    project = write_image_project(tmp_path / "img", "unit", n_train=300, epochs=2)
    monkeypatch.chdir(project.root)
    kw: dict[str, Any] = {"arch": project.arch, "card": str(project.card),
                          "data": str(project.test), "checks": ["saliency"], "quick": True}
    # LIME needs 200 evaluations per image (quick): a budget of 100 stops it alone
    res = run_audit(str(project.weights), **kw, params={"saliency": {
        "explainer_evaluations": 100, "featvis": False}})
    sal = _section(res, "saliency")
    assert sal.status != "error", sal.error
    budget = [f for f in sal.findings if f.id == "saliency.budget"]
    assert len(budget) == 1 and "LIME" in budget[0].detail
    scored = {k.split(".")[0] for k in sal.metrics if k.endswith(".gain_over_random")}
    assert "gradcam" in scored and "lime" not in scored, scored
    # a budget nothing fits in: the section says the check did not finish, the audit goes on
    res = run_audit(str(project.weights), **{**kw, "checks": ["saliency", "performance"]},
                    params={"saliency": {"explainer_seconds": 1e-6, "featvis": False}})
    sal = _section(res, "saliency")
    assert sal.status == "error" and "budget" in (sal.error or "")
    # nothing was scored: high, so the verdict fails as for an errored check
    assert [f.severity.value for f in sal.findings if f.id == "saliency.budget"] == ["high"]
    assert res.summary["status"] == "fail"
    assert _section(res, "performance").status != "error"


def test_eps_in_range_units_are_scaled_and_stated(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A 0..255 card giving L-inf epsilons as fractions of the range (eps_units = range)."""
    import json

    project = write_image_project(tmp_path / "byte", "byte", n_train=300, epochs=2)
    card = json.loads(project.card.read_text())
    card["robustness"] = {"linf_eps": [4 / 255, 8 / 255], "l2_eps": [], "eps_units": "range"}
    project.card.write_text(json.dumps(card))
    monkeypatch.chdir(project.root)
    res = run_audit(str(project.weights), arch=project.arch, card=str(project.card),
                    data=str(project.test), checks=["robustness"], quick=True,
                    params={"robustness": {"max_samples": 40, "suite_samples": 4,
                                           "corruptions": []}})
    rob = _section(res, "robustness")
    keys = sorted(k for k in rob.metrics if k.startswith("robust_accuracy_linf_")
                  and "_ci_" not in k)
    assert keys == ["robust_accuracy_linf_4", "robust_accuracy_linf_8"], keys
    assert "fractions of the range" in rob.reading and "255" in rob.reading
