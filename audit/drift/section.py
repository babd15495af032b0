"""Turn a :class:`DriftEvaluation` into the report section: metrics, tables, figures, a
summary and the reading."""

from __future__ import annotations

import math
from dataclasses import asdict

from audit.drift.evaluation import DriftEvaluation
from audit.drift.features import FeatureDrift
from audit.drift.figures import accuracy_figure, columns_figure, predictions_figure
from audit.drift.findings import drift_findings
from audit.drift.measure import CONFIDENCE, PREDICTED
from audit.drift.params import DriftParams
from audit.result import Cell, Section, Table
from audit.stats import p_text

__all__ = ["drift_section", "metrics"]


def drift_section(ev: DriftEvaluation, p: DriftParams, *, check: str, title: str) -> Section:
    """The whole section of the ``drift`` check."""
    figures = [predictions_figure(ev)]
    if ev.features:
        figures.insert(0, columns_figure(ev))
    if ev.accuracy is not None:
        figures.append(accuracy_figure(ev))
    tables = [tests_table(ev, p)]
    if ev.accuracy is not None:
        tables.append(accuracy_table(ev))
    if ev.features:
        tables.append(columns_table(ev.features, p))
    if ev.classifier is not None and ev.classifier.importances:
        tables.append(separating_table(ev))
    tables.append(class_table(ev))
    return Section(check=check, title=title, summary=summary(ev, p), reading=reading(ev, p),
                   metrics=metrics(ev), findings=drift_findings(ev, p), figures=figures,
                   tables=tables, params=asdict(p))


def metrics(ev: DriftEvaluation) -> dict[str, float]:
    """Flat metrics: sizes, per-column counts and share, the whole-set tests, the prediction
    tests, and the accuracy (reference, estimated with ``_ci_low``/``_ci_high``, and the real
    ``current_accuracy`` with its interval when the current data has labels)."""
    out: dict[str, float] = {"samples_reference": float(ev.n_reference),
                             "samples_current": float(ev.n_current)}
    if ev.features:
        out.update(columns_tested=float(len(ev.features)),
                   drifted_columns=float(len(ev.drifted)), drift_share=ev.drift_share,
                   max_psi=max(f.psi for f in ev.features))
    if ev.classifier is not None:
        out.update(c2st_auc=ev.classifier.auc, c2st_p_value=ev.classifier.p_value,
                   c2st_p_adjusted=ev.classifier_p_adjusted)
    if ev.mmd is not None:
        out.update(mmd=ev.mmd.mmd2, mmd_p_value=ev.mmd.p_value,
                   mmd_p_adjusted=ev.mmd_p_adjusted)
    for name, col in (("prediction_drift", PREDICTED), ("confidence_drift", CONFIDENCE)):
        f = ev.prediction(col)
        if f is not None:
            out[f"{name}_p_value"] = f.p_value
            out[f"{name}_psi"] = f.psi
    out["out_of_range_share"] = ev.out_of_range
    a = ev.accuracy
    if a is not None:
        out.update(reference_accuracy=a.reference_accuracy, estimated_accuracy=a.estimated,
                   estimated_accuracy_ci_low=a.ci_low, estimated_accuracy_ci_high=a.ci_high)
        if a.realized is not None and a.realized_ci_low is not None \
                and a.realized_ci_high is not None:
            out.update(current_accuracy=a.realized, current_accuracy_ci_low=a.realized_ci_low,
                       current_accuracy_ci_high=a.realized_ci_high)
    return out


def _p(v: float) -> str:
    """A p-value for a table: 3 digits, scientific below 1e-4, and below the double-precision
    floor (a p-value that underflows to 0) as ``< 1e-300``."""
    if not math.isfinite(v):
        return "–"
    return f"{v:.3g}" if v >= 1e-4 else f"{v:.1e}" if v >= 1e-300 else "< 1e-300"


def _verdict(p_value: float, alpha: float) -> str:
    return "drift" if p_value < alpha else "no drift seen"


