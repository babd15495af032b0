"""Fairness metrics: agreement with Fairlearn (values to 1e-9, bootstrap intervals to 1e-9 with
the same seed), known answers, minimum group size, missing values and bad inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sklearn.metrics as skm
from fairlearn.metrics import (
    MetricFrame,
    accuracy_score_difference,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equal_opportunity_ratio,
    equalized_odds_difference,
    equalized_odds_ratio,
    false_positive_rate,
    false_positive_rate_difference,
    make_derived_metric,
    selection_rate,
    true_positive_rate,
)

from audit.errors import DataError
from audit.fairness.groups import MISSING, make_groupings
from audit.fairness.metrics import assess_fairness
from audit.fairness.specs import CALIBRATION
from audit.fairness.stats import expected_calibration_error, homogeneity_p_value

TOL = 1e-9


def _precision(y_true, y_pred, sample_weight=None):  # type: ignore[no-untyped-def]
    return skm.precision_score(y_true, y_pred, sample_weight=sample_weight, zero_division=0)


precision_difference = make_derived_metric(metric=_precision, transform="difference")

FAIRLEARN = {
    "demographic_parity_difference": demographic_parity_difference,
    "demographic_parity_ratio": demographic_parity_ratio,
    "equalized_odds_difference": equalized_odds_difference,
    "equalized_odds_ratio": equalized_odds_ratio,
    "equal_opportunity_difference": equal_opportunity_difference,
    "equal_opportunity_ratio": equal_opportunity_ratio,
    "false_positive_rate_difference": false_positive_rate_difference,
    "accuracy_score_difference": accuracy_score_difference,
    "precision_difference": precision_difference,
}


def random_case(seed: int, n: int = 1500, weighted: bool = False
                ) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, np.ndarray | None]:
    """Labels, biased predictions and three sensitive columns of uneven group sizes."""
    rng = np.random.default_rng(seed)
    sf = pd.DataFrame({
        "sex": rng.choice(["F", "M"], n, p=[0.35, 0.65]),
        "race": rng.choice(["a", "b", "c", "d"], n, p=[0.55, 0.25, 0.15, 0.05]),
        "age": rng.choice(["young", "old"], n),
    })
    bias = 0.15 * (sf["sex"] == "M").to_numpy() + 0.1 * (sf["race"] == "a").to_numpy()
    y = (rng.random(n) < 0.25 + bias).astype(int)
    pred = (rng.random(n) < 0.15 + 0.5 * y + bias * rng.random()).astype(int)
    w = rng.uniform(0.2, 3.0, n) if weighted else None
    return y, pred, sf, w


def _features(sf: pd.DataFrame, features: tuple[str, ...]) -> pd.Series | pd.DataFrame:
    return sf[features[0]] if len(features) == 1 else sf[list(features)]


@pytest.mark.parametrize(("seed", "weighted"), [(0, False), (1, False), (2, True)])
def test_disparities_equal_fairlearn(seed: int, weighted: bool) -> None:
    y, pred, sf, w = random_case(seed, n=800, weighted=weighted)
    res = assess_fairness(y, pred, sf, sample_weight=w, n_boot=0)
    assert [g.name for g in res.groupings] == ["sex", "race", "age", "sex × race × age"]
    checked = 0
    for g in res.groupings:
        feats = _features(sf, g.grouping.features)
        for name, fn in FAIRLEARN.items():
            ours = g.disparities[name].value
            theirs = fn(y, pred, sensitive_features=feats, sample_weight=w)
            assert ours == pytest.approx(theirs, abs=TOL), (g.name, name)
            checked += 1
    assert checked == 4 * len(FAIRLEARN)


@pytest.mark.parametrize("seed", [4])
def test_group_rates_equal_metricframe(seed: int) -> None:
    y, pred, sf, _ = random_case(seed, n=700)
    y[(sf["race"] == "d").to_numpy()] = 0  # a group without positives: TPR is 0, as sklearn
    res = assess_fairness(y, pred, sf[["race", "sex"]], n_boot=0)
    fns = {"selection_rate": selection_rate, "true_positive_rate": true_positive_rate,
           "false_positive_rate": false_positive_rate, "precision": _precision,
           "accuracy": skm.accuracy_score}
    for g in res.groupings:
        mf = MetricFrame(metrics=fns, y_true=y, y_pred=pred,
                         sensitive_features=_features(sf, g.grouping.features))
        by_group = mf.by_group.dropna(how="all")
        labels = [", ".join(map(str, k)) if isinstance(k, tuple) else str(k)
                  for k in by_group.index]
        assert labels == list(g.labels)
        for key in fns:
            np.testing.assert_allclose(g.rates[key], by_group[key].to_numpy(), atol=TOL,
                                       rtol=0)
        np.testing.assert_allclose(res.overall["accuracy"], skm.accuracy_score(y, pred))


@pytest.mark.parametrize("seed", [7])
def test_bootstrap_intervals_equal_fairlearn(seed: int) -> None:
    y, pred, sf, _ = random_case(seed, n=400)
    res = assess_fairness(y, pred, sf[["sex", "race"]], n_boot=25, ci_level=0.9,
                          random_state=seed + 11)
    for g in res.groupings[1:]:  # race, and the intersection sex × race
        mf = MetricFrame(metrics={"sel": selection_rate, "tpr": true_positive_rate,
                                  "fpr": false_positive_rate},
                         y_true=y, y_pred=pred,
                         sensitive_features=_features(sf, g.grouping.features),
                         n_boot=25, ci_quantiles=[0.05, 0.95], random_state=seed + 11)
        lo, hi = mf.difference_ci()
        rlo, rhi = mf.ratio_ci()
        d = g.disparities
        for ours, col in (("demographic_parity_difference", "sel"),
                          ("equal_opportunity_difference", "tpr"),
                          ("false_positive_rate_difference", "fpr")):
            assert d[ours].ci_low == pytest.approx(lo[col], abs=TOL)
            assert d[ours].ci_high == pytest.approx(hi[col], abs=TOL)
        assert d["demographic_parity_ratio"].ci_low == pytest.approx(rlo["sel"], abs=TOL)
        assert d["equal_opportunity_ratio"].ci_high == pytest.approx(rhi["tpr"], abs=TOL)
        glo, ghi = mf.by_group_ci
        np.testing.assert_allclose(g.rate_ci["selection_rate"][:, 0], glo["sel"], atol=TOL)
        np.testing.assert_allclose(g.rate_ci["true_positive_rate"][:, 1], ghi["tpr"], atol=TOL)
        for disp in d.values():  # every disparity has an interval around its value
            assert disp.ci_low <= disp.ci_high


def test_known_answer() -> None:
    # group A: 10 rows, 8 selected (4 of 5 positives, 4 of 5 negatives)
    # group B: 10 rows, 2 selected (2 of 5 positives, 0 of 5 negatives)
    y = np.array([1] * 5 + [0] * 5 + [1] * 5 + [0] * 5)
    pred = np.array([1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    sf = pd.DataFrame({"g": ["A"] * 10 + ["B"] * 10})
    res = assess_fairness(y, pred, sf, n_boot=0)
    (g,) = res.groupings
    d = g.disparities
    assert d["demographic_parity_difference"].value == pytest.approx(0.6)
    assert d["demographic_parity_ratio"].value == pytest.approx(0.25)
    assert d["equal_opportunity_difference"].value == pytest.approx(0.4)
    assert d["false_positive_rate_difference"].value == pytest.approx(0.8)
    assert d["equalized_odds_difference"].value == pytest.approx(0.8)
    assert d["equalized_odds_difference"].rate == "false_positive_rate"
    assert d["equalized_odds_ratio"].value == pytest.approx(0.0)
    assert (d["demographic_parity_difference"].high_group,
            d["demographic_parity_difference"].low_group) == ("A", "B")
    np.testing.assert_allclose(g.rates["precision"], [0.5, 1.0])
    np.testing.assert_allclose(g.rates["accuracy"], [0.5, 0.7])


def test_calibration_known_answer() -> None:
    # group A: scores 0.8, observed rate 0.5 -> +0.3; group B: scores 0.5, observed 0.5 -> 0
    y = np.array([1, 0] * 200)
    score = np.array([0.8] * 200 + [0.5] * 200)
    pred = (score > 0.6).astype(int)
    sf = pd.DataFrame({"g": ["A"] * 200 + ["B"] * 200})
    res = assess_fairness(y, pred, sf, score=score, n_boot=50)
    g = res.groupings[0]
    np.testing.assert_allclose(g.calibration[CALIBRATION], [0.3, 0.0], atol=1e-12)
    np.testing.assert_allclose(g.calibration["ece"], [0.3, 0.0], atol=1e-12)
    cal = g.disparities["calibration_difference"]
    assert cal.value == pytest.approx(0.3)
    assert cal.p_value < 0.01
    assert expected_calibration_error(np.full(10, 0.5), np.array([1] * 2 + [0] * 8)) \
        == pytest.approx(0.3)


def test_min_group_size_reports_small_groups_without_comparing_them() -> None:
    y, pred, sf, _ = random_case(3, n=2000)
    sf = sf[["race"]]
    res = assess_fairness(y, pred, sf, min_group_size=150, n_boot=0)
    (g,) = res.groupings
    small = g.small_groups(150)
    assert small == ["d"]  # about 5% of 2000 rows
    assert "d" in g.labels  # still reported
    keep = (sf["race"] != "d").to_numpy()
    assert g.disparities["demographic_parity_difference"].value == pytest.approx(
        demographic_parity_difference(y[keep], pred[keep],
                                      sensitive_features=sf["race"][keep]), abs=TOL)
    assert g.disparities["demographic_parity_difference"].groups_used == 3


def test_missing_sensitive_values_become_a_group() -> None:
    sf = pd.DataFrame({"race": ["a", None, "b", "", "a", float("nan")]})
    groupings, missing, _ = make_groupings(sf)
    assert missing == {"race": 3}
    assert groupings[0].labels == ("a", "b", MISSING)
    assert groupings[0].counts().tolist() == [2, 1, 3]


def test_too_many_groups_are_skipped_and_numbers_sort_numerically() -> None:
    sf = pd.DataFrame({"age": np.arange(60) % 45, "sex": ["F", "M"] * 30})
    groupings, _, skipped = make_groupings(sf, max_groups=40)
    assert skipped == {"age": 45, "age × sex": 60}
    assert [g.name for g in groupings] == ["sex"]
    g2, _, _ = make_groupings(pd.DataFrame({"n": [10, 2, 2, 1]}))
    assert g2[0].labels == ("1", "2", "10")


def test_p_value_separates_equal_and_different_rates() -> None:
    assert homogeneity_p_value(np.array([30.0, 60.0]), np.array([100.0, 200.0])) \
        == pytest.approx(1.0)
    assert homogeneity_p_value(np.array([10.0, 80.0]), np.array([100.0, 100.0])) < 1e-12
    assert homogeneity_p_value(np.array([5.0]), np.array([10.0])) == 1.0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"y_true": np.array([0, 2, 1])}, "0/1"),
    ({"y_pred": np.array(["a", "b", "a"])}, "0/1"),
    ({"y_true": np.array([0.0, np.nan, 1.0])}, "missing"),
    ({"y_pred": np.array([0, 1])}, "differ in length"),
    ({"score": np.array([0.2, 1.4, 0.5])}, "[0, 1]"),
])
def test_bad_inputs_are_clear_errors(kwargs: dict[str, np.ndarray], message: str) -> None:
    args = {"y_true": np.array([0, 1, 1]), "y_pred": np.array([0, 1, 0]),
            "sensitive": pd.DataFrame({"g": ["a", "b", "a"]})}
    args.update(kwargs)
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        assess_fairness(**args, n_boot=0)  # type: ignore[arg-type]


def test_same_seed_same_numbers() -> None:
    y, pred, sf, _ = random_case(9, n=500)
    a = assess_fairness(y, pred, sf, n_boot=40, random_state=3)
    b = assess_fairness(y, pred, sf, n_boot=40, random_state=3)
    c = assess_fairness(y, pred, sf, n_boot=40, random_state=4)
    key = "demographic_parity_difference"
    assert [g.disparities[key].ci_low for g in a.groupings] == \
        [g.disparities[key].ci_low for g in b.groupings]
    assert [g.disparities[key].ci_low for g in a.groupings] != \
        [g.disparities[key].ci_low for g in c.groupings]
