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
A disparity that leaves groups out names them (``Disparity.left_out``) and carries its value
over all groups as Fairlearn computes it (``all_groups``, with its interval), since a tiny group
can decide Fairlearn's number: the report shows both side by side.

Whether a gap is distinguishable from zero: the max − min gap is never negative, so its
interval never straddles zero; instead a test of equal rates across the counted groups gives a
p-value (Pearson's chi-square test of homogeneity for the rates; Cochran's Q for calibration).

The disparities and how the report shows them are data (:mod:`audit.fairness.specs`); the
statistics live in :mod:`audit.fairness.stats`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from audit.errors import DataError
from audit.fairness.counts import confusion as _confusion
from audit.fairness.counts import num_den as _num_den
from audit.fairness.counts import rates_from_counts
from audit.fairness.counts import spread as _spread
from audit.fairness.counts import worst as _worst
from audit.fairness.groups import Grouping, make_groupings
from audit.fairness.inputs import binary_labels, sample_weights, scores
from audit.fairness.specs import CALIBRATION, DENOMINATORS, DISPARITIES, RATES, SHORT, DisparitySpec
from audit.fairness.stats import (
    bootstrap_indices,
    cochran_q_p_value,
    expected_calibration_error,
    homogeneity_p_value,
    percentile_interval,
)


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
    """Groups whose deciding rate entered the value."""
    groups_total: int = 0
    """Groups the data holds (those Fairlearn compares)."""
    left_out: dict[str, str] = field(default_factory=dict)
    """Groups left out of the value (of at least one of its rates), with why: ``"12 rows"``,
    ``"4 actual positives for the TPR"``."""
    all_groups: float = float("nan")
    """The value over every group, as Fairlearn computes it (equal to ``value`` when no group
    is left out)."""
    all_ci_low: float = float("nan")
    all_ci_high: float = float("nan")

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def partial(self) -> bool:
        """Whether the value leaves out some of the data's groups."""
        return bool(self.left_out)

    @property
    def groups_compared(self) -> int:
        """Groups that entered every rate of the value."""
        return self.groups_total - len(self.left_out)


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

    def groups_compared(self, rate: str = "selection_rate") -> int:
        """Groups whose ``rate`` enters the disparities (large enough, and measurable)."""
        return int(np.isfinite(np.where(self.counted[rate], self.rates[rate], np.nan)).sum())

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


# --------------------------------------------------------------------------- main API

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
    yt = binary_labels("y_true", y_true)
    yp = binary_labels("y_pred", y_pred)
    n = len(yt)
    if len(yp) != n or len(sensitive) != n:
        raise DataError(f"y_true, y_pred and the sensitive columns differ in length ({n}, "
                        f"{len(yp)}, {len(sensitive)})")
    if n == 0:
        raise DataError("no rows to assess")
    if not 0 < ci_level < 1:
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level}")
    w = sample_weights(sample_weight, n)
    s = scores(score, n)
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
        d = _disparity(spec, g, rates, counted, c, None if s is None else s - yt, w)
        d.groups_total = g.size
        d.left_out = _left_out(spec, g, rates, counted, dens, rows, min_group_size)
        # Fairlearn's value compares every group; the same as ours when none is left out
        d.all_groups = d.value if not d.left_out else float(
            _worst([_spread(rates[r], spec.kind) for r in spec.rates], spec.kind))
        disparities[spec.name] = d
    return GroupingResult(
        grouping=g, rows=rows.astype(np.int64), size=size, base_rate=c[:, 1, :].sum(1) / size,
        rates=rates, denominators=dens,
        rate_ci={k: np.full((g.size, 2), np.nan) for k in rates},
        counted=counted, disparities=disparities, calibration=calibration)


def _left_out(spec: DisparitySpec, g: Grouping, rates: dict[str, np.ndarray],
              counted: dict[str, np.ndarray], dens: dict[str, np.ndarray], rows: np.ndarray,
              min_group_size: int) -> dict[str, str]:
    """The groups left out of at least one of ``spec``'s rates, with why."""
    out: dict[str, str] = {}
    for i, label in enumerate(g.labels):
        if rows[i] < min_group_size:
            out[label] = f"{int(rows[i])} rows"
            continue
        why = [f"{int(dens[r][i])} {DENOMINATORS[r]} for the {SHORT[r]}"
               if np.isfinite(rates[r][i]) else f"no measurable {SHORT[r]}"
               for r in spec.rates if not (counted[r][i] and np.isfinite(rates[r][i]))]
        if why:
            out[label] = ", ".join(why)
    return out


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


def _bootstrap(results: list[GroupingResult], base: np.ndarray, s: np.ndarray | None,
               w: np.ndarray | None, n_boot: int, ci_level: float, random_state: int) -> None:
    n = len(base)
    disp_samples: list[dict[str, list[np.ndarray]]] = [{k: [] for k in r.disparities}
                                                       for r in results]
    all_samples: list[dict[str, list[np.ndarray]]] = [
        {k: [] for k, d in r.disparities.items() if d.partial} for r in results]
    rate_samples: list[dict[str, list[np.ndarray]]] = [{k: [] for k in r.rates}
                                                       for r in results]
    sw = None if s is None else (s if w is None else s * w)
    for idx in bootstrap_indices(n, n_boot, random_state):
        k = idx.shape[0]
        for res, ds, rs, alls in zip(results, disp_samples, rate_samples, all_samples,
                                     strict=True):
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
                if name in alls:  # every group, as Fairlearn resamples it
                    alls[name].append(_worst([_spread(rates[r], d.spec.kind)
                                              for r in d.spec.rates], d.spec.kind))
    for res, ds, rs, alls in zip(results, disp_samples, rate_samples, all_samples,
                                 strict=True):
        for name, d in res.disparities.items():
            lo, hi = percentile_interval(np.concatenate(ds[name]), ci_level)
            d.ci_low, d.ci_high = float(lo), float(hi)
            d.all_ci_low, d.all_ci_high = d.ci_low, d.ci_high
            if name in alls:
                lo, hi = percentile_interval(np.concatenate(alls[name]), ci_level)
                d.all_ci_low, d.all_ci_high = float(lo), float(hi)
        for key, chunks in rs.items():
            res.rate_ci[key] = percentile_interval(np.concatenate(chunks, axis=0), ci_level).T