def tests_table(ev: DriftEvaluation, p: DriftParams) -> Table:
    """The whole-set tests: domain classifier, MMD on embeddings, predictions."""
    rows: list[list[Cell]] = []
    c = ev.classifier
    if c is not None:
        rows.append([f"classifier two-sample test on {ev.classifier_on}",
                     f"held-out ROC AUC {c.auc:.3f}", _p(ev.classifier_p_adjusted),
                     _verdict(ev.classifier_p_adjusted, p.alpha),
                     f"{c.n_test} held-out rows; {c.classifier}"])
    m = ev.mmd
    if m is not None:
        rows.append([f"kernel MMD on the {ev.embedding}", f"MMD² {m.mmd2:.4g}",
                     _p(ev.mmd_p_adjusted), _verdict(ev.mmd_p_adjusted, p.alpha),
                     f"{m.n_reference} vs {m.n_current} samples, {m.permutations} "
                     f"permutations, 95% null quantile {m.threshold:.4g}"
                     + (f"; {ev.embedding_note}" if ev.embedding_note else "")])
    for f in ev.predictions:
        what = "predicted class shares (chi-square)" if f.column == PREDICTED else \
            "top-class confidence (Kolmogorov-Smirnov)"
        stat = f"Cramér's V {f.effect:.3f}" if f.test == "chi2" else f"D {f.statistic:.3f}"
        rows.append([what, stat, _p(f.p_adjusted), _verdict(f.p_adjusted, p.alpha),
                     f"PSI {f.psi:.3f}; detectable effect {f.mde:.3f} at {p.power:.0%} power"])
    return Table(id="drift-tests", title="Whole-data tests", rows=rows,
                 columns=["test", "statistic", "p (BH)", "verdict", "details"],
                 caption=f"p (BH): every test of the check (these and the per-column ones) is "
                         f"Benjamini-Hochberg adjusted together, so that on data without "
                         f"drift the chance of any drift finding is at most {p.alpha:g}.")


def accuracy_table(ev: DriftEvaluation) -> Table:
    """Reference, estimated and (with labels) real accuracy of the current data."""
    a = ev.accuracy
    assert a is not None
    rows: list[list[Cell]] = [
        ["reference", f"{a.reference_accuracy:.1%}", "–", a.n_reference, "labels"],
        ["current, estimated", f"{a.estimated:.1%}", f"{a.ci_low:.1%}–{a.ci_high:.1%}",
         a.n_current, a.method]]
    if a.realized is not None and a.realized_ci_low is not None \
            and a.realized_ci_high is not None:
        rows.append(["current, measured", f"{a.realized:.1%}",
                     f"{a.realized_ci_low:.1%}–{a.realized_ci_high:.1%}", a.n_current,
                     "labels (Wilson interval); the estimate's interval "
                     + ("holds it" if a.within else "misses it")])
    return Table(id="drift-accuracy", title="Accuracy without labels", rows=rows,
                 columns=["data", "accuracy", "95% interval", "samples", "how"],
                 caption=f"Cross-fitted on the reference itself the estimate gives "
                         f"{a.reference_estimated:.1%} against the real "
                         f"{a.reference_accuracy:.1%}.")


def columns_table(features: list[FeatureDrift], p: DriftParams) -> Table:
    """Every tested column, drifted first."""
    rows: list[list[Cell]] = []
    for f in sorted(features, key=lambda f: (not f.drifted, f.p_adjusted)):
        stat = f"D {f.statistic:.3f}" if f.test == "ks" else \
            f"χ² {f.statistic:.1f} (df {f.dof}), V {f.effect:.3f}"
        mde = f"{f.mde:.3f}" + (f" ({f.mde_shift_sd:.2f} SD)" if f.mde_shift_sd is not None
                                else "")
        changes = ", ".join(f"{c}: {r:.1%}→{q:.1%}" for c, r, q in f.top_changes)
        rows.append([f.column, f.kind, stat, _p(f.p_value), _p(f.p_adjusted),
                     "yes" if f.drifted else "no", mde, round(f.psi, 4),
                     None if f.wasserstein is None else round(f.wasserstein, 4),
                     f"{f.missing_reference:.1%} / {f.missing_current:.1%}", changes])
    return Table(id="drift-columns", title="Per-column drift",
                 columns=["column", "kind", "statistic", "p", "p (BH)", "drifted",
                          f"detectable effect ({p.power:.0%} power)", "PSI",
                          "Wasserstein / SD", "missing ref / cur", "largest share changes"],
                 rows=rows,
                 caption="Numeric columns: two-sample Kolmogorov-Smirnov test (D is the "
                         "largest gap between the two cumulative distributions). Categorical "
                         "columns: chi-square test of homogeneity (V is Cramér's V). p (BH): "
                         "Benjamini-Hochberg adjusted together with every other test of the "
                         "check; drifted when below "
                         f"{p.alpha:g}. The detectable effect is the smallest D or V the test "
                         "finds with the stated power here (in brackets: as a mean shift of a "
                         "normal column in standard deviations). PSI: population stability "
                         "index over reference-decile bins (above 0.25 is usually read as a "
                         "major shift). Wasserstein: earth mover's distance over the "
                         "reference's standard deviation.")


