"""The ``saliency`` check end to end: digits (no masks), shapes (shortcut vs clean), a model
without spatial layers, ``--layer``, a tabular model, determinism."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from audit.card import InputSpec, ModelCard
from audit.datasets import load_dataset
from audit.errors import ConfigError, DataError, UsageError
from audit.loading import LoadedModel, load_model
from audit.paths import models_dir
from audit.result import AuditResult, Section, Severity
from audit.runner import run_audit
from audit.saliency.check import SaliencyCheck, SaliencyParams
from audit.saliency.measure import validate
from audit.subject import AuditData

SMALL: dict[str, Any] = {"samples": 8, "lime_samples": 120, "ig_steps": 12,
                         "smoothgrad_samples": 6, "sanity_samples": 4, "featvis_steps": 16,
                         "deletion_steps": 6, "gallery": 2, "shortcut_samples": 200}
FAST_SHAPES: dict[str, Any] = {"methods": ["gradcam", "integrated-gradients"], "samples": 12,
                               "featvis": False, "sanity_samples": 4, "shortcut_samples": 240,
                               "deletion_steps": 8}


def saliency(result: AuditResult) -> Section:
    (sec,) = [s for s in result.sections if s.check == "saliency"]
    assert sec.status != "error", sec.error
    return sec


def finding(sec: Section, fid: str) -> Any:
    hits = [f for f in sec.findings if f.id == fid]
    return hits[0] if hits else None


@pytest.fixture(scope="session")
def digits_saliency() -> AuditResult:
    return run_audit("digits-cnn", checks=["saliency"], quick=True, seed=0,
                     params={"saliency": SMALL})


def test_digits_section_has_every_part(digits_saliency: AuditResult) -> None:
    sec = saliency(digits_saliency)
    figures = {f.id for f in sec.figures}
    # a CNN has no attention: those default methods are left out, and the summary says why
    ran = [m for m in SaliencyParams().methods if not m.startswith("attention")]
    assert "Attention x gradient does not apply to this model: no global self-attention" \
        in sec.summary
    assert not any(k.startswith("attention") for k in sec.metrics)
    for m in ran:
        assert f"gallery-{m}" in figures
        for key in ("deletion_auc", "insertion_auc", "gain_over_random", "sanity_spearman"):
            assert f"{m}.{key}" in sec.metrics
    assert {"faithfulness-curves", "sanity", "feature-visualisation"} <= figures
    assert all(f.mime == "image/png" for f in sec.figures if f.id.startswith("gallery"))
    # no masks on digits: localisation is skipped with a note, not computed
    assert finding(sec, "saliency.no-masks").severity is Severity.INFO
    assert not any(k.endswith("pointing_game") for k in sec.metrics)
    assert "features" in sec.summary  # the automatically chosen Grad-CAM layer is named
    tables = {t.id: t for t in sec.tables}
    assert {"quality", "how-to-read"} <= set(tables)
    assert len(tables["quality"].rows) == len(ran) + 1  # + random order
    assert sec.reading and sec.summary
    # every method beats a random order on a well-trained model
    for m in ran:
        assert sec.metrics[f"{m}.gain_over_random"] > 0, m


def test_same_seed_same_json(digits_saliency: AuditResult,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The same seed gives the same section; the second run takes the default path, a fresh
    process (the suite runs checks in-process otherwise: tests/conftest.py)."""
    import audit.runner
    from audit.isolation import ISOLATE_ENV

    isolated: list[str] = []

    def spy(check: Any, subject: Any, seed: int) -> Section:
        isolated.append(check.name)
        return run_isolated(check, subject, seed)

    run_isolated = audit.runner.run_isolated
    monkeypatch.delenv(ISOLATE_ENV, raising=False)
    monkeypatch.setattr(audit.runner, "run_isolated", spy)
    again = run_audit("digits-cnn", checks=["saliency"], quick=True, seed=0,
                      params={"saliency": SMALL})
    assert isolated == ["saliency"]
    a, b = saliency(digits_saliency).to_dict(), saliency(again).to_dict()
    a.pop("duration_s")
    b.pop("duration_s")
    assert a == b


def test_layer_override_and_bad_layer() -> None:
    params = {**SMALL, "methods": ["gradcam"], "featvis": False, "layer": "features.3"}
    sec = saliency(run_audit("digits-cnn", checks=["saliency"], quick=True,
                             params={"saliency": params}))
    assert "features.3" in sec.summary and "set by --layer" in sec.summary
    # a --layer naming no layer is a usage error: the audit stops (exit 4), no report
    with pytest.raises(UsageError, match="not a module"):
        run_audit("digits-cnn", checks=["saliency"], quick=True,
                  params={"saliency": {**params, "layer": "nope"}})


