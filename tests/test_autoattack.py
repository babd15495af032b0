"""AutoAttack's standard protocol: APGD-T, FAB-T and AutoAttack's Square behind the attack
contract, the cascade that runs each on the samples still robust, the robustness section's
report of it, and agreement with the reference code (pyautoattack, a dev dependency): each
attack on a small budget in the default suite, the whole standard protocol in a slow test."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from audit.errors import ConfigError
from audit.loading import LoadedModel, load_model
from audit.robustness.apgd import APGD
from audit.robustness.apgdt import APGDT, dlr_targeted_loss
from audit.robustness.autoattack import (
    AutoAttackResult,
    ProtocolStage,
    autoattack,
    run_protocol,
    standard_attacks,
)
from audit.robustness.base import Attack, AttackResult, Found
from audit.robustness.evaluate import Curve
from audit.robustness.evaluation import RobustnessEvaluation
from audit.robustness.fab import FABT
from audit.robustness.ops import perturbation_norms
from audit.robustness.params import RobustnessParams
from audit.robustness.section import metrics, robustness_section
from audit.robustness.square_aa import AASquare
from audit.runner import build_subject
from audit.stats import mcnemar_exact

Data = tuple[nn.Module, Tensor, Tensor]


def _correct(loaded: LoadedModel, n: int) -> Data:
    """The first ``n`` correctly classified test samples of a bundled model."""
    s = build_subject(loaded)
    ok = (s.data_logits.argmax(dim=1) == s.data.y).nonzero()[:, 0][:n]
    return s.model, s.data.x[ok], s.data.y[ok]


@pytest.fixture(scope="module")
def digits(digits_loaded: LoadedModel) -> Data:
    return _correct(digits_loaded, 24)


@pytest.fixture(scope="module")
def robust_digits() -> Data:
    return _correct(load_model("digits-cnn-robust"), 24)


def check_result(model: nn.Module, x: Tensor, y: Tensor, r: AttackResult, eps: float,
                 norm: str) -> None:
    """Every success is misclassified, within eps and inside the value range."""
    assert r.success.any(), "the attack should break some samples here"
    with torch.no_grad():
        pred = model(r.x_adv).argmax(dim=1)
    assert bool((pred[r.success] != y[r.success]).all())
    norms = perturbation_norms(r.x_adv - x, norm)  # type: ignore[arg-type]
    assert float(norms[r.success].max()) <= eps * (1 + 1e-5)
    assert float(r.x_adv.min()) >= 0.0 and float(r.x_adv.max()) <= 1.0


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 1.0)])
def test_apgdt_successes_are_adversarial_and_record_their_target(
        digits: Data, norm: str, eps: float) -> None:
    model, x, y = digits
    r = APGDT(norm=norm, targets=3, steps=20, generator=gen())(model, x, y, eps=eps)  # type: ignore[arg-type]
    check_result(model, x, y, r, eps, norm)
    t = r.info["target"]
    assert bool((t[r.success] >= 0).all()) and bool((t[~r.success] == -1).all())
    with torch.no_grad():
        ranked = model(x).sort(dim=1)[1]
    # each success was found while aiming at one of the 2nd..4th most likely classes
    assert all(int(t[i]) in ranked[i, -4:-1].tolist() for i in r.success.nonzero()[:, 0])


def test_apgdt_is_not_weaker_than_untargeted_apgd_with_the_same_budget(
        robust_digits: Data) -> None:
    model, x, y = robust_digits
    targeted = APGDT(norm="linf", targets=3, steps=20, generator=gen())(model, x, y, eps=0.15)
    ce = APGD(norm="linf", loss="ce", steps=20, restarts=3, generator=gen())(model, x, y,
                                                                             eps=0.15)
    t, c = targeted.success, ce.success
    assert int(c.sum()) > 0 and int(t.sum()) > 0
    # on 24 samples a count can differ by one either way: weaker only if distinguishable from
    # noise (exact McNemar on the samples one breaks and the other does not)
    only_ce, only_t = int((c & ~t).sum()), int((t & ~c).sum())
    assert only_t >= only_ce or mcnemar_exact(only_ce, only_t) > 0.05


def test_dlr_targeted_loss_is_scale_invariant_and_positive_past_the_target() -> None:
    z = torch.tensor([[3.0, 1.0, 0.5, 0.0], [0.0, 2.0, 1.0, -1.0]])
    y, t = torch.tensor([0, 1]), torch.tensor([1, 2])
    loss = dlr_targeted_loss(z, y, t)
    assert torch.allclose(dlr_targeted_loss(7 * z + 3, y, t), loss, atol=1e-6)
    assert bool((loss < 0).all())  # still classified as y
    assert float(dlr_targeted_loss(torch.tensor([[1.0, 3.0, 0.5, 0.0]]), y[:1], t[:1])) > 0
    assert APGDT().applies(3) is not None and APGDT().applies(4) is None


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 1.0)])
def test_fabt_bounded_success_is_its_minimal_norm_within_eps(digits: Data, norm: str,
                                                            eps: float) -> None:
    model, x, y = digits
    fab = FABT(norm=norm, targets=3, steps=20)  # type: ignore[arg-type]
    bounded = fab(model, x, y, eps=eps)
    check_result(model, x, y, bounded, eps, norm)
    free = fab(model, x, y)  # eps=None: every step of every target, the minimal norms
    found = free.info["minimal_norms"]
    assert torch.equal(free.success, torch.isfinite(found))
    with torch.no_grad():
        assert bool((model(free.x_adv).argmax(1)[free.success] != y[free.success]).all())
    assert torch.allclose(free.norms[free.success], found[free.success], atol=1e-6)
    # stopping at eps only skips the steps after a success within eps
    assert torch.equal(bounded.success, found <= eps)


class FromSigned(nn.Module):
    """``inner`` seen from inputs in [-1, 1]."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, z: Tensor) -> Tensor:
        out: Tensor = self.inner((z + 1) / 2)
        return out


