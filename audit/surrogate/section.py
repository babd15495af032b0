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
from audit.surrogate.sweep import Sweep, beats_constant


def build_section(check: Check[SurrogateParams], ev: SurrogateEvaluation,
                  findings: list[Finding]) -> Section:
    """The surrogate section: metrics, fidelity/rules/weights tables, figures, prose."""
    p = check.params
    view, tree, linear, baseline, counts = ev.view, ev.tree, ev.linear, ev.baseline, ev.counts
    classes = ev.classes
    rt, rl = tree.shown, linear.shown
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
    tables = [curve_table(tree, linear, p)]
    if rules and rt.complexity > 0:
        readable = faithful(tree, p)
        tables.append(Table(
            id="rules", title=f"Rules of the {shown_name(tree, p)}"
            + ("" if readable else f", which agrees with the model on {rt.agreement:.1%}: "
               "not faithful enough to read as the model's logic"),
            columns=["#", "IF", "THEN the model predicts", "coverage", "model agrees"],
            rows=rules_table_rows(rules, p.max_rules),
            caption=(f"One rule per leaf, most-covering first ({min(len(rules), p.max_rules)}"
                     f" of {len(rules)} shown). Coverage: share of the fitting samples that "
                     "reach the leaf; model agrees: share of them the model puts in that "
                     "class."
                     + ("" if readable else _not_logic(tree, baseline, p)))))
    weights = weights_table(view, linear, classes, p, baseline)
    if weights is not None:
        tables.append(weights)
    figures = [curve_figure(tree, linear, baseline, p)]
    if sklearn_tree is not None and rt.complexity > 0:
        figures.append(plot_surrogate_tree(
            sklearn_tree, view, classes, max_depth=p.draw_depth,
            title=(f"Recommended surrogate: {describe(rt)}" if faithful(tree, p) and
                   tree.recommendation is not None else
                   f"{shown_name(tree, p).capitalize()}, agrees {rt.agreement:.1%}: "
                   "not the model's logic")))
    if isinstance(view, RegionView):
        figures.append(region_figure(ev))
    return check.section(
        summary=summary(tree, linear, baseline, counts["rows_holdout"], p),
        reading=reading(view, counts, p),
        metrics=metrics, findings=findings, tables=tables, figures=figures)


def faithful(sweep: Sweep, p: SurrogateParams) -> bool:
    """Whether the family reaches ``min_fidelity_medium`` (its points may be read as the
    model's logic) with a point that beats the constant guess."""
    return sweep.recommendation is not None and sweep.best.agreement >= p.min_fidelity_medium


def shown_name(sweep: Sweep, p: SurrogateParams) -> str:
    """How the report names the point it describes: ``recommended depth-3 tree (8 leaves)``
    only when it is recommended and its family faithful."""
    pt = sweep.shown
    if faithful(sweep, p):
        return f"recommended {describe(pt)}"
    if pt is sweep.best:
        return f"most faithful {describe(pt)}"
    return f"smallest near-best {describe(pt)}"


def _not_logic(sweep: Sweep, baseline: float, p: SurrogateParams) -> str:
    return (f" The best {FAMILY_TITLE[sweep.family]} agrees with the model on "
            f"{sweep.best.agreement:.1%} of held-out samples, below the "
            f"{p.min_fidelity_medium:.0%} needed (constant guess: {baseline:.1%}): these "
            f"{'rules' if sweep.family == 'tree' else 'weights'} describe the surrogate, not "
            "the model.")