def test_xgradcam_is_opt_in_through_the_methods_setting() -> None:
    assert "xgradcam" not in SaliencyParams().methods  # the default reports stay as they were
    params = {**SMALL, "methods": ["xgradcam", "gradcam"], "featvis": False}
    sec = saliency(run_audit("digits-cnn", checks=["saliency"], quick=True,
                             params={"saliency": params}))
    assert {"gallery-xgradcam", "gallery-gradcam"} <= {f.id for f in sec.figures}
    quality = {t.id: t for t in sec.tables}["quality"]
    assert [r[0] for r in quality.rows] == ["XGrad-CAM", "Grad-CAM", "random order"]
    assert sec.metrics["xgradcam.gain_over_random"] > 0
    assert "xgradcam.sanity_spearman" in sec.metrics
    assert "Grad-CAM target layer: features" in sec.summary


def test_unknown_or_empty_methods_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown nope; choose from gradcam, gradcam[+][+], "
                                          "xgradcam"):
        validate(SaliencyParams(methods=["gradcam", "nope"]))
    with pytest.raises(ConfigError, match="unknown [(]empty[)]"):
        validate(SaliencyParams(methods=[]))
    with pytest.raises(ConfigError, match="samples and deletion_steps"):
        validate(SaliencyParams(samples=1))


