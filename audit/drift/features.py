"""Per-feature data drift between a reference and a current table (torch-free).

:func:`feature_drift` tests every column for a change of distribution and says, for each,
how large a change the test could have seen (:mod:`audit.drift.power`), so that "no drift"
comes with its power.

Decisions (the check builds on them):

* Kind: a name in ``categorical`` is categorical; otherwise bool, object, string and category
  dtypes are categorical and numeric dtypes numeric. A numeric column with at most two
  distinct values (0/1 flags) is treated as categorical: KS assumes continuous data and is
  conservative on two values, while the chi-square test on the 2 x 2 table is the
  two-proportion test of the flag's rate.
* Missing values (NaN, None, NA; for numeric columns also +-inf) are excluded from the tests,
  the PSI and the sizes ``n_reference``/``n_current``, and reported as shares of the rows
  (``missing_reference``/``missing_current``); a change in missingness is not tested here.
* Numeric: ``scipy.stats.ks_2samp`` (two-sided, method ``auto``: exact up to 10,000 values
  per side) on the non-missing values; ``effect`` is the KS distance D. Where scipy's exact
  computation fails it switches to the asymptotic p-value itself; its warning is silenced.
* Categorical: Pearson's chi-square test of homogeneity of the 2 x k table of category
  counts, ``scipy.stats.chi2_contingency(table, correction=False)``. scipy's default
  (``correction=True``) applies Yates' correction on 2 x 2 tables only; it is off here so
  that the statistic is the same Pearson statistic for every k, Cramér's V (``effect``,
  ``sqrt(chi2 / N)`` for two rows) is its usual function of it, and the noncentral
  chi-square power behind the MDE describes the test actually run. Categories seen only in
  the current data are categories of their own.
* Untested columns (no value on one side, or a single value/category in both) get
  ``statistic`` 0, ``p_value`` and ``p_adjusted`` 1, ``drifted`` False, nan MDE and a
  ``note`` saying why; they do not count in the Benjamini-Hochberg family.
* Multiple testing: Benjamini-Hochberg over the tested columns; ``drifted`` is
  ``p_adjusted < alpha`` (the false discovery rate, and under no drift at all the chance of
  any alarm, is at most ``alpha``). The MDE is stated at ``alpha / m`` for ``m`` tested
  columns: the level BH applies to a lone drifting column among null ones, which is the
  conservative case (with several drifting columns BH is more lenient).
* PSI (:func:`population_stability_index`): numeric bins at the reference's ``psi_bins``
  quantiles (unique edges, right-closed ``(e_i, e_i+1]``, open ends, so a mass of zeros fills
  the first bin instead of emptying it); categorical: the categories. Shares of empty bins
  are floored at ``eps = 0.0001``.
* Wasserstein: W1 between the non-missing values divided by the reference's standard
  deviation (ddof 1); None when that is 0 or undefined.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from scipy import stats

from audit.drift.power import chi2_mde, ks_mde, ks_shift_sd
from audit.errors import DataError

__all__ = ["FeatureDrift", "benjamini_hochberg", "chi2_mde", "feature_drift", "ks_mde",
           "population_stability_index"]

PSI_EPS = 1e-4
"""The share that an empty PSI bin counts as (log of zero otherwise)."""


@dataclass(frozen=True)
class FeatureDrift:
    """The drift verdict of one column (see the module docstring for the decisions)."""

    column: str
    kind: Literal["numeric", "categorical"]
    test: Literal["ks", "chi2"]
    statistic: float
    p_value: float
    p_adjusted: float
    drifted: bool
    effect: float
    mde: float
    mde_shift_sd: float | None
    psi: float
    wasserstein: float | None
    n_reference: int
    n_current: int
    missing_reference: float
    missing_current: float
    dof: int | None
    top_changes: list[tuple[str, float, float]] = field(default_factory=list)
    note: str = ""
    """Why the column was not tested (empty when it was)."""


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values of ``p``, in the same order: the sorted
    ``p_(i) * m / i`` made monotone from the largest down and clipped to 1 (as
    ``scipy.stats.false_discovery_control(p, method="bh")``)."""
    p = np.asarray(p, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"need a vector of p-values, got shape {p.shape}")
    m = len(p)
    if m == 0:
        return p.copy()
    if np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    order = np.argsort(p)
    scaled = p[order] * (m / np.arange(1, m + 1))
    # a hypothesis is rejected whenever a larger p-value is: carry the minimum down
    scaled = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.clip(scaled, 0.0, 1.0)
    return out


