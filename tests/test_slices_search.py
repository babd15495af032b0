"""Weak-slice discovery (audit/slices/search.py, audit/slices/conditions.py).

Planted slices are found with their exact rule, the chance of any confirmed slice when
failures are independent of the features stays at alpha, the vectorised counts equal a
brute-force count, rules round-trip through text, and the Adult test split with the bundled
model yields confirmed slices. The measured rates and slices print with ``pytest -s``.
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from audit.errors import DataError
from audit.slices.conditions import Condition, make_conditions, parse_rule, rule_text
from audit.slices.search import count_conjunctions, find_slices, split_halves
from audit.stats import exact_worse_p

ALPHA = 0.05


def _table(n: int, seed: int) -> pd.DataFrame:
    """Age in four exact quarters (edges 25, 40, 55), hours with a tie at 40 and a quarter
    at 50 and above (edges 40, 50), two categoricals."""
    rng = np.random.default_rng(seed)
    q = n // 4
    age = np.concatenate([rng.integers(18, 25, q), rng.integers(25, 40, q),
                          rng.integers(40, 55, q), rng.integers(55, 71, n - 3 * q)])
    h5 = n // 5
    hours = np.concatenate([rng.integers(20, 40, h5), np.full(2 * h5, 40),
                            rng.integers(41, 50, n - 3 * h5 - q), rng.integers(50, 71, q)])
    return pd.DataFrame({"age": rng.permutation(age), "hours": rng.permutation(hours),
                         "region": rng.choice(["north", "south", "east", "west"], n),
                         "sex": rng.choice(["F", "M"], n)})


def _plant(frame: pd.DataFrame, inside: np.ndarray, seed: int) -> np.ndarray:
    """A "model" right 92% of the time, 40% inside the planted slice."""
    u = np.random.default_rng(seed + 1000).random(len(frame))
    return np.where(inside, u < 0.6, u < 0.08)


def _top(frame: pd.DataFrame, failed: np.ndarray, **kw: object) -> set[Condition]:
    res = find_slices(frame, failed, **kw)  # type: ignore[arg-type]
    assert res.slices and res.slices[0].confirmed, res.note
    return set(res.slices[0].conditions)


def test_edges_are_readable_quantiles() -> None:
    texts = [c.text() for c in make_conditions(_table(8000, 0))]
    assert texts[:8] == ["age < 25", "age < 40", "age < 55", "25 <= age < 40",
                         "40 <= age < 55", "age >= 25", "age >= 40", "age >= 55"]
    assert texts[8:13] == ["hours < 40", "hours < 50", "40 <= hours < 50", "hours >= 40",
                           "hours >= 50"]
    assert "region == 'north'" in texts and "sex == 'M'" in texts
    # a mass of zeros: the edge moves just above it and reads as a round number
    gain = pd.DataFrame({"gain": np.r_[np.zeros(900), np.arange(114, 214)]})
    assert next(c.text() for c in make_conditions(gain)) == "gain < 100"


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_pair_is_the_top_confirmed_slice(seed: int) -> None:
    frame = _table(8000, seed)
    failed = _plant(frame, (frame["age"] < 25) & (frame["hours"] >= 50), seed)
    res = find_slices(frame, failed, seed=seed)
    top = res.slices[0]
    print(f"\nplanted pair, seed {seed}: {top.rule}, rate {top.rate:.3f} vs {top.rest_rate:.3f}"
          f", gap CI [{top.ci_low:.3f}, {top.ci_high:.3f}], {res.candidates} candidates")
    assert top.confirmed and top.rule == "age < 25 and hours >= 50"
    assert top.conditions == (Condition("age", "<", (25.0,)), Condition("hours", ">=", (50.0,)))
    assert 0 < top.ci_low < top.gap < top.ci_high


def test_planted_category_times_interior_bin() -> None:
    frame = _table(8000, 2)
    inside = (frame["region"] == "north") & frame["age"].between(25, 39)
    got = _top(frame, _plant(frame, inside.to_numpy(), 2))
    assert got == {Condition("region", "==", ("north",)),
                   Condition("age", "range", (25.0, 40.0))}


def test_planted_triple_with_three_conditions() -> None:
    frame = _table(8000, 3)
    inside = ((frame["region"] == "east") & (frame["sex"] == "M") & (frame["age"] >= 55))
    failed = _plant(frame, inside.to_numpy(), 3)
    got = _top(frame, failed, max_conditions=3)
    assert got == {Condition("region", "==", ("east",)), Condition("sex", "==", ("M",)),
                   Condition("age", ">=", (55.0,))}
    # with pairs only the best answer is a pair inside the plant's columns
    pair = _top(frame, failed, max_conditions=2)
    assert len(pair) == 2 and pair < got


def test_null_false_alarm_rate() -> None:
    repeats, hits, carried = 100, 0, 0
    for seed in range(repeats):
        frame = _table(2000, seed)
        failed = np.random.default_rng(seed + 5000).random(len(frame)) < 0.15
        res = find_slices(frame, failed, alpha=ALPHA, seed=seed)
        hits += bool(res.confirmed)
        carried += res.carried
    rate = hits / repeats
    se = math.sqrt(ALPHA * (1 - ALPHA) / repeats)
    print(f"\nnull: any confirmed slice in {rate:.2f} of {repeats} repeats "
          f"(bound {ALPHA + 3 * se:.3f}), {carried / repeats:.1f} carried per repeat")
    assert rate <= ALPHA + 3 * se


def test_vectorised_counts_equal_brute_force() -> None:
    rng = np.random.default_rng(7)
    n, k = 300, 9
    matrix = rng.random((n, k)) < rng.uniform(0.2, 0.7, k)
    groups = np.array([0, 0, 1, 1, 2, 2, 3, 4, 4])
    failed = rng.random(n) < 0.3
    counts = count_conjunctions(matrix, failed, groups, support=15, max_conditions=3,
                                extend=10_000)
    got = {m: (int(s), int(e)) for m, s, e in
           zip(counts.members, counts.size, counts.errors, strict=True)}
    want = {}
    for r in (1, 2, 3):
        for m in itertools.combinations(range(k), r):
            if len({groups[i] for i in m}) < r:
                continue
            inside = matrix[:, list(m)].all(axis=1)
            if 15 <= inside.sum() < n:
                want[m] = (int(inside.sum()), int(failed[inside].sum()))
    assert got == want
    assert counts.kept[:sum(len(m) == 1 for m in got)].all()


@pytest.mark.parametrize(("k", "s"), [(9, 20), (3, 20), (0, 50), (50, 50), (30, 200)])
def test_confirmation_p_is_fishers_one_sided_exact(k: int, s: int) -> None:
    failures, rows = 150, 1000
    table = [[k, s - k], [failures - k, rows - s - failures + k]]
    want = stats.fisher_exact(table, alternative="greater").pvalue
    assert exact_worse_p(k, s, failures - k, rows - s) == pytest.approx(want, rel=1e-9)


def test_split_is_stratified_and_disjoint() -> None:
    failed = np.random.default_rng(0).random(1001) < 0.2
    disc, conf = split_halves(failed, 3)
    assert len(np.intersect1d(disc, conf)) == 0 and len(disc) + len(conf) == 1001
    assert abs(int(failed[disc].sum()) - int(failed[conf].sum())) <= 1
    again = split_halves(failed, 3)
    assert np.array_equal(disc, again[0]) and np.array_equal(conf, again[1])


def test_adult_test_split_with_the_bundled_model() -> None:
    from audit.runner import build_subject

    s = build_subject("adult-mlp")
    frame = s.data.extras["frame"]
    failed = (s.data_pred != s.data.y).numpy()
    # the label column would only restate the per-class error rates
    columns = [c for c in frame.columns if c != "income"]
    start = time.perf_counter()
    res = find_slices(frame, failed, columns=columns)
    took = time.perf_counter() - start
    print(f"\nAdult test, {len(frame)} rows, error {failed.mean():.3f}: {res.candidates} "
          f"candidates, {res.carried} carried, {len(res.confirmed)} confirmed, {took:.2f} s")
    for x in res.slices:
        print(f"  {x.rule:<66} n={x.size:>5} rate {x.rate:.3f} rest {x.rest_rate:.3f} "
              f"gap {x.gap:+.3f} [{x.ci_low:+.3f}, {x.ci_high:+.3f}] "
              f"p_adj {x.p_adjusted:.1e} {'confirmed' if x.confirmed else ''}")
    assert took < 5
    assert any(x.confirmed and x.ci_low > 0 for x in res.slices)
    for x in res.slices:
        assert parse_rule(x.rule) == x.conditions


def test_rule_text_round_trip() -> None:
    frame = pd.DataFrame({
        "native country": ["it's", 'say "hi"', "a and b", None] * 50,
        "score": np.linspace(-3.25, 7.5, 200),
        "ratio": np.r_[np.linspace(0.001, 0.009, 199), np.nan],
        "flag": [True, False] * 100,
        "kids": [0, 1, 2, 3] * 50,
    })
    conditions = make_conditions(frame, min_support=10)
    assert {c.op for c in conditions} == {"<", ">=", "range", "==", "missing"}
    for c in conditions:
        assert parse_rule(c.text()) == (c,)
        assert np.array_equal(parse_rule(c.text())[0].mask(frame), c.mask(frame))
    rule = rule_text(conditions[:3])
    assert parse_rule(rule) == tuple(conditions[:3])
    assert rule.startswith("`native country` == ")
    with pytest.raises(ValueError, match="cannot read"):
        parse_rule("age <")
    with pytest.raises(ValueError):
        parse_rule("age == unquoted")


def test_missing_values_are_their_own_condition() -> None:
    x = np.r_[np.arange(90.0), [np.nan] * 10]
    frame = pd.DataFrame({"x": x})
    by_text = {c.text(): c for c in make_conditions(frame, min_support=5)}
    assert by_text["x is missing"].mask(frame).sum() == 10
    assert sum(by_text[t].mask(frame).sum() for t in ("x < 23", "x >= 23")) == 90


@pytest.mark.parametrize("min_support", [0.05, 300])
def test_min_support_respected(min_support: float) -> None:
    frame = _table(4000, 4)
    failed = _plant(frame, (frame["age"] < 25) & (frame["hours"] >= 50), 4)
    res = find_slices(frame, failed, min_support=min_support, carry=50)
    half = len(split_halves(failed, 0)[0])
    want = math.ceil(min_support * half) if min_support < 1 else int(min_support)
    assert res.min_support == want and res.slices
    assert all(x.discovery_size >= want for x in res.slices)
    assert all(c.mask(frame).sum() >= want
               for c in make_conditions(frame, min_support=want))


def test_degenerate_inputs() -> None:
    frame = _table(1000, 5)
    none = find_slices(frame, np.zeros(1000, dtype=bool))
    assert (none.slices, none.carried) == ([], 0) and "no row failed" in none.note
    everything = find_slices(frame, np.ones(1000))
    assert everything.slices == [] and "every row failed" in everything.note
    one = find_slices(frame, _plant(frame, (frame["age"] < 25).to_numpy(), 5),
                      columns=["age"])
    assert one.slices[0].rule == "age < 25" and one.slices[0].confirmed
    assert all(len(x.conditions) == 1 for x in one.slices)
    high = find_slices(frame, np.arange(1000) % 3 == 0, min_support=0.9)
    assert high.slices == [] and "min_support" in high.note
    with pytest.raises(DataError, match="1000 rows"):
        find_slices(frame, np.zeros(999))
    with pytest.raises(DataError, match="only 0/1"):
        find_slices(frame, np.r_[np.zeros(999), 2])
    with pytest.raises(DataError, match="only 0/1"):
        find_slices(frame, np.r_[np.zeros(999), np.nan])
    with pytest.raises(DataError, match="no columns"):
        find_slices(frame, np.zeros(1000), columns=["agee"])
    with pytest.raises(DataError, match="at least 2 rows"):
        find_slices(frame.iloc[:1], np.zeros(1))
    with pytest.raises(DataError, match="dates"):
        make_conditions(pd.DataFrame({"d": pd.date_range("2020", periods=10)}))
    for bad in ({"min_support": 0}, {"max_conditions": 4}, {"alpha": 1.0}, {"carry": 0}):
        with pytest.raises(ValueError):
            find_slices(frame, np.zeros(1000), **bad)