def test_fabt_works_in_the_models_own_value_range(digits: Data) -> None:
    model, x, y = digits
    unit = FABT(norm="linf", targets=2, steps=10)(model, x, y, eps=0.1)
    signed = FABT(norm="linf", targets=2, steps=10, bounds=(-1.0, 1.0))(
        FromSigned(model), 2 * x - 1, y, eps=0.2)
    assert unit.success.any() and torch.equal(unit.success, signed.success)
    assert torch.allclose((signed.x_adv + 1) / 2, unit.x_adv, atol=1e-5)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 1.0)])
def test_square_successes_are_adversarial(digits: Data, norm: str, eps: float) -> None:
    model, x, y = digits
    r = AASquare(norm=norm, queries=300, generator=gen())(model, x, y, eps=eps)  # type: ignore[arg-type]
    check_result(model, x, y, r, eps, norm)
    again = AASquare(norm=norm, queries=300, generator=gen())(model, x, y, eps=eps)  # type: ignore[arg-type]
    assert torch.equal(r.x_adv, again.x_adv)  # seeded: the same squares


def test_square_l2_needs_an_image() -> None:
    assert AASquare.input_reason((14,), "l2") is not None
    assert AASquare.input_reason((14,), "linf") is None
    assert AASquare.input_reason((1, 8, 8), "l2") is None
    with pytest.raises(ValueError, match="5 x 5"):
        AASquare(norm="l2")(nn.Linear(14, 3), torch.rand(2, 14), torch.tensor([0, 1]), eps=0.5)


def test_standard_ensemble_follows_the_number_of_classes() -> None:
    attacks, skipped = standard_attacks("linf", num_classes=10, sample_shape=(1, 8, 8))
    assert [a.name for a in attacks] == ["APGD-CE", "APGD-T", "FAB-T", "Square"] and not skipped
    ce, apgdt, fab, square = attacks
    assert isinstance(ce, APGD) and (ce.steps, ce.restarts) == (100, 1)
    assert isinstance(apgdt, APGDT) and (apgdt.targets, apgdt.steps, apgdt.restarts) == (9, 100, 1)
    assert isinstance(fab, FABT) and (fab.targets, fab.steps) == (9, 100)
    assert isinstance(square, AASquare) and square.queries == 5000
    four, _ = standard_attacks("l2", num_classes=4, sample_shape=(3, 32, 32))
    assert [getattr(a, "targets", None) for a in four][1:3] == [3, 3]
    three, skipped = standard_attacks("l2", num_classes=3, sample_shape=(14,))
    assert [a.name for a in three] == ["APGD-CE", "FAB-T"]
    assert [s[0] for s in skipped] == ["APGD-T (AutoAttack)", "Square (AutoAttack)"]


class Recorder(Attack):
    """Wraps an attack and records the samples it was given."""

    kind = "white-box"
    role = "iterative"

    def __init__(self, inner: Attack) -> None:
        self.inner, self.name, self.norm, self.bounds = inner, inner.name, inner.norm, (0., 1.)
        self.seen: list[Tensor] = []

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: Tensor | None,
            x_init: Tensor | None) -> Found:
        self.seen.append(x)
        return self.inner.run(model, x, y, eps, x_init)


