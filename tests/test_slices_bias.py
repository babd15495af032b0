"""Training-data bias (representation, base rates, missingness) and proxies of sensitive
attributes: known answers on synthetic data, Adult's known proxies, degenerate inputs.

Run with ``pytest -s`` to see the Adult tables (MI, AUC with interval, model reliance)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from audit.errors import DataError
from audit.fairness.groups import MISSING
from audit.slices.bias import GroupBias, training_bias
from audit.slices.proxies import (
    RELIANCE_THRESHOLD,
    Proxy,
    find_proxies,
    model_reliance,
    with_reliance,
)
from audit.stats import newcombe_difference


def by_group(rows: list[GroupBias], column: str) -> dict[str, GroupBias]:
    return {r.group: r for r in rows if r.column == column}


def by_feature(rows: list[Proxy]) -> dict[str, Proxy]:
    return {p.feature: p for p in rows}


def groups_frame(n: int, shares: dict[str, float], seed: int) -> pd.DataFrame:
    """Column ``g`` drawn with ``shares``; its own stream, so a test's ``default_rng(seed)``
    for the other columns is independent of the groups."""
    rng = np.random.default_rng([seed, 1])
    names = list(shares)
    return pd.DataFrame({"g": rng.choice(names, size=n, p=[shares[k] for k in names])})


# ---------------------------------------------------------------- Adult


@pytest.fixture(scope="module")
def adult_train() -> pd.DataFrame:
    from audit.datasets.adult import read_raw

    return read_raw("train")


def test_adult_proxies_of_sex_and_the_models_reliance(adult_train: pd.DataFrame) -> None:
    import torch

    from audit.runner import build_subject

    features = [c for c in adult_train.columns if c not in ("sex", "income")]
    proxies = find_proxies(adult_train, "sex", features, seed=0)
    found = by_feature(proxies)
    assert "sex" not in found
    for name in ("relationship", "marital_status"):
        assert found[name].strong, found[name]
        assert found[name].auc_ci_low > 0.7
    assert found["relationship"].mutual_information > 0.3  # Husband / Wife
    assert not found["fnlwgt"].strong  # a sampling weight, not a trait
    assert found["fnlwgt"].auc < 0.6 and found["fnlwgt"].mutual_information < 0.01

    subject = build_subject("adult-mlp")
    encoder = subject.data.extras["encoder"]

    def predict(frame: pd.DataFrame) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(encoder.transform(frame))
            return subject.logits(x).argmax(1).numpy()

    audited = subject.data.extras["frame"].sample(n=4000, random_state=0)
    reliance = model_reliance(predict, audited, [*features, "sex"], repeats=3, seed=0)
    assert reliance["fnlwgt"] == 0.0 and reliance["education"] == 0.0  # not model inputs
    proxies = with_reliance(proxies, reliance)
    found = by_feature(proxies)
    assert found["relationship"].relied_on() and found["marital_status"].relied_on()

    print(f"\nAdult train, proxies of sex (MI = I(X;S)/H(S); AUC held-out, 95% bootstrap CI);"
          f" reliance of adult-mlp on 4000 test rows (share of predictions flipped by "
          f"permuting the column; relied on > {RELIANCE_THRESHOLD:.0%})")
    for p in proxies:
        print(f"  {p.feature:15s} MI={p.mutual_information:.3f}  AUC={p.auc:.3f} "
              f"[{p.auc_ci_low:.3f}, {p.auc_ci_high:.3f}]  strong={p.strong!s:5s} "
              f"reliance={p.reliance:.4f}  relied_on={p.relied_on()}")
    print(f"  (sex itself: reliance={reliance['sex']:.4f}; median reliance "
          f"{np.median(list(reliance.values())):.4f})")


def test_adult_training_bias(adult_train: pd.DataFrame) -> None:
    from audit.datasets.adult import read_raw

    rows = training_bias(adult_train, read_raw("test"), ["sex", "race"], "income")
    sex = by_group(rows, "sex")
    assert {r.label for r in rows} == {">50K"}
    assert sex["Female"].base_rate_differs and sex["Female"].base_rate_gap_high < 0
    assert not sex["Female"].under_represented  # official split: same shares in train/test
    assert sex["Female"].missing_differs  # workclass/occupation unknown more often
    assert {c.column for c in sex["Female"].missing_columns} >= {"workclass", "occupation"}
    assert len(by_group(rows, "sex × race")) == 10
    print("\nAdult train vs test: share train/test, base rate of >50K, gap vs rest (95% CI), "
          "rows with a missing value vs rest")
    for r in rows:
        print(f"  {r.column:11s} {r.group:27s} {r.train_share:.3f}/{r.audit_share:.3f}  "
              f"base {r.train_base_rate:.3f} gap {r.base_rate_gap:+.3f} "
              f"[{r.base_rate_gap_low:+.3f}, {r.base_rate_gap_high:+.3f}]  "
              f"missing {r.missing_train:.3f}/{r.missing_rest:.3f}")


# ---------------------------------------------------------------- planted proxies


def test_a_planted_proxy_is_found_and_an_independent_feature_is_not() -> None:
    rng = np.random.default_rng(1)
    frame = groups_frame(3000, {"A": 0.6, "B": 0.4}, seed=1)
    is_b = (frame["g"] == "B").to_numpy()
    flip = rng.random(len(frame)) < 0.15
    frame["copy"] = np.where(is_b ^ flip, "b", "a")  # a noisy copy of the group
    frame["numeric"] = is_b + rng.normal(0, 0.5, len(frame))  # the same, numeric
    frame["noise"] = rng.normal(size=len(frame))
    frame["coin"] = rng.choice(["h", "t"], size=len(frame))
    found = by_feature(find_proxies(frame, "g", ["g", "copy", "numeric", "noise", "coin"]))
    assert "g" not in found
    assert found["copy"].strong and abs(found["copy"].auc - 0.85) < 0.04
    assert found["numeric"].strong and found["numeric"].auc > 0.8
    for name in ("noise", "coin"):
        assert not found[name].strong
        assert found[name].auc_ci_low < 0.5 + 0.05 and found[name].mutual_information < 0.01
    assert found["copy"].mutual_information > 0.3


def test_proxies_of_three_groups_use_the_macro_one_vs_rest_auc() -> None:
    rng = np.random.default_rng(2)
    frame = groups_frame(3000, {"A": 0.5, "B": 0.3, "C": 0.2}, seed=2)
    frame["exact"] = frame["g"].map({"A": "x", "B": "y", "C": "z"})
    frame["half"] = frame["g"].map({"A": "x", "B": "y", "C": "y"})  # B and C merged
    frame["noise"] = rng.normal(size=len(frame))
    found = by_feature(find_proxies(frame, "g", ["exact", "half", "noise"]))
    assert found["exact"].auc == pytest.approx(1.0)
    assert found["exact"].mutual_information == pytest.approx(1.0)
    # A vs rest is perfect, B vs rest and C vs rest each 0.5 + half their rest's share of A
    assert 0.75 < found["half"].auc < 0.9 and found["half"].strong
    assert not found["noise"].strong


# ---------------------------------------------------------------- planted training biases


def test_a_subsampled_group_is_under_represented() -> None:
    audit = groups_frame(4000, {"A": 0.5, "B": 0.5}, seed=3)
    train = groups_frame(4000, {"A": 0.9, "B": 0.1}, seed=4)
    for f in (train, audit):
        f["y"] = 1
    rows = by_group(training_bias(train, audit, ["g"], "y"), "g")
    assert rows["B"].under_represented and not rows["A"].under_represented
    assert rows["B"].train_share_high < rows["B"].audit_share_low
    assert rows["B"].representation_ratio == pytest.approx(0.2, abs=0.03)
    same = by_group(training_bias(groups_frame(4000, {"A": 0.5, "B": 0.5}, seed=5).assign(y=1),
                                  audit, ["g"], "y"), "g")
    assert not same["B"].under_represented and not same["A"].under_represented


def test_a_planted_base_rate_gap_is_found_with_its_interval() -> None:
    rng = np.random.default_rng(6)
    train = groups_frame(4000, {"A": 0.5, "B": 0.5}, seed=6)
    rate = np.where(train["g"] == "A", 0.6, 0.3)
    train["y"] = np.where(rng.random(len(train)) < rate, "yes", "no")
    audit = train.drop(columns="y")  # unlabelled audited data
    rows = by_group(training_bias(train, audit, ["g"], "y", positive="yes"), "g")
    a = rows["A"]
    assert a.base_rate_differs and a.base_rate_gap_low > 0 and a.base_rate_p_value < 1e-6
    assert a.base_rate_gap_low < 0.3 < a.base_rate_gap_high
    assert a.train_base_rate_low < 0.6 < a.train_base_rate_high
    assert a.audit_base_rate is None
    train["y"] = np.where(rng.random(len(train)) < 0.4, "yes", "no")
    flat = by_group(training_bias(train, audit, ["g"], "y", positive="yes"), "g")
    assert not flat["A"].base_rate_differs
    assert flat["A"].base_rate_gap_low < 0 < flat["A"].base_rate_gap_high


def test_planted_missingness_in_one_group_is_found_in_its_column() -> None:
    rng = np.random.default_rng(7)
    train = groups_frame(3000, {"A": 0.5, "B": 0.5}, seed=7)
    in_b = (train["g"] == "B").to_numpy()
    gone = rng.random(len(train)) < np.where(in_b, 0.3, 0.02)
    train["job"] = np.where(gone, "?", "clerk")  # UCI's marker
    train["hours"] = np.where(rng.random(len(train)) < 0.05, np.nan, 40.0)  # even
    train["y"] = rng.integers(0, 2, len(train))
    rows = by_group(training_bias(train, train, ["g"], "y"), "g")
    b = rows["B"]
    assert b.label == "1"
    assert b.missing_differs and b.missing_gap_low > 0.2
    assert [c.column for c in b.missing_columns] == ["job"]
    assert b.missing_columns[0].group_share == pytest.approx(0.3, abs=0.04)


# ---------------------------------------------------------------- degenerate inputs


def test_a_sensitive_column_with_one_value() -> None:
    frame = pd.DataFrame({"g": ["A"] * 100, "x": np.arange(100) % 3, "y": np.arange(100) % 2})
    (row,) = training_bias(frame, frame, ["g"], "y")
    assert row.train_share == 1.0 and not row.tested and not row.under_represented
    assert math.isnan(row.base_rate_gap) and not row.base_rate_differs
    (proxy,) = find_proxies(frame, "g", ["x"])
    assert math.isnan(proxy.auc) and not proxy.strong and proxy.mutual_information == 0.0


def test_tiny_groups_are_shown_not_tested() -> None:
    train = groups_frame(1000, {"A": 0.99, "B": 0.01}, seed=8)
    train["y"] = np.arange(len(train)) % 2
    rows = by_group(training_bias(train, train, ["g"], "y", min_group=30), "g")
    b = rows["B"]
    assert 0 < b.n_train < 30 and not b.tested
    assert math.isnan(b.base_rate_p_value) and math.isnan(b.missing_p_value)
    assert not b.base_rate_differs and not b.missing_differs
    assert b.train_base_rate == pytest.approx(b.train_base_rate)  # a rate is still shown
    print(f"\ntiny group shown: n_train={b.n_train}, share={b.train_share:.3f} "
          f"[{b.train_share_low:.3f}, {b.train_share_high:.3f}], base rate "
          f"{b.train_base_rate:.2f} [{b.train_base_rate_low:.2f}, {b.train_base_rate_high:.2f}]")


def test_missing_sensitive_values_form_the_fairness_checks_missing_group() -> None:
    train = groups_frame(600, {"A": 0.5, "B": 0.5}, seed=9)
    train.loc[:59, "g"] = None
    train["x"] = np.where(train["g"].isna(), "unknown", "known")
    train["y"] = np.arange(len(train)) % 2
    rows = by_group(training_bias(train, train, ["g"], "y"), "g")
    assert list(rows) == ["A", "B", MISSING] and rows[MISSING].n_train == 60
    proxies = by_feature(find_proxies(train, "g", ["x"]))
    assert proxies["x"].auc > 0.6  # "unknown" tells the missing group apart


def test_intersections_and_per_class_base_rates() -> None:
    rng = np.random.default_rng(10)
    train = pd.DataFrame({"sex": rng.choice(["F", "M"], 900), "race": rng.choice(["a", "b"], 900),
                          "y": rng.choice(["lo", "mid", "hi"], 900)})
    rows = training_bias(train, train, ["sex", "race"], "y")
    assert {r.column for r in rows} == {"sex", "race", "sex × race"}
    assert {r.label for r in rows} == {"hi", "lo", "mid"}
    assert "F, a" in by_group(rows, "sex × race")


def test_bad_inputs_are_data_errors() -> None:
    frame = pd.DataFrame({"g": ["A", "B"] * 20, "y": [0, 1] * 20})
    with pytest.raises(DataError, match="target column 'label'"):
        training_bias(frame, frame, ["g"], "label")
    with pytest.raises(DataError, match="positive class 'maybe'"):
        training_bias(frame, frame, ["g"], "y", positive="maybe")
    with pytest.raises(DataError, match="sensitive column"):
        training_bias(frame, frame, ["sex"], "y")
    with pytest.raises(DataError, match="age"):
        find_proxies(frame, "g", ["age"])


def test_model_reliance_counts_flipped_predictions() -> None:
    rng = np.random.default_rng(11)
    frame = pd.DataFrame({"a": rng.normal(size=2000), "b": rng.normal(size=2000)})

    def predict(f: pd.DataFrame) -> np.ndarray:
        return (f["a"].to_numpy() > 0).astype(int)

    reliance = model_reliance(predict, frame, ["a", "b"], repeats=3, seed=0)
    assert reliance["b"] == 0.0
    assert reliance["a"] == pytest.approx(0.5, abs=0.05)  # half the signs change


def test_newcombe_interval_matches_the_paper() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, table II, method 10
    d, lo, hi = newcombe_difference(56, 70, 48, 80)
    assert (round(d, 4), round(lo, 4), round(hi, 4)) == (0.2, 0.0524, 0.3339)
