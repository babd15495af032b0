"""Per-feature drift statistics (audit/drift/features.py, audit/drift/power.py).

Agreement with scipy's tests, Benjamini-Hochberg against scipy, the false-alarm rate on
random splits of real data, the power claimed by the minimal detectable effects (measured by
simulation), PSI and missingness. The Monte Carlo checks print their rates (``pytest -s``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.datasets import load_diabetes, load_wine

from audit.datasets.adult import read_raw
from audit.drift.features import (
    FeatureDrift,
    benjamini_hochberg,
    chi2_mde,
    feature_drift,
    ks_mde,
    population_stability_index,
)
from audit.drift.power import ks_shift_sd
from audit.errors import DataError

ALPHA, POWER, REPEATS = 0.05, 0.8, 100


def _mc_se(rate: float, n: int = REPEATS) -> float:
    return math.sqrt(rate * (1 - rate) / n)


def _by_column(results: list[FeatureDrift]) -> dict[str, FeatureDrift]:
    return {r.column: r for r in results}


# --- agreement with scipy ---------------------------------------------------------------

def _mixed(n: int, seed: int, cats: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cont = rng.normal(size=n)
    cont[rng.random(n) < 0.1] = np.nan
    cat = rng.choice(list(cats), size=n).astype(object)
    cat[rng.random(n) < 0.05] = None
    return pd.DataFrame({"cont": cont,
                         "ties": np.round(rng.normal(scale=2, size=n)).astype(np.int64),
                         "cat": cat})


# (7, 11) and (60, 45) run scipy's exact KS, (10_001, 400) the asymptotic one
@pytest.mark.parametrize(("n", "m"), [(7, 11), (60, 45), (300, 1000), (10_001, 400)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_statistics_match_scipy(n: int, m: int, seed: int) -> None:
    ref = _mixed(n, seed, "abcde")
    cur = _mixed(m, seed + 100, "abcdefg")  # f and g are unseen in the reference
    got = _by_column(feature_drift(ref, cur))
    for col in ("cont", "ties"):
        x, y = ref[col].dropna().to_numpy(), cur[col].dropna().to_numpy()
        want = stats.ks_2samp(x, y)
        r = got[col]
        assert (r.kind, r.test, r.n_reference, r.n_current) == ("numeric", "ks", len(x), len(y))
        np.testing.assert_allclose([r.statistic, r.p_value], [want.statistic, want.pvalue],
                                   rtol=1e-9, atol=1e-12)
        assert r.effect == r.statistic
        w = stats.wasserstein_distance(x, y) / np.std(x, ddof=1)
        assert r.wasserstein == pytest.approx(w, rel=1e-9)
    frame = pd.concat([ref.assign(side="ref"), cur.assign(side="cur")]).dropna(subset=["cat"])
    table = pd.crosstab(frame["side"], frame["cat"]).to_numpy()
    want_c = stats.chi2_contingency(table, correction=False)
    r = got["cat"]
    assert (r.kind, r.test, r.dof) == ("categorical", "chi2", want_c.dof)
    np.testing.assert_allclose([r.statistic, r.p_value], [want_c.statistic, want_c.pvalue],
                               rtol=1e-9, atol=1e-12)
    assert r.effect == pytest.approx(math.sqrt(want_c.statistic / table.sum()), rel=1e-12)


def test_two_valued_numeric_is_a_2x2_chi_square_without_yates() -> None:
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"flag": rng.integers(0, 2, 80), "b": rng.random(80) < 0.3})
    cur = pd.DataFrame({"flag": rng.integers(0, 2, 50), "b": rng.random(50) < 0.6})
    got = _by_column(feature_drift(ref, cur))
    for col in ("flag", "b"):
        table = pd.crosstab(np.r_[np.zeros(80), np.ones(50)],
                            np.r_[ref[col].to_numpy(), cur[col].to_numpy()]).to_numpy()
        want = stats.chi2_contingency(table, correction=False)
        r = got[col]
        assert (r.kind, r.dof) == ("categorical", 1)
        np.testing.assert_allclose([r.statistic, r.p_value], [want.statistic, want.pvalue],
                                   rtol=1e-9, atol=1e-12)
        # scipy's default would apply Yates' correction here: a different (smaller) statistic
        assert stats.chi2_contingency(table).statistic < r.statistic


def test_untested_columns_are_out_of_the_family() -> None:
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({"const": np.ones(30), "empty": np.full(30, np.nan),
                        "one": ["a"] * 30, "x": rng.normal(size=30)})
    cur = pd.DataFrame({"const": np.ones(40), "empty": rng.normal(size=40),
                        "one": ["a"] * 40, "x": rng.normal(3, 1, size=40)})
    got = _by_column(feature_drift(ref, cur))
    for col in ("const", "empty", "one"):
        r = got[col]
        assert r.note.startswith("not tested") and r.p_value == r.p_adjusted == 1.0
        assert not r.drifted and math.isnan(r.mde)
    assert got["empty"].missing_reference == 1.0 and got["empty"].n_reference == 0
    x = got["x"]  # the only tested column: BH leaves its p-value alone, MDE at the full alpha
    assert x.p_adjusted == x.p_value and x.drifted and x.note == ""
    assert x.mde == ks_mde(30, 40, ALPHA, POWER)
    assert x.mde_shift_sd == ks_shift_sd(x.mde)


def test_top_changes_and_unseen_categories() -> None:
    ref = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 30 + ["c"] * 20})
    cur = pd.DataFrame({"c": ["a"] * 20 + ["b"] * 30 + ["c"] * 20 + ["new"] * 30})
    r = feature_drift(ref, cur)[0]
    assert r.dof == 3 and r.drifted
    assert r.top_changes == [("a", 0.5, 0.2), ("new", 0.0, 0.3)]  # unchanged ones left out


def test_column_errors_name_the_columns() -> None:
    ref, cur = pd.DataFrame({"a": [1.0], "b": [2.0]}), pd.DataFrame({"a": [1.0]})
    with pytest.raises(DataError, match="only in reference: \\['b'\\]"):
        feature_drift(ref, cur)
    with pytest.raises(DataError, match="'zz'"):
        feature_drift(ref, cur, columns=["a", "zz"])
    assert [r.column for r in feature_drift(ref, cur, columns=["a"])] == ["a"]


# --- Benjamini-Hochberg ------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_benjamini_hochberg_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for m in (1, 2, 7, 50, 1000):
        p = rng.random(m) ** rng.uniform(1, 6)  # skewed towards 0, as with some drift
        p[rng.random(m) < 0.2] = p[0]  # ties
        np.testing.assert_allclose(benjamini_hochberg(p),
                                   stats.false_discovery_control(p, method="bh"),
                                   rtol=1e-12, atol=0)


@pytest.mark.parametrize("p", [np.ones(5), np.zeros(4), np.array([0.03]), np.array([0.0, 1.0])])
def test_benjamini_hochberg_edge_cases(p: np.ndarray) -> None:
    np.testing.assert_array_equal(benjamini_hochberg(p),
                                  stats.false_discovery_control(p, method="bh"))


def test_benjamini_hochberg_empty_and_bad_input() -> None:
    assert benjamini_hochberg(np.array([])).shape == (0,)
    with pytest.raises(ValueError):
        benjamini_hochberg(np.array([0.1, np.nan]))


# --- false alarms on random splits of real data ------------------------------------------

def _adult() -> pd.DataFrame:
    return read_raw("test")


def _diabetes() -> pd.DataFrame:
    return load_diabetes(as_frame=True).frame  # sex has two values: tested as categorical


def _wine() -> pd.DataFrame:
    return load_wine(as_frame=True).frame


@pytest.mark.parametrize("load", [_adult, _diabetes, _wine], ids=["adult", "diabetes", "wine"])
def test_false_alarms_on_random_halves(load: object) -> None:
    assert callable(load)
    data: pd.DataFrame = load()
    rng = np.random.default_rng(17)
    any_alarm, flags, raw = 0, np.zeros(data.shape[1]), np.zeros(data.shape[1])
    for _ in range(REPEATS):
        order = rng.permutation(len(data))
        half = len(data) // 2
        res = feature_drift(data.iloc[order[:half]], data.iloc[order[half:]], alpha=ALPHA)
        drifted = np.array([r.drifted for r in res])
        any_alarm += bool(drifted.any())
        flags += drifted
        raw += np.array([r.p_value < ALPHA for r in res])
    rate = any_alarm / REPEATS
    print(f"\n{load.__name__[1:]}: any column flagged (BH) in {rate:.2f} of {REPEATS} splits; "
          f"per column flagged (BH): {flags.sum() / flags.size / REPEATS:.4f}, "
          f"raw p < alpha: {raw.sum() / raw.size / REPEATS:.4f} "
          f"(max over columns {raw.max() / REPEATS:.2f})")
    assert rate <= ALPHA + 3 * _mc_se(ALPHA)


# --- power: detection at the claimed minimal detectable effect ---------------------------

N_REF, N_CUR, NULLS = 1000, 1500, 10


def _nulls(rng: np.random.Generator, n: int, categorical: int = 0) -> dict[str, object]:
    cols: dict[str, object] = {f"null{i}": rng.normal(size=n) for i in range(NULLS - categorical)}
    for i in range(categorical):
        cols[f"cnull{i}"] = rng.choice(list("pqr"), size=n, p=[0.5, 0.3, 0.2])
    return cols


def _detection(make: object, repeats: int = REPEATS) -> tuple[float, float]:
    """Detection rate of column ``target`` and per-column rate of the null columns."""
    assert callable(make)
    rng = np.random.default_rng(2024)
    hits, false = 0, 0
    for _ in range(repeats):
        ref, cur = make(rng)
        res = _by_column(feature_drift(ref, cur, alpha=ALPHA, power=POWER))
        hits += res["target"].drifted
        false += sum(r.drifted for c, r in res.items() if c != "target")
    return hits / repeats, false / repeats / NULLS


def test_numeric_detection_at_the_claimed_mde() -> None:
    mde = ks_mde(N_REF, N_CUR, ALPHA / (NULLS + 1), POWER)
    delta = ks_shift_sd(mde)
    rng = np.random.default_rng(0)
    probe = _by_column(feature_drift(pd.DataFrame(_nulls(rng, N_REF) | {"target": rng.normal(
        size=N_REF)}), pd.DataFrame(_nulls(rng, N_CUR) | {"target": rng.normal(size=N_CUR)})))
    assert probe["target"].mde == mde and probe["target"].mde_shift_sd == delta

    def planted(shift: float) -> object:
        def make(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
            ref = pd.DataFrame(_nulls(rng, N_REF) | {"target": rng.normal(size=N_REF)})
            cur = pd.DataFrame(_nulls(rng, N_CUR) | {"target": rng.normal(shift, 1, N_CUR)})
            return ref, cur
        return make

    at_mde, null_rate = _detection(planted(delta))
    at_half, _ = _detection(planted(delta / 2))
    print(f"\nnumeric: MDE D={mde:.4f} (shift {delta:.3f} sd) at n={N_REF}, m={N_CUR}, "
          f"{NULLS + 1} columns: detected {at_mde:.2f} at the MDE, {at_half:.2f} at half; "
          f"null columns flagged {null_rate:.3f}")
    assert at_mde >= POWER - 3 * _mc_se(POWER)
    assert at_half <= POWER - 3 * _mc_se(POWER)


def test_numeric_mde_is_tight_for_a_local_change() -> None:
    """The KS bound is loose for a smooth shift (the sup over x adds to the statistic) but
    close to exact when the CDFs differ in one narrow place: move the uniform mass of
    ``(0.5 - D, 0.5]`` to ``(0.5, 0.5 + D]``, so that ``sup |F - G| = D`` at 0.5 only."""
    mde = ks_mde(N_REF, N_CUR, ALPHA / (NULLS + 1), POWER)

    def planted(d: float) -> object:
        def make(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
            y = rng.random(N_CUR)
            y[(y > 0.5 - d) & (y <= 0.5)] += d
            return (pd.DataFrame(_nulls(rng, N_REF) | {"target": rng.random(N_REF)}),
                    pd.DataFrame(_nulls(rng, N_CUR) | {"target": y}))
        return make

    at_mde, _ = _detection(planted(mde))
    at_half, _ = _detection(planted(mde / 2))
    print(f"\nnumeric, local change of D={mde:.4f}: detected {at_mde:.2f} at the MDE, "
          f"{at_half:.2f} at half")
    assert at_mde >= POWER - 3 * _mc_se(POWER)
    assert at_half <= POWER - 3 * _mc_se(POWER)


def _shares_with_v(p: np.ndarray, direction: np.ndarray, v: float) -> np.ndarray:
    """Current shares ``p + t * direction`` whose population Cramér's V against ``p`` is
    ``v`` at the sample fractions of N_REF and N_CUR: for two rows,
    ``V**2 = r s sum((q - p)**2 / pooled)`` with ``pooled = r p + s q``."""
    from scipy.optimize import brentq

    r, s = N_REF / (N_REF + N_CUR), N_CUR / (N_REF + N_CUR)

    def gap(t: float) -> float:
        q = p + t * direction
        return math.sqrt(r * s * float(np.sum((q - p) ** 2 / (r * p + s * q)))) - v

    t_max = float(np.min(p[direction < 0] / -direction[direction < 0]))
    return p + brentq(gap, 0.0, t_max) * direction


def test_categorical_detection_at_the_claimed_mde() -> None:
    p = np.array([0.4, 0.3, 0.2, 0.1])
    direction = np.array([-1.0, 0.0, 0.5, 0.5])
    v = chi2_mde(N_REF, N_CUR, len(p) - 1, ALPHA / (NULLS + 1), POWER)
    cats = np.array(list("abcd"))

    def planted(effect: float) -> object:
        q = _shares_with_v(p, direction, effect)

        def make(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
            ref = pd.DataFrame(_nulls(rng, N_REF, 5) | {"target": rng.choice(cats, N_REF, p=p)})
            cur = pd.DataFrame(_nulls(rng, N_CUR, 5) | {"target": rng.choice(cats, N_CUR, p=q)})
            return ref, cur
        return make

    probe = _by_column(feature_drift(*planted(v)(np.random.default_rng(0))))
    assert probe["target"].dof == 3 and probe["target"].mde == v
    at_mde, null_rate = _detection(planted(v))
    at_half, _ = _detection(planted(v / 2))
    print(f"\ncategorical: MDE V={v:.4f} (4 categories) at n={N_REF}, m={N_CUR}, "
          f"{NULLS + 1} columns: detected {at_mde:.2f} at the MDE, {at_half:.2f} at half; "
          f"null columns flagged {null_rate:.3f}")
    assert at_mde >= POWER - 3 * _mc_se(POWER)
    assert at_half <= POWER - 3 * _mc_se(POWER)


def test_mde_shrinks_with_size_and_grows_with_strictness() -> None:
    assert ks_mde(4000, 4000, 0.05, 0.8) < ks_mde(1000, 1000, 0.05, 0.8)
    assert ks_mde(1000, 1000, 0.005, 0.8) > ks_mde(1000, 1000, 0.05, 0.8)
    assert chi2_mde(4000, 4000, 3, 0.05, 0.8) < chi2_mde(1000, 1000, 3, 0.05, 0.8)
    assert chi2_mde(1000, 1000, 3, 0.05, 0.9) > chi2_mde(1000, 1000, 3, 0.05, 0.8)
    assert ks_mde(3, 3, 0.01, 0.8) == math.inf and ks_shift_sd(math.inf) == math.inf
    # the noncentrality solves the power equation
    lam = chi2_mde(500, 700, 2, 0.01, 0.8) ** 2 * 1200
    assert stats.ncx2.sf(stats.chi2.isf(0.01, 2), 2, lam) == pytest.approx(0.8, abs=1e-8)


# --- PSI and missingness -----------------------------------------------------------------

def test_psi_zero_for_identical_and_hand_computed_values() -> None:
    assert population_stability_index([5, 3, 2], [50, 30, 20]) == 0.0
    want = -0.1 * math.log(0.4 / 0.5) + 0.1 * math.log(0.3 / 0.2)
    assert population_stability_index([50, 30, 20], [40, 30, 30]) == pytest.approx(want,
                                                                                   rel=1e-12)
    # an empty bin counts as a share of 0.0001
    want = (0.5 - 1) * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert population_stability_index([100, 0], [50, 50]) == pytest.approx(want, rel=1e-12)
    assert math.isnan(population_stability_index([0, 0], [1, 2]))


def test_numeric_psi_uses_reference_deciles() -> None:
    ref = pd.DataFrame({"x": np.arange(1.0, 101.0)})  # ten values per decile bin
    cur = pd.DataFrame({"x": np.r_[np.full(50, 5.0), np.full(50, 95.0)]})  # first, last bin
    r = feature_drift(ref, cur)[0]
    want = 2 * (0.5 - 0.1) * math.log(0.5 / 0.1) + 8 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert r.psi == pytest.approx(want, rel=1e-12)
    assert feature_drift(ref, ref)[0].psi == 0.0
    # a mass of zeros (capital gains) fills the first, right-closed bin
    zeros = pd.DataFrame({"x": np.r_[np.zeros(90), np.arange(1.0, 11.0)]})
    half = pd.DataFrame({"x": np.r_[np.zeros(50), np.arange(1.0, 51.0)]})
    edges = np.unique(np.quantile(zeros["x"], np.linspace(0, 1, 11)[1:-1]))
    assert edges[0] == 0.0
    ref_c = np.bincount(np.searchsorted(edges, zeros["x"], side="left"), minlength=len(edges) + 1)
    cur_c = np.bincount(np.searchsorted(edges, half["x"], side="left"), minlength=len(edges) + 1)
    assert ref_c[0] == 90 and cur_c[0] == 50
    assert feature_drift(zeros, half)[0].psi == pytest.approx(
        population_stability_index(ref_c, cur_c), rel=1e-12)


def test_missingness_shares() -> None:
    ref = pd.DataFrame({"x": [1.0, np.nan, 3.0, 4.0, np.inf, 6.0, 7.0, 8.0, 9.0, 10.0],
                        "c": ["a", None, "b", "a", "b", "a", np.nan, "b", "a", "b"]})
    cur = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0], "c": [None] * 4 + ["a"]})
    got = _by_column(feature_drift(ref, cur))
    assert (got["x"].missing_reference, got["x"].missing_current) == (0.2, 0.0)
    assert (got["x"].n_reference, got["x"].n_current) == (8, 5)
    assert (got["c"].missing_reference, got["c"].missing_current) == (0.2, 0.8)
    assert (got["c"].n_reference, got["c"].n_current) == (8, 1)
