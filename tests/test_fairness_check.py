"""The fairness check: a biased model gets findings and a fair one does not; thresholds come
from audit.toml; small groups, missing values and missing columns are reported clearly; Adult
end to end."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from torch import nn

from audit.card import InputSpec, ModelCard
from audit.errors import DataError
from audit.fairness.findings import findings
from audit.fairness.metrics import assess_fairness
from audit.fairness.params import FairnessParams
from audit.loading import LoadedModel
from audit.report.render import validate_result
from audit.result import AuditResult, Severity
from audit.runner import run_audit
from audit.subject import AuditData


class Scorer(nn.Module):
    """logits = [0, a*z + b*s + c] on inputs (s, z): b != 0 makes the model favour group B."""

    def __init__(self, a: float, b: float, c: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([b, a]), requires_grad=False)
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = x @ self.w + self.c
        return torch.stack([torch.zeros_like(logit), logit], dim=1)


CARD = ModelCard(name="toy", arch="test:Scorer",
                 input=InputSpec(shape=(2,), range=(-10.0, 10.0), kind="tabular",
                                 feature_names=["s", "z"]),
                 classes=["no", "yes"], sensitive=["group"])


def toy_data(n: int = 4000, seed: int = 0, groups: tuple[str, ...] = ("A", "B"),
             p: tuple[float, ...] = (0.5, 0.5)) -> AuditData:
    rng = np.random.default_rng(seed)
    g = rng.choice(len(groups), n, p=list(p))
    z = rng.normal(size=n)
    y = (z + 0.5 * rng.normal(size=n) > 0.5).astype(np.int64)  # independent of the group
    x = np.stack([(g > 0).astype(np.float32), z.astype(np.float32)], axis=1)
    frame = pd.DataFrame({"group": np.array(groups, dtype=object)[g], "z": z})
    return AuditData(name="toy", x=torch.from_numpy(x), y=torch.from_numpy(y), kind="tabular",
                     classes=["no", "yes"], feature_names=["s", "z"],
                     extras={"frame": frame, "sensitive": ["group"]})


def loaded(model: nn.Module, card: ModelCard = CARD) -> LoadedModel:
    return LoadedModel(model=model.eval(), card=card, path=Path("toy"), format="test",
                       sha256="0" * 64, arch="test:Scorer")


FAIR = Scorer(3.0, 0.0, -1.5)
BIASED = Scorer(3.0, 2.5, -2.5)


def fairness_ids(result: AuditResult) -> dict[str, Severity]:
    return {f.id: f.severity for _, f in result.findings()}


@pytest.fixture(scope="module")
def biased_result() -> AuditResult:
    return run_audit(loaded(BIASED), data=toy_data(), checks=["fairness"], quick=True)


def test_biased_model_gets_findings(biased_result: AuditResult) -> None:
    ids = fairness_ids(biased_result)
    assert ids["fairness.demographic-parity.group"] == Severity.HIGH
    assert ids["fairness.four-fifths.group"].rank >= Severity.MEDIUM.rank
    assert ids["fairness.equalized-odds.group"].rank >= Severity.MEDIUM.rank
    sec = biased_result.sections[0]
    assert sec.status == "fail"
    f = next(f for f in sec.findings if f.id == "fairness.demographic-parity.group")
    ev = f.evidence
    assert ev["highest_group"] == "B" and ev["lowest_group"] == "A"
    assert ev["ci_low"] < ev["value"] < ev["ci_high"] and ev["significant"] is True
    assert "95% CI" in f.detail and "distinguishable from zero" in f.detail
    assert f.recommendation
    data = toy_data()
    pred = BIASED(data.x).argmax(1).numpy()
    assert ev["value"] == pytest.approx(demographic_parity_difference(
        data.y.numpy(), pred, sensitive_features=data.extras["frame"]["group"]), abs=1e-9)
    validate_result(biased_result.to_dict())


def test_fair_model_gets_no_disparity_finding() -> None:
    result = run_audit(loaded(FAIR), data=toy_data(), checks=["fairness"], quick=True)
    sec = result.sections[0]
    assert sec.status == "pass", [f.title for f in sec.findings]
    assert not sec.findings
    data = toy_data()
    pred = FAIR(data.x).argmax(1).numpy()
    eo = equalized_odds_difference(data.y.numpy(), pred,
                                   sensitive_features=data.extras["frame"]["group"])
    assert sec.metrics["group.equalized_odds_difference"] == pytest.approx(eo, abs=1e-9)
    assert eo < 0.05


def test_thresholds_come_from_audit_toml(tmp_path: Path) -> None:
    toml = tmp_path / "audit.toml"
    toml.write_text("[checks.fairness]\ngap_low = 0.5\ngap_medium = 0.6\ngap_high = 0.7\n"
                    "four_fifths = 0.1\nratio_high = 0.05\nn_boot = 50\n")
    result = run_audit(loaded(BIASED), data=toy_data(), checks=["fairness"], config=toml)
    ids = fairness_ids(result)
    assert "fairness.demographic-parity.group" not in ids
    assert "fairness.four-fifths.group" not in ids
    assert result.sections[0].params["gap_high"] == 0.7
    strict = run_audit(loaded(FAIR), data=toy_data(), checks=["fairness"], quick=True,
                       params={"fairness": {"gap_low": 0.0001, "alpha": 1.0}})
    assert "fairness.demographic-parity.group" in fairness_ids(strict)


def test_gap_that_may_be_noise_is_at_most_low() -> None:
    # 30 rows per group: 30% against 46.7% selected is a 0.167 gap, but p is about 0.18
    y = np.zeros(60, dtype=int)
    pred = np.array([1] * 9 + [0] * 21 + [1] * 14 + [0] * 16)
    sf = pd.DataFrame({"g": ["A"] * 30 + ["B"] * 30})
    params = FairnessParams(min_group_size=10)
    res = assess_fairness(y, pred, sf, min_group_size=10, n_boot=100)
    (f,) = [f for f in findings(res, params) if f.id == "fairness.demographic-parity.g"]
    assert f.severity == Severity.LOW
    assert f.evidence["p_value"] > 0.05
    assert "not statistically distinguishable from zero" in f.detail


def test_a_new_disparity_is_one_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    """One entry in the catalogue puts a disparity in the table, the metrics, the chart, the
    guide and the findings: nothing else looks metrics up by name."""
    from audit.fairness import metrics, section
    from audit.fairness.plots import disparity_rows
    from audit.fairness.specs import DISPARITIES, DisparitySpec, FindingPolicy

    spec = DisparitySpec(
        "precision_ratio", ("precision",), "ratio", "Precision ratio", "precision ratio",
        headline=True, guide=("Smallest divided by largest precision.", "1 is parity."),
        policy=FindingPolicy("ratio", "precision-ratio", "Precision ratio {value:.2f} by "
                             "{grouping}", "{rate} {low} for {d.low_group} against {high} for "
                             "{d.high_group} ({ci}), {sig}.", "Review the decision rule."))
    for module in (metrics, section):  # where the catalogue is read: what adding it does
        monkeypatch.setattr(module, "DISPARITIES", (*DISPARITIES, spec))
    # both groups selected half the time; the selections are right 90% (A) and 40% (B)
    y = np.array([1] * 90 + [0] * 10 + [0] * 100 + [1] * 40 + [0] * 60 + [1] * 20 + [0] * 80)
    pred = np.array([1] * 100 + [0] * 100 + [1] * 100 + [0] * 100)
    sf = pd.DataFrame({"g": ["A"] * 200 + ["B"] * 200})
    params = FairnessParams(n_boot=50)
    res = assess_fairness(y, pred, sf, min_group_size=30, n_boot=50)
    d = res.groupings[0].disparities["precision_ratio"]
    assert d.value == pytest.approx(0.4 / 0.9)
    sec = section.fairness_section(res, params, check="fairness", title="t", positive="1",
                                   params={})
    table = next(t for t in sec.tables if t.id == "disparities")
    row = next(r for r in table.rows if r[1] == "precision_ratio")
    assert row[2] == pytest.approx(0.444) and "44% of the precision of A" in row[-1]
    assert [r[1] for r in table.rows].index("precision_ratio") < \
        [r[1] for r in table.rows].index("false_positive_rate_difference")  # a headline row
    assert sec.metrics["g.precision_ratio"] == d.value
    assert ("g", "precision ratio", d) in disparity_rows(res, "ratio")
    guide = next(t for t in sec.tables if t.id == "metric-guide")
    assert ["precision_ratio", "Smallest divided by largest precision.", "1 is parity."] \
        in guide.rows
    f = next(f for f in sec.findings if f.id == "fairness.precision-ratio.g")
    assert f.severity == Severity.HIGH  # below ratio_high = 0.5, and significant
    assert f.title == "Precision ratio 0.44 by g"
    assert f.detail.startswith("precision 40.0% for B against 90.0% for A (95% CI ")
    assert f.evidence["metric"] == "precision_ratio"


def test_small_groups_and_missing_values_are_reported() -> None:
    data = toy_data(n=3000, groups=("A", "B", "C"), p=(0.6, 0.395, 0.005))
    frame = data.extras["frame"]
    frame.loc[frame.index[:50], "group"] = None
    result = run_audit(loaded(BIASED), data=data, checks=["fairness"], quick=True)
    sec = result.sections[0]
    ids = fairness_ids(result)
    assert ids["fairness.small-groups.group"] == Severity.LOW
    assert ids["fairness.missing-sensitive.group"] == Severity.LOW
    small = next(f for f in sec.findings if f.id == "fairness.small-groups.group")
    # C has too few rows; (missing), 50 rows, too few actual positives for the TPR (issue 23:
    # every group a headline disparity leaves out is named, with the value over all groups)
    assert list(small.evidence["groups"]) == ["C", "(missing)"]
    assert "actual positives" in small.evidence["left_out"]["(missing)"]
    assert "over all" in small.detail
    table = next(t for t in sec.tables if t.id == "groups-group")
    labels = [row[0] for row in table.rows]
    assert labels == ["A", "B", "C", "(missing)"]
    note = table.rows[2][-1]
    assert "too small" in str(note)


def test_skipped_without_sensitive_attributes(digits_loaded: LoadedModel) -> None:
    result = run_audit(digits_loaded, checks=["fairness"])
    sec = result.sections[0]
    assert sec.status == "skipped"
    assert "sensitive" in sec.summary
    assert [f.id for f in sec.findings] == ["fairness.skipped"]


def test_missing_sensitive_column_is_a_clear_error() -> None:
    """Asked for by name, a check without its column is bad input (issue 23: it was an errored
    section); in the default selection it is skipped with the same message."""
    card = dataclasses.replace(CARD, sensitive=["race"])
    data = toy_data()
    data.extras.pop("sensitive")
    with pytest.raises(DataError, match=r"race .*not in toy; its columns are group, z; pass "
                                        r"--sensitive COLUMN"):
        run_audit(loaded(BIASED, card), data=data, checks=["fairness"], quick=True)
    card = dataclasses.replace(card, checks=["fairness"])  # the card's checks: a default
    sec = run_audit(loaded(BIASED, card), data=data, quick=True).sections[0]
    assert sec.status == "skipped" and "race" in sec.summary and not sec.findings


def test_same_seed_same_section() -> None:
    def run() -> dict[str, object]:
        d = run_audit(loaded(BIASED), data=toy_data(n=1500), checks=["fairness"],
                      quick=True, seed=3).sections[0].to_dict()
        d.pop("duration_s")
        return d

    assert run() == run()


@pytest.fixture(scope="module")
def adult_result() -> AuditResult:
    return run_audit("adult-mlp", checks=["fairness"], quick=True)


def test_adult_end_to_end(adult_result: AuditResult) -> None:
    sec = adult_result.sections[0]
    assert sec.status in ("warn", "fail")
    assert [t.id for t in sec.tables] == ["groups-sex", "groups-race", "groups-sex-x-race",
                                          "disparities", "metric-guide", "samples"]
    assert {f.id for f in sec.findings} >= {"fairness.demographic-parity.sex",
                                             "fairness.four-fifths.sex",
                                             "fairness.demographic-parity.sex-x-race"}
    assert [f.id for f in sec.figures] == ["group-rates", "disparities"]
    from audit.datasets import load_dataset
    from audit.loading import load_model

    data = load_dataset("adult", "test")
    model = load_model("adult-mlp").model
    with torch.no_grad():
        pred = model(data.x).argmax(1).numpy()
    frame = data.extras["frame"]
    for key, feats in (("sex", frame["sex"]), ("sex_x_race", frame[["sex", "race"]])):
        expected = demographic_parity_difference(data.y.numpy(), pred, sensitive_features=feats)
        # the intersection leaves out groups under min_group_size; compare on the counted ones
        if key == "sex_x_race":
            sizes = feats.value_counts()
            big = sizes[sizes >= 30].index
            keep = feats.set_index(["sex", "race"]).index.isin(big)
            expected = demographic_parity_difference(data.y.numpy()[keep], pred[keep],
                                                     sensitive_features=feats[keep])
        assert sec.metrics[f"{key}.demographic_parity_difference"] == pytest.approx(
            expected, abs=1e-9)
    validate_result(adult_result.to_dict())
