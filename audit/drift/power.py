"""What the per-feature drift tests can detect: minimal detectable effects (torch-free).

"No drift" is only worth as much as the power behind it, so every feature's verdict carries
the smallest true effect its test would have caught with probability ``power`` at level
``alpha`` (:func:`ks_mde`, :func:`chi2_mde`), in the units of the observed effect: the KS
distance for numeric columns, Cramér's V for categorical ones.

KS (:func:`ks_mde`): a column whose true distribution moved by a sup-CDF distance ``D`` has,
at the point ``x0`` where ``|F - G|`` peaks, an empirical difference ``F_n(x0) - G_m(x0)``
that is a difference of two binomial proportions: mean ``D``, standard deviation at most
``0.5 * sqrt(1/n + 1/m)`` (a proportion's variance is at most 1/4). The KS statistic is at
least that difference, so the test rejects with probability at least ``power`` once
``D >= crit + z_power * 0.5 * sqrt(1/n + 1/m)``, where ``crit = c(alpha) * sqrt((n+m)/(nm))``
and ``c(a) = sqrt(-ln(a/2) / 2)`` is the first-term asymptotic critical value (slightly above
the exact one at finite sizes). Both steps err on the safe side and the bound holds for any
alternative, not only shifts. It is close to exact when the CDFs differ in one narrow
place (measured: 0.83 detected at the MDE for ``power`` 0.8) and conservative for a smooth
change, where the sup over x adds to the statistic (a normal mean shift: 0.96 detected at
the MDE; 80% is reached near 0.8 times the MDE); see tests/test_drift_features.py.
:func:`ks_shift_sd` turns ``D`` into the mean shift of a normal column, in standard
deviations, that has that distance.

Chi-square (:func:`chi2_mde`): Pearson's statistic on a ``2 x k`` table is approximately
noncentral chi-square with ``k - 1`` degrees of freedom and noncentrality ``N * V**2``
(``N = n + m``, ``V`` Cramér's V = Cohen's w for two rows), so the MDE is
``V* = sqrt(lambda* / N)`` with ``lambda*`` solving ``P(ncx2(dof, lambda*) > crit) = power``.
This is the usual local-alternative approximation, not a bound; it is checked empirically.
"""

from __future__ import annotations

import math

from scipy import optimize, special, stats

__all__ = ["chi2_mde", "ks_critical", "ks_mde", "ks_shift_sd"]


def _check_levels(alpha: float, power: float) -> None:
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"need 0 < alpha < 1 and 0 < power < 1, got {alpha}, {power}")


def ks_critical(n: int, m: int, alpha: float) -> float:
    """The asymptotic two-sided critical KS distance at level ``alpha`` for sizes ``n, m``:
    ``sqrt(-ln(alpha/2) / 2) * sqrt((n + m) / (n m))``."""
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))


def ks_mde(n: int, m: int, alpha: float, power: float) -> float:
    """The smallest true KS distance that the two-sample KS test at level ``alpha`` detects
    with probability at least ``power`` at sizes ``n`` and ``m`` (see the module docstring);
    ``inf`` when even a distance of 1 is not enough, nan when a size is 0."""
    _check_levels(alpha, power)
    if n <= 0 or m <= 0:
        return math.nan
    d = ks_critical(n, m, alpha) + float(special.ndtri(power)) * 0.5 * math.sqrt(1 / n + 1 / m)
    return d if d < 1 else math.inf


def ks_shift_sd(d: float) -> float:
    """The mean shift ``delta`` between N(0, 1) and N(delta, 1) whose sup-CDF distance,
    ``2 Phi(delta/2) - 1``, is ``d``; inf for ``d >= 1``, nan for nan."""
    if math.isnan(d):
        return math.nan
    if d >= 1:
        return math.inf
    return 2.0 * float(special.ndtri((1.0 + max(d, 0.0)) / 2.0))


def chi2_mde(n: int, m: int, dof: int, alpha: float, power: float) -> float:
    """The smallest Cramér's V that Pearson's chi-square test of homogeneity of a ``2 x
    (dof + 1)`` table at level ``alpha`` detects with probability ``power`` at sizes ``n``
    and ``m`` (noncentral chi-square approximation, see the module docstring); nan when a
    size is 0 or ``dof < 1``."""
    _check_levels(alpha, power)
    if n <= 0 or m <= 0 or dof < 1:
        return math.nan
    crit = float(stats.chi2.isf(alpha, dof))

    def shortfall(lam: float) -> float:
        return float(stats.ncx2.sf(crit, dof, lam)) - power

    if shortfall(0.0) >= 0:  # power <= alpha: any effect "is detected" that often
        return 0.0
    hi = max(1.0, crit)
    while shortfall(hi) < 0:  # the power grows with lambda; find a bracket
        hi *= 2
    lam = float(optimize.brentq(shortfall, 0.0, hi, xtol=1e-10, rtol=1e-12))
    return math.sqrt(lam / (n + m))
