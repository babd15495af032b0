"""``audit mitigate --slice RULE`` and ``correlation-remover``: reweighing by slice gives the
slice half the loss and, on a model that cannot fit every slice at once, lowers the slice's gap;
the correlation remover is Fairlearn's at the model's width; every variant shows each slice's
gap with its interval; bad rules are one-line errors; on Adult the measured effects (slow)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import Cli
from fairlearn.preprocessing import CorrelationRemover
from torch import nn

from audit.apps.mitigate import TrainingSettings
from audit.apps.mitigate_section import Variant, mitigation_section
from audit.errors import DataError
from audit.fairness.metrics import assess_fairness
from audit.fairness.mitigation import CorrelationRemoval, indicator_matrix, train_with_penalty
from audit.fairness.mitigation_slices import SliceReweighing, slice_gap
from audit.report.render import load_result
from audit.stats import newcombe_difference

HOURS = "hours_per_week >= 50"


# --- the methods ----------------------------------------------------------------------------

def test_slice_reweighing_gives_the_slice_half_the_loss() -> None:
    rows = np.zeros(1000, dtype=bool)
    rows[:150] = True
    w = SliceReweighing().fit_transform(rows)
    assert w[rows].sum() / w.sum() == pytest.approx(0.5)
    assert w.mean() == pytest.approx(1.0)  # the learning rate means what it did
    assert w[0] == pytest.approx(0.5 / 0.15) and w[-1] == pytest.approx(0.5 / 0.85)
    w = SliceReweighing(share=0.3).fit_transform(rows)
    assert w[rows].sum() / w.sum() == pytest.approx(0.3)
    with pytest.raises(DataError, match="no training row"):
        SliceReweighing().fit(np.zeros(10, dtype=bool))
    with pytest.raises(DataError, match="60% of the training rows"):
        SliceReweighing().fit(np.arange(10) < 6, "--slice 'x < 6'")


def test_slice_gap_is_the_error_difference_with_newcombes_interval() -> None:
    rows = np.arange(400) < 100
    wrong = np.zeros(400, dtype=bool)
    wrong[:30] = True  # 30% inside
    wrong[100:130] = True  # 10% outside
    g = slice_gap("x < 100", rows, wrong)
    assert (g.rows, g.error, g.rest_error) == (100, 0.3, 0.1)
    assert (g.gap, g.ci_low, g.ci_high) == pytest.approx(newcombe_difference(30, 100, 30, 300))
    assert g.ci_low < 0.2 < g.ci_high


def test_reweighing_a_slice_lowers_its_gap_when_the_model_cannot_fit_both() -> None:
    """A linear model on (a, b): the rest's label is a > 0, the slice's (15% of rows) b > 0.
    Unweighted it follows the rest and misses the slice; with the slice at half the loss it
    splits the difference: the slice's error falls, the rest's rises, the gap closes."""
    rng = np.random.default_rng(0)
    n = 4000
    x = rng.normal(size=(n, 2)).astype(np.float32)
    rows = rng.random(n) < 0.15
    y = np.where(rows, x[:, 1] > 0, x[:, 0] > 0).astype(np.int64)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def gap(weights: np.ndarray | None) -> float:
        torch.manual_seed(0)
        model = nn.Linear(2, 2)
        sw = None if weights is None else torch.from_numpy(weights).float()
        train_with_penalty(model, xt, yt, epochs=5, lr=0.05, batch_size=128, seed=0,
                           sample_weight=sw)
        with torch.no_grad():
            wrong = model(xt).argmax(1).numpy() != y
        return slice_gap("slice", rows, wrong).gap

    before, after = gap(None), gap(SliceReweighing().fit_transform(rows))
    assert before > 0.25
    assert after < before - 0.15


def test_correlation_removal_is_fairlearns_at_the_models_width() -> None:
    """When the sensitive inputs are the one-hot columns of the groups, the other columns are
    exactly Fairlearn's output; the sensitive ones are zeroed (dropped, at the same width)."""
    rng = np.random.default_rng(1)
    n = 600
    sex = rng.choice(["F", "M"], n)
    a = rng.normal(size=n) + (sex == "M")
    b = rng.random(n)
    x = np.stack([a, (sex == "F"), (sex == "M"), b], axis=1).astype(np.float32)
    frame = pd.DataFrame({"sex": sex})
    out = CorrelationRemoval([1, 2], alpha=1.0).fit_transform(x, frame)
    assert out.shape == x.shape and out.dtype == np.float32
    assert not out[:, [1, 2]].any()
    fair = CorrelationRemover(sensitive_feature_ids=[1, 2]).fit_transform(x.astype(np.float64))
    np.testing.assert_allclose(out[:, [0, 3]], fair, atol=1e-5)
    assert abs(np.corrcoef(out[:, 0], sex == "M")[0, 1]) < 1e-6
    half = CorrelationRemoval([1, 2], alpha=0.5).fit_transform(x, frame)
    np.testing.assert_allclose(half[:, 0], 0.5 * out[:, 0] + 0.5 * x[:, 0], atol=1e-5)
    # the attribute need not be a model input; new data is encoded with the training groups
    kept = CorrelationRemoval([], alpha=1.0).fit(x[:, [0, 3]], frame)
    new = kept.transform(x[:3, [0, 3]], pd.DataFrame({"sex": ["F", "M", "X"]}))
    assert new.shape == (3, 2)
    s, labels = indicator_matrix(pd.DataFrame({"sex": ["X", "F"]}), [["F", "M"]])
    assert labels == [["F", "M"]] and s.tolist() == [[0, 0], [1, 0]]
    with pytest.raises(ValueError, match="alpha"):
        CorrelationRemoval([1], alpha=2.0)


