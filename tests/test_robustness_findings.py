"""The robustness check's finding rules and section on hand-built evaluations: no model, no
attack. Each rule is shown once where it fires and once where it does not."""

from __future__ import annotations

import numpy as np
import pytest

from audit.result import Severity
from audit.robustness import findings as fr
from audit.robustness.diagnostics import Diagnostic
from audit.robustness.evaluate import Curve
from audit.robustness.evaluation import RobustnessEvaluation, Stage
from audit.robustness.params import RobustnessParams
from audit.robustness.section import metrics, robustness_section, summary


def curve(norm: str, worst: list[float], eps: list[float]) -> Curve:
    w = np.asarray(worst, dtype=np.float64)
    return Curve(norm=norm, eps=eps, correct=w > 0, minimal=w.copy(), worst=w,  # type: ignore[arg-type]
                 attacked=dict.fromkeys(eps, 0), confirmed=dict.fromkeys(eps, 0))


def evaluation(robust: float = 0.9, clean: float = 1.0, **kw: object) -> RobustnessEvaluation:
    """10 samples; a share ``robust`` of them need more than L-inf 0.1 to break, the others
    0.07 (all robust at 0.05)."""
    k = round(robust * 10)
    c = curve("linf", [0.5] * k + [0.07] * (10 - k), [0.05, 0.1])
    ev = RobustnessEvaluation(clean_accuracy=clean, samples=10, curves={"linf": c},
                              headline={"linf": 0.1})
    for key, value in kw.items():
        setattr(ev, key, value)
    return ev


def diag(triggered: bool, norm: str = "linf") -> Diagnostic:
    return Diagnostic("loss-flat", "Flat loss surface (zero gradients)", norm, 0.9, 0.2,
                      triggered, "The gradient is zero on 90%.")


P = RobustnessParams()


def test_unreliable_fires_only_on_a_triggered_diagnostic() -> None:
    assert fr.unreliable(evaluation(diagnostics=[diag(False)]), P) == []
    (f,) = fr.unreliable(evaluation(diagnostics=[diag(False), diag(True, "l2")]), P)
    assert f.id == "robustness.unreliable" and f.severity is Severity.HIGH
    assert "(L2)" in f.title and [d["id"] for d in f.evidence["diagnostics"]] == ["loss-flat"]
    lowered = RobustnessParams(unreliable_severity="medium")
    assert fr.unreliable(evaluation(diagnostics=[diag(True)]), lowered)[0].severity \
        is Severity.MEDIUM


@pytest.mark.parametrize(("robust", "severity"), [
    (0.0, Severity.MEDIUM), (0.5, Severity.MEDIUM), (0.9, Severity.LOW), (1.0, None)])
def test_fragile_without_a_claim_is_an_exposure(robust: float,
                                                severity: Severity | None) -> None:
    """No threat model in the card: fragility is medium at most, whatever the drop."""
    found = fr.fragile(evaluation(robust), P)
    if severity is None:
        assert found == []
        return
    (f,) = found
    assert f.id == "robustness.fragile.linf" and f.severity is severity
    assert f.evidence["robust_accuracy"] == pytest.approx(robust)
    assert f.evidence["curve"] == {"0.05": 1.0, "0.1": robust}
    assert f.evidence["threat_eps"] is None and "claims no robustness" in f.detail


def test_every_reported_eps_is_judged() -> None:
    """The drop at an eps other than the headline one makes the finding."""
    c = curve("linf", [0.2] * 9 + [0.07], [0.05, 0.1, 0.3])  # 90% at 0.1, 0% at 0.3
    ev = RobustnessEvaluation(clean_accuracy=1.0, samples=10, curves={"linf": c},
                              headline={"linf": 0.1})
    (f,) = fr.fragile(ev, P)
    assert f.severity is Severity.MEDIUM and f.evidence["eps"] == 0.3
    assert f.evidence["per_eps"] == {"0.1": {"robust_accuracy": 0.9, "severity": "low"},
                                     "0.3": {"robust_accuracy": 0.0, "severity": "high"}}
    assert f.evidence["first_eps"] == 0.3 and "at eps 0.3" in f.title