def test_protocol_attacks_only_the_samples_still_robust(robust_digits: Data) -> None:
    model, x, y = robust_digits
    y = y.clone()
    y[:2] = (y[:2] + 1) % 10  # two samples misclassified from the start
    g = gen(5)
    stages = [Recorder(APGD(norm="linf", steps=10, generator=g, name="APGD-CE")),
              Recorder(APGDT(norm="linf", targets=2, steps=10, generator=g)),
              Recorder(FABT(norm="linf", targets=2, steps=10))]
    res = run_protocol(model, x, y, list(stages), 0.15, norm="linf", seed=5, generator=g,
                       batch_size=10, keep_adv=True)
    assert res.clean_correct == len(x) - 2 and not res.robust[:2].any()
    left = res.clean_correct
    for rec, st in zip(stages, res.stages, strict=True):
        assert st.attacked == left == sum(len(s) for s in rec.seen)
        left -= st.broken
    assert int(res.robust.sum()) == left and res.robust_accuracy == left / len(x)
    assert sum(st.broken for st in res.stages) > 0
    assert res.x_adv is not None
    broken = ~res.robust & (np.arange(len(x)) >= 2)
    with torch.no_grad():
        pred = model(res.x_adv[torch.as_tensor(broken)]).argmax(1)
    assert bool((pred != y[torch.as_tensor(broken)]).all())
    again = run_protocol(model, x, y, [s.inner for s in stages], 0.15, norm="linf", seed=5,
                         generator=g, batch_size=10)
    assert np.array_equal(again.robust, res.robust)  # every batch restarts from the seed


# --------------------------------------------------------------- agreement with the reference


def _reference(name: str) -> object:
    pytest.importorskip("pyautoattack")
    import importlib

    return importlib.import_module(name)


def _ref_norm(norm: str) -> str:
    return {"linf": "Linf", "l2": "L2"}[norm]


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.15), ("l2", 1.0)])
def test_apgdt_matches_the_reference(robust_digits: Data, norm: str, eps: float) -> None:
    ref = _reference("pyautoattack.autopgd_base")
    model, x, y = robust_digits
    theirs = ref.APGDAttack_targeted(model, n_iter=20, norm=_ref_norm(norm), n_restarts=1,  # type: ignore[attr-defined]
                                     eps=eps, seed=3, n_target_classes=3).perturb(x, y)
    with torch.no_grad():
        broken = model(theirs).argmax(1) != y
    ours = APGDT(norm=norm, targets=3, steps=20, generator=gen(3))(model, x, y, eps=eps)  # type: ignore[arg-type]
    assert broken.any() and torch.equal(ours.success, broken)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.15), ("l2", 1.0)])
def test_fabt_matches_the_reference(robust_digits: Data, norm: str, eps: float) -> None:
    ref = _reference("pyautoattack.fab_pt")
    model, x, y = robust_digits
    theirs = ref.FABAttack_PT(model, norm=_ref_norm(norm), n_restarts=1, n_iter=20, eps=eps,  # type: ignore[attr-defined]
                              seed=0, targeted=True, n_target_classes=3).perturb(x, y)
    d = perturbation_norms(theirs - x, norm)  # type: ignore[arg-type]
    with torch.no_grad():
        broken = (model(theirs).argmax(1) != y) & (d <= eps)
    ours = FABT(norm=norm, targets=3, steps=20)(model, x, y, eps=eps)  # type: ignore[arg-type]
    assert broken.any() and torch.equal(ours.success, broken)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.15), ("l2", 1.0)])
def test_square_matches_the_reference(robust_digits: Data, norm: str, eps: float) -> None:
    ref = _reference("pyautoattack.square")
    model, x, y = robust_digits
    theirs = ref.SquareAttack(model, norm=_ref_norm(norm), n_queries=300, eps=eps, p_init=0.8,  # type: ignore[attr-defined]
                              n_restarts=1, seed=1, resc_schedule=False).perturb(x, y)
    ours = AASquare(norm=norm, queries=300, generator=gen(1))(model, x, y, eps=eps)  # type: ignore[arg-type]
    with torch.no_grad():
        broken = model(theirs).argmax(1) != y
    assert broken.any() and torch.equal(ours.success, broken)
    # the same squares, point for point (the reference returns the clean input where it failed)
    assert torch.allclose(ours.x_adv[broken], theirs[broken], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 1.0)])
def test_standard_protocol_agrees_with_pyautoattack(digits_loaded: LoadedModel, norm: str,
                                                    eps: float) -> None:
    """64 test samples of digits-cnn, seed 0: the same robust accuracy within 0.5 points
    (here: the same samples robust, both ways)."""
    aa = _reference("pyautoattack")
    s = build_subject(digits_loaded)
    x, y = s.data.x[:64], s.data.y[:64]
    ref = aa.AutoAttack(s.model, norm=_ref_norm(norm), eps=eps, version="standard", seed=0)  # type: ignore[attr-defined]
    _, y_adv = ref.run_standard_evaluation(x, y, batch_size=250)
    theirs = (y_adv == y).numpy()
    ours = autoattack(s.model, x, y, norm=norm, eps=eps, seed=0)  # type: ignore[arg-type]
    assert abs(ours.robust_accuracy - float(theirs.mean())) <= 0.005
    assert not (ours.robust & ~theirs).any() and not (theirs & ~ours.robust).any()