def population_stability_index(ref_counts: Any, cur_counts: Any, eps: float = PSI_EPS) -> float:
    """PSI ``sum (c - r) ln(c / r)`` of the bin shares ``r`` and ``c`` of two count vectors
    over the same bins; shares below ``eps`` count as ``eps``. nan when either is empty."""
    r = np.asarray(ref_counts, dtype=float)
    c = np.asarray(cur_counts, dtype=float)
    if r.shape != c.shape or r.ndim != 1:
        raise ValueError(f"count vectors must be 1-d and alike, got {r.shape}, {c.shape}")
    if r.sum() <= 0 or c.sum() <= 0:
        return math.nan
    rs = np.maximum(r / r.sum(), eps)
    cs = np.maximum(c / c.sum(), eps)
    return float(np.sum((cs - rs) * np.log(cs / rs)))


@dataclass
class _Raw:
    """A column's test before the multiple-testing step."""

    column: str
    kind: Literal["numeric", "categorical"]
    n: int
    m: int
    miss_r: float
    miss_c: float
    statistic: float = 0.0
    p_value: float = 1.0
    effect: float = 0.0
    dof: int | None = None
    psi: float = math.nan
    wasserstein: float | None = None
    top: list[tuple[str, float, float]] = field(default_factory=list)
    note: str = ""

    @property
    def tested(self) -> bool:
        return not self.note


def _share(k: int, total: int) -> float:
    return k / total if total else math.nan


def _finite(s: pd.Series) -> np.ndarray:
    """The non-missing mask of a numeric column: NaN, NA and +-inf are missing."""
    return np.isfinite(s.to_numpy(dtype=float, na_value=np.nan))


def _at_most_two_values(x: np.ndarray) -> bool:
    # O(N), no sort: every value is the minimum or the maximum
    return len(x) == 0 or bool(np.all((x == x.min()) | (x == x.max())))


def _is_categorical_dtype(column: str, s: pd.Series) -> bool:
    if ptypes.is_datetime64_any_dtype(s.dtype) or ptypes.is_timedelta64_dtype(s.dtype):
        raise DataError(f"column {column!r} holds dates or durations ({s.dtype}); convert it "
                        f"to numbers, or pass it in categorical=")
    # bool counts as numeric for pandas; here it is two categories
    return bool(ptypes.is_bool_dtype(s.dtype) or not ptypes.is_numeric_dtype(s.dtype))


def _numeric(x: np.ndarray, y: np.ndarray, raw: _Raw, bins: int) -> _Raw:
    x, y = np.sort(x), np.sort(y)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "ks_2samp: Exact calculation unsuccessful",
                                RuntimeWarning)
        res = stats.ks_2samp(x, y)
    raw.statistic = raw.effect = float(res.statistic)
    raw.p_value = float(res.pvalue)
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    k = len(edges) + 1
    raw.psi = population_stability_index(
        np.bincount(np.searchsorted(edges, x, side="left"), minlength=k),
        np.bincount(np.searchsorted(edges, y, side="left"), minlength=k))
    sd = float(np.std(x, ddof=1)) if len(x) > 1 else 0.0
    if sd > 0 and math.isfinite(sd):
        # W1 = integral of |F - G| over the merged sorted values (both inputs are sorted,
        # so a stable sort of their concatenation is a linear merge)
        allv = np.sort(np.concatenate([x, y]), kind="stable")
        fx = np.searchsorted(x, allv[:-1], side="right") / len(x)
        fy = np.searchsorted(y, allv[:-1], side="right") / len(y)
        raw.wasserstein = float(np.sum(np.abs(fx - fy) * np.diff(allv))) / sd
    return raw


def _categorical(ref: pd.Series, cur: pd.Series, raw: _Raw) -> _Raw:
    """Chi-square on the non-missing values of ``ref`` and ``cur`` (missing ones removed)."""
    codes, uniques = pd.factorize(pd.concat([ref, cur], ignore_index=True), sort=False)
    k = len(uniques)
    if k < 2:
        raw.note = "not tested: a single value in both data sets"
        return raw
    table = np.stack([np.bincount(codes[:len(ref)], minlength=k),
                      np.bincount(codes[len(ref):], minlength=k)]).astype(np.int64)
    res = stats.chi2_contingency(table, correction=False)
    raw.statistic = float(res.statistic)
    raw.p_value = float(res.pvalue)
    raw.dof = int(res.dof)
    raw.effect = math.sqrt(raw.statistic / (raw.n + raw.m))
    raw.psi = population_stability_index(table[0], table[1])
    rs, cs = table[0] / raw.n, table[1] / raw.m
    change = np.abs(cs - rs)
    top = [int(i) for i in np.argsort(-change, kind="stable")[:3] if change[i] > 0]
    raw.top = [(str(uniques[i]), float(rs[i]), float(cs[i])) for i in top]
    return raw


