"""The performance check: accuracy, per-class precision/recall, confusion matrix, calibration.

Findings: classes whose recall or precision falls below thresholds, and poor calibration
(expected calibration error above a threshold). Claims of the card are compared with these
numbers by :mod:`audit.crosscheck`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from audit.checks import Check, register
from audit.figures import new_figure, styled, to_figure
from audit.policy import Category, kind
from audit.result import Finding, Section, Severity, Table
from audit.stats import outcomes_block, wilson
from audit.subject import Subject

WEAK_CLASS = kind("performance.weak-class.{index}", Category.DEFECT,
                  "One class's recall or precision is below the thresholds: high when the "
                  "model misses most of that class, which its stated use covers.")
CALIBRATION = kind("performance.calibration", Category.EXPOSURE,
                   "The predicted probabilities are not calibrated (expected calibration "
                   "error above ece_medium); do not read them as confidence.")


@dataclass
class PerformanceParams:
    """Thresholds of the performance check."""

    weak_recall_medium: float = 0.85  # a class with recall below this: medium finding
    weak_recall_high: float = 0.5  # a class with recall below this: high finding
    weak_precision_medium: float = 0.85  # a class with precision below this: medium finding
    min_support: int = 5  # classes with fewer audit samples are not judged
    ece_bins: int = 15  # equal-width confidence bins of the calibration error
    ece_medium: float = 0.05  # expected calibration error above this: a medium finding


def expected_calibration_error(proba: np.ndarray, labels: np.ndarray, bins: int = 15
                               ) -> tuple[float, float, list[dict[str, float]]]:
    """ECE and MCE over equal-width confidence bins of the top-class probability.

    ECE = sum_b (n_b / N) |acc_b - conf_b|; MCE = max_b |acc_b - conf_b| (Guo et al. 2017).
    Returns (ece, mce, bins) where each bin has lo, hi, count, accuracy, confidence.
    """
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    ece, mce, out = 0.0, 0.0, []
    n = len(conf)
    for b in range(bins):
        m = idx == b
        cnt = int(m.sum())
        acc_b = float(correct[m].mean()) if cnt else math.nan
        conf_b = float(conf[m].mean()) if cnt else math.nan
        if cnt:
            gap = abs(acc_b - conf_b)
            ece += cnt / n * gap
            mce = max(mce, gap)
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": cnt,
                    "accuracy": acc_b, "confidence": conf_b})
    return float(ece), float(mce), out


def wilson_interval(successes: int, n: int) -> tuple[float, float]:
    """Wilson score 95% interval for a proportion (:func:`audit.stats.wilson`)."""
    return wilson(successes, n)


def _ci_text(successes: int, n: int) -> str:
    """``91.2–98.7%`` (Wilson 95%), or ``–`` without samples."""
    lo, hi = wilson(successes, n)
    return f"{lo:.1%}–{hi:.1%}" if math.isfinite(lo) else "–"


@register
class PerformanceCheck(Check[PerformanceParams]):
    """Accuracy, per-class precision/recall, confusion matrix, calibration (ECE)."""

    name = "performance"
    title = "Performance and calibration"

    def run(self, subject: Subject) -> Section:
        p: PerformanceParams = self.params
        y = subject.data.y.numpy()
        logits = subject.data_logits
        proba = torch.softmax(logits, dim=1).numpy().astype(np.float64)
        pred = proba.argmax(axis=1)
        classes = subject.card.classes
        k = len(classes)
        n = len(y)
        correct = int((pred == y).sum())
        acc = correct / n
        lo, hi = wilson_interval(correct, n)
        prec, rec, f1, support = precision_recall_fscore_support(
            y, pred, labels=list(range(k)), zero_division=0)
        present = support > 0
        ece, mce, bins = expected_calibration_error(proba, y, p.ece_bins)
        nll = float(torch.nn.functional.cross_entropy(logits, subject.data.y))
        onehot = np.eye(k)[y]
        brier = float(((proba - onehot) ** 2).sum(axis=1).mean())
        mean_conf = float(proba.max(axis=1).mean())
        metrics = {
            "accuracy": acc, "accuracy_ci_low": lo, "accuracy_ci_high": hi,
            "balanced_accuracy": float(rec[present].mean()),
            "macro_f1": float(f1[present].mean()),
            "ece": ece, "mce": mce, "nll": nll, "brier": brier,
            "mean_confidence": mean_conf, "overconfidence": mean_conf - acc,
            "samples": float(n),
        }
        findings = self._findings(p, classes, prec, rec, support, acc, lo, hi, ece, mce,
                                  mean_conf, subject)
        cm = confusion_matrix(y, pred, labels=list(range(k)))
        predicted = cm.sum(axis=0)
        table = Table(
            id="per-class", title="Per-class metrics",
            columns=["class", "support", "precision", "recall", "F1", "precision 95% CI",
                     "recall 95% CI"],
            rows=[[classes[i], int(support[i]), round(float(prec[i]), 4),
                   round(float(rec[i]), 4), round(float(f1[i]), 4),
                   _ci_text(int(cm[i, i]), int(predicted[i])),
                   _ci_text(int(cm[i, i]), int(support[i]))] for i in range(k)],
            caption="Precision: of the samples predicted as this class, the share that are. "
                    "Recall: of the samples of this class, the share found. 95% CI: Wilson "
                    "score intervals (of the predicted samples for precision, of the class's "
                    "samples for recall).")
        figures = [self._confusion_figure(cm, classes), self._reliability_figure(bins, ece)]
        weak = [f for f in findings if ".weak-class." in f.id]
        summary = (f"Accuracy {acc:.1%} (95% CI {lo:.1%}-{hi:.1%}) on {n} samples; "
                   f"ECE {ece:.3f} with mean confidence {mean_conf:.1%}. "
                   + (f"{len(weak)} weak class(es)." if weak else "No weak classes."))
        return self.section(
            summary=summary,
            reading=(
                "Accuracy is the share of correct predictions, with a Wilson 95% interval "
                "(per-class precision and recall carry theirs in the table); the result "
                "records which samples were correct, so audit diff compares two models on "
                "the same samples with McNemar's exact test. "
                "The confusion matrix rows are the true classes, columns the predictions, "
                "coloured by the share of each true class. Calibration compares confidence with "
                "accuracy: in the reliability diagram a calibrated model's bars sit on the "
                "diagonal. ECE is the average gap between confidence and accuracy, weighted by "
                f"how many samples fall in each of {p.ece_bins} confidence bins; below "
                f"{p.ece_medium} is good; above it the probabilities should not be read as "
                "probabilities (a medium finding)."),
            metrics=metrics, findings=findings, tables=[table], figures=figures,
            outcomes=outcomes_block(subject.data.sha256, n, np.arange(n),
                                    {"accuracy": pred == y}))

    def _findings(self, p: PerformanceParams, classes: list[str], prec: np.ndarray,
                  rec: np.ndarray, support: np.ndarray, acc: float, lo: float, hi: float,
                  ece: float, mce: float, mean_conf: float, subject: Subject) -> list[Finding]:
        out: list[Finding] = []
        for i, name in enumerate(classes):
            if support[i] < p.min_support:
                continue
            problems = []
            sev = None
            if rec[i] < p.weak_recall_high:
                sev = Severity.HIGH
                problems.append(f"recall {rec[i]:.1%}")
            elif rec[i] < p.weak_recall_medium:
                sev = Severity.MEDIUM
                problems.append(f"recall {rec[i]:.1%}")
            if prec[i] < p.weak_precision_medium:
                sev = sev or Severity.MEDIUM
                problems.append(f"precision {prec[i]:.1%}")
            if sev is not None:
                out.append(WEAK_CLASS(
                    sev, index=i,
                    title=f"Weak class {name!s}: {', '.join(problems)}",
                    detail=(f"Class {name} ({int(support[i])} samples) has precision "
                            f"{prec[i]:.1%} and recall {rec[i]:.1%}, against overall accuracy "
                            f"{acc:.1%}."),
                    evidence={"class": name, "precision": float(prec[i]),
                              "recall": float(rec[i]), "support": int(support[i])},
                    recommendation="Collect more or cleaner examples of this class, check its "
                                   "labels, or reweight it in training; the confusion matrix "
                                   "shows which classes it is confused with."))
        if ece > p.ece_medium:
            sev = Severity.MEDIUM
            direction = "overconfident" if mean_conf > acc else "underconfident"
            out.append(CALIBRATION(
                sev,
                title=f"Poor calibration: ECE {ece:.3f} ({direction})",
                detail=(f"Mean confidence is {mean_conf:.1%} while accuracy is {acc:.1%}; the "
                        f"largest gap in one confidence bin is {mce:.1%}."),
                evidence={"ece": ece, "mce": mce, "mean_confidence": mean_conf,
                          "accuracy": acc},
                recommendation="Fit a temperature on held-out data (temperature scaling) "
                               "before using the probabilities as confidence."))
        return out

    @staticmethod
    @styled
    def _confusion_figure(cm: np.ndarray, classes: list[str]):  # type: ignore[no-untyped-def]
        k = len(classes)
        labels = _class_labels(classes)
        # cells of 0.45 in (at least 2.6 in in all, at most 8.1 in: then the cells shrink)
        side = min(max(0.45 * k, 2.6), 8.1)
        cell_pt = side / k * 72
        longest = max(len(lab) for lab in labels)
        fig, ax = new_figure(side + 1.6 + 0.06 * min(longest, 20), side + 1.0)
        rows = cm.sum(axis=1, keepdims=True)
        share = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
        im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        digits = len(str(int(cm.max()))) if cm.size else 1
        size = _cell_font(cell_pt, digits)
        if size is not None:
            for i, j in zip(*np.nonzero(cm), strict=True):  # zero cells stay blank
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=size,
                        color="white" if share[i, j] > 0.5 else "black")
        tick = 9.0 if cell_pt >= 12 else max(5.0, cell_pt * 0.75)
        rotate = 0.55 * tick * longest > cell_pt  # labels wider than their cell
        ax.set_xticks(range(k), labels, rotation=90 if rotate else 0, fontsize=tick)
        ax.set_yticks(range(k), labels, fontsize=tick)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, format="{x:.0%}")
        bar.set_label("share of the row (true class)")
        ax.set_title("Confusion matrix (counts)" if size is not None
                     else "Confusion matrix (share of each true class)")
        return to_figure(fig, "confusion-matrix", "Confusion matrix",
                         "Rows: true class; columns: predicted class. Off-diagonal cells are "
                         "errors. The colour is the share of the row's samples"
                         + ("; the numbers are counts (empty cells: none)." if size is not None
                            else "; with this many classes the counts are left out (the "
                            "per-class table has them)."))

    @staticmethod
    @styled
    def _reliability_figure(bins: list[dict[str, float]], ece: float):  # type: ignore[no-untyped-def]
        fig, (ax, ax2) = new_figure(6.0, 4.6, nrows=2, sharex=True,
                                    gridspec_kw={"height_ratios": [3, 1]})
        centres = [(b["lo"] + b["hi"]) / 2 for b in bins]
        width = bins[0]["hi"] - bins[0]["lo"]
        accs = [b["accuracy"] if b["count"] else 0.0 for b in bins]
        ax.bar(centres, accs, width=width * 0.95, color="#3366cc", label="accuracy in bin")
        ax.plot([0, 1], [0, 1], "--", color="#888888", label="perfect calibration")
        confs = [b["confidence"] if b["count"] else np.nan for b in bins]
        ax.plot(centres, confs, "o", color="#dc3912", markersize=3, label="mean confidence")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1)
        ax.set_title(f"Reliability diagram (ECE {ece:.3f})")
        ax.legend(loc="upper left", fontsize=7)
        ax2.bar(centres, [b["count"] for b in bins], width=width * 0.95, color="#999999")
        ax2.set_ylabel("samples")
        ax2.set_xlabel("confidence (top-class probability)")
        ax2.set_xlim(0, 1)
        return to_figure(fig, "reliability", "Reliability diagram",
                         "Bars: accuracy of the samples in each confidence bin; the dashed line "
                         "is perfect calibration. Bottom: how many samples fall in each bin.")


def _class_labels(classes: list[str], limit: int = 18) -> list[str]:
    """Tick labels of the confusion matrix: long names cut in the middle (the start and end
    usually tell classes apart), prefixed by the class index when cut names still collide."""
    def cut(name: str) -> str:
        if len(name) <= limit:
            return name
        head = (limit - 1) // 2 + (limit - 1) % 2
        return name[:head] + "…" + name[len(name) - (limit - 1 - head):]

    labels = [cut(c) for c in classes]
    if len(set(labels)) < len(labels):
        labels = [f"{i}: {cut(c)}" for i, c in enumerate(classes)]
    return labels


def _cell_font(cell_pt: float, digits: int) -> float | None:
    """Font size (pt) at which a count of ``digits`` digits fits a cell ``cell_pt`` wide (a
    digit is about 0.62 em) with a margin, at most 8.5 pt; ``None`` when it would be under 5 pt."""
    size = min(8.5, cell_pt * 0.75 / (0.62 * max(digits, 1)))
    return size if size >= 5.0 else None