class FlatMLP(nn.Module):
    """An image model without any spatial layer."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_model_without_spatial_layer_skips_gradcam_only() -> None:
    data = load_dataset("digits", "train")
    torch.manual_seed(0)
    model = FlatMLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(data.x), data.y).backward()
        opt.step()
    base = load_model("digits-cnn")
    loaded = dataclasses.replace(base, model=model.eval(), arch="tests:FlatMLP")
    sec = saliency(run_audit(loaded, checks=["saliency"], quick=True,
                             params={"saliency": SMALL}))
    f = finding(sec, "saliency.no-spatial-layer")
    assert f is not None and f.severity is Severity.INFO
    assert not any(k.startswith("gradcam") for k in sec.metrics)
    for m in ("integrated-gradients", "smoothgrad", "lime"):
        assert f"{m}.deletion_auc" in sec.metrics


# ---------------------------------------------------------------------------- shortcut


@pytest.fixture(scope="session")
def shortcut_fast() -> Section:
    return saliency(run_audit("shapes-shortcut", checks=["saliency"], quick=True,
                              params={"saliency": FAST_SHAPES}))


@pytest.fixture(scope="session")
def clean_fast() -> Section:
    return saliency(run_audit("shapes-cnn", checks=["saliency"], quick=True,
                              params={"saliency": FAST_SHAPES}))


def _assert_shortcut_found(sec: Section) -> None:
    f = finding(sec, "saliency.outside-object")
    assert f is not None, sec.summary
    assert f.severity.rank >= Severity.HIGH.rank
    ev = f.evidence
    # it says where: the hotspot window covers the watermark (rows/cols 1-4)
    box = ev["hotspot"]
    assert box["row"] <= 1 and box["col"] <= 1 and box["row"] + box["size"] >= 5
    assert box["col"] + box["size"] >= 5
    assert "top-left corner" in f.title
    # both lines of evidence are reported: counterfactuals and saliency outside the mask
    assert ev["object_only_agreement"] < 0.5
    assert ev["hotspot_occlusion_change"] > ev["random_occlusion_change"] + 0.3
    assert ev["object_focus"] < 1.0 and ev["saliency_outside_object"] > 0.8
    assert "where" in {fig.id for fig in sec.figures}


def _assert_clean(sec: Section) -> None:
    assert finding(sec, "saliency.outside-object") is None, sec.summary
    assert sec.metrics["shortcut.object_only_agreement"] > 0.8
    assert sec.metrics["shortcut.reliance_outside_object"] < 0.2
    assert sec.metrics["shortcut.object_focus"] > 1.5
    for m in FAST_SHAPES["methods"]:
        assert sec.metrics[f"{m}.pointing_game"] > 0.5, m


def test_shortcut_model_is_flagged_with_where(shortcut_fast: Section) -> None:
    _assert_shortcut_found(shortcut_fast)


def test_clean_shapes_model_is_not_flagged(clean_fast: Section) -> None:
    _assert_clean(clean_fast)


def test_localisation_separates_the_two_models(shortcut_fast: Section,
                                               clean_fast: Section) -> None:
    for m in FAST_SHAPES["methods"]:
        assert (clean_fast.metrics[f"{m}.energy_in_object"]
                > 2 * shortcut_fast.metrics[f"{m}.energy_in_object"])
        assert (clean_fast.metrics[f"{m}.pointing_game"]
                > shortcut_fast.metrics[f"{m}.pointing_game"] + 0.3)


@pytest.mark.slow
def test_default_audits_of_both_shapes_models() -> None:
    """The full default check (all methods, default samples) on both bundled shapes models."""
    _assert_shortcut_found(saliency(run_audit("shapes-shortcut", checks=["saliency"])))
    _assert_clean(saliency(run_audit("shapes-cnn", checks=["saliency"])))


# ---------------------------------------------------------------------------- tabular


def _tabular() -> tuple[LoadedModel, AuditData]:
    gen = torch.Generator().manual_seed(0)
    n = 600
    x = torch.randn(n, 6, generator=gen)
    x[:, 2] = (x[:, 2] > 0).float()  # a binary column
    y = ((1.5 * x[:, 0] + 0.6 * x[:, 1] - 1.2 * x[:, 2]) > -0.6).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    names = ["strong", "medium", "flag", "noise_a", "noise_b", "noise_c"]
    card = ModelCard(name="toy-tabular", arch="tests:toy", classes=["no", "yes"],
                     input=InputSpec(shape=(6,), range=(-10.0, 10.0), kind="tabular",
                                     feature_names=names))
    data = AuditData(name="toy", x=x[:300], y=y[:300], kind="tabular", classes=["no", "yes"],
                     feature_names=names, source="test")
    loaded = LoadedModel(model=model.eval(), card=card, path=ROOT_PATH, format="test",
                         sha256="0" * 64, arch="tests:toy")
    return loaded, data


ROOT_PATH = Path(__file__)


def test_tabular_importance_and_faithfulness() -> None:
    loaded, data = _tabular()
    sec = saliency(run_audit(loaded, data=data, checks=["saliency"], quick=True,
                             params={"saliency": {"samples": 40}}))
    tables = {t.id: t for t in sec.tables}
    imp = tables["feature-importance"]
    assert imp.rows[0][0] == "strong"
    assert {imp.rows[1][0], imp.rows[2][0]} == {"medium", "flag"}
    assert {"feature-importance", "faithfulness-curves"} <= {f.id for f in sec.figures}
    for m in ("lime", "integrated-gradients"):
        assert sec.metrics[f"{m}.gain_over_random"] > 0.05, m
        assert f"{m}.sanity_spearman" in sec.metrics
    assert sec.metrics["methods_rank_agreement"] > 0.7
    assert not any(f.id.startswith("saliency.tabular-skipped") for f in sec.findings)
    assert "strong" in sec.summary


def test_tabular_runs_what_applies_and_names_what_does_not() -> None:
    loaded, data = _tabular()
    params = {"samples": 12, "methods": ["xgradcam", "lime", "smoothgrad"]}
    sec = saliency(run_audit(loaded, data=data, checks=["saliency"], quick=True,
                             params={"saliency": params}))
    f = finding(sec, "saliency.tabular-skipped")
    assert f is not None and f.title == "XGrad-CAM skipped on tabular data"
    assert "lime.gain_over_random" in sec.metrics and "smoothgrad.deletion_auc" in sec.metrics
    assert not any(k.startswith("xgradcam") for k in sec.metrics)
    only_cams = {"methods": ["gradcam", "xgradcam"]}
    skipped = saliency(run_audit(loaded, data=data, checks=["saliency"], quick=True,
                                 params={"saliency": only_cams}))
    assert skipped.status == "skipped"
    assert finding(skipped, "saliency.tabular-skipped") is not None


def test_applies_rejects_wrong_shapes() -> None:
    loaded, data = _tabular()
    bad = dataclasses.replace(data, kind="image")
    from audit.subject import Subject

    subject = Subject(model=loaded.model, card=loaded.card, data=bad,  # type: ignore[arg-type]
                      model_info={})
    assert "(C, H, W)" in (SaliencyCheck().applies(subject) or "")


def test_user_npz_with_masks_gets_the_shortcut_test(tmp_path: Path) -> None:
    """Masks saved in a user's .npz (array ``masks``) reach the check."""
    data = load_dataset("shapes-watermark", "test")
    path = tmp_path / "mine.npz"
    np.savez(path, x=data.x[:240].numpy(), y=data.y[:240].numpy(),
             masks=data.extras["masks"][:240].numpy())
    sec = saliency(run_audit("shapes-shortcut", data=str(path), checks=["saliency"], quick=True,
                             params={"saliency": FAST_SHAPES}))
    f = finding(sec, "saliency.outside-object")
    assert f is not None and f.severity.rank >= Severity.HIGH.rank
    np.savez(path, x=data.x[:10].numpy(), y=data.y[:10].numpy(),
             masks=np.zeros((10, 16, 16), bool))
    with pytest.raises(DataError, match="masks must have shape"):
        run_audit("shapes-shortcut", data=str(path), checks=["saliency"], quick=True)


@pytest.mark.skipif(not (models_dir() / "adult-mlp" / "card.json").exists(),
                    reason="adult-mlp is not bundled")
def test_adult_mlp_feature_attributions() -> None:
    sec = saliency(run_audit("adult-mlp", checks=["saliency"], quick=True))
    imp = {t.id: t for t in sec.tables}["feature-importance"]
    assert len(imp.rows) == SaliencyParams().tabular_top
    for m in ("lime", "integrated-gradients"):
        assert sec.metrics[f"{m}.gain_over_random"] > 0, m
