"""The saliency finding rules and section text on hand-built evaluations: no explainer runs, so
each rule is checked on a case where it fires and one where it does not, in milliseconds."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from audit.policy import Category, kind_of
from audit.result import Severity
from audit.saliency.evaluation import (
    FillResult,
    Hotspot,
    ImageEvaluation,
    LayerChoice,
    Localisation,
    MethodScore,
    Selection,
    ShortcutEvidence,
    TabularEvaluation,
    WindowMap,
)
from audit.saliency.findings import (
    consistency,
    image_findings,
    insensitive,
    method_findings,
    outside_object,
    selection_findings,
    tabular_findings,
    unfaithful,
)
from audit.saliency.gradcam import GradCAM
from audit.saliency.gradients import IntegratedGradientsExplainer
from audit.saliency.metrics import Faithfulness
from audit.saliency.section import (
    image_metrics,
    image_summary,
    importance_table,
    quality_table,
    tabular_summary,
)
from audit.saliency.settings import SaliencyParams

P = SaliencyParams()
RANDOM = Faithfulness(0.40, 0.45, [0.9, 0.4, 0.1], [0.1, 0.4, 0.9])


def score(name: str = "gradcam", gain: float = 0.3, sanity: float | None = 0.1,
          title: str = "Grad-CAM") -> MethodScore:
    faith = Faithfulness(0.2, 0.25 + gain, [0.9, 0.2, 0.1], [0.1, 0.7, 0.9])
    return MethodScore(name, title, faith, gain, sanity)


CORNER = Hotspot(row=0, col=1, size=8, change=0.0, images=300, region=(0, 1, 8, 9), area=0.0625,
                share=0.9, localised=True, where="top-left corner")


def shortcut(reliance: float, focus: float, *, own: float | None = None,
             window: float | None = None, localised: bool = True) -> ShortcutEvidence:
    """Evidence whose worst fill changes ``reliance`` of predictions (the own-mean fill
    ``own``) and whose strongest window changes ``window`` (default: ``reliance``)."""
    agree = 1.0 - reliance
    fills = [FillResult("own-mean", "its own mean colour", agree if own is None else own),
             FillResult("dataset-mean", "the data's mean colour", agree),
             FillResult("other-background", "another class's background", min(1.0, agree + 0.02))]
    change = torch.zeros(7, 7)
    wmap = WindowMap(change=change, images=torch.full((7, 7), 300), rows=[0, 4, 8, 12, 16, 20, 24],
                     cols=[0, 4, 8, 12, 16, 20, 24], size=8, image_shape=(32, 32))
    hot = dataclasses.replace(CORNER, change=reliance if window is None else window,
                              localised=localised,
                              where=CORNER.where if localised else "spread over the background")
    return ShortcutEvidence(
        fills=fills, chance_agreement=0.25, windows=wmap, hotspot=hot, random_change=0.0,
        reliance=max(reliance, hot.change), saliency_outside=0.9, object_focus=focus,
        object_area_share=0.2, methods=["gradcam"], images=600)


def image_eval(scores: list[MethodScore], **kw: object) -> ImageEvaluation:
    sel = Selection("image", (GradCAM,), layer=LayerChoice("features", (48, 8, 8), True))
    return ImageEvaluation(selection=sel, samples=32, scores=scores, random=RANDOM,
                           **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ selection


def test_no_finding_constructor_outside_the_policy() -> None:
    """Every saliency finding is built through a kind of the severity policy."""
    root = Path(__file__).resolve().parents[1] / "audit"
    for path in [*sorted((root / "saliency").glob("*.py")), root / "datasets" / "shapes.py"]:
        assert "Finding(" not in path.read_text(), path


def test_finding_kinds_and_their_categories() -> None:
    expected = {"saliency.no-spatial-layer": Category.COVERAGE,
                "saliency.image-skipped": Category.COVERAGE,
                "saliency.unfaithful.gradcam": Category.METHOD,
                "saliency.insensitive.lime": Category.METHOD,
                "saliency.outside-object": Category.DEFECT,
                "saliency.no-masks": Category.COVERAGE}
    for fid, category in expected.items():
        k = kind_of(fid)
        assert k is not None and k.category is category, fid


def test_no_spatial_layer_fires_only_when_a_cam_was_dropped() -> None:
    dropped = Selection("image", (IntegratedGradientsExplainer,), no_layer=("Grad-CAM",))
    (f,) = selection_findings(dropped)
    assert f.id == "saliency.no-spatial-layer" and f.severity is Severity.INFO
    assert "Grad-CAM cannot run" in f.detail
    assert selection_findings(Selection("image", (GradCAM,))) == []


def test_methods_for_another_kind_of_data_are_reported() -> None:
    (f,) = selection_findings(Selection("tabular", (IntegratedGradientsExplainer,),
                                        not_for_kind=("Grad-CAM", "XGrad-CAM")))
    assert f.id == "saliency.tabular-skipped"
    assert f.title == "Grad-CAM, XGrad-CAM skipped on tabular data"
    assert "Class activation maps" in f.detail
    (g,) = selection_findings(Selection("image", (GradCAM,), not_for_kind=("Rows",)))
    assert g.id == "saliency.image-skipped" and "tabular rows only" in g.detail
    assert selection_findings(Selection("tabular", (IntegratedGradientsExplainer,))) == []


# -------------------------------------------------------------------------------- methods


def test_unfaithful_fires_below_the_gain_threshold() -> None:
    low = score(gain=P.faithfulness_gain_medium - 0.01)
    f = unfaithful(low, RANDOM, P)
    assert f is not None and f.id == "saliency.unfaithful.gradcam"
    assert f.severity is Severity.LOW  # a limit of the method, never more than low
    assert "not a defect of the model" in f.detail
    assert f.evidence["gain"] == low.gain and f.evidence["random_deletion_auc"] == 0.40
    assert "(gain +0.04)" in f.title
    assert unfaithful(score(gain=P.faithfulness_gain_medium), RANDOM, P) is None


def test_insensitive_fires_at_the_sanity_threshold() -> None:
    f = insensitive(score(sanity=P.sanity_rank_medium), P)
    assert f is not None and f.id == "saliency.insensitive.gradcam"
    assert f.severity is Severity.LOW
    assert f.evidence == {"method": "gradcam", "spearman": P.sanity_rank_medium}
    assert insensitive(score(sanity=P.sanity_rank_medium - 0.01), P) is None
    assert insensitive(score(sanity=None), P) is None  # sanity not measured: no verdict


def test_method_findings_follow_method_order_and_the_thresholds() -> None:
    strict = dataclasses.replace(P, faithfulness_gain_medium=0.5)
    scores = [score("a", gain=0.3, sanity=0.9, title="A"), score("b", gain=0.6, title="B")]
    ids = [f.id for f in method_findings(scores, RANDOM, strict)]
    assert ids == ["saliency.unfaithful.a", "saliency.insensitive.a"]
    assert [f.id for f in method_findings(scores, RANDOM, P)] == ["saliency.insensitive.a"]


# ------------------------------------------------------------------------------- shortcut


def test_outside_object_high_when_counterfactuals_and_maps_agree() -> None:
    f = outside_object(shortcut(reliance=P.reliance_high, focus=0.5), P, {"gradcam": "Grad-CAM"})
    assert f is not None and f.severity is Severity.HIGH
    assert f.title == "The model relies on evidence outside the object (top-left corner)"
    assert "and the saliency maps agree" in f.detail
    assert "rows 0-7, columns 1-8" in f.detail and "(Grad-CAM)" in f.detail
    assert ("predictions stay the same for 50% with its own mean colour, 50% with the data's "
            "mean colour and 52% with another class's background in place of the background "
            "(600 images; chance 25%)") in f.detail
    assert "The tests agree" in f.detail and "so the cue sits there" in f.detail
    ev = f.evidence
    assert ev["hotspot"] == {"row": 0, "col": 1, "size": 8, "where": "top-left corner",
                             "localised": True}
    assert ev["region"] == {"rows": [0, 8], "cols": [1, 9], "area": 0.0625, "share": 0.9,
                            "localised": True}
    assert ev["fills"]["other-background"] == 0.52 and ev["worst_fill"] == "own-mean"
    assert ev["object_only_agreement"] == 0.5 and ev["background_reliance"] == 0.5
    assert len(ev["window_map"]["change"]) == 7 and ev["consistency"] in f.detail
    assert ev["methods"] == ["gradcam"] and ev["images"] == 600


def test_a_spread_cue_names_no_place_and_explains_the_disagreement() -> None:
    """The whole background matters, no window does: a tint, a texture or a moving mark."""
    ev = shortcut(reliance=0.7, focus=0.8, window=0.05, localised=False)
    f = outside_object(ev, P, {})
    assert f is not None and f.severity is Severity.HIGH
    assert f.title == "The model relies on evidence outside the object (spread over the background)"
    assert "box" not in f.recommendation.lower()
    text = consistency(ev, P)
    assert text.startswith("The whole background matters (70% of predictions change")
    assert "no single window does (at most 5%" in text and "so no place is named" in text
    assert f.evidence["region"]["localised"] is False
    assert f.evidence["hotspot"]["localised"] is False  # cross-checks read no box from it


def test_a_tint_is_told_apart_by_the_fills() -> None:
    """The image's own mean colour keeps a tint that the data-independent fills remove."""
    ev = shortcut(reliance=0.75, focus=1.2, own=0.98, window=0.02, localised=False)
    text = consistency(ev, P)
    assert ("The image's own mean colour keeps 98% of predictions, the data's mean colour only "
            "25%: the model reads the background's colour (a tint)") in text
    texture = shortcut(reliance=0.75, focus=1.2, own=0.33, window=0.02, localised=False)
    assert "a tint)" not in consistency(texture, P)  # every fill removes a texture


