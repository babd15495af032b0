"""Group fairness metrics with bootstrap confidence intervals, following Fairlearn exactly.

Every number here is a function of per-group confusion counts, so one pass of ``np.bincount``
gives all groups at once and a bootstrap of 1,000 resamples costs a few bincounts instead of
1,000 ``MetricFrame`` evaluations (``bench/fairness_bootstrap.py`` measures the difference).

Definitions (Fairlearn's names and conventions, checked against Fairlearn to 1e-9 in the tests):

- per group: ``selection_rate`` P(ŷ=1), ``true_positive_rate`` P(ŷ=1 | y=1),
  ``false_positive_rate`` P(ŷ=1 | y=0), ``precision`` P(y=1 | ŷ=1), ``accuracy``; a rate whose
  denominator is empty is 0 (scikit-learn's ``confusion_matrix(normalize="true")`` and
  ``precision_score`` convention that Fairlearn inherits).
- ``X_difference`` = max over groups − min over groups (``MetricFrame.difference(method=
  "between_groups")``); ``X_ratio`` = min / max (``MetricFrame.ratio()``).
- ``demographic_parity_*`` use the selection rate, ``equal_opportunity_*`` the true positive
  rate, ``equalized_odds_difference`` the larger of the TPR and FPR differences and
  ``equalized_odds_ratio`` the smaller of their ratios (``agg="worst_case"``).
- Calibration by group: mean score against the observed positive rate. ``calibration_difference``
  is the spread (max − min) of the groups' calibration-in-the-large (mean score − observed
  rate); the per-group expected calibration error (ECE) is reported too.

Bootstrap: rows are resampled with replacement exactly as Fairlearn's ``MetricFrame(n_boot=,
ci_quantiles=, random_state=)`` does (same seeds, same indices), and intervals are percentile
quantiles of the resampled disparities, so our intervals equal Fairlearn's ``difference_ci()``.

Minimum group size: a group's rate enters a disparity only when its denominator (members for
selection rate and accuracy, actual positives for TPR, actual negatives for FPR, predicted
positives for precision) has at least ``min_group_size`` rows. Smaller groups still appear in
the per-group tables, flagged. With ``min_group_size=0`` every group counts, as in Fairlearn.

Whether a gap is distinguishable from zero: the max − min gap is never negative, so its
interval never straddles zero; instead a test of equal rates across the counted groups gives a
p-value (Pearson's chi-square test of homogeneity for the rates; Cochran's Q for calibration).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from audit.errors import DataError
from audit.fairness.groups import Grouping, make_groupings

RATES: dict[str, str] = {
    "selection_rate": "selection rate",
    "true_positive_rate": "true positive rate",
    "false_positive_rate": "false positive rate",
    "precision": "precision",
    "accuracy": "accuracy",
}
"""Per-group rates, by key, with their display names."""

CALIBRATION = "calibration_in_the_large"

DENOMINATORS: dict[str, str] = {
    "selection_rate": "members",
    "true_positive_rate": "actual positives",
    "false_positive_rate": "actual negatives",
    "precision": "predicted positives",
    "accuracy": "members",
    CALIBRATION: "members",
}


@dataclass(frozen=True)
class DisparitySpec:
    """A disparity: ``kind`` of the rates across groups (worst case over several rates)."""

    name: str
    rates: tuple[str, ...]
    kind: Literal["difference", "ratio"]
    title: str


DISPARITIES: tuple[DisparitySpec, ...] = (
    DisparitySpec("demographic_parity_difference", ("selection_rate",), "difference",
                  "Demographic parity difference"),
    DisparitySpec("demographic_parity_ratio", ("selection_rate",), "ratio",
                  "Demographic parity ratio"),
    DisparitySpec("equal_opportunity_difference", ("true_positive_rate",), "difference",
                  "Equal opportunity difference"),
    DisparitySpec("equal_opportunity_ratio", ("true_positive_rate",), "ratio",
                  "Equal opportunity ratio"),
    DisparitySpec("false_positive_rate_difference", ("false_positive_rate",), "difference",
                  "False positive rate difference"),
    DisparitySpec("equalized_odds_difference", ("true_positive_rate", "false_positive_rate"),
                  "difference", "Equalized odds difference"),
    DisparitySpec("equalized_odds_ratio", ("true_positive_rate", "false_positive_rate"),
                  "ratio", "Equalized odds ratio"),
    DisparitySpec("precision_difference", ("precision",), "difference",
                  "Precision difference"),
    DisparitySpec("accuracy_score_difference", ("accuracy",), "difference",
                  "Accuracy difference"),
    DisparitySpec("calibration_difference", (CALIBRATION,), "difference",
                  "Calibration difference"),
)
SPECS: dict[str, DisparitySpec] = {s.name: s for s in DISPARITIES}


@dataclass
class Disparity:
    """One disparity of one grouping, with its bootstrap interval and test."""

    spec: DisparitySpec
    value: float
    ci_low: float
    ci_high: float
    p_value: float
    rate: str
    """The rate that decides the value (for equalized odds, the worse of TPR and FPR)."""
    high_group: str | None
    low_group: str | None
    high_value: float
    low_value: float
    groups_used: int

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class GroupingResult:
    """Per-group rates and the disparities across the groups of one grouping."""

    grouping: Grouping
    rows: np.ndarray
    """Unweighted rows per group."""
    size: np.ndarray
    """(Weighted) members per group."""
    base_rate: np.ndarray
    rates: dict[str, np.ndarray]
    denominators: dict[str, np.ndarray]
    """Unweighted denominator of each rate per group (what ``min_group_size`` is compared to)."""
    rate_ci: dict[str, np.ndarray]
    """Bootstrap interval of each rate per group, shape (groups, 2)."""
    counted: dict[str, np.ndarray]
    """Whether each group's rate enters the disparities (denominator >= min_group_size)."""
    disparities: dict[str, Disparity]
    calibration: dict[str, np.ndarray] = field(default_factory=dict)
    """mean_score, observed_rate, calibration_in_the_large, ece per group (when scores exist)."""

    @property
    def name(self) -> str:
        return self.grouping.name

    @property
    def key(self) -> str:
        return self.grouping.key

    @property
    def labels(self) -> tuple[str, ...]:
        return self.grouping.labels

    def small_groups(self, min_group_size: int) -> list[str]:
        """Labels of groups with fewer than ``min_group_size`` rows."""
        return [g for g, n in zip(self.labels, self.rows, strict=True) if n < min_group_size]

    def by_group(self) -> pd.DataFrame:
        """Per-group rates as a DataFrame (index: group labels), like ``MetricFrame.by_group``."""
        data = {"count": self.rows, **self.rates}
        data.update({k: v for k, v in self.calibration.items()})
        return pd.DataFrame(data, index=pd.Index(self.labels, name=self.name))


