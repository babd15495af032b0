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
    assert f["performance.calibration"].severity is Severity.MEDIUM  # an exposure


def test_below_card_accuracy_is_flagged(digits_loaded: LoadedModel) -> None:
    """The card's test accuracy against the measured interval, by the claims cross-check
    (asked for by name beside an explicit selection)."""
    noisy = with_model(digits_loaded, NeverThree(NeverThree(digits_loaded.model)))
    res = run_audit(noisy, checks=["performance", "crosscheck"])
    assert [s.check for s in res.sections] == ["performance", "crosscheck"]
    (f,) = res.sections[1].findings
    assert f.id == "crosscheck.claim.test_accuracy" and f.severity is Severity.HIGH
    assert f.evidence["ci_high"] < f.evidence["claimed"]
    assert run_audit(digits_loaded, checks=["performance", "crosscheck"]).sections[1] \
        .findings == []  # the model as bundled: its claim holds


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


def _drawn_confusion(monkeypatch: pytest.MonkeyPatch, cm: np.ndarray, classes: list[str]
                     ) -> object:
    """The matplotlib figure of the confusion matrix, drawn, before it is encoded."""
    import audit.performance as perf

    seen: list[object] = []
    real = perf.to_figure

    def spy(fig, *args, **kwargs):  # type: ignore[no-untyped-def]
        fig.canvas.draw()
        seen.append(fig)
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(perf, "to_figure", spy)
    perf.PerformanceCheck._confusion_figure(cm, classes)
    return seen[0]


def _overlaps(boxes: list) -> list[tuple[int, int]]:  # type: ignore[type-arg]
    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
            if boxes[i].overlaps(boxes[j])]


@pytest.mark.parametrize("k,count,long", [(10, 1000, False), (20, 300, True), (4, 16000, True)])
def test_confusion_matrix_text_fits_its_cells(monkeypatch: pytest.MonkeyPatch, k: int,
                                              count: int, long: bool) -> None:
    """Cell counts stay inside their cells and apart, zero cells stay blank, tick labels of
    long class names do not overlap, and a colour bar states what the colour means."""
    rng = np.random.default_rng(0)
    cm = rng.integers(0, count // 10, size=(k, k)) * (rng.random((k, k)) < 0.5)
    cm[np.arange(k), np.arange(k)] = count
    classes = [f"a rather long class name number {i}" if long else str(i) for i in range(k)]
    fig = _drawn_confusion(monkeypatch, cm, classes)
    ax, bar = fig.axes  # type: ignore[attr-defined]
    assert "share" in bar.get_ylabel()
    cells = [t for t in ax.texts if t.get_text()]
    assert len(cells) == int((cm > 0).sum())  # zero cells are blank
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    boxes = [t.get_window_extent(renderer) for t in cells]
    assert not _overlaps(boxes)
    cell_px = ax.get_window_extent(renderer).width / k
    assert all(b.width < cell_px for b in boxes)
    assert all(t.get_fontsize() >= 5 for t in cells)
    for axis in (ax.get_xticklabels(), ax.get_yticklabels()):
        labels = [t.get_text() for t in axis]
        assert len(set(labels)) == k  # cut names stay distinct
        assert not _overlaps([t.get_window_extent(renderer) for t in axis])


def test_confusion_matrix_labels_of_long_and_colliding_names() -> None:
    from audit.performance import _cell_font, _class_labels

    assert _class_labels(["cat", "dog"]) == ["cat", "dog"]
    cut = _class_labels(["a very long name that ends in one", "a very long name that ends in two"])
    assert all(len(c) <= 18 for c in cut) and cut[0] != cut[1]  # the ends tell them apart
    same = _class_labels(["prefix shared by all classes A" + "x" * 20 + "1",
                          "prefix shared by all classes B" + "x" * 20 + "1"])
    assert same[0].startswith("0: ") and same[1].startswith("1: ")
    assert _cell_font(32.0, 4) is not None and _cell_font(32.0, 4) <= 8.5  # type: ignore[operator]
    assert _cell_font(6.0, 5) is None  # too small to read: the counts are left out
