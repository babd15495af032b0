"""Proxies: features that stand in for a sensitive attribute, and how much a model relies on
them.

Dropping a sensitive column does not keep a model from using it when another feature encodes
it (in Adult, ``relationship`` is ``Husband`` or ``Wife``, so it tells ``sex`` almost exactly).
:func:`find_proxies` measures, per feature, how well it alone predicts the sensitive attribute:

* **Discretisation** (:func:`feature_cells`): a numeric feature with more than ``bins`` distinct
  values is cut at its quantiles (``bins`` bins, fewer when quantiles coincide); any other
  feature is categorical (values as stripped text). Missing values (NaN, empty, ``?``) form
  their own cell, and so do categories the fitting rows never saw.
* **Normalised mutual information** (:attr:`Proxy.mutual_information`): ``I(X; S) / H(S)``
  on all rows, the *uncertainty coefficient* (Theil's U) of ``S`` given the discretised feature
  ``X``: the fraction of the sensitive attribute's entropy the feature explains; 0 when
  independent, 1 when the feature determines the group. It is plug-in (empirical
  frequencies), so a many-celled feature on few rows shows a small positive bias.
* **Held-out AUC** (:attr:`Proxy.auc`): the rows are split per group (``test_share`` held
  out, seeded); the classifier is the feature's lookup table, ``P(S = s | cell)`` from the
  fitting rows with add-one smoothing towards the group shares, the best any classifier of
  that one discretised feature can do; it scores the held-out rows. With two groups it is the
  ROC AUC; with more, the macro average of the one-vs-rest AUCs over the groups present in the
  held-out rows. Ties count one half.
* **Interval**: percentile bootstrap (``n_boot`` resamples) of the held-out rows, drawn as a
  multinomial over the (cell, group) table, which is the same distribution as resampling rows.
  It covers the evaluation noise of the held-out rows, not the variation of the lookup table.
* **Strong** (:attr:`Proxy.strong`): ``auc >= strong_auc`` (0.7 by default, the usual lower
  bound of "acceptable" discrimination, Hosmer and Lemeshow) and the interval's lower bound
  above 0.5.

:func:`model_reliance` measures the model's side, and :meth:`Proxy.relied_on` combines both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from audit.errors import DataError
from audit.fairness.groups import make_groupings, sensitive_frame
from audit.slices.bias import missing_mask

__all__ = ["RELIANCE_THRESHOLD", "STRONG_AUC", "Proxy", "feature_cells", "find_proxies",
           "model_reliance", "with_reliance"]

STRONG_AUC = 0.7
"""Held-out AUC from which a feature is a strong proxy (its interval must also exclude 0.5)."""
RELIANCE_THRESHOLD = 0.01
"""A model relies on a feature when permuting it changes more than this share of its
predictions (1 in 100 decisions); a feature the model does not read changes none."""


@dataclass(frozen=True)
class Proxy:
    """How well one feature predicts one sensitive attribute (see the module docstring)."""

    feature: str
    sensitive: str
    mutual_information: float
    """``I(X; S) / H(S)`` in [0, 1] (uncertainty coefficient), numeric features by quantiles."""
    auc: float
    """Held-out ROC AUC of the feature's lookup-table classifier (macro one-vs-rest)."""
    auc_ci_low: float
    auc_ci_high: float
    """Percentile bootstrap interval of the held-out rows."""
    strong: bool
    """``auc >= strong_auc`` and ``auc_ci_low > 0.5``."""
    cells: int
    """Cells of the discretised feature (bins or categories, plus missing/unseen)."""
    reliance: float | None = None
    """Share of the model's predictions that change when the feature is permuted
    (:func:`model_reliance`); filled by the caller, e.g. with :func:`with_reliance`."""

    def relied_on(self, threshold: float = RELIANCE_THRESHOLD) -> bool:
        """A proxy the model relies on: strong, and its reliance above ``threshold``."""
        return self.strong and self.reliance is not None and self.reliance > threshold