def test_threat_model_splits_defect_from_exposure() -> None:
    c = curve("linf", [0.5] * 3 + [0.07] * 7, [0.05, 0.1])  # 100% at 0.05, 30% at 0.1
    base = {"clean_accuracy": 1.0, "samples": 10, "curves": {"linf": c},
            "headline": {"linf": 0.1}}
    inside = fr.fragile(RobustnessEvaluation(**base, threat={"linf": 0.1}), P)  # type: ignore[arg-type]
    assert [(f.id, f.severity) for f in inside] == [("robustness.threat.linf", Severity.HIGH)]
    assert "within the card's threat model" in inside[0].detail
    # claimed up to 0.05 only: 0.1 lies beyond the claim, an exposure
    beyond = fr.fragile(RobustnessEvaluation(**base, threat={"linf": 0.05}), P)  # type: ignore[arg-type]
    assert [(f.id, f.severity) for f in beyond] == [("robustness.fragile.linf",
                                                     Severity.MEDIUM)]
    # tabular with one-hot columns: a stress test, labelled as such
    stress = fr.fragile(RobustnessEvaluation(**base, stress_test=True), P)  # type: ignore[arg-type]
    assert [(f.id, f.severity) for f in stress] == [("robustness.stress-test.linf",
                                                     Severity.LOW)]  # at most low
    assert "not valid records" in stress[0].detail


def test_card_threat_model_from_card_or_harden_recipe() -> None:
    from audit.card import InputSpec, ModelCard

    spec = InputSpec(kind="image", shape=(1, 8, 8))
    card = ModelCard(name="m", arch="a:b", input=spec, classes=["a", "b"])
    assert card.threat_model == {}
    card.recipe = {"method": "pgd", "norm": "linf", "eps": 0.1}
    assert card.threat_model == {"linf": 0.1}
    card.robustness = {"threat_model": {"l2": 0.5}}
    assert card.threat_model == {"l2": 0.5}  # an explicit claim wins


def test_corruption_judges_the_configured_severity() -> None:
    ev = evaluation(severities=[1, 3, 5], clean=0.95,
                    corruptions={"contrast": [0.9, 0.6, 0.2], "brightness": [0.95, 0.8, 0.7],
                                 "gaussian_noise": [0.95, 0.9, 0.85]})
    found = {f.id: f for f in fr.corruption(ev, P)}
    assert found["robustness.corruption.contrast"].severity is Severity.MEDIUM  # drop 0.35
    assert found["robustness.corruption.brightness"].severity is Severity.MEDIUM  # 0.15
    ev.corruptions["brightness"] = [0.95, 0.88, 0.7]  # drop 0.07
    assert {f.id: f for f in fr.corruption(ev, P)}[
        "robustness.corruption.brightness"].severity is Severity.LOW
    assert "robustness.corruption.gaussian_noise" not in found  # drop 0.05
    # severity 3 not measured: the middle measured one (5) is judged
    ev.severities, ev.corruptions = [1, 5], {"contrast": [0.9, 0.2]}
    (f,) = fr.corruption(ev, P)
    assert f.evidence["severity"] == 5 and f.evidence["accuracy"] == 0.2


def test_findings_in_report_order() -> None:
    ev = evaluation(0.0, diagnostics=[diag(True)], severities=[3],
                    corruptions={"contrast": [0.1]})
    assert [f.id for f in fr.robustness_findings(ev, P)] == [
        "robustness.unreliable", "robustness.fragile.linf", "robustness.corruption.contrast"]


def test_summary_and_metrics_from_the_evaluation() -> None:
    ev = evaluation(0.7, clean=0.9)
    m = metrics(ev)
    assert m["robust_accuracy_linf_0.1"] == pytest.approx(0.7) and m["unreliable"] == 0.0
    assert m["median_min_perturbation_linf"] == 0.5  # 7 of 10 samples at 0.5
    assert "L-inf eps 0.1: 70.0%" in summary(ev)
    assert summary(ev).endswith("No gradient-masking diagnostic triggered.")
    ev.diagnostics, ev.escalated = [diag(True)], {"linf": []}
    assert "unreliable: flat loss surface" in summary(ev)
    assert "gradient-free at L-inf eps 0.1" in summary(ev)
    assert metrics(ev)["unreliable"] == 1.0


def test_section_records_extra_attacks_only_when_set() -> None:
    ev = evaluation(stages=[Stage("curve L-inf", 10, 0.5)], skipped=[("Square-L2", "why")])
    sec = robustness_section(ev, P, check="robustness", title="t")
    assert "extra_attacks" not in sec.params
    assert [t.id for t in sec.tables] == ["robustness-trust", "robustness-curve",
                                          "robustness-attacks", "robustness-cost",
                                          "robustness-skipped"]
    assert [f.id for f in sec.figures] == ["robustness-curves"]
    with_extra = RobustnessParams(extra_attacks=["mifgsm"])
    assert robustness_section(ev, with_extra, check="robustness",
                              title="t").params["extra_attacks"] == ["mifgsm"]


