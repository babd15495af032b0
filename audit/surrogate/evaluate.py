"""The surrogate check's measurement: fit tree and sparse linear surrogates to the model's
predictions and score them on held-out rows. Returns a :class:`SurrogateEvaluation` that the
finding rules, the section and the figures read; nothing here writes prose."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from audit.datasets.tabular import TabularEncoder, card_encoder
from audit.subject import Subject
from audit.surrogate.features import FeatureView, RegionView, imitation_set, view_for
from audit.surrogate.model import linear_coef
from audit.surrogate.params import SurrogateParams
from audit.surrogate.sweep import Sweep, SweepPoint, sweep_linear, sweep_tree

FAMILY_TITLE = {"tree": "decision tree", "linear": "sparse linear model"}


def describe(point: SweepPoint) -> str:
    """``depth-3 tree (8 leaves)`` or ``sparse linear model with 5 features``."""
    if point.family == "tree":
        return f"depth-{point.complexity} tree ({point.size} leaves)"
    return f"sparse linear model with {point.complexity} features"


@dataclass
class SurrogateEvaluation:
    """What the surrogate check measured.

    ``counts``: rows_fit, rows_perturbed, rows_holdout, rows_available. ``tree_share`` /
    ``linear_share``: importance (tree) and |weight| share (linear) of the recommended
    surrogates on each sensitive column they use (tabular data only).
    """

    view: FeatureView
    tree: Sweep
    linear: Sweep
    baseline: float
    counts: dict[str, int]
    classes: list[str]
    sensitive: list[str] = field(default_factory=list)
    tree_share: dict[str, float] = field(default_factory=dict)
    linear_share: dict[str, float] = field(default_factory=dict)
    mean_image: np.ndarray | None = None


def evaluate(subject: Subject, p: SurrogateParams) -> SurrogateEvaluation:
    """Sample rows with the run seed, build the imitation set, sweep both families."""
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
    sensitive = list(subject.data.extras.get("sensitive") or subject.card.sensitive or [])
    tree_share, linear_share = ({}, {}) if isinstance(view, RegionView) else sensitive_shares(
        view, tree.shown, linear.shown, sensitive)
    mean_image = data.x.mean(dim=0).numpy() if isinstance(view, RegionView) else None
    return SurrogateEvaluation(view=view, tree=tree, linear=linear, baseline=baseline,
                               counts=counts, classes=list(subject.card.classes),
                               sensitive=sensitive, tree_share=tree_share,
                               linear_share=linear_share, mean_image=mean_image)


def sensitive_shares(view: FeatureView, rt: SweepPoint, rl: SweepPoint, sensitive: list[str]
                     ) -> tuple[dict[str, float], dict[str, float]]:
    """Share of the recommended tree's importance and of the linear model's total |weight|
    that falls on each sensitive column (one-hot columns summed back to their column)."""
    tree_share: dict[str, float] = {}
    linear_share: dict[str, float] = {}
    if not sensitive:
        return tree_share, linear_share
    tree = rt.surrogate.tree_
    if tree is not None:
        for j, imp in enumerate(tree.feature_importances_):
            if imp > 0 and view.column(j) in sensitive:
                col = view.column(j)
                tree_share[col] = tree_share.get(col, 0.0) + float(imp)
    coef = linear_coef(rl.surrogate)
    if coef is not None and np.abs(coef).sum() > 0:
        mass = np.abs(coef).sum(axis=0) / np.abs(coef).sum()
        for jj in np.flatnonzero(mass):
            col = view.column(int(jj))
            if col in sensitive:
                linear_share[col] = linear_share.get(col, 0.0) + float(mass[jj])
    return tree_share, linear_share
