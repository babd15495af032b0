"""Global surrogates: an interpretable scikit-learn estimator trained to imitate a model.

A :class:`GlobalSurrogate` follows scikit-learn's conventions (``fit``, ``predict``,
``predict_proba``, ``score``, ``get_params``) and wraps any classifier; it is fitted on the
audited model's *predictions* (not the true labels), because it explains the model, not the task.
Its honesty is its *fidelity* on held-out data, measured by :meth:`GlobalSurrogate.fidelity`:

* agreement: the share of held-out samples where surrogate and model predict the same class;
* R^2 of probabilities: ``1 - sum (p_model - p_surrogate)^2 / sum (p_model - mean p_model)^2``
  over all samples and classes (scikit-learn's ``r2_score(..., multioutput="variance_weighted")``);

each with a percentile bootstrap confidence interval over the held-out samples.

Example::

    sur = GlobalSurrogate(tree_estimator(max_depth=3)).fit(X_fit, model_labels_fit)
    fid = sur.fidelity(X_held, model_labels_held, model_proba_held, random_state=0)
    fid.agreement, fid.agreement_ci, fid.r2
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.tree import DecisionTreeClassifier


def tree_estimator(max_depth: int | None = 3, min_samples_leaf: int = 5,
                   random_state: int = 0) -> DecisionTreeClassifier:
    """The default tree surrogate: a CART tree of bounded depth."""
    return DecisionTreeClassifier(max_depth=max_depth, min_samples_leaf=min_samples_leaf,
                                  random_state=random_state)


def linear_estimator(C: float = 1.0, n_classes: int = 2, random_state: int = 0) -> Pipeline:
    """The default linear surrogate: sparse (L1) logistic regression on min-max scaled features.

    Scaling to the observed range makes every weight the change in log-odds from a feature's
    lowest to its highest value (for a one-hot feature: when it is true), so weights compare.
    Binary problems use liblinear (intercept almost unpenalised), multi-class problems saga
    (multinomial loss).
    """
    if n_classes <= 2:  # liblinear penalises the intercept: scale it up so it is almost free
        clf = LogisticRegression(C=C, l1_ratio=1.0, solver="liblinear", intercept_scaling=100.0,
                                 max_iter=400, tol=1e-4, random_state=random_state)
    else:
        clf = LogisticRegression(C=C, l1_ratio=1.0, solver="saga", max_iter=400, tol=1e-3,
                                 random_state=random_state)
    return make_pipeline(MinMaxScaler(), clf)


@dataclass(frozen=True)
class Fidelity:
    """How faithfully a surrogate imitates the model on held-out samples."""

    agreement: float
    agreement_ci: tuple[float, float]
    r2: float
    r2_ci: tuple[float, float]
    n: int
    confidence: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        return {"agreement": self.agreement, "agreement_ci_low": self.agreement_ci[0],
                "agreement_ci_high": self.agreement_ci[1], "r2": self.r2,
                "r2_ci_low": self.r2_ci[0], "r2_ci_high": self.r2_ci[1], "n": self.n}


def r2_proba(p_model: np.ndarray, p_surrogate: np.ndarray) -> float:
    """Pooled (variance-weighted) R^2 of the surrogate's class probabilities against the model's;
    ``nan`` when the model's probabilities do not vary."""
    sse = float(((p_model - p_surrogate) ** 2).sum())
    sst = float(((p_model - p_model.mean(axis=0)) ** 2).sum())
    return 1.0 - sse / sst if sst > 0 else float("nan")


def bootstrap_fidelity(match: np.ndarray, p_model: np.ndarray | None,
                       p_surrogate: np.ndarray | None, n_bootstrap: int = 200,
                       confidence: float = 0.95, random_state: int | None = 0) -> Fidelity:
    """Agreement and R^2 with percentile bootstrap intervals (rows resampled with replacement).

    ``match`` is the per-sample 0/1 agreement; the probability arrays are ``(N, K)``.
    """
    n = len(match)
    agreement = float(match.mean()) if n else float("nan")
    r2 = r2_proba(p_model, p_surrogate) if p_model is not None and p_surrogate is not None \
        else float("nan")
    alpha = (1 - confidence) / 2
    if n < 2 or n_bootstrap < 1:
        return Fidelity(agreement, (agreement, agreement), r2, (r2, r2), n, confidence)
    rng = np.random.default_rng(random_state)
    idx = rng.integers(0, n, size=(n_bootstrap, n))
    boot_agree = match[idx].mean(axis=1)
    lo, hi = np.quantile(boot_agree, [alpha, 1 - alpha])
    r2_ci = (r2, r2)
    if p_model is not None and p_surrogate is not None and np.isfinite(r2):
        sq_err = ((p_model - p_surrogate) ** 2).sum(axis=1)
        sq = (p_model ** 2).sum(axis=1)
        sse = sq_err[idx].sum(axis=1)
        mean = p_model[idx].mean(axis=1)  # (B, K)
        sst = sq[idx].sum(axis=1) - n * (mean ** 2).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            boot_r2 = 1.0 - sse / sst
        boot_r2 = boot_r2[np.isfinite(boot_r2)]
        if len(boot_r2):
            r_lo, r_hi = np.quantile(boot_r2, [alpha, 1 - alpha])
            r2_ci = (float(r_lo), float(r_hi))
    return Fidelity(agreement, (float(lo), float(hi)), r2, r2_ci, n, confidence)


