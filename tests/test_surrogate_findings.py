"""The surrogate check's finding rules on hand-built evaluations (no surrogate is fitted)."""

from __future__ import annotations

import pytest

from audit.result import Severity
from audit.surrogate.evaluate import SurrogateEvaluation
from audit.surrogate.features import TabularView
from audit.surrogate.findings import fidelity_findings, findings, sensitive_findings
from audit.surrogate.model import Fidelity, GlobalSurrogate
from audit.surrogate.params import SurrogateParams
from audit.surrogate.sweep import Sweep, SweepPoint


def _sweep(family: str, agreements: list[float]) -> Sweep:
    points = [SweepPoint(family=family, complexity=i + 1, setting=float(i + 1),  # type: ignore[arg-type]
                         fidelity=Fidelity(a, (a - 0.02, a + 0.02), 0.5, (0.4, 0.6), 300),
                         size=2 * (i + 1), surrogate=GlobalSurrogate())
              for i, a in enumerate(agreements)]
    return Sweep(family=family, points=points, tolerance=0.02)  # type: ignore[arg-type]


def _ev(tree: list[float], linear: list[float], **kw: object) -> SurrogateEvaluation:
    return SurrogateEvaluation(
        view=TabularView.__new__(TabularView), tree=_sweep("tree", tree),
        linear=_sweep("linear", linear), baseline=0.6,
        counts={"rows_fit": 700, "rows_perturbed": 1300, "rows_holdout": 300,
                "rows_available": 1000}, classes=["no", "yes"], **kw)  # type: ignore[arg-type]


P = SurrogateParams()


def test_faithful_surrogates_raise_no_fidelity_finding():
    assert fidelity_findings(_ev([0.8, 0.95], [0.7, 0.93]), P) == []


@pytest.mark.parametrize(("best", "severity"), [(0.85, Severity.INFO), (0.6, Severity.LOW)])
def test_no_faithful_surrogate(best: float, severity: Severity):
    """A limit of the method, never a model failure: low at most."""
    out = fidelity_findings(_ev([0.5, best], [0.4, best - 0.1]), P)
    assert [f.id for f in out] == ["surrogate.unfaithful"]
    assert out[0].severity == severity
    assert out[0].evidence["best_tree_agreement"] == best


def test_one_unfaithful_family_is_info_and_names_the_other():
    out = fidelity_findings(_ev([0.97], [0.7, 0.8]), P)
    assert [(f.id, f.severity) for f in out] == [("surrogate.unfaithful.linear", Severity.INFO)]
    assert "decision tree" in out[0].recommendation


def test_threshold_is_the_params_value():
    ev = _ev([0.85], [0.8])
    assert fidelity_findings(ev, SurrogateParams(min_fidelity_medium=0.8)) == []
    assert fidelity_findings(ev, P)


def test_sensitive_columns_used_by_the_surrogates():
    ev = _ev([0.95], [0.95], sensitive=["sex", "race"], tree_share={"sex": 0.2},
             linear_share={"sex": 0.01, "race": 0.01})
    out = sensitive_findings(ev, P)
    assert [(f.id, f.severity) for f in out] == [("surrogate.sensitive-feature", Severity.MEDIUM)]
    assert out[0].evidence["columns"] == ["sex", "race"]
    small = _ev([0.95], [0.95], sensitive=["sex"], linear_share={"sex": 0.01})
    assert [f.severity for f in sensitive_findings(small, P)] == [Severity.LOW]


def test_no_sensitive_finding_without_use():
    assert sensitive_findings(_ev([0.95], [0.95], sensitive=["sex"]), P) == []
    assert findings(_ev([0.95], [0.95]), P) == []
