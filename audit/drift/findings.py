"""Judge a :class:`DriftEvaluation`: which drifts matter, at which severity (pure functions of
the evaluation and the check's settings)."""

from __future__ import annotations

import math

from audit.drift.evaluation import DriftEvaluation
from audit.drift.features import FeatureDrift
from audit.drift.measure import CONFIDENCE, PREDICTED
from audit.drift.params import DriftParams
from audit.policy import Category, kind
from audit.result import Finding, Severity
from audit.stats import p_text

__all__ = ["drift_findings"]

FEATURES = kind("drift.features", Category.EXPOSURE,
                "Columns of the current data are distributed unlike the reference's "
                "(per-column tests after Benjamini-Hochberg): low for a few columns, medium "
                "when dataset_share of them drift or a drifted column's PSI passes psi_medium.")
DATASET = kind("drift.dataset", Category.EXPOSURE,
               "A domain classifier tells current from reference rows better than chance "
               "(held-out ROC AUC, Mann-Whitney test): medium above c2st_auc_medium, else low.")
REPRESENTATION = kind("drift.representation", Category.EXPOSURE,
                      "The model's own embeddings of the current inputs differ from the "
                      "reference's (kernel MMD permutation test): medium.")
PREDICTIONS = kind("drift.predictions", Category.EXPOSURE,
                   "The shares of predicted classes or the confidence distribution changed "
                   "(chi-square, Kolmogorov-Smirnov): medium.")
PERFORMANCE = kind("drift.performance", Category.DEFECT,
                   "Accuracy on the current data is more than max_accuracy_drop below the "
                   "reference's: medium when the estimate (or the measured accuracy) says so, "
                   "high when its whole 95% interval is below.")
ESTIMATE_MISSED = kind("drift.estimate-missed", Category.METHOD,
                       "The current data has labels and its real accuracy lies outside the "
                       "label-free estimate's interval: the reference's calibration did not "
                       "carry over (concept shift), so estimates without labels are not to be "
                       "trusted on such data (low).")
OUT_OF_RANGE = kind("drift.out-of-range", Category.EXPOSURE,
                    "Current inputs lie outside the input range of the model's card (numeric "
                    "columns past their training range): the model extrapolates there "
                    "(medium).")
NO_ESTIMATE = kind("drift.no-estimate", Category.COVERAGE,
                   "The accuracy on the current data could not be estimated without labels "
                   "(the reference shows no errors to calibrate on, or too few rows): info.")
POWER = kind("drift.power", Category.COVERAGE,
             "No drift was found in some columns, but at these sample sizes a mean shift of "
             "weak_power_sd standard deviations could have gone unseen (low).")


def _describe(f: FeatureDrift) -> str:
    test = f"KS D={f.statistic:.3f}" if f.test == "ks" else \
        f"chi-square {f.statistic:.1f} (Cramér's V {f.effect:.3f})"
    return f"{f.column} ({test}, adjusted {p_text(f.p_adjusted)}, PSI {f.psi:.2f})"


def _features(ev: DriftEvaluation, p: DriftParams) -> list[Finding]:
    drifted = ev.drifted
    if not drifted:
        return []
    strong = [f for f in drifted if f.psi > p.psi_medium]
    dataset = ev.drift_share >= p.dataset_share
    sev = Severity.MEDIUM if dataset or strong else Severity.LOW
    listed = "; ".join(_describe(f) for f in drifted[:5])
    more = f" and {len(drifted) - 5} more" if len(drifted) > 5 else ""
    return [FEATURES(
        sev, title=f"{len(drifted)} of {len(ev.features)} columns drifted"
                   + (" (dataset drift)" if dataset else ""),
        detail=f"Drifted after Benjamini-Hochberg at {p.alpha:g}: {listed}{more}.",
        evidence={"drifted": [f.column for f in drifted], "share": ev.drift_share,
                  "psi": {f.column: f.psi for f in drifted}},
        recommendation="Check how the data is collected for these columns; if the change is "
                       "real, re-audit on current data with labels and retrain on it.")]


def _dataset(ev: DriftEvaluation, p: DriftParams) -> list[Finding]:
    c = ev.classifier
    if c is None or ev.classifier_p_adjusted >= p.alpha:
        return []
    sev = Severity.MEDIUM if c.auc >= p.c2st_auc_medium else Severity.LOW
    names = ", ".join(f"{n} (AUC lost {d:.3f})" for n, d in c.importances[:5])
    return [DATASET(
        sev, title=f"A classifier tells current from reference data apart (AUC {c.auc:.3f})",
        detail=(f"A {c.classifier} on {ev.classifier_on} reaches a held-out ROC AUC of "
                f"{c.auc:.3f} on {c.n_test} rows (adjusted {p_text(ev.classifier_p_adjusted)}; "
                "0.5 is chance)."
                + (f" What separates them most: {names}." if names else "")),
        evidence={"auc": c.auc, "p_value": c.p_value, "importances": dict(c.importances)},
        recommendation="Look at the separating features first; a model trained on the "
                       "reference may not hold on the current data.")]