def summary(tree: Sweep, linear: Sweep, baseline: float, n_hold: int,
            p: SurrogateParams) -> str:
    rt, rl = tree.shown, linear.shown
    lo, hi = rt.fidelity.agreement_ci
    text = (f"A {describe(rt)} agrees with the model on {rt.agreement:.1%} (95% CI "
            f"{lo:.1%}-{hi:.1%}) of {n_hold} held-out samples, R² of probabilities "
            f"{rt.fidelity.r2:.2f}; a {describe(rl)} agrees on {rl.agreement:.1%}. "
            f"Always predicting the model's most common class agrees on {baseline:.1%}.")
    ok = {s.family: faithful(s, p) for s in (tree, linear)}
    none_beat = tree.recommendation is None and linear.recommendation is None
    if none_beat and baseline >= p.min_fidelity_medium:
        text += (" No surrogate does better than that constant guess: the model predicts "
                 "(almost) only one class, so there are no rules to read.")
    elif not any(ok.values()):
        top = max(tree.best.agreement, linear.best.agreement)
        text += (f" No surrogate is faithful enough to read as the model's logic (best "
                 f"{top:.1%}, {p.min_fidelity_medium:.0%} needed)"
                 + (", and none beats the constant guess" if none_beat else "")
                 + ": the rules and weights shown describe the surrogates only; a limit of "
                 "the method, not a defect of the model.")
    elif not all(ok.values()):
        bad = "tree" if not ok["tree"] else "linear"
        good = "linear" if bad == "tree" else "tree"
        text += (f" Only the {FAMILY_TITLE[good]} is faithful: read its "
                 f"{'rules' if good == 'tree' else 'weights'}, not the "
                 f"{FAMILY_TITLE[bad]}'s.")
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
        f"{p.tolerance:.0%} agreement of its family's best, among those that use a feature "
        "and beat the constant guess by more than their interval; a family whose best stays "
        f"below {p.min_fidelity_medium:.0%} has none called recommended, and its rules or weights "
        "are titled as not faithful. Read the rules as a description "
        "of the model only when agreement is high (at least "
        f"{p.min_fidelity_medium:.0%} here) and clearly above the constant guess; "
        "a surrogate describes what the model does, not why, and not what is true of the "
        "data.")


def curve_table(tree: Sweep, linear: Sweep, p: SurrogateParams) -> Table:
    rows: list[list[Any]] = []
    for sweep in (tree, linear):
        rec, best = sweep.recommendation, sweep.best
        for pt in sweep.points:
            lo, hi = pt.fidelity.agreement_ci
            notes = []
            ok = faithful(sweep, p)
            if pt is rec and ok:
                notes.append("recommended")
            elif pt is rec and pt is not best:
                notes.append("smallest near the best")
            if pt is best:
                notes.append("best")
            if not ok and (pt is rec or pt is best):
                notes.append("not faithful")
            if pt.complexity == 0:
                notes.append("constant")
            elif not beats_constant(pt, sweep.baseline):
                notes.append("no better than the constant guess")
            rows.append([
                FAMILY_TITLE[pt.family],
                f"depth {pt.complexity}" if pt.family == "tree"
                else f"{pt.complexity} features",
                pt.size, round(pt.agreement, 4), f"{lo:.3f}-{hi:.3f}",
                None if not np.isfinite(pt.fidelity.r2) else round(pt.fidelity.r2, 4),
                ", ".join(notes)])
    return Table(
        id="fidelity-curve", title="Fidelity against complexity",
        columns=["surrogate", "complexity", "leaves / weights", "agreement", "95% CI",
                 "R² (probabilities)", ""],
        rows=rows,
        caption="Every surrogate of the sweep, scored on the same held-out samples. Trees: "
                "depth reached and number of leaves; linear: features with a non-zero "
                "weight and non-zero weights over all classes. A surrogate without features "
                "or whose interval does not clear the constant guess is never recommended; "
                f"'recommended' also needs its family to reach {p.min_fidelity_medium:.0%} "
                "agreement.")


def weights_table(view: FeatureView, linear: Sweep, classes: list[str], p: SurrogateParams,
                  baseline: float) -> Table | None:
    rl = linear.shown
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
    readable = faithful(linear, p)
    return Table(
        id="linear-weights", title=f"Weights of the {shown_name(linear, p)}"
        + ("" if readable else f", which agrees with the model on {rl.agreement:.1%}: not "
           "faithful enough to read as the model's logic"),
        columns=["feature", "class", "weight (log-odds)"],
        rows=[[f, c, round(w, 3)] for w, c, f in shown],
        caption=(f"Largest of {len(entries)} non-zero weights. A weight is the change in the "
                 "log-odds of the class from the feature's lowest to its highest value (for "
                 "'column == value': when it holds); positive favours the class."
                 + ("" if readable else _not_logic(linear, baseline, p))))