def test_consistency_when_only_one_window_matters_or_nothing_does() -> None:
    window_only = shortcut(reliance=0.05, focus=2.0, window=0.6)
    assert consistency(window_only, P).startswith(
        "The tests disagree: occluding the top-left corner changes 60% of predictions, yet "
        "replacing the whole background changes only 5%")
    spread_windows = shortcut(reliance=0.6, focus=2.0, window=0.5, localised=False)
    assert "cover 6% of the image: the cue is spread" in consistency(spread_windows, P)
    clean = shortcut(reliance=0.05, focus=2.0)
    assert consistency(clean, P).startswith("The tests agree that the background does not "
                                            "decide the predictions: at most 5% change")
    nan_window = dataclasses.replace(clean, hotspot=dataclasses.replace(
        clean.hotspot, change=math.nan, share=math.nan))
    assert "n/a for the strongest window" in consistency(nan_window, P)


def test_outside_object_medium_from_counterfactuals_alone() -> None:
    f = outside_object(shortcut(reliance=P.reliance_medium, focus=2.0), P, {})
    assert f is not None and f.severity is Severity.MEDIUM
    assert "although the saliency maps do not show it" in f.detail


def test_outside_object_low_from_saliency_alone() -> None:
    """Maps on the background that the counterfactuals do not confirm: a method's reading."""
    f = outside_object(shortcut(reliance=0.1, focus=P.object_focus_low - 0.1), P, {})
    assert f is not None and f.severity is Severity.LOW
    assert "by its saliency maps only" in f.detail


