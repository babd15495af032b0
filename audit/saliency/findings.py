"""The finding rules of the ``saliency`` check: pure functions of a measured evaluation and the
check's thresholds (:class:`~audit.saliency.settings.SaliencyParams`), in report order. Every
finding belongs to a kind of the severity policy (:mod:`audit.policy`): the limits of an
explanation method are METHOD findings (low at most), a shortcut is a DEFECT."""

from __future__ import annotations

import math
from typing import Any

from audit.policy import CHECK_BUDGET, Category, kind
from audit.result import Finding, Severity
from audit.saliency.evaluation import (
    ImageEvaluation,
    MethodScore,
    Selection,
    ShortcutEvidence,
    TabularEvaluation,
)
from audit.saliency.metrics import Faithfulness, describe_position
from audit.saliency.settings import SaliencyParams

NO_SPATIAL_LAYER = kind(
    "saliency.no-spatial-layer", Category.COVERAGE,
    "A class activation map could not run: the model has no spatial layer to attach it to.")
SKIPPED = kind(
    "saliency.{kind}-skipped", Category.COVERAGE,
    "Requested explanation methods that do not apply to this kind of data were left out.")
UNFAITHFUL = kind(
    "saliency.unfaithful.{method}", Category.METHOD,
    "An explanation method orders pixels (features) barely better than a random order.")
INSENSITIVE = kind(
    "saliency.insensitive.{method}", Category.METHOD,
    "An explanation method's maps barely change when the model's weights are randomised.")
OUTSIDE_OBJECT = kind(
    "saliency.outside-object", Category.DEFECT,
    "The model's predictions follow evidence outside the object (a shortcut in the "
    "background), by counterfactual tests on images with object masks.")
NO_MASKS = kind(
    "saliency.no-masks", Category.COVERAGE,
    "Localisation and the shortcut test were skipped: the data has no object masks.")


def selection_findings(sel: Selection, incomplete: bool = False) -> list[Finding]:
    """Methods that could not run: no spatial layer for a CAM, not for this kind of data, or
    stopped by their budget (high with ``incomplete``: none is left, nothing was scored, so the
    audit is incomplete as when a check errors)."""
    out: list[Finding] = []
    if sel.no_layer:
        why = (f"The model exposes no layer to hook: {sel.no_layer_reason}"
               if sel.no_layer_reason else "No submodule outputs a grid over the image that "
               "the logits' gradient reaches: a (C, h, w) or (h, w, C) feature map or patch "
               "tokens (or the model does not support forward hooks)")
        out.append(NO_SPATIAL_LAYER(
            Severity.INFO, "Grad-CAM skipped: the model has no spatial layer",
            (f"{why}, so {', '.join(sel.no_layer)} cannot run; the other methods explain the "
             "model."),
            recommendation="Pass --layer NAME to name a convolutional or token layer if "
                           "the model has one."))
    if sel.stopped:
        listed = "; ".join(f"{t} by its {'evaluation' if why == 'evaluations' else 'time'} "
                           f"budget ({where})" for t, why, where in sel.stopped)
        out.append(CHECK_BUDGET(
            Severity.HIGH if incomplete else Severity.MEDIUM, check="saliency",
            title=("Every explainer stopped at the budget: nothing was scored" if incomplete
                   else f"{len(sel.stopped)} explainer run{'s' if len(sel.stopped) > 1 else ''} "
                        "stopped at the budget"),
            detail=(f"Stopped: {listed}. A method stopped on its maps is left out of the "
                    "scores; one stopped on the sanity rerun has no sanity value."),
            evidence={"stopped": [list(s) for s in sel.stopped]},
            recommendation="Raise explainer_evaluations or explainer_seconds in "
                           "[checks.saliency] (or drop --quick), or run on a GPU."))
    if sel.not_for_kind:
        detail = ("Class activation maps need spatial feature maps; tabular models are "
                  "explained with LIME and gradient attributions instead."
                  if sel.kind == "tabular" else "These methods explain tabular rows only.")
        out.append(SKIPPED(
            Severity.INFO, f"{', '.join(sel.not_for_kind)} skipped on {sel.kind} data", detail,
            kind=sel.kind))
    return out


def unfaithful(score: MethodScore, random: Faithfulness, p: SaliencyParams) -> Finding | None:
    """LOW (a limit of the method, not of the model) when the method's gain over a random order
    is below ``faithfulness_gain_medium``."""
    if score.gain >= p.faithfulness_gain_medium:
        return None
    f, t, gain = score.faithfulness, score.title, score.gain
    return UNFAITHFUL(
        Severity.LOW, f"{t} is barely more faithful than a random map (gain {gain:+.2f})",
        (f"Deleting pixels in {t}'s order gives deletion AUC {f.deletion_auc:.3f} and "
         f"insertion AUC {f.insertion_auc:.3f}, against {random.deletion_auc:.3f} and "
         f"{random.insertion_auc:.3f} for a random order (gain {gain:+.3f}, threshold "
         f"{p.faithfulness_gain_medium}). This is a limit of the method on this model, not a "
         "defect of the model."),
        evidence={"method": score.name, "deletion_auc": f.deletion_auc,
                  "insertion_auc": f.insertion_auc,
                  "random_deletion_auc": random.deletion_auc,
                  "random_insertion_auc": random.insertion_auc, "gain": gain},
        recommendation=f"Do not present {t} maps of this model as evidence; prefer the methods "
                       "with the highest gain in the table.", method=score.name)


