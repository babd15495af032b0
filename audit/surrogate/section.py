"""The surrogate section: metrics, tables and the text around them."""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.checks import Check
from audit.result import Finding, Section, Table
from audit.surrogate.evaluate import FAMILY_TITLE, SurrogateEvaluation, describe
from audit.surrogate.features import FeatureView, RegionView
from audit.surrogate.figures import curve_figure, region_figure
from audit.surrogate.model import linear_coef
from audit.surrogate.params import SurrogateParams
from audit.surrogate.rules import plot_surrogate_tree, rules_table_rows, tree_rules
from audit.surrogate.sweep import Sweep, SweepPoint


def build_section(check: Check[SurrogateParams], ev: SurrogateEvaluation,
                  findings: list[Finding]) -> Section:
    """The surrogate section: metrics, fidelity/rules/weights tables, figures, prose."""
    p = check.params
    view, tree, linear, baseline, counts = ev.view, ev.tree, ev.linear, ev.baseline, ev.counts
    classes = ev.classes
    rt, rl = tree.recommended, linear.recommended
    metrics: dict[str, float] = {
        "tree_depth": float(rt.complexity), "tree_leaves": float(rt.size),
        "tree_agreement": rt.agreement, "tree_agreement_ci_low": rt.fidelity.agreement_ci[0],
        "tree_agreement_ci_high": rt.fidelity.agreement_ci[1], "tree_r2": rt.fidelity.r2,
        "best_tree_agreement": tree.best.agreement,
        "linear_features": float(rl.complexity), "linear_agreement": rl.agreement,
        "linear_agreement_ci_low": rl.fidelity.agreement_ci[0],
        "linear_agreement_ci_high": rl.fidelity.agreement_ci[1],
        "linear_r2": rl.fidelity.r2, "best_linear_agreement": linear.best.agreement,
        "baseline_agreement": baseline, "features": float(len(view.names)),
        **{k: float(v) for k, v in counts.items()},
    }
    sklearn_tree = rt.surrogate.tree_
    rules = tree_rules(sklearn_tree, view, classes) if sklearn_tree is not None else []
    tables = [curve_table(tree, linear)]
    if rules:
        tables.append(Table(
            id="rules", title=f"Rules of the recommended {describe(rt)}",
            columns=["#", "IF", "THEN the model predicts", "coverage", "model agrees"],
            rows=rules_table_rows(rules, p.max_rules),
            caption=(f"One rule per leaf, most-covering first ({min(len(rules), p.max_rules)}"
                     f" of {len(rules)} shown). Coverage: share of the fitting samples that "
                     "reach the leaf; model agrees: share of them the model puts in that "
                     "class.")))
    weights = weights_table(view, rl, classes, p)
    if weights is not None:
        tables.append(weights)
    figures = [curve_figure(tree, linear, baseline, p)]
    if sklearn_tree is not None and rt.complexity > 0:
        figures.append(plot_surrogate_tree(
            sklearn_tree, view, classes, max_depth=p.draw_depth,
            title=f"Recommended surrogate: {describe(rt)}"))
    if isinstance(view, RegionView):
        figures.append(region_figure(ev))
    return check.section(
        summary=summary(rt, rl, baseline, counts["rows_holdout"], findings),
        reading=reading(view, counts, p),
        metrics=metrics, findings=findings, tables=tables, figures=figures)


def summary(rt: SweepPoint, rl: SweepPoint, baseline: float, n_hold: int,
             findings: list[Finding]) -> str:
    lo, hi = rt.fidelity.agreement_ci
    text = (f"A {describe(rt)} agrees with the model on {rt.agreement:.1%} (95% CI "
            f"{lo:.1%}-{hi:.1%}) of {n_hold} held-out samples, R² of probabilities "
            f"{rt.fidelity.r2:.2f}; a {describe(rl)} agrees on {rl.agreement:.1%}. "
            f"Always predicting the model's most common class agrees on {baseline:.1%}.")
    if any(f.id == "surrogate.unfaithful" for f in findings):
        text += " No surrogate is faithful enough for its rules to be trusted."
    return text


