"""Mitigation: reweighing makes labels independent of groups, the penalty is the relaxed gap and
reduces it, group thresholds equalise rates, and on Adult each method reduces its gap (slow)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from reproduction import ACCURACY_TOLERANCE
from torch import nn

from audit.apps.mitigate import TrainingSettings
from audit.apps.mitigate_section import Variant, mitigation_section
from audit.errors import DataError
from audit.fairness.metrics import assess_fairness
from audit.fairness.mitigation import (
    FairnessPenalty,
    FairnessPenaltyLoss,
    GroupThresholds,
    Reweighing,
    group_codes,
    train_with_penalty,
)
from audit.training import CrossEntropy, TrainConfig, Trainer


def biased_data(n: int = 3000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, pd.DataFrame]:
    """Group B has a higher base rate and its membership is a model input."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 2, n)
    z = rng.normal(size=n)
    y = (z + 1.2 * g + 0.5 * rng.normal(size=n) > 0.8).astype(np.int64)
    x = np.stack([g, z, rng.normal(size=n)], axis=1).astype(np.float32)
    frame = pd.DataFrame({"group": np.where(g == 1, "B", "A")})
    return torch.from_numpy(x), torch.from_numpy(y), frame


def small_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 2))


def test_reweighing_makes_label_independent_of_group() -> None:
    _, y, frame = biased_data()
    yv = y.numpy()
    w = Reweighing().fit_transform(yv, frame)
    overall = (w * yv).sum() / w.sum()
    for label in ("A", "B"):
        m = (frame["group"] == label).to_numpy()
        assert (w[m] * yv[m]).sum() / w[m].sum() == pytest.approx(overall, abs=1e-12)
        # Kamiran & Calders: w = P(group) P(y) / P(group, y), checked for one cell
        cell = m & (yv == 1)
        expected = m.mean() * (yv == 1).mean() / cell.mean()
        assert w[cell] == pytest.approx(np.full(cell.sum(), expected))
    assert w.sum() == pytest.approx(len(yv))  # total weight is preserved


def test_reweighing_intersection_and_unseen_cells() -> None:
    sf = pd.DataFrame({"a": ["x", "x", "y", "y"], "b": ["p", "q", "p", "q"]})
    rw = Reweighing().fit(np.array([1, 0, 1, 0]), sf)
    assert len(rw.weights_) == 4  # four intersectional groups, one label each
    new = pd.DataFrame({"a": ["z"], "b": ["p"]})
    assert rw.sample_weight(np.array([1]), new).tolist() == [1.0]


def test_penalty_is_the_relaxed_gap() -> None:
    # group 0 mean probability 0.8, group 1 mean 0.3 -> demographic parity gap 0.5
    p = torch.tensor([0.9, 0.7, 0.2, 0.4], dtype=torch.float64)
    logits = torch.stack([torch.zeros(4, dtype=torch.float64), torch.logit(p)], 1)
    logits.requires_grad_(True)
    groups = torch.tensor([0, 0, 1, 1])
    y = torch.tensor([1, 0, 1, 0])
    dp = FairnessPenalty("demographic_parity", weight=2.0, min_rows=1)(logits, y, groups)
    assert float(dp.detach()) == pytest.approx(2 * 0.5)
    dp.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    eo = FairnessPenalty("equalized_odds", weight=1.0, min_rows=1)(logits.detach(), y, groups)
    assert float(eo) == pytest.approx(max(0.9 - 0.2, 0.7 - 0.4))  # soft TPR gap wins
    tiny = FairnessPenalty("demographic_parity", min_rows=3)(logits.detach(), y, groups)
    assert float(tiny) == 0.0  # groups under min_rows are left out


def test_no_penalty_trains_the_same_model_as_plain_cross_entropy() -> None:
    x, y, frame = biased_data(n=600)
    config = TrainConfig(epochs=2, lr=1e-2, batch_size=64, seed=3)
    a = small_mlp()
    Trainer(a, config, CrossEntropy(), (x, y)).fit()
    b = train_with_penalty(small_mlp(), x, y, epochs=2, lr=1e-2, batch_size=64, seed=3,
                           groups=torch.zeros(len(y), dtype=torch.long),
                           penalty=FairnessPenalty("demographic_parity", weight=0.0))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    # the same loss with a weight trains another model (the penalty reaches the gradients)
    c = small_mlp()
    groups = torch.from_numpy(group_codes(frame)[0])
    Trainer(c, config, FairnessPenaltyLoss(FairnessPenalty("demographic_parity", 2.0),
                                           groups), (x, y)).fit()
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(),
                                                          strict=True))


