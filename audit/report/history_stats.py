"""The tests of ``audit history`` (part of :mod:`audit.report.history`): the latest run's value
against the previous run's, and a rate's trend over all runs.

A rate is compared as ``audit diff`` compares it (the :class:`~audit.report.diff_rates.RateTest`
it made: McNemar when paired, else the two-proportion test); a metric with an interval that is
not a rate (a bootstrap interval of a fairness gap) by a z-test whose standard errors are read
off the two 95% intervals. A trend is the Cochran-Armitage test in run order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special

from audit.report.diff_rates import ALPHA, RateTest
from audit.report.text import fmt_number

__all__ = ["Change", "Point", "Trend", "compare", "trend_test"]

_Z95 = float(special.ndtri(0.975))


@dataclass(frozen=True)
class Point:
    """A metric in one run: its value and interval (None where not recorded)."""

    value: float | None
    low: float | None = None
    high: float | None = None

    @property
    def text(self) -> str:
        """``0.9972 [0.9844, 0.9995]``."""
        if self.low is None or self.high is None:
            return fmt_number(self.value)
        return f"{fmt_number(self.value)} [{fmt_number(self.low)}, {fmt_number(self.high)}]"


@dataclass(frozen=True)
class Change:
    """The latest run's value against the previous run's. ``outside``: it left the previous
    interval on the worse side; ``method`` is empty when no test applied."""

    previous: Point
    latest: Point
    judgement: str
    outside: bool
    method: str = ""
    p_value: float | None = None
    how: str = ""

    @property
    def delta(self) -> float:
        assert self.previous.value is not None and self.latest.value is not None
        return self.latest.value - self.previous.value

    @property
    def distinguishable(self) -> bool:
        return self.p_value is not None and math.isfinite(self.p_value) and self.p_value < ALPHA

    @property
    def regression(self) -> bool:
        """Worse, out of the previous interval, and beyond noise: what a finding reports."""
        return self.judgement == "worse" and self.outside and self.distinguishable

    @property
    def verdict(self) -> str:
        """``worse, beyond noise (p=0.0003)`` and the like."""
        if self.delta == 0:
            return "unchanged"
        if not self.method:
            return f"{self.judgement or 'changed'}, not tested"
        noise = "beyond noise" if self.distinguishable else "within noise"
        p = self.p_value if self.p_value is not None else math.nan
        return f"{self.judgement or 'changed'}, {noise} (p={_fmt_p(p)})"


@dataclass(frozen=True)
class Trend:
    """The Cochran-Armitage test of a rate's trend over ``runs`` runs (scores: run order)."""

    z: float
    p_value: float
    runs: int
    worse: bool

    @property
    def significant(self) -> bool:
        return math.isfinite(self.p_value) and self.p_value < ALPHA


def _fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def _judgement(delta: float, direction: int) -> str:
    if delta == 0 or not direction:
        return ""
    return "better" if delta * direction > 0 else "worse"


def _interval_test(a: Point, b: Point) -> float | None:
    """Two-sided p of the z-test of b - a with standard errors read off the two 95%
    intervals (their width / 3.92); None without both intervals."""
    if None in (a.value, a.low, a.high, b.value, b.low, b.high):
        return None
    se = math.hypot((a.high - a.low) / (2 * _Z95), (b.high - b.low) / (2 * _Z95))  # type: ignore[operator]
    if se <= 0:
        return None
    return float(special.erfc(abs(b.value - a.value) / se / math.sqrt(2)))  # type: ignore[operator]


def compare(a: Point, b: Point, direction: int, rt: RateTest | None) -> Change:
    """Value ``b`` (latest) against ``a`` (previous) of a metric of ``direction``: judged,
    placed against ``a``'s interval, and tested by the rate test ``rt`` when ``audit diff``'s
    rate tests made one, else on the two intervals."""
    assert a.value is not None and b.value is not None
    judgement = _judgement(b.value - a.value, direction)
    outside = judgement == "worse" and a.low is not None and a.high is not None and (
        b.value < a.low if direction > 0 else b.value > a.high)
    if rt is not None:
        # the test's own words say A and B: here they are the previous and the latest run
        how = f"{rt.change.evidence} (A: previous run, B: latest)" + (
            f"; {rt.note}" if rt.note else "")
        return Change(a, b, judgement, outside, rt.change.method, rt.change.p_value, how)
    p = _interval_test(a, b)
    if p is None:
        return Change(a, b, judgement, outside)
    return Change(a, b, judgement, outside, "interval z-test (unpaired)", p,
                  "standard errors from the two 95% intervals")


def trend_test(cells: list[tuple[int, float, int]], direction: int) -> Trend | None:
    """The Cochran-Armitage test on (run position, rate, samples) of three runs or more;
    ``worse`` when the trend runs against ``direction``. Runs on the same samples are
    positively correlated, which makes the independence-based variance too large: the test
    is then conservative, never too eager."""
    if len(cells) < 3:
        return None
    total = sum(n for _, _, n in cells)
    pbar = sum(v * n for _, v, n in cells) / total
    sum_t = sum(t * n for t, _, n in cells)
    var = pbar * (1 - pbar) * (sum(t * t * n for t, _, n in cells) - sum_t ** 2 / total)
    if var <= 0:
        return None
    z = sum(t * (v * n - n * pbar) for t, v, n in cells) / math.sqrt(var)
    return Trend(z, float(special.erfc(abs(z) / math.sqrt(2))), len(cells), z * direction < 0)