@dataclass
class FairnessResult:
    """What :func:`assess_fairness` measured."""

    n: int
    overall: dict[str, float]
    groupings: list[GroupingResult]
    missing: dict[str, int]
    """Rows with a missing value, per sensitive column (they form the group ``(missing)``)."""
    skipped: dict[str, int]
    """Groupings left out for having too many groups, with their number of groups."""
    n_boot: int
    ci_level: float
    min_group_size: int
    has_scores: bool


# --------------------------------------------------------------------------- counting

def _confusion(cells: np.ndarray, groups: int, weights: np.ndarray | None = None,
               batch: int = 1) -> np.ndarray:
    """Counts (batch, groups, y, ŷ) from flat cell ids ``b*4G + g*4 + 2y + ŷ``."""
    c = np.bincount(cells.ravel(), weights=None if weights is None else weights.ravel(),
                    minlength=batch * groups * 4)
    return c.astype(np.float64).reshape(batch, groups, 2, 2)


def _num_den(c: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    tn, fp, fn, tp = c[..., 0, 0], c[..., 0, 1], c[..., 1, 0], c[..., 1, 1]
    n = tn + fp + fn + tp
    return {"selection_rate": (fp + tp, n), "true_positive_rate": (tp, tp + fn),
            "false_positive_rate": (fp, fp + tn), "precision": (tp, tp + fp),
            "accuracy": (tp + tn, n)}


def rates_from_counts(c: np.ndarray) -> dict[str, np.ndarray]:
    """Each rate from confusion counts ``(..., 2, 2)`` indexed (y, ŷ); NaN where a group has no
    members, 0 where only the rate's denominator is empty (scikit-learn's convention)."""
    out = {}
    present = c.sum(axis=(-1, -2)) > 0
    for key, (num, den) in _num_den(c).items():
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
        out[key] = np.where(present, r, np.nan)
    return out


def _spread(values: np.ndarray, kind: str) -> np.ndarray:
    """max − min (difference) or min / max (ratio) over the last axis, ignoring NaN."""
    finite = np.isfinite(values)
    some = finite.any(axis=-1)
    hi = np.where(some, np.max(np.where(finite, values, -np.inf), axis=-1), np.nan)
    lo = np.where(some, np.min(np.where(finite, values, np.inf), axis=-1), np.nan)
    if kind == "difference":
        return hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(hi != 0, lo / np.where(hi != 0, hi, 1.0), np.nan)


def bootstrap_indices(n: int, n_boot: int, random_state: int, chunk: int = 64
                      ) -> Iterator[np.ndarray]:
    """Resampled row indices, ``chunk`` resamples at a time (arrays of shape (k, n)).

    The same resamples as Fairlearn's ``MetricFrame(n_boot=n_boot, random_state=random_state)``:
    one uint32 seed per resample drawn from ``default_rng(random_state)``, and each resample is
    ``DataFrame.sample(frac=1, replace=True, random_state=seed)``.
    """
    seeds = np.random.default_rng(int(random_state)).integers(
        low=0, high=np.iinfo(np.uint32).max, size=n_boot, dtype=np.uint32)
    for start in range(0, n_boot, chunk):
        yield np.stack([np.random.RandomState(s).randint(0, n, size=n)
                        for s in seeds[start:start + chunk]])


def _percentiles(samples: np.ndarray, ci_level: float) -> np.ndarray:
    """Percentile interval along axis 0 (NaN samples ignored): shape (2, ...)."""
    q = [(1 - ci_level) / 2, 1 - (1 - ci_level) / 2]
    ok = np.isfinite(samples).any(axis=0)
    filled = np.where(ok, samples, 0.0)
    out = np.nanquantile(filled, q, axis=0)
    return np.where(ok, out, np.nan)


# --------------------------------------------------------------------------- tests

def homogeneity_p_value(num: np.ndarray, den: np.ndarray) -> float:
    """p-value of Pearson's chi-square test that the rates ``num/den`` are equal across groups.

    1.0 when there is nothing to test (fewer than two groups, or every rate 0 or every rate 1).
    """
    keep = den > 0
    num, den = num[keep], den[keep]
    if len(num) < 2:
        return 1.0
    table = np.stack([num, den - num], axis=1)
    if (table.sum(axis=0) == 0).any():
        return 1.0
    res = stats.chi2_contingency(table, correction=False)
    return float(res.pvalue)


def cochran_q_p_value(means: np.ndarray, variances: np.ndarray, sizes: np.ndarray) -> float:
    """p-value of Cochran's Q test that group means are equal (variance of each mean =
    ``variances / sizes``); 1.0 with fewer than two usable groups."""
    keep = (sizes > 1) & np.isfinite(means)
    m, v, n = means[keep], variances[keep], sizes[keep]
    if len(m) < 2:
        return 1.0
    se2 = np.maximum(v / n, 1e-12)
    w = 1.0 / se2
    pooled = float((w * m).sum() / w.sum())
    q = float((w * (m - pooled) ** 2).sum())
    return float(stats.chi2.sf(q, df=len(m) - 1))


def expected_calibration_error(score: np.ndarray, y: np.ndarray, bins: int = 10,
                               weights: np.ndarray | None = None) -> float:
    """Binary ECE: sum over equal-width score bins of (share of rows) x |observed rate − mean
    score|; NaN for no rows."""
    if len(score) == 0:
        return float("nan")
    w = np.ones(len(score)) if weights is None else weights
    idx = np.clip((score * bins).astype(np.int64), 0, bins - 1)
    tot = np.bincount(idx, weights=w, minlength=bins)
    ys = np.bincount(idx, weights=w * y, minlength=bins)
    ss = np.bincount(idx, weights=w * score, minlength=bins)
    used = tot > 0
    return float(np.abs(ys[used] - ss[used]).sum() / tot.sum())


# --------------------------------------------------------------------------- main API

def _binary(name: str, values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DataError(f"{name} must be one value per row, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    try:
        num = arr.astype(np.float64)
    except (TypeError, ValueError):
        bad = sorted({str(v) for v in arr.tolist()})[:5]
        raise DataError(f"{name} must hold 0/1 labels, found {', '.join(bad)}; name the "
                        "favourable value with --pos-label") from None
    if not np.isfinite(num).all():
        raise DataError(f"{name} has {int((~np.isfinite(num)).sum())} missing or non-finite "
                        "value(s); remove those rows first")
    bad_vals = sorted(set(np.unique(num).tolist()) - {0.0, 1.0})
    if bad_vals:
        shown = ", ".join(f"{v:g}" for v in bad_vals[:5])
        raise DataError(f"{name} must hold 0/1 labels, found {shown}; name the favourable value "
                        "with --pos-label")
    return num.astype(np.int64)


def assess_fairness(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    sensitive: pd.DataFrame,
    *,
    score: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
    intersectional: bool = True,
    min_group_size: int = 0,
    max_groups: int = 0,
    n_boot: int = 1000,
    ci_level: float = 0.95,
    random_state: int = 0,
    calibration_bins: int = 10,
) -> FairnessResult:
    """Per-group rates, disparities, bootstrap intervals and tests for binary predictions.

    ``y_true`` and ``y_pred`` hold 0/1 labels (1 = the favourable outcome), ``sensitive`` one
    column per sensitive attribute (same rows), ``score`` optional probabilities of class 1 (for
    calibration). With ``min_group_size=0`` (every group counts) the disparities equal
    Fairlearn's functions on the same inputs, and with ``random_state`` the intervals equal
    ``MetricFrame(..., n_boot=n_boot, ci_quantiles=[(1-ci)/2, (1+ci)/2],
    random_state=random_state).difference_ci()``. ``n_boot=0`` skips the bootstrap (NaN
    intervals).
    """
    yt = _binary("y_true", y_true)
    yp = _binary("y_pred", y_pred)
    n = len(yt)
    if len(yp) != n or len(sensitive) != n:
        raise DataError(f"y_true, y_pred and the sensitive columns differ in length ({n}, "
                        f"{len(yp)}, {len(sensitive)})")
    if n == 0:
        raise DataError("no rows to assess")
    if not 0 < ci_level < 1:
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level}")
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if w is not None and (w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any()):
        raise DataError("sample_weight must be one finite, non-negative number per row")
    s = None
    if score is not None:
        s = np.asarray(score, dtype=np.float64)
        if s.shape != (n,):
            raise DataError(f"score must be one value per row, got shape {s.shape}")
        if not np.isfinite(s).all() or (s < 0).any() or (s > 1).any():
            raise DataError("score must be probabilities of the favourable class in [0, 1]; "
                            "found values outside it or missing")
    groupings, missing, skipped = make_groupings(sensitive, intersectional=intersectional,
                                                 max_groups=max_groups)
    base = 2 * yt + yp
    results = [_assess_grouping(g, base, yt, s, w, min_group_size, calibration_bins)
               for g in groupings]
    if n_boot > 0 and results:
        _bootstrap(results, base, s, w, n_boot, ci_level, random_state)
    overall_c = _confusion(base, 1, w)[0, 0]
    overall = {k: float(v) for k, v in rates_from_counts(overall_c).items()}
    overall["base_rate"] = float(overall_c[1].sum() / overall_c.sum())
    if s is not None:
        ww = np.ones(n) if w is None else w
        overall["mean_score"] = float((ww * s).sum() / ww.sum())
        overall["ece"] = expected_calibration_error(s, yt, calibration_bins, w)
    return FairnessResult(n=n, overall=overall, groupings=results, missing=missing,
                          skipped=skipped, n_boot=n_boot, ci_level=ci_level,
                          min_group_size=min_group_size, has_scores=s is not None)


def _assess_grouping(g: Grouping, base: np.ndarray, yt: np.ndarray, s: np.ndarray | None,
                     w: np.ndarray | None, min_group_size: int, bins: int) -> GroupingResult:
    cells = g.codes * 4 + base
    c = _confusion(cells, g.size, w)[0]
    cu = c if w is None else _confusion(cells, g.size)[0]
    rates = rates_from_counts(c)
    dens = {k: den for k, (_, den) in _num_den(cu).items()}
    rows = cu.sum(axis=(1, 2))
    size = c.sum(axis=(1, 2))
    counted = {k: (dens[k] >= min_group_size) & (rows > 0) for k in RATES}
    calibration: dict[str, np.ndarray] = {}
    if s is not None:
        ww = np.ones(len(s)) if w is None else w
        ssum = np.bincount(g.codes, weights=ww * s, minlength=g.size)
        observed = c[:, 1, :].sum(axis=1) / size
        mean_score = ssum / size
        calibration = {
            "mean_score": mean_score, "observed_rate": observed,
            CALIBRATION: mean_score - observed,
            "ece": np.array([expected_calibration_error(s[g.codes == i], yt[g.codes == i], bins,
                                                        None if w is None else w[g.codes == i])
                             for i in range(g.size)]),
        }
        rates = {**rates, CALIBRATION: calibration[CALIBRATION]}
        dens[CALIBRATION] = rows
        counted[CALIBRATION] = (rows >= min_group_size) & (rows > 0)
    disparities = {}
    for spec in DISPARITIES:
        if any(r not in rates for r in spec.rates):
            continue
        disparities[spec.name] = _disparity(spec, g, rates, counted, c,
                                            None if s is None else s - yt, w)
    return GroupingResult(
        grouping=g, rows=rows.astype(np.int64), size=size, base_rate=c[:, 1, :].sum(1) / size,
        rates=rates, denominators=dens,
        rate_ci={k: np.full((g.size, 2), np.nan) for k in rates},
        counted=counted, disparities=disparities, calibration=calibration)


def _disparity(spec: DisparitySpec, g: Grouping, rates: dict[str, np.ndarray],
               counted: dict[str, np.ndarray], c: np.ndarray, resid: np.ndarray | None,
               w: np.ndarray | None) -> Disparity:
    values, pvals = [], []
    for r in spec.rates:
        vals = np.where(counted[r], rates[r], np.nan)
        values.append(float(_spread(vals, spec.kind)))
        pvals.append(_p_value(r, g, counted[r], c, resid, w))
    arr = np.array(values)
    value = float(_worst([arr[i : i + 1] for i in range(len(arr))], spec.kind)[0])
    pick = 0
    if np.isfinite(arr).any():
        pick = int(np.nanargmax(arr) if spec.kind == "difference" else np.nanargmin(arr))
    rate = spec.rates[pick]
    vals = np.where(counted[rate], rates[rate], np.nan)
    used = int(np.isfinite(vals).sum())
    hi_g = lo_g = None
    hi_v = lo_v = float("nan")
    if used:
        hi_i, lo_i = int(np.nanargmax(vals)), int(np.nanargmin(vals))
        hi_g, lo_g = g.labels[hi_i], g.labels[lo_i]
        hi_v, lo_v = float(vals[hi_i]), float(vals[lo_i])
    p = min(1.0, len(spec.rates) * min(pvals))  # Bonferroni over the rates combined
    return Disparity(spec=spec, value=value, ci_low=float("nan"), ci_high=float("nan"),
                     p_value=p, rate=rate, high_group=hi_g, low_group=lo_g, high_value=hi_v,
                     low_value=lo_v, groups_used=used)


def _p_value(rate: str, g: Grouping, counted: np.ndarray, c: np.ndarray,
             resid: np.ndarray | None, w: np.ndarray | None) -> float:
    if rate == CALIBRATION:
        assert resid is not None
        ww = np.ones(len(resid)) if w is None else w
        tot = np.bincount(g.codes, weights=ww, minlength=g.size)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.bincount(g.codes, weights=ww * resid, minlength=g.size) / tot
            sq = np.bincount(g.codes, weights=ww * resid**2, minlength=g.size) / tot
        rows = np.bincount(g.codes, minlength=g.size).astype(np.float64)
        var = np.maximum(sq - mean**2, 0.0) * rows / np.maximum(rows - 1, 1)
        return cochran_q_p_value(mean[counted], var[counted], rows[counted])
    num, den = _num_den(c)[rate]
    return homogeneity_p_value(num[counted], den[counted])


def _worst(per_rate: list[np.ndarray], kind: str) -> np.ndarray:
    """The worst case over rates (largest difference, smallest ratio), ignoring NaN."""
    if len(per_rate) == 1:
        return per_rate[0]
    stacked = np.stack(per_rate)
    finite = np.isfinite(stacked)
    if kind == "difference":
        out = np.max(np.where(finite, stacked, -np.inf), axis=0)
    else:
        out = np.min(np.where(finite, stacked, np.inf), axis=0)
    return np.where(finite.any(axis=0), out, np.nan)


def _bootstrap(results: list[GroupingResult], base: np.ndarray, s: np.ndarray | None,
               w: np.ndarray | None, n_boot: int, ci_level: float, random_state: int) -> None:
    n = len(base)
    disp_samples: list[dict[str, list[np.ndarray]]] = [{k: [] for k in r.disparities}
                                                       for r in results]
    rate_samples: list[dict[str, list[np.ndarray]]] = [{k: [] for k in r.rates}
                                                       for r in results]
    sw = None if s is None else (s if w is None else s * w)
    for idx in bootstrap_indices(n, n_boot, random_state):
        k = idx.shape[0]
        for res, ds, rs in zip(results, disp_samples, rate_samples, strict=True):
            g = res.grouping
            offsets = (np.arange(k) * g.size)[:, None]
            cells = (g.codes[idx] + offsets) * 4 + base[idx]
            c = _confusion(cells, g.size, None if w is None else w[idx], batch=k)
            rates = rates_from_counts(c)
            if sw is not None:
                size = c.sum(axis=(-1, -2))
                ssum = np.bincount((g.codes[idx] + offsets).ravel(), weights=sw[idx].ravel(),
                                   minlength=k * g.size).reshape(k, g.size)
                with np.errstate(divide="ignore", invalid="ignore"):
                    rates[CALIBRATION] = (ssum - c[..., 1, :].sum(-1)) / size
            for key in rs:
                rs[key].append(rates[key])
            for name, d in res.disparities.items():
                per_rate = [_spread(np.where(res.counted[r], rates[r], np.nan), d.spec.kind)
                            for r in d.spec.rates]
                ds[name].append(_worst(per_rate, d.spec.kind))
    for res, ds, rs in zip(results, disp_samples, rate_samples, strict=True):
        for name, d in res.disparities.items():
            lo, hi = _percentiles(np.concatenate(ds[name]), ci_level)
            d.ci_low, d.ci_high = float(lo), float(hi)
        for key, chunks in rs.items():
            res.rate_ci[key] = _percentiles(np.concatenate(chunks, axis=0), ci_level).T