def feature_cells(fit: pd.Series, values: pd.Series, bins: int = 10) -> tuple[np.ndarray, int]:
    """Cell codes of ``values`` from a discretisation fitted on ``fit``, and the number of
    cells: quantile bins for a numeric column with more than ``bins`` distinct values, else its
    categories; missing values and unseen categories get a cell each (the last two)."""
    if pd.api.types.is_numeric_dtype(fit) and not pd.api.types.is_bool_dtype(fit) \
            and fit.nunique(dropna=True) > bins:
        known = fit.to_numpy(dtype=np.float64)
        edges = np.unique(np.nanquantile(known, np.linspace(0, 1, bins + 1)[1:-1]))
        v = values.to_numpy(dtype=np.float64)
        codes = np.searchsorted(edges, v, side="left")
        n = len(edges) + 1
        return np.where(np.isnan(v), n, codes), n + 2
    fit_text, text = _text(fit), _text(values)
    cats = sorted(set(fit_text.dropna().tolist()))
    lookup = {c: i for i, c in enumerate(cats)}
    codes = np.array([len(cats) if pd.isna(t) else lookup.get(t, len(cats) + 1)
                      for t in text.tolist()], dtype=np.int64)
    return codes, len(cats) + 2


def _text(series: pd.Series) -> pd.Series:
    text = series.astype("string").str.strip()
    return text.mask(missing_mask(series.to_frame()).iloc[:, 0].to_numpy())


def _uncertainty_coefficient(x: np.ndarray, s: np.ndarray, nx: int, ns: int) -> float:
    table = np.bincount(x * ns + s, minlength=nx * ns).reshape(nx, ns).astype(np.float64)
    p = table / table.sum()
    px, ps = p.sum(axis=1, keepdims=True), p.sum(axis=0, keepdims=True)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / (px @ ps)[nz])).sum())
    h = float(-(ps[ps > 0] * np.log(ps[ps > 0])).sum())
    return min(max(mi / h, 0.0), 1.0) if h > 0 else 0.0


