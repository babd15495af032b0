"""Intervals and tests of rates (audit.stats) against scipy.stats, by hand on known values, by
simulation (coverage), and the per-sample outcome bitsets."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy.stats import binom, binomtest, chi2_contingency

from audit.stats import (
    Outcomes,
    clopper_pearson,
    mcnemar_exact,
    outcomes_block,
    pack_bits,
    paired_change,
    samples_for_halfwidth,
    two_proportion_test,
    unpack_bits,
    unpaired_change,
    wilson,
)

CASES = [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (50, 100), (90, 100), (99, 100),
         (17, 360), (224, 360), (359, 360), (1, 1797), (1790, 1797)]
Z = 1.959963984540054  # the 0.975 normal quantile


@pytest.mark.parametrize(("k", "n"), CASES)
def test_clopper_pearson_matches_scipy(k: int, n: int) -> None:
    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    assert clopper_pearson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)
    ci99 = binomtest(k, n).proportion_ci(0.99, method="exact")
    assert clopper_pearson(k, n, 0.99) == pytest.approx((ci99.low, ci99.high), abs=1e-12)


@pytest.mark.parametrize(("k", "n"), CASES)
def test_wilson_matches_scipy(k: int, n: int) -> None:
    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    assert wilson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_wilson_by_hand() -> None:
    # k = 0: the upper end is z^2 / (n + z^2); k = n: the lower end is n / (n + z^2)
    assert wilson(0, 10) == pytest.approx((0.0, Z * Z / (10 + Z * Z)))
    assert wilson(10, 10) == pytest.approx((10 / (10 + Z * Z), 1.0))
    # 50 of 100: centre 0.5, half-width z sqrt(0.25/100 + z^2/40000) / (1 + z^2/100)
    half = Z * math.sqrt(0.0025 + Z * Z / 40000) / (1 + Z * Z / 100)
    assert wilson(50, 100) == pytest.approx((0.5 - half, 0.5 + half))
    assert wilson(50, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)


def test_intervals_without_samples_are_nan() -> None:
    assert all(math.isnan(v) for v in (*clopper_pearson(0, 0), *wilson(0, 0)))


def _covers(interval: Callable[[int, int], tuple[float, float]], k: int) -> bool:
    lo, hi = interval(k, 100)
    return lo <= 0.9 <= hi


def test_clopper_pearson_covers_at_least_nominal() -> None:
    """At p = 0.9, n = 100 the exact interval covers p with probability >= 95% (summed over
    every outcome k), Wilson's a little below; 2000 simulated draws agree with both within
    Monte Carlo error (3 standard errors; 2000 draws cannot tell 0.956 from 0.95, so the
    simulation checks the sum, not the 0.95 bar)."""
    pmf = binom.pmf(np.arange(101), 100, 0.9)
    exact = {f: float(sum(pmf[k] for k in range(101) if _covers(f, k)))
             for f in (clopper_pearson, wilson)}
    assert exact[clopper_pearson] >= 0.95 > exact[wilson] > 0.92
    draws = np.random.default_rng(0).binomial(100, 0.9, size=2000)
    for f, cover in exact.items():
        simulated = float(np.mean([_covers(f, int(k)) for k in draws]))
        assert abs(simulated - cover) <= 3 * math.sqrt(cover * (1 - cover) / len(draws))


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.5, 0.7, 0.9, 0.99, 1.0])
def test_samples_for_one_point(rate: float) -> None:
    n = samples_for_halfwidth(rate, 0.01)

    def half(m: int) -> float:
        lo, hi = clopper_pearson(rate * m, m)
        return max(rate - lo, hi - rate)

    assert half(n) <= 0.01 < half(n - 1)  # the fewest samples that reach +-1 point
    normal = Z * Z * rate * (1 - rate) / 0.01**2
    assert n >= normal  # the exact interval is never narrower than the normal approximation
    if 0.2 <= rate <= 0.8:  # and close to it away from the edges
        assert n <= 1.05 * normal
    if rate == 0.0:  # upper end 1 - 0.025^(1/n) <= 0.01
        assert n == math.ceil(math.log(0.025) / math.log(0.99))
    with pytest.raises(ValueError):
        samples_for_halfwidth(rate, 0.0)


@pytest.mark.parametrize(("b", "c"), [(0, 0), (0, 1), (1, 0), (3, 12), (12, 3), (5, 5),
                                      (0, 30), (40, 57), (200, 170)])
def test_mcnemar_is_the_binomial_test_of_the_discordant_pairs(b: int, c: int) -> None:
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-10, abs=1e-300)


@pytest.mark.parametrize(("k1", "n1", "k2", "n2"), [(90, 100, 80, 100), (300, 360, 310, 360),
                                                    (5, 20, 15, 40), (1, 50, 0, 60)])
def test_two_proportion_test_matches_chi_square(k1: int, n1: int, k2: int, n2: int) -> None:
    table = np.array([[k1, n1 - k1], [k2, n2 - k2]])
    ref = chi2_contingency(table, correction=False).pvalue
    assert two_proportion_test(k1, n1, k2, n2) == pytest.approx(ref, rel=1e-9)
    assert two_proportion_test(0, 10, 0, 20) == 1.0 == two_proportion_test(10, 10, 5, 5)


def test_paired_and_unpaired_verdicts() -> None:
    a = np.array([True] * 90 + [False] * 10)
    b = a.copy()
    b[:25] = False  # 25 samples right only in A
    change = paired_change(a, b)
    assert (change.only_a, change.only_b, change.a, change.b) == (25, 0, 0.9, 0.65)
    assert change.distinguishable and change.verdict.startswith(
        "distinguishable from noise: yes, p=")
    noise = b.copy()
    noise[:25] = True
    noise[[30, 31]] = False
    noise[[95]] = True  # 2 right only in A, 1 only in B
    n = paired_change(a, noise)
    assert not n.distinguishable and n.p_value == pytest.approx(1.0)
    assert n.verdict == "distinguishable from noise: no, p=1.000"
    u = unpaired_change(0.9, 100, 0.65, 100)
    assert not u.paired and u.distinguishable and "not paired" in u.evidence
    with pytest.raises(ValueError):
        paired_change(a, b[:-1])


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 360, 1797])
def test_bitsets_round_trip(n: int) -> None:
    mask = np.random.default_rng(n).random(n) < 0.3
    text = pack_bits(mask)
    assert len(text) <= 4 * math.ceil(math.ceil(n / 8) / 3)  # one bit per sample, base64
    assert unpack_bits(text, n).tolist() == mask.tolist()
    with pytest.raises(ValueError):
        unpack_bits(text, n + 8)


def test_outcomes_block_reads_back_and_pairs() -> None:
    idx = np.array([1, 4, 5, 9])
    block = outcomes_block("a" * 64, 12, idx, {"clean_accuracy": np.array([1, 0, 1, 1])})
    o = Outcomes.read(block)
    assert o is not None and o.row_indices().tolist() == [1, 4, 5, 9]
    assert o.rate("clean_accuracy").tolist() == [True, False, True, True]  # type: ignore[union-attr]
    assert o.rate("missing") is None and o.pairs_with(o) is None
    other = Outcomes.read(outcomes_block("a" * 64, 12, np.array([1, 4, 5, 10]), {}))
    assert other is not None and o.pairs_with(other) == "different samples of the data"
    moved = Outcomes.read(outcomes_block("b" * 64, 12, idx, {}))
    assert moved is not None and o.pairs_with(moved) == "different data (sha256)"
    assert Outcomes.read({"encoding": "other"}) is None and Outcomes.read(None) is None
    with pytest.raises(ValueError):
        outcomes_block("a" * 64, 12, np.array([4, 1]), {})  # not increasing
    with pytest.raises(ValueError):
        outcomes_block("a" * 64, 12, idx, {"r": np.array([True])})  # wrong length