def _dp(model: nn.Module, x: torch.Tensor, y: torch.Tensor, frame: pd.DataFrame) -> float:
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
    return float(demographic_parity_difference(y.numpy(), pred,
                                               sensitive_features=frame["group"]))


def test_penalty_and_reweighing_reduce_the_gap() -> None:
    x, y, frame = biased_data(n=2000)
    codes, _ = group_codes(frame)
    groups = torch.from_numpy(codes)
    kw = {"epochs": 5, "lr": 1e-2, "batch_size": 128, "seed": 0}
    base = _dp(train_with_penalty(small_mlp(), x, y, **kw), x, y, frame)  # type: ignore[arg-type]
    fair = _dp(train_with_penalty(small_mlp(), x, y, groups=groups,  # type: ignore[arg-type]
                                  penalty=FairnessPenalty("demographic_parity", 2.0), **kw),
               x, y, frame)
    w = torch.from_numpy(Reweighing().fit_transform(y.numpy(), frame)).float()
    reweighed = _dp(train_with_penalty(small_mlp(), x, y, sample_weight=w,  # type: ignore[arg-type]
                                       **kw), x, y, frame)
    assert base > 0.2
    assert fair < base / 2
    assert reweighed < base - 0.05


def test_group_thresholds_equalise_rates() -> None:
    x, y, frame = biased_data(n=4000)
    score = torch.sigmoid(2 * x[:, 1] + 1.5 * x[:, 0] - 1.0).numpy().astype(np.float64)
    yv = y.numpy()
    before_dp = demographic_parity_difference(yv, (score > 0.5).astype(int),
                                              sensitive_features=frame["group"])
    dp = GroupThresholds("demographic_parity").fit(score, yv, frame)
    pred = dp.predict(score, frame, random_state=0)
    assert before_dp > 0.3
    assert demographic_parity_difference(yv, pred, sensitive_features=frame["group"]) < 0.03
    eo = GroupThresholds("equalized_odds").fit(score, yv, frame)
    pred = eo.predict(score, frame, random_state=0)
    assert equalized_odds_difference(yv, pred, sensitive_features=frame["group"]) < 0.05
    assert np.array_equal(pred, eo.predict(score, frame, random_state=0))
    with pytest.raises(DataError, match="not in the data the thresholds were fitted on"):
        dp.predict(score[:2], pd.DataFrame({"group": ["A", "C"]}))
    with pytest.raises(ValueError, match="only demographic parity"):
        GroupThresholds("equalized_odds", tol=0.05)


def test_training_settings_from_the_adult_card() -> None:
    from audit.loading import load_model

    card = load_model("adult-mlp").card
    assert card is not None
    s = TrainingSettings.from_card(card, epochs=3)
    assert (s.epochs, s.batch_size, s.lr, s.weight_decay, s.seed) == (3, 256, 3e-3, 1e-4, 0)


@pytest.mark.slow
def test_mitigation_reduces_the_gap_on_adult() -> None:
    from audit.apps.mitigate import run_mitigation
    from audit.datasets import load_dataset
    from audit.loading import load_model

    card = load_model("adult-mlp").card
    assert card is not None
    train, test = load_dataset("adult", "train"), load_dataset("adult", "test")
    variants = run_mitigation(card, train, test, ["sex", "race"],
                              methods=["reweighing", "penalty-dp", "penalty-eo",
                                       "thresholds-dp", "thresholds-eo"],
                              lambdas=[0.3], tols=[0.0], n_boot=0)
    by = {v.key: v for v in variants}

    def gap(key: str, grouping: str, metric: str) -> float:
        g = next(g for g in by[key].result.groupings if g.key == grouping)
        return g.disparities[metric].value

    dp, eo = "demographic_parity_difference", "equalized_odds_difference"
    # the baseline is the recipe retrained here: the card's accuracy on any CPU type
    assert by["baseline"].accuracy == pytest.approx(card.metrics["test_accuracy"],
                                                    abs=ACCURACY_TOLERANCE)
    for key in ("reweighing", "penalty-dp[λ=0.3]", "thresholds-dp[tol=0]"):
        assert gap(key, "sex", dp) < gap("baseline", "sex", dp) - 0.05, key
        assert gap(key, "sex_x_race", dp) < gap("baseline", "sex_x_race", dp), key
    for key in ("penalty-eo[λ=0.3]", "thresholds-eo[exact]"):
        assert gap(key, "sex", eo) < gap("baseline", "sex", eo) - 0.03, key
    for v in variants:
        assert v.accuracy > 0.8, v.key  # the price is a few points, not a collapse