# --- the table and the JSON section ---------------------------------------------------------

def _variant(method: str, setting: str, y: np.ndarray, pred: np.ndarray, frame: pd.DataFrame,
             rows: np.ndarray) -> Variant:
    res = assess_fairness(y, pred, frame, n_boot=0, random_state=0)
    return Variant(method=method, setting=setting, accuracy=float((pred == y).mean()),
                   result=res, seconds=0.0, slices=[slice_gap("age < 25", rows, pred != y)])


def test_the_table_and_section_show_each_slices_gap_before_and_after() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    y = rng.integers(0, 2, n)
    frame = pd.DataFrame({"sex": rng.choice(["F", "M"], n)})
    rows = rng.random(n) < 0.2
    before = np.where(rng.random(n) < np.where(rows, 0.7, 0.9), y, 1 - y)
    after = np.where(rng.random(n) < 0.88, y, 1 - y)
    variants = [_variant("your-model", "", y, before, frame, rows),
                _variant("baseline", "", y, before, frame, rows),
                _variant("reweighing-slice", "age < 25", y, after, frame, rows)]
    sec = mitigation_section(variants, TrainingSettings(), ["sex"], ["sex"])
    main = sec.tables[0]
    table = [dict(zip(main.columns, r, strict=True)) for r in main.rows]
    assert {"error (age < 25)", "gap to rest (age < 25)", "gap 95% CI (age < 25)"} <= set(
        main.columns)
    yours, _, rw = table
    gap_before, gap_after = (float(str(r["gap to rest (age < 25)"])) for r in (yours, rw))
    assert gap_before == pytest.approx(variants[0].slices[0].gap, abs=1e-4)
    assert gap_before > 0.15 > abs(gap_after)
    lo, hi = (float(v) for v in str(yours["gap 95% CI (age < 25)"]).split(" to "))
    assert lo < gap_before < hi
    assert sec.params["slices"] == [{"rule": "age < 25", "rows": int(rows.sum())}]
    assert sec.metrics["reweighing-slice[age < 25].slice0.gap"] == variants[2].slices[0].gap
    assert {"your-model.slice0.gap_ci_low", "baseline.slice0.error_rate"} <= set(sec.metrics)
    (finding,) = sec.findings
    assert finding.id == "mitigation.reweighing-slice" and "age < 25" in finding.title
    assert finding.evidence["slices"][0]["retrained_baseline_gap"] == variants[1].slices[0].gap
    assert sec.tables[1].columns[-1] == ("reweighing-slice[age < 25]: targets the error gap "
                                         "of age < 25")


# --- the command line -----------------------------------------------------------------------