def _model_side(ev: DriftEvaluation, p: DriftParams) -> list[Finding]:
    out: list[Finding] = []
    m = ev.mmd
    if m is not None and ev.mmd_p_adjusted < p.alpha:
        out.append(REPRESENTATION(
            Severity.MEDIUM,
            title=f"The model's embeddings drifted (MMD adjusted {p_text(ev.mmd_p_adjusted)})",
            detail=(f"Kernel MMD² {m.mmd2:.4g} on the {ev.embedding} against a permutation "
                    f"threshold of {m.threshold:.4g} ({m.permutations} permutations, "
                    f"{m.n_reference} vs {m.n_current} samples)."),
            evidence={"mmd2": m.mmd2, "p_value": m.p_value, "layer": ev.embedding},
            recommendation="The model sees inputs unlike those it was checked on; re-audit "
                           "on current data with labels."))
    moved = [f for f in (ev.prediction(PREDICTED), ev.prediction(CONFIDENCE))
             if f is not None and f.drifted]
    if moved:
        out.append(PREDICTIONS(
            Severity.MEDIUM, title="Predictions drifted: " + " and ".join(
                "class shares" if f.column == PREDICTED else "confidence" for f in moved),
            detail="; ".join(_describe(f) for f in moved) + ".",
            evidence={f.column: f.p_adjusted for f in moved},
            recommendation="Compare the class shares with what is expected in production; a "
                           "shift in confidence often comes before a fall in accuracy."))
    return out


def _performance(ev: DriftEvaluation, p: DriftParams) -> list[Finding]:
    a = ev.accuracy
    if a is None:
        return [NO_ESTIMATE(Severity.INFO, title="Accuracy not estimated without labels",
                            detail=" ".join(ev.notes) or "No estimate was made.",
                            recommendation="Use a larger labelled reference on which the "
                                           "model makes some errors, held out from training.")]
    out: list[Finding] = []
    floor = a.reference_accuracy - p.max_accuracy_drop
    measured = a.realized is not None and a.realized_ci_high is not None
    value, high = (a.realized, a.realized_ci_high) if measured else (a.estimated, a.ci_high)
    assert value is not None and high is not None
    if value < floor:
        sev = Severity.HIGH if high < floor else Severity.MEDIUM
        how = "measured with the current labels" if measured else \
            "estimated without labels (CBPE)"
        out.append(PERFORMANCE(
            sev, title=f"Accuracy fell from {a.reference_accuracy:.1%} to {value:.1%} ({how})",
            detail=(f"Accuracy on the current data, {how}: {value:.1%} (95% interval up to "
                    f"{high:.1%}), against {a.reference_accuracy:.1%} on the reference; the "
                    f"threshold is a drop of {p.max_accuracy_drop:.0%}."
                    + ("" if measured else _optimism(ev, p))),
            evidence={"reference_accuracy": a.reference_accuracy, "value": value,
                      "ci_high": high, "measured": measured},
            recommendation="Label a sample of current data to confirm, then retrain or "
                           "recalibrate on data like it."))
    if a.within is False:
        out.append(ESTIMATE_MISSED(
            Severity.LOW, title="The label-free accuracy estimate missed the real accuracy",
            detail=(f"Estimated {a.estimated:.1%} ({a.ci_low:.1%}-{a.ci_high:.1%}) but the "
                    f"labels give {a.realized:.1%}."),
            evidence={"estimated": a.estimated, "realized": a.realized},
            recommendation="Do not rely on label-free estimates for this kind of data; keep "
                           "labelling a sample. A reference the model was trained on makes "
                           "its confidence look better calibrated than it is: use held-out "
                           "data as the reference."))
    return out


def _out_of_range(ev: DriftEvaluation) -> list[Finding]:
    if not ev.out_of_range:
        return []
    lo, hi = ev.input_range
    cols = "; ".join(f"{c}: {v:.1%}" for c, v in ev.out_of_range_columns[:6])
    where = (f"Inputs outside [{lo:g}, {hi:g}], the card's input range" if math.isfinite(lo)
             else "Numeric columns past the range seen in training (the card's encoder clips "
                  "them to it, so the model cannot tell how far out they are)")
    return [OUT_OF_RANGE(
        Severity.MEDIUM,
        title=f"{ev.out_of_range:.1%} of current rows are outside the model's input range",
        detail=(where + (f"; by column: {cols}" if cols else "") + ". The model was not "
                "built for these values."),
        evidence={"share": ev.out_of_range, "columns": dict(ev.out_of_range_columns)},
        recommendation="Find out why production values leave the training range; retrain on "
                       "data that covers them, or reject them before the model.")]


def _optimism(ev: DriftEvaluation, p: DriftParams) -> str:
    """The caveat of a label-free estimate when the model's own embeddings drifted: under
    such shifts (image corruption) models turn confidently wrong and CBPE reads high."""
    if ev.mmd is None or ev.mmd_p_adjusted >= p.alpha:
        return ""
    return (" The model's embeddings drifted as well: under such shifts models are often "
            "confidently wrong, and the real accuracy can be well below this estimate.")


def _power(ev: DriftEvaluation, p: DriftParams) -> list[Finding]:
    weak = [f for f in ev.features if not f.drifted and f.mde_shift_sd is not None
            and f.mde_shift_sd > p.weak_power_sd]
    if not weak:
        return []
    return [POWER(
        Severity.LOW, title=f"{len(weak)} column(s) without drift, but with little power",
        detail=("At these sample sizes the smallest mean shift detected with "
                f"{p.power:.0%} power exceeds {p.weak_power_sd:g} standard deviations in: "
                + ", ".join(f"{f.column} ({f.mde_shift_sd:.2f} SD)" for f in weak[:8]) + "."),
        evidence={f.column: f.mde_shift_sd for f in weak},
        recommendation="Collect more current data before concluding it has not drifted.")]


def drift_findings(ev: DriftEvaluation, p: DriftParams) -> list[Finding]:
    """Every finding of the drift check."""
    return [*_performance(ev, p), *_out_of_range(ev), *_features(ev, p), *_dataset(ev, p),
            *_model_side(ev, p), *_power(ev, p)]