def insensitive(score: MethodScore, p: SaliencyParams) -> Finding | None:
    """LOW (a limit of the method) when the maps of a randomised model rank like the trained
    model's (rho at or above ``sanity_rank_medium``)."""
    rho, t = score.sanity, score.title
    if rho is None or rho < p.sanity_rank_medium:
        return None
    return INSENSITIVE(
        Severity.LOW, f"{t} barely changes when the weights are randomised (ρ={rho:.2f})",
        (f"Maps of the trained model and of a copy with random weights have mean Spearman "
         f"rank correlation {rho:.3f} (threshold {p.sanity_rank_medium}): they follow the "
         "input and the architecture more than what the model learned. This is a limit of "
         "the method, not a defect of the model."),
        evidence={"method": score.name, "spearman": rho},
        recommendation=f"Treat {t} maps as edge detectors, not explanations of this model; "
                       "rely on methods that pass this check.", method=score.name)


def method_findings(scores: list[MethodScore], random: Faithfulness, p: SaliencyParams
                    ) -> list[Finding]:
    """Per method, in order: unfaithful, then insensitive to the weights."""
    out: list[Finding] = []
    for s in scores:
        out += [f for f in (unfaithful(s, random, p), insensitive(s, p)) if f is not None]
    return out


def outside_object(ev: ShortcutEvidence, p: SaliencyParams, titles: dict[str, str]
                   ) -> Finding | None:
    """HIGH when the counterfactual reliance reaches ``reliance_high``; MEDIUM when it reaches
    ``reliance_medium``; LOW when only the trusted maps' object focus is below
    ``object_focus_low`` (the counterfactuals do not confirm it)."""
    saliency_says = ev.object_focus < p.object_focus_low
    if ev.reliance >= p.reliance_high:
        severity = Severity.HIGH
    elif ev.reliance >= p.reliance_medium:
        severity = Severity.MEDIUM
    elif saliency_says:
        severity = Severity.LOW  # maps alone: a method's reading, unconfirmed by the model
    else:
        return None
    if ev.reliance < p.reliance_medium:
        agree = "by its saliency maps only; the counterfactual tests do not confirm it"
        where = "by its saliency maps"
    else:
        agree = ("and the saliency maps agree" if saliency_says else
                 "although the saliency maps do not show it (they may be unfaithful)")
        where = ev.hotspot.where
    box = ("Look at the window map and the boxed region" if ev.hotspot.localised
           else "Look at the window map and the feature visualisation")
    return OUTSIDE_OBJECT(
        severity, f"The model relies on evidence outside the object ({where})",
        f"Counterfactual reliance {ev.reliance:.0%} {agree}. {_detail(ev, p, titles)}",
        evidence=_evidence(ev, p),
        recommendation=(f"{box}: remove the cue from the training data (or randomise it), "
                        "retrain, and re-audit; do not deploy a model whose decision follows "
                        "the background."))


def fills_text(ev: ShortcutEvidence) -> str:
    """The object-only agreement per fill, in words."""
    each = [f"{f.agreement:.0%} with {f.title}" for f in ev.fills]
    listed = ", ".join(each[:-1]) + f" and {each[-1]}" if len(each) > 1 else each[0]
    return (f"Keeping only the object, predictions stay the same for {listed} in place of "
            f"the background ({ev.images} images; chance {ev.chance_agreement:.0%})")


def windows_text(ev: ShortcutEvidence) -> str:
    """The window map's strongest window, its reference and the concentration, in words."""
    h, wm = ev.hotspot, ev.windows
    rows, cols = wm.change.shape
    text = (f"Occluding each of {rows * cols} {h.size}x{h.size} windows in turn (outside the "
            f"object, with the data's mean colour) changes at most {_pct(h.change)} of "
            f"predictions (rows {h.row}-{h.row + h.size - 1}, columns "
            f"{h.col}-{h.col + h.size - 1}), against {_pct(ev.random_change)} for random "
            f"windows")
    if not math.isnan(h.share):
        text += (f"; the windows changing at least half as many cover {h.area:.0%} of the image "
                 f"and hold {h.share:.0%} of the change")
    return text