# --------------------------------------------------------------------------- the report


def _evaluation() -> RobustnessEvaluation:
    """10 samples: this tool breaks samples 0-2 at L-inf 0.1, AutoAttack 0-1 and 3."""
    worst = np.array([0.05, 0.05, 0.07] + [0.5] * 7)
    c = Curve(norm="linf", eps=[0.1], correct=np.ones(10, bool), minimal=worst.copy(),
              worst=worst, attacked={0.1: 0}, confirmed={0.1: 0})
    robust = np.array([False, False, True, False] + [True] * 6)
    res = AutoAttackResult(norm="linf", eps=0.1, seed=0, samples=10, clean_correct=10,
                           robust=robust, stages=[
                               ProtocolStage("APGD-CE", "white-box", 10, 2, 1.0, 20, 10),
                               ProtocolStage("APGD-T", "white-box", 8, 1, 1.0, 20, 10),
                               ProtocolStage("FAB-T", "minimal", 7, 0, 1.0, 20, 10),
                               ProtocolStage("Square", "black-box", 7, 0, 1.0, 20, 0)])
    ev = RobustnessEvaluation(clean_accuracy=1.0, samples=10, curves={"linf": c},
                              headline={"linf": 0.1}, autoattack=[res])
    from audit.robustness.evaluation import ProtocolAccuracy

    ev.protocols.append(ProtocolAccuracy("autoattack", "AutoAttack (standard)", "linf", 0.1,
                                         0.7, 10, robust))
    return ev


def test_section_reports_autoattack_beside_the_worst_case() -> None:
    ev = _evaluation()
    m = metrics(ev)
    assert m["robust_accuracy_autoattack_linf_0.1"] == 0.7
    assert m["robust_accuracy_linf_0.1"] == 0.7  # not merged: this tool's own worst case
    assert m["robust_accuracy_autoattack_linf_0.1_ci_low"] < 0.7 < \
        m["robust_accuracy_autoattack_linf_0.1_ci_high"]
    sec = robustness_section(ev, RobustnessParams(protocol="autoattack"), check="robustness",
                             title="t")
    (table,) = [t for t in sec.tables if t.id == "robustness-autoattack"]
    assert [r[2] for r in table.rows] == ["clean (misclassified)", "APGD-CE", "APGD-T",
                                         "FAB-T", "Square"]
    assert [r[4] for r in table.rows] == [0, 2, 1, 0, 0]
    assert [r[5] for r in table.rows] == [1.0, 0.8, 0.7, 0.7, 0.7]
    assert "broke 1 sample this tool's worst case counts as robust, this tool broke 1 sample" \
        in (table.caption or "")
    assert "AutoAttack (standard): L-inf eps 0.1: 70.0%" in sec.summary
    assert "1 sample broken that this tool's worst case counts as robust" in sec.summary
    assert sec.params["protocol"] == "autoattack"


def test_default_protocol_leaves_the_report_as_it_was() -> None:
    ev = _evaluation()
    ev.autoattack, ev.protocols = [], []
    sec = robustness_section(ev, RobustnessParams(), check="robustness", title="t")
    assert not any("autoattack" in k for k in sec.metrics)
    assert "protocol" not in sec.params and "autoattack_every_eps" not in sec.params
    assert all(t.id != "robustness-autoattack" for t in sec.tables)
    assert "AutoAttack" not in sec.summary and "AutoAttack:" not in sec.reading


def test_protocol_setting_is_validated() -> None:
    from audit.checks import make_params
    from audit.robustness.check import RobustnessCheck

    assert make_params(RobustnessCheck, {"protocol": "autoattack"}, quick=False).protocol \
        == "autoattack"
    with pytest.raises(ConfigError, match="protocol must be one of"):
        make_params(RobustnessCheck, {"protocol": "robustbench"}, quick=False)


def test_cli_protocol_reaches_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    import audit.runner
    from audit.cli._main import main

    seen: dict[str, object] = {}

    def fake(*args: object, **kwargs: object) -> object:
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(audit.runner, "run_audit", fake)
    with pytest.raises(SystemExit):
        main(["run", "digits-cnn", "--protocol", "autoattack"])
    assert seen["params"] == {"robustness": {"protocol": "autoattack"}}