def test_outside_object_silent_for_a_model_that_looks_at_the_object() -> None:
    assert outside_object(shortcut(reliance=P.reliance_medium - 0.01, focus=2.0), P, {}) is None


def test_image_findings_order_and_the_no_masks_note() -> None:
    sel = Selection("image", (IntegratedGradientsExplainer,), no_layer=("Grad-CAM",))
    bad = score("integrated-gradients", gain=0.0, title="Integrated Gradients")
    ev = dataclasses.replace(image_eval([bad]), selection=sel)
    assert [f.id for f in image_findings(ev, P)] == [
        "saliency.no-spatial-layer", "saliency.unfaithful.integrated-gradients",
        "saliency.no-masks"]
    with_masks = image_eval([score()], localisation={"gradcam": Localisation(0.9, 0.6, 3.0)},
                            object_area_share=0.2, shortcut=shortcut(0.0, 3.0))
    assert image_findings(with_masks, P) == []
    flagged = dataclasses.replace(with_masks, shortcut=shortcut(0.8, 0.4))
    assert [f.id for f in image_findings(flagged, P)] == ["saliency.outside-object"]


def test_tabular_findings_are_selection_then_methods() -> None:
    ev = tabular_eval([score("lime", sanity=0.8, title="LIME")],
                      Selection("tabular", (), not_for_kind=("Grad-CAM",)))
    assert [f.id for f in tabular_findings(ev, P)] == ["saliency.tabular-skipped",
                                                       "saliency.insensitive.lime"]
    assert tabular_findings(tabular_eval([score("lime", title="LIME")]), P) == []


