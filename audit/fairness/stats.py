"""The statistics behind the fairness numbers: Fairlearn's bootstrap resamples, percentile
intervals, tests of equal rates across groups, and the expected calibration error."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import stats

BOOT_ELEMENTS = 2_000_000
"""Row indices held per chunk of resamples (16 MB as int64): the chunk shrinks as rows grow,
so the bootstrap's memory stays bounded (the resamples, and so the intervals, do not change)."""


def bootstrap_indices(n: int, n_boot: int, random_state: int, chunk: int | None = None
                      ) -> Iterator[np.ndarray]:
    """Resampled row indices, ``chunk`` resamples at a time (arrays of shape (k, n)); by
    default as many as fit in :data:`BOOT_ELEMENTS` (at most 64, at least 1).

    The same resamples as Fairlearn's ``MetricFrame(n_boot=n_boot, random_state=random_state)``:
    one uint32 seed per resample drawn from ``default_rng(random_state)``, and each resample is
    ``DataFrame.sample(frac=1, replace=True, random_state=seed)``.
    """
    seeds = np.random.default_rng(int(random_state)).integers(
        low=0, high=np.iinfo(np.uint32).max, size=n_boot, dtype=np.uint32)
    if chunk is None:
        chunk = max(1, min(64, BOOT_ELEMENTS // max(n, 1)))
    for start in range(0, n_boot, chunk):
        yield np.stack([np.random.RandomState(s).randint(0, n, size=n)
                        for s in seeds[start:start + chunk]])


def percentile_interval(samples: np.ndarray, ci_level: float) -> np.ndarray:
    """Percentile interval along axis 0 (NaN samples ignored): shape (2, ...)."""
    q = [(1 - ci_level) / 2, 1 - (1 - ci_level) / 2]
    ok = np.isfinite(samples).any(axis=0)
    filled = np.where(ok, samples, 0.0)
    out = np.nanquantile(filled, q, axis=0)
    return np.where(ok, out, np.nan)


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