class GlobalSurrogate(ClassifierMixin, BaseEstimator):
    """An interpretable model fitted to a black box's predicted classes.

    ``estimator`` is any scikit-learn classifier (cloned on fit; a depth-3 tree by default);
    ``n_classes`` fixes the width of :meth:`predict_proba` so that classes the model never
    predicted still get a (zero) column.
    """

    def __init__(self, estimator: Any = None, n_classes: int | None = None) -> None:
        self.estimator = estimator
        self.n_classes = n_classes

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
            ) -> GlobalSurrogate:
        """Fit on features ``X`` and the *model's* predicted class indices ``y``."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y).astype(np.int64)
        est = clone(self.estimator) if self.estimator is not None else tree_estimator()
        self.constant_: int | None = None
        if len(np.unique(y)) < 2:  # the model predicts one class here: a constant imitates it
            self.constant_ = int(y[0])
        else:
            kwargs = {} if sample_weight is None else {_weight_key(est): sample_weight}
            est.fit(X, y, **kwargs)
        self.estimator_ = est
        k = self.n_classes if self.n_classes is not None else int(y.max()) + 1
        self.classes_ = np.arange(max(k, int(y.max()) + 1))
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted class indices."""
        X = np.asarray(X, dtype=np.float64)
        if self.constant_ is not None:
            return np.full(len(X), self.constant_, dtype=np.int64)
        return np.asarray(self.estimator_.predict(X)).astype(np.int64)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, n_classes)``; columns follow ``classes_``."""
        X = np.asarray(X, dtype=np.float64)
        out = np.zeros((len(X), len(self.classes_)))
        if self.constant_ is not None:
            out[:, self.constant_] = 1.0
            return out
        proba = self.estimator_.predict_proba(X)
        out[:, np.asarray(self.estimator_.classes_, dtype=np.int64)] = proba
        return out

    def fidelity(self, X: np.ndarray, model_labels: np.ndarray,
                 model_proba: np.ndarray | None = None, *, n_bootstrap: int = 200,
                 confidence: float = 0.95, random_state: int | None = 0) -> Fidelity:
        """Agreement with ``model_labels`` and R^2 against ``model_proba`` on held-out ``X``."""
        match = (self.predict(X) == np.asarray(model_labels)).astype(np.float64)
        p_sur = self.predict_proba(X) if model_proba is not None else None
        p_mod = None if model_proba is None else np.asarray(model_proba, dtype=np.float64)
        if p_mod is not None and p_sur is not None and p_mod.shape[1] != p_sur.shape[1]:
            raise ValueError(f"model_proba has {p_mod.shape[1]} classes, the surrogate "
                             f"{p_sur.shape[1]}; pass n_classes")
        return bootstrap_fidelity(match, p_mod, p_sur, n_bootstrap, confidence, random_state)

    @property
    def tree_(self) -> DecisionTreeClassifier | None:
        """The fitted decision tree, when the estimator is (or ends in) one."""
        est = getattr(self, "estimator_", None)
        last = est.steps[-1][1] if isinstance(est, Pipeline) else est
        if self.constant_ is None and isinstance(last, DecisionTreeClassifier):
            return last
        return None

    def complexity(self) -> int:
        """Depth for a tree, number of features with a non-zero weight for a linear model, 0
        for a constant."""
        if self.constant_ is not None:
            return 0
        tree = self.tree_
        if tree is not None:
            return int(tree.get_depth())
        coef = linear_coef(self)
        return int((np.abs(coef) > 0).any(axis=0).sum()) if coef is not None else -1


def linear_coef(surrogate: GlobalSurrogate) -> np.ndarray | None:
    """Weights ``(classes or 1, features)`` of a fitted linear surrogate, else ``None``."""
    est = getattr(surrogate, "estimator_", None)
    if est is None or surrogate.constant_ is not None:
        return None
    last = est.steps[-1][1] if isinstance(est, Pipeline) else est
    coef = getattr(last, "coef_", None)
    return None if coef is None else np.atleast_2d(np.asarray(coef))


def _weight_key(est: Any) -> str:
    """``fit`` keyword for sample weights (pipelines route them to the last step)."""
    if isinstance(est, Pipeline):
        return f"{est.steps[-1][0]}__sample_weight"
    return "sample_weight"
