"""The performance check: known answers for ECE and intervals, and models with and without
the problems it flags."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import Scaled, with_model
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from torch import nn

from audit.loading import LoadedModel
from audit.performance import expected_calibration_error, wilson_interval
from audit.result import AuditResult, Severity
from audit.runner import run_audit


def test_ece_known_answer() -> None:
    # 4 samples, 2 classes; bins of width 0.5: confidences 0.6, 0.6 (bin 1), 0.9, 0.9 (bin 1)
    proba = np.array([[0.6, 0.4], [0.6, 0.4], [0.1, 0.9], [0.1, 0.9]])
    labels = np.array([0, 1, 1, 1])
    ece, _mce, bins = expected_calibration_error(proba, labels, bins=2)
    # all in bin [0.5, 1]: accuracy 3/4, mean confidence 0.75 -> ECE 0
    assert ece == pytest.approx(0.0)
    ece10, mce10, _ = expected_calibration_error(proba, labels, bins=10)
    # bin (0.5,0.6]: acc 0.5 conf 0.6; bin (0.8,0.9]: acc 1 conf 0.9 -> 0.5*0.1 + 0.5*0.1
    assert ece10 == pytest.approx(0.1)
    assert mce10 == pytest.approx(0.1)
    assert sum(b["count"] for b in bins) == 4


def test_ece_of_perfectly_calibrated_sample_is_small() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, 200_000)
    correct = rng.uniform(size=conf.size) < conf
    labels = np.where(correct, 0, 1)
    proba = np.stack([conf, 1 - conf], axis=1)
    ece, _, _ = expected_calibration_error(proba, labels, bins=15)
    assert ece < 0.005


def test_wilson_interval_known_values() -> None:
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    lo, hi = wilson_interval(100, 100)
    assert hi == 1.0 and lo == pytest.approx(0.9630, abs=1e-4)


def test_metrics_agree_with_sklearn(digits_performance: AuditResult,
                                    digits_loaded: LoadedModel) -> None:
    from audit.datasets import load_dataset

    data = load_dataset("digits", "test")
    with torch.no_grad():
        pred = digits_loaded.model(data.x).argmax(1).numpy()
    sec = digits_performance.sections[0]
    assert sec.metrics["accuracy"] == pytest.approx(accuracy_score(data.y.numpy(), pred))
    _p, r, _, s = precision_recall_fscore_support(data.y.numpy(), pred, zero_division=0)
    table = sec.tables[0]
    assert [row[1] for row in table.rows] == s.tolist()
    assert [row[3] for row in table.rows] == pytest.approx(r.round(4).tolist())
    assert sec.metrics["accuracy"] >= 0.98


def test_good_model_gets_no_findings(digits_performance: AuditResult) -> None:
    sec = digits_performance.sections[0]
    assert sec.findings == []
    assert sec.status == "pass"
    assert sec.metrics["ece"] < 0.05


class NeverThree(nn.Module):
    """Predicts 5 whenever the inner model predicts 3: class 3 gets recall 0."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x).clone()
        out[:, 5] = torch.maximum(out[:, 5], out[:, 3] + 1.0)
        return out


def test_weak_class_is_flagged(digits_loaded: LoadedModel) -> None:
    bad = with_model(digits_loaded, NeverThree(digits_loaded.model))
    res = run_audit(bad, checks=["performance"])
    ids = {f.id: f for f in res.sections[0].findings}
    assert "performance.weak-class.3" in ids
    assert ids["performance.weak-class.3"].severity is Severity.HIGH
    # class 5 now collects the 3s: its precision drops and it is flagged too
    assert "performance.weak-class.5" in ids
    assert not any(i.startswith("performance.weak-class.") and i[-1] not in "35" for i in ids)
    assert res.summary["status"] == "fail"


def test_poor_calibration_is_flagged(digits_loaded: LoadedModel) -> None:
    # a temperature of 1/50 on a model that is already confident in its errors: overconfident
    blurred = with_model(digits_loaded, Scaled(digits_loaded.model, 0.05))
    res = run_audit(blurred, checks=["performance"])
    f = {x.id: x for x in res.sections[0].findings}
    assert "performance.calibration" in f
    assert "underconfident" in f["performance.calibration"].title
    assert res.sections[0].metrics["ece"] > 0.15
    assert f["performance.calibration"].severity is Severity.HIGH


def test_below_card_accuracy_is_flagged(digits_loaded: LoadedModel) -> None:
    noisy = with_model(digits_loaded, NeverThree(NeverThree(digits_loaded.model)))
    res = run_audit(noisy, checks=["performance"])
    assert "performance.below-card" in {f.id for f in res.sections[0].findings}


def test_per_class_intervals_and_outcomes(digits_performance: AuditResult) -> None:
    """Per-class precision and recall carry Wilson intervals around them; the accuracy's
    per-sample outcomes cover every sample and reproduce it."""
    from audit.stats import Outcomes, wilson

    sec = digits_performance.sections[0]
    table = sec.tables[0]
    assert table.columns[-2:] == ["precision 95% CI", "recall 95% CI"]
    for row in table.rows:
        support, prec, rec = int(row[1]), float(row[2]), float(row[3])  # type: ignore[arg-type]
        lo, hi = (float(v.rstrip("%")) / 100 for v in str(row[6]).split("–"))
        assert lo <= rec <= hi
        assert (lo, hi) == pytest.approx(wilson(round(rec * support), support), abs=6e-4)
        p_lo, p_hi = (float(v.rstrip("%")) / 100 for v in str(row[5]).split("–"))
        assert p_lo <= prec <= p_hi
    out = Outcomes.read(sec.to_dict()["outcomes"])
    assert out is not None and out.samples == out.data_size == sec.metrics["samples"]
    ok = out.rate("accuracy")
    assert ok is not None and float(ok.mean()) == pytest.approx(sec.metrics["accuracy"])