# -------------------------------------------------------------------------------- section


def tabular_eval(scores: list[MethodScore], sel: Selection | None = None) -> TabularEvaluation:
    return TabularEvaluation(
        selection=sel or Selection("tabular", ()), samples=20, scores=scores, random=RANDOM,
        feature_names=["age", "income", "noise"], order=[1, 0], mean_rank=np.array([1.0, 0, 2]),
        mean_abs={s.name: np.array([0.2, 0.5, 0.01]) for s in scores},
        positive_share={s.name: [0.25, 0.75, 0.5] for s in scores}, rank_agreement=None)


def test_image_summary_metrics_and_quality_table() -> None:
    ev = image_eval([score(gain=0.2), score("lime", gain=0.6, sanity=None, title="LIME")],
                    localisation={"gradcam": Localisation(1.0, 0.5, 2.5),
                                  "lime": Localisation(0.5, 0.25, 1.25)},
                    object_area_share=0.2, shortcut=shortcut(0.1, 2.0))
    text = image_summary(ev)
    assert text.startswith("Explained the predicted class of 32 images with 2 methods. "
                           "Grad-CAM target layer: features (output 48x8x8, chosen "
                           "automatically). Most faithful: LIME (gain over random +0.60).")
    assert ("Object-only agreement 90% at worst (its own mean colour 90%, the data's mean "
            "colour 90%, another class's background 92%); the window map names the top-left "
            "corner (10% of predictions change there, random windows 0%)") in text
    assert "The tests agree that the background does not decide the predictions" in text
    keys = list(image_metrics(ev))
    assert keys[:4] == ["object_area_share", "gradcam.pointing_game",
                        "gradcam.energy_in_object", "gradcam.object_focus"]
    assert "lime.sanity_spearman" not in keys and "gradcam.sanity_spearman" in keys
    assert keys.index("shortcut.reliance_outside_object") < keys.index("samples")
    assert image_metrics(ev)["shortcut.agreement.other-background"] == 0.92
    assert {"shortcut.window_hot_area", "shortcut.window_hot_share",
            "shortcut.object_only_agreement"} <= set(keys)
    table = quality_table(ev, "pixel")
    assert table.rows[1] == ["LIME", 0.2, 0.85, 0.6, None, 0.5, 0.25, 1.25]
    assert table.rows[-1][0] == "random order" and len(table.rows[-1]) == 8
    no_masks = image_eval([score()], sanity_error="RuntimeError")
    assert no_masks.localisation is None
    assert image_summary(no_masks).endswith(
        "copied and randomised (RuntimeError). The data has no object masks, so localisation "
        "(pointing game, energy in object) and the outside-the-object tests were skipped.")


def test_tabular_summary_and_importance_table() -> None:
    ev = tabular_eval([score("lime", gain=0.4, title="LIME")])
    assert tabular_summary(ev) == ("Explained the predicted class of 20 rows with LIME. Most "
                                   "important features: income, age. Most faithful: LIME (gain "
                                   "over random +0.40).")
    table = importance_table(ev)
    assert table.columns == ["feature", "mean rank", "LIME mean |attr|", "LIME share of rows +"]
    assert table.rows == [["income", 1.0, 0.5, 0.75], ["age", 2.0, 0.2, 0.25]]

