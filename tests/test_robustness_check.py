"""The robustness check end to end: metrics from the card's epsilons, report pieces, models
built to mask gradients, tabular models, configuration, determinism, and the correctness bar
against a 100-step, 5-restart PGD reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import Scaled, with_model
from torch import nn

from audit.datasets import load_dataset
from audit.loading import LoadedModel, load_model
from audit.result import AuditResult, Section
from audit.robustness.attacks import PGD
from audit.runner import run_audit

# small budgets: every piece runs, in seconds
SMALL: dict[str, Any] = {"max_samples": 120, "suite_samples": 16, "square_queries": 100,
                         "hsj_steps": 2, "cw_steps": 10, "severities": [1, 3]}


class Quantized(nn.Module):
    """Rounds inputs to 4 levels before the model: gradients are zero everywhere."""

    def __init__(self, inner: nn.Module, levels: int = 4) -> None:
        super().__init__()
        self.inner, self.levels = inner, levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * self.levels) / self.levels)


def robustness(loaded: LoadedModel | str, seed: int = 0, **params: Any) -> Section:
    res = run_audit(loaded, checks=["robustness"], seed=seed, quick=True,
                    params={"robustness": {**SMALL, **params}})
    sec = res.sections[0]
    assert sec.error is None, sec.error
    return sec


@pytest.fixture(scope="module")
def digits_section(digits_loaded: LoadedModel) -> Section:
    return robustness(digits_loaded)


def finding_ids(sec: Section) -> list[str]:
    return [f.id for f in sec.findings]


def test_metrics_follow_the_card(digits_section: Section, digits_loaded: LoadedModel) -> None:
    m = digits_section.metrics
    rob = digits_loaded.card.robustness  # type: ignore[union-attr]
    for norm in ("linf", "l2"):
        keys = [f"robust_accuracy_{norm}_{e:g}" for e in rob[f"{norm}_eps"]]
        assert all(k in m for k in keys), sorted(m)
        values = [m[k] for k in keys]
        assert all(0 <= v <= m["clean_accuracy"] for v in values)
        assert values == sorted(values, reverse=True)  # larger budget, fewer robust samples
    assert m["clean_accuracy"] > 0.97
    # an undefended CNN: most samples fall at L-inf 0.2 and L2 2, few at L-inf 0.03
    assert m["robust_accuracy_linf_0.2"] < 0.1 and m["robust_accuracy_l2_2"] < 0.1
    assert m["robust_accuracy_linf_0.03"] > 0.85
    assert m["model_evaluations"] > 0 and m["unreliable"] == 0.0


def test_normal_model_is_not_flagged_unreliable(digits_section: Section) -> None:
    assert "robustness.unreliable" not in finding_ids(digits_section)
    diag = next(t for t in digits_section.tables if t.id == "robustness-diagnostics")
    assert {r[4] for r in diag.rows} <= {"no", "not judged"}
    assert len(diag.rows) == 12  # 6 diagnostics x 2 norms
    assert "No gradient-masking diagnostic triggered" in digits_section.summary


def test_report_pieces(digits_section: Section) -> None:
    figs = {f.id: f for f in digits_section.figures}
    assert figs["robustness-curves"].mime == "image/svg+xml"
    assert figs["robustness-gallery"].mime == "image/png"
    assert figs["robustness-corruptions"].mime == "image/svg+xml"
    assert len(figs["robustness-gallery"].data) < 60_000  # compact PNG
    tables = {t.id: t for t in digits_section.tables}
    for tid in ("robustness-curve", "robustness-attacks", "robustness-diagnostics",
                "robustness-corruptions", "robustness-cost"):
        assert tid in tables
    attacks = {r[0] for r in tables["robustness-attacks"].rows}
    for name in ("FGSM-L-inf", "PGD-L-inf", "APGD-CE-L-inf", "APGD-DLR-L-inf", "Square-L-inf",
                 "DeepFool-L-inf", "HopSkipJump-L-inf", "FGM-L2", "PGD-L2", "CW-L2",
                 "DeepFool-L2", "HopSkipJump-L2", "FMN-LINF (curve)", "FMN-L2 (curve)"):
        assert name in attacks
    row = next(r for r in tables["robustness-attacks"].rows if r[0] == "PGD-L-inf")
    assert row[4] == 16 and 0 < row[5] <= 1 and row[8] > 0  # samples, success, evaluations
    corr = tables["robustness-corruptions"]
    assert [r[0] for r in corr.rows] == ["Gaussian noise", "Gaussian blur", "Contrast",
                                        "Brightness"]
    assert digits_section.reading and "upper bound" in digits_section.reading
    fragile = [f for f in digits_section.findings if f.id.startswith("robustness.fragile")]
    assert fragile and all(f.recommendation for f in fragile)


def test_quantized_model_is_not_reported_robust(digits_loaded: LoadedModel) -> None:
    """Rounding the input zeroes every gradient: white-box attacks fail. The audit must
    either find the adversarials or say the evaluation is unreliable; it does the latter and
    escalates to gradient-free attacks."""
    sec = robustness(with_model(digits_loaded, Quantized(digits_loaded.model), "quantized"),
                     linf_eps=[0.1], l2_eps=[1.0], corruptions=[])
    assert "robustness.unreliable" in finding_ids(sec)
    f = next(f for f in sec.findings if f.id == "robustness.unreliable")
    triggered = {d["id"] for d in f.evidence["diagnostics"]}
    assert {"unbounded", "loss-flat"} <= triggered
    assert sec.metrics["unreliable"] == 1.0
    esc = [r for t in sec.tables if t.id == "robustness-attacks" for r in t.rows
           if "escalation" in str(r[0])]
    assert esc  # gradient-free attacks ran on every sample still counted robust
    assert sec.metrics["robust_accuracy_linf_0.1"] < sec.metrics["clean_accuracy"]


def test_scaled_logits_do_not_hide_adversarials(digits_loaded: LoadedModel,
                                                digits_section: Section) -> None:
    """Logits x 1e6 saturate the softmax (cross-entropy gradients are exactly zero) but leave
    the decisions unchanged: the suite must find the same adversarials (DLR, FMN, DeepFool
    and the escalation do not use the cross-entropy) and flag the flat loss."""
    sec = robustness(with_model(digits_loaded, Scaled(digits_loaded.model, 1e6), "scaled"))
    base = digits_section.metrics
    for key in ("robust_accuracy_linf_0.1", "robust_accuracy_l2_0.5"):
        # within 6 of 120 samples: the quick budget's attack-to-attack noise
        assert sec.metrics[key] <= base[key] + 0.05, key
    assert "robustness.unreliable" in finding_ids(sec)


def test_tabular_model(tmp_path: Path) -> None:
    loaded = load_model("adult-mlp")
    sec = robustness(loaded, max_samples=80)
    assert sec.metrics["clean_accuracy"] > 0.6
    assert any(k.startswith("robust_accuracy_linf_") for k in sec.metrics)
    skipped = next(t for t in sec.tables if t.id == "robustness-skipped")
    reasons = {r[0]: r[1] for r in skipped.rows}
    assert "3 classes" in reasons["APGD-DLR"]  # binary model: DLR does not apply
    assert "images" in reasons["Contrast"]
    corr = next(t for t in sec.tables if t.id == "robustness-corruptions")
    assert [r[0] for r in corr.rows] == ["Gaussian noise"]
    gallery = next(t for t in sec.tables if t.id == "robustness-gallery")
    assert gallery.rows and "→" in gallery.rows[0][3]
    assert not any(f.id == "robustness-gallery" for f in sec.figures)


def test_epsilons_from_audit_toml(tmp_path: Path, digits_loaded: LoadedModel) -> None:
    cfg = tmp_path / "audit.toml"
    cfg.write_text("[checks.robustness]\nlinf_eps = [0.07]\nl2_eps = []\nmax_samples = 40\n"
                   "suite_samples = 8\ncorruptions = []\nhsj_steps = 1\ncw_steps = 5\n"
                   "square_queries = 20\n")
    res = run_audit(digits_loaded, checks=["robustness"], config=cfg, quick=True)
    m = res.sections[0].metrics
    assert "robust_accuracy_linf_0.07" in m
    assert not any(k.startswith("robust_accuracy_l2") for k in m)
    assert res.sections[0].params["linf_eps"] == [0.07]


def test_same_seed_same_numbers(digits_loaded: LoadedModel) -> None:
    small = {"max_samples": 40, "suite_samples": 8, "corruptions": ["gaussian_noise"],
             "linf_eps": [0.1], "l2_eps": [1.0], "hsj_steps": 1, "cw_steps": 5,
             "square_queries": 30}
    a, b = robustness(digits_loaded, **small), robustness(digits_loaded, **small)
    assert a.metrics == b.metrics
    assert [f.to_dict() for f in a.findings] == [f.to_dict() for f in b.findings]


@pytest.mark.slow
def test_default_check_is_not_weaker_than_pgd_reference(digits_loaded: LoadedModel) -> None:
    """Acceptance: on digits-cnn the default check's robust accuracy at L-inf 0.1 is at most
    0.5 points above that of PGD with 100 steps and 5 restarts."""
    res: AuditResult = run_audit(digits_loaded, checks=["robustness"], seed=0,
                                 params={"robustness": {"corruptions": []}})
    ours = res.sections[0].metrics["robust_accuracy_linf_0.1"]
    d = load_dataset("digits", "test")
    ref = PGD(norm="linf", steps=100, restarts=5, generator=torch.Generator().manual_seed(0))
    r = ref(digits_loaded.model, d.x, d.y, eps=0.1)
    assert ours <= (1 - r.success_rate) + 0.005


def test_rates_carry_intervals_and_per_sample_outcomes(digits_loaded: LoadedModel) -> None:
    """On a run of the bundled digits CNN: every clean, robust and corruption accuracy has
    ci_low <= value <= ci_high, the per-sample outcomes reproduce the metrics, and the
    result (with outcomes) passes the published schema."""
    from audit.report.render import validate_result
    from audit.stats import Outcomes

    res = run_audit(digits_loaded, checks=["robustness"], seed=0, quick=True,
                    params={"robustness": {**SMALL, "suite_samples": 8,
                                           "linf_eps": [0.05, 0.1], "l2_eps": [1.0],
                                           "corruptions": ["contrast"]}})
    sec = res.sections[0]
    assert sec.error is None, sec.error
    m = sec.metrics
    rates = ["clean_accuracy", "robust_accuracy_linf_0.05", "robust_accuracy_linf_0.1",
             "robust_accuracy_l2_1", "corruption_accuracy_contrast"]
    for r in rates:
        assert m[f"{r}_ci_low"] <= m[r] <= m[f"{r}_ci_high"], r
        assert m[f"{r}_ci_high"] - m[f"{r}_ci_low"] < 0.25  # 120 samples: about +-5 points
    doc = res.to_dict()
    validate_result(doc)
    out = Outcomes.read(doc["sections"][0]["outcomes"])
    assert out is not None and out.samples == m["samples"] == 120
    assert out.data_sha256 == doc["data"]["sha256"] and out.data_size == doc["data"]["size"]
    assert len(out.row_indices()) == 120
    for r in rates[:4]:
        ok = out.rate(r)
        assert ok is not None and float(ok.mean()) == pytest.approx(m[r])
    box = next(t for t in sec.tables if t.id == "robustness-trust")
    assert box.rows[0][0] == "Sampling interval" and "Clopper-Pearson" in box.rows[0][1]
    assert "For ±1 point" in box.rows[0][1]