def consistency(ev: ShortcutEvidence, p: SaliencyParams) -> str:
    """Whether the whole-background test and the window map agree, and what a disagreement
    says about the cue; plus a note when a per-image fill keeps what the others remove."""
    t, h = p.reliance_medium, ev.hotspot
    whole, window = ev.background_reliance, ev.window_excess
    if whole >= t and h.localised:
        text = (f"The tests agree: replacing the whole background changes {whole:.0%} of "
                f"predictions and occluding the {h.where} alone {_pct(h.change)}, so the cue "
                "sits there.")
    elif whole >= t and window >= t:
        text = (f"The tests agree that the background matters ({whole:.0%} of predictions "
                f"change with all of it replaced, up to {_pct(h.change)} for one window), but "
                f"the windows that matter cover {h.area:.0%} of the image: the cue is spread "
                "over the background, so no single place is named.")
    elif whole >= t:
        text = (f"The whole background matters ({whole:.0%} of predictions change when it is "
                f"replaced) but no single window does (at most {_pct(h.change)}, random "
                f"windows {_pct(ev.random_change)}): the cue is spread over the background or "
                "moves from image to image (a tint, a texture, or a mark whose place varies), "
                "so no place is named.")
    elif window >= t:
        where = h.where if h.localised else describe_position(h.row, h.col, h.size,
                                                                *ev.windows.image_shape)
        text = (f"The tests disagree: occluding the {where} changes {_pct(h.change)} of "
                f"predictions, yet replacing the whole background changes only {whole:.0%}: "
                "the fills may restore what the model reads there, or the model reacts to "
                "the occluding patch itself; look at the window map before naming a cue.")
    else:
        text = (f"The tests agree that the background does not decide the predictions: at "
                f"most {whole:.0%} change with the whole background replaced, "
                f"{_pct(h.change)} for the strongest window (random windows "
                f"{_pct(ev.random_change)}).")
    own = [f for f in ev.fills if f.name == "own-mean"]
    others = [f for f in ev.fills if f.name != "own-mean"]
    if own and others:  # a tint: only the per-image fill keeps the predictions
        worst = min(others, key=lambda f: f.agreement)
        if own[0].agreement >= 1 - t > worst.agreement:
            text += (f" The image's own mean colour keeps {own[0].agreement:.0%} of "
                     f"predictions, {worst.title} only {worst.agreement:.0%}: the model reads "
                     "the background's colour (a tint), which a per-image fill keeps.")
    return text


def _pct(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.0%}"


def _detail(ev: ShortcutEvidence, p: SaliencyParams, titles: dict[str, str]) -> str:
    return (f"{fills_text(ev)}. {windows_text(ev)}. {consistency(ev, p)} The saliency maps "
            f"({', '.join(titles.get(m, m) for m in ev.methods)}) put "
            f"{ev.saliency_outside:.0%} of their energy outside the object, which covers "
            f"{ev.object_area_share:.0%} of the image (object focus {ev.object_focus:.2f}; "
            "below 1 means the background gets more than its share).")


def _evidence(ev: ShortcutEvidence, p: SaliencyParams) -> dict[str, Any]:
    h, wm = ev.hotspot, ev.windows
    r0, c0, r1, c1 = h.region
    change = [[None if math.isnan(v) else round(v, 4) for v in row]
              for row in wm.change.tolist()]
    return {
        "object_only_agreement": ev.object_only_agreement,
        "fills": {f.name: f.agreement for f in ev.fills}, "worst_fill": ev.worst_fill.name,
        "chance_agreement": ev.chance_agreement,
        "background_reliance": ev.background_reliance,
        "hotspot": {"row": h.row, "col": h.col, "size": h.size, "where": h.where,
                    "localised": h.localised},
        "hotspot_occlusion_change": h.change, "hotspot_images": h.images,
        "random_occlusion_change": ev.random_change,
        "region": {"rows": [r0, r1], "cols": [c0, c1], "area": h.area, "share": h.share,
                   "localised": h.localised},
        "window_map": {"size": wm.size, "rows": list(wm.rows), "cols": list(wm.cols),
                       "change": change},
        "reliance": ev.reliance, "consistency": consistency(ev, p),
        "saliency_outside_object": ev.saliency_outside, "object_focus": ev.object_focus,
        "object_area_share": ev.object_area_share, "methods": list(ev.methods),
        "images": ev.images,
    }


def no_masks() -> Finding:
    """INFO: localisation and the outside-the-object test need object masks."""
    return NO_MASKS(
        Severity.INFO, "Localisation metrics skipped: the data has no object masks",
        ("Pointing game, energy in object and the test for evidence outside the object "
         "need ground-truth object masks (AuditData.extras['masks'])."),
        recommendation="Audit on data with masks (e.g. an .npz with a 'masks' array) to check "
                       "where the model looks.")


def image_findings(ev: ImageEvaluation, p: SaliencyParams) -> list[Finding]:
    """Every finding of an image evaluation, in report order."""
    out = selection_findings(ev.selection) + method_findings(ev.scores, ev.random, p)
    if ev.shortcut is not None:
        titles = {s.name: s.title for s in ev.scores}
        out += [f for f in (outside_object(ev.shortcut, p, titles),) if f is not None]
    elif ev.localisation is None:
        out.append(no_masks())
    return out


def tabular_findings(ev: TabularEvaluation, p: SaliencyParams) -> list[Finding]:
    """Every finding of a tabular evaluation, in report order."""
    return selection_findings(ev.selection) + method_findings(ev.scores, ev.random, p)