def separating_table(ev: DriftEvaluation) -> Table:
    """What the domain classifier relies on to tell the sets apart."""
    c = ev.classifier
    assert c is not None
    return Table(id="drift-separating", title="What separates current from reference data",
                 columns=["feature", "held-out AUC lost when shuffled"],
                 rows=[[n, round(d, 4)] for n, d in c.importances],
                 caption="Each feature's (one-hot columns together) values are shuffled among "
                         "the held-out rows; the AUC the domain classifier loses is how much it "
                         "relies on that feature to tell the two data sets apart.")


def class_table(ev: DriftEvaluation) -> Table:
    """Predicted class shares on both sets."""
    return Table(id="drift-classes", title="Predicted class shares",
                 columns=["class", "reference", "current", "change"],
                 rows=[[c, f"{r:.1%}", f"{q:.1%}", f"{q - r:+.1%}"]
                       for c, r, q in ev.class_shares])


def summary(ev: DriftEvaluation, p: DriftParams) -> str:
    """One paragraph: what drifted, and the accuracy."""
    parts = [f"{ev.n_current} current against {ev.n_reference} reference samples."]
    if ev.features:
        parts.append(f"{len(ev.drifted)} of {len(ev.features)} columns drifted"
                     + (f" ({', '.join(f.column for f in ev.drifted[:4])}"
                        + (", ..." if len(ev.drifted) > 4 else "") + ")" if ev.drifted else "")
                     + ".")
    if ev.classifier is not None:
        parts.append(f"Domain classifier AUC {ev.classifier.auc:.3f} "
                     f"(adjusted {p_text(ev.classifier_p_adjusted)}).")
    if ev.mmd is not None:
        parts.append(f"Embedding MMD adjusted {p_text(ev.mmd_p_adjusted)}.")
    a = ev.accuracy
    if a is not None:
        parts.append(f"Accuracy estimated without labels {a.estimated:.1%} "
                     f"({a.ci_low:.1%}–{a.ci_high:.1%}) against {a.reference_accuracy:.1%} "
                     "on the reference" + (f"; measured {a.realized:.1%}"
                                           if a.realized is not None else "") + ".")
        if a.realized is None and ev.mmd is not None and ev.mmd_p_adjusted < p.alpha:
            parts.append("With the embeddings drifted, the estimate may be optimistic; label a "
                         "sample to confirm.")
    return " ".join([*parts, *ev.notes])


def reading(ev: DriftEvaluation, p: DriftParams) -> str:
    """How to read the section."""
    return (
        "The current data (the audited --data) is compared with the reference (--reference, "
        "data the model is known to work on). Per column, numeric values are compared with "
        "the Kolmogorov-Smirnov test and categories with the chi-square test; the p-values of"
        " all the check's tests are corrected together with Benjamini-Hochberg, so that the "
        f"share of false alarms among flagged drifts stays below {p.alpha:g} (and on data "
        "without any drift, the chance of a drift finding too); each column also shows the "
        f"smallest effect the test would find with {p.power:.0%} power, so 'no drift' comes "
        "with what could have been missed, and the population stability index (PSI) most "
        "monitoring tools report. A domain classifier trained to tell the two data sets apart"
        " tests them as a whole (ROC AUC 0.5: it cannot) and names the features it uses. On "
        "the model's side, the kernel MMD test compares the model's own embeddings (the input"
        " of its classification head), and the predicted classes and confidence are tested "
        "for change. Accuracy without labels is estimated as CBPE does: the model's "
        "confidence is calibrated on the labelled reference, and the mean calibrated "
        "probability of being right on the current data is the expected accuracy; its "
        "interval covers the calibration's error and the sampling of the current rows. The "
        "estimate assumes that only the inputs changed, not what a label means for a given "
        "input (no concept shift): when the current data has labels, the real accuracy is "
        "shown beside it and a miss is reported."
    )
