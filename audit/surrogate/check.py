"""The ``surrogate`` check: global tree and linear surrogates, fidelity against complexity, rules.

Steps: sample up to ``max_rows`` audit rows with the run seed; hold out ``holdout`` of them; add
perturbed copies of the fitting rows (``perturbed_ratio`` per row, at least ``min_fit_samples`` in
all; feature groups swapped between rows, see
:mod:`audit.surrogate.features`) labelled by the model; sweep tree depth and L1 strength; score
every surrogate on the held-out rows (agreement and R^2 of probabilities, bootstrap 95% CIs);
recommend the smallest surrogate within ``tolerance`` of its family's best; show its rules.

Findings: ``surrogate.unfaithful`` when no surrogate reaches ``min_fidelity_medium`` agreement
(its rules must not be read as the model's logic), ``surrogate.unfaithful.tree|linear`` when one
family falls short while the other is faithful, and ``surrogate.sensitive-feature`` when the
recommended tree splits on a sensitive column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from audit.checks import Check, register
from audit.datasets.tabular import TabularEncoder, card_encoder
from audit.figures import PALETTE, new_figure, styled, to_figure
from audit.result import Figure, Finding, Section, Severity, Table
from audit.subject import Subject
from audit.surrogate.features import FeatureView, RegionView, imitation_set, view_for
from audit.surrogate.model import linear_coef
from audit.surrogate.rules import plot_surrogate_tree, rules_table_rows, tree_rules
from audit.surrogate.sweep import Family, Sweep, SweepPoint, sweep_linear, sweep_tree

FAMILY_TITLE = {"tree": "decision tree", "linear": "sparse linear model"}


@dataclass
class SurrogateParams:
    """Settings of the surrogate check."""

    max_rows: int = 3000  # audit rows sampled (seeded) for fitting and scoring
    holdout: float = 0.3  # share of rows held out to measure fidelity
    perturbed_ratio: float = 1.0  # perturbed samples added per audit row
    min_fit_samples: int = 2000  # fit on at least this many rows (more perturbed ones)
    perturb_prob: float = 0.3  # chance that a column/region is swapped in a perturbed row
    tree_depths: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 8, 10])
    """Tree depths of the fidelity sweep."""
    min_samples_leaf: int = 5  # smallest leaf of a surrogate tree
    linear_steps: int = 10  # points on the L1 regularisation path
    linear_span: float = 3.0  # decades spanned by the L1 path
    tolerance: float = 0.02  # recommend the smallest surrogate within this of the best
    min_fidelity_medium: float = 0.9  # best agreement below this: medium finding
    min_fidelity_high: float = 0.75  # best agreement below this: high finding
    sensitive_share_medium: float = 0.05  # weight share on sensitive columns for a finding
    n_bootstrap: int = 200  # bootstrap resamples of the fidelity intervals
    grid: int = 4  # images: regions per side of the pooled features
    draw_depth: int = 3  # depth of the drawn tree
    max_rules: int = 16  # rules listed in the report
    max_weights: int = 15  # linear weights listed in the report


def _describe(point: SweepPoint) -> str:
    if point.family == "tree":
        return f"depth-{point.complexity} tree ({point.size} leaves)"
    return f"sparse linear model with {point.complexity} features"


@register
class SurrogateCheck(Check[SurrogateParams]):
    """Global surrogates (tree, sparse linear) with held-out fidelity and readable rules."""

    name = "surrogate"
    title = "Global surrogate models"
    description = ("decision-tree and sparse linear surrogates of the model: fidelity against "
                   "complexity, readable rules")
    Params = SurrogateParams
    quick: ClassVar[dict[str, Any]] = {
        "max_rows": 1200, "min_fit_samples": 1200, "n_bootstrap": 100,
        "tree_depths": [1, 2, 3, 4, 6], "linear_steps": 6}

    def applies(self, subject: Subject) -> str | None:
        if subject.card.task != "classification":
            return "surrogates are fitted to class predictions; the model is not a classifier"
        if len(subject.data) < 20:
            return f"the audit data has {len(subject.data)} samples; at least 20 are needed"
        return None

    def run(self, subject: Subject) -> Section:
        p: SurrogateParams = self.params
        data = subject.data
        rng = subject.rng("surrogate")
        seed = int(rng.integers(0, 2**31 - 1))
        n = len(data)
        rows = np.sort(rng.choice(n, size=min(n, p.max_rows), replace=False))
        x = data.x[torch.from_numpy(rows)]
        labels = subject.data_pred.numpy()[rows]
        proba = subject.data_proba.numpy().astype(np.float64)[rows]
        perm = rng.permutation(len(rows))
        n_hold = min(max(round(p.holdout * len(rows)), 10), len(rows) - 10)
        hold, fit = perm[:n_hold], perm[n_hold:]
        encoder = data.extras.get("encoder")
        if not isinstance(encoder, TabularEncoder):
            encoder = card_encoder(subject.card) if data.kind == "tabular" else None
        view = view_for(x, data.kind, data.feature_names or subject.card.input.feature_names,
                        encoder, p.grid)
        n_pert = max(round(p.perturbed_ratio * len(fit)), p.min_fit_samples - len(fit))
        X_fit, y_fit = imitation_set(
            lambda v: subject.logits(v).argmax(1).numpy(), x[torch.from_numpy(fit)], view,
            perturbed=n_pert, p=p.perturb_prob, rng=rng, labels=labels[fit])
        X_hold, y_hold, p_hold = view.transform(x[torch.from_numpy(hold)]), labels[hold], \
            proba[hold]
        k = len(subject.card.classes)
        common: dict[str, Any] = {"n_classes": k, "tolerance": p.tolerance,
                                  "n_bootstrap": p.n_bootstrap, "random_state": seed}
        tree = sweep_tree(X_fit, y_fit, X_hold, y_hold, p_hold, depths=p.tree_depths,
                          min_samples_leaf=p.min_samples_leaf, **common)
        linear = sweep_linear(X_fit, y_fit, X_hold, y_hold, p_hold, steps=p.linear_steps,
                              span=p.linear_span, **common)
        majority = int(np.bincount(y_fit, minlength=k).argmax())
        baseline = float((y_hold == majority).mean())
        counts = {"rows_fit": len(fit), "rows_perturbed": n_pert, "rows_holdout": n_hold,
                  "rows_available": n}
        return self._section(subject, view, tree, linear, baseline, counts)

    # --- assembling the section -------------------------------------------------------------

    def _section(self, subject: Subject, view: FeatureView, tree: Sweep, linear: Sweep,
                 baseline: float, counts: dict[str, int]) -> Section:
        p: SurrogateParams = self.params
        classes = subject.card.classes
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
        findings = self._fidelity_findings(tree, linear, baseline, counts["rows_holdout"])
        findings += self._sensitive_findings(subject, view, rt, rl)
        tables = [self._curve_table(tree, linear)]
        if rules:
            tables.append(Table(
                id="rules", title=f"Rules of the recommended {_describe(rt)}",
                columns=["#", "IF", "THEN the model predicts", "coverage", "model agrees"],
                rows=rules_table_rows(rules, p.max_rules),
                caption=(f"One rule per leaf, most-covering first ({min(len(rules), p.max_rules)}"
                         f" of {len(rules)} shown). Coverage: share of the fitting samples that "
                         "reach the leaf; model agrees: share of them the model puts in that "
                         "class.")))
        weights = self._weights_table(view, rl, classes)
        if weights is not None:
            tables.append(weights)
        figures = [self._curve_figure(tree, linear, baseline)]
        if sklearn_tree is not None and rt.complexity > 0:
            figures.append(plot_surrogate_tree(
                sklearn_tree, view, classes, max_depth=p.draw_depth,
                title=f"Recommended surrogate: {_describe(rt)}"))
        if isinstance(view, RegionView):
            figures.append(self._region_figure(subject, view, rt, rl))
        return self.section(
            summary=self._summary(rt, rl, baseline, counts["rows_holdout"], findings),
            reading=self._reading(view, counts),
            metrics=metrics, findings=findings, tables=tables, figures=figures)

    def _summary(self, rt: SweepPoint, rl: SweepPoint, baseline: float, n_hold: int,
                 findings: list[Finding]) -> str:
        lo, hi = rt.fidelity.agreement_ci
        text = (f"A {_describe(rt)} agrees with the model on {rt.agreement:.1%} (95% CI "
                f"{lo:.1%}-{hi:.1%}) of {n_hold} held-out samples, R² of probabilities "
                f"{rt.fidelity.r2:.2f}; a {_describe(rl)} agrees on {rl.agreement:.1%}. "
                f"Always predicting the model's most common class agrees on {baseline:.1%}.")
        if any(f.id == "surrogate.unfaithful" for f in findings):
            text += " No surrogate is faithful enough for its rules to be trusted."
        return text

    def _reading(self, view: FeatureView, counts: dict[str, int]) -> str:
        p: SurrogateParams = self.params
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

    def _fidelity_findings(self, tree: Sweep, linear: Sweep, baseline: float,
                           n_hold: int) -> list[Finding]:
        p: SurrogateParams = self.params
        out: list[Finding] = []
        best: dict[Family, SweepPoint] = {s.family: s.best for s in (tree, linear)}
        faithful = {f: b.agreement >= p.min_fidelity_medium for f, b in best.items()}
        if not any(faithful.values()):
            top = max(best.values(), key=lambda b: b.agreement)
            sev = Severity.HIGH if top.agreement < p.min_fidelity_high else Severity.MEDIUM
            out.append(Finding(
                id="surrogate.unfaithful", severity=sev,
                title=f"No surrogate is faithful: best agreement {top.agreement:.1%}",
                detail=(f"The most faithful surrogate, a {_describe(top)}, agrees with the "
                        f"model on {top.agreement:.1%} of {n_hold} held-out samples (95% CI "
                        f"{top.fidelity.agreement_ci[0]:.1%}-{top.fidelity.agreement_ci[1]:.1%}"
                        f"), below the {p.min_fidelity_medium:.0%} needed to read its rules as "
                        f"the model's logic; a constant guess agrees on {baseline:.1%}."),
                evidence={"best_tree_agreement": best["tree"].agreement,
                          "best_linear_agreement": best["linear"].agreement,
                          "baseline_agreement": baseline,
                          "threshold": p.min_fidelity_medium},
                recommendation=("Do not use these rules to explain the model. Use local "
                                "explanations (saliency) instead, allow deeper trees "
                                "(tree_depths), or for images more regions (grid).")))
            return out
        for fam, ok in faithful.items():
            if ok:
                continue
            other: Family = "linear" if fam == "tree" else "tree"
            b = best[fam]
            out.append(Finding(
                id=f"surrogate.unfaithful.{fam}", severity=Severity.LOW,
                title=f"The {FAMILY_TITLE[fam]} surrogate is not faithful "
                      f"({b.agreement:.1%} agreement)",
                detail=(f"The best {_describe(b)} agrees with the model on {b.agreement:.1%} "
                        f"of {n_hold} held-out samples (threshold {p.min_fidelity_medium:.0%}; "
                        f"constant guess {baseline:.1%}), while the {FAMILY_TITLE[other]} "
                        f"reaches {best[other].agreement:.1%}: the model is not "
                        f"{'additive in its features' if fam == 'linear' else 'a shallow tree'}"
                        "."),
                evidence={"family": fam, "best_agreement": b.agreement,
                          "other_best_agreement": best[other].agreement,
                          "threshold": p.min_fidelity_medium},
                recommendation=(f"Do not read the {FAMILY_TITLE[fam]}'s "
                                f"{'weights' if fam == 'linear' else 'rules'} as the model's "
                                f"logic; use the {FAMILY_TITLE[other]} instead.")))
        return out

    def _sensitive_findings(self, subject: Subject, view: FeatureView, rt: SweepPoint,
                            rl: SweepPoint) -> list[Finding]:
        p: SurrogateParams = self.params
        sensitive = list(subject.data.extras.get("sensitive") or subject.card.sensitive or [])
        if not sensitive or isinstance(view, RegionView):
            return []
        tree = rt.surrogate.tree_
        tree_share: dict[str, float] = {}
        if tree is not None:
            for j, imp in enumerate(tree.feature_importances_):
                if imp > 0 and view.column(j) in sensitive:
                    col = view.column(j)
                    tree_share[col] = tree_share.get(col, 0.0) + float(imp)
        coef = linear_coef(rl.surrogate)
        linear_share: dict[str, float] = {}
        if coef is not None and np.abs(coef).sum() > 0:
            mass = np.abs(coef).sum(axis=0) / np.abs(coef).sum()
            for jj in np.flatnonzero(mass):
                col = view.column(int(jj))
                if col in sensitive:
                    linear_share[col] = linear_share.get(col, 0.0) + float(mass[jj])
        cols = [c for c in sensitive if c in tree_share or c in linear_share]
        if not cols:
            return []
        t_total, l_total = sum(tree_share.values()), sum(linear_share.values())
        sev = Severity.MEDIUM if max(t_total, l_total) >= p.sensitive_share_medium \
            else Severity.LOW
        parts = []
        if tree_share:
            parts.append(f"the recommended {_describe(rt)} ({rt.agreement:.1%} agreement) "
                         f"splits on {', '.join(tree_share)} ({t_total:.1%} of its importance)")
        if linear_share:
            parts.append(f"the {_describe(rl)} ({rl.agreement:.1%} agreement) puts "
                         f"{l_total:.1%} of its total |weight| on {', '.join(linear_share)}")
        return [Finding(
            id="surrogate.sensitive-feature", severity=sev,
            title=f"The surrogates use sensitive column(s) {', '.join(cols)}",
            detail="; ".join(parts).capitalize()[:1] + "; ".join(parts)[1:]
                   + ": the model's predictions depend on these columns.",
            evidence={"columns": cols, "tree_importance_share": tree_share,
                      "linear_weight_share": linear_share,
                      "threshold": p.sensitive_share_medium},
            recommendation=("Check whether this dependence is acceptable for the intended use; "
                            "the fairness check measures its effect on groups."))]

    @staticmethod
    def _curve_table(tree: Sweep, linear: Sweep) -> Table:
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

    def _weights_table(self, view: FeatureView, rl: SweepPoint, classes: list[str]
                       ) -> Table | None:
        coef = linear_coef(rl.surrogate)
        if coef is None or isinstance(view, RegionView):
            return None
        p: SurrogateParams = self.params
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
            id="linear-weights", title=f"Weights of the recommended {_describe(rl)}",
            columns=["feature", "class", "weight (log-odds)"],
            rows=[[f, c, round(w, 3)] for w, c, f in shown],
            caption=(f"Largest of {len(entries)} non-zero weights. A weight is the change in the "
                     "log-odds of the class from the feature's lowest to its highest value (for "
                     "'column == value': when it holds); positive favours the class."
                     + (f" Read them only if the linear surrogate is faithful (agreement "
                        f"{rl.agreement:.1%})." if rl.agreement < p.min_fidelity_medium
                        else "")))

    @styled
    def _curve_figure(self, tree: Sweep, linear: Sweep, baseline: float) -> Figure:
        p: SurrogateParams = self.params
        fig, axes = new_figure(9.0, 3.4, ncols=2, sharey=True)
        values = [baseline, p.min_fidelity_medium]
        for ax, sweep, xlabel in ((axes[0], tree, "tree depth"),
                                  (axes[1], linear, "features with a non-zero weight")):
            xs = np.array([pt.complexity for pt in sweep.points], dtype=float)
            agree = np.array([pt.agreement for pt in sweep.points])
            lo = np.array([pt.fidelity.agreement_ci[0] for pt in sweep.points])
            hi = np.array([pt.fidelity.agreement_ci[1] for pt in sweep.points])
            r2 = np.array([pt.fidelity.r2 for pt in sweep.points])
            values += list(lo) + [v for v in r2 if np.isfinite(v)]
            ax.fill_between(xs, lo, hi, color=PALETTE[0], alpha=0.2, linewidth=0)
            ax.plot(xs, agree, "o-", color=PALETTE[0], markersize=4, label="agreement (95% CI)")
            ax.plot(xs, r2, "s--", color=PALETTE[1], markersize=3, label="R² of probabilities")
            rec = sweep.recommended
            ax.plot([rec.complexity], [rec.agreement], "*", color=PALETTE[3], markersize=13,
                    label="recommended", zorder=5)
            ax.axhline(p.min_fidelity_medium, color="#888888", linestyle=":", linewidth=1,
                       label=f"faithful ({p.min_fidelity_medium:.0%})")
            ax.axhline(baseline, color="#bbbbbb", linestyle="-.", linewidth=1,
                       label="constant guess")
            ax.set_xlabel(xlabel)
            ax.set_title(FAMILY_TITLE[sweep.family].capitalize())
        finite = [v for v in values if np.isfinite(v)]
        axes[0].set_ylim(max(min(finite) - 0.05, -0.25), 1.02)
        axes[0].set_ylabel("fidelity on held-out samples")
        handles, names = axes[1].get_legend_handles_labels()
        fig.legend(handles, names, loc="lower center", ncol=5, fontsize=7, frameon=False,
                   bbox_to_anchor=(0.5, -0.06))
        return to_figure(fig, "fidelity-curve", "Fidelity against complexity",
                         "Agreement (with bootstrap 95% band) and R² of probabilities of each "
                         "surrogate on held-out samples; the star marks the smallest surrogate "
                         f"within {p.tolerance:.0%} of its family's best.")

    @styled
    def _region_figure(self, subject: Subject, view: RegionView, rt: SweepPoint,
                       rl: SweepPoint) -> Figure:
        """Mean image with the region grid, tree importance per region and linear usage."""
        tree = rt.surrogate.tree_
        g = view.grid
        imp = np.zeros((g, g))
        if tree is not None:
            for j, v in enumerate(tree.feature_importances_):
                _, i, jj = view.region(j)
                imp[i, jj] += v
        coef = linear_coef(rl.surrogate)
        lin = np.zeros((g, g))
        if coef is not None:
            for j in range(coef.shape[1]):
                _, i, jj = view.region(j)
                lin[i, jj] += float(np.abs(coef[:, j]).sum())
        mean_img = subject.data.x.mean(dim=0).numpy()
        fig, axes = new_figure(9.0, 3.3, ncols=3)
        c = mean_img.shape[0]
        shown = mean_img[0] if c == 1 else np.clip(mean_img.transpose(1, 2, 0), 0, 1)
        h, w = shown.shape[:2]
        panels = ((axes[0], None, "mean input with region names"),
                  (axes[1], imp, "tree: importance by region"),
                  (axes[2], lin, "linear: |weights| by region"))
        for ax, heat, title in panels:
            ax.imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="nearest",
                      extent=(0, w, h, 0))
            if heat is not None and heat.max() > 0:
                ax.imshow(heat / heat.max(), cmap="magma", alpha=0.65, vmin=0, vmax=1,
                          interpolation="nearest", extent=(0, w, h, 0))
            for e in view.row_edges:
                ax.axhline(e, color="#33aaff", linewidth=0.6)
            for e in view.col_edges:
                ax.axvline(e, color="#33aaff", linewidth=0.6)
            if heat is None:
                for i in range(g):
                    for j in range(g):
                        cy = (view.row_edges[i] + view.row_edges[i + 1]) / 2
                        cx = (view.col_edges[j] + view.col_edges[j + 1]) / 2
                        ax.text(cx, cy, f"r{i + 1}c{j + 1}", ha="center", va="center",
                                fontsize=7, color="black",
                                bbox={"boxstyle": "round,pad=0.15", "fc": "#ffee99",
                                      "ec": "none", "alpha": 0.85})
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        return to_figure(fig, "surrogate-regions", "Image regions used by the surrogates",
                         "Left: the average audit image divided into the regions the surrogates "
                         "read (rNcM = row N, column M from the top left). Middle and right: "
                         "how much the recommended tree and linear surrogates rely on each "
                         "region (brighter = more).", fmt="png", dpi=90)