def _auc_from_counts(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC over score levels in increasing order (ties count one half);
    ``pos``/``neg`` of shape (B, levels)."""
    below = np.cumsum(neg, axis=1) - neg
    num = (pos * (below + 0.5 * neg)).sum(axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _macro_auc(counts: np.ndarray, score: np.ndarray, groups: list[int]) -> np.ndarray:
    """Macro one-vs-rest AUC of ``counts`` (B, cells, K) held-out rows per (cell, group) scored
    ``score`` (cells, K), over ``groups``; shape (B,)."""
    total = counts.sum(axis=2)
    aucs = []
    for g in groups:
        levels, inverse = np.unique(score[:, g], return_inverse=True)
        merge = np.zeros((len(score), len(levels)))
        merge[np.arange(len(score)), inverse] = 1.0
        pos = counts[:, :, g] @ merge
        aucs.append(_auc_from_counts(pos, (total - counts[:, :, g]) @ merge))
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.stack(aucs), axis=0) if aucs else np.full(len(counts), np.nan)


def _held_out(codes: np.ndarray, test_share: float, rng: np.random.Generator) -> np.ndarray:
    """A held-out mask with ``test_share`` of each group's rows (at least one of two or more)."""
    test = np.zeros(len(codes), dtype=bool)
    for g in np.unique(codes):
        idx = np.flatnonzero(codes == g)
        if len(idx) >= 2:
            take = min(len(idx) - 1, max(1, round(test_share * len(idx))))
            test[rng.permutation(idx)[:take]] = True
    return test


def find_proxies(frame: pd.DataFrame, sensitive: str, features: Sequence[str], *, seed: int = 0,
                 strong_auc: float = STRONG_AUC, bins: int = 10, test_share: float = 0.3,
                 n_boot: int = 1000, conf: float = 0.95) -> list[Proxy]:
    """One :class:`Proxy` per feature of ``features`` (the sensitive column itself is skipped)
    for the groups of ``sensitive`` (missing values as the group ``(missing)``, as the
    fairness check forms them), sorted by AUC, strongest first.

    A sensitive column with a single group has nothing to predict: every feature gets MI 0,
    AUC NaN and ``strong=False``.
    """
    grouping = make_groupings(sensitive_frame(frame, [sensitive]), intersectional=False)[0][0]
    absent = [f for f in features if f not in frame.columns]
    if absent:
        raise DataError(f"feature column(s) {', '.join(absent)} not in the data; columns are "
                        f"{', '.join(map(str, frame.columns[:25]))}")
    s, k = grouping.codes, grouping.size
    rng = np.random.default_rng(seed)
    test = _held_out(s, test_share, rng)
    fit = ~test
    prior = (np.bincount(s[fit], minlength=k) + 1.0) / (fit.sum() + k)
    present = [g for g in range(k) if (s[test] == g).any()]
    out = []
    for name in features:
        if name == sensitive:
            continue
        column = frame[name].reset_index(drop=True)
        x_all, n_all = feature_cells(column, column, bins)
        mi = _uncertainty_coefficient(x_all, s, n_all, k)
        x, n = feature_cells(column[fit], column, bins)
        train = np.bincount(x[fit] * k + s[fit], minlength=n * k).reshape(n, k)
        score = (train + prior) / (train.sum(axis=1, keepdims=True) + 1.0)
        held = np.bincount(x[test] * k + s[test], minlength=n * k).astype(np.int64)
        auc = lo = hi = math.nan
        if k > 1 and len(present) > 1:
            auc = float(_macro_auc(held.reshape(1, n, k), score, present)[0])
            boot = rng.multinomial(int(held.sum()), held / held.sum(), size=n_boot)
            dist = _macro_auc(boot.reshape(n_boot, n, k), score, present)
            lo, hi = (float(q) for q in np.nanquantile(dist, [(1 - conf) / 2,
                                                              (1 + conf) / 2]))
        strong = bool(auc >= strong_auc and lo > 0.5)
        out.append(Proxy(feature=str(name), sensitive=sensitive, mutual_information=mi,
                         auc=auc, auc_ci_low=lo, auc_ci_high=hi, strong=strong, cells=n))
    return sorted(out, key=lambda p: (-p.auc if math.isfinite(p.auc) else 1.0, p.feature))


def model_reliance(predict: Callable[[pd.DataFrame], np.ndarray], frame: pd.DataFrame,
                   features: Sequence[str], *, repeats: int = 3, seed: int = 0
                   ) -> dict[str, float]:
    """Per feature, the share of predictions that change when that one column of ``frame`` is
    permuted across rows (its values shuffled, so its distribution is kept and its link to the
    row broken), averaged over ``repeats`` permutations.

    ``predict`` takes raw rows and returns labels (N,) or scores (N, C), compared by argmax;
    it is model-agnostic, e.g. the card's encoder followed by the model. A column the model
    does not read changes nothing (0.0). Cost: ``1 + repeats * len(features)`` calls of
    ``predict`` on all of ``frame`` (subsample large frames).
    """
    rng = np.random.default_rng(seed)
    frame = frame.reset_index(drop=True)
    base = _labels_of(predict(frame))
    out: dict[str, float] = {}
    for name in features:
        if name not in frame.columns:
            raise DataError(f"feature column {name!r} not in the data")
        flips = []
        for _ in range(repeats):
            shuffled = frame.copy()
            shuffled[name] = frame[name].to_numpy()[rng.permutation(len(frame))]
            flips.append(float((_labels_of(predict(shuffled)) != base).mean()))
        out[str(name)] = float(np.mean(flips)) if flips else 0.0
    return out


def _labels_of(pred: np.ndarray) -> np.ndarray:
    arr = np.asarray(pred)
    return arr.argmax(axis=1) if arr.ndim == 2 else arr.reshape(-1)


def with_reliance(proxies: Sequence[Proxy], reliance: Mapping[str, float]) -> list[Proxy]:
    """The proxies with :attr:`Proxy.reliance` filled from ``reliance`` (by feature name)."""
    return [replace(p, reliance=reliance.get(p.feature)) for p in proxies]
