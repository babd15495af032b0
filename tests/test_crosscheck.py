"""Cross-checks on hand-built sections: card claims against measured intervals, and the
surrogate's rules against the saliency shortcut region. Each rule fires once and once not."""

from __future__ import annotations

from typing import Any

from audit.crosscheck import Audited, cross_check_section
from audit.crosscheck.claims import CardClaims
from audit.crosscheck.regions import SurrogateSaliency
from audit.result import Finding, Section, Severity, Table


def perf(acc: float = 0.90, lo: float = 0.87, hi: float = 0.93) -> Section:
    return Section(check="performance", title="p",
                   metrics={"accuracy": acc, "accuracy_ci_low": lo, "accuracy_ci_high": hi})


def robust(acc: float, lo: float, hi: float) -> Section:
    return Section(check="robustness", title="r",
                   metrics={"robust_accuracy_linf_0.1": acc,
                            "robust_accuracy_linf_0.1_ci_low": lo,
                            "robust_accuracy_linf_0.1_ci_high": hi,
                            "abstention_rate_sigma_0.25": 0.2,
                            "abstention_rate_sigma_0.25_ci_low": 0.15,
                            "abstention_rate_sigma_0.25_ci_high": 0.25})


def audited(metrics: dict[str, Any], sections: list[Section],
            data: str = "toy/test") -> Audited:
    return Audited(sections, {"name": "m", "dataset": "toy", "metrics": metrics},
                   {"name": data})


def verdicts(res: Any) -> dict[str, str]:
    return {str(r[0]): str(r[4]) for r in res.table.rows}


def test_claims_inside_the_interval_are_consistent() -> None:
    res = CardClaims().run(audited({"test_accuracy": 0.91, "val_accuracy": 0.99,
                                    "train_seconds": 3.0}, [perf()]))
    assert res is not None and res.findings == []
    v = verdicts(res)
    assert v["test_accuracy"].startswith("consistent")
    assert v["val_accuracy"].startswith("not checked: about training")
    assert "1 consistent" in res.summary and "2 about training" in res.summary


def test_an_overstated_claim_is_a_finding_by_its_distance() -> None:
    res = CardClaims().run(audited({"test_accuracy": 0.99,
                                    "test_pgd20_accuracy_linf_0.1": 0.64},
                                   [perf(), robust(0.60, 0.55, 0.63)]))
    assert res is not None
    by_id = {f.id: f for f in res.findings}
    assert by_id["crosscheck.claim.test_accuracy"].severity is Severity.HIGH  # 6 pts above
    pgd = by_id["crosscheck.claim.test_pgd20_accuracy_linf_0.1"]
    assert pgd.severity is Severity.MEDIUM and "stronger" in pgd.detail  # 1 pt above
    assert pgd.evidence["metric"] == "robust_accuracy_linf_0.1"


def test_direction_follows_the_metric() -> None:
    """A claimed abstention rate below the interval overstates the model; an accuracy below
    the interval understates it (no finding)."""
    res = CardClaims().run(audited({"abstention_rate_sigma_0.25": 0.05, "test_accuracy": 0.8},
                                   [perf(), robust(0.6, 0.55, 0.65)]))
    assert res is not None
    assert [f.id for f in res.findings] == ["crosscheck.claim.abstention_rate_sigma_0.25"]
    assert verdicts(res)["test_accuracy"].startswith("better than the card says")


def test_claims_about_other_data_are_not_compared() -> None:
    res = CardClaims().run(audited({"test_accuracy": 0.99}, [perf()], data="mine.npz"))
    assert res is not None and res.findings == []
    assert verdicts(res)["test_accuracy"].startswith("not compared")


def test_unmeasured_claims_say_so() -> None:
    res = CardClaims().run(audited({"test_noisy_accuracy_sigma_0.5": 0.7}, [perf()]))
    assert res is not None
    assert verdicts(res)["test_noisy_accuracy_sigma_0.5"] == \
        "not checked: not measured by the checks that ran"


def _saliency(where: dict[str, Any] | None) -> Section:
    sec = Section(check="saliency", title="s")
    if where is not None:
        sec.findings.append(Finding("saliency.outside-object", Severity.HIGH, "t", "d",
                                    evidence={"hotspot": where}))
    return sec


def _surrogate(rules: list[tuple[str, float]], agreement: float = 0.95) -> Section:
    table = Table(id="rules", title="r", columns=["#", "IF", "THEN the model predicts",
                                                   "coverage", "model agrees"],
                  rows=[[i, cond, "a", cov, 1.0] for i, (cond, cov) in enumerate(rules)])
    return Section(check="surrogate", title="s", metrics={"tree_agreement": agreement},
                   tables=[table], params={"grid": 4, "min_fidelity_medium": 0.9})


CORNER = {"row": 0, "col": 0, "size": 8, "where": "top-left corner"}
IMAGE = {"input": {"shape": [3, 32, 32]}}


def _regions(sal: Section, sur: Section) -> Any:
    return SurrogateSaliency().run(Audited([sal, sur], {}, {}, IMAGE))


def test_surrogate_on_the_shortcut_region_is_a_defect() -> None:
    rules = [("mean red of region r1c1 > 0.5", 0.4), ("mean red of region r1c1 <= 0.5 AND "
                                                      "mean blue of region r2c2 > 0.1", 0.3),
             ("mean red of region r3c3 > 0.2", 0.3)]
    res = _regions(_saliency(CORNER), _surrogate(rules))
    (f,) = res.findings
    assert f.id == "crosscheck.surrogate-on-shortcut" and f.severity is Severity.HIGH
    assert f.evidence["coverage_share"] == 0.7
    unfaithful = _regions(_saliency(CORNER), _surrogate(rules, agreement=0.6))
    assert unfaithful.findings[0].severity is Severity.MEDIUM


def test_surrogate_elsewhere_or_no_shortcut_is_no_finding() -> None:
    elsewhere = _surrogate([("mean red of region r3c3 > 0.2", 0.8),
                            ("mean red of region r2c2 > 0.2", 0.2)])
    res = _regions(_saliency(CORNER), elsewhere)
    assert res.findings == [] and "does not show it" in res.summary
    assert _regions(_saliency(None), elsewhere) is None  # nothing flagged: nothing to compare
    spread = {**CORNER, "localised": False}
    assert _regions(_saliency(spread), elsewhere) is None


def test_section_collects_the_cross_checks() -> None:
    sec = cross_check_section(audited({"test_accuracy": 0.99}, [perf()]))
    assert sec is not None and sec.check == "crosscheck"
    assert [f.id for f in sec.findings] == ["crosscheck.claim.test_accuracy"]
    assert [t.id for t in sec.tables] == ["crosscheck-claims"]
    assert cross_check_section(audited({}, [perf()])) is None
