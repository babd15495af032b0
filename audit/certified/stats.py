"""The one-sided Clopper-Pearson bound of Cohen et al.'s CERTIFY and the binomial test of
their PREDICT, vectorised over samples with scipy (``scipy.stats.beta`` / ``binom``). The
two-sided intervals of the reported rates are :func:`audit.stats.clopper_pearson`."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import beta, binom

__all__ = ["lower_confidence_bound", "top_two_pvalue"]


def lower_confidence_bound(k: ArrayLike, n: int, alpha: float) -> NDArray[np.float64]:
    """One-sided ``1 - alpha`` Clopper-Pearson lower bound on a binomial proportion with ``k``
    successes in ``n`` trials (0 where ``k == 0``): Cohen et al.'s ``LowerConfBound``, the
    same number as statsmodels' ``proportion_confint(k, n, alpha=2 * alpha,
    method="beta")[0]``."""
    k = np.asarray(k, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        lo = beta.ppf(alpha, k, n - k + 1)
    return np.where(k > 0, np.nan_to_num(lo, nan=0.0), 0.0)


def top_two_pvalue(n_a: ArrayLike, n_b: ArrayLike) -> NDArray[np.float64]:
    """Two-sided p-value of the binomial test of ``n_a`` successes in ``n_a + n_b`` trials
    against p = 1/2 (``scipy.stats.binomtest(n_a, n_a + n_b, 0.5).pvalue``, vectorised: for
    p = 1/2 the null is symmetric, so the p-value is twice the upper tail of the larger count,
    capped at 1)."""
    a = np.asarray(n_a, dtype=np.float64)
    b = np.asarray(n_b, dtype=np.float64)
    m = a + b
    hi = np.maximum(a, b)
    p = 2.0 * binom.sf(hi - 1, m, 0.5)
    return np.where(m > 0, np.minimum(p, 1.0), 1.0)