def _column(column: str, ref: pd.Series, cur: pd.Series, forced: bool, bins: int) -> _Raw:
    numeric = not (forced or _is_categorical_dtype(column, ref)
                   or _is_categorical_dtype(column, cur))
    keep_r = _finite(ref) if numeric else ref.notna().to_numpy()
    keep_c = _finite(cur) if numeric else cur.notna().to_numpy()
    ref, cur = ref[keep_r], cur[keep_c]
    if numeric:
        x = ref.to_numpy(dtype=float)
        y = cur.to_numpy(dtype=float)
        # 0/1 flags are tested as two categories (see the module docstring)
        numeric = not _at_most_two_values(np.concatenate([x, y]))
    raw = _Raw(column, "numeric" if numeric else "categorical", len(ref), len(cur),
               _share(len(keep_r) - len(ref), len(keep_r)),
               _share(len(keep_c) - len(cur), len(keep_c)))
    if raw.n == 0 or raw.m == 0:
        side = "reference" if raw.n == 0 else "current"
        raw.note = f"not tested: no non-missing value in the {side} data"
        return raw
    return _numeric(x, y, raw, bins) if numeric else _categorical(ref, cur, raw)


def _columns(reference: pd.DataFrame, current: pd.DataFrame,
             columns: Sequence[str] | None) -> list[str]:
    if columns is None:
        only_r = [str(c) for c in reference.columns if c not in current.columns]
        only_c = [str(c) for c in current.columns if c not in reference.columns]
        if only_r or only_c:
            raise DataError(f"the reference and current data have different columns (only in "
                            f"reference: {only_r}, only in current: {only_c}); pass "
                            f"columns= to choose the ones to compare")
        return [str(c) for c in reference.columns]
    missing = [c for c in columns if c not in reference.columns or c not in current.columns]
    if missing:
        raise DataError(f"columns {missing} are missing from the reference or current data; "
                        f"check their names")
    return list(columns)


def feature_drift(reference: pd.DataFrame, current: pd.DataFrame, *,
                  columns: Sequence[str] | None = None,
                  categorical: Sequence[str] | None = None, alpha: float = 0.05,
                  power: float = 0.8, psi_bins: int = 10,
                  extra_tests: int = 0) -> list[FeatureDrift]:
    """Test each of ``columns`` (default: all, which both frames must share) for drift from
    ``reference`` to ``current``; one :class:`FeatureDrift` per column, in order.

    ``categorical`` names columns to treat as categorical whatever their dtype; ``alpha`` is
    the Benjamini-Hochberg false discovery rate; ``power`` the power at which the minimal
    detectable effects are stated; ``psi_bins`` the number of reference-quantile bins of
    the numeric PSI; ``extra_tests`` the number of other tests the caller adjusts together
    with these columns (the MDE is stated at the level of that whole family)."""
    if not 0 < alpha < 1 or not 0 < power < 1 or psi_bins < 1:
        raise ValueError(f"need 0 < alpha < 1, 0 < power < 1, psi_bins >= 1; got {alpha}, "
                         f"{power}, {psi_bins}")
    names = _columns(reference, current, columns)
    forced = set(categorical or ())
    unknown = sorted(forced - set(names))
    if unknown:
        raise DataError(f"categorical names {unknown}, which are not among the compared "
                        f"columns; check their names")
    raws = [_column(c, reference[c], current[c], c in forced, psi_bins) for c in names]
    tested = [i for i, r in enumerate(raws) if r.tested]
    adjusted = np.ones(len(raws))
    adjusted[tested] = benjamini_hochberg(np.array([raws[i].p_value for i in tested]))
    # the MDE at the level BH gives a lone drifting column: alpha / (columns tested)
    level = alpha / max(len(tested) + extra_tests, 1)
    out = []
    for r, p_adj in zip(raws, adjusted, strict=True):
        shift: float | None = None
        if not r.tested:
            mde = math.nan
        elif r.kind == "numeric":
            mde = ks_mde(r.n, r.m, level, power)
            shift = ks_shift_sd(mde)
        else:
            mde = chi2_mde(r.n, r.m, r.dof or 1, level, power)
        out.append(FeatureDrift(
            column=r.column, kind=r.kind, test="ks" if r.kind == "numeric" else "chi2",
            statistic=r.statistic, p_value=r.p_value, p_adjusted=float(p_adj),
            drifted=bool(r.tested and p_adj < alpha), effect=r.effect, mde=mde,
            mde_shift_sd=shift, psi=r.psi, wasserstein=r.wasserstein, n_reference=r.n,
            n_current=r.m, missing_reference=r.miss_r, missing_current=r.miss_c, dof=r.dof,
            top_changes=r.top, note=r.note))
    return out