def test_every_rate_carries_its_exact_interval() -> None:
    from scipy.stats import beta, binomtest

    ev = evaluation(0.7, clean=0.9, severities=[1, 3], corruptions={"contrast": [0.8, 0.5]})
    m = metrics(ev)
    for name, k in (("clean_accuracy", 9), ("robust_accuracy_linf_0.1", 7),
                    ("robust_accuracy_linf_0.05", 10)):
        ci = binomtest(k, 10).proportion_ci(0.95, method="exact")
        assert (m[f"{name}_ci_low"], m[f"{name}_ci_high"]) == pytest.approx((ci.low, ci.high))
        assert m[f"{name}_ci_low"] <= m[name] <= m[f"{name}_ci_high"]
    # the corruption mean (0.65 of 10 samples) gets the exact interval at 6.5 of 10
    lo, hi = beta.ppf(0.025, 6.5, 4.5), beta.ppf(0.975, 7.5, 3.5)
    assert (m["corruption_accuracy_contrast_ci_low"],
            m["corruption_accuracy_contrast_ci_high"]) == pytest.approx((lo, hi))
    assert "(95% CI 55.5%–99.7%)" in summary(ev)  # clean 9 of 10


def test_trust_box_says_interval_protocol_and_diagnostics() -> None:
    from audit.robustness.evaluation import CertifiedBound, ProtocolAccuracy
    from audit.stats import samples_for_halfwidth

    ev = evaluation(0.7, clean=0.9, diagnostics=[diag(False)])
    box = {r[0]: r[1] for r in robustness_section(ev, P, check="r", title="t").tables[0].rows}
    assert list(box) == ["Sampling interval", "Samples", "Attack protocol",
                         "Gradient-masking diagnostics", "Bottom line"]
    # +-1 point at the observed rates (the search itself is tested in test_stats)
    for name, rate in (("clean accuracy", 0.9), ("L-inf eps 0.1", 0.7)):
        assert f"{name} {samples_for_halfwidth(rate, 0.01):,}" in box["Sampling interval"]
    assert "(95% CI 34.8%–93.3%)" in box["Sampling interval"]  # 7 of 10
    assert "not AutoAttack's standard protocol" in box["Attack protocol"]
    assert box["Gradient-masking diagnostics"].startswith("No gradient-masking")
    assert box["Bottom line"].startswith("Cite as L-inf eps 0.1: 70.0% (95% CI")
    ev.diagnostics = [diag(True)]
    box = {r[0]: r[1] for r in robustness_section(ev, P, check="r", title="t").tables[0].rows}
    assert box["Gradient-masking diagnostics"].startswith("Unreliable: flat loss surface")
    assert box["Bottom line"].startswith("Do not cite")
    # the hooks: another protocol's robust accuracy and a certified bound appear when present
    ev.protocols = [ProtocolAccuracy("autoattack", "AutoAttack (standard)", "linf", 0.1, 0.6,
                                     10, np.array([True] * 6 + [False] * 4))]
    ev.certified = [CertifiedBound(radius=0.5, accuracy=0.4, samples=10, sigma=0.25)]
    sec = robustness_section(ev, P, check="r", title="t")
    box = {r[0]: r[1] for r in sec.tables[0].rows}
    assert "this suite: 70.0%" in box["AutoAttack (standard)"]
    assert "L2 radius 0.5: 40.0%" in box["Certified lower bound"]
    assert sec.metrics["robust_accuracy_autoattack_linf_0.1"] == 0.6
    assert sec.metrics["robust_accuracy_autoattack_linf_0.1_ci_low"] < 0.6


def test_outcomes_record_per_sample_successes() -> None:
    from audit.stats import Outcomes

    ev = evaluation(0.7, clean=0.9)
    assert robustness_section(ev, P, check="r", title="t").outcomes == {}  # samples unknown
    ev.correct = np.array([True] * 9 + [False])
    ev.indices, ev.data_size, ev.data_sha256 = np.arange(0, 20, 2), 20, "a" * 64
    out = Outcomes.read(robustness_section(ev, P, check="r", title="t").to_dict()["outcomes"])
    assert out is not None and out.samples == 10 and out.data_size == 20
    assert out.row_indices().tolist() == list(range(0, 20, 2))
    assert out.rate("clean_accuracy").tolist() == ev.correct.tolist()  # type: ignore[union-attr]
    robust = out.rate("robust_accuracy_linf_0.1")
    assert robust is not None and robust.mean() == 0.7 == metrics(ev)["robust_accuracy_linf_0.1"]