def _variant(method: str, setting: str, y: np.ndarray, pred: np.ndarray,
             frame: pd.DataFrame, score: np.ndarray | None = None) -> Variant:
    res = assess_fairness(y, pred, frame, score=score, n_boot=100, random_state=0)
    return Variant(method=method, setting=setting, accuracy=float((pred == y).mean()),
                   result=res, seconds=0.0)


def test_mitigation_table_shows_side_effects_on_metrics_not_targeted() -> None:
    """A DP penalty that closes the selection-rate gap by selecting group A's negatives
    widens the equalized-odds gap: the tables must show that change, not only the DP gap."""
    rng = np.random.default_rng(0)
    n = 4000
    g = rng.integers(0, 2, n)
    y = (rng.random(n) < np.where(g == 1, 0.6, 0.3)).astype(np.int64)
    frame = pd.DataFrame({"group": np.where(g == 1, "B", "A")})
    base_pred = np.where(rng.random(n) < 0.9, y, 1 - y)  # equal error rates, DP gap ~0.24
    fair_pred = base_pred.copy()
    flip = (g == 0) & (y == 0) & (rng.random(n) < 0.45)  # select A's negatives: FPR jumps
    fair_pred[flip] = 1
    score = np.clip(base_pred * 0.6 + rng.random(n) * 0.4, 0, 1)
    # group thresholds have no scores: their calibration gap is n/a, the rest lines up
    variants = [_variant("your-model", "", y, base_pred, frame, score),
                _variant("penalty-dp", "λ=1", y, fair_pred, frame)]
    base, dp = (v.result.groupings[0].disparities for v in variants)
    assert dp["demographic_parity_difference"].value < base["demographic_parity_difference"].value
    assert dp["equalized_odds_difference"].value > base["equalized_odds_difference"].value + 0.2
    sec = mitigation_section(variants, TrainingSettings(), ["group"], ["group"])
    main, changes = sec.tables
    assert main.id == "mitigation" and changes.id == "mitigation-changes"
    # the main table (the CSV) names every metric that got worse, the untargeted EO gap first
    side = dict(zip(main.columns, main.rows[1], strict=True))["worse than your model"]
    eo = base["equalized_odds_difference"].value, dp["equalized_odds_difference"].value
    assert f"EO diff (group) {eo[0]:.3f} → {eo[1]:.3f}" in side
    assert "accuracy" in side and "DP diff" not in side
    # the changes table: every metric of the fairness table, baseline and variant with delta
    rows = {(r[0], r[1]): r for r in changes.rows}
    assert ("Accuracy", "") in rows
    assert {t for t, _ in rows} >= {"Demographic parity difference", "Equalized odds difference",
                                   "False positive rate difference", "Accuracy difference"}
    eo_row = rows[("Equalized odds difference", "group")]
    assert eo_row[2] == f"{eo[0]:.3f}"
    assert eo_row[3] == f"{eo[1]:.3f} ({eo[1] - eo[0]:+.3f}, WORSE)"
    assert rows[("Demographic parity difference", "group")][3].endswith(", better)")
    assert changes.columns[3] == "penalty-dp[λ=1]: targets DP diff by group"
    assert rows[("Calibration difference", "group")][3] == "n/a"
    # a change within the baseline's interval is not called worse or better
    same = _variant("reweighing", "", y, base_pred, frame)
    sec = mitigation_section([variants[0], same], TrainingSettings(), ["group"], ["group"])
    assert all("WORSE" not in c and "better" not in c for r in sec.tables[1].rows for c in r[3:])
    assert dict(zip(sec.tables[0].columns, sec.tables[0].rows[1], strict=True))[
        "worse than your model"] == "none"