def reading(view: FeatureView, counts: dict[str, int], p: SurrogateParams) -> str:
    feats = ("image regions: each feature is the mean value of one cell of a "
             f"{p.grid}x{p.grid} grid (r1c1 is the top-left cell)"
             if isinstance(view, RegionView) else
             "the model's features, with one-hot columns folded back into "
             "'column == value' and numbers in the data's own units")
    return (
        "A global surrogate is a small interpretable model trained to imitate the audited "
        "model: it is fitted to the model's predictions (not the true labels) on "
        f"{counts['rows_fit']} audit samples plus {counts['rows_perturbed']} perturbed "
        f"copies (each column or region swapped with another sample's with probability "
        f"{p.perturb_prob:g}), using {feats}. Fidelity is measured on "
        f"{counts['rows_holdout']} held-out audit samples: agreement is the share where "
        "surrogate and model predict the same class, R² compares their class "
        "probabilities (1 = identical); intervals are bootstrap 95% CIs. The curve shows "
        "fidelity against complexity (tree depth; number of features with a non-zero "
        "weight); the recommended surrogate is the smallest within "
        f"{p.tolerance:.0%} agreement of its family's best. Read the rules as a description "
        "of the model only when agreement is high (at least "
        f"{p.min_fidelity_medium:.0%} here) and clearly above the constant guess; "
        "a surrogate describes what the model does, not why, and not what is true of the "
        "data.")


def curve_table(tree: Sweep, linear: Sweep) -> Table:
    rows: list[list[Any]] = []
    for sweep in (tree, linear):
        rec, best = sweep.recommended, sweep.best
        for pt in sweep.points:
            lo, hi = pt.fidelity.agreement_ci
            note = ", ".join(n for n, on in (("recommended", pt is rec), ("best", pt is best))
                             if on)
            rows.append([
                FAMILY_TITLE[pt.family],
                f"depth {pt.complexity}" if pt.family == "tree"
                else f"{pt.complexity} features",
                pt.size, round(pt.agreement, 4), f"{lo:.3f}-{hi:.3f}",
                None if not np.isfinite(pt.fidelity.r2) else round(pt.fidelity.r2, 4),
                note])
    return Table(
        id="fidelity-curve", title="Fidelity against complexity",
        columns=["surrogate", "complexity", "leaves / weights", "agreement", "95% CI",
                 "R² (probabilities)", ""],
        rows=rows,
        caption="Every surrogate of the sweep, scored on the same held-out samples. Trees: "
                "depth reached and number of leaves; linear: features with a non-zero "
                "weight and non-zero weights over all classes.")


def weights_table(view: FeatureView, rl: SweepPoint, classes: list[str], p: SurrogateParams
                  ) -> Table | None:
    coef = linear_coef(rl.surrogate)
    if coef is None or isinstance(view, RegionView):
        return None
    binary = coef.shape[0] == 1
    entries: list[tuple[float, str, str]] = []
    for c in range(coef.shape[0]):
        cls = classes[1] if binary else classes[c]
        for j in np.flatnonzero(coef[c]):
            entries.append((float(coef[c, j]), cls, view.label(int(j))))
    entries.sort(key=lambda e: (-abs(e[0]), e[2]))
    if not entries:
        return None
    shown = entries[: p.max_weights]
    return Table(
        id="linear-weights", title=f"Weights of the recommended {describe(rl)}",
        columns=["feature", "class", "weight (log-odds)"],
        rows=[[f, c, round(w, 3)] for w, c, f in shown],
        caption=(f"Largest of {len(entries)} non-zero weights. A weight is the change in the "
                 "log-odds of the class from the feature's lowest to its highest value (for "
                 "'column == value': when it holds); positive favours the class."
                 + (f" Read them only if the linear surrogate is faithful (agreement "
                    f"{rl.agreement:.1%})." if rl.agreement < p.min_fidelity_medium
                    else "")))
