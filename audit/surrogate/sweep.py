"""Fidelity against complexity: a sweep over tree depth and over the linear model's sparsity.

Simpler surrogates are easier to read but imitate the model less well. :func:`sweep_tree` fits
trees of growing depth, :func:`sweep_linear` L1 logistic regressions along a path of
regularisation strengths (complexity = number of features with a non-zero weight), each scored on
the same held-out samples. :func:`recommend` picks the smallest surrogate whose agreement is within
``tolerance`` of the best one of its family, among the surrogates that say something: a surrogate
with no feature (a constant) or one that does not beat the constant guess (always the model's
most common class) is never recommended, and a family where none does has no recommendation.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import l1_min_c

from audit.surrogate.model import (
    Fidelity,
    GlobalSurrogate,
    linear_coef,
    linear_estimator,
    tree_estimator,
)

Family = Literal["tree", "linear"]


@dataclass
class SweepPoint:
    """One fitted surrogate of a sweep and its held-out fidelity."""

    family: Family
    complexity: int  # tree depth reached, or number of non-zero features
    setting: float  # max_depth asked for, or the inverse regularisation C
    fidelity: Fidelity
    size: int  # leaves of a tree, non-zero weights (all classes) of a linear model
    surrogate: GlobalSurrogate = field(repr=False)

    @property
    def agreement(self) -> float:
        return self.fidelity.agreement


@dataclass
class Sweep:
    """A family's sweep, its best point and the recommended (smallest good-enough) point.

    ``baseline`` is the agreement of the constant guess on the same held-out samples (the sweep
    functions measure it); a point must beat it to be recommended."""

    family: Family
    points: list[SweepPoint]
    tolerance: float
    baseline: float = -math.inf

    @property
    def best(self) -> SweepPoint:
        return max(self.points, key=lambda p: (p.agreement, -p.complexity))

    @property
    def recommendation(self) -> SweepPoint | None:
        """The recommended point, or ``None`` when no point beats the constant guess."""
        return recommend(self.points, self.tolerance, self.baseline)

    @property
    def shown(self) -> SweepPoint:
        """The point the report describes: the recommendation, else the most faithful point
        (which is then not recommended: see :attr:`recommendation`)."""
        return self.recommendation or self.best


def beats_constant(point: SweepPoint, baseline: float) -> bool:
    """Whether ``point`` says more than the constant guess: it uses a feature and its
    agreement beats ``baseline`` by more than the noise (the low end of its 95% interval,
    when there is one, is above it)."""
    if math.isnan(baseline):
        baseline = -math.inf
    lo = point.fidelity.agreement_ci[0]
    floor = lo if math.isfinite(lo) else point.agreement
    return point.complexity > 0 and point.agreement > baseline and floor > baseline


def recommend(points: Sequence[SweepPoint], tolerance: float,
              baseline: float = -math.inf) -> SweepPoint | None:
    """The least complex point whose agreement is at least ``best - tolerance``, among the
    points that beat the constant guess (:func:`beats_constant`); ``None`` when none does."""
    useful = [p for p in points if beats_constant(p, baseline)]
    if not useful:
        return None
    best = max(p.agreement for p in useful)
    good = [p for p in useful if p.agreement >= best - tolerance - 1e-12]
    return min(good, key=lambda p: (p.complexity, p.size, -p.agreement))


def constant_agreement(y_fit: np.ndarray, y_held: np.ndarray, n_classes: int) -> float:
    """Agreement of the constant guess: the model's most common class on the fitting rows,
    scored on the held-out rows."""
    if len(y_held) == 0:
        return math.nan
    majority = int(np.bincount(np.asarray(y_fit, dtype=np.int64), minlength=n_classes).argmax())
    return float((np.asarray(y_held) == majority).mean())


def sweep_tree(X_fit: np.ndarray, y_fit: np.ndarray, X_held: np.ndarray, y_held: np.ndarray,
               p_held: np.ndarray | None, *, depths: Sequence[int], n_classes: int,
               min_samples_leaf: int = 5, tolerance: float = 0.01, n_bootstrap: int = 200,
               random_state: int = 0) -> Sweep:
    """Trees of each depth in ``depths``, fitted on the model's labels ``y_fit``."""
    points: list[SweepPoint] = []
    for depth in sorted(set(depths)):
        sur = GlobalSurrogate(tree_estimator(depth, min_samples_leaf, random_state),
                              n_classes=n_classes).fit(X_fit, y_fit)
        fid = sur.fidelity(X_held, y_held, p_held, n_bootstrap=n_bootstrap,
                           random_state=random_state)
        tree = sur.tree_
        leaves = int(tree.get_n_leaves()) if tree is not None else 1
        points.append(SweepPoint("tree", sur.complexity(), float(depth), fid, leaves, sur))
    return Sweep("tree", points, tolerance, constant_agreement(y_fit, y_held, n_classes))


def linear_path(X: np.ndarray, y: np.ndarray, steps: int = 10, span: float = 3.0) -> list[float]:
    """Inverse regularisation strengths from the smallest C that selects any feature
    (scikit-learn's ``l1_min_c``) up to ``10**span`` times it, evenly on a log scale."""
    lo = float(l1_min_c((X - X.min(0)) / np.where(np.ptp(X, 0) > 0, np.ptp(X, 0), 1.0), y,
                        loss="log"))
    return [float(c) for c in lo * np.logspace(0.05, span, steps)]


def sweep_linear(X_fit: np.ndarray, y_fit: np.ndarray, X_held: np.ndarray, y_held: np.ndarray,
                 p_held: np.ndarray | None, *, n_classes: int, steps: int = 10,
                 span: float = 3.0, tolerance: float = 0.01, n_bootstrap: int = 200,
                 random_state: int = 0) -> Sweep:
    """Sparse logistic surrogates along an L1 path; points with the same number of non-zero
    features keep the most faithful one."""
    by_size: dict[int, SweepPoint] = {}
    cs = [1.0] if len(np.unique(y_fit)) < 2 else linear_path(X_fit, y_fit, steps, span)
    for c in cs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            sur = GlobalSurrogate(linear_estimator(c, n_classes, random_state),
                                  n_classes=n_classes).fit(X_fit, y_fit)
        fid = sur.fidelity(X_held, y_held, p_held, n_bootstrap=n_bootstrap,
                           random_state=random_state)
        coef = linear_coef(sur)
        size = int((np.abs(coef) > 0).sum()) if coef is not None else 0
        point = SweepPoint("linear", sur.complexity(), c, fid, size, sur)
        old = by_size.get(point.complexity)
        if old is None or point.agreement > old.agreement:
            by_size[point.complexity] = point
    return Sweep("linear", [by_size[k] for k in sorted(by_size)], tolerance,
                 constant_agreement(y_fit, y_held, n_classes))