@pytest.mark.parametrize(("rule", "code", "words"), [
    ("agee < 25", 2, "names column 'agee', which adult/train does not have"),
    ("age < 10", 2, "matches no row of adult/train"),
    ("age <", 4, "--slice: cannot read"),
])
def test_a_bad_rule_is_a_one_line_error(cli: Cli, rule: str, code: int, words: str) -> None:
    rc, _, err = cli("mitigate", "adult-mlp", "--methods", "reweighing-slice", "--slice", rule)
    assert rc == code and words in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_reweighing_slice_needs_a_slice_and_a_minority_one(cli: Cli) -> None:
    rc, _, err = cli("mitigate", "adult-mlp", "--methods", "reweighing-slice")
    assert rc == 4 and "--slice RULE" in err
    rc, _, err = cli("mitigate", "adult-mlp", "--methods", "reweighing-slice", "--slice",
                     "age >= 25")
    assert rc == 2 and "of the training rows" in err and len(err.strip().splitlines()) == 1
    rc, _, err = cli("mitigate", "adult-mlp", "--methods", "correlation-remover", "--alphas",
                     "1.5")
    assert rc == 4 and "alpha" in err


def test_mitigate_slice_and_correlation_remover_on_the_command_line(
        cli: Cli, tmp_path: Path) -> None:
    rc, _, err = cli("mitigate", "adult-mlp", "--epochs", "1", "--n-boot", "0", "--methods",
                     "reweighing-slice,correlation-remover", "--slice", HOURS, "--slice",
                     "relationship == 'Wife'", "--out", str(tmp_path / "m.html"))
    assert rc in (0, 1), err
    with (tmp_path / "m.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["method"], r["setting"]) for r in rows] == [
        ("your model", ""), ("retrained baseline", ""), ("reweighing-slice", HOURS),
        ("reweighing-slice", "relationship == 'Wife'"), ("correlation-remover", "α=1")]
    assert all(r[f"gap to rest ({HOURS})"] and r["DP diff (sex)"] for r in rows)
    doc = load_result(tmp_path / "m.json")
    mit = next(s for s in doc["sections"] if s["check"] == "mitigation")
    assert [s["rule"] for s in mit["params"]["slices"]] == [HOURS, "relationship == 'Wife'"]
    assert {f["id"] for f in mit["findings"]} == {"mitigation.reweighing-slice",
                                                  "mitigation.correlation-remover"}


# --- on Adult (slow) ------------------------------------------------------------------------

@pytest.mark.slow
def test_slice_reweighing_and_correlation_remover_on_adult() -> None:
    """Measured (recipe settings, seed 0, one thread, AMD EPYC): the slice hours_per_week >= 50
    has error 22.5% against 12.6% for your model (gap +0.100, 95% CI +0.084 to +0.115) and
    the retrained baseline (+0.100); reweighed to half the loss it is +0.097 (+0.082 to
    +0.113) at accuracy 85.5%: lower, but well inside the baseline's interval. The MLP sees
    the slice's columns and already fits it as well as its labels allow, so the weight buys
    almost nothing (other slices move by as little, some up). The correlation remover
    (alpha 1): accuracy 85.6%, DP diff by sex 0.182 (baseline 0.179), by sex x race 0.238
    (0.262), EO diff by sex 0.089 (0.090): the residuals of one-hot inputs still encode sex
    for a non-linear model (a depth-8 tree reads sex from them perfectly), and the base rates
    differ anyway."""
    from audit.apps.mitigate import run_mitigation
    from audit.datasets import load_dataset
    from audit.loading import load_model

    loaded = load_model("adult-mlp")
    assert loaded.card is not None
    train, test = load_dataset("adult", "train"), load_dataset("adult", "test")
    variants = run_mitigation(loaded.card, train, test, ["sex", "race"], model=loaded.model,
                              methods=["reweighing-slice", "correlation-remover"],
                              slices=[HOURS], n_boot=0)
    by = {v.key: v for v in variants}
    yours, base = by["your-model"].slices[0], by["baseline"].slices[0]
    rw = by[f"reweighing-slice[{HOURS}]"].slices[0]
    assert yours.ci_low > 0.05  # a weak slice
    # honest: the reweighed gap is no larger than the baseline's beyond noise, and not
    # smaller beyond it either (measured 0.100 -> 0.097)
    assert base.ci_low < rw.gap < base.ci_high
    assert rw.gap <= base.gap + 0.01
    cr = by["correlation-remover[α=1]"]

    def gap(v: Variant, grouping: str, metric: str) -> float:
        g = next(g for g in v.result.groupings if g.key == grouping)
        return g.disparities[metric].value

    for grouping in ("sex", "sex_x_race"):
        for metric in ("demographic_parity_difference", "equalized_odds_difference"):
            assert np.isfinite(gap(cr, grouping, metric))
    assert gap(cr, "sex", "demographic_parity_difference") > 0.1  # decorrelation leaves it
    for v in variants:
        assert v.accuracy > 0.84, v.key
